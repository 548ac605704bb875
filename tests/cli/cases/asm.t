# bpfvm asm and bpfvm disasm, both syntaxes.
$ bpfvm asm sum.s -o /tmp/bpfvm-golden-sum.bin && od -An -tx1 /tmp/bpfvm-golden-sum.bin
 b7 00 00 00 00 00 00 00 a5 02 05 00 04 00 00 00
 61 13 00 00 00 00 00 00 0f 30 00 00 00 00 00 00
 07 01 00 00 04 00 00 00 17 02 00 00 04 00 00 00
 05 00 fa ff 00 00 00 00 95 00 00 00 00 00 00 00
[exit 0]
$ bpfvm disasm /tmp/bpfvm-golden-sum.bin
   0: r0 = 0
   1: if r2 < 0x4 goto pc+5
   2: r3 = *(u32 *)(r1 +0)
   3: r0 += r3
   4: r1 += 4
   5: r2 -= 4
   6: goto pc-6
   7: exit
[exit 0]
$ bpfvm disasm /tmp/bpfvm-golden-sum.bin --syntax conformance
mov %r0, 0
L1:
jlt %r2, 4, L7
ldxw %r3, [%r1]
add %r0, %r3
add %r1, 4
sub %r2, 4
ja L1
L7:
exit
[exit 0]
$ bpfvm disasm sum.s --raw
   0: b7 00 00 00 00 00 00 00  r0 = 0
   1: a5 02 05 00 04 00 00 00  if r2 < 0x4 goto pc+5
   2: 61 13 00 00 00 00 00 00  r3 = *(u32 *)(r1 +0)
   3: 0f 30 00 00 00 00 00 00  r0 += r3
   4: 07 01 00 00 04 00 00 00  r1 += 4
   5: 17 02 00 00 04 00 00 00  r2 -= 4
   6: 05 00 fa ff 00 00 00 00  goto pc-6
   7: 95 00 00 00 00 00 00 00  exit
[exit 0]
$ bpfvm asm sum-kernel.s -o /tmp/bpfvm-golden-sum2.bin && cmp /tmp/bpfvm-golden-sum.bin /tmp/bpfvm-golden-sum2.bin && echo identical
identical
[exit 0]
$ bpfvm asm bad-syntax.s -o /tmp/bpfvm-golden-bad.bin
bpfvm: bad-syntax.s: line 2:5: unknown register %r11
[exit 1]
$ bpfvm asm sum.s
bpfvm: --output is required
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm disasm sum.s --syntax intel
bpfvm: --syntax: 'intel' is not one of kernel, conformance
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm disasm seven.s --jited
; main: entry prologue
    0: r0 = 7
            0:  mov eax, 7
    1: exit
; main: epilogue
            5:  ret 
[exit 0]
