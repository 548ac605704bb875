// Function hooks inside the current process (patch.hpp; docs/tracing.md, "Function hooks").
//
// A site is one patched address. Its plan (what the code there allows) is made once: the
// instructions the patch displaces, relocated by zydis into a trampoline page mapped within
// +-2 GiB, and the method (a 5-byte jmp, or an int3 where a jmp cannot be placed safely). The site's
// hooks are an immutable list swapped under a global mutex; readers (the threads that hit the site)
// announce the site in a per-thread slot with plain stores (an asymmetric RCU: detach publishes the
// new list, runs a barrier on every thread with membarrier, then waits for the threads announced on
// the site), so that detach can wait until no thread runs a removed handler without any lock or
// atomic read-modify-write on the hit path.
//
// Writing the text while other threads run it (as the kernel's text_poke_bp): an int3 first (a
// thread that reaches it traps and the SIGTRAP handler sends it on through the relocated copy),
// then every other thread is interrupted once and moved out of the bytes being replaced if it
// stopped inside them, then the jmp's tail bytes, then its first byte, with the cores serialized
// (membarrier SYNC_CORE) between the steps. Detach reverses it.
#include "hooks/uprobe/patch.hpp"

#include <Zydis/Zydis.h>
#include <dirent.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "exec/jit/exec_memory.hpp"

// libgcc: unwind info for generated code, with the caller's storage for libgcc's `struct object`
// (at least 6 words; crtstuff reserves 8), so that registering allocates nothing.
extern "C" void __register_frame_info(const void* begin, void* object);

namespace bpfvm::uprobe {
namespace {

constexpr size_t kJmpLen = 5;
constexpr size_t kPage = 4096;

// ---- sites and hooks ----------------------------------------------------------------------------

struct Site;

struct Hook {
  uint64_t id = 0;
  HookKind kind = HookKind::Entry;
  Handler fn = nullptr;
  void* cookie = nullptr;
  Site* site = nullptr;
};

// Immutable once published: entry hooks first, then return hooks.
struct HookList {
  uint32_t n_entry = 0, n_return = 0;
  Hook hooks[1];  // n_entry + n_return (allocated to size)
};

HookList* new_list(const std::vector<Hook>& hooks) {
  const size_t n = std::max<size_t>(hooks.size(), 1);
  void* mem = ::operator new(sizeof(HookList) + (n - 1) * sizeof(Hook));
  auto* l = new (mem) HookList();
  for (const Hook& h : hooks)
    if (h.kind == HookKind::Entry) l->hooks[l->n_entry++] = h;
  for (const Hook& h : hooks)
    if (h.kind == HookKind::Return) l->hooks[l->n_entry + l->n_return++] = h;
  return l;
}
void free_list(const HookList* l) {
  if (l) ::operator delete(const_cast<HookList*>(l));
}

struct Site {
  uintptr_t func = 0;    // the hooked address (reported as ip)
  uintptr_t point = 0;   // where the patch goes (func + 4 behind an endbr64)
  PatchMethod method = PatchMethod::Jump;
  size_t func_size = 0;
  uintptr_t func_start = 0;  // the function func lies in (0: func itself)
  bool forced_bp = false;
  uint8_t orig[24] = {};  // the original bytes at point
  size_t len = 0;         // bytes displaced (jump) or the one instruction's length (breakpoint)
  // Instruction boundaries inside the displaced bytes and where each starts in the relocated copy.
  uint8_t n_insn = 0;
  uint8_t orig_off[16] = {};
  uint16_t reloc_off[16] = {};
  uint8_t* tramp = nullptr;  // the trampoline page (entry code, then the relocated copy)
  uintptr_t reloc = 0;       // the relocated copy: resume here after a breakpoint
  bool patched = false;      // the text holds our bytes
  bool trap_only = false;    // the jump could not be placed (threads did not answer): int3 stays
  std::atomic<const HookList*> list{nullptr};
  std::vector<Hook> hooks;   // the source of `list` (under the global mutex)
};

struct Global {
  std::mutex mu;  // attach/detach
  std::vector<Site*> sites;
  std::vector<Site*> replaced;  // sites planned again: kept (and reachable), never freed
  uint64_t next_id = 1;
  std::atomic<uint64_t> trap_hits{0}, missed_returns{0};
  bool traps_installed = false;
  struct sigaction prev_trap {};
  int evac_sig = 0;
  bool membarrier_ok = false;
};
Global& g() {
  static Global* p = new Global();  // never destroyed: hooks may fire during static destruction
  return *p;
}

// Address -> site, read from signal handlers: open addressing, insert-only (sites are never freed).
constexpr size_t kSiteTable = 8192;
std::atomic<Site*> g_site_table[kSiteTable];

size_t site_slot(uintptr_t a) { return (a * 0x9E3779B97F4A7C15ull >> 51) & (kSiteTable - 1); }
Site* find_site(uintptr_t point) {
  for (size_t i = site_slot(point), n = 0; n < kSiteTable; i = (i + 1) & (kSiteTable - 1), ++n) {
    Site* s = g_site_table[i].load(std::memory_order_acquire);
    if (!s) return nullptr;
    if (s->point == point) return s;
  }
  return nullptr;
}
// Puts `now` where `old` is in the table (the same point).
bool replace_site(Site* old, Site* now) {
  for (size_t i = site_slot(old->point), n = 0; n < kSiteTable; i = (i + 1) & (kSiteTable - 1), ++n) {
    Site* x = g_site_table[i].load(std::memory_order_relaxed);
    if (!x) return false;
    if (x == old) {
      g_site_table[i].store(now, std::memory_order_release);
      return true;
    }
  }
  return false;
}
bool insert_site(Site* s) {
  for (size_t i = site_slot(s->point), n = 0; n < kSiteTable; i = (i + 1) & (kSiteTable - 1), ++n) {
    if (!g_site_table[i].load(std::memory_order_relaxed)) {
      g_site_table[i].store(s, std::memory_order_release);
      return true;
    }
  }
  return false;
}

// ---- per-thread state ---------------------------------------------------------------------------

struct ShadowEntry {
  uint64_t sp;   // the address of the return address the entry replaced
  uint64_t ret;  // the original return address (the stub's unwind info reads it here)
  Site* site;
};
struct ShadowBlock {
  ShadowEntry e[kMaxReturnDepth];
  uint8_t* stubs;  // kMaxReturnDepth stubs of kStubSize bytes; stub k returns through e[k]
  uint32_t top;
  ShadowBlock* next_free;
};
constexpr size_t kStubSize = 32;

// What a thread reads on the hit path, for detach to wait on (the read side of an asymmetric RCU:
// plain stores by the owning thread; the writer makes them visible with a process-wide barrier).
struct ReaderSlot {
  std::atomic<Site*> site{nullptr};  // the site whose hook list the thread is using
  std::atomic<uint64_t> seq{0};      // odd while it uses it
  std::atomic<bool> taken{false};    // owned by a live thread
  ReaderSlot* next = nullptr;
};

struct ThreadState {
  uint32_t depth;  // > 0: a handler runs on this thread (the recursion guard)
  uint32_t quiet;  // > 0: the agent's own work runs on this thread (QuietScope): hooks call nothing
  ShadowBlock* block;
  ReaderSlot* slot;
};
// initial-exec: no allocation or lazy TLS resolution on the hit path (this also works where the code
// is in a preloaded library).
__attribute__((tls_model("initial-exec"))) thread_local ThreadState t_state{0, 0, nullptr, nullptr};

}  // namespace
}  // namespace bpfvm::uprobe

