// bpfvm feature probe [kernel|compare] [-j|-p]: what bpfvm supports (program types, map types, helpers
// per program type, ISA versions, JIT features), what the running kernel offers (asked item by item,
// in bpftool's names and JSON shape), or both side by side.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "bpfvm/helpers.hpp"
#include "bpfvm/insn.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/kernel_probe.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/progtype.hpp"
#include "cli.hpp"

namespace bpfvm::cli {
namespace {

using Json = nlohmann::ordered_json;

struct FeatureOpts {
  std::string target;  // "", "kernel", "compare"
  bool json = false;
  bool pretty = false;
};

// One answer: true, false or not known (JSON null).
enum class Tri { Yes, No, Unknown };
Tri tri(kernel::Offer o) {
  return o == kernel::Offer::Yes ? Tri::Yes : o == kernel::Offer::No ? Tri::No : Tri::Unknown;
}
Json tri_json(Tri t) { return t == Tri::Unknown ? Json(nullptr) : Json(t == Tri::Yes); }

struct Item {
  std::string name;
  Tri bpfvm = Tri::Unknown, kernel = Tri::Unknown;
  std::string kernel_detail;  // why the kernel answer is No / Unknown
};

// Kernel program types of the table (bpfvm's own memory type has no kernel counterpart).
std::vector<const ProgTypeInfo*> kernel_prog_types() {
  std::vector<const ProgTypeInfo*> out;
  for (const ProgTypeInfo* t : all_prog_types())
    if (t->type != kProgMem && t->type != kProgUnspec) out.push_back(t);
  return out;
}

std::vector<uint32_t> map_types() {
  std::vector<uint32_t> out;
  for (uint32_t t = 1; t < 64; ++t)
    if (*map_type_name(t)) out.push_back(t);
  return out;
}

// bpfvm supports a map type when it creates one with the kernel's usual parameters for it.
bool bpfvm_has_map_type(uint32_t type) {
  MapSpec s;
  s.type = type;
  s.name = "probe";
  s.key_size = 4;
  s.value_size = 4;
  s.max_entries = 1;
  switch (type) {
    case kMapLpmTrie: s.key_size = 8; s.value_size = 8; s.flags = kMapFNoPrealloc; break;
    case kMapStackTrace: s.value_size = 8; break;
    case kMapQueue: case kMapStack: case kMapBloomFilter: s.key_size = 0; break;
    case kMapRingbuf: case kMapUserRingbuf: s.key_size = 0; s.value_size = 0; s.max_entries = 4096; break;
    case kMapCgroupStorage: case kMapPercpuCgroupStorage: s.key_size = 16; s.max_entries = 0; break;
    case kMapSkStorage: case kMapInodeStorage: case kMapTaskStorage: case kMapCgrpStorage:
      s.max_entries = 0; s.flags = kMapFNoPrealloc; break;
    case kMapArrayOfMaps: case kMapHashOfMaps: {
      auto inner = std::make_shared<MapSpec>();
      inner->type = kMapArray;
      inner->key_size = 4;
      inner->value_size = 4;
      inner->max_entries = 1;
      s.inner = inner;
      break;
    }
    case kMapArena: s.key_size = 0; s.value_size = 0; s.flags = kMapFMmapable; break;
    default: break;
  }
  return static_cast<bool>(create_map(s));
}

// Helpers bpfvm gives a program type: allowed by the type's table and implemented.
bool bpfvm_has_helper(const ProgTypeInfo& t, int32_t id) {
  return t.allows_helper(id) && helper_impl_for(id, t.type) != nullptr;
}

struct Report {
  std::vector<Item> prog_types, maps;
  std::vector<std::pair<std::string, std::vector<Item>>> helpers;  // per program type
};

Report collect(bool want_bpfvm, bool want_kernel) {
  Report r;
  auto types = kernel_prog_types();
  for (const ProgTypeInfo* t : types) {
    Item it{std::string(t->name)};
    if (want_bpfvm) it.bpfvm = Tri::Yes;
    if (want_kernel) {
      auto a = kernel::probe_prog_type(t->type);
      it.kernel = tri(a.offer);
      it.kernel_detail = a.detail;
    }
    r.prog_types.push_back(std::move(it));
  }
  for (uint32_t m : map_types()) {
    Item it{map_type_name(m)};
    if (want_bpfvm) it.bpfvm = bpfvm_has_map_type(m) ? Tri::Yes : Tri::No;
    if (want_kernel) {
      auto a = kernel::probe_map_type(m);
      it.kernel = tri(a.offer);
      it.kernel_detail = a.detail;
    }
    r.maps.push_back(std::move(it));
  }
  for (const ProgTypeInfo* t : types) {
    std::vector<Item> hs;
    bool kernel_type = !want_kernel || kernel::probe_prog_type(t->type).offer == kernel::Offer::Yes;
    for (const HelperProto& p : kernel_helper_protos()) {
      if (p.id <= 0) continue;
      Item it{std::string(p.name)};
      if (want_bpfvm) it.bpfvm = bpfvm_has_helper(*t, p.id) ? Tri::Yes : Tri::No;
      if (want_kernel) {
        if (kernel_type) {
          auto a = kernel::probe_helper(t->type, p.id);
          it.kernel = tri(a.offer);
        }
      }
      hs.push_back(std::move(it));
    }
    r.helpers.emplace_back(std::string(t->name), std::move(hs));
  }
  return r;
}

Json misc_json() {
  Json m;
  m["isa_versions"] = Json::array();
  for (int v = 1; v <= kMaxIsaVersion; ++v) m["isa_versions"].push_back(fmt::format("v{}", v));
  m["have_large_insn_limit"] = true;
  m["have_bounded_loops"] = true;
  for (int v = 2; v <= kMaxIsaVersion; ++v) m[fmt::format("have_v{}_isa_extension", v)] = true;
  return m;
}

Json jit_json() {
  Json j;
  j["arch"] = "x86_64";
  j["engines"] = {"interpreter", "checked_interpreter", "jit"};
  bool bmi2 = jit_set_use_bmi2(true);  // reading the knob: set, then restore
  jit_set_use_bmi2(bmi2);
  j["bmi2"] = bmi2;
  j["constant_blinding"] = true;
  j["batch_entry"] = true;
  return j;
}

void print_json(const Json& j, const FeatureOpts& o) {
  std::printf("%s\n", o.pretty ? j.dump(4).c_str() : j.dump().c_str());
}

// bpftool's shape: program_types / map_types / helpers keyed by name.
Json shape_json(const Report& r, bool kernel) {
  Json j;
  if (kernel) j["syscall_config"] = {{"have_bpf_syscall", true}};
  Json pt = Json::object(), mt = Json::object(), hp = Json::object();
  for (const Item& it : r.prog_types) pt["have_" + it.name + "_prog_type"] = tri_json(kernel ? it.kernel : it.bpfvm);
  for (const Item& it : r.maps) mt["have_" + it.name + "_map_type"] = tri_json(kernel ? it.kernel : it.bpfvm);
  for (const auto& [type, hs] : r.helpers) {
    Json list = Json::array();
    for (const Item& it : hs)
      if ((kernel ? it.kernel : it.bpfvm) == Tri::Yes) list.push_back(it.name);
    hp[type + "_available_helpers"] = list;
  }
  j["program_types"] = pt;
  j["map_types"] = mt;
  j["helpers"] = hp;
  return j;
}

void print_text(const Report& r, bool kernel) {
  auto state = [](Tri t, const std::string& detail) {
    if (t == Tri::Yes) return std::string("is available");
    if (t == Tri::No) return std::string("is NOT available");
    return "is NOT probed" + (detail.empty() ? std::string() : " (" + detail + ")");
  };
  if (kernel) std::printf("Scanning system call availability...\nbpf() syscall is available\n\n");
  std::printf("Scanning eBPF program types...\n");
  for (const Item& it : r.prog_types)
    std::printf("eBPF program_type %s %s\n", it.name.c_str(),
                state(kernel ? it.kernel : it.bpfvm, kernel ? it.kernel_detail : "").c_str());
  std::printf("\nScanning eBPF map types...\n");
  for (const Item& it : r.maps)
    std::printf("eBPF map_type %s %s\n", it.name.c_str(),
                state(kernel ? it.kernel : it.bpfvm, kernel ? it.kernel_detail : "").c_str());
  std::printf("\nScanning eBPF helper functions...\n");
  for (const auto& [type, hs] : r.helpers) {
    std::printf("eBPF helpers supported for program type %s:\n", type.c_str());
    for (const Item& it : hs)
      if ((kernel ? it.kernel : it.bpfvm) == Tri::Yes) std::printf("\t- %s\n", it.name.c_str());
  }
  if (!kernel) {
    std::printf("\nScanning instruction set and engines...\n");
    std::printf("ISA versions: v1 v2 v3 v4\n");
    Json jit = jit_json();
    std::printf("JIT: x86_64 (bmi2 %s, constant blinding, batch entry)\n", jit["bmi2"].get<bool>() ? "used" : "not used");
  }
}

const char* mark(Tri t) { return t == Tri::Yes ? "yes" : t == Tri::No ? "no" : "?"; }

int compare(const Report& r, const FeatureOpts& o) {
  if (o.json) {
    auto rows = [](const std::vector<Item>& items) {
      Json a = Json::array();
      for (const Item& it : items) {
        Json e = {{"name", it.name}, {"bpfvm", tri_json(it.bpfvm)}, {"kernel", tri_json(it.kernel)}};
        if (it.kernel != Tri::Yes && !it.kernel_detail.empty()) e["kernel_detail"] = it.kernel_detail;
        a.push_back(e);
      }
      return a;
    };
    Json j;
    j["program_types"] = rows(r.prog_types);
    j["map_types"] = rows(r.maps);
    Json h = Json::object();
    for (const auto& [type, hs] : r.helpers) {
      std::vector<Item> either;
      for (const Item& it : hs)
        if (it.bpfvm == Tri::Yes || it.kernel == Tri::Yes) either.push_back(it);
      h[type] = rows(either);
    }
    j["helpers"] = h;
    print_json(j, o);
    return kOk;
  }
  std::printf("%-28s %-6s %-6s\n", "program type", "bpfvm", "kernel");
  for (const Item& it : r.prog_types) std::printf("%-28s %-6s %-6s\n", it.name.c_str(), mark(it.bpfvm), mark(it.kernel));
  std::printf("\n%-28s %-6s %-6s\n", "map type", "bpfvm", "kernel");
  for (const Item& it : r.maps) std::printf("%-28s %-6s %-6s\n", it.name.c_str(), mark(it.bpfvm), mark(it.kernel));
  for (const auto& [type, hs] : r.helpers) {
    int both = 0, only_b = 0, only_k = 0;
    std::vector<std::string> diff;
    for (const Item& it : hs) {
      bool b = it.bpfvm == Tri::Yes, k = it.kernel == Tri::Yes;
      if (b && k) ++both;
      else if (b) { ++only_b; diff.push_back(it.name + " (bpfvm only)"); }
      else if (k) { ++only_k; diff.push_back(it.name + " (kernel only)"); }
    }
    std::printf("\nhelpers for %s: %d in both, %d bpfvm only, %d kernel only\n", type.c_str(), both, only_b, only_k);
    for (const auto& d : diff) std::printf("\t- %s\n", d.c_str());
  }
  return kOk;
}

int feature_command(const FeatureOpts& o) {
  if (o.target != "" && o.target != "kernel" && o.target != "compare")
    return fail(kUsage, "feature probe: unknown target '" + o.target + "' (expected kernel or compare)");
  bool kernel = o.target == "kernel" || o.target == "compare";
  if (kernel && !kernel::available())
    return fail(kUsage, "cannot probe the kernel: " + kernel::unavailable_reason() +
                            " (asking the kernel needs CAP_BPF, or root)");
  Report r = collect(o.target != "kernel", kernel);
  if (o.target == "compare") return compare(r, o);
  if (o.json) {
    Json j = shape_json(r, kernel);
    if (!kernel) {
      j["misc"] = misc_json();
      j["jit"] = jit_json();
    }
    print_json(j, o);
    return kOk;
  }
  print_text(r, kernel);
  return kOk;
}

RegisterCommand reg("feature", [](CLI::App& app, std::function<int()>& run) {
  auto* feature = app.add_subcommand("feature", "What bpfvm supports and what the running kernel offers");
  feature->require_subcommand(1);
  auto o = std::make_shared<FeatureOpts>();
  auto* probe = feature->add_subcommand(
      "probe", "List program types, map types and helpers per type: bpfvm's (no argument), the kernel's "
               "('kernel', asked item by item), or both side by side ('compare')");
  probe->add_option("target", o->target, "kernel | compare");
  probe->add_flag("-j,--json", o->json, "JSON output (bpftool's shape)");
  probe->add_flag("-p,--pretty", o->pretty, "pretty-printed JSON (implies -j)");
  probe->callback([&run, o] {
    if (o->pretty) o->json = true;
    run = [o] { return feature_command(*o); };
  });
});

}  // namespace
}  // namespace bpfvm::cli
