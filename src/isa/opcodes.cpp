// The opcode table and everything generated from it: decoding, encoding, structural checks.
#include <cstring>
#include <fmt/format.h>

#include "bpfvm/insn.hpp"

namespace bpfvm {
namespace {

constexpr uint8_t NOFIELDS = 0;
constexpr uint8_t D = F_DST, S = F_SRC, O = F_OFF, I = F_IMM;
constexpr uint8_t DI = D | I, DS = D | S, DIO = D | I | O, DSO = D | S | O, OI = O | I, SI = S | I,
                  DOI = D | O | I;

constexpr OpKind kind_of(uint8_t code, Op op) {
  if (op == Op::LDDW_HI) return OpKind::Pseudo;
  switch (code & 7) {
    case 0: return (code & 0xe0) == 0 ? OpKind::LoadImm64 : OpKind::LoadPacket;
    case 1: return OpKind::Load;
    case 2: return OpKind::Store;
    case 3: return (code & 0xe0) == 0xc0 ? OpKind::Atomic : OpKind::StoreReg;
    case 4:
    case 7: return OpKind::Alu;
    default:
      switch (code & 0xf0) {
        case 0x00: return OpKind::Jump;
        case 0x80: return OpKind::Call;
        case 0x90: return OpKind::Exit;
        default: return OpKind::CondJump;
      }
  }
}

constexpr uint8_t size_of(uint8_t code) {
  uint8_t cls = code & 7;
  if (cls > 3) return 0;
  if (cls == 0 && (code & 0xe0) == 0) return 0;  // lddw
  switch (code & 0x18) {
    case 0x00: return 4;
    case 0x08: return 2;
    case 0x10: return 1;
    default: return 8;
  }
}

constexpr OpInfo make(Op op, uint8_t code, Sel sel, int32_t selval, uint8_t fields, uint8_t ver,
                      std::string_view mn) {
  uint8_t cls = code & 7;
  bool alu64 = cls == 7 || cls == 5;
  if (op == Op::JA) alu64 = true;
  bool reg = (cls >= 4) && (code & 0x08);
  if (kind_of(code, op) == OpKind::Alu && (code & 0xf0) == 0xd0) reg = false;  // byte swaps
  return OpInfo{op, code, sel, selval, fields, ver, mn, kind_of(code, op), alu64, reg, size_of(code)};
}

constexpr OpInfo kTable[] = {
#define BPFVM_OP(NAME, CODE, SEL, SELVAL, FIELDS, VERSION, MNEMONIC) \
  make(Op::NAME, CODE, Sel::SEL, SELVAL, FIELDS, VERSION, MNEMONIC),
#include "bpfvm/opcodes.def"
    make(Op::LDDW_HI, 0x00, Sel::NONE, 0, NOFIELDS, 1, "(lddw high half)"),
};
static_assert(sizeof(kTable) / sizeof(kTable[0]) == kOpCount);

constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < kOpCount; ++i)
    if (static_cast<size_t>(kTable[i].op) != i) return false;
  return true;
}
static_assert(table_in_enum_order());

// For each opcode byte, the rows that use it (at most 10: the atomics).
struct CodeIndex {
  std::array<std::array<uint8_t, 12>, 256> rows{};
  std::array<uint8_t, 256> count{};
  constexpr CodeIndex() {
    for (size_t i = 0; i + 1 < kOpCount; ++i) {  // LDDW_HI is not decodable on its own
      uint8_t c = kTable[i].code;
      rows[c][count[c]++] = static_cast<uint8_t>(i);
    }
  }
};
constexpr CodeIndex kIndex{};

int32_t selector_value(const RawInsn& r, Sel sel) {
  switch (sel) {
    case Sel::OFF: return r.off;
    case Sel::IMM: return r.imm;
    case Sel::SRC: return r.src;
    default: return 0;
  }
}

Diagnostic decode_error(int64_t pc, std::string msg) {
  return make_error(ErrorCode::Decode, std::move(msg), pc);
}

}  // namespace

const OpInfo& op_info(Op op) { return kTable[static_cast<size_t>(op)]; }

std::string_view op_name(Op op) {
  std::string_view mn = op_info(op).mnemonic;
  auto sp = mn.find(' ');
  if (mn.starts_with("lock ")) return mn;
  if (sp != std::string_view::npos) mn = mn.substr(0, sp);
  return mn;
}

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::Ok: return "ok";
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::Io: return "i/o error";
    case ErrorCode::Decode: return "invalid instruction";
    case ErrorCode::Structure: return "invalid program";
    case ErrorCode::Assemble: return "assembly error";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::Link: return "link error";
    case ErrorCode::MemoryFault: return "memory fault";
    case ErrorCode::Budget: return "instruction budget exhausted";
    case ErrorCode::CallDepth: return "call depth exceeded";
    case ErrorCode::Runtime: return "runtime error";
    case ErrorCode::Load: return "load error";
    case ErrorCode::Verify: return "verification failed";
  }
  return "error";
}

