// bpfvm: the instruction set. Raw encoding, the typed IR every stage after decoding works on,
// and the facts of the one opcode table (include/bpfvm/opcodes.def).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "bpfvm/result.hpp"

namespace bpfvm {

// One 8-byte instruction slot as it is stored in a program (little-endian host).
struct RawInsn {
  uint8_t code = 0;
  uint8_t dst : 4 = 0;
  uint8_t src : 4 = 0;
  int16_t off = 0;
  int32_t imm = 0;
};
static_assert(sizeof(RawInsn) == 8);

enum class Op : uint8_t {
#define BPFVM_OP(NAME, CODE, SEL, SELVAL, FIELDS, VERSION, MNEMONIC) NAME,
#include "bpfvm/opcodes.def"
  LDDW_HI,  // second slot of a 64-bit immediate load; never executed
  COUNT_
};
constexpr size_t kOpCount = static_cast<size_t>(Op::COUNT_);

// Which field distinguishes rows sharing one opcode byte.
enum class Sel : uint8_t { NONE, OFF, IMM, SRC };

// Operand fields an instruction uses.
enum Field : uint8_t { F_DST = 1, F_SRC = 2, F_OFF = 4, F_IMM = 8 };

// Broad kind, for printers, the verifier and engines.
enum class OpKind : uint8_t {
  Alu,        // dst = dst op src/imm (incl. mov, neg, movsx, byte swaps)
  Jump,       // ja / ja32
  CondJump,   // if (cond) goto
  Call,       // helper / local / kfunc call, callx
  Exit,
  LoadImm64,  // lddw family
  LoadPacket, // legacy ld_abs / ld_ind
  Load,       // ldx
  Store,      // st (immediate)
  StoreReg,   // stx
  Atomic,
  Pseudo,     // LDDW_HI
};

struct OpInfo {
  Op op;
  uint8_t code;
  Sel sel;
  int32_t selval;
  uint8_t fields;
  uint8_t version;
  std::string_view mnemonic;  // bpf_conformance syntax
  OpKind kind;
  bool alu64;         // 64-bit ALU or JMP (vs 32-bit)
  bool uses_reg_src;  // source operand is a register (vs immediate)
  uint8_t size;       // access size in bytes for memory ops (0 otherwise)
};

const OpInfo& op_info(Op op);
// Operation mnemonic without size suffix or kind, for printers: "add", "jeq", "ldx", ...
std::string_view op_name(Op op);

// The IR: one entry per 8-byte slot, so indices and jump offsets are those of the bytecode.
// `imm` is the sign-extended 32-bit immediate, or for the lddw family the full 64-bit value
// (low 32 bits from the first slot, high 32 from the second).
struct Insn {
  Op op = Op::EXIT;
  uint8_t dst = 0;
  uint8_t src = 0;
  int16_t off = 0;
  int64_t imm = 0;

  const OpInfo& info() const { return op_info(op); }
  bool is_wide() const { return info().kind == OpKind::LoadImm64; }
};
static_assert(sizeof(Insn) == 16);

constexpr int kMaxIsaVersion = 4;
constexpr int kNumRegs = 11;       // r0..r10
constexpr int kStackSize = 512;    // bytes per frame
constexpr int kMaxCallDepth = 8;   // frames, including the main one

// Decodes raw slots into the IR, checking each instruction against the opcode table
// (unknown opcode, reserved fields set, bad register, write to r10, truncated lddw).
Result<std::vector<Insn>> decode(std::span<const RawInsn> raw, int isa_version = kMaxIsaVersion);
Result<std::vector<Insn>> decode_bytes(std::span<const uint8_t> bytes, int isa_version = kMaxIsaVersion);

// Decodes what decodes, for listings that mark a bad slot and go on (llvm-objdump's `<unknown>`):
// one entry per instruction, in order, covering every slot. `slots` is 2 for a whole lddw; an entry
// with `ok` false is a slot that does not decode (or an lddw whose second slot is bad or missing),
// with the reason in `error` (error.pc = the slot at fault).
struct DecodedSlot {
  size_t pc = 0;
  size_t slots = 1;
  bool ok = false;
  Insn insn;         // ok: the instruction (an lddw's first half; its second is implied)
  Diagnostic error;  // !ok: why it does not decode
};
std::vector<DecodedSlot> decode_each(std::span<const RawInsn> raw, int isa_version = kMaxIsaVersion);

// The fields of one instruction, as decode() checks them: reserved fields (neither used by the op nor
// its selector) are 0, registers exist, r10 is not written. IR built directly (not decoded) is
// checked by check_structure() and the verifier.
Status check_fields(const Insn& insn, int64_t pc);

// Whole-program checks: check_fields() of every instruction, non-empty, jumps and local calls land on instruction boundaries inside
// the program (not in the second half of lddw), last instruction is exit or an unconditional jump.
Status check_structure(std::span<const Insn> insns);

// Encodes IR back to slots (lddw produces two).
std::vector<RawInsn> encode(std::span<const Insn> insns);
void encode_one(const Insn& insn, std::vector<RawInsn>& out);

// Target slot of a jump (ja, ja32, conditional) or local call at index `pc`.
int64_t jump_target(const Insn& insn, int64_t pc);

std::vector<uint8_t> to_bytes(std::span<const RawInsn> raw);

}  // namespace bpfvm
