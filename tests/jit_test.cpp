// The x86-64 JIT: the conformance suite through the JIT (and compared with the interpreter), the
// interpreter's hand-built semantics cases, W^X, hardening, the no-BMI2 shift path, refusals.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "asm_test_util.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"
#include "bpfvm/jit.hpp"
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

ExecOptions jit_opts(bool harden = false) {
  ExecOptions o;
  o.engine = EngineKind::Jit;
  o.jit_harden = harden;
  return o;
}

Result<uint64_t> run(std::vector<Insn> insns, ExecOptions opts = jit_opts(), std::vector<uint8_t>* mem = nullptr,
                     const HelperTable& helpers = HelperTable::conformance()) {
  auto exe = Executable::create(Program{"t", std::move(insns)}, helpers, opts);
  if (!exe) return exe.error();
  if (mem) return (*exe)->run_on_memory(mem->data(), mem->size());
  return (*exe)->run_on_memory(nullptr, 0);
}

std::vector<uint8_t> parse_mem(const std::string& text) {
  std::vector<uint8_t> out;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w[0] == '#') {
      std::getline(in, w);
      continue;
    }
    out.push_back(static_cast<uint8_t>(std::stoul(w, nullptr, 16)));
  }
  return out;
}

std::optional<uint64_t> parse_result(const std::string& text) {
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w[0] == '#') {
      std::getline(in, w);
      continue;
    }
    return std::stoull(w, nullptr, 0);
  }
  return std::nullopt;
}

Result<std::vector<Insn>> conformance_program(const testutil::ConformanceFile& f) {
  if (f.sections.count("raw")) return decode_bytes(testutil::raw_words(f.sections.at("raw")));
  return assemble(f.sections.at("asm"), Syntax::Conformance);
}

void run_conformance(bool harden, bool bmi2) {
  auto files = testutil::conformance_files();
  if (files.empty()) GTEST_SKIP() << "conformance suite not found under " << testutil::shared_dir();
  bool prev = jit_set_use_bmi2(bmi2);
  int passed = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.name);
    auto prog = conformance_program(f);
    ASSERT_TRUE(prog.ok()) << prog.error().to_string();
    std::vector<uint8_t> mem = f.sections.count("mem") ? parse_mem(f.sections.at("mem")) : std::vector<uint8_t>{};
    std::vector<uint8_t> mem_i = mem;
    auto jit = Executable::create(Program{f.name, *prog}, HelperTable::conformance(), jit_opts(harden));
    ASSERT_TRUE(jit.ok()) << jit.error().to_string();
    auto interp = Executable::create(Program{f.name, *prog}, HelperTable::conformance());
    ASSERT_TRUE(interp.ok()) << interp.error().to_string();
    auto rj = (*jit)->run_on_memory(mem.empty() ? nullptr : mem.data(), mem.size());
    auto ri = (*interp)->run_on_memory(mem_i.empty() ? nullptr : mem_i.data(), mem_i.size());
    ASSERT_EQ(rj.ok(), ri.ok()) << (rj.ok() ? ri.error().to_string() : rj.error().to_string());
    if (!rj.ok()) {
      EXPECT_EQ(rj.error().code, ri.error().code) << rj.error().to_string();
      continue;
    }
    EXPECT_EQ(*rj, *ri);
    EXPECT_EQ(mem, mem_i) << "memory differs after the run";
    if (f.sections.count("result")) {
      auto want = parse_result(f.sections.at("result"));
      if (want) {
        EXPECT_EQ(*rj, *want);
        if (*rj == *want) ++passed;
      }
    }
  }
  jit_set_use_bmi2(prev);
  ::testing::Test::RecordProperty("passed", passed);
  EXPECT_GT(passed, 300) << "conformance files with a result that the JIT matched";
}

}  // namespace

TEST(Jit, ConformanceSuite) { run_conformance(false, true); }
TEST(Jit, ConformanceSuiteHardened) { run_conformance(true, true); }
TEST(Jit, ConformanceSuiteWithoutBmi2) { run_conformance(false, false); }

