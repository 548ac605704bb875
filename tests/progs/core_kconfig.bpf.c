// .kconfig externs copied into .bss: the virtual LINUX_* values, CONFIG_* values of each type
// libbpf supports, and a __weak one the config lacks (0).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stdbool.h>


extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_TEST_MODULE __kconfig __weak;
extern char CONFIG_DEFAULT_HOSTNAME[16] __kconfig;
extern unsigned long long CONFIG_BPFVM_NOT_SET __kconfig __weak;

__u64 out[8];

SEC("xdp")
int kconfig_values(struct xdp_md *ctx) {
  out[0] = LINUX_KERNEL_VERSION;
  out[1] = LINUX_HAS_SYSCALL_WRAPPER;
  out[2] = CONFIG_HZ;
  out[3] = CONFIG_BPF_SYSCALL;
  out[4] = CONFIG_TEST_MODULE;
  out[5] = CONFIG_DEFAULT_HOSTNAME[0];
  out[6] = CONFIG_BPFVM_NOT_SET;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
