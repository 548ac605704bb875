// Internal: executable memory for JIT code (W^X), carved from a process-wide pool of pre-populated
// pages. docs/jit.md, "W^X".
#pragma once

#include <cstddef>
#include <cstdint>

#include "bpfvm/result.hpp"

namespace bpfvm::detail {

// The machine code of one program: whole pages of its own (no other program's code shares a page),
// written while read-write and then made read+execute; never writable and executable at once.
// Small code comes from the pool (ExecPool below), code larger than a pool arena gets a mapping of its
// own. Destroying the object gives the pages back (read-write again, ready for the next program).
class ExecMemory {
 public:
  ExecMemory() = default;
  ExecMemory(const ExecMemory&) = delete;
  ExecMemory& operator=(const ExecMemory&) = delete;
  ~ExecMemory();
  // Copies `size` bytes of code into fresh pages, pads the rest of the last page with int3 and makes
  // the pages read+execute. Only once per object.
  Status install(const uint8_t* code, size_t size);
  const uint8_t* base() const { return base_; }
  size_t size() const { return size_; }      // bytes of code
  size_t mapped() const { return pages_ * page_size(); }
  static size_t page_size();

 private:
  uint8_t* base_ = nullptr;
  size_t pages_ = 0;
  size_t size_ = 0;
  bool pooled_ = false;
};

// Pool facts (tests and diagnostics).
struct ExecPoolStats {
  size_t arenas = 0;               // pre-populated read-write regions the pool holds
  size_t used_pages = 0;           // pages holding live code (read+execute)
  size_t free_resident_pages = 0;  // free pages still populated (reused without a page fault)
  size_t free_dropped_pages = 0;   // free pages given back to the kernel (MADV_DONTNEED)
  size_t own_mappings = 0;         // live code too large for an arena, in a mapping of its own
};
ExecPoolStats exec_pool_stats();

// Limits: an arena is kExecArenaPages pages; at most kExecMaxResidentFreePages free pages stay
// populated (beyond that, freed pages are dropped with MADV_DONTNEED); at most one arena with no
// live code is kept (others are unmapped).
inline constexpr size_t kExecArenaPages = 64;
inline constexpr size_t kExecMaxResidentFreePages = 256;

}  // namespace bpfvm::detail
