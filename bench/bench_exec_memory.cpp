// What making one page of JIT code executable costs, by memory layout (the choice behind the JIT's code
// pool, src/exec/jit/exec_memory.cpp; docs/jit.md, "W^X"). Thread CPU time per operation, median of
// --rounds rounds of --n operations; each timed interval also contains one clock read pair (printed).
//
//   build/bench_exec_memory [--n 2000] [--rounds 5]
//
// Layouts (one 4 KiB page per program, written then made read+execute, later given back):
//   fresh mmap      mmap(RW, MAP_POPULATE) + write + mprotect(RX); release = munmap (the JIT before the pool)
//   pool, merge     a page of a populated RW region whose lower neighbour is already RX: the RX VMA grows
//                   (the pool's lowest-address first fit); release = mprotect(RW), merging back
//   pool, split     a page in the middle of a RW region: the VMA splits in three; release merges
//   pool, guarded   every page its own VMA (PROT_NONE pages between them): only flags change
//   pwrite          a page of a read+execute int3 region written with pwrite() on /proc/self/mem,
//                   release = the same bytes overwritten with int3 (the pool's kernel-write mode)
//   ExecMemory      the JIT's ExecMemory::install + destructor (the pool itself, one live piece below),
//                   100-byte code, in the default mode (kernel writes where available) and in mprotect mode
// VMAs for all: /proc/self/maps lines the region takes with n pages RX at once (n live programs).
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "exec/jit/exec_memory.hpp"

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int vma_count() {
  std::ifstream f("/proc/self/maps");
  std::string l;
  int n = 0;
  while (std::getline(f, l)) ++n;
  return n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
int g_n = 2000, g_rounds = 5;

struct Cost {
  double install_us, release_us;
};

// One round: n install/release cycles; `install(i)` / `release(i)` for cycle i.
template <class In, class Rel>
Cost cycles(In install, Rel release) {
  std::vector<double> in, rel;
  for (int r = 0; r < g_rounds; ++r) {
    uint64_t ti = 0, tr = 0;
    for (int i = 0; i < g_n; ++i) {
      uint64_t t0 = now_ns();
      install(i);
      uint64_t t1 = now_ns();
      release(i);
      tr += now_ns() - t1;
      ti += t1 - t0;
    }
    in.push_back(static_cast<double>(ti) / 1e3 / g_n);
    rel.push_back(static_cast<double>(tr) / 1e3 / g_n);
  }
  return {median(in), median(rel)};
}

uint8_t* populated(size_t pages) {
  void* p = mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<uint8_t*>(p);
}

void code(uint8_t* p) { std::memset(p, 0xcc, kPage); }

// All n pages RX at once in the given layout: VMAs the region takes.
int vmas_all_rx(size_t stride, size_t first) {
  const size_t pages = first + static_cast<size_t>(g_n) * stride + 1;
  const int before = vma_count();
  uint8_t* b = populated(pages);
  for (size_t i = 1; i < pages; i += 2)
    if (stride == 2) mprotect(b + i * kPage, kPage, PROT_NONE);
  for (int i = 0; i < g_n; ++i) mprotect(b + (first + static_cast<size_t>(i) * stride) * kPage, kPage, PROT_READ | PROT_EXEC);
  const int added = vma_count() - before;
  munmap(b, pages * kPage);
  return added;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) g_n = std::max(10, std::atoi(argv[++i]));
    else if (a == "--rounds" && i + 1 < argc) g_rounds = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_exec_memory [--n N] [--rounds R]\n");
      return 2;
    }
  }
  std::printf("one page of code made executable, us of thread CPU time (median of %d rounds x %d):\n", g_rounds, g_n);
  std::printf("%-16s %10s %10s %14s\n", "layout", "install", "release", "VMAs for n");

  std::vector<double> clock;
  for (int r = 0; r < g_rounds; ++r) {
    uint64_t t = 0;
    for (int i = 0; i < g_n; ++i) {
      uint64_t a = now_ns();
      t += now_ns() - a;
    }
    clock.push_back(static_cast<double>(t) / 1e3 / g_n);
  }

  std::vector<uint8_t*> fresh(1);
  Cost c = cycles(
      [&](int) {
        fresh[0] = populated(1);
        code(fresh[0]);
        mprotect(fresh[0], kPage, PROT_READ | PROT_EXEC);
      },
      [&](int) { munmap(fresh[0], kPage); });
  std::printf("%-16s %10.2f %10.2f %14s\n", "fresh mmap", c.install_us, c.release_us, "(one each)");

  uint8_t* b = populated(64);
  mprotect(b, 10 * kPage, PROT_READ | PROT_EXEC);
  uint8_t* p = b + 10 * kPage;
  c = cycles([&](int) { code(p); mprotect(p, kPage, PROT_READ | PROT_EXEC); },
             [&](int) { mprotect(p, kPage, PROT_READ | PROT_WRITE); });
  std::printf("%-16s %10.2f %10.2f %14d\n", "pool, merge", c.install_us, c.release_us, vmas_all_rx(1, 0));
  mprotect(b, 10 * kPage, PROT_READ | PROT_WRITE);
  p = b + 30 * kPage;
  c = cycles([&](int) { code(p); mprotect(p, kPage, PROT_READ | PROT_EXEC); },
             [&](int) { mprotect(p, kPage, PROT_READ | PROT_WRITE); });
  std::printf("%-16s %10.2f %10.2f %14s\n", "pool, split", c.install_us, c.release_us, "(n splits)");
  for (size_t i = 1; i < 64; i += 2) mprotect(b + i * kPage, kPage, PROT_NONE);
  c = cycles([&](int) { code(p); mprotect(p, kPage, PROT_READ | PROT_EXEC); },
             [&](int) { mprotect(p, kPage, PROT_READ | PROT_WRITE); });
  std::printf("%-16s %10.2f %10.2f %14d\n", "pool, guarded", c.install_us, c.release_us, vmas_all_rx(2, 0));
  munmap(b, 64 * kPage);

  if (int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC); fd >= 0) {
    b = populated(64);
    std::memset(b, 0xcc, 64 * kPage);
    mprotect(b, 64 * kPage, PROT_READ | PROT_EXEC);
    p = b + 10 * kPage;
    std::vector<uint8_t> code100(100, 0x90), int3(100, 0xcc);
    c = cycles([&](int) { (void)!pwrite(fd, code100.data(), code100.size(), static_cast<off_t>(reinterpret_cast<uintptr_t>(p))); },
               [&](int) { (void)!pwrite(fd, int3.data(), int3.size(), static_cast<off_t>(reinterpret_cast<uintptr_t>(p))); });
    std::printf("%-16s %10.2f %10.2f %14d\n", "pwrite", c.install_us, c.release_us, 1);
    munmap(b, 64 * kPage);
    close(fd);
  }

  std::vector<uint8_t> bytes(100, 0xc3);
  // As in the JIT, where the callback trampoline keeps the pool's first page: the piece cycled has
  // live code below it.
  bpfvm::detail::ExecMemory keeper;
  if (!keeper.install(bytes.data(), bytes.size()).ok()) return 1;
  std::vector<bpfvm::detail::ExecMemory*> mem(1);
  using bpfvm::detail::CodeWriteMode;
  for (CodeWriteMode mode : {CodeWriteMode::KernelWrite, CodeWriteMode::Mprotect}) {
    bpfvm::detail::exec_memory_set_mode(mode);
    if (bpfvm::detail::exec_memory_mode() != mode) continue;  // kernel writes unavailable here
    bpfvm::detail::ExecMemory keeper2;  // live code below the cycled piece in this mode's arena too
    if (!keeper2.install(bytes.data(), bytes.size()).ok()) return 1;
    c = cycles(
        [&](int) {
          mem[0] = new bpfvm::detail::ExecMemory();
          if (!mem[0]->install(bytes.data(), bytes.size()).ok()) std::exit(1);
        },
        [&](int) { delete mem[0]; });
    std::printf("%-16s %10.2f %10.2f\n", mode == CodeWriteMode::KernelWrite ? "ExecMemory" : "ExecMemory mprot",
                c.install_us, c.release_us);
  }
  std::printf("clock read pair inside every interval: %.2f us\n", median(clock));
  return 0;
}
