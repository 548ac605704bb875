// bpfvm prog VERB ...: bpftool's program verbs over pinned programs (docs/cli.md "bpfvm prog").
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/pinned_prog.hpp"
#include "bpfvm/progtype.hpp"
#include "cli.hpp"
#include "map_ref.hpp"
#include "verbs.hpp"

namespace bpfvm::cli {
namespace {

using json = nlohmann::ordered_json;

using Ctx = VerbCtx;

bool mkdirs(const std::string& dir) {
  std::string cur;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t next = dir.find('/', pos);
    if (next == std::string::npos) next = dir.size();
    cur = dir.substr(0, next);
    if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
    pos = next + 1;
  }
  return true;
}

// PROG: `pinned FILE`.
Result<OpenedProgram> open_prog_ref(const std::vector<std::string>& a, size_t* i) {
  if (*i + 1 >= a.size() || a[*i] != "pinned")
    return make_error(ErrorCode::InvalidArgument, "PROG expected: pinned FILE");
  std::string path = a[*i + 1];
  *i += 2;
  PrepareOptions po;
  po.rules = RuleSet::Privileged;  // as bpftool run by root
  return open_pinned_program(path, po);
}

// ---- loadall --------------------------------------------------------------------------------------
int cmd_loadall(Ctx& c) {
  auto& a = c.args;
  if (a.size() < 2)
    return c.error(kUsage, "prog loadall OBJ DIR [type TYPE] [pinmaps MAPDIR] [btf FILE] [set NAME=VALUE]...");
  const std::string obj_path = a[0], dir = a[1];
  PinnedProgramSpec base;
  for (size_t i = 2; i < a.size(); i += 2) {
    if (i + 1 >= a.size()) return c.error(kUsage, "missing value after '" + a[i] + "'");
    if (a[i] == "type") {
      auto t = prog_type_from_name(a[i + 1]);
      if (!t) return c.error(kUsage, "unknown program type '" + a[i + 1] + "'");
      base.type = *t;
    } else if (a[i] == "btf") {
      base.btf = a[i + 1];
      if (access(base.btf.c_str(), R_OK) != 0) return c.error(kUsage, "btf " + base.btf + ": " + std::strerror(errno));
    } else if (a[i] == "set") {
      auto eq = a[i + 1].find('=');
      if (eq == std::string::npos || eq == 0) return c.error(kUsage, "set " + a[i + 1] + ": expected NAME=VALUE");
      base.sets.emplace_back(a[i + 1].substr(0, eq), a[i + 1].substr(eq + 1));
    } else if (a[i] == "pinmaps") {
      base.pin_maps_dir = a[i + 1];
    } else {
      return c.error(kUsage, "unknown argument '" + a[i] + "' to prog loadall");
    }
  }
  std::string bytes, e;
  if (!read_file(obj_path, bytes, e)) return c.error(kUsage, e);
  std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  auto obj = load_for_pinning(span, base, obj_path);
  if (!obj) return c.error(obj.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed, obj.error().to_string());
  if (!base.pin_maps_dir.empty() && !mkdirs(base.pin_maps_dir))
    return c.error(kFailed, "cannot create " + base.pin_maps_dir + ": " + std::strerror(errno));
  if (!mkdirs(dir)) return c.error(kFailed, "cannot create " + dir + ": " + std::strerror(errno));
  // Maps first (pinned as asked), then every program verified against them before any is pinned.
  InstantiateOptions io;
  io.pin_all_dir = base.pin_maps_dir;
  auto live = instantiate_with(*obj, io);
  if (!live) return c.error(kFailed, live.error().message);
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  std::string rejection;
  po.rejection = &rejection;
  for (const ObjectProgram& p : obj->programs) {
    auto prep = prepare_program(p, *live, nullptr, po);
    if (!prep) return c.error(kFailed, rejection.empty() ? prep.error().to_string() : rejection);
  }
  for (const ObjectProgram& p : obj->programs) {
    PinnedProgramSpec s = base;
    s.function = p.name;
    auto r = pin_program(span, s, dir + "/" + p.name);
    if (!r) return c.error(kFailed, r.error().message);
  }
  return c.done();
}

// ---- show / list ----------------------------------------------------------------------------------
json show_json(const OpenedProgram& op) {
  const ObjectProgram& p = *op.program;
  struct stat st;
  uint64_t id = stat(op.path.c_str(), &st) == 0 ? uint64_t(st.st_ino) : 0;
  json j;
  j["id"] = id;
  j["type"] = p.type_name();
  j["name"] = p.name;
  j["tag"] = program_tag(p);
  j["gpl_compatible"] = op.object->license.find("GPL") != std::string::npos ||
                        op.object->license == "Dual BSD/GPL" || op.object->license == "Dual MIT/GPL";
  j["bytes_xlated"] = p.insns.size() * 8;
  json maps = json::array();
  for (uint32_t mi : p.maps_used) {
    const auto& m = op.live->maps[mi];
    maps.push_back(m->shared() ? json(m->store_id()) : json(nullptr));
  }
  j["map_ids"] = maps;
  j["pinned"] = json::array({op.path});
  return j;
}
void show_text(const OpenedProgram& op) {
  json j = show_json(op);
  std::printf("%llu: %s  name %s  tag %s%s\n", (unsigned long long)j["id"].get<uint64_t>(), j["type"].get<std::string>().c_str(),
              j["name"].get<std::string>().c_str(), j["tag"].get<std::string>().c_str(),
              j["gpl_compatible"].get<bool>() ? "  gpl" : "");
  std::string ids;
  for (const auto& m : j["map_ids"]) ids += (ids.empty() ? "" : ",") + (m.is_null() ? std::string("private") : std::to_string(m.get<uint64_t>()));
  std::printf("\txlated %lluB", (unsigned long long)j["bytes_xlated"].get<uint64_t>());
  if (!ids.empty()) std::printf("  map_ids %s", ids.c_str());
  std::printf("\n\tpinned %s\n", op.path.c_str());
}

std::vector<std::string> list_program_files(const std::string& root) {
  return find_files_starting_with(root, "{\"format\":\"bpfvm-prog\"");
}

int cmd_show(Ctx& c) {
  if (!c.args.empty()) {
    size_t i = 0;
    auto op = open_prog_ref(c.args, &i);
    if (!op) return c.error(kFailed, op.error().message);
    if (c.as_json) c.print(show_json(*op)); else show_text(*op);
    return kOk;
  }
  json all = json::array();
  for (const std::string& p : list_program_files(pin_root())) {
    PrepareOptions po;
    po.rules = RuleSet::Privileged;
    auto op = open_pinned_program(p, po);
    if (!op) {
      std::fprintf(stderr, "bpfvm: %s\n", op.error().message.c_str());
      continue;
    }
    if (c.as_json) all.push_back(show_json(*op)); else show_text(*op);
  }
  if (c.as_json) c.print(all);
  return kOk;
}

// ---- dump xlated | jited ----------------------------------------------------------------------------
int cmd_dump(Ctx& c) {
  auto& a = c.args;
  if (a.empty() || (a[0] != "xlated" && a[0] != "jited")) return c.error(kUsage, "prog dump xlated|jited PROG [opcodes] [linum]");
  const bool jited = a[0] == "jited";
  size_t i = 1;
  auto op = open_prog_ref(a, &i);
  if (!op) return c.error(kFailed, op.error().message);
  bool opcodes = false, linum = false;
  for (; i < a.size(); ++i) {
    if (a[i] == "opcodes") opcodes = true;
    else if (a[i] == "linum") linum = true;
    else return c.error(kUsage, "unexpected argument '" + a[i] + "'");
  }
  DisasmOptions d;
  d.show_raw = opcodes;
  d.helper_name = [](int32_t id) { return HelperSet::kernel().name_of(id); };
  if (jited) {
    auto listing = jit_disassemble(*op->prepared.exe, d);
    if (!listing) return c.error(kFailed, listing.error().to_string());
    if (c.as_json) c.print(json{{"jited", *listing}});
    else std::fputs(listing->c_str(), stdout);
    return kOk;
  }
  const ObjectProgram& p = *op->program;
  std::string out, last;
  json insns = json::array();
  for (size_t pc = 0; pc < p.insns.size(); ++pc) {
    if (p.insns[pc].op == Op::LDDW_HI) continue;
    const SourceLine* sl = p.line_at(pc);
    std::string src;
    if (sl) {
      src = p.source_at(pc);
      if (src != last) {
        if (!linum) {
          // "; text" as bpftool prints it; with linum, "; text [file:line]"
          size_t colon = src.find(": ");
          std::string text = colon == std::string::npos ? src : src.substr(colon + 2);
          out += "; " + text + "\n";
        } else {
          size_t colon = src.find(": ");
          std::string where = colon == std::string::npos ? "" : src.substr(0, colon);
          std::string text = colon == std::string::npos ? src : src.substr(colon + 2);
          out += "; " + text + " [" + where + "]\n";
        }
        last = src;
      }
    }
    std::string line = format_insn(p.insns[pc], int64_t(pc), d);
    out += fmt::format("{:4}: {}\n", pc, line);
    if (c.as_json) insns.push_back(json{{"pc", pc}, {"disasm", line}, {"src", src}});
  }
  if (c.as_json) c.print(insns);
  else std::fputs(out.c_str(), stdout);
  return kOk;
}

// ---- run ------------------------------------------------------------------------------------------
int cmd_run(Ctx& c) {
  auto& a = c.args;
  size_t i = 0;
  auto op = open_prog_ref(a, &i);
  if (!op) return c.error(kFailed, op.error().message);
  std::string data_in, data_out, ctx_in, ctx_out;
  uint64_t repeat = 1;
  for (; i < a.size(); i += 2) {
    if (i + 1 >= a.size()) return c.error(kUsage, "missing value after '" + a[i] + "'");
    const std::string& k = a[i];
    if (k == "data_in") data_in = a[i + 1];
    else if (k == "data_out") data_out = a[i + 1];
    else if (k == "ctx_in") ctx_in = a[i + 1];
    else if (k == "ctx_out") ctx_out = a[i + 1];
    else if (k == "repeat") {
      char* end = nullptr;
      repeat = std::strtoull(a[i + 1].c_str(), &end, 0);
      if (*end || a[i + 1].empty()) return c.error(kUsage, "'" + a[i + 1] + "' is not a number (repeat)");
      if (repeat == 0) repeat = 1;
    } else {
      return c.error(kUsage, "unknown argument '" + k + "' to prog run");
    }
  }
  std::string din, cin, e;
  if (!data_in.empty() && !read_file(data_in, din, e)) return c.error(kUsage, e);
  if (!ctx_in.empty() && !read_file(ctx_in, cin, e)) return c.error(kUsage, e);
  auto r = test_run(op->prepared, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(din.data()), din.size()),
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(cin.data()), cin.size()), repeat - 1);
  if (!r) return c.error(kFailed, r.error().to_string());
  if (!data_out.empty() && !write_file(data_out, r->data_out.data(), r->data_out.size(), e)) return c.error(kUsage, e);
  if (!ctx_out.empty() && !write_file(ctx_out, r->ctx_out.data(), r->ctx_out.size(), e)) return c.error(kUsage, e);
  if (c.as_json) {
    c.print(json{{"retval", r->retval}, {"duration", r->duration_ns}});
  } else {
    std::printf("Return value: %llu, duration%s: %lluns\n", (unsigned long long)r->retval, repeat > 1 ? " (average)" : "",
                (unsigned long long)r->duration_ns);
  }
  return kOk;
}

