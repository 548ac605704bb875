// Counts one system call, chosen before load with `bpfvm trace --set only_nr=N` (a libbpf-tools style
// const volatile filter; -1, the default, counts nothing).
#include "tr_common.h"

const volatile long only_nr = -1;

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} hits SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int count_one(struct trace_event_raw_sys_enter *ctx) {
  __u32 zero = 0;
  __u64 *v;
  if (ctx->id != only_nr) return 0;
  v = bpf_map_lookup_elem(&hits, &zero);
  if (v) __sync_fetch_and_add(v, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
