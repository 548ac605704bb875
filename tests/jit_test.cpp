// The x86-64 JIT: the conformance suite through the JIT (and compared with the interpreter), W^X,
// hardening, the no-BMI2 shift path, refusals, direct entry, code-generation facts. The hand-built
// semantics cases run in every engine (InterpAndJit, interp_test.cpp).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <cstdio>
#include <unistd.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include "asm_test_util.hpp"
#include "exec/jit/exec_memory.hpp"
#include "map_util.hpp"
#include "test_util.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;

namespace {

Insn I(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  return Insn{op, dst, src, off, imm};
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

// The semantic cases (arithmetic, division edge cases, calls, depth limit, callx, packet loads, tail
// calls, callbacks) run in every engine: InterpAndJit in interp_test.cpp.

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


void expect_no_writable_executable_mapping() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream ls(line);
    std::string range, perms;
    ls >> range >> perms;
    EXPECT_FALSE(perms.size() >= 3 && perms[1] == 'w' && perms[2] == 'x') << line;
  }
}

// W^X with the code pool: every program's code is read+execute, on pages of its own; no mapping is
// ever writable and executable; a released program's pages are no longer executable, and their reuse
// gives correct code.
TEST(Jit, CodeIsNeverWritableAndExecutable) {
  auto ret = [](int64_t v) { return Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, v), I(Op::EXIT)}}; };
  std::vector<std::unique_ptr<Executable>> live;
  for (int k = 0; k < 6; ++k) {
    auto exe = Executable::create(ret(k), HelperTable::conformance(), jit_opts(k % 2 == 1));
    ASSERT_TRUE(exe.ok());
    live.push_back(std::move(*exe));
  }
  expect_no_writable_executable_mapping();
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (size_t k = 0; k < live.size(); ++k) {
    auto info = jit_code_info(*live[k]);
    ASSERT_TRUE(info.ok());
    EXPECT_GT(info->code_size, 0u);
    const auto lo = reinterpret_cast<uintptr_t>(info->code);
    EXPECT_EQ(lo % page, 0u);
    EXPECT_EQ(info->mapped_size % page, 0u);
    EXPECT_GE(info->mapped_size, info->code_size);
    EXPECT_EQ(test::perms_at(info->code).substr(0, 3), "r-x");
    for (const auto& [a, b] : ranges) EXPECT_TRUE(lo + info->mapped_size <= a || lo >= b) << "programs share a page";
    ranges.emplace_back(lo, lo + info->mapped_size);
    EXPECT_EQ(*live[k]->run_on_memory(nullptr, 0), k);
  }
  // Released: the pages hold no code any more — not executable (mprotect mode: read-write in the
  // pool, or unmapped), or every byte int3 (kernel writes: the pages stay read+execute).
  const auto* freed = static_cast<const uint8_t*>(jit_code_info(*live[2]).value().code);
  const size_t freed_size = jit_code_info(*live[2]).value().code_size;
  live[2].reset();
  if (detail::exec_memory_mode() == detail::CodeWriteMode::Mprotect) {
    EXPECT_EQ(test::perms_at(freed).find('x'), std::string::npos) << test::perms_at(freed);
  } else {
    for (size_t i = 0; i < freed_size; ++i) ASSERT_EQ(freed[i], 0xcc) << i;
  }
  expect_no_writable_executable_mapping();
  // Reused pages hold the new program only.
  for (int k = 0; k < 4; ++k) {
    auto exe = Executable::create(ret(100 + k), HelperTable::conformance(), jit_opts());
    ASSERT_TRUE(exe.ok());
    EXPECT_EQ(*(*exe)->run_on_memory(nullptr, 0), static_cast<uint64_t>(100 + k));
    EXPECT_EQ(test::perms_at(jit_code_info(**exe).value().code).substr(0, 3), "r-x");
  }
  for (size_t k = 0; k < live.size(); ++k)
    if (live[k]) EXPECT_EQ(*live[k]->run_on_memory(nullptr, 0), k);
  expect_no_writable_executable_mapping();
}

