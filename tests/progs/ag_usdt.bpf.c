// USDT probes of the agent tests' target (tests/agent_target.c: agt:tick with three arguments and a
// semaphore, agt:pair with a short and a byte; agt_lib:mark in its shared library), read with
// libbpf's usdt.bpf.h. Sections name no target: the tests attach them (--attach, or the kernel's
// bpf_program__attach_usdt).
#include "tr_common.h"
#include <stdbool.h>
#include <bpf/usdt.bpf.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 10);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct tick {
  __s64 i, sum, neg;
  __s64 arg_cnt;
};

static __always_inline void bump(__u32 idx, __u64 add) {
  __u64* v = bpf_map_lookup_elem(&counts, &idx);
  if (v) __sync_fetch_and_add(v, add);
}

SEC("usdt")
int BPF_USDT(on_tick, int i, long sum, long neg) {
  bump(0, 1);
  bump(1, (__u64)i);
  bump(2, (__u64)sum);
  bump(3, (__u64)neg);
  struct tick* t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);
  if (!t) return 0;
  t->i = i;
  t->sum = sum;
  t->neg = neg;
  t->arg_cnt = bpf_usdt_arg_cnt(ctx);
  bpf_ringbuf_submit(t, 0);
  return 0;
}

SEC("usdt")
int BPF_USDT(on_pair, short a, unsigned char b) {
  bump(4, 1);
  bump(5, (__u64)(a + b));
  return 0;
}

SEC("usdt")
int BPF_USDT(on_mark, long v) {
  bump(6, 1);
  bump(7, (__u64)v);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
