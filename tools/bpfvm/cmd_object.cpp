// bpfvm object show OBJ [-j]: what an ELF object holds (programs, maps), as the loader sees it.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "cli.hpp"

namespace bpfvm::cli {
namespace {

struct ShowOpts {
  std::string path;
  bool json = false;
  std::string type;
};

std::string map_type_str(uint32_t type) {
  const char* n = map_type_name(type);
  return n && *n ? std::string(n) : "type_" + std::to_string(type);
}

int show_command(const ShowOpts& o) {
  LoadOptions lo;
  if (!o.type.empty()) {
    auto t = prog_type_from_name(o.type);
    if (!t) return fail(kUsage, unknown_type_message("--type", o.type));
    lo.prog_type = *t;
  }
  std::string bytes, err;
  if (!read_file(o.path, bytes, err)) return fail(kUsage, err);
  auto obj = load_object(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), lo, o.path);
  if (!obj) {
    if (obj.error().code == ErrorCode::Io) return fail(kUsage, obj.error());
    return fail(kFailed, obj.error(), o.path);
  }
  if (o.json) {
    nlohmann::ordered_json j;
    j["programs"] = nlohmann::ordered_json::array();
    for (const auto& p : obj->programs)
      j["programs"].push_back({{"section", p.section}, {"name", p.name}, {"type", p.type_name()}, {"insns", p.slots()}});
    j["maps"] = nlohmann::ordered_json::array();
    for (const auto& m : obj->maps)
      j["maps"].push_back({{"name", m.spec.name},
                           {"type", map_type_str(m.spec.type)},
                           {"key_size", m.spec.key_size},
                           {"value_size", m.spec.value_size},
                           {"max_entries", m.spec.max_entries},
                           {"flags", m.spec.flags}});
    std::printf("%s\n", j.dump().c_str());
    return kOk;
  }
  size_t ws = 7, wn = 4, wt = 4;
  for (const auto& p : obj->programs) {
    ws = std::max(ws, p.section.size());
    wn = std::max(wn, p.name.size());
    wt = std::max(wt, p.type_name().size());
  }
  std::printf("programs: %zu\n", obj->programs.size());
  if (!obj->programs.empty()) {
    std::printf("  %-*s  %-*s  %-*s  %s\n", int(ws), "section", int(wn), "name", int(wt), "type", "insns");
    for (const auto& p : obj->programs) {
      std::string extra;
      if (p.functions.size() > 1) extra = "  (" + std::to_string(p.own_slots) + " own + " +
                                          std::to_string(p.functions.size() - 1) + " subprogram" +
                                          (p.functions.size() > 2 ? "s" : "") + ")";
      std::printf("  %-*s  %-*s  %-*s  %zu%s\n", int(ws), p.section.c_str(), int(wn), p.name.c_str(), int(wt),
                  p.type_name().c_str(), p.slots(), extra.c_str());
    }
  }
  size_t mn = 4, mt = 4;
  for (const auto& m : obj->maps) {
    mn = std::max(mn, m.spec.name.size());
    mt = std::max(mt, map_type_str(m.spec.type).size());
  }
  std::printf("maps: %zu\n", obj->maps.size());
  if (!obj->maps.empty()) {
    std::printf("  %-*s  %-*s  %8s  %10s  %11s  %-10s  %s\n", int(mn), "name", int(mt), "type", "key_size", "value_size",
                "max_entries", "flags", "from");
    for (const auto& m : obj->maps) {
      std::string flags = "0x" + fmt::format("{:x}", m.spec.flags);
      std::string from = m.section;
      if (m.spec.inner) from += ", inner " + map_type_str(m.spec.inner->type);
      if (m.spec.spin_lock_off >= 0) from += ", spin_lock@" + std::to_string(m.spec.spin_lock_off);
      if (m.frozen) from += ", frozen";
      std::printf("  %-*s  %-*s  %8u  %10u  %11u  %-10s  %s\n", int(mn), m.spec.name.c_str(), int(mt),
                  map_type_str(m.spec.type).c_str(), m.spec.key_size, m.spec.value_size, m.spec.max_entries,
                  flags.c_str(), from.c_str());
    }
  }
  std::printf("license: %s\n", obj->license.empty() ? "(none)" : obj->license.c_str());
  if (obj->kernel_version)
    std::printf("kernel version: %u.%u.%u\n", *obj->kernel_version >> 16, (*obj->kernel_version >> 8) & 0xff,
                *obj->kernel_version & 0xff);
  std::printf("btf: %s\n", obj->has_btf ? (obj->has_btf_ext ? "yes (with line info)" : "yes") : "no");
  return kOk;
}

RegisterCommand reg_object("object", [](CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("object", "Inspect BPF ELF objects");
  cmd->require_subcommand(1);
  auto o = std::make_shared<ShowOpts>();
  auto* show = cmd->add_subcommand("show", "List the programs and maps of an object");
  show->add_option("file", o->path, "BPF ELF object (clang -target bpf)")->required();
  show->add_flag("-j,--json", o->json, "One JSON object {programs:[...], maps:[...]}");
  show->add_option("--type", o->type, "Program type for every program (bpftool name, e.g. xdp, sched_cls)");
  show->callback([o, &run] { run = [o] { return show_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
