// Random valid BPF programs for differential testing (interpreter vs JIT vs the kernel).
// Used by tests/diff_test.cpp and fuzz/fuzz_diff.cpp. Deterministic for a given seed.
//
// Environment of a generated program: r1 = memory of kMemSize bytes (r2 = its length). The program
// keeps the memory pointer in r9 (never modified), initialises its whole 512-byte stack first, and
// at the end copies the stack into memory at kStackCopyOff, so comparing memory compares the stack.
// Only initialised registers are read (r1-r5 count as clobbered after every call, as the kernel
// says), memory accesses stay in bounds, loops are bounded (a dedicated counter register).
// With kernel = true the program is also acceptable to the kernel's verifier as XDP (no helper
// calls, no callx, no LD_ABS/LD_IND, atomics only on the stack, aligned stack accesses) and the
// kernel prologue loads the packet pointers from the xdp_md context and checks the length.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm::diffgen {

constexpr int kDataSize = 256;
constexpr int kStackCopyOff = 256;
constexpr int kMemSize = kDataSize + kStackSize;  // 768
constexpr int32_t kHelperMix = 1;
constexpr int32_t kHelperIdentity = 5;

inline uint64_t helper_mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
  return a * 31 + (b * 17 ^ c) + (d << 3) - e;
}
inline uint64_t helper_identity(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return a; }

inline HelperTable helpers() {
  HelperTable t;
  t.add(kHelperMix, "mix", &helper_mix);
  t.add(kHelperIdentity, "identity", &helper_identity);
  return t;
}

struct Generated {
  std::vector<Insn> vm;      // bpfvm version (prologue: r9 = r1)
  std::vector<Insn> kernel;  // XDP version (only when generated with kernel = true)
  std::vector<uint8_t> mem;  // initial memory (kMemSize bytes)
};

class Generator {
 public:
  explicit Generator(uint64_t seed, bool kernel = false) : rng_(seed), kernel_(kernel) {}

  Generated generate() {
    Generated g;
    g.mem.resize(kMemSize);
    for (auto& b : g.mem) b = static_cast<uint8_t>(rng_());
    nfuncs_ = static_cast<int>(rnd(0, 3));
    out_.clear();
    calls_.clear();
    // main
    in_fn_ = false;
    loop_depth_ = 0;
    defined_ = 0;
    for (int k = 0; k < main_stack() / 8; ++k) emit(Op::STDW, 10, 0, static_cast<int16_t>(-8 - 8 * k), rimm());
    for (int r = 0; r <= 8; ++r) def_random(r);
    block(static_cast<int>(rnd(8, 40)), 0, 0);
    // every function is called at least once (the kernel refuses unreachable code)
    for (int f = 0; f < nfuncs_; ++f) {
      bool called = false;
      for (auto& c : calls_) called |= c.second == f;
      if (!called) local_call_to(f);
    }
    for (int k = 0; k < main_stack() / 8; ++k) {
      emit(Op::LDXDW, 1, 10, static_cast<int16_t>(-8 - 8 * k));
      emit(Op::STXDW, 9, 1, static_cast<int16_t>(kStackCopyOff + 8 * k));
    }
    ensure(1u << 0);
    emit(Op::EXIT);
    // functions: fn i may call fn j > i only (no recursion)
    std::vector<int64_t> starts;
    for (int f = 0; f < nfuncs_; ++f) {
      starts.push_back(static_cast<int64_t>(out_.size()));
      in_fn_ = true;
      cur_fn_ = f;
      loop_depth_ = 0;
      defined_ = 0x3c;  // r2..r5 (r1 is the memory pointer)
      emit(Op::MOV64_REG, 9, 1);
      for (int k = 0; k < 8; ++k) emit(Op::STDW, 10, 0, static_cast<int16_t>(-8 - 8 * k), rimm());
      def_random(0);
      block(static_cast<int>(rnd(3, 15)), 0, 0);
      ensure(1u << 0);
      emit(Op::EXIT);
    }
    for (auto [pc, f] : calls_) out_[static_cast<size_t>(pc)].imm = starts[static_cast<size_t>(f)] - pc - 1;
    g.vm.push_back(I(Op::MOV64_REG, 9, 1));
    g.vm.insert(g.vm.end(), out_.begin(), out_.end());
    if (kernel_) {
      // r9 = ctx->data; r2 = ctx->data_end; if (r9 + kMemSize > r2) return 0;
      g.kernel = {I(Op::LDXW, 9, 1, 0), I(Op::LDXW, 2, 1, 4), I(Op::MOV64_REG, 3, 9), I(Op::ADD64_IMM, 3, 0, 0, kMemSize),
                  I(Op::JLE_REG, 3, 2, 2), I(Op::MOV64_IMM, 0, 0, 0, 0), I(Op::EXIT)};
      g.kernel.insert(g.kernel.end(), out_.begin(), out_.end());
    }
    return g;
  }

