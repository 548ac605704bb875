// Runtime tests: static tail-call targets (prog_array `values`), filled by prepare_program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int step_a(struct xdp_md *ctx);
int step_b(struct xdp_md *ctx);

struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, 4);
  __uint(key_size, sizeof(__u32));
  __array(values, int(void *));
} steps SEC(".maps") = {
    .values = {[0] = (void *)&step_a, [2] = (void *)&step_b},
};

SEC("xdp")
int step_a(struct xdp_md *ctx) { return XDP_DROP; }

SEC("xdp")
int step_b(struct xdp_md *ctx) { return XDP_TX; }

// Tail-calls steps[first packet byte]; falls through (XDP_PASS) for an empty slot.
SEC("xdp")
int dispatch(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
  unsigned char *p = data;
  if ((void *)(p + 1) > data_end) return XDP_ABORTED;
  bpf_tail_call(ctx, &steps, *p);
  return XDP_PASS;
}

// Reads past the packet without a data_end check: the verifier rejects it.
SEC("xdp")
int unchecked_read(struct xdp_md *ctx) {
  unsigned int *p = (void *)(long)ctx->data;
  return *p == 7 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
