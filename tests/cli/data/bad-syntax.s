mov %r0, 1
add %r11, 2
exit
