// Classic BPF: checking (the kernel's bpf_check_classic rules), printing, text parsing and the
// translation to eBPF (see include/bpfvm/cbpf.hpp for the register mapping).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "bpfvm/cbpf.hpp"

namespace bpfvm {
namespace {

// Instruction classes and fields (linux/filter.h, pcap/bpf.h).
constexpr uint16_t kLd = 0x00, kLdx = 0x01, kSt = 0x02, kStx = 0x03, kAlu = 0x04, kJmp = 0x05, kRet = 0x06,
                   kMisc = 0x07;
constexpr uint16_t kW = 0x00, kH = 0x08, kB = 0x10;
constexpr uint16_t kImm = 0x00, kAbs = 0x20, kInd = 0x40, kMem = 0x60, kLen = 0x80, kMsh = 0xa0;
constexpr uint16_t kAdd = 0x00, kSub = 0x10, kMul = 0x20, kDiv = 0x30, kOr = 0x40, kAnd = 0x50, kLsh = 0x60,
                   kRsh = 0x70, kNeg = 0x80, kMod = 0x90, kXor = 0xa0;
constexpr uint16_t kJa = 0x00, kJeq = 0x10, kJgt = 0x20, kJge = 0x30, kJset = 0x40;
constexpr uint16_t kK = 0x00, kX = 0x08, kA = 0x10;
constexpr uint16_t kTax = 0x00, kTxa = 0x80;

constexpr uint16_t cls(uint16_t c) { return c & 0x07; }
constexpr uint16_t size_of(uint16_t c) { return c & 0x18; }
constexpr uint16_t mode(uint16_t c) { return c & 0xe0; }
constexpr uint16_t alu_op(uint16_t c) { return c & 0xf0; }
constexpr uint16_t src(uint16_t c) { return c & 0x08; }
constexpr uint16_t rval(uint16_t c) { return c & 0x18; }
constexpr uint16_t miscop(uint16_t c) { return c & 0xf8; }

// Ancillary data offsets (linux/filter.h).
constexpr int32_t kSkfAdOff = -0x1000, kSkfNetOff = -0x100000, kSkfLlOff = -0x200000;
enum : int32_t {
  kAdProtocol = 0, kAdPkttype = 4, kAdIfindex = 8, kAdNlattr = 12, kAdNlattrNest = 16, kAdMark = 20,
  kAdQueue = 24, kAdHatype = 28, kAdRxhash = 32, kAdCpu = 36, kAdAluXorX = 40, kAdVlanTag = 44,
  kAdVlanTagPresent = 48, kAdPayOffset = 52, kAdRandom = 56, kAdVlanTpid = 60, kAdMax = 64,
};

const char* ancillary_name(int32_t ad) {
  switch (ad) {
    case kAdProtocol: return "SKF_AD_PROTOCOL";
    case kAdPkttype: return "SKF_AD_PKTTYPE";
    case kAdIfindex: return "SKF_AD_IFINDEX";
    case kAdNlattr: return "SKF_AD_NLATTR";
    case kAdNlattrNest: return "SKF_AD_NLATTR_NEST";
    case kAdMark: return "SKF_AD_MARK";
    case kAdQueue: return "SKF_AD_QUEUE";
    case kAdHatype: return "SKF_AD_HATYPE";
    case kAdRxhash: return "SKF_AD_RXHASH";
    case kAdCpu: return "SKF_AD_CPU";
    case kAdAluXorX: return "SKF_AD_ALU_XOR_X";
    case kAdVlanTag: return "SKF_AD_VLAN_TAG";
    case kAdVlanTagPresent: return "SKF_AD_VLAN_TAG_PRESENT";
    case kAdPayOffset: return "SKF_AD_PAY_OFFSET";
    case kAdRandom: return "SKF_AD_RANDOM";
    case kAdVlanTpid: return "SKF_AD_VLAN_TPID";
  }
  return "SKF_AD_?";
}

bool known_opcode(uint16_t c) {
  if (c > 0xff) return false;  // the kernel matches the whole 16-bit code
  switch (cls(c)) {
    case kLd:
      switch (mode(c)) {
        case kImm: case kMem: case kLen: return size_of(c) == kW;
        case kAbs: case kInd: return size_of(c) != 0x18;
        default: return false;
      }
    case kLdx:
      switch (mode(c)) {
        case kImm: case kMem: case kLen: return size_of(c) == kW;
        case kMsh: return size_of(c) == kB;
        default: return false;
      }
    case kSt: case kStx: return c == kSt || c == kStx;
    case kAlu:
      if (alu_op(c) == kNeg) return c == (kAlu | kNeg);
      return alu_op(c) <= kXor && (c & 0x07) == kAlu;
    case kJmp:
      if (alu_op(c) == kJa) return c == (kJmp | kJa);
      return alu_op(c) <= kJset;
    case kRet: return rval(c) != 0x18 && (c & 0xe0) == 0;
    case kMisc: return c == (kMisc | kTax) || c == (kMisc | kTxa);
  }
  return false;
}

Diagnostic cerr(size_t pc, std::string msg) {
  return make_error(ErrorCode::Structure, "cbpf insn " + std::to_string(pc) + ": " + msg);
}

}  // namespace

Status cbpf_check(std::span<const CbpfInsn> prog) {
  if (prog.empty()) return make_error(ErrorCode::Structure, "cbpf: empty program");
  if (prog.size() > kCbpfMaxInsns)
    return make_error(ErrorCode::Structure, "cbpf: " + std::to_string(prog.size()) +
                                                " instructions (at most " + std::to_string(kCbpfMaxInsns) + ")");
  size_t n = prog.size();
  for (size_t pc = 0; pc < n; ++pc) {
    const CbpfInsn& in = prog[pc];
    char code[16];
    std::snprintf(code, sizeof code, "0x%02x", in.code);
    if (!known_opcode(in.code)) return cerr(pc, std::string("unknown opcode ") + code);
    uint16_t c = in.code;
    if ((cls(c) == kLd || cls(c) == kLdx) && mode(c) == kMem && in.k >= kCbpfMemWords)
      return cerr(pc, "scratch memory index " + std::to_string(in.k) + " out of range (M[0..15])");
    if ((cls(c) == kSt || cls(c) == kStx) && in.k >= kCbpfMemWords)
      return cerr(pc, "scratch memory index " + std::to_string(in.k) + " out of range (M[0..15])");
    if (cls(c) == kAlu && src(c) == kK && (alu_op(c) == kDiv || alu_op(c) == kMod) && in.k == 0)
      return cerr(pc, "division by constant 0");
    if (cls(c) == kAlu && src(c) == kK && (alu_op(c) == kLsh || alu_op(c) == kRsh) && in.k >= 32)
      return cerr(pc, "shift by " + std::to_string(in.k) + " (at most 31)");
    if (cls(c) == kJmp) {
      if (alu_op(c) == kJa) {
        if (in.k >= 0x80000000u)
          return cerr(pc, "backward jump (ja " + std::to_string(static_cast<int32_t>(in.k)) +
                              "): classic BPF jumps only forward");
        if (in.k >= n - pc - 1) return cerr(pc, "jump out of range (ja +" + std::to_string(in.k) + ", program has " +
                                                    std::to_string(n) + " instructions)");
      } else {
        size_t jt = pc + 1 + in.jt, jf = pc + 1 + in.jf;
        if (jt >= n || jf >= n)
          return cerr(pc, "jump out of range (target " + std::to_string(std::max(jt, jf)) + ", program has " +
                              std::to_string(n) + " instructions)");
      }
    }
  }
  if (cls(prog[n - 1].code) != kRet && !(cls(prog[n - 1].code) == kJmp))
    return cerr(n - 1, "last instruction is not a return");
  if (cls(prog[n - 1].code) == kJmp) return cerr(n - 1, "last instruction is not a return");
  return {};
}

std::string cbpf_format(const CbpfInsn& in, size_t pc) {
  char buf[96];
  uint16_t c = in.code;
  auto jmp = [&](const char* op, bool x) {
    char operand[24];
    if (x) std::snprintf(operand, sizeof operand, "x");
    else std::snprintf(operand, sizeof operand, "#0x%x", in.k);
    std::snprintf(buf, sizeof buf, "%-8s %-16s jt %zu\tjf %zu", op, operand, pc + 1 + in.jt, pc + 1 + in.jf);
  };
  const char* sz = size_of(c) == kW ? "ld" : size_of(c) == kH ? "ldh" : "ldb";
  switch (cls(c)) {
    case kLd:
      switch (mode(c)) {
        case kImm: std::snprintf(buf, sizeof buf, "%-8s #0x%x", "ld", in.k); break;
        case kAbs: std::snprintf(buf, sizeof buf, "%-8s [%d]", sz, static_cast<int32_t>(in.k)); break;
        case kInd: std::snprintf(buf, sizeof buf, "%-8s [x + %d]", sz, static_cast<int32_t>(in.k)); break;
        case kMem: std::snprintf(buf, sizeof buf, "%-8s M[%u]", "ld", in.k); break;
        case kLen: std::snprintf(buf, sizeof buf, "%-8s #pktlen", "ld"); break;
        default: std::snprintf(buf, sizeof buf, "unimp"); break;
      }
      break;
    case kLdx:
      switch (mode(c)) {
        case kImm: std::snprintf(buf, sizeof buf, "%-8s #0x%x", "ldx", in.k); break;
        case kMem: std::snprintf(buf, sizeof buf, "%-8s M[%u]", "ldx", in.k); break;
        case kLen: std::snprintf(buf, sizeof buf, "%-8s #pktlen", "ldx"); break;
        case kMsh: std::snprintf(buf, sizeof buf, "%-8s 4*([%u]&0xf)", "ldxb", in.k); break;
        default: std::snprintf(buf, sizeof buf, "unimp"); break;
      }
      break;
    case kSt: std::snprintf(buf, sizeof buf, "%-8s M[%u]", "st", in.k); break;
    case kStx: std::snprintf(buf, sizeof buf, "%-8s M[%u]", "stx", in.k); break;
    case kAlu: {
      static const char* names[] = {"add", "sub", "mul", "div", "or", "and", "lsh", "rsh", "neg", "mod", "xor"};
      unsigned op = alu_op(c) >> 4;
      const char* name = op < 11 ? names[op] : "unimp";
      if (alu_op(c) == kNeg) std::snprintf(buf, sizeof buf, "neg");
      else if (src(c) == kX) std::snprintf(buf, sizeof buf, "%-8s x", name);
      else std::snprintf(buf, sizeof buf, "%-8s #0x%x", name, in.k);
      break;
    }
    case kJmp:
      switch (alu_op(c)) {
        case kJa: std::snprintf(buf, sizeof buf, "%-8s %zu", "ja", pc + 1 + in.k); break;
        case kJeq: jmp("jeq", src(c) == kX); break;
        case kJgt: jmp("jgt", src(c) == kX); break;
        case kJge: jmp("jge", src(c) == kX); break;
        case kJset: jmp("jset", src(c) == kX); break;
        default: std::snprintf(buf, sizeof buf, "unimp"); break;
      }
      break;
    case kRet:
      if (rval(c) == kA) std::snprintf(buf, sizeof buf, "%-8s a", "ret");
      else if (rval(c) == kX) std::snprintf(buf, sizeof buf, "%-8s x", "ret");
      else std::snprintf(buf, sizeof buf, "%-8s #%u", "ret", in.k);
      break;
    case kMisc: std::snprintf(buf, sizeof buf, miscop(c) == kTxa ? "txa" : "tax"); break;
  }
  char line[128];
  std::snprintf(line, sizeof line, "(%03zu) %s", pc, buf);
  return line;
}

std::string cbpf_disassemble(std::span<const CbpfInsn> prog) {
  std::string out;
  for (size_t i = 0; i < prog.size(); ++i) out += cbpf_format(prog[i], i) + "\n";
  return out;
}

// ---- text ----------------------------------------------------------------------------------------

Result<std::vector<CbpfInsn>> parse_cbpf_text(std::string_view text) {
  std::vector<std::vector<uint64_t>> rows;
  std::vector<int> row_line;
  bool braces = text.find('{') != std::string_view::npos;
  int lineno = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t e = text.find('\n', pos);
    if (e == std::string_view::npos) e = text.size();
    std::string_view line = text.substr(pos, e - pos);
    pos = e + 1;
    ++lineno;
    std::vector<uint64_t> nums;
    size_t i = 0;
    auto err = [&](const std::string& m) {
      return make_error(ErrorCode::InvalidArgument, "line " + std::to_string(lineno) + ": " + m);
    };
    while (i < line.size()) {
      char ch = line[i];
      if (std::isspace(static_cast<unsigned char>(ch)) || ch == ',' || ch == '{' || ch == '}') {
        ++i;
        continue;
      }
      if (ch == '#' || (ch == '/' && i + 1 < line.size() && line[i + 1] == '/')) break;
      if (!std::isdigit(static_cast<unsigned char>(ch)))
        return err(std::string("unexpected '") + ch + "' at column " + std::to_string(i + 1));
      int base = 10;
      size_t st = i;
      if (ch == '0' && i + 1 < line.size() && (line[i + 1] == 'x' || line[i + 1] == 'X')) {
        base = 16;
        st = i + 2;
      }
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(line.data() + st, line.data() + line.size(), v, base);
      if (ec != std::errc() || p == line.data() + st)
        return err("bad number at column " + std::to_string(i + 1));
      if (v > 0xffffffffull) return err("number at column " + std::to_string(i + 1) + " does not fit 32 bits");
      nums.push_back(v);
      i = static_cast<size_t>(p - line.data());
    }
    if (nums.empty()) {
      if (pos > text.size()) break;
      continue;
    }
    rows.push_back(std::move(nums));
    row_line.push_back(lineno);
    if (pos > text.size()) break;
  }
  if (rows.empty()) return make_error(ErrorCode::InvalidArgument, "no classic BPF instructions found");
  size_t first = 0;
  // -ddd: a first line with one number, the instruction count.
  if (!braces && rows[0].size() == 1) {
    if (rows[0][0] != rows.size() - 1)
      return make_error(ErrorCode::InvalidArgument, "line " + std::to_string(row_line[0]) + ": count " +
                                                        std::to_string(rows[0][0]) + " but " +
                                                        std::to_string(rows.size() - 1) + " instructions follow");
    first = 1;
  }
  std::vector<CbpfInsn> out;
  for (size_t r = first; r < rows.size(); ++r) {
    const auto& n = rows[r];
    auto err = [&](const std::string& m) {
      return make_error(ErrorCode::InvalidArgument, "line " + std::to_string(row_line[r]) + ": " + m);
    };
    if (n.size() != 4) return err("expected 4 numbers (code, jt, jf, k), found " + std::to_string(n.size()));
    if (n[0] > 0xffff) return err("code does not fit 16 bits");
    if (n[1] > 0xff || n[2] > 0xff) return err("jt/jf do not fit 8 bits");
    out.push_back(CbpfInsn{static_cast<uint16_t>(n[0]), static_cast<uint8_t>(n[1]), static_cast<uint8_t>(n[2]),
                           static_cast<uint32_t>(n[3])});
  }
  return out;
}