// ---- the machine code ---------------------------------------------------------------------------
//
// The entry template is copied into each site's trampoline with its three immediates set: the
// hooked address (pt_regs ip), the site and the dispatch function. Frame (S = sp at the point):
// 128 bytes of red zone are skipped (a point inside a function may have live data there), then
// struct pt_regs at S-296 (flags pushed at S-152), then 16 xmm registers on a 16-byte aligned area.
extern "C" {
extern const uint8_t bpfvm_uprobe_entry_tpl[], bpfvm_uprobe_entry_tpl_ip[], bpfvm_uprobe_entry_tpl_site[],
    bpfvm_uprobe_entry_tpl_fn[], bpfvm_uprobe_entry_tpl_end[];
extern const uint8_t bpfvm_uprobe_entry_tpl_avx[], bpfvm_uprobe_entry_tpl_avx_ip[], bpfvm_uprobe_entry_tpl_avx_site[],
    bpfvm_uprobe_entry_tpl_avx_fn[], bpfvm_uprobe_entry_tpl_avx_end[];
void bpfvm_uprobe_ret_common();
void bpfvm_uprobe_ret_common_avx();
void bpfvm_uprobe_on_entry(bpfvm::uprobe::Site* s, bpfvm::uprobe::PtRegs* r) noexcept;
uint64_t bpfvm_uprobe_on_return(uint64_t k, bpfvm::uprobe::PtRegs* r) noexcept;
}

#define BPFVM_SAVE_FRAME                                                                               \
  "lea rsp, [rsp-144]\n pushfq\n sub rsp, 144\n"                                                      \
  "mov [rsp+0], r15\n mov [rsp+8], r14\n mov [rsp+16], r13\n mov [rsp+24], r12\n"                      \
  "mov [rsp+32], rbp\n mov [rsp+40], rbx\n mov [rsp+48], r11\n mov [rsp+56], r10\n"                    \
  "mov [rsp+64], r9\n mov [rsp+72], r8\n mov [rsp+80], rax\n mov [rsp+88], rcx\n"                      \
  "mov [rsp+96], rdx\n mov [rsp+104], rsi\n mov [rsp+112], rdi\n mov qword ptr [rsp+120], -1\n"        \
  "mov qword ptr [rsp+136], 0x33\n mov qword ptr [rsp+160], 0x2b\n"
// The vector registers: xmm0-15, or ymm0-15 where the CPU has AVX (a handler's code may run
// vzeroupper, as glibc's AVX string functions do, which would clear the upper halves).
#define BPFVM_SAVE_SSE "mov rbx, rsp\n and rsp, -16\n sub rsp, 256\nmovaps [rsp+0], xmm0\n movaps [rsp+16], xmm1\n movaps [rsp+32], xmm2\n movaps [rsp+48], xmm3\n movaps [rsp+64], xmm4\n movaps [rsp+80], xmm5\n movaps [rsp+96], xmm6\n movaps [rsp+112], xmm7\n movaps [rsp+128], xmm8\n movaps [rsp+144], xmm9\n movaps [rsp+160], xmm10\n movaps [rsp+176], xmm11\n movaps [rsp+192], xmm12\n movaps [rsp+208], xmm13\n movaps [rsp+224], xmm14\n movaps [rsp+240], xmm15\n "
#define BPFVM_RESTORE_SSE "movaps xmm0, [rsp+0]\n movaps xmm1, [rsp+16]\n movaps xmm2, [rsp+32]\n movaps xmm3, [rsp+48]\n movaps xmm4, [rsp+64]\n movaps xmm5, [rsp+80]\n movaps xmm6, [rsp+96]\n movaps xmm7, [rsp+112]\n movaps xmm8, [rsp+128]\n movaps xmm9, [rsp+144]\n movaps xmm10, [rsp+160]\n movaps xmm11, [rsp+176]\n movaps xmm12, [rsp+192]\n movaps xmm13, [rsp+208]\n movaps xmm14, [rsp+224]\n movaps xmm15, [rsp+240]\n "
#define BPFVM_SAVE_AVX "mov rbx, rsp\n and rsp, -32\n sub rsp, 512\nvmovdqa [rsp+0], ymm0\n vmovdqa [rsp+32], ymm1\n vmovdqa [rsp+64], ymm2\n vmovdqa [rsp+96], ymm3\n vmovdqa [rsp+128], ymm4\n vmovdqa [rsp+160], ymm5\n vmovdqa [rsp+192], ymm6\n vmovdqa [rsp+224], ymm7\n vmovdqa [rsp+256], ymm8\n vmovdqa [rsp+288], ymm9\n vmovdqa [rsp+320], ymm10\n vmovdqa [rsp+352], ymm11\n vmovdqa [rsp+384], ymm12\n vmovdqa [rsp+416], ymm13\n vmovdqa [rsp+448], ymm14\n vmovdqa [rsp+480], ymm15\n "
#define BPFVM_RESTORE_AVX "vmovdqa ymm0, [rsp+0]\n vmovdqa ymm1, [rsp+32]\n vmovdqa ymm2, [rsp+64]\n vmovdqa ymm3, [rsp+96]\n vmovdqa ymm4, [rsp+128]\n vmovdqa ymm5, [rsp+160]\n vmovdqa ymm6, [rsp+192]\n vmovdqa ymm7, [rsp+224]\n vmovdqa ymm8, [rsp+256]\n vmovdqa ymm9, [rsp+288]\n vmovdqa ymm10, [rsp+320]\n vmovdqa ymm11, [rsp+352]\n vmovdqa ymm12, [rsp+384]\n vmovdqa ymm13, [rsp+416]\n vmovdqa ymm14, [rsp+448]\n vmovdqa ymm15, [rsp+480]\n "
#define BPFVM_RESTORE_GPR                                                                              \
  "mov rsp, rbx\n"                                                                                    \
  /* The flags without popfq (microcoded, slow): DF, then OF (0x7f + 1 overflows), then sahf for */    \
  /* SF ZF AF PF CF. The others (TF, AC, ...) are not changed by the dispatch. */                        \
  "mov rcx, [rsp+144]\n test ecx, 0x400\n jz 1f\n std\n 1:\n"                                         \
  "mov eax, ecx\n shr eax, 11\n and eax, 1\n imul eax, eax, 0x7f\n add al, 1\n mov ah, cl\n sahf\n"     \
  "mov r15, [rsp+0]\n mov r14, [rsp+8]\n mov r13, [rsp+16]\n mov r12, [rsp+24]\n"                      \
  "mov rbp, [rsp+32]\n mov rbx, [rsp+40]\n mov r11, [rsp+48]\n mov r10, [rsp+56]\n"                    \
  "mov r9, [rsp+64]\n mov r8, [rsp+72]\n mov rax, [rsp+80]\n mov rcx, [rsp+88]\n"                      \
  "mov rdx, [rsp+96]\n mov rsi, [rsp+104]\n mov rdi, [rsp+112]\n"                                     \
  "lea rsp, [rsp+296]\n"

#define BPFVM_ENTRY_TPL(N, SAVEV, RESTV)                                                               \
  ".globl " N "\n .hidden " N "\n .globl " N "_ip\n .hidden " N "_ip\n .globl " N "_site\n .hidden " N \
  "_site\n .globl " N "_fn\n .hidden " N "_fn\n .globl " N "_end\n .hidden " N "_end\n"                \
  N ":\n" BPFVM_SAVE_FRAME "movabs rax, 0x1111111111111111\n" N "_ip:\n mov [rsp+128], rax\n"          \
  "lea rax, [rsp+296]\n mov [rsp+152], rax\n" SAVEV "movabs rdi, 0x2222222222222222\n" N "_site:\n"    \
  "mov rsi, rbx\n movabs rax, 0x3333333333333333\n" N "_fn:\n call rax\n" RESTV BPFVM_RESTORE_GPR      \
  N "_end:\n"

