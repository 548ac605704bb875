#include "verifier/tnum.hpp"

#include <fmt/format.h>

namespace bpfvm::verifier {

Tnum Tnum::range(uint64_t min, uint64_t max) {
  uint64_t chi = min ^ max;
  if (chi == 0) return constant(min);
  int bits = 64 - __builtin_clzll(chi);
  if (bits > 63) return unknown();
  uint64_t delta = (1ull << bits) - 1;
  return {min & ~delta, delta};
}

Tnum tnum_add(Tnum a, Tnum b) {
  uint64_t sm = a.mask + b.mask;
  uint64_t sv = a.value + b.value;
  uint64_t sigma = sm + sv;
  uint64_t chi = sigma ^ sv;
  uint64_t mu = chi | a.mask | b.mask;
  return {sv & ~mu, mu};
}

Tnum tnum_sub(Tnum a, Tnum b) {
  uint64_t dv = a.value - b.value;
  uint64_t alpha = dv + a.mask;
  uint64_t beta = dv - b.mask;
  uint64_t chi = alpha ^ beta;
  uint64_t mu = chi | a.mask | b.mask;
  return {dv & ~mu, mu};
}

Tnum tnum_and(Tnum a, Tnum b) {
  uint64_t alpha = a.value | a.mask, beta = b.value | b.mask;
  uint64_t v = a.value & b.value;
  return {v, alpha & beta & ~v};
}

Tnum tnum_or(Tnum a, Tnum b) {
  uint64_t v = a.value | b.value;
  uint64_t mu = a.mask | b.mask;
  return {v, mu & ~v};
}

Tnum tnum_xor(Tnum a, Tnum b) {
  uint64_t v = a.value ^ b.value;
  uint64_t mu = a.mask | b.mask;
  return {v & ~mu, mu};
}

Tnum tnum_mul(Tnum a, Tnum b) {
  // Sum of partial products (the kernel's algorithm).
  uint64_t acc_v = a.value * b.value;
  Tnum acc_m{0, 0};
  while (a.value || a.mask) {
    if (a.value & 1)
      acc_m = tnum_add(acc_m, Tnum{0, b.mask});
    else if (a.mask & 1)
      acc_m = tnum_add(acc_m, Tnum{0, b.value | b.mask});
    a = tnum_rshift(a, 1);
    b = tnum_lshift(b, 1);
  }
  return tnum_add(Tnum{acc_v, 0}, acc_m);
}

Tnum tnum_lshift(Tnum a, unsigned s) {
  if (s >= 64) return Tnum::constant(0);
  return {a.value << s, a.mask << s};
}
Tnum tnum_rshift(Tnum a, unsigned s) {
  if (s >= 64) return Tnum::constant(0);
  return {a.value >> s, a.mask >> s};
}
Tnum tnum_arshift(Tnum a, unsigned s, int width) {
  if (width == 32) {
    uint32_t v = static_cast<uint32_t>(static_cast<int32_t>(static_cast<uint32_t>(a.value)) >> s);
    uint32_t m = static_cast<uint32_t>(static_cast<int32_t>(static_cast<uint32_t>(a.mask)) >> s);
    return {v, m};
  }
  return {static_cast<uint64_t>(static_cast<int64_t>(a.value) >> s),
          static_cast<uint64_t>(static_cast<int64_t>(a.mask) >> s)};
}

Tnum tnum_intersect(Tnum a, Tnum b) {
  uint64_t v = a.value | b.value;
  uint64_t mu = a.mask & b.mask;
  return {v & ~mu, mu};
}

Tnum tnum_union(Tnum a, Tnum b) {
  uint64_t mu = a.mask | b.mask | (a.value ^ b.value);
  return {a.value & ~mu, mu};
}

Tnum tnum_cast(Tnum a, int bytes) {
  if (bytes >= 8) return a;
  uint64_t m = (1ull << (bytes * 8)) - 1;
  return {a.value & m, a.mask & m};
}

std::string tnum_str(Tnum a) { return fmt::format("(0x{:x}; 0x{:x})", a.value, a.mask); }

}  // namespace bpfvm::verifier
