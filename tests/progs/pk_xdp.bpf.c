// Packet hook test programs (XDP): counting, drop, tx (ICMP echo reply), redirect through a devmap,
// and packet-size changes with bpf_xdp_adjust_head / _tail / _meta.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// <linux/icmp.h> pulls in libc headers; the 8-byte header is all we need.
struct icmphdr {
  __u8 type;
  __u8 code;
  __sum16 checksum;
  __be32 rest;
};
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 256);
  __type(key, __u32);
  __type(value, __u64);
} proto_count SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_DEVMAP);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u32);
} tx_ports SEC(".maps");

static __always_inline __u16 csum_fold(__u32 s) {
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (__u16)~s;
}

// Drops DNS queries, answers pings, redirects HTTP to devmap slot 1, passes the rest; counts IP protocols.
SEC("xdp")
int xdp_main(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return XDP_ABORTED;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end) return XDP_PASS;
  __u32 key = ip->protocol;
  __u64 *c = bpf_map_lookup_elem(&proto_count, &key);
  if (c) __sync_fetch_and_add(c, 1);
  if (ip->ihl != 5) return XDP_PASS;
  if (ip->protocol == IPPROTO_UDP) {
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end) return XDP_PASS;
    if (udp->dest == bpf_htons(53)) return XDP_DROP;
  } else if (ip->protocol == IPPROTO_ICMP) {
    struct icmphdr *icmp = (void *)(ip + 1);
    if ((void *)(icmp + 1) > end) return XDP_PASS;
    if (icmp->type != ICMP_ECHO) return XDP_PASS;
    unsigned char mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
    __be32 a = ip->saddr;
    ip->saddr = ip->daddr;
    ip->daddr = a;
    icmp->type = ICMP_ECHOREPLY;
    // RFC 1624: type 8 -> 0 lowers the first 16-bit word by 0x0800.
    __u32 s = (__u16)~icmp->checksum + (__u16)~bpf_htons(0x0800) ;
    icmp->checksum = csum_fold(s);
    return XDP_TX;
  } else if (ip->protocol == IPPROTO_TCP) {
    struct tcphdr *tcp = (void *)(ip + 1);
    if ((void *)(tcp + 1) > end) return XDP_PASS;
    if (tcp->dest == bpf_htons(80)) return bpf_redirect_map(&tx_ports, 1, XDP_PASS);
  }
  return XDP_PASS;
}

// Strips the Ethernet header (adjust_head +14), keeps at most 100 bytes (adjust_tail), stores the
// original EtherType in 4 bytes of metadata (adjust_meta).
SEC("xdp")
int xdp_resize(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return XDP_DROP;
  __u32 proto = eth->h_proto;
  if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct ethhdr))) return XDP_ABORTED;
  int len = (int)(ctx->data_end - ctx->data);
  if (len > 100 && bpf_xdp_adjust_tail(ctx, 100 - len)) return XDP_ABORTED;
  if (bpf_xdp_adjust_meta(ctx, -4)) return XDP_ABORTED;
  __u32 *meta = (void *)(long)ctx->data_meta;
  if ((void *)(meta + 1) > (void *)(long)ctx->data) return XDP_ABORTED;
  *meta = proto;
  return XDP_PASS;
}

// Every return value path: the low bits of the first byte after the MACs decide (0..4 and 9).
SEC("xdp")
int xdp_verdicts(struct xdp_md *ctx) {
  unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  if (data + 60 > end) return XDP_PASS;
  __u32 v = data[59] % 6;
  return v == 5 ? 9 : v;
}

char LICENSE[] SEC("license") = "GPL";
