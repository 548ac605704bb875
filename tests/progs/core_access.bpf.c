// CO-RE relocations on loads (direct context reads through struct pt_regs) and on the offsets
// BPF_CORE_READ passes to bpf_probe_read_kernel, and a missing field read with and without a
// bpf_core_field_exists() guard: the unguarded read's relocation fails and poisons its instruction.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___missing {
  int no_such_field;
  pid_t pid;
} __attribute__((preserve_access_index));

SEC("kprobe/do_nanosleep")
int core_ctx(struct pt_regs *ctx) {
  return (int)(ctx->di + ctx->si + ctx->ip);
}

SEC("kprobe/do_nanosleep")
int core_read(struct pt_regs *ctx) {
  struct task_struct *t = (struct task_struct *)bpf_get_current_task();
  pid_t ppid = BPF_CORE_READ(t, real_parent, tgid);
  char comm[16];
  BPF_CORE_READ_STR_INTO(&comm, t, comm);
  return ppid + comm[0];
}

SEC("kprobe/do_nanosleep")
int core_guarded(struct pt_regs *ctx) {
  struct task_struct___missing *t = (void *)bpf_get_current_task();
  int v = 0;
  if (bpf_core_field_exists(t->no_such_field)) bpf_core_read(&v, sizeof(v), &t->no_such_field);
  return v;
}

SEC("kprobe/do_nanosleep")
int core_unguarded(struct pt_regs *ctx) {
  struct task_struct___missing *t = (void *)bpf_get_current_task();
  int v = 0;
  bpf_core_read(&v, sizeof(v), &t->no_such_field);
  return v;
}

char LICENSE[] SEC("license") = "GPL";