asm(".pushsection .rodata\n"
    ".intel_syntax noprefix\n"
    BPFVM_ENTRY_TPL("bpfvm_uprobe_entry_tpl", BPFVM_SAVE_SSE, BPFVM_RESTORE_SSE)
    BPFVM_ENTRY_TPL("bpfvm_uprobe_entry_tpl_avx", BPFVM_SAVE_AVX, BPFVM_RESTORE_AVX)
    ".att_syntax prefix\n"
    ".popsection\n");

// The return path: a stub pushed its index k (the return address it stands for is at S = the sp
// after the push); the frame is built below S, the dispatch returns the original return address,
// which replaces k at S, and `ret` goes there.
#define BPFVM_RET_COMMON(N, SAVEV, RESTV)                                                              \
  ".globl " N "\n .hidden " N "\n .type " N ", @function\n"                                            \
  N ":\n" BPFVM_SAVE_FRAME "lea rax, [rsp+304]\n mov [rsp+152], rax\n" SAVEV                           \
  "mov rdi, [rbx+296]\n mov rsi, rbx\n call bpfvm_uprobe_on_return\n mov [rbx+296], rax\n"             \
  RESTV BPFVM_RESTORE_GPR "ret\n .size " N ", .-" N "\n"

asm(".pushsection .text\n"
    ".intel_syntax noprefix\n"
    BPFVM_RET_COMMON("bpfvm_uprobe_ret_common", BPFVM_SAVE_SSE, BPFVM_RESTORE_SSE)
    BPFVM_RET_COMMON("bpfvm_uprobe_ret_common_avx", BPFVM_SAVE_AVX, BPFVM_RESTORE_AVX)
    ".att_syntax prefix\n"
    ".popsection\n");

