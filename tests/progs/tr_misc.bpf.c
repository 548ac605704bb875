// Helpers for the traced task: at getppid a perf event record {pid_tgid, uid_gid} and a read of a
// bad user pointer (its result kept in a global); at getpid bpf_send_signal(SIGUSR2) (the workload's
// sendsig mode has a handler for it).
#include "tr_common.h"

struct {
  __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
  __uint(max_entries, 64);  // libbpf would default 0 to the CPU count; bpfvm's loader does not yet
  __uint(key_size, sizeof(__u32));
  __uint(value_size, sizeof(__u32));
} perf SEC(".maps");

struct rec {
  __u64 pid_tgid;
  __u64 uid_gid;
};

long bad_read = 1;
long signal_ret = 1;

SEC("tracepoint/syscalls/sys_enter_getppid")
int misc_getppid(void *ctx) {
  if (!is_workload()) return 0;
  struct rec r = {bpf_get_current_pid_tgid(), bpf_get_current_uid_gid()};
  bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &r, sizeof(r));
  char buf[8];
  bad_read = bpf_probe_read_user(buf, sizeof(buf), (void *)16);
  return 0;
}

// The workload's "sendsig" mode calls getpid after installing its SIGUSR2 handler.
SEC("tracepoint/syscalls/sys_enter_getpid")
int misc_getpid(void *ctx) {
  if (!is_workload()) return 0;
  signal_ret = bpf_send_signal(12);  // SIGUSR2
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
