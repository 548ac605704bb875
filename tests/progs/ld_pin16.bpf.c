// A BTF-defined map with a pinning value libbpf does not know (Cilium's loader uses its own).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, 16);
} odd_pin SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} by_name SEC(".maps");

SEC("xdp")
int pin_prog(struct xdp_md *ctx) {
  __u32 k = 0;
  return bpf_map_lookup_elem(&odd_pin, &k) && bpf_map_lookup_elem(&by_name, &k) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
