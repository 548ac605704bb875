// The shared library of the probe tests' target (tests/agent_target.c): a function the target calls
// through the PLT, probed as uprobe/libagent_lib.so:lib_add.
#include <sys/sdt.h>

__attribute__((noinline, visibility("default"))) int lib_add(int a, int b) {
  __asm__ volatile("" ::: "memory");
  return a + b;
}

// A probe point inside the library (USDT in a shared library: relocated by its load base). The
// counter's update behind it (a RIP-relative load first) leaves room for the agent's jump patch there.
static volatile long lib_marks;
__attribute__((noinline, visibility("default"))) long lib_mark(long v) {
  DTRACE_PROBE1(agt_lib, mark, v);
  lib_marks = lib_marks + 1;
  return v;
}
