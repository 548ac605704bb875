#!/usr/bin/env python3
"""Trims `bpftool btf dump file /sys/kernel/btf/vmlinux format c` to the types bpfvm's CO-RE test
programs use (tests/progs/vmlinux.h). Run once on a kernel and commit the result; the build never
regenerates it, so the programs compile the same everywhere. Types are kept whole, except the
structs in TRIM, which keep only the named members (in the kernel's order): their local layout then
differs from the kernel's, which is what CO-RE relocations are for.

  bpftool btf dump file /sys/kernel/btf/vmlinux format c > /tmp/vmlinux_full.h
  scripts/trim_vmlinux_h.py /tmp/vmlinux_full.h > tests/progs/vmlinux.h
"""
import re
import subprocess
import sys

KEEP = ["__s8", "__u8", "__s16", "__u16", "__s32", "__u32", "__s64", "__u64", "s8", "u8", "s16", "u16", "s32",
        "u32", "s64", "u64", "__kernel_pid_t", "pid_t", "bool", "__be16", "__be32", "__wsum",
        "enum bpf_map_type", "enum xdp_action", "enum pid_type",
        "struct fred_cs", "struct fred_ss", "struct pt_regs", "struct trace_entry", "struct trace_event_raw_sys_enter",
        "struct trace_event_raw_sys_exit", "struct xdp_md", "struct bpf_raw_tracepoint_args"]
TRIM = {"struct task_struct": ["__state", "flags", "prio", "pid", "tgid", "real_parent", "comm"]}


def blocks(text):
    """Top-level declarations of the dump, each with its name ("struct x", "typedef name")."""
    out = []
    for blk in re.split(r"\n\n+", text):
        b = blk.strip()
        m = re.match(r"(struct|union|enum) (\w+) \{", b)
        if m:
            out.append((f"{m.group(1)} {m.group(2)}", b))
            continue
        m = re.match(r"typedef .*?\(?\*?(\w+)\)?(\[\d+\])?(\(.*\))?;$", b, re.S)
        if m and b.startswith("typedef"):
            out.append((m.group(1), b))
    return out


def main():
    text = open(sys.argv[1]).read()
    found = dict(blocks(text))
    print("/* Trimmed from `bpftool btf dump file /sys/kernel/btf/vmlinux format c` of Linux "
          f"{subprocess.run(['uname', '-r'], capture_output=True, text=True).stdout.strip()} by "
          "scripts/trim_vmlinux_h.py: only the types bpfvm's CO-RE test programs use; task_struct keeps "
          "only the members they read. Do not regenerate on the build machine. */")
    print("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n")
    print("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push "
          "(__attribute__((preserve_access_index)), apply_to = record)\n#endif\n")
    for name in KEEP:
        if name not in found:
            sys.exit(f"{name} not in the dump")
        print(found[name] + "\n")
    for name, members in TRIM.items():
        body = found[name].splitlines()
        kept = [body[0]]
        for line in body[1:-1]:
            m = re.search(r"[\s*](\w+)(\[\d+\])?(:\s*\d+)?;$", line.strip())
            if m and m.group(1) in members:
                kept.append(re.sub(r"struct (\w+) \*", lambda mm: f"struct {mm.group(1)} *", line))
        kept.append("};")
        print("\n".join(kept) + "\n")
    print("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n")
    print("#endif /* __VMLINUX_H__ */")


main()
