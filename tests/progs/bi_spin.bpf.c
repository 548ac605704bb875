// Bad-input test program: an XDP program that spins until the first packet byte is 0xAB (the
// verifier refuses the endless loop; `--no-verify` runs it under the instruction budget), and a map
// for `--map-set` with a 1-byte key and an 8-byte value.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16);
  __type(key, __u8);
  __type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int spin_until_ab(struct xdp_md *ctx) {
  volatile unsigned char *p = (void *)(long)ctx->data;
  if ((void *)(p + 1) > (void *)(long)ctx->data_end) return XDP_PASS;
  while (*p != 0xAB) {
  }
  __u8 key = 0;
  __u64 *v = bpf_map_lookup_elem(&counts, &key);
  return v && *v ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
