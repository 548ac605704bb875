// bpfvm trace OBJ [--section S]... [--attach PROG=SPEC]... [--set NAME=VALUE]... [--btf FILE]
//                 [--pinmaps DIR] [--event-type [MAP=]TYPE]... [-j] [--duration SEC] [--mode ptrace]
//                 [--no-seccomp]
//                 [--engine interp|jit] [--no-verify] [--strict] (-p PID | -- CMD [ARGS...])
// Attaches the object's tracing programs to system-call events of the command (or process) and runs
// it: printk lines and ring-buffer / perf records as they happen, the object's maps at the end.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <cstring>
#include <map>
#include <optional>

#include "bpfvm/btf_format.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/packet.hpp"
#include "bpfvm/trace.hpp"
#include "cli.hpp"
#include "input.hpp"
#include "trace_agent.hpp"

namespace bpfvm::cli {
namespace {

struct TraceOpts {
  std::string object;
  InputSpec input;  // --type, --btf, --set (the object's path is `object`)
  std::vector<std::string> sections;
  std::vector<std::string> attach;
  std::string pinmaps;
  std::vector<std::string> event_types;  // TYPE (every record) or MAP=TYPE
  bool json = false;
  double duration = 0;
  std::string mode = "auto";
  std::string agent_syscalls = "sud";
  bool trap_only = false;
  bool no_seccomp = false;
  int pid = 0;
  std::vector<std::string> command;
  std::optional<EngineKind> engine;
  VerifyFlags verify;
};

std::vector<int> bytes_json(std::span<const uint8_t> d) { return std::vector<int>(d.begin(), d.end()); }

// The BTF types that records are decoded with (--event-type), from the object's BTF.
struct EventTypes {
  const struct btf* btf = nullptr;
  std::optional<NamedBtfType> every;  // --event-type TYPE
  std::map<std::string, NamedBtfType, std::less<>> by_map;  // --event-type MAP=TYPE
  const NamedBtfType* for_map(std::string_view map) const {
    auto it = by_map.find(map);
    if (it != by_map.end()) return &it->second;
    return every ? &*every : nullptr;
  }
};

Result<EventTypes> event_types(const Object& obj, const std::vector<std::string>& specs) {
  EventTypes et;
  if (specs.empty()) return et;
  et.btf = static_cast<const struct btf*>(obj.btf_handle());
  if (!et.btf) return make_error(ErrorCode::InvalidArgument, "--event-type: the object has no BTF to decode records with");
  for (const auto& spec : specs) {
    auto eq = spec.find('=');
    std::string map = eq == std::string::npos ? "" : spec.substr(0, eq);
    std::string type = eq == std::string::npos ? spec : spec.substr(eq + 1);
    if (type.rfind("struct ", 0) == 0) type = type.substr(7);
    if (type.empty() || (eq != std::string::npos && map.empty()))
      return make_error(ErrorCode::InvalidArgument, "--event-type: '" + spec + "' is not TYPE or MAP=TYPE");
    if (!map.empty() && obj.find_map(map) < 0)
      return make_error(ErrorCode::InvalidArgument, "--event-type: the object has no map '" + map + "'");
    auto t = find_btf_type(et.btf, type);
    if (!t) return make_error(ErrorCode::InvalidArgument, "--event-type: " + t.error().message);
    if (map.empty()) et.every = *t;
    else et.by_map[map] = *t;
  }
  return et;
}

// A record decoded by its BTF type (compact JSON, or bpftool's plain text laid out as its dumps);
// nullopt when no type is given for its map. A record shorter than the type (a variable-length
// record, as execsnoop's, sent without its unused tail) is decoded as if the rest were zeros.
std::optional<std::string> decode_record(const TraceRecord& r, const EventTypes* et, bool plain) {
  const NamedBtfType* t = et ? et->for_map(r.map) : nullptr;
  if (!t || r.lost) return std::nullopt;
  std::vector<uint8_t> padded;
  std::span<const uint8_t> data = r.data;
  if (data.size() < t->size) {
    padded.assign(data.begin(), data.end());
    padded.resize(t->size, 0);
    data = padded;
  }
  BtfJsonWriter w(plain);
  if (!format_btf_value(w, et->btf, t->id, data, plain)) return std::nullopt;
  return w.str();
}

void print_record(const TraceRecord& r, bool json, const EventTypes* et = nullptr) {
  if (json) {
    nlohmann::ordered_json j;
    j["type"] = r.lost ? 2 : 9;  // PERF_RECORD_LOST / PERF_RECORD_SAMPLE, as bpftool's event_pipe
    j["cpu"] = r.cpu;
    j["index"] = r.index;
    if (r.lost) {
      j["lost"] = {{"id", 0}, {"count", r.lost}};
    } else {
      j["timestamp"] = r.timestamp;
      j["data"] = bytes_json(r.data);
    }
    j["map"] = std::string(r.map);
    if (auto f = decode_record(r, et, false)) {
      try {
        j["formatted"] = nlohmann::ordered_json::parse(*f);
      } catch (const nlohmann::json::exception&) {  // a float that is not a number
        j["formatted"] = {{"error", "not valid JSON: " + *f}};
      }
    }
    std::printf("%s\n", j.dump().c_str());
  } else if (r.lost) {
    std::printf("== @%llu.%09llu CPU: %d index: %u map: %.*s =====\nlost %llu events\n",
                static_cast<unsigned long long>(r.timestamp / 1000000000ull),
                static_cast<unsigned long long>(r.timestamp % 1000000000ull), r.cpu, r.index,
                static_cast<int>(r.map.size()), r.map.data(), static_cast<unsigned long long>(r.lost));
  } else {
    std::printf("== @%llu.%09llu CPU: %d index: %u map: %.*s =====\n",
                static_cast<unsigned long long>(r.timestamp / 1000000000ull),
                static_cast<unsigned long long>(r.timestamp % 1000000000ull), r.cpu, r.index,
                static_cast<int>(r.map.size()), r.map.data());
    if (auto f = decode_record(r, et, true)) {
      std::printf("%s\n", f->c_str());
    } else {
      std::string hex;
      for (size_t i = 0; i < r.data.size(); ++i) hex += fmt::format("{}{:02x}", i ? " " : "", r.data[i]);
      std::printf("%s\n", hex.c_str());
    }
  }
  std::fflush(stdout);
}

void print_printk(std::string_view msg, bool json) {
  std::string m(msg);
  while (!m.empty() && m.back() == '\n') m.pop_back();
  TracedTask* t = current_traced_task();
  if (json) {
    nlohmann::ordered_json j;
    j["printk"] = m;
    if (t) j["pid"] = t->tgid();
    std::printf("%s\n", j.dump().c_str());
  } else if (t) {
    char comm[16];
    t->comm(comm);
    std::printf("%s-%u bpf_trace_printk: %s\n", comm, t->tid(), m.c_str());
  } else {
    std::printf("bpf_trace_printk: %s\n", m.c_str());
  }
  std::fflush(stdout);
}

// A printk line reported by the agent: the same form, for the thread that printed it.
void print_agent_printk(const AgentMessage& m, bool json) {
  std::string msg = m.text;
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  if (json) {
    nlohmann::ordered_json j;
    j["printk"] = msg;
    j["pid"] = m.pid;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s-%d bpf_trace_printk: %s\n", m.comm.c_str(), m.tid, msg.c_str());
  }
  std::fflush(stdout);
}

// The object's maps at the end (global data aside): as `bpfvm xdp` prints them, or one JSON object
// per map with its entries (keys and values as byte arrays; per-CPU values: every CPU's slot).
void print_maps(const LoadedObject& live, bool json) {
  bool any = false;
  for (size_t i = 0; i < live.maps.size(); ++i) {
    if (live.object->maps[i].is_global_data()) continue;
    Map& m = *live.maps[i];
    if (json) {
      nlohmann::ordered_json j;
      j["map"] = m.spec().name;
      j["type"] = map_type_name(m.spec().type);
      nlohmann::ordered_json entries = nlohmann::json::array();
      const MapSpec& s = m.spec();
      bool listable = s.type == kMapArray || s.type == kMapPercpuArray || s.type == kMapHash ||
                      s.type == kMapPercpuHash || s.type == kMapLruHash || s.type == kMapLruPercpuHash;
      if (listable) {
        std::vector<uint8_t> key(s.key_size), next(s.key_size), value(std::max<size_t>(m.user_value_size(), 8));
        bool first = true;
        while (m.get_next_key(first ? nullptr : key.data(), next.data()) == 0) {
          first = false;
          key = next;
          if (m.lookup_copy(key.data(), value.data(), 0) != 0) continue;
          entries.push_back({{"key", bytes_json(key)},
                             {"value", bytes_json(std::span<const uint8_t>(value.data(), m.user_value_size()))}});
        }
        j["entries"] = entries;
      }
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    if (!any) std::printf("maps:\n");
    any = true;
    std::string text = format_map_contents(m);
    for (size_t p = text.find("\n  "); p != std::string::npos; p = text.find("\n  ", p + 3)) text.insert(p + 1, "  ");
    std::printf("  %s", text.c_str());
  }
  std::fflush(stdout);
}

// Which event source runs the requests: the agent for probes in user code (and for system calls with
// --mode agent), ptrace for system calls by default (docs/tracing.md, "System calls in the agent":
// why auto keeps ptrace for them). Returns "agent" or "ptrace", or an error when the mode cannot do
// what is asked.
Result<std::string> choose_mode(const TraceOpts& o, const Object& obj, const std::vector<AttachRequest>& requests) {
  std::vector<AttachRequest> reqs = requests;
  if (reqs.empty())
    for (const auto& p : obj.programs) reqs.push_back(AttachRequest{p.name, ""});
  std::string user, sys;
  for (const auto& r : reqs) {
    const ObjectProgram* prog = obj.find_program(r.program);
    if (!prog) continue;  // SyscallHooks::create names it
    auto pt = r.spec.empty() ? program_attach_point(*prog) : parse_attach_spec(r.spec);
    if (!pt) continue;  // likewise
    (pt->in_user_code() ? user : sys) = prog->name;
  }
  // A request that names nothing or no program is refused by SyscallHooks::create with the reason,
  // whichever mode runs it.
  if (user.empty() && sys.empty()) return std::string(o.mode == "agent" ? "agent" : "ptrace");
  if (o.mode == "ptrace") {
    if (!user.empty())
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("program {}: probes in user code run in the agent (--mode agent or auto), not in "
                                    "ptrace mode", user));
    return std::string("ptrace");
  }
  if (o.mode == "agent") {
    if (o.pid != 0 && !sys.empty())
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("program {}: system-call programs in a running process (-p) run in ptrace mode "
                                    "(--mode ptrace or auto); the agent's system-call hooks are for commands it starts",
                                    sys));
    return std::string("agent");
  }
  if (!user.empty()) return std::string("agent");
  return std::string("ptrace");
}

int trace_agent_mode(const TraceOpts& o, const Object& obj, SyscallHooksOptions& ho, const LoadOptions& lo,
                     const EventTypes* et) {
  const bool json = o.json;
  AgentTraceOptions ao;
  ao.spec.pin_dir = o.pinmaps;  // "": a private directory
  // Absolute: a process the command starts in another directory loads the agent too.
  ao.spec.object = std::filesystem::absolute(o.object).string();
  ao.spec.name = lo.name;
  ao.spec.prog_type = lo.prog_type;
  for (const auto& [s, t] : lo.section_types) ao.spec.section_types[s] = t;
  ao.spec.target_btf = lo.target_btf.empty() ? "" : std::filesystem::absolute(lo.target_btf).string();
  for (const auto& s : o.input.sets) {
    auto eq = s.find('=');
    ao.spec.sets.emplace_back(s.substr(0, eq), s.substr(eq + 1));
  }
  ao.spec.attach = ho.attach;
  ao.spec.engine = ho.prepare.engine;
  ao.spec.verify = ho.prepare.verify;
  ao.spec.rules = ho.prepare.rules;
  ao.spec.syscalls = *syscall_mechanism_from_name(o.agent_syscalls);
  ao.spec.rewrite_sites = !o.trap_only;
  bool syscall_programs = false;
  std::vector<AttachRequest> reqs = ho.attach;
  if (reqs.empty())
    for (const auto& p : obj.programs) reqs.push_back(AttachRequest{p.name, ""});
  for (const auto& r : reqs)
    if (const ObjectProgram* prog = obj.find_program(r.program)) {
      auto pt = r.spec.empty() ? program_attach_point(*prog) : parse_attach_spec(r.spec);
      syscall_programs |= pt && !pt->in_user_code();
    }
  if (syscall_programs && ao.spec.syscalls == SyscallMechanism::Seccomp && o.pid != 0)
    return fail(kUsage, "--agent-syscalls seccomp: a filter installed in a running process covers only the thread "
                        "that installs it and never leaves; use sud with -p");
  if (syscall_programs && ao.spec.syscalls == SyscallMechanism::Seccomp)
    std::fprintf(stderr, "bpfvm: note: --agent-syscalls seccomp: the filter stays across exec; a program the command "
                         "executes is killed (SIGSYS) if its dynamic loader makes a traced system call before the "
                         "agent is loaded there (sud has no such limit)\n");
  ao.command = o.command;
  ao.pid = o.pid;
  ao.duration = o.duration;
  ao.note = [](const std::string& m) { std::fprintf(stderr, "bpfvm: %s\n", m.c_str()); };
  ao.printk = [json](const AgentMessage& m) { print_agent_printk(m, json); };
  ao.record = [json, et](const TraceRecord& r) { print_record(r, json, et); };
  std::unique_ptr<SyscallHooks> hooks;
  std::string rejection;
  ho.prepare.rejection = &rejection;
  auto res = run_agent_trace(obj, ho, ao, hooks);
  if (!res) {
    if (res.error().code == ErrorCode::Verify && !rejection.empty()) return fail_rejection(rejection);
    return fail(res.error().code == ErrorCode::Io ? kUsage : kFailed, res.error(), o.object);
  }
  if (hooks) hooks->set_record_sink(nullptr);
  if (!res->started) {
    std::fprintf(stderr, "bpfvm: %s\n", res->start_error.c_str());
    return 127;
  }
  print_maps(hooks->loaded(), json);
  return res->exit_code;
}

int trace_command(const TraceOpts& o) {
  if (o.pid == 0 && o.command.empty()) return fail(kUsage, "trace: give a command after -- or a process with -p PID");
  if (o.pid != 0 && !o.command.empty()) return fail(kUsage, "trace: give either -p PID or a command, not both");
  auto lo = load_options(o.input);
  if (!lo) return fail(kUsage, lo.error());
  auto obj = load_object_file(o.object, *lo);
  if (!obj) {
    if (obj.error().code == ErrorCode::Io) return fail(kUsage, obj.error());
    return fail(kFailed, obj.error(), o.object);
  }
  if (Status st = apply_sets(o.input, *obj); !st) return fail(kUsage, st.error(), o.object);
  auto types = event_types(*obj, o.event_types);
  if (!types) return fail(kUsage, types.error(), o.object);
  SyscallHooksOptions ho;
  for (const auto& s : o.sections) ho.attach.push_back(AttachRequest{s, ""});
  for (const auto& a : o.attach) {
    auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      return fail(kUsage, "--attach: '" + a + "' is not PROG=SPEC");
    ho.attach.push_back(AttachRequest{a.substr(0, eq), a.substr(eq + 1)});
  }
  ho.prepare = prepare_options(o.engine, o.verify);
  ho.btf = o.input.btf;
  ho.pin_maps_dir = o.pinmaps;
  auto mode = choose_mode(o, *obj, ho.attach);
  if (!mode) return fail(kFailed, mode.error(), o.object);
  if (*mode == "agent") {
    if (o.mode == "auto")
      std::fprintf(stderr, "bpfvm: mode: agent (the object probes user code; the programs run inside %s)\n",
                   o.command.empty() ? "the process" : o.command[0].c_str());
    return trace_agent_mode(o, *obj, ho, *lo, &*types);
  }
  std::string rejection;
  ho.prepare.rejection = &rejection;
  auto hooks = SyscallHooks::create(*obj, ho);
  if (!hooks) {
    if (hooks.error().code == ErrorCode::Verify && !rejection.empty()) return fail_rejection(rejection);
    return fail(kFailed, hooks.error(), o.object);
  }
  auto& h = **hooks;
  if (!o.pinmaps.empty())
    for (const auto& m : obj->maps)
      if (!m.is_global_data() && !map_type_pinnable(m.spec.type))
        std::fprintf(stderr, "bpfvm: map %s (%s) is not pinned: maps of that type do not live in the map store\n",
                     m.spec.name.c_str(), map_type_name(m.spec.type));
  const bool json = o.json;
  set_printk_sink([json](std::string_view m) { print_printk(m, json); });
  const EventTypes* et = &*types;
  h.set_record_sink([json, et](const TraceRecord& r) { print_record(r, json, et); });

  PtraceOptions popt;
  popt.argv = o.command;
  popt.pid = o.pid;
  popt.duration = o.duration;
  popt.seccomp = !o.no_seccomp;
  popt.note = [](const std::string& m) { std::fprintf(stderr, "bpfvm: %s\n", m.c_str()); };
  auto res = run_ptrace(h, popt);
  h.drain();
  set_printk_sink(nullptr);
  if (!res) return fail(kUsage, res.error());
  for (const auto& e : h.run_errors()) std::fprintf(stderr, "bpfvm: %s\n", e.c_str());
  if (o.pid == 0 && !res->started) {
    std::fprintf(stderr, "bpfvm: %s\n",
                 res->start_error.empty() ? ("cannot run " + o.command[0]).c_str() : res->start_error.c_str());
    return 127;
  }
  print_maps(h.loaded(), json);
  return res->exit_code;
}

RegisterCommand reg_trace("trace", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<TraceOpts>();
  auto* cmd = app.add_subcommand("trace", "Run tracing programs on the system calls of a command or a process "
                                          "(tracepoints, raw tracepoints, syscall kprobes; ptrace)");
  cmd->add_option("object", o->object, "BPF ELF object")->required();
  // One value per occurrence: a repeatable option must not swallow the `--` before the command.
  cmd->add_option("--section", o->sections, "Attach only this program (function or section name); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--attach", o->attach, "Attach program PROG to SPEC (libbpf section syntax); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--pinmaps", o->pinmaps,
                  "Pin the object's maps at DIR/NAME (on tmpfs) so that they outlive the trace (bpfvm map dump "
                  "pinned DIR/NAME)")
      ->type_name("DIR");
  cmd->add_option("--event-type", o->event_types,
                  "Decode ring-buffer/perf records with this BTF type of the object (struct name), for every map "
                  "or as MAP=TYPE for one; repeatable")
      ->type_name("[MAP=]TYPE")
      ->allow_extra_args(false);
  cmd->add_flag("-j,--json", o->json, "JSON lines: records as bpftool's event_pipe -j, printk, maps");
  cmd->add_option("--duration", o->duration, "Stop tracing after SEC seconds and detach (the command keeps running)");
  add_choice_option(cmd, "--mode", o->mode, {"auto", "agent", "ptrace"},
                    "Event source: agent (in the process: uprobes, USDT, system calls), ptrace (system calls), "
                    "auto (default: by the object's programs)");
  add_choice_option(cmd, "--agent-syscalls", o->agent_syscalls, {"sud", "seccomp"},
                    "Agent mode: how system calls reach the programs: sud (Syscall User Dispatch, default) or "
                    "seccomp (a filter trapping the traced syscalls; it outlives exec)");
  cmd->add_flag("--trap-only", o->trap_only,
                "Agent mode: rewrite no syscall site into a jump; every traced syscall traps (SIGSYS)");
  cmd->add_flag("--no-seccomp", o->no_seccomp, "Stop at every system call (no seccomp filter in the command)");
  auto* p = cmd->add_option("-p,--pid", o->pid, "Trace a running process (every thread); detaching leaves it running");
  auto* c = cmd->add_option("command", o->command, "The command to run, after --");
  p->excludes(c);
  add_engine_option(cmd, o->engine);
  add_verify_options(cmd, o->verify);
  add_load_options(cmd, o->input, "Program type for every program (bpftool name)");
  cmd->callback([o, &run] { run = [o] { return trace_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
