// Generator of mostly-valid programs for the verifier's soundness fuzzing (tests/verifier_fuzz_test.cpp,
// fuzz/fuzz_verifier.cpp). Programs are for the plain-memory type (kProgMem): r1 points to the memory,
// r2 holds its length. They are built from templates a correct verifier accepts -- bounds checks
// before memory accesses (a mask when the size is known, a comparison against r1 + r2 or of r2 with a
// constant when it is not), stack spills and fills, counted loops, forward branches, bpf-to-bpf calls
// with a pointer argument, an index (or, for unknown size, the length) bounded through another
// register set on two paths -- and then, sometimes, mutated (an offset, an immediate, a mask or a
// register changed by a little) so that programs on both sides of the safety boundary are produced.
// Every accepted program must run in the checked interpreter without a memory fault.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "bpfvm/insn.hpp"

namespace bpfvm::vgen {

inline constexpr int kMemSize = 64;  // bytes of memory when its size is known

class Generator {
 public:
  // known_size: the verifier is told the memory has kMemSize bytes; otherwise it must prove accesses
  // against r1 + r2.
  Generator(uint64_t seed, bool known_size) : rng_(seed), known_(known_size) {}

  std::vector<Insn> generate() {
    p_.clear();
    calls_.clear();
    callbacks_.clear();
    // r6 = memory, r7 = length, r8 = end of memory (r1 + r2); scratch r0, r2..r5; r9 loop counter.
    mov_reg(6, 1);
    mov_reg(7, 2);
    mov_reg(8, 1);
    emit(Op::ADD64_REG, 8, 2, 0, 0);
    init_scratch();
    int blocks = 3 + static_cast<int>(r(10));
    for (int i = 0; i < blocks; ++i) block(0);
    if (r(2)) emit(Op::MOV64_REG, 0, scratch(), 0, 0);
    else emit(Op::MOV64_IMM, 0, 0, 0, r(4));
    emit(Op::EXIT, 0, 0, 0, 0);
    // Subprograms called from the main function.
    if (!calls_.empty()) {
      size_t fn = p_.size();
      subprogram();
      for (size_t c : calls_) p_[c].imm = static_cast<int32_t>(fn - c - 1);
    }
    // The callback of bpf_loop calls.
    if (!callbacks_.empty()) {
      size_t fn = p_.size();
      callback();
      for (size_t c : callbacks_) p_[c].imm = static_cast<int32_t>(fn - c - 1);
    }
    if (r(4) == 0) mutate();
    return p_;
  }

 private:
  std::mt19937_64 rng_;
  bool known_;
  std::vector<Insn> p_;
  std::vector<size_t> calls_;
  std::vector<size_t> callbacks_;  // lddw of the callback's address

  int64_t r(uint64_t n) { return static_cast<int64_t>(rng_() % n); }
  uint8_t scratch() {
    static const uint8_t regs[] = {0, 2, 3, 4, 5};
    return regs[r(5)];
  }
  void emit(Op op, uint8_t dst, uint8_t src, int16_t off, int64_t imm) {
    p_.push_back(Insn{op, dst, src, off, imm});
  }
  void mov_reg(uint8_t d, uint8_t s) { emit(Op::MOV64_REG, d, s, 0, 0); }
  void init_scratch() {
    for (uint8_t reg : {0, 2, 3, 4, 5}) emit(Op::MOV64_IMM, reg, 0, 0, r(3) ? r(100) : r(1 << 20) - (1 << 19));
  }
  // A small bias towards the edge: mostly `good`, sometimes one more.
  int64_t edge(int64_t good) { return r(10) == 0 ? good + 1 : good; }

  static Op ld_op(int size) { return size == 1 ? Op::LDXB : size == 2 ? Op::LDXH : size == 4 ? Op::LDXW : Op::LDXDW; }
  static Op st_op(int size) { return size == 1 ? Op::STXB : size == 2 ? Op::STXH : size == 4 ? Op::STXW : Op::STXDW; }
  int rand_size() {
    static const int sizes[] = {1, 2, 4, 8};
    return sizes[r(4)];
  }

  void access(uint8_t ptr, int16_t off, int size) {
    if (r(3) == 0) emit(st_op(size), ptr, scratch(), off, 0);
    else emit(ld_op(size), scratch(), ptr, off, 0);
  }

