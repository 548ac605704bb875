// bpfvm: assembler and disassembler for two syntaxes.
//   Kernel  - the Linux verifier log / llvm-objdump / bpftool syntax:
//             r1 += r3   w1 = w2   *(u32 *)(r1 +8) = r2   if r0 == 0x0 goto pc+2
//             call bpf_map_lookup_elem#1   r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)
//   Conformance - the bpf_conformance syntax: add32 %r1, 2   ldxw %r0, [%r1+4]   labels
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"

namespace bpfvm {

enum class Syntax { Kernel, Conformance };

// Helper names for `call` (kernel syntax). Returns "" for an unknown id.
using HelperNameFn = std::function<std::string_view(int32_t id)>;
// Helper ids by name, for assembling `call bpf_xyz`. Returns -1 for an unknown name.
using HelperIdFn = std::function<int32_t(std::string_view name)>;

// Assembles text (docs/assembly.md). Errors are ErrorCode::Assemble diagnostics carrying the 1-based
// line and column. The result is what decode() gives for the bytes (one entry per slot, lddw
// followed by LDDW_HI), and decode's per-instruction checks apply (r10 writes, reserved fields);
// check_structure() is not run, so fragments assemble. `helper_id` resolves `call name` (kernel
// syntax) when `name` is not a label.
Result<std::vector<Insn>> assemble(std::string_view text, Syntax syntax, const HelperIdFn& helper_id = {});
// Detects the syntax from the text (conformance syntax uses %rN registers).
Syntax detect_syntax(std::string_view text);
Result<std::vector<Insn>> assemble_auto(std::string_view text, const HelperIdFn& helper_id = {});

struct DisasmOptions {
  Syntax syntax = Syntax::Kernel;
  HelperNameFn helper_name;   // may be empty
  bool show_index = true;     // "   0: " prefixes (kernel syntax); labels (conformance syntax)
  bool show_raw = false;      // raw bytes after the index
};

// One instruction (pc is its slot index), without index, raw bytes or labels: only `syntax` and
// `helper_name` of the options apply. A helper call prints as `call name#N`, or `call #N` when
// helper_name is empty or does not know N.
std::string format_insn(const Insn& insn, int64_t pc, const DisasmOptions& options = {});
// A whole program, one instruction per line (LDDW_HI slots are skipped).
std::string disassemble(std::span<const Insn> insns, const DisasmOptions& options = {});

}  // namespace bpfvm
