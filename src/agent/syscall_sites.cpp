// Rewritten syscall sites (docs/tracing.md, "System calls in the agent"): in the main program and the
// C library, every `mov $NR, %eax; syscall` (b8 imm32 0f 05) of a watched syscall inside a function
// symbol is given a 5-byte `jmp` over its `mov` to a per-site trampoline; the trampoline skips the red
// zone, sets eax and calls bpfvm_sys_site_entry, which saves the registers (as struct pt_regs) and the
// extended state (xsave), runs the programs through syscall_site_run (the SIGSYS handler's code path)
// and returns behind the `syscall`. No trap, no signal frame.
//
// Safety: the whole function body is decoded (zydis) and a site is taken only when its `mov` is an
// instruction boundary of that decoding and no direct branch of the function lands inside the `mov`
// (the `syscall` behind it stays as it was: a jump to it still traps as before). Sites are written
// only while the process has a single thread (the agent starts from the dynamic loader's constructors
// there), so no thread can be executing the bytes being replaced; otherwise nothing is rewritten and
// every site keeps the trap path.
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>
#include <Zydis/Zydis.h>
#include <cpuid.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "agent/syscall_sites.hpp"
#include "exec/jit/exec_memory.hpp"

// The registers as struct pt_regs (21 words: r15 ... ss) at 0, the xsave area at 192; rcx holds the
// return address (behind the syscall), eax the number, the red zone already skipped.
extern "C" void bpfvm_sys_site_entry();
extern "C" {
__attribute__((visibility("hidden"))) uint64_t bpfvm_sys_xsave_mask = 0;  // XCR0: the state xsave keeps
__attribute__((visibility("hidden"))) uint8_t bpfvm_sys_xsaveopt = 0;      // the processor has xsaveopt
}
asm(".pushsection .text\n"
    ".globl bpfvm_sys_site_entry\n.hidden bpfvm_sys_site_entry\n"
    ".type bpfvm_sys_site_entry,@function\n"
    "bpfvm_sys_site_entry:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  and $-64, %rsp\n"
    "  sub $4288, %rsp\n"  // 192 frame + 4096 xsave
    "  mov %r15, 0(%rsp)\n  mov %r14, 8(%rsp)\n  mov %r13, 16(%rsp)\n  mov %r12, 24(%rsp)\n"
    "  mov 0(%rbp), %r11\n  mov %r11, 32(%rsp)\n"  // the thread's rbp
    "  mov %rbx, 40(%rsp)\n"
    "  pushfq\n  pop %r11\n  mov %r11, 48(%rsp)\n  mov %r11, 144(%rsp)\n"  // r11 = flags, as syscall leaves it
    "  mov %r10, 56(%rsp)\n  mov %r9, 64(%rsp)\n  mov %r8, 72(%rsp)\n"
    "  movq $-38, 80(%rsp)\n"  // ax = -ENOSYS at entry
    "  mov %rcx, 88(%rsp)\n  mov %rdx, 96(%rsp)\n  mov %rsi, 104(%rsp)\n  mov %rdi, 112(%rsp)\n"
    "  mov %rax, 120(%rsp)\n"  // orig_ax
    "  mov %rcx, 128(%rsp)\n"  // ip: behind the syscall
    "  movq $0x33, 136(%rsp)\n"
    "  lea 144(%rbp), %r11\n  mov %r11, 152(%rsp)\n"  // sp at the site (128 red zone + 8 call + 8 rbp)
    "  movq $0x2b, 160(%rsp)\n"
    "  xor %eax, %eax\n"
    "  mov %rax, 704(%rsp)\n  mov %rax, 712(%rsp)\n  mov %rax, 720(%rsp)\n  mov %rax, 728(%rsp)\n"
    "  mov %rax, 736(%rsp)\n  mov %rax, 744(%rsp)\n  mov %rax, 752(%rsp)\n  mov %rax, 760(%rsp)\n"
    "  mov bpfvm_sys_xsave_mask(%rip), %eax\n  mov bpfvm_sys_xsave_mask+4(%rip), %edx\n"
    "  testb $1, bpfvm_sys_xsaveopt(%rip)\n"
    "  jz 1f\n"
    "  xsaveopt64 192(%rsp)\n"  // components in their initial state (the AVX-512 registers of most
    "  jmp 2f\n"                 // code) are not written
    "1:\n"
    "  xsave64 192(%rsp)\n"
    "2:\n"
    "  mov %rsp, %rdi\n"
    "  call bpfvm_sys_site_run\n"
    "  mov bpfvm_sys_xsave_mask(%rip), %eax\n  mov bpfvm_sys_xsave_mask+4(%rip), %edx\n"
    "  xrstor64 192(%rsp)\n"
    "  mov 0(%rsp), %r15\n  mov 8(%rsp), %r14\n  mov 16(%rsp), %r13\n  mov 24(%rsp), %r12\n"
    "  mov 40(%rsp), %rbx\n  mov 56(%rsp), %r10\n  mov 64(%rsp), %r9\n  mov 72(%rsp), %r8\n"
    "  mov 80(%rsp), %rax\n  mov 88(%rsp), %rcx\n  mov 96(%rsp), %rdx\n  mov 104(%rsp), %rsi\n"
    "  mov 112(%rsp), %rdi\n  mov 144(%rsp), %r11\n"
    "  mov %rbp, %rsp\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size bpfvm_sys_site_entry, .-bpfvm_sys_site_entry\n"
    ".popsection\n");

