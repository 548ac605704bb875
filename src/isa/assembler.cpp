// bpfvm assembler: shared machinery, the bpf_conformance syntax front end, and the public entry
// points. The kernel-syntax front end is in asm_kernel.cpp. Every mnemonic, operand shape and
// opcode comes from the one opcode table (include/bpfvm/opcodes.def) through op_info().
#include <fmt/format.h>

#include <set>
#include <unordered_map>

#include "bpfvm/asm.hpp"
#include "isa/asm_internal.hpp"

namespace bpfvm::asmi {

void fail(int line, int column, std::string message) { throw AsmError{line, column, std::move(message)}; }

std::optional<Number> Cursor::number(bool space_after_sign) {
  ws();
  size_t b = pos_;
  bool neg = false;
  if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
    neg = s_[pos_] == '-';
    ++pos_;
    if (space_after_sign) ws();
  }
  if (pos_ >= s_.size() || !is_digit(s_[pos_])) {
    pos_ = b;
    return std::nullopt;
  }
  constexpr unsigned __int128 kCap = static_cast<unsigned __int128>(1) << 100;
  unsigned __int128 mag = 0;
  if (s_[pos_] == '0' && pos_ + 1 < s_.size() && (s_[pos_ + 1] == 'x' || s_[pos_ + 1] == 'X')) {
    pos_ += 2;
    if (pos_ >= s_.size() || !is_hex(s_[pos_])) error_at(static_cast<int>(b) + 1, "invalid number '" + std::string(s_.substr(b, pos_ - b)) + "'");
    while (pos_ < s_.size() && is_hex(s_[pos_])) {
      char ch = s_[pos_++];
      int d = is_digit(ch) ? ch - '0' : (ch | 0x20) - 'a' + 10;
      if (mag < kCap) mag = mag * 16 + d;
    }
  } else {
    while (pos_ < s_.size() && is_digit(s_[pos_])) {
      if (mag < kCap) mag = mag * 10 + (s_[pos_] - '0');
      ++pos_;
    }
  }
  if (pos_ < s_.size() && is_ident_char(s_[pos_])) {
    size_t e = pos_;
    while (e < s_.size() && is_ident_char(s_[e])) ++e;
    error_at(static_cast<int>(b) + 1, "invalid number '" + std::string(s_.substr(b, e - b)) + "'");
  }
  Number n;
  n.value = neg ? -static_cast<__int128>(mag) : static_cast<__int128>(mag);
  n.text = s_.substr(b, pos_ - b);
  n.column = static_cast<int>(b) + 1;
  return n;
}

std::string hex_text(__int128 v) {
  bool neg = v < 0;
  unsigned __int128 m = neg ? static_cast<unsigned __int128>(-v) : static_cast<unsigned __int128>(v);
  std::string s;
  do {
    s.insert(s.begin(), "0123456789abcdef"[static_cast<int>(m & 15)]);
    m >>= 4;
  } while (m);
  return (neg ? "-0x" : "0x") + s;
}

int32_t imm32(const Number& n, int line) {
  constexpr __int128 lo = -(static_cast<__int128>(1) << 31), hi = static_cast<__int128>(1) << 32;
  if (n.value < lo || n.value >= hi)
    fail(line, n.column, fmt::format("immediate {} does not fit in 32 bits", n.text));
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(n.value)));
}

int32_t simm32(const Number& n, int line) {
  constexpr __int128 lo = -(static_cast<__int128>(1) << 31), hi = static_cast<__int128>(1) << 31;
  if (n.value < lo || n.value >= hi)
    fail(line, n.column, fmt::format("value {} does not fit in a signed 32-bit field", n.text));
  return static_cast<int32_t>(n.value);
}

int16_t off16(const Number& n, int line) {
  if (n.value < -32768 || n.value > 32767)
    fail(line, n.column, fmt::format("offset {} out of range (16-bit signed: -32768..32767)", n.text));
  return static_cast<int16_t>(n.value);
}

int64_t imm64(const Number& n, int line) {
  constexpr __int128 lo = -(static_cast<__int128>(1) << 63), hi = static_cast<__int128>(1) << 64;
  if (n.value < lo || n.value >= hi)
    fail(line, n.column, fmt::format("immediate {} does not fit in 64 bits", n.text));
  return static_cast<int64_t>(static_cast<uint64_t>(static_cast<unsigned __int128>(n.value)));
}

