// x86-64 JIT compiler (issue 3). Design notes: docs/jit.md.
//
// Register mapping (System V friendly: a helper call is a plain `call`):
//   r0 rax   r1 rdi   r2 rsi   r3 rdx   r4 rcx   r5 r8
//   r6 rbx   r7 r13   r8 r14   r9 r15   r10 rbp
//   r12: pointer to the per-run JitHot block (when the program needs it); r9, r10, r11: scratch.
//
// Every BPF function (instruction 0, every bpf-to-bpf call target, every code address loaded by
// lddw code_addr) is compiled as a native function: the main one inline in the entry (with the
// prologue that sets up the BPF stack), the others as callable functions that save the host registers
// of r6-r9 they write. bpf-to-bpf calls are native calls with rbp lowered by 512 bytes.
// Non-local exits (LD_ABS out of bounds, a tail call, a run-time error) restore the rsp saved at
// entry and jump to the entry's epilogue (JitHot::unwind_rsp / unwind_rip).
#include <capstone/capstone.h>
#include <cpuid.h>
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <random>
#include <span>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/map.hpp"
#include "exec/engine.hpp"
#include "exec/jit/exec_memory.hpp"
#include "maps/array_layout.hpp"

namespace bpfvm {
namespace detail {
namespace {

std::atomic<bool> g_use_bmi2{true};

// BMI2 (shlx/shrx/sarx): CPUID leaf 7, sub-leaf 0, EBX bit 8. General-purpose instructions: no
// operating-system support (XSAVE state) is involved.
bool host_has_bmi2() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (ebx & (1u << 8)) != 0;
  }();
  return has;
}

constexpr int kSkfNetOff = -0x100000;
constexpr int kSkfLlOff = -0x200000;

// The part of the per-run state JIT code reads and writes (fixed offsets).
struct JitHot {
  uint64_t unwind_rsp;    // 0: rsp of the entry's body
  uint64_t unwind_rip;    // 8: the entry's epilogue
  uint64_t stack_limit;   // 16: a local call from a frame whose rbp <= this exceeds the depth limit
  const uint8_t* pkt;     // 24: LD_ABS / LD_IND packet
  uint64_t pkt_len;       // 32
  uint64_t saved_r1;      // 40: r1 at a tail-call helper call
  uint64_t callx_idx;     // 48: table offset of the helper a callx called
  uint64_t failed;        // 56: non-zero once `error` is set
  void* state;            // 64: back pointer to the JitState
};
static_assert(offsetof(JitHot, unwind_rsp) == 0 && offsetof(JitHot, unwind_rip) == 8 &&
              offsetof(JitHot, stack_limit) == 16 && offsetof(JitHot, pkt) == 24 && offsetof(JitHot, pkt_len) == 32 &&
              offsetof(JitHot, saved_r1) == 40 && offsetof(JitHot, callx_idx) == 48 && offsetof(JitHot, failed) == 56);

class JitEngine;

struct JitState {
  JitHot hot;  // left uninitialised: init_state sets what is read before being written (no rep stos per run)
  const JitEngine* engine = nullptr;
  const RunArgs* args = nullptr;
  RunContext* ctx = nullptr;
  std::unique_ptr<Diagnostic> error;  // set on failure only (keeps the run path cheap)
};

struct CallxEntry {
  uint64_t fn;    // HelperFn or 0
  uint64_t tail;  // 1 for a tail-call helper
};

constexpr int64_t kHelperMapLookupElem = 1;  // BPF_FUNC_map_lookup_elem

// A host general-purpose register by its encoding number (rax 0, rcx 1, rdx 2, rbx 3, rsp 4, rbp 5,
// rsi 6, rdi 7, r8 8 ... r15 15); default-constructed: none.
struct Gp {
  uint8_t n = 0xff;
  constexpr uint32_t id() const { return n; }
  constexpr bool isValid() const { return n != 0xff; }
  constexpr bool operator==(const Gp&) const = default;
};
constexpr Gp gp(uint32_t n) { return Gp{static_cast<uint8_t>(n)}; }

// Host registers of BPF r0..r10.
constexpr uint32_t kHost[kNumRegs] = {0 /*rax*/, 7 /*rdi*/, 6 /*rsi*/, 2 /*rdx*/, 1 /*rcx*/, 8 /*r8*/,
                                      3 /*rbx*/, 13 /*r13*/, 14 /*r14*/, 15 /*r15*/, 5 /*rbp*/};

inline Gp Q(int r) { return gp(kHost[r]); }

using EntryFn = uint64_t (*)(uint64_t r1, uint64_t r2, JitHot* hot);
using TrampolineFn = uint64_t (*)(JitHot* hot, const void* fn, const uint64_t* args);

// ---- a direct encoder for the hottest instruction forms ---------------------------------------------
// Every instruction the JIT emits is encoded here (no assembler library): each form is a few dozen
// machine instructions, where a generic encoder costs hundreds. Host register numbers as Gp above.
// Encoding runs for every instruction of every compile: the helpers are forced inline (as calls they
// cost more than the encoding).
#define BPFVM_ENC [[gnu::always_inline]] inline
struct Enc {
  uint8_t b[16];
  uint32_t n = 0;
  BPFVM_ENC void u8(uint32_t v) { b[n++] = static_cast<uint8_t>(v); }
  BPFVM_ENC void u16(uint32_t v) {
    u8(v & 0xff);
    u8((v >> 8) & 0xff);
  }
  BPFVM_ENC void u32(uint32_t v) {
    std::memcpy(b + n, &v, 4);
    n += 4;
  }
  BPFVM_ENC void u64(uint64_t v) {
    std::memcpy(b + n, &v, 8);
    n += 8;
  }
  // REX prefix: W, R (reg), B (rm/base); `force` for byte registers spl/bpl/sil/dil.
  BPFVM_ENC void rex(bool w, uint32_t reg, uint32_t rm, bool force = false) {
    uint32_t r = 0x40 | (w ? 8 : 0) | ((reg >> 3) & 1) << 2 | ((rm >> 3) & 1);
    if (r != 0x40 || force) u8(r);
  }
  BPFVM_ENC void modrm_rr(uint32_t reg, uint32_t rm) { u8(0xc0 | (reg & 7) << 3 | (rm & 7)); }
  // [base + disp]: rsp/r12 need a SIB byte, rbp/r13 a displacement.
  BPFVM_ENC void modrm_mem(uint32_t reg, uint32_t base, int32_t disp) {
    uint32_t mod = (disp == 0 && (base & 7) != 5) ? 0 : (disp >= -128 && disp <= 127) ? 1 : 2;
    u8(mod << 6 | (reg & 7) << 3 | (base & 7));
    if ((base & 7) == 4) u8(0x24);
    if (mod == 1) u8(static_cast<uint32_t>(disp) & 0xff);
    else if (mod == 2) u32(static_cast<uint32_t>(disp));
  }
};

// op r/m(dst), reg(src): 0x01 add, 0x09 or, 0x21 and, 0x29 sub, 0x31 xor, 0x39 cmp, 0x85 test, 0x89 mov.
BPFVM_ENC Enc enc_rr(uint8_t opcode, bool w64, uint32_t dst, uint32_t src) {
  Enc e;
  e.rex(w64, src, dst);
  e.u8(opcode);
  e.modrm_rr(src, dst);
  return e;
}
// group-1 op with an immediate (sign-extended to the operand size): /0 add, /1 or, /4 and, /5 sub,
// /6 xor, /7 cmp.
BPFVM_ENC Enc enc_ri(uint32_t ext, bool w64, uint32_t dst, int32_t imm) {
  Enc e;
  e.rex(w64, 0, dst);
  if (imm >= -128 && imm <= 127) {
    e.u8(0x83);
    e.modrm_rr(ext, dst);
    e.u8(static_cast<uint32_t>(imm) & 0xff);
  } else {
    e.u8(0x81);
    e.modrm_rr(ext, dst);
    e.u32(static_cast<uint32_t>(imm));
  }
  return e;
}
BPFVM_ENC Enc enc_test_ri(bool w64, uint32_t dst, int32_t imm) {
  Enc e;
  e.rex(w64, 0, dst);
  e.u8(0xf7);
  e.modrm_rr(0, dst);
  e.u32(static_cast<uint32_t>(imm));
  return e;
}
// dst = v (v as the BPF semantics give it: 64-bit value).
BPFVM_ENC Enc enc_mov_imm(uint32_t dst, uint64_t v) {
  Enc e;
  if (v == 0) {  // xor r32, r32
    e.rex(false, dst, dst);
    e.u8(0x31);
    e.modrm_rr(dst, dst);
  } else if (v <= 0xffffffffull) {  // mov r32, imm32 (zero-extends)
    e.rex(false, 0, dst);
    e.u8(0xb8 + (dst & 7));
    e.u32(static_cast<uint32_t>(v));
  } else if (static_cast<int64_t>(v) >= INT32_MIN && static_cast<int64_t>(v) < 0) {  // mov r64, simm32
    e.rex(true, 0, dst);
    e.u8(0xc7);
    e.modrm_rr(0, dst);
    e.u32(static_cast<uint32_t>(v));
  } else {  // movabs
    e.rex(true, 0, dst);
    e.u8(0xb8 + (dst & 7));
    e.u64(v);
  }
  return e;
}

BPFVM_ENC Enc enc_push_pop(bool push, uint32_t r) {
  Enc e;
  e.rex(false, 0, r);
  e.u8((push ? 0x50 : 0x58) + (r & 7));
  return e;
}
// mov r, imm64 (movabs); call r
BPFVM_ENC Enc enc_call_abs(uint32_t via, uint64_t fn) {
  Enc e;
  e.rex(true, 0, via);
  e.u8(0xb8 + (via & 7));
  e.u64(fn);
  e.rex(false, 0, via);
  e.u8(0xff);
  e.modrm_rr(2, via);
  return e;
}
// shl (/4), shr (/5), sar (/7) by an immediate count 1..63
BPFVM_ENC Enc enc_shift_imm(uint32_t ext, bool w64, uint32_t dst, uint32_t count) {
  Enc e;
  e.rex(w64, 0, dst);
  e.u8(0xc1);
  e.modrm_rr(ext, dst);
  e.u8(count);
  return e;
}

// The rest of the forms the instruction emitters need. kNoIndex: no index register.
constexpr int kNoIndex = -1;
constexpr uint32_t kRax = 0, kRcx = 1, kRdx = 2, kRbx = 3, kRsp = 4, kRbp = 5, kRsi = 6, kRdi = 7, kR8 = 8,
                   kR9 = 9, kR10 = 10, kR11 = 11, kR12 = 12, kR13 = 13, kR14 = 14, kR15 = 15;

struct MemOp {  // [base + index * 2^scale + disp]
  uint32_t base;
  int32_t disp = 0;
  int index = kNoIndex;
  uint32_t scale = 0;
};

// Byte registers spl, bpl, sil, dil need a REX prefix (without one, 4-7 are ah, ch, dh, bh).
BPFVM_ENC bool byte_needs_rex(uint32_t r) { return r >= 4 && r <= 7; }

// [prefix] [REX] opcode (1 byte, or 0x0f xx as 0x0fxx) modrm(reg, rm register).
BPFVM_ENC Enc enc_op_rr(uint32_t opcode, bool w64, uint32_t reg, uint32_t rm, uint32_t prefix = 0, bool force_rex = false) {
  Enc e;
  if (prefix) e.u8(prefix);
  e.rex(w64, reg, rm, force_rex);
  if (opcode > 0xff) e.u8(opcode >> 8);
  e.u8(opcode & 0xff);
  e.modrm_rr(reg, rm);
  return e;
}

// [prefix] [REX] opcode modrm(reg, memory) [sib] [disp].
BPFVM_ENC Enc enc_op_mem(uint32_t opcode, bool w64, uint32_t reg, const MemOp& m, uint32_t prefix = 0,
                      bool force_rex = false) {
  Enc e;
  if (prefix) e.u8(prefix);
  const uint32_t x = m.index == kNoIndex ? 0 : static_cast<uint32_t>(m.index);
  uint32_t r = 0x40 | (w64 ? 8 : 0) | ((reg >> 3) & 1) << 2 | ((x >> 3) & 1) << 1 | ((m.base >> 3) & 1);
  if (r != 0x40 || force_rex) e.u8(r);
  if (opcode > 0xff) e.u8(opcode >> 8);
  e.u8(opcode & 0xff);
  if (m.index == kNoIndex) {
    e.modrm_mem(reg, m.base, m.disp);
  } else {
    uint32_t mod = (m.disp == 0 && (m.base & 7) != 5) ? 0 : (m.disp >= -128 && m.disp <= 127) ? 1 : 2;
    e.u8(mod << 6 | (reg & 7) << 3 | 4);
    e.u8(m.scale << 6 | (x & 7) << 3 | (m.base & 7));
    if (mod == 1) e.u8(static_cast<uint32_t>(m.disp) & 0xff);
    else if (mod == 2) e.u32(static_cast<uint32_t>(m.disp));
  }
  return e;
}

// group-1 op on a qword in memory with an immediate: /0 add ... /7 cmp.
BPFVM_ENC Enc enc_mi(uint32_t ext, bool w64, const MemOp& m, int32_t imm) {
  const bool i8 = imm >= -128 && imm <= 127;
  Enc e = enc_op_mem(i8 ? 0x83 : 0x81, w64, ext, m);
  if (i8) e.u8(static_cast<uint32_t>(imm) & 0xff);
  else e.u32(static_cast<uint32_t>(imm));
  return e;
}

// imul dst, rm, imm
BPFVM_ENC Enc enc_imul_imm(bool w64, uint32_t dst, uint32_t rm, int32_t imm) {
  const bool i8 = imm >= -128 && imm <= 127;
  Enc e = enc_op_rr(i8 ? 0x6b : 0x69, w64, dst, rm);
  if (i8) e.u8(static_cast<uint32_t>(imm) & 0xff);
  else e.u32(static_cast<uint32_t>(imm));
  return e;
}

BPFVM_ENC Enc enc_bswap(bool w64, uint32_t r) {
  Enc e;
  e.rex(w64, 0, r);
  e.u8(0x0f);
  e.u8(0xc8 + (r & 7));
  return e;
}

// shlx (pp = 1: 66), sarx (pp = 2: F3), shrx (pp = 3: F2): dst = src shifted by count (VEX.0F38 F7).
BPFVM_ENC Enc enc_shiftx(uint32_t pp, bool w64, uint32_t dst, uint32_t src, uint32_t count) {
  Enc e;
  e.u8(0xc4);
  e.u8(((~dst >> 3) & 1) << 7 | 1 << 6 | ((~src >> 3) & 1) << 5 | 0x02);  // R, X (no index), B, map 0F38
  e.u8((w64 ? 0x80 : 0) | ((~count & 15) << 3) | pp);                       // W, vvvv, L = 0, pp
  e.u8(0xf7);
  e.modrm_rr(dst, src);
  return e;
}

BPFVM_ENC Enc enc_byte(uint32_t b0) {
  Enc e;
  e.u8(b0);
  return e;
}
BPFVM_ENC Enc enc_bytes(uint32_t b0, uint32_t b1) {
  Enc e;
  e.u8(b0);
  e.u8(b1);
  return e;
}

// ---- the code buffer ------------------------------------------------------------------------------
// The bytes of one compile, with the few labels the prologues and epilogues need (jumps between BPF
// instructions, to slow paths and calls of BPF functions are patched by the compiler itself). Every
// label reference is a rel32 displacement (jumps, rip-relative lea) patched by resolve(); a jump to a
// label already bound takes the 2-byte form when it fits.
struct Label {
  uint32_t id = UINT32_MAX;
};

class CodeBuf {
 public:
  // Empties the buffer (keeping its storage) with room for at least `bytes`.
  void reset(size_t bytes) {
    size_ = 0;
    labels_.clear();
    links_.clear();
    if (mem_.size() < bytes + kSlack) mem_.resize(bytes + kSlack);
  }
  uint32_t offset() const { return size_; }
  uint8_t* data() { return mem_.data(); }
  const uint8_t* data() const { return mem_.data(); }
  std::span<const uint8_t> bytes() const { return {mem_.data(), size_}; }
  // Appends e.n bytes (copies all 16: cheaper than a variable-length copy; the slack keeps it inside).
  [[gnu::always_inline]] void put(const Enc& e) {
    if (mem_.size() - size_ < kSlack) [[unlikely]] grow();
    std::memcpy(mem_.data() + size_, e.b, sizeof(e.b));
    size_ += e.n;
  }

