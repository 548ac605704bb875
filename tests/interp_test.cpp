// Interpreter semantics on hand-built programs (the conformance suite covers the rest).
#include <gtest/gtest.h>

#include <cstring>

#include "bpfvm/insn.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;

namespace {

Insn I(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  Insn in;
  in.op = op;
  in.dst = dst;
  in.src = src;
  in.off = off;
  in.imm = imm;
  return in;
}

Result<uint64_t> run(std::vector<Insn> insns, ExecOptions opts = {}, std::vector<uint8_t>* mem = nullptr,
                     const HelperTable& helpers = HelperTable::conformance()) {
  auto exe = Executable::create(Program{"t", std::move(insns)}, helpers, opts);
  if (!exe) return exe.error();
  if (mem) return (*exe)->run_on_memory(mem->data(), mem->size());
  return (*exe)->run_on_memory(nullptr, 0);
}

}  // namespace

TEST(Interp, ArithmeticAndExit) {
  auto r = run({I(Op::MOV64_IMM, 0, 0, 0, 40), I(Op::ADD64_IMM, 0, 0, 0, 2), I(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 42u);
}

TEST(Interp, DivisionEdgeCases) {
  // 64-bit div by zero -> 0; mod by zero -> dividend; INT_MIN s/ -1 -> INT_MIN; INT_MIN s% -1 -> 0.
  EXPECT_EQ(*run({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}), 0u);
  EXPECT_EQ(*run({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}), 7u);
  EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SDIV64_IMM, 0, 0, 0, -1), I(Op::EXIT)}),
            static_cast<uint64_t>(INT64_MIN));
  EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SMOD64_IMM, 0, 0, 0, -1), I(Op::EXIT)}), 0u);
  // 32-bit mod by zero zero-extends the dividend.
  EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, -1), I(Op::LDDW_HI), I(Op::MOV64_IMM, 1), I(Op::MOD32_REG, 0, 1), I(Op::EXIT)}),
            0xffffffffu);
}

TEST(Interp, LocalCallPreservesCalleeSaved) {
  // r6 = 6; call f; r0 += r6; exit.   f: r6 = 100; r0 = 1; exit
  auto r = run({I(Op::MOV64_IMM, 6, 0, 0, 6), I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::ADD64_REG, 0, 6), I(Op::EXIT),
                I(Op::MOV64_IMM, 6, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 1), I(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 7u);
}

TEST(Interp, CallDepthLimit) {
  // f calls itself forever: stops at 8 frames.
  auto r = run({I(Op::CALL_LOCAL, 0, 1, 0, -1), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::CallDepth);
}

TEST(Interp, BudgetStopsRunawayLoop) {
  ExecOptions o;
  o.insn_budget = 1000;
  auto r = run({I(Op::JA, 0, 0, -1), I(Op::EXIT)}, o);
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
  auto r = run({I(Op::LDXW, 0, 1, 6), I(Op::EXIT)}, o, &mem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_EQ(r.error().pc, 0);
  EXPECT_EQ(r.error().message, "memory fault: read of 4 bytes at mem+6 is outside mem (8 bytes)");
  // In bounds works.
  auto ok = run({I(Op::LDXW, 0, 1, 4), I(Op::EXIT)}, o, &mem);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 0xababababu);
}

TEST(Interp, CheckedModeAllowsStackOnly) {
  ExecOptions o;
  o.checked = true;
  EXPECT_TRUE(run({I(Op::STDW, 10, 0, -8, 5), I(Op::LDXDW, 0, 10, -8), I(Op::EXIT)}, o).ok());
  auto r = run({I(Op::STDW, 10, 0, 0, 5), I(Op::EXIT)}, o);  // just above the stack top
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
}

TEST(Interp, CallxUnknownHelperIsRuntimeError) {
  auto r = run({I(Op::MOV64_IMM, 2, 0, 0, 99), I(Op::CALLX, 2), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Runtime);
  EXPECT_NE(r.error().message.find("99"), std::string::npos);
}

TEST(Interp, UnknownHelperRefusedAtLink) {
  auto r = run({I(Op::CALL_HELPER, 0, 0, 0, 77), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Link);
  EXPECT_EQ(r.error().pc, 0);
}

TEST(Interp, LegacyPacketLoads) {
  std::vector<uint8_t> pkt = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
  // r6 = ctx; r0 = ntohs(pkt[2..4]); exit
  auto r = run({I(Op::MOV64_REG, 6, 1), I(Op::LDABS_H, 0, 0, 0, 2), I(Op::EXIT)}, {}, &pkt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0x2233u);
  // out of bounds: the program ends with 0
  auto oob = run({I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDABS_W, 0, 0, 0, 4), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::EXIT)},
                 {}, &pkt);
  ASSERT_TRUE(oob.ok());
  EXPECT_EQ(*oob, 0u);
  // ld_ind: r7 = 1; r0 = pkt[r7 + 3]
  auto ind = run({I(Op::MOV64_IMM, 7, 0, 0, 1), I(Op::LDIND_B, 0, 7, 0, 3), I(Op::EXIT)}, {}, &pkt);
  ASSERT_TRUE(ind.ok());
  EXPECT_EQ(*ind, 0x44u);
}

namespace {
const Executable* g_tail_target = nullptr;
uint64_t fake_tail_call(uint64_t, uint64_t, uint64_t index, uint64_t, uint64_t) {
  return index == 1 ? reinterpret_cast<uint64_t>(g_tail_target) : 0;
}
}  // namespace

TEST(Interp, TailCallRunsTargetAndNeverReturns) {
  HelperTable helpers;
  helpers.add(12, "tail_call", &fake_tail_call, true);
  auto target = Executable::create(Program{"target", {I(Op::MOV64_IMM, 0, 0, 0, 77), I(Op::EXIT)}}, helpers);
  ASSERT_TRUE(target.ok());
  g_tail_target = target->get();
  // r3 = 1; call tail_call; r0 = 5; exit   -> 77
  auto r = run({I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT)},
               {}, nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 77u);
  // index 2: falls through
  auto f = run({I(Op::MOV64_IMM, 3, 0, 0, 2), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT)},
               {}, nullptr, helpers);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, 5u);
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

TEST(Interp, HelperCallsBackIntoProgram) {
  HelperTable helpers;
  helpers.add(181, "loop", &fake_loop);
  ExecOptions o;
  o.checked = true;
  // *(u64*)(r10-8) = 0; r1 = 5; r2 = &cb; r3 = r10 - 8; call loop; r0 = *(u64*)(r10-8); exit
  // cb: r3 = *(u64*)(r2); r3 += r1; *(u64*)(r2) = r3; r0 = 0; exit
  std::vector<Insn> p = {
      I(Op::STDW, 10, 0, -8, 0),     I(Op::MOV64_IMM, 1, 0, 0, 5), I(Op::LDDW_CODE_ADDR, 2, 4, 0, 6), I(Op::LDDW_HI),
      I(Op::MOV64_REG, 3, 10),       I(Op::ADD64_IMM, 3, 0, 0, -8), I(Op::CALL_HELPER, 0, 0, 0, 181),
      I(Op::LDXDW, 0, 10, -8),       I(Op::EXIT),
      I(Op::LDXDW, 3, 2, 0),         I(Op::ADD64_REG, 3, 1),       I(Op::STXDW, 2, 3, 0),
      I(Op::MOV64_IMM, 0, 0, 0, 0),  I(Op::EXIT)};
  auto r = run(p, o, nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 0u + 1 + 2 + 3 + 4);
}
