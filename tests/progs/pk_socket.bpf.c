// Packet hook test program (socket filter): the frame from layer 2, legacy LD_ABS loads as
// tcpdump-style filters use them. Keeps IPv4 TCP packets cut to 96 bytes, counts kept/dropped.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} verdicts SEC(".maps");

SEC("socket")
int keep_tcp(struct __sk_buff *skb) {
  __u32 key = 0;
  int keep = load_half(skb, 12) == ETH_P_IP && load_byte(skb, 14 + 9) == IPPROTO_TCP;
  key = keep;
  __u64 *c = bpf_map_lookup_elem(&verdicts, &key);
  if (c) __sync_fetch_and_add(c, 1);
  if (!keep) return 0;
  return skb->len < 96 ? skb->len : 96;
}

char LICENSE[] SEC("license") = "GPL";
