// CO-RE type-matches relocations (clang 17+ emits them): libbpf's "matches" relation between a local
// type and the target's, stricter than compatibility. Results written to .bss for comparison with
// libbpf and the kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___subset {  // members the target has, any order: matches
  pid_t tgid;
  pid_t pid;
} __attribute__((preserve_access_index));

struct task_struct___extra {  // a member the target lacks: does not match
  pid_t pid;
  int bpfvm_no_such_member;
} __attribute__((preserve_access_index));

struct task_struct___wrongtype {  // pid with another kind (a pointer): does not match
  void *pid;
} __attribute__((preserve_access_index));

enum pid_type___subset { PIDTYPE_PID___subset = 0, PIDTYPE_TGID___subset = 1 };
enum pid_type___extra { PIDTYPE_PID___extra = 0, PIDTYPE_BPFVM_NONE___extra = 99 };

__u64 out[8];

SEC("xdp")
int core_matches(struct xdp_md *ctx) {
  out[0] = bpf_core_type_matches(struct task_struct);
  out[1] = bpf_core_type_matches(struct task_struct___subset);
  out[2] = bpf_core_type_matches(struct task_struct___extra);
  out[3] = bpf_core_type_matches(struct task_struct___wrongtype);
  out[4] = bpf_core_type_matches(enum pid_type___subset);
  out[5] = bpf_core_type_matches(enum pid_type___extra);
  out[6] = bpf_core_type_matches(struct pt_regs);
  out[7] = 1;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