std::string Diagnostic::to_string() const {
  std::string where;
  if (line > 0)
    where = column > 0 ? fmt::format("line {}:{}: ", line, column) : fmt::format("line {}: ", line);
  else if (pc >= 0)
    where = fmt::format("insn {}: ", pc);
  std::string s = where + message;
  if (!source_line.empty()) s += fmt::format(" (source: {})", source_line);
  return s;
}

Result<std::vector<Insn>> decode(std::span<const RawInsn> raw, int isa_version) {
  std::vector<Insn> out;
  out.reserve(raw.size());
  for (size_t pc = 0; pc < raw.size(); ++pc) {
    const RawInsn& r = raw[pc];
    const auto& idx = kIndex;
    uint8_t n = idx.count[r.code];
    if (n == 0) return decode_error(pc, fmt::format("unknown opcode 0x{:02x}", r.code));
    const OpInfo* row = nullptr;
    const OpInfo* fallback = nullptr;
    for (uint8_t k = 0; k < n; ++k) {
      const OpInfo& cand = kTable[idx.rows[r.code][k]];
      if (cand.sel == Sel::NONE) {
        fallback = &cand;
      } else if (selector_value(r, cand.sel) == cand.selval) {
        row = &cand;
        break;
      }
    }
    if (!row) row = fallback;
    if (!row) {
      const OpInfo& any = kTable[idx.rows[r.code][0]];
      const char* field = any.sel == Sel::OFF ? "off" : any.sel == Sel::IMM ? "imm" : "src";
      return decode_error(pc, fmt::format("opcode 0x{:02x} ({}) has invalid {} value {}", r.code,
                                          op_name(any.op), field, selector_value(r, any.sel)));
    }
    // CALLX: the register is in dst (LLVM, Linux); older encoders put it in imm. Accept both.
    RawInsn rr = r;
    if (row->op == Op::CALLX && rr.dst == 0 && rr.imm > 0 && rr.imm <= 10) {
      rr.dst = static_cast<uint8_t>(rr.imm);
      rr.imm = 0;
    }
    if (row->version > isa_version)
      return decode_error(pc, fmt::format("{} needs ISA v{} (cpu v{} requested)", row->mnemonic,
                                          row->version, isa_version));
    Insn in;
    in.op = row->op;
    in.dst = rr.dst;
    in.src = rr.src;
    in.off = rr.off;
    in.imm = rr.imm;
    if (auto st = check_fields(in, static_cast<int64_t>(pc)); !st) {
      Diagnostic d = st.error();
      d.code = ErrorCode::Decode;
      return d;
    }
    if (row->kind == OpKind::LoadImm64) {
      if (pc + 1 >= raw.size())
        return decode_error(pc, "lddw is truncated: its second slot is missing");
      const RawInsn& hi = raw[pc + 1];
      if (hi.code != 0 || hi.dst != 0 || hi.src != 0 || hi.off != 0)
        return decode_error(pc + 1, "second slot of lddw must have opcode, registers and offset 0");
      in.imm = static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(hi.imm)) << 32) |
                                    static_cast<uint32_t>(rr.imm));
      out.push_back(in);
      Insn h;
      h.op = Op::LDDW_HI;
      h.imm = hi.imm;
      out.push_back(h);
      ++pc;
      continue;
    }
    out.push_back(in);
  }
  return out;
}

