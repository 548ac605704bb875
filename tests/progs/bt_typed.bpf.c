// BTF-typed contexts: fentry/fexit/fmod_ret, tp_btf, lsm and iter programs whose arguments are typed by
// the attach target's prototype in the kernel's BTF. Programs named ok_* are accepted by the kernel,
// bad_* refused; tests/verifier_btf_test.cpp checks bpfvm's verdicts and compares them with the
// running kernel's. Struct fields are read through CO-RE relocations, so the offsets are the running
// kernel's.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct filename {
  const char *name;
} __attribute__((preserve_access_index));

struct file {
  unsigned int f_flags;
} __attribute__((preserve_access_index));

// ---- fentry: arguments (int dfd, struct filename *name) ----

// An int argument, a pointer argument, a field of the struct it points to (a pointer to chars: read
// through it as untrusted kernel memory), and a helper copying from it.
SEC("fentry/do_unlinkat")
int ok_fentry_args(unsigned long long *ctx) {
  int dfd = (int)ctx[0];
  struct filename *name = (struct filename *)ctx[1];
  const char *s = name->name;
  char buf[16];
  bpf_probe_read_kernel_str(buf, sizeof(buf), s);
  return dfd + buf[0] + s[0];
}

// A NULL check on a pointer argument (both branches explored).
SEC("fentry/do_unlinkat")
int ok_fentry_nullcheck(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  if (!name) return 1;
  return name->name != 0;
}

// Past the prototype's two arguments (and, for fentry, no return value slot).
SEC("fentry/do_unlinkat")
int bad_fentry_past_args(unsigned long long *ctx) {
  return (int)ctx[2];
}

SEC("fentry/do_unlinkat")
int bad_fentry_far_past_args(unsigned long long *ctx) {
  return (int)ctx[7];
}

// The context is read-only.
SEC("fentry/do_unlinkat")
int bad_fentry_ctx_write(unsigned long long *ctx) {
  ctx[0] = 1;
  return 0;
}

// A pointer argument read with 4 bytes.
SEC("fentry/do_unlinkat")
int bad_fentry_ptr_narrow(unsigned long long *ctx) {
  return *(volatile unsigned int *)((char *)ctx + 8);
}

// An access not at an argument's start.
SEC("fentry/do_unlinkat")
int bad_fentry_misaligned(unsigned long long *ctx) {
  return *(volatile unsigned int *)((char *)ctx + 4);
}

// Kernel objects are read-only.
SEC("fentry/do_unlinkat")
int bad_fentry_struct_write(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  name->name = 0;
  return 0;
}

// Beyond the struct the pointer is typed with.
SEC("fentry/do_unlinkat")
int bad_fentry_beyond_struct(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  return *(volatile int *)((char *)name + 100000);
}

// Part of a pointer member.
SEC("fentry/do_unlinkat")
int bad_fentry_ptr_member_part(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  return *(volatile unsigned int *)((char *)&name->name + 4);
}

// A variable offset into a kernel object.
SEC("fentry/do_unlinkat")
int bad_fentry_var_off(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  unsigned long i = bpf_get_prandom_u32() & 7;
  return *(volatile char *)((char *)name + i);
}

// A negative offset from a kernel object.
SEC("fentry/do_unlinkat")
int bad_fentry_negative(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  return *(volatile long *)((char *)name - 8);
}

// Untrusted kernel memory cannot be written.
SEC("fentry/do_unlinkat")
int bad_fentry_untrusted_write(unsigned long long *ctx) {
  struct filename *name = (struct filename *)ctx[1];
  char *s = (char *)name->name;
  s[0] = 0;
  return 0;
}

// ---- fexit: the return value after the arguments ----

SEC("fexit/do_unlinkat")
int ok_fexit_ret(unsigned long long *ctx) {
  int dfd = (int)ctx[0];
  long ret = (long)ctx[2];
  return ret == 0 ? dfd : 0;
}

SEC("fexit/do_unlinkat")
int bad_fexit_past_ret(unsigned long long *ctx) {
  return (int)ctx[3];
}

