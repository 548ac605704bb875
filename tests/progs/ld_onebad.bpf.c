// One object, three programs; one calls a function that is neither in the object nor a helper
// (what older clang emitted for memset): that program alone fails to load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int not_a_helper(int x);

SEC("xdp")
int good_first(struct xdp_md *ctx) { return XDP_PASS; }

SEC("xdp")
int calls_unknown(struct xdp_md *ctx) { return not_a_helper(ctx->ingress_ifindex); }

SEC("socket")
int good_second(struct __sk_buff *skb) { return skb->len; }

char LICENSE[] SEC("license") = "GPL";
