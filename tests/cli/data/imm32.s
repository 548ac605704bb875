r0 = 0xffffffff
exit