namespace bpfvm::uprobe {
namespace {

// The CPU has AVX and the kernel saves its state (then the trampolines keep ymm0-15 whole).
bool has_avx() {
  static const bool avx = __builtin_cpu_supports("avx");
  return avx;
}

// ---- the read side: per-thread slots -------------------------------------------------------------

// membarrier(PRIVATE_EXPEDITED) works: readers need no fence of their own.
std::atomic<bool> g_asymmetric{false};

std::atomic<ReaderSlot*> g_slots{nullptr};  // every slot ever made (never freed)
pthread_key_t g_thread_key;                 // its destructor gives a thread's slot and block back
void release_thread(void*);

// This thread's slot: a free one or a new one (mmap: no malloc on the hit path). Called with the
// recursion guard set.
ReaderSlot* thread_slot() {
  ThreadState& t = t_state;
  if (t.slot) return t.slot;
  static bool key_ok = pthread_key_create(&g_thread_key, release_thread) == 0;
  for (ReaderSlot* r = g_slots.load(std::memory_order_acquire); r; r = r->next) {
    bool f = false;
    if (!r->taken.load(std::memory_order_relaxed) && r->taken.compare_exchange_strong(f, true)) {
      t.slot = r;
      break;
    }
  }
  if (!t.slot) {
    constexpr size_t kChunk = kPage / sizeof(ReaderSlot);
    void* m = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    auto* chunk = static_cast<ReaderSlot*>(m);
    for (size_t i = 0; i < kChunk; ++i) new (&chunk[i]) ReaderSlot();
    chunk[0].taken.store(true);
    for (size_t i = 0; i + 1 < kChunk; ++i) chunk[i].next = &chunk[i + 1];
    ReaderSlot* head = g_slots.load();
    do chunk[kChunk - 1].next = head;
    while (!g_slots.compare_exchange_weak(head, chunk));
    t.slot = chunk;
  }
  if (key_ok) pthread_setspecific(g_thread_key, &t);
  return t.slot;
}

// The hit path's read lock of a site: announces the site in the thread's slot (no atomic
// read-modify-write: the writer pays for the ordering, see synchronize).
struct ReadLock {
  ReaderSlot* r;
  Site* s;
  explicit ReadLock(Site* site) : r(thread_slot()), s(site) {
    if (!r) return;
    r->site.store(s, std::memory_order_relaxed);
    r->seq.store(r->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    if (g_asymmetric.load(std::memory_order_relaxed)) std::atomic_signal_fence(std::memory_order_seq_cst);
    else std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  ~ReadLock() {
    if (r) r->seq.store(r->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Without a slot (no memory for one) the thread runs no handler: nothing could wait for it.
  // (acquire: the list's contents were written before it was published; a plain load on x86-64.)
  const HookList* list() const { return r ? s->list.load(std::memory_order_acquire) : nullptr; }
};

void barrier_all_threads();

// After a new list is published: waits until no thread still uses an older one. The barrier on every
// running thread orders its slot stores before its later list loads (asymmetric Dekker): a thread
// whose announcement is not seen reads the new list.
void synchronize(Site* s) {
  barrier_all_threads();
  const ReaderSlot* own = t_state.slot;
  for (ReaderSlot* r = g_slots.load(std::memory_order_acquire); r; r = r->next) {
    if (r == own) continue;
    const uint64_t q = r->seq.load(std::memory_order_acquire);
    if (!(q & 1) || r->site.load(std::memory_order_acquire) != s) continue;
    while (r->seq.load(std::memory_order_acquire) == q) sched_yield();
  }
}

// ---- shadow stacks and return stubs ---------------------------------------------------------------

std::mutex g_block_mu;
ShadowBlock* g_free_blocks = nullptr;

// The unwinder of the process (libgcc_s, which libstdc++ and glibc's cancellation use) must get the
// stubs' frames, not a private copy of it linked into the code that holds this (an agent library).
// Resolved when hooks are installed (dlsym may allocate): a thread's first return hook may run in the
// SIGTRAP handler or inside a call of malloc's, where nothing may allocate.
using RegisterFrameInfo = void (*)(const void*, void*);
std::atomic<RegisterFrameInfo> g_register_frame_info{nullptr};
void resolve_register_frame() {
  if (g_register_frame_info.load(std::memory_order_acquire)) return;
  RegisterFrameInfo f = &__register_frame_info;
  if (void* p = dlsym(RTLD_DEFAULT, "__register_frame_info")) f = reinterpret_cast<RegisterFrameInfo>(p);
  g_register_frame_info.store(f, std::memory_order_release);
}
constexpr size_t kFrameObject = 64;  // libgcc's struct object

// LeakSanitizer's root regions (present only in a sanitizer build): libgcc keeps the table it sorts
// for a registered object behind a pointer in that object, which lives in mapped memory LSan does
// not scan otherwise.
extern "C" void __lsan_register_root_region(const void* p, size_t size) __attribute__((weak));

void put_le64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
void put_le32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// A chunk of blocks: the stubs' code (read+execute), the blocks (read-write) and one .eh_frame with
// an FDE per stub that says: the caller's sp is the sp after the return, its return address is
// saved at &e[k].ret — so unwinding through a stub continues at the original caller.
constexpr size_t kBlocksPerChunk = 16;
bool new_chunk_locked() {
  const size_t nstub = kBlocksPerChunk * kMaxReturnDepth;
  const size_t code_bytes = (nstub * kStubSize + kPage - 1) & ~(kPage - 1);
  void* code = mmap(nullptr, code_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) return false;
  const size_t data_bytes = (kBlocksPerChunk * sizeof(ShadowBlock) + kPage - 1) & ~(kPage - 1);
  void* data = mmap(nullptr, data_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) {
    munmap(code, code_bytes);
    return false;
  }
  // CIE (24 bytes) + one FDE (48 bytes) per stub + a 0 terminator.
  constexpr size_t kCie = 24, kFde = 48;
  const size_t object_off = (kCie + nstub * kFde + 4 + 15) & ~size_t{15};
  const size_t eh_bytes = (object_off + kFrameObject + kPage - 1) & ~(kPage - 1);
  void* ehm = mmap(nullptr, eh_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ehm == MAP_FAILED) {
    munmap(code, code_bytes);
    munmap(data, data_bytes);
    return false;
  }
  auto* c = static_cast<uint8_t*>(code);
  auto* eh = static_cast<uint8_t*>(ehm);
  auto* blocks = static_cast<ShadowBlock*>(data);
  // CIE: version 1, "zR", code align 1, data align -8, return address column 16, pointer encoding
  // absolute; no initial instructions (padding nops).
  const uint8_t cie[kCie] = {20, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 16, 1, 0x00, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(eh, cie, kCie);
  const uintptr_t ret_common = reinterpret_cast<uintptr_t>(has_avx() ? &bpfvm_uprobe_ret_common_avx : &bpfvm_uprobe_ret_common);
  for (size_t b = 0; b < kBlocksPerChunk; ++b) {
    ShadowBlock* blk = new (&blocks[b]) ShadowBlock();
    blk->stubs = c + b * kMaxReturnDepth * kStubSize;
    blk->top = 0;
    for (size_t k = 0; k < kMaxReturnDepth; ++k) {
      uint8_t* s = blk->stubs + k * kStubSize;
      // nop (the unwinder looks up return address - 1); push k; jmp [rip+0]; .quad ret_common
      std::memset(s, 0xcc, kStubSize);
      s[0] = 0x90;
      s[1] = 0x68;
      put_le32(s + 2, static_cast<uint32_t>(k));
      s[6] = 0xff;
      s[7] = 0x25;
      put_le32(s + 8, 0);
      put_le64(s + 12, ret_common);
      uint8_t* f = eh + kCie + (b * kMaxReturnDepth + k) * kFde;
      std::memset(f, 0, kFde);
      put_le32(f, kFde - 4);                                   // length
      put_le32(f + 4, static_cast<uint32_t>(f + 4 - eh));     // CIE pointer (back to the CIE)
      put_le64(f + 8, reinterpret_cast<uint64_t>(s));         // pc_begin
      put_le64(f + 16, kStubSize);                            // pc_range
      size_t i = 24;
      f[i++] = 0;                                             // augmentation data length
      // The CFA is sp + 8, not sp: the unwinder names a frame by its CFA, and the stub's must differ
      // from the returning function's (which is sp) — the caller's sp is given explicitly instead.
      f[i++] = 0x0c; f[i++] = 7; f[i++] = 8;                  // DW_CFA_def_cfa rsp, 8
      f[i++] = 0x10; f[i++] = 16; f[i++] = 9; f[i++] = 0x03; // DW_CFA_expression rip, {DW_OP_addr
      put_le64(f + i, reinterpret_cast<uint64_t>(&blk->e[k].ret));  //   &e[k].ret}
      i += 8;
      f[i++] = 0x14; f[i++] = 7; f[i++] = 1;                  // DW_CFA_val_offset rsp, CFA - 8
      f[i++] = 0x40 | 6;                                      // DW_CFA_advance_loc 6 (after the push)
      f[i++] = 0x0e; f[i++] = 16;                             // DW_CFA_def_cfa_offset 16
      // the rest: DW_CFA_nop
    }
    blk->next_free = g_free_blocks;
    g_free_blocks = blk;
  }
  put_le32(eh + kCie + nstub * kFde, 0);
  if (mprotect(code, code_bytes, PROT_READ | PROT_EXEC) != 0) return false;  // leaked, never used
  RegisterFrameInfo reg = g_register_frame_info.load(std::memory_order_acquire);
  if (!reg) return false;  // (resolved by attach before any hook exists)
  if (__lsan_register_root_region) __lsan_register_root_region(eh + object_off, kFrameObject);
  reg(eh, eh + object_off);
  return true;
}

void release_thread(void*) {
  ThreadState& t = t_state;
  if (ShadowBlock* b = t.block) {
    std::lock_guard<std::mutex> lock(g_block_mu);
    b->top = 0;
    b->next_free = g_free_blocks;
    g_free_blocks = b;
    t.block = nullptr;
  }
  if (ReaderSlot* r = t.slot) {
    t.slot = nullptr;
    r->taken.store(false, std::memory_order_release);
  }
}

ShadowBlock* thread_block() {
  ThreadState& t = t_state;
  if (t.block) return t.block;
  if (!thread_slot()) return nullptr;  // also registers the thread-exit release
  std::lock_guard<std::mutex> lock(g_block_mu);
  if (!g_free_blocks && !new_chunk_locked()) return nullptr;
  ShadowBlock* b = g_free_blocks;
  g_free_blocks = b->next_free;
  b->top = 0;
  t.block = b;
  return b;
}

// A handler may change the arithmetic flags and DF, not the others (TF would single-step the thread).
constexpr uint64_t kUserFlags = 0x8d5 | 0x400;
uint64_t keep_system_flags(uint64_t before, uint64_t after) { return (before & ~kUserFlags) | (after & kUserFlags); }

// Frames of the same stack below (or at) sp are gone; entries from another stack (a signal's
// alternate stack) are far away and kept.
constexpr uint64_t kSameStack = 16ull << 20;

void arm_return(Site* s, PtRegs* r) {
  ShadowBlock* b = thread_block();
  if (!b) {
    g().missed_returns.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const uint64_t sp = r->sp;
  while (b->top > 0) {
    const ShadowEntry& e = b->e[b->top - 1];
    if (e.sp <= sp && sp - e.sp < kSameStack) --b->top;  // left by an exception or longjmp
    else break;
  }
  if (b->top >= kMaxReturnDepth) {
    g().missed_returns.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const uint32_t k = b->top;
  auto* slot = reinterpret_cast<uint64_t*>(sp);
  b->e[k].sp = sp;
  b->e[k].ret = *slot;
  b->e[k].site = s;
  b->top = k + 1;
  *slot = reinterpret_cast<uint64_t>(b->stubs + k * kStubSize + 1);
}

}  // namespace
}  // namespace bpfvm::uprobe

// ---- the hit path ---------------------------------------------------------------------------------

using bpfvm::uprobe::PtRegs;
using bpfvm::uprobe::Site;

extern "C" __attribute__((visibility("hidden"))) void bpfvm_uprobe_on_entry(Site* s, PtRegs* r) noexcept {
  using namespace bpfvm::uprobe;
  ThreadState& t = t_state;
  if (t.depth || t.quiet) return;  // a hook hit inside a handler or the agent's work: runs unprobed
  ++t.depth;
  const uint64_t flags = r->flags;
  {
    ReadLock lock(s);
    if (const HookList* l = lock.list()) {
      for (uint32_t i = 0; i < l->n_entry; ++i) l->hooks[i].fn(l->hooks[i].cookie, r);
      if (l->n_return) arm_return(s, r);
    }
  }
  r->flags = keep_system_flags(flags, r->flags);
  --t.depth;
}

extern "C" __attribute__((visibility("hidden"))) uint64_t bpfvm_uprobe_on_return(uint64_t k, PtRegs* r) noexcept {
  using namespace bpfvm::uprobe;
  ThreadState& t = t_state;
  ShadowBlock* b = t.block;
  if (!b || k >= kMaxReturnDepth || b->e[k].sp + 8 != r->sp) {
    // The stub was reached without its entry: the stack was switched under the hook. Nothing can
    // say where to return.
    static const char msg[] = "bpfvm: uretprobe return stub reached without its shadow-stack entry\n";
    (void)!write(2, msg, sizeof msg - 1);
    abort();
  }
  const ShadowEntry e = b->e[k];
  b->top = static_cast<uint32_t>(k);  // calls entered after this one have all ended
  r->ip = e.site->func;
  if (!t.depth && !t.quiet) {
    ++t.depth;
    const uint64_t flags = r->flags;
    {
      ReadLock lock(e.site);
      if (const HookList* l = lock.list())
        for (uint32_t i = l->n_entry; i < l->n_entry + l->n_return; ++i) l->hooks[i].fn(l->hooks[i].cookie, r);
    }
    r->flags = keep_system_flags(flags, r->flags);
    --t.depth;
  }
  return e.ret;
}

namespace bpfvm::uprobe {
namespace {

// ---- signals: breakpoints and moving threads out of the bytes being replaced --------------------

void regs_from_uc(const greg_t* gr, PtRegs* r) {
  r->r15 = gr[REG_R15]; r->r14 = gr[REG_R14]; r->r13 = gr[REG_R13]; r->r12 = gr[REG_R12];
  r->bp = gr[REG_RBP]; r->bx = gr[REG_RBX]; r->r11 = gr[REG_R11]; r->r10 = gr[REG_R10];
  r->r9 = gr[REG_R9]; r->r8 = gr[REG_R8]; r->ax = gr[REG_RAX]; r->cx = gr[REG_RCX];
  r->dx = gr[REG_RDX]; r->si = gr[REG_RSI]; r->di = gr[REG_RDI]; r->orig_ax = ~0ull;
  r->flags = gr[REG_EFL]; r->sp = gr[REG_RSP]; r->cs = 0x33; r->ss = 0x2b;
}
void regs_to_uc(const PtRegs* r, greg_t* gr) {
  gr[REG_R15] = r->r15; gr[REG_R14] = r->r14; gr[REG_R13] = r->r13; gr[REG_R12] = r->r12;
  gr[REG_RBP] = r->bp; gr[REG_RBX] = r->bx; gr[REG_R11] = r->r11; gr[REG_R10] = r->r10;
  gr[REG_R9] = r->r9; gr[REG_R8] = r->r8; gr[REG_RAX] = r->ax; gr[REG_RCX] = r->cx;
  gr[REG_RDX] = r->dx; gr[REG_RSI] = r->si; gr[REG_RDI] = r->di;
  gr[REG_EFL] = static_cast<greg_t>(keep_system_flags(static_cast<uint64_t>(gr[REG_EFL]), r->flags));
}

void on_trap(int sig, siginfo_t* si, void* ucv) {
  auto* uc = static_cast<ucontext_t*>(ucv);
  greg_t* gr = uc->uc_mcontext.gregs;
  const uintptr_t point = static_cast<uintptr_t>(gr[REG_RIP]) - 1;
  Site* s = si->si_code == SI_KERNEL ? find_site(point) : nullptr;  // an int3 (not a kill)
  if (s && s->reloc) {
    g().trap_hits.fetch_add(1, std::memory_order_relaxed);
    PtRegs r;
    regs_from_uc(gr, &r);
    r.ip = s->func;
    bpfvm_uprobe_on_entry(s, &r);
    regs_to_uc(&r, gr);
    gr[REG_RIP] = static_cast<greg_t>(s->reloc);
    return;
  }
  // Not ours: what the process had before.
  const struct sigaction& prev = g().prev_trap;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, si, ucv);
    return;
  }
  if (prev.sa_handler == SIG_IGN) return;
  if (prev.sa_handler != SIG_DFL) {
    prev.sa_handler(sig);
    return;
  }
  signal(SIGTRAP, SIG_DFL);
  raise(SIGTRAP);
}

std::atomic<Site*> g_evac_site{nullptr};
std::atomic<uint32_t> g_evac_acks{0};

void on_evacuate(int, siginfo_t*, void* ucv) {
  auto* uc = static_cast<ucontext_t*>(ucv);
  greg_t* gr = uc->uc_mcontext.gregs;
  if (Site* s = g_evac_site.load(std::memory_order_acquire)) {
    const uintptr_t ip = static_cast<uintptr_t>(gr[REG_RIP]);
    if (ip > s->point && ip < s->point + s->len)
      for (uint8_t i = 0; i < s->n_insn; ++i)
        if (s->point + s->orig_off[i] == ip) gr[REG_RIP] = static_cast<greg_t>(s->reloc + s->reloc_off[i]);
  }
  g_evac_acks.fetch_add(1, std::memory_order_release);
}

Status install_signals_locked() {
  Global& G = g();
  resolve_register_frame();
  if (G.traps_installed) return {};
  struct sigaction sa {};
  sa.sa_sigaction = on_trap;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTRAP, &sa, &G.prev_trap) != 0)
    return make_error(ErrorCode::Runtime, fmt::format("uprobe: cannot install the SIGTRAP handler: {}", std::strerror(errno)));
  // A real-time signal nobody handles, to interrupt the other threads while the text changes.
  for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 2 && !G.evac_sig; --sig) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
    struct sigaction ev {};
    ev.sa_sigaction = on_evacuate;
    ev.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ev.sa_mask);
    if (sigaction(sig, &ev, nullptr) == 0) G.evac_sig = sig;
  }
  G.membarrier_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) == 0;
  g_asymmetric.store(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0);
  G.traps_installed = true;
  return {};
}

// A main thread that ended alone (pthread_exit) stays listed as a zombie: a signal to it is
// accepted but never handled, so it is not waited for.
bool thread_ended(pid_t tid) {
  char path[64], buf[256];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(tid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');
  return p && (p[2] == 'Z' || p[2] == 'X');
}

// Interrupts every other thread of the process once (each runs on_evacuate, which also serializes
// its core on the way back). False when some thread did not answer in time (it blocks the signal,
// or the handler was replaced).
bool signal_all_threads(Site* s) {
  Global& G = g();
  if (!G.evac_sig) return false;
  struct sigaction cur {};
  if (sigaction(G.evac_sig, nullptr, &cur) != 0 || !(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != on_evacuate)
    return false;
  g_evac_site.store(s, std::memory_order_release);
  g_evac_acks.store(0, std::memory_order_release);
  const pid_t pid = getpid(), self = static_cast<pid_t>(syscall(SYS_gettid));
  uint32_t sent = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* de = readdir(d)) {
      const pid_t tid = static_cast<pid_t>(std::atoi(de->d_name));
      if (tid <= 0 || tid == self || thread_ended(tid)) continue;
      if (syscall(SYS_tgkill, pid, tid, G.evac_sig) == 0) ++sent;
    }
    closedir(d);
  } else {
    g_evac_site.store(nullptr);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  bool ok = true;
  while (g_evac_acks.load(std::memory_order_acquire) < sent) {
    if (std::chrono::steady_clock::now() > deadline) {
      ok = false;
      break;
    }
    sched_yield();
  }
  g_evac_site.store(nullptr, std::memory_order_release);
  return ok;
}

// membarrier for the process, registering again when it fails (a forked child is not registered).
bool membarrier_private(int cmd, int register_cmd) {
  if (syscall(SYS_membarrier, cmd, 0, 0) == 0) return true;
  return syscall(SYS_membarrier, register_cmd, 0, 0) == 0 && syscall(SYS_membarrier, cmd, 0, 0) == 0;
}

// Every core of the process executes a serializing instruction before this returns.
void sync_cores() {
  if (g().membarrier_ok && membarrier_private(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
                                              MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))
    return;
  signal_all_threads(nullptr);  // returning from a signal handler serializes the core
}

void barrier_all_threads() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!g_asymmetric.load(std::memory_order_relaxed)) return;  // the readers fence themselves
  if (!membarrier_private(MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
    signal_all_threads(nullptr);  // a signal handler's entry and exit order each thread's accesses too
}

// ---- writing text ---------------------------------------------------------------------------------

Status write_text(uintptr_t at, const void* bytes, size_t n) {
  if (detail::write_code_bytes(reinterpret_cast<void*>(at), bytes, n)) return {};
  // Without /proc/self/mem: the page(s) writable for the copy (and executable: other threads run there).
  const uintptr_t lo = at & ~(kPage - 1), hi = (at + n + kPage - 1) & ~(kPage - 1);
  if (mprotect(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
    return make_error(ErrorCode::Runtime,
                      fmt::format("uprobe: cannot write the code at {:#x}: /proc/self/mem does not work and mprotect "
                                  "refuses writable+executable text: {}",
                                  at, std::strerror(errno)));
  std::memcpy(reinterpret_cast<void*>(at), bytes, n);
  mprotect(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_EXEC);
  return {};
}

// ---- planning and relocating ----------------------------------------------------------------------

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

ZydisDecoder& decoder() {
  static ZydisDecoder d = [] {
    ZydisDecoder x;
    ZydisDecoderInit(&x, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return x;
  }();
  return d;
}

// The code being planned as it was before any hook (the bytes other hooked sites replaced are read
// from their saved originals), copied once (a read that never faults). Used under the global mutex.
struct CodeView {
  uintptr_t lo = 0;
  std::vector<uint8_t> b;
  size_t avail(uintptr_t a) const { return a >= lo && a < lo + b.size() ? lo + b.size() - a : 0; }
  const uint8_t* at(uintptr_t a) const { return b.data() + (a - lo); }
};
CodeView g_view;

void load_view(uintptr_t lo, uintptr_t hi, const Site* self) {
  g_view.lo = lo;
  g_view.b.assign(hi - lo, 0);
  iovec local{g_view.b.data(), hi - lo}, remote{reinterpret_cast<void*>(lo), hi - lo};
  const ssize_t n = process_vm_readv(gettid(), &local, 1, &remote, 1, 0);  // the main thread may have ended
  g_view.b.resize(n > 0 ? static_cast<size_t>(n) : 0);
  for (const Site* x : g().sites) {
    if (x == self || !x->patched) continue;
    const size_t written = x->method == PatchMethod::Jump && !x->trap_only ? kJmpLen : 1;
    for (size_t i = 0; i < written; ++i)
      if (g_view.avail(x->point + i)) g_view.b[x->point + i - lo] = x->orig[i];
  }
}

bool decode(uintptr_t at, size_t avail, Decoded& out) {
  const size_t n = std::min<size_t>({avail, g_view.avail(at), 15});
  return n && ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), g_view.at(at), n, &out.insn, out.ops));
}

bool is_branch(const ZydisDecodedInstruction& i) {
  return i.meta.category == ZYDIS_CATEGORY_COND_BR || i.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
         i.meta.category == ZYDIS_CATEGORY_CALL;
}
bool ends_flow(const ZydisDecodedInstruction& i) {
  return i.meta.category == ZYDIS_CATEGORY_RET || i.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
         i.mnemonic == ZYDIS_MNEMONIC_UD2 || i.mnemonic == ZYDIS_MNEMONIC_INT3 || i.mnemonic == ZYDIS_MNEMONIC_HLT;
}
// The absolute target of a relative branch or RIP-relative operand (false if none).
bool relative_target(const Decoded& d, uintptr_t at, uint64_t& target) {
  if (!(d.insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE)) return false;
  for (uint8_t i = 0; i < d.insn.operand_count_visible; ++i) {
    const ZydisDecodedOperand& op = d.ops[i];
    const bool rel = (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op.imm.is_relative) ||
                     (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP);
    if (rel && ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, &op, at, &target))) return true;
  }
  return false;
}

