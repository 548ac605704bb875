// Map benchmark (bench/bench_mapprogs.cpp): lookups through a map of maps in a loop — an outer
// lookup (array_of_maps or hash_of_maps) returning the inner map, then an array lookup in it.
// The outer maps' 4 slots (keys 0..3) hold the 4 inner arrays, set by the object's `values`
// initialiser (the loader fills them); the inner arrays have 1024 entries (value = index * 3 + 1,
// filled by user space).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "map_bench.h"

#define MIM_SLOTS 4

struct mim_inner_map {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __type(key, mb_u32);
  __type(value, mb_u64);
  __uint(max_entries, MAP_BENCH_ENTRIES);
} mim_inner0 SEC(".maps"), mim_inner1 SEC(".maps"), mim_inner2 SEC(".maps"), mim_inner3 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __type(key, mb_u32);
  __uint(max_entries, MIM_SLOTS);
  __array(values, struct mim_inner_map);
} mim_array_outer SEC(".maps") = {
  .values = {[0] = &mim_inner0, [1] = &mim_inner1, [2] = &mim_inner2, [3] = &mim_inner3},
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __type(key, mb_u32);
  __uint(max_entries, MIM_SLOTS);
  __array(values, struct mim_inner_map);
} mim_hash_outer SEC(".maps") = {
  .values = {[0] = &mim_inner0, [1] = &mim_inner1, [2] = &mim_inner2, [3] = &mim_inner3},
};

// 256 × (outer lookup of slot i % 4, then lookup of a present key in that inner array); returns
// the sum of the values (checked equal in every engine, and to the sum user space expects).
SEC("xdp") int map_array_of_maps_lookup(struct xdp_md *ctx) {
  mb_u64 sum = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 slot = i & (MIM_SLOTS - 1), key = MAP_BENCH_KEY(i);
    void *inner = bpf_map_lookup_elem(&mim_array_outer, &slot);
    if (!inner) continue;
    mb_u64 *v = bpf_map_lookup_elem(inner, &key);
    if (v) sum += *v;
  }
  return (mb_u32)sum;
}

// The same through the hash_of_maps.
SEC("xdp") int map_hash_of_maps_lookup(struct xdp_md *ctx) {
  mb_u64 sum = 0;
#pragma clang loop unroll(disable)
  for (mb_u32 i = 0; i < MAP_BENCH_OPS; i++) {
    mb_u32 slot = i & (MIM_SLOTS - 1), key = MAP_BENCH_KEY(i);
    void *inner = bpf_map_lookup_elem(&mim_hash_outer, &slot);
    if (!inner) continue;
    mb_u64 *v = bpf_map_lookup_elem(inner, &key);
    if (v) sum += *v;
  }
  return (mb_u32)sum;
}

char LICENSE[] SEC("license") = "GPL";
