# Bad input: every case ends with a clear error (never a hang, a crash or silently wrong output).
# Unverified code runs under an instruction budget (default 100,000,000); --budget changes it, 0 is refused.
$ bpfvm run spin.s --no-verify
bpfvm: run failed: insn 1: instruction budget of 100000000 exhausted (the default budget of unverified code; --budget N changes it)
[exit 1]
$ bpfvm run spin.s --no-verify --budget 0x10
bpfvm: run failed: insn 1: instruction budget of 16 exhausted
[exit 1]
$ bpfvm run spin.s --no-verify --budget 0
bpfvm: --budget: 0 is not a budget; give at least 1 instruction (without --budget, verified programs run without one, unverified ones with 100000000)
[exit 2]
$ bpfvm run spin.s --no-verify --budget 12abc
bpfvm: --budget: '12abc' is not a number (decimal digits expected, 'a' at offset 2)
[exit 2]
$ bpfvm run spin.s --no-verify --engine jit
bpfvm: --no-verify runs in the checked interpreter only: the JIT counts no instructions, so nothing would stop unverified code that never ends
[exit 2]
# The checked interpreter's stack is per frame: r10-based accesses stay in [fp-512, fp).
$ bpfvm run frame-write.bin --no-verify
bpfvm: run failed: insn 3: memory fault: write of 8 bytes at fp+504 is outside the current stack frame [fp-512, fp)
[exit 1]
$ bpfvm run fp-1000.bin --no-verify
bpfvm: run failed: insn 0: memory fault: write of 8 bytes at fp-1000 is outside the current stack frame [fp-512, fp)
[exit 1]
# --strict: at most 4,096 instructions (the kernel's unprivileged limit).
$ bpfvm verify big.bin --strict
rejected: program is too large: 5002 instructions; strict rules allow at most 4096 (BPF_MAXINSNS, the kernel's limit without CAP_BPF)
  why: The kernel refuses a program with more instructions than the limit before verifying it (E2BIG): 4,096 for a loader without CAP_BPF, 1,000,000 with it. Split the work with tail calls, or verify with privileged rules if the code is trusted.
[exit 1]
$ bpfvm verify big.bin | sed -E 's/[0-9]+ µs/T µs/'
accepted: 5002 instructions processed, 0 states (peak 0), 0.0 MiB peak, T µs
[exit 0]
# Exit codes and messages.
$ bpfvm verify truncated.o
bpfvm: truncated.o: no symbol table (.symtab): cannot find programs or maps
[exit 1]
$ bpfvm object show truncated.o
bpfvm: truncated.o: no symbol table (.symtab): cannot find programs or maps
[exit 1]
$ bpfvm run .
bpfvm: .: cannot read .: Is a directory
[exit 2]
$ bpfvm verify .
bpfvm: cannot read .: Is a directory
[exit 2]
$ bpfvm disasm .
bpfvm: .: cannot read .: Is a directory
[exit 2]
$ bpfvm disasm empty.bin
bpfvm: empty.bin: the file is empty: no program
[exit 1]
$ bpfvm run empty.bin
bpfvm: empty.bin: the file is empty: no program
[exit 1]
$ bpfvm run sum.s --data-in .
bpfvm: --data-in: cannot read .: Is a directory
[exit 2]
$ bpfvm run /dev/zero
bpfvm: /dev/zero: cannot read /dev/zero: larger than 67108864 bytes, the limit for a program file
[exit 2]
$ bpfvm run sum.s --type xpd
bpfvm: sum.s: --type: unknown program type 'xpd'; the types are: socket_filter, kprobe, sched_cls, sched_act, tracepoint, xdp, perf_event, cgroup_skb, cgroup_sock, lwt_in, lwt_out, lwt_xmit, lwt_seg6local, sock_ops, sk_skb, cgroup_device, sk_msg, raw_tracepoint, cgroup_sock_addr, lirc_mode2, sk_reuseport, flow_dissector, cgroup_sysctl, raw_tracepoint_writable, cgroup_sockopt, tracing, struct_ops, ext, lsm, sk_lookup, syscall, mem
[exit 2]
$ bpfvm verify verify-packet_access.o --mem-size 8
bpfvm: --mem-size applies to plain-memory programs (type mem) only; xdp/test_packet_access is xdp
[exit 2]
# Options that exclude each other.
$ bpfvm disasm sum.s --jited --raw
bpfvm: --raw excludes --jited
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm filter -d ip -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-bi-out.pcap
bpfvm: -w excludes -d
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm xdp pk-xdp.o -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-bi-out.pcap --out-if lo
bpfvm: -w excludes --out-if
Run 'bpfvm --help' for usage.
[exit 2]
# disasm lists what decodes, marks what does not, exits 1.
$ bpfvm disasm bad-opcode-mid.bin
   0: r0 = 0
   1: <unknown>
   2: exit
bpfvm: bad-opcode-mid.bin: insn 1: unknown opcode 0xff
bpfvm: bad-opcode-mid.bin: 1 of 3 instructions invalid
[exit 1]
$ bpfvm disasm bad-opcode-mid.bin --raw
   0: b7 00 00 00 00 00 00 00  r0 = 0
   1: ff 00 00 00 00 00 00 00  <unknown>
   2: 95 00 00 00 00 00 00 00  exit
bpfvm: bad-opcode-mid.bin: insn 1: unknown opcode 0xff
bpfvm: bad-opcode-mid.bin: 1 of 3 instructions invalid
[exit 1]
$ bpfvm disasm jump-out.bin
   0: r0 = 0
   1: goto pc+10  <invalid>
   2: exit
bpfvm: jump-out.bin: insn 1: jump out of range (target 12, program has 3 instructions)
bpfvm: jump-out.bin: 1 of 3 instructions invalid
[exit 1]
# Kernel syntax follows llvm-mc: a 32-bit immediate is sign-extended, `ll` asks for lddw.
$ bpfvm disasm imm32.s
   0: r0 = -1
   1: exit
[exit 0]
$ bpfvm disasm imm64.s
   0: r0 = 0xffffffff ll
   2: exit
[exit 0]
$ bpfvm run imm32.s
Return value: 18446744073709551615
[exit 0]
$ bpfvm run imm64.s
Return value: 4294967295
[exit 0]
$ bpfvm run imm-big.s
bpfvm: imm-big.s: line 1:6: immediate 0x100000000 does not fit in 32 bits (write `r0 = 0x100000000 ll` for a 64-bit load)
[exit 1]
# --map-set parses numbers fully (strtoul base 0) and byte lists.
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --budget 10 --max-packets 1 --map-set counts:0=0x100 2>&1 | grep -A2 '^  counts'
  counts (hash, key 1 B, value 8 B, max_entries 16)
    00: 256
[exit 0]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --budget 10 --max-packets 1 --map-set 'counts:hex 07=1 0 0 0 0 0 0 0' 2>&1 | grep -A2 '^  counts'
  counts (hash, key 1 B, value 8 B, max_entries 16)
    07: 1
[exit 0]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:0=7abc
bpfvm: --map-set counts:0=7abc: value of map 'counts' (8 bytes): '7abc' is not a number (decimal digits expected, 'a' at offset 1)
[exit 2]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:256=1
bpfvm: --map-set counts:256=1: key of map 'counts' (1 byte): '256' is above 255
[exit 2]
$ bpfvm xdp pk-xdp.o -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set tx_ports:4294967296=1
bpfvm: --map-set tx_ports:4294967296=1: key of map 'tx_ports' (4 bytes): '4294967296' is above 4294967295
[exit 2]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:08=1
bpfvm: --map-set counts:08=1: key of map 'counts' (1 byte): '08' is not a number (octal digits expected, '8' at offset 1)
[exit 2]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set 'counts:0=1 2'
bpfvm: --map-set counts:0=1 2: value of map 'counts' (8 bytes): '1 2' has 2 bytes; 8 are needed
[exit 2]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts=1
bpfvm: --map-set: 'counts=1' is not MAP:KEY=VALUE
[exit 2]
# The packet verbs: the same budget per packet, counted in the summary.
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify --budget 1000 -r "$BPFVM_SHARED/pcaps/http.pcap" --max-packets 4 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
bpfvm: packet 1: insn 6: instruction budget of 1000 exhausted
bpfvm: packet 2: insn 6: instruction budget of 1000 exhausted
bpfvm: packet 3: insn 6: instruction budget of 1000 exhausted
program spin_until_ab (xdp), engine interp (unverified, checked)
packets: 4 (711 bytes)
verdicts:
actions: pass 0, drop 0, tx 0, redirect 0, error 4
instruction budget: 1000 per packet, exhausted on 4 packets
rate: ...
maps:
  counts (hash, key 1 B, value 8 B, max_entries 16)
    (empty)
[exit 0]
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify --engine jit -r "$BPFVM_SHARED/pcaps/http.pcap"
bpfvm: --no-verify runs in the checked interpreter only: the JIT counts no instructions, so nothing would stop unverified code that never ends
[exit 2]
# filter: --count prints only the number; without it the packets are listed.
$ bpfvm filter 'icmp' -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" | head -3
2: 1476824617.995524000 68 bytes
5: 1476824621.246754000 96 bytes
7: 1476824621.405489000 96 bytes
[exit 0]
$ bpfvm filter 'icmp' -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" --count
3635 packets
[exit 0]
# A --btf file that cannot be read is refused even when the object has nothing for CO-RE to relocate.
$ bpfvm verify $PROGS/tr_count.bpf.o --btf /nonexistent/vmlinux
bpfvm: --btf /nonexistent/vmlinux: No such file or directory
[exit 2]
$ bpfvm prog loadall $PROGS/tr_count.bpf.o $SCRATCH/progs btf /nonexistent/vmlinux
bpfvm: btf /nonexistent/vmlinux: No such file or directory
[exit 2]
