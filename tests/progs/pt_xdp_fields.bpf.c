// XDP context fields through a real object: data/data_end/data_meta/ingress_ifindex,
// bpf_xdp_adjust_head and bpf_xdp_adjust_meta. Returns a value that encodes what it saw.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pt_xdp_fields(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  unsigned char *p = data;
  if (p + 14 > (unsigned char *)data_end) return XDP_ABORTED;
  __u32 len = data_end - data;
  __u32 proto = (p[12] << 8) | p[13];
  __u32 ifx = ctx->ingress_ifindex;
  if (bpf_xdp_adjust_meta(ctx, -4)) return XDP_ABORTED;
  __u32 *meta = (void *)(long)ctx->data_meta;
  if ((void *)(meta + 1) > (void *)(long)ctx->data) return XDP_ABORTED;
  *meta = 0xfeed;
  if (bpf_xdp_adjust_head(ctx, 4)) return XDP_ABORTED;
  __u32 newlen = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
  if (proto != 0x0800) return XDP_DROP;
  // len 16 bits | newlen 8 bits ... packed into the return value only when everything matched
  return (len == newlen + 4 && ifx == 1) ? XDP_PASS : XDP_TX;
}

char _license[] SEC("license") = "GPL";
