// bpfvm: facts about JIT-compiled programs (x86-64). The JIT itself is an engine behind
// Executable (ExecOptions::engine = EngineKind::Jit); this header only exposes what it produced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bpfvm/asm.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

struct JitCodeInfo {
  size_t code_size = 0;        // bytes of machine code (all functions, slow paths and the callback entry)
  uint64_t compile_ns = 0;     // time spent in the JIT compiler (analysis, emission, W^X mapping; monotonic clock)
  size_t functions = 0;        // number of compiled BPF functions (main + call/callback targets)
  bool bmi2 = false;           // shifts by register used shlx/shrx/sarx
  bool hardened = false;       // immediates were blinded
  const void* code = nullptr;  // first byte of the code (page-aligned, read+execute, no other program's code on its pages)
  size_t mapped_size = 0;      // bytes of the pages holding it
};

// Facts about an Executable created with EngineKind::Jit (InvalidArgument for other engines).
Result<JitCodeInfo> jit_code_info(const Executable& exe);

// The generated machine code disassembled (capstone, AT&T-free Intel syntax), interleaved with the
// BPF instruction each piece of native code came from. `options` formats the BPF lines.
Result<std::string> jit_disassemble(const Executable& exe, const DisasmOptions& options = {});

// Testing knob: when false, the JIT behaves as if the CPU had no BMI2 (variable shifts go through cl).
// Affects programs compiled afterwards (process-wide). Returns the previous value.
bool jit_set_use_bmi2(bool use);

}  // namespace bpfvm
