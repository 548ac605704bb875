// Execution semantics on hand-built programs, run by every engine: the interpreter unchecked and
// checked, the JIT and the hardened JIT (InterpAndJit, parameterized; the conformance suite and the
// differential tester cover the rest). Interpreter-only features (budget, checked-mode faults) are the
// Interp tests at the end; JIT-only facts are in jit_test.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "bpfvm/insn.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;

namespace {

Insn I(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  return Insn{op, dst, src, off, imm};
}

struct EngineParam {
  const char* name;
  EngineKind engine;
  bool checked;
  bool harden;
};

ExecOptions options_of(const EngineParam& p) {
  ExecOptions o;
  o.engine = p.engine;
  o.checked = p.checked;
  o.jit_harden = p.harden;
  return o;
}

class InterpAndJit : public ::testing::TestWithParam<EngineParam> {
 protected:
  ExecOptions opts() const { return options_of(GetParam()); }
  bool is_jit() const { return GetParam().engine == EngineKind::Jit; }

  Result<uint64_t> run(std::vector<Insn> insns, std::vector<uint8_t>* mem = nullptr,
                       const HelperTable& helpers = HelperTable::conformance()) const {
    auto exe = Executable::create(Program{"t", std::move(insns)}, helpers, opts());
    if (!exe) return exe.error();
    if (mem) return (*exe)->run_on_memory(mem->data(), mem->size());
    return (*exe)->run_on_memory(nullptr, 0);
  }
  uint64_t value(std::vector<Insn> insns, std::vector<uint8_t>* mem = nullptr) const {
    auto r = run(std::move(insns), mem);
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    return r ? *r : 0xdeadbeefdeadbeefull;
  }
};

}  // namespace

TEST_P(InterpAndJit, ArithmeticAndExit) {
  EXPECT_EQ(value({I(Op::MOV64_IMM, 0, 0, 0, 40), I(Op::ADD64_IMM, 0, 0, 0, 2), I(Op::EXIT)}), 42u);
}

TEST_P(InterpAndJit, DivisionEdgeCases) {
  // 64-bit div by zero -> 0; mod by zero -> dividend; INT_MIN s/ -1 -> INT_MIN; INT_MIN s% -1 -> 0.
  EXPECT_EQ(value({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}), 0u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}), 7u);
  EXPECT_EQ(value({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SDIV64_IMM, 0, 0, 0, -1), I(Op::EXIT)}),
            static_cast<uint64_t>(INT64_MIN));
  EXPECT_EQ(value({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SMOD64_IMM, 0, 0, 0, -1), I(Op::EXIT)}), 0u);
  // the same through a register divisor (the JIT's run-time -1 test)
  EXPECT_EQ(value({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::MOV64_IMM, 3, 0, 0, -1),
                   I(Op::SDIV64_REG, 0, 3), I(Op::EXIT)}),
            static_cast<uint64_t>(INT64_MIN));
  EXPECT_EQ(value({I(Op::MOV32_IMM, 0, 0, 0, INT32_MIN), I(Op::MOV64_IMM, 3, 0, 0, -1), I(Op::SDIV32_REG, 0, 3),
                   I(Op::EXIT)}),
            0x80000000u);
  EXPECT_EQ(value({I(Op::MOV32_IMM, 0, 0, 0, INT32_MIN), I(Op::MOV64_IMM, 3, 0, 0, -1), I(Op::SMOD32_REG, 0, 3),
                   I(Op::EXIT)}),
            0u);
  // 32-bit mod by zero zero-extends the dividend.
  EXPECT_EQ(value({I(Op::LDDW, 0, 0, 0, -1), I(Op::LDDW_HI), I(Op::MOV64_IMM, 1), I(Op::MOD32_REG, 0, 1), I(Op::EXIT)}),
            0xffffffffu);
  // division result into r3 (rdx in the JIT) and a divisor in r0 (rax): registers are kept straight
  EXPECT_EQ(value({I(Op::MOV64_IMM, 3, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOD64_REG, 3, 0),
                   I(Op::MUL64_IMM, 0, 0, 0, 1000), I(Op::ADD64_REG, 0, 3), I(Op::EXIT)}),
            7002u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 3, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::DIV64_REG, 0, 3),
                   I(Op::MUL64_IMM, 3, 0, 0, 1000), I(Op::ADD64_REG, 0, 3), I(Op::EXIT)}),
            100000u);
}

