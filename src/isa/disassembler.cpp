// bpfvm disassembler: the kernel / llvm-objdump syntax and the bpf_conformance syntax.
// Shapes come from the opcode table (kind, fields, size, width, mnemonic); this file only knows
// how each syntax spells an operation (operators such as "+=" and "s>").
#include <fmt/format.h>

#include <set>

#include "bpfvm/asm.hpp"
#include "isa/asm_internal.hpp"

namespace bpfvm::asmi {

std::string_view alu_operator(std::string_view n) {
  if (n == "add") return "+=";
  if (n == "sub") return "-=";
  if (n == "mul") return "*=";
  if (n == "div") return "/=";
  if (n == "sdiv") return "s/=";
  if (n == "or") return "|=";
  if (n == "and") return "&=";
  if (n == "lsh") return "<<=";
  if (n == "rsh") return ">>=";
  if (n == "mod") return "%=";
  if (n == "smod") return "s%=";
  if (n == "xor") return "^=";
  if (n == "mov") return "=";
  if (n == "arsh") return "s>>=";
  return {};
}

std::string_view jump_operator(std::string_view n) {
  if (n == "jeq") return "==";
  if (n == "jgt") return ">";
  if (n == "jge") return ">=";
  if (n == "jset") return "&";
  if (n == "jne") return "!=";
  if (n == "jsgt") return "s>";
  if (n == "jsge") return "s>=";
  if (n == "jlt") return "<";
  if (n == "jle") return "<=";
  if (n == "jslt") return "s<";
  if (n == "jsle") return "s<=";
  return {};
}

std::string_view size_name(uint8_t size) {
  switch (size) {
    case 1: return "u8";
    case 2: return "u16";
    case 4: return "u32";
    default: return "u64";
  }
}

bool is_sign_extending_load(const OpInfo& info) {
  return info.kind == OpKind::Load && (info.code & 0xe0) == 0x80;  // BPF_MEMSX mode
}

std::string_view atomic_operation(const OpInfo& info, bool* fetch) {
  std::string_view mn = info.mnemonic;  // "lock [fetch ]op[32]"
  if (mn.starts_with("lock ")) mn.remove_prefix(5);
  bool f = false;
  if (mn.starts_with("fetch ")) {
    mn.remove_prefix(6);
    f = true;
  }
  if (mn.ends_with("32")) mn.remove_suffix(2);
  if (mn == "xchg" || mn == "cmpxchg") f = true;
  if (fetch) *fetch = f;
  return mn;
}

// Operation name without the 32-bit suffix: "add32" -> "add", "jeq32" -> "jeq".
std::string_view base_name(const OpInfo& info) {
  std::string_view mn = op_name(info.op);
  if ((info.kind == OpKind::Alu || info.kind == OpKind::CondJump) && !info.alu64 && mn.ends_with("32") &&
      !mn.starts_with("movsx") && !is_byte_swap(info))
    mn.remove_suffix(2);
  return mn;
}

bool is_byte_swap(const OpInfo& info) { return info.kind == OpKind::Alu && (info.code & 0xf0) == 0xd0; }
bool is_movsx(const OpInfo& info) { return info.kind == OpKind::Alu && op_name(info.op).starts_with("movsx"); }

}  // namespace bpfvm::asmi

