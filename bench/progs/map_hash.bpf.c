// Map benchmark (bench/bench_mapprogs.cpp): hash map lookups and updates in a loop.
// The map holds keys 0..1023 (value = key * 3 + 1), filled by user space before the runs;
// max_entries leaves room for the 1024 new keys map_hash_insert_delete adds and removes.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "map_bench.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __type(key, mb_u32);
  __type(value, mb_u64);
  __uint(max_entries, 2 * MAP_BENCH_ENTRIES);
} bench_hash SEC(".maps");

// 256 lookups of present keys; returns the sum of the values (checked equal in every engine).
SEC("xdp") int map_hash_lookup(struct xdp_md *ctx) {
  mb_u64 sum = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 key = MAP_BENCH_KEY(i);
    mb_u64 *v = bpf_map_lookup_elem(&bench_hash, &key);
    if (v) sum += *v;
  }
  return (mb_u32)sum;
}

// 256 updates (BPF_ANY) of present keys, each writing the value the key already has (so that
// every run sees the same map); returns the number of successful updates.
SEC("xdp") int map_hash_update(struct xdp_md *ctx) {
  mb_u32 ok = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 key = MAP_BENCH_KEY(i);
    mb_u64 val = (mb_u64)key * 3 + 1;
    if (bpf_map_update_elem(&bench_hash, &key, &val, BPF_ANY) == 0) ok++;
  }
  return ok;
}

// 256 × (update of a new key with BPF_ANY, then delete of that key): 512 map operations that
// add and remove elements; returns the number of operations that succeeded.
SEC("xdp") int map_hash_insert_delete(struct xdp_md *ctx) {
  mb_u32 ok = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 key = MAP_BENCH_ENTRIES + MAP_BENCH_KEY(i);
    mb_u64 val = i;
    if (bpf_map_update_elem(&bench_hash, &key, &val, BPF_ANY) == 0) ok++;
    if (bpf_map_delete_elem(&bench_hash, &key) == 0) ok++;
  }
  return ok;
}

char LICENSE[] SEC("license") = "GPL";
