// Context builders of the syscall hooks: one per layout of trace_layout() (progtype.hpp), shared by
// every event source.
#pragma once

#include <cstdint>

#include "bpfvm/trace.hpp"

namespace bpfvm::syscall_hooks {

// One syscall event as the builders see it.
struct SyscallEventData {
  const SyscallRegs* regs = nullptr;  // the user's registers (at exit: ax = the return value)
  int64_t nr = -1;                    // the syscall number it entered with
  bool exit = false;
  uint32_t tid = 0;
  // bpfvm's copy of the user's registers, which pointers in contexts lead to (kernel memory of the
  // event for bpf_probe_read_kernel).
  const PtRegsNative* kernel_regs = nullptr;
};

// Fills the native context of `point`'s layout into `out` (at least sizeof(SyscallEnterNative) and
// sizeof(PtRegsNative) bytes, 8-aligned) and returns its size.
size_t build_context(const AttachPoint& point, const SyscallEventData& ev, void* out);

}  // namespace bpfvm::syscall_hooks