namespace bpfvm {
namespace {

using namespace asmi;

std::string rel(int64_t delta) { return delta >= 0 ? fmt::format("+{}", delta) : fmt::format("{}", delta); }

uint32_t lo32(const Insn& in) { return static_cast<uint32_t>(static_cast<uint64_t>(in.imm)); }
uint32_t hi32(const Insn& in) { return static_cast<uint32_t>(static_cast<uint64_t>(in.imm) >> 32); }
int32_t imm_s(const Insn& in) { return static_cast<int32_t>(in.imm); }

std::string kmem(const Insn& in, uint8_t base) { return fmt::format("(r{} {})", base, rel(in.off)); }

std::string format_kernel(const Insn& in, int64_t pc, const DisasmOptions& o) {
  const OpInfo& i = in.info();
  const char R = i.alu64 ? 'r' : 'w';
  switch (i.kind) {
    case OpKind::Alu: {
      std::string_view name = base_name(i);
      if (name == "neg") return fmt::format("{0}{1} = -{0}{1}", R, in.dst);
      if (is_byte_swap(i)) return fmt::format("r{0} = {1} r{0}", in.dst, name);
      if (is_movsx(i)) return fmt::format("{0}{1} = (s{2}){0}{3}", R, in.dst, i.selval, in.src);
      if (i.uses_reg_src) return fmt::format("{0}{1} {2} {0}{3}", R, in.dst, alu_operator(name), in.src);
      return fmt::format("{}{} {} {}", R, in.dst, alu_operator(name), imm_s(in));
    }
    case OpKind::Jump:
      if (in.op == Op::JA32) return fmt::format("gotol pc{}", rel(imm_s(in)));
      return fmt::format("goto pc{}", rel(in.off));
    case OpKind::CondJump: {
      std::string_view cmp = jump_operator(base_name(i));
      if (i.uses_reg_src) return fmt::format("if {0}{1} {2} {0}{3} goto pc{4}", R, in.dst, cmp, in.src, rel(in.off));
      return fmt::format("if {}{} {} {:#x} goto pc{}", R, in.dst, cmp, lo32(in), rel(in.off));
    }
    case OpKind::Call:
      switch (in.op) {
        case Op::CALL_LOCAL: return fmt::format("call pc{}", rel(imm_s(in)));
        case Op::CALL_KFUNC:
          return in.off ? fmt::format("call kfunc#{} off={}", imm_s(in), in.off) : fmt::format("call kfunc#{}", imm_s(in));
        case Op::CALLX: return fmt::format("callx r{}", in.dst);
        default: {
          std::string_view name;
          if (o.helper_name) name = o.helper_name(imm_s(in));
          return fmt::format("call {}#{}", name, imm_s(in));
        }
      }
    case OpKind::Exit: return "exit";
    case OpKind::LoadImm64: {
      const uint32_t lo = lo32(in), hi = hi32(in);
      std::string extra = hi ? fmt::format(" hi={}", hi) : "";  // non-canonical: second slot imm
      switch (in.op) {
        case Op::LDDW_MAP_FD: return fmt::format("r{} = map[fd:{}]{}", in.dst, lo, extra);
        case Op::LDDW_MAP_VALUE_FD: return fmt::format("r{} = map[fd:{}][0]+{}", in.dst, lo, hi);
        case Op::LDDW_VAR_ADDR: return fmt::format("r{} = var[btf:{}]{}", in.dst, lo, extra);
        case Op::LDDW_CODE_ADDR: return fmt::format("r{} = subprog[{}]{}", in.dst, rel(static_cast<int32_t>(lo)), extra);
        case Op::LDDW_MAP_IDX: return fmt::format("r{} = map[idx:{}]{}", in.dst, lo, extra);
        case Op::LDDW_MAP_VALUE_IDX: return fmt::format("r{} = map[idx:{}]+{}", in.dst, lo, hi);
        default: return fmt::format("r{} = {:#x} ll", in.dst, static_cast<uint64_t>(in.imm));
      }
    }
    case OpKind::LoadPacket:
      if (i.fields & F_SRC) return fmt::format("r0 = *({} *)skb[r{} + {}]", size_name(i.size), in.src, imm_s(in));
      return fmt::format("r0 = *({} *)skb[{}]", size_name(i.size), imm_s(in));
    case OpKind::Load:
      return fmt::format("r{} = *({}{} *){}", in.dst, is_sign_extending_load(i) ? 's' : 'u', i.size * 8,
                         kmem(in, in.src));
    case OpKind::Store: return fmt::format("*({} *){} = {}", size_name(i.size), kmem(in, in.dst), imm_s(in));
    case OpKind::StoreReg: return fmt::format("*({} *){} = r{}", size_name(i.size), kmem(in, in.dst), in.src);
    case OpKind::Atomic: {
      bool fetch = false;
      std::string_view op = atomic_operation(i, &fetch);
      std::string sz(size_name(i.size));
      std::string_view w = i.size == 8 ? "64" : "";
      if (op == "cmpxchg")
        return fmt::format("r0 = atomic{}_cmpxchg(({} *){}, r0, r{})", w, sz, kmem(in, in.dst), in.src);
      if (op == "xchg")
        return fmt::format("r{0} = atomic{1}_xchg(({2} *){3}, r{0})", in.src, w, sz, kmem(in, in.dst));
      if (fetch)
        return fmt::format("r{0} = atomic{1}_fetch_{2}(({3} *){4}, r{0})", in.src, w, op, sz, kmem(in, in.dst));
      // "lock *(u32 *)(r1 +0) += r2": the ALU operator of the same name.
      return fmt::format("lock *({} *){} {} r{}", sz, kmem(in, in.dst), alu_operator(op), in.src);
    }
    case OpKind::Pseudo: return "(lddw second slot)";
  }
  return "(unknown)";
}

std::string cmem(uint8_t reg, int16_t off) {
  if (off == 0) return fmt::format("[%r{}]", reg);
  return fmt::format("[%r{}{}]", reg, rel(off));
}

// `labels` maps a target slot to its label name (conformance syntax with show_index).
std::string format_conformance(const Insn& in, int64_t pc, const std::set<int64_t>* labels) {
  const OpInfo& i = in.info();
  std::string_view mn = i.mnemonic;
  auto target = [&](int64_t delta) {
    int64_t t = pc + 1 + delta;
    if (labels && labels->count(t)) return fmt::format("L{}", t);
    return rel(delta);
  };
  switch (i.kind) {
    case OpKind::Alu:
      if (i.fields & F_SRC) return fmt::format("{} %r{}, %r{}", mn, in.dst, in.src);
      if (i.fields & F_IMM) return fmt::format("{} %r{}, {}", mn, in.dst, imm_s(in));
      return fmt::format("{} %r{}", mn, in.dst);
    case OpKind::Jump: return fmt::format("{} {}", mn, target(in.op == Op::JA32 ? imm_s(in) : in.off));
    case OpKind::CondJump:
      if (i.uses_reg_src) return fmt::format("{} %r{}, %r{}, {}", mn, in.dst, in.src, target(in.off));
      return fmt::format("{} %r{}, {}, {}", mn, in.dst, imm_s(in), target(in.off));
    case OpKind::Call:
      switch (in.op) {
        case Op::CALL_LOCAL: return fmt::format("{} {}", mn, target(imm_s(in)));
        case Op::CALL_KFUNC:
          return in.off ? fmt::format("{} {}, {}", mn, imm_s(in), in.off) : fmt::format("{} {}", mn, imm_s(in));
        case Op::CALLX: return fmt::format("call %r{}", in.dst);
        default: return fmt::format("{} {}", mn, imm_s(in));
      }
    case OpKind::Exit: return std::string(mn);
    case OpKind::LoadImm64:
      if (in.op == Op::LDDW) return fmt::format("{} %r{}, {:#x}", mn, in.dst, static_cast<uint64_t>(in.imm));
      if (hi32(in)) return fmt::format("{} %r{}, {}, {}", mn, in.dst, lo32(in), hi32(in));
      return fmt::format("{} %r{}, {}", mn, in.dst, lo32(in));
    case OpKind::LoadPacket:
      if (i.fields & F_SRC) return fmt::format("{} %r{}, {}", mn, in.src, imm_s(in));
      return fmt::format("{} {}", mn, imm_s(in));
    case OpKind::Load: return fmt::format("{} %r{}, {}", mn, in.dst, cmem(in.src, in.off));
    case OpKind::Store: return fmt::format("{} {}, {}", mn, cmem(in.dst, in.off), imm_s(in));
    case OpKind::StoreReg:
    case OpKind::Atomic: return fmt::format("{} {}, %r{}", mn, cmem(in.dst, in.off), in.src);
    case OpKind::Pseudo: return "# (lddw second slot)";
  }
  return "# (unknown)";
}

std::string raw_hex(const Insn& in) {
  std::vector<RawInsn> raw;
  encode_one(in, raw);
  auto bytes = to_bytes(raw);
  std::string s;
  for (size_t k = 0; k < bytes.size(); ++k) {
    if (k) s += ' ';
    s += fmt::format("{:02x}", bytes[k]);
  }
  return s;
}

}  // namespace

std::string format_insn(const Insn& insn, int64_t pc, const DisasmOptions& options) {
  if (options.syntax == Syntax::Conformance) return format_conformance(insn, pc, nullptr);
  return format_kernel(insn, pc, options);
}

std::string disassemble(std::span<const Insn> insns, const DisasmOptions& options) {
  std::string out;
  const int64_t n = static_cast<int64_t>(insns.size());
  if (options.syntax == Syntax::Conformance) {
    // Labels for every jump / local-call target that is an instruction boundary (or the end).
    std::set<int64_t> labels;
    if (options.show_index) {
      for (int64_t pc = 0; pc < n; ++pc) {
        const Insn& in = insns[pc];
        OpKind k = in.info().kind;
        if (k != OpKind::Jump && k != OpKind::CondJump && in.op != Op::CALL_LOCAL) continue;
        int64_t t = jump_target(in, pc);
        if (t >= 0 && t <= n && (t == n || insns[t].op != Op::LDDW_HI)) labels.insert(t);
      }
    }
    for (int64_t pc = 0; pc < n; ++pc) {
      if (labels.count(pc)) out += fmt::format("L{}:\n", pc);
      if (insns[pc].op == Op::LDDW_HI) continue;
      out += format_conformance(insns[pc], pc, options.show_index ? &labels : nullptr);
      if (options.show_raw) out += "  # " + raw_hex(insns[pc]);
      out += '\n';
    }
    if (labels.count(n)) out += fmt::format("L{}:\n", n);
    return out;
  }
  for (int64_t pc = 0; pc < n; ++pc) {
    const Insn& in = insns[pc];
    if (in.op == Op::LDDW_HI) continue;
    if (options.show_index) out += fmt::format("{:>4}: ", pc);
    if (options.show_raw) out += raw_hex(in) + "  ";
    out += format_kernel(in, pc, options);
    out += '\n';
  }
  return out;
}

}  // namespace bpfvm
