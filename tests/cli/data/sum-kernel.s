; the same program in the kernel's syntax
r0 = 0
if r2 < 4 goto +5
r3 = *(u32 *)(r1 +0)
r0 += r3
r1 += 4
r2 -= 4
goto -6
exit
