// Data described by BTF, printed as bpftool prints it (its btf_dumper): map keys and values in
// `map dump` ("formatted" under -j, the text form otherwise), and any record whose BTF type is known.
//
// Shapes (bpftool 7): integers of 8 to 64 bits as JSON numbers, bitfields and 128-bit integers as
// unsigned hex strings ("0x3e8"), bool as true/false, a char-encoded int as a one-character string,
// char arrays holding a NUL-terminated printable string as that string, other arrays as lists,
// structs and unions as objects (every member, by name; an anonymous member under ""), enums by the
// name of their value (the number when no name matches), pointers as numbers, floats as numbers,
// typedefs and modifiers as what they name, DATASEC as {"NAME":[vars...]}.
// plain_text (bpftool's text dump) differs only where bpftool's does: pointers as %p (0x..., "(nil)"
// for 0), bitfields and 128-bit integers unquoted (0x3e8), an unprintable char as 0x...
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "bpfvm/result.hpp"

struct btf;  // libbpf's

namespace bpfvm {

// Raw BTF (as in an object's .BTF section or a MapBtf) parsed by libbpf; owns the struct btf.
class ParsedBtf {
 public:
  static Result<std::shared_ptr<const ParsedBtf>> parse(std::span<const uint8_t> raw);
  ~ParsedBtf();
  const struct btf* get() const { return btf_; }

 private:
  explicit ParsedBtf(struct btf* b) : btf_(b) {}
  struct btf* btf_;
};

}  // namespace bpfvm

namespace bpfvm {

// bpftool's json_writer: the same separators, and in pretty mode the same layout (members of objects
// on lines of their own, 4 spaces per level; arrays of scalars on one line), so output compares
// byte for byte with bpftool's.
class BtfJsonWriter {
 public:
  explicit BtfJsonWriter(bool pretty = false) : pretty_(pretty) {}
  void start_object() { begin('{'); }
  void end_object() { end('}'); }
  void start_array() { begin('['); }
  void end_array() { end(']'); }
  void name(const std::string& n);
  void raw(const std::string& value);     // a number or literal, as is
  void string(const std::string& value);  // quoted and escaped
  const std::string& str() const { return out_; }

 private:
  void eor();
  void eol();
  void begin(char c);
  void end(char c);
  std::string out_;
  bool pretty_;
  int depth_ = 0;
  char sep_ = '\0';
};

// Writes the value of BTF type `type_id` held in `data` (at least the type's size) into w.
// Fails (w then holds a partial value) on an id that is not in the BTF, a type whose size is not
// known or larger than data, a forward declaration, or nesting deeper than 32 levels.
Status format_btf_value(BtfJsonWriter& w, const struct btf* btf, uint32_t type_id,
                              std::span<const uint8_t> data, bool plain_text = false);

// The compact JSON text of one value (what `map dump -j` puts under "formatted").
Result<std::string> format_btf_value_json(const struct btf* btf, uint32_t type_id, std::span<const uint8_t> data,
                                          bool plain_text = false);

}  // namespace bpfvm