  void block(int depth) {
    switch (r(depth > 0 ? 7 : 9)) {
      case 0: case 1: alu(); break;
      case 2: mem_access(); break;
      case 3: mem_access_var(); break;
      case 4: stack(); break;
      case 5: {  // forward branch over a block
        size_t j = p_.size();
        const Op ops[] = {Op::JEQ_IMM, Op::JNE_IMM, Op::JGT_IMM, Op::JGE_IMM, Op::JLT_IMM, Op::JLE_IMM, Op::JSGT_IMM,
                          Op::JSLT_IMM, Op::JSET_IMM, Op::JGT_REG, Op::JLT32_IMM, Op::JSGE32_IMM};
        Op op = ops[r(std::size(ops))];
        emit(op, scratch(), op_info(op).uses_reg_src ? scratch() : 0, 0, r(80));
        block(depth + 1);
        p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
        break;
      }
      case 6:
        if (known_ && r(2)) bound_by_other();
        else if (!known_ && r(2)) bound_length_by_other();
        else alu();
        break;
      case 7: loop(depth); break;
      default: call(); break;
    }
  }

  // (unknown size) The length bounded by a register set on two paths: `if r7 < rB goto skip` (r7 is
  // the length), then an access that needs rB bytes of the first path; the second path's rB is
  // sometimes smaller. Pruning at the join must keep rB's value.
  void bound_length_by_other() {
    uint8_t b = scratch(), c = scratch();
    while (c == b) c = scratch();
    const int size = rand_size();
    const int64_t k = 8 + r(40);
    size_t j0 = p_.size();
    emit(Op::JLT_IMM, 7, 0, 0, 1);
    emit(Op::LDXB, c, 6, 0, 0);  // a byte the verifier does not know
    size_t j = p_.size();
    emit(Op::JSET_IMM, c, 0, 0, 1);
    emit(Op::MOV64_IMM, b, 0, 0, k);
    size_t ja = p_.size();
    emit(Op::JA, 0, 0, 0, 0);
    p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
    emit(Op::MOV64_IMM, b, 0, 0, r(3) == 0 ? r(k) : k + r(8));
    p_[ja].off = static_cast<int16_t>(p_.size() - ja - 1);
    size_t jb = p_.size();
    emit(Op::JLT_REG, 7, b, 0, 0);
    access(6, static_cast<int16_t>(k - size), size);
    p_[jb].off = static_cast<int16_t>(p_.size() - jb - 1);
    p_[j0].off = static_cast<int16_t>(p_.size() - j0 - 1);
    emit(Op::MOV64_IMM, b, 0, 0, r(50));
  }