// 64-bit unsigned division of values known to fit in 32 bits (the JIT uses a 32-bit div there): the
// same results as the 64-bit operation, including a zero divisor, 0xffffffff operands, BE64 (not a
// zero-extending op although its encoding is ALU32) and a jump target that brings a 64-bit value.
TEST_P(InterpAndJit, NarrowedDivisionOfZeroExtendedValues) {
  auto ld = [](uint8_t r, uint64_t v) { return std::vector<Insn>{I(Op::LDDW, r, 0, 0, static_cast<int64_t>(v)), I(Op::LDDW_HI)}; };
  auto prog = [](std::vector<std::vector<Insn>> parts) {
    std::vector<Insn> p;
    for (auto& x : parts) p.insert(p.end(), x.begin(), x.end());
    return p;
  };
  // r0 = 0xffffffff (w0 = -1), r1 = 7 (w1 = 7): 64-bit div and mod
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, -1), I(Op::MOV32_IMM, 1, 0, 0, 7), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}})),
            0xffffffffull / 7);
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, -1), I(Op::MOV32_IMM, 1, 0, 0, 7), I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}})),
            0xffffffffull % 7);
  // zero divisor: quotient 0, remainder the dividend
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, 1234), I(Op::MOV32_IMM, 1, 0, 0, 0), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}})), 0u);
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, 1234), I(Op::MOV32_IMM, 1, 0, 0, 0), I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}})), 1234u);
  // immediate divisor; clang's zero-extension idiom (<<= 32, >>= 32) on a 64-bit value
  EXPECT_EQ(value(prog({ld(0, 0x123456789abcdefull), {I(Op::LSH64_IMM, 0, 0, 0, 32), I(Op::RSH64_IMM, 0, 0, 0, 32),
                                                       I(Op::MOD64_IMM, 0, 0, 0, 1000), I(Op::EXIT)}})),
            0x89abcdefull % 1000);
  // BE64 of a 32-bit value is a 64-bit value: the division must stay 64-bit
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, 0x12345678), I(Op::BE64, 0, 0, 0, 64), I(Op::MOV32_IMM, 1, 0, 0, 3),
                         I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}})),
            0x7856341200000000ull / 3);
  // r0 is zero-extended on the fall-through path only; the jump brings 2^40 + 9 to the division
  EXPECT_EQ(value(prog({ld(0, (1ull << 40) + 9), {I(Op::MOV32_IMM, 1, 0, 0, 10), I(Op::JA, 0, 0, 1),
                                                   I(Op::MOV32_REG, 0, 0), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}})),
            ((1ull << 40) + 9) / 10);
  // a 64-bit divisor is not narrowed
  EXPECT_EQ(value(prog({{I(Op::MOV32_IMM, 0, 0, 0, -1)}, ld(1, 1ull << 33), {I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}})),
            0xffffffffu);
}

TEST_P(InterpAndJit, LocalCallPreservesCalleeSaved) {
  // r6 = 6; call f; r0 += r6; exit.   f: r6 = 100; r0 = 1; exit
  EXPECT_EQ(value({I(Op::MOV64_IMM, 6, 0, 0, 6), I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::ADD64_REG, 0, 6), I(Op::EXIT),
                   I(Op::MOV64_IMM, 6, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 1), I(Op::EXIT)}),
            7u);
}

TEST_P(InterpAndJit, CallDepthLimit) {
  // f calls itself forever: stops at 8 frames, the error names the call.
  auto r = run({I(Op::CALL_LOCAL, 0, 1, 0, -1), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::CallDepth);
  EXPECT_EQ(r.error().pc, 0);
}

TEST_P(InterpAndJit, SevenNestedCallsAreAllowed) {
  // f(n) = n == 0 ? 0 : f(n-1) + 1, called from main: 1 + 7 frames would be too many, 1 + 6 is fine.
  auto prog = [](int n) {
    return std::vector<Insn>{I(Op::MOV64_IMM, 1, 0, 0, n), I(Op::CALL_LOCAL, 0, 1, 0, 1), I(Op::EXIT),
                             I(Op::MOV64_IMM, 0, 0, 0, 0), I(Op::JEQ_IMM, 1, 0, 3, 0), I(Op::SUB64_IMM, 1, 0, 0, 1),
                             I(Op::CALL_LOCAL, 0, 1, 0, -4), I(Op::ADD64_IMM, 0, 0, 0, 1), I(Op::EXIT)};
  };
  EXPECT_EQ(value(prog(5)), 5u);
  EXPECT_EQ(value(prog(6)), 6u);
  auto r = run(prog(7));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::CallDepth);
}

