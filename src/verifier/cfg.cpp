#include "verifier/cfg.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace bpfvm::verifier {

int Cfg::func_index(int32_t start) const {
  auto it = std::lower_bound(func_starts.begin(), func_starts.end(), start);
  if (it == func_starts.end() || *it != start) return -1;
  return static_cast<int>(it - func_starts.begin());
}

namespace {

Diagnostic err(int64_t pc, std::string msg) { return make_error(ErrorCode::Verify, std::move(msg), pc); }

// Registers an instruction reads and writes (for liveness).
void uses_defs(const Insn& in, LiveSet& use, LiveSet& def) {
  const OpInfo& info = in.info();
  auto U = [&](int r) { use |= static_cast<LiveSet>(1u << r); };
  auto D = [&](int r) { def |= static_cast<LiveSet>(1u << r); };
  switch (info.kind) {
    case OpKind::Alu:
      if (info.uses_reg_src && in.op != Op::MOV64_REG && in.op != Op::MOV32_REG) U(in.dst);
      else if (!info.uses_reg_src && in.op != Op::MOV64_IMM && in.op != Op::MOV32_IMM) U(in.dst);
      if (info.uses_reg_src) U(in.src);
      D(in.dst);
      break;
    case OpKind::CondJump:
      U(in.dst);
      if (info.uses_reg_src) U(in.src);
      break;
    case OpKind::Call:
      for (int r = 1; r <= 5; ++r) U(r);
      if (in.op == Op::CALLX) U(in.dst);
      for (int r = 0; r <= 5; ++r) D(r);
      break;
    case OpKind::Exit:
      U(0);
      break;
    case OpKind::LoadImm64:
      D(in.dst);
      break;
    case OpKind::LoadPacket:
      U(6);
      if (info.uses_reg_src || (in.op >= Op::LDIND_W && in.op <= Op::LDIND_B)) U(in.src);
      for (int r = 0; r <= 5; ++r) D(r);
      break;
    case OpKind::Load:
      U(in.src);
      D(in.dst);
      break;
    case OpKind::Store:
      U(in.dst);
      break;
    case OpKind::StoreReg:
      U(in.dst);
      U(in.src);
      break;
    case OpKind::Atomic:
      U(in.dst);
      U(in.src);
      if (in.op == Op::ATOMIC_CMPXCHG32 || in.op == Op::ATOMIC_CMPXCHG64) {
        U(0);
        D(0);
      } else if (in.imm & 1) {  // BPF_FETCH
        D(in.src);
      }
      break;
    default:
      break;
  }
  def &= static_cast<LiveSet>(~use | ~0u);  // (no-op; kept for clarity: a use happens before the def)
}

}  // namespace

