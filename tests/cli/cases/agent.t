# bpfvm trace: probes in user code run in the agent (--mode agent, or auto); refusals before the command starts.
$ bpfvm trace --mode ptrace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:malloc -- true
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add: probes in user code run in the agent (--mode agent or auto), not in ptrace mode
[exit 1]
$ bpfvm trace --mode agent $PROGS/tr_count.bpf.o -- true
bpfvm: $PROGS/tr_count.bpf.o: agent mode runs probes in user code (uprobe, uretprobe, usdt); the object's system-call programs run in ptrace mode (--mode ptrace or auto)
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uretprobe/libc.so.6:malloc+4 -- true
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (section uprobe): cannot attach to 'uretprobe/libc.so.6:malloc+4': uretprobes do not support offset specification
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:no_such_function_here -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (uprobe/libc.so.6:no_such_function_here): /lib/x86_64-linux-gnu/libc.so.6: no function 'no_such_function_here' in its symbol tables (.symtab, .dynsym)
[exit 1]
# one run uses one mode
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:malloc --attach on_bad_read=tracepoint/syscalls/sys_enter_getppid -- true
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add probes user code (agent mode) and program on_bad_read system calls (ptrace mode): one run uses one mode; attach them in two runs (--section, --attach)
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/no/such/file:main -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (uprobe/no/such/file:main): no/such/file: no such file
[exit 1]
$ bpfvm trace $PROGS/ag_usdt.bpf.o --attach on_tick=usdt/libc.so.6:agt:tick -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_usdt.bpf.o: program on_tick (usdt/libc.so.6:agt:tick): /lib/x86_64-linux-gnu/libc.so.6: no USDT probes (no .note.stapsdt section)
[exit 1]
