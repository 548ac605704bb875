// Benchmark: a hash-map lookup loop (256 lookups, keys from the packet, about half of them present).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bench_algos.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __type(key, bu32);
  __type(value, bu64);
  __uint(max_entries, 1024);
} table SEC(".maps");

SEC("xdp") int xdp_maplookup(struct xdp_md *ctx) {
  bu8 *data = (bu8 *)(long)ctx->data;
  bu8 *end = (bu8 *)(long)ctx->data_end;
  if (data + BENCH_PKT_LEN > end) return 0;
  bu64 sum = 0;
#pragma clang loop unroll(disable)
  for (bu32 i = 0; i < 256; i++) {
    bu32 key = ((bu32)data[4 * i] | ((bu32)data[4 * i + 1] << 8)) & 1023;
    bu64 *v = bpf_map_lookup_elem(&table, &key);
    if (v) sum += *v;
  }
  return (bu32)sum;
}

char LICENSE[] SEC("license") = "GPL";