  Label new_label() {
    labels_.push_back(kUnbound);
    return Label{static_cast<uint32_t>(labels_.size() - 1)};
  }
  void bind(Label l) { labels_[l.id] = size_; }
  // jmp (cc < 0) or jcc (cc = x86 condition code) to l.
  void jump(int cc, Label l) {
    Enc e;
    const uint32_t at = labels_[l.id];
    if (at != kUnbound) {
      const int64_t d8 = static_cast<int64_t>(at) - (size_ + 2);
      if (d8 >= -128) {
        e.u8(cc < 0 ? 0xeb : 0x70 + static_cast<uint32_t>(cc));
        e.u8(static_cast<uint32_t>(d8) & 0xff);
        put(e);
        return;
      }
    }
    if (cc < 0) e.u8(0xe9);
    else {
      e.u8(0x0f);
      e.u8(0x80 + static_cast<uint32_t>(cc));
    }
    e.u32(0);
    put(e);
    links_.push_back({l.id, size_ - 4});
  }
  // lea reg, [rip + l]
  void lea_rip(uint32_t reg, Label l) {
    Enc e;
    e.u8(0x48 | ((reg >> 3) & 1) << 2);
    e.u8(0x8d);
    e.u8((reg & 7) << 3 | 5);
    e.u32(0);
    put(e);
    links_.push_back({l.id, size_ - 4});
  }
  // Multi-byte nops (the forms Intel's optimization manual recommends) up to a multiple of `to`.
  void align(uint32_t to) {
    static constexpr uint8_t kNops[9][9] = {
        {0x90},
        {0x66, 0x90},
        {0x0f, 0x1f, 0x00},
        {0x0f, 0x1f, 0x40, 0x00},
        {0x0f, 0x1f, 0x44, 0x00, 0x00},
        {0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
        {0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
        {0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
    };
    uint32_t pad = (to - size_ % to) % to;
    while (pad) {
      const uint32_t k = pad < 9 ? pad : 9;
      Enc e;
      for (uint32_t j = 0; j < k; ++j) e.u8(kNops[k - 1][j]);
      put(e);
      pad -= k;
    }
  }
  // Patches every label reference; false when a referenced label was never bound.
  bool resolve() {
    for (const Link& k : links_) {
      const uint32_t at = labels_[k.label];
      if (at == kUnbound) return false;
      const int32_t d = static_cast<int32_t>(at) - static_cast<int32_t>(k.pos + 4);
      std::memcpy(mem_.data() + k.pos, &d, 4);
    }
    links_.clear();
    return true;
  }
  void swap(CodeBuf& o) noexcept {
    mem_.swap(o.mem_);
    std::swap(size_, o.size_);
    labels_.swap(o.labels_);
    links_.swap(o.links_);
  }

 private:
  static constexpr uint32_t kUnbound = UINT32_MAX;
  static constexpr size_t kSlack = sizeof(Enc::b);
  [[gnu::noinline]] void grow() { mem_.resize(mem_.size() * 2 + 4096); }
  struct Link {
    uint32_t label;
    uint32_t pos;  // the rel32 to patch
  };
  std::vector<uint8_t> mem_;  // its size is the capacity; size_ bytes are code
  uint32_t size_ = 0;
  std::vector<uint32_t> labels_;  // offset of each label, kUnbound until bound
  std::vector<Link> links_;
};

// jump_target() (isa/opcodes.cpp), inline: the analysis asks for every jump several times.
[[gnu::always_inline]] inline int64_t jit_target(const Insn& in, int64_t pc) {
  return pc + 1 + ((in.op == Op::JA32 || in.op == Op::CALL_LOCAL) ? in.imm : in.off);
}

// ---- register use ---------------------------------------------------------------------------------
struct RegUse {
  uint16_t reads = 0, writes = 0;
};

constexpr uint16_t kArgRegs = 0x3e;  // r1..r5

RegUse reg_use(const Insn& in) {
  RegUse u;
  const OpInfo& info = in.info();
  auto bit = [](int r) { return static_cast<uint16_t>(1u << r); };
  switch (info.kind) {
    case OpKind::Alu: {
      uint8_t base = info.code & 0xf0;
      bool is_mov = base == 0xb0;
      u.writes = bit(in.dst);
      if (!is_mov) u.reads |= bit(in.dst);
      if (info.uses_reg_src) u.reads |= bit(in.src);
      break;
    }
    case OpKind::CondJump:
      u.reads = bit(in.dst);
      if (info.uses_reg_src) u.reads |= bit(in.src);
      break;
    case OpKind::Jump: break;
    case OpKind::Call:
      u.reads = kArgRegs;
      if (in.op == Op::CALL_LOCAL) u.reads |= bit(10);
      if (in.op == Op::CALLX) u.reads |= bit(in.dst);
      u.writes = bit(0) | kArgRegs;
      break;
    case OpKind::Exit: u.reads = bit(0); break;
    case OpKind::LoadImm64: u.writes = bit(in.dst); break;
    case OpKind::LoadPacket:
      if (info.uses_reg_src || in.op == Op::LDIND_B || in.op == Op::LDIND_H || in.op == Op::LDIND_W)
        u.reads = bit(in.src);
      u.writes = bit(0);
      break;
    case OpKind::Load:
      u.reads = bit(in.src);
      u.writes = bit(in.dst);
      break;
    case OpKind::Store: u.reads = bit(in.dst); break;
    case OpKind::StoreReg: u.reads = bit(in.dst) | bit(in.src); break;
    case OpKind::Atomic:
      u.reads = bit(in.dst) | bit(in.src);
      if (in.op == Op::ATOMIC_CMPXCHG32 || in.op == Op::ATOMIC_CMPXCHG64) {
        u.reads |= bit(0);
        u.writes = bit(0);
      } else if ((in.imm & 1) || in.op == Op::ATOMIC_XCHG32 || in.op == Op::ATOMIC_XCHG64) {
        u.writes = bit(in.src);
      }
      break;
    case OpKind::Pseudo: break;
  }
  return u;
}

bool is_div_family(Op op) {
  switch (op) {
    case Op::DIV64_IMM: case Op::DIV64_REG: case Op::DIV32_IMM: case Op::DIV32_REG:
    case Op::MOD64_IMM: case Op::MOD64_REG: case Op::MOD32_IMM: case Op::MOD32_REG:
    case Op::SDIV64_IMM: case Op::SDIV64_REG: case Op::SDIV32_IMM: case Op::SDIV32_REG:
    case Op::SMOD64_IMM: case Op::SMOD64_REG: case Op::SMOD32_IMM: case Op::SMOD32_REG:
      return true;
    default: return false;
  }
}
bool is_signed_div(Op op) {
  switch (op) {
    case Op::SDIV64_IMM: case Op::SDIV64_REG: case Op::SDIV32_IMM: case Op::SDIV32_REG:
    case Op::SMOD64_IMM: case Op::SMOD64_REG: case Op::SMOD32_IMM: case Op::SMOD32_REG:
      return true;
    default: return false;
  }
}

// Per-opcode facts the analysis needs for every instruction, computed once per process: the
// OpInfo, the register-use pattern and the native-size bounds (max_native_bytes) without hardening
// and with it. Calls, atomics and packet loads keep reg_use() (their use depends on more than the
// opcode).
struct OpFacts {
  const OpInfo* info = nullptr;
  uint8_t use = 0;  // kUse* bits
  uint8_t max_bytes = 0, max_bytes_hard = 0;
};
constexpr uint8_t kUseReadDst = 1, kUseReadSrc = 2, kUseWriteDst = 4, kUseReadR0 = 8, kUseSpecial = 16;

uint32_t max_native_bytes_of(Op op, const OpInfo& info, bool harden);

std::array<OpFacts, kOpCount> make_op_facts() {
  std::array<OpFacts, kOpCount> t{};
  for (size_t k = 0; k < kOpCount; ++k) {
    const Op op = static_cast<Op>(k);
    const OpInfo& info = op_info(op);
    OpFacts& f = t[k];
    f.info = &info;
    f.max_bytes = static_cast<uint8_t>(max_native_bytes_of(op, info, false));
    f.max_bytes_hard = static_cast<uint8_t>(max_native_bytes_of(op, info, true));
    switch (info.kind) {
      case OpKind::Alu:
        f.use = kUseWriteDst | ((info.code & 0xf0) == 0xb0 ? 0 : kUseReadDst) | (info.uses_reg_src ? kUseReadSrc : 0);
        break;
      case OpKind::CondJump: f.use = kUseReadDst | (info.uses_reg_src ? kUseReadSrc : 0); break;
      case OpKind::Exit: f.use = kUseReadR0; break;
      case OpKind::LoadImm64: f.use = kUseWriteDst; break;
      case OpKind::Load: f.use = kUseReadSrc | kUseWriteDst; break;
      case OpKind::Store: f.use = kUseReadDst; break;
      case OpKind::StoreReg: f.use = kUseReadDst | kUseReadSrc; break;
      case OpKind::Jump:
      case OpKind::Pseudo: f.use = 0; break;
      case OpKind::Call:
      case OpKind::Atomic:
      case OpKind::LoadPacket: f.use = kUseSpecial; break;
    }
  }
  return t;
}
// Built at load time (no initialisation guard on the per-instruction lookup).
const std::array<OpFacts, kOpCount> g_op_facts = make_op_facts();
inline const OpFacts& op_facts(Op op) { return g_op_facts[static_cast<size_t>(op)]; }

// ---- run-time support called from JIT code ---------------------------------------------------------
JitState* state_of(JitHot* h) { return static_cast<JitState*>(h->state); }

uint64_t rt_fail_callx(JitHot* h, uint64_t id, uint64_t pc) {
  JitState* st = state_of(h);
  st->error = std::make_unique<Diagnostic>(
      make_error(ErrorCode::Runtime, fmt::format("callx: no helper with id {}", id), static_cast<int64_t>(pc)));
  h->failed = 1;
  return 0;
}

uint64_t rt_fail_depth(JitHot* h, uint64_t pc) {
  JitState* st = state_of(h);
  st->error = std::make_unique<Diagnostic>(make_error(
      ErrorCode::CallDepth, fmt::format("call depth exceeds {} frames", kMaxCallDepth), static_cast<int64_t>(pc)));
  h->failed = 1;
  return 0;
}

uint64_t rt_tail_call(JitHot* h, uint64_t target) {
  auto exe = reinterpret_cast<const Executable*>(target);
  auto out = exe->engine().run_tail(h->saved_r1, nullptr);
  if (!out) {
    state_of(h)->error = std::make_unique<Diagnostic>(out.error());
    h->failed = 1;
    return 0;
  }
  return *out;
}

// CPU time of this thread: compile time is not inflated by preemption on a loaded machine.
// The clock of JitCodeInfo::compile_ns: CLOCK_MONOTONIC, read through the vDSO (~25 ns here).
// CLOCK_THREAD_CPUTIME_ID would exclude time the thread was descheduled, but each read is a system call
// (~0.8 us on this VM), which on a small program is a fifth of what it measured; a compile takes
// microseconds, so a benchmark's median of repeated compiles filters the rare preemption instead.
uint64_t compile_clock_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// One piece of the listing: native bytes [start, end) came from BPF instruction pc of function fn.
struct ListingEntry {
  int32_t fn;   // function entry insn, -1 for the entry prologue/epilogue, -2 for slow paths, -3 trampoline
  int32_t pc;   // BPF instruction (-1 for prologue/epilogue/slow-path code, -4 where cold blocks begin, -6 switch tables)
  uint32_t start;
};

// ---- the compiler ---------------------------------------------------------------------------------
class Compiler {
 public:
  Compiler(const LinkedProgram& linked, const ExecOptions& options, const CallxEntry* callx_table,
           size_t callx_size, bool callx_has_tail, bool short_jumps)
      : linked_(linked),
        insns_(linked.program->insns),
        n_(insns_.size()),
        harden_(options.jit_harden),
        bmi2_(g_use_bmi2.load() && host_has_bmi2()),
        callx_table_(callx_table),
        callx_size_(callx_size),
        callx_has_tail_(callx_has_tail),
        short_jumps_(short_jumps) {
    if (harden_) rng_state_ = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
    rng_seed_ = rng_state_;
    scratch_ = take_scratch();
  }
  ~Compiler() { give_back_scratch(); }
  Compiler(const Compiler&) = delete;
  Compiler& operator=(const Compiler&) = delete;

  Status compile();
  // The listing (which BPF instruction each piece of code came from) is recorded only on request:
  // jit_disassemble compiles the program again with replay() (same CPU features, same blinding keys),
  // so ordinary compiles do not pay for it.
  void want_listing() { listing_on_ = true; }
  void replay(bool bmi2, uint64_t rng_seed) {
    bmi2_ = bmi2;
    rng_state_ = rng_seed;
  }
  uint64_t rng_seed() const { return rng_seed_; }
  bool calls_helpers() const { return calls_helpers_; }

  std::span<const uint8_t> code;           // final bytes (position independent), in code_ (this compiler's)
  uint32_t main_offset = 0;                // entry: EntryFn
  std::map<int64_t, uint32_t> fn_offsets;  // callable function entry insn -> offset
  std::vector<ListingEntry> listing;
  bool bmi2() const { return bmi2_; }
  // The code is a DirectFn (Engine::direct_entry): no calls of any kind, so nothing can fail or ask
  // for the RunContext; the entry takes the RunArgs and reads the LD_ABS packet from it.
  bool direct() const { return direct_; }
  size_t functions = 0;
  // Batch mode (ExecOptions::jit_batch): main becomes Engine::BatchFn, the program's body inside a
  // loop over BatchItems. Only for direct code with enough free host registers: batch_ok() tells.
  void set_batch() { batch_ = true; }
  bool batch_ok() const { return batch_ok_; }

 private:
  struct SlowPath {
    enum Kind { Depth, Callx, LdOob, LdIndCheck } kind;
    int64_t pc;
    int reg = 0;
    uint32_t resume = 0;  // LdIndCheck: offset of the load, when the offset turns out valid
    uint32_t size = 0;    // LdIndCheck: bytes loaded
    uint32_t from[2] = {0, 0};  // rel32 displacements of the jumps to it (patched when it is emitted)
    uint32_t nfrom = 0;
  };
  // Jumps and calls between pieces of code, patched by the compiler: a conditional jump (cc =
  // x86 condition code, -1 = jmp) to a slow path; a short jump within one instruction's code, bound
  // later with bind8(); a call of a BPF function, patched once every function is placed.
  size_t add_slow_path(SlowPath::Kind kind, int64_t pc, int reg = 0, uint32_t size = 0) {
    slow_paths_.push_back(SlowPath{kind, pc, reg, 0, size});
    return slow_paths_.size() - 1;
  }
  void jcc_slow(int cc, size_t slow);
  uint32_t jcc8(int cc);
  void bind8(uint32_t pos);
  uint32_t here() const { return code_.offset(); }
  void emit_slow_paths();
  struct CallFixup {
    uint32_t pos;    // rel32 of the call
    int64_t target;  // function entry
  };
  std::vector<CallFixup> call_fixups_;
  bool short_overflow_ = false;  // a bind8() distance did not fit: compile() fails
  BPFVM_ENC void mov_rr(bool w64, uint32_t dst, uint32_t src) { put(enc_rr(0x89, w64, dst, src)); }

  struct Scratch;
  Scratch* scratch_ = nullptr;
  Scratch* take_scratch();
  void give_back_scratch();
  void analyze();
  const std::vector<int64_t>& reachable_from(int64_t entry);  // body_, valid until the next call
  std::vector<uint32_t> seen_;         // reachable_from: visited stamps (cleared by analyze)
  uint32_t seen_stamp_ = 0;
  std::vector<int64_t> body_;
  std::vector<uint8_t> is_fn_, reset_;  // analyze, compute_pkt_known
  bool has_ldpkt_ = false;
  std::vector<int64_t> work_;
  Status compile_function(int64_t entry, bool main_mode);
  // Returns false (and sets error_) when the instruction cannot be compiled. Not a Status: building
  // and destroying a Diagnostic per instruction is measurable in compile time.
  bool emit_insn(int64_t pc, bool main_mode);
  Map* constant_map_arg(int64_t pc) const;
  // The array behind the bpf_map_lookup_elem call at `pc` when emit_map_lookup inlines it (no call).
  bool inline_array_lookup(int64_t pc, Map::InlineArray* out) const;
  bool emit_map_lookup(Map& m);
  void emit_runtime_map_lookup(const void* helper);
  // Instructions after body[k] folded into one x86 instruction emitted for body[k] (0: none).
  size_t zero_extend_idiom(const std::vector<int64_t>& body, size_t k);
  Diagnostic error_;
  void emit_exit(bool main_mode);
  void emit_batch_next();  // batch: store r0 as the verdict, advance, loop while items remain
  void emit_unwind();
  void emit_call_abs(const void* fn, Gp via);
  void emit_alu(const Insn& in);
  void emit_div(const Insn& in);
  void note_zext(const Insn& in);
  uint16_t zext_ = 0;  // registers with upper 32 bits known zero (see note_zext)
  void emit_shift(const Insn& in, uint8_t base);
  void emit_jump(const Insn& in, int64_t pc);
  void emit_mem(const Insn& in);
  void emit_atomic(const Insn& in);
  void emit_ldpkt(const Insn& in, int64_t pc);
  void emit_tail_check();
  // Loads an immediate into r11 (blinded when hardening), sign-extended to 64 bits.
  void imm_to_r11(int64_t v);
  void mark(int32_t fn, int32_t pc) {
    if (listing_on_) listing.push_back({fn, pc, code_.offset()});
  }
  BPFVM_ENC void put(const Enc& e) { code_.put(e); }

  const LinkedProgram& linked_;
  const std::vector<Insn>& insns_;
  size_t n_;
  bool harden_;
  bool bmi2_;
  const CallxEntry* callx_table_;
  size_t callx_size_;
  bool callx_has_tail_;
  bool short_jumps_;                   // forward jumps use rel8 when the size bound allows
  std::vector<RegUse> uses_;           // per insn
  std::vector<const OpInfo*> infos_;   // per insn
  uint16_t program_reads_ = 0;         // registers read anywhere in the program
  std::vector<uint32_t> size_prefix_;  // prefix sums of native-size upper bounds per insn
  std::vector<uint32_t> pkt_known_;    // per insn: LD_ABS packet bytes known present (bounds checks skipped)
  void compute_pkt_known();
  void emit_ldpkt_oob();
  MemOp pkt_len_memop() const;  // where the packet length is when it is not in a register
  void cmp_len_imm(int32_t v);  // cmp <packet length>, v
  void cmp_r10_len();           // cmp r10, <packet length>
  Gp pkt_base_ = gp(kR12);  // direct code: the packet pointer
  Gp pkt_len_reg_;          // direct code: the packet length, when len_in_reg_
  bool len_in_reg_ = false;
  bool batch_ = false, batch_ok_ = false;
  Gp batch_cur_, batch_vp_;  // batch: the current BatchItem, the current verdict
  Label batch_top_, batch_done_;
  uint64_t rng_state_ = 0;
  uint64_t rng_seed_ = 0;      // rng_state_ before the first key
  bool listing_on_ = false;
  bool calls_helpers_ = false;  // a helper call or callx (the run needs a RunContext)
  uint64_t rng_() {  // splitmix64: blinding keys
    uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // program-wide facts
  std::vector<uint8_t> is_target_;     // jump target
  std::vector<int64_t> fn_entries_;     // callable functions (sorted)
  bool needs_state_ = false;           // r12 holds JitHot* (direct code: the LD_ABS packet)
  bool direct_ = false;                // see direct()
  bool has_ldind_ = false;
  std::vector<uint8_t> dead_;          // per insn: writes a register nothing reads (not emitted)
  int32_t stack_base_ = 0;             // direct code with LD_ABS: packet length at [rsp], BPF stack above
  bool needs_stack_ = false;           // rbp is the BPF stack
  bool has_local_calls_ = false;
  bool has_any_call_ = false;
  uint32_t stack_bytes_ = 0;

  CodeBuf code_;  // the bytes (a scratch member: its storage is reused from one compile to the next)
  // Jumps between instructions are encoded here: offsets of jump targets in the function being
  // compiled, and forward jumps to patch when the function is done.
  struct Fixup {
    uint32_t pos;    // offset of the displacement
    int64_t target;  // instruction
    bool rel8;
  };
  std::vector<uint32_t> insn_off_;
  std::vector<Fixup> fixups_;
  void emit_branch(int cc, int64_t t, int64_t pc);  // cc = x86 condition code, -1 = jmp
  int emit_compare(const Insn& in);                 // cmp/test of a conditional jump: its x86 condition code
  // Branch layout (compile_function). A jump's target is *threaded*: through unconditional jumps to
  // their final target, and, in main outside batch mode, from an exit straight to the epilogue
  // (kEpilogue: r0 is already in rax). Straight-line blocks that end in exit and are entered only by
  // falling through a conditional jump over them are *cold*: emitted after the function, the jump
  // inverted into them, so the path that goes on falls through.
  static constexpr int64_t kEpilogue = -1;
  int64_t resolve(int64_t t) const;
  bool thread_exit_ = false;           // main, not batch: an exit is `jmp epilogue`
  std::vector<uint8_t> cold_;          // per insn: in a cold block of the function being compiled
  struct ColdBlock {
    size_t k0, k1;     // body[k0..k1): the block
    uint32_t jpos;     // rel32 of the inverted jump into it
    uint16_t zext;     // zext_ where the block is entered
  };
  std::vector<ColdBlock> cold_blocks_;
  // Switches: a tree of at least kSwitchMinNodes conditional jumps comparing one register with
  // immediates (clang's code for a switch; BPF has no indirect jump) gets, at its root, a dispatch
  // through a table of native offsets: for values 0..hi of the register, where the tree would end
  // (found by running the tree on each value at compile time); other values go through the tree.
  struct SwitchTable {
    int64_t root;
    uint8_t reg;
    uint32_t hi;      // the table has hi + 1 entries
    size_t leaves;    // index of its first entry in switch_leaves_
  };
  static constexpr size_t kSwitchMinNodes = 6;
  static constexpr uint32_t kSwitchMaxValues = 256;
  static constexpr uint32_t kDispatchBytes = 26;  // native size of the dispatch (size bounds)
  void find_switches();
  const SwitchTable* switch_at(int64_t pc) const;
  void emit_dispatch(const SwitchTable& st);
  void emit_switch_tables();
  std::vector<SwitchTable> switches_;   // sorted by root
  std::vector<int64_t> switch_leaves_;  // per table: the instruction for each value
  std::vector<uint8_t> is_leaf_;        // per insn (only when switches_ is not empty)
  struct PendingTable {
    size_t sw;
    uint32_t lea_disp;  // rel32 of the dispatch's lea of the table
  };
  std::vector<PendingTable> pending_tables_;
  struct SwitchRange {
    int64_t j, lo, hi;
    size_t steps;
  };
  std::vector<SwitchRange> switch_ranges_;  // find_switches' work list
  int64_t recorded_ = -1;  // compile_function: the instruction whose offset and listing mark are set already
  Label main_epilogue_;
  std::vector<SlowPath> slow_paths_;
  // current function frame
  std::vector<Gp> saved_;         // host registers pushed by the current function
  uint32_t frame_adjust_ = 0;          // bytes subtracted from rsp after the pushes
  int32_t cur_fn_ = 0;
};

// Per-thread working storage of the compiler: a compile takes these vectors (with their capacity) and
// gives them back, so compiling allocates (almost) nothing once they have grown. A compile that starts
// while another one on the same thread holds them (the rel32 retry in JitEngine::build) gets fresh ones.
#define BPFVM_JIT_SCRATCH(X)                                                                                 \
  X(uses_) X(infos_) X(size_prefix_) X(pkt_known_) X(is_target_) X(fn_entries_) X(dead_) X(seen_) X(work_) \
  X(insn_off_) X(fixups_) X(slow_paths_) X(call_fixups_) X(saved_) X(listing) X(body_) X(is_fn_) X(reset_) \
  X(cold_) X(cold_blocks_) X(switches_) X(switch_leaves_) X(is_leaf_) X(pending_tables_) X(switch_ranges_) \
  X(code_)

struct Compiler::Scratch {
#define BPFVM_X(m) decltype(Compiler::m) m;
  BPFVM_JIT_SCRATCH(BPFVM_X)
#undef BPFVM_X
  bool in_use = false;
};

// On the heap, reached through a pointer: the thread-local block of libbpfvm-agent.so stays small
// enough for the static TLS that dlopen can still give a running process (bpfvm trace -p).
Compiler::Scratch* Compiler::take_scratch() {
  thread_local std::unique_ptr<Scratch> p;
  if (!p) p = std::make_unique<Scratch>();
  Scratch& t = *p;
  if (t.in_use) return nullptr;
  t.in_use = true;
#define BPFVM_X(m) m.swap(t.m);
  BPFVM_JIT_SCRATCH(BPFVM_X)
#undef BPFVM_X
  return &t;
}

void Compiler::give_back_scratch() {
  if (!scratch_) return;
#define BPFVM_X(m) m.swap(scratch_->m);
  BPFVM_JIT_SCRATCH(BPFVM_X)
#undef BPFVM_X
  scratch_->in_use = false;
  scratch_ = nullptr;
}

void Compiler::analyze() {
  is_target_.assign(n_, 0);
  cold_.assign(n_, 0);  // compile_function marks a function's cold blocks and clears them when done
  seen_.assign(n_, 0);
  uses_.resize(n_);
  infos_.resize(n_);
  size_prefix_.assign(n_ + 1, 0);
  is_fn_.assign(n_, 0);
  bool any_fn = false;
  uint16_t plain_writes = 0;  // registers written by ALU or lddw (the writes that can be dead)
  for (size_t i = 0; i < n_; ++i) {
    const Insn& in = insns_[i];
    const OpFacts& facts = op_facts(in.op);
    const OpInfo& info = *facts.info;
    infos_[i] = &info;
    RegUse u;
    if (facts.use & kUseSpecial) {
      u = reg_use(in);
    } else {
      const uint16_t d = static_cast<uint16_t>(1u << in.dst), sbit = static_cast<uint16_t>(1u << in.src);
      u.reads = static_cast<uint16_t>((facts.use & kUseReadDst ? d : 0) | (facts.use & kUseReadSrc ? sbit : 0) |
                                      (facts.use & kUseReadR0 ? 1 : 0));
      u.writes = facts.use & kUseWriteDst ? d : 0;
    }
    uses_[i] = u;
    program_reads_ |= u.reads;
    if (info.kind == OpKind::Alu || info.kind == OpKind::LoadImm64) plain_writes |= u.writes;
    size_prefix_[i + 1] = size_prefix_[i] + (harden_ ? facts.max_bytes_hard : facts.max_bytes);
    if ((u.reads | u.writes) & (1u << 10)) needs_stack_ = true;
    switch (info.kind) {
      case OpKind::Jump:
      case OpKind::CondJump: is_target_[static_cast<size_t>(jit_target(in, static_cast<int64_t>(i)))] = 1; break;
      case OpKind::Call:
        has_any_call_ = true;
        if (in.op != Op::CALL_LOCAL) calls_helpers_ = true;
        if (in.op == Op::CALL_LOCAL) {
          has_local_calls_ = needs_state_ = needs_stack_ = true;
          is_fn_[static_cast<size_t>(jit_target(in, static_cast<int64_t>(i)))] = 1;
          any_fn = true;
        } else if (in.op == Op::CALLX) {
          needs_state_ = true;
        } else if (in.op == Op::CALL_HELPER && linked_.helper_at[i] && linked_.helper_at[i]->tail_call) {
          needs_state_ = true;
        }
        break;
      case OpKind::LoadPacket:
        needs_state_ = has_ldpkt_ = true;
        if (in.op == Op::LDIND_B || in.op == Op::LDIND_H || in.op == Op::LDIND_W) has_ldind_ = true;
        break;
      case OpKind::LoadImm64:
        if (in.op == Op::LDDW_CODE_ADDR) {
          int64_t t = static_cast<int64_t>(i) + 1 + static_cast<int32_t>(in.imm);
          if (t >= 0 && static_cast<size_t>(t) < n_ && insns_[static_cast<size_t>(t)].op != Op::LDDW_HI) {
            is_fn_[static_cast<size_t>(t)] = 1;
            any_fn = true;
          }
        }
        break;
      default: break;
    }
  }
  // Calls that become inline code (array lookups, emit_map_lookup) are no calls: a program whose
  // every call is one needs no RunContext and runs as direct code (the counting programs of probes).
  if (has_any_call_ && !any_fn) {
    bool all_inline = true;
    for (size_t i = 0; i < n_ && all_inline; ++i) {
      if (infos_[i]->kind != OpKind::Call) continue;
      Map::InlineArray ia;
      all_inline = insns_[i].op == Op::CALL_HELPER && inline_array_lookup(static_cast<int64_t>(i), &ia);
    }
    if (all_inline) has_any_call_ = calls_helpers_ = false;
  }
  fn_entries_.clear();
  if (any_fn)
    for (size_t i = 0; i < n_; ++i)
      if (is_fn_[i]) fn_entries_.push_back(static_cast<int64_t>(i));
  // Writes to a register nothing ever reads are dead: ALU and lddw have no other effect (translated
  // classic filters start with r6 = r1 and often never use r6: no push/pop of its host register).
  dead_.assign(n_, 0);
  if (plain_writes & ~program_reads_)
  for (size_t i = 0; i < n_; ++i) {
    OpKind k = infos_[i]->kind;
    if ((k == OpKind::Alu || k == OpKind::LoadImm64) && !(program_reads_ & (1u << insns_[i].dst))) {
      dead_[i] = 1;
      uses_[i] = RegUse{};
    }
  }
  stack_bytes_ = needs_stack_ ? (has_local_calls_ ? kStackSize * kMaxCallDepth : kStackSize) : 0;
  direct_ = !has_any_call_ && fn_entries_.empty();
  stack_base_ = direct_ && needs_state_ ? 8 : 0;
  uint16_t used = 0;  // registers any instruction reads or writes
  if (direct_)
    for (size_t i = 0; i < n_; ++i) used |= static_cast<uint16_t>(uses_[i].reads | uses_[i].writes);
  if (batch_ && direct_) {
    // Four host registers the body never touches: the packet, its length, the item and verdict
    // pointers. Argument registers first (no save), then r12 and unused callee-saved ones.
    Gp free_regs[11];
    size_t nf = 0;
    for (int r : {2, 4, 5, 3, 1})
      if (!(used & (1u << r))) free_regs[nf++] = Q(r);
    free_regs[nf++] = gp(kR12);
    for (int r : {6, 7, 8, 9})
      if (!(used & (1u << r))) free_regs[nf++] = Q(r);
    if (!needs_stack_) free_regs[nf++] = gp(kRbp);
    if (nf >= (needs_state_ ? 4u : 2u)) {
      size_t k = 0;
      if (needs_state_) {
        pkt_base_ = free_regs[k++];
        pkt_len_reg_ = free_regs[k++];
        len_in_reg_ = true;
      }
      batch_cur_ = free_regs[k++];
      batch_vp_ = free_regs[k++];
      stack_base_ = 24;  // [rsp] end of the items, [rsp+8] r1, [rsp+16] the store pointer
      batch_ok_ = true;
    }
  } else if (direct_ && needs_state_) {
    // Two caller-saved argument registers the program never uses hold the packet and its length:
    // no push/pop of r12 and no stack slot (translated classic filters use few registers).
    int free_regs[2];
    int nf = 0;
    for (int r : {2, 4, 5, 1})  // rsi, rcx, r8, rdi (not rdx: it brings the RunArgs)
      if (!(used & (1u << r)) && nf < 2) free_regs[nf++] = r;
    if (nf == 2) {
      pkt_base_ = Q(free_regs[0]);
      pkt_len_reg_ = Q(free_regs[1]);
      len_in_reg_ = true;
      stack_base_ = 0;
    }
  }
  find_switches();
  compute_pkt_known();
}

// The value of `if reg <op> imm` for reg = v (v >= 0, small), as the interpreter computes it.
bool imm_jump_taken(const Insn& in, uint64_t v) {
  const OpInfo& info = in.info();
  const bool w64 = (info.code & 7) == 5;
  const uint64_t a = w64 ? v : static_cast<uint32_t>(v);
  const uint64_t b = w64 ? static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(in.imm)))
                         : static_cast<uint32_t>(in.imm);
  const int64_t sa = w64 ? static_cast<int64_t>(a) : static_cast<int32_t>(a);
  const int64_t sb = w64 ? static_cast<int64_t>(b) : static_cast<int32_t>(b);
  switch (info.code & 0xf0) {
    case 0x10: return a == b;
    case 0x20: return a > b;
    case 0x30: return a >= b;
    case 0x40: return (a & b) != 0;
    case 0x50: return a != b;
    case 0x60: return sa > sb;
    case 0x70: return sa >= sb;
    case 0xa0: return a < b;
    case 0xb0: return a <= b;
    case 0xc0: return sa < sb;
    case 0xd0: return sa <= sb;
    default: return false;
  }
}

// A tree node: a conditional jump comparing a register with an immediate.
bool is_switch_node(const Insn& in, const OpInfo& info) {
  return info.kind == OpKind::CondJump && !info.uses_reg_src;
}

void Compiler::find_switches() {
  switches_.clear();
  switch_leaves_.clear();
  if (harden_ || n_ < kSwitchMinNodes * 2) return;
  auto node_on = [&](int64_t j, uint8_t reg) {
    return j >= 0 && static_cast<size_t>(j) < n_ && is_switch_node(insns_[static_cast<size_t>(j)], *infos_[static_cast<size_t>(j)]) &&
           insns_[static_cast<size_t>(j)].dst == reg;
  };
  // A tree needs a node leading to another node on the same register: most programs have none.
  auto leads_to_node = [&](size_t i) {
    const Insn& in = insns_[i];
    const int64_t pc = static_cast<int64_t>(i);
    return is_switch_node(in, *infos_[i]) && (node_on(pc + 1, in.dst) || node_on(jit_target(in, pc), in.dst));
  };
  size_t first_candidate = n_;
  for (size_t i = 0; i + 1 < n_ && first_candidate == n_; ++i)
    if (leads_to_node(i)) first_candidate = i;
  if (first_candidate == n_) return;
  // Roots: nodes no node on the same register leads to (is_leaf_ holds these "inner" marks first).
  is_leaf_.assign(n_, 0);
  for (size_t j = 0; j < n_; ++j) {
    const Insn& x = insns_[j];
    if (!is_switch_node(x, *infos_[j])) continue;
    for (int64_t nx : {static_cast<int64_t>(j) + 1, jit_target(x, static_cast<int64_t>(j))})
      if (node_on(nx, x.dst)) is_leaf_[static_cast<size_t>(nx)] = 1;
  }
  std::vector<int64_t>& stack = work_;
  for (size_t i = first_candidate; i + 1 < n_; ++i) {
    const Insn& in = insns_[i];
    const int64_t pc = static_cast<int64_t>(i);
    if (is_leaf_[i] || !leads_to_node(i)) continue;
    // The tree: every node reachable from the root through nodes on the same register.
    size_t nodes = 0;
    int64_t hi = -1;
    stack.clear();
    stack.push_back(pc);
    const uint32_t stamp = ++seen_stamp_;
    while (!stack.empty() && nodes <= 4 * kSwitchMaxValues) {
      const int64_t j = stack.back();
      stack.pop_back();
      if (seen_[static_cast<size_t>(j)] == stamp) continue;
      seen_[static_cast<size_t>(j)] = stamp;
      ++nodes;
      const Insn& x = insns_[static_cast<size_t>(j)];
      hi = std::max<int64_t>(hi, static_cast<int32_t>(x.imm));
      for (int64_t nx : {j + 1, jit_target(x, j)})
        if (node_on(nx, in.dst)) stack.push_back(nx);
    }
    // Values above every constant compare alike (but for jset): one entry more covers the first of them.
    hi = std::min<int64_t>(hi + 1, kSwitchMaxValues - 1);
    // Dense enough (as compilers decide on jump tables): at most 4 values per node.
    if (nodes < kSwitchMinNodes || hi < 3 || static_cast<size_t>(hi) + 1 > 4 * nodes) continue;
    // Where the tree ends for each value 0..hi, by ranges of values: a comparison with c splits
    // [lo, hi] at most at c and c + 1 (values are small and non-negative, so every comparison but jset
    // is the same on each piece; jset goes value by value). A path through more nodes than the tree
    // has is a cycle: no table.
    const size_t first = switch_leaves_.size();
    switch_leaves_.resize(first + static_cast<size_t>(hi) + 1, -1);
    bool ok = true;
    std::vector<SwitchRange>& ranges = switch_ranges_;
    ranges.clear();
    ranges.push_back({pc, 0, hi, 0});
    while (!ranges.empty() && ok) {
      SwitchRange r = ranges.back();
      ranges.pop_back();
      while (node_on(r.j, in.dst)) {
        if (++r.steps > nodes) {
          ok = false;
          break;
        }
        const Insn& x = insns_[static_cast<size_t>(r.j)];
        const int64_t t = jit_target(x, r.j), c = static_cast<int32_t>(x.imm);
        const bool jset = (infos_[static_cast<size_t>(r.j)]->code & 0xf0) == 0x40;
        int64_t a = r.lo, b = r.hi;  // the first piece: [a, b]
        if (jset) b = a;
        else if (c > a && c <= b) b = c - 1;
        else if (c == a && a < b) b = a;
        if (b < r.hi) ranges.push_back({r.j, b + 1, r.hi, r.steps - 1});  // the rest, from this node again
        r.lo = a;
        r.hi = b;
        r.j = imm_jump_taken(x, static_cast<uint64_t>(a)) ? t : r.j + 1;
      }
      if (ok)
        for (int64_t v = r.lo; v <= r.hi; ++v) switch_leaves_[first + static_cast<size_t>(v)] = r.j;
    }
    // Worth a table only when the values lead to several places (constants beyond 255 send all of
    // 0..255 to one).
    if (ok) {
      const uint32_t leaf_stamp = ++seen_stamp_;
      size_t distinct = 0;
      for (size_t v = first; v < switch_leaves_.size(); ++v) {
        const size_t l = static_cast<size_t>(switch_leaves_[v]);
        if (seen_[l] != leaf_stamp) {
          seen_[l] = leaf_stamp;
          ++distinct;
        }
      }
      ok = distinct >= 4;
    }
    if (!ok) {
      switch_leaves_.resize(first);
      continue;
    }
    switches_.push_back({pc, in.dst, static_cast<uint32_t>(hi), first});
  }
  is_leaf_.assign(n_, 0);
  if (switches_.empty()) return;
  // Leaves are jump targets now (their offsets are recorded; nothing leaves them out); the
  // dispatch's bytes go into the size bounds of the code after each root.
  for (int64_t l : switch_leaves_) {
    is_target_[static_cast<size_t>(l)] = 1;
    is_leaf_[static_cast<size_t>(l)] = 1;
  }
  for (const SwitchTable& st : switches_)
    for (size_t j = static_cast<size_t>(st.root) + 1; j <= n_; ++j) size_prefix_[j] += kDispatchBytes;
}

const Compiler::SwitchTable* Compiler::switch_at(int64_t pc) const {
  auto it = std::lower_bound(switches_.begin(), switches_.end(), pc,
                             [](const SwitchTable& st, int64_t v) { return st.root < v; });
  return it != switches_.end() && it->root == pc ? &*it : nullptr;
}

// cmp reg, hi; ja tree; lea r11, [rip + table]; movsxd r10, [r11 + reg*4]; add r10, r11; jmp r10;
// tree: (the root's own code follows). 26 bytes at most (kDispatchBytes).
void Compiler::emit_dispatch(const SwitchTable& st) {
  const uint32_t r = kHost[st.reg];
  put(enc_ri(7, true, r, static_cast<int32_t>(st.hi)));
  const uint32_t over = jcc8(0x7);
  Enc e;
  e.u8(0x4c);  // lea r11, [rip + disp32]
  e.u8(0x8d);
  e.u8(0x1d);
  e.u32(0);
  put(e);
  pending_tables_.push_back({static_cast<size_t>(&st - switches_.data()), here() - 4});
  Enc m;  // movsxd r10, dword [r11 + r*4]
  m.u8(0x4c | ((r >> 3) & 1) << 1 | 1);  // REX.W R(r10) X(index) B(r11)
  m.u8(0x63);
  m.u8(0x14);                                   // modrm: reg = r10 (010), rm = SIB
  m.u8(0x80 | (r & 7) << 3 | (kR11 & 7));       // SIB: scale 4, index r, base r11
  put(m);
  put(enc_rr(0x01, true, kR10, kR11));  // add r10, r11
  put(enc_bytes(0x41, 0xff));
  put(enc_byte(0xe2));                  // jmp r10
  bind8(over);
}

// The tables of the function just compiled: after its code (4-byte aligned, int3 before), one
// 32-bit offset from the table per value.
void Compiler::emit_switch_tables() {
  if (pending_tables_.empty()) return;
  if (here() & 3) {
    Enc e;
    for (uint32_t k = here() & 3; k < 4; ++k) e.u8(0xcc);
    put(e);
  }
  mark(cur_fn_, -6);
  for (const PendingTable& pt : pending_tables_) {
    const SwitchTable& st = switches_[pt.sw];
    const uint32_t table = here();
    uint8_t* b = code_.data();
    const int32_t d = static_cast<int32_t>(table - (pt.lea_disp + 4));
    std::memcpy(b + pt.lea_disp, &d, 4);
    for (uint32_t v = 0; v <= st.hi; ++v) {
      Enc e;
      e.u32(static_cast<uint32_t>(static_cast<int32_t>(insn_off_[static_cast<size_t>(switch_leaves_[st.leaves + v])] - table)));
      put(e);
    }
  }
  pending_tables_.clear();
}

// Legacy packet loads leave the program when out of bounds, so after `r0 = *(u16 *)skb[12]` the packet is
// known to hold at least 14 bytes: a later LD_ABS within that length needs no check. Forward pass in
// index order (translated classic filters only jump forward); targets of backward jumps and function
// entries start from nothing.
void Compiler::compute_pkt_known() {
  constexpr uint32_t kUnset = UINT32_MAX;
  if (!has_ldpkt_) return;  // pkt_known_ is read by packet loads only
  pkt_known_.assign(n_, kUnset);
  std::vector<uint8_t>& reset = reset_;
  reset.assign(n_, 0);
  if (n_) reset[0] = 1;
  for (int64_t f : fn_entries_) reset[static_cast<size_t>(f)] = 1;
  for (size_t i = 0; i < n_; ++i) {
    OpKind k = infos_[i]->kind;
    if (k == OpKind::Jump || k == OpKind::CondJump) {
      int64_t t = jit_target(insns_[i], static_cast<int64_t>(i));
      if (t <= static_cast<int64_t>(i)) reset[static_cast<size_t>(t)] = 1;
    }
  }
  auto flow = [&](int64_t s, uint32_t v) {
    if (s >= 0 && static_cast<size_t>(s) < n_ && v < pkt_known_[static_cast<size_t>(s)]) pkt_known_[static_cast<size_t>(s)] = v;
  };
  for (size_t i = 0; i < n_; ++i) {
    const Insn& in = insns_[i];
    if (in.op == Op::LDDW_HI) continue;
    uint32_t k = (reset[i] || pkt_known_[i] == kUnset) ? 0 : pkt_known_[i];
    pkt_known_[i] = k;
    uint32_t out = k;
    if (in.op == Op::LDABS_B || in.op == Op::LDABS_H || in.op == Op::LDABS_W) {
      int64_t o = static_cast<int32_t>(in.imm);
      if (o < 0 && o >= kSkfLlOff && o < kSkfNetOff) o -= kSkfLlOff;
      int64_t size = in.op == Op::LDABS_W ? 4 : in.op == Op::LDABS_H ? 2 : 1;
      if (o >= 0 && o + size <= INT32_MAX) out = std::max<uint32_t>(k, static_cast<uint32_t>(o + size));
    }
    const int64_t pc = static_cast<int64_t>(i);
    switch (infos_[i]->kind) {
      case OpKind::Exit: break;
      case OpKind::Jump: flow(jit_target(in, pc), out); break;
      case OpKind::CondJump:
        flow(jit_target(in, pc), out);
        flow(pc + 1, out);
        break;
      case OpKind::LoadImm64: flow(pc + 2, out); break;
      default: flow(pc + 1, out); break;
    }
  }
}

// An upper bound of the machine code bytes emitted for one instruction (for choosing rel8 jumps).
uint32_t max_native_bytes_of(Op op, const OpInfo& info, bool harden) {
  uint32_t extra = harden ? 24 : 0;
  switch (info.kind) {
    case OpKind::Alu: return (is_div_family(op) ? 96 : 28) + extra;
    case OpKind::Jump:
    case OpKind::CondJump: return 16 + extra;
    case OpKind::Call: return 112;
    case OpKind::Exit: return 32;
    case OpKind::LoadImm64: return 12 + extra;
    case OpKind::LoadPacket: return 96;
    case OpKind::Load:
    case OpKind::Store:
    case OpKind::StoreReg: return 16 + extra;
    case OpKind::Atomic: return 64;
    case OpKind::Pseudo: return 0;
  }
  return 128;
}

const std::vector<int64_t>& Compiler::reachable_from(int64_t entry) {
  // One visited-stamp array for all functions (no O(n) clearing or allocation per function); the walk
  // follows straight-line runs and stacks only the other side of conditional jumps.
  const uint32_t stamp = ++seen_stamp_;
  const int64_t n = static_cast<int64_t>(n_);
  size_t count = 0;
  std::vector<int64_t>& work = work_;
  work.clear();
  work.push_back(entry);
  while (!work.empty()) {
    int64_t i = work.back();
    work.pop_back();
    while (i >= 0 && i < n && seen_[static_cast<size_t>(i)] != stamp) {
      seen_[static_cast<size_t>(i)] = stamp;
      ++count;
      const Insn& in = insns_[static_cast<size_t>(i)];
      const OpKind k = infos_[static_cast<size_t>(i)]->kind;
      if (k == OpKind::Exit) break;
      if (k == OpKind::Jump) {
        i = jit_target(in, i);
      } else if (k == OpKind::CondJump) {
        work.push_back(jit_target(in, i));
        ++i;
      } else {
        i += k == OpKind::LoadImm64 ? 2 : 1;
      }
    }
  }
  std::vector<int64_t>& out = body_;
  out.resize(count);
  size_t k = 0;
  for (size_t i = 0; k < count; ++i)
    if (seen_[i] == stamp) out[k++] = static_cast<int64_t>(i);
  return out;
}

void Compiler::emit_call_abs(const void* fn, Gp via) {
  put(enc_call_abs(via.id(), reinterpret_cast<uint64_t>(fn)));
}

void Compiler::emit_unwind() {
  put(enc_op_mem(0x8b, true, kRsp, MemOp{kR12, offsetof(JitHot, unwind_rsp)}));  // mov rsp, [r12 + unwind_rsp]
  put(enc_op_mem(0xff, false, 4, MemOp{kR12, offsetof(JitHot, unwind_rip)}));    // jmp [r12 + unwind_rip]
}

void Compiler::imm_to_r11(int64_t v) {
  if (harden_) {
    int32_t key = static_cast<int32_t>(rng_());
    put(enc_mov_imm(kR11, static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v) ^ key))));
    put(enc_ri(6, true, kR11, key));
  } else {
    put(enc_mov_imm(kR11, static_cast<uint64_t>(v)));
  }
}

