// Tracing helpers in a kprobe program: current task, comm, safe reads, snprintf, strncmp,
// trace_printk. Results go to global variables the test reads back.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 pid_tgid = 0;
char comm[16] = {};
char formatted[32] = {};
long fmt_len = 0;
long bad_read = 0;
char copied[8] = {};
const char source[8] = "secret!";
long cmp = 0;

SEC("kprobe/test")
int hl_trace(void *ctx) {
  pid_tgid = bpf_get_current_pid_tgid();
  bpf_get_current_comm(comm, sizeof(comm));
  bpf_probe_read_kernel(copied, sizeof(copied), source);
  char tmp[8];
  bad_read = bpf_probe_read_kernel(tmp, sizeof(tmp), (void *)16);
  __u64 args[2] = {42, pid_tgid >> 32};
  fmt_len = bpf_snprintf(formatted, sizeof(formatted), "v=%d p=%u", args, sizeof(args));
  cmp = bpf_strncmp(copied, sizeof(copied), "secret!");
  bpf_printk("hl_trace %d", 7);
  return 0;
}

char _license[] SEC("license") = "GPL";
