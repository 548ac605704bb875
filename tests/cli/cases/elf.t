# ELF objects built by clang -target bpf: pick a program, run it with a context built from data,
# list it with C source lines.
$ bpfvm run $PROGS/ld_multi.bpf.o --function xdp_main --data-in tcp-packet.bin
Return value: 2
[exit 0]
$ bpfvm run $PROGS/ld_multi.bpf.o --section socket --data-in tcp-packet.bin -j
{"retval":142}
[exit 0]
$ bpfvm run $PROGS/ld_multi.bpf.o --function xdp_main --data-in tcp-packet.bin --engine jit
Return value: 2
[exit 0]
$ bpfvm run $PROGS/ld_multi.bpf.o --data-in tcp-packet.bin
bpfvm: $PROGS/ld_multi.bpf.o: the object has 5 programs; choose one with --section or --function (xdp/xdp_main, xdp/xdp_second, socket/sock_prog, tracepoint/syscalls/sys_enter_openat/tp_prog, kprobe/do_sys_open/kp_prog)
[exit 2]
$ bpfvm run $PROGS/ld_multi.bpf.o --section nosuch
bpfvm: $PROGS/ld_multi.bpf.o: no program in section 'nosuch'
[exit 2]
$ bpfvm run $PROGS/ld_multi.bpf.o --function nosuch
bpfvm: $PROGS/ld_multi.bpf.o: no function 'nosuch' in the object
[exit 2]
$ bpfvm run $PROGS/ld_multi.bpf.o --function xdp_main --type frobnicator
bpfvm: $PROGS/ld_multi.bpf.o: --type: unknown program type 'frobnicator'; the types are: socket_filter, kprobe, sched_cls, sched_act, tracepoint, xdp, perf_event, cgroup_skb, cgroup_sock, lwt_in, lwt_out, lwt_xmit, lwt_seg6local, sock_ops, sk_skb, cgroup_device, sk_msg, raw_tracepoint, cgroup_sock_addr, lirc_mode2, sk_reuseport, flow_dissector, cgroup_sysctl, raw_tracepoint_writable, cgroup_sockopt, tracing, struct_ops, ext, lsm, sk_lookup, syscall, mem
[exit 2]
$ bpfvm disasm $PROGS/ld_elfmap.bpf.o
;   __u32 key = skb->protocol & 0xff;
   0: r1 = *(u32 *)(r1 +16)
   1: r1 &= 255
   2: *(u32 *)(r10 -4) = r1
   3: r2 = r10
   4: r2 += -4
;   __u64 *v = bpf_map_lookup_elem(&tc_counts, &key);
   5: r1 = map[idx:0]
   7: call bpf_map_lookup_elem#1
;   if (v) *v += 1;
   8: if r0 == 0x0 goto pc+3
   9: r1 = *(u64 *)(r0 +0)
  10: r1 += 1
  11: *(u64 *)(r0 +0) = r1
;   __u64 hkey = key;  // tc_hash has 8-byte keys
  12: r1 = *(u32 *)(r10 -4)
  13: *(u64 *)(r10 -16) = r1
  14: r2 = r10
  15: r2 += -16
;   return bpf_map_lookup_elem(&tc_hash, &hkey) ? 0 : 2;
  16: r1 = map[idx:1]
  18: call bpf_map_lookup_elem#1
  19: r1 = r0
  20: r0 = 1
  21: if r1 == 0x0 goto pc+1
  22: r0 = 0
  23: r0 <<= 1
  24: exit
[exit 0]