Status Compiler::compile() {
  analyze();
  if (batch_ && !batch_ok_) return make_error(ErrorCode::Unsupported, "jit: no batch entry for this program");
  listing.clear();
  slow_paths_.clear();
  call_fixups_.clear();
  if (listing_on_) listing.reserve(n_ + 8);
  code_.reset(n_ * 12 + 256);
  fn_offsets.clear();
  main_epilogue_ = code_.new_label();

  if (auto st = compile_function(0, true); !st) return st;
  for (int64_t f : fn_entries_) {
    if (auto st = compile_function(f, false); !st) return st;
  }
  functions = 1 + fn_entries_.size();
  emit_slow_paths();
  if (short_overflow_) return make_error(ErrorCode::Unsupported, "jit: short jump out of range");
  if (!code_.resolve()) return make_error(ErrorCode::Runtime, "jit: a jump to a label never bound");
  main_offset = 0;
  for (const CallFixup& c : call_fixups_) {
    const int32_t d = static_cast<int32_t>(fn_offsets.at(c.target)) - static_cast<int32_t>(c.pos + 4);
    std::memcpy(code_.data() + c.pos, &d, 4);
  }
  code = code_.bytes();
  return {};
}

// Out-of-line slow paths, after all functions. rsp is 16-byte aligned at every slow path's jump site
// (functions that call are aligned in their bodies), so the slow paths may call C++.
void Compiler::emit_slow_paths() {
  for (const SlowPath& s : slow_paths_) {
    const uint32_t at = here();
    uint8_t* buf = code_.data();
    for (uint32_t k = 0; k < s.nfrom; ++k) {
      const int32_t d = static_cast<int32_t>(at) - static_cast<int32_t>(s.from[k] + 4);
      std::memcpy(buf + s.from[k], &d, 4);
    }
    mark(-2, static_cast<int32_t>(s.pc));
    switch (s.kind) {
      case SlowPath::Depth:
        mov_rr(true, kRdi, kR12);
        put(enc_mov_imm(kRsi, static_cast<uint32_t>(s.pc)));
        emit_call_abs(reinterpret_cast<const void*>(&rt_fail_depth), gp(kRax));
        emit_unwind();
        break;
      case SlowPath::Callx:
        mov_rr(true, kRsi, kHost[s.reg]);
        mov_rr(true, kRdi, kR12);
        put(enc_mov_imm(kRdx, static_cast<uint32_t>(s.pc)));
        emit_call_abs(reinterpret_cast<const void*>(&rt_fail_callx), gp(kRax));
        emit_unwind();
        break;
      case SlowPath::LdOob: emit_ldpkt_oob(); break;
      case SlowPath::LdIndCheck: {
        // The inline check failed for r11 = (u32)(src + imm): a negative offset may still be a
        // link-layer one (SKF_LL_OFF); anything else is out of bounds.
        put(enc_op_rr(0x63, true, kR11, kR11));  // movsxd r11, r11d
        put(enc_rr(0x85, true, kR11, kR11));
        const uint32_t j1 = jcc8(0x9);  // jns oob
        put(enc_ri(7, true, kR11, kSkfLlOff));
        const uint32_t j2 = jcc8(0xc);  // jl oob
        put(enc_ri(7, true, kR11, kSkfNetOff));
        const uint32_t j3 = jcc8(0xd);  // jge oob
        put(enc_ri(5, true, kR11, kSkfLlOff));
        put(enc_op_mem(0x8d, true, kR10, MemOp{kR11, static_cast<int32_t>(s.size)}));
        cmp_r10_len();
        const uint32_t j4 = jcc8(0x7);  // ja oob
        {
          Enc e;
          const int64_t d8 = static_cast<int64_t>(s.resume) - (here() + 2);
          if (d8 >= -128) {
            e.u8(0xeb);
            e.u8(static_cast<uint32_t>(d8) & 0xff);
          } else {
            e.u8(0xe9);
            e.u32(static_cast<uint32_t>(static_cast<int64_t>(s.resume) - (here() + 5)));
          }
          put(e);
        }
        for (uint32_t j : {j1, j2, j3, j4}) bind8(j);
        emit_ldpkt_oob();
        break;
      }
    }
  }
}

