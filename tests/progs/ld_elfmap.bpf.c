// Loader test object in iproute2 (tc) style: struct bpf_elf_map (36 bytes per map) in `maps`,
// programs in `classifier` and a tc-only section name.
#include <linux/bpf.h>

struct bpf_elf_map {
  __u32 type;
  __u32 size_key;
  __u32 size_value;
  __u32 max_elem;
  __u32 flags;
  __u32 id;
  __u32 pinning;
  __u32 inner_id;
  __u32 inner_idx;
};
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

struct bpf_elf_map SEC("maps") tc_counts = {
    .type = BPF_MAP_TYPE_PERCPU_ARRAY, .size_key = 4, .size_value = 8, .max_elem = 256, .pinning = 2};
struct bpf_elf_map SEC("maps") tc_hash = {
    .type = BPF_MAP_TYPE_HASH, .size_key = 8, .size_value = 4, .max_elem = 64, .id = 3};

SEC("classifier")
int cls_main(struct __sk_buff *skb) {
  __u32 key = skb->protocol & 0xff;
  __u64 *v = bpf_map_lookup_elem(&tc_counts, &key);
  if (v) *v += 1;
  __u64 hkey = key;  // tc_hash has 8-byte keys
  return bpf_map_lookup_elem(&tc_hash, &hkey) ? 0 : 2;
}

char __license[] SEC("license") = "GPL";
