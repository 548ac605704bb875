ldxdw %r0, [%r1+4]
exit