// ---- pin ------------------------------------------------------------------------------------------
int cmd_pin(Ctx& c) {
  size_t i = 0;
  auto op = open_prog_ref(c.args, &i);
  if (!op) return c.error(kFailed, op.error().message);
  if (i + 1 != c.args.size()) return c.error(kUsage, "prog pin PROG FILE");
  if (link(op->path.c_str(), c.args[i].c_str()) != 0)
    return c.error(kFailed, c.args[i] + ": " + (errno == EEXIST ? std::string("already exists") : std::strerror(errno)));
  return c.done();
}

int run_verb(const std::string& verb, Ctx& c) {
  if (verb == "loadall") return cmd_loadall(c);
  if (verb == "show" || verb == "list") return cmd_show(c);
  if (verb == "dump") return cmd_dump(c);
  if (verb == "run") return cmd_run(c);
  if (verb == "pin") return cmd_pin(c);
  return c.error(kUsage, "unknown prog verb '" + verb + "' (loadall, show, list, dump, run, pin)");
}

RegisterCommand reg_prog("prog", [](CLI::App& app, std::function<int()>& run) {
  register_verb_command(app, run, "prog", "bpftool's program verbs on pinned programs (docs/cli.md)", "loadall, show, dump, run, pin", &run_verb);
}, true);

}  // namespace
}  // namespace bpfvm::cli