TEST(Jit, ArithmeticAndExit) {
  auto r = run({I(Op::MOV64_IMM, 0, 0, 0, 40), I(Op::ADD64_IMM, 0, 0, 0, 2), I(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 42u);
}

TEST(Jit, DivisionEdgeCases) {
  for (bool harden : {false, true}) {
    auto o = jit_opts(harden);
    EXPECT_EQ(*run({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::DIV64_REG, 0, 1), I(Op::EXIT)}, o), 0u);
    EXPECT_EQ(*run({I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOV64_IMM, 1), I(Op::MOD64_REG, 0, 1), I(Op::EXIT)}, o), 7u);
    EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SDIV64_IMM, 0, 0, 0, -1), I(Op::EXIT)}, o),
              static_cast<uint64_t>(INT64_MIN));
    EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::SMOD64_IMM, 0, 0, 0, -1), I(Op::EXIT)}, o), 0u);
    // the same through a register divisor (the run-time -1 test)
    EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, INT64_MIN), I(Op::LDDW_HI), I(Op::MOV64_IMM, 3, 0, 0, -1),
                    I(Op::SDIV64_REG, 0, 3), I(Op::EXIT)}, o),
              static_cast<uint64_t>(INT64_MIN));
    EXPECT_EQ(*run({I(Op::MOV32_IMM, 0, 0, 0, INT32_MIN), I(Op::MOV64_IMM, 3, 0, 0, -1), I(Op::SDIV32_REG, 0, 3),
                    I(Op::EXIT)}, o),
              0x80000000u);
    EXPECT_EQ(*run({I(Op::MOV32_IMM, 0, 0, 0, INT32_MIN), I(Op::MOV64_IMM, 3, 0, 0, -1), I(Op::SMOD32_REG, 0, 3),
                    I(Op::EXIT)}, o),
              0u);
    EXPECT_EQ(*run({I(Op::LDDW, 0, 0, 0, -1), I(Op::LDDW_HI), I(Op::MOV64_IMM, 1), I(Op::MOD32_REG, 0, 1), I(Op::EXIT)}, o),
              0xffffffffu);
    // division result into r3 (rdx) and a divisor in r0 (rax): registers are kept straight
    EXPECT_EQ(*run({I(Op::MOV64_IMM, 3, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::MOD64_REG, 3, 0),
                    I(Op::MUL64_IMM, 0, 0, 0, 1000), I(Op::ADD64_REG, 0, 3), I(Op::EXIT)}, o),
              7002u);
    EXPECT_EQ(*run({I(Op::MOV64_IMM, 3, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 7), I(Op::DIV64_REG, 0, 3),
                    I(Op::MUL64_IMM, 3, 0, 0, 1000), I(Op::ADD64_REG, 0, 3), I(Op::EXIT)}, o),
              100000u);
  }
}

