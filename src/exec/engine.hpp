// Internal: engine factories. Each engine takes a linked program (IR with resolved helpers).
#pragma once

#include <memory>
#include <vector>

#include "bpfvm/vm.hpp"

namespace bpfvm::detail {

// Helpers resolved for one program: the helper of every CALL_HELPER slot, and a dense table by id
// for callx.
struct LinkedProgram {
  const Program* program = nullptr;
  const Executable* exe = nullptr;
  std::vector<const HelperDef*> helper_at;  // per slot; non-null for CALL_HELPER
  std::vector<const HelperDef*> by_id;      // dense by helper id (callx)
};

Result<std::unique_ptr<Engine>> make_interpreter(const LinkedProgram& linked, const ExecOptions& options);
Result<std::unique_ptr<Engine>> make_jit(const LinkedProgram& linked, const ExecOptions& options);

// RAII: installs a RunContext as this thread's current one, restoring the previous one after.
class ScopedRunContext {
 public:
  explicit ScopedRunContext(RunContext* ctx);
  ~ScopedRunContext();
  ScopedRunContext(const ScopedRunContext&) = delete;
  ScopedRunContext& operator=(const ScopedRunContext&) = delete;

 private:
  RunContext* prev_;
};

}  // namespace bpfvm::detail