  // (known size) An index bounded through another register whose value depends on an earlier branch:
  // `if idx > rB` with rB set on two paths, or `if rC > K` where rC is a copy of idx on one path only.
  // Pruning at the join must keep what the access after it depends on (rB's value; rC's link).
  void bound_by_other() {
    uint8_t idx = scratch(), b = scratch(), p = scratch();
    while (b == idx) b = scratch();
    while (p == idx || p == b) p = scratch();
    uint8_t other = scratch();
    while (other == b || other == idx) other = scratch();
    const int size = rand_size();
    // idx <= k keeps [idx, idx + size) inside the memory; the largest such k, so that a bound one
    // larger is already unsafe.
    const int64_t k = kMemSize - size;
    // Values unknown to the verifier (bytes of the memory), so that runs take every path; the
    // branch tests bit 0 of r0 after it is loaded the same way (r0 is reset afterwards).
    emit(Op::LDXB, idx, 6, static_cast<int16_t>(r(kMemSize)), 0);
    emit(Op::LDXB, other, 6, static_cast<int16_t>(r(kMemSize)), 0);
    mov_reg(p, idx);  // idx gets an id on every path (p is overwritten below)
    const uint8_t c = idx == 0 || other == 0 || b == 0 || p == 0 ? 9 : 0;  // r9 is free outside loops
    if (c == 9) emit(Op::STXDW, 10, 9, -64, 0);  // keep the loop counter (we may be in a loop body)
    emit(Op::LDXB, c, 6, static_cast<int16_t>(r(kMemSize)), 0);
    size_t j = p_.size();
    emit(Op::JSET_IMM, c, 0, 0, 1);
    if (c == 9) emit(Op::LDXDW, 9, 10, -64, 0);
    else emit(Op::MOV64_IMM, 0, 0, 0, r(50));
    const bool via_copy = r(2);
    if (via_copy) {
      mov_reg(b, idx);  // linked copy
      size_t ja = p_.size();
      emit(Op::JA, 0, 0, 0, 0);
      p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
      if (c == 9) emit(Op::LDXDW, 9, 10, -64, 0);
      else emit(Op::MOV64_IMM, 0, 0, 0, r(50));
      if (r(3) == 0) mov_reg(b, other);  // not a copy of idx on this path
      else mov_reg(b, idx);
      p_[ja].off = static_cast<int16_t>(p_.size() - ja - 1);
      size_t jk = p_.size();
      emit(Op::JGT_IMM, b, 0, 0, k);
      mov_reg(p, 6);
      emit(Op::ADD64_REG, p, idx, 0, 0);
      access(p, 0, size);
      p_[jk].off = static_cast<int16_t>(p_.size() - jk - 1);
    } else {
      emit(Op::MOV64_IMM, b, 0, 0, k);
      size_t ja = p_.size();
      emit(Op::JA, 0, 0, 0, 0);
      p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
      if (c == 9) emit(Op::LDXDW, 9, 10, -64, 0);
      else emit(Op::MOV64_IMM, 0, 0, 0, r(50));
      emit(Op::MOV64_IMM, b, 0, 0, r(3) == 0 ? k + 1 + r(128) : r(k + 1));
      p_[ja].off = static_cast<int16_t>(p_.size() - ja - 1);
      size_t jb = p_.size();
      emit(Op::JGT_REG, idx, b, 0, 0);
      mov_reg(p, 6);
      emit(Op::ADD64_REG, p, idx, 0, 0);
      access(p, 0, size);
      p_[jb].off = static_cast<int16_t>(p_.size() - jb - 1);
    }
    emit(Op::MOV64_IMM, p, 0, 0, r(50));
  }

  void alu() {
    static const Op ops[] = {Op::ADD64_IMM, Op::SUB64_IMM, Op::AND64_IMM, Op::OR64_IMM, Op::LSH64_IMM,
                             Op::RSH64_IMM, Op::ADD64_REG, Op::SUB64_REG, Op::AND64_REG, Op::MUL64_IMM,
                             Op::MOD64_IMM, Op::DIV64_REG, Op::ADD32_IMM, Op::AND32_IMM, Op::MOV64_REG,
                             Op::MOV32_REG, Op::XOR64_REG, Op::ARSH64_IMM, Op::NEG64, Op::MOD64_REG,
                             Op::SUB32_REG, Op::LSH32_IMM, Op::MOVSX64_8, Op::BE16, Op::RSH32_IMM, Op::OR64_REG};
    Op op = ops[r(std::size(ops))];
    const OpInfo& info = op_info(op);
    int64_t imm = r(3) ? r(64) : r(1 << 20) - (1 << 19);
    if (op == Op::LSH64_IMM || op == Op::RSH64_IMM || op == Op::ARSH64_IMM) imm = r(64);
    if (op == Op::LSH32_IMM || op == Op::RSH32_IMM) imm = r(32);
    if (op == Op::MOD64_IMM && imm == 0) imm = 7;
    if (op == Op::BE16) imm = 16;
    emit(op, scratch(), info.uses_reg_src ? scratch() : 0, op == Op::MOVSX64_8 ? 8 : 0, info.uses_reg_src ? 0 : imm);
  }

  // Memory access at a constant offset, proved in bounds.
  void mem_access() {
    int size = rand_size();
    if (known_) {
      int16_t off = static_cast<int16_t>(edge(r(kMemSize - size + 1)));
      access(6, off, size);
      return;
    }
    // rP = r6 + K; if rP > r8 goto skip; access [r6 + off] with off + size <= K
    int64_t k = 1 + r(48);
    uint8_t p = scratch();
    mov_reg(p, 6);
    emit(Op::ADD64_IMM, p, 0, 0, k);
    size_t j = p_.size();
    if (r(2)) {
      emit(Op::JGT_REG, p, 8, 0, 0);
    } else {  // the same check the other way round: if r8 < rP goto skip
      emit(Op::JLT_REG, 8, p, 0, 0);
    }
    int64_t off = k - size >= 0 ? r(k - size + 1) : 0;
    if (k < size) size = 1;
    access(6, static_cast<int16_t>(edge(off)), size);
    if (r(2)) access(p, static_cast<int16_t>(-edge(size)), size);
    p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
    emit(Op::MOV64_IMM, p, 0, 0, r(50));
  }

