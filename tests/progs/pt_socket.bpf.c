// Socket filter: LD_ABS (load_byte), __sk_buff.len and bpf_skb_load_bytes.
// Keeps 64 bytes of UDP packets, drops the rest.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");

SEC("socket")
int pt_socket(struct __sk_buff *skb) {
  if (skb->len < 20) return 0;
  if (load_byte(skb, 9) != 17) return 0;  // IPv4 protocol (the frame starts at layer 3 here)
  __u8 ver;
  if (bpf_skb_load_bytes(skb, 0, &ver, 1)) return 0;
  return (ver >> 4) == 4 ? 64 : 0;
}

char _license[] SEC("license") = "GPL";
