// bpfvm: pieces shared by the two assembler front ends (conformance and kernel syntax).
// Internal header: not part of the public API.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"

namespace bpfvm::asmi {

// Thrown inside the assembler only; assemble() turns it into a Diagnostic.
struct AsmError {
  int line;
  int column;
  std::string message;
};

[[noreturn]] void fail(int line, int column, std::string message);

inline bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '$';
}
inline bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A parsed integer literal: value (wide enough for any 64-bit pattern with a sign) and its text.
struct Number {
  __int128 value = 0;
  std::string_view text;
  int column = 0;
};

// A cursor over one source line (comments already removed).
class Cursor {
 public:
  Cursor(std::string_view text, int line) : s_(text), line_(line) {}

  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  bool at_end() {
    ws();
    return pos_ >= s_.size();
  }
  int col() const { return static_cast<int>(pos_) + 1; }
  int line() const { return line_; }
  size_t pos() const { return pos_; }
  void set_pos(size_t p) { pos_ = p; }
  std::string_view rest() const { return s_.substr(pos_); }
  std::string_view text() const { return s_; }

  char peek() {
    ws();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  char peek_at(size_t k) const { return pos_ + k < s_.size() ? s_[pos_ + k] : '\0'; }
  // Consumes `lit` (after blanks) if it is next.
  bool eat(std::string_view lit) {
    ws();
    if (s_.substr(pos_).starts_with(lit)) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }
  // Consumes the word `w` if it is next and is not followed by an identifier character.
  bool eat_word(std::string_view w) {
    ws();
    if (!s_.substr(pos_).starts_with(w)) return false;
    size_t e = pos_ + w.size();
    if (e < s_.size() && is_ident_char(s_[e])) return false;
    pos_ = e;
    return true;
  }
  // An identifier, or "" if none is next.
  std::string_view ident() {
    ws();
    if (pos_ >= s_.size() || !is_ident_start(s_[pos_])) return {};
    size_t b = pos_;
    while (pos_ < s_.size() && is_ident_char(s_[pos_])) ++pos_;
    return s_.substr(b, pos_ - b);
  }
  std::string_view peek_ident() {
    size_t save = pos_;
    auto id = ident();
    pos_ = save;
    return id;
  }
  // The next whitespace/comma-delimited token, for error messages.
  std::string_view token_here() {
    ws();
    size_t e = pos_;
    while (e < s_.size() && s_[e] != ' ' && s_[e] != '\t' && s_[e] != ',') ++e;
    if (e == pos_ && pos_ < s_.size()) ++e;
    return s_.substr(pos_, e - pos_);
  }

  // An integer literal with optional sign: decimal or 0x hex. Spaces are allowed after the sign
  // only when `space_after_sign` (the kernel prints "r1 + 8").
  std::optional<Number> number(bool space_after_sign = false);

  [[noreturn]] void error(std::string message) { fail(line_, col(), std::move(message)); }
  [[noreturn]] void error_at(int column, std::string message) { fail(line_, column, std::move(message)); }
  [[noreturn]] void expected(std::string_view what) {
    ws();
    if (pos_ >= s_.size()) error(std::string("expected ") + std::string(what) + " at end of line");
    error(std::string("expected ") + std::string(what) + ", found '" + std::string(token_here()) + "'");
  }
  void expect(std::string_view lit) {
    if (!eat(lit)) expected("'" + std::string(lit) + "'");
  }
  void expect_end() {
    if (at_end()) return;
    std::string_view r = rest();
    while (!r.empty() && (r.back() == ' ' || r.back() == '\t' || r.back() == '\r')) r.remove_suffix(1);
    error("unexpected '" + std::string(r) + "' after the instruction");
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  int line_;
};

// Range checks that produce the project's standard messages.
int32_t imm32(const Number& n, int line);    // [-2^31, 2^32): values >= 2^31 are 32-bit patterns
int32_t simm32(const Number& n, int line);   // [-2^31, 2^31)
int16_t off16(const Number& n, int line);    // [-2^15, 2^15)
int64_t imm64(const Number& n, int line);    // [-2^63, 2^64)
std::string hex_text(__int128 v);

// Program being built: one Insn per slot (lddw adds its LDDW_HI slot), the source line of each
// slot, labels and pending label references.
struct Builder {
  enum class FixField { Off, Imm };
  struct Fixup {
    size_t slot;
    std::string label;
    int line, column;
    FixField field;
    bool helper_fallback = false;  // kernel syntax `call name`: a label, else a helper name
  };

  std::vector<Insn> insns;
  std::vector<int> lines;   // per slot
  std::map<std::string, size_t, std::less<>> labels;
  std::map<std::string, int, std::less<>> label_lines;
  std::vector<Fixup> fixups;
  std::optional<size_t> first_exit;

  void add(const Insn& in, int line);
  void define_label(std::string_view name, int line, int column);
  size_t next_slot() const { return insns.size(); }
};

// Finishes: resolves labels, normalizes through encode/decode (so the result is exactly what
// decoding the bytes gives, and decode's checks - reserved fields, r10 writes - apply with the
// source line of the culprit).
Result<std::vector<Insn>> finish(Builder& b, const HelperIdFn& helper_id, bool exit_label);

// Front ends: parse every line into the builder; throw AsmError.
void parse_conformance(std::string_view text, Builder& b);
void parse_kernel(std::string_view text, Builder& b);

// Shared name facts used by the printer and the kernel parser.
std::string_view alu_operator(std::string_view name);   // "add" -> "+=", "sdiv" -> "s/=", ...
std::string_view jump_operator(std::string_view name);  // "jeq" -> "==", ...
std::string_view size_name(uint8_t size);               // 1 -> "u8" ...
bool is_sign_extending_load(const OpInfo& info);
// Atomic operation of an atomic op: "add", "or", "and", "xor", "xchg", "cmpxchg"; fetch flag.
std::string_view atomic_operation(const OpInfo& info, bool* fetch);
// Operation name without the 32-bit suffix: "add32" -> "add", "jeq32" -> "jeq".
std::string_view base_name(const OpInfo& info);
bool is_byte_swap(const OpInfo& info);  // le/be/bswap
bool is_movsx(const OpInfo& info);

}  // namespace bpfvm::asmi
