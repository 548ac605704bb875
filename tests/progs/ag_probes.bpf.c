// Probes in user code for the agent tests (tests/agent_target.c): entry and return of a library
// function and of a local function, counted and summed in an array, arguments through a ring buffer.
// Sections name no target: the tests attach them to the built binaries (--attach, or libbpf's
// bpf_program__attach_uprobe_opts in the kernel), as bpftrace-style tools do.
#include "tr_common.h"

// libbpf 1.2's names for the user-space forms of BPF_KPROBE / BPF_KRETPROBE (the same macros);
// Debian 12's libbpf 1.1 headers do not have them yet.
#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 12);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct event {
  __u32 kind;  // 1 lib_add entry, 2 local_mul entry
  __s32 a;
  __s64 b;
  __u64 cookie;
};

static __always_inline void bump(__u32 idx, __u64 add) {
  __u64* v = bpf_map_lookup_elem(&counts, &idx);
  if (v) __sync_fetch_and_add(v, add);
}

SEC("uprobe")
int BPF_UPROBE(on_lib_add, int a, int b) {
  bump(0, 1);
  bump(1, (__u64)(a + b));
  struct event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) return 0;
  e->kind = 1;
  e->a = a;
  e->b = b;
  e->cookie = bpf_get_attach_cookie(ctx);
  bpf_ringbuf_submit(e, 0);
  return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(on_lib_add_ret, int ret) {
  bump(2, 1);
  bump(3, (__u64)(long)ret);
  return 0;
}

SEC("uprobe")
int BPF_UPROBE(on_local_mul, long a, long b) {
  bump(4, 1);
  bump(5, (__u64)(a * b));
  // bpf_get_func_ip is the probed address: the same at every hit.
  __u32 k = 8;
  __u64* ip = bpf_map_lookup_elem(&counts, &k);
  if (ip) *ip = bpf_get_func_ip(ctx) & 0xfff;
  struct event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) return 0;
  e->kind = 2;
  e->a = (int)a;
  e->b = b;
  e->cookie = bpf_get_attach_cookie(ctx);
  bpf_ringbuf_submit(e, 0);
  return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(on_local_mul_ret, long ret) {
  bump(6, 1);
  bump(7, (__u64)ret);
  return 0;
}

// bpf_probe_read_user of a bad pointer gives -EFAULT (never a crash) and a good one the bytes.
SEC("uprobe")
int BPF_UPROBE(on_bad_read, long a) {
  char buf[8];
  long r = bpf_probe_read_user(buf, sizeof(buf), (void*)16);
  if (r == -14) bump(9, 1);
  r = bpf_probe_read_user(buf, sizeof(buf), (void*)PT_REGS_SP(ctx));
  if (r == 0) bump(10, 1);
  bpf_printk("local_mul %ld", a);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