 private:
  static Insn I(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
    return Insn{op, dst, src, off, imm};
  }
  void emit(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
    out_.push_back(I(op, dst, src, off, imm));
    if (op_info(op).kind == OpKind::LoadImm64) out_.push_back(I(Op::LDDW_HI));
  }
  uint64_t rnd(uint64_t lo, uint64_t hi) { return lo + rng_() % (hi - lo + 1); }
  bool chance(int percent) { return static_cast<int>(rng_() % 100) < percent; }

  int64_t rimm() {
    switch (rng_() % 8) {
      case 0: return 0;
      case 1: return -1;
      case 2: return static_cast<int64_t>(rnd(0, 16)) - 8;
      case 3: return INT32_MIN;
      case 4: return INT32_MAX;
      case 5: return static_cast<int64_t>(rnd(0, 300));
      default: return static_cast<int32_t>(rng_());
    }
  }
  uint64_t rimm64() {
    switch (rng_() % 4) {
      case 0: return 1ull << 63;
      case 1: return static_cast<uint64_t>(rimm());
      default: return rng_();
    }
  }

  // The kernel allows 512 bytes of stack for a whole call chain: main uses 256 there.
  int main_stack() const { return kernel_ ? 256 : kStackSize; }
  // registers: r0..r8 are scalars; r9 memory pointer; r10 frame pointer.
  uint16_t reserved() const {
    uint16_t m = 0;
    if (loop_depth_ >= 1) m |= 1u << 6;
    if (loop_depth_ >= 2) m |= 1u << 7;
    return m;
  }
  int pick(uint16_t mask) {
    int n = __builtin_popcount(mask);
    if (n == 0) return -1;
    int k = static_cast<int>(rng_() % static_cast<uint64_t>(n));
    for (int r = 0; r <= 8; ++r)
      if ((mask >> r) & 1) {
        if (k-- == 0) return r;
      }
    return -1;
  }
  uint16_t writable() const { return static_cast<uint16_t>(0x1ff & ~reserved()); }
  int pick_src() {
    int r = pick(defined_ & 0x1ff);
    if (r < 0) {
      def_random(0);
      r = 0;
    }
    return r;
  }
  int pick_dst_defined() {
    int r = pick(defined_ & writable());
    if (r < 0) {
      r = pick(writable());
      def_random(r);
    }
    return r;
  }
  void def_random(int r) {
    if (chance(20)) emit(Op::LDDW, static_cast<uint8_t>(r), 0, 0, static_cast<int64_t>(rimm64()));
    else emit(chance(70) ? Op::MOV64_IMM : Op::MOV32_IMM, static_cast<uint8_t>(r), 0, 0, rimm());
    defined_ |= static_cast<uint16_t>(1u << r);
  }
  void ensure(uint16_t mask) {
    for (int r = 0; r <= 8; ++r)
      if (((mask >> r) & 1) && !((defined_ >> r) & 1)) def_random(r);
  }

