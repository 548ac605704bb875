// Per-syscall counter on raw_syscalls/sys_enter (syscount's core), plus the number of failed calls
// per syscall from raw_syscalls/sys_exit.
#include "tr_common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 512);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 512);
  __type(key, __u32);
  __type(value, __u64);
} errors SEC(".maps");

static __always_inline void bump(void *map, __u32 key) {
  __u64 one = 1, *v = bpf_map_lookup_elem(map, &key);
  if (v)
    __sync_fetch_and_add(v, 1);
  else
    bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

SEC("tracepoint/raw_syscalls/sys_enter")
int count_enter(struct trace_event_raw_sys_enter *ctx) {
  if (!is_workload()) return 0;
  bump(&counts, (__u32)ctx->id);
  return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int count_exit(struct trace_event_raw_sys_exit *ctx) {
  if (!is_workload()) return 0;
  if (ctx->ret < 0) bump(&errors, (__u32)ctx->id);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