// A function returning void has no return value slot: void free_uid(struct user_struct *).
SEC("fexit/free_uid")
int bad_fexit_void_ret(unsigned long long *ctx) {
  return (int)ctx[1];
}

SEC("fexit/free_uid")
int ok_fexit_void_arg(unsigned long long *ctx) {
  return ctx[0] != 0;
}

// ---- fmod_ret: the return value so far, after the arguments ----

SEC("fmod_ret/security_file_open")
int ok_fmod_ret(unsigned long long *ctx) {
  struct file *f = (struct file *)ctx[0];
  int ret = (int)ctx[1];
  if (ret) return ret;
  return f->f_flags & 2 ? -1 : 0;
}

// ---- tp_btf: the tracepoint's arguments (bool preempt, task_struct *prev, task_struct *next, ...) ----

SEC("tp_btf/sched_switch")
int ok_tp_btf_tasks(unsigned long long *ctx) {
  struct task_struct *prev = (struct task_struct *)ctx[1];
  struct task_struct *next = (struct task_struct *)ctx[2];
  // A pointer member read from a kernel object is a kernel object too.
  return prev->pid + next->tgid + prev->real_parent->tgid + prev->comm[3];
}

SEC("tp_btf/sched_switch")
int bad_tp_btf_past_args(unsigned long long *ctx) {
  return (int)ctx[4];
}

// A tracepoint has no return value slot.
SEC("tp_btf/sched_switch")
int bad_tp_btf_ret(unsigned long long *ctx) {
  return (int)ctx[5];
}

// tgid is 4 bytes: an 8-byte read of it runs past the member.
SEC("tp_btf/sched_switch")
int bad_tp_btf_member_end(unsigned long long *ctx) {
  struct task_struct *prev = (struct task_struct *)ctx[1];
  return *(volatile long *)&prev->tgid;
}

// A helper's kernel object is typed as its table says: the current task.
SEC("tp_btf/sched_switch")
int ok_tp_btf_current_task(unsigned long long *ctx) {
  struct task_struct *t = bpf_get_current_task_btf();
  return t->pid + t->real_parent->tgid;
}

SEC("tp_btf/sched_switch")
int bad_tp_btf_current_task_beyond(unsigned long long *ctx) {
  struct task_struct *t = bpf_get_current_task_btf();
  return *(volatile int *)((char *)t + 100000);
}

// A helper taking a task gets one; a struct mm_struct is refused.
struct task_struct___mm {
  struct mm_struct *mm;
} __attribute__((preserve_access_index));

SEC("tp_btf/sched_switch")
int ok_tp_btf_helper_task(unsigned long long *ctx) {
  struct task_struct *prev = (struct task_struct *)ctx[1];
  unsigned long long buf[8];
  return bpf_get_task_stack(prev, buf, sizeof(buf), 0);
}

SEC("tp_btf/sched_switch")
int bad_tp_btf_helper_wrong_struct(unsigned long long *ctx) {
  struct task_struct___mm *prev = (struct task_struct___mm *)ctx[1];
  unsigned long long buf[8];
  return bpf_get_task_stack((struct task_struct *)prev->mm, buf, sizeof(buf), 0);
}

// ---- lsm: hook arguments (struct file *file), the return value after them ----

SEC("lsm/file_open")
int ok_lsm_file_open(unsigned long long *ctx) {
  struct file *f = (struct file *)ctx[0];
  int ret = (int)ctx[1];
  if (ret) return ret;
  return f->f_flags & 0x40000000 ? -1 : 0;
}

SEC("lsm/file_open")
int bad_lsm_past_ret(unsigned long long *ctx) {
  return (int)ctx[2];
}

// ---- iter: bpf_iter_meta *meta, then the object, NULL at the end of the iteration ----

SEC("iter/task")
int ok_iter_task(unsigned long long *ctx) {
  struct task_struct *t = (struct task_struct *)ctx[1];
  if (!t) return 0;
  return t->pid == 1;
}

SEC("iter/task")
int bad_iter_task_nullable(unsigned long long *ctx) {
  struct task_struct *t = (struct task_struct *)ctx[1];
  return t->pid == 1;
}