TEST_P(InterpAndJit, CalleeSeesZeroedRegisters) {
  // main never touches r7; the function returns it: 0 (the interpreter starts every register at 0).
  EXPECT_EQ(value({I(Op::CALL_LOCAL, 0, 1, 0, 1), I(Op::EXIT), I(Op::MOV64_REG, 0, 7), I(Op::EXIT)}), 0u);
}

TEST_P(InterpAndJit, CallxUnknownHelperIsRuntimeError) {
  auto r = run({I(Op::MOV64_IMM, 2, 0, 0, 99), I(Op::CALLX, 2), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Runtime);
  EXPECT_NE(r.error().message.find("99"), std::string::npos);
  EXPECT_EQ(r.error().pc, 1);
  // a known id works: helper 5 returns r1
  EXPECT_EQ(value({I(Op::MOV64_IMM, 2, 0, 0, 5), I(Op::MOV64_IMM, 1, 0, 0, 33), I(Op::CALLX, 2), I(Op::EXIT)}), 33u);
}

TEST_P(InterpAndJit, UnknownHelperRefusedAtLink) {
  auto r = run({I(Op::CALL_HELPER, 0, 0, 0, 77), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Link);
  EXPECT_EQ(r.error().pc, 0);
}

TEST_P(InterpAndJit, LegacyPacketLoads) {
  std::vector<uint8_t> pkt = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
  // r6 = ctx; r0 = ntohs(pkt[2..4]); exit
  EXPECT_EQ(value({I(Op::MOV64_REG, 6, 1), I(Op::LDABS_H, 0, 0, 0, 2), I(Op::EXIT)}, &pkt), 0x2233u);
  EXPECT_EQ(value({I(Op::LDABS_W, 0, 0, 0, 2), I(Op::EXIT)}, &pkt), 0x22334455u);
  // out of bounds: the program ends with 0
  EXPECT_EQ(value({I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDABS_W, 0, 0, 0, 4), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::EXIT)},
                  &pkt),
            0u);
  // ld_ind: r7 = 1; r0 = pkt[r7 + 3]
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, 1), I(Op::LDIND_B, 0, 7, 0, 3), I(Op::EXIT)}, &pkt), 0x44u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, 2), I(Op::LDIND_W, 0, 7, 0, 0), I(Op::EXIT)}, &pkt), 0x22334455u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::MOV64_IMM, 7, 0, 0, 3), I(Op::LDIND_W, 0, 7, 0, 0), I(Op::EXIT)},
                  &pkt),
            0u);
  // negative index, SKF_LL_OFF (absolute and through a register), SKF_NET_OFF (not provided: 0), an
  // index that wraps to a negative int32
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, -1), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDIND_B, 0, 7, 0, 0), I(Op::EXIT)},
                  &pkt),
            0u);
  EXPECT_EQ(value({I(Op::LDABS_B, 0, 0, 0, -0x200000 + 5), I(Op::EXIT)}, &pkt), 0x55u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, -0x200000), I(Op::LDIND_H, 0, 7, 0, 4), I(Op::EXIT)}, &pkt), 0x4455u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, -0x200000), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDIND_H, 0, 7, 0, 5),
                   I(Op::EXIT)},
                  &pkt),
            0u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, -0x100000), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDIND_B, 0, 7, 0, 1),
                   I(Op::EXIT)},
                  &pkt),
            0u);
  EXPECT_EQ(value({I(Op::MOV64_IMM, 7, 0, 0, 0x7fffffff), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDIND_B, 0, 7, 0, 3),
                   I(Op::EXIT)},
                  &pkt),
            0u);
  // an out-of-bounds load inside a local call ends the whole program
  EXPECT_EQ(value({I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::EXIT), I(Op::LDABS_B, 0, 0, 0, 100),
                   I(Op::EXIT)},
                  &pkt),
            0u);
}