TEST(Jit, LocalCallPreservesCalleeSaved) {
  auto r = run({I(Op::MOV64_IMM, 6, 0, 0, 6), I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::ADD64_REG, 0, 6), I(Op::EXIT),
                I(Op::MOV64_IMM, 6, 0, 0, 100), I(Op::MOV64_IMM, 0, 0, 0, 1), I(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 7u);
}

TEST(Jit, CallDepthLimit) {
  auto r = run({I(Op::CALL_LOCAL, 0, 1, 0, -1), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::CallDepth);
  EXPECT_EQ(r.error().pc, 0);
}

TEST(Jit, SevenNestedCallsAreAllowed) {
  // r1 = 7 levels: f(n) = n == 0 ? 0 : f(n-1) + 1, called from main: 1 + 7 frames would be too many,
  // 1 + 6 is fine. The interpreter agrees.
  auto prog = [](int n) {
    return std::vector<Insn>{I(Op::MOV64_IMM, 1, 0, 0, n), I(Op::CALL_LOCAL, 0, 1, 0, 1), I(Op::EXIT),
                             I(Op::MOV64_IMM, 0, 0, 0, 0), I(Op::JEQ_IMM, 1, 0, 3, 0), I(Op::SUB64_IMM, 1, 0, 0, 1),
                             I(Op::CALL_LOCAL, 0, 1, 0, -4), I(Op::ADD64_IMM, 0, 0, 0, 1), I(Op::EXIT)};
  };
  for (int n : {5, 6, 7}) {
    auto rj = run(prog(n));
    auto ri = run(prog(n), ExecOptions{});
    ASSERT_EQ(rj.ok(), ri.ok()) << n;
    if (rj.ok()) EXPECT_EQ(*rj, *ri);
    else EXPECT_EQ(rj.error().code, ErrorCode::CallDepth);
  }
  EXPECT_TRUE(run(prog(6)).ok());
  EXPECT_FALSE(run(prog(7)).ok());
}

TEST(Jit, CallxUnknownHelperIsRuntimeError) {
  auto r = run({I(Op::MOV64_IMM, 2, 0, 0, 99), I(Op::CALLX, 2), I(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Runtime);
  EXPECT_NE(r.error().message.find("99"), std::string::npos);
  EXPECT_EQ(r.error().pc, 1);
  // a known id works: helper 5 returns r1
  auto ok = run({I(Op::MOV64_IMM, 2, 0, 0, 5), I(Op::MOV64_IMM, 1, 0, 0, 33), I(Op::CALLX, 2), I(Op::EXIT)});
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_EQ(*ok, 33u);
}

TEST(Jit, LegacyPacketLoads) {
  std::vector<uint8_t> pkt = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
  auto r = run({I(Op::MOV64_REG, 6, 1), I(Op::LDABS_H, 0, 0, 0, 2), I(Op::EXIT)}, jit_opts(), &pkt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0x2233u);
  auto w = run({I(Op::LDABS_W, 0, 0, 0, 2), I(Op::EXIT)}, jit_opts(), &pkt);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 0x22334455u);
  auto oob = run({I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDABS_W, 0, 0, 0, 4), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::EXIT)},
                 jit_opts(), &pkt);
  ASSERT_TRUE(oob.ok());
  EXPECT_EQ(*oob, 0u);
  auto ind = run({I(Op::MOV64_IMM, 7, 0, 0, 1), I(Op::LDIND_B, 0, 7, 0, 3), I(Op::EXIT)}, jit_opts(), &pkt);
  ASSERT_TRUE(ind.ok());
  EXPECT_EQ(*ind, 0x44u);
  // negative index, SKF_LL_OFF, and an out-of-bounds load inside a local call ends the whole program
  auto neg = run({I(Op::MOV64_IMM, 7, 0, 0, -1), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::LDIND_B, 0, 7, 0, 0), I(Op::EXIT)},
                 jit_opts(), &pkt);
  ASSERT_TRUE(neg.ok());
  EXPECT_EQ(*neg, 0u);
  auto ll = run({I(Op::LDABS_B, 0, 0, 0, -0x200000 + 5), I(Op::EXIT)}, jit_opts(), &pkt);
  ASSERT_TRUE(ll.ok());
  EXPECT_EQ(*ll, 0x55u);
  auto nested = run({I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::EXIT),
                     I(Op::LDABS_B, 0, 0, 0, 100), I(Op::EXIT)},
                    jit_opts(), &pkt);
  ASSERT_TRUE(nested.ok()) << nested.error().to_string();
  EXPECT_EQ(*nested, 0u);
}

namespace {
const Executable* g_tail_target = nullptr;
uint64_t fake_tail_call(uint64_t, uint64_t, uint64_t index, uint64_t, uint64_t) {
  RunContext* rc = current_run();
  if (index != 1 || rc->tail_calls >= kMaxTailCalls) return 0;
  ++rc->tail_calls;
  return reinterpret_cast<uint64_t>(g_tail_target);
}
}  // namespace