bool rel32_ok(uintptr_t from_end, uint64_t target) {
  const int64_t d = static_cast<int64_t>(target - from_end);
  return d >= INT32_MIN && d <= INT32_MAX;
}

// jmp [rip+0]; .quad target (14 bytes, any distance).
void emit_abs_jmp(std::vector<uint8_t>& out, uint64_t target) {
  const uint8_t j[6] = {0xff, 0x25, 0, 0, 0, 0};
  out.insert(out.end(), j, j + 6);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(target >> (8 * i)));
}

// Appends a jump from base + out.size() (its runtime address) to target.
void emit_jmp(std::vector<uint8_t>& out, uintptr_t base, uint64_t target) {
  const uintptr_t at = base + out.size();
  if (!rel32_ok(at + 5, target)) return emit_abs_jmp(out, target);
  out.push_back(0xe9);
  const auto rel = static_cast<uint32_t>(static_cast<int64_t>(target - (at + 5)));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(rel >> (8 * i)));
}

// Relocates one instruction (at `at`, its bytes there) to base + out.size(). An error names why not.
Status relocate(const Decoded& d, uintptr_t at, std::vector<uint8_t>& out, uintptr_t base) {
  const uint8_t* bytes = g_view.at(at);
  const ZydisDecodedInstruction& in = d.insn;
  uint64_t target = 0;
  if (!relative_target(d, at, target)) {
    out.insert(out.end(), bytes, bytes + in.length);
    return {};
  }
  if (in.mnemonic == ZYDIS_MNEMONIC_XBEGIN)
    return make_error(ErrorCode::Unsupported, fmt::format("uprobe: cannot relocate xbegin at {:#x}", at));
  if (is_branch(in)) {
    if (in.meta.category == ZYDIS_CATEGORY_CALL) {
      // The call's return address stays the original one (the callee returns behind the displaced
      // bytes, as a call is always the last instruction displaced; unwinding sees the real caller):
      // lea rsp,[rsp-8]; mov dword [rsp],lo; mov dword [rsp+4],hi; jmp target.
      const uint64_t ret = at + in.length;
      const uint8_t lea[5] = {0x48, 0x8d, 0x64, 0x24, 0xf8};
      out.insert(out.end(), lea, lea + 5);
      const uint8_t m0[3] = {0xc7, 0x04, 0x24};
      out.insert(out.end(), m0, m0 + 3);
      for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(ret >> (8 * i)));
      const uint8_t m1[4] = {0xc7, 0x44, 0x24, 0x04};
      out.insert(out.end(), m1, m1 + 4);
      for (int i = 4; i < 8; ++i) out.push_back(static_cast<uint8_t>(ret >> (8 * i)));
      emit_jmp(out, base, target);
      return {};
    }
    if (in.meta.category == ZYDIS_CATEGORY_UNCOND_BR) {
      emit_jmp(out, base, target);
      return {};
    }
    // Conditional: jcc rel8 (70-7f), jcc rel32 (0f 80-8f), jrcxz/loop* (e0-e3, rel8 only).
    const uint8_t* op = bytes;
    while (op < bytes + in.length && (*op == 0x2e || *op == 0x3e || *op == 0xf2 || *op == 0x67)) ++op;  // hints
    int cc = -1;
    if (*op >= 0x70 && *op <= 0x7f) cc = *op & 0xf;
    else if (*op == 0x0f && op[1] >= 0x80 && op[1] <= 0x8f) cc = op[1] & 0xf;
    if (cc >= 0) {
      const uintptr_t at32 = base + out.size();
      if (rel32_ok(at32 + 6, target)) {
        out.push_back(0x0f);
        out.push_back(static_cast<uint8_t>(0x80 | cc));
        const auto rel = static_cast<uint32_t>(static_cast<int64_t>(target - (at32 + 6)));
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(rel >> (8 * i)));
      } else {  // the inverted condition skips an absolute jump
        out.push_back(static_cast<uint8_t>(0x70 | (cc ^ 1)));
        out.push_back(14);
        emit_abs_jmp(out, target);
      }
      return {};
    }
    if (*op >= 0xe0 && *op <= 0xe3) {
      // loop*/jrcxz L; jmp short skip; L: jmp target; skip:
      out.insert(out.end(), bytes, op + 1);  // prefixes (0x67: ecx) and the opcode
      out.push_back(2);
      const size_t skip_at = out.size();
      out.push_back(0xeb);
      out.push_back(0);
      const size_t before = out.size();
      emit_jmp(out, base, target);
      out[skip_at + 1] = static_cast<uint8_t>(out.size() - before);
      return {};
    }
    return make_error(ErrorCode::Unsupported, fmt::format("uprobe: cannot relocate the branch at {:#x}", at));
  }
  // A RIP-relative memory operand: re-encoded by zydis at the new address with the same target.
  ZydisEncoderRequest req;
  if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&in, d.ops, in.operand_count_visible, &req)))
    return make_error(ErrorCode::Unsupported, fmt::format("uprobe: cannot re-encode the instruction at {:#x}", at));
  for (uint8_t i = 0; i < req.operand_count; ++i)
    if (req.operands[i].type == ZYDIS_OPERAND_TYPE_MEMORY && req.operands[i].mem.base == ZYDIS_REGISTER_RIP)
      req.operands[i].mem.displacement = static_cast<int64_t>(target);
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof buf;
  const uintptr_t to = base + out.size();
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&req, buf, &len, to)))
    return make_error(ErrorCode::Unsupported,
                      fmt::format("uprobe: the RIP-relative operand of the instruction at {:#x} cannot be reached from "
                                  "the trampoline at {:#x}",
                                  at, to));
  // Check: the new instruction decodes to the same operation on the same address.
  Decoded back;
  uint64_t t2 = 0;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), buf, len, &back.insn, back.ops)) ||
      back.insn.mnemonic != in.mnemonic || !relative_target(back, to, t2) || t2 != target)
    return make_error(ErrorCode::Unsupported, fmt::format("uprobe: re-encoding the instruction at {:#x} changed it", at));
  out.insert(out.end(), buf, buf + len);
  return {};
}

