// Packet hook test program (tc / sched_cls): decrements the IPv4 TTL with bpf_skb_store_bytes and
// fixes the header checksum with bpf_l3_csum_replace; drops UDP; redirects TCP port 80 to ifindex 7.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IP_OFF ETH_HLEN
#define TTL_OFF (IP_OFF + offsetof(struct iphdr, ttl))
#define CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))

SEC("tc")
int tc_main(struct __sk_buff *skb) {
  void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return TC_ACT_OK;
  if (eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end) return TC_ACT_OK;
  if (ip->protocol == IPPROTO_UDP) return TC_ACT_SHOT;
  __u8 proto = ip->protocol;
  __u16 old = *(__u16 *)&ip->ttl;  // ttl and protocol share a 16-bit word
  __u8 ttl = ip->ttl - 1;
  bpf_skb_store_bytes(skb, TTL_OFF, &ttl, 1, 0);
  __u16 new_word = (old & 0xff00) | ttl;  // little-endian: ttl is the low byte
  bpf_l3_csum_replace(skb, CSUM_OFF, old, new_word, 2);
  if (proto == IPPROTO_TCP) {
    data = (void *)(long)skb->data;
    end = (void *)(long)skb->data_end;
    struct tcphdr *tcp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
    if ((void *)(tcp + 1) <= end && tcp->dest == bpf_htons(80)) return bpf_redirect(7, 0);
  }
  return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
