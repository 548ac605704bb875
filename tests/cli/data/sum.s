# Sum the 32-bit little-endian words of the input (r1 = memory, r2 = length).
mov %r0, 0
loop:
jlt %r2, 4, done
ldxw %r3, [%r1]
add %r0, %r3
add %r1, 4
sub %r2, 4
ja loop
done:
exit
