#include "verifier/scalar.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace bpfvm::verifier {

Scalar Scalar::constant(uint64_t v) {
  Scalar s;
  s.t = Tnum::constant(v);
  s.umin = s.umax = v;
  s.smin = s.smax = static_cast<int64_t>(v);
  s.u32min = s.u32max = static_cast<uint32_t>(v);
  s.s32min = s.s32max = static_cast<int32_t>(v);
  return s;
}

Scalar Scalar::urange(uint64_t lo, uint64_t hi) {
  Scalar s;
  s.umin = lo;
  s.umax = hi;
  s.sync();
  return s;
}

Scalar Scalar::srange(int64_t lo, int64_t hi) {
  Scalar s;
  s.smin = lo;
  s.smax = hi;
  s.sync();
  return s;
}

namespace {

void bounds_from_tnum(Scalar& s) {
  Tnum t = s.t;
  s.smin = std::max<int64_t>(s.smin, static_cast<int64_t>(t.value | (t.mask & (1ull << 63))));
  s.smax = std::min<int64_t>(s.smax, static_cast<int64_t>(t.value | (t.mask & ~(1ull << 63))));
  s.umin = std::max(s.umin, t.value);
  s.umax = std::min(s.umax, t.value | t.mask);
  Tnum sub = tnum_subreg(t);
  s.s32min = std::max<int32_t>(s.s32min, static_cast<int32_t>(static_cast<uint32_t>(sub.value | (sub.mask & 0x80000000u))));
  s.s32max = std::min<int32_t>(s.s32max, static_cast<int32_t>(static_cast<uint32_t>(sub.value | (sub.mask & 0x7fffffffu))));
  s.u32min = std::max<uint32_t>(s.u32min, static_cast<uint32_t>(sub.value));
  s.u32max = std::min<uint32_t>(s.u32max, static_cast<uint32_t>(sub.value | sub.mask));
}

void deduce32(Scalar& s) {
  if (s.s32min >= 0 || s.s32max < 0) {
    uint32_t lo = std::max(static_cast<uint32_t>(s.s32min), s.u32min);
    uint32_t hi = std::min(static_cast<uint32_t>(s.s32max), s.u32max);
    s.u32min = lo;
    s.u32max = hi;
    s.s32min = static_cast<int32_t>(lo);
    s.s32max = static_cast<int32_t>(hi);
    return;
  }
  if (static_cast<int32_t>(s.u32max) >= 0) {
    s.s32min = static_cast<int32_t>(s.u32min);
    uint32_t hi = std::min(static_cast<uint32_t>(s.s32max), s.u32max);
    s.s32max = static_cast<int32_t>(hi);
    s.u32max = hi;
  } else if (static_cast<int32_t>(s.u32min) < 0) {
    uint32_t lo = std::max(static_cast<uint32_t>(s.s32min), s.u32min);
    s.s32min = static_cast<int32_t>(lo);
    s.u32min = lo;
    s.s32max = static_cast<int32_t>(s.u32max);
  }
}

void deduce64(Scalar& s) {
  if (s.smin >= 0 || s.smax < 0) {
    uint64_t lo = std::max(static_cast<uint64_t>(s.smin), s.umin);
    uint64_t hi = std::min(static_cast<uint64_t>(s.smax), s.umax);
    s.umin = lo;
    s.umax = hi;
    s.smin = static_cast<int64_t>(lo);
    s.smax = static_cast<int64_t>(hi);
    return;
  }
  if (static_cast<int64_t>(s.umax) >= 0) {
    s.smin = static_cast<int64_t>(s.umin);
    uint64_t hi = std::min(static_cast<uint64_t>(s.smax), s.umax);
    s.smax = static_cast<int64_t>(hi);
    s.umax = hi;
  } else if (static_cast<int64_t>(s.umin) < 0) {
    uint64_t lo = std::max(static_cast<uint64_t>(s.smin), s.umin);
    s.smin = static_cast<int64_t>(lo);
    s.umin = lo;
    s.smax = static_cast<int64_t>(s.umax);
  }
}

void cross_32_64(Scalar& s) {
  // 64 -> 32: when the upper halves of the bounds agree, the low halves bound the subregister.
  if ((s.umin >> 32) == (s.umax >> 32)) {
    s.u32min = std::max(s.u32min, static_cast<uint32_t>(s.umin));
    s.u32max = std::min(s.u32max, static_cast<uint32_t>(s.umax));
  }
  if ((s.smin >> 32) == (s.smax >> 32) && static_cast<int32_t>(s.smin) <= static_cast<int32_t>(s.smax)) {
    s.s32min = std::max(s.s32min, static_cast<int32_t>(s.smin));
    s.s32max = std::min(s.s32max, static_cast<int32_t>(s.smax));
  }
  // 32 -> 64: when the upper 32 bits are known.
  if ((s.t.mask >> 32) == 0) {
    uint64_t hi = s.t.value & ~0xffffffffull;
    s.umin = std::max(s.umin, hi | s.u32min);
    s.umax = std::min(s.umax, hi | s.u32max);
    if (hi == 0) {
      s.smin = std::max<int64_t>(s.smin, s.u32min);
      s.smax = std::min<int64_t>(s.smax, s.u32max);
    } else if (hi == ~0xffffffffull && s.s32max < 0) {
      s.smin = std::max<int64_t>(s.smin, s.s32min);
      s.smax = std::min<int64_t>(s.smax, s.s32max);
    }
  }
}

}  // namespace

