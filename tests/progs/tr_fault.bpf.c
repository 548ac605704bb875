// A program whose run fails: a load from a wild address, which the verifier refuses; unverified
// (--no-verify, the checked interpreter) it faults at every run. For the reports of run failures.
#include "tr_common.h"

SEC("tracepoint/syscalls/sys_enter_getppid")
int fault_getppid(void *ctx) {
  if (!is_workload()) return 0;
  volatile char *p = (volatile char *)0x1000;
  return *p;
}

char LICENSE[] SEC("license") = "GPL";