void Compiler::jcc_slow(int cc, size_t slow) {
  Enc e;
  if (cc < 0) e.u8(0xe9);
  else {
    e.u8(0x0f);
    e.u8(0x80 + static_cast<uint32_t>(cc));
  }
  e.u32(0);
  put(e);
  SlowPath& sp = slow_paths_[slow];
  sp.from[sp.nfrom++] = here() - 4;
}

uint32_t Compiler::jcc8(int cc) {
  put(enc_bytes(cc < 0 ? 0xeb : 0x70 + static_cast<uint32_t>(cc), 0));
  return here() - 1;
}

void Compiler::bind8(uint32_t pos) {
  const int64_t d = static_cast<int64_t>(here()) - (pos + 1);
  if (d > 127) short_overflow_ = true;
  code_.data()[pos] = static_cast<uint8_t>(d);
}

// Generic entry for callbacks (RunContext::call_function): JitHot* in rdi, function in rsi,
// r1..r5 at [rdx]. Saves every host callee-saved register, allocates a fresh full BPF stack.
// It does not depend on the program: compiled once per process (shared_trampoline()).
void emit_trampoline(CodeBuf& a) {
  const Label ret = a.new_label();
  const uint32_t regs[] = {kRbx, kRbp, kR12, kR13, kR14, kR15};
  for (uint32_t r : regs) a.put(enc_push_pop(true, r));
  constexpr uint32_t area = kStackSize * kMaxCallDepth;
  a.put(enc_ri(5, true, kRsp, area + 8));  // sub rsp: 6 pushes + return address = 56, +8 aligns
  a.put(enc_rr(0x89, true, kR12, kRdi));
  a.put(enc_op_mem(0x89, true, kRsp, MemOp{kR12, offsetof(JitHot, unwind_rsp)}));
  a.lea_rip(kR11, ret);
  a.put(enc_op_mem(0x89, true, kR11, MemOp{kR12, offsetof(JitHot, unwind_rip)}));
  a.put(enc_op_mem(0x8d, true, kR11, MemOp{kRsp, static_cast<int32_t>(kStackSize)}));
  a.put(enc_op_mem(0x89, true, kR11, MemOp{kR12, offsetof(JitHot, stack_limit)}));
  a.put(enc_op_mem(0x8d, true, kRbp, MemOp{kRsp, static_cast<int32_t>(area)}));
  a.put(enc_rr(0x89, true, kR11, kRsi));
  a.put(enc_rr(0x89, true, kR10, kRdx));
  const uint32_t args[] = {kRdi, kRsi, kRdx, kRcx, kR8};
  for (int k = 0; k < 5; ++k) a.put(enc_op_mem(0x8b, true, args[k], MemOp{kR10, 8 * k}));
  for (uint32_t r : {kRax, kRbx, kR13, kR14, kR15}) a.put(enc_rr(0x31, false, r, r));
  a.put(enc_op_rr(0xff, false, 2, kR11));  // call r11
  a.bind(ret);
  a.put(enc_ri(0, true, kRsp, area + 8));
  for (int i = 5; i >= 0; --i) a.put(enc_push_pop(false, regs[i]));
  a.put(enc_byte(0xc3));
}

