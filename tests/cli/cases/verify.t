# bpfvm verify: objects and assembly, privileged and strict, text and JSON.
$ bpfvm verify verify-packet_access.o | sed -E 's/[0-9]+ µs/T µs/'
xdp/test_packet_access: accepted: 31 instructions processed, 2 states (peak 2), 0.0 MiB peak, T µs
[exit 0]
$ bpfvm verify verify-packet_overflow.o
xdp/read_write_packet_start: rejected at insn 4: invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0) (R2=pkt(r=0))
  4: r1 = *(u32 *)(r2 +0)
  source: packet_overflow.c:12:     int value = *(int*)data;
  why: The packet is only known to be long enough after a comparison with data_end. Check `if (data + offset + size > data_end) return ...;` before the access, with the same pointer you then use.
[exit 1]
$ bpfvm verify verify-packet_overflow.o -j | sed -E 's/"time_us":[0-9]+/"time_us":T/'
[{"section":"xdp","name":"read_write_packet_start","verdict":"rejected","insns_processed":5,"states":0,"peak_states":0,"peak_memory":1392,"time_us":T,"error":"insn 4: invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0) (R2=pkt(r=0)) (source: packet_overflow.c:12:     int value = *(int*)data;)","source":"packet_overflow.c:12:     int value = *(int*)data;"}]
[exit 0]
$ bpfvm verify verify-ret99.s --type xdp | sed -E 's/[0-9]+ µs/T µs/'
accepted: 2 instructions processed, 0 states (peak 0), 0.0 MiB peak, T µs
[exit 0]
$ bpfvm verify verify-ret99.s --type xdp --strict
rejected at insn 1: At program exit the register R0 has value 99 should have been in [0, 4] (R0=99)
  1: exit
  why: xdp programs must return a value in [0, 4]: XDP action: XDP_ABORTED 0, XDP_DROP 1, XDP_PASS 2, XDP_TX 3, XDP_REDIRECT 4. Return one of those values on every path.
[exit 1]
$ bpfvm verify sum-kernel.s --mem-size 16 | sed -E 's/[0-9]+ µs/T µs/'
accepted: 27 instructions processed, 2 states (peak 2), 0.0 MiB peak, T µs
[exit 0]
$ bpfvm verify sum-kernel.s --mem-size 16 --strict
rejected at insn 6: back-edge from insn 6 to 1
  6: goto pc-6
  why: This jump goes back to an earlier instruction, which makes a loop. Strict rules (for untrusted code, the kernel's rules without CAP_BPF) allow no loops at all, bounded or not. Unroll the loop (`#pragma unroll` with a constant bound), or verify with privileged rules if the code is trusted.
[exit 1]
$ bpfvm verify verify-ret99.s --type nosuchtype
bpfvm: --type: unknown program type 'nosuchtype'; the types are: socket_filter, kprobe, sched_cls, sched_act, tracepoint, xdp, perf_event, cgroup_skb, cgroup_sock, lwt_in, lwt_out, lwt_xmit, lwt_seg6local, sock_ops, sk_skb, cgroup_device, sk_msg, raw_tracepoint, cgroup_sock_addr, lirc_mode2, sk_reuseport, flow_dissector, cgroup_sysctl, raw_tracepoint_writable, cgroup_sockopt, tracing, struct_ops, ext, lsm, sk_lookup, syscall, mem
[exit 2]
$ bpfvm verify missing-file.o
bpfvm: cannot read missing-file.o: No such file or directory
[exit 2]
# A program whose type cannot be verified is a verdict about the program (exit 1), not a usage error.
$ bpfvm verify "$BPFVM_SHARED/samples/build/divzero.o"
test/test_divzero: error: section 'test' gives no program type: name one with --type TYPE or --type test=TYPE
[exit 1]
