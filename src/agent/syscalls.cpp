// System-call programs inside the traced process (syscalls.hpp; docs/tracing.md, "System calls in the
// agent").
//
//   dispatch page  a memfd mapped twice: executable (the range the seccomp filter allows and Syscall
//                  User Dispatch exempts) and writable (where stubs are written). It holds the gate
//                  (a function issuing one syscall: the handler's syscalls on the thread's behalf),
//                  the SIGSYS handler's sa_restorer (rt_sigreturn) and redirect stubs.
//   handler        SIGSYS (SA_NODEFER: a syscall the handler itself makes may trap again and is then
//                  issued as is). Entry programs run (bpf_override_return honoured), the syscall is
//                  issued through the gate, exit programs run, the result goes into the ucontext.
//   redirects      syscalls that cannot be issued from inside a signal handler -- rt_sigreturn, clone,
//                  clone3, fork, vfork, execve, execveat, exit, exit_group -- run their entry programs,
//                  then the thread leaves the handler into a stub "syscall; jmp back" on the dispatch
//                  page: the syscall runs in the thread's own context. When exit programs watch the
//                  syscall, the stub runs them after it returns, as the kernel's sys_exit fires: in
//                  the parent and in the new thread or forked child (result 0) of clone, clone3 and
//                  fork, in the parent of vfork, for an execve that fails. (A successful execve's
//                  exit fires in the new image before the agent is there, rt_sigreturn never
//                  returns to the stub, exit and exit_group have no exit event.) A new thread or
//                  forked child passes through the agent first (its SUD is switched on, its cached
//                  ids reset).
//   signals        rt_sigprocmask and rt_sigaction are emulated so that SIGSYS is never blocked (a
//                  blocked SIGSYS from a trap kills the process): SIGSYS is removed from every mask
//                  set, and the application's own SIGSYS action is kept aside and called for the
//                  SIGSYS that are not the agent's (its own seccomp filter's traps, kill -SYS).
#include "agent/syscalls.hpp"

#include "agent/syscall_sites.hpp"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <vector>

#include "bpfvm/helpers.hpp"
#include "hooks/uprobe/patch.hpp"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

// The gate and the restorer, copied to the dispatch page (position independent).
//   gate(nr, a0, a1, a2, a3, a4, a5): the System V call registers moved to the syscall's.
extern "C" char bpfvm_sysgate_begin[], bpfvm_sysgate_restorer[], bpfvm_sysgate_end[];
asm(".pushsection .rodata\n"
    ".globl bpfvm_sysgate_begin\n.hidden bpfvm_sysgate_begin\n"
    ".globl bpfvm_sysgate_restorer\n.hidden bpfvm_sysgate_restorer\n"
    ".globl bpfvm_sysgate_end\n.hidden bpfvm_sysgate_end\n"
    "bpfvm_sysgate_begin:\n"
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rdi\n"
    "  mov %rdx, %rsi\n"
    "  mov %rcx, %rdx\n"
    "  mov %r8, %r10\n"
    "  mov %r9, %r8\n"
    "  mov 8(%rsp), %r9\n"
    "  syscall\n"
    "  ret\n"
    "  .balign 32, 0xcc\n"
    "bpfvm_sysgate_restorer:\n"
    "  mov $15, %eax\n"
    "  syscall\n"
    "  hlt\n"
    "bpfvm_sysgate_end:\n"
    ".popsection\n");

// A new thread or forked child leaving a redirect stub: every register kept (the red zone of a
// forked child's function skipped, the SSE state saved), then bpfvm_sys_child_init.
extern "C" void bpfvm_sys_child_entry();
extern "C" __attribute__((visibility("hidden"))) void bpfvm_sys_child_init() noexcept;
asm(".pushsection .text\n"
    ".globl bpfvm_sys_child_entry\n.hidden bpfvm_sys_child_entry\n"
    ".type bpfvm_sys_child_entry,@function\n"
    "bpfvm_sys_child_entry:\n"
    "  lea -128(%rsp), %rsp\n"
    "  push %rax\n  push %rcx\n  push %rdx\n  push %rsi\n  push %rdi\n"
    "  push %r8\n  push %r9\n  push %r10\n  push %r11\n  push %rbp\n"
    "  pushfq\n"
    "  mov %rsp, %rbp\n"
    "  and $-64, %rsp\n"
    "  sub $512, %rsp\n"
    "  fxsave64 (%rsp)\n"
    "  call bpfvm_sys_child_init\n"
    "  fxrstor64 (%rsp)\n"
    "  mov %rbp, %rsp\n"
    "  popfq\n"
    "  pop %rbp\n  pop %r11\n  pop %r10\n  pop %r9\n  pop %r8\n"
    "  pop %rdi\n  pop %rsi\n  pop %rdx\n  pop %rcx\n  pop %rax\n"
    "  lea 128(%rsp), %rsp\n"
    "  ret\n"
    ".size bpfvm_sys_child_entry, .-bpfvm_sys_child_entry\n"
    ".popsection\n");