TrampolineFn shared_trampoline() {
  static ExecMemory* mem = [] {
    CodeBuf a;
    a.reset(256);
    emit_trampoline(a);
    if (!a.resolve()) return static_cast<ExecMemory*>(nullptr);
    auto* m = new ExecMemory();  // lives as long as the process
    if (!m->install(a.data(), a.offset())) {
      delete m;
      return static_cast<ExecMemory*>(nullptr);
    }
    return m;
  }();
  return mem ? reinterpret_cast<TrampolineFn>(const_cast<uint8_t*>(mem->base())) : nullptr;
}

Status Compiler::compile_function(int64_t entry, bool main_mode) {
  CodeBuf& a = code_;
  const std::vector<int64_t>& body = reachable_from(entry);
  // Registers the function touches and whether it calls.
  uint16_t reads = 0, writes = 0;
  bool calls = false;
  for (int64_t i : body) {
    const RegUse& u = uses_[static_cast<size_t>(i)];
    reads |= u.reads;
    writes |= u.writes;
    if (infos_[static_cast<size_t>(i)]->kind == OpKind::Call) calls = true;
  }
  saved_.clear();
  frame_adjust_ = 0;
  cur_fn_ = main_mode ? -1 : static_cast<int32_t>(entry);
  zext_ = 0;
  if (main_mode) {
    a.align(16);
    mark(-1, -1);
    uint16_t used = reads | writes;
    // A called function may read a register main never touches: it must start at 0 there too.
    if (has_local_calls_) used |= program_reads_;
    if (needs_stack_) saved_.push_back(gp(kRbp));
    if (needs_state_ && !len_in_reg_) saved_.push_back(gp(kR12));
    for (int r = 6; r <= 9; ++r)
      if (used & (1u << r)) saved_.push_back(Q(r));
    if (batch_) {  // loop registers the host wants preserved
      for (const Gp& g : {pkt_base_, pkt_len_reg_, batch_cur_, batch_vp_}) {
        const uint32_t id = g.id();
        const bool callee_saved = id == kRbx || id == kRbp || id == kR12 || id == kR13 || id == kR14 || id == kR15;
        if (g.isValid() && callee_saved && std::find(saved_.begin(), saved_.end(), g) == saved_.end())
          saved_.push_back(g);
      }
    }
    for (auto& r : saved_) put(enc_push_pop(true, r.id()));
    bool any_calls = has_any_call_;  // callees are aligned by their own prologues
    frame_adjust_ = stack_bytes_ + static_cast<uint32_t>(stack_base_);
    if (any_calls && (saved_.size() % 2 == 0)) frame_adjust_ += 8;
    if (frame_adjust_) put(enc_ri(5, true, kRsp, static_cast<int32_t>(frame_adjust_)));  // sub rsp
    if (needs_stack_) put(enc_op_mem(0x8d, true, kRbp, MemOp{kRsp, static_cast<int32_t>(stack_base_ + stack_bytes_)}));
    // Packet base and length (64 bits; 0 without a packet), the length capped at INT32_MAX when LD_IND
    // relies on it (see emit_ldpkt).
    auto clamp_len = [&](uint32_t len) {
      put(enc_rr(0x85, true, pkt_base_.id(), pkt_base_.id()));            // test base, base
      put(enc_op_rr(0x0f44, true, len, pkt_base_.id()));                   // cmovz len, base
      if (has_ldind_) {
        put(enc_mov_imm(kR10, INT32_MAX));
        put(enc_rr(0x39, true, len, kR10));                                // cmp len, r10
        put(enc_op_rr(0x0f47, true, len, kR10));                           // cmova len, r10
      }
    };
    if (batch_) {
      // rdi = items, rsi = n, rdx = verdicts, rcx = r1, r8 = store (Engine::BatchFn).
      batch_top_ = a.new_label();
      batch_done_ = a.new_label();
      put(enc_shift_imm(4, true, kRsi, 4));                                // shl rsi, 4
      put(enc_rr(0x01, true, kRsi, kRdi));                                 // add rsi, rdi: end of the items
      put(enc_op_mem(0x89, true, kRsi, MemOp{kRsp, 0}));
      put(enc_op_mem(0x89, true, kRcx, MemOp{kRsp, 8}));
      put(enc_op_mem(0x89, true, kR8, MemOp{kRsp, 16}));
      mov_rr(true, kR10, kRdi);
      mov_rr(true, kR9, kRdx);
      mov_rr(true, batch_cur_.id(), kR10);
      mov_rr(true, batch_vp_.id(), kR9);
      put(enc_op_mem(0x3b, true, batch_cur_.id(), MemOp{kRsp, 0}));       // cmp cur, [rsp]
      a.jump(0x3, batch_done_);                                            // jae
      a.align(16);
      a.bind(batch_top_);
      if (needs_state_) {
        put(enc_op_mem(0x8b, true, pkt_base_.id(), MemOp{batch_cur_.id(), static_cast<int32_t>(offsetof(BatchItem, packet))}));
        put(enc_op_mem(0x8b, false, pkt_len_reg_.id(),
                       MemOp{batch_cur_.id(), static_cast<int32_t>(offsetof(BatchItem, packet_len))}));
        clamp_len(pkt_len_reg_.id());
      }
      if (program_reads_ & (1u << 1)) {
        put(enc_op_mem(0x8b, false, kR11, MemOp{batch_cur_.id(), static_cast<int32_t>(offsetof(BatchItem, value))}));
        put(enc_op_mem(0x8b, true, kR10, MemOp{kRsp, 16}));
        put(enc_op_mem(0x89, false, kR11, MemOp{kR10, 0}));               // the item's value in the store
        put(enc_op_mem(0x8b, true, kRdi, MemOp{kRsp, 8}));
      }
      if (program_reads_ & (1u << 2)) put(enc_rr(0x31, false, kRsi, kRsi));
    } else if (direct_ && needs_state_) {
      // rdx = const RunArgs*: packet base (r12 or a free register) and its length (0 without a packet;
      // in a free register or at [rsp]).
      const uint32_t len = len_in_reg_ ? pkt_len_reg_.id() : kR11;
      put(enc_op_mem(0x8b, true, pkt_base_.id(), MemOp{kRdx, static_cast<int32_t>(offsetof(RunArgs, packet))}));
      put(enc_op_mem(0x8b, true, len, MemOp{kRdx, static_cast<int32_t>(offsetof(RunArgs, packet_len))}));
      clamp_len(len);
      if (!len_in_reg_) put(enc_op_mem(0x89, true, kR11, MemOp{kRsp, 0}));
    } else if (needs_state_) {
      mov_rr(true, kR12, kRdx);
      put(enc_op_mem(0x89, true, kRsp, MemOp{kR12, offsetof(JitHot, unwind_rsp)}));
      a.lea_rip(kR11, main_epilogue_);
      put(enc_op_mem(0x89, true, kR11, MemOp{kR12, offsetof(JitHot, unwind_rip)}));
      if (has_local_calls_) {
        put(enc_op_mem(0x8d, true, kR11, MemOp{kRsp, static_cast<int32_t>(kStackSize)}));
        put(enc_op_mem(0x89, true, kR11, MemOp{kR12, offsetof(JitHot, stack_limit)}));
      }
    }
    // The interpreter starts with every register but r1, r2, r10 at zero. Registers the straight-line
    // start of main writes before reading are not cleared: every path runs that start first.
    uint16_t written = 0, read_first = 0;
    for (size_t i = 0; i < n_; ++i) {
      if (insns_[i].op == Op::LDDW_HI) continue;
      const RegUse& u = uses_[i];
      OpKind k = infos_[i]->kind;
      if (k == OpKind::Jump || k == OpKind::CondJump || k == OpKind::Exit || k == OpKind::Call) break;
      read_first |= u.reads & ~written;
      written |= u.writes;
    }
    const uint16_t clear = static_cast<uint16_t>(used & (read_first | ~written));
    for (int r : {0, 3, 4, 5, 6, 7, 8, 9})
      if (clear & (1u << r)) put(enc_rr(0x31, false, kHost[r], kHost[r]));
  } else {
    a.align(16);
    fn_offsets[entry] = a.offset();
    mark(cur_fn_, -1);
    for (int r = 6; r <= 9; ++r)
      if (writes & (1u << r)) saved_.push_back(Q(r));
    for (auto& r : saved_) put(enc_push_pop(true, r.id()));
    // entered with rsp = 8 mod 16
    if (calls && (saved_.size() % 2 == 0)) frame_adjust_ = 8;
    if (frame_adjust_) put(enc_ri(5, true, kRsp, static_cast<int32_t>(frame_adjust_)));
  }

  // Every jump of the body targets an instruction of the body, whose offset is recorded below before
  // any backward jump to it: offsets left from another function are never used.
  if (insn_off_.size() != n_) insn_off_.assign(n_, 0);
  fixups_.clear();
  cold_blocks_.clear();
  thread_exit_ = main_mode && !batch_;
  // Cold blocks: body[k+1..k+1+m) = instructions i+1..i+m right after a conditional jump at i = body[k]
  // to i+m+1, straight-line code ending in exit (up to 8 slots; no function entry). Other jumps may land
  // in the block: they reach it wherever it is (rel32). A single exit in main outside batch mode is
  // no block: the inverted jump goes to the epilogue itself.
  for (size_t k = 0; k + 1 < body.size(); ++k) {
    const int64_t i = body[k];
    if (infos_[static_cast<size_t>(i)]->kind != OpKind::CondJump) continue;
    const int64_t t = jit_target(insns_[static_cast<size_t>(i)], i);
    const int64_t m = t - i - 1;
    if (m < 1 || m > 8 || k + static_cast<size_t>(m) >= body.size()) continue;
    if (insns_[static_cast<size_t>(t - 1)].op != Op::EXIT || (m == 1 && thread_exit_)) continue;
    bool ok = true;
    for (int64_t j = 1; j <= m && ok; ++j) {
      const size_t x = static_cast<size_t>(i + j);
      ok = body[k + static_cast<size_t>(j)] == i + j && !is_fn_[x] && !cold_[x] &&
           (j == m || insns_[x].op == Op::LDDW_HI ||
            (infos_[x]->kind != OpKind::Jump && infos_[x]->kind != OpKind::CondJump && infos_[x]->kind != OpKind::Exit));
    }
    if (!ok) continue;
    for (int64_t j = 1; j <= m; ++j) cold_[static_cast<size_t>(i + j)] = 1;
    cold_blocks_.push_back({k + 1, k + 1 + static_cast<size_t>(m), 0, 0});
    k += static_cast<size_t>(m);
  }
  // One instruction of the body (body[k]) and, for zero-extension idioms, the ones it folds in.
  auto emit_at = [&](size_t& k) -> bool {
    int64_t i = body[k];
    const Insn& in = insns_[static_cast<size_t>(i)];
    if (in.op == Op::LDDW_HI) return true;
    if (i != recorded_) {
      if (is_target_[static_cast<size_t>(i)]) insn_off_[static_cast<size_t>(i)] = a.offset();
      mark(cur_fn_, static_cast<int32_t>(i));
    }
    if (is_target_[static_cast<size_t>(i)]) zext_ = 0;  // another path may arrive with other values
    if (dead_[static_cast<size_t>(i)]) {
      zext_ &= static_cast<uint16_t>(~(1u << in.dst));  // not written: the host register holds something else
      return true;
    }
    // Zero-extension idioms of clang's 64-bit code for u32 values: `dst <<= 32; dst >>= 32` is one
    // 32-bit move (`mov ecx, ecx`), and `dst = src` in front of it folds in (`mov ecx, esi`).
    if (size_t skip = zero_extend_idiom(body, k); skip) {
      note_zext(in);
      for (size_t s = 1; s <= skip; ++s) {
        mark(cur_fn_, static_cast<int32_t>(body[k + s]));
        note_zext(insns_[static_cast<size_t>(body[k + s])]);
      }
      k += skip;
      return true;
    }
    if (!emit_insn(i, main_mode)) return false;
    note_zext(in);
    return true;
  };
  size_t next_cold = 0;
  pending_tables_.clear();
  for (size_t k = 0; k < body.size(); ++k) {
    int64_t i = body[k];
    const Insn& in = insns_[static_cast<size_t>(i)];
    recorded_ = -1;
    if (cold_[static_cast<size_t>(i)]) continue;  // emitted after the function
    // The main function's last exit falls into the epilogue.
    if (main_mode && in.op == Op::EXIT && k + 1 == body.size()) {
      if (is_target_[static_cast<size_t>(i)]) insn_off_[static_cast<size_t>(i)] = a.offset();
      mark(cur_fn_, static_cast<int32_t>(i));
      continue;
    }
    if (infos_[static_cast<size_t>(i)]->kind == OpKind::CondJump) {
      // Offset and listing mark here, before a switch dispatch (jumps to the root go to it).
      if (is_target_[static_cast<size_t>(i)]) {
        insn_off_[static_cast<size_t>(i)] = a.offset();
        zext_ = 0;
      }
      mark(cur_fn_, static_cast<int32_t>(i));
      recorded_ = i;
      if (!switches_.empty())
        if (const SwitchTable* st = switch_at(i)) emit_dispatch(*st);
      const int64_t t = jit_target(in, i);
      if (next_cold < cold_blocks_.size() && cold_blocks_[next_cold].k0 == k + 1) {
        // Over a cold block: the inverted jump into it, the code goes on at the target.
        const int cc = emit_compare(in);
        if (cc < 0) return make_error(ErrorCode::Unsupported, "jit: cannot compile a conditional jump", i);
        Enc e;
        e.u8(0x0f);
        e.u8(0x80 + static_cast<uint32_t>(cc ^ 1));
        e.u32(0);
        put(e);
        cold_blocks_[next_cold].jpos = here() - 4;
        cold_blocks_[next_cold].zext = zext_;
        k = cold_blocks_[next_cold].k1 - 1;
        ++next_cold;
        continue;
      }
      if (t == i + 2 && k + 1 < body.size() && body[k + 1] == i + 1 && !is_fn_[static_cast<size_t>(i + 1)]) {
        // Over one exit (main, not batch) or one unconditional jump nothing else targets: the
        // inverted jump goes where that instruction would, and the instruction is not emitted (its
        // only way in was the fall-through; jumps to an exit are threaded to the epilogue).
        const Insn& x = insns_[static_cast<size_t>(i + 1)];
        const bool over_exit = x.op == Op::EXIT && thread_exit_ && (switches_.empty() || !is_leaf_[static_cast<size_t>(i + 1)]);
        const bool over_ja = (x.op == Op::JA || x.op == Op::JA32) && !is_target_[static_cast<size_t>(i + 1)];
        if (over_exit || over_ja) {
          const int64_t r = over_exit ? kEpilogue : resolve(jit_target(x, i + 1));
          if (r != resolve(t)) {
            const int cc = emit_compare(in);
            if (cc < 0) return make_error(ErrorCode::Unsupported, "jit: cannot compile a conditional jump", i);
            emit_branch(cc ^ 1, r, i);
          }
          mark(cur_fn_, static_cast<int32_t>(i + 1));
          ++k;
          continue;
        }
      }
    }
    if (!emit_at(k)) return error_;
  }
  recorded_ = -1;
  if (main_mode) {
    a.bind(main_epilogue_);
    mark(-1, -1);
    if (batch_) {
      emit_batch_next();
      a.bind(batch_done_);
    }
    emit_exit(true);
  }
  // Cold blocks, after the function (main: after its epilogue).
  if (!cold_blocks_.empty()) mark(cur_fn_, -4);
  for (const ColdBlock& cb : cold_blocks_) {
    uint8_t* b = a.data();
    const int32_t d = static_cast<int32_t>(here() - (cb.jpos + 4));
    std::memcpy(b + cb.jpos, &d, 4);
    zext_ = cb.zext;
    for (size_t k = cb.k0; k < cb.k1; ++k) {
      cold_[static_cast<size_t>(body[k])] = 0;
      if (!emit_at(k)) return error_;
    }
  }
  emit_switch_tables();  // after everything the tables point into
  // Forward jumps of this function.
  uint8_t* buf = a.data();
  for (const Fixup& f : fixups_) {
    int64_t d = static_cast<int64_t>(insn_off_[static_cast<size_t>(f.target)]) - (f.pos + (f.rel8 ? 1 : 4));
    if (f.rel8) {
      // A size bound that was too small: compile() fails and the program is compiled with rel32 jumps.
      if (d < -128 || d > 127) return make_error(ErrorCode::Unsupported, "jit: short jump out of range");
      buf[f.pos] = static_cast<uint8_t>(d);
    } else {
      int32_t v = static_cast<int32_t>(d);
      std::memcpy(buf + f.pos, &v, 4);
    }
  }
  return {};
}

// The final target of a jump to t: through unconditional jumps (at most 8, not round a cycle) and, in
// main outside batch mode, from an exit to the epilogue. Never an instruction compile_function leaves
// out (those are not jump targets, or exits threaded here).
int64_t Compiler::resolve(int64_t t) const {
  for (int hops = 0; hops < 8; ++hops) {
    const Insn& x = insns_[static_cast<size_t>(t)];
    if (x.op == Op::EXIT) return thread_exit_ ? kEpilogue : t;
    if (x.op != Op::JA && x.op != Op::JA32) return t;
    const int64_t u = jit_target(x, t);
    if (u == t) return t;
    t = u;
  }
  return t;
}

