#!/usr/bin/env bash
# The main demo: set up, build, then load programs and run them on real input, printing what they did.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
B=build/bpfvm
SHARED=${BPFVM_SHARED:-../shared}
echo
echo "== 1. Assemble and run a program on given memory (interpreter, then JIT)"
cat > build/demo-sum.s <<'ASM'
# sum the 32-bit little-endian words of the input memory (r1 = memory, r2 = length)
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
echo "\$ bpfvm run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00'"
$B run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00'
echo "\$ bpfvm run build/demo-sum.s --mem '...' --engine jit --repeat 1000000"
$B run build/demo-sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00' --engine jit --repeat 1000000 || true
echo
echo "== 2. Disassemble it in the kernel's syntax"
$B disasm build/demo-sum.s