// A redirect stub's exit programs: called with r11 = the syscall number, rax = its result, rcx =
// the address the syscall returns to (what the kernel leaves in rcx), the red zone already skipped.
// Builds struct pt_regs on the stack (sp: the thread's stack pointer at the syscall), saves the SSE
// state, runs bpfvm_sys_exit_run(regs) and restores every register.
extern "C" void bpfvm_sys_exit_entry();
extern "C" __attribute__((visibility("hidden"))) void bpfvm_sys_exit_run(uint64_t* regs) noexcept;
asm(".pushsection .text\n"
    ".globl bpfvm_sys_exit_entry\n.hidden bpfvm_sys_exit_entry\n"
    ".type bpfvm_sys_exit_entry,@function\n"
    "bpfvm_sys_exit_entry:\n"
    "  sub $168, %rsp\n"
    "  mov %r15, 0(%rsp)\n  mov %r14, 8(%rsp)\n  mov %r13, 16(%rsp)\n  mov %r12, 24(%rsp)\n"
    "  mov %rbp, 32(%rsp)\n  mov %rbx, 40(%rsp)\n  mov %r11, 48(%rsp)\n  mov %r10, 56(%rsp)\n"
    "  mov %r9, 64(%rsp)\n  mov %r8, 72(%rsp)\n  mov %rax, 80(%rsp)\n  mov %rcx, 88(%rsp)\n"
    "  mov %rdx, 96(%rsp)\n  mov %rsi, 104(%rsp)\n  mov %rdi, 112(%rsp)\n  mov %r11, 120(%rsp)\n"
    "  mov %rcx, 128(%rsp)\n  movq $0x33, 136(%rsp)\n"
    "  pushfq\n  popq 144(%rsp)\n"
    "  lea 304(%rsp), %rax\n  mov %rax, 152(%rsp)\n"  // 168 + the return address + the red zone
    "  movq $0x2b, 160(%rsp)\n"
    "  mov %rsp, %rbp\n"
    "  and $-64, %rsp\n"
    "  sub $512, %rsp\n"
    "  fxsave64 (%rsp)\n"
    "  cld\n"
    "  mov %rbp, %rdi\n"
    "  call bpfvm_sys_exit_run\n"
    "  fxrstor64 (%rsp)\n"
    "  mov %rbp, %rsp\n"
    "  pushq 144(%rsp)\n  popfq\n"
    "  mov 0(%rsp), %r15\n  mov 8(%rsp), %r14\n  mov 16(%rsp), %r13\n  mov 24(%rsp), %r12\n"
    "  mov 32(%rsp), %rbp\n  mov 40(%rsp), %rbx\n  mov 48(%rsp), %r11\n  mov 56(%rsp), %r10\n"
    "  mov 64(%rsp), %r9\n  mov 72(%rsp), %r8\n  mov 80(%rsp), %rax\n  mov 88(%rsp), %rcx\n"
    "  mov 96(%rsp), %rdx\n  mov 104(%rsp), %rsi\n  mov 112(%rsp), %rdi\n"
    "  add $168, %rsp\n"
    "  ret\n"
    ".size bpfvm_sys_exit_entry, .-bpfvm_sys_exit_entry\n"
    ".popsection\n");