void Compiler::emit_branch(int cc, int64_t t, int64_t pc) {
  Enc e;
  if (t != kEpilogue) t = resolve(t);
  if (t == kEpilogue) {
    code_.jump(cc, main_epilogue_);
    return;
  }
  const uint32_t here = code_.offset();
  if (t <= pc && !cold_[static_cast<size_t>(t)]) {  // backward: the target's offset is known
    int64_t d8 = static_cast<int64_t>(insn_off_[static_cast<size_t>(t)]) - (here + 2);
    if (d8 >= -128) {
      e.u8(cc < 0 ? 0xeb : 0x70 + static_cast<uint32_t>(cc));
      e.u8(static_cast<uint32_t>(d8) & 0xff);
    } else {
      uint32_t len = cc < 0 ? 5 : 6;
      if (cc < 0) e.u8(0xe9);
      else {
        e.u8(0x0f);
        e.u8(0x80 + static_cast<uint32_t>(cc));
      }
      e.u32(static_cast<uint32_t>(static_cast<int64_t>(insn_off_[static_cast<size_t>(t)]) - (here + len)));
    }
    put(e);
    return;
  }
  // Forward: the 2-byte form when an upper bound of the code in between proves it fits.
  // (Cold code is placed after the function: rel32. t < pc here only for a cold target.)
  const bool rel8 = short_jumps_ && t > pc && !cold_[static_cast<size_t>(t)] &&
                    size_prefix_[static_cast<size_t>(t)] - size_prefix_[static_cast<size_t>(pc + 1)] <= 120;
  if (rel8) {
    e.u8(cc < 0 ? 0xeb : 0x70 + static_cast<uint32_t>(cc));
    e.u8(0);
  } else if (cc < 0) {
    e.u8(0xe9);
    e.u32(0);
  } else {
    e.u8(0x0f);
    e.u8(0x80 + static_cast<uint32_t>(cc));
    e.u32(0);
  }
  fixups_.push_back({here + e.n - (rel8 ? 1 : 4), t, rel8});
  put(e);
}

void Compiler::emit_batch_next() {
  put(enc_op_mem(0x89, false, kRax, MemOp{batch_vp_.id(), 0}));     // mov [vp], eax
  put(enc_ri(0, true, batch_vp_.id(), 4));
  put(enc_ri(0, true, batch_cur_.id(), static_cast<int32_t>(sizeof(BatchItem))));
  put(enc_op_mem(0x3b, true, batch_cur_.id(), MemOp{kRsp, 0}));    // cmp cur, [rsp]
  code_.jump(0x2, batch_top_);                                       // jb
}

void Compiler::emit_exit(bool main_mode) {
  if (frame_adjust_) put(enc_ri(0, true, kRsp, static_cast<int32_t>(frame_adjust_)));  // add rsp
  for (size_t k = saved_.size(); k-- > 0;) put(enc_push_pop(false, saved_[k].id()));
  put(enc_byte(0xc3));
}

// The map in r1 at the helper call `pc`, when r1 was set by an lddw of a live map (Program::map_refs)
// in the same straight-line code: no jump lands between that lddw and the call (the call included)
// and nothing in between writes r1. nullptr otherwise.
Map* Compiler::constant_map_arg(int64_t pc) const {
  const auto& refs = linked_.program->map_refs;
  if (refs.empty()) return nullptr;
  for (int64_t i = pc - 1; i >= 0; --i) {
    if (is_target_[static_cast<size_t>(i + 1)]) return nullptr;  // another path arrives after i
    const Insn& x = insns_[static_cast<size_t>(i)];
    if (x.op == Op::LDDW_HI) continue;
    const OpInfo& xi = *infos_[static_cast<size_t>(i)];
    if (xi.kind == OpKind::Jump || xi.kind == OpKind::CondJump || xi.kind == OpKind::Exit) return nullptr;
    if (!(uses_[static_cast<size_t>(i)].writes & (1u << 1))) continue;  // calls write r1-r5 too
    if (x.op != Op::LDDW || x.dst != 1) return nullptr;
    if (!std::binary_search(refs.begin(), refs.end(), static_cast<uint32_t>(i))) return nullptr;
    return reinterpret_cast<Map*>(static_cast<uintptr_t>(x.imm));
  }
  return nullptr;
}

// bpf_map_lookup_elem(map, key) for a known map: an array's lookup inline (bounds check and address
// arithmetic, as the kernel's array_map_gen_lookup), another map's own lookup called directly.
// r1 (the map) and r2 (the key pointer) are in place; r0 gets the result; r1-r5 are clobbered as by
// any call.
bool Compiler::inline_array_lookup(int64_t pc, Map::InlineArray* out) const {
  const Insn& in = insns_[static_cast<size_t>(pc)];
  const HelperDef* h = linked_.helper_at[static_cast<size_t>(pc)];
  if (in.op != Op::CALL_HELPER || in.imm != kHelperMapLookupElem || !h ||
      h->fn != HelperSet::kernel().find(kHelperMapLookupElem)->fn)
    return false;
  Map* m = constant_map_arg(pc);
  return m && m->inline_array(out) && out->base && out->stride && out->stride <= INT32_MAX;
}

bool Compiler::emit_map_lookup(Map& m) {
  Map::InlineArray ia;
  if (m.inline_array(&ia) && ia.base && ia.stride && ia.stride <= INT32_MAX) {
    put(enc_op_mem(0x8b, false, kR11, MemOp{kHost[2]}));  // mov r11d, [rsi]
    put(enc_ri(7, false, kR11, static_cast<int32_t>(ia.max_entries)));
    const uint32_t null = jcc8(0x3);  // jae
    if ((ia.stride & (ia.stride - 1)) == 0) {
      int shift = __builtin_ctz(ia.stride);
      if (shift) put(enc_shift_imm(4, true, kR11, static_cast<uint32_t>(shift)));
    } else {
      put(enc_imul_imm(true, kR11, kR11, static_cast<int32_t>(ia.stride)));
    }
    put(enc_mov_imm(kRax, reinterpret_cast<uint64_t>(ia.base)));
    put(enc_rr(0x01, true, kRax, kR11));
    const uint32_t done = jcc8(-1);
    bind8(null);
    put(enc_rr(0x31, false, kRax, kRax));
    bind8(done);
    return true;
  }
  Map::LookupFn fn = m.lookup_fn();
  if (!fn) return false;
  emit_call_abs(reinterpret_cast<const void*>(fn), gp(kR11));
  return true;
}

// bpf_map_lookup_elem(map, key) for a map known only at run time (an inner map from a map-in-map
// lookup, or a map pointer the analysis did not follow): when the map is a plain array (its lookup
// function is the plain array's: maps::array_layout(), private and pinned arrays alike), the lookup
// inline with the map's own max_entries and stride read from the map (inner arrays of one outer map
// may differ in size: BPF_F_INNER_MAP); any other map (per-CPU arrays too) goes through the helper.
// Same registers and clobbers as emit_map_lookup.
void Compiler::emit_runtime_map_lookup(const void* helper) {
  const maps::ArrayLayout& l = maps::array_layout();
  put(enc_mov_imm(kR11, reinterpret_cast<uint64_t>(l.plain_lookup)));
  put(enc_op_mem(0x3b, true, kR11, MemOp{kHost[1], l.lookup_fn_off}));  // cmp r11, [rdi + lookup_fn]
  const uint32_t slow = jcc8(0x5);                                       // jne: not a plain array
  put(enc_op_mem(0x8b, false, kR11, MemOp{kHost[2]}));                   // mov r11d, [rsi]
  put(enc_op_mem(0x3b, false, kR11, MemOp{kHost[1], l.max_entries_off}));  // cmp r11d, [rdi + max_entries]
  const uint32_t null = jcc8(0x3);                                       // jae
  put(enc_op_mem(0x0faf, true, kR11, MemOp{kHost[1], l.stride_off}));   // imul r11, [rdi + stride]
  put(enc_op_mem(0x8b, true, kRax, MemOp{kHost[1], l.data_off}));        // mov rax, [rdi + data]
  put(enc_rr(0x01, true, kRax, kR11));                                   // add rax, r11
  const uint32_t done = jcc8(-1);
  bind8(null);
  put(enc_rr(0x31, false, kRax, kRax));
  const uint32_t done2 = jcc8(-1);
  bind8(slow);
  emit_call_abs(helper, gp(kR11));
  bind8(done);
  bind8(done2);
}

size_t Compiler::zero_extend_idiom(const std::vector<int64_t>& body, size_t k) {
  auto plain = [&](size_t at) {  // body[at] is the next instruction, no jump lands on it, not dropped
    if (at >= body.size() || body[at] != body[at - 1] + 1) return false;
    size_t idx = static_cast<size_t>(body[at]);
    return !is_target_[idx] && !dead_[idx];
  };
  auto is_shift32 = [&](size_t at, Op op, uint8_t dst) {
    const Insn& x = insns_[static_cast<size_t>(body[at])];
    return x.op == op && x.dst == dst && x.imm == 32;
  };
  const Insn& in = insns_[static_cast<size_t>(body[k])];
  if (in.op == Op::LSH64_IMM && in.imm == 32 && plain(k + 1) && is_shift32(k + 1, Op::RSH64_IMM, in.dst)) {
    mov_rr(false, kHost[in.dst], kHost[in.dst]);
    return 1;
  }
  if (in.op == Op::MOV64_REG && in.dst != in.src && plain(k + 1) && plain(k + 2) &&
      is_shift32(k + 1, Op::LSH64_IMM, in.dst) && is_shift32(k + 2, Op::RSH64_IMM, in.dst)) {
    mov_rr(false, kHost[in.dst], kHost[in.src]);
    return 2;
  }
  // `dst = src; dst += imm` and `dst = src; dst += src2` (an address or index computed from another
  // register): one lea. BPF ALU results need no flags, so lea's leaving them alone is fine.
  if (in.op == Op::MOV64_REG && in.dst != in.src && plain(k + 1)) {
    const Insn& nx = insns_[static_cast<size_t>(body[k + 1])];
    if (nx.dst == in.dst && nx.op == Op::ADD64_IMM && !harden_) {
      put(enc_op_mem(0x8d, true, kHost[in.dst], MemOp{kHost[in.src], static_cast<int32_t>(nx.imm)}));
      return 1;
    }
    if (nx.dst == in.dst && nx.op == Op::ADD64_REG && nx.src != in.dst) {
      put(enc_op_mem(0x8d, true, kHost[in.dst], MemOp{kHost[in.src], 0, static_cast<int>(kHost[nx.src])}));
      return 1;
    }
  }
  return 0;
}

bool Compiler::emit_insn(int64_t pc, bool main_mode) {
  const Insn& in = insns_[static_cast<size_t>(pc)];
  const OpInfo& info = *infos_[static_cast<size_t>(pc)];
  switch (info.kind) {
    case OpKind::Alu: emit_alu(in); return true;
    case OpKind::Jump:
    case OpKind::CondJump: emit_jump(in, pc); return true;
    case OpKind::Exit:
      if (main_mode && batch_) {
        // Each exit of a batch stores its verdict and goes on with the next item itself (one taken
        // branch per item instead of two).
        emit_batch_next();
        code_.jump(-1, batch_done_);
      } else if (main_mode) {
        // The epilogue follows the last instruction; other exits jump to it.
        code_.jump(-1, main_epilogue_);
      } else {
        emit_exit(false);
      }
      return true;
    case OpKind::LoadImm64: {
      uint64_t v = static_cast<uint64_t>(in.imm);
      if (in.op == Op::LDDW_CODE_ADDR) v = static_cast<uint64_t>(pc + 1 + static_cast<int32_t>(in.imm));
      if (harden_) {
        uint64_t key = rng_();
        put(enc_mov_imm(kHost[in.dst], v ^ key));
        put(enc_mov_imm(kR11, key));
        put(enc_rr(0x31, true, kHost[in.dst], kR11));
      } else {
        put(enc_mov_imm(kHost[in.dst], v));  // v == 0: xor r32, r32
      }
      return true;
    }
    case OpKind::LoadPacket: emit_ldpkt(in, pc); return true;
    case OpKind::Load:
    case OpKind::Store:
    case OpKind::StoreReg: emit_mem(in); return true;
    case OpKind::Atomic: emit_atomic(in); return true;
    case OpKind::Pseudo: return true;
    case OpKind::Call: break;
  }
  // calls
  if (in.op == Op::CALL_HELPER) {
    const HelperDef* h = linked_.helper_at[static_cast<size_t>(pc)];
    if (!h || !h->fn) {
      error_ = make_error(ErrorCode::Link, "jit: unresolved helper", pc);
      return false;
    }
    if (in.imm == kHelperMapLookupElem && h->fn == HelperSet::kernel().find(kHelperMapLookupElem)->fn) {
      Map* m = constant_map_arg(pc);
      if (m && emit_map_lookup(*m)) return true;
      if (!m) {
        emit_runtime_map_lookup(reinterpret_cast<const void*>(h->fn));
        return true;
      }
    }
    if (h->tail_call) put(enc_op_mem(0x89, true, kRdi, MemOp{kR12, offsetof(JitHot, saved_r1)}));
    emit_call_abs(reinterpret_cast<const void*>(h->fn), gp(kR11));
    if (h->tail_call) emit_tail_check();
    return true;
  }
  if (in.op == Op::CALLX) {
    const size_t fail = add_slow_path(SlowPath::Callx, pc, in.dst);
    mov_rr(true, kR11, kHost[in.dst]);
    put(enc_ri(7, true, kR11, static_cast<int32_t>(callx_size_)));
    jcc_slow(0x3, fail);  // jae
    put(enc_shift_imm(4, true, kR11, 4));
    put(enc_mov_imm(kR10, reinterpret_cast<uint64_t>(callx_table_)));
    put(enc_mi(7, true, MemOp{kR10, 0, static_cast<int>(kR11)}, 0));  // cmp qword [r10 + r11], 0
    jcc_slow(0x4, fail);  // je
    if (callx_has_tail_) {
      put(enc_op_mem(0x89, true, kRdi, MemOp{kR12, offsetof(JitHot, saved_r1)}));
      put(enc_op_mem(0x89, true, kR11, MemOp{kR12, offsetof(JitHot, callx_idx)}));
    }
    put(enc_op_mem(0xff, false, 2, MemOp{kR10, 0, static_cast<int>(kR11)}));  // call [r10 + r11]
    if (callx_has_tail_) {
      put(enc_op_mem(0x8b, true, kR11, MemOp{kR12, offsetof(JitHot, callx_idx)}));
      put(enc_mov_imm(kR10, reinterpret_cast<uint64_t>(callx_table_)));
      put(enc_mi(7, true, MemOp{kR10, 8, static_cast<int>(kR11)}, 0));  // cmp qword [r10 + r11 + 8], 0
      const uint32_t no_tail = jcc8(0x4);                              // je
      emit_tail_check();
      bind8(no_tail);
    }
    return true;
  }
  if (in.op == Op::CALL_LOCAL) {
    int64_t t = jit_target(in, pc);
    const size_t fail = add_slow_path(SlowPath::Depth, pc);
    put(enc_op_mem(0x3b, true, kRbp, MemOp{kR12, offsetof(JitHot, stack_limit)}));  // cmp rbp, [r12 + stack_limit]
    jcc_slow(0x6, fail);  // jbe
    put(enc_ri(5, true, kRbp, kStackSize));
    {
      Enc e;  // call rel32, patched in compile()
      e.u8(0xe8);
      e.u32(0);
      put(e);
    }
    call_fixups_.push_back({here() - 4, t});
    put(enc_ri(0, true, kRbp, kStackSize));
    return true;
  }
  error_ = make_error(ErrorCode::Unsupported, fmt::format("jit: cannot compile {}", info.mnemonic), pc);
  return false;
}

// After a tail-call helper returned rax: 0 = fall through with r0 = -ENOENT; otherwise run the
// target program and leave the whole program with its result.
void Compiler::emit_tail_check() {
  put(enc_rr(0x85, true, kRax, kRax));
  const uint32_t fall = jcc8(0x4);  // jz
  mov_rr(true, kRdi, kR12);
  mov_rr(true, kRsi, kRax);
  emit_call_abs(reinterpret_cast<const void*>(&rt_tail_call), gp(kR11));
  emit_unwind();
  bind8(fall);
  put(enc_mov_imm(kRax, static_cast<uint64_t>(int64_t{-2})));
}

void Compiler::emit_alu(const Insn& in) {
  const OpInfo& info = *op_facts(in.op).info;
  const bool w64 = info.alu64;
  const bool reg = info.uses_reg_src;
  const uint8_t base = info.code & 0xf0;
  const uint32_t d = kHost[in.dst], s = kHost[in.src];

  if (is_div_family(in.op)) return emit_div(in);
  switch (in.op) {
    case Op::NEG64: put(enc_op_rr(0xf7, true, 3, d)); return;
    case Op::NEG32: put(enc_op_rr(0xf7, false, 3, d)); return;
    case Op::MOVSX64_8: put(enc_op_rr(0x0fbe, true, d, s)); return;
    case Op::MOVSX64_16: put(enc_op_rr(0x0fbf, true, d, s)); return;
    case Op::MOVSX64_32: put(enc_op_rr(0x63, true, d, s)); return;
    case Op::MOVSX32_8: put(enc_op_rr(0x0fbe, false, d, s, 0, byte_needs_rex(s))); return;
    case Op::MOVSX32_16: put(enc_op_rr(0x0fbf, false, d, s)); return;
    case Op::LE16: put(enc_op_rr(0x0fb7, false, d, d)); return;  // movzx r32, r16
    case Op::LE32: mov_rr(false, d, d); return;
    case Op::LE64: return;
    case Op::BE16:
    case Op::BSWAP16: {
      Enc e = enc_op_rr(0xc1, false, 0, d, 0x66);  // rol r16, 8
      e.u8(8);
      put(e);
      put(enc_op_rr(0x0fb7, false, d, d));
      return;
    }
    case Op::BE32:
    case Op::BSWAP32: put(enc_bswap(false, d)); return;
    case Op::BE64:
    case Op::BSWAP64: put(enc_bswap(true, d)); return;
    default: break;
  }
  if (base == 0x60 || base == 0x70 || base == 0xc0) return emit_shift(in, base);

  if (base == 0xb0) {  // mov
    if (reg) {
      if (!w64 || d != s) mov_rr(w64, d, s);  // 32-bit: zero-extends, also to itself
      return;
    }
    if (harden_) {
      imm_to_r11(in.imm);
      mov_rr(w64, d, kR11);
      return;
    }
    int64_t v = in.imm;
    if (!w64) v = static_cast<uint32_t>(v);
    put(enc_mov_imm(d, static_cast<uint64_t>(v)));
    return;
  }

  // add, sub, or, and, xor, mul
  uint8_t rr = 0;
  uint32_t ext = 0;
  switch (base) {
    case 0x00: rr = 0x01; ext = 0; break;
    case 0x10: rr = 0x29; ext = 5; break;
    case 0x40: rr = 0x09; ext = 1; break;
    case 0x50: rr = 0x21; ext = 4; break;
    case 0xa0: rr = 0x31; ext = 6; break;
    default: break;
  }
  if (!reg && harden_) imm_to_r11(in.imm);
  const uint32_t src = reg ? s : kR11;  // the second operand when it is a register
  if (rr) {
    if (reg || harden_) put(enc_rr(rr, w64, d, src));
    else put(enc_ri(ext, w64, d, static_cast<int32_t>(in.imm)));
    return;
  }
  if (base == 0x20) {  // imul
    if (reg || harden_) put(enc_op_rr(0x0faf, w64, d, src));
    else put(enc_imul_imm(w64, d, d, static_cast<int32_t>(in.imm)));
  }
}

