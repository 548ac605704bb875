r0 = 99
exit
