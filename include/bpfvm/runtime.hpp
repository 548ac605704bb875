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
#include "bpfvm/vm.hpp"

namespace bpfvm {

struct PrepareOptions {
  ExecOptions exec;
  const HelperSet* helpers = nullptr;  // default: HelperSet::kernel()
};

// A program of a loaded object, ready to run.
struct PreparedProgram {
  const ProgTypeInfo* type = nullptr;
  std::unique_ptr<Executable> exe;
  // Memory the program reaches without a helper (global data of its object): allowed in checked runs.
  std::vector<MemRegion> regions;
};

// Resolves the program's map references against `live`, checks that every helper it calls is
// allowed for its type and provided, rewrites context accesses to the native context, and creates
// the executable. `type` overrides the program's own type (nullptr: the program's; kProgMem when
// the program has none).
Result<PreparedProgram> prepare_program(const ObjectProgram& prog, const LoadedObject& live,
                                        const ProgTypeInfo* type = nullptr, const PrepareOptions& options = {});

// Prepares a plain IR program (assembly, raw bytecode) for a program type: helper check, context
// rewrite, executable.
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