// Pages within +-2 GiB of `near` (a trampoline reaches the site and its RIP-relative data).
uint8_t* map_near(uintptr_t near) {
  const uintptr_t base = near & ~((uintptr_t{1} << 20) - 1);
  for (uintptr_t step = 1; step < 2000; ++step) {
    for (int dir = -1; dir <= 1; dir += 2) {
      const uintptr_t delta = step << 20;
      if (dir < 0 && base < delta + (uintptr_t{1} << 20)) continue;
      const uintptr_t hint = dir < 0 ? base - delta : base + delta;
      void* m = mmap(reinterpret_cast<void*>(hint), kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (m == MAP_FAILED) continue;
      const auto p = reinterpret_cast<uintptr_t>(m);
      if (p == hint) return static_cast<uint8_t*>(m);
      munmap(m, kPage);  // an older kernel ignored the flag and placed it elsewhere
    }
  }
  return nullptr;
}

// Decides how `site` is patched and builds its trampoline (a new page, read+execute).
Status plan(Site& s) {
  const uintptr_t func = s.func_start ? s.func_start : s.func;  // the function's start
  const size_t size = s.func_size;
  const uintptr_t end = size ? func + size : 0;
  if (s.func < func || (end && s.func >= end))
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("uprobe: {:#x} is outside the function at {:#x} ({} bytes)", s.func, func, size));
  load_view(func, std::max(end, s.func + 48), &s);
  if (g_view.avail(s.func) < 4)
    return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: no readable code at {:#x}", s.func));
  const uint8_t* fb = g_view.at(s.func);
  // An endbr64 at a function's entry stays (indirect calls land on it).
  const bool endbr = s.func == func && (size == 0 || size >= 4) && fb[0] == 0xf3 && fb[1] == 0x0f && fb[2] == 0x1e &&
                     fb[3] == 0xfa;
  s.point = s.func + (endbr ? 4 : 0);
  if (end && s.point >= end)
    return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: the function at {:#x} has no instruction to hook", func));

  // The instructions at the point.
  std::vector<Decoded> insns;
  size_t len = 0;
  bool jump = !s.forced_bp;
  for (;;) {
    Decoded d;
    const size_t avail = end ? end - (s.point + len) : 15;
    if (avail == 0 || !decode(s.point + len, avail, d)) {
      if (insns.empty())
        return make_error(ErrorCode::Decode, fmt::format("uprobe: no valid instruction at {:#x}", s.point));
      jump = false;  // the function ends (or stops decoding) within the patch
      break;
    }
    if (insns.empty() && d.insn.mnemonic == ZYDIS_MNEMONIC_INT3)
      return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: {:#x} holds an int3 (a debugger's breakpoint?)", s.point));
    insns.push_back(d);
    len += d.insn.length;
    if (len >= kJmpLen) break;
    if (d.insn.meta.category == ZYDIS_CATEGORY_CALL) {  // a thread in the callee returns into the patch
      jump = false;
      break;
    }
    if (ends_flow(d.insn)) {  // what follows may be another function
      jump = false;
      break;
    }
  }
  if (jump && !size && insns.size() > 1) jump = false;  // unknown size: only one long instruction is safe
  // Jumps into the displaced bytes (behind the first instruction) anywhere in the function; the sweep
  // also checks that the point is an instruction boundary. Inside the body (FUNC+OFFSET, a USDT
  // site) an indirect jump (a switch's jump table, a computed goto) may land anywhere: then no jump
  // patch. (At the entry, a function's own indirect jumps are tail calls or go to labels behind the
  // prologue.)
  const bool inside = s.func != func;
  if (size) {
    bool boundary = false, whole = true;
    for (uintptr_t a = func; a < end;) {
      Decoded d;
      if (!decode(a, end - a, d)) {
        whole = false;  // cannot see the whole body: be safe
        break;
      }
      boundary |= a == s.point;
      uint64_t t = 0;
      if (relative_target(d, a, t) && t > s.point && t < s.point + len) jump = false;
      if (inside && d.insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR && !(d.insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE))
        jump = false;
      a += d.insn.length;
    }
    if (whole && !boundary)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("uprobe: {:#x} is not an instruction boundary of the function at {:#x}", s.point, func));
    if (!whole) jump = false;
  }
  if (!jump) {
    insns.resize(1);
    len = insns[0].insn.length;
  }
  s.method = jump ? PatchMethod::Jump : PatchMethod::Breakpoint;
  s.len = len;
  if (g_view.avail(s.point) < std::max(len, kJmpLen))
    return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: no readable code at {:#x}", s.point));
  std::memcpy(s.orig, g_view.at(s.point), std::max(len, kJmpLen));

  uint8_t* page = map_near(s.point);
  if (!page)
    return make_error(ErrorCode::Runtime, fmt::format("uprobe: no free memory within 2 GiB of {:#x} for a trampoline", s.point));
  const auto base = reinterpret_cast<uintptr_t>(page);
  std::vector<uint8_t> code;
  // Entry code (jump patches; breakpoints run the handlers from the SIGTRAP handler).
  if (jump) {
    const bool avx = has_avx();
    const uint8_t* tpl = avx ? bpfvm_uprobe_entry_tpl_avx : bpfvm_uprobe_entry_tpl;
    const uint8_t* tpl_end = avx ? bpfvm_uprobe_entry_tpl_avx_end : bpfvm_uprobe_entry_tpl_end;
    const uint8_t* tpl_ip = avx ? bpfvm_uprobe_entry_tpl_avx_ip : bpfvm_uprobe_entry_tpl_ip;
    const uint8_t* tpl_site = avx ? bpfvm_uprobe_entry_tpl_avx_site : bpfvm_uprobe_entry_tpl_site;
    const uint8_t* tpl_fn = avx ? bpfvm_uprobe_entry_tpl_avx_fn : bpfvm_uprobe_entry_tpl_fn;
    code.assign(tpl, tpl_end);
    put_le64(code.data() + (tpl_ip - tpl) - 8, s.func);
    put_le64(code.data() + (tpl_site - tpl) - 8, reinterpret_cast<uint64_t>(&s));
    put_le64(code.data() + (tpl_fn - tpl) - 8, reinterpret_cast<uint64_t>(&bpfvm_uprobe_on_entry));
  }
  const size_t reloc_start = code.size();
  size_t off = 0;
  s.n_insn = 0;
  for (const Decoded& d : insns) {
    s.orig_off[s.n_insn] = static_cast<uint8_t>(off);
    s.reloc_off[s.n_insn] = static_cast<uint16_t>(code.size() - reloc_start);
    ++s.n_insn;
    if (Status st = relocate(d, s.point + off, code, base); !st.ok()) {
      munmap(page, kPage);
      return st;
    }
    off += d.insn.length;
  }
  if (!ends_flow(insns.back().insn)) emit_jmp(code, base, s.point + len);
  if (code.size() > kPage) {
    munmap(page, kPage);
    return make_error(ErrorCode::Runtime, "uprobe: trampoline too large");
  }
  std::memcpy(page, code.data(), code.size());
  std::memset(page + code.size(), 0xcc, kPage - code.size());
  if (mprotect(page, kPage, PROT_READ | PROT_EXEC) != 0) {
    munmap(page, kPage);
    return make_error(ErrorCode::Runtime, fmt::format("uprobe: cannot make a trampoline executable: {}", std::strerror(errno)));
  }
  s.tramp = page;
  s.reloc = base + reloc_start;
  return {};
}

// Puts the patch in place (threads may be running the bytes).
Status patch_in(Site& s) {
  const uint8_t int3 = 0xcc;
  if (Status st = write_text(s.point, &int3, 1); !st.ok()) return st;
  sync_cores();
  s.patched = true;
  s.trap_only = false;
  if (s.method == PatchMethod::Breakpoint) return {};
  // No thread may be inside the bytes the jmp replaces: the others are moved to the relocated copy.
  if (!signal_all_threads(&s)) {
    s.trap_only = true;  // the int3 is always safe
    return {};
  }
  uint8_t jmp[kJmpLen];
  jmp[0] = 0xe9;
  const auto rel = static_cast<uint32_t>(static_cast<int64_t>(reinterpret_cast<uintptr_t>(s.tramp) - (s.point + kJmpLen)));
  put_le32(jmp + 1, rel);
  if (Status st = write_text(s.point + 1, jmp + 1, kJmpLen - 1); !st.ok()) return st;
  sync_cores();
  if (Status st = write_text(s.point, jmp, 1); !st.ok()) return st;
  sync_cores();
  return {};
}

Status patch_out(Site& s) {
  const uint8_t int3 = 0xcc;
  if (s.method == PatchMethod::Jump && !s.trap_only) {
    if (Status st = write_text(s.point, &int3, 1); !st.ok()) return st;
    sync_cores();
    if (Status st = write_text(s.point + 1, s.orig + 1, kJmpLen - 1); !st.ok()) return st;
    sync_cores();
  }
  if (Status st = write_text(s.point, s.orig, 1); !st.ok()) return st;
  sync_cores();
  s.patched = false;
  return {};
}

void publish(Site& s) {
  const HookList* old = s.list.exchange(s.hooks.empty() ? nullptr : new_list(s.hooks), std::memory_order_seq_cst);
  if (!in_hook()) {
    synchronize(&s);
    free_list(old);
  }  // else: leaked (a handler of this very list may be running on this thread)
}

// Another hooked site whose displaced bytes overlap s's (each would relocate or overwrite the other's).
const Site* overlapping_locked(const Site* s) {
  for (const Site* x : g().sites)
    if (x != s && !x->hooks.empty() && x->point < s->point + s->len && s->point < x->point + x->len) return x;
  return nullptr;
}

Site* find_hook_locked(uint64_t id, size_t* index) {
  for (Site* s : g().sites)
    for (size_t i = 0; i < s->hooks.size(); ++i)
      if (s->hooks[i].id == id) {
        *index = i;
        return s;
      }
  return nullptr;
}

}  // namespace

Result<HookId> attach(uintptr_t addr, HookKind kind, Handler handler, void* cookie, const AttachOptions& options) {
  if (!addr || !handler) return make_error(ErrorCode::InvalidArgument, "uprobe: attach needs an address and a handler");
  Global& G = g();
  std::lock_guard<std::mutex> lock(G.mu);
  if (Status st = install_signals_locked(); !st.ok()) return st.error();
  Site* s = nullptr;
  for (Site* x : G.sites)
    if (x->func == addr) s = x;
  // Unhooked with other options: planned again, as a new site that replaces the old one (whose
  // trampoline stays mapped and whose fields stay as they were: a thread may still be reading them in
  // the SIGTRAP handler of an int3 hit before the old hooks went).
  const bool replan = s && s->hooks.empty() &&
                      (s->func_size != options.func_size || s->func_start != options.func_start ||
                       s->forced_bp != options.force_breakpoint);
  if (!s || replan) {
    auto* n = new Site();
    n->func = addr;
    n->func_size = options.func_size;
    n->func_start = options.func_start;
    n->forced_bp = options.force_breakpoint;
    if (Status st = plan(*n); !st.ok()) {
      delete n;
      return st.error();
    }
    const Site* there = find_site(n->point);
    const bool placed = there == s && s ? replace_site(s, n) : !there && insert_site(n);
    if (!placed) {
      delete n;
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("uprobe: {:#x} is already patched from another address, or too many addresses are hooked", addr));
    }
    if (s) {
      std::replace(G.sites.begin(), G.sites.end(), s, n);
      G.replaced.push_back(s);
    } else {
      G.sites.push_back(n);
    }
    s = n;
  }
  if (s->hooks.empty())
    if (const Site* x = overlapping_locked(s))
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("uprobe: the instructions at {:#x} overlap those the hook at {:#x} displaces", addr, x->func));
  Hook h;
  h.id = G.next_id++;
  h.kind = kind;
  h.fn = handler;
  h.cookie = cookie;
  h.site = s;
  s->hooks.push_back(h);
  publish(*s);
  if (!s->patched) {
    if (Status st = patch_in(*s); !st.ok()) {
      s->hooks.pop_back();
      publish(*s);
      if (s->patched) (void)patch_out(*s);
      return st.error();
    }
  }
  return HookId{h.id};
}