void Builder::add(const Insn& in, int line) {
  if (in.op == Op::EXIT && !first_exit) first_exit = insns.size();
  insns.push_back(in);
  lines.push_back(line);
  if (in.is_wide()) {
    Insn hi;
    hi.op = Op::LDDW_HI;
    hi.imm = static_cast<int32_t>(static_cast<uint64_t>(in.imm) >> 32);
    insns.push_back(hi);
    lines.push_back(line);
  }
}

void Builder::define_label(std::string_view name, int line, int column) {
  auto it = label_lines.find(name);
  if (it != label_lines.end())
    fail(line, column, fmt::format("duplicate label '{}' (first defined on line {})", name, it->second));
  labels.emplace(std::string(name), insns.size());
  label_lines.emplace(std::string(name), line);
}

Result<std::vector<Insn>> finish(Builder& b, const HelperIdFn& helper_id, bool exit_label) {
  try {
    for (const auto& f : b.fixups) {
      auto it = b.labels.find(f.label);
      std::optional<size_t> target;
      if (it != b.labels.end()) target = it->second;
      else if (exit_label && f.label == "exit" && b.first_exit) target = b.first_exit;
      Insn& in = b.insns[f.slot];
      if (!target) {
        if (f.helper_fallback) {
          int32_t id = helper_id ? helper_id(f.label) : -1;
          if (id < 0)
            fail(f.line, f.column,
                 helper_id ? fmt::format("unknown helper or label '{}'", f.label)
                           : fmt::format("undefined label '{}' (and no helper-name table to look it up)", f.label));
          in.op = Op::CALL_HELPER;
          in.src = 0;
          in.imm = id;
          continue;
        }
        fail(f.line, f.column, fmt::format("undefined label '{}'", f.label));
      }
      int64_t delta = static_cast<int64_t>(*target) - static_cast<int64_t>(f.slot) - 1;
      if (f.field == Builder::FixField::Off) {
        if (delta < -32768 || delta > 32767)
          fail(f.line, f.column,
               fmt::format("jump to '{}' out of range (offset {} does not fit in 16 bits)", f.label, delta));
        in.off = static_cast<int16_t>(delta);
      } else {
        in.imm = delta;
      }
    }
  } catch (const AsmError& e) {
    Diagnostic d = make_error(ErrorCode::Assemble, e.message);
    d.line = e.line;
    d.column = e.column;
    return d;
  }
  auto raw = encode(b.insns);
  auto dec = decode(raw);
  if (!dec) {
    Diagnostic d = dec.error();
    d.code = ErrorCode::Assemble;
    if (d.pc >= 0 && static_cast<size_t>(d.pc) < b.lines.size()) d.line = b.lines[d.pc];
    d.pc = -1;
    return d;
  }
  return std::move(dec).value();
}

