// Raw tracepoints on sys_enter / sys_exit: the syscall's registers through args[0] (struct pt_regs *
// read with bpf_probe_read_kernel), its id or result in args[1]. Counts getppid calls, sums the
// flags of openat calls and counts failed openat calls; prints each failed one.
#include "tr_common.h"

struct totals {
  __u64 getppid;
  __u64 openat_flags;
  __u64 openat_failed;
  __u64 openat_exits;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct totals);
} totals SEC(".maps");

SEC("raw_tp/sys_enter")
int rawtp_enter(struct bpf_raw_tracepoint_args *ctx) {
  if (!is_workload()) return 0;
  __u32 zero = 0;
  struct totals *t = bpf_map_lookup_elem(&totals, &zero);
  if (!t) return 0;
  long id = (long)ctx->args[1];
  if (id == 110) __sync_fetch_and_add(&t->getppid, 1);
  if (id == 257) {
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    unsigned long flags = 0;
    bpf_probe_read_kernel(&flags, sizeof(flags), &regs->rdx);
    __sync_fetch_and_add(&t->openat_flags, flags);
  }
  return 0;
}

SEC("raw_tp/sys_exit")
int rawtp_exit(struct bpf_raw_tracepoint_args *ctx) {
  if (!is_workload()) return 0;
  struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
  long id = 0;
  bpf_probe_read_kernel(&id, sizeof(id), &regs->orig_rax);
  if (id != 257) return 0;
  __u32 zero = 0;
  struct totals *t = bpf_map_lookup_elem(&totals, &zero);
  if (!t) return 0;
  __sync_fetch_and_add(&t->openat_exits, 1);
  long ret = (long)ctx->args[1];
  if (ret < 0) {
    __sync_fetch_and_add(&t->openat_failed, 1);
    bpf_printk("openat failed: %ld", ret);
  }
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
