// CO-RE: relocating a program's field offsets, type ids, sizes and enum values from the BTF it was
// compiled with (local) to the BTF of the kernel it will run against (target), with libbpf's
// matching rules (docs/loader.md, "CO-RE"). No kernel involved.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"
#include "loader/internal.hpp"

struct btf;

namespace bpfvm::core {

// enum bpf_core_relo_kind (linux/bpf.h)
enum Kind : uint32_t {
  FieldByteOffset = 0,
  FieldByteSize = 1,
  FieldExists = 2,
  FieldSigned = 3,
  FieldLshiftU64 = 4,
  FieldRshiftU64 = 5,
  TypeIdLocal = 6,
  TypeIdTarget = 7,
  TypeExists = 8,
  TypeSize = 9,
  EnumvalExists = 10,
  EnumvalValue = 11,
  TypeMatches = 12,
};
const char* kind_name(uint32_t kind);  // "byte_off", "field_exists", ... ("unknown" beyond 12)

// A target BTF with its types indexed by essential name (the name without a "___flavour" suffix).
class TargetBtf {
 public:
  explicit TargetBtf(BtfPtr b, std::string origin);
  const struct btf* btf() const { return btf_.get(); }
  const std::string& origin() const { return origin_; }
  const std::vector<uint32_t>& by_essential_name(const std::string& name) const;

 private:
  BtfPtr btf_;
  std::string origin_;
  std::unordered_map<std::string, std::vector<uint32_t>> index_;
};

// The target for an object: `path` if given (raw BTF or an ELF with .BTF), else
// /sys/kernel/btf/vmlinux when readable, else bpfvm's synthetic BTF. Cached per path.
Result<std::shared_ptr<const TargetBtf>> target_for(const std::string& path);
// bpfvm's own BTF for its synthetic contexts (struct pt_regs of x86-64, the tracepoint records
// trace_entry / trace_event_raw_sys_enter / trace_event_raw_sys_exit, bpf_raw_tracepoint_args) and
// kernel data (the members of task_struct and cred that bpf_get_current_task's task fills).
std::shared_ptr<const TargetBtf> synthetic_target();

// The name without its flavour: "task_struct___v2" -> "task_struct" (libbpf's rule: the last
// "X___Y" with X and Y not underscores).
std::string essential_name(const std::string& name);

// One .BTF.ext core_relo record, applied to one instruction.
struct Relo {
  uint32_t insn_off = 0;  // byte offset in the section
  uint32_t type_id = 0;
  uint32_t access_str_off = 0;
  uint32_t kind = 0;
};

struct Outcome {
  bool poison = false;           // no target matched (and the kind is not an existence check)
  std::string reason;            // why poisoned
  uint64_t local_value = 0;      // what the compiler wrote (checked against the instruction)
  uint64_t target_value = 0;     // what the instruction gets
  std::string description;       // "byte_off [5] struct task_struct.pid (0:17)"
  // FIELD_BYTE_OFFSET on a load/store: the field sizes, and whether the load may be resized.
  uint32_t local_size = 0, target_size = 0;
  bool resize_ok = true;
};

// Computes the relocation (errors: malformed records, anonymous types, ambiguous candidates).
Result<Outcome> resolve(const struct btf* local, const TargetBtf& target, const Relo& r);
// Patches the instruction(s) at `slot` of `code` with the outcome (poison, or new offset / imm /
// 64-bit immediate, checking that the instruction holds the local value). Returns whether it
// poisoned the instruction; errors name the problem.
Result<bool> patch(std::vector<RawInsn>& code, uint64_t slot, const Relo& r, const Outcome& o);

}  // namespace bpfvm::core
