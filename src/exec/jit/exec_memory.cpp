// Executable memory for JIT code: a process-wide pool of pre-populated read-write arenas, carved into
// page-aligned pieces, one per program, each made read+execute once its code is written.
//
// Why a pool: mapping a fresh page per program (mmap + first touch + mprotect) costs about 10 us of
// kernel time on the development VM, more than compiling a small program; with populated pages at
// hand, installing code is a memcpy and one mprotect. Layout: lowest-address first fit inside an
// arena, so the piece just below a new one usually holds live code already; the kernel then merges
// the new read+execute pages into that region's VMA instead of splitting the arena's VMA in three
// (measured: ~2.3 us per mprotect when merging, ~4.7 us when splitting). The shared callback
// trampoline is installed first and keeps the first page of the first arena.
//
// Rules kept: a page is never writable and executable at once; pieces are whole pages, so no two
// programs' code shares a page. Two ways to write (CodeWriteMode, exec_memory.hpp):
// * kernel writes: an arena is filled with int3 and made read+execute when it is mapped, and stays
//   so; code is written with pwrite() on /proc/self/mem and released code overwritten with int3 the
//   same way (~0.8 us per write on the development VM, against ~1.5-2.5 us for each of the two
//   mprotects, which also flush the TLB of every CPU the process runs on);
// * mprotect: pieces are read-write while the pool owns them and while the code is copied,
//   read+execute while a program owns them, and made read-write again before the pool takes them back.
// After fork() the child has the parent's descriptor, which still writes the parent's memory: a
// pthread_atfork handler makes the child open its own.
#include "exec/jit/exec_memory.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace bpfvm::detail {
namespace {

enum PageState : uint8_t {
  kFree,         // populated: read-write (mprotect arena) or read+execute and all int3 (kernel-write arena)
  kFreeDropped,  // given back to the kernel (the next access faults a zero page in)
  kUsed,         // read+execute (or being written by the thread that took it)
  kRetired,      // could not be made read-write again (or overwritten with int3): never reused
};

struct Arena {
  uint8_t* base = nullptr;
  size_t used = 0;  // pages in kUsed or kRetired
  bool kernel_write = false;
  PageState state[kExecArenaPages];
};

// /proc/self/mem, for kernel writes: opened and probed at first use (and again in a forked child).
struct KernelWriter {
  std::mutex mu;
  int fd = -1;
  bool probed = false, works = false;
  std::atomic<bool> wanted{true};   // exec_memory_set_mode
  std::atomic<bool> child{false};   // set in a forked child: reopen before the next write
};
KernelWriter& kw() {
  static KernelWriter* w = new KernelWriter();
  return *w;
}

bool pwrite_all(int fd, const void* buf, size_t n, const void* at) {
  const auto* b = static_cast<const uint8_t*>(buf);
  auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(at));
  while (n) {
    ssize_t w = pwrite(fd, b, n, off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    off += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Opens /proc/self/mem and checks that a write into a read+execute page of ours lands. Locked.
int open_writer_locked(KernelWriter& w) {
  if (w.child.exchange(false) && w.fd >= 0) {
    close(w.fd);  // the parent's memory
    w.fd = -1;
    w.probed = false;
  }
  if (w.probed) return w.works ? w.fd : -1;
  w.probed = true;
  w.works = false;
  static bool atfork = [] {
    return pthread_atfork(nullptr, nullptr, [] { kw().child.store(true); }) == 0;
  }();
  if (!atfork) return -1;
  int fd = open("/proc/thread-self/mem", O_RDWR | O_CLOEXEC);  // /proc/self: nothing once the main thread ended
  if (fd < 0) return -1;
  const size_t page = ExecMemory::page_size();
  void* m = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  bool ok = m != MAP_FAILED;
  if (ok) {
    auto* p = static_cast<volatile uint8_t*>(m);
    std::memset(m, 0xcc, page);
    const uint8_t probe[2] = {0x5a, 0xa5};
    ok = mprotect(m, page, PROT_READ | PROT_EXEC) == 0 && pwrite_all(fd, probe, sizeof probe, m) &&
         p[0] == 0x5a && p[1] == 0xa5 && p[2] == 0xcc;
    munmap(m, page);
  }
  if (!ok) {
    close(fd);
    return -1;
  }
  w.fd = fd;
  w.works = true;
  return fd;
}

// The descriptor for kernel writes, or -1 (mprotect mode). `for_new_arena`: the caller is about to map
// an arena and asks whether it should be a kernel-write one (exec_memory_set_mode decides).
int writer_fd(bool for_new_arena) {
  KernelWriter& w = kw();
  if (for_new_arena && !w.wanted.load(std::memory_order_relaxed)) return -1;
  std::lock_guard<std::mutex> lock(w.mu);
  return open_writer_locked(w);
}

struct Piece {
  uint8_t* p = nullptr;
  bool kernel_write = false;  // from a kernel-write arena: read+execute, int3 where not dropped
  bool dropped = false;       // some page was given back to the kernel: it reads as zeros
  int fd = -1;                // kernel writes: the /proc/self/mem descriptor to write with
};

class Pool {
 public:
  // n pages (n <= kExecArenaPages) from an arena of the current mode (read-write for mprotect, read+execute int3
  // for kernel writes); p = nullptr when no arena can be mapped.
  Piece take(size_t n) {
    const int fd = writer_fd(true);
    const bool kernel = fd >= 0;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (Piece pc = take_locked(n, kernel); pc.p) return pc.fd = fd, pc;
      }
      // No room: a new arena, mapped and populated outside the lock (kernel writes: filled with
      // int3 and made read+execute, once).
      const size_t bytes = kExecArenaPages * ExecMemory::page_size();
      void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      if (m == MAP_FAILED) return {};
      if (kernel) {
        std::memset(m, 0xcc, bytes);
        if (mprotect(m, bytes, PROT_READ | PROT_EXEC) != 0) {
          munmap(m, bytes);
          return {};
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      auto a = std::make_unique<Arena>();
      a->base = static_cast<uint8_t*>(m);
      a->kernel_write = kernel;
      for (auto& s : a->state) s = kFree;
      arenas_.push_back(std::move(a));
      resident_free_ += kExecArenaPages;
      if (Piece pc = take_locked(n, kernel); pc.p) return pc.fd = fd, pc;
    }
  }

  // Gives back n pages taken with take(), `size` bytes of code at the start: made read-write (or
  // overwritten with int3) first, outside the lock (the pages are still ours), then marked free.
  void give_back(uint8_t* p, size_t n, size_t size, bool kernel_write) {
    const size_t page = ExecMemory::page_size();
    bool rw;
    if (kernel_write) {
      static const std::vector<uint8_t> int3(kExecArenaPages * page, 0xcc);
      const int fd = writer_fd(false);
      rw = fd >= 0 && pwrite_all(fd, int3.data(), std::min(size, int3.size()), p);
    } else {
      rw = mprotect(p, n * page, PROT_READ | PROT_WRITE) == 0;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k = 0; k < arenas_.size(); ++k) {
      Arena& a = *arenas_[k];
      if (p < a.base || p >= a.base + kExecArenaPages * page) continue;
      const size_t first = static_cast<size_t>(p - a.base) / page;
      if (!rw) {  // still read+execute (or still holding code): keep it out of circulation
        for (size_t i = first; i < first + n; ++i) a.state[i] = kRetired;
        return;
      }
      PageState to = kFree;
      if (resident_free_ + n > kExecMaxResidentFreePages) {
        madvise(p, n * page, MADV_DONTNEED);
        to = kFreeDropped;
      } else {
        resident_free_ += n;
      }
      for (size_t i = first; i < first + n; ++i) a.state[i] = to;
      a.used -= n;
      if (a.used == 0) release_if_spare(k);
      return;
    }
  }

  ExecPoolStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    ExecPoolStats s;
    s.arenas = arenas_.size();
    for (const auto& a : arenas_)
      for (PageState st : a->state) {
        if (st == kUsed || st == kRetired) ++s.used_pages;
        else if (st == kFree) ++s.free_resident_pages;
        else ++s.free_dropped_pages;
      }
    return s;
  }

 private:
  Piece take_locked(size_t n, bool kernel) {
    const size_t page = ExecMemory::page_size();
    for (auto& ap : arenas_) {
      Arena& a = *ap;
      if (a.kernel_write != kernel || kExecArenaPages - a.used < n) continue;
      size_t run = 0;
      for (size_t i = 0; i < kExecArenaPages; ++i) {
        run = (a.state[i] == kFree || a.state[i] == kFreeDropped) ? run + 1 : 0;
        if (run == n) {
          const size_t first = i + 1 - n;
          Piece pc{a.base + first * page, kernel, false};
          for (size_t j = first; j <= i; ++j) {
            if (a.state[j] == kFree) --resident_free_;
            else pc.dropped = true;
            a.state[j] = kUsed;
          }
          a.used += n;
          return pc;
        }
      }
    }
    return {};
  }

  // Arena k has no live code: unmapped unless it is the only such arena of its mode (one is kept for
  // the next program, so load/unload cycles do not map and populate again).
  void release_if_spare(size_t k) {
    for (size_t j = 0; j < arenas_.size(); ++j)
      if (j != k && arenas_[j]->used == 0 && arenas_[j]->kernel_write == arenas_[k]->kernel_write) {
        Arena& a = *arenas_[k];
        for (PageState st : a.state)
          if (st == kFree) --resident_free_;
        munmap(a.base, kExecArenaPages * ExecMemory::page_size());
        arenas_.erase(arenas_.begin() + static_cast<std::ptrdiff_t>(k));
        return;
      }
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<Arena>> arenas_;
  size_t resident_free_ = 0;  // pages in kFree
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: code may be released during static destruction
  return *p;
}

std::atomic<size_t> g_own_mappings{0};

}  // namespace

size_t ExecMemory::page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

Status ExecMemory::install(const uint8_t* code, size_t size) {
  if (base_) return make_error(ErrorCode::Runtime, "jit: code installed twice");
  const size_t page = page_size();
  size_t n = (size + page - 1) / page;
  if (n == 0) n = 1;
  const bool pooled = n <= kExecArenaPages;
  Piece pc;
  if (pooled) {
    pc = pool().take(n);
    if (!pc.p)
      return make_error(ErrorCode::Runtime,
                        fmt::format("jit: mmap of a {}-byte code arena failed: {}", kExecArenaPages * page, std::strerror(errno)));
  } else {
    void* m = mmap(nullptr, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED)
      return make_error(ErrorCode::Runtime, fmt::format("jit: mmap of {} bytes failed: {}", n * page, std::strerror(errno)));
    pc.p = static_cast<uint8_t*>(m);
  }
  uint8_t* p = pc.p;
  if (pc.kernel_write) {
    // The pages are read+execute and int3 beyond any earlier code (overwritten on release); dropped
    // pages read as zeros, so then the whole piece is written.
    bool ok;
    if (!pc.dropped) {
      ok = pwrite_all(pc.fd, code, size, p);
    } else {
      std::vector<uint8_t> image(n * page, 0xcc);
      std::memcpy(image.data(), code, size);
      ok = pwrite_all(pc.fd, image.data(), image.size(), p);
    }
    if (!ok) {
      const int e = errno;
      pool().give_back(p, n, size, true);
      return make_error(ErrorCode::Runtime, fmt::format("jit: writing code through /proc/self/mem failed: {}", std::strerror(e)));
    }
  } else {
    std::memcpy(p, code, size);
    std::memset(p + size, 0xcc, n * page - size);  // int3 padding (also over a previous program's bytes)
    if (mprotect(p, n * page, PROT_READ | PROT_EXEC) != 0) {
      int e = errno;
      if (pooled) pool().give_back(p, n, size, false);
      else munmap(p, n * page);
      return make_error(ErrorCode::Runtime, fmt::format("jit: mprotect(PROT_READ|PROT_EXEC) failed: {}", std::strerror(e)));
    }
  }
  if (!pooled) g_own_mappings.fetch_add(1, std::memory_order_relaxed);
  base_ = p;
  pages_ = n;
  size_ = size;
  pooled_ = pooled;
  kernel_write_ = pc.kernel_write;
  return {};
}

ExecMemory::~ExecMemory() {
  if (!base_) return;
  if (pooled_) {
    pool().give_back(base_, pages_, size_, kernel_write_);
  } else {
    munmap(base_, pages_ * page_size());
    g_own_mappings.fetch_sub(1, std::memory_order_relaxed);
  }
}

CodeWriteMode exec_memory_set_mode(CodeWriteMode mode) {
  const CodeWriteMode prev = exec_memory_mode();
  kw().wanted.store(mode == CodeWriteMode::KernelWrite);
  return prev;
}

CodeWriteMode exec_memory_mode() {
  return writer_fd(true) >= 0 ? CodeWriteMode::KernelWrite : CodeWriteMode::Mprotect;
}

bool write_code_bytes(void* at, const void* data, size_t n) {
  const int fd = writer_fd(false);
  return fd >= 0 && pwrite_all(fd, data, n, at);
}

ExecPoolStats exec_pool_stats() {
  ExecPoolStats s = pool().stats();
  s.own_mappings = g_own_mappings.load(std::memory_order_relaxed);
  return s;
}

}  // namespace bpfvm::detail
