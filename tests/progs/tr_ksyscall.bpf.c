// Syscall kprobes written with libbpf's macros: BPF_KSYSCALL at ksyscall/openat and
// BPF_KPROBE_SYSCALL at kprobe/__x64_sys_getppid get the syscall's arguments through the x86-64
// wrapper's struct pt_regs * (LINUX_HAS_SYSCALL_WRAPPER, CO-RE reads of the user's registers);
// BPF_KRETPROBE at kretsyscall/openat gets the result. The records are tr_opensnoop.bpf.c's, so
// they can be compared with the tracepoints'.
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

// [0] getppid calls, [1] openat calls with dfd == AT_FDCWD, [2] openat returns
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 3);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 key) {
  __u64 *n = bpf_map_lookup_elem(&counts, &key);
  if (n) __sync_fetch_and_add(n, 1);
}

SEC("ksyscall/openat")
int BPF_KSYSCALL(openat_entry, int dfd, const char *pathname, int flags, unsigned int mode) {
  if (!is_workload()) return 0;
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct args_t args = {};
  args.fname = pathname;
  args.flags = flags;
  bpf_map_update_elem(&start, &tid, &args, 0);
  if (dfd == -100) count(1);
  return 0;
}

SEC("kretsyscall/openat")
int BPF_KRETPROBE(openat_exit, long ret) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)id;
  struct args_t *ap = bpf_map_lookup_elem(&start, &tid);
  if (!ap) return 0;
  count(2);
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

SEC("kprobe/__x64_sys_getppid")
int BPF_KPROBE_SYSCALL(getppid_entry) {
  if (is_workload()) count(0);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
