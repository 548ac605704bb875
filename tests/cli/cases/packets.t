# bpfvm filter: tcpdump expressions compiled by libpcap for the capture's link type, run as eBPF.
$ bpfvm filter 'tcp port 10050' -r "$BPFVM_SHARED/pcaps/real.pcap" --count
56094 packets
[exit 0]
$ bpfvm filter 'tcp port 10050' -r "$BPFVM_SHARED/pcaps/real.pcap" --count --engine interp
56094 packets
[exit 0]
$ bpfvm filter 'udp port 53' -r "$BPFVM_SHARED/pcaps/dns_icmp.pcap"
1: 1369953917.270862000 80 bytes
2: 1369953917.276645000 124 bytes
9: 1369953920.061263000 80 bytes
10: 1369953920.249212000 124 bytes
15: 1369953924.269218000 80 bytes
16: 1369953924.343194000 116 bytes
23: 1369953927.559325000 77 bytes
24: 1369953927.973230000 93 bytes
25: 1369953927.991862000 77 bytes
26: 1369953928.135496000 93 bytes
10 packets
[exit 0]
# other link types: raw IP (pcapng), BSD loopback
$ bpfvm filter 'icmp' -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" --count
3635 packets
[exit 0]
$ bpfvm filter 'ip6 and tcp port 8080' -r "$BPFVM_SHARED/pcaps/test_loopback.pcap" --count
24 packets
[exit 0]
# the same file as tcpdump writes
$ bpfvm filter 'tcp[tcpflags] & tcp-syn != 0' -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-pk-a.pcap && tcpdump -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-pk-b.pcap 'tcp[tcpflags] & tcp-syn != 0' 2>/dev/null && cmp /tmp/bpfvm-pk-a.pcap /tmp/bpfvm-pk-b.pcap && echo identical
identical
[exit 0]
$ bpfvm filter -d 'ip' -r "$BPFVM_SHARED/pcaps/http.pcap"
(000) ldh      [12]
(001) jeq      #0x800           jt 2	jf 3
(002) ret      #65535
(003) ret      #0
[exit 0]
$ bpfvm filter --ebpf 'ip' -r "$BPFVM_SHARED/pcaps/http.pcap"
   0: r6 = r1
   1: r0 = *(u16 *)skb[12]
   2: if w0 != 0x800 goto pc+2
   3: w0 = 65535
   4: exit
   5: w0 = 0
   6: exit
[exit 0]
# errors: libpcap's message (exit 1), damaged capture (packets before the damage counted, exit 1),
# no capture header (exit 2), backward jump (protochain)
$ bpfvm filter 'tcp port' -r "$BPFVM_SHARED/pcaps/http.pcap"
bpfvm: can't parse filter expression: syntax error
[exit 1]
$ bpfvm filter 'ip' -r "$BPFVM_SHARED/pcaps/test_damaged.pcap" --count 2>&1 | sed "s|$BPFVM_SHARED|SHARED|"; (exit ${PIPESTATUS[0]})
1 packets
bpfvm: SHARED/pcaps/test_damaged.pcap: offset 114: damaged record after packet 1 (truncated dump file; tried to read 16896 captured bytes, only got 8756)
[exit 1]
$ bpfvm filter 'ip' -r "$BPFVM_SHARED/pcaps/test_without_pcap_header.pcap" --count 2>&1 | sed "s|$BPFVM_SHARED|SHARED|"; (exit ${PIPESTATUS[0]})
bpfvm: SHARED/pcaps/test_without_pcap_header.pcap: offset 0: not a pcap or pcapng file (unknown file format; first bytes 00000000)
[exit 2]
$ bpfvm filter 'ip6 protochain 6' -r "$BPFVM_SHARED/pcaps/http.pcap"
bpfvm: filter: cbpf insn 18: backward jump (ja -15): classic BPF jumps only forward
[exit 1]
# bpfvm xdp / socket / tc: per-verdict and per-action counts, rate, maps
$ bpfvm xdp pk-xdp.o --section xdp_main -r "$BPFVM_SHARED/pcaps/dns_icmp.pcap" 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
program xdp_main (xdp), engine jit
packets: 32 (3100 bytes)
verdicts:
  XDP_DROP         5
  XDP_PASS         15
  XDP_TX           12
