// The agent's spec file and report messages (JSON; bpfvm trace writes / reads, the agent reads / writes).
#include <nlohmann/json.hpp>

#include "bpfvm/agent.hpp"

namespace bpfvm {

namespace {

Diagnostic bad(const std::string& what, const std::string& why) {
  return make_error(ErrorCode::InvalidArgument, what + ": " + why);
}

}  // namespace

std::string_view syscall_mechanism_name(SyscallMechanism m) { return m == SyscallMechanism::Seccomp ? "seccomp" : "sud"; }

std::optional<SyscallMechanism> syscall_mechanism_from_name(std::string_view name) {
  if (name == "sud") return SyscallMechanism::Sud;
  if (name == "seccomp") return SyscallMechanism::Seccomp;
  return std::nullopt;
}

std::string agent_spec_to_json(const AgentSpec& s) {
  nlohmann::ordered_json j;
  j["object"] = s.object;
  j["name"] = s.name;
  if (s.prog_type) j["prog_type"] = *s.prog_type;
  j["section_types"] = s.section_types;
  j["target_btf"] = s.target_btf;
  nlohmann::json sets = nlohmann::json::array();
  for (const auto& [n, v] : s.sets) sets.push_back({n, v});
  j["sets"] = sets;
  nlohmann::json at = nlohmann::json::array();
  for (const auto& a : s.attach) at.push_back({a.program, a.spec});
  j["attach"] = at;
  j["engine"] = static_cast<int>(s.engine);
  j["verify"] = s.verify;
  j["rules"] = static_cast<int>(s.rules);
  j["pin_dir"] = s.pin_dir;
  j["socket"] = s.socket;
  j["control"] = s.control;
  j["syscalls"] = std::string(syscall_mechanism_name(s.syscalls));
  j["rewrite_sites"] = s.rewrite_sites;
  return j.dump();
}

Result<AgentSpec> agent_spec_from_json(std::string_view text) {
  try {
    auto j = nlohmann::json::parse(text);
    AgentSpec s;
    s.object = j.at("object").get<std::string>();
    s.name = j.value("name", "");
    if (j.contains("prog_type")) s.prog_type = j["prog_type"].get<uint32_t>();
    s.section_types = j.value("section_types", std::map<std::string, uint32_t>{});
    s.target_btf = j.value("target_btf", "");
    for (const auto& p : j.value("sets", nlohmann::json::array()))
      s.sets.emplace_back(p.at(0).get<std::string>(), p.at(1).get<std::string>());
    for (const auto& p : j.value("attach", nlohmann::json::array()))
      s.attach.push_back(AttachRequest{p.at(0).get<std::string>(), p.at(1).get<std::string>()});
    int engine = j.value("engine", 0), rules = j.value("rules", 0);
    if (engine < 0 || engine > 2) return bad("agent spec", "bad engine");
    if (rules < 0 || rules > 1) return bad("agent spec", "bad rule set");
    s.engine = static_cast<EngineChoice>(engine);
    s.rules = static_cast<RuleSet>(rules);
    s.verify = j.value("verify", true);
    s.pin_dir = j.at("pin_dir").get<std::string>();
    s.socket = j.value("socket", "");
    s.control = j.value("control", "");
    std::string mech = j.value("syscalls", std::string(syscall_mechanism_name(SyscallMechanism::Sud)));
    auto m = syscall_mechanism_from_name(mech);
    if (!m) return bad("agent spec", "unknown syscall mechanism '" + mech + "' (sud or seccomp)");
    s.syscalls = *m;
    s.rewrite_sites = j.value("rewrite_sites", true);
    return s;
  } catch (const std::exception& e) {
    return bad("agent spec", e.what());
  }
}

std::string agent_message_to_json(const AgentMessage& m) {
  nlohmann::ordered_json j;
  j["k"] = static_cast<int>(m.kind);
  j["pid"] = m.pid;
  if (m.tid) j["tid"] = m.tid;
  if (!m.comm.empty()) j["comm"] = m.comm;
  if (!m.text.empty()) j["text"] = m.text;
  if (m.attached) j["attached"] = m.attached;
  if (m.pending) j["pending"] = m.pending;
  // Program output may hold any byte: replace what is not UTF-8 rather than fail.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<AgentMessage> agent_message_from_json(std::string_view text) {
  try {
    auto j = nlohmann::json::parse(text);
    AgentMessage m;
    int k = j.at("k").get<int>();
    if (k < 0 || k > static_cast<int>(AgentMessage::Kind::Fault)) return bad("agent message", "unknown kind");
    m.kind = static_cast<AgentMessage::Kind>(k);
    m.pid = j.value("pid", 0);
    m.tid = j.value("tid", 0);
    m.comm = j.value("comm", "");
    m.text = j.value("text", "");
    m.attached = j.value("attached", 0u);
    m.pending = j.value("pending", 0u);
    return m;
  } catch (const std::exception& e) {
    return bad("agent message", e.what());
  }
}

}  // namespace bpfvm
