// Map benchmark (bench/bench_mapprogs.cpp): ring buffer events. Each run emits 256 records of
// 16 bytes (24 bytes in the ring with the header); user space consumes them between batches of runs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "map_bench.h"

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 24);
} bench_ring SEC(".maps");

struct event {
  mb_u64 seq;
  mb_u64 value;
};

// bpf_ringbuf_reserve + fill + bpf_ringbuf_submit; returns the number of records emitted.
SEC("xdp") int map_ringbuf_reserve_submit(struct xdp_md *ctx) {
  mb_u32 ok = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    struct event *e = bpf_ringbuf_reserve(&bench_ring, sizeof(*e), 0);
    if (!e) continue;
    e->seq = i;
    e->value = (mb_u64)i * 3 + 1;
    bpf_ringbuf_submit(e, 0);
    ok++;
  }
  return ok;
}

// bpf_ringbuf_output of a 16-byte record from the stack; returns the number of records emitted.
SEC("xdp") int map_ringbuf_output(struct xdp_md *ctx) {
  mb_u32 ok = 0;
  struct event e = {};
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    e.seq = i;
    e.value = (mb_u64)i * 3 + 1;
    if (bpf_ringbuf_output(&bench_ring, &e, sizeof(e), 0) == 0) ok++;
  }
  return ok;
}

char LICENSE[] SEC("license") = "GPL";
