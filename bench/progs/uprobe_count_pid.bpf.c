// bench_uprobes: the counting program with a real helper call (bpf_get_current_pid_tgid) before its
// array update, so that the run takes the engine's full path (run context, map read section, fault
// check) instead of direct JIT code: what a hit costs for programs that call helpers.
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
  if (!bpf_get_current_pid_tgid()) return 0;
  __u64 *v = bpf_map_lookup_elem(&hits, &key);
  if (v) __sync_fetch_and_add(v, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
