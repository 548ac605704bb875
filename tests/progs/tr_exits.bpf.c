// Exits of the syscalls that make tasks or replace the image (clone, clone3, fork, vfork, execve),
// counted on raw_syscalls/sys_exit by syscall and by side: slot nr * 2 for a result other than 0
// (the parent, a failed call), nr * 2 + 1 for a result of 0 (the new thread or child).
#include "tr_common.h"

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u64);
} exits SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_exit")
int count_task_exits(struct trace_event_raw_sys_exit *ctx) {
  if (!is_workload()) return 0;
  long id = ctx->id;
  if (id != 56 && id != 57 && id != 58 && id != 59 && id != 435) return 0;
  __u32 key = (__u32)id * 2 + (ctx->ret == 0);
  __u64 *v = bpf_map_lookup_elem(&exits, &key);
  if (v) __sync_fetch_and_add(v, 1);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
