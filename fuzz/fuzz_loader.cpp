// libFuzzer target for the ELF loader: any bytes -> load_object must return an object or a clear
// error, never crash, hang or allocate without bound. Loaded objects are also exercised: every
// function is linked on its own, globals are read and set from text, CO-RE relocations (resolved
// against the running kernel's BTF, or bpfvm's own) are checked for consistency, legacy map
// sections are read in both 28-byte layouts, and objects with small maps are instantiated.
// Build and run: see docs/loader.md ("Fuzzing").
#include <cstddef>
#include <cstdint>
#include <span>

#include "bpfvm/object.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  // .kconfig values fixed so that no input makes the fuzzer read the machine's config each time.
  bpfvm::LoadOptions base;
  base.kconfig = {{"CONFIG_HZ", "250"}, {"CONFIG_BPF_SYSCALL", "y"}, {"CONFIG_DEFAULT_HOSTNAME", "\"fuzz\""}};
  // Both readings of 28-byte legacy maps (bpf_map_def and iproute2's bpf_elf_map).
  for (auto format : {bpfvm::LegacyMapFormat::BpfMapDef, bpfvm::LegacyMapFormat::BpfElfMap}) {
    bpfvm::LoadOptions o = base;
    o.legacy_maps = format;
    auto r = bpfvm::load_object(bytes, o, "fuzz.o");
    if (!r.ok() && r.error().message.empty()) __builtin_trap();
  }
  auto obj = bpfvm::load_object(bytes, base, "fuzz.o");
  if (!obj.ok()) {
    if (obj.error().message.empty()) __builtin_trap();  // every error must say something
    return 0;
  }
  for (const auto& p : obj->programs) {
    if (!p.ok()) {
      if (p.error.empty() || !p.insns.empty()) __builtin_trap();  // a failed program says why, has no code
      continue;
    }
    (void)bpfvm::check_structure(p.insns);
    for (size_t pc = 0; pc < p.insns.size(); pc += 7) (void)p.source_at(pc);
    for (const auto& r : p.core_relos) {
      if (r.insn >= p.insns.size() || r.description.empty()) __builtin_trap();
      // A poisoned relocation's instruction is the poison call, and it is found by its slot.
      if (r.poisoned && (p.poisoned_at(r.insn) == nullptr || p.insns[r.insn].imm != bpfvm::kCorePoisonHelper))
        __builtin_trap();
    }
  }
  size_t linked = 0;
  for (const auto& name : obj->function_names()) {
    if (++linked > 64) break;
    (void)obj->link_function(name);
  }
  for (const auto& g : obj->globals) {
    auto b = obj->global_bytes(g.name);
    if (b.ok() && !b->empty()) (void)obj->set_global(g.name, b->data(), b->size());
    // Text round trip: what global_text prints, set_global_text accepts (numbers, enums, strings).
    auto text = obj->global_text(g.name);
    if (text.ok()) (void)obj->set_global_text(g.name, *text);
    for (const char* v : {"-1", "true", "0x7fffffffffffffff", "a string"}) {
      bpfvm::Status st = obj->set_global_text(g.name, v);
      if (!st.ok() && st.error().message.empty()) __builtin_trap();
    }
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