TEST(Jit, TailCallRunsTargetAndNeverReturns) {
  HelperTable helpers;
  helpers.add(12, "tail_call", &fake_tail_call, true);
  helpers.add(5, "identity", [](uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return a; });
  // target: r0 = r1 + 70 (r1 is the context the caller passed)
  auto target = Executable::create(Program{"target", {I(Op::MOV64_REG, 0, 1), I(Op::ADD64_IMM, 0, 0, 0, 70), I(Op::EXIT)}},
                                   helpers, jit_opts());
  ASSERT_TRUE(target.ok());
  g_tail_target = target->get();
  // r1 = 7; r3 = 1; call tail_call; r0 = 5; exit   -> 77
  auto r = run({I(Op::MOV64_IMM, 1, 0, 0, 7), I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::CALL_HELPER, 0, 0, 0, 12),
                I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT)},
               jit_opts(), nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 77u);
  auto f = run({I(Op::MOV64_IMM, 3, 0, 0, 2), I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::EXIT)}, jit_opts(), nullptr, helpers);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, static_cast<uint64_t>(-2));  // -ENOENT
  // through callx, from inside a local call
  auto x = run({I(Op::MOV64_IMM, 1, 0, 0, 8), I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::MOV64_IMM, 0, 0, 0, 5), I(Op::EXIT),
                I(Op::MOV64_IMM, 3, 0, 0, 1), I(Op::MOV64_IMM, 4, 0, 0, 12), I(Op::CALLX, 4), I(Op::EXIT)},
               jit_opts(), nullptr, helpers);
  ASSERT_TRUE(x.ok()) << x.error().to_string();
  EXPECT_EQ(*x, 78u);
  // a program tail-calling itself stops after 33 tail calls, like the interpreter
  auto self_prog = std::vector<Insn>{I(Op::ADD64_IMM, 1, 0, 0, 1), I(Op::MOV64_IMM, 3, 0, 0, 1),
                                     I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_REG, 0, 1), I(Op::EXIT)};
  (void)self_prog;
  for (EngineKind k : {EngineKind::Interpreter, EngineKind::Jit}) {
    ExecOptions o;
    o.engine = k;
    auto self = Executable::create(Program{"self", {I(Op::MOV64_REG, 6, 1), I(Op::ADD64_IMM, 6, 0, 0, 1),
                                                    I(Op::MOV64_REG, 1, 6), I(Op::MOV64_IMM, 3, 0, 0, 1),
                                                    I(Op::CALL_HELPER, 0, 0, 0, 12), I(Op::MOV64_REG, 0, 6), I(Op::EXIT)}},
                                   helpers, o);
    ASSERT_TRUE(self.ok());
    g_tail_target = self->get();
    RunArgs args;
    args.r1 = 0;
    auto res = (*self)->run(args);
    ASSERT_TRUE(res.ok()) << res.error().to_string();
    EXPECT_EQ(*res, 34u) << engine_name(k);
  }
}

namespace {
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

TEST(Jit, HelperCallsBackIntoProgram) {
  HelperTable helpers;
  helpers.add(181, "loop", &fake_loop);
  std::vector<Insn> p = {
      I(Op::STDW, 10, 0, -8, 0),     I(Op::MOV64_IMM, 1, 0, 0, 5), I(Op::LDDW_CODE_ADDR, 2, 4, 0, 6), I(Op::LDDW_HI),
      I(Op::MOV64_REG, 3, 10),       I(Op::ADD64_IMM, 3, 0, 0, -8), I(Op::CALL_HELPER, 0, 0, 0, 181),
      I(Op::LDXDW, 0, 10, -8),       I(Op::EXIT),
      I(Op::LDXDW, 3, 2, 0),         I(Op::ADD64_REG, 3, 1),       I(Op::STXDW, 2, 3, 0),
      I(Op::MOV64_IMM, 0, 0, 0, 0),  I(Op::EXIT)};
  auto r = run(p, jit_opts(), nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 0u + 1 + 2 + 3 + 4);
}

TEST(Jit, RefusesCheckedModeAndBudget) {
  ExecOptions o = jit_opts();
  o.checked = true;
  auto r = run({I(Op::MOV64_IMM, 0), I(Op::EXIT)}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unsupported);
  EXPECT_NE(r.error().message.find("interpreter"), std::string::npos);
  o = jit_opts();
  o.insn_budget = 100;
  auto b = run({I(Op::MOV64_IMM, 0), I(Op::EXIT)}, o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ErrorCode::Unsupported);
}

TEST(Jit, CodeIsNeverWritableAndExecutable) {
  auto exe = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, 1), I(Op::EXIT)}}, HelperTable::conformance(),
                                jit_opts());
  ASSERT_TRUE(exe.ok());
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream ls(line);
    std::string range, perms;
    ls >> range >> perms;
    EXPECT_FALSE(perms.size() >= 3 && perms[1] == 'w' && perms[2] == 'x') << line;
  }
  auto info = jit_code_info(**exe);
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->code_size, 0u);
}