  void alu() {
    static const Op ops[] = {
        Op::ADD64_IMM, Op::ADD64_REG, Op::ADD32_IMM, Op::ADD32_REG, Op::SUB64_IMM, Op::SUB64_REG, Op::SUB32_IMM,
        Op::SUB32_REG, Op::MUL64_IMM, Op::MUL64_REG, Op::MUL32_IMM, Op::MUL32_REG, Op::DIV64_IMM, Op::DIV64_REG,
        Op::DIV32_IMM, Op::DIV32_REG, Op::SDIV64_IMM, Op::SDIV64_REG, Op::SDIV32_IMM, Op::SDIV32_REG, Op::OR64_IMM,
        Op::OR64_REG, Op::OR32_IMM, Op::OR32_REG, Op::AND64_IMM, Op::AND64_REG, Op::AND32_IMM, Op::AND32_REG,
        Op::LSH64_IMM, Op::LSH64_REG, Op::LSH32_IMM, Op::LSH32_REG, Op::RSH64_IMM, Op::RSH64_REG, Op::RSH32_IMM,
        Op::RSH32_REG, Op::MOD64_IMM, Op::MOD64_REG, Op::MOD32_IMM, Op::MOD32_REG, Op::SMOD64_IMM, Op::SMOD64_REG,
        Op::SMOD32_IMM, Op::SMOD32_REG, Op::XOR64_IMM, Op::XOR64_REG, Op::XOR32_IMM, Op::XOR32_REG, Op::MOV64_IMM,
        Op::MOV64_REG, Op::MOV32_IMM, Op::MOV32_REG, Op::ARSH64_IMM, Op::ARSH64_REG, Op::ARSH32_IMM, Op::ARSH32_REG,
        Op::NEG64, Op::NEG32, Op::MOVSX64_8, Op::MOVSX64_16, Op::MOVSX64_32, Op::MOVSX32_8, Op::MOVSX32_16, Op::LE16,
        Op::LE32, Op::LE64, Op::BE16, Op::BE32, Op::BE64, Op::BSWAP16, Op::BSWAP32, Op::BSWAP64};
    Op op = ops[rng_() % (sizeof(ops) / sizeof(ops[0]))];
    const OpInfo& info = op_info(op);
    bool is_mov = (info.code & 0xf0) == 0xb0;
    int d = is_mov ? pick(writable()) : pick_dst_defined();
    int s = info.uses_reg_src ? pick_src() : 0;
    int64_t imm = 0;
    uint8_t base = info.code & 0xf0;
    if (!info.uses_reg_src && (info.fields & F_IMM)) {
      if (base == 0x60 || base == 0x70 || base == 0xc0) imm = static_cast<int64_t>(rnd(0, info.alu64 ? 63 : 31));
      else imm = rimm();
      // the kernel refuses division by a constant zero
      if (kernel_ && imm == 0 && (base == 0x30 || base == 0x90)) imm = 7;
    }
    if (info.kind == OpKind::Alu && (op == Op::LE16 || op == Op::LE32 || op == Op::LE64 || op == Op::BE16 ||
                                     op == Op::BE32 || op == Op::BE64 || op == Op::BSWAP16 || op == Op::BSWAP32 ||
                                     op == Op::BSWAP64))
      imm = info.selval;
    Insn in = I(op, static_cast<uint8_t>(d), static_cast<uint8_t>(s), 0, imm);
    if (info.sel == Sel::OFF) in.off = static_cast<int16_t>(info.selval);
    out_.push_back(in);
    defined_ |= static_cast<uint16_t>(1u << d);
  }