void Scalar::sync() {
  if (t.mask == 0) {  // a constant: every bound is the value (when they all allow it)
    const uint64_t v = t.value;
    const int64_t sv = static_cast<int64_t>(v);
    const uint32_t v32 = static_cast<uint32_t>(v);
    const int32_t s32 = static_cast<int32_t>(v32);
    if (umin <= v && v <= umax && smin <= sv && sv <= smax && u32min <= v32 && v32 <= u32max && s32min <= s32 &&
        s32 <= s32max) {
      umin = umax = v;
      smin = smax = sv;
      u32min = u32max = v32;
      s32min = s32max = s32;
      return;
    }
  }
  for (int round = 0; round < 2; ++round) {
    const Scalar before = *this;
    bounds_from_tnum(*this);
    cross_32_64(*this);
    deduce32(*this);
    deduce64(*this);
    if (!valid()) return;
    t = tnum_intersect(t, Tnum::range(umin, umax));
    Tnum sub = tnum_intersect(tnum_subreg(t), Tnum::range(u32min, u32max));
    t = tnum_with_subreg(t, sub);
    if (*this == before) return;  // a fixed point: another round would change nothing
  }
  bounds_from_tnum(*this);
}

void Scalar::zext32() {
  Scalar r;
  r.t = tnum_subreg(t);
  r.u32min = u32min;
  r.u32max = u32max;
  r.s32min = s32min;
  r.s32max = s32max;
  r.umin = u32min;
  r.umax = u32max;
  r.smin = u32min;
  r.smax = u32max;
  r.sync();
  *this = r;
}

Scalar Scalar::low32() const {
  Scalar r = *this;
  r.zext32();
  return r;
}

bool Scalar::contains(const Scalar& o) const {
  return umin <= o.umin && umax >= o.umax && smin <= o.smin && smax >= o.smax && u32min <= o.u32min &&
         u32max >= o.u32max && s32min <= o.s32min && s32max >= o.s32max && t.contains(o.t);
}

std::string Scalar::str() const {
  if (is_const()) {
    int64_t v = static_cast<int64_t>(t.value);
    return v < 0 && v > -4096 ? fmt::format("{}", v) : fmt::format("{}", t.value);
  }
  std::string out = "(";
  auto add = [&](std::string s) {
    if (out.size() > 1) out += ",";
    out += s;
  };
  if (smin != INT64_MIN && static_cast<uint64_t>(smin) != umin) add(fmt::format("smin={}", smin));
  if (smax != INT64_MAX && static_cast<uint64_t>(smax) != umax) add(fmt::format("smax={}", smax));
  if (umin != 0) add(fmt::format("umin={}", umin));
  if (umax != UINT64_MAX) add(fmt::format("umax={}", umax));
  if (s32min != INT32_MIN && umax > UINT32_MAX) add(fmt::format("s32_min={}", s32min));
  if (s32max != INT32_MAX && umax > UINT32_MAX) add(fmt::format("s32_max={}", s32max));
  if (u32min != 0 && umax > UINT32_MAX) add(fmt::format("u32_min={}", u32min));
  if (u32max != UINT32_MAX && umax > UINT32_MAX) add(fmt::format("u32_max={}", u32max));
  if (t.mask != ~0ull) add("var_off=" + tnum_str(t));
  out += ")";
  return out == "()" ? "" : out;
}