Status detach(HookId id) {
  Global& G = g();
  std::lock_guard<std::mutex> lock(G.mu);
  size_t i = 0;
  Site* s = find_hook_locked(id.value, &i);
  if (!s) return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: no hook with id {}", id.value));
  s->hooks.erase(s->hooks.begin() + static_cast<std::ptrdiff_t>(i));
  if (s->hooks.empty() && s->patched)
    if (Status st = patch_out(*s); !st.ok()) return st;
  publish(*s);
  return {};
}

Result<PatchMethod> patch_method(HookId id) {
  std::lock_guard<std::mutex> lock(g().mu);
  size_t i = 0;
  Site* s = find_hook_locked(id.value, &i);
  if (!s) return make_error(ErrorCode::InvalidArgument, fmt::format("uprobe: no hook with id {}", id.value));
  return s->trap_only ? PatchMethod::Breakpoint : s->method;
}

bool in_hook() { return t_state.depth != 0; }
bool in_quiet() { return t_state.quiet != 0; }

QuietScope::QuietScope() { ++t_state.quiet; }
QuietScope::~QuietScope() { --t_state.quiet; }

Stats stats() {
  Stats st;
  st.trap_hits = g().trap_hits.load();
  st.missed_returns = g().missed_returns.load();
  std::lock_guard<std::mutex> lock(g().mu);
  st.sites = g().sites.size();
  return st;
}

}  // namespace bpfvm::uprobe
