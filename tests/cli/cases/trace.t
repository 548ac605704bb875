# bpfvm trace: programs that cannot attach are refused before the command starts, with the reason.
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=tracepoint/syscalls/sys_enter_stat -- true
bpfvm: $PROGS/tr_count.bpf.o: program count_enter (section tracepoint/raw_syscalls/sys_enter): cannot attach to 'tracepoint/syscalls/sys_enter_stat': the kernel's name of system call 4 (stat) is newstat
[exit 1]
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=kprobe/do_sys_openat2 -- true
bpfvm: $PROGS/tr_count.bpf.o: program count_enter (section tracepoint/raw_syscalls/sys_enter): cannot attach to 'kprobe/do_sys_openat2': 'do_sys_openat2' is a kernel function, not a system call entry: bpfvm observes processes at the system-call boundary and does not run inside the kernel (kprobes work on __x64_sys_NAME and sys_NAME, or use ksyscall/NAME)
[exit 1]
$ bpfvm trace $PROGS/tr_opensnoop.bpf.o --attach tracepoint__syscalls__sys_enter_openat=tracepoint/syscalls/sys_enter_getppid -- true
bpfvm: $PROGS/tr_opensnoop.bpf.o: program tracepoint__syscalls__sys_enter_openat (section tracepoint/syscalls/sys_enter_openat): reads 40 bytes of context, but tracepoint/syscalls/sys_enter_getppid gives 16 bytes (syscalls/sys_enter_* record)
[exit 1]
$ bpfvm trace $PROGS/tr_deny.bpf.o --attach deny_unlinkat=kretsyscall/unlinkat -- true
bpfvm: $PROGS/tr_deny.bpf.o: program deny_unlinkat (section ksyscall/unlinkat): calls bpf_override_return, which works only at a system call's entry (kprobe/__x64_sys_NAME, ksyscall/NAME), not at kretprobe/__x64_sys_unlinkat
[exit 1]
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=raw_tp/sys_enter -- true
bpfvm: $PROGS/tr_count.bpf.o: program count_enter (section tracepoint/raw_syscalls/sys_enter): a tracepoint program cannot attach to raw_tracepoint/sys_enter, which runs raw_tracepoint programs
[exit 1]
# the command's exit status; 127 when it cannot start
$ bpfvm trace $PROGS/tr_deny.bpf.o -- sh -c 'exit 5'
maps:
  stats (array, key 4 B, value 8 B, max_entries 2)
    (2 zero entries not shown)
[exit 5]
$ bpfvm trace $PROGS/tr_deny.bpf.o -- /nonexistent/command
bpfvm: cannot run /nonexistent/command: No such file or directory
[exit 127]
$ bpfvm trace $PROGS/tr_deny.bpf.o
bpfvm: trace: give a command after -- or a process with -p PID
[exit 2]
# const volatile globals set before load (--set), checked against their BTF type
$ bpfvm trace $PROGS/tr_setnr.bpf.o --set only_nr=231 -- true
maps:
  hits (array, key 4 B, value 8 B, max_entries 1)
    0: 1
[exit 0]
$ bpfvm trace $PROGS/tr_setnr.bpf.o -- true
maps:
  hits (array, key 4 B, value 8 B, max_entries 1)
    (1 zero entries not shown)
[exit 0]
$ bpfvm trace $PROGS/tr_setnr.bpf.o --set no_such_var=1 -- true
bpfvm: $PROGS/tr_setnr.bpf.o: --set no_such_var=1: no global variable 'no_such_var'
[exit 2]
$ bpfvm trace $PROGS/tr_setnr.bpf.o --set only_nr=abc -- true
bpfvm: $PROGS/tr_setnr.bpf.o: --set only_nr=abc: global variable 'only_nr': 'abc' is not a number
[exit 2]