// ---- ALU ----------------------------------------------------------------------------------------

namespace {

Scalar from_tnum(Tnum t) {
  Scalar s;
  s.t = t;
  s.sync();
  return s;
}

bool add_overflows_s(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflows_s(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }

Scalar alu64(int op, const Scalar& a, const Scalar& b) {
  Scalar r;
  switch (op) {
    case kMov:
      return b;
    case kAdd: {
      r.t = tnum_add(a.t, b.t);
      int64_t lo, hi;
      if (!add_overflows_s(a.smin, b.smin, &lo) && !add_overflows_s(a.smax, b.smax, &hi)) {
        r.smin = lo;
        r.smax = hi;
      }
      uint64_t ulo = a.umin + b.umin, uhi = a.umax + b.umax;
      if (ulo >= a.umin && uhi >= a.umax) {
        r.umin = ulo;
        r.umax = uhi;
      }
      break;
    }
    case kSub: {
      r.t = tnum_sub(a.t, b.t);
      int64_t lo, hi;
      if (!sub_overflows_s(a.smin, b.smax, &lo) && !sub_overflows_s(a.smax, b.smin, &hi)) {
        r.smin = lo;
        r.smax = hi;
      }
      if (a.umin >= b.umax) {
        r.umin = a.umin - b.umax;
        r.umax = a.umax - b.umin;
      }
      break;
    }
    case kMul: {
      r.t = tnum_mul(a.t, b.t);
      if (a.umax <= UINT32_MAX && b.umax <= UINT32_MAX) {
        r.umin = a.umin * b.umin;
        r.umax = a.umax * b.umax;
        if (r.umax <= static_cast<uint64_t>(INT64_MAX)) {
          r.smin = static_cast<int64_t>(r.umin);
          r.smax = static_cast<int64_t>(r.umax);
        }
      }
      break;
    }
    case kDiv:
      if (b.is_const()) {
        if (b.value() == 0) return Scalar::constant(0);
        r.umin = a.umin / b.value();
        r.umax = a.umax / b.value();
      } else {
        r.umin = 0;
        r.umax = a.umax;  // x / 0 = 0, x / y <= x
      }
      break;
    case kMod:
      if (b.is_const() && b.value() == 0) return a;
      r.umin = 0;
      r.umax = a.umax;  // x % 0 = x, x % y <= x
      if (b.umin > 0) r.umax = std::min(a.umax, b.umax - 1);
      if (a.umax < b.umin) return a;
      break;
    case kOr:
      r.t = tnum_or(a.t, b.t);
      r.umin = std::max(a.umin, b.umin);
      break;
    case kAnd:
      r.t = tnum_and(a.t, b.t);
      r.umax = std::min(a.umax, b.umax);
      if (a.smin >= 0 || b.smin >= 0) {
        r.smin = 0;
        r.smax = std::max<int64_t>(0, std::min(a.smin >= 0 ? a.smax : INT64_MAX, b.smin >= 0 ? b.smax : INT64_MAX));
      }
      break;
    case kXor:
      r.t = tnum_xor(a.t, b.t);
      break;
    case kLsh:
      if (b.is_const()) {
        unsigned s = b.value() & 63;
        r.t = tnum_lshift(a.t, s);
        if (s == 0 || (a.umax >> (64 - s)) == 0) {
          r.umin = a.umin << s;
          r.umax = a.umax << s;
        }
      } else if (b.umax < 64) {
        // Shift by a bounded amount: the result is at most umax << bmax when that does not overflow.
        unsigned s = static_cast<unsigned>(b.umax);
        if (s == 0 || (a.umax >> (64 - s)) == 0) {
          r.umin = 0;
          r.umax = a.umax << s;
          if (a.umin > 0 || b.umin > 0) r.umin = a.umin << b.umin;
        }
      }
      break;
    case kRsh:
      if (b.is_const()) {
        unsigned s = b.value() & 63;
        r.t = tnum_rshift(a.t, s);
        r.umin = a.umin >> s;
        r.umax = a.umax >> s;
      } else {
        r.umin = 0;
        r.umax = a.umax;
        if (b.umax < 64) r.umin = a.umin >> b.umax;
      }
      break;
    case kArsh:
      if (b.is_const()) {
        unsigned s = b.value() & 63;
        r.t = tnum_arshift(a.t, s, 64);
        r.smin = a.smin >> s;
        r.smax = a.smax >> s;
      } else {
        r.smin = std::min<int64_t>(a.smin, 0);
        r.smax = std::max<int64_t>(a.smax, 0);
      }
      break;
    case kNeg:
      return alu64(kSub, Scalar::constant(0), a);
    case kSdiv:
    case kSmod:
      if (b.is_const() && a.is_const()) {
        int64_t x = static_cast<int64_t>(a.value()), y = static_cast<int64_t>(b.value());
        int64_t v;
        if (op == kSdiv) v = y == 0 ? 0 : (y == -1 ? static_cast<int64_t>(0ull - static_cast<uint64_t>(x)) : x / y);
        else v = y == 0 ? x : (y == -1 ? 0 : x % y);
        return Scalar::constant(static_cast<uint64_t>(v));
      }
      if (op == kSmod && b.is_const() && b.value() != 0) {
        int64_t y = static_cast<int64_t>(b.value());
        uint64_t m = y == INT64_MIN ? static_cast<uint64_t>(INT64_MAX) : static_cast<uint64_t>(y < 0 ? -y : y) - 1;
        r.smin = a.smin >= 0 ? 0 : -static_cast<int64_t>(m);
        r.smax = a.smax < 0 ? 0 : static_cast<int64_t>(m);
      }
      break;
    default:
      break;
  }
  r.sync();
  if (!r.valid()) return Scalar::unknown();
  return r;
}

}  // namespace

Scalar scalar_alu(int op, const Scalar& a, const Scalar& b, bool is32) {
  if (!is32) return alu64(op, a, b);
  Scalar a32 = a.low32(), b32 = b.low32();
  if (op == kMov) return b32;
  if (op == kArsh || op == kSdiv || op == kSmod) {
    // Signed 32-bit forms: compute on the sign-extended values, then keep the low 32 bits.
    Scalar sa = scalar_sext(a, 32, false), sb = scalar_sext(b, 32, false);
    Scalar r;
    if (op == kArsh) {
      if (b.is_const32()) {
        unsigned s = b.value() & 31;
        r.smin = sa.smin >> s;
        r.smax = sa.smax >> s;
        r.t = tnum_arshift(sa.t, s, 64);
        r.sync();
        if (!r.valid()) r = Scalar::srange(INT32_MIN, INT32_MAX);
      } else {
        r = Scalar::srange(std::min<int64_t>(sa.smin, 0), std::max<int64_t>(sa.smax, 0));
      }
    } else if (a.is_const32() && b.is_const32()) {
      int32_t x = static_cast<int32_t>(a.value()), y = static_cast<int32_t>(b.value());
      int32_t v;
      if (op == kSdiv) v = y == 0 ? 0 : (y == -1 ? static_cast<int32_t>(0u - static_cast<uint32_t>(x)) : x / y);
      else v = y == 0 ? x : (y == -1 ? 0 : x % y);
      return Scalar::constant(static_cast<uint32_t>(v));
    } else {
      return Scalar::urange(0, UINT32_MAX);
    }
    r.zext32();
    return r;
  }
  if (op == kLsh || op == kRsh) {
    // Shift counts are masked to 5 bits.
    if (b32.is_const()) b32 = Scalar::constant(b32.value() & 31);
    else b32 = Scalar::urange(0, 31);
  }
  Scalar r = alu64(op == kNeg ? kSub : op, op == kNeg ? Scalar::constant(0) : a32, op == kNeg ? a32 : b32);
  if (r.umax > UINT32_MAX || r.umin > r.umax) {
    // The mathematical result may wrap: keep what the tnum knows about the low 32 bits.
    Scalar w;
    w.t = tnum_subreg(r.t);
    w.umin = 0;
    w.umax = UINT32_MAX;
    w.sync();
    return w;
  }
  r.zext32();
  return r;
}

Scalar scalar_sext(const Scalar& a, int bits, bool is32) {
  Scalar r;
  uint64_t sign = 1ull << (bits - 1);
  uint64_t mask = bits == 64 ? ~0ull : (sign << 1) - 1;
  Tnum low = tnum_cast(a.t, bits / 8);
  if (!(low.mask & sign)) {
    // Sign bit known: extend it.
    if (low.value & sign) r.t = Tnum{low.value | ~mask, low.mask};
    else r.t = low;
  } else {
    r.t = Tnum{low.value, low.mask | ~mask};
  }
  int64_t lo = -static_cast<int64_t>(sign), hi = static_cast<int64_t>(sign - 1);
  // When the whole value already fits in the signed range of `bits`, the bounds carry over.
  if (a.smin >= lo && a.smax <= hi) {
    r.smin = a.smin;
    r.smax = a.smax;
  } else if (a.umax <= static_cast<uint64_t>(hi)) {
    r.smin = static_cast<int64_t>(a.umin);
    r.smax = static_cast<int64_t>(a.umax);
  } else {
    r.smin = lo;
    r.smax = hi;
  }
  r.sync();
  if (!r.valid()) r = Scalar::srange(lo, hi);
  if (is32) r.zext32();
  return r;
}

Scalar scalar_bswap(const Scalar& a, int bits, bool reverse) {
  if (!reverse) {
    if (bits == 64) return a;
    Scalar r;
    r.t = tnum_cast(a.t, bits / 8);
    r.umin = 0;
    r.umax = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
    if (a.umax <= r.umax) {
      r.umin = a.umin;
      r.umax = a.umax;
    }
    r.sync();
    return r;
  }
  if (a.is_const()) {
    uint64_t v = a.value();
    if (bits == 16) v = __builtin_bswap16(static_cast<uint16_t>(v));
    else if (bits == 32) v = __builtin_bswap32(static_cast<uint32_t>(v));
    else v = __builtin_bswap64(v);
    return Scalar::constant(v);
  }
  // Reverse the bytes of value and mask.
  Tnum t = tnum_cast(a.t, bits / 8);
  auto sw = [&](uint64_t v) -> uint64_t {
    if (bits == 16) return __builtin_bswap16(static_cast<uint16_t>(v));
    if (bits == 32) return __builtin_bswap32(static_cast<uint32_t>(v));
    return __builtin_bswap64(v);
  };
  return from_tnum(Tnum{sw(t.value), sw(t.mask)});
}

// ---- branches -----------------------------------------------------------------------------------

int negate_cond(int c) {
  switch (c) {
    case kJeq: return kJne;
    case kJne: return kJeq;
    case kJgt: return kJle;
    case kJle: return kJgt;
    case kJge: return kJlt;
    case kJlt: return kJge;
    case kJsgt: return kJsle;
    case kJsle: return kJsgt;
    case kJsge: return kJslt;
    case kJslt: return kJsge;
    default: return -1;  // jset has no negation as a comparison (handled by the caller)
  }
}

int swap_cond(int c) {
  switch (c) {
    case kJgt: return kJlt;
    case kJlt: return kJgt;
    case kJge: return kJle;
    case kJle: return kJge;
    case kJsgt: return kJslt;
    case kJslt: return kJsgt;
    case kJsge: return kJsle;
    case kJsle: return kJsge;
    default: return c;
  }
}

namespace {

// Generic refinement on one width. U = unsigned type, S = signed type.
template <class U, class S>
bool refine_width(U& aumin, U& aumax, S& asmin, S& asmax, Tnum& at, U& bumin, U& bumax, S& bsmin, S& bsmax,
                  Tnum& bt, int cond, int width_bytes) {
  auto tnum_eq = [&](Tnum& x, Tnum& y) {
    // both become the intersection
    Tnum i = tnum_intersect(x, y);
    if ((x.value ^ y.value) & ~(x.mask | y.mask) & (width_bytes == 8 ? ~0ull : 0xffffffffull)) return false;
    x = y = i;
    return true;
  };
  switch (cond) {
    case kJeq: {
      U lo = std::max(aumin, bumin), hi = std::min(aumax, bumax);
      S slo = std::max(asmin, bsmin), shi = std::min(asmax, bsmax);
      if (lo > hi || slo > shi) return false;
      aumin = bumin = lo;
      aumax = bumax = hi;
      asmin = bsmin = slo;
      asmax = bsmax = shi;
      if (width_bytes == 8) return tnum_eq(at, bt);
      Tnum sa = tnum_subreg(at), sb = tnum_subreg(bt);
      if (!tnum_eq(sa, sb)) return false;
      at = tnum_with_subreg(at, sa);
      bt = tnum_with_subreg(bt, sb);
      return true;
    }
    case kJne:
      // Only constants teach something: a value equal to a bound of the other side is excluded.
      if (bumin == bumax) {
        if (aumin == aumax && aumin == bumin) return false;
        if (aumin == bumin) aumin++;
        else if (aumax == bumin) aumax--;
        if (static_cast<U>(asmin) == bumin) asmin++;
        else if (static_cast<U>(asmax) == bumin) asmax--;
      }
      if (aumin == aumax) {
        if (bumin == aumin) bumin++;
        else if (bumax == aumin) bumax--;
        if (static_cast<U>(bsmin) == aumin) bsmin++;
        else if (static_cast<U>(bsmax) == aumin) bsmax--;
      }
      return aumin <= aumax && bumin <= bumax && asmin <= asmax && bsmin <= bsmax;
    case kJgt:  // a > b
      if (aumax == 0 || bumin == std::numeric_limits<U>::max()) return false;
      aumin = std::max<U>(aumin, bumin + 1);
      bumax = std::min<U>(bumax, aumax - 1);
      return aumin <= aumax && bumin <= bumax;
    case kJge:
      aumin = std::max(aumin, bumin);
      bumax = std::min(bumax, aumax);
      return aumin <= aumax && bumin <= bumax;
    case kJsgt:
      if (asmax == std::numeric_limits<S>::min() || bsmin == std::numeric_limits<S>::max()) return false;
      asmin = std::max<S>(asmin, bsmin + 1);
      bsmax = std::min<S>(bsmax, asmax - 1);
      return asmin <= asmax && bsmin <= bsmax;
    case kJsge:
      asmin = std::max(asmin, bsmin);
      bsmax = std::min(bsmax, asmax);
      return asmin <= asmax && bsmin <= bsmax;
    case kJlt:
    case kJle:
    case kJslt:
    case kJsle:
      return refine_width<U, S>(bumin, bumax, bsmin, bsmax, bt, aumin, aumax, asmin, asmax, at, swap_cond(cond),
                                width_bytes);
    default:
      return true;
  }
}

}  // namespace

bool refine_cond(Scalar& a, Scalar& b, int cond, bool is32) {
  if (cond == kJset || cond == -kJset) {
    // kJset: (a & b) != 0; -kJset: (a & b) == 0.
    uint64_t wmask = is32 ? 0xffffffffull : ~0ull;
    if (!b.is_const()) {
      if (cond == kJset && a.is_const() && (a.value() & wmask) == 0) return false;
      return true;
    }
    uint64_t k = b.value() & wmask;
    if (cond == kJset) {
      if (k == 0) return false;
      if ((a.t.value & k) != 0) return true;
      if (((a.t.value | a.t.mask) & k) == 0) return false;
      if (__builtin_popcountll(k) == 1) {
        a.t.value |= k;
        a.t.mask &= ~k;
      }
    } else {
      if (a.t.value & k) return false;
      a.t.mask &= ~k;
    }
    a.sync();
    return a.valid();
  }
  if (is32) {
    if (!refine_width<uint32_t, int32_t>(a.u32min, a.u32max, a.s32min, a.s32max, a.t, b.u32min, b.u32max, b.s32min,
                                         b.s32max, b.t, cond, 4))
      return false;
  } else {
    if (!refine_width<uint64_t, int64_t>(a.umin, a.umax, a.smin, a.smax, a.t, b.umin, b.umax, b.smin, b.smax, b.t,
                                         cond, 8))
      return false;
  }
  if (!a.valid() || !b.valid()) return false;
  a.sync();
  b.sync();
  return a.valid() && b.valid();
}

}  // namespace bpfvm::verifier