TEST(Jit, HardeningBlindsImmediates) {
  const int64_t magic = 0x3c5a7e91;
  std::vector<Insn> p = {I(Op::MOV64_IMM, 0, 0, 0, magic), I(Op::ADD64_IMM, 0, 0, 0, magic), I(Op::EXIT)};
  auto plain = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts(false));
  auto hard = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts(true));
  ASSERT_TRUE(plain.ok() && hard.ok());
  EXPECT_EQ(*(*plain)->run_on_memory(nullptr, 0), static_cast<uint64_t>(2 * magic));
  EXPECT_EQ(*(*hard)->run_on_memory(nullptr, 0), static_cast<uint64_t>(2 * magic));
  auto text_plain = jit_disassemble(**plain);
  auto text_hard = jit_disassemble(**hard);
  ASSERT_TRUE(text_plain.ok() && text_hard.ok());
  EXPECT_NE(text_plain->find("0x3c5a7e91"), std::string::npos) << *text_plain;
  EXPECT_EQ(text_hard->find("0x3c5a7e91"), std::string::npos) << *text_hard;
}

TEST(Jit, DisassemblyInterleavesBpfAndNative) {
  auto exe = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, 3), I(Op::LSH64_IMM, 0, 0, 0, 2), I(Op::EXIT)}},
                                HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(exe.ok());
  auto text = jit_disassemble(**exe);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("r0 <<= 2"), std::string::npos) << *text;
  EXPECT_NE(text->find("shl rax, 2"), std::string::npos) << *text;
  EXPECT_NE(text->find("ret"), std::string::npos) << *text;
  auto interp = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0), I(Op::EXIT)}}, HelperTable::conformance());
  ASSERT_TRUE(interp.ok());
  EXPECT_FALSE(jit_disassemble(**interp).ok());
}

TEST(Jit, CalleeSeesZeroedRegistersLikeTheInterpreter) {
  // main never touches r7; the function returns it: 0 in both engines.
  std::vector<Insn> p = {I(Op::CALL_LOCAL, 0, 1, 0, 1), I(Op::EXIT), I(Op::MOV64_REG, 0, 7), I(Op::EXIT)};
  auto rj = run(p);
  auto ri = run(p, ExecOptions{});
  ASSERT_TRUE(rj.ok() && ri.ok());
  EXPECT_EQ(*rj, 0u);
  EXPECT_EQ(*ri, 0u);
}

TEST(Jit, CallbackTargetMustBeAFunctionEntry) {
  HelperTable helpers;
  helpers.add(181, "loop", &fake_loop);
  // r2 = code address of insn 1 (inside main, never loaded with lddw code_addr as an entry) via a plain lddw
  std::vector<Insn> p = {I(Op::MOV64_IMM, 1, 0, 0, 1), I(Op::MOV64_IMM, 2, 0, 0, 1), I(Op::MOV64_IMM, 3, 0, 0, 0),
                         I(Op::CALL_HELPER, 0, 0, 0, 181), I(Op::EXIT)};
  auto r = run(p, jit_opts(), nullptr, helpers);
  ASSERT_TRUE(r.ok()) << r.error().to_string();  // the helper sees the error and stops the loop
  EXPECT_EQ(*r, 0u);
}

TEST(Jit, FaultInJitCodeIsSigsegvInTheHost) {
  // Unverified program dereferencing address 16: the JIT has no memory checks (docs/jit.md).
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<Insn> p = {I(Op::MOV64_IMM, 1, 0, 0, 16), I(Op::LDXDW, 0, 1, 0), I(Op::EXIT)};
  auto exe = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(exe.ok());
  EXPECT_EXIT((void)(*exe)->run(RunArgs{}), ::testing::KilledBySignal(SIGSEGV), "");
}