TEST_P(InterpAndJit, PacketLengthProvedOnOnePathOnly) {
  // 0: r0 = pkt[0]; 1: if r0 == 0 goto 3; 2: r0 = pkt[5]; 3: r0 = ntohs(pkt[4..6]); 4: exit
  // Path 0->1->3 has only proved 1 byte: the JIT may not drop the check of insn 3 (it does drop it
  // after insn 2, which proved 6).
  std::vector<Insn> p = {I(Op::LDABS_B, 0, 0, 0, 0), I(Op::JEQ_IMM, 0, 0, 1, 0), I(Op::LDABS_B, 0, 0, 0, 5),
                         I(Op::LDABS_H, 0, 0, 0, 4), I(Op::EXIT)};
  std::vector<uint8_t> six = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
  EXPECT_EQ(value(p, &six), 0x4455u);
  std::vector<uint8_t> five = {0x00, 0x11, 0x22, 0x33, 0x44};
  EXPECT_EQ(value(p, &five), 0u);  // via 0 -> 1 -> 3: out of bounds
  five[0] = 1;
  EXPECT_EQ(value(p, &five), 0u);  // via 2: out of bounds
  std::vector<uint8_t> six1 = {0x01, 0x11, 0x22, 0x33, 0x44, 0x55};
  EXPECT_EQ(value(p, &six1), 0x4455u);
  // a backward jump to a load: every iteration checks (the loop reads further each time)
  // r7 = 0; loop: r0 = pkt[r7 + 0] (ld_ind); r7 += 2; if r7 < 8 goto loop; exit -- 6 bytes: out of bounds at 6
  std::vector<Insn> loop = {I(Op::MOV64_IMM, 7, 0, 0, 0), I(Op::LDIND_B, 0, 7, 0, 0), I(Op::ADD64_IMM, 7, 0, 0, 2),
                            I(Op::JLT_IMM, 7, 0, -3, 8), I(Op::EXIT)};
  EXPECT_EQ(value(loop, &six), 0u);
  std::vector<uint8_t> eight = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(value(loop, &eight), 6u);
}

TEST_P(InterpAndJit, NoPacketMeansEveryLegacyLoadIsOutOfBounds) {
  auto exe = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDABS_B, 0, 0, 0, 0), I(Op::EXIT)}},
                                HelperTable::conformance(), opts());
  ASSERT_TRUE(exe.ok());
  RunArgs args;
  args.packet = nullptr;
  args.packet_len = 100;  // ignored without a packet
  auto r = (*exe)->run(args);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 0u);
}

TEST_P(InterpAndJit, DeadWritesDoNotChangeResults) {
  // r6 is written and never read (the JIT drops the write); r0 is read before written in a branch.
  std::vector<uint8_t> mem(8, 3);
  EXPECT_EQ(value({I(Op::MOV64_REG, 6, 1), I(Op::MOV64_IMM, 8, 0, 0, 1), I(Op::JEQ_IMM, 8, 0, 1, 1),
                   I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::ADD64_IMM, 0, 0, 0, 2), I(Op::EXIT)},
                  &mem),
            2u);
}

TEST_P(InterpAndJit, ZeroExtensionIdioms) {
  // The JIT folds `r <<= 32; r >>= 32` (and a `r = src` in front) into one 32-bit move, except where
  // a jump lands between them. r1 = the memory pointer (high bits set on x86-64 user addresses too).
  std::vector<uint8_t> mem(8, 0);
  const uint64_t big = 0xfedcba9876543210ull;
  auto lddw = [](uint8_t dst, uint64_t v) {
    return std::vector<Insn>{I(Op::LDDW, dst, 0, 0, static_cast<int64_t>(v)), I(Op::LDDW_HI)};
  };
  std::vector<Insn> a = lddw(2, big);
  for (Insn in : {I(Op::LSH64_IMM, 2, 0, 0, 32), I(Op::RSH64_IMM, 2, 0, 0, 32), I(Op::MOV64_REG, 0, 2), I(Op::EXIT)})
    a.push_back(in);
  EXPECT_EQ(value(a, &mem), 0x76543210u);
  std::vector<Insn> b = lddw(3, big);
  for (Insn in : {I(Op::MOV64_REG, 0, 3), I(Op::LSH64_IMM, 0, 0, 0, 32), I(Op::RSH64_IMM, 0, 0, 0, 32),
                  I(Op::ADD64_REG, 0, 3), I(Op::EXIT)})
    b.push_back(in);
  EXPECT_EQ(value(b, &mem), big + 0x76543210u);
  // A jump to the right shift: taken, the value is shifted right only (not zero-extended).
  std::vector<Insn> c = lddw(0, big);
  for (Insn in : {I(Op::JA, 0, 0, 1), I(Op::LSH64_IMM, 0, 0, 0, 32), I(Op::RSH64_IMM, 0, 0, 0, 32), I(Op::EXIT)})
    c.push_back(in);
  EXPECT_EQ(value(c, &mem), big >> 32);
  // Not the idiom: other shift amounts, other registers.
  std::vector<Insn> d = lddw(0, big);
  for (Insn in : {I(Op::MOV64_REG, 4, 0), I(Op::LSH64_IMM, 4, 0, 0, 32), I(Op::RSH64_IMM, 0, 0, 0, 32),
                  I(Op::LSH64_IMM, 0, 0, 0, 31), I(Op::RSH64_IMM, 0, 0, 0, 32), I(Op::ADD64_REG, 0, 4), I(Op::EXIT)})
    d.push_back(in);
  EXPECT_EQ(value(d, &mem), (((big >> 32) << 31) >> 32) + (big << 32));
}

