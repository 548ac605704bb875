# Objects whose programs fail one by one, iproute2 objects, CO-RE against a given BTF, --set.
$ bpfvm object show $PROGS/ld_onebad.bpf.o
programs: 3
  section  name           type           insns
  xdp      good_first     xdp            2
  xdp      calls_unknown  xdp            error: section 'xdp': relocation #0 at offset 24 (insn 3) against 'not_a_helper': calls undefined function 'not_a_helper', which is neither in the object nor a helper
  socket   good_second    socket_filter  2
maps: 0
license: GPL
btf: yes (with line info)
bpfvm: $PROGS/ld_onebad.bpf.o: 1 of 3 programs failed to load
[exit 1]
$ bpfvm verify $PROGS/ld_onebad.bpf.o | sed -E 's/[0-9]+ µs/T µs/'; (exit ${PIPESTATUS[0]})
xdp/good_first: accepted: 2 instructions processed, 0 states (peak 0), 0.0 MiB peak, T µs
xdp/calls_unknown: error: section 'xdp': relocation #0 at offset 24 (insn 3) against 'not_a_helper': calls undefined function 'not_a_helper', which is neither in the object nor a helper
socket/good_second: accepted: 2 instructions processed, 0 states (peak 0), 0.0 MiB peak, T µs
[exit 1]
$ bpfvm object show $PROGS/ld_elfmap28.bpf.o
programs: 2
  section      name         type       insns
  1/0          tail_one     sched_cls  2  (type assumed)
  from-netdev  from_netdev  sched_cls  19  (type assumed)
maps: 2
  name    type        key_size  value_size  max_entries  flags       from
  calls   prog_array         4           4            4  0x0         maps, pinned global_ns
  counts  array              4           8            1  0x0         maps, pinned object_ns
license: GPL
btf: yes (with line info)
note: program type sched_cls assumed for sections '1/0', 'from-netdev' (an iproute2 object: tc loads every section as sched_cls); change it with --type TYPE or --type SECTION=TYPE
[exit 0]
$ bpfvm object show $PROGS/ld_elfmap28.bpf.o --type from-netdev=xdp -j
{"programs":[{"section":"1/0","name":"tail_one","type":"sched_cls","insns":2,"type_assumed":true},{"section":"from-netdev","name":"from_netdev","type":"xdp","insns":19}],"maps":[{"name":"calls","type":"prog_array","key_size":4,"value_size":4,"max_entries":4,"flags":0,"pinning":"global_ns"},{"name":"counts","type":"array","key_size":4,"value_size":8,"max_entries":1,"flags":0,"pinning":"object_ns"}],"notes":["program type sched_cls assumed for section '1/0' (an iproute2 object: tc loads every section as sched_cls); change it with --type TYPE or --type SECTION=TYPE"]}
[exit 0]
$ bpfvm object show $PROGS/ld_elfmap28.bpf.o --type from-netdev=nosuch
bpfvm: --type from-netdev=nosuch: unknown program type 'nosuch'; the types are: socket_filter, kprobe, sched_cls, sched_act, tracepoint, xdp, perf_event, cgroup_skb, cgroup_sock, lwt_in, lwt_out, lwt_xmit, lwt_seg6local, sock_ops, sk_skb, cgroup_device, sk_msg, raw_tracepoint, cgroup_sock_addr, lirc_mode2, sk_reuseport, flow_dissector, cgroup_sysctl, raw_tracepoint_writable, cgroup_sockopt, tracing, struct_ops, ext, lsm, sk_lookup, syscall, mem
[exit 2]
$ bpfvm object show $PROGS/ld_pin16.bpf.o
programs: 1
  section  name      type  insns
  xdp      pin_prog  xdp   20
maps: 2
  name     type   key_size  value_size  max_entries  flags       from
  odd_pin  array         4           8            4  0x0         .maps
  by_name  hash          4           4            4  0x0         .maps, pinned by_name
license: GPL
btf: yes (with line info)
warning: map 'odd_pin': pinning value 16 is not understood (libbpf knows 0 none and 1 by name): the map is not pinned
[exit 0]
$ bpfvm run $PROGS/core_values.bpf.o --btf $PROGS/core_target.bpf.o --data-in tcp-packet.bin
Return value: 2
[exit 0]
$ bpfvm verify $PROGS/core_access.bpf.o --btf $PROGS/core_target.bpf.o --function core_unguarded
kprobe/do_nanosleep/core_unguarded: rejected at insn 3: invalid CO-RE relocation: failed to resolve CO-RE relocation byte_off [29] struct task_struct___missing.no_such_field (0:0): no struct task_struct of the target BTF ($PROGS/core_target.bpf.o) has this field with a compatible type
  3: call #195896080
  source: core_access.bpf.c:38:   int v = 0;
  why: The program reaches an instruction whose CO-RE relocation matched nothing in the target BTF. Guard the access with bpf_core_field_exists() / bpf_core_type_exists(), or load with the BTF of the kernel the program is meant for (--btf).
[exit 1]
$ bpfvm run $PROGS/ld_rodata.bpf.o --set small=300 --data-in tcp-packet.bin
bpfvm: $PROGS/ld_rodata.bpf.o: --set small=300: global variable 'small': 300 does not fit an unsigned 1-byte integer
[exit 2]
$ bpfvm run $PROGS/ld_rodata.bpf.o --set nosuch=1 --data-in tcp-packet.bin
bpfvm: $PROGS/ld_rodata.bpf.o: --set nosuch=1: no global variable 'nosuch'
[exit 2]
$ bpfvm run $PROGS/ld_rodata.bpf.o --set targ_pid=-7 --set comm=bash --set mode=MODE_DROP --set verbose=true --data-in tcp-packet.bin
Return value: 2
[exit 0]
$ bpfvm object show $PROGS/ld_badextern.bpf.o
bpfvm: $PROGS/ld_badextern.bpf.o: .kconfig extern 'LINUX_NO_SUCH_VALUE': unknown name (bpfvm provides LINUX_KERNEL_VERSION, LINUX_HAS_SYSCALL_WRAPPER, LINUX_HAS_BPF_COOKIE and CONFIG_* from the kernel config)
[exit 1]
