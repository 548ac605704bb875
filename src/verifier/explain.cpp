// Plain-words explanations for rejection messages that do not carry their own.
#include <string>

#include "verifier/impl.hpp"

namespace bpfvm::verifier {

std::string explain(const std::string& m) {
  auto has = [&](const char* s) { return m.find(s) != std::string::npos; };
  if (has("back-edge from insn"))
    return "This jump goes back to an earlier instruction, which makes a loop. Strict rules (for untrusted code, "
           "the kernel's rules without CAP_BPF) allow no loops at all, bounded or not. Unroll the loop (`#pragma "
           "unroll` with a constant bound), or verify with privileged rules if the code is trusted.";
  if (has("loading/calling other bpf or kernel functions"))
    return "The program calls another BPF function, or takes a function's address for a callback (bpf_loop, "
           "bpf_for_each_map_elem, timers). Strict rules (for untrusted code, the kernel's rules without CAP_BPF) "
           "allow neither. Inline the function (static __always_inline), or verify with privileged rules if the "
           "code is trusted.";
  if (has("_or_null"))
    return "The pointer may be NULL here (a map lookup or reservation can fail). Check it first: "
           "`if (!p) return 0;` and use it only on the non-NULL path.";
  if (has("invalid mem access 'scalar'"))
    return "The register holds a number, not a pointer the verifier can check. Only pointers obtained from the "
           "context, the stack, map lookups or the packet may be dereferenced.";
  if (has("invalid access to map value"))
    return "The access falls outside the map's value. Check the index against the array size (unsigned) before "
           "using it, and keep offset + size within value_size.";
  if (has("invalid access to packet"))
    return "The packet is only known to be long enough after a comparison with data_end.";
  if (has("invalid access to memory"))
    return "The access falls outside the input memory r1 points to. When its size is given at load, keep "
           "offset + size within it; otherwise compare against the length in r2 "
           "first: `if (r2 < offset + size) return 0;`.";
  if (has("min value is negative"))
    return "The offset might be negative. Use an unsigned index, or check `if (i < 0) return ...` before use.";
  if (has("unbounded"))
    return "The verifier cannot bound this offset or size. Add an explicit upper-bound check just before the "
           "access.";
  if (has("!read_ok"))
    return "A register is read before anything was written to it on this path (r1-r5 are cleared by calls).";
  if (has("program is too large:"))
    return "The kernel refuses a program with more instructions than the limit before verifying it (E2BIG): "
           "4,096 for a loader without CAP_BPF, 1,000,000 with it. Split the work with tail calls, or verify "
           "with privileged rules if the code is trusted.";
  if (has("jump out of range") || has("lddw"))
    return "A jump target is outside the function or lands inside a 16-byte lddw instruction.";
  if (has("unreachable"))
    return "Some instructions can never run. The kernel refuses dead code; remove it or fix the jump.";
  if (has("last instruction") || has("falls off"))
    return "Execution could run past the end of a function. Every path must end with exit.";
  if (has("ctx") && has("access"))
    return "This context field cannot be accessed this way for this program type (wrong offset, size or a write "
           "to a read-only field).";
  if (has("leaks addr"))
    return "Under strict rules a pointer may not be written where user space can read it (maps, the context, "
           "helper arguments) nor returned.";
  if (has("stack"))
    return "The stack access is outside the 512-byte frame, misaligned, or reads bytes never written.";
  if (has("map index") || has("map"))
    return "The map reference is not valid for this operation.";
  return "The verifier could not prove this instruction safe on every path.";
}

}  // namespace bpfvm::verifier
