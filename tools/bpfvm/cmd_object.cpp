// bpfvm object show OBJ [-j]: what an ELF object holds (programs, maps), as the loader sees it.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "cli.hpp"
#include "input.hpp"

namespace bpfvm::cli {
namespace {

struct ShowOpts {
  InputSpec input;
  bool json = false;
};

std::string map_type_str(uint32_t type) {
  const char* n = map_type_name(type);
  return n && *n ? std::string(n) : "type_" + std::to_string(type);
}

int show_command(const ShowOpts& o) {
  auto lo = load_options(o.input);
  if (!lo) return fail(kUsage, lo.error());
  std::string bytes, err;
  if (!read_file(o.input.path, bytes, err)) return fail(kUsage, err);
  auto obj = load_object(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), *lo, o.input.path);
  if (!obj) {
    if (obj.error().code == ErrorCode::Io) return fail(kUsage, obj.error());
    return fail(kFailed, obj.error(), o.input.path);
  }
  if (Status st = apply_sets(o.input, *obj); !st) return fail(kUsage, st.error(), o.input.path);
  bool any_failed = false;
  for (const auto& p : obj->programs) any_failed |= !p.ok();
  if (o.json) {
    nlohmann::ordered_json j;
    j["programs"] = nlohmann::ordered_json::array();
    for (const auto& p : obj->programs) {
      nlohmann::ordered_json e = {{"section", p.section}, {"name", p.name}, {"type", p.type_name()}, {"insns", p.slots()}};
      if (p.type_assumed) e["type_assumed"] = true;
      if (!p.attach.kind.empty()) e["attach"] = {{"kind", p.attach.kind}, {"target", p.attach.target}};
      if (!p.ok()) e["error"] = p.error;
      j["programs"].push_back(std::move(e));
    }
    j["maps"] = nlohmann::ordered_json::array();
    for (const auto& m : obj->maps)
      j["maps"].push_back({{"name", m.spec.name},
                           {"type", map_type_str(m.spec.type)},
                           {"key_size", m.spec.key_size},
                           {"value_size", m.spec.value_size},
                           {"max_entries", m.spec.max_entries},
                           {"flags", m.spec.flags},
                           {"pinning", map_pinning_name(m.pinning)}});
    if (!obj->notes.empty()) j["notes"] = obj->notes;
    if (!obj->warnings.empty()) j["warnings"] = obj->warnings;
    std::printf("%s\n", j.dump().c_str());
    return any_failed ? kFailed : kOk;
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
      if (!p.ok()) {
        std::printf("  %-*s  %-*s  %-*s  error: %s\n", int(ws), p.section.c_str(), int(wn), p.name.c_str(), int(wt),
                    p.type_name().c_str(), p.error.c_str());
        continue;
      }
      if (p.type_assumed) extra += "  (type assumed)";
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
      if (m.pinning != MapPinning::None) from += std::string(", pinned ") + map_pinning_name(m.pinning);
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
  if (!obj->target_btf.empty()) std::printf("co-re target btf: %s\n", obj->target_btf.c_str());
  for (const auto& n : obj->notes) std::printf("note: %s\n", n.c_str());
  for (const auto& w : obj->warnings) std::printf("warning: %s\n", w.c_str());
  if (any_failed) {
    size_t n = 0;
    for (const auto& p : obj->programs) n += !p.ok();
    std::fflush(stdout);
    std::fprintf(stderr, "bpfvm: %s: %zu of %zu programs failed to load\n", o.input.path.c_str(), n, obj->programs.size());
  }
  return any_failed ? kFailed : kOk;
}

RegisterCommand reg_object("object", [](CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("object", "Inspect BPF ELF objects");
  cmd->require_subcommand(1);
  auto o = std::make_shared<ShowOpts>();
  auto* show = cmd->add_subcommand("show", "List the programs and maps of an object");
  show->add_option("file", o->input.path, "BPF ELF object (clang -target bpf)")->required();
  show->add_flag("-j,--json", o->json, "One JSON object {programs:[...], maps:[...]}");
  add_load_options(show, o->input, "Program type for every program (bpftool name, e.g. xdp, sched_cls)");
  show->callback([o, &run] { run = [o] { return show_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