// The listing is recorded by compiling the program again (jit_disassemble): with the CPU features and
// blinding keys of the first compile, even when the BMI2 knob changed in between.
TEST(Jit, ListingMatchesTheInstalledCode) {
  std::vector<Insn> p = {I(Op::MOV64_IMM, 0, 0, 0, 0x11223344), I(Op::MOV64_IMM, 2, 0, 0, 3),
                         I(Op::LSH64_REG, 0, 2), I(Op::ADD64_IMM, 0, 0, 0, 0x55667788), I(Op::EXIT)};
  const bool was = jit_set_use_bmi2(true);
  auto plain = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts());
  auto hard = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts(true));
  jit_set_use_bmi2(false);
  ASSERT_TRUE(plain.ok() && hard.ok());
  for (auto* exe : {&*plain, &*hard}) {
    auto text = jit_disassemble(**exe);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(text->find("differs"), std::string::npos) << *text;
    EXPECT_NE(text->find("r0 <<= r2"), std::string::npos) << *text;
    EXPECT_NE(text->find("r0 += 1432778632"), std::string::npos) << *text;
    if (jit_code_info(**exe).value().bmi2) EXPECT_NE(text->find("shlx"), std::string::npos) << *text;
  }
  jit_set_use_bmi2(was);
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
  // The child restores the default SIGSEGV disposition first: a sanitizer (AddressSanitizer's
  // handle_segv) or a host may have installed a handler that would report and exit instead. The
  // assertion is the same in every build: the fault reaches the host process as SIGSEGV.
  EXPECT_EXIT(
      {
        std::signal(SIGSEGV, SIG_DFL);
        (void)(*exe)->run(RunArgs{});
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

TEST(Jit, DirectEntryOnlyForProgramsWithoutCalls) {
  // No call of any kind: Executable::run enters the native code directly (no RunContext).
  auto plain = Executable::create(Program{"t", {I(Op::MOV64_REG, 0, 1), I(Op::LDABS_B, 0, 0, 0, 0), I(Op::EXIT)}},
                                  HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(plain.ok());
  EXPECT_NE((*plain)->engine().direct_entry(), nullptr);
  std::vector<uint8_t> pkt = {0x42};
  EXPECT_EQ(*(*plain)->run_on_memory(pkt.data(), pkt.size()), 0x42u);
  RunStats st;
  st.insns_executed = 5;
  EXPECT_EQ(*(*plain)->run_on_memory(pkt.data(), pkt.size(), &st), 0x42u);
  EXPECT_EQ(st.insns_executed, 0u);
  // helper, callx, local call: the engine's full path
  for (auto p : {std::vector<Insn>{I(Op::CALL_HELPER, 0, 0, 0, 5), I(Op::EXIT)},
                 std::vector<Insn>{I(Op::MOV64_IMM, 2, 0, 0, 5), I(Op::CALLX, 2), I(Op::EXIT)},
                 std::vector<Insn>{I(Op::CALL_LOCAL, 0, 1, 0, 1), I(Op::EXIT), I(Op::MOV64_IMM, 0), I(Op::EXIT)}}) {
    auto exe = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts());
    ASSERT_TRUE(exe.ok());
    EXPECT_EQ((*exe)->engine().direct_entry(), nullptr);
  }
  // the interpreter has none
  auto interp = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0), I(Op::EXIT)}}, HelperTable::conformance());
  ASSERT_TRUE(interp.ok());
  EXPECT_EQ((*interp)->engine().direct_entry(), nullptr);
}

