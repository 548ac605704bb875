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
// Rules kept: a page is never writable and executable at once (pieces are read-write while the pool
// owns them and while the code is copied, read+execute while a program owns them, and made
// read-write again before the pool takes them back); pieces are whole pages, so no two programs'
// code shares a page.
#include "exec/jit/exec_memory.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace bpfvm::detail {
namespace {

enum PageState : uint8_t {
  kFree,         // read-write, populated
  kFreeDropped,  // read-write, given back to the kernel (the next write faults a zero page in)
  kUsed,         // read+execute (or being written by the thread that took it)
  kRetired,      // could not be made read-write again: never reused
};

struct Arena {
  uint8_t* base = nullptr;
  size_t used = 0;  // pages in kUsed or kRetired
  PageState state[kExecArenaPages];
};

class Pool {
 public:
  // n pages (n <= kExecArenaPages) from an arena, read-write; nullptr when no arena can be mapped.
  uint8_t* take(size_t n) {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (uint8_t* p = take_locked(n)) return p;
      }
      // No room: a new arena, mapped and populated outside the lock.
      const size_t bytes = kExecArenaPages * ExecMemory::page_size();
      void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      if (m == MAP_FAILED) return nullptr;
      std::lock_guard<std::mutex> lock(mu_);
      auto a = std::make_unique<Arena>();
      a->base = static_cast<uint8_t*>(m);
      for (auto& s : a->state) s = kFree;
      arenas_.push_back(std::move(a));
      resident_free_ += kExecArenaPages;
      if (uint8_t* p = take_locked(n)) return p;
    }
  }

  // Gives back n pages taken with take(): made read-write first (outside the lock: the pages are
  // still ours), then marked free.
  void give_back(uint8_t* p, size_t n) {
    const size_t page = ExecMemory::page_size();
    const bool rw = mprotect(p, n * page, PROT_READ | PROT_WRITE) == 0;
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k = 0; k < arenas_.size(); ++k) {
      Arena& a = *arenas_[k];
      if (p < a.base || p >= a.base + kExecArenaPages * page) continue;
      const size_t first = static_cast<size_t>(p - a.base) / page;
      if (!rw) {  // still read+execute: keep it out of circulation
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
  uint8_t* take_locked(size_t n) {
    const size_t page = ExecMemory::page_size();
    for (auto& ap : arenas_) {
      Arena& a = *ap;
      if (kExecArenaPages - a.used < n) continue;
      size_t run = 0;
      for (size_t i = 0; i < kExecArenaPages; ++i) {
        run = (a.state[i] == kFree || a.state[i] == kFreeDropped) ? run + 1 : 0;
        if (run == n) {
          const size_t first = i + 1 - n;
          for (size_t j = first; j <= i; ++j) {
            if (a.state[j] == kFree) --resident_free_;
            a.state[j] = kUsed;
          }
          a.used += n;
          return a.base + first * page;
        }
      }
    }
    return nullptr;
  }

  // Arena k has no live code: unmapped unless it is the only such arena (one is kept for the next
  // program, so load/unload cycles do not map and populate again).
  void release_if_spare(size_t k) {
    for (size_t j = 0; j < arenas_.size(); ++j)
      if (j != k && arenas_[j]->used == 0) {
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
  uint8_t* p = nullptr;
  bool pooled = n <= kExecArenaPages;
  if (pooled) {
    p = pool().take(n);
    if (!p)
      return make_error(ErrorCode::Runtime,
                        fmt::format("jit: mmap of a {}-byte code arena failed: {}", kExecArenaPages * page, std::strerror(errno)));
  } else {
    void* m = mmap(nullptr, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED)
      return make_error(ErrorCode::Runtime, fmt::format("jit: mmap of {} bytes failed: {}", n * page, std::strerror(errno)));
    p = static_cast<uint8_t*>(m);
  }
  std::memcpy(p, code, size);
  std::memset(p + size, 0xcc, n * page - size);  // int3 padding (also over a previous program's bytes)
  if (mprotect(p, n * page, PROT_READ | PROT_EXEC) != 0) {
    int e = errno;
    if (pooled) pool().give_back(p, n);
    else munmap(p, n * page);
    return make_error(ErrorCode::Runtime, fmt::format("jit: mprotect(PROT_READ|PROT_EXEC) failed: {}", std::strerror(e)));
  }
  if (!pooled) g_own_mappings.fetch_add(1, std::memory_order_relaxed);
  base_ = p;
  pages_ = n;
  size_ = size;
  pooled_ = pooled;
  return {};
}

ExecMemory::~ExecMemory() {
  if (!base_) return;
  if (pooled_) {
    pool().give_back(base_, pages_);
  } else {
    munmap(base_, pages_ * page_size());
    g_own_mappings.fetch_sub(1, std::memory_order_relaxed);
  }
}

ExecPoolStats exec_pool_stats() {
  ExecPoolStats s = pool().stats();
  s.own_mappings = g_own_mappings.load(std::memory_order_relaxed);
  return s;
}

}  // namespace bpfvm::detail
