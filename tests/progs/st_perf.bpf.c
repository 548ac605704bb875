// Store tests: a perf event array pinned by name, written by programs in several processes and
// read by another (bpf_perf_event_output on the current CPU's ring).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
  __uint(max_entries, 64);
  __uint(key_size, 4);
  __uint(value_size, 4);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_perf SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_perf_seq SEC(".maps");

struct st_perf_event {
  __u64 seq;
  __u32 len;
  __u32 magic;
};

// Emits {sequence number, packet length, 0x5eed5eed}; returns 0 when the record was written, 1 when
// the ring was full (the sample is counted as lost).
SEC("xdp")
int st_perf_emit(struct xdp_md *ctx) {
  __u32 k = 0;
  __u64 *seq = bpf_map_lookup_elem(&st_perf_seq, &k);
  if (!seq) return 2;
  struct st_perf_event e = {};
  e.seq = __sync_fetch_and_add(seq, 1);
  e.len = ctx->data_end - ctx->data;
  e.magic = 0x5eed5eed;
  return bpf_perf_event_output(ctx, &st_perf, BPF_F_CURRENT_CPU, &e, sizeof(e)) ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