TEST(Jit, BatchEntryRunsTheProgramOncePerItem) {
  // r0 = packet[packet[1]] + packet[0] + *(u32 *)(r1 + 0), through the stack; LD_IND through r7; a
  // short packet ends the run with 0.
  std::vector<Insn> p = {I(Op::MOV64_REG, 6, 1),       I(Op::LDABS_B, 0, 0, 0, 0),  I(Op::LDXW, 2, 6, 0, 0),
                         I(Op::ADD64_REG, 0, 2),       I(Op::STXDW, 10, 0, -8, 0), I(Op::LDABS_B, 0, 0, 0, 1),
                         I(Op::MOV64_REG, 7, 0),       I(Op::LDIND_B, 0, 7, 0, 0),  I(Op::LDXDW, 3, 10, -8, 0),
                         I(Op::ADD64_REG, 0, 3),       I(Op::EXIT)};
  ExecOptions o = jit_opts();
  auto no_batch = Executable::create(Program{"t", p}, HelperTable::conformance(), o);
  ASSERT_TRUE(no_batch.ok()) << no_batch.error().to_string();
  EXPECT_EQ((*no_batch)->engine().batch_entry(), nullptr);  // only on request
  o.jit_batch = true;
  auto exe = Executable::create(Program{"t", p}, HelperTable::conformance(), o);
  ASSERT_TRUE(exe.ok()) << exe.error().to_string();
  auto batch = (*exe)->engine().batch_entry();
  ASSERT_NE(batch, nullptr);
  auto interp = Executable::create(Program{"t", p}, HelperTable::conformance());
  ASSERT_TRUE(interp.ok());
  std::vector<uint8_t> a = {5, 2, 100}, b = {7, 0}, c = {9}, d = {1, 9, 3};
  std::vector<BatchItem> items = {{a.data(), 3, 1000}, {b.data(), 2, 2000}, {c.data(), 1, 3000},
                                  {nullptr, 0, 1},     {d.data(), 3, 4},    {a.data(), 3, 10}};
  uint32_t ctx_word = 0;
  std::vector<uint32_t> verdicts(items.size(), 0xdeadbeef);
  batch(items.data(), items.size(), verdicts.data(), reinterpret_cast<uint64_t>(&ctx_word), &ctx_word);
  for (size_t i = 0; i < items.size(); ++i) {
    uint32_t word = items[i].value;
    RunArgs args;
    args.r1 = reinterpret_cast<uint64_t>(&word);
    args.packet = items[i].packet;
    args.packet_len = items[i].packet_len;
    auto want = (*interp)->run(args);
    ASSERT_TRUE(want.ok()) << want.error().to_string();
    EXPECT_EQ(verdicts[i], static_cast<uint32_t>(*want)) << "item " << i;
  }
  EXPECT_EQ(verdicts[0], 100u + 5 + 1000);
  EXPECT_EQ(verdicts[2], 0u);  // one byte: packet[1] is out of bounds
  EXPECT_EQ(verdicts[4], 0u);  // packet[9] is out of bounds
  // n = 0 writes nothing
  uint32_t untouched = 77;
  batch(items.data(), 0, &untouched, reinterpret_cast<uint64_t>(&ctx_word), &ctx_word);
  EXPECT_EQ(untouched, 77u);
  // Every register in use: no four free host registers, no batch entry (the program still runs).
  std::vector<Insn> all;
  for (uint8_t r = 0; r <= 9; ++r) all.push_back(I(Op::MOV64_IMM, r, 0, 0, r));
  all.push_back(I(Op::LDABS_B, 0, 0, 0, 0));
  for (uint8_t r = 1; r <= 9; ++r) all.push_back(I(Op::ADD64_REG, 0, r));
  all.push_back(I(Op::EXIT));
  auto full = Executable::create(Program{"t", all}, HelperTable::conformance(), o);
  ASSERT_TRUE(full.ok()) << full.error().to_string();
  EXPECT_EQ((*full)->engine().batch_entry(), nullptr);
  EXPECT_NE((*full)->engine().direct_entry(), nullptr);
  // Programs with calls have neither.
  auto calls = Executable::create(Program{"t", {I(Op::CALL_HELPER, 0, 0, 0, 5), I(Op::EXIT)}}, HelperTable::conformance(), o);
  ASSERT_TRUE(calls.ok());
  EXPECT_EQ((*calls)->engine().batch_entry(), nullptr);
}

