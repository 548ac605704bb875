// A .kconfig extern bpfvm cannot know (LINUX_* names are virtual: only the known ones exist).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_NO_SUCH_VALUE __kconfig;

SEC("xdp")
int bad_extern(struct xdp_md *ctx) { return LINUX_NO_SUCH_VALUE; }

char LICENSE[] SEC("license") = "GPL";
