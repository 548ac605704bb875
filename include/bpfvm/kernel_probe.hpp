// bpfvm: what the running kernel offers (`bpfvm feature probe kernel`, and every test that compares
// with the kernel): program types, map types and helpers per program type, found by
// asking it (a minimal BPF_PROG_LOAD / BPF_MAP_CREATE per item) and classifying its answers. Kernel
// builds differ (configuration, lockdown, version): anything compared with the kernel asks here
// first and compares only on what the kernel offers.
//
// libbpf 1.1's helper probe cannot be used for this: it only recognises "invalid func"/"unknown func"
// and so reports every helper as available to every type on kernels that answer "program of this
// type cannot use helper".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bpfvm/insn.hpp"

namespace bpfvm::kernel {

// True when the kernel's bpf() works here (probes once by loading a trivial socket filter; needs
// CAP_BPF or root where unprivileged BPF is disabled).
bool available();
// Why it is unavailable ("" when available).
const std::string& unavailable_reason();

enum class Offer : uint8_t {
  Yes,      // the kernel accepted it (or got past the check that refuses what it does not offer)
  No,       // the kernel refused it as something it does not offer
  Unknown,  // the kernel could not be asked (no bpf(), no privilege, needs an attach target ...)
};
const char* offer_name(Offer o);  // "yes", "no", "unknown"

struct ProbeAnswer {
  Offer offer = Offer::Unknown;
  std::string detail;  // the kernel's message (No / Unknown), "" for Yes
};

// Each probe runs once per process and is cached (thread-safe). expected_attach is the
// BPF_PROG_LOAD expected_attach_type (0 = the type's usual one).
ProbeAnswer probe_prog_type(uint32_t prog_type, uint32_t expected_attach = 0);
ProbeAnswer probe_map_type(uint32_t map_type);
ProbeAnswer probe_helper(uint32_t prog_type, int32_t helper_id, uint32_t expected_attach = 0);

// Why the kernel cannot judge `insns` as `prog_type` (the type is not offered, or a helper it calls
// is not offered to that type); "" when everything it uses is offered or unknown to the probe.
std::string not_offered_reason(std::span<const RawInsn> insns, uint32_t prog_type, uint32_t expected_attach = 0);
std::string not_offered_reason(std::span<const Insn> insns, uint32_t prog_type, uint32_t expected_attach = 0);

// ---- a test switch: hide items from the probe ------------------------------------------------------
// Makes the probe answer No for a helper (for one program type, or every type with prog_type 0), as on
// a kernel built without it, so that comparisons can be shown to adapt. Also read once from the
// environment: BPFVM_KERNEL_HIDE="xdp:bpf_xdp_adjust_head,bpf_ktime_get_ns" (TYPE:HELPER or HELPER;
// helper names with or without the bpf_ prefix, or numbers).
void hide_helper(uint32_t prog_type, int32_t helper_id);
void unhide_all();
// Parses one BPFVM_KERNEL_HIDE list; false with *why on a bad item.
bool hide_from_spec(const std::string& spec, std::string* why);

}  // namespace bpfvm::kernel