namespace bpfvm::agent_syscalls {

namespace {

constexpr size_t kPageBytes = 1 << 20;  // the dispatch page(s): 1 MiB, 1 MiB-aligned
constexpr size_t kRestorerAt = 64;
constexpr size_t kStubsAt = 128;
constexpr size_t kStubBytes = 96;
constexpr uint32_t kTrapData = 0x4256;  // SECCOMP_RET_DATA of the agent's filter (si_errno)
constexpr int kEnableMagic = 0x42565355, kDisableMagic = 0x42565344;

using Gate = long (*)(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

// The kernel's struct sigaction (rt_sigaction).
struct KSigaction {
  uint64_t handler = 0;
  uint64_t flags = 0;
  uint64_t restorer = 0;
  uint64_t mask = 0;
};

struct State {
  std::atomic<SyscallHooks*> hooks{nullptr};  // nullptr after detach(): syscalls pass through
  const std::atomic<uint32_t>* enabled = nullptr;
  SyscallMechanism mech = SyscallMechanism::Sud;
  uint8_t* code = nullptr;  // executable view
  uint8_t* rw = nullptr;    // writable view
  Gate gate = nullptr;
  std::atomic<size_t> next_stub{kStubsAt};
  KSigaction app_sigsys;  // the application's SIGSYS action (set through the emulated rt_sigaction)
  bool handler_in = false;  // the agent's SIGSYS handler is the installed action
  // Signals whose action the application set with SIGSYS in its mask (the agent removed it there):
  // put back when the hooks are switched off.
  std::atomic<uint64_t> sigsys_masked_actions{0};
  std::atomic<bool> sud_on{false};
  bool stragglers = false;  // a thread missed a switch signal: it may still have one pending
  static constexpr int kAcks = 4096;
  std::atomic<int> n_acked{0};
  std::atomic<int> acked[kAcks] = {};  // threads that switched (signal_threads)
  std::atomic<uint64_t> events{0};
  std::atomic<int> in_programs{0};  // threads running the hooks' programs (detach waits for them)
  int32_t pid = 0;
};
State* g = nullptr;

// The hooks when programs may run now (counted in in_programs until programs_done()), else nullptr.
SyscallHooks* programs_begin() {
  g->in_programs.fetch_add(1);
  SyscallHooks* h = g->hooks.load();
  if (!h || (g->enabled && g->enabled->load(std::memory_order_relaxed) == 0)) {
    g->in_programs.fetch_sub(1);
    return nullptr;
  }
  return h;
}
void programs_done() { g->in_programs.fetch_sub(1); }

struct ThreadSys {
  int32_t tid;
  uint8_t busy;  // programs run on this thread: its syscalls are issued unhooked
  volatile char selector;
  uint8_t wants_sigsys_blocked;  // the application's mask has SIGSYS (kept out of the real one)
};
__attribute__((tls_model("initial-exec"))) thread_local ThreadSys t_sys{0, 0, SYSCALL_DISPATCH_FILTER_ALLOW, 0};

long gate(long nr, long a0 = 0, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0) {
  return g->gate(nr, a0, a1, a2, a3, a4, a5);
}

int32_t my_tid() {
  if (t_sys.tid == 0) t_sys.tid = static_cast<int32_t>(gate(SYS_gettid));
  return t_sys.tid;
}

// ---- redirect stubs ---------------------------------------------------------------------------------

// Stubs by (return address, variant): never removed (a thread may be inside one).
constexpr size_t kStubSlots = 8192;
struct StubSlot {
  std::atomic<uint64_t> key{0};
  std::atomic<uint32_t> at{0};
};
StubSlot g_stubs[kStubSlots];

enum class Stub : uint8_t {
  Plain,       // syscall; jmp ret
  Child,       // syscall; call the agent when rax == 0 (the new thread or process); jmp ret
  Int80,       // int $0x80; jmp ret (an i386 system call, which Syscall User Dispatch traps as well)
  ChildExit,   // Child, then the exit programs (in the parent and in the child)
  ParentExit,  // syscall; the exit programs unless rax == 0 (a vfork-like child); jmp ret
};

// The stub of `kind` for syscall `nr` returning to `ret`. 0 when the page is full.
uint64_t stub_for(uint64_t ret, Stub kind, int64_t nr = 0) {
  const bool child = kind == Stub::Child || kind == Stub::ChildExit;
  const bool exits = kind == Stub::ChildExit || kind == Stub::ParentExit;
  if (!exits) nr = 0;
  const uint64_t key = ret | static_cast<uint64_t>(nr & 0x7ff) << 48 | (static_cast<uint64_t>(kind) + 1) << 59;
  size_t i = (key * 0x9E3779B97F4A7C15ull >> 51) & (kStubSlots - 1);
  for (size_t n = 0; n < kStubSlots; ++n, i = (i + 1) & (kStubSlots - 1)) {
    uint64_t k = g_stubs[i].key.load(std::memory_order_acquire);
    if (k == 0) {
      if (!g_stubs[i].key.compare_exchange_strong(k, key, std::memory_order_acq_rel)) {
        if (k != key) continue;
      } else {
        size_t at = g->next_stub.fetch_add(kStubBytes);
        if (at + kStubBytes > kPageBytes) {
          g_stubs[i].at.store(UINT32_MAX, std::memory_order_release);
          return 0;
        }
        uint8_t* p = g->rw + at;
        size_t o = 0;
        // rip-relative references to the data words after the code: (where the disp32 is, which word)
        struct Ref {
          size_t at;
          int word;  // 0 = ret, 1 = the child entry, 2 = the exit entry
        } refs[4];
        int nrefs = 0;
        auto ref = [&](int word) {
          refs[nrefs++] = {o, word};
          std::memset(p + o, 0, 4), o += 4;
        };
        if (kind == Stub::Int80)
          p[o++] = 0xcd, p[o++] = 0x80;  // int $0x80
        else
          p[o++] = 0x0f, p[o++] = 0x05;  // syscall
        if (child) {
          p[o++] = 0x48, p[o++] = 0x85, p[o++] = 0xc0;  // test rax, rax
          p[o++] = 0x75, p[o++] = 0x06;                 // jnz +6
          p[o++] = 0xff, p[o++] = 0x15;                 // call [rip + child entry]
          ref(1);
        }
        if (exits) {
          constexpr uint8_t kExitBytes = 5 + 6 + 7 + 6 + 8;
          if (!child) {
            p[o++] = 0x48, p[o++] = 0x85, p[o++] = 0xc0;  // test rax, rax
            p[o++] = 0x74, p[o++] = kExitBytes;           // jz over the exit programs
          }
          p[o++] = 0x48, p[o++] = 0x8d, p[o++] = 0x64, p[o++] = 0x24, p[o++] = 0x80;  // lea -128(rsp), rsp
          const uint32_t nr32 = static_cast<uint32_t>(nr);
          p[o++] = 0x41, p[o++] = 0xbb;  // mov $nr, r11d
          std::memcpy(p + o, &nr32, 4), o += 4;
          p[o++] = 0x48, p[o++] = 0x8b, p[o++] = 0x0d;  // mov rcx, [rip + ret]
          ref(0);
          p[o++] = 0xff, p[o++] = 0x15;  // call [rip + exit entry]
          ref(2);
          p[o++] = 0x48, p[o++] = 0x8d, p[o++] = 0xa4, p[o++] = 0x24;  // lea 128(rsp), rsp
          const uint32_t d128 = 128;
          std::memcpy(p + o, &d128, 4), o += 4;
        }
        p[o++] = 0xff, p[o++] = 0x25;  // jmp [rip + ret]
        ref(0);
        const uint64_t words[3] = {ret, reinterpret_cast<uint64_t>(&bpfvm_sys_child_entry),
                                   reinterpret_cast<uint64_t>(&bpfvm_sys_exit_entry)};
        size_t word_at[3];
        for (int w = 0; w < 3; ++w) {
          word_at[w] = o;
          std::memcpy(p + o, &words[w], 8), o += 8;
        }
        for (int r = 0; r < nrefs; ++r) {
          const int32_t disp = static_cast<int32_t>(word_at[refs[r].word]) - static_cast<int32_t>(refs[r].at + 4);
          std::memcpy(p + refs[r].at, &disp, 4);
        }
        g_stubs[i].at.store(static_cast<uint32_t>(at), std::memory_order_release);
        return reinterpret_cast<uint64_t>(g->code + at);
      }
    }
    if (k != key) continue;
    uint32_t at;
    while ((at = g_stubs[i].at.load(std::memory_order_acquire)) == 0) __builtin_ia32_pause();
    return at == UINT32_MAX ? 0 : reinterpret_cast<uint64_t>(g->code + at);
  }
  return 0;
}

// ---- the task programs run for: this thread --------------------------------------------------------

class ThreadTask final : public TracedTask {
 public:
  uint32_t tid() const override { return static_cast<uint32_t>(my_tid()); }
  uint32_t tgid() const override { return static_cast<uint32_t>(g->pid); }
  uint64_t uid_gid() override {
    return (static_cast<uint64_t>(gate(SYS_getgid)) << 32) | static_cast<uint32_t>(gate(SYS_getuid));
  }
  void comm(char out[16]) override {
    char name[17] = {};
    std::memset(out, 0, 16);
    if (gate(SYS_prctl, PR_GET_NAME, reinterpret_cast<long>(name)) == 0) std::memcpy(out, name, 15);
  }
  long read_user(void* dst, uint64_t addr, size_t len) override {
    return safe_read(dst, reinterpret_cast<const void*>(addr), len);
  }
  long read_user_str(char* dst, uint64_t addr, size_t size) override {
    return safe_read_str(dst, reinterpret_cast<const void*>(addr), size);
  }
  long send_signal(int sig, bool thread_only) override {
    long r = thread_only ? gate(SYS_tgkill, g->pid, my_tid(), sig) : gate(SYS_kill, g->pid, sig);
    return r;
  }
};

// ---- Syscall User Dispatch ----------------------------------------------------------------------------

long sud_switch(bool on) {
  t_sys.selector = on ? SYSCALL_DISPATCH_FILTER_BLOCK : SYSCALL_DISPATCH_FILTER_ALLOW;
  if (!on) return gate(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
  return gate(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, reinterpret_cast<long>(g->code),
              static_cast<long>(kPageBytes), reinterpret_cast<long>(&t_sys.selector));
}

// ---- the handler -----------------------------------------------------------------------------------

// The interrupted thread's registers as unsigned words.
uint64_t greg(const ucontext_t* uc, int r) { return static_cast<uint64_t>(uc->uc_mcontext.gregs[r]); }
void set_greg(ucontext_t* uc, int r, uint64_t v) { uc->uc_mcontext.gregs[r] = static_cast<greg_t>(v); }

void regs_from_uc(ucontext_t* uc, int64_t nr, SyscallRegs& r) {
  uint64_t* w = r.words;
  w[0] = greg(uc, REG_R15), w[1] = greg(uc, REG_R14), w[2] = greg(uc, REG_R13), w[3] = greg(uc, REG_R12);
  w[4] = greg(uc, REG_RBP), w[5] = greg(uc, REG_RBX), w[6] = greg(uc, REG_R11), w[7] = greg(uc, REG_R10);
  w[8] = greg(uc, REG_R9), w[9] = greg(uc, REG_R8), w[10] = static_cast<uint64_t>(-ENOSYS);
  w[11] = greg(uc, REG_RCX), w[12] = greg(uc, REG_RDX), w[13] = greg(uc, REG_RSI), w[14] = greg(uc, REG_RDI);
  w[15] = static_cast<uint64_t>(nr), w[16] = greg(uc, REG_RIP), w[17] = 0x33, w[18] = greg(uc, REG_EFL);
  w[19] = greg(uc, REG_RSP), w[20] = 0x2b;
}

long args_gate(ucontext_t* uc, int64_t nr) {
  return gate(nr, static_cast<long>(greg(uc, REG_RDI)), static_cast<long>(greg(uc, REG_RSI)),
              static_cast<long>(greg(uc, REG_RDX)), static_cast<long>(greg(uc, REG_R10)),
              static_cast<long>(greg(uc, REG_R8)), static_cast<long>(greg(uc, REG_R9)));
}

constexpr uint64_t kSigsysBit = 1ull << (SIGSYS - 1);
constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));

uint64_t& uc_mask(ucontext_t* uc) { return *reinterpret_cast<uint64_t*>(&uc->uc_sigmask); }

// rt_sigprocmask(how, set, oldset, sigsetsize) of the interrupted thread: its mask is the one the
// handler's sigreturn restores (uc_sigmask); SIGSYS never enters it.
long emulate_sigprocmask(ucontext_t* uc) {
  long how = static_cast<long>(greg(uc, REG_RDI));
  uint64_t set = greg(uc, REG_RSI), oldset = greg(uc, REG_RDX);
  if (greg(uc, REG_R10) != 8) return -EINVAL;
  uint64_t old = uc_mask(uc) | (t_sys.wants_sigsys_blocked ? kSigsysBit : 0), want = 0;
  if (set) {
    if (safe_read(&want, reinterpret_cast<const void*>(set), 8) != 0) return -EFAULT;
    if (how != SIG_BLOCK && how != SIG_UNBLOCK && how != SIG_SETMASK) return -EINVAL;
  }
  if (oldset) {
    // The kernel's put_user: a bad pointer fails the call (with the mask not changed).
    struct iovec l{&old, 8}, r{reinterpret_cast<void*>(oldset), 8};
    if (gate(SYS_process_vm_writev, g->pid, reinterpret_cast<long>(&l), 1, reinterpret_cast<long>(&r), 1, 0) != 8)
      return -EFAULT;
  }
  if (set) {
    uint64_t m = how == SIG_BLOCK ? (old | want) : how == SIG_UNBLOCK ? (old & ~want) : want;
    uc_mask(uc) = m & ~(kSigsysBit | kUnblockable);
    t_sys.wants_sigsys_blocked = (m & kSigsysBit) != 0;
  }
  return 0;
}

// rt_sigaction(sig, act, oact, sigsetsize): SIGSYS's action is kept aside (the agent's handler stays);
// SIGSYS is removed from the masks other handlers block.
long emulate_sigaction(ucontext_t* uc) {
  long sig = static_cast<long>(greg(uc, REG_RDI));
  uint64_t act = greg(uc, REG_RSI), oact = greg(uc, REG_RDX);
  if (greg(uc, REG_R10) != 8) return -EINVAL;
  KSigaction a;
  if (act && safe_read(&a, reinterpret_cast<const void*>(act), sizeof a) != 0) return -EFAULT;
  if (sig != SIGSYS) {
    if (!act) return args_gate(uc, SYS_rt_sigaction);
    const bool had = a.mask & kSigsysBit;
    a.mask &= ~kSigsysBit;
    long r = gate(SYS_rt_sigaction, sig, reinterpret_cast<long>(&a), static_cast<long>(oact), 8);
    if (r == 0 && sig >= 1 && sig <= 64) {
      const uint64_t bit = 1ull << (sig - 1);
      if (had) g->sigsys_masked_actions.fetch_or(bit);
      else g->sigsys_masked_actions.fetch_and(~bit);
    }
    return r;
  }
  if (oact) {
    KSigaction old = g->app_sigsys;
    struct iovec l{&old, sizeof old}, r{reinterpret_cast<void*>(oact), sizeof old};
    if (gate(SYS_process_vm_writev, g->pid, reinterpret_cast<long>(&l), 1, reinterpret_cast<long>(&r), 1, 0) !=
        static_cast<long>(sizeof old))
      return -EFAULT;
  }
  if (act) g->app_sigsys = a;
  return 0;
}

// A SIGSYS that is not the agent's: the application's action.
void chain(int sig, siginfo_t* si, void* ucv) {
  const KSigaction a = g->app_sigsys;
  if (a.handler == reinterpret_cast<uint64_t>(SIG_IGN) && si->si_code <= 0) return;  // sent, ignored
  if (a.handler == reinterpret_cast<uint64_t>(SIG_DFL) || a.handler == reinterpret_cast<uint64_t>(SIG_IGN)) {
    // As without the agent: the default action (a trap of the application's own filter kills).
    KSigaction dfl;
    gate(SYS_rt_sigaction, SIGSYS, reinterpret_cast<long>(&dfl), 0, 8);
    gate(SYS_tgkill, g->pid, my_tid(), SIGSYS);
    return;
  }
  if (a.flags & SA_SIGINFO)
    reinterpret_cast<void (*)(int, siginfo_t*, void*)>(a.handler)(sig, si, ucv);
  else
    reinterpret_cast<void (*)(int)>(a.handler)(sig);
}

bool redirect(ucontext_t* uc, Stub kind, int64_t nr = 0) {
  uint64_t stub = stub_for(greg(uc, REG_RIP), kind, nr);
  if (!stub) return false;
  set_greg(uc, REG_RIP, stub);
  return true;
}

void on_sigsys(int sig, siginfo_t* si, void* ucv) {
  const int saved_errno = errno;
  auto* uc = static_cast<ucontext_t*>(ucv);
  if (si->si_code == SI_QUEUE && si->si_pid == g->pid &&
      (si->si_value.sival_int == kEnableMagic || si->si_value.sival_int == kDisableMagic)) {
    // A late one (the thread had SIGSYS blocked when it was sent) switches to the current state.
    const bool on = g->sud_on.load();
    sud_switch(on);
    if (on) t_sys.wants_sigsys_blocked = 0;  // delivered: SIGSYS was not blocked
    // Switched off: the mask the application asked for comes back (SIGSYS in it when it said so).
    if (!on && t_sys.wants_sigsys_blocked) uc_mask(uc) |= kSigsysBit;
    int i = g->n_acked.fetch_add(1);
    if (i < State::kAcks) g->acked[i].store(my_tid());
    errno = saved_errno;
    return;
  }
  const bool ours = g->mech == SyscallMechanism::Sud ? si->si_code == SYS_USER_DISPATCH
                                                     : (si->si_code == SYS_SECCOMP && si->si_errno == kTrapData);
  if (!ours) {
    chain(sig, si, ucv);
    errno = saved_errno;
    return;
  }
  const char selector = t_sys.selector;
  t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;  // the handler's own syscalls pass
  const int64_t nr = si->si_syscall;
  if (si->si_arch != AUDIT_ARCH_X86_64) {
    // An i386 system call (int $0x80; only Syscall User Dispatch traps it): issued as it was, from
    // the dispatch page, without programs (the syscall table is x86-64's, as in ptrace mode).
    if (!redirect(uc, Stub::Int80)) set_greg(uc, REG_RAX, static_cast<uint64_t>(-ENOSYS));
    t_sys.selector = selector;
    errno = saved_errno;
    return;
  }
  const uint8_t busy = t_sys.busy;
  // The hooks are taken twice, around the entry programs and around the exit programs, never across
  // the syscall (which may block): a detach waits only for programs that run.
  SyscallHooks* h = busy || uprobe::in_hook() || uprobe::in_quiet() ? nullptr : programs_begin();
  const bool quiet = !h;
  t_sys.busy = 1;  // the handler's own syscalls (that trap again) run no program
  ThreadTask task;
  SyscallRegs regs;
  std::optional<int64_t> override;
  const bool enter = !quiet && h->wants_enter(nr);
  if (enter) {
    regs_from_uc(uc, nr, regs);
    g->events.fetch_add(1, std::memory_order_relaxed);
    override = h->enter(task, regs);
  }
  const bool exit_programs = h && h->wants_exit(nr);
  if (h) programs_done();
  bool redirected = false;
  long ret = 0;
  // Exit programs after a redirected syscall run from its stub (see the top of this file).
  const Stub parent_only = exit_programs ? Stub::ParentExit : Stub::Plain;
  const Stub with_child = exit_programs ? Stub::ChildExit : Stub::Child;
  switch (nr) {
    case SYS_rt_sigreturn:
    case SYS_exit:
    case SYS_exit_group:
      redirected = redirect(uc, Stub::Plain);
      break;
    case SYS_execve:
    case SYS_execveat:
    case SYS_vfork:
      redirected = redirect(uc, parent_only, nr);
      break;
    case SYS_fork:
      redirected = redirect(uc, with_child, nr);
      break;
    case SYS_clone:
    case SYS_clone3: {
      uint64_t flags = greg(uc, REG_RDI);
      if (nr == SYS_clone3 && safe_read(&flags, reinterpret_cast<const void*>(greg(uc, REG_RDI)), 8) != 0) flags = 0;
      // A child sharing the memory but not given TLS of its own (vfork-like) must not touch the
      // parent's thread variables: it leaves unhooked.
      redirected = redirect(uc, (flags & CLONE_VM) && !(flags & CLONE_SETTLS) ? parent_only : with_child, nr);
      break;
    }
    default:
      break;
  }
  if (!redirected) {
    if (override) {
      ret = *override;
    } else if (nr == SYS_rt_sigprocmask) {
      ret = emulate_sigprocmask(uc);
    } else if (nr == SYS_rt_sigaction) {
      ret = emulate_sigaction(uc);
    } else {
      // Signal handlers run while the syscall blocks are hooked as usual.
      t_sys.selector = selector;
      t_sys.busy = busy;
      ret = args_gate(uc, nr);
      t_sys.busy = 1;
      t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    }
    if (exit_programs && (h = programs_begin()) != nullptr) {
      if (h->wants_exit(nr)) {
        if (!enter) regs_from_uc(uc, nr, regs);
        regs.words[10] = static_cast<uint64_t>(ret);
        h->exit(task, nr, regs);
      }
      programs_done();
    }
    set_greg(uc, REG_RAX, static_cast<uint64_t>(ret));
  }
  t_sys.busy = busy;
  t_sys.selector = selector;
  errno = saved_errno;
}

// Syscalls the handler redirects or emulates (never rewritten: they need the trap path).
bool special(int64_t nr) {
  switch (nr) {
    case SYS_rt_sigreturn:
    case SYS_execve:
    case SYS_execveat:
    case SYS_exit:
    case SYS_exit_group:
    case SYS_vfork:
    case SYS_fork:
    case SYS_clone:
    case SYS_clone3:
    case SYS_rt_sigprocmask:
    case SYS_rt_sigaction:
      return true;
    default:
      return false;
  }
}

}  // namespace

void syscall_site_run(uint64_t* frame) noexcept {
  const int saved_errno = errno;
  const char selector = t_sys.selector;
  t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;
  const int64_t nr = static_cast<int64_t>(frame[15]);
  const uint8_t busy = t_sys.busy;
  // The hooks are taken twice, around the entry programs and around the exit programs, never across
  // the syscall (which may block): a detach waits only for programs that run.
  SyscallHooks* h = busy || uprobe::in_hook() || uprobe::in_quiet() ? nullptr : programs_begin();
  const bool quiet = !h;
  t_sys.busy = 1;
  ThreadTask task;
  SyscallRegs regs;
  std::memcpy(regs.words, frame, sizeof regs.words);
  std::optional<int64_t> override;
  if (!quiet && h->wants_enter(nr)) {
    g->events.fetch_add(1, std::memory_order_relaxed);
    override = h->enter(task, regs);
  }
  const bool exit_programs = h && h->wants_exit(nr);
  if (h) programs_done();
  long ret;
  if (override) {
    ret = *override;
  } else {
    t_sys.selector = selector;
    t_sys.busy = busy;
    ret = gate(nr, static_cast<long>(frame[14]), static_cast<long>(frame[13]), static_cast<long>(frame[12]),
               static_cast<long>(frame[7]), static_cast<long>(frame[9]), static_cast<long>(frame[8]));
    t_sys.busy = 1;
    t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;
  }
  if (exit_programs && (h = programs_begin()) != nullptr) {
    if (h->wants_exit(nr)) {
      regs.words[10] = static_cast<uint64_t>(ret);
      h->exit(task, nr, regs);
    }
    programs_done();
  }
  frame[10] = static_cast<uint64_t>(ret);
  t_sys.busy = busy;
  t_sys.selector = selector;
  errno = saved_errno;
}

namespace {

// ---- installation ------------------------------------------------------------------------------------

Status map_dispatch_page() {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "bpfvm-syscalls", MFD_CLOEXEC));
  if (fd < 0) return make_error(ErrorCode::Io, fmt::format("memfd_create: {}", std::strerror(errno)));
  if (ftruncate(fd, kPageBytes) != 0) {
    close(fd);
    return make_error(ErrorCode::Io, fmt::format("sizing the dispatch page: {}", std::strerror(errno)));
  }
  // 1 MiB aligned (so that its range never crosses a 4 GiB boundary: the filter compares the high
  // half of the address once).
  void* res = mmap(nullptr, 2 * kPageBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* rw = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (res == MAP_FAILED || rw == MAP_FAILED) {
    close(fd);
    return make_error(ErrorCode::Io, fmt::format("mapping the dispatch page: {}", std::strerror(errno)));
  }
  uintptr_t base = (reinterpret_cast<uintptr_t>(res) + kPageBytes - 1) & ~(kPageBytes - 1);
  void* x = mmap(reinterpret_cast<void*>(base), kPageBytes, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0);
  close(fd);
  if (x == MAP_FAILED) return make_error(ErrorCode::Io, fmt::format("mapping the dispatch page: {}", std::strerror(errno)));
  if (base > reinterpret_cast<uintptr_t>(res)) munmap(res, base - reinterpret_cast<uintptr_t>(res));
  uintptr_t end = reinterpret_cast<uintptr_t>(res) + 2 * kPageBytes;
  if (base + kPageBytes < end) munmap(reinterpret_cast<void*>(base + kPageBytes), end - base - kPageBytes);
  g->code = static_cast<uint8_t*>(x);
  g->rw = static_cast<uint8_t*>(rw);
  std::memset(g->rw, 0xcc, kPageBytes);
  std::memcpy(g->rw, bpfvm_sysgate_begin, static_cast<size_t>(bpfvm_sysgate_restorer - bpfvm_sysgate_begin));
  std::memcpy(g->rw + kRestorerAt, bpfvm_sysgate_restorer,
              static_cast<size_t>(bpfvm_sysgate_end - bpfvm_sysgate_restorer));
  g->gate = reinterpret_cast<Gate>(g->code);
  return {};
}

Status install_handler() {
  KSigaction a, old;
  a.handler = reinterpret_cast<uint64_t>(&on_sigsys);
  a.flags = SA_SIGINFO | SA_NODEFER | SA_RESTORER | SA_RESTART;
  a.restorer = reinterpret_cast<uint64_t>(g->code + kRestorerAt);
  a.mask = 0;
  long r = gate(SYS_rt_sigaction, SIGSYS, reinterpret_cast<long>(&a), reinterpret_cast<long>(&old), 8);
  if (r != 0) return make_error(ErrorCode::Io, fmt::format("installing the SIGSYS handler: {}", std::strerror(static_cast<int>(-r))));
  g->app_sigsys = old;
  g->handler_in = true;
  return {};
}

// The filter: the syscalls of other ABIs, and those issued from the dispatch page, pass; the watched
// ones (`all`: every one), rt_sigprocmask that set a mask, and rt_sigaction that set an action or
// concern SIGSYS trap.
// Every jump is short (each test is followed by its own return).
Status install_filter(const std::vector<int32_t>& nrs, bool all) {
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(sock_filter{code, 0, 0, k}); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(sock_filter{code, jt, jf, k}); };
  const uint64_t lo = reinterpret_cast<uint64_t>(g->code);
  const uint32_t trap = SECCOMP_RET_TRAP | kTrapData;
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, instruction_pointer) + 4);
  jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(lo >> 32), 0, 4);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, instruction_pointer));
  jump(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(lo), 0, 2);
  jump(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(lo) + static_cast<uint32_t>(kPageBytes), 1, 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);  // issued from the dispatch page
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  jump(BPF_JMP | BPF_JSET | BPF_K, 0x40000000, 0, 1);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);  // x32
  if (all) {
    stmt(BPF_RET | BPF_K, trap);
  } else {
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigprocmask, 0, 6);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1]));
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1]) + 4);
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0);
    stmt(BPF_RET | BPF_K, trap);  // a mask is set
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    // rt_sigaction: any call on SIGSYS (its action is the application's kept aside), or one that sets
    // an action (SIGSYS leaves its mask).
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigaction, 0, 8);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0]));
    jump(BPF_JMP | BPF_JEQ | BPF_K, SIGSYS, 4, 0);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1]));
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1]) + 4);
    jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0);
    stmt(BPF_RET | BPF_K, trap);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    for (int32_t nr : nrs) {
      jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1);
      stmt(BPF_RET | BPF_K, trap);
    }
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  if (f.size() > BPF_MAXINSNS) return make_error(ErrorCode::InvalidArgument, "the seccomp filter is too long");
  sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
  long r = gate(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, reinterpret_cast<long>(&prog));
  if (r == -EACCES) {
    // Without CAP_SYS_ADMIN a filter needs no_new_privs (set-user-ID programs the command runs then
    // run without their privileges, as under any seccomp sandbox).
    gate(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    r = gate(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, reinterpret_cast<long>(&prog));
  }
  if (r != 0)
    return make_error(ErrorCode::Io, fmt::format("installing the seccomp filter: {}", std::strerror(static_cast<int>(-r))));
  return {};
}

