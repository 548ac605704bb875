// bpfvm: from a loaded object to a running program — the pipeline the CLI, the hooks and embedders
// share: resolve maps, check helpers against the program type, rewrite context accesses, create the
// executable, build a context from data/ctx bytes and run it (like BPF_PROG_TEST_RUN).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "bpfvm/helpers.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/verifier.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// Which engine runs a prepared program (issue: "when JIT code may run").
enum class EngineChoice {
  Auto,         // verified: the JIT (unchecked; the interpreter when exec asks for a budget or
                // checked accesses); unverified: the checked interpreter
  Interpreter,  // the interpreter (checked when the program is not verified)
  Jit,          // the JIT; verified programs only (an unverified one is refused: InvalidArgument)
};

// The instruction budget of unverified programs when PrepareOptions::exec.insn_budget is 0: nothing
// proved that they end, so a run (one packet of a hook, one test run) stops with ErrorCode::Budget
// after this many instructions -- about a second or two of the checked interpreter.
constexpr uint64_t kUnverifiedInsnBudget = 100'000'000;

// The choice that asks for `kind`.
constexpr EngineChoice engine_choice(EngineKind kind) {
  return kind == EngineKind::Jit ? EngineChoice::Jit : EngineChoice::Interpreter;
}

struct PrepareOptions {
  // exec.engine / exec.checked are decided by `engine` and `verify`; exec.engine == Jit with
  // engine == Auto counts as asking for the JIT. Budget and hardening are passed through; an
  // unverified program without a budget gets kUnverifiedInsnBudget.
  ExecOptions exec;
  EngineChoice engine = EngineChoice::Auto;
  // Run the verifier first (the default): a rejected program is refused with ErrorCode::Verify.
  // false: the caller explicitly runs unverified code (`--no-verify`): in the checked interpreter,
  // under an instruction budget; asking for the JIT is then refused.
  bool verify = true;
  // The verifier's rule set. The API's default is strict (the kernel's unprivileged rules and more):
  // code the embedder did not write itself -- plugins, programs from users or the network -- is
  // untrusted. Code trusted as root would be (your own programs; what the CLI runs by default):
  // RuleSet::Privileged, which allows loops, bpf-to-bpf calls, callbacks and every helper.
  RuleSet rules = RuleSet::Strict;
  // Plain-memory programs (kProgMem): the exact size of the memory r1 points to, when known.
  int64_t mem_size = -1;
  const HelperSet* helpers = nullptr;  // default: HelperSet::kernel()
  // Out: the verifier's report (filled whenever the verifier ran, accepted or not), and for a
  // rejection its full text (format_rejection: message, instruction, source line, explanation),
  // prefixed with "section/function: " for object programs.
  VerifyReport* report = nullptr;
  std::string* rejection = nullptr;
};

// A program of a loaded object, ready to run.
struct PreparedProgram {
  const ProgTypeInfo* type = nullptr;
  std::unique_ptr<Executable> exe;
  // Memory the program reaches without a helper (global data of its object): allowed in checked runs.
  std::vector<MemRegion> regions;
  bool verified = false;     // the verifier accepted it (it runs unchecked)
};

// Verifies the program (unless options.verify is false), resolves its map references against `live`,
// checks that every helper it calls is allowed for its type and provided, rewrites context accesses
// to the native context (using the verifier's facts), creates the executable, and puts the programs
// its object names in prog_array `values` (static tail-call targets) into those maps.
// `type` overrides the program's own type (nullptr: the program's; kProgMem when the program has none).
Result<PreparedProgram> prepare_program(const ObjectProgram& prog, const LoadedObject& live,
                                        const ProgTypeInfo* type = nullptr, const PrepareOptions& options = {});

// Prepares a plain IR program (assembly, raw bytecode) for a program type: verification, helper
// check, context rewrite, executable. Such a program has no maps; one whose lddw already holds live
// map addresses cannot be verified (the verifier sees plain numbers): prepare it with verify = false.
Result<PreparedProgram> prepare_program(Program program, const ProgTypeInfo& type, const PrepareOptions& options = {});

struct TestRunResult {
  uint64_t retval = 0;
  uint64_t duration_ns = 0;         // average over `repeat` runs (0 when repeat == 0)
  std::vector<uint8_t> data_out;    // the packet (or memory) after the run
  std::vector<uint8_t> ctx_out;     // the uapi context after the run
};

// Runs like BPF_PROG_TEST_RUN: builds the context for the program's type from data_in / ctx_in,
// runs once (and `repeat` more times for the duration, each on fresh input), returns r0 and the
// outputs. Errors: context building, a run that fails (fault, budget), a helper callback fault.
Result<TestRunResult> test_run(const PreparedProgram& prog, std::span<const uint8_t> data_in,
                               std::span<const uint8_t> ctx_in = {}, uint64_t repeat = 0,
                               const TestRunOptions& options = {});

}  // namespace bpfvm