// ---- translation ---------------------------------------------------------------------------------

namespace {

constexpr uint8_t RA = 0, RX = 7, RCTX = 6, RT = 8, RT2 = 9, RFP = 10;
// Liveness bits: A, X, M[0..15].
constexpr uint32_t LA = 1, LX = 2;
constexpr uint32_t LM(uint32_t k) { return 4u << k; }
constexpr uint64_t kXUnknown = 0xffffffffull;

int16_t mem_off(uint32_t k) { return static_cast<int16_t>(-64 + 4 * static_cast<int>(k)); }

Insn mk(Op op, uint8_t dst = 0, uint8_t s = 0, int16_t off = 0, int64_t imm = 0) { return Insn{op, dst, s, off, imm}; }

struct Translator {
  std::span<const CbpfInsn> in;
  const CbpfTranslateOptions& opts;
  // Original index of each instruction of `in` (dead code removed), for messages.
  const std::vector<size_t>* orig = nullptr;
  size_t opc(size_t pc) const { return orig && pc < orig->size() ? (*orig)[pc] : pc; }
  std::vector<Insn> out;
  std::vector<size_t> start;  // eBPF index of each classic insn
  struct Fix {
    size_t at;       // eBPF insn index whose off is a jump
    size_t target;   // classic insn index, or SIZE_MAX for the "return 0" block
  };
  std::vector<Fix> fixes;
  CbpfNeeds needs;
  static constexpr size_t kRet0 = SIZE_MAX;

