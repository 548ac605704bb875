// execsnoop as libbpf-tools writes it: at sys_enter_execve the file name and the arguments are
// read from the caller's memory (bpf_probe_read_user / _str) into a per-thread event kept in a
// hash map; at sys_exit_execve the result and the (new) name are added and the event goes out
// through a perf event array, cut to the arguments' length. The parent's pid comes from the current
// task (BPF_CORE_READ(task, real_parent, tgid)).
#include "tr_core_common.h"

#define ARGSIZE 64
#define TOTAL_MAX_ARGS 6
#define FULL_MAX_ARGS_ARR (TOTAL_MAX_ARGS * ARGSIZE)
#define LAST_ARG (FULL_MAX_ARGS_ARR - ARGSIZE)

struct event {
  __u32 pid;
  __u32 ppid;
  __u32 uid;
  int retval;
  int args_count;
  unsigned int args_size;
  char comm[16];
  char args[FULL_MAX_ARGS_ARR];
};

#define BASE_EVENT_SIZE (size_t)(&((struct event *)0)->args)
#define EVENT_SIZE(e) (BASE_EVENT_SIZE + (e)->args_size)

static const struct event empty_event = {};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, pid_t);
  __type(value, struct event);
} execs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
  __uint(max_entries, 128);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int tracepoint__syscalls__sys_enter_execve(struct trace_event_raw_sys_enter *ctx) {
  if (!is_workload()) return 0;
  __u64 id = bpf_get_current_pid_tgid();
  pid_t tid = (pid_t)id;
  if (bpf_map_update_elem(&execs, &tid, &empty_event, BPF_NOEXIST)) return 0;
  struct event *event = bpf_map_lookup_elem(&execs, &tid);
  if (!event) return 0;
  event->pid = id >> 32;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  event->ppid = (__u32)BPF_CORE_READ(task, real_parent, tgid);
  event->uid = (__u32)bpf_get_current_uid_gid();
  event->args_count = 0;
  event->args_size = 0;

  int ret = bpf_probe_read_user_str(event->args, ARGSIZE, (const char *)ctx->args[0]);
  if (ret < 0) return 0;
  if (ret <= ARGSIZE) {
    event->args_size += ret;
  } else {
    event->args[0] = '\0';  // a read beyond the buffer: keep an empty name
    event->args_size++;
  }
  event->args_count++;

  const char **args = (const char **)(ctx->args[1]);
  const char *argp;
#pragma unroll
  for (int i = 1; i < TOTAL_MAX_ARGS; i++) {
    if (bpf_probe_read_user(&argp, sizeof(argp), &args[i]) < 0) return 0;
    if (!argp) return 0;
    if (event->args_size > LAST_ARG) return 0;
    ret = bpf_probe_read_user_str(&event->args[event->args_size], ARGSIZE, argp);
    if (ret < 0) return 0;
    event->args_count++;
    event->args_size += ret;
  }
  // One more argument than the event holds: counted, not copied.
  if (bpf_probe_read_user(&argp, sizeof(argp), &args[TOTAL_MAX_ARGS]) < 0) return 0;
  if (argp) event->args_count++;
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tracepoint__syscalls__sys_exit_execve(struct trace_event_raw_sys_exit *ctx) {
  pid_t tid = (pid_t)bpf_get_current_pid_tgid();
  struct event *event = bpf_map_lookup_elem(&execs, &tid);
  if (!event) return 0;
  event->retval = (int)ctx->ret;
  bpf_get_current_comm(&event->comm, sizeof(event->comm));
  size_t len = EVENT_SIZE(event);
  if (len <= sizeof(*event)) bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, event, len);
  bpf_map_delete_elem(&execs, &tid);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
