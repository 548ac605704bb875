// Loader test object: several programs per object and per section, .text subprograms (global and
// static, called and used as a bpf_loop callback), BTF-defined maps (incl. map-in-map with an
// initialised slot, prog_array, a value with a bpf_spin_lock), global data in .data/.rodata/.bss
// and a custom .data.counters section, license and version.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner_map {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
} inner0 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, 2);
  __type(key, __u32);
  __array(values, struct inner_map);
} outer SEC(".maps") = {
  .values = {[1] = &inner0},
};

struct locked_val {
  __u64 hits;
  struct bpf_spin_lock lock;
  __u32 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 128);
  __type(key, __u32);
  __type(value, struct locked_val);
  __uint(map_flags, BPF_F_NO_PREALLOC);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4096);
} events SEC(".maps");

int xdp_main(struct xdp_md *ctx);
struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, 4);
  __uint(key_size, sizeof(__u32));
  __array(values, int(void *));
} jumps SEC(".maps") = {
  .values = {[2] = (void *)&xdp_main},
};

volatile __u32 counter = 7;                 // .data
const volatile __u32 threshold = 100;       // .rodata
__u64 total;                                // .bss
__u32 hist[4] SEC(".data.counters") = {1, 2, 3, 4};

static __noinline int add_static(int a, int b) { return a + b + threshold; }
__noinline int add_global(int a) { return add_static(a, 1) * 2; }

static int loop_cb(__u32 idx, void *data) {
  *(__u64 *)data += idx;
  return 0;
}

SEC("xdp")
int xdp_main(struct xdp_md *ctx) {
  __u32 key = 0;
  struct locked_val *v = bpf_map_lookup_elem(&counts, &key);
  if (v) {
    bpf_spin_lock(&v->lock);
    v->hits++;
    bpf_spin_unlock(&v->lock);
  }
  counter++;
  total += add_global(3);
  return XDP_PASS;
}

SEC("xdp")
int xdp_second(struct xdp_md *ctx) {
  __u64 sum = 0;
  bpf_loop(4, loop_cb, &sum, 0);
  hist[2] += sum;
  return sum > threshold ? XDP_DROP : XDP_PASS;
}

SEC("socket")
int sock_prog(struct __sk_buff *skb) { return add_static(skb->len, 2); }

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_prog(void *ctx) {
  bpf_printk("openat %d", counter);
  return 0;
}

SEC("kprobe/do_sys_open")
int kp_prog(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x050a00;