  // A memory operand: base register and offset, for an access of `size` bytes.
  void mem_operand(int size, bool stack_only, uint8_t& base, int16_t& off) {
    bool stack = stack_only || chance(50);
    if (stack) {
      int slots = in_fn_ ? 64 : main_stack();
      base = 10;
      off = static_cast<int16_t>(-static_cast<int>(rnd(1, static_cast<uint64_t>(slots / size))) * size);
    } else {
      base = 9;
      bool aligned = chance(70);
      int lim = kDataSize - size;
      off = static_cast<int16_t>(rnd(0, static_cast<uint64_t>(lim)));
      if (aligned) off = static_cast<int16_t>(off / size * size);
    }
  }

  void memop() {
    static const Op loads[] = {Op::LDXB, Op::LDXH, Op::LDXW, Op::LDXDW, Op::LDXSB, Op::LDXSH, Op::LDXSW};
    static const Op stores[] = {Op::STB, Op::STH, Op::STW, Op::STDW, Op::STXB, Op::STXH, Op::STXW, Op::STXDW};
    uint8_t base;
    int16_t off;
    if (chance(50)) {
      Op op = loads[rng_() % 7];
      mem_operand(op_info(op).size, false, base, off);
      int d = pick(writable());
      emit(op, static_cast<uint8_t>(d), base, off);
      defined_ |= static_cast<uint16_t>(1u << d);
    } else {
      Op op = stores[rng_() % 8];
      mem_operand(op_info(op).size, false, base, off);
      if (op_info(op).kind == OpKind::StoreReg) emit(op, base, static_cast<uint8_t>(pick_src()), off);
      else emit(op, base, 0, off, rimm());
    }
  }

  void atomic() {
    static const Op ops[] = {Op::ATOMIC_ADD32,       Op::ATOMIC_ADD64,       Op::ATOMIC_OR32,        Op::ATOMIC_OR64,
                             Op::ATOMIC_AND32,       Op::ATOMIC_AND64,       Op::ATOMIC_XOR32,       Op::ATOMIC_XOR64,
                             Op::ATOMIC_FETCH_ADD32, Op::ATOMIC_FETCH_ADD64, Op::ATOMIC_FETCH_OR32,  Op::ATOMIC_FETCH_OR64,
                             Op::ATOMIC_FETCH_AND32, Op::ATOMIC_FETCH_AND64, Op::ATOMIC_FETCH_XOR32, Op::ATOMIC_FETCH_XOR64,
                             Op::ATOMIC_XCHG32,      Op::ATOMIC_XCHG64,      Op::ATOMIC_CMPXCHG32,   Op::ATOMIC_CMPXCHG64};
    Op op = ops[rng_() % 20];
    const OpInfo& info = op_info(op);
    uint8_t base;
    int16_t off;
    mem_operand(info.size, kernel_, base, off);
    if (base == 9) off = static_cast<int16_t>(off / info.size * info.size);
    bool writes_src = (info.selval & 1) || op == Op::ATOMIC_XCHG32 || op == Op::ATOMIC_XCHG64;
    bool cmpxchg = op == Op::ATOMIC_CMPXCHG32 || op == Op::ATOMIC_CMPXCHG64;
    int s = writes_src ? pick_dst_defined() : pick_src();
    if (cmpxchg) ensure(1u << 0);
    Insn in = I(op, base, static_cast<uint8_t>(s), off, info.selval);
    out_.push_back(in);
    if (cmpxchg) defined_ |= 1u;
  }

