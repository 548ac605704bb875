# bpfvm trace: probes in user code run in the agent (--mode agent, or auto); refusals before the command starts.
$ bpfvm trace --mode ptrace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:malloc -- true
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add: probes in user code run in the agent (--mode agent or auto), not in ptrace mode
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uretprobe/libc.so.6:malloc+4 -- true
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (section uprobe): cannot attach to 'uretprobe/libc.so.6:malloc+4': uretprobes do not support offset specification
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:no_such_function_here -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (uprobe/libc.so.6:no_such_function_here): /lib/x86_64-linux-gnu/libc.so.6: no function 'no_such_function_here' in its symbol tables (.symtab, .dynsym)
[exit 1]
# probes in user code and system-call programs run together in the agent
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/libc.so.6:malloc --attach on_bad_read=tracepoint/syscalls/sys_enter_getppid -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_probes.bpf.o: program on_bad_read (section uprobe): a kprobe program cannot attach to tracepoint/syscalls/sys_enter_getppid, which runs tracepoint programs
[exit 1]
$ bpfvm trace $PROGS/ag_probes.bpf.o --attach on_lib_add=uprobe/no/such/file:main -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_probes.bpf.o: program on_lib_add (uprobe/no/such/file:main): no/such/file: no such file
[exit 1]
$ bpfvm trace $PROGS/ag_usdt.bpf.o --attach on_tick=usdt/libc.so.6:agt:tick -- true
bpfvm: mode: agent (the object probes user code; the programs run inside true)
bpfvm: $PROGS/ag_usdt.bpf.o: program on_tick (usdt/libc.so.6:agt:tick): /lib/x86_64-linux-gnu/libc.so.6: no USDT probes (no .note.stapsdt section)
[exit 1]
# system-call programs in the agent (runs: tests/trace_ptrace_test.cpp, AgentSyscalls): an unknown mechanism is a usage error
$ bpfvm trace --mode agent --agent-syscalls ptrace $PROGS/tr_count.bpf.o -- true
bpfvm: --agent-syscalls: 'ptrace' is not one of sud, seccomp
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm trace --mode agent --agent-syscalls seccomp -p 1 $PROGS/tr_count.bpf.o
bpfvm: --agent-syscalls seccomp: a filter installed in a running process covers only the thread that installs it and never leaves; use sud with -p
[exit 2]