namespace {
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST(Jit, PacketBoundsCheckedOncePerProvenLength) {
  // ldabs [12] h proves 14 bytes: the loads of [0] and [10] within them are not checked again; [20] is.
  std::vector<Insn> p = {I(Op::LDABS_H, 0, 0, 0, 12), I(Op::LDABS_B, 0, 0, 0, 0), I(Op::LDABS_W, 0, 0, 0, 10),
                         I(Op::LDABS_B, 0, 0, 0, 20), I(Op::EXIT)};
  auto exe = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(exe.ok());
  auto text = jit_disassemble(**exe);
  ASSERT_TRUE(text.ok());
  // the packet length is in a free argument register here (the program uses r0 only)
  EXPECT_EQ(count(*text, ", 0xe\n"), 1u) << *text;
  EXPECT_EQ(count(*text, ", 0x15\n"), 1u) << *text;
  EXPECT_EQ(count(*text, "  jb "), 2u) << *text;
  EXPECT_EQ(text->find("push"), std::string::npos) << *text;
  std::vector<uint8_t> pkt(21, 0);
  pkt[20] = 0x99;
  EXPECT_EQ(*(*exe)->run_on_memory(pkt.data(), pkt.size()), 0x99u);
  pkt.resize(20);
  EXPECT_EQ(*(*exe)->run_on_memory(pkt.data(), pkt.size()), 0u);
}

TEST(Jit, WritesToNeverReadRegistersAreDropped) {
  // r6 = r1 (a translated classic filter's first instruction) with r6 never read: no native code, and
  // rbx (r6) is neither saved nor cleared.
  auto exe = Executable::create(Program{"t", {I(Op::MOV64_REG, 6, 1), I(Op::MOV64_IMM, 0, 0, 0, 3), I(Op::EXIT)}},
                                HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(exe.ok());
  auto text = jit_disassemble(**exe);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find("rbx"), std::string::npos) << *text;
  EXPECT_EQ(*(*exe)->run_on_memory(nullptr, 0), 3u);
}

// Branch layout: `if r1 != 0 goto +2; r0 = 5; exit` puts the two-instruction exit block after the
// epilogue (the jump into it inverted: `je`), and a conditional jump over a single exit goes to the
// epilogue itself. Semantics: InterpAndJit.BranchLayoutKeepsSemantics (every engine), the
// differential tester (early exits in main and in functions, if/else with empty then-blocks).
TEST(Jit, ExitBlocksArePlacedOutOfLine) {
  std::vector<Insn> p = {I(Op::LDXB, 2, 1, 0),         I(Op::JNE_IMM, 2, 0, 2, 0), I(Op::MOV64_IMM, 0, 0, 0, 5),
                         I(Op::EXIT),                  I(Op::MOV64_IMM, 0, 0, 0, 9), I(Op::JNE_IMM, 2, 0, 1, 7),
                         I(Op::EXIT),                  I(Op::MOV64_IMM, 0, 0, 0, 11), I(Op::EXIT)};
  auto exe = Executable::create(Program{"t", p}, HelperTable::conformance(), jit_opts());
  ASSERT_TRUE(exe.ok());
  auto text = jit_disassemble(**exe);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find("differs"), std::string::npos) << *text;
  const size_t cold = text->find("; main: cold blocks");
  ASSERT_NE(cold, std::string::npos) << *text;
  EXPECT_GT(cold, text->find("; main: epilogue")) << *text;
  EXPECT_GT(text->find("    2: r0 = 5"), cold) << *text;       // the block sits after the epilogue
  EXPECT_LT(text->find("    4: r0 = 9"), cold) << *text;       // the code that goes on falls through
  for (uint8_t v : {0, 7, 8}) {
    std::vector<uint8_t> mem = {v};
    EXPECT_EQ(*(*exe)->run_on_memory(mem.data(), mem.size()), v == 0 ? 5u : v == 7 ? 9u : 11u);
  }
}

