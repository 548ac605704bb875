// Rewritten syscall sites: `mov $NR,%eax; syscall` of watched syscalls jump to trampolines that run
// the programs without a trap (syscall_sites.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "bpfvm/result.hpp"

namespace bpfvm::agent_syscalls {

// Rewrites the sites of the syscalls `wanted` accepts in the main program and the C library. Returns
// how many; an error (nothing rewritten) where it cannot be done safely (more than one thread, no
// xsave).
Result<size_t> rewrite_syscall_sites(const std::function<bool(uint32_t)>& wanted);

// A rewritten site's syscall: `frame` holds the thread's registers as struct pt_regs (orig_ax = the
// number); the result goes to its ax (syscalls.cpp: the SIGSYS handler's code path).
void syscall_site_run(uint64_t* frame) noexcept;

}  // namespace bpfvm::agent_syscalls