actions: pass 15, drop 5, tx 12, redirect 0
rate: ...
maps:
  proto_count (array, key 4 B, value 8 B, max_entries 256)
    1: 22
    17: 10
    (254 zero entries not shown)
  tx_ports (devmap, key 4 B, value 4 B, max_entries 4)
    (4 keys, values not readable from user space)
[exit 0]
$ bpfvm xdp pk-xdp.o --section xdp_main -r "$BPFVM_SHARED/pcaps/http.pcap" --engine jit --redirect 5=/tmp/bpfvm-pk-web.pcap --map-set tx_ports:1=5 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
program xdp_main (xdp), engine jit
packets: 43 (25091 bytes)
verdicts:
  XDP_DROP         1
  XDP_PASS         23
  XDP_REDIRECT     19
actions: pass 23, drop 1, tx 0, redirect 19
interface 5 (/tmp/bpfvm-pk-web.pcap): 19 packets
rate: ...
maps:
  proto_count (array, key 4 B, value 8 B, max_entries 256)
    6: 41
    17: 2
    (254 zero entries not shown)
  tx_ports (devmap, key 4 B, value 4 B, max_entries 4)
    1: 5
[exit 0]
$ bpfvm socket pk-socket.o -r "$BPFVM_SHARED/pcaps/http.pcap" -w /tmp/bpfvm-pk-s.pcap 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
program keep_tcp (socket_filter), engine jit
packets: 43 (25091 bytes)
verdicts:
  drop (0)         2
  keep (> 0)       41
actions: pass 41, drop 2, tx 0, redirect 0
truncated: 19
rate: ...
maps:
  verdicts (array, key 4 B, value 8 B, max_entries 2)
    0: 2
    1: 41
[exit 0]
$ bpfvm filter 'greater 97' -r /tmp/bpfvm-pk-s.pcap --count
19 packets
[exit 0]
$ bpfvm tc pk-tc.o -r "$BPFVM_SHARED/pcaps/http.pcap" --redirect 7=/tmp/bpfvm-pk-r7.pcap 2>&1 | sed -E 's/rate: .*/rate: .../'; (exit ${PIPESTATUS[0]})
program tc_main (sched_cls), engine jit
packets: 43 (25091 bytes)
verdicts:
  TC_ACT_OK        22
  TC_ACT_SHOT      2
  TC_ACT_REDIRECT  19
actions: pass 22, drop 2, tx 0, redirect 19
interface 7 (/tmp/bpfvm-pk-r7.pcap): 19 packets
rate: ...
[exit 0]
$ bpfvm xdp pk-socket.o -r "$BPFVM_SHARED/pcaps/http.pcap"
bpfvm: pk-socket.o: program keep_tcp (section socket) is a socket_filter program, not xdp
[exit 1]
$ bpfvm xdp pk-xdp.o -r "$BPFVM_SHARED/pcaps/icmp_ttl.pcap" 2>&1 | sed "s|$BPFVM_SHARED|SHARED|"; (exit ${PIPESTATUS[0]})
bpfvm: SHARED/pcaps/icmp_ttl.pcap: link type 12 is not Ethernet; the packet hooks take Ethernet frames (use `bpfvm filter` for other link types)
[exit 2]
$ bpfvm xdp pk-xdp.o
bpfvm: -r or -i is required
Run 'bpfvm --help' for usage.
[exit 2]
$ bpfvm tc pk-tc.o -r "$BPFVM_SHARED/pcaps/test_damaged.pcap" 2>&1 | sed -E "s|$BPFVM_SHARED|SHARED|; s/rate: .*/rate: .../"; (exit ${PIPESTATUS[0]})
program tc_main (sched_cls), engine jit
packets: 1 (74 bytes)
verdicts:
  TC_ACT_REDIRECT  1
actions: pass 0, drop 0, tx 0, redirect 1
redirects to an ifindex with no bpfvm interface (dropped): 1
rate: ...
bpfvm: SHARED/pcaps/test_damaged.pcap: offset 114: damaged record after packet 1 (truncated dump file; tried to read 16896 captured bytes, only got 8756)
[exit 1]
