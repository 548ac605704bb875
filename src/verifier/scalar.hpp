// Abstract scalar values: a tnum plus signed/unsigned 64- and 32-bit bounds, kept consistent with
// each other (the kernel's reg_bounds_sync), ALU transfer functions and branch refinement.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "verifier/tnum.hpp"

namespace bpfvm::verifier {

struct Scalar {
  Tnum t = Tnum::unknown();
  uint64_t umin = 0, umax = UINT64_MAX;
  int64_t smin = INT64_MIN, smax = INT64_MAX;
  uint32_t u32min = 0, u32max = UINT32_MAX;
  int32_t s32min = INT32_MIN, s32max = INT32_MAX;

  static Scalar unknown() { return {}; }
  static Scalar constant(uint64_t v);
  static Scalar urange(uint64_t lo, uint64_t hi);  // unsigned range (synced)
  static Scalar srange(int64_t lo, int64_t hi);
  bool is_const() const { return t.is_const(); }
  uint64_t value() const { return t.value; }
  bool is_const32() const { return (t.mask & 0xffffffffull) == 0; }
  bool valid() const {
    return umin <= umax && smin <= smax && u32min <= u32max && s32min <= s32max &&
           t.contains_value(t.value) && (t.value & t.mask) == 0;
  }
  void sync();          // propagate information between the tnum and the bounds
  void zext32();        // keep the low 32 bits (zero-extended)
  Scalar low32() const;  // the low 32 bits as a zero-extended value
  // Every concrete value of `o` is a value of this one.
  bool contains(const Scalar& o) const;
  bool operator==(const Scalar& o) const = default;
  // Kernel-style text: "42", "(umax=255,var_off=(0x0; 0xff))".
  std::string str() const;
};

// ALU transfer. `op` is the BPF ALU operation code (BPF_ADD 0x00 ... BPF_ARSH 0xc0, plus
// kSdiv/kSmod for the signed forms); `is32` selects the 32-bit form (result zero-extended).
enum AluOp : int {
  kAdd = 0x00, kSub = 0x10, kMul = 0x20, kDiv = 0x30, kOr = 0x40, kAnd = 0x50, kLsh = 0x60,
  kRsh = 0x70, kNeg = 0x80, kMod = 0x90, kXor = 0xa0, kMov = 0xb0, kArsh = 0xc0,
  kSdiv = 0x130, kSmod = 0x190,
};
Scalar scalar_alu(int op, const Scalar& a, const Scalar& b, bool is32);
// Sign-extends the low `bits` bits (movsx, ldxs*); result 64-bit or zero-extended 32-bit.
Scalar scalar_sext(const Scalar& a, int bits, bool is32);
// Byte swaps: keep (le) or reverse (be/bswap) the low `bits` bits.
Scalar scalar_bswap(const Scalar& a, int bits, bool reverse);

// Conditional jumps. `cond` is the BPF jump operation (BPF_JEQ 0x10 ... BPF_JSLE 0xd0).
enum CondOp : int {
  kJeq = 0x10, kJgt = 0x20, kJge = 0x30, kJset = 0x40, kJne = 0x50, kJsgt = 0x60, kJsge = 0x70,
  kJlt = 0xa0, kJle = 0xb0, kJslt = 0xc0, kJsle = 0xd0,
};
int negate_cond(int cond);
int swap_cond(int cond);  // a OP b  <=>  b swap(OP) a
// Refines a and b assuming `a cond b` holds. Returns false when that is impossible.
bool refine_cond(Scalar& a, Scalar& b, int cond, bool is32);

}  // namespace bpfvm::verifier