  void emit(Insn i) { out.push_back(i); }
  void jump(Insn i, size_t target) {
    fixes.push_back({out.size(), target});
    out.push_back(i);
  }

  // Liveness before each instruction.
  std::vector<uint32_t> live_in, live_out;
  std::vector<uint64_t> xmax;  // upper bound of X before each instruction

  void uses_defs(const CbpfInsn& ci, uint32_t& use, uint32_t& def) const {
    uint16_t c = ci.code;
    use = def = 0;
    switch (cls(c)) {
      case kLd:
        def = LA;
        if (mode(c) == kInd) use = LX;
        if (mode(c) == kMem) use = LM(ci.k);
        if (mode(c) == kAbs && static_cast<int32_t>(ci.k) == kSkfAdOff + kAdAluXorX) use = LA | LX;
        break;
      case kLdx:
        def = LX;
        if (mode(c) == kMem) use = LM(ci.k);
        break;
      case kSt: use = LA; def = LM(ci.k); break;
      case kStx: use = LX; def = LM(ci.k); break;
      case kAlu: use = LA | (src(c) == kX && alu_op(c) != kNeg ? LX : 0); def = LA; break;
      case kJmp: if (alu_op(c) != kJa) use = LA | (src(c) == kX ? LX : 0); break;
      case kRet: use = rval(c) == kA ? LA : rval(c) == kX ? LX : 0; break;
      case kMisc:
        if (miscop(c) == kTax) { use = LA; def = LX; } else { use = LX; def = LA; }
        break;
    }
  }

