// const volatile globals (libbpf-tools' targ_pid / min_duration style) set before load, and .data
// / .bss read and written around runs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stdbool.h>

enum mode { MODE_OFF = 0, MODE_COUNT = 3, MODE_DROP = 7 };

const volatile int targ_pid = 0;
const volatile __u64 min_duration = 0;
const volatile bool verbose = false;
const volatile __u8 small = 0;
const volatile __s16 delta = 0;
const volatile enum mode mode = MODE_OFF;
const volatile char comm[8] = "none";
__u64 runs = 5;
__u64 last = 0;

SEC("xdp")
int rodata_prog(struct xdp_md *ctx) {
  runs++;
  last = targ_pid + min_duration + verbose + small + delta + mode + comm[0];
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
