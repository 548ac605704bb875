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

// A helper taking a task gets one; a struct css_set (task->cgroups, which task_struct__safe_rcu lists,
// so a pointer the helper would take were it a task) is refused.
struct task_struct___mm {
  struct css_set *cgroups;
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
  return bpf_get_task_stack((struct task_struct *)prev->cgroups, buf, sizeof(buf), 0);
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

// ---- per-field trust: a pointer read from a trusted object keeps (some of) its trust only where the
// kernel's BTF lists the field (<struct>__safe_trusted, __safe_trusted_or_null, __safe_rcu,
// __safe_rcu_or_null); other fields give plain kernel objects ----

struct inode {
  unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file___inode {
  struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
  struct file___inode *file;
} __attribute__((preserve_access_index));

struct task_struct___walk {
  struct task_struct *group_leader;
  struct task_struct *parent;
} __attribute__((preserve_access_index));

struct sock_common {
  unsigned short skc_family;
} __attribute__((preserve_access_index));

struct sock {
  struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
  struct sock *sk;
} __attribute__((preserve_access_index));

// Reads below the stack's 512 bytes: refused wherever it is reached.
#define UNREACHABLE_OR_REFUSED() asm volatile("r0 = *(u64 *)(r10 - 520)" ::: "r0")

// linux_binprm__safe_trusted lists `file` and file__safe_trusted lists `f_inode`: both stay trusted,
// known non-NULL, so the NULL branch is never explored.
SEC("tp_btf/sched_process_exec")
int ok_tp_btf_trusted_field_nonnull(unsigned long long *ctx) {
  struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];
  struct file___inode *f = bprm->file;
  if (!f) {
    UNREACHABLE_OR_REFUSED();
    return 0;
  }
  return f->f_inode->i_ino & 1;
}

// task_struct__safe_rcu lists `group_leader`: an RCU-protected task, which a helper taking a task
// accepts, but which is not known non-NULL.
SEC("tp_btf/sched_switch")
int ok_tp_btf_rcu_field_helper(unsigned long long *ctx) {
  struct task_struct___walk *prev = (struct task_struct___walk *)ctx[1];
  unsigned long long buf[8];
  return bpf_get_task_stack(prev->group_leader, buf, sizeof(buf), 0);
}

SEC("tp_btf/sched_switch")
int bad_tp_btf_rcu_field_maybe_null(unsigned long long *ctx) {
  struct task_struct___walk *prev = (struct task_struct___walk *)ctx[1];
  struct task_struct *leader = prev->group_leader;
  if (!leader) {
    UNREACHABLE_OR_REFUSED();
    return 0;
  }
  return leader->pid;
}

// `parent` is in no list: an untrusted task, readable, which no helper takes.
SEC("tp_btf/sched_switch")
int ok_tp_btf_unlisted_field_read(unsigned long long *ctx) {
  struct task_struct___walk *prev = (struct task_struct___walk *)ctx[1];
  return prev->parent->pid;
}

SEC("tp_btf/sched_switch")
int bad_tp_btf_unlisted_field_helper(unsigned long long *ctx) {
  struct task_struct___walk *prev = (struct task_struct___walk *)ctx[1];
  unsigned long long buf[8];
  return bpf_get_task_stack(prev->parent, buf, sizeof(buf), 0);
}

// sk_buff__safe_rcu_or_null lists `sk`: RCU-protected but maybe NULL, to be checked before use.
SEC("tp_btf/kfree_skb")
int bad_tp_btf_rcu_or_null_deref(unsigned long long *ctx) {
  struct sk_buff *skb = (struct sk_buff *)ctx[0];
  return skb->sk->__sk_common.skc_family;
}

SEC("tp_btf/kfree_skb")
int ok_tp_btf_rcu_or_null_checked(unsigned long long *ctx) {
  struct sk_buff *skb = (struct sk_buff *)ctx[0];
  struct sock *sk = skb->sk;
  if (!sk) return 0;
  return sk->__sk_common.skc_family;
}

SEC("tp_btf/kfree_skb")
int bad_tp_btf_rcu_or_null_helper(unsigned long long *ctx) {
  struct sk_buff *skb = (struct sk_buff *)ctx[0];
  return bpf_skc_to_tcp_sock(skb->sk) != 0;
}

// The socket casts take plain and trusted kernel objects, not RCU-protected ones.
SEC("tp_btf/kfree_skb")
int bad_tp_btf_rcu_sock_cast(unsigned long long *ctx) {
  struct sk_buff *skb = (struct sk_buff *)ctx[0];
  struct sock *sk = skb->sk;
  if (!sk) return 0;
  return bpf_skc_to_tcp_sock(sk) != 0;
}

// A sleepable program runs outside an RCU read section: a member the RCU lists name (group_leader)
// gives an untrusted task there, still readable, but no helper takes it.
SEC("iter.s/task")
int ok_iter_sleepable_untrusted_read(unsigned long long *ctx) {
  struct task_struct___walk *t = (struct task_struct___walk *)ctx[1];
  if (!t) return 0;
  return t->group_leader->pid == 1;
}

SEC("iter.s/task")
int bad_iter_sleepable_untrusted_helper(unsigned long long *ctx) {
  struct task_struct___walk *t = (struct task_struct___walk *)ctx[1];
  unsigned long long buf[8];
  if (!t) return 0;
  return bpf_get_task_stack(t->group_leader, buf, sizeof(buf), 0);
}