  void analyse() {
    size_t n = in.size();
    live_in.assign(n, 0);
    live_out.assign(n, 0);
    for (size_t i = n; i-- > 0;) {
      const CbpfInsn& ci = in[i];
      uint32_t out_set = 0;
      uint16_t c = ci.code;
      if (cls(c) == kRet) {
      } else if (cls(c) == kJmp) {
        if (alu_op(c) == kJa) out_set = live_in[i + 1 + ci.k];
        else out_set = live_in[i + 1 + ci.jt] | live_in[i + 1 + ci.jf];
      } else {
        out_set = live_in[i + 1];
      }
      uint32_t use, def;
      uses_defs(ci, use, def);
      live_out[i] = out_set;
      live_in[i] = (out_set & ~def) | use;
    }
    // Forward: bound on X (jumps go forward only, so one pass in order sees every predecessor).
    xmax.assign(n + 1, 0);
    std::vector<bool> reached(n + 1, false);
    reached[0] = true;
    auto flow = [&](size_t to, uint64_t v) {
      if (!reached[to]) {
        reached[to] = true;
        xmax[to] = v;
      } else {
        xmax[to] = std::max(xmax[to], v);
      }
    };
    for (size_t i = 0; i < n; ++i) {
      if (!reached[i]) continue;
      const CbpfInsn& ci = in[i];
      uint16_t c = ci.code;
      uint64_t x = xmax[i];
      if (cls(c) == kLdx) {
        if (mode(c) == kImm) x = ci.k;
        else if (mode(c) == kMsh) x = 60;
        else x = kXUnknown;
      } else if (cls(c) == kMisc && miscop(c) == kTax) {
        x = kXUnknown;
      }
      if (cls(c) == kRet) continue;
      if (cls(c) == kJmp) {
        if (alu_op(c) == kJa) flow(i + 1 + ci.k, x);
        else {
          flow(i + 1 + ci.jt, x);
          flow(i + 1 + ci.jf, x);
        }
      } else {
        flow(i + 1, x);
      }
    }
  }