Result<Cfg> build_cfg(std::span<const Insn> insns, bool privileged) {
  const int64_t n = static_cast<int64_t>(insns.size());
  if (n == 0) return err(-1, "the program is empty");
  if (!privileged) {
    // The kernel refuses these before anything else when the loader lacks CAP_BPF.
    for (int64_t pc = 0; pc < n; ++pc) {
      const Op op = insns[pc].op;
      if (op == Op::CALL_LOCAL || op == Op::CALL_KFUNC || op == Op::LDDW_CODE_ADDR)
        return err(pc, "loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN");
    }
  }
  Cfg cfg;
  cfg.func_starts.push_back(0);
  std::vector<int32_t> cb_starts;
  for (int64_t pc = 0; pc < n; ++pc) {
    const Insn& in = insns[pc];
    if (in.op == Op::LDDW_HI) continue;
    if (in.op == Op::CALL_LOCAL || in.op == Op::LDDW_CODE_ADDR) {
      int64_t t = in.op == Op::CALL_LOCAL ? jump_target(in, pc) : pc + 1 + static_cast<int32_t>(in.imm);
      if (t < 0 || t >= n) return err(pc, fmt::format("{} target {} is outside the program ({} instructions)",
                                                      in.op == Op::CALL_LOCAL ? "call" : "function address", t, n));
      if (insns[t].op == Op::LDDW_HI) return err(pc, fmt::format("call target {} is the middle of an lddw", t));
      cfg.func_starts.push_back(static_cast<int32_t>(t));
      if (in.op == Op::LDDW_CODE_ADDR) cb_starts.push_back(static_cast<int32_t>(t));
    }
  }
  std::sort(cfg.func_starts.begin(), cfg.func_starts.end());
  cfg.func_starts.erase(std::unique(cfg.func_starts.begin(), cfg.func_starts.end()), cfg.func_starts.end());
  const size_t nf = cfg.func_starts.size();
  cfg.func_of.assign(n, 0);
  for (size_t f = 0; f < nf; ++f) {
    int64_t end = f + 1 < nf ? cfg.func_starts[f + 1] : n;
    for (int64_t pc = cfg.func_starts[f]; pc < end; ++pc) cfg.func_of[pc] = static_cast<int32_t>(f);
  }
  cfg.is_callback.assign(nf, 0);
  for (int32_t s : cb_starts) cfg.is_callback[cfg.func_index(s)] = 1;
  cfg.callees.assign(nf, {});
  cfg.prune_point.assign(n, 0);
  // Callback entries: repeated invocations (bpf_loop...) converge by pruning there.
  for (size_t f = 0; f < nf; ++f)
    if (cfg.is_callback[f]) cfg.prune_point[cfg.func_starts[f]] = 1;

  // Structure per function.
  std::vector<std::vector<int64_t>> succ(n);
  for (int64_t pc = 0; pc < n; ++pc) {
    const Insn& in = insns[pc];
    if (in.op == Op::LDDW_HI) continue;
    int f = cfg.func_of[pc];
    int64_t fend = f + 1 < static_cast<int>(nf) ? cfg.func_starts[f + 1] : n;
    OpKind k = in.info().kind;
    auto add = [&](int64_t t) -> Status {
      if (t < 0 || t >= n) return err(pc, fmt::format("jump out of range from insn {} to {}", pc, t));
      if (cfg.func_of[t] != f)
        return err(pc, fmt::format("jump out of range from insn {} to {} (into another function)", pc, t));
      if (insns[t].op == Op::LDDW_HI) return err(pc, fmt::format("jump from insn {} into the middle of lddw at {}", pc, t));
      succ[pc].push_back(t);
      return {};
    };
    Status s;
    int64_t next = pc + (in.is_wide() ? 2 : 1);
    if (k == OpKind::Exit) {
    } else if (k == OpKind::Jump) {
      int64_t t = jump_target(in, pc);
      s = add(t);
      if (s.ok()) cfg.prune_point[t] = 1;
    } else if (k == OpKind::CondJump) {
      int64_t t = jump_target(in, pc);
      s = add(t);
      if (s.ok()) s = add(next >= fend ? n : next);
      if (s.ok()) {
        cfg.prune_point[t] = 1;
        cfg.prune_point[next] = 1;
      }
    } else {
      if (next >= fend) {
        return err(pc, f == static_cast<int>(nf) - 1 && next >= n
                           ? std::string("the last instruction is not an exit or a jump: execution falls off the end")
                           : fmt::format("the last instruction of the function at {} is not an exit or a jump", cfg.func_starts[f]));
      }
      s = add(next);
      if (in.op == Op::CALL_LOCAL) {
        int callee = cfg.func_index(static_cast<int32_t>(jump_target(in, pc)));
        cfg.callees[f].push_back(callee);
        cfg.prune_point[next] = 1;
      }
      if (in.op == Op::CALL_HELPER) cfg.prune_point[next] = 1;
      if (in.op == Op::LDDW_CODE_ADDR) cfg.callees[f].push_back(cfg.func_index(static_cast<int32_t>(pc + 1 + static_cast<int32_t>(in.imm))));
    }
    if (!s.ok()) return s.error();
  }

  // Strict: no loops. A depth-first walk from each function's start, the fall-through edge before
  // the jump's (the kernel's check_cfg order, so the same back-edge is reported): an edge to an
  // instruction still on the walk's path closes a loop.
  if (!privileged) {
    std::vector<uint8_t> state(n, 0);  // 0 unseen, 1 on the path, 2 done
    std::vector<std::pair<int64_t, size_t>> path;
    auto edges = [&](int64_t pc, size_t i) -> int64_t {
      const auto& s = succ[pc];
      if (s.size() == 2 && insns[pc].info().kind == OpKind::CondJump) return s[1 - i];  // [next, target]
      return s[i];
    };
    for (int32_t start : cfg.func_starts) {
      if (state[start]) continue;
      state[start] = 1;
      path.emplace_back(start, 0);
      while (!path.empty()) {
        auto& [t, i] = path.back();
        if (i == succ[t].size()) {
          state[t] = 2;
          path.pop_back();
          continue;
        }
        int64_t w = edges(t, i++);
        if (state[w] == 1) return err(t, fmt::format("back-edge from insn {} to {}", t, w));
        if (state[w] == 0) {
          state[w] = 1;
          path.emplace_back(w, 0);
        }
      }
    }
  }

  // Reachability (the kernel's check_cfg: every instruction of every function reachable from its
  // start; functions themselves reachable from the main one through calls).
  std::vector<uint8_t> seen(n, 0);
  std::vector<uint8_t> fseen(nf, 0);
  std::vector<int> fwork{0};
  fseen[0] = 1;
  while (!fwork.empty()) {
    int f = fwork.back();
    fwork.pop_back();
    std::vector<int64_t> work{cfg.func_starts[f]};
    seen[cfg.func_starts[f]] = 1;
    while (!work.empty()) {
      int64_t pc = work.back();
      work.pop_back();
      for (int64_t t : succ[pc])
        if (!seen[t]) {
          seen[t] = 1;
          work.push_back(t);
        }
    }
    for (int c : cfg.callees[f])
      if (c >= 0 && !fseen[c]) {
        fseen[c] = 1;
        fwork.push_back(c);
      }
  }
  for (int64_t pc = 0; pc < n; ++pc) {
    if (insns[pc].op == Op::LDDW_HI) continue;
    if (!seen[pc]) {
      if (!fseen[cfg.func_of[pc]])
        return err(pc, fmt::format("unreachable function at insn {}: nothing calls it", cfg.func_starts[cfg.func_of[pc]]));
      return err(pc, fmt::format("unreachable insn {}", pc));
    }
  }

  cfg.succ.assign(n, {});
  for (int64_t pc = 0; pc < n; ++pc)
    for (int64_t t : succ[pc]) cfg.succ[pc].push_back(static_cast<int32_t>(t));

  // Liveness: backward dataflow to a fixed point.
  cfg.live_in.assign(n, 0);
  std::vector<LiveSet> use(n, 0), def(n, 0);
  for (int64_t pc = 0; pc < n; ++pc)
    if (insns[pc].op != Op::LDDW_HI) uses_defs(insns[pc], use[pc], def[pc]);
  bool changed = true;
  while (changed) {
    changed = false;
    for (int64_t pc = n - 1; pc >= 0; --pc) {
      if (insns[pc].op == Op::LDDW_HI) continue;
      LiveSet out = 0;
      for (int64_t t : succ[pc]) out |= cfg.live_in[t];
      LiveSet in = static_cast<LiveSet>(use[pc] | (out & ~def[pc]));
      if (in != cfg.live_in[pc]) {
        cfg.live_in[pc] = in;
        changed = true;
      }
    }
  }
  return cfg;
}

}  // namespace bpfvm::verifier