void Compiler::emit_shift(const Insn& in, uint8_t base) {
  const OpInfo& info = *op_facts(in.op).info;
  const bool w64 = info.alu64;
  const uint32_t d = kHost[in.dst], s = kHost[in.src];
  const uint32_t ext = base == 0x60 ? 4 : base == 0x70 ? 5 : 7;  // shl, shr, sar
  if (!info.uses_reg_src) {
    uint32_t c = static_cast<uint32_t>(in.imm) & (w64 ? 63 : 31);
    if (c == 0) {
      if (!w64) mov_rr(false, d, d);
      return;
    }
    put(enc_shift_imm(ext, w64, d, c));
    return;
  }
  if (bmi2_) {
    put(enc_shiftx(base == 0x60 ? 1 : base == 0x70 ? 3 : 2, w64, d, d, s));
    return;
  }
  // Count must be in cl (rcx is r4).
  if (s == kRcx) {
    put(enc_op_rr(0xd3, w64, ext, d));
  } else {
    mov_rr(true, kR11, kRcx);
    mov_rr(false, kRcx, s);
    if (d == kRcx) {
      put(enc_op_rr(0xd3, w64, ext, kR11));
      mov_rr(true, kRcx, kR11);
    } else {
      put(enc_op_rr(0xd3, w64, ext, d));
      mov_rr(true, kRcx, kR11);
    }
  }
  if (!w64) mov_rr(false, d, d);
}

// Registers whose upper 32 bits are known to be zero here (zext_), from the instructions since the
// last jump target of the straight-line code being compiled: ALU32 results, zero-extending loads,
// `>>= 32` or more, non-negative masks and constants, copies of such registers. Cleared at every
// jump target and function entry; a register not written as the program says (dead writes) loses it.
void Compiler::note_zext(const Insn& in) {
  const OpFacts& f = op_facts(in.op);
  const OpInfo& info = *f.info;
  const uint16_t bit = static_cast<uint16_t>(1u << in.dst);
  const auto has = [&](uint8_t r) { return (zext_ >> r) & 1u; };
  bool z = false;
  switch (info.kind) {
    case OpKind::Alu:
      if (in.op == Op::LE64) {
        z = has(in.dst);  // the identity (the END class is ALU32 in its encoding, 64-bit here)
      } else if (in.op == Op::BE64 || in.op == Op::BSWAP64) {
        z = false;
      } else if (!info.alu64) {
        z = true;  // every other 32-bit ALU operation zero-extends its result
      } else {
        switch (in.op) {
          case Op::MOV64_REG: z = has(in.src); break;
          case Op::MOV64_IMM: z = in.imm >= 0; break;
          case Op::RSH64_IMM: z = (in.imm & 63) >= 32 || has(in.dst); break;
          case Op::RSH64_REG: z = has(in.dst); break;
          case Op::AND64_IMM: z = in.imm >= 0 || has(in.dst); break;
          case Op::AND64_REG: z = has(in.dst) || has(in.src); break;
          case Op::OR64_REG:
          case Op::XOR64_REG: z = has(in.dst) && has(in.src); break;
          case Op::OR64_IMM:
          case Op::XOR64_IMM: z = has(in.dst) && in.imm >= 0; break;
          // unsigned quotient <= dividend, remainder < divisor (or the dividend when it is 0)
          case Op::DIV64_REG:
          case Op::MOD64_REG: z = has(in.dst) && has(in.src); break;
          case Op::DIV64_IMM: z = has(in.dst) && in.imm >= 0; break;
          case Op::MOD64_IMM: z = has(in.dst) && in.imm >= 0; break;
          case Op::LE16:
          case Op::LE32:
          case Op::BE16:
          case Op::BE32:
          case Op::BSWAP16:
          case Op::BSWAP32: z = true; break;
          default: z = false; break;
        }
      }
      zext_ = static_cast<uint16_t>(z ? (zext_ | bit) : (zext_ & ~bit));
      return;
    case OpKind::Load:
      z = in.op == Op::LDXW || in.op == Op::LDXH || in.op == Op::LDXB;
      zext_ = static_cast<uint16_t>(z ? (zext_ | bit) : (zext_ & ~bit));
      return;
    case OpKind::LoadPacket: zext_ |= 1u; return;  // r0 = a 1-, 2- or 4-byte value
    case OpKind::LoadImm64:
      z = static_cast<uint64_t>(in.imm) <= UINT32_MAX && in.op != Op::LDDW_CODE_ADDR;
      zext_ = static_cast<uint16_t>(z ? (zext_ | bit) : (zext_ & ~bit));
      return;
    case OpKind::Call: zext_ &= static_cast<uint16_t>(~0x3fu); return;  // r0-r5
    case OpKind::Atomic: zext_ &= static_cast<uint16_t>(~((1u << in.src) | 1u)); return;
    default: return;  // stores and jumps write no register
  }
}

void Compiler::emit_div(const Insn& in) {
  const OpInfo& info = *op_facts(in.op).info;
  // A 64-bit unsigned division or modulo of values known to fit in 32 bits is the 32-bit one (same
  // quotient and remainder, zero-extended): x86's 32-bit div is several times faster than the 64-bit one.
  const bool narrow = info.alu64 && !is_signed_div(in.op) && (zext_ >> in.dst & 1u) &&
                      (info.uses_reg_src ? (zext_ >> in.src & 1u) != 0 : in.imm > 0);
  const bool w64 = info.alu64 && !narrow;
  const bool reg = info.uses_reg_src;
  const bool is_signed = is_signed_div(in.op);
  const bool is_mod = (info.code & 0xf0) == 0x90;
  const uint32_t d = kHost[in.dst];
  auto zero_result = [&]() {
    if (!is_mod) put(enc_rr(0x31, false, d, d));
    else if (!w64) mov_rr(false, d, d);
  };
  auto neg1_result = [&]() {
    if (!is_mod) put(enc_op_rr(0xf7, w64, 3, d));  // neg
    else put(enc_rr(0x31, false, d, d));
  };
  if (!reg) {
    int64_t v = w64 ? in.imm : static_cast<int64_t>(static_cast<uint32_t>(in.imm));
    if (v == 0) return zero_result();
    if (is_signed && static_cast<int32_t>(in.imm) == -1) return neg1_result();
  }
  // The divisor is r11 (r11d for 32-bit).
  uint32_t zero = 0, neg1 = 0;
  if (reg) {
    mov_rr(w64, kR11, kHost[in.src]);
    put(enc_rr(0x85, w64, kR11, kR11));
    zero = jcc8(0x4);  // jz
    if (is_signed) {
      put(enc_ri(7, w64, kR11, -1));
      neg1 = jcc8(0x4);  // je
    }
  } else {
    if (harden_) imm_to_r11(in.imm);
    else put(enc_mov_imm(kR11, static_cast<uint64_t>(w64 ? in.imm : static_cast<int64_t>(static_cast<uint32_t>(in.imm)))));
  }
  const bool d_rax = d == kRax, d_rdx = d == kRdx;
  if (!d_rax) mov_rr(true, kR10, kRax);
  if (!d_rdx) mov_rr(true, kR9, kRdx);
  if (!d_rax) mov_rr(w64, kRax, d);
  if (is_signed) {
    if (w64) put(enc_bytes(0x48, 0x99));  // cqo
    else put(enc_byte(0x99));             // cdq
    put(enc_op_rr(0xf7, w64, 7, kR11));   // idiv
  } else {
    put(enc_rr(0x31, false, kRdx, kRdx));
    put(enc_op_rr(0xf7, w64, 6, kR11));  // div
  }
  const uint32_t res = is_mod ? kRdx : kRax;
  if (!(is_mod ? d_rdx : d_rax)) mov_rr(w64, d, res);
  if (!d_rax) mov_rr(true, kRax, kR10);
  if (!d_rdx) mov_rr(true, kRdx, kR9);
  if (reg) {
    const uint32_t done1 = jcc8(-1);
    bind8(zero);
    zero_result();
    uint32_t done2 = 0;
    if (is_signed) {
      done2 = jcc8(-1);
      bind8(neg1);
      neg1_result();
    }
    bind8(done1);
    if (is_signed) bind8(done2);
  }
}

void Compiler::emit_jump(const Insn& in, int64_t pc) {
  int64_t t = jit_target(in, pc);
  int64_t next = pc + 1;
  if (in.op == Op::JA || in.op == Op::JA32) {
    if (t != next && resolve(t) != next) emit_branch(-1, t, pc);
    return;
  }
  if (t == next) return;  // both ways lead to the next instruction; comparisons have no side effects
  const int cc = emit_compare(in);
  if (cc >= 0) emit_branch(cc, t, pc);
}

int Compiler::emit_compare(const Insn& in) {
  const OpInfo& info = *op_facts(in.op).info;
  const bool w64 = (info.code & 7) == 5;  // JMP class vs JMP32
  const uint8_t base = info.code & 0xf0;
  const bool is_test = base == 0x40;
  if (info.uses_reg_src) {
    put(enc_rr(is_test ? 0x85 : 0x39, w64, kHost[in.dst], kHost[in.src]));
  } else if (harden_) {
    imm_to_r11(in.imm);
    put(enc_rr(is_test ? 0x85 : 0x39, w64, kHost[in.dst], kR11));
  } else if (in.imm == 0 && (base == 0x10 || base == 0x50)) {
    put(enc_rr(0x85, w64, kHost[in.dst], kHost[in.dst]));
  } else {
    put(is_test ? enc_test_ri(w64, kHost[in.dst], static_cast<int32_t>(in.imm))
                : enc_ri(7, w64, kHost[in.dst], static_cast<int32_t>(in.imm)));
  }
  int cc = -2;
  switch (base) {
    case 0x10: cc = 0x4; break;  // je
    case 0x20: cc = 0x7; break;  // ja
    case 0x30: cc = 0x3; break;  // jae
    case 0x40: cc = 0x5; break;  // jnz (jset)
    case 0x50: cc = 0x5; break;  // jne
    case 0x60: cc = 0xf; break;  // jg
    case 0x70: cc = 0xd; break;  // jge
    case 0xa0: cc = 0x2; break;  // jb
    case 0xb0: cc = 0x6; break;  // jbe
    case 0xc0: cc = 0xc; break;  // jl
    case 0xd0: cc = 0xe; break;  // jle
    default: break;
  }
  return cc;
}

void Compiler::emit_mem(const Insn& in) {
  const int32_t off = in.off;
  {
    // direct encodings: [base + disp] with base = the address register
    const uint32_t dr = kHost[in.dst], sr = kHost[in.src];
    Enc e;
    switch (in.op) {
      case Op::LDXB: e.rex(false, dr, sr); e.u8(0x0f); e.u8(0xb6); e.modrm_mem(dr, sr, off); put(e); return;
      case Op::LDXH: e.rex(false, dr, sr); e.u8(0x0f); e.u8(0xb7); e.modrm_mem(dr, sr, off); put(e); return;
      case Op::LDXW: e.rex(false, dr, sr); e.u8(0x8b); e.modrm_mem(dr, sr, off); put(e); return;
      case Op::LDXDW: e.rex(true, dr, sr); e.u8(0x8b); e.modrm_mem(dr, sr, off); put(e); return;
      case Op::STXB: e.rex(false, sr, dr, sr >= 4 && sr <= 7); e.u8(0x88); e.modrm_mem(sr, dr, off); put(e); return;
      case Op::STXH: e.u8(0x66); e.rex(false, sr, dr); e.u8(0x89); e.modrm_mem(sr, dr, off); put(e); return;
      case Op::STXW: e.rex(false, sr, dr); e.u8(0x89); e.modrm_mem(sr, dr, off); put(e); return;
      case Op::STXDW: e.rex(true, sr, dr); e.u8(0x89); e.modrm_mem(sr, dr, off); put(e); return;
      default: break;
    }
    if (!harden_) {
      switch (in.op) {
        case Op::STB: e.rex(false, 0, dr); e.u8(0xc6); e.modrm_mem(0, dr, off); e.u8(static_cast<uint32_t>(in.imm) & 0xff); put(e); return;
        case Op::STH: e.u8(0x66); e.rex(false, 0, dr); e.u8(0xc7); e.modrm_mem(0, dr, off); e.u16(static_cast<uint32_t>(in.imm) & 0xffff); put(e); return;
        case Op::STW: e.rex(false, 0, dr); e.u8(0xc7); e.modrm_mem(0, dr, off); e.u32(static_cast<uint32_t>(in.imm)); put(e); return;
        case Op::STDW: e.rex(true, 0, dr); e.u8(0xc7); e.modrm_mem(0, dr, off); e.u32(static_cast<uint32_t>(in.imm)); put(e); return;
        default: break;
      }
    }
  }
  const MemOp m{kHost[in.dst], off};
  const MemOp ms{kHost[in.src], off};
  switch (in.op) {
    case Op::LDXSB: put(enc_op_mem(0x0fbe, true, kHost[in.dst], ms)); return;
    case Op::LDXSH: put(enc_op_mem(0x0fbf, true, kHost[in.dst], ms)); return;
    case Op::LDXSW: put(enc_op_mem(0x63, true, kHost[in.dst], ms)); return;
    default: break;
  }
  // stores of immediates, hardened: the value goes through r11
  imm_to_r11(in.imm);
  switch (in.op) {
    case Op::STB: put(enc_op_mem(0x88, false, kR11, m)); return;
    case Op::STH: put(enc_op_mem(0x89, false, kR11, m, 0x66)); return;
    case Op::STW: put(enc_op_mem(0x89, false, kR11, m)); return;
    default: put(enc_op_mem(0x89, true, kR11, m)); return;
  }
}

void Compiler::emit_atomic(const Insn& in) {
  const bool w64 = op_facts(in.op).info->size == 8;
  const uint32_t s = kHost[in.src];
  const MemOp m{kHost[in.dst], in.off};
  switch (in.op) {
    case Op::ATOMIC_ADD32: case Op::ATOMIC_ADD64: put(enc_op_mem(0x01, w64, s, m, 0xf0)); return;
    case Op::ATOMIC_OR32: case Op::ATOMIC_OR64: put(enc_op_mem(0x09, w64, s, m, 0xf0)); return;
    case Op::ATOMIC_AND32: case Op::ATOMIC_AND64: put(enc_op_mem(0x21, w64, s, m, 0xf0)); return;
    case Op::ATOMIC_XOR32: case Op::ATOMIC_XOR64: put(enc_op_mem(0x31, w64, s, m, 0xf0)); return;
    case Op::ATOMIC_FETCH_ADD32: case Op::ATOMIC_FETCH_ADD64: put(enc_op_mem(0x0fc1, w64, s, m, 0xf0)); return;  // lock xadd
    case Op::ATOMIC_XCHG32: case Op::ATOMIC_XCHG64: put(enc_op_mem(0x87, w64, s, m)); return;
    case Op::ATOMIC_CMPXCHG32:
    case Op::ATOMIC_CMPXCHG64:
      put(enc_op_mem(0x0fb1, w64, s, m, 0xf0));  // lock cmpxchg [m], s (compares with rax/eax)
      if (!w64) mov_rr(false, kRax, kRax);
      return;
    default: break;
  }
  // fetch or/and/xor: a cmpxchg loop (uses rax, so r0 is kept in r10).
  put(enc_op_mem(0x8d, true, kR11, m));  // lea r11, [dst + off]
  const MemOp mm{kR11};
  const uint32_t operand = in.src == 0 ? kR10 : s;
  mov_rr(true, kR10, kRax);
  put(enc_op_mem(0x8b, w64, kRax, mm));
  const uint32_t loop = here();
  mov_rr(w64, kR9, kRax);
  switch (in.op) {
    case Op::ATOMIC_FETCH_OR32: case Op::ATOMIC_FETCH_OR64: put(enc_rr(0x09, w64, kR9, operand)); break;
    case Op::ATOMIC_FETCH_AND32: case Op::ATOMIC_FETCH_AND64: put(enc_rr(0x21, w64, kR9, operand)); break;
    default: put(enc_rr(0x31, w64, kR9, operand)); break;
  }
  put(enc_op_mem(0x0fb1, w64, kR9, mm, 0xf0));
  put(enc_bytes(0x75, static_cast<uint32_t>(static_cast<int64_t>(loop) - (here() + 2)) & 0xff));  // jne loop
  mov_rr(w64, s, kRax);  // 32-bit: zero-extends
  if (in.src != 0) mov_rr(true, kRax, kR10);
}

// Legacy packet loads: r0 = big-endian value at packet[offset]; out of bounds ends the program with 0.
// The length the code compares with is min(packet_len, INT32_MAX) (0 without a packet): a load whose
// end is beyond 2^31 - 1 bytes is out of bounds (offsets are 32-bit).
// Direct code keeps the length in [rsp] (no calls: rsp is the body's everywhere), other code in JitHot.
MemOp Compiler::pkt_len_memop() const {
  return direct_ ? MemOp{kRsp} : MemOp{kR12, offsetof(JitHot, pkt_len)};
}