  Op ldabs(uint16_t c) const { return size_of(c) == kW ? Op::LDABS_W : size_of(c) == kH ? Op::LDABS_H : Op::LDABS_B; }
  Op ldind(uint16_t c) const { return size_of(c) == kW ? Op::LDIND_W : size_of(c) == kH ? Op::LDIND_H : Op::LDIND_B; }

  Status ancillary(size_t pc, int32_t ad, uint8_t dst) {
    auto field = [&](int16_t off) { emit(mk(Op::LDXW, dst, RCTX, off)); needs.skb_meta = true; };
    switch (ad) {
      case kAdProtocol: field(16); emit(mk(Op::BE16, dst, 0, 0, 16)); break;
      case kAdPkttype: field(4); break;
      case kAdIfindex: field(40); break;
      case kAdMark: field(8); break;
      case kAdQueue: field(12); break;
      case kAdRxhash: field(68); break;
      case kAdVlanTag: field(24); break;
      case kAdVlanTagPresent: field(20); break;
      case kAdVlanTpid: field(28); emit(mk(Op::BE16, dst, 0, 0, 16)); break;
      case kAdAluXorX: emit(mk(Op::XOR32_REG, RA, RX)); break;
      case kAdCpu:
      case kAdRandom:
        // Helper calls clobber r1..r5 only; A is r0 (the result), X and the context are kept.
        emit(mk(Op::CALL_HELPER, 0, 0, 0, ad == kAdCpu ? 8 : 7));
        if (dst != RA) emit(mk(Op::MOV32_REG, dst, RA));
        break;
      default:
        return cerr(opc(pc), std::string("ancillary load ") + ancillary_name(ad) + " is not supported by bpfvm");
    }
    return {};
  }

  // Classic packet offset -> frame offset; false when the load can never succeed.
  Status map_abs(size_t pc, uint32_t k, bool& ancillary_load, int64_t& off) {
    int32_t s = static_cast<int32_t>(k);
    ancillary_load = false;
    if (s >= kSkfAdOff && s < 0) {
      ancillary_load = true;
      off = s - kSkfAdOff;
      return {};
    }
    if (s >= kSkfNetOff && s < kSkfAdOff) {
      if (opts.net_offset < 0) return cerr(opc(pc), "SKF_NET_OFF load, but the network header offset is unknown for this link type");
      off = static_cast<int64_t>(s - kSkfNetOff) + opts.net_offset;
      return {};
    }
    if (s >= kSkfLlOff && s < kSkfNetOff) {
      off = s - kSkfLlOff;
      return {};
    }
    off = k;  // may be huge: never in bounds
    return {};
  }