// ---------------------------------------------------------------------------------------------
// bpf_conformance syntax
// ---------------------------------------------------------------------------------------------
namespace {

struct ConfTable {
  std::unordered_map<std::string, std::vector<Op>> ops;  // mnemonic -> rows
  std::set<std::string, std::less<>> prefixes;           // word prefixes of multi-word mnemonics
  ConfTable() {
    for (size_t i = 0; i < kOpCount; ++i) {
      Op op = static_cast<Op>(i);
      if (op == Op::LDDW_HI) continue;
      add(std::string(op_info(op).mnemonic), op);
    }
    // Aliases: bpf_conformance's swapN is the unconditional byte swap; `call helper N`.
    for (Op op : {Op::BSWAP16, Op::BSWAP32, Op::BSWAP64})
      add("swap" + std::string(op_info(op).mnemonic.substr(5)), op);
    add("call helper", Op::CALL_HELPER);
  }
  void add(const std::string& mn, Op op) {
    ops[mn].push_back(op);
    for (size_t p = mn.find(' '); p != std::string::npos; p = mn.find(' ', p + 1))
      prefixes.insert(mn.substr(0, p));
  }
};

const ConfTable& conf_table() {
  static const ConfTable t;
  return t;
}

uint8_t conf_reg(Cursor& c) {
  c.ws();
  int col = c.col();
  if (!c.eat("%")) c.expected("a register (%r0..%r10)");
  std::string_view id = c.ident();
  std::string name = "%" + std::string(id);
  if (id.size() < 2 || id[0] != 'r' || id.size() > 4) c.error_at(col, "unknown register " + name);
  int v = 0;
  for (char ch : id.substr(1)) {
    if (!is_digit(ch)) c.error_at(col, "unknown register " + name);
    v = v * 10 + (ch - '0');
  }
  if (v > 10 || (id.size() > 2 && id[1] == '0')) c.error_at(col, "unknown register " + name);
  return static_cast<uint8_t>(v);
}

Number need_number(Cursor& c, std::string_view what) {
  auto n = c.number();
  if (!n) c.expected(what);
  return *n;
}

// [%rN], [%rN+off], [%rN-off]
std::pair<uint8_t, int16_t> conf_mem(Cursor& c) {
  c.expect("[");
  uint8_t r = conf_reg(c);
  int16_t off = 0;
  c.ws();
  if (c.peek() == '+' || c.peek() == '-') {
    auto n = c.number(true);
    if (!n) c.expected("an offset");
    off = off16(*n, c.line());
  }
  c.expect("]");
  return {r, off};
}

void comma(Cursor& c) { c.expect(","); }

// +N / -N or a label; the value goes to the off or imm field.
void conf_target(Cursor& c, Builder& b, Insn& in, Builder::FixField field) {
  c.ws();
  int col = c.col();
  if (c.peek() == '+' || c.peek() == '-') {
    auto n = c.number(true);
    if (!n) c.expected("a jump offset");
    if (field == Builder::FixField::Off) in.off = off16(*n, c.line());
    else in.imm = simm32(*n, c.line());
    return;
  }
  std::string_view label = c.ident();
  if (label.empty()) c.expected("a label or a +N/-N offset");
  b.fixups.push_back({b.next_slot(), std::string(label), c.line(), col, field});
}

void parse_conf_insn(Cursor& c, Builder& b) {
  const ConfTable& t = conf_table();
  c.ws();
  int mcol = c.col();
  std::string mn(c.ident());
  if (mn.empty()) c.expected("an instruction");
  for (;;) {
    size_t save = c.pos();
    std::string_view w = c.ident();
    if (w.empty()) break;
    std::string cand = mn + " " + std::string(w);
    if (t.ops.count(cand) || t.prefixes.count(cand)) {
      mn = std::move(cand);
    } else {
      c.set_pos(save);
      break;
    }
  }
  auto it = t.ops.find(mn);
  if (it == t.ops.end()) c.error_at(mcol, fmt::format("unknown instruction '{}'", mn));
  const std::vector<Op>& rows = it->second;

  // Chooses among rows sharing a mnemonic (imm vs reg source).
  auto pick = [&](bool reg_src) -> Op {
    for (Op op : rows)
      if (op_info(op).uses_reg_src == reg_src) return op;
    c.error(fmt::format("{} takes {} source operand", mn, reg_src ? "an immediate" : "a register"));
  };

  Insn in;
  in.op = rows[0];
  const OpInfo* info = &op_info(in.op);
  switch (info->kind) {
    case OpKind::Alu: {
      in.dst = conf_reg(c);
      if (info->fields & (F_SRC | F_IMM)) {
        comma(c);
        bool reg = c.peek() == '%';
        in.op = pick(reg);
        if (reg) in.src = conf_reg(c);
        else in.imm = imm32(need_number(c, "a register or an immediate"), c.line());
      }
      break;
    }
    case OpKind::Jump:
      conf_target(c, b, in, in.op == Op::JA ? Builder::FixField::Off : Builder::FixField::Imm);
      break;
    case OpKind::CondJump: {
      in.dst = conf_reg(c);
      comma(c);
      bool reg = c.peek() == '%';
      in.op = pick(reg);
      if (reg) in.src = conf_reg(c);
      else in.imm = imm32(need_number(c, "a register or an immediate"), c.line());
      comma(c);
      conf_target(c, b, in, Builder::FixField::Off);
      break;
    }
    case OpKind::Call:
      if (in.op == Op::CALLX || (in.op == Op::CALL_HELPER && mn == "call" && c.peek() == '%')) {
        in.op = Op::CALLX;
        in.dst = conf_reg(c);
      } else if (in.op == Op::CALL_LOCAL) {
        conf_target(c, b, in, Builder::FixField::Imm);
      } else {
        in.imm = imm32(need_number(c, "a helper number"), c.line());
        if ((info->fields & F_OFF) && c.eat(",")) in.off = off16(need_number(c, "an offset"), c.line());
      }
      break;
    case OpKind::Exit:
      break;
    case OpKind::LoadImm64:
      in.dst = conf_reg(c);
      comma(c);
      if (info->selval == 0) {
        in.imm = imm64(need_number(c, "a 64-bit immediate"), c.line());
      } else {
        uint32_t lo = static_cast<uint32_t>(imm32(need_number(c, "an immediate"), c.line()));
        uint32_t hi = 0;
        if (c.eat(",")) hi = static_cast<uint32_t>(imm32(need_number(c, "an immediate"), c.line()));
        in.imm = static_cast<int64_t>((static_cast<uint64_t>(hi) << 32) | lo);
      }
      break;
    case OpKind::LoadPacket:
      if (info->fields & F_SRC) {
        in.src = conf_reg(c);
        comma(c);
      }
      in.imm = imm32(need_number(c, "an immediate"), c.line());
      break;
    case OpKind::Load: {
      in.dst = conf_reg(c);
      comma(c);
      auto [r, off] = conf_mem(c);
      in.src = r;
      in.off = off;
      break;
    }
    case OpKind::Store: {
      auto [r, off] = conf_mem(c);
      in.dst = r;
      in.off = off;
      comma(c);
      in.imm = imm32(need_number(c, "an immediate"), c.line());
      break;
    }
    case OpKind::StoreReg:
    case OpKind::Atomic: {
      auto [r, off] = conf_mem(c);
      in.dst = r;
      in.off = off;
      comma(c);
      in.src = conf_reg(c);
      break;
    }
    case OpKind::Pseudo:
      c.error_at(mcol, fmt::format("unknown instruction '{}'", mn));
  }
  c.expect_end();
  b.add(in, c.line());
}

}  // namespace

