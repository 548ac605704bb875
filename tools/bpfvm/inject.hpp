// Loading bpfvm's agent into a running process (bpfvm trace --mode agent -p PID): one thread of the
// process is seized with ptrace and made to call functions of the process — the C library's mmap
// and dlopen, then the agent's entry points — and is then put back exactly as it was (registers,
// extended state, signal mask; an interrupted system call resumes as the kernel restarts it). The
// other threads run on meanwhile. docs/tracing.md, "Loading the agent into a running process".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bpfvm/result.hpp"

namespace bpfvm::cli {

// Why the agent cannot be loaded into `pid` ("" when nothing speaks against it yet): no such process,
// a stopped or ending process, a statically linked program or one without dlopen, shadow stacks. An
// error of kind Io means the process cannot be reached at all (no such process, no permission).
Status agent_injectable(pid_t pid);

// The files mapped in `pid` (its program and libraries), as its /proc/PID/maps names them.
std::vector<std::string> process_files(pid_t pid);

struct InjectOutcome {
  bool loaded_now = false;  // dlopen ran (else the agent library was already in the process)
  int start_result = -1;    // bpfvm_agent_start's: 0 started, -1 refused (its reason went to the socket)
};

// Loads the agent library `lib` into `pid` (unless it is there already) and calls
// bpfvm_agent_start(spec_path) in it. Refuses, leaving the process untouched, where the process
// forbids making memory executable (PR_SET_MDWE, MemoryDenyWriteExecute) or lacks dlopen.
// `timeout_s` bounds each wait for the thread (its stop, each call).
Result<InjectOutcome> inject_agent(pid_t pid, const std::string& lib, const std::string& spec_path,
                                   double timeout_s = 60);

// Calls bpfvm_agent_stop() in `pid` (when the agent library `lib` is loaded there): the probes are removed,
// the agent stays loaded and idle. Retries while the agent cannot stop on the thread it got (a
// thread inside a probe handler). Returns bpfvm_agent_stop's result (1 stopped, 0 nothing ran).
Result<int> stop_agent(pid_t pid, const std::string& lib, double timeout_s = 30);

}  // namespace bpfvm::cli