void Compiler::cmp_len_imm(int32_t v) {
  if (len_in_reg_) put(enc_ri(7, true, pkt_len_reg_.id(), v));
  else put(enc_mi(7, true, pkt_len_memop(), v));
}

void Compiler::cmp_r10_len() {
  if (len_in_reg_) put(enc_rr(0x39, true, kR10, pkt_len_reg_.id()));
  else put(enc_op_mem(0x3b, true, kR10, pkt_len_memop()));
}

// Out of bounds: the program returns 0.
void Compiler::emit_ldpkt_oob() {
  put(enc_rr(0x31, false, kRax, kRax));
  if (direct_) code_.jump(-1, main_epilogue_);
  else emit_unwind();
}

void Compiler::emit_ldpkt(const Insn& in, int64_t pc) {
  uint32_t size = in.op == Op::LDABS_W || in.op == Op::LDIND_W ? 4 : in.op == Op::LDABS_H || in.op == Op::LDIND_H ? 2 : 1;
  bool ind = in.op == Op::LDIND_W || in.op == Op::LDIND_H || in.op == Op::LDIND_B;
  MemOp m{0};
  if (!ind) {
    int64_t o = static_cast<int32_t>(in.imm);
    if (o < 0 && o >= kSkfLlOff && o < kSkfNetOff) o -= kSkfLlOff;
    if (o < 0 || o + size > INT32_MAX) {
      emit_ldpkt_oob();
      return;
    }
    if (o + size > pkt_known_[static_cast<size_t>(pc)]) {
      const size_t oob = add_slow_path(SlowPath::LdOob, pc);
      cmp_len_imm(static_cast<int32_t>(o + size));
      jcc_slow(0x2, oob);  // jb
    }
    uint32_t base = pkt_base_.id();
    if (!direct_) {
      put(enc_op_mem(0x8b, true, kR11, MemOp{kR12, offsetof(JitHot, pkt)}));
      base = kR11;
    }
    m = MemOp{base, static_cast<int32_t>(o)};
  } else {
    // r11 = (u32)(src + imm). Zero-extended, an offset that is negative as an int32 is >= 2^31 and fails
    // the unsigned check against a length <= INT32_MAX: the out-of-line path sorts out SKF_LL_OFF.
    const size_t check = add_slow_path(SlowPath::LdIndCheck, pc, 0, size);
    mov_rr(false, kR11, kHost[in.src]);
    if (static_cast<int32_t>(in.imm) != 0) put(enc_ri(0, false, kR11, static_cast<int32_t>(in.imm)));
    put(enc_op_mem(0x8d, true, kR10, MemOp{kR11, static_cast<int32_t>(size)}));
    cmp_r10_len();
    jcc_slow(0x7, check);  // ja
    slow_paths_[check].resume = here();
    uint32_t base = pkt_base_.id();
    if (!direct_) {
      put(enc_op_mem(0x8b, true, kR10, MemOp{kR12, offsetof(JitHot, pkt)}));
      base = kR10;
    }
    m = MemOp{base, 0, static_cast<int>(kR11)};
  }
  if (size == 1) {
    put(enc_op_mem(0x0fb6, false, kRax, m));  // movzx eax, byte
  } else if (size == 2) {
    put(enc_op_mem(0x0fb7, false, kRax, m));  // movzx eax, word
    Enc e = enc_op_rr(0xc1, false, 0, kRax, 0x66);  // rol ax, 8
    e.u8(8);
    put(e);
  } else {
    put(enc_op_mem(0x8b, false, kRax, m));
    put(enc_bswap(false, kRax));
  }
}

// ---- the engine -----------------------------------------------------------------------------------
class JitEngine final : public Engine {
 public:
  JitEngine(const LinkedProgram& linked) : exe_(linked.exe), program_(linked.program) {}

  Status build(const LinkedProgram& linked, const ExecOptions& options) {
    uint64_t t0 = compile_clock_ns();
    // The callx table (every helper by id) only for programs with a callx.
    bool any_callx = false;
    for (const Insn& in : linked.program->insns) any_callx |= in.op == Op::CALLX;
    callx_.resize(any_callx ? linked.by_id.size() : 0);
    bool has_tail = false;
    for (size_t i = 0; i < callx_.size(); ++i) {
      const HelperDef* h = linked.by_id[i];
      callx_[i].fn = h && h->fn ? reinterpret_cast<uint64_t>(h->fn) : 0;
      callx_[i].tail = h && h->fn && h->tail_call ? 1 : 0;
      has_tail |= callx_[i].tail != 0;
    }
    callx_has_tail_ = has_tail;
    options_ = options;
    Compiler c(linked, options, callx_.data(), callx_.size(), has_tail, true);
    Compiler* done = &c;
    std::unique_ptr<Compiler> slow;
    if (auto st = c.compile(); !st) {
      // A size bound that was too small shows up as a displacement error: compile again with long jumps.
      slow = std::make_unique<Compiler>(linked, options, callx_.data(), callx_.size(), has_tail, false);
      if (auto st2 = slow->compile(); !st2) return st2;
      short_jumps_ = false;
      done = slow.get();
    }
    if (!(options.jit_batch && done->direct())) return install(*done, done->code, 0, t0);
    // The batch entry: the same program compiled a second time, its body inside a loop over items,
    // placed after the program's code (int3 padding to 16 bytes) in the same mapping. Programs the loop
    // cannot serve (too few free registers) simply have none.
    std::vector<uint8_t> code(done->code.begin(), done->code.end());
    size_t batch_off = 0;
    for (bool short_jumps : {true, false}) {
      Compiler b(linked, options, callx_.data(), callx_.size(), has_tail, short_jumps);
      b.set_batch();
      if (b.compile()) {
        batch_off = (code.size() + 15) & ~size_t{15};
        code.resize(batch_off, 0xcc);
        code.insert(code.end(), b.code.begin(), b.code.end());
        break;
      }
      if (!b.batch_ok()) break;
    }
    return install(*done, code, batch_off, t0);
  }

  // `code` is the program's code (c.code), followed at `batch_off` (when non-zero) by the batch loop.
  Status install(Compiler& c, std::span<const uint8_t> code, size_t batch_off, uint64_t t0) {
    // The process-wide callback entry first: the first time, it takes the pool's first page, so the
    // programs' pages above it extend its read+execute VMA (exec_memory.cpp).
    trampoline_ = shared_trampoline();
    if (!trampoline_) return make_error(ErrorCode::Runtime, "jit: cannot create the callback entry");
    program_size_ = c.code.size();  // (its bytes may be gone from c.code: only the size is used)
    if (auto st = mem_.install(code.data(), code.size()); !st) return st;
    entry_ = reinterpret_cast<EntryFn>(const_cast<uint8_t*>(mem_.base() + c.main_offset));
    if (c.direct()) direct_ = reinterpret_cast<DirectFn>(const_cast<uint8_t*>(mem_.base() + c.main_offset));
    if (batch_off) batch_ = reinterpret_cast<BatchFn>(const_cast<uint8_t*>(mem_.base() + batch_off));
    for (auto& [f, off] : c.fn_offsets) fn_addr_[f] = mem_.base() + off;
    rng_seed_ = c.rng_seed();
    info_.code_size = code.size();
    info_.code = mem_.base();
    info_.mapped_size = mem_.mapped();
    info_.functions = c.functions;
    info_.bmi2 = c.bmi2();
    info_.hardened = options_.jit_harden;
    calls_helpers_ = c.calls_helpers();
    info_.compile_ns = compile_clock_ns() - t0;
    return {};
  }

  EngineKind kind() const override { return EngineKind::Jit; }
  DirectFn direct_entry() const override { return direct_; }
  BatchFn batch_entry() const override { return batch_; }

  Result<uint64_t> run(const RunArgs& args, RunStats* stats) const override {
    if (direct_) {
      if (stats) stats->insns_executed = 0;
      return direct_(args.r1, args.r2, &args);
    }
    if (!calls_helpers_) {
      // Nothing in the program can reach current_run() (no helper, callx or tail call): skip the
      // RunContext set-up, a good part of the per-run cost of small programs.
      if (stats) stats->insns_executed = 0;
      JitState st;
      st.hot.state = &st;
      st.hot.failed = 0;
      st.hot.pkt = args.packet;
      st.hot.pkt_len = args.packet ? std::min<uint64_t>(args.packet_len, INT32_MAX) : 0;
      st.engine = this;
      st.args = &args;
      uint64_t r0 = entry_(args.r1, args.r2, &st.hot);
      if (st.hot.failed) return *st.error;
      return r0;
    }
    RunContext ctx;
    ctx.args = &args;
    ctx.exe = exe_;
    ScopedRunContext scope(&ctx);
    return execute(args, ctx, args.r1, args.r2, stats);
  }

  Result<uint64_t> run_tail(uint64_t r1, RunStats* stats) const override {
    RunContext* ctx = current_run();
    if (!ctx) return make_error(ErrorCode::Runtime, "tail call outside a run");
    if (direct_) {
      if (stats) stats->insns_executed = 0;
      return direct_(r1, 0, ctx->args);
    }
    return execute(*ctx->args, *ctx, r1, 0, stats);
  }

  const JitCodeInfo& info() const { return info_; }
  std::string disassemble(const DisasmOptions& options) const;

 private:
  Result<uint64_t> execute(const RunArgs& args, RunContext& ctx, uint64_t r1, uint64_t r2, RunStats* stats) const {
    JitState st;
    init_state(st, args, ctx);
    if (stats) stats->insns_executed = 0;
    uint64_t r0;
    if (calls_helpers_) {
      const CallFunction saved = ctx.call_function;
      ctx.call_function = CallFunction{&JitEngine::callback_entry, &st};
      r0 = entry_(r1, r2, &st.hot);
      ctx.call_function = saved;
    } else {
      r0 = entry_(r1, r2, &st.hot);
    }
    if (st.hot.failed) return *st.error;
    return r0;
  }

  void init_state(JitState& st, const RunArgs& args, RunContext& ctx) const {
    st.hot.state = &st;
    st.hot.failed = 0;
    st.hot.pkt = args.packet;
    st.hot.pkt_len = args.packet ? std::min<uint64_t>(args.packet_len, INT32_MAX) : 0;
    st.engine = this;
    st.args = &args;
    st.ctx = &ctx;
  }

  // RunContext::call_function of a run (self: its JitState).
  static Result<uint64_t> callback_entry(const void* self, int64_t insn, uint64_t a1, uint64_t a2, uint64_t a3,
                                         uint64_t a4, uint64_t a5) {
    auto* st = static_cast<const JitState*>(self);
    return st->engine->callback(*st->args, *st->ctx, insn, a1, a2, a3, a4, a5);
  }

  Result<uint64_t> callback(const RunArgs& args, RunContext& ctx, int64_t insn, uint64_t a1, uint64_t a2, uint64_t a3,
                            uint64_t a4, uint64_t a5) const {
    auto it = fn_addr_.find(insn);
    if (it == fn_addr_.end()) {
      if (insn < 0 || static_cast<size_t>(insn) >= program_->insns.size())
        return make_error(ErrorCode::Runtime, fmt::format("callback target {} is outside the program", insn));
      return make_error(ErrorCode::Runtime,
                        fmt::format("callback target {} is not a function entry known to the JIT (only code "
                                    "addresses loaded with lddw code_addr and call targets are)",
                                    insn));
    }
    JitState st;
    init_state(st, args, ctx);
    uint64_t regs[5] = {a1, a2, a3, a4, a5};
    uint64_t r0 = trampoline_(&st.hot, it->second, regs);
    if (st.hot.failed) return *st.error;
    return r0;
  }

  const Executable* exe_;
  const Program* program_;
  std::vector<CallxEntry> callx_;
  ExecMemory mem_;
  EntryFn entry_ = nullptr;
  DirectFn direct_ = nullptr;
  BatchFn batch_ = nullptr;
  size_t program_size_ = 0;  // bytes of the program's code; the batch loop (if any) follows it
  TrampolineFn trampoline_ = nullptr;
  std::map<int64_t, const uint8_t*> fn_addr_;
  // What compiling again for the listing needs (disassemble()).
  ExecOptions options_;
  bool callx_has_tail_ = false;
  bool short_jumps_ = true;
  uint64_t rng_seed_ = 0;
  Result<std::vector<ListingEntry>> listing() const;
  JitCodeInfo info_;
  bool calls_helpers_ = false;
};

// The listing of the installed code: the program compiled again, as build() compiled it, with the
// listing recorded; the bytes must come out identical.
Result<std::vector<ListingEntry>> JitEngine::listing() const {
  LinkedProgram linked;
  linked.program = program_;
  linked.exe = exe_;
  linked.helper_at.assign(program_->insns.size(), nullptr);
  for (size_t pc = 0; pc < program_->insns.size(); ++pc) {
    const Insn& in = program_->insns[pc];
    if (in.op == Op::CALL_HELPER) linked.helper_at[pc] = exe_->helpers().find(static_cast<int32_t>(in.imm));
  }
  Compiler c(linked, options_, callx_.data(), callx_.size(), callx_has_tail_, short_jumps_);
  c.want_listing();
  c.replay(info_.bmi2, rng_seed_);
  if (auto st = c.compile(); !st) return st.error();
  if (c.code.size() != program_size_ || std::memcmp(c.code.data(), mem_.base(), c.code.size()) != 0)
    return make_error(ErrorCode::Runtime, "jit: the listing's compilation differs from the installed code");
  return std::move(c.listing);
}

std::string JitEngine::disassemble(const DisasmOptions& options) const {
  std::string out;
  csh cs;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) return "capstone: cannot open an x86-64 disassembler\n";
  cs_option(cs, CS_OPT_SYNTAX, CS_OPT_SYNTAX_INTEL);
  DisasmOptions bpf_opts = options;
  bpf_opts.show_index = false;
  const auto& insns = program_->insns;
  auto rec = listing();
  if (!rec) {  // not expected: the code is shown without the BPF instructions
    out += fmt::format("; {}\n", rec.error().message);
    rec = std::vector<ListingEntry>{ListingEntry{-1, -1, 0}};
  }
  const std::vector<ListingEntry>& listing_ = *rec;
  for (size_t k = 0; k < listing_.size(); ++k) {
    const ListingEntry& e = listing_[k];
    uint32_t end = k + 1 < listing_.size() ? listing_[k + 1].start : static_cast<uint32_t>(program_size_);
    if (k == 0 || listing_[k - 1].fn != e.fn || (e.pc < 0 && e.pc != listing_[k - 1].pc)) {
      if (e.pc == -4) out += e.fn == -1 ? std::string("; main: cold blocks (ending in exit, placed out of line)\n")
                                        : fmt::format("; function at insn {}: cold blocks\n", e.fn);
      else if (e.pc == -6) out += "; switch tables (32-bit offsets from the table to each case's code)\n";
      else if (e.fn == -1 && e.pc < 0) out += k == 0 ? "; main: entry prologue\n" : "; main: epilogue\n";
      else if (e.fn >= 0 && e.pc < 0) out += fmt::format("; function at insn {}: prologue\n", e.fn);
      else if (e.fn == -2) out += "; out-of-line slow paths (errors, packet loads out of bounds)\n";
      else if (e.fn == -3) out += "; callback entry (RunContext::call_function)\n";
    }
    if (e.pc >= 0 && e.fn != -2)
      out += fmt::format("{:5}: {}\n", e.pc, format_insn(insns[static_cast<size_t>(e.pc)], e.pc, bpf_opts));
    if (end <= e.start) continue;
    if (e.pc == -6) {  // data: the switch tables (offsets from each table's start)
      uint32_t at = e.start;
      while (at < end && mem_.base()[at] == 0xcc) ++at;
      for (; at + 4 <= end; at += 4) {
        int32_t d;
        std::memcpy(&d, mem_.base() + at, 4);
        out += fmt::format("       {:6x}:  .long {:#x}\n", at, static_cast<uint32_t>(d));
      }
      continue;
    }
    cs_insn* ci = nullptr;
    size_t count = cs_disasm(cs, mem_.base() + e.start, end - e.start, reinterpret_cast<uint64_t>(mem_.base()) + e.start,
                             0, &ci);
    for (size_t j = 0; j < count; ++j)
      out += fmt::format("       {:6x}:  {} {}\n", ci[j].address - reinterpret_cast<uint64_t>(mem_.base()), ci[j].mnemonic,
                         ci[j].op_str);
    if (count) cs_free(ci, count);
  }
  cs_close(&cs);
  return out;
}

}  // namespace

Result<std::unique_ptr<Engine>> make_jit(const LinkedProgram& linked, const ExecOptions& options) {
  if (options.checked)
    return make_error(ErrorCode::Unsupported,
                      "the JIT does not check memory accesses: checked execution needs the interpreter "
                      "(engine interp)");
  if (options.insn_budget)
    return make_error(ErrorCode::Unsupported,
                      "the JIT does not count instructions: an instruction budget needs the interpreter "
                      "(engine interp)");
  auto engine = std::make_unique<JitEngine>(linked);
  if (auto st = engine->build(linked, options); !st) return st.error();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace detail

Result<JitCodeInfo> jit_code_info(const Executable& exe) {
  auto* e = dynamic_cast<const detail::JitEngine*>(&exe.engine());
  if (!e) return make_error(ErrorCode::InvalidArgument, "the program was not compiled by the JIT (engine jit)");
  return e->info();
}

Result<std::string> jit_disassemble(const Executable& exe, const DisasmOptions& options) {
  auto* e = dynamic_cast<const detail::JitEngine*>(&exe.engine());
  if (!e) return make_error(ErrorCode::InvalidArgument, "the program was not compiled by the JIT (engine jit)");
  return e->disassemble(options);
}

bool jit_set_use_bmi2(bool use) { return detail::g_use_bmi2.exchange(use); }

}  // namespace bpfvm