// Sends `magic` to every other thread of the process and waits for each to answer (its tid in
// g->acked). SIGSYS is not a queued signal: one sent while a thread has a trap's SIGSYS pending is
// dropped, so unanswered threads are sent it again every 10 ms, for up to 2 s (threads that block
// SIGSYS are not waited for: it stays pending for them); a few rounds catch threads created
// meanwhile. Returns the threads that did not answer.
// SIGSYS in the thread's blocked set (/proc/self/task/TID/status, SigBlk).
bool blocks_sigsys(int tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  bool blocked = false;
  if (FILE* f = std::fopen(path, "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (!std::strncmp(line, "SigBlk:", 7)) blocked = (std::strtoull(line + 7, nullptr, 16) & kSigsysBit) != 0;
    std::fclose(f);
  }
  return blocked;
}

int signal_threads(int magic) {
  std::vector<int> done{my_tid()};
  int missing = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<int> todo;
    if (DIR* d = opendir("/proc/self/task")) {
      while (dirent* e = readdir(d)) {
        int tid = std::atoi(e->d_name);
        if (tid <= 0) continue;
        bool seen = false;
        for (int x : done) seen |= x == tid;
        if (!seen) todo.push_back(tid);
      }
      closedir(d);
    }
    if (todo.empty()) break;
    std::vector<int> blocked;
    g->n_acked.store(0);
    for (int tries = 0; tries < 200 && !todo.empty(); ++tries) {
      for (int tid : todo) {
        siginfo_t si{};
        si.si_signo = SIGSYS;
        si.si_code = SI_QUEUE;
        si.si_pid = g->pid;
        si.si_uid = getuid();
        si.si_value.sival_int = magic;
        gate(SYS_rt_tgsigqueueinfo, g->pid, tid, SIGSYS, reinterpret_cast<long>(&si));
      }
      timespec ts{0, 10'000'000};
      nanosleep(&ts, nullptr);
      const int n = std::min<int>(g->n_acked.load(), State::kAcks);
      std::vector<int> left;
      for (int tid : todo) {
        bool acked = false;
        for (int i = 0; i < n && !acked; ++i) acked = g->acked[i].load() == tid;
        // A thread that ended needs nothing; one that blocks SIGSYS cannot answer now (the signal
        // stays pending for it): it is not waited for.
        if (acked || gate(SYS_tgkill, g->pid, tid, 0) != 0) continue;
        if (blocks_sigsys(tid)) blocked.push_back(tid);
        else left.push_back(tid);
      }
      todo = std::move(left);
    }
    for (int tid : todo) done.push_back(tid);
    for (int tid : blocked) done.push_back(tid);
    missing += static_cast<int>(todo.size() + blocked.size());
    // Answered threads are done too.
    const int n = std::min<int>(g->n_acked.load(), State::kAcks);
    for (int i = 0; i < n; ++i) done.push_back(g->acked[i].load());
  }
  return missing;
}

