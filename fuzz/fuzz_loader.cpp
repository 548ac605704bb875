// libFuzzer target for the ELF loader: any bytes -> load_object must return an object or a clear
// error, never crash, hang or allocate without bound. Loaded objects are also exercised: every
// function is linked on its own, globals are read, and objects with small maps are instantiated.
// Build and run: see docs/loader.md ("Fuzzing").
#include <cstddef>
#include <cstdint>
#include <span>

#include "bpfvm/object.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto obj = bpfvm::load_object(std::span<const uint8_t>(data, size), {}, "fuzz.o");
  if (!obj.ok()) {
    if (obj.error().message.empty()) __builtin_trap();  // every error must say something
    return 0;
  }
  for (const auto& p : obj->programs) {
    (void)bpfvm::check_structure(p.insns);
    for (size_t pc = 0; pc < p.insns.size(); pc += 7) (void)p.source_at(pc);
  }
  size_t linked = 0;
  for (const auto& name : obj->function_names()) {
    if (++linked > 64) break;
    (void)obj->link_function(name);
  }
  for (const auto& g : obj->globals) {
    auto b = obj->global_bytes(g.name);
    if (b.ok() && !b->empty()) (void)obj->set_global(g.name, b->data(), b->size());
  }
  uint64_t total = 0;
  for (const auto& m : obj->maps) {
    const uint64_t entry = uint64_t{m.spec.key_size} + m.spec.value_size + 64;
    if (m.spec.max_entries > (1u << 20) || entry > (1u << 20)) total = UINT64_MAX;
    else total += m.spec.max_entries * entry;
    if (total > (1u << 20)) break;
  }
  if (total <= (1u << 20)) {
    auto live = bpfvm::instantiate(*obj);
    if (live.ok())
      for (const auto& p : obj->programs) (void)live->program(p);
  }
  return 0;
}
