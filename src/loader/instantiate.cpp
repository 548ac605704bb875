// instantiate(): creates an object's maps and resolves the pseudo lddw forms to addresses.
#include <fmt/format.h>

#include <cstring>

#include "bpfvm/object.hpp"

namespace bpfvm {

Result<LoadedObject> instantiate(const Object& object) {
  LoadedObject live;
  live.object = std::make_shared<const Object>(object);
  live.maps.resize(object.maps.size());
  live.data_regions.reserve(object.maps.size());
  // Inner maps first is not needed: map-in-map specs carry a copy of the inner spec.
  for (size_t i = 0; i < object.maps.size(); ++i) {
    const ObjectMap& om = object.maps[i];
    auto m = create_map(om.spec);
    if (!m) return m.error();
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
