// Store tests: maps pinned by name (LIBBPF_PIN_BY_NAME) that several processes share.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 256);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_hash SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 16);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} st_private SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} st_percpu SEC(".maps");

// Counts every run in st_counts[0] (an atomic add), per packet length in st_hash, in its per-CPU
// slot of st_percpu, and reports the running count on st_events.
SEC("xdp")
int st_count(struct xdp_md *ctx) {
  __u32 k = 0;
  __u64 *v = bpf_map_lookup_elem(&st_counts, &k);
  if (!v) return XDP_ABORTED;
  __u64 n = __sync_fetch_and_add(v, 1) + 1;
  __u32 len = ctx->data_end - ctx->data;
  __u64 *h = bpf_map_lookup_elem(&st_hash, &len);
  if (!h) {  // another process may insert it first: BPF_NOEXIST, then look up again
    __u64 zero = 0;
    bpf_map_update_elem(&st_hash, &len, &zero, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&st_hash, &len);
  }
  if (h) __sync_fetch_and_add(h, 1);
  bpf_ringbuf_output(&st_events, &n, sizeof n, 0);
  // A plain (not atomic) add: exact only because the per-CPU slot is this run's alone.
  __u64 *pc = bpf_map_lookup_elem(&st_percpu, &k);
  if (pc) *pc += 1;
  __u64 *p = bpf_map_lookup_elem(&st_private, &k);
  if (p) *p += 1;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
