// Internal state of a loaded object: enough to link any function of it on demand.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/object.hpp"

struct btf;

namespace bpfvm {

// Owns a libbpf struct btf.
struct BtfDeleter {
  void operator()(struct btf* b) const;
};
using BtfPtr = std::unique_ptr<struct btf, BtfDeleter>;

// What an lddw or call slot of a code section refers to, decided once at load time.
struct CodeReloc {
  // Invalid: the relocation cannot be applied; a program containing this slot fails with `error`
  // (the other programs of the object load).
  enum Kind : uint8_t { Map, MapValue, Code, Call, Helper, Invalid } kind = Map;
  std::string error;         // Invalid: what is wrong, naming section, relocation and symbol
  uint32_t map = 0;          // Map / MapValue: index into Object::maps; Helper: helper id
  uint32_t value_off = 0;    // MapValue: byte offset in the value
  uint32_t target_sec = 0;   // Code / Call: code section index (into ObjectImpl::code)
  uint64_t target_insn = 0;  // Code / Call: slot index within that section
};

struct RawLine {
  uint32_t insn;  // slot within the section
  uint32_t file_off, line_off, line_col;
};
struct RawFunc {
  uint32_t insn;
  uint32_t type_id;
};

// A CO-RE record of a code section (.BTF.ext core_relo) and what applying it gave.
struct RawCoreRelo {
  uint32_t insn;            // slot within the section
  uint32_t type_id;
  uint32_t access_str_off;
  uint32_t kind;
};
struct CoreApplied {
  uint32_t kind = 0;
  std::string description;
  bool poisoned = false;
  std::string reason;
  uint64_t local_value = 0, target_value = 0;
  std::string error;        // the relocation could not be applied: programs containing it fail
};

struct CodeFunction {
  std::string name;
  uint64_t start = 0;  // slot within its section
  uint64_t slots = 0;
  bool global = false;
};

struct CodeSection {
  std::string name;
  std::vector<RawInsn> raw;
  std::vector<CodeFunction> functions;     // sorted by start, non-overlapping
  std::map<uint64_t, CodeReloc> relocs;    // by slot index
  std::vector<RawLine> lines;              // sorted by insn
  std::vector<RawFunc> funcs;              // sorted by insn
  std::vector<RawCoreRelo> core;           // CO-RE records, file order
  std::map<uint64_t, CoreApplied> core_applied;  // by slot
  bool is_text = false;
};

struct ObjectImpl {
  std::vector<CodeSection> code;
  BtfPtr btf;
  std::string what;  // name of the input for messages
};

}  // namespace bpfvm
