// x86-64 JIT: placeholder until the JIT lands (issue 3). Refuses cleanly; never runs anything.
#include "exec/engine.hpp"

namespace bpfvm::detail {
Result<std::unique_ptr<Engine>> make_jit(const LinkedProgram&, const ExecOptions&) {
  return make_error(ErrorCode::Unsupported, "the x86-64 JIT is not available in this build");
}
}  // namespace bpfvm::detail
