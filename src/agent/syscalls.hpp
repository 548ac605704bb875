// System-call programs inside the traced process (docs/tracing.md, "System calls in the agent"): the
// syscalls a program watches trap to the agent's SIGSYS handler (a seccomp filter's SECCOMP_RET_TRAP,
// or Syscall User Dispatch), which builds the contexts and runs the programs through SyscallHooks (the
// code path of ptrace mode), performs the syscall itself from its dispatch page and writes the result
// into the interrupted thread's registers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "bpfvm/agent.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm::agent_syscalls {

// Starts the syscall hooks of `hooks` (its programs at syscall events) in this process with the
// mechanism. `note` receives messages for the user (threads that could not be switched, ...). Once
// started, the hooks stay for the process's lifetime (SUD: until stop()).
// `rewrite`: also rewrite the `mov $NR,%eax; syscall` sites of watched syscalls in the main program
// and the C library into jumps (syscall_sites.hpp), keeping the trap for every other site. `enabled`:
// a word that is 0 while no program may run (the agent's control page; nullptr = always).
Status start(SyscallHooks& hooks, SyscallMechanism mechanism, bool rewrite, const std::atomic<uint32_t>* enabled,
             std::function<void(const std::string&)> note);
// Syscall User Dispatch only: switches dispatch off on every thread (the handler stays installed and
// idle). An error for a seccomp filter, which cannot be removed.
Status stop();
// The hooks' programs are about to go (the agent's session ends): from now on every syscall passes
// through unhooked (SUD switched off; a seccomp filter's traps are issued as they are). Call it after
// the control word is cleared (no program starts then).
void detach();
bool running();
// The number of syscall events handled in this process (entry events run), for tests.
uint64_t events();

}  // namespace bpfvm::agent_syscalls
