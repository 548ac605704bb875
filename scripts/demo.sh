#!/usr/bin/env bash
# The main demo: set up, build, then load real programs and run them on real input, printing what
# they did.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
B=build/bpfvm
SHARED=${BPFVM_SHARED:-../shared}
show() { echo; echo "\$ bpfvm ${*}"; "$B" "$@"; }

echo "== An XDP program written in C (tests/progs/pk_xdp.bpf.c), built with clang -target bpf"
show object show build/progs/pk_xdp.bpf.o
echo
echo "== Verified before it runs"
show verify build/progs/pk_xdp.bpf.o --section xdp
if [ -f "$SHARED/pcaps/http.pcap" ]; then
  echo
  echo "== Verified, JIT-compiled and run on every packet of a real capture: verdicts, speed and the program's maps"
  show xdp build/progs/pk_xdp.bpf.o --section xdp_main -r "$SHARED/pcaps/http.pcap"
  echo
  echo "== A tcpdump expression, compiled by libpcap to classic BPF, translated to eBPF, JIT-compiled"
  show filter 'tcp port 80' -r "$SHARED/pcaps/http.pcap" --count
  if command -v tcpdump >/dev/null; then
    echo "(tcpdump agrees: $(tcpdump -nr "$SHARED/pcaps/http.pcap" 'tcp port 80' 2>/dev/null | wc -l) packets)"
  fi
else
  echo "(../shared/pcaps not found: set BPFVM_SHARED to run the capture demos)"
fi
echo
echo "== A map pinned as a file (tmpfs): created, updated and read by separate bpfvm processes, bpftool's verbs"
M=/dev/shm/bpfvm-demo-counts
rm -f "$M"
show map create "$M" type hash key 4 value 8 entries 16 name counts
show map update pinned "$M" key 1 0 0 0 value 42 0 0 0 0 0 0 0
show map dump pinned "$M"
show map dump pinned "$M" -j
rm -f "$M"
echo
echo "== System calls of an unmodified command traced (ptrace + seccomp): openat calls of 'ls /', counted by"
echo "   a program whose filter is a const volatile global set before load"
show trace build/progs/tr_setnr.bpf.o --set only_nr=257 -- ls /
echo
echo "== A function of an unmodified program probed from inside it: the agent (LD_PRELOAD) patches a jump"
echo "   at local_mul's entry and its return (uprobe, uretprobe); ring-buffer records and counts as they happen"
show trace build/progs/ag_probes.bpf.o --attach on_local_mul=uprobe/build/agent_target:local_mul \
  --attach on_local_mul_ret=uretprobe/build/agent_target:local_mul -- build/agent_target 5
echo
echo "== Assembly on given memory (r1 = memory, r2 = length): verified (a loop bounded by r2), run in the"
echo "   JIT and the interpreter; unverified code runs only with --no-verify, in the checked interpreter"
cat > build/demo-sum.s <<'ASM'
# sum the 32-bit little-endian words of the input memory
mov %r0, 0
loop:
jlt %r2, 4, done
ldxw %r3, [%r1]
add %r0, %r3
add %r1, 4
sub %r2, 4
ja loop
done:
exit
ASM
show run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00'
show run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00' --engine interp
show run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00' --repeat 1000000
show disasm build/demo-sum.s