TEST_P(InterpAndJit, MoveThenAddIdioms) {
  // `dst = src; dst += imm / src2` (one lea in the JIT): values with carries across 32 bits, the stack
  // pointer as source, src2 == src, and a jump landing on the add (no fusion there).
  std::vector<uint8_t> mem(8, 0);
  std::vector<Insn> a = {I(Op::LDDW, 3, 0, 0, static_cast<int64_t>(0x00000000fffffff0ull)), I(Op::LDDW_HI),
                         I(Op::MOV64_REG, 4, 3), I(Op::ADD64_IMM, 4, 0, 0, 0x20), I(Op::MOV64_REG, 0, 3),
                         I(Op::ADD64_REG, 0, 4), I(Op::MOV64_REG, 5, 4), I(Op::ADD64_REG, 5, 4),
                         I(Op::ADD64_REG, 0, 5), I(Op::MOV64_REG, 2, 10), I(Op::ADD64_IMM, 2, 0, 0, -8),
                         I(Op::STXDW, 2, 3, 0), I(Op::LDXDW, 1, 10, -8), I(Op::ADD64_REG, 0, 1), I(Op::EXIT)};
  const uint64_t x = 0xfffffff0ull, y = x + 0x20;
  EXPECT_EQ(value(a, &mem), x + y + 2 * y + x);
  std::vector<Insn> b = {I(Op::MOV64_IMM, 3, 0, 0, -5), I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::JA, 0, 0, 1),
                         I(Op::MOV64_REG, 0, 3), I(Op::ADD64_IMM, 0, 0, 0, 100), I(Op::EXIT)};
  EXPECT_EQ(value(b, &mem), 107u);  // the jump skips the move: 7 + 100
}

TEST_P(InterpAndJit, LongForwardAndBackwardJumps) {
  // Jumps over more code than a rel8 displacement reaches, both ways (and short ones in between).
  // r0 = 0; if r1 != 0 goto +100 (skipping 100 x r0 += 1); r2 = 3;
  // loop: 50 x r0 += 2; r2 -= 1; if r2 != 0 goto loop; exit
  std::vector<Insn> p = {I(Op::MOV64_IMM, 0), I(Op::JNE_IMM, 1, 0, 100, 0)};
  for (int i = 0; i < 100; ++i) p.push_back(I(Op::ADD64_IMM, 0, 0, 0, 1));
  p.push_back(I(Op::MOV64_IMM, 2, 0, 0, 3));
  const int loop = static_cast<int>(p.size());
  for (int i = 0; i < 50; ++i) p.push_back(I(Op::ADD64_IMM, 0, 0, 0, 2));
  p.push_back(I(Op::SUB64_IMM, 2, 0, 0, 1));
  p.push_back(I(Op::JNE_IMM, 2, 0, static_cast<int16_t>(loop - static_cast<int>(p.size()) - 1), 0));
  p.push_back(I(Op::EXIT));
  std::vector<uint8_t> mem(4, 0);
  EXPECT_EQ(value(p, &mem), 300u);       // r1 = mem != 0: the 100 additions are skipped
  EXPECT_EQ(value(p, nullptr), 400u);    // r1 = 0
}

