// A probe on the C library's getpid that sends a perf record per call: the records must be the
// command's calls only (the agent's own work in the process calls getpid too, and must not show),
// through a perf event array shared with bpfvm trace.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
  __uint(key_size, 4);
  __uint(value_size, 4);
  __uint(max_entries, 2);
} events SEC(".maps");

SEC("uprobe/libc.so.6:getpid")
int on_getpid(void *ctx) {
  __u64 v = 0x1122334455667788ull;
  bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &v, sizeof(v));
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
