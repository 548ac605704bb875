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
  int func_index(int32_t start) const;
};

// Builds the CFG facts and checks structure. Errors: ErrorCode::Verify with the pc.
Result<Cfg> build_cfg(std::span<const Insn> insns);

}  // namespace bpfvm::verifier