  Status one(size_t pc) {
    const CbpfInsn& ci = in[pc];
    uint16_t c = ci.code;
    uint32_t k = ci.k;
    switch (cls(c)) {
      case kLd:
      case kLdx: {
        uint8_t dst = cls(c) == kLd ? RA : RX;
        switch (mode(c)) {
          case kImm: emit(mk(Op::MOV32_IMM, dst, 0, 0, static_cast<int32_t>(k))); break;
          case kMem: emit(mk(Op::LDXW, dst, RFP, mem_off(k))); break;
          case kLen:
            emit(mk(Op::LDXW, dst, RCTX, 0));
            needs.len = true;
            break;
          case kAbs: {
            bool anc;
            int64_t off;
            if (auto st = map_abs(pc, k, anc, off); !st) return st;
            if (anc) {
              if (auto st = ancillary(pc, static_cast<int32_t>(off), RA); !st) return st;
            } else if (off > INT32_MAX - 4) {
              jump(mk(Op::JA), kRet0);
            } else {
              emit(mk(ldabs(c), 0, 0, 0, off));
            }
            break;
          }
          case kInd: {
            if (xmax[pc] + k <= static_cast<uint64_t>(INT32_MAX) - 4) {
              emit(mk(ldind(c), 0, RX, 0, static_cast<int32_t>(k)));
            } else {
              // X + k computed without wrapping; beyond 2^31 no packet is that long.
              emit(mk(Op::MOV32_REG, RT, RX));
              emit(mk(Op::MOV32_IMM, RT2, 0, 0, static_cast<int32_t>(k)));
              emit(mk(Op::ADD64_REG, RT, RT2));
              jump(mk(Op::JGT_IMM, RT, 0, 0, INT32_MAX - 4), kRet0);
              emit(mk(ldind(c), 0, RT, 0, 0));
            }
            break;
          }
          case kMsh: {
            bool anc;
            int64_t off;
            if (auto st = map_abs(pc, k, anc, off); !st) return st;
            if (anc) return cerr(opc(pc), "ldxb 4*([k]&0xf) on an ancillary offset");
            bool save_a = live_out[pc] & LA;
            if (save_a) emit(mk(Op::MOV32_REG, RT, RA));
            if (off > INT32_MAX - 4) {
              jump(mk(Op::JA), kRet0);
            } else {
              emit(mk(Op::LDABS_B, 0, 0, 0, off));
            }
            emit(mk(Op::AND32_IMM, RA, 0, 0, 0xf));
            emit(mk(Op::LSH32_IMM, RA, 0, 0, 2));
            emit(mk(Op::MOV32_REG, RX, RA));
            if (save_a) emit(mk(Op::MOV32_REG, RA, RT));
            break;
          }
        }
        break;
      }
      case kSt: emit(mk(Op::STXW, RFP, RA, mem_off(k))); break;
      case kStx: emit(mk(Op::STXW, RFP, RX, mem_off(k))); break;
      case kAlu: {
        uint16_t op = alu_op(c);
        if (op == kNeg) {
          emit(mk(Op::NEG32, RA));
          break;
        }
        bool x = src(c) == kX;
        if (x && (op == kDiv || op == kMod)) jump(mk(Op::JEQ32_IMM, RX, 0, 0, 0), kRet0);
        Op eop;
        switch (op) {
          case kAdd: eop = x ? Op::ADD32_REG : Op::ADD32_IMM; break;
          case kSub: eop = x ? Op::SUB32_REG : Op::SUB32_IMM; break;
          case kMul: eop = x ? Op::MUL32_REG : Op::MUL32_IMM; break;
          case kDiv: eop = x ? Op::DIV32_REG : Op::DIV32_IMM; break;
          case kOr: eop = x ? Op::OR32_REG : Op::OR32_IMM; break;
          case kAnd: eop = x ? Op::AND32_REG : Op::AND32_IMM; break;
          case kLsh: eop = x ? Op::LSH32_REG : Op::LSH32_IMM; break;
          case kRsh: eop = x ? Op::RSH32_REG : Op::RSH32_IMM; break;
          case kMod: eop = x ? Op::MOD32_REG : Op::MOD32_IMM; break;
          default: eop = x ? Op::XOR32_REG : Op::XOR32_IMM; break;
        }
        if (x) emit(mk(eop, RA, RX));
        else emit(mk(eop, RA, 0, 0, static_cast<int32_t>(k)));
        break;
      }
      case kJmp: {
        uint16_t op = alu_op(c);
        if (op == kJa) {
          if (k != 0) jump(mk(Op::JA), pc + 1 + k);
          break;
        }
        bool x = src(c) == kX;
        size_t t = pc + 1 + ci.jt, f = pc + 1 + ci.jf;
        Op pos, neg = Op::EXIT;
        switch (op) {
          case kJeq: pos = x ? Op::JEQ32_REG : Op::JEQ32_IMM; neg = x ? Op::JNE32_REG : Op::JNE32_IMM; break;
          case kJgt: pos = x ? Op::JGT32_REG : Op::JGT32_IMM; neg = x ? Op::JLE32_REG : Op::JLE32_IMM; break;
          case kJge: pos = x ? Op::JGE32_REG : Op::JGE32_IMM; neg = x ? Op::JLT32_REG : Op::JLT32_IMM; break;
          default: pos = x ? Op::JSET32_REG : Op::JSET32_IMM; break;
        }
        auto cmp = [&](Op o) { return x ? mk(o, RA, RX) : mk(o, RA, 0, 0, static_cast<int32_t>(k)); };
        if (t == f) {
          if (ci.jt != 0) jump(mk(Op::JA), t);
        } else if (ci.jt == 0 && neg != Op::EXIT) {
          jump(cmp(neg), f);
        } else if (ci.jt == 0) {
          // jset with the false branch taken: (A & K) == 0 -> f
          if (x) {
            emit(mk(Op::MOV32_REG, RT, RA));
            emit(mk(Op::AND32_REG, RT, RX));
          } else {
            emit(mk(Op::MOV32_REG, RT, RA));
            emit(mk(Op::AND32_IMM, RT, 0, 0, static_cast<int32_t>(k)));
          }
          jump(mk(Op::JEQ32_IMM, RT, 0, 0, 0), f);
        } else {
          jump(cmp(pos), t);
          if (ci.jf != 0) jump(mk(Op::JA), f);
        }
        break;
      }
      case kRet:
        if (rval(c) == kK) emit(mk(Op::MOV32_IMM, RA, 0, 0, static_cast<int32_t>(k)));
        else if (rval(c) == kX) emit(mk(Op::MOV32_REG, RA, RX));
        emit(mk(Op::EXIT));
        break;
      case kMisc:
        if (miscop(c) == kTax) emit(mk(Op::MOV32_REG, RX, RA));
        else emit(mk(Op::MOV32_REG, RA, RX));
        break;
    }
    return {};
  }

