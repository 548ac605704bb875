// opensnoop as libbpf-tools writes it: vmlinux.h's tracepoint records read with CO-RE (the context's
// fields relocated against the target BTF), the file name and flags kept at entry, one ring-buffer
// record per call at exit. The record is tr_opensnoop.bpf.c's struct event.
#include "tr_core_common.h"

#define NAME_MAX 128

struct args_t {
  const char *fname;
  long flags;
};

struct event {
  __u32 pid;
  __u32 tid;
  __u32 uid;
  int ret;
  long flags;
  char comm[16];
  char fname[NAME_MAX];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, struct args_t);
} start SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Calls per result: [0] succeeded, [1] failed.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} results SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct trace_event_raw_sys_enter *ctx) {
  if (!is_workload()) return 0;
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct args_t args = {};
  args.fname = (const char *)ctx->args[1];  // a load relocated by CO-RE (preserve_access_index)
  args.flags = (long)BPF_CORE_READ(ctx, args[2]);  // bpf_probe_read_kernel of the record
  bpf_map_update_elem(&start, &tid, &args, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct trace_event_raw_sys_exit *ctx) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)id;
  struct args_t *ap = bpf_map_lookup_elem(&start, &tid);
  if (!ap) return 0;
  long ret = ctx->ret;
  __u32 key = ret < 0;
  __u64 *n = bpf_map_lookup_elem(&results, &key);
  if (n) __sync_fetch_and_add(n, 1);
  struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (e) {
    e->pid = id >> 32;
    e->tid = tid;
    e->uid = (__u32)bpf_get_current_uid_gid();
    e->ret = (int)ret;
    e->flags = ap->flags;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_probe_read_user_str(e->fname, sizeof(e->fname), ap->fname);
    bpf_ringbuf_submit(e, 0);
  }
  bpf_map_delete_elem(&start, &tid);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