  // Memory access at a variable offset: a masked index added to the base.
  void mem_access_var() {
    int size = rand_size();
    uint8_t idx = scratch();
    uint8_t p = scratch();
    while (p == idx) p = scratch();
    if (known_) {
      // mask so that mask + off + size <= kMemSize
      int64_t mask = r(2) ? 31 : 15;
      int64_t off = r(kMemSize - mask - size + 1);
      emit(Op::AND64_IMM, idx, 0, 0, edge(mask));
      mov_reg(p, 6);
      emit(Op::ADD64_REG, p, idx, 0, 0);
      access(p, static_cast<int16_t>(edge(off)), size);
      emit(Op::MOV64_IMM, p, 0, 0, r(50));
      return;
    }
    if (r(2)) {
      // if r7 < K goto skip (the length itself compared), then masked index within K
      int64_t k = 8 + r(40);
      size_t j = p_.size();
      emit(Op::JLT_IMM, 7, 0, 0, k);
      emit(Op::AND64_IMM, idx, 0, 0, 7);
      mov_reg(p, 6);
      emit(Op::ADD64_REG, p, idx, 0, 0);
      int64_t off = r(k - 7 - size + 1 > 0 ? k - 7 - size + 1 : 1);
      access(p, static_cast<int16_t>(edge(off)), size);
      p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
      emit(Op::MOV64_IMM, p, 0, 0, r(50));
      return;
    }
    // p = r6 + (idx & 15); q = p + size; if q > r8 goto skip; access [p]
    emit(Op::AND64_IMM, idx, 0, 0, 15);
    mov_reg(p, 6);
    emit(Op::ADD64_REG, p, idx, 0, 0);
    mov_reg(idx, p);
    emit(Op::ADD64_IMM, idx, 0, 0, edge(size) - (r(10) == 0 ? 1 : 0));
    size_t j = p_.size();
    emit(Op::JGT_REG, idx, 8, 0, 0);
    access(p, 0, size);
    p_[j].off = static_cast<int16_t>(p_.size() - j - 1);
    emit(Op::MOV64_IMM, p, 0, 0, r(50));
    emit(Op::MOV64_IMM, idx, 0, 0, r(50));
  }

  void stack() {
    int slot = 1 + static_cast<int>(r(8));
    int size = rand_size();
    emit(st_op(8), 10, scratch(), static_cast<int16_t>(-8 * slot), 0);
    if (r(4) == 0) {  // spill the memory pointer and use the fill
      uint8_t p = scratch();
      emit(Op::STXDW, 10, 6, static_cast<int16_t>(-8 * slot), 0);
      emit(Op::LDXDW, p, 10, static_cast<int16_t>(-8 * slot), 0);
      if (known_) access(p, static_cast<int16_t>(edge(r(kMemSize - size + 1))), size);
      emit(Op::MOV64_IMM, p, 0, 0, r(50));
      return;
    }
    emit(ld_op(size), scratch(), 10, static_cast<int16_t>(-8 * slot + r(8 / size) * size), 0);
  }

  void loop(int depth) {
    // r9 = 0; body; r9 += 1; if r9 < K goto body
    emit(Op::MOV64_IMM, 9, 0, 0, 0);
    size_t head = p_.size();
    int n = 1 + static_cast<int>(r(3));
    for (int i = 0; i < n; ++i) {
      if (r(2)) mem_access();
      else alu();
    }
    if (known_ && r(2)) {  // index the memory with the counter: r9 < K bounds it
      uint8_t p = scratch();
      mov_reg(p, 6);
      emit(Op::ADD64_REG, p, 9, 0, 0);
      emit(Op::LDXB, p, p, 0, 0);
    }
    emit(Op::ADD64_IMM, 9, 0, 0, 1);
    size_t j = p_.size();
    emit(r(2) ? Op::JLT_IMM : Op::JNE_IMM, 9, 0, 0, known_ ? edge(1 + r(kMemSize)) : 1 + r(20));
    p_[j].off = static_cast<int16_t>(static_cast<int64_t>(head) - static_cast<int64_t>(j) - 1);
    (void)depth;
  }

