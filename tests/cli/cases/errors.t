# Bad input: one line naming what and where; exit 1 for a rejected/failed program, 2 for usage and I/O.
$ bpfvm run overrun.s --mem '00 01 02 03'
bpfvm: rejected at insn 0: invalid access to memory, mem_size=4 off=4 size=8 (R1=mem(sz=4))
  0: r0 = *(u64 *)(r1 +4)
  why: The access falls outside the input memory r1 points to. When its size is given at load, keep offset + size within it; otherwise compare against the length in r2 first: `if (r2 < offset + size) return 0;`.
bpfvm: the verifier rejected the program (--no-verify runs it unverified, in the checked interpreter)
[exit 1]
$ bpfvm run overrun.s --mem '00 01 02 03' --no-verify
bpfvm: run failed: insn 0: memory fault: read of 8 bytes at mem+4 is outside mem (4 bytes)
[exit 1]
$ bpfvm run forever.s
bpfvm: rejected at insn 2: BPF program is too large. Processed 1000000 insn
  2: goto pc-2
  why: The verifier walks every path through the program, and every iteration of a loop; this program needs more than the budget of 1,000,000 instruction visits. Reduce loop bounds, use bpf_loop() for long loops, or split the work with tail calls.
bpfvm: the verifier rejected the program (--no-verify runs it unverified, in the checked interpreter)
[exit 1]
$ bpfvm run forever.s --engine jit --budget 5
bpfvm: --budget needs the interpreter (the JIT does not count instructions)
[exit 2]
$ bpfvm run sum.s --no-verify --strict
bpfvm: --no-verify excludes --strict
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm run forever.s --no-verify --budget 1000
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
