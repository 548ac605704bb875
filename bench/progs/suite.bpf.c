// Benchmark programs (bench/bench_suite.cpp): XDP programs over a BENCH_PKT_LEN-byte packet, so the
// kernel can run them with BPF_PROG_TEST_RUN. The algorithms are in bench_algos.h (also compiled natively).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "bench_algos.h"

#define XDP_PROG(name)                                                      \
  SEC("xdp") int xdp_##name(struct xdp_md *ctx) {                                 \
    bu8 *data = (bu8 *)(long)ctx->data;                                     \
    bu8 *end = (bu8 *)(long)ctx->data_end;                                  \
    if (data + BENCH_PKT_LEN > end) return 0;                               \
    return bench_##name(data);                                              \
  }

SEC("xdp") int xdp_empty(struct xdp_md *ctx) { return 0; }
XDP_PROG(arith)
XDP_PROG(primes)
XDP_PROG(copy)
XDP_PROG(switch)
XDP_PROG(log2)
XDP_PROG(strcmp)

char LICENSE[] SEC("license") = "GPL";
