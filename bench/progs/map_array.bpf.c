// Map benchmark (bench/bench_mapprogs.cpp): array lookups in a loop. The array has 1024 entries
// (value = index * 3 + 1, filled by user space).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "map_bench.h"

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __type(key, mb_u32);
  __type(value, mb_u64);
  __uint(max_entries, MAP_BENCH_ENTRIES);
} bench_array SEC(".maps");

SEC("xdp") int map_array_lookup(struct xdp_md *ctx) {
  mb_u64 sum = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 key = MAP_BENCH_KEY(i);
    mb_u64 *v = bpf_map_lookup_elem(&bench_array, &key);
    if (v) sum += *v;
  }
  return (mb_u32)sum;
}

char LICENSE[] SEC("license") = "GPL";