extern "C" __attribute__((visibility("hidden"))) void bpfvm_sys_site_run(uint64_t* frame) noexcept {
  bpfvm::agent_syscalls::syscall_site_run(frame);
}

namespace bpfvm::agent_syscalls {

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kTrampBytes = 48;

// Function symbols (address relative to the load bias, size) of an ELF file: .symtab, else .dynsym.
std::vector<std::pair<uint64_t, uint64_t>> function_symbols(const std::string& path) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  elf_version(EV_CURRENT);
  Elf* e = elf_begin(fd, ELF_C_READ, nullptr);
  for (int pass = 0; e && pass < 2 && out.empty(); ++pass) {
    Elf_Scn* scn = nullptr;
    while ((scn = elf_nextscn(e, scn))) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh) || sh.sh_type != (pass == 0 ? SHT_SYMTAB : SHT_DYNSYM) || sh.sh_entsize == 0) continue;
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (!data) continue;
      for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
        GElf_Sym s;
        if (gelf_getsym(data, static_cast<int>(i), &s) && GELF_ST_TYPE(s.st_info) == STT_FUNC && s.st_size > 0 &&
            s.st_shndx != SHN_UNDEF)
          out.emplace_back(s.st_value, s.st_size);
      }
    }
  }
  if (e) elf_end(e);
  close(fd);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

struct Module {
  std::string path;
  uint64_t bias = 0;
  std::vector<std::pair<uint64_t, uint64_t>> text;  // executable segments [lo, hi)
};

// Trampolines: pages within 2 GiB of a module (a rel32 jmp reaches them both ways).
struct TrampPage {
  uint8_t* page = nullptr;
  size_t used = 0;
};