void rewrite_sites(bool rewrite, const std::function<void(const std::string&)>& note) {
  if (!rewrite) return;
  SyscallHooks& hooks = *g->hooks.load();
  auto r = rewrite_syscall_sites([&](uint32_t nr) {
    return !special(nr) && (hooks.wants_enter(nr) || hooks.wants_exit(nr));
  });
  if (!r && note) note(r.error().message);
}

// Syscall User Dispatch on in this thread, then in every other (signal_threads).
Status switch_on_sud(const std::function<void(const std::string&)>& note) {
  // SIGSYS must never be blocked on this thread (a trap with SIGSYS blocked kills the process); the
  // application's wish is kept (its emulated mask).
  uint64_t unblock = kSigsysBit, old = 0;
  gate(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&unblock), reinterpret_cast<long>(&old), 8);
  t_sys.wants_sigsys_blocked = (old & kSigsysBit) != 0;
  g->sud_on = true;
  long r = sud_switch(true);
  if (r != 0) {
    g->sud_on = false;
    t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    g->hooks.store(nullptr);
    return make_error(ErrorCode::Io, fmt::format("Syscall User Dispatch (PR_SET_SYSCALL_USER_DISPATCH): {}",
                                                 std::strerror(static_cast<int>(-r))));
  }
  int missing = signal_threads(kEnableMagic);
  if (missing > 0) {
    g->stragglers = true;
    if (note)
      note(fmt::format("{} threads did not switch on Syscall User Dispatch in time (they block SIGSYS): their "
                       "system calls are not hooked until they unblock it", missing));
  }
  return {};
}