  Insn cond_jump(int16_t off) {
    static const Op jops[] = {Op::JEQ_IMM,   Op::JEQ_REG,   Op::JEQ32_IMM,  Op::JEQ32_REG,  Op::JGT_IMM,   Op::JGT_REG,
                              Op::JGT32_IMM, Op::JGT32_REG, Op::JGE_IMM,    Op::JGE_REG,    Op::JGE32_IMM, Op::JGE32_REG,
                              Op::JSET_IMM,  Op::JSET_REG,  Op::JSET32_IMM, Op::JSET32_REG, Op::JNE_IMM,   Op::JNE_REG,
                              Op::JNE32_IMM, Op::JNE32_REG, Op::JSGT_IMM,   Op::JSGT_REG,   Op::JSGT32_IMM, Op::JSGT32_REG,
                              Op::JSGE_IMM,  Op::JSGE_REG,  Op::JSGE32_IMM, Op::JSGE32_REG, Op::JLT_IMM,   Op::JLT_REG,
                              Op::JLT32_IMM, Op::JLT32_REG, Op::JLE_IMM,    Op::JLE_REG,    Op::JLE32_IMM, Op::JLE32_REG,
                              Op::JSLT_IMM,  Op::JSLT_REG,  Op::JSLT32_IMM, Op::JSLT32_REG, Op::JSLE_IMM,  Op::JSLE_REG,
                              Op::JSLE32_IMM, Op::JSLE32_REG};
    Op op = jops[rng_() % (sizeof(jops) / sizeof(jops[0]))];
    const OpInfo& info = op_info(op);
    int d = pick_src();
    int s = info.uses_reg_src ? pick_src() : 0;
    return I(op, static_cast<uint8_t>(d), static_cast<uint8_t>(s), off, info.uses_reg_src ? 0 : rimm());
  }

  void branch(int depth, int budget) {
    uint16_t before = defined_;
    size_t at = out_.size();
    out_.push_back(cond_jump(0));
    block(static_cast<int>(rnd(0, static_cast<uint64_t>(budget))), depth + 1, budget / 2);
    // An early return from a function, or (rarer) from the program: the JIT lays such blocks out of
    // line and threads jumps to exits (main: the stack copy at the end is then skipped).
    bool early_exit = in_fn_ ? chance(15) : chance(4);
    if (early_exit) {
      ensure(1u << 0);
      emit(Op::EXIT);
    }
    bool has_else = !early_exit && chance(40);
    size_t ja_at = 0;
    if (has_else) {
      ja_at = out_.size();
      emit(chance(50) ? Op::JA : (kernel_ ? Op::JA : Op::JA32));
    }
    out_[at].off = static_cast<int16_t>(out_.size() - at - 1);
    uint16_t after_then = defined_;
    if (has_else) {
      defined_ = before;
      block(static_cast<int>(rnd(0, static_cast<uint64_t>(budget))), depth + 1, budget / 2);
      int64_t len = static_cast<int64_t>(out_.size() - ja_at - 1);
      if (out_[ja_at].op == Op::JA32) out_[ja_at].imm = len;
      else out_[ja_at].off = static_cast<int16_t>(len);
      defined_ &= after_then;
    } else {
      defined_ = before & after_then;
    }
  }

  void loop(int depth, int budget) {
    int c = loop_depth_ == 0 ? 6 : 7;
    emit(Op::MOV64_IMM, static_cast<uint8_t>(c), 0, 0, static_cast<int64_t>(rnd(1, 6)));
    defined_ |= static_cast<uint16_t>(1u << c);
    uint16_t before = defined_;
    ++loop_depth_;
    size_t head = out_.size();
    block(static_cast<int>(rnd(1, static_cast<uint64_t>(budget))), depth + 1, budget / 2);
    ensure(before);  // the next iteration may read what the first one could read
    --loop_depth_;
    emit(Op::ADD64_IMM, static_cast<uint8_t>(c), 0, 0, -1);
    int64_t back = static_cast<int64_t>(head) - static_cast<int64_t>(out_.size()) - 1;
    out_.push_back(I(chance(50) ? Op::JNE_IMM : Op::JSGT_IMM, static_cast<uint8_t>(c), 0, static_cast<int16_t>(back), 0));
  }

