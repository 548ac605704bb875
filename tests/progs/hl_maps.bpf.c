// Map helpers, bpf_loop, bpf_for_each_map_elem and the ring buffer in one XDP program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16);
  __type(key, __u32);
  __type(value, __u64);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u64);
} vals SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4096);
} events SEC(".maps");

struct loop_ctx {
  __u64 sum;
};

static long add_index(__u32 i, struct loop_ctx *c) {
  c->sum += i;
  return 0;
}

static long sum_values(void *map, __u32 *key, __u64 *val, struct loop_ctx *c) {
  c->sum += *val * 100;
  return 0;
}

SEC("xdp")
int hl_maps(struct xdp_md *ctx) {
  __u32 key = 7;
  __u64 one = 1, *v;
  v = bpf_map_lookup_elem(&counts, &key);
  if (v)
    __sync_fetch_and_add(v, 1);
  else
    bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
  if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST) != -17) return 100;  // -EEXIST
  // The loop counter stays in a register (a key copy goes on the stack): a counter whose address
  // is passed to a helper is forgotten by the verifier (the kernel's too) and the loop never ends.
  for (__u32 i = 0; i < 4; i++) {
    __u32 k = i;
    __u64 x = i + 1;
    bpf_map_update_elem(&vals, &k, &x, BPF_ANY);
  }
  struct loop_ctx c = {0};
  long n = bpf_loop(10, add_index, &c, 0);       // 0+1+...+9 = 45, returns 10
  long m = bpf_for_each_map_elem(&vals, sum_values, &c, 0);  // (1+2+3+4)*100 = 1000, returns 4
  __u64 *rec = bpf_ringbuf_reserve(&events, 16, 0);
  if (!rec) return 101;
  rec[0] = c.sum;
  rec[1] = n * 1000 + m;
  bpf_ringbuf_submit(rec, 0);
  v = bpf_map_lookup_elem(&counts, &key);
  return v ? (int)(c.sum + *v * 10000) : 102;
}

char _license[] SEC("license") = "GPL";
