# Bad input: one line naming what and where; exit 1 for a rejected/failed program, 2 for usage and I/O.
$ bpfvm run overrun.s --mem '00 01 02 03'
bpfvm: run failed: insn 0: memory fault: read of 8 bytes at mem+4 is outside mem (4 bytes)
[exit 1]
$ bpfvm run forever.s --budget 1000
bpfvm: run failed: insn 2: instruction budget of 1000 exhausted
[exit 1]
$ bpfvm run bad-syntax.s
bpfvm: bad-syntax.s: line 2:5: unknown register %r11
[exit 1]
$ bpfvm run noexit.s
bpfvm: noexit.s: insn 0: last instruction must be exit or an unconditional jump, not mov
[exit 1]
$ bpfvm run odd-size.bin
bpfvm: odd-size.bin: program size 10 is not a multiple of 8 bytes
[exit 1]
$ bpfvm run bad-opcode.bin
bpfvm: bad-opcode.bin: insn 0: unknown opcode 0xff
[exit 1]
$ bpfvm run bad-jump.bin
bpfvm: bad-jump.bin: insn 0: jump out of range (target 6, program has 2 instructions)
[exit 1]
$ bpfvm run missing-file.s
bpfvm: missing-file.s: cannot read missing-file.s: No such file or directory
[exit 2]
$ bpfvm run sum.s --mem 'zz'
bpfvm: --mem: 'z' at offset 0 is not a hex digit
[exit 2]
$ bpfvm run sum.s --mem '012'
bpfvm: --mem: odd number of hex digits
[exit 2]
$ bpfvm run sum.s --mem '00' --data-in words.bin
bpfvm: --mem excludes --data-in
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm run sum.s --engine turbo
bpfvm: --engine: 'turbo' is not one of interp, jit
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm run sum.s --repeat 0
bpfvm: --repeat: Value 0 not in range 1 to 1099511627776
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm run sum.s --section xdp
bpfvm: sum.s: --section and --function apply to ELF objects only
[exit 2]
$ bpfvm frobnicate
bpfvm: unknown command 'frobnicate'; run 'bpfvm --help' for the list
[exit 2]
$ bpfvm run
bpfvm: file is required
Run 'bpfvm --help' for usage.
[exit 2]
