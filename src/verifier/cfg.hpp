// Control-flow facts computed before exploring states: functions (subprograms), structure checks
// (jumps stay inside their function, every function ends in exit or a jump, every instruction is
// reachable), prune points and register liveness.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"
#include "verifier/state.hpp"

namespace bpfvm::verifier {

struct Cfg {
  std::vector<int32_t> func_starts;   // sorted; func_starts[0] == 0
  std::vector<int32_t> func_of;       // per slot: index into func_starts
  std::vector<uint8_t> prune_point;   // per slot
  std::vector<LiveSet> live_in;       // per slot: registers read before written on some path
  std::vector<std::vector<int32_t>> callees;  // per function: functions it calls (incl. callbacks)
  std::vector<uint8_t> is_callback;   // per function: its address is taken (lddw src=4)
  std::vector<std::vector<int32_t>> succ;  // per slot: successors inside its function
  int func_index(int32_t start) const;
};

// Builds the CFG facts and checks structure. Errors: ErrorCode::Verify with the pc.
// privileged = false: the kernel's rules for a loader without CAP_BPF as well: no bpf-to-bpf or
// kernel function calls and no function addresses (add_subprog_and_kfunc), no back-edges (check_cfg).
Result<Cfg> build_cfg(std::span<const Insn> insns, bool privileged = true);

}  // namespace bpfvm::verifier
