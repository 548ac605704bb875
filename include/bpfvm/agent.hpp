// bpfvm: the in-process agent — programs run inside the traced process, entered from patched code
// (probes in user code) instead of a trap.
//
//   bpfvm trace --mode agent            the agent (libbpfvm-agent.so)
//     creates the object's maps pinned   LD_PRELOAD into CMD; its constructor reads the spec file
//     in a private directory, writes a   named by $BPFVM_AGENT_SPEC, loads, verifies and JITs the
//     spec file, binds a report socket,  object with the same pinned maps, attaches the probes of
//     starts CMD and reads the maps,     the modules loaded now and of libraries dlopen loads later,
//     ring buffers and reports           and reports (ready, errors, printk lines) on the socket
//
// Both sides use this header: the spec (what to load and attach) and the report messages.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/result.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm {

// The environment variable that names the spec file; the agent does nothing without it.
inline constexpr const char* kAgentSpecEnv = "BPFVM_AGENT_SPEC";

// How system-call programs run inside the process (docs/tracing.md, "System calls in the agent").
enum class SyscallMechanism : uint8_t {
  Sud,      // Syscall User Dispatch (per thread; not inherited across exec; can be switched off)
  Seccomp,  // a seccomp filter trapping the watched syscalls (stays for the process's lifetime and
            // its children's, across exec)
};
std::string_view syscall_mechanism_name(SyscallMechanism m);
std::optional<SyscallMechanism> syscall_mechanism_from_name(std::string_view name);

struct AgentSpec {
  std::string object;                                // the BPF object file
  std::string name;                                  // LoadOptions::name ("" = from the file name)
  std::optional<uint32_t> prog_type;                 // --type TYPE
  std::map<std::string, uint32_t> section_types;     // --type SECTION=TYPE
  std::string target_btf;                            // --btf FILE
  std::vector<std::pair<std::string, std::string>> sets;  // --set NAME=VALUE
  std::vector<AttachRequest> attach;                 // empty: every program at its section
  EngineChoice engine = EngineChoice::Auto;
  bool verify = true;
  RuleSet rules = RuleSet::Privileged;
  std::string pin_dir;                               // every map of the object, pinned by name
  std::string socket;                                // the report socket (AF_UNIX datagrams)
  // A shared page whose first word bpfvm trace clears to detach: probes then run no program (the
  // agent stays loaded, idle; trampolines stay mapped). "" = always enabled.
  std::string control;
  // How programs at system-call events (tracepoints, raw tracepoints, syscall kprobes) run here.
  SyscallMechanism syscalls = SyscallMechanism::Sud;
  // Also rewrite the `mov $NR,%eax; syscall` sites of traced syscalls in the main program and the C
  // library into jumps to the programs (no trap there); false: every traced syscall traps.
  bool rewrite_sites = true;
};

std::string agent_spec_to_json(const AgentSpec& spec);
Result<AgentSpec> agent_spec_from_json(std::string_view json);

// What an agent reports (one datagram each).
struct AgentMessage {
  enum class Kind : uint8_t {
    Ready,   // attached `attached` probes; `pending` wait for their library to be loaded
    Error,   // text: why (nothing of the object is attached in that process)
    Note,    // text: something the user should know (a library a probe waits for, ...)
    Attach,  // a library loaded later: `attached` more probes (text: the library)
    Printk,  // a bpf_trace_printk line of thread `tid` named `comm`
    Fault,   // a program run failed (text: "program NAME: message"); reported once per program
  };
  Kind kind = Kind::Note;
  int32_t pid = 0, tid = 0;
  std::string comm, text;
  uint32_t attached = 0, pending = 0;
};
std::string agent_message_to_json(const AgentMessage& m);
Result<AgentMessage> agent_message_from_json(std::string_view json);

// The agent's work in the current process (the library's constructor calls it when $BPFVM_AGENT_SPEC
// is set): load the spec, prepare the programs, attach. Errors are reported on the spec's socket and
// returned; nothing stays attached after an error.
Status agent_start(const std::string& spec_path);
// Starts the programs at system-call events of the running agent with `m` (agent_start does it with
// the spec's mechanism; this is for a caller that starts them later or in another mode). An error
// when the agent does not run, has no such programs, or they already run.
Status agent_start_syscalls(SyscallMechanism m);
// Attaches probes waiting for libraries that are now loaded (after dlopen). Cheap when none wait.
void agent_rescan_modules();
// Whether the agent runs in this process (programs attached or waiting).
bool agent_active();
// Ends the agent's session in this process (bpfvm trace -p detaching): every probe is removed with
// its original bytes restored, USDT semaphores are decremented, the object and its maps released;
// the library stays loaded, idle, and agent_start may be called again. True when a session ended,
// false when none ran; an error (ErrorCode::Unsupported) when this thread cannot do it now (it is
// inside a probe handler or the agent's own attach): the caller tries again later.
Result<bool> agent_stop();

}  // namespace bpfvm
