// Functions written in assembly, so that the instructions a hook displaces have exact shapes: the
// targets of the function-hook tests (tests/uprobe_*_test.cpp). Each `NAME_end` label marks the end
// of NAME (its size, as the symbol table would give it).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
// lea rax,[rdi+rsi]; ret — exactly the 5 bytes a jump patch needs.
uint64_t ut_add(uint64_t a, uint64_t b);
// push rbp; mov rbp,rsp; ... — the classic frame prologue. Returns a*b.
uint64_t ut_frame(uint64_t a, uint64_t b);
// endbr64; push rbx; ... — the patch goes behind the endbr64. Returns a + 2*b.
uint64_t ut_endbr(uint64_t a, uint64_t b);
// mov rax,[rip+ut_data]; ... — a RIP-relative load first. Returns ut_data + a.
uint64_t ut_rip(uint64_t a);
// lock inc qword [rip+ut_counter]; mov rax,rdi; ret — a RIP-relative read-modify-write.
uint64_t ut_count(uint64_t a);
// test rdi,rdi; jz +; ... — a short conditional jump displaced. Returns 2a, or -1 for 0.
uint64_t ut_jcc(uint64_t a);
// call ut_helper; add rax,rdi; ret — a call displaced. Returns 100 + a.
uint64_t ut_call(uint64_t a);
// push rbx; call ut_helper; ... — a call as the last displaced instruction. Returns 100 + b.
uint64_t ut_push_call(uint64_t a, uint64_t b);
// mov rax,rdi; ret — shorter than the patch (4 bytes), followed directly by ut_after.
uint64_t ut_short(uint64_t a);
uint64_t ut_after();  // returns 42
// xor eax,eax; L: add rax,rdi; dec rsi; jnz L; ret — a jump target 2 bytes in. Returns a*b (b > 0).
uint64_t ut_target(uint64_t a, uint64_t b);
// mov rcx,rdi; jrcxz +; ... — jrcxz displaced. Returns a + 5, or 7 for 0.
uint64_t ut_jrcxz(uint64_t a);
// mulsd xmm0,xmm1; ret — floating-point arguments and return value.
double ut_fmul(double a, double b);
// A 1-byte nop at ut_nop_site_point inside the function, instructions enough behind it. Returns a+1.
uint64_t ut_nop_site(uint64_t a);
extern const uint8_t ut_nop_site_point[], ut_nop_site_end[];
// The nop at ut_nop_indirect_point followed by a label an indirect jmp reaches. Returns 9.
uint64_t ut_nop_indirect(uint64_t a);
extern const uint8_t ut_nop_indirect_point[], ut_nop_indirect_end[];
// The nop at ut_nop_call_point followed by `call rsi` (2 bytes). Returns f() + a.
uint64_t ut_nop_call(uint64_t a, uint64_t (*f)());
extern const uint8_t ut_nop_call_point[], ut_nop_call_end[];
uint64_t ut_helper();  // returns 100
// jmp short +; ud2; lea rax,[rdi+3]; ret — a short jump first (a terminator: breakpoint).
uint64_t ut_jmp_first(uint64_t a);
// mov eax,ecx; syscall; mov rdi,rax; ... — system call `nr` with (a, b, c): a thread blocked in it
// stops inside the bytes a jump patch displaces. Returns the call's result.
int64_t ut_syscall(uint64_t a, uint64_t b, uint64_t c, uint64_t nr);
// Returns the flags after `cmp a, b` (with DF set when c != 0), read behind ut_flags_point, an
// instruction inside the function (a mov, which leaves the flags alone).
uint64_t ut_flags(uint64_t a, uint64_t b, uint64_t c);
extern const uint8_t ut_flags_point[];
// out[0..3] = in[0..3] + in[4..7], computed by ut_ymm_add on ymm registers (AVX only).
void ut_ymm_call(const double in[8], double out[4]);
uint64_t ut_ymm_add();

extern const uint8_t ut_add_end[], ut_frame_end[], ut_endbr_end[], ut_rip_end[], ut_count_end[], ut_jcc_end[],
    ut_call_end[], ut_push_call_end[], ut_short_end[], ut_after_end[], ut_target_end[], ut_jrcxz_end[],
    ut_fmul_end[], ut_jmp_first_end[], ut_syscall_end[], ut_ymm_add_end[];
extern uint64_t ut_data;
extern uint64_t ut_counter;
}

inline uintptr_t ut_addr(const void* f) { return reinterpret_cast<uintptr_t>(f); }
inline size_t ut_size(const void* f, const uint8_t* end) { return static_cast<size_t>(end - static_cast<const uint8_t*>(f)); }
#define UT_FN(name) ut_addr(reinterpret_cast<const void*>(&name)), ut_size(reinterpret_cast<const void*>(&name), name##_end)
