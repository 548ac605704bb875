# bpfvm run: raw, assembly (both syntaxes) and memory input; text and JSON output.
$ bpfvm run sum.s --mem '01 00 00 00 02 00 00 00 27 00 00 00'
Return value: 42
[exit 0]
$ bpfvm run sum.s --data-in words.bin
Return value: 42
[exit 0]
$ bpfvm run sum.s --data-in words.bin -j
{"retval":42}
[exit 0]
$ bpfvm run sum.s --data-in words.bin --format asm
Return value: 42
[exit 0]
$ bpfvm run seven.s
Return value: 7
[exit 0]
$ bpfvm run seven.s -j
{"retval":7}
[exit 0]
$ bpfvm run sum.s --mem '0100000002000000' --repeat 3 | sed -E 's/[0-9]+ns/Nns/'
Return value: 3, duration (average): Nns
[exit 0]
$ bpfvm run sum.s --mem '0100000002000000' --repeat 3 -j | sed -E 's/"duration":[0-9]+/"duration":N/'
{"retval":3,"duration":N}
[exit 0]
