// Tristate numbers: each bit known 0, known 1 or unknown (value/mask as in the kernel's tnum).
#pragma once

#include <cstdint>
#include <string>

namespace bpfvm::verifier {

struct Tnum {
  uint64_t value = 0;
  uint64_t mask = ~0ull;  // 1 = unknown bit

  static Tnum constant(uint64_t v) { return {v, 0}; }
  static Tnum unknown() { return {0, ~0ull}; }
  static Tnum range(uint64_t min, uint64_t max);
  bool is_const() const { return mask == 0; }
  bool operator==(const Tnum&) const = default;

  // Does this tnum contain every value of `b`?
  bool contains(const Tnum& b) const {
    if (b.mask & ~mask) return false;
    return (b.value & ~mask) == value;
  }
  bool contains_value(uint64_t v) const { return (v & ~mask) == value; }
};

Tnum tnum_add(Tnum a, Tnum b);
Tnum tnum_sub(Tnum a, Tnum b);
Tnum tnum_and(Tnum a, Tnum b);
Tnum tnum_or(Tnum a, Tnum b);
Tnum tnum_xor(Tnum a, Tnum b);
Tnum tnum_mul(Tnum a, Tnum b);
Tnum tnum_lshift(Tnum a, unsigned s);
Tnum tnum_rshift(Tnum a, unsigned s);
Tnum tnum_arshift(Tnum a, unsigned s, int width);
Tnum tnum_intersect(Tnum a, Tnum b);
Tnum tnum_union(Tnum a, Tnum b);  // smallest tnum holding both
Tnum tnum_cast(Tnum a, int bytes);  // truncate to the low `bytes` bytes
inline Tnum tnum_subreg(Tnum a) { return tnum_cast(a, 4); }
inline Tnum tnum_with_subreg(Tnum a, Tnum sub) {
  Tnum hi{a.value & ~0xffffffffull, a.mask & ~0xffffffffull};
  return tnum_or(hi, tnum_cast(sub, 4));
}
std::string tnum_str(Tnum a);

}  // namespace bpfvm::verifier
