// A deny policy on unlinkat: a file named "protected.txt" cannot be removed (EPERM); every denial
// is counted and printed. ksyscall reads the user's registers through the syscall wrapper's
// argument, as BPF_KSYSCALL does (without CO-RE: bpf_probe_read_kernel of the field).
#include "tr_common.h"

#define EPERM 1

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} stats SEC(".maps");  // [0] unlinkat calls seen, [1] denied

SEC("ksyscall/unlinkat")
int deny_unlinkat(struct pt_regs *ctx) {
  struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
  const char *path = 0;
  bpf_probe_read_kernel(&path, sizeof(path), &regs->rsi);
  char name[32] = {};
  bpf_probe_read_user_str(name, sizeof(name), path);
  __u32 key = 0;
  __u64 *seen = bpf_map_lookup_elem(&stats, &key);
  if (seen) __sync_fetch_and_add(seen, 1);
  const char want[] = "protected.txt";
#pragma unroll
  for (int i = 0; i < (int)sizeof(want); i++)
    if (name[i] != want[i]) return 0;
  key = 1;
  __u64 *denied = bpf_map_lookup_elem(&stats, &key);
  if (denied) __sync_fetch_and_add(denied, 1);
  bpf_printk("denied unlinkat of %s", name);
  bpf_override_return(ctx, -EPERM);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
