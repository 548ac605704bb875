// instantiate(): creates an object's maps and resolves the pseudo lddw forms to addresses.
#include <bpf/btf.h>
#include <fmt/format.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "bpfvm/object.hpp"

namespace bpfvm {

namespace {

// mkdir -p (0755, like bpffs directories); "" or the reason it failed.
std::string make_dirs(const std::string& dir) {
  std::string cur;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t next = dir.find('/', pos);
    if (next == std::string::npos) next = dir.size();
    cur = dir.substr(0, next);
    if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      return fmt::format("cannot create directory {}: {}", cur, std::strerror(errno));
    pos = next + 1;
  }
  return "";
}

// iproute2 names an object's namespace by a hash of the object file; bpfvm hashes what the object
// holds (programs' instructions, map definitions), which is stable for one build of an object.
std::string object_ns(const Object& o) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  };
  for (const ObjectProgram& p : o.programs) {
    mix(p.name.data(), p.name.size());
    for (const Insn& in : p.insns) {
      mix(&in.op, sizeof in.op);
      mix(&in.dst, sizeof in.dst);
      mix(&in.src, sizeof in.src);
      mix(&in.off, sizeof in.off);
      mix(&in.imm, sizeof in.imm);
    }
  }
  for (const ObjectMap& m : o.maps) {
    mix(m.spec.name.data(), m.spec.name.size());
    uint32_t f[4] = {m.spec.type, m.spec.key_size, m.spec.value_size, m.spec.max_entries};
    mix(f, sizeof f);
  }
  return fmt::format("{:016x}", h);
}

// The pin path of a map of the object, "" when it is not pinned.
Result<std::string> pin_path_of(const Object& object, const ObjectMap& om, const InstantiateOptions& opt) {
  if (om.is_global_data()) return std::string();
  const std::string root = opt.pin_root.empty() ? pin_root() : opt.pin_root;
  if (!opt.pin_all_dir.empty()) return opt.pin_all_dir + "/" + om.spec.name;
  if (om.spec.pinning == 0) return std::string();
  if (om.origin == MapOrigin::LegacyElf) {
    if (om.spec.pinning == 1) return root + "/tc/" + object_ns(object) + "/" + om.spec.name;
    if (om.spec.pinning == 2) return root + "/tc/globals/" + om.spec.name;
    return make_error(ErrorCode::Load, fmt::format("map '{}': pinning {} is not one of iproute2's (0 none, 1 object, "
                                                   "2 global namespace)", om.spec.name, om.spec.pinning));
  }
  if (om.spec.pinning == 1) return root + "/" + om.spec.name;
  return make_error(ErrorCode::Load, fmt::format("map '{}': invalid pinning value {} (0 none, 1 by name)", om.spec.name,
                                                 om.spec.pinning));
}

}  // namespace

Result<LoadedObject> instantiate(const Object& object) { return instantiate_with(object, InstantiateOptions{}); }

