// Loader test object that runs without helpers: global data in .data/.rodata/.bss, a static and
// a global .text subprogram, a function pointer and a second program in the same section.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile int scale = 3;      // .rodata: set from user space before instantiation
int counter = 10;                  // .data
int seen[4];                       // .bss

static __noinline int times(int v) { return v * scale; }
__noinline int bump(int by) {
  counter += by;
  return counter;
}

SEC("socket")
int run_globals(void *ctx) {
  int r = bump(times(2));   // counter += 2 * scale
  seen[1] = r;
  return r;
}

SEC("socket")
int run_second(void *ctx) { return seen[1] + times(1); }

char LICENSE[] SEC("license") = "GPL";
