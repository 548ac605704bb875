// bpfvm trace --mode agent: the command runs with bpfvm's agent inside (LD_PRELOAD); bpfvm trace
// shares the object's maps with it (pinned in a private directory), reads its reports (readiness,
// errors, printk lines) and consumes the ring buffers while the command runs.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bpfvm/agent.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm::cli {

// The agent library: $BPFVM_AGENT_LIB, else libbpfvm-agent.so beside the bpfvm binary (the build
// tree), else in the installed library directory. "" with `why` when none is found.
std::string find_agent_library(std::string& why);

// Why the agent cannot work in the command `argv0` ("" when it can): a statically linked program
// (no dynamic loader to preload it), a set-user/group-ID program (the loader ignores LD_PRELOAD),
// a process that forbids writable+executable memory (PR_SET_MDWE, inherited by the command).
std::string agent_unusable_reason(const std::string& argv0);

// Why the ELF program `file` cannot host the agent because it is statically linked ("" when it has
// a dynamic loader); a script is judged by its interpreter.
std::string interp_check(const std::string& file, int depth = 0);

struct AgentTraceOptions {
  AgentSpec spec;                    // object, load options, attach requests, engine (the rest is filled
                                     // here; spec.pin_dir set: --pinmaps DIR, else a private directory)
  std::vector<std::string> command;  // CMD ARGS
  pid_t pid = 0;                     // -p PID: the agent is loaded into that running process instead
  double duration = 0;               // > 0: stop after that many seconds; the command keeps running
  std::function<void(const std::string&)> note;          // messages for the user (stderr)
  std::function<void(const AgentMessage&)> printk;       // a bpf_trace_printk line
  SyscallHooks::RecordSink record;                       // a ring-buffer record
};

struct AgentTraceResult {
  int exit_code = 0;        // the command's status (128+N when killed by signal N), 127 when it could not start
  bool started = false;
  std::string start_error;
  bool agent_failed = false;  // the agent in the command reported an error (the command ran untraced)
  bool detached = false;
};

// Creates the private pin directory and the maps (SyscallHooks::create with every map pinned there:
// the CLI's view of the object, verified before the command starts), then runs the command with the
// agent and serves it until the command ends (or the duration). `hooks` gets the maps; its drain()
// consumes the ring buffers.
Result<AgentTraceResult> run_agent_trace(const Object& object, SyscallHooksOptions hook_options,
                                         AgentTraceOptions options, std::unique_ptr<SyscallHooks>& hooks);

// What run_agent_trace prepared for the agent of a running process (-p): the report socket, the
// control word, the spec file, the agent library and the private directory.
struct AgentChannel {
  int sock = -1;
  std::atomic<uint32_t>* enabled = nullptr;
  std::string spec_path, lib, dir;
};

// -p PID (trace_agent_pid.cpp): loads the agent into the process (ptrace, inject.hpp) and serves it
// until SIGINT/SIGTERM/SIGHUP, the duration or the process's end; detaching removes the probes and
// leaves the process running with the agent loaded and idle.
Result<AgentTraceResult> serve_process_agent(const AgentChannel& channel, const AgentTraceOptions& options,
                                             SyscallHooks& hooks);

}  // namespace bpfvm::cli
