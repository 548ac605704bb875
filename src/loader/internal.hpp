// Internal state of a loaded object: enough to link any function of it on demand.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
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
  enum Kind : uint8_t { Map, MapValue, Code, Call, Helper } kind = Map;
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
  bool is_text = false;
};

struct ObjectImpl {
  std::vector<CodeSection> code;
  BtfPtr btf;
  std::string what;  // name of the input for messages
};

}  // namespace bpfvm