// The SIGSYS bits of /proc/self/task/*/status's pending sets (SigPnd, ShdPnd).
bool sigsys_pending() {
  bool pending = false;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char path[300];
      std::snprintf(path, sizeof path, "/proc/self/task/%.255s/status", e->d_name);
      if (FILE* f = std::fopen(path, "re")) {
        char line[256];
        while (std::fgets(line, sizeof line, f))
          if (!std::strncmp(line, "SigPnd:", 7) || !std::strncmp(line, "ShdPnd:", 7))
            pending |= (std::strtoull(line + 7, nullptr, 16) & kSigsysBit) != 0;
        std::fclose(f);
      }
    }
    closedir(d);
  }
  return pending;
}

// Syscall User Dispatch is off in every thread: the signal state the application set goes back --
// its own SIGSYS action, SIGSYS in the masks of the actions it gave one. Not while a thread may still
// receive a switch signal (it missed one, or one is pending): the agent's handler stays installed,
// idle (every SIGSYS goes to the application's action through it).
void restore_signals() {
  if (g->stragglers || sigsys_pending()) return;
  KSigaction app = g->app_sigsys;
  if (gate(SYS_rt_sigaction, SIGSYS, reinterpret_cast<long>(&app), 0, 8) != 0) return;
  g->handler_in = false;
  uint64_t bits = g->sigsys_masked_actions.exchange(0);
  for (int sig = 1; sig <= 64; ++sig) {
    if (!(bits & (1ull << (sig - 1))) || sig == SIGSYS) continue;
    KSigaction cur;
    if (gate(SYS_rt_sigaction, sig, 0, reinterpret_cast<long>(&cur), 8) != 0) continue;
    cur.mask |= kSigsysBit;
    gate(SYS_rt_sigaction, sig, reinterpret_cast<long>(&cur), 0, 8);
  }
}

}  // namespace

