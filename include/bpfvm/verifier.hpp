// bpfvm: the verifier. Abstract interpretation of a program over every path, in the style of the
// Linux verifier: registers and stack slots carry types (scalars with a tnum and signed/unsigned
// 64- and 32-bit bounds; pointers to the context, stack, packet, map values, ...); every memory
// access, helper call and exit is checked; equivalent states are pruned; loops are walked with a
// budget of processed instructions. See docs/verifier.md.
//
//   bpfvm::VerifyOptions o;
//   o.type = bpfvm::find_prog_type(bpfvm::kProgXdp);
//   o.maps = {spec0, spec1};              // indices of lddw src=5/6
//   auto r = bpfvm::verify(insns, o);     // Result<VerifyReport>: error only for unusable input
//   if (!r->accepted) puts(r->error.to_string().c_str());
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bpfvm/helpers.hpp"
#include "bpfvm/insn.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/result.hpp"

namespace bpfvm {

enum class RuleSet : uint8_t {
  Privileged,  // the kernel's rules for root (CAP_BPF + CAP_PERFMON)
  Strict,      // the kernel's unprivileged rules and more (no pointer leaks, no uninitialised
               // stack reads, return value in the program type's range)
};
const char* rule_set_name(RuleSet r);

struct VerifyLimits {
  uint64_t insn_budget = 1'000'000;        // processed instructions (the kernel's limit)
  uint64_t max_states = 200'000;           // stored states for pruning (bounded memory)
  uint64_t max_memory = 512ull << 20;      // approximate bytes of verifier state before rejecting
  uint32_t max_pending = 8'192;            // pending branches (the kernel's BPF_COMPLEXITY_LIMIT_JMP_SEQ)
};

// The prototype a BTF-typed program (fentry/fexit/fmod_ret, tp_btf, lsm, iter) attaches to, resolved
// in kernel BTF: the program's context is that prototype's arguments (u64 each), pointer arguments
// are typed pointers to kernel structs (docs/verifier.md, "BTF-typed contexts").
struct AttachBtf {
  std::string target;     // as the section names it: "do_unlinkat", "sched_switch", "file_open", "task"
  std::string type_name;  // the BTF type: "do_unlinkat", "btf_trace_sched_switch", "bpf_lsm_file_open", "bpf_iter_task"
  std::string origin;     // the BTF file it was found in
  uint32_t btf_id = 0;    // its id there (the kernel's attach_btf_id when the file is the kernel's vmlinux BTF)
  std::shared_ptr<const void> impl;  // the resolved prototype (verifier-internal)
};
// Whether programs of this type and attach type have a BTF-typed context.
bool needs_attach_btf(uint32_t prog_type, uint32_t expected_attach);
// Resolves `target` in `btf_file` ("": /sys/kernel/btf/vmlinux). Errors name what is missing.
Result<std::shared_ptr<const AttachBtf>> resolve_attach_btf(uint32_t prog_type, uint32_t expected_attach,
                                                            const std::string& target,
                                                            const std::string& btf_file = "");

struct VerifyOptions {
  const ProgTypeInfo* type = nullptr;  // required (kProgMem for plain memory)
  // Maps by index (lddw src=5 imm = index, src=6 imm low 32 = index, high 32 = value offset).
  std::vector<MapSpec> maps;
  // Per map (same index): frozen read-only data (.rodata); programs may not write it.
  std::vector<bool> map_readonly;
  // Maps referred to by fd (lddw src=1/2): fd -> index into `maps`. Empty: fds are not accepted.
  std::function<int(int32_t fd)> map_index_of_fd;
  RuleSet rules = RuleSet::Privileged;
  int log_level = 0;                   // 0 none, 1 the path to the error, 2 every instruction's state
  // kProgMem: the exact size of the memory r1 points to, when known at load; -1: unknown (accesses
  // must be proved against r1 + r2 like packet accesses against data_end).
  int64_t mem_size = -1;
  bool gpl = true;                     // license is GPL-compatible (gpl_only helpers)
  // Helper prototypes and per-type permissions: nullptr = the kernel's; an embedder's HelperSet
  // (helpers.hpp) makes its own helpers callable. Must outlive the verify() call.
  const HelperSet* helpers = nullptr;
  VerifyLimits limits;
  // BTF-typed programs: the attach target (resolve_attach_btf). Unset: the context is 12 untyped u64
  // arguments. `attach_error` (when the target named could not be resolved) rejects the program.
  std::shared_ptr<const AttachBtf> attach_btf;
  std::string attach_error;
  // Source lines for messages: pc -> "file:line: text" ("" when unknown). Optional.
  std::function<std::string(size_t pc)> source_line;
  // Failed CO-RE relocations: pc -> the relocation whose poisoned instruction sits there ("" when
  // none). Reaching one is an error naming it (as libbpf rewrites the kernel's log). Optional.
  std::function<std::string(size_t pc)> core_relocation;
};

// What the verifier proved about one instruction (one entry per slot).
struct InsnFacts {
  bool visited = false;      // reached on some path
  // Memory instructions: the base register is the context pointer with offset 0 on every path
  // (BaseFact::Ctx), something else on every path (NotCtx), a moved context (CtxMoved), or mixed.
  BaseFact base = BaseFact::NotCtx;
  bool in_bounds = false;    // memory access proven inside its region on every path
};

struct VerifyReport {
  bool accepted = false;
  uint64_t insns_processed = 0;  // instructions explored, comparable to the kernel's
  uint64_t states = 0;          // states stored for pruning
  uint64_t peak_states = 0;
  uint64_t time_us = 0;
  uint64_t peak_memory = 0;     // approximate bytes of verifier state at the peak
  uint32_t max_stack_depth = 0; // deepest combined stack of a call chain (bytes)
  Diagnostic error;             // when rejected: code Verify (or Budget), pc, message, source line
  std::string explanation;      // plain words: what would go wrong, how such code is usually fixed
  std::string log;              // the verifier log (log_level >= 1)
  std::vector<InsnFacts> facts; // one per slot

  // The context-base facts in the form rewrite_ctx_accesses takes.
  CtxBaseFacts ctx_base_facts() const;
};

// Verifies `insns` (the IR, pseudo lddw forms allowed). Returns an error Diagnostic only when the
// input cannot be judged (no program type, empty program); a rejection is a report with
// accepted = false.
Result<VerifyReport> verify(std::span<const Insn> insns, const VerifyOptions& options);

// Options for a program of a loaded object: its type, the object's maps (.rodata read-only), the
// license, source lines from BTF line info.
VerifyOptions verify_options_for(const Object& object, const ObjectProgram& program,
                                 RuleSet rules = RuleSet::Privileged);

// Full text of a rejection as the CLI prints it: the message, the instruction, the register state,
// the explanation and the source line.
std::string format_rejection(const VerifyReport& report, std::span<const Insn> insns);

}  // namespace bpfvm
