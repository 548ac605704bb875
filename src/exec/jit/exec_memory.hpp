// Internal: executable memory for JIT code (W^X), carved from a process-wide pool of pre-populated
// pages. docs/jit.md, "W^X".
#pragma once

#include <cstddef>
#include <cstdint>

#include "bpfvm/result.hpp"

namespace bpfvm::detail {

// The machine code of one program: whole pages of its own (no other program's code shares a page),
// never writable and executable at once (see CodeWriteMode for how the bytes get there).
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
  bool kernel_write_ = false;  // written through /proc/self/mem (its pages stay read+execute)
};

// How code gets into its pages. KernelWrite (the default where it works): a pool arena is filled with
// int3 and made read+execute once, when it is mapped; a program's code is then written into its pages
// by the kernel, with pwrite() on /proc/self/mem (as a debugger writes a breakpoint: no mapping of the
// process is writable at any time, none changes, no TLB flush), and a released program's bytes are
// overwritten with int3 the same way. Mprotect: pages are read-write while the pool holds them and
// while the code is copied, then mprotect()ed read+execute, and read-write again on release. KernelWrite
// is used when a probe at first use succeeds (the file opens read-write and a test write into a
// read+execute page lands); otherwise, or on request, Mprotect.
enum class CodeWriteMode { KernelWrite, Mprotect };
// The mode for arenas mapped from now on (tests, benchmarks); returns the previous one. Asking for
// KernelWrite where the probe failed keeps Mprotect (check exec_memory_mode()).
CodeWriteMode exec_memory_set_mode(CodeWriteMode mode);
CodeWriteMode exec_memory_mode();

// Writes `n` bytes into this process's code at `at` (any read+execute mapping, e.g. a function's
// text being patched) the KernelWrite way, through /proc/self/mem: no mapping becomes writable.
// False where that does not work here (the caller then needs mprotect).
bool write_code_bytes(void* at, const void* data, size_t n);

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
// live code is kept per CodeWriteMode (others are unmapped).
inline constexpr size_t kExecArenaPages = 64;
inline constexpr size_t kExecMaxResidentFreePages = 256;

}  // namespace bpfvm::detail
