# Bad input: every case ends with a clear error (never a hang, a crash or silently wrong output).
# Unverified code runs under an instruction budget (default 100,000,000); --budget changes it, 0 is refused.
$ bpfvm run spin.s --no-verify
$ bpfvm run spin.s --no-verify --budget 0x10
$ bpfvm run spin.s --no-verify --budget 0
$ bpfvm run spin.s --no-verify --budget 12abc
$ bpfvm run spin.s --no-verify --engine jit
# The checked interpreter's stack is per frame: r10-based accesses stay in [fp-512, fp).
$ bpfvm run frame-write.bin --no-verify
$ bpfvm run fp-1000.bin --no-verify
# --strict: at most 4,096 instructions (the kernel's unprivileged limit).
$ bpfvm verify big.bin --strict
$ bpfvm verify big.bin | sed -E 's/[0-9]+ µs/T µs/'
# Exit codes and messages.
$ bpfvm verify truncated.o
$ bpfvm object show truncated.o
$ bpfvm run .
$ bpfvm verify .
$ bpfvm disasm .
$ bpfvm disasm empty.bin
$ bpfvm run empty.bin
$ bpfvm run sum.s --data-in .
$ bpfvm run /dev/zero
$ bpfvm run sum.s --type xpd
$ bpfvm verify verify-packet_access.o --mem-size 8
# Options that exclude each other.
$ bpfvm disasm sum.s --jited --raw
$ bpfvm filter -d ip -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-bi-out.pcap
$ bpfvm xdp pk-xdp.o -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-bi-out.pcap --out-if lo
# disasm lists what decodes, marks what does not, exits 1.
$ bpfvm disasm bad-opcode-mid.bin
$ bpfvm disasm bad-opcode-mid.bin --raw
$ bpfvm disasm jump-out.bin
# Kernel syntax follows llvm-mc: a 32-bit immediate is sign-extended, `ll` asks for lddw.
$ printf 'r0 = 0xffffffff\nexit\n' > /tmp/bpfvm-bi-imm.s && bpfvm run /tmp/bpfvm-bi-imm.s
$ printf 'r0 = 0xffffffff ll\nexit\n' > /tmp/bpfvm-bi-imm.s && bpfvm run /tmp/bpfvm-bi-imm.s
$ printf 'r0 = 0x100000000\nexit\n' > /tmp/bpfvm-bi-imm.s && bpfvm run /tmp/bpfvm-bi-imm.s
# --map-set parses numbers fully (strtoul base 0) and byte lists.
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --budget 10 --max-packets 1 --map-set counts:0=0x100 2>&1 | grep -A2 '^  counts'
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --budget 10 --max-packets 1 --map-set 'counts:hex 07=1 0 0 0 0 0 0 0' 2>&1 | grep -A2 '^  counts'
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:0=7abc
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:256=1
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts:08=1
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set 'counts:0=1 2'
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify -r "$BPFVM_SHARED/pcaps/http.pcap" --map-set counts=1
# The packet verbs: the same budget per packet, counted in the summary.
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify --budget 1000 -r "$BPFVM_SHARED/pcaps/http.pcap" --max-packets 4 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
$ bpfvm xdp $PROGS/bi_spin.bpf.o --no-verify --engine jit -r "$BPFVM_SHARED/pcaps/http.pcap"
# filter: --count prints only the number; without it the packets are listed.
$ bpfvm filter 'icmp' -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" | head -3
$ bpfvm filter 'icmp' -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" --count