namespace {
// A random decision tree over r2 (loaded from memory as 64 bits): conditional jumps with immediates
// (every comparison, 64- and 32-bit, signed, jset), leaves `r0 = id; exit`, sometimes a leaf that
// jumps to another one. clang's code for a switch is such a tree; the JIT may dispatch it through a
// table.
struct TreeGen {
  std::mt19937_64 rng;
  std::vector<Insn> out;
  int next_id = 1;
  std::vector<size_t> leaf_at;
  explicit TreeGen(uint64_t seed) : rng(seed) {}
  uint64_t rnd(uint64_t n) { return rng() % n; }
  void node(int depth) {
    if (depth == 0 || (depth < 5 && rnd(6) == 0)) {
      if (!leaf_at.empty() && rnd(5) == 0) {  // jump to an earlier leaf
        size_t t = leaf_at[rnd(leaf_at.size())];
        out.push_back(Insn{Op::JA, 0, 0, static_cast<int16_t>(static_cast<int64_t>(t) - static_cast<int64_t>(out.size()) - 1), 0});
        return;
      }
      leaf_at.push_back(out.size());
      out.push_back(Insn{Op::MOV64_IMM, 0, 0, 0, next_id++});
      out.push_back(Insn{Op::EXIT, 0, 0, 0, 0});
      return;
    }
    static const Op ops[] = {Op::JEQ_IMM,   Op::JNE_IMM,   Op::JGT_IMM,   Op::JGE_IMM,   Op::JLT_IMM,   Op::JLE_IMM,
                             Op::JSGT_IMM,  Op::JSGE_IMM,  Op::JSLT_IMM,  Op::JSLE_IMM,  Op::JSET_IMM,  Op::JEQ32_IMM,
                             Op::JGT32_IMM, Op::JSGT32_IMM, Op::JLE32_IMM, Op::JSLT32_IMM, Op::JNE32_IMM, Op::JSET32_IMM};
    // mostly clang's shapes (signed greater-than and equality), every other comparison too
    Op op = rnd(2) ? (rnd(2) ? Op::JSGT_IMM : Op::JEQ_IMM) : ops[rnd(sizeof ops / sizeof ops[0])];
    const size_t at = out.size();
    out.push_back(Insn{op, 2, 0, 0, static_cast<int64_t>(rnd(44)) - 3});
    node(depth - 1);
    out[at].off = static_cast<int16_t>(out.size() - at - 1);
    node(depth - 1);
  }
};
}  // namespace

// Switch tables (jit.md, "Switches"): random decision trees, every value from -4 to 300 (and a few
// far ones), the JIT's result equal to the interpreter's, in main and in a called function; and the
// tables are really used by some of them (the listing shows them).
TEST(Jit, SwitchTablesMatchTheTree) {
  int with_table = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    TreeGen g(seed);
    g.out.push_back(I(Op::LDXDW, 2, 1, 0));
    g.node(static_cast<int>(3 + seed % 4));
    std::vector<Insn> as_fn = {I(Op::CALL_LOCAL, 0, 1, 0, 2), I(Op::ADD64_IMM, 0, 0, 0, 1000), I(Op::EXIT)};
    for (const Insn& in : g.out) as_fn.push_back(in);
    for (const auto* prog : {&g.out, &as_fn}) {
      SCOPED_TRACE(testing::Message() << "seed " << seed << (prog == &as_fn ? " (in a function)" : ""));
      auto jit = Executable::create(Program{"t", *prog}, HelperTable::conformance(), jit_opts());
      auto interp = Executable::create(Program{"t", *prog}, HelperTable::conformance());
      ASSERT_TRUE(jit.ok()) << jit.error().to_string();
      ASSERT_TRUE(interp.ok());
      auto text = jit_disassemble(**jit);
      ASSERT_TRUE(text.ok());
      EXPECT_EQ(text->find("differs"), std::string::npos);
      with_table += text->find("; switch tables") != std::string::npos;
      std::vector<int64_t> values;
      for (int64_t v = -4; v <= 300; ++v) values.push_back(v);
      for (int64_t v : {int64_t{1} << 32, (int64_t{1} << 32) + 5, INT64_MIN, INT64_MAX, int64_t{0x80000003}})
        values.push_back(v);
      for (int64_t v : values) {
        uint8_t mem[8];
        std::memcpy(mem, &v, 8);
        auto rj = (*jit)->run_on_memory(mem, 8);
        auto ri = (*interp)->run_on_memory(mem, 8);
        ASSERT_TRUE(rj.ok() && ri.ok());
        ASSERT_EQ(*rj, *ri) << "value " << v << "\n" << *text;
      }
    }
  }
  EXPECT_GE(with_table, 10) << "programs compiled with a switch table";
}

