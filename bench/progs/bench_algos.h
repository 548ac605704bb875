// The benchmark programs' algorithms, written once and compiled two ways: by clang -target bpf inside
// the XDP programs of suite.bpf.c, and natively by the host compiler (-O2) inside bench/bench_suite.cpp.
// Every function reads a packet of BENCH_PKT_LEN bytes (filled by bench_fill_packet) and returns a
// 32-bit result that all engines must agree on.
//
// BENCH_OPAQUE(x) hides a value from the compiler (so constant loops are not folded away) without
// emitting an instruction: the kernel's verifier still sees the constant and can bound the loops.
#ifndef BENCH_ALGOS_H
#define BENCH_ALGOS_H

#define BENCH_PKT_LEN 1024
#define BENCH_OPAQUE(x) asm volatile("" : "+r"(x))

typedef unsigned char bu8;
typedef unsigned int bu32;
typedef unsigned long long bu64;

static inline void bench_fill_packet(bu8 *p) {
  for (int i = 0; i < BENCH_PKT_LEN; i++) p[i] = (bu8)(i * 37 + (i >> 3));
  // two NUL-terminated strings for strcmp: a at 0, b at 512, equal up to index 250
  for (int i = 0; i < 255; i++) {
    p[i] = (bu8)('a' + i % 26);
    p[512 + i] = (bu8)('a' + i % 26);
  }
  p[255] = 0;
  p[512 + 255] = 0;
  p[512 + 250] = 'Z';
}

static inline bu32 bench_empty(bu8 *p) { return 0; }

// A tight arithmetic loop (20,000 iterations of multiply, add, shift, xor).
static inline bu32 bench_arith(bu8 *p) {
  bu64 x = p[0] ^ 0x9e3779b97f4a7c15ull;
  bu32 n = 20000;
  BENCH_OPAQUE(n);
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + i;
    x ^= x >> 29;
  }
  return (bu32)(x ^ (x >> 32));
}

// Prime counting by trial division (division-heavy).
static inline bu32 bench_primes(bu8 *p) {
  bu32 limit = 1000;
  BENCH_OPAQUE(limit);
  bu32 count = 0;
#pragma clang loop unroll(disable)
  for (bu32 n = 2; n < limit; n++) {
    bu32 prime = 1;
#pragma clang loop unroll(disable)
    for (bu32 d = 2; d * d <= n; d++) {
      if (n % d == 0) {
        prime = 0;
        break;
      }
    }
    count += prime;
  }
  return count + p[0] * 0;
}

// A byte copy loop: the first 512 bytes of the packet to its second half.
static inline bu32 bench_copy(bu8 *p) {
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < 512; i++) {
    p[512 + i] = p[i];
    BENCH_OPAQUE(i);
  }
  return p[1023];
}

// A 64-case switch over 256 packet bytes.
#define BC(k, e) \
  case k:        \
    acc = e;     \
    break;
static inline bu32 bench_switch(bu8 *p) {
  bu32 acc = 1;
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < 256; i++) {
    bu32 v = p[i];
    switch (v & 63) {
      BC(0, acc + 1) BC(1, acc ^ 0x55) BC(2, acc * 3) BC(3, acc - 7) BC(4, acc << 1) BC(5, acc >> 1)
      BC(6, acc | 0x100) BC(7, acc & 0xfff0) BC(8, acc + v) BC(9, acc ^ v) BC(10, acc * v) BC(11, acc - v)
      BC(12, acc + 13) BC(13, acc ^ 0xaa) BC(14, acc * 5) BC(15, acc - 17) BC(16, acc << 2) BC(17, acc >> 2)
      BC(18, acc | 0x200) BC(19, acc & 0xff0f) BC(20, acc + (v << 1)) BC(21, acc ^ (v << 2)) BC(22, acc * (v | 1))
      BC(23, acc - (v >> 1)) BC(24, acc + 29) BC(25, acc ^ 0x1234) BC(26, acc * 7) BC(27, acc - 31) BC(28, acc << 3)
      BC(29, acc >> 3) BC(30, acc | 0x400) BC(31, acc & 0xf0ff) BC(32, acc + 37) BC(33, acc ^ 0x4321) BC(34, acc * 9)
      BC(35, acc - 41) BC(36, acc << 4) BC(37, acc >> 4) BC(38, acc | 0x800) BC(39, acc & 0x0fff) BC(40, acc + v * 3)
      BC(41, acc ^ (v * 5)) BC(42, acc * 11) BC(43, acc - 43) BC(44, acc + 47) BC(45, acc ^ 0x5a5a) BC(46, acc * 13)
      BC(47, acc - 53) BC(48, acc << 5) BC(49, acc >> 5) BC(50, acc | 0x1000) BC(51, acc & 0xffff) BC(52, acc + 59)
      BC(53, acc ^ 0xa5a5) BC(54, acc * 15) BC(55, acc - 61) BC(56, acc + (v ^ 3)) BC(57, acc ^ (v + 7))
      BC(58, acc * 17) BC(59, acc - 67) BC(60, acc << 6) BC(61, acc >> 6) BC(62, acc | 0x2000) BC(63, acc + 71)
    }
  }
  return acc;
}
#undef BC

// Integer log2 (branch-free binary search) over 256 32-bit words of the packet, summed.
static inline bu32 bench_log2(bu8 *p) {
  bu32 sum = 0;
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < 256; i++) {
    bu32 v = (bu32)p[4 * i] | ((bu32)p[4 * i + 1] << 8) | ((bu32)p[4 * i + 2] << 16) | ((bu32)p[4 * i + 3] << 24);
    v >>= (i & 15);
    bu32 r = (bu32)(v > 0xFFFF) << 4;
    v >>= r;
    bu32 s = (bu32)(v > 0xFF) << 3;
    v >>= s;
    r |= s;
    s = (bu32)(v > 0xF) << 2;
    v >>= s;
    r |= s;
    s = (bu32)(v > 0x3) << 1;
    v >>= s;
    r |= s;
    r |= (v >> 1);
    sum += r;
  }
  return sum;
}

// String compare of two NUL-terminated strings in the packet (strcmp semantics, 256 bytes max).
static inline bu32 bench_strcmp(bu8 *p) {
  const bu8 *a = p, *b = p + 512;
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < 256; i++) {
    bu8 x = a[i], y = b[i];
    if (x != y) return (bu32)((int)x - (int)y);
    if (x == 0) return 0;
  }
  return 0;
}

#endif