Result<LoadedObject> instantiate_with(const Object& object, const InstantiateOptions& options) {
  LoadedObject live;
  live.object = std::make_shared<const Object>(object);
  live.maps.resize(object.maps.size());
  live.data_regions.reserve(object.maps.size());
  // Inner maps first is not needed: map-in-map specs carry a copy of the inner spec.
  // Each map gets the object's BTF with its key and value type ids (BPF_MAP_CREATE's btf_fd).
  std::vector<uint8_t> raw_btf;
  if (const auto* b = static_cast<const struct btf*>(object.btf_handle())) {
    uint32_t size = 0;
    if (const void* d = btf__raw_data(b, &size)) raw_btf.assign(static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + size);
  }
  // Pin paths first: a map put in a slot of a pinned map-in-map by the object's initialiser must be
  // pinned too (another process resolves the slot by the inner map's file). Unless it is pinned
  // itself, it goes next to the outer map as OUTER.INNER (a map name has no '.', so this never
  // collides with a map pinned by name).
  std::vector<std::string> paths(object.maps.size());
  for (size_t i = 0; i < object.maps.size(); ++i) {
    auto path = pin_path_of(object, object.maps[i], options);
    if (!path) return path.error();
    paths[i] = std::move(*path);
  }
  for (size_t i = 0; i < object.maps.size(); ++i) {
    if (paths[i].empty()) continue;
    for (const MapSlotInit& s : object.maps[i].slots) {
      if (s.map < 0 || static_cast<size_t>(s.map) >= object.maps.size() || !paths[s.map].empty()) continue;
      paths[s.map] = paths[i] + "." + object.maps[s.map].spec.name;
    }
  }
  // Slots are initialised only in maps created here: a pinned map that already existed keeps the
  // slots it has (libbpf's rule).
  std::vector<bool> reused(object.maps.size(), false);
  for (size_t i = 0; i < object.maps.size(); ++i) {
    const ObjectMap& om = object.maps[i];
    std::shared_ptr<MapBtf> map_btf;
    if (!raw_btf.empty() && (om.btf_key_type_id || om.btf_value_type_id)) {
      map_btf = std::make_shared<MapBtf>();
      map_btf->data = raw_btf;
      map_btf->key_type_id = om.btf_key_type_id;
      map_btf->value_type_id = om.btf_value_type_id;
    }
    const std::string* path = &paths[i];
    if (!path->empty()) {
      if (!map_type_pinnable(om.spec.type))
        return make_error(ErrorCode::Load, fmt::format("map '{}': maps of type {} cannot be pinned yet", om.spec.name,
                                                       map_type_name(om.spec.type)));
      std::string dir = path->substr(0, path->rfind('/'));
      if (std::string e = make_dirs(dir); !e.empty())
        return make_error(ErrorCode::Load, fmt::format("map '{}': {}", om.spec.name, e));
      struct stat st;
      reused[i] = stat(path->c_str(), &st) == 0;
      auto m = open_or_create_pinned_map(om.spec, *path, map_btf);
      if (!m) return make_error(ErrorCode::Load, fmt::format("map '{}': {}", om.spec.name, m.error().message));
      live.maps[i] = std::move(*m);
      continue;
    }
    auto m = create_map(om.spec);
    if (!m) return m.error();
    (*m)->set_btf(std::move(map_btf));
    live.maps[i] = std::move(*m);
  }
  const uint32_t zero = 0;
  for (size_t i = 0; i < object.maps.size(); ++i) {
    const ObjectMap& om = object.maps[i];
    Map& m = *live.maps[i];
    if (om.is_global_data()) {
      if (om.data.size() != om.spec.value_size)
        return make_error(ErrorCode::Load, fmt::format("map '{}': initial data is {} bytes, value_size is {}", om.spec.name,
                                                       om.data.size(), om.spec.value_size));
      if (long err = m.update_user(&zero, om.data.data(), 0); err != 0)
        return make_error(ErrorCode::Load, fmt::format("map '{}': writing initial data failed ({})", om.spec.name, err));
      void* v = m.lookup(&zero);
      if (!v) return make_error(ErrorCode::Load, fmt::format("map '{}': no value at key 0", om.spec.name));
      live.data_regions.push_back(MemRegion{reinterpret_cast<uint64_t>(v), om.spec.value_size, !om.frozen, "global data"});
    }
    for (const MapSlotInit& s : om.slots) {
      if (s.map < 0) continue;  // prog_array slots: the caller creates programs
      if (reused[i]) break;
      if (static_cast<size_t>(s.map) >= live.maps.size())
        return make_error(ErrorCode::Load, fmt::format("map '{}': slot {} names map #{}, which does not exist", om.spec.name,
                                                       s.index, s.map));
      uint32_t id = live.maps[s.map]->id();
      if (long err = m.update_user(&s.index, &id, 0); err != 0)
        return make_error(ErrorCode::Load, fmt::format("map '{}': cannot put map '{}' in slot {} ({})", om.spec.name,
                                                       live.maps[s.map]->spec().name, s.index, err));
    }
  }
  return live;
}

uint8_t* LoadedObject::data(size_t map) const {
  if (map >= maps.size() || !maps[map]) return nullptr;
  const MapSpec& sp = maps[map]->spec();
  if (sp.type != kMapArray || sp.max_entries != 1 || sp.key_size != 4) return nullptr;
  const uint32_t zero = 0;
  return static_cast<uint8_t*>(maps[map]->lookup(&zero));
}

Result<Program> LoadedObject::program(const ObjectProgram& prog) const {
  Program p{prog.name, prog.insns};
  for (size_t pc = 0; pc < p.insns.size(); ++pc) {
    Insn& in = p.insns[pc];
    const bool map_ref = in.op == Op::LDDW_MAP_IDX || in.op == Op::LDDW_MAP_FD;
    const bool value_ref = in.op == Op::LDDW_MAP_VALUE_IDX || in.op == Op::LDDW_MAP_VALUE_FD;
    if (!map_ref && !value_ref) continue;
    const uint32_t idx = static_cast<uint32_t>(static_cast<uint64_t>(in.imm) & 0xffffffffu);
    if (idx >= maps.size() || !maps[idx])
      return make_error(ErrorCode::Link, fmt::format("lddw refers to map #{}, the object has {} maps", idx, maps.size()), pc);
    uint64_t addr;
    if (map_ref) {
      addr = reinterpret_cast<uint64_t>(maps[idx].get());
      p.map_refs.push_back(static_cast<uint32_t>(pc));
    } else {
      const uint32_t off = static_cast<uint32_t>(static_cast<uint64_t>(in.imm) >> 32);
      uint8_t* base = data(idx);
      if (!base)
        return make_error(ErrorCode::Link,
                          fmt::format("lddw takes a value address of map '{}', which is not a single-value array",
                                      maps[idx]->spec().name), pc);
      if (off >= maps[idx]->spec().value_size)
        return make_error(ErrorCode::Link, fmt::format("lddw offset {} is outside the value of map '{}' ({} bytes)", off,
                                                       maps[idx]->spec().name, maps[idx]->spec().value_size), pc);
      addr = reinterpret_cast<uint64_t>(base + off);
    }
    in.op = Op::LDDW;
    in.src = 0;
    in.imm = static_cast<int64_t>(addr);
    if (pc + 1 < p.insns.size() && p.insns[pc + 1].op == Op::LDDW_HI)
      p.insns[pc + 1].imm = static_cast<int32_t>(addr >> 32);
  }
  return p;
}

}  // namespace bpfvm