namespace {
std::shared_ptr<Map> make_map(uint32_t type, uint32_t key, uint32_t value, uint32_t max) {
  return bpfvm::test::make_map(MapSpec{"m", type, key, value, max});
}

// key = *(u32 *)mem; r0 = lookup(map, &key) ? *(u64 *)r0 + 1 : 0 — with the map's lddw marked in
// Program::map_refs (as LoadedObject::program marks it), optionally with a jump landing on the call.
Program lookup_program(Map* m, bool jump_into) {
  std::vector<Insn> v = {I(Op::LDXW, 3, 1, 0), I(Op::STXW, 10, 3, -4), I(Op::MOV64_REG, 2, 10),
                         I(Op::ADD64_IMM, 2, 0, 0, -4)};
  Program p{"lookup", {}};
  p.insns = v;
  p.map_refs.push_back(static_cast<uint32_t>(p.insns.size()));
  p.insns.push_back(I(Op::LDDW, 1, 0, 0, static_cast<int64_t>(reinterpret_cast<uintptr_t>(m))));
  p.insns.push_back(I(Op::LDDW_HI));
  if (jump_into) {
    // if r3 != 12345 goto call; r1 = 0 (not a map: the call is then reached from two places)
    p.insns.push_back(I(Op::JNE_IMM, 3, 0, 1, 12345));
    p.insns.push_back(I(Op::MOV64_REG, 1, 1));
  }
  for (Insn in : {I(Op::CALL_HELPER, 0, 0, 0, 1), I(Op::JEQ_IMM, 0, 0, 2, 0), I(Op::LDXDW, 0, 0, 0),
                  I(Op::ADD64_IMM, 0, 0, 0, 1), I(Op::EXIT)})
    p.insns.push_back(in);
  return p;
}
}  // namespace

// bpf_map_lookup_elem on a map the program names by lddw: arrays inline (bounds check + address), other
// maps' own lookup called directly. Same results as the interpreter through the helper, in and out of
// range, and the pattern is not used where another path reaches the call.
TEST(Jit, MapLookupsOfKnownMapsAreInlinedOrDirect) {
  auto arr = make_map(kMapArray, 4, 8, 5);
  auto hash = make_map(kMapHash, 4, 8, 16);
  ASSERT_TRUE(arr && hash);
  for (uint32_t k = 0; k < 5; ++k) {
    uint64_t v = 100 + k;
    ASSERT_EQ(arr->update_user(&k, &v, 0), 0);
    if (k % 2) ASSERT_EQ(hash->update_user(&k, &v, 0), 0);
  }
  const HelperTable& table = HelperSet::kernel().table_for(kProgMem);
  for (Map* m : {arr.get(), hash.get()}) {
    for (bool jump_into : {false, true}) {
      auto jit = Executable::create(lookup_program(m, jump_into), table, jit_opts());
      ASSERT_TRUE(jit.ok()) << jit.error().to_string();
      ExecOptions io;
      auto interp = Executable::create(lookup_program(m, jump_into), table, io);
      ASSERT_TRUE(interp.ok()) << interp.error().to_string();
      for (uint32_t key : {0u, 1u, 2u, 4u, 5u, 7u, 0xffffffffu}) {
        std::vector<uint8_t> mem(4);
        std::memcpy(mem.data(), &key, 4);
        auto a = (*jit)->run_on_memory(mem.data(), mem.size());
        auto b = (*interp)->run_on_memory(mem.data(), mem.size());
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(*a, *b) << "key " << key << (m == arr.get() ? " array" : " hash") << (jump_into ? " jump" : "");
        bool present = m == arr.get() ? key < 5 : (key < 5 && key % 2);
        EXPECT_EQ(*a, present ? 101u + key : 0u) << "key " << key;
      }
    }
  }
  // The array lookup is inline: no call instruction in the code when the pattern applies.
  auto jit = Executable::create(lookup_program(arr.get(), false), table, jit_opts());
  ASSERT_TRUE(jit.ok());
  auto listing = jit_disassemble(**jit);
  ASSERT_TRUE(listing.ok());
  EXPECT_EQ(listing->find(":  call"), std::string::npos) << *listing;
  // With no call left, the program is direct code (no RunContext, Executable::run enters it).
  EXPECT_NE((*jit)->engine().direct_entry(), nullptr);
  auto via_jump = Executable::create(lookup_program(arr.get(), true), table, jit_opts());
  ASSERT_TRUE(via_jump.ok());
  auto l2 = jit_disassemble(**via_jump);
  ASSERT_TRUE(l2.ok());
  EXPECT_NE(l2->find(":  call"), std::string::npos) << *l2;
  EXPECT_EQ((*via_jump)->engine().direct_entry(), nullptr);
  // A hash map's lookup stays a call: the full path (its elements need the map read section).
  auto h = Executable::create(lookup_program(hash.get(), false), table, jit_opts());
  ASSERT_TRUE(h.ok());
  EXPECT_EQ((*h)->engine().direct_entry(), nullptr);
}

