// Loader test object in the old samples/bpf style: legacy `maps` section with struct bpf_map_def
// (28 bytes: inner_map_idx, numa_node), prefix section names, a map-in-map by inner_map_idx.
#include <linux/bpf.h>

struct bpf_map_def {
  unsigned int type;
  unsigned int key_size;
  unsigned int value_size;
  unsigned int max_entries;
  unsigned int map_flags;
  unsigned int inner_map_idx;
  unsigned int numa_node;
};
#define SEC(n) __attribute__((section(n), used))
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

struct bpf_map_def SEC("maps") my_hash = {
    .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 1024, .map_flags = 1};
struct bpf_map_def SEC("maps") my_array = {
    .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 16, .max_entries = 8};
struct bpf_map_def SEC("maps") outer_by_idx = {
    .type = BPF_MAP_TYPE_ARRAY_OF_MAPS, .key_size = 4, .value_size = 4, .max_entries = 2, .inner_map_idx = 1};

SEC("socket1")
int prog1(struct __sk_buff *skb) {
  int key = 0;
  long *v = bpf_map_lookup_elem(&my_hash, &key);
  return v ? *v : 0;
}

SEC("kprobe/sys_write")
int prog2(void *ctx) {
  int key = 1;
  char *v = bpf_map_lookup_elem(&my_array, &key);
  return v ? v[3] : 0;
}

SEC("xdp_prog")
int prog3(struct xdp_md *ctx) { return bpf_map_lookup_elem(&outer_by_idx, &ctx) ? 1 : 2; }

char _license[] SEC("license") = "Dual BSD/GPL";
unsigned int _version SEC("version") = 0x40f00;