Status start(SyscallHooks& hooks, SyscallMechanism mechanism, bool rewrite, const std::atomic<uint32_t>* enabled,
             std::function<void(const std::string&)> note) {
  if (g) {
    // Syscall User Dispatch switched off by an earlier session: switched on again with these hooks
    // (the dispatch page and stubs are kept; sites are not rewritten again).
    if (g->mech != SyscallMechanism::Sud || mechanism != SyscallMechanism::Sud || g->sud_on.load() ||
        g->hooks.load() != nullptr)
      return make_error(ErrorCode::InvalidArgument, "system-call hooks already run in this process");
    g->enabled = enabled;
    g->hooks.store(&hooks, std::memory_order_release);
    if (!g->handler_in)
      if (Status st = install_handler(); !st) {
        g->hooks.store(nullptr);
        return st;
      }
    return switch_on_sud(note);
  }
  auto* s = new State();  // kept for the process's lifetime: the handler and stubs use it
  g = s;
  s->hooks = &hooks;
  s->enabled = enabled;
  s->mech = mechanism;
  s->pid = getpid();
  if (Status st = map_dispatch_page(); !st) {
    g = nullptr;
    return st;
  }
  (void)possible_cpus();  // computed now, not in a handler
  // A child forked through the C library resets the ids it caches (a fork that traps -- every one
  // under SUD, a traced clone under seccomp -- leaves through a stub that does the same).
  pthread_atfork(nullptr, nullptr, [] { bpfvm_sys_child_init(); });
  if (Status st = install_handler(); !st) return st;
  if (mechanism == SyscallMechanism::Seccomp) {
    // SIGSYS must never be blocked on this thread (a trap with SIGSYS blocked kills the process).
    uint64_t unblock = kSigsysBit;
    gate(SYS_rt_sigprocmask, SIG_UNBLOCK, reinterpret_cast<long>(&unblock), 0, 8);
    if (Status st = install_filter(hooks.traced_syscalls(), hooks.all_enter() || hooks.all_exit()); !st) return st;
    rewrite_sites(rewrite, note);
    return {};
  }
  if (Status st = switch_on_sud(note); !st) return st;
  rewrite_sites(rewrite, note);
  return {};
}

