// For tests/asm_test.cpp (AsmLlvm.ObjdumpListingsReassemble): a function using the ISA v4
// instructions (sdiv/smod, movsx, sign-extending loads, bswap) and atomics, so llvm-objdump's
// printing of them is checked against the bytes. Not meant to be run.
typedef unsigned long long u64;
typedef long long s64;
typedef int s32;
typedef unsigned int u32;
typedef short s16;
typedef signed char s8;

__attribute__((section("xdp"), used)) int asm_allops(void *ctx) {
  volatile s64 a = (s64)(long)ctx;
  volatile s32 b = 7;
  volatile u64 c = 0x1122334455667788ULL;
  volatile s8 d = -3;
  volatile s16 e = -300;
  u64 cnt = 0;
  s64 x = a / (s64)b;
  s64 y = a % (s64)b;
  s32 z = b / -3;
  s64 sx = (s64)d + (s64)e + (s64)(s32)c;
  u64 sw = __builtin_bswap64(c) + __builtin_bswap32((u32)c) + __builtin_bswap16((unsigned short)c);
  __sync_fetch_and_add(&cnt, 1);
  __sync_fetch_and_or(&cnt, 2);
  __sync_fetch_and_and(&cnt, 3);
  __sync_fetch_and_xor(&cnt, 4);
  u64 f = __sync_fetch_and_add(&cnt, 5) + __sync_fetch_and_or(&cnt, 6);
  u64 old = __sync_lock_test_and_set(&cnt, 9);
  u64 o2 = __sync_val_compare_and_swap(&cnt, 9, 10);
  u32 c32 = 0;
  __sync_fetch_and_add(&c32, 5);
  u32 o3 = __sync_val_compare_and_swap(&c32, 5, 6);
  for (volatile int i = 0; i < 3; ++i) sw += i;
  return (int)(x + y + z + sx + sw + old + o2 + o3 + cnt + c32 + f);
}

char _license[] __attribute__((section("license"), used)) = "GPL";