  Result<TranslatedFilter> run() {
    analyse();
    emit(mk(Op::MOV64_REG, RCTX, 1));
    // Classic BPF starts with A = X = 0; scratch memory read before it is written reads 0 (the kernel's
    // checker refuses such reads, libpcap's interpreter leaves M[] uninitialised): set what is read first.
    uint32_t entry = live_in[0];
    if (entry & LA) emit(mk(Op::MOV32_IMM, RA, 0, 0, 0));
    if (entry & LX) emit(mk(Op::MOV32_IMM, RX, 0, 0, 0));
    for (uint32_t m = 0; m < kCbpfMemWords; ++m)
      if (entry & LM(m)) emit(mk(Op::STW, RFP, 0, mem_off(m), 0));
    start.assign(in.size(), 0);
    for (size_t pc = 0; pc < in.size(); ++pc) {
      start[pc] = out.size();
      if (auto st = one(pc); !st) return st.error();
    }
    size_t ret0 = SIZE_MAX;
    bool need_ret0 = false;
    for (auto& f : fixes) need_ret0 |= f.target == kRet0;
    if (need_ret0) {
      ret0 = out.size();
      emit(mk(Op::MOV32_IMM, RA, 0, 0, 0));
      emit(mk(Op::EXIT));
    }
    for (auto& f : fixes) {
      size_t target = f.target == kRet0 ? ret0 : start[f.target];
      int64_t off = static_cast<int64_t>(target) - static_cast<int64_t>(f.at) - 1;
      if (off < INT16_MIN || off > INT16_MAX)
        return make_error(ErrorCode::Structure, "cbpf: translated program too large for 16-bit jump offsets");
      out[f.at].off = static_cast<int16_t>(off);
    }
    TranslatedFilter tf;
    tf.program.name = "cbpf";
    tf.program.insns = std::move(out);
    tf.needs = needs;
    return tf;
  }
};

}  // namespace