Status stop() {
  if (!g) return make_error(ErrorCode::InvalidArgument, "system-call hooks do not run in this process");
  if (g->mech == SyscallMechanism::Seccomp)
    return make_error(ErrorCode::InvalidArgument, "a seccomp filter cannot be removed");
  g->sud_on = false;
  sud_switch(false);
  if (t_sys.wants_sigsys_blocked) {
    uint64_t block = kSigsysBit;
    gate(SYS_rt_sigprocmask, SIG_BLOCK, reinterpret_cast<long>(&block), 0, 8);
  }
  if (signal_threads(kDisableMagic) > 0) g->stragglers = true;
  return {};
}

bool detach() {
  if (!g) return true;
  g->hooks.store(nullptr);
  // Programs already running finish (they are bounded; 2 s covers a thread stopped meanwhile).
  for (int i = 0; i < 2000 && g->in_programs.load() > 0; ++i) {
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  const bool idle = g->in_programs.load() == 0;
  if (g->mech == SyscallMechanism::Sud && g->sud_on.load()) {
    (void)stop();
    restore_signals();
  }
  return idle;
}

bool running() { return g != nullptr; }
uint64_t events() { return g ? g->events.load() : 0; }

}  // namespace bpfvm::agent_syscalls

// A new thread or forked child leaving a redirect stub (rax == 0).
extern "C" void bpfvm_sys_child_init() noexcept {
  using namespace bpfvm::agent_syscalls;
  if (!g) return;
  // A forked child has a copy of its parent's thread variables; a new thread has fresh ones.
  bpfvm::agent_syscalls::t_sys.tid = 0;
  bpfvm::agent_syscalls::t_sys.busy = 0;
  long tid = g->gate(SYS_gettid, 0, 0, 0, 0, 0, 0);
  long pid = g->gate(SYS_getpid, 0, 0, 0, 0, 0, 0);
  bpfvm::agent_syscalls::t_sys.tid = static_cast<int32_t>(tid);
  if (pid == tid) g->pid = static_cast<int32_t>(pid);  // a process (fork), not a thread
  if (g->mech == bpfvm::SyscallMechanism::Sud && g->sud_on.load()) bpfvm::agent_syscalls::sud_switch(true);
}

// A redirect stub's exit programs (bpfvm_sys_exit_entry): regs is struct pt_regs after the syscall.
extern "C" void bpfvm_sys_exit_run(uint64_t* regs) noexcept {
  using namespace bpfvm::agent_syscalls;
  if (!g) return;
  const uint8_t busy = t_sys.busy;
  if (busy || bpfvm::uprobe::in_hook() || bpfvm::uprobe::in_quiet()) return;
  const int saved_errno = errno;
  const char selector = t_sys.selector;
  t_sys.selector = SYSCALL_DISPATCH_FILTER_ALLOW;  // the programs' own syscalls pass
  t_sys.busy = 1;
  if (bpfvm::SyscallHooks* h = programs_begin()) {
    const int64_t nr = static_cast<int64_t>(regs[15]);
    if (h->wants_exit(nr)) {
      ThreadTask task;
      bpfvm::SyscallRegs r;
      std::memcpy(r.words, regs, sizeof r.words);
      h->exit(task, nr, r);
    }
    programs_done();
  }
  t_sys.busy = busy;
  t_sys.selector = selector;
  errno = saved_errno;
}