  void call() {
    if (r(3) == 0) return loop_callback();
    // r1 = memory, r2 = scalar; call fn; r0 = result; scratch registers re-initialised.
    mov_reg(1, 6);
    if (r(2)) emit(Op::MOV64_IMM, 2, 0, 0, r(64));
    else emit(Op::MOV64_REG, 2, 3, 0, 0);
    calls_.push_back(p_.size());
    emit(Op::CALL_LOCAL, 0, 1, 0, 0);
    for (uint8_t reg : {2, 3, 4, 5}) emit(Op::MOV64_IMM, reg, 0, 0, r(100));
  }

  // fn(r1 = memory, r2 = scalar): an access through r1, bounded by r2 in a loop or a mask.
  void subprogram() {
    if (known_) {
      emit(Op::AND64_IMM, 2, 0, 0, edge(31));
      emit(Op::ADD64_REG, 1, 2, 0, 0);
      int size = rand_size();
      emit(ld_op(size), 0, 1, static_cast<int16_t>(edge(kMemSize - 32 - size + 1)), 0);
    } else {
      emit(Op::MOV64_IMM, 0, 0, 0, 0);
      emit(Op::ADD64_REG, 0, 2, 0, 0);
    }
    emit(Op::EXIT, 0, 0, 0, 0);
  }

  // bpf_loop(1..4, cb, ctx, 0) with ctx = {memory, bound} in the stack (fp-16): the callback reads
  // the memory at an offset bounded by ctx->bound and leaves a bound for the next invocation (the
  // index, the bound plus one, or a constant): precision through invocations and the caller's stack.
  void loop_callback() {
    emit(Op::STXDW, 10, 6, -16, 0);
    uint8_t b = scratch();
    emit(Op::MOV64_IMM, b, 0, 0, r(kMemSize));
    emit(Op::STXDW, 10, b, -8, 0);
    emit(Op::MOV64_IMM, 1, 0, 0, 1 + r(4));
    callbacks_.push_back(p_.size());
    emit(Op::LDDW_CODE_ADDR, 2, 4, 0, 0);
    emit(Op::LDDW_HI, 0, 0, 0, 0);
    mov_reg(3, 10);
    emit(Op::ADD64_IMM, 3, 0, 0, -16);
    emit(Op::MOV64_IMM, 4, 0, 0, 0);
    emit(Op::CALL_HELPER, 0, 0, 0, 181);
    for (uint8_t reg : {2, 3, 4, 5}) emit(Op::MOV64_IMM, reg, 0, 0, r(100));
  }

  // cb(r1 = index, r2 = ctx), returns 0.
  void callback() {
    emit(Op::LDXDW, 3, 2, 0, 0);
    emit(Op::LDXDW, 4, 2, 8, 0);
    if (known_) {
      if (r(2)) {
        emit(Op::AND64_IMM, 4, 0, 0, edge(kMemSize - 1));
      } else {
        emit(Op::JGT_IMM, 4, 0, 3, edge(kMemSize - 1));
      }
      emit(Op::ADD64_REG, 3, 4, 0, 0);
      emit(Op::LDXB, 5, 3, 0, 0);
      emit(Op::LDXDW, 4, 2, 8, 0);
    }
    switch (r(3)) {
      case 0: emit(Op::STXDW, 2, 1, 8, 0); break;
      case 1:
        emit(Op::ADD64_IMM, 4, 0, 0, 1);
        emit(Op::STXDW, 2, 4, 8, 0);
        break;
      default:
        emit(Op::MOV64_IMM, 5, 0, 0, r(kMemSize + 8));
        emit(Op::STXDW, 2, 5, 8, 0);
        break;
    }
    emit(Op::MOV64_IMM, 0, 0, 0, 0);
    emit(Op::EXIT, 0, 0, 0, 0);
  }

  // One small change: an offset, an immediate or a register.
  void mutate() {
    size_t i = static_cast<size_t>(r(p_.size()));
    Insn& in = p_[i];
    OpKind k = in.info().kind;
    if (k == OpKind::Exit || k == OpKind::Call || k == OpKind::Jump || k == OpKind::CondJump) return;
    switch (r(3)) {
      case 0: in.off = static_cast<int16_t>(in.off + r(5) - 2); break;
      case 1: if (!in.info().uses_reg_src) in.imm += r(5) - 2; break;
      default: if (in.dst != 10) in.dst = scratch(); break;
    }
  }
};

}  // namespace bpfvm::vgen
