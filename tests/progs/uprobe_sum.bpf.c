// Function hooks against the kernel's uprobes (tests/uprobe_kernel_test.cpp): counts the calls of a
// function and sums its arguments (entry) and return values (return), in an array:
// [0] entries, [1] sum of 3*arg1 + arg2, [2] returns, [3] sum of return values.
#include "tr_common.h"

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
} sums SEC(".maps");

static __always_inline void add(__u32 i, __u64 v) {
  __u64 *p = bpf_map_lookup_elem(&sums, &i);
  if (p) __sync_fetch_and_add(p, v);
}

SEC("uprobe")
int BPF_KPROBE(sum_entry, unsigned long a, unsigned long b) {
  add(0, 1);
  add(1, a * 3 + b);
  return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(sum_return, unsigned long ret) {
  add(2, 1);
  add(3, ret);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
