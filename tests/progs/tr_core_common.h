// Shared by the CO-RE tracing programs (tr_*_core, tr_execsnoop, tr_ksyscall, tr_task): built
// against the trimmed vmlinux.h as libbpf-tools are, with the filter on the test workload's name
// (the kernel runs these system-wide; bpfvm sees only the traced command).
#pragma once

#define __TARGET_ARCH_x86
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

// Constants of <linux/bpf.h> that the full vmlinux.h carries as anonymous enums (the trimmed one
// leaves them out).
#define BPF_NOEXIST 1
#define BPF_F_CURRENT_CPU 0xffffffffULL
typedef unsigned long size_t;

static __always_inline int comm_is_workload(const char *comm) {
  const char want[] = "tr_workload";
#pragma unroll
  for (int i = 0; i < (int)sizeof(want); i++)
    if (comm[i] != want[i]) return 0;
  return 1;
}

static __always_inline int is_workload(void) {
  char comm[16];
  bpf_get_current_comm(comm, sizeof(comm));
  return comm_is_workload(comm);
}