  void set_args() {
    for (int r = 1; r <= 5; ++r) {
      if (!((defined_ >> r) & 1) || chance(30)) {
        if (chance(50) && (defined_ & 0x1c1)) {
          int s = pick(defined_ & 0x1c1);  // r0, r6..r8
          emit(Op::MOV64_REG, static_cast<uint8_t>(r), static_cast<uint8_t>(s));
        } else {
          def_random(r);
        }
        defined_ |= static_cast<uint16_t>(1u << r);
      }
    }
  }
  void after_call() {
    defined_ &= static_cast<uint16_t>(~0x3eu);
    defined_ |= 1u;
  }

  void helper_call() {
    set_args();
    emit(Op::CALL_HELPER, 0, 0, 0, chance(70) ? kHelperMix : kHelperIdentity);
    after_call();
  }

  void callx() {
    set_args();
    int r = pick(writable() & 0x1c1);
    if (r < 0) return;
    int64_t id = chance(95) ? (chance(50) ? kHelperMix : kHelperIdentity) : static_cast<int64_t>(rnd(0, 9));
    emit(Op::MOV64_IMM, static_cast<uint8_t>(r), 0, 0, id);
    defined_ |= static_cast<uint16_t>(1u << r);
    out_.push_back(I(Op::CALLX, static_cast<uint8_t>(r)));
    after_call();
  }

  void local_call() {
    int first = in_fn_ ? cur_fn_ + 1 : 0;
    if (first >= nfuncs_) return;
    int f = static_cast<int>(rnd(static_cast<uint64_t>(first), static_cast<uint64_t>(nfuncs_ - 1)));
    local_call_to(f);
  }
  void local_call_to(int f) {
    set_args();
    emit(Op::MOV64_REG, 1, 9);
    calls_.push_back({static_cast<int64_t>(out_.size()), f});
    emit(Op::CALL_LOCAL, 0, 1, 0, 0);
    after_call();
  }

  void ldpkt() {
    static const Op ops[] = {Op::LDABS_B, Op::LDABS_H, Op::LDABS_W, Op::LDIND_B, Op::LDIND_H, Op::LDIND_W};
    Op op = ops[rng_() % 6];
    int64_t imm = chance(95) ? static_cast<int64_t>(rnd(0, kMemSize - 4)) : static_cast<int64_t>(rnd(0, 2000));
    if (op == Op::LDIND_B || op == Op::LDIND_H || op == Op::LDIND_W) {
      int s = pick(writable() & 0x1fe);
      if (s < 0) return;
      emit(Op::MOV64_IMM, static_cast<uint8_t>(s), 0, 0, chance(90) ? static_cast<int64_t>(rnd(0, 300)) : rimm());
      defined_ |= static_cast<uint16_t>(1u << s);
      emit(op, 0, static_cast<uint8_t>(s), 0, imm / 2);
    } else {
      emit(op, 0, 0, 0, imm);
    }
    defined_ |= 1u;
  }

  void block(int items, int depth, int budget) {
    if (budget < 2) budget = 2;
    for (int k = 0; k < items; ++k) {
      int x = static_cast<int>(rng_() % 100);
      if (x < 42) alu();
      else if (x < 60) memop();
      else if (x < 66) atomic();
      else if (x < 76 && depth < 3) branch(depth, std::min(budget, 8));
      else if (x < 81 && loop_depth_ < 2 && depth < 3) loop(depth, std::min(budget, 6));
      else if (x < 86 && !kernel_) helper_call();
      else if (x < 91) local_call();
      else if (x < 94) def_random(pick(writable()));
      else if (x < 97 && !kernel_) ldpkt();
      else if (!kernel_) callx();
      else alu();
    }
  }

  std::mt19937_64 rng_;
  bool kernel_;
  std::vector<Insn> out_;
  std::vector<std::pair<int64_t, int>> calls_;
  uint16_t defined_ = 0;
  int loop_depth_ = 0;
  int nfuncs_ = 0;
  int cur_fn_ = 0;
  bool in_fn_ = false;
};

}  // namespace bpfvm::diffgen
