# bpfvm map over pinned maps of maps: the inner map template from inner_map MAP, slots filled with
# `value pinned MAP`, printed as the pinned inner map they refer to.
$ bpfvm map create $SCRATCH/in_a type array key 4 value 8 entries 4 name in_a
[exit 0]
$ bpfvm map create $SCRATCH/in_b type array key 4 value 8 entries 4 name in_b
[exit 0]
$ bpfvm map create $SCRATCH/wrong type array key 4 value 8 entries 5 name wrong
[exit 0]
$ bpfvm map create $SCRATCH/outer type array_of_maps key 4 value 4 entries 4 name outer inner_map pinned $SCRATCH/in_a
[exit 0]
$ bpfvm map update pinned $SCRATCH/outer key 0 0 0 0 value pinned $SCRATCH/in_a
[exit 0]
$ bpfvm map update pinned $SCRATCH/outer key 2 0 0 0 value pinned $SCRATCH/in_b
[exit 0]
$ bpfvm map update pinned $SCRATCH/outer key 1 0 0 0 value pinned $SCRATCH/wrong
bpfvm: update failed: Invalid argument
[exit 1]
$ bpfvm map update pinned $SCRATCH/outer key 1 0 0 0 value pinned $SCRATCH/in_b noexist
bpfvm: update failed: Invalid argument
[exit 1]
$ bpfvm map update pinned $SCRATCH/outer key 1 0 0 0 value pinned $SCRATCH/missing
bpfvm: value: pinned map $SCRATCH/missing: No such file or directory
[exit 1]
$ bpfvm map dump pinned $SCRATCH/outer
key: 00 00 00 00  inner_map: pinned $SCRATCH/in_a
key: 02 00 00 00  inner_map: pinned $SCRATCH/in_b
Found 2 elements
[exit 0]
$ bpfvm map lookup pinned $SCRATCH/outer key 2 0 0 0
key: 02 00 00 00  inner_map: pinned $SCRATCH/in_b
[exit 0]
$ bpfvm map delete pinned $SCRATCH/outer key 2 0 0 0
[exit 0]
$ bpfvm map lookup pinned $SCRATCH/outer key 2 0 0 0
Not found
[exit 1]
$ bpfvm map delete pinned $SCRATCH/outer key 2 0 0 0
bpfvm: delete failed: No such file or directory
[exit 1]
$ bpfvm -j map dump pinned $SCRATCH/outer | sed -E 's/"value":\["0x[0-9a-f]{2}","0x[0-9a-f]{2}","0x[0-9a-f]{2}","0x[0-9a-f]{2}"\],"inner_map_id":[1-9][0-9]*/"value":ID,"inner_map_id":ID/'
[{"key":["0x00","0x00","0x00","0x00"],"value":ID,"inner_map_id":ID,"inner_map_pinned":"$SCRATCH/in_a"}]
[exit 0]
$ bpfvm map show pinned $SCRATCH/outer | tail -n +2
	key 4B  value 4B  max_entries 4  memlock 8192B
	pinned $SCRATCH/outer
[exit 0]
# A hash of maps: keys of its own size, any / exist / noexist as the kernel takes them.
$ bpfvm map create $SCRATCH/houter type hash_of_maps key 8 value 4 entries 4 name houter inner_map pinned $SCRATCH/in_a
[exit 0]
$ bpfvm map update pinned $SCRATCH/houter key hex 0100000000000000 value pinned $SCRATCH/in_b noexist
[exit 0]
$ bpfvm map update pinned $SCRATCH/houter key hex 0100000000000000 value pinned $SCRATCH/in_a noexist
bpfvm: update failed: File exists
[exit 1]
$ bpfvm map update pinned $SCRATCH/houter key hex 0200000000000000 value pinned $SCRATCH/in_a exist
bpfvm: update failed: No such file or directory
[exit 1]
$ bpfvm map dump pinned $SCRATCH/houter | sort
Found 1 element
key: 01 00 00 00 00 00 00 00  inner_map: pinned $SCRATCH/in_b
[exit 0]
# An inner map whose file is gone reads as an empty slot.
$ bpfvm map create $SCRATCH/gone type array key 4 value 8 entries 4 name gone
[exit 0]
$ bpfvm map update pinned $SCRATCH/houter key hex 0300000000000000 value pinned $SCRATCH/gone
[exit 0]
$ bpfvm map dump pinned $SCRATCH/houter | sort
Found 2 elements
key: 01 00 00 00 00 00 00 00  inner_map: pinned $SCRATCH/in_b
key: 03 00 00 00 00 00 00 00  inner_map: pinned $SCRATCH/gone
[exit 0]
$ bpfvm map lookup pinned $SCRATCH/houter key hex 0300000000000000; rm $SCRATCH/gone
key: 03 00 00 00 00 00 00 00  inner_map: pinned $SCRATCH/gone
[exit 0]
$ bpfvm map dump pinned $SCRATCH/houter | sort
Found 1 element
key: 01 00 00 00 00 00 00 00  inner_map: pinned $SCRATCH/in_b
[exit 0]
$ bpfvm map lookup pinned $SCRATCH/houter key hex 0300000000000000
Not found
[exit 1]
# Without inner_map a map of maps cannot be made (the kernel's EBADF: no inner map fd).
$ bpfvm map create $SCRATCH/noinner type array_of_maps key 4 value 4 entries 4 name noinner
bpfvm: pinned map $SCRATCH/noinner: map-in-map needs an inner map definition (-9)
[exit 1]
# The maps made here are removed (the pin root is shared with the other cases).
$ bpfvm map show pinned $SCRATCH/outer > /dev/null; rm -f $SCRATCH/in_a $SCRATCH/in_b $SCRATCH/wrong $SCRATCH/outer $SCRATCH/houter
[exit 0]