namespace {
// Branch shapes the JIT lays out differently from index order (jit.md, "Branch layout"): a
// conditional jump over one exit, over one unconditional jump, over a block ending in exit (placed out
// of line, with a jump into it from further down), chains of unconditional jumps and jumps to an exit.
// mem = {a, b}.
std::vector<Insn> branch_layout_program() {
  return {I(Op::MOV64_IMM, 0, 0, 0, 1),   //  0: r0 = 1
          I(Op::LDXB, 3, 1, 0),           //  1: r3 = a
          I(Op::LDXB, 4, 1, 1),           //  2: r4 = b
          I(Op::JEQ_IMM, 3, 0, 10, 1),    //  3: if a == 1 goto 14
          I(Op::JNE_IMM, 3, 0, 1, 2),     //  4: if a != 2 goto 6 (over one exit)
          I(Op::EXIT),                    //  5:   a == 2: 1
          I(Op::JNE_IMM, 3, 0, 2, 3),     //  6: if a != 3 goto 9 (over 7-8)
          I(Op::MOV64_IMM, 0, 0, 0, 30),  //  7:   r0 = 30 (also reached from 15)
          I(Op::EXIT),                    //  8:   exit
          I(Op::JEQ_IMM, 3, 0, 6, 4),     //  9: if a == 4 goto 16
          I(Op::JEQ_IMM, 4, 0, 1, 0),     // 10: if b == 0 goto 12 (over one ja)
          I(Op::JA, 0, 0, 6),             // 11:   goto 18
          I(Op::MOV64_IMM, 0, 0, 0, 50),  // 12: r0 = 50
          I(Op::EXIT),                    // 13: exit (reached from 17 and 19 too)
          I(Op::JA, 0, 0, 0),             // 14: goto 15
          I(Op::JA, 0, 0, -9),            // 15: goto 7
          I(Op::MOV64_REG, 0, 4),         // 16: r0 = b
          I(Op::JA, 0, 0, -5),            // 17: goto 13
          I(Op::ADD64_IMM, 0, 0, 0, 100), // 18: r0 += 100
          I(Op::JEQ_IMM, 4, 0, -7, 9),    // 19: if b == 9 goto 13
          I(Op::ADD64_IMM, 0, 0, 0, 1000),// 20: r0 += 1000
          I(Op::EXIT)};                   // 21: exit
}
}  // namespace

TEST_P(InterpAndJit, BranchLayoutKeepsSemantics) {
  const struct {
    uint8_t a, b;
    uint64_t want;
  } cases[] = {{1, 0, 30}, {2, 0, 1}, {3, 0, 30}, {4, 5, 5}, {5, 0, 50}, {5, 9, 101}, {5, 7, 1101}};
  // main: the program itself; then the same body as a called function (exits are returns there, so
  // the one-exit case is an out-of-line block too): r6 = r1; call f; r0 += 7; exit.
  std::vector<Insn> as_fn = {I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::ADD64_IMM, 0, 0, 0, 7), I(Op::EXIT)};
  for (const Insn& in : branch_layout_program()) as_fn.push_back(in);
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "a=" << int(c.a) << " b=" << int(c.b));
    std::vector<uint8_t> mem = {c.a, c.b};
    EXPECT_EQ(value(branch_layout_program(), &mem), c.want);
    EXPECT_EQ(value(as_fn, &mem), c.want + 7);
  }
}

namespace {
const Executable* g_tail_target = nullptr;
uint64_t fake_tail_call(uint64_t, uint64_t, uint64_t index, uint64_t, uint64_t) {
  RunContext* rc = current_run();
  if (index != 1 || rc->tail_calls >= kMaxTailCalls) return 0;
  ++rc->tail_calls;
  return reinterpret_cast<uint64_t>(g_tail_target);
}
uint64_t identity(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return a; }
}  // namespace

