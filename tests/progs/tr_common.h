// Shared by the tr_*.bpf.c tracing programs (libbpf-tools style, without CO-RE): the syscall
// tracepoint records of x86-64 as the kernel's format files describe them, and the filter on the
// test workload's name (the kernel runs these system-wide; bpfvm sees only the traced command).
#pragma once

#define __TARGET_ARCH_x86
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct trace_event_raw_sys_enter {
  unsigned long long unused;  // struct trace_entry
  long id;                    // raw_syscalls: id; syscalls/sys_enter_*: int __syscall_nr + padding
  unsigned long args[6];
};

struct trace_event_raw_sys_exit {
  unsigned long long unused;
  long id;
  long ret;
};

// The workload's comm (tests/trace_workload.c, built as tr_workload).
static __always_inline int is_workload(void) {
  char comm[16];
  const char want[] = "tr_workload";
  bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
  for (int i = 0; i < (int)sizeof(want); i++)
    if (comm[i] != want[i]) return 0;
  return 1;
}
