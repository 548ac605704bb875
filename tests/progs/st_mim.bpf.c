// Store tests: a map-in-map pinned by name (LIBBPF_PIN_BY_NAME) whose slots an initialiser fills;
// programs of several processes reach the inner maps through it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner_map {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
} st_inner_a SEC(".maps"), st_inner_b SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, 4);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct inner_map);
} st_outer SEC(".maps") = {
  .values = {[0] = &st_inner_a, [1] = &st_inner_b},
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, 8);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct inner_map);
} st_houter SEC(".maps") = {
  .values = {[3] = &st_inner_b},
};

// Adds 1 to inner[0] of the map in slot 0 of st_outer and inner[1] of the map at key 3 of
// st_houter; returns XDP_PASS when both were found, XDP_DROP when a slot was empty.
SEC("xdp")
int st_mim_count(struct xdp_md *ctx) {
  __u32 k = 0, one = 1, three = 3;
  void *in = bpf_map_lookup_elem(&st_outer, &k);
  if (!in) return XDP_DROP;
  __u64 *v = bpf_map_lookup_elem(in, &k);
  if (!v) return XDP_ABORTED;
  __sync_fetch_and_add(v, 1);
  void *hin = bpf_map_lookup_elem(&st_houter, &three);
  if (!hin) return XDP_DROP;
  v = bpf_map_lookup_elem(hin, &one);
  if (!v) return XDP_ABORTED;
  __sync_fetch_and_add(v, 1);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