void parse_conformance(std::string_view text, Builder& b) {
  int lineno = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    ++lineno;
    if (auto h = line.find('#'); h != std::string_view::npos) line = line.substr(0, h);
    Cursor c(line, lineno);
    for (;;) {
      if (c.at_end()) break;
      size_t save = c.pos();
      int col = c.col();
      std::string_view id = c.ident();
      if (!id.empty() && c.peek() == ':') {
        c.eat(":");
        b.define_label(id, lineno, col);
        continue;
      }
      c.set_pos(save);
      parse_conf_insn(c, b);
      break;
    }
    if (nl == text.size()) break;
  }
}

}  // namespace bpfvm::asmi

namespace bpfvm {

Result<std::vector<Insn>> assemble(std::string_view text, Syntax syntax, const HelperIdFn& helper_id) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte order mark
  asmi::Builder b;
  try {
    if (syntax == Syntax::Conformance) asmi::parse_conformance(text, b);
    else asmi::parse_kernel(text, b);
  } catch (const asmi::AsmError& e) {
    Diagnostic d = make_error(ErrorCode::Assemble, e.message);
    d.line = e.line;
    d.column = e.column;
    return d;
  }
  return asmi::finish(b, helper_id, syntax == Syntax::Conformance);
}

Syntax detect_syntax(std::string_view text) {
  // Conformance syntax names registers %rN; the kernel syntax never uses '%' outside comments
  // (its `%=` operator is preceded by a register and a blank, never followed by 'r').
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    for (size_t i = 0; i < line.size(); ++i) {
      char ch = line[i];
      if (ch == '#' || ch == ';' || (ch == '/' && i + 1 < line.size() && line[i + 1] == '/')) break;
      if (ch == '%' && i + 1 < line.size() && line[i + 1] == 'r' &&
          (i + 2 >= line.size() || asmi::is_digit(line[i + 2])))
        return Syntax::Conformance;
    }
  }
  // No registers: a line starting with a conformance-only mnemonic (ja, lddw, ldabsw...) decides.
  start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) continue;
    size_t e = b;
    while (e < line.size() && asmi::is_ident_char(line[e])) ++e;
    std::string_view w = line.substr(b, e - b);
    if (w == "call") {  // `call local|helper|runtime ...` are conformance-only
      size_t b2 = line.find_first_not_of(" \t", e);
      if (b2 == std::string_view::npos) continue;
      size_t e2 = b2;
      while (e2 < line.size() && asmi::is_ident_char(line[e2])) ++e2;
      std::string_view w2 = line.substr(b2, e2 - b2);
      bool at_word_end = e2 >= line.size() || line[e2] == ' ' || line[e2] == '\t';
      if ((w2 == "local" || w2 == "helper" || w2 == "runtime") && at_word_end) return Syntax::Conformance;
      continue;
    }
    if (w.empty() || w == "exit" || w == "callx" || w == "lock") continue;
    if (e < line.size() && line[e] == ':') continue;  // label or index
    for (size_t i = 0; i < kOpCount; ++i) {
      std::string_view mn = op_info(static_cast<Op>(i)).mnemonic;
      if (mn.substr(0, mn.find(' ')) == w || w.starts_with("swap")) return Syntax::Conformance;
    }
  }
  return Syntax::Kernel;
}

Result<std::vector<Insn>> assemble_auto(std::string_view text, const HelperIdFn& helper_id) {
  return assemble(text, detect_syntax(text), helper_id);
}

}  // namespace bpfvm