namespace {
// Outer key = *(u32 *)mem, inner key = *(u32 *)(mem + 4); r0 = the inner value's first u64, or
// 0xe1 when the outer slot is empty, 0xe2 when the inner lookup finds nothing. The inner lookup's
// map is the outer lookup's result: known only when the program runs.
constexpr uint64_t kOuterEmpty = 0xe1, kInnerMiss = 0xe2;
Program map_in_map_program(Map* outer) {
  Program p{"mim", {}};
  p.insns = {I(Op::LDXW, 3, 1, 0), I(Op::LDXW, 4, 1, 4), I(Op::STXW, 10, 3, -4), I(Op::STXW, 10, 4, -8),
             I(Op::MOV64_REG, 2, 10), I(Op::ADD64_IMM, 2, 0, 0, -4)};
  p.map_refs.push_back(static_cast<uint32_t>(p.insns.size()));
  p.insns.push_back(I(Op::LDDW, 1, 0, 0, static_cast<int64_t>(reinterpret_cast<uintptr_t>(outer))));
  p.insns.push_back(I(Op::LDDW_HI));
  for (Insn in : {I(Op::CALL_HELPER, 0, 0, 0, 1), I(Op::JNE_IMM, 0, 0, 2, 0), I(Op::MOV64_IMM, 0, 0, 0, kOuterEmpty),
                  I(Op::EXIT), I(Op::MOV64_REG, 1, 0), I(Op::MOV64_REG, 2, 10), I(Op::ADD64_IMM, 2, 0, 0, -8),
                  I(Op::CALL_HELPER, 0, 0, 0, 1), I(Op::JNE_IMM, 0, 0, 2, 0), I(Op::MOV64_IMM, 0, 0, 0, kInnerMiss),
                  I(Op::EXIT), I(Op::LDXDW, 0, 0, 0), I(Op::EXIT)})
    p.insns.push_back(in);
  return p;
}

MapSpec mim_spec(uint32_t type, uint32_t max, const MapSpec& inner) {
  MapSpec s{"outer", type, 4, 4, max};
  s.inner = std::make_shared<MapSpec>(inner);
  return s;
}
}  // namespace

