// An XDP program whose verdict is a const volatile global, set before load (`prog loadall ... set`).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = XDP_DROP;

SEC("xdp")
int st_setret(struct xdp_md *ctx) { return verdict; }

char LICENSE[] SEC("license") = "GPL";