namespace {
// Classic BPF allows dead code (a `ja` over instructions); eBPF verifiers refuse it. Jumps only go
// forward, so one pass marks what is reachable; the rest is dropped and offsets recomputed (they only
// shrink, so jt/jf still fit in 8 bits). `orig` maps each kept instruction to its original index.
std::vector<CbpfInsn> drop_unreachable(std::span<const CbpfInsn> prog, std::vector<size_t>& orig) {
  const size_t n = prog.size();
  std::vector<bool> live(n, false);
  live[0] = true;
  auto target = [&](size_t pc, uint32_t off) { return pc + 1 + off; };
  for (size_t pc = 0; pc < n; ++pc) {
    if (!live[pc]) continue;
    const CbpfInsn& in = prog[pc];
    const uint16_t cls = in.code & 0x07;
    if (cls == kRet) continue;
    if (cls == kJmp) {
      if ((in.code & 0xf0) == 0x00) {  // ja
        live[target(pc, in.k)] = true;
      } else {
        live[target(pc, in.jt)] = true;
        live[target(pc, in.jf)] = true;
      }
      continue;
    }
    if (pc + 1 < n) live[pc + 1] = true;
  }
  std::vector<size_t> renum(n + 1, 0);
  size_t kept = 0;
  for (size_t pc = 0; pc < n; ++pc) {
    renum[pc] = kept;
    if (live[pc]) ++kept;
  }
  renum[n] = kept;
  std::vector<CbpfInsn> out;
  out.reserve(kept);
  orig.clear();
  for (size_t pc = 0; pc < n; ++pc) {
    if (!live[pc]) continue;
    CbpfInsn in = prog[pc];
    if ((in.code & 0x07) == kJmp) {
      const size_t me = renum[pc];
      if ((in.code & 0xf0) == 0x00) {
        in.k = static_cast<uint32_t>(renum[target(pc, in.k)] - me - 1);
      } else {
        in.jt = static_cast<uint8_t>(renum[target(pc, in.jt)] - me - 1);
        in.jf = static_cast<uint8_t>(renum[target(pc, in.jf)] - me - 1);
      }
    }
    out.push_back(in);
    orig.push_back(pc);
  }
  return out;
}
}  // namespace

// The translation can itself leave code no path reaches (a load whose offset is always out of
// bounds becomes an unconditional `return 0`); eBPF verifiers refuse dead code, so it is dropped and
// jump offsets recomputed (they only shrink). Translated code has no calls; lddw keeps its two slots.
static void drop_unreachable_ebpf(std::vector<Insn>& insns) {
  const int64_t n = static_cast<int64_t>(insns.size());
  std::vector<uint8_t> live(static_cast<size_t>(n), 0);
  std::vector<int64_t> work = {0};
  while (!work.empty()) {
    int64_t pc = work.back();
    work.pop_back();
    if (pc < 0 || pc >= n || live[static_cast<size_t>(pc)]) continue;
    live[static_cast<size_t>(pc)] = 1;
    const Insn& in = insns[static_cast<size_t>(pc)];
    const OpKind k = in.info().kind;
    if (k == OpKind::Exit) continue;
    if (k == OpKind::LoadImm64) {
      if (pc + 1 < n) live[static_cast<size_t>(pc + 1)] = 1;
      work.push_back(pc + 2);
      continue;
    }
    if (k == OpKind::Jump || k == OpKind::CondJump) {
      work.push_back(jump_target(in, pc));
      if (k == OpKind::Jump) continue;
    }
    work.push_back(pc + 1);
  }
  std::vector<int64_t> renum(static_cast<size_t>(n) + 1, 0);
  int64_t kept = 0;
  for (int64_t pc = 0; pc < n; ++pc) {
    renum[static_cast<size_t>(pc)] = kept;
    if (live[static_cast<size_t>(pc)]) ++kept;
  }
  renum[static_cast<size_t>(n)] = kept;
  if (kept == n) return;
  std::vector<Insn> out;
  out.reserve(static_cast<size_t>(kept));
  for (int64_t pc = 0; pc < n; ++pc) {
    if (!live[static_cast<size_t>(pc)]) continue;
    Insn in = insns[static_cast<size_t>(pc)];
    const OpKind k = in.info().kind;
    if (k == OpKind::Jump || k == OpKind::CondJump) {
      int64_t d = renum[static_cast<size_t>(jump_target(in, pc))] - renum[static_cast<size_t>(pc)] - 1;
      if (in.op == Op::JA32) in.imm = d;
      else in.off = static_cast<int16_t>(d);
    }
    out.push_back(in);
  }
  insns = std::move(out);
}

Result<TranslatedFilter> cbpf_translate(std::span<const CbpfInsn> prog, const CbpfTranslateOptions& options) {
  if (auto st = cbpf_check(prog); !st) return st.error();
  std::vector<size_t> orig;
  std::vector<CbpfInsn> live = drop_unreachable(prog, orig);
  Translator t{live, options};
  t.orig = &orig;
  auto r = t.run();
  if (r) drop_unreachable_ebpf(r->program.insns);
  return r;
}

}  // namespace bpfvm