// A lookup on an inner map from a map-in-map lookup: plain arrays inline with the inner map's own
// size (BPF_F_INNER_MAP arrays of different max_entries in one outer map), other inner types
// (per-CPU array, hash) through the helper. Private and pinned maps, out-of-range keys on both
// levels and empty slots give the interpreter's results.
TEST(Jit, LookupsOnInnerMapsOfMapsMatchTheInterpreter) {
  struct statfs st;
  const bool can_pin = statfs("/dev/shm", &st) == 0 && static_cast<unsigned long>(st.f_type) == TMPFS_MAGIC;
  const std::string dir = "/dev/shm/bpfvm-jit-mim-" + std::to_string(getpid());
  if (can_pin) std::filesystem::create_directories(dir);
  const HelperTable& table = HelperSet::kernel().table_for(kProgMem);
  struct Inner {
    uint32_t type, value_size, flags;
    std::vector<uint32_t> sizes;  // max_entries of the inner maps put in slots 0, 1, ... (slot 3 stays empty)
  };
  const Inner inners[] = {{kMapArray, 8, kMapFInnerMap, {3, 7, 1}},
                          {kMapArray, 12, 0, {5, 5, 5}},  // stride 16
                          {kMapPercpuArray, 8, 0, {4, 4}},
                          {kMapHash, 8, 0, {8, 8}}};
  int cases = 0;
  for (const Inner& in : inners) {
    for (uint32_t outer_type : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
      for (bool pinned : {false, true}) {
        if (pinned && (!can_pin || !map_type_pinnable(in.type))) continue;
        SCOPED_TRACE(std::string(map_type_name(in.type)) + " in " + map_type_name(outer_type) +
                     (pinned ? " pinned" : " private") + " value_size " + std::to_string(in.value_size));
        MapSpec tmpl{"in", in.type, 4, in.value_size, in.sizes[0]};
        tmpl.flags = in.flags;
        const std::string tag = std::to_string(cases);
        auto make = [&](const MapSpec& s, const std::string& name) -> std::shared_ptr<Map> {
          if (!pinned) return test::make_map(s);
          auto r = create_pinned_map(s, dir + "/" + name + tag);
          EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
          return r.ok() ? *r : nullptr;
        };
        auto outer = make(mim_spec(outer_type, 4, tmpl), "outer");
        ASSERT_TRUE(outer);
        std::vector<std::shared_ptr<Map>> held;
        for (uint32_t slot = 0; slot < in.sizes.size(); ++slot) {
          MapSpec s = tmpl;
          s.max_entries = in.sizes[slot];
          auto m = make(s, "in" + std::to_string(slot));
          ASSERT_TRUE(m);
          for (uint32_t k = 0; k < s.max_entries; ++k) {
            std::vector<uint64_t> v(m->user_value_size() / 8 + 1, 1000 * (slot + 1) + k);
            ASSERT_EQ(m->update_user(&k, v.data(), 0), 0);
          }
          uint32_t id = m->id();
          ASSERT_EQ(outer->update_user(&slot, &id, 0), 0);
          held.push_back(std::move(m));
        }
        auto jit = Executable::create(map_in_map_program(outer.get()), table, jit_opts());
        ASSERT_TRUE(jit.ok()) << jit.error().to_string();
        ExecOptions io;
        auto interp = Executable::create(map_in_map_program(outer.get()), table, io);
        ASSERT_TRUE(interp.ok()) << interp.error().to_string();
        for (uint32_t ok : {0u, 1u, 2u, 3u, 4u, 0xffffffffu}) {
          for (uint32_t ik : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 0x80000000u, 0xffffffffu}) {
            uint32_t mem[2] = {ok, ik};
            MapReadSection rs;
            auto a = (*jit)->run_on_memory(reinterpret_cast<uint8_t*>(mem), sizeof mem);
            auto b = (*interp)->run_on_memory(reinterpret_cast<uint8_t*>(mem), sizeof mem);
            ASSERT_TRUE(a.ok() && b.ok());
            EXPECT_EQ(*a, *b) << "outer key " << ok << " inner key " << ik;
            uint64_t want = kOuterEmpty;
            if (ok < in.sizes.size()) want = ik < in.sizes[ok] ? 1000 * (ok + 1) + ik : kInnerMiss;
            EXPECT_EQ(*a, want) << "outer key " << ok << " inner key " << ik;
          }
        }
        ++cases;
      }
    }
  }
  if (can_pin) std::filesystem::remove_all(dir);
  EXPECT_GE(cases, 8);
}
