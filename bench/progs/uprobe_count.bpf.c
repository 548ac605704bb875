// The uprobe benchmarks (bench_uprobes: the agent; bench_uprobe_hooks: the in-process hooks): one array
// update per hit of the probed function, for the kernel's uprobes and for bpfvm.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} hits SEC(".maps");

SEC("uprobe")
int count_hits(void *ctx) {
  __u32 key = 0;
  __u64 *v = bpf_map_lookup_elem(&hits, &key);
  if (v) __sync_fetch_and_add(v, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