TEST_P(InterpAndJit, TailCallRunsTargetAndNeverReturns) {
  HelperTable helpers;
  helpers.add(12, "tail_call", &fake_tail_call, true);
  helpers.add(5, "identity", &identity);
  auto run_h = [&](std::vector<Insn> p) {
    auto exe = Executable::create(Program{"t", std::move(p)}, helpers, opts());
    if (!exe) return Result<uint64_t>(exe.error());
    return (*exe)->run(RunArgs{});
  };
  // target: r0 = r1 + 70 (r1 is the context the caller passed)
  auto target = Executable::create(Program{"target", {I(Op::MOV64_REG, 0, 1), I(Op::ADD64_IMM, 0, 0, 0, 70), I(Op::EXIT)}},
                                   helpers, opts());
  ASSERT_TRUE(target.ok());
  g_tail_target = target->get();
  // r1 = 7; r3 = 1; call tail_call; r0 = 5; exit   -> 77
  auto r = run_h({I(Op::MOV64_IMM, 1, 0, 0, 7), I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::CALL_HELPER, 0, 0, 0, 12),
                  I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 77u);
  // index 2: falls through, the helper call gives -ENOENT and the program goes on
  auto f = run_h({I(Op::MOV64_IMM, 3, 0, 0, 2), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::EXIT)});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, static_cast<uint64_t>(-2));
  auto f5 = run_h({I(Op::MOV64_IMM, 3, 0, 0, 2), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT)});
  ASSERT_TRUE(f5.ok());
  EXPECT_EQ(*f5, 5u);
  // through callx, from inside a local call
  auto x = run_h({I(Op::MOV64_IMM, 1, 0, 0, 8), I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT),
                  I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::MOV64_IMM, 4, 0, 0, 12), I(Op::CALLX, 4), I(Op::EXIT)});
  ASSERT_TRUE(x.ok()) << x.error().to_string();
  EXPECT_EQ(*x, 78u);
  // a program tail-calling itself stops after 33 tail calls
  auto self = Executable::create(Program{"self", {I(Op::MOV64_REG, 6, 1), I(Op::ADD64_IMM, 6, 0, 0, 1),
                                                  I(Op::MOV64_REG, 1, 6), I(Op::MOV64_IMM, 3, 0, 0, 1),
                                                  I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_REG, 0, 6), I(Op::EXIT)}},
                                 helpers, opts());
  ASSERT_TRUE(self.ok());
  g_tail_target = self->get();
  auto res = (*self)->run(RunArgs{});
  ASSERT_TRUE(res.ok()) << res.error().to_string();
  EXPECT_EQ(*res, 34u);
  // a tail call into a program without calls (the JIT enters such programs directly)
  auto plain = Executable::create(Program{"plain", {I(Op::MOV64_REG, 0, 1), I(Op::ADD64_IMM, 0, 0, 0, 1000), I(Op::EXIT)}},
                                  helpers, opts());
  ASSERT_TRUE(plain.ok());
  g_tail_target = plain->get();
  auto p = run_h({I(Op::MOV64_IMM, 1, 0, 0, 3), I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::EXIT)});
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(*p, 1003u);
}

namespace {
// A bpf_loop-like helper: calls the callback (insn index in r2) r1 times with (i, ctx).
uint64_t fake_loop(uint64_t n, uint64_t cb, uint64_t ctx, uint64_t, uint64_t) {
  RunContext* rc = current_run();
  uint64_t i = 0;
  for (; i < n; ++i) {
    auto r = rc->call_function(static_cast<int64_t>(cb), i, ctx, 0, 0, 0);
    if (!r || *r) break;
  }
  return i;
}
}  // namespace

TEST_P(InterpAndJit, HelperCallsBackIntoProgram) {
  HelperTable helpers;
  helpers.add(181, "loop", &fake_loop);
  // *(u64*)(r10-8) = 0; r1 = 5; r2 = &cb; r3 = r10 - 8; call loop; r0 = *(u64*)(r10-8); exit
  // cb: r3 = *(u64*)(r2); r3 += r1; *(u64*)(r2) = r3; r0 = 0; exit
  std::vector<Insn> p = {
      I(Op::STDW, 10, 0, -8, 0),     I(Op::MOV64_IMM, 1, 0, 0, 5), I(Op::LDDW_CODE_ADDR, 2, 4, 0, 6), I(Op::LDDW_HI),
      I(Op::MOV64_REG, 3, 10),       I(Op::ADD64_IMM, 3, 0, 0, -8), I(Op::CALL_HELPER, 0, 0, 0, 181),
      I(Op::LDXDW, 0, 10, -8),       I(Op::EXIT),
      I(Op::LDXDW, 3, 2, 0),         I(Op::ADD64_REG, 3, 1),       I(Op::STXDW, 2, 3, 0),
      I(Op::MOV64_IMM, 0, 0, 0, 0),  I(Op::EXIT)};
  auto r = run(p, nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 0u + 1 + 2 + 3 + 4);
}

