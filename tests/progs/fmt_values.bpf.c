// BTF-formatted map dumps: a map whose key and value use every kind bpftool's formatter prints
// (ints of each size and sign, char, bool, char arrays, arrays, nested structs, unions, enums,
// bitfields, pointers, typedefs). Nothing runs: the object is loaded for its maps and their BTF.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum fmt_color { FMT_RED = 0, FMT_GREEN = 1, FMT_BLUE = 7 };
typedef unsigned int fmt_u32;

struct fmt_key {
  fmt_u32 id;
  char tag[4];
};

struct fmt_inner {
  short s;
  unsigned char uc;
  signed char sc;
};

struct fmt_value {
  __u64 u64;
  __s64 s64;
  int i32;
  unsigned short u16;
  char c;
  _Bool flag;
  char name[12];
  int list[3];
  struct fmt_inner inner;
  union {
    __u32 word;
    __u8 bytes[4];
  } u;
  enum fmt_color color;
  enum fmt_color other;
  unsigned int bf_a : 3;
  unsigned int bf_b : 13;
  int bf_c : 16;
  struct fmt_inner *ptr;
  const volatile fmt_u32 cv;
  struct fmt_inner pair[2];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 8);
  __type(key, struct fmt_key);
  __type(value, struct fmt_value);
} fmt_map SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, struct fmt_inner);
} fmt_percpu SEC(".maps");

SEC("xdp")
int fmt_touch(struct xdp_md *ctx) {
  struct fmt_key k = {};
  struct fmt_value *v = bpf_map_lookup_elem(&fmt_map, &k);
  __u32 z = 0;
  struct fmt_inner *in = bpf_map_lookup_elem(&fmt_percpu, &z);
  return (v ? 1 : 0) + (in ? 2 : 0);
}

char LICENSE[] SEC("license") = "GPL";
