// iproute2 style with the older 28-byte struct bpf_elf_map (no inner_id/inner_idx), as Cilium's
// older objects: sections without a libbpf name ("from-netdev") and a tail call named "1/0".
#include <linux/bpf.h>

struct bpf_elf_map {
  __u32 type;
  __u32 size_key;
  __u32 size_value;
  __u32 max_elem;
  __u32 flags;
  __u32 id;
  __u32 pinning;
};
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_tail_call)(void *ctx, void *map, __u32 index) = (void *)12;

struct bpf_elf_map SEC("maps") calls = {
    .type = BPF_MAP_TYPE_PROG_ARRAY, .size_key = 4, .size_value = 4, .max_elem = 4, .pinning = 2, .id = 1};
struct bpf_elf_map SEC("maps") counts = {
    .type = BPF_MAP_TYPE_ARRAY, .size_key = 4, .size_value = 8, .max_elem = 1, .pinning = 1, .id = 2};

SEC("1/0")
int tail_one(struct __sk_buff *skb) { return 1; }

SEC("from-netdev")
int from_netdev(struct __sk_buff *skb) {
  __u32 k = 0;
  __u64 *v = bpf_map_lookup_elem(&counts, &k);
  if (v) *v += 1;
  bpf_tail_call(skb, &calls, 0);
  return 0;
}

char __license[] SEC("license") = "GPL";