std::vector<DecodedSlot> decode_each(std::span<const RawInsn> raw, int isa_version) {
  std::vector<DecodedSlot> out;
  for (size_t pc = 0; pc < raw.size();) {
    DecodedSlot e;
    e.pc = pc;
    auto one = decode(raw.subspan(pc, 1), isa_version);
    if (!one && pc + 1 < raw.size()) {
      // An lddw needs its second slot.
      auto two = decode(raw.subspan(pc, 2), isa_version);
      if (two && two->size() == 2) one = std::move(two);
      else if (!two && two.error().pc == 1) {
        e.slots = 2;
        one = std::move(two);
      }
    }
    if (one) {
      e.ok = true;
      e.insn = (*one)[0];
      e.slots = one->size();
    } else {
      e.error = one.error();
      e.error.pc = static_cast<int64_t>(pc) + (e.error.pc > 0 ? e.error.pc : 0);
    }
    pc += e.slots;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<Insn>> decode_bytes(std::span<const uint8_t> bytes, int isa_version) {
  if (bytes.size() % sizeof(RawInsn) != 0)
    return make_error(ErrorCode::Decode,
                      fmt::format("program size {} is not a multiple of 8 bytes", bytes.size()));
  std::vector<RawInsn> raw(bytes.size() / sizeof(RawInsn));
  if (!raw.empty()) std::memcpy(raw.data(), bytes.data(), bytes.size());
  return decode(raw, isa_version);
}

int64_t jump_target(const Insn& insn, int64_t pc) {
  if (insn.op == Op::JA32) return pc + 1 + insn.imm;
  if (insn.op == Op::CALL_LOCAL) return pc + 1 + insn.imm;
  return pc + 1 + insn.off;
}

Status check_fields(const Insn& in, int64_t pc) {
  const OpInfo* row = &in.info();
  if (row->kind == OpKind::Pseudo) return {};
  auto bad = [&](std::string msg) { return Status(make_error(ErrorCode::Structure, std::move(msg), pc)); };
  // A field is reserved when the op does not use it and it is not the op's selector (which the IR
  // implies by the op: encode() writes it).
  auto reserved = [&](uint8_t field, Sel selfield) { return !(row->fields & field) && row->sel != selfield; };
  int64_t imm = row->kind == OpKind::LoadImm64 ? 0 : in.imm;  // lddw: the whole 64-bit value
  if (!(row->fields & F_DST) && in.dst != 0)  // dst is never a selector
    return bad(fmt::format("{}: reserved dst field is {} (must be 0)", row->mnemonic, int(in.dst)));
  if (reserved(F_SRC, Sel::SRC) && in.src != 0)
    return bad(fmt::format("{}: reserved src field is {} (must be 0)", row->mnemonic, int(in.src)));
  if (reserved(F_OFF, Sel::OFF) && in.off != 0)
    return bad(fmt::format("{}: reserved off field is {} (must be 0)", row->mnemonic, in.off));
  if (reserved(F_IMM, Sel::IMM) && imm != 0)
    return bad(fmt::format("{}: reserved imm field is {} (must be 0)", row->mnemonic, imm));
  if ((row->fields & F_DST) && in.dst > 10)
    return bad(fmt::format("{}: invalid destination register r{}", row->mnemonic, int(in.dst)));
  if ((row->fields & F_SRC) && in.src > 10)
    return bad(fmt::format("{}: invalid source register r{}", row->mnemonic, int(in.src)));
  // Writes to r10 (the frame pointer) are not allowed: ALU, ldx, lddw, atomics with fetch write dst/src.
  bool writes_dst = row->kind == OpKind::Alu || row->kind == OpKind::Load || row->kind == OpKind::LoadImm64;
  if (writes_dst && in.dst == 10) return bad(fmt::format("{}: r10 is read-only (frame pointer)", row->mnemonic));
  if (row->kind == OpKind::Atomic && (in.imm & 1) && in.src == 10)
    return bad(fmt::format("{}: r10 is read-only (frame pointer)", row->mnemonic));
  return {};
}

Status check_structure(std::span<const Insn> insns) {
  if (insns.empty()) return make_error(ErrorCode::Structure, "program is empty");
  const int64_t n = static_cast<int64_t>(insns.size());
  for (int64_t pc = 0; pc < n; ++pc) {
    const Insn& in = insns[pc];
    if (auto st = check_fields(in, pc); !st) return st;
    OpKind k = in.info().kind;
    if (k == OpKind::Jump || k == OpKind::CondJump || in.op == Op::CALL_LOCAL ||
        in.op == Op::LDDW_CODE_ADDR) {
      int64_t t = in.op == Op::LDDW_CODE_ADDR ? pc + 1 + static_cast<int32_t>(in.imm) : jump_target(in, pc);
      const char* what = in.op == Op::CALL_LOCAL ? "call" : in.op == Op::LDDW_CODE_ADDR ? "code address" : "jump";
      if (t < 0 || t >= n)
        return make_error(ErrorCode::Structure,
                          fmt::format("{} out of range (target {}, program has {} instructions)", what, t, n), pc);
      if (insns[t].op == Op::LDDW_HI)
        return make_error(ErrorCode::Structure,
                          fmt::format("{} into the middle of lddw (target {})", what, t), pc);
    }
  }
  const Insn& last = insns[n - 1];
  if (last.op != Op::EXIT && last.op != Op::JA && last.op != Op::JA32)
    return make_error(ErrorCode::Structure,
                      fmt::format("last instruction must be exit or an unconditional jump, not {}",
                                  last.op == Op::LDDW_HI ? std::string_view("lddw") : op_name(last.op)),
                      n - 1);
  return {};
}

void encode_one(const Insn& in, std::vector<RawInsn>& out) {
  const OpInfo& info = in.info();
  if (in.op == Op::LDDW_HI) return;  // emitted together with its first half
  RawInsn r;
  r.code = info.code;
  r.dst = in.dst;
  r.src = in.src;
  r.off = in.off;
  r.imm = static_cast<int32_t>(in.imm);
  switch (info.sel) {
    case Sel::OFF: r.off = static_cast<int16_t>(info.selval); break;
    case Sel::IMM: r.imm = info.selval; break;
    case Sel::SRC: r.src = static_cast<uint8_t>(info.selval); break;
    default: break;
  }
  out.push_back(r);
  if (info.kind == OpKind::LoadImm64) {
    RawInsn hi;
    hi.imm = static_cast<int32_t>(static_cast<uint64_t>(in.imm) >> 32);
    out.push_back(hi);
  }
}

std::vector<RawInsn> encode(std::span<const Insn> insns) {
  std::vector<RawInsn> out;
  out.reserve(insns.size());
  for (const Insn& in : insns) encode_one(in, out);
  return out;
}

std::vector<uint8_t> to_bytes(std::span<const RawInsn> raw) {
  std::vector<uint8_t> b(raw.size() * sizeof(RawInsn));
  if (!b.empty()) std::memcpy(b.data(), raw.data(), b.size());
  return b;
}

}  // namespace bpfvm
