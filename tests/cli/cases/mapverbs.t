# bpfvm map / prog: bpftool's verbs over pinned maps ($SCRATCH is a tmpfs directory and the pin root).
# -j / -p before the command, as bpftool takes them, or anywhere after it.
$ bpfvm -j map create $SCRATCH/counts type hash key 4 value 8 entries 16 name counts
null
[exit 0]
$ bpfvm map update pinned $SCRATCH/counts key 1 0 0 0 value 0x2a 0 0 0 0 0 0 0 -j
null
[exit 0]
$ bpfvm -p map update pinned $SCRATCH/counts key hex 02 00 00 00 value hex 0700000000000000 noexist
null
[exit 0]
$ bpfvm map dump pinned $SCRATCH/counts | sort
Found 2 elements
key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00
key: 02 00 00 00  value: 07 00 00 00 00 00 00 00
[exit 0]
$ bpfvm -j map lookup pinned $SCRATCH/counts key 1 0 0 0
{"key":["0x01","0x00","0x00","0x00"],"value":["0x2a","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}
[exit 0]
$ bpfvm --json map lookup pinned $SCRATCH/counts key 9 0 0 0
null
[exit 1]
$ bpfvm -p map lookup pinned $SCRATCH/counts key 2 0 0 0
{
  "key": [
    "0x02",
    "0x00",
    "0x00",
    "0x00"
  ],
  "value": [
    "0x07",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00"
  ]
}
[exit 0]
$ bpfvm --pretty map lookup name counts key 2 0 0 0
{
  "key": [
    "0x02",
    "0x00",
    "0x00",
    "0x00"
  ],
  "value": [
    "0x07",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00",
    "0x00"
  ]
}
[exit 0]
$ bpfvm -j map show pinned $SCRATCH/counts | sed -E 's/"id":[0-9]+/"id":ID/'
{"id":ID,"type":"hash","name":"counts","flags":0,"bytes_key":4,"bytes_value":8,"max_entries":16,"bytes_memlock":8192,"frozen":0,"btf_id":0,"pinned":["$SCRATCH/counts"]}
[exit 0]
$ bpfvm -j map list | sed -E 's/"id":[0-9]+/"id":ID/g'
[{"id":ID,"type":"hash","name":"counts","flags":0,"bytes_key":4,"bytes_value":8,"max_entries":16,"bytes_memlock":8192,"frozen":0,"btf_id":0,"pinned":["$SCRATCH/counts"]}]
[exit 0]
$ bpfvm -j map update pinned $SCRATCH/counts key 1 0 0 value 1 0 0 0 0 0 0 0
{"error":"key expected 4 bytes got 3"}
[exit 2]
$ bpfvm -j map dump pinned $SCRATCH/missing
{"error":"pinned map $SCRATCH/missing: No such file or directory"}
[exit 1]
$ bpfvm -j map frobnicate
{"error":"unknown map verb 'frobnicate' (create, show, list, dump, lookup, update, delete, getnext, peek, push, pop, enqueue, dequeue, freeze, pin, event_pipe)"}
[exit 2]
# freeze: user-space writes refused from then on, in every process
$ bpfvm -j map freeze pinned $SCRATCH/counts
null
[exit 0]
$ bpfvm map update pinned $SCRATCH/counts key 1 0 0 0 value 1 0 0 0 0 0 0 0
bpfvm: update failed: Operation not permitted (the map is frozen)
[exit 1]
$ bpfvm -j map delete pinned $SCRATCH/counts key 1 0 0 0
{"error":"delete failed: Operation not permitted (the map is frozen)"}
[exit 1]
$ bpfvm -j map lookup pinned $SCRATCH/counts key 1 0 0 0
{"key":["0x01","0x00","0x00","0x00"],"value":["0x2a","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}
[exit 0]
$ bpfvm -j map show pinned $SCRATCH/counts | sed -E 's/"id":[0-9]+/"id":ID/'
{"id":ID,"type":"hash","name":"counts","flags":0,"bytes_key":4,"bytes_value":8,"max_entries":16,"bytes_memlock":8192,"frozen":1,"btf_id":0,"pinned":["$SCRATCH/counts"]}
[exit 0]
# queues: push and pop are user-space writes too
$ bpfvm -j map create $SCRATCH/q type queue key 0 value 4 entries 4 name q
null
[exit 0]
$ bpfvm -j map push pinned $SCRATCH/q value 1 2 3 4
null
[exit 0]
$ bpfvm -j map peek pinned $SCRATCH/q
{"value":["0x01","0x02","0x03","0x04"]}
[exit 0]
$ bpfvm -j map freeze pinned $SCRATCH/q
null
[exit 0]
$ bpfvm -j map pop pinned $SCRATCH/q
{"error":"pop failed: Operation not permitted (the map is frozen)"}
[exit 1]
$ bpfvm map enqueue pinned $SCRATCH/q value 1 2 3 4
bpfvm: push failed: Operation not permitted (the map is frozen)
[exit 1]
# programs
$ bpfvm -j prog loadall $PROGS/st_pinned.bpf.o $SCRATCH/progs pinmaps $SCRATCH/maps
null
[exit 0]
$ bpfvm -p prog list | grep -E '^    "(type|name|gpl_compatible|pinned)"|^ *"[$]SCRATCH|^\[|^\]'
[
    "type": "xdp",
    "name": "st_count",
    "gpl_compatible": true,
    "pinned": [
]
[exit 0]
$ bpfvm -j prog show pinned $SCRATCH/progs/st_count | sed -E 's/"id":[0-9]+/"id":ID/; s/"tag":"[0-9a-f]+"/"tag":TAG/; s/"map_ids":\[[0-9,]*\]/"map_ids":IDS/'
{"id":ID,"type":"xdp","name":"st_count","tag":TAG,"gpl_compatible":true,"bytes_xlated":552,"map_ids":IDS,"pinned":["$SCRATCH/progs/st_count"]}
[exit 0]
# -j/-p before other commands: refused with where to put it
$ bpfvm -j run sum.s
bpfvm: '-j' before the command is taken by map, prog and btf; give it after 'run' (bpfvm run --help)
[exit 2]
$ bpfvm -p -j xdp x.o
bpfvm: '-p' before the command is taken by map, prog and btf; give it after 'xdp' (bpfvm xdp --help)
[exit 2]
