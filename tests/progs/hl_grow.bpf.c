// A tc program that needs more room than the test run's 64 bytes of headroom: it pushes 1000 bytes
// before the frame (bpf_skb_change_head), marks both ends of the pushed header, appends 40 bytes
// (bpf_skb_change_tail) and marks the last one. Returns TC_ACT_OK (0), or TC_ACT_SHOT (2) with the
// failed step in `failed`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PUSH 1000
#define APPEND 40

__u32 failed = 0;
#define FAIL(n) do { failed = (n); return 2; } while (0)

SEC("tc")
int hl_grow(struct __sk_buff *skb) {
  __u32 len0 = skb->len;
  if (bpf_skb_change_head(skb, PUSH, 0)) FAIL(1);
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  if (data + PUSH > end) FAIL(2);
  ((__u8 *)data)[0] = 0xab;
  ((__u8 *)data)[PUSH - 1] = 0xcd;
  if (bpf_skb_change_tail(skb, skb->len + APPEND, 0)) FAIL(3);
  data = (void *)(long)skb->data;
  end = (void *)(long)skb->data_end;
  __u32 last = len0 + PUSH + APPEND - 1;
  if (last > 4096) FAIL(4);
  if (data + last + 1 > end) FAIL(5);
  ((__u8 *)data)[last] = 0xef;
  // Pulling more than the packet has fails; pulling all of it succeeds.
  if (bpf_skb_pull_data(skb, skb->len + 1) != -12) FAIL(6);
  if (bpf_skb_pull_data(skb, skb->len)) FAIL(7);
  return 0;
}

char _license[] SEC("license") = "GPL";