uint8_t* map_near(uint64_t near) {
  const uint64_t base = near & ~((uint64_t{1} << 20) - 1);
  for (uint64_t step = 1; step < 1500; ++step)
    for (int dir = -1; dir <= 1; dir += 2) {
      const uint64_t delta = step << 20;
      if (dir < 0 && base < delta + (uint64_t{1} << 20)) continue;
      const uint64_t hint = dir < 0 ? base - delta : base + delta;
      void* m = mmap(reinterpret_cast<void*>(hint), kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (m == MAP_FAILED) continue;
      if (reinterpret_cast<uint64_t>(m) == hint) return static_cast<uint8_t*>(m);
      munmap(m, kPage);
    }
  return nullptr;
}

bool rel32_ok(uint64_t from_end, uint64_t to) {
  const int64_t d = static_cast<int64_t>(to - from_end);
  return d >= INT32_MIN && d <= INT32_MAX;
}

// The sites of one function worth rewriting: offsets of `mov $nr,%eax` followed by `syscall`.
void scan_function(const uint8_t* code, uint64_t addr, uint64_t size, const std::function<bool(uint32_t)>& wanted,
                   std::vector<std::pair<uint64_t, uint32_t>>& sites) {
  static ZydisDecoder dec = [] {
    ZydisDecoder d;
    ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return d;
  }();
  std::vector<uint64_t> candidates;
  std::set<uint64_t> targets;
  for (uint64_t off = 0; off < size;) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code + off, size - off, &insn, ops))) return;  // not all code
    if (insn.length == 5 && code[off] == 0xb8 && off + 7 <= size && code[off + 5] == 0x0f && code[off + 6] == 0x05) {
      uint32_t nr;
      std::memcpy(&nr, code + off + 1, 4);
      if (wanted(nr)) candidates.push_back(off);
    }
    if (insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE)
      for (uint8_t i = 0; i < insn.operand_count_visible; ++i) {
        ZyanU64 t;
        if (ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[i].imm.is_relative &&
            ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn, &ops[i], addr + off, &t)))
          targets.insert(t);
      }
    off += insn.length;
  }
  for (uint64_t off : candidates) {
    const uint64_t at = addr + off;
    auto it = targets.upper_bound(at);
    if (it != targets.end() && *it < at + 5) continue;  // a jump into the mov
    uint32_t nr;
    std::memcpy(&nr, code + off + 1, 4);
    sites.emplace_back(at, nr);
  }
}

}  // namespace

