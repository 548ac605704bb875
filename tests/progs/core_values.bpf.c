// CO-RE relocations whose results are plain values (offsets, sizes, existence, type ids, enum
// values) written to .bss by an XDP program, so bpfvm's results and the kernel's (libbpf) can be
// compared after one run. The local types differ from any target on purpose: task_struct is the
// trimmed one of vmlinux.h (members missing, so local offsets are not the kernel's), and the
// ___flavour types below reorder fields, name fields the target lacks, and name missing enumerators.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___reordered {
  char comm[16];
  pid_t tgid;
  pid_t pid;
} __attribute__((preserve_access_index));

struct task_struct___missing {
  int no_such_field;
  pid_t pid;
} __attribute__((preserve_access_index));

struct bpfvm_no_such_type {
  int x;
} __attribute__((preserve_access_index));

enum pid_type___local {
  PIDTYPE_SID___local = 100,
  PIDTYPE_NO_SUCH___local = 101,
};

__u64 out[24];

SEC("xdp")
int core_values(struct xdp_md *ctx) {
  out[0] = bpf_core_field_offset(struct task_struct, pid);
  out[1] = bpf_core_field_offset(struct task_struct, tgid);
  out[2] = bpf_core_field_offset(struct task_struct, comm);
  out[3] = bpf_core_field_size(struct task_struct, comm);
  out[4] = bpf_core_field_exists(struct task_struct, real_parent);
  out[5] = bpf_core_field_offset(struct task_struct___reordered, pid);
  out[6] = bpf_core_field_offset(struct task_struct___reordered, comm);
  out[7] = bpf_core_field_exists(struct task_struct___missing, no_such_field);
  out[8] = bpf_core_field_exists(struct task_struct___missing, pid);
  out[9] = bpf_core_type_exists(struct task_struct);
  out[10] = bpf_core_type_exists(struct bpfvm_no_such_type);
  out[11] = bpf_core_type_size(struct pt_regs);
  out[12] = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_TGID);
  out[13] = bpf_core_enum_value(enum pid_type, PIDTYPE_SID);
  out[14] = bpf_core_enum_value_exists(enum pid_type___local, PIDTYPE_NO_SUCH___local);
  out[15] = bpf_core_enum_value(enum pid_type___local, PIDTYPE_SID___local);
  out[16] = bpf_core_type_id_kernel(struct task_struct) != 0;
  out[17] = __builtin_preserve_field_info(((struct task_struct *)0)->pid, BPF_FIELD_SIGNED);
  out[18] = __builtin_preserve_field_info(((struct task_struct *)0)->flags, BPF_FIELD_SIGNED);
  out[19] = bpf_core_field_size(struct task_struct, real_parent);
  out[20] = bpf_core_field_offset(struct trace_event_raw_sys_enter, args[2]);
  out[21] = bpf_core_type_size(struct trace_event_raw_sys_enter);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
