// The assembly targets of the function-hook tests (declared in uprobe_targets.hpp).
#include "uprobe_targets.hpp"

#define UT_BEGIN(name) ".p2align 4\n .globl " #name "\n .hidden " #name "\n .type " #name ",@function\n" #name ":\n"
#define UT_END(name) ".globl " #name "_end\n .hidden " #name "_end\n" #name "_end:\n .size " #name ", .-" #name "\n"

asm(".pushsection .data\n .p2align 3\n"
    ".globl ut_data\n .hidden ut_data\n ut_data: .quad 1000\n"
    ".globl ut_counter\n .hidden ut_counter\n ut_counter: .quad 0\n"
    ".popsection\n"
    ".pushsection .text\n .intel_syntax noprefix\n"
    UT_BEGIN(ut_add) "lea rax, [rdi+rsi]\n ret\n" UT_END(ut_add)
    UT_BEGIN(ut_frame) "push rbp\n mov rbp, rsp\n mov rax, rdi\n imul rax, rsi\n pop rbp\n ret\n" UT_END(ut_frame)
    UT_BEGIN(ut_endbr) "endbr64\n push rbx\n mov rbx, rdi\n lea rax, [rbx+rsi*2]\n pop rbx\n ret\n" UT_END(ut_endbr)
    UT_BEGIN(ut_rip) "mov rax, qword ptr [rip+ut_data]\n add rax, rdi\n ret\n" UT_END(ut_rip)
    UT_BEGIN(ut_count) "lock inc qword ptr [rip+ut_counter]\n mov rax, rdi\n ret\n" UT_END(ut_count)
    UT_BEGIN(ut_jcc) "test rdi, rdi\n jz 1f\n lea rax, [rdi+rdi]\n ret\n1:\n mov rax, -1\n ret\n" UT_END(ut_jcc)
    UT_BEGIN(ut_helper) "mov eax, 100\n ret\n" UT_END(ut_helper)
    UT_BEGIN(ut_call) "call ut_helper\n add rax, rdi\n ret\n" UT_END(ut_call)
    UT_BEGIN(ut_push_call) "push rbx\n call ut_helper\n pop rbx\n add rax, rsi\n ret\n" UT_END(ut_push_call)
    // ut_short and ut_after are adjacent: a jump patch on ut_short would overwrite ut_after.
    UT_BEGIN(ut_short) "mov rax, rdi\n ret\n" UT_END(ut_short)
    ".globl ut_after\n .hidden ut_after\n .type ut_after,@function\n ut_after:\n mov eax, 42\n ret\n" UT_END(ut_after)
    UT_BEGIN(ut_target) "xor eax, eax\n1:\n add rax, rdi\n dec rsi\n jnz 1b\n ret\n" UT_END(ut_target)
    UT_BEGIN(ut_jrcxz) "mov rcx, rdi\n jrcxz 1f\n lea rax, [rcx+5]\n ret\n1:\n mov eax, 7\n ret\n" UT_END(ut_jrcxz)
    UT_BEGIN(ut_fmul) "mulsd xmm0, xmm1\n ret\n" UT_END(ut_fmul)
    // A 1-byte nop inside a function (a USDT site's shape) at ut_nop_site, with room behind it.
    UT_BEGIN(ut_nop_site) "push rbx\n mov rbx, rdi\n"
    ".globl ut_nop_site_point\n .hidden ut_nop_site_point\n ut_nop_site_point:\n nop\n"
    "lea rax, [rbx+1]\n pop rbx\n ret\n" UT_END(ut_nop_site)
    // The same nop where an indirect jump (a jump table's shape) lands right behind it.
    // (The label's address is computed from another one: a RIP-relative operand naming it directly
    // would already count as a jump target.)
    UT_BEGIN(ut_nop_indirect) "lea rcx, [rip+.Lni_end]\n"
    ".globl ut_nop_indirect_point\n .hidden ut_nop_indirect_point\n ut_nop_indirect_point:\n nop\n"
    ".Lni_back:\n test rdi, rdi\n jz .Lni_end\n xor edi, edi\n sub rcx, .Lni_end - .Lni_back\n jmp rcx\n"
    ".Lni_end:\n mov eax, 9\n ret\n" UT_END(ut_nop_indirect)
    // The same nop followed by a short call: a thread in the callee would return into a jump patch.
    UT_BEGIN(ut_nop_call) "push rbx\n mov rbx, rdi\n"
    ".globl ut_nop_call_point\n .hidden ut_nop_call_point\n ut_nop_call_point:\n nop\n"
    "call rsi\n add rax, rbx\n pop rbx\n ret\n" UT_END(ut_nop_call)
    UT_BEGIN(ut_jmp_first) "jmp 1f\n ud2\n1:\n lea rax, [rdi+3]\n ret\n" UT_END(ut_jmp_first)
    // A system call inside the bytes a jump patch displaces: a thread blocked in it has its ip there.
    UT_BEGIN(ut_syscall) "mov eax, ecx\n syscall\n mov rdi, rax\n mov rax, rdi\n ret\n" UT_END(ut_syscall)
    // Flags live across a hook inside a function: cmp sets them, the hook point is the mov (7 bytes,
    // flags untouched), the function returns the flags it then has (DF set too, when rdx != 0).
    UT_BEGIN(ut_flags) "test rdx, rdx\n jz 1f\n std\n1:\n cmp rdi, rsi\n"
    ".globl ut_flags_point\n .hidden ut_flags_point\n ut_flags_point:\n mov rax, 0\n pushfq\n pop rax\n cld\n ret\n"
    UT_END(ut_flags)
    // 256-bit arguments and result: ut_ymm_call loads ymm0/ymm1 and calls ut_ymm_add (5 bytes).
    UT_BEGIN(ut_ymm_add) "vaddpd ymm0, ymm0, ymm1\n ret\n" UT_END(ut_ymm_add)
    UT_BEGIN(ut_ymm_call) "vmovupd ymm0, [rdi]\n vmovupd ymm1, [rdi+32]\n push rsi\n call ut_ymm_add\n pop rsi\n"
    "vmovupd [rsi], ymm0\n vzeroupper\n ret\n" UT_END(ut_ymm_call)
    ".att_syntax prefix\n .popsection\n");
