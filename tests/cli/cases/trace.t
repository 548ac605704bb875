# bpfvm trace: programs that cannot attach are refused before the command starts, with the reason.
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=tracepoint/syscalls/sys_enter_stat -- true
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=kprobe/do_sys_openat2 -- true
$ bpfvm trace $PROGS/tr_opensnoop.bpf.o --attach tracepoint__syscalls__sys_enter_openat=tracepoint/syscalls/sys_enter_getppid -- true
$ bpfvm trace $PROGS/tr_deny.bpf.o --attach deny_unlinkat=kretsyscall/unlinkat -- true
$ bpfvm trace $PROGS/tr_count.bpf.o --attach count_enter=raw_tp/sys_enter -- true
# the command's exit status; 127 when it cannot start
$ bpfvm trace $PROGS/tr_deny.bpf.o -- sh -c 'exit 5'
$ bpfvm trace $PROGS/tr_deny.bpf.o -- /nonexistent/command
$ bpfvm trace $PROGS/tr_deny.bpf.o
