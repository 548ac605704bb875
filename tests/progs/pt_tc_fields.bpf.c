// sched_cls context fields: len, protocol, pkt_type, data/data_end, mark and cb writes,
// bpf_skb_load_bytes and bpf_skb_store_bytes.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int pt_tc_fields(struct __sk_buff *skb) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  unsigned char *p = data;
  if (p + 34 > (unsigned char *)data_end) return TC_ACT_SHOT;
  __u8 ipproto;
  if (bpf_skb_load_bytes(skb, 23, &ipproto, 1)) return TC_ACT_SHOT;
  skb->mark = ipproto + 1000;
  skb->cb[0] = skb->len;
  skb->cb[4] = skb->protocol;
  skb->priority = skb->pkt_type;
  __u8 ttl = 42;
  if (bpf_skb_store_bytes(skb, 22, &ttl, 1, 0)) return TC_ACT_SHOT;
  return ipproto == 17 ? TC_ACT_OK : TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
