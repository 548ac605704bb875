// The current task as libbpf-tools read it: bpf_get_current_task() and BPF_CORE_READ through
// task_struct (pid, tgid, real_parent->tgid, group_leader->pid, cred->uid, comm, start_time), and
// bpf_get_current_task_btf() with a direct load. At getppid's entry each thread's view is kept by
// thread id; at its exit the syscall's result is added (it must equal real_parent->tgid).
#include "tr_core_common.h"

// The members read, in a local flavour of the kernel's types (vmlinux.h's task_struct is trimmed
// further): CO-RE finds them in the target BTF's struct task_struct and struct cred.
struct kuid___t {
  unsigned int val;
};
struct cred___t {
  struct kuid___t uid;
} __attribute__((preserve_access_index));
struct task_struct___t {
  int pid;
  int tgid;
  struct task_struct___t *real_parent;
  struct task_struct___t *group_leader;
  const struct cred___t *cred;
  __u64 start_time;
  char comm[16];
} __attribute__((preserve_access_index));

struct view {
  __u32 tgid;        // bpf_get_current_pid_tgid
  __u32 tid;
  int task_pid;      // task->pid
  int task_tgid;     // task->tgid
  int ppid;          // task->real_parent->tgid
  int leader_pid;    // task->group_leader->pid
  __u32 uid;         // task->cred->uid.val
  int getppid_ret;   // the syscall's result
  __u32 calls;
  int btf_tgid;      // bpf_get_current_task_btf()->tgid
  __u64 start_time;  // task->start_time
  char comm[16];     // task->comm
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, struct view);
} views SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int task_enter(struct trace_event_raw_sys_enter *ctx) {
  struct task_struct___t *task = (struct task_struct___t *)bpf_get_current_task();
  char comm[16];
  BPF_CORE_READ_STR_INTO(&comm, task, comm);
  if (!comm_is_workload(comm)) return 0;
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)id;
  struct view v = {};
  struct view *old = bpf_map_lookup_elem(&views, &tid);
  v.calls = old ? old->calls + 1 : 1;
  v.tgid = id >> 32;
  v.tid = tid;
  v.task_pid = BPF_CORE_READ(task, pid);
  v.task_tgid = BPF_CORE_READ(task, tgid);
  v.ppid = BPF_CORE_READ(task, real_parent, tgid);
  v.leader_pid = BPF_CORE_READ(task, group_leader, pid);
  v.uid = BPF_CORE_READ(task, cred, uid.val);
  v.start_time = BPF_CORE_READ(task, start_time);
  v.btf_tgid = ((struct task_struct___t *)bpf_get_current_task_btf())->tgid;
  __builtin_memcpy(v.comm, comm, sizeof(comm));
  v.getppid_ret = -1;
  bpf_map_update_elem(&views, &tid, &v, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_getppid")
int task_exit(struct trace_event_raw_sys_exit *ctx) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct view *v = bpf_map_lookup_elem(&views, &tid);
  if (v) v->getppid_ret = (int)ctx->ret;
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