namespace {
// Hands out a buffer like a map lookup; records what the run context looked like.
uint8_t g_buffer[16];
bool g_seen_checked = false;
size_t g_seen_regions = 0;
uint64_t hand_out(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  RunContext* rc = current_run();
  rc->allow_region(reinterpret_cast<uint64_t>(g_buffer), sizeof g_buffer, true, "buffer");
  g_seen_checked = rc->checked;
  g_seen_regions = rc->dynamic_regions.size();
  return reinterpret_cast<uint64_t>(g_buffer);
}
}  // namespace

TEST_P(InterpAndJit, HelperMemoryIsRecordedOnlyInCheckedRuns) {
  HelperTable helpers;
  helpers.add(1, "hand_out", &hand_out);
  // r0 = hand_out(); *(u32 *)(r0 + 4) = 7; r0 = *(u32 *)(r0 + 4); exit
  std::memset(g_buffer, 0, sizeof g_buffer);
  g_seen_regions = 99;
  auto r = run({I(Op::CALL_HELPER, 0, 0, 0, 1), I(Op::STW, 0, 0, 4, 7), I(Op::LDXW, 0, 0, 4), I(Op::EXIT)}, nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();  // checked: allowed because recorded
  EXPECT_EQ(*r, 7u);
  EXPECT_EQ(g_seen_checked, GetParam().checked);
  EXPECT_EQ(g_seen_regions, GetParam().checked ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, InterpAndJit,
                         ::testing::Values(EngineParam{"InterpUnchecked", EngineKind::Interpreter, false, false},
                                           EngineParam{"InterpChecked", EngineKind::Interpreter, true, false},
                                           EngineParam{"Jit", EngineKind::Jit, false, false},
                                           EngineParam{"JitHardened", EngineKind::Jit, false, true}),
                         [](const ::testing::TestParamInfo<EngineParam>& info) { return std::string(info.param.name); });

// ---- interpreter only: budget and checked-mode faults --------------------------------------------------

namespace {
Result<uint64_t> run_interp(std::vector<Insn> insns, ExecOptions opts, std::vector<uint8_t>* mem = nullptr) {
  auto exe = Executable::create(Program{"t", std::move(insns)}, HelperTable::conformance(), opts);
  if (!exe) return exe.error();
  if (mem) return (*exe)->run_on_memory(mem->data(), mem->size());
  return (*exe)->run_on_memory(nullptr, 0);
}
}  // namespace

TEST(Interp, BudgetStopsRunawayLoop) {
  ExecOptions o;
  o.insn_budget = 1000;
  auto r = run_interp({I(Op::JA, 0, 0, -1), I(Op::EXIT)}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Budget);
  EXPECT_NE(r.error().message.find("1000"), std::string::npos);
}

TEST(Interp, BudgetCountsExecutedInstructions) {
  ExecOptions o;
  o.insn_budget = 1u << 30;
  auto exe = Executable::create(
      Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, 10), I(Op::SUB64_IMM, 0, 0, 0, 1), I(Op::JNE_IMM, 0, 0, -2, 0),
                    I(Op::EXIT)}},
      HelperTable::conformance(), o);
  ASSERT_TRUE(exe.ok());
  RunStats stats;
  auto r = (*exe)->run_on_memory(nullptr, 0, &stats);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(stats.insns_executed, 1u + 10 * 2 + 1);
}

TEST(Interp, CheckedModeStopsOutOfBoundsRead) {
  std::vector<uint8_t> mem(8, 0xab);
  ExecOptions o;
  o.checked = true;
  // r0 = *(u32 *)(r1 + 6): two bytes past the end.
  auto r = run_interp({I(Op::LDXW, 0, 1, 6), I(Op::EXIT)}, o, &mem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_EQ(r.error().pc, 0);
  EXPECT_EQ(r.error().message, "memory fault: read of 4 bytes at mem+6 is outside mem (8 bytes)");
  // In bounds works.
  auto ok = run_interp({I(Op::LDXW, 0, 1, 4), I(Op::EXIT)}, o, &mem);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 0xababababu);
}

TEST(Interp, CheckedModeAllowsStackOnly) {
  ExecOptions o;
  o.checked = true;
  EXPECT_TRUE(run_interp({I(Op::STDW, 10, 0, -8, 5), I(Op::LDXDW, 0, 10, -8), I(Op::EXIT)}, o).ok());
  auto r = run_interp({I(Op::STDW, 10, 0, 0, 5), I(Op::EXIT)}, o);  // just above the stack top
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
}
