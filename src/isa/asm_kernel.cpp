// bpfvm assembler: the kernel / llvm-objdump / bpftool syntax front end.
//
// A statement is parsed into a shape key ("alu += w I", "ldx s16", "atomic add 1 u64"...) and the
// key is looked up in a map built from the opcode table with the same naming functions the
// disassembler uses, so printing and parsing cannot drift apart.
#include <fmt/format.h>

#include <unordered_map>

#include "isa/asm_internal.hpp"

namespace bpfvm::asmi {
namespace {

std::string size_key(const OpInfo& i) {
  if (is_sign_extending_load(i)) return fmt::format("s{}", i.size * 8);
  return std::string(size_name(i.size));
}

// The shape key of an op, or "" for ops parsed specially (jumps without operands, calls, lddw).
std::string kernel_key(const OpInfo& i) {
  const char w = i.alu64 ? 'r' : 'w';
  switch (i.kind) {
    case OpKind::Alu: {
      std::string_view name = base_name(i);
      if (name == "neg") return fmt::format("neg {}", w);
      if (is_byte_swap(i)) return fmt::format("end {}", name);
      if (is_movsx(i)) return fmt::format("movsx s{} {}", i.selval, w);
      return fmt::format("alu {} {} {}", alu_operator(name), w, i.uses_reg_src ? 'R' : 'I');
    }
    case OpKind::CondJump:
      return fmt::format("jcc {} {} {}", jump_operator(base_name(i)), w, i.uses_reg_src ? 'R' : 'I');
    case OpKind::Load: return "ldx " + size_key(i);
    case OpKind::Store: return "st " + size_key(i);
    case OpKind::StoreReg: return "stx " + size_key(i);
    case OpKind::LoadPacket: return fmt::format("{} {}", (i.fields & F_SRC) ? "ind" : "abs", size_key(i));
    case OpKind::Atomic: {
      bool fetch = false;
      std::string_view op = atomic_operation(i, &fetch);
      return fmt::format("atomic {} {} {}", op, fetch ? 1 : 0, size_key(i));
    }
    default: return {};
  }
}

const std::unordered_map<std::string, Op>& kernel_ops() {
  static const auto m = [] {
    std::unordered_map<std::string, Op> t;
    for (size_t k = 0; k < kOpCount; ++k) {
      Op op = static_cast<Op>(k);
      if (op == Op::LDDW_HI) continue;
      std::string key = kernel_key(op_info(op));
      if (!key.empty()) t.emplace(key, op);
    }
    return t;
  }();
  return m;
}

struct Reg {
  uint8_t num;
  bool w;  // wN (32-bit view)
  int col;
  std::string text;
};

Reg kreg(Cursor& c) {
  c.ws();
  int col = c.col();
  std::string_view id = c.ident();
  if (id.empty()) c.expected("a register");
  bool ok = id.size() >= 2 && id.size() <= 3 && (id[0] == 'r' || id[0] == 'w');
  int v = 0;
  for (size_t k = 1; ok && k < id.size(); ++k) {
    if (!is_digit(id[k])) ok = false;
    else v = v * 10 + (id[k] - '0');
  }
  if (ok && id.size() == 3 && id[1] == '0') ok = false;
  if (!ok) {
    if ((id[0] == 'r' || id[0] == 'w') && id.size() > 1 && is_digit(id[1])) c.error_at(col, fmt::format("unknown register {}", id));
    c.set_pos(static_cast<size_t>(col - 1));
    c.expected("a register");
  }
  if (v > 10) c.error_at(col, fmt::format("unknown register {}", id));
  return Reg{static_cast<uint8_t>(v), id[0] == 'w', col, std::string(id)};
}

Number need_number(Cursor& c, std::string_view what, bool space_after_sign = false) {
  auto n = c.number(space_after_sign);
  if (!n) c.expected(what);
  return *n;
}

Op lookup(Cursor& c, int col, const std::string& key, std::string_view what) {
  auto it = kernel_ops().find(key);
  if (it == kernel_ops().end()) c.error_at(col, fmt::format("no such instruction: {}", what));
  return it->second;
}

// "(u32 *)" -> "u32"
std::string ktype(Cursor& c) {
  c.expect("(");
  c.ws();
  int col = c.col();
  std::string_view t = c.ident();
  if (t != "u8" && t != "u16" && t != "u32" && t != "u64" && t != "s8" && t != "s16" && t != "s32") {
    c.set_pos(static_cast<size_t>(col - 1));
    c.expected("a memory type (u8, u16, u32, u64, s8, s16, s32)");
  }
  c.expect("*");
  c.expect(")");
  return std::string(t);
}

// "(r1 +8)", "(r1 - 0x8)", "(r1)"; with `open` false the '(' was already consumed.
std::pair<uint8_t, int16_t> kaddr(Cursor& c, bool open = true, char close = ')') {
  if (open) c.expect("(");
  Reg r = kreg(c);
  if (r.w) c.error_at(r.col, fmt::format("a memory base must be a 64-bit register, not {}", r.text));
  int16_t off = 0;
  char p = c.peek();
  if (p == '+' || p == '-') off = off16(need_number(c, "an offset", true), c.line());
  c.expect(std::string_view(&close, 1));
  return {r.num, off};
}

// pc+N, pc-N, +N, -N or a label; llvm's trailing "<LBB0_2>" is ignored.
void ktarget(Cursor& c, Builder& b, Insn& in, Builder::FixField field) {
  c.ws();
  int col = c.col();
  bool pc = c.eat_word("pc");
  char p = c.peek();
  if (p == '+' || p == '-') {
    Number n = need_number(c, "a jump offset", true);
    if (field == Builder::FixField::Off) in.off = off16(n, c.line());
    else in.imm = simm32(n, c.line());
  } else if (pc) {
    c.expected("'+' or '-' after pc");
  } else {
    std::string_view label = c.ident();
    if (label.empty()) c.expected("a jump target (pc+N, +N or a label)");
    b.fixups.push_back({b.next_slot(), std::string(label), c.line(), col, field});
  }
  if (c.peek() == '<') {
    std::string_view r = c.rest();
    size_t e = r.find('>');
    if (e == std::string_view::npos) c.expected("'>'");
    c.set_pos(c.pos() + e + 1);
  }
}

void same_width(Cursor& c, const Reg& a, const Reg& b) {
  if (a.w != b.w) c.error_at(b.col, fmt::format("register {} does not match the width of {}", b.text, a.text));
}

void parse_call(Cursor& c, Builder& b, Insn& in) {
  c.ws();
  int col = c.col();
  if (c.eat_word("pc")) {
    in.op = Op::CALL_LOCAL;
    if (c.peek() != '+' && c.peek() != '-') c.expected("'+' or '-' after pc");
    in.imm = simm32(need_number(c, "a call offset", true), c.line());
    return;
  }
  in.op = Op::CALL_HELPER;
  if (c.peek() == '#' || c.peek() == '+' || c.peek() == '-' || is_digit(c.peek())) {
    c.eat("#");
    in.imm = imm32(need_number(c, "a helper number"), c.line());
    return;
  }
  std::string_view name = c.ident();
  if (name.empty()) c.expected("a helper name or number, pc+N or a label");
  if (c.peek() == '#') {
    c.eat("#");
    Number n = need_number(c, "a helper number");
    if (name == "kfunc") {
      in.op = Op::CALL_KFUNC;
      in.imm = imm32(n, c.line());
      if (c.eat_word("off")) {
        c.expect("=");
        in.off = off16(need_number(c, "an offset"), c.line());
      }
      return;
    }
    in.imm = imm32(n, c.line());  // the number after '#' wins over the name
    return;
  }
  // A label (local call) or a helper name, decided once all labels are known.
  in.op = Op::CALL_LOCAL;
  in.src = 1;
  Builder::Fixup f{b.next_slot(), std::string(name), c.line(), col, Builder::FixField::Imm};
  f.helper_fallback = true;
  b.fixups.push_back(f);
}

// rN = map[fd:N], map[fd:N][0]+OFF, map[idx:N], map[idx:N][0]+OFF (also bpftool's map[idx:N]+OFF),
// var[btf:N], subprog[+N]; non-value forms take an optional " hi=N" (the second slot's imm).
bool parse_pseudo_lddw(Cursor& c, Insn& in, std::string_view word) {
  uint32_t lo = 0, hi = 0;
  bool value = false;
  if (word == "map") {
    c.expect("[");
    c.ws();
    int kcol = c.col();
    std::string_view kind = c.ident();
    if (kind != "fd" && kind != "idx") {
      c.set_pos(static_cast<size_t>(kcol - 1));
      c.expected("'fd' or 'idx'");
    }
    c.expect(":");
    lo = static_cast<uint32_t>(imm32(need_number(c, "a map number"), c.line()));
    c.expect("]");
    if (c.eat("[")) {
      Number z = need_number(c, "0");
      if (z.value != 0) c.error_at(z.column, "expected [0]");
      c.expect("]");
      value = true;
    }
    if (c.peek() == '+') {
      hi = static_cast<uint32_t>(imm32(need_number(c, "a value offset", true), c.line()));
      value = true;
    }
    if (value && kind == "fd") in.op = Op::LDDW_MAP_VALUE_FD;
    else if (value) in.op = Op::LDDW_MAP_VALUE_IDX;
    else if (kind == "fd") in.op = Op::LDDW_MAP_FD;
    else in.op = Op::LDDW_MAP_IDX;
  } else if (word == "var") {
    c.expect("[");
    if (!c.eat_word("btf")) c.expected("'btf'");
    c.expect(":");
    lo = static_cast<uint32_t>(imm32(need_number(c, "a BTF id"), c.line()));
    c.expect("]");
    in.op = Op::LDDW_VAR_ADDR;
  } else if (word == "subprog") {
    c.expect("[");
    lo = static_cast<uint32_t>(simm32(need_number(c, "an instruction offset"), c.line()));
    c.expect("]");
    in.op = Op::LDDW_CODE_ADDR;
  } else {
    return false;
  }
  if (!value && c.eat_word("hi")) {
    c.expect("=");
    hi = static_cast<uint32_t>(imm32(need_number(c, "a number"), c.line()));
  }
  in.imm = static_cast<int64_t>((static_cast<uint64_t>(hi) << 32) | lo);
  return true;
}

// dst = atomic[64]_fetch_OP((uN *)(rB +off), src) | atomic[64]_xchg(...) | atomic[64]_cmpxchg(..., r0, src)
// and llvm's xchg_64(rB + off, src), xchg32_32, cmpxchg_64(rB + off, r0, src), cmpxchg32_32.
bool parse_atomic_call(Cursor& c, Insn& in, const Reg& dst, std::string_view name, int col) {
  std::string_view op;
  int size = 0;
  if (name.starts_with("atomic")) {
    std::string_view r = name.substr(6);
    bool has64 = r.starts_with("64");
    if (has64) r.remove_prefix(2);
    if (!r.starts_with("_")) return false;
    r.remove_prefix(1);
    if (r.starts_with("fetch_")) op = r.substr(6);
    else if (r == "xchg" || r == "cmpxchg") op = r;
    else c.error_at(col, fmt::format("unknown atomic operation '{}'", name));
    if (op != "add" && op != "or" && op != "and" && op != "xor" && op != "xchg" && op != "cmpxchg")
      c.error_at(col, fmt::format("unknown atomic operation '{}'", name));
    c.expect("(");
    std::string t = ktype(c);
    size = t == "u64" ? 8 : t == "u32" ? 4 : 0;
    if (size == 0) c.error(fmt::format("atomic operations are 32 or 64-bit, not {}", t));
    if (has64 && size != 8) c.error_at(col, fmt::format("{} needs a u64 operand", name));
    auto [base, off] = kaddr(c);
    in.dst = base;
    in.off = off;
  } else if (name == "xchg_64" || name == "xchg32_32" || name == "cmpxchg_64" || name == "cmpxchg32_32") {
    op = name.starts_with("cmpxchg") ? "cmpxchg" : "xchg";
    size = name.ends_with("_64") ? 8 : 4;
    c.expect("(");
    auto [base, off] = kaddr(c, false, ',');
    in.dst = base;
    in.off = off;
    c.set_pos(c.pos() - 1);  // kaddr consumed the ','; the operand list continues below
  } else {
    return false;
  }
  c.expect(",");
  if (op == "cmpxchg") {
    Reg r0 = kreg(c);
    if (r0.num != 0) c.error_at(r0.col, "cmpxchg compares with r0");
    if (dst.num != 0) c.error_at(dst.col, "cmpxchg writes its result to r0");
    c.expect(",");
  }
  Reg src = kreg(c);
  c.expect(")");
  if (op != "cmpxchg" && src.num != dst.num)
    c.error_at(src.col, fmt::format("{} returns the old value in its source register: expected {}{} here",
                                    name, src.w ? 'w' : 'r', dst.num));
  in.src = src.num;
  std::string key = fmt::format("atomic {} 1 {}", op, size == 8 ? "u64" : "u32");
  in.op = lookup(c, col, key, name);
  return true;
}

// Everything after "rN =".
void parse_assign(Cursor& c, Insn& in, const Reg& dst, int col, int prefix_code) {
  c.ws();
  int rcol = c.col();
  const char w = dst.w ? 'w' : 'r';
  char p = c.peek();
  // neg: rN = -rN
  if (p == '-' && (c.peek_at(1) == 'r' || c.peek_at(1) == 'w')) {
    c.eat("-");
    Reg s = kreg(c);
    same_width(c, dst, s);
    if (s.num != dst.num) c.error_at(s.col, fmt::format("negation works in place: expected {}{}", w, dst.num));
    in.op = lookup(c, col, fmt::format("neg {}", w), "negation");
    in.dst = dst.num;
    return;
  }
  // movsx: rN = (s8)rM
  if (p == '(') {
    c.eat("(");
    c.ws();
    int tcol = c.col();
    std::string_view t = c.ident();
    if (t != "s8" && t != "s16" && t != "s32") {
      c.set_pos(static_cast<size_t>(tcol - 1));
      c.expected("s8, s16 or s32");
    }
    c.expect(")");
    Reg s = kreg(c);
    same_width(c, dst, s);
    in.op = lookup(c, tcol, fmt::format("movsx {} {}", t, w), fmt::format("{} = ({}){}", dst.text, t, s.text));
    in.dst = dst.num;
    in.src = s.num;
    return;
  }
  // loads: rN = *(u32 *)(rM +off), r0 = *(u16 *)skb[12], r0 = *(u8 *)skb[rM + 14]
  if (p == '*') {
    c.eat("*");
    std::string t = ktype(c);
    if (c.eat_word("skb")) {
      c.expect("[");
      bool ind = c.peek() == 'r' || c.peek() == 'w';
      if (dst.num != 0 || dst.w) c.error_at(dst.col, "packet loads (skb[...]) write r0");
      if (ind) {
        Reg s = kreg(c);
        in.src = s.num;
        // the kernel prints "skb[r1 + -4]" for negative offsets; "skb[r1 - 4]" is accepted too
        if (c.eat("+")) in.imm = imm32(need_number(c, "an offset"), c.line());
        else if (c.peek() == '-') in.imm = imm32(need_number(c, "an offset", true), c.line());
      } else {
        in.imm = imm32(need_number(c, "a packet offset"), c.line());
      }
      c.expect("]");
      in.op = lookup(c, rcol, fmt::format("{} {}", ind ? "ind" : "abs", t), fmt::format("packet load of {}", t));
      return;
    }
    auto [base, off] = kaddr(c);
    in.op = lookup(c, rcol, "ldx " + t, fmt::format("load of {}", t));
    in.dst = dst.num;
    in.src = base;
    in.off = off;
    return;
  }
  if (p == '-' || p == '+' || is_digit(p)) {
    Number n = need_number(c, "a value");
    in.dst = dst.num;
    if (c.eat_word("ll")) {
      if (dst.w) c.error_at(dst.col, "a 64-bit immediate load ('ll') needs a 64-bit register");
      in.op = Op::LDDW;
      in.imm = imm64(n, c.line());
      return;
    }
    if (dst.w) {
      in.op = Op::MOV32_IMM;
      in.imm = imm32(n, c.line());
      return;
    }
    if (prefix_code == 0x18) {
      in.op = Op::LDDW;  // a verifier-log or bpftool line "(18) r1 = 0x..." is an lddw without "ll"
      in.imm = imm64(n, c.line());
      return;
    }
    // As llvm-mc: a move takes a 32-bit immediate, sign-extended to 64 bits (r0 = 0xffffffff sets
    // r0 to -1); only "ll" makes a 64-bit load.
    constexpr __int128 lo = -(static_cast<__int128>(1) << 31), hi = static_cast<__int128>(1) << 32;
    if (n.value < lo || n.value >= hi)
      fail(c.line(), n.column,
           fmt::format("immediate {} does not fit in 32 bits (write `r{} = {} ll` for a 64-bit load)", n.text, dst.num,
                       n.text));
    in.op = Op::MOV64_IMM;
    in.imm = imm32(n, c.line());
    return;
  }
  std::string_view word = c.peek_ident();
  if (word.empty()) c.expected("a register, a value or an expression");
  // mov reg
  bool is_reg = (word[0] == 'r' || word[0] == 'w') && word.size() >= 2 && is_digit(word[1]);
  if (is_reg) {
    Reg s = kreg(c);
    same_width(c, dst, s);
    in.op = lookup(c, col, fmt::format("alu = {} R", w), "move");
    in.dst = dst.num;
    in.src = s.num;
    return;
  }
  c.ident();
  // byte swaps: rN = be16 rN
  if (auto it = kernel_ops().find(fmt::format("end {}", word)); it != kernel_ops().end()) {
    Reg s = kreg(c);
    if (s.num != dst.num) c.error_at(s.col, fmt::format("{} works in place: expected r{}", word, dst.num));
    in.op = it->second;
    in.dst = dst.num;
    return;
  }
  if (parse_pseudo_lddw(c, in, word)) {
    if (dst.w) c.error_at(dst.col, "a 64-bit immediate load needs a 64-bit register");
    in.dst = dst.num;
    return;
  }
  if (parse_atomic_call(c, in, dst, word, rcol)) return;
  c.error_at(rcol, fmt::format("unknown expression '{}'", word));
}

void parse_kernel_insn(Cursor& c, Builder& b, int prefix_code, int prefix_regs) {
  c.ws();
  int col = c.col();
  Insn in;
  if (c.eat_word("exit")) {
    in.op = Op::EXIT;
  } else if (c.eat_word("goto")) {
    in.op = Op::JA;
    ktarget(c, b, in, Builder::FixField::Off);
  } else if (c.eat_word("gotol")) {
    in.op = Op::JA32;
    ktarget(c, b, in, Builder::FixField::Imm);
  } else if (c.eat_word("if")) {
    Reg d = kreg(c);
    c.ws();
    int ocol = c.col();
    static constexpr std::string_view kCmp[] = {"s>=", "s<=", "s>", "s<", "==", "!=", ">=", "<=", ">", "<", "&"};
    std::string_view cmp;
    for (auto op : kCmp)
      if (c.eat(op)) {
        cmp = op;
        break;
      }
    if (cmp.empty()) c.expected("a comparison (==, !=, >, >=, <, <=, s>, s>=, s<, s<=, &)");
    char p = c.peek();
    bool reg = p == 'r' || p == 'w';
    if (reg) {
      Reg s = kreg(c);
      same_width(c, d, s);
      in.src = s.num;
    } else {
      in.imm = imm32(need_number(c, "a register or an immediate"), c.line());
    }
    in.dst = d.num;
    in.op = lookup(c, ocol, fmt::format("jcc {} {} {}", cmp, d.w ? 'w' : 'r', reg ? 'R' : 'I'), cmp);
    if (!c.eat_word("goto")) c.expected("'goto'");
    ktarget(c, b, in, Builder::FixField::Off);
  } else if (c.eat_word("callx")) {
    Reg r = kreg(c);
    in.op = Op::CALLX;
    in.dst = r.num;
  } else if (c.eat_word("call")) {
    parse_call(c, b, in);
    // llvm-objdump prints a local call as `call -0x1`: the raw bytes (src = 1) tell it apart.
    if (in.op == Op::CALL_HELPER && prefix_code == 0x85 && prefix_regs >= 0 && (prefix_regs >> 4) == 1) {
      in.op = Op::CALL_LOCAL;
      in.src = 1;
    }
  } else if (c.eat_word("lock")) {
    // lock *(u64 *)(r1 +0) += r2
    c.expect("*");
    std::string t = ktype(c);
    auto [base, off] = kaddr(c);
    c.ws();
    int ocol = c.col();
    static constexpr std::pair<std::string_view, std::string_view> kOps[] = {
        {"+=", "add"}, {"|=", "or"}, {"&=", "and"}, {"^=", "xor"}};
    std::string_view op;
    for (auto [s, n] : kOps)
      if (c.eat(s)) {
        op = n;
        break;
      }
    if (op.empty()) c.expected("+=, |=, &= or ^=");
    Reg s = kreg(c);
    in.op = lookup(c, ocol, fmt::format("atomic {} 0 {}", op, t), fmt::format("atomic {} on {}", op, t));
    in.dst = base;
    in.off = off;
    in.src = s.num;
  } else if (c.peek() == '*') {
    // *(u32 *)(r1 +8) = r2 | imm
    c.eat("*");
    std::string t = ktype(c);
    auto [base, off] = kaddr(c);
    c.expect("=");
    in.dst = base;
    in.off = off;
    char p = c.peek();
    if (p == 'r' || p == 'w') {
      Reg s = kreg(c);
      in.src = s.num;
      in.op = lookup(c, col, "stx " + t, fmt::format("store of {}", t));
    } else {
      in.imm = imm32(need_number(c, "a register or an immediate"), c.line());
      in.op = lookup(c, col, "st " + t, fmt::format("store of {}", t));
    }
  } else {
    Reg d = kreg(c);
    c.ws();
    int ocol = c.col();
    static constexpr std::string_view kAlu[] = {"s>>=", "s/=", "s%=", "<<=", ">>=", "+=", "-=", "*=",
                                                "/=",   "%=",  "|=",  "&=",  "^=",  "="};
    std::string_view op;
    for (auto o : kAlu)
      if (c.eat(o)) {
        op = o;
        break;
      }
    if (op.empty()) c.expected("an assignment or ALU operator (=, +=, -=, ...)");
    if (op == "=") {
      parse_assign(c, in, d, col, prefix_code);
    } else {
      char p = c.peek();
      bool reg = p == 'r' || p == 'w';
      in.dst = d.num;
      if (reg) {
        Reg s = kreg(c);
        same_width(c, d, s);
        in.src = s.num;
      } else {
        Number n = need_number(c, "a register or an immediate");
        // As llvm-mc: a 32-bit immediate (or pattern, 0x80000000..0xffffffff), which 64-bit
        // operations sign-extend (r1 &= 0xffffffff is r1 &= -1).
        in.imm = imm32(n, c.line());
      }
      in.op = lookup(c, ocol, fmt::format("alu {} {} {}", op, d.w ? 'w' : 'r', reg ? 'R' : 'I'), op);
    }
  }
  c.expect_end();
  b.add(in, c.line());
}

// Removes comments: ';' and '//' anywhere; '#' at the start of a line or after a blank, unless a
// digit or '-' follows (`call #5`, `call name#5` keep theirs).
std::string_view strip_comment(std::string_view line) {
  size_t first = line.find_first_not_of(" \t\r");
  for (size_t i = 0; i < line.size(); ++i) {
    char ch = line[i];
    if (ch == ';') return line.substr(0, i);
    if (ch == '/' && i + 1 < line.size() && line[i + 1] == '/') return line.substr(0, i);
    if (ch == '#') {
      if (i == first) return line.substr(0, i);
      char next = i + 1 < line.size() ? line[i + 1] : '\0';
      bool blank_before = line[i - 1] == ' ' || line[i - 1] == '\t';
      if (blank_before && !is_digit(next) && next != '-') return line.substr(0, i);
    }
  }
  return line;
}

bool is_hex_pair(std::string_view r) {
  return r.size() >= 2 && is_hex(r[0]) && is_hex(r[1]) &&
         (r.size() == 2 || r[2] == ' ' || r[2] == '\t' || r[2] == '\r');
}

}  // namespace

void parse_kernel(std::string_view text, Builder& b) {
  int lineno = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = strip_comment(text.substr(start, nl - start));
    start = nl + 1;
    ++lineno;
    Cursor c(line, lineno);
    if (!c.at_end() && (line.find("file format") != std::string_view::npos ||
                        line.find("R_BPF_") != std::string_view::npos ||  // llvm-objdump -r relocations
                        line.find("Disassembly of section") != std::string_view::npos)) {
      if (nl == text.size()) break;
      continue;
    }
    int prefix_code = -1, prefix_regs = -1;
    // Prefixes: "12:" indexes, "name:" labels, "0000000000000000 <name>:" (llvm-objdump symbols),
    // raw bytes "b7 01 00 00 05 00 00 00" and "(b7)" opcodes.
    for (;;) {
      if (c.at_end()) break;
      size_t save = c.pos();
      int col = c.col();
      std::string_view r = c.rest();
      size_t k = 0;
      while (k < r.size() && is_hex(r[k])) ++k;
      if (k > 0) {
        bool digits = true;
        for (size_t q = 0; q < k; ++q) digits = digits && is_digit(r[q]);
        if (digits && k < r.size() && r[k] == ':') {  // index
          c.set_pos(save + k + 1);
          continue;
        }
        if (k >= 8 && k < r.size() && (r[k] == ' ' || r[k] == '\t')) {  // "0000000000000000 <name>:"
          c.set_pos(save + k);
          if (c.eat("<")) {
            std::string_view rest = c.rest();
            size_t e = rest.find('>');
            if (e != std::string_view::npos && e > 0 && e + 1 < rest.size() && rest[e + 1] == ':') {
              b.define_label(rest.substr(0, e), lineno, col);
              c.set_pos(c.pos() + e + 2);
              continue;
            }
          }
          c.set_pos(save);
        }
      }
      std::string_view id = c.ident();
      if (!id.empty() && c.peek() == ':' ) {
        c.eat(":");
        b.define_label(id, lineno, col);
        continue;
      }
      c.set_pos(save);
      break;
    }
    // raw bytes
    std::vector<uint8_t> raw_bytes;
    int raw_col = 0;
    while (!c.at_end() && is_hex_pair(c.rest())) {
      std::string_view r = c.rest();
      if (raw_bytes.empty()) raw_col = c.col();
      raw_bytes.push_back(static_cast<uint8_t>(std::stoi(std::string(r.substr(0, 2)), nullptr, 16)));
      if (raw_bytes.size() == 1) prefix_code = raw_bytes[0];
      if (raw_bytes.size() == 2) prefix_regs = raw_bytes[1];
      c.set_pos(c.pos() + 2);
    }
    // "(b7)"
    {
      size_t save = c.pos();
      c.ws();
      std::string_view r = c.rest();
      if (r.size() >= 4 && r[0] == '(' && is_hex(r[1]) && is_hex(r[2]) && r[3] == ')') {
        prefix_code = std::stoi(std::string(r.substr(1, 2)), nullptr, 16);
        c.set_pos(c.pos() + 4);
      } else {
        c.set_pos(save);
      }
    }
    if (!c.at_end() && c.rest().starts_with("<unknown>") && !raw_bytes.empty()) {
      // llvm-objdump prints instructions it cannot name as <unknown>: take the raw bytes.
      c.set_pos(c.pos() + 9);
      c.expect_end();
      if (raw_bytes.size() != 8 && raw_bytes.size() != 16)
        fail(lineno, raw_col, fmt::format("expected 8 or 16 raw bytes before <unknown>, found {}", raw_bytes.size()));
      auto dec = decode_bytes(raw_bytes);
      if (!dec) fail(lineno, raw_col, "raw bytes do not decode: " + dec.error().message);
      if (dec->size() != (dec->front().is_wide() ? 2u : 1u))
        fail(lineno, raw_col, "expected the raw bytes of one instruction");
      b.add(dec->front(), lineno);
    } else if (!c.at_end()) {
      parse_kernel_insn(c, b, prefix_code, prefix_regs);
    }
    if (nl == text.size()) break;
  }
}

}  // namespace bpfvm::asmi
