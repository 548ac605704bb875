// Loader test object for clang-19 -mcpu=v4: global data, .text subprograms and v4 instructions
// (sign-extending moves and loads, signed division, byte swaps, 32-bit jumps).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __s64);
} result SEC(".maps");

const volatile __s32 divisor = -3;
__s64 acc = 5;
char scratch[16];

static __noinline __s64 scale(__s64 x) { return x / divisor + (__s8)x; }

SEC("socket")
int v4_prog(struct __sk_buff *skb) {
  __u32 k = 0;
  __s64 *r = bpf_map_lookup_elem(&result, &k);
  __s64 v = scale(acc) + __builtin_bswap32((__u32)skb->len);
  scratch[1] = (char)v;
  if (r) *r = v;
  return (int)(v % 7);
}

char LICENSE[] SEC("license") = "GPL";