Result<size_t> rewrite_syscall_sites(const std::function<bool(uint32_t)>& wanted) {
  // One thread only (see the top of the file).
  size_t threads = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++threads;
  if (threads != 1)
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("the process has {} threads: syscall sites are rewritten only in a process with a "
                                  "single thread; every syscall takes the trap path",
                                  threads));
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
    return make_error(ErrorCode::InvalidArgument, "the processor has no xsave: syscall sites are not rewritten");
  uint32_t xlo, xhi;
  asm volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  unsigned size = 0;
  __cpuid_count(0xd, 0, a, size, c, d);
  if (size > 4096)
    return make_error(ErrorCode::InvalidArgument, "the extended state is larger than 4 KiB: syscall sites are not rewritten");
  bpfvm_sys_xsave_mask = (static_cast<uint64_t>(xhi) << 32) | xlo;
  __cpuid_count(0xd, 1, a, b, c, d);
  bpfvm_sys_xsaveopt = a & 1;

  // The main program and the C library.
  std::vector<Module> mods;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& v = *static_cast<std::vector<Module>*>(data);
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        Module m;
        if (name.empty() && v.empty()) {
          char buf[4096];
          ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
          if (n <= 0) return 0;
          m.path.assign(buf, static_cast<size_t>(n));
        } else if (name.find("/libc.so") != std::string::npos) {
          m.path = name;
        } else {
          if (v.empty()) v.push_back(Module{});  // the main program comes first
          return 0;
        }
        m.bias = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) m.text.emplace_back(m.bias + ph.p_vaddr, m.bias + ph.p_vaddr + ph.p_memsz);
        }
        v.push_back(std::move(m));
        return 0;
      },
      &mods);

  size_t rewritten = 0;
  for (const Module& m : mods) {
    if (m.path.empty() || m.text.empty()) continue;
    std::vector<std::pair<uint64_t, uint32_t>> sites;
    for (const auto& [value, fsize] : function_symbols(m.path)) {
      const uint64_t fa = m.bias + value;
      bool inside = false;
      for (const auto& [lo, hi] : m.text) inside |= fa >= lo && fa + fsize <= hi;
      if (!inside) continue;
      scan_function(reinterpret_cast<const uint8_t*>(fa), fa, fsize, wanted, sites);
    }
    std::sort(sites.begin(), sites.end());
    sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
    if (sites.empty()) continue;
    // Trampolines, then (all of them executable) the jumps.
    std::vector<TrampPage> pages;
    std::vector<std::pair<uint64_t, uint64_t>> jumps;  // site, trampoline
    for (const auto& [at, nr] : sites) {
      if (pages.empty() || pages.back().used + kTrampBytes > kPage ||
          !rel32_ok(at + 5, reinterpret_cast<uint64_t>(pages.back().page)) ||
          !rel32_ok(reinterpret_cast<uint64_t>(pages.back().page) + kPage, at + 7)) {
        uint8_t* p = map_near(at);
        if (!p) break;
        pages.push_back(TrampPage{p, 0});
      }
      TrampPage& tp = pages.back();
      uint8_t* t = tp.page + tp.used;
      const uint64_t tramp = reinterpret_cast<uint64_t>(t);
      size_t o = 0;
      const uint8_t lea[] = {0x48, 0x8d, 0x64, 0x24, 0x80};  // lea -128(%rsp), %rsp
      std::memcpy(t + o, lea, 5), o += 5;
      t[o++] = 0xb8;  // mov $nr, %eax
      std::memcpy(t + o, &nr, 4), o += 4;
      const uint8_t movabs_rcx[] = {0x48, 0xb9};  // movabs $ret, %rcx
      std::memcpy(t + o, movabs_rcx, 2), o += 2;
      const uint64_t ret = at + 7;
      std::memcpy(t + o, &ret, 8), o += 8;
      const uint8_t movabs_r11[] = {0x49, 0xbb};  // movabs $entry, %r11
      std::memcpy(t + o, movabs_r11, 2), o += 2;
      const uint64_t entry = reinterpret_cast<uint64_t>(&bpfvm_sys_site_entry);
      std::memcpy(t + o, &entry, 8), o += 8;
      t[o++] = 0x41, t[o++] = 0xff, t[o++] = 0xd3;                      // call *%r11
      const uint8_t lea_back[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00};  // lea 128(%rsp), %rsp
      std::memcpy(t + o, lea_back, 8), o += 8;
      t[o++] = 0xe9;  // jmp ret
      const auto rel = static_cast<int32_t>(static_cast<int64_t>(ret) - static_cast<int64_t>(tramp + o + 4));
      std::memcpy(t + o, &rel, 4), o += 4;
      tp.used += kTrampBytes;
      jumps.emplace_back(at, tramp);
    }
    for (const TrampPage& tp : pages) {
      std::memset(tp.page + tp.used, 0xcc, kPage - tp.used);
      if (mprotect(tp.page, kPage, PROT_READ | PROT_EXEC) != 0)
        return make_error(ErrorCode::Runtime, fmt::format("cannot make the syscall trampolines executable: {}",
                                                          std::strerror(errno)));
    }
    for (const auto& [at, tramp] : jumps) {
      uint8_t jmp[5] = {0xe9};
      const auto rel = static_cast<int32_t>(static_cast<int64_t>(tramp) - static_cast<int64_t>(at + 5));
      std::memcpy(jmp + 1, &rel, 4);
      if (!detail::write_code_bytes(reinterpret_cast<void*>(at), jmp, 5)) {
        const uint64_t lo = at & ~(kPage - 1), hi = (at + 5 + kPage - 1) & ~(kPage - 1);
        if (mprotect(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) continue;
        std::memcpy(reinterpret_cast<void*>(at), jmp, 5);
        mprotect(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_EXEC);
      }
      ++rewritten;
    }
  }
  return rewritten;
}

}  // namespace bpfvm::agent_syscalls
