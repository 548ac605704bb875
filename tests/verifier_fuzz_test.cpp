// Soundness fuzz: programs for plain memory (no helpers) -- mostly-valid ones from templates with
// small mutations (tests/verifier_gen.hpp), and fully random ones; every program the verifier accepts
// must run in the checked interpreter on random inputs without a memory fault.
// BPFVM_VERIFIER_FUZZ=N runs N programs instead of the default (documented in docs/verifier.md).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "bpfvm/asm.hpp"
#include "bpfvm/verifier.hpp"
#include "bpfvm/vm.hpp"
#include "verifier_gen.hpp"

namespace bpfvm {
namespace {

constexpr int kMem = 64;

// A generator biased towards programs that do something with memory: bounded index arithmetic,
// comparisons, stack spills, forward branches and short loops.
std::vector<Insn> random_program(std::mt19937_64& rng) {
  std::vector<Insn> p;
  auto r = [&](uint64_t n) { return static_cast<int64_t>(rng() % n); };
  auto reg = [&]() { return static_cast<uint8_t>(r(10)); };
  auto add = [&](Op op, uint8_t dst, uint8_t src, int16_t off, int64_t imm) {
    p.push_back(Insn{op, dst, src, off, imm});
  };
  // Initialise most registers.
  for (uint8_t i = 2; i < 10; ++i)
    if (r(4)) add(Op::MOV64_IMM, i, 0, 0, r(200) - 50);
  add(Op::MOV64_IMM, 0, 0, 0, 0);
  int n = 8 + static_cast<int>(r(40));
  const Op alu[] = {Op::ADD64_IMM, Op::SUB64_IMM, Op::AND64_IMM, Op::OR64_IMM, Op::LSH64_IMM, Op::RSH64_IMM,
                    Op::ADD64_REG, Op::SUB64_REG, Op::AND64_REG, Op::MUL64_IMM, Op::MOD64_IMM, Op::DIV64_REG,
                    Op::ADD32_IMM, Op::AND32_IMM, Op::MOV64_REG, Op::MOV32_REG, Op::XOR64_REG, Op::ARSH64_IMM,
                    Op::NEG64, Op::MOD64_REG, Op::SUB32_REG, Op::LSH32_IMM, Op::MOVSX64_8, Op::BE16};
  const Op jmp[] = {Op::JEQ_IMM, Op::JNE_IMM, Op::JGT_IMM, Op::JGE_IMM, Op::JLT_IMM, Op::JLE_IMM,
                    Op::JSGT_IMM, Op::JSLT_IMM, Op::JSET_IMM, Op::JGT_REG, Op::JLT32_IMM, Op::JSGE32_IMM};
  const Op ld[] = {Op::LDXB, Op::LDXH, Op::LDXW, Op::LDXDW};
  const Op st[] = {Op::STXB, Op::STXH, Op::STXW, Op::STXDW};
  for (int i = 0; i < n; ++i) {
    switch (r(10)) {
      case 0: case 1: case 2: {
        Op op = alu[r(std::size(alu))];
        const OpInfo& info = op_info(op);
        int64_t imm = r(3) ? r(64) : r(1 << 20) - (1 << 19);
        if (op == Op::LSH64_IMM || op == Op::RSH64_IMM || op == Op::ARSH64_IMM) imm = r(64);
        if (op == Op::LSH32_IMM) imm = r(32);
        if (op == Op::MOD64_IMM && imm == 0) imm = 7;
        if (op == Op::BE16) imm = 16;
        uint8_t dst = reg();
        add(op, dst, info.uses_reg_src ? reg() : 0, op == Op::MOVSX64_8 ? 8 : 0, info.uses_reg_src ? 0 : imm);
        break;
      }
      case 3: {  // memory index: rX = r1 + (rY & mask)
        uint8_t dst = reg(), idx = reg();
        if (dst == 1) dst = 2;
        add(Op::MOV64_REG, dst, idx, 0, 0);
        add(Op::AND64_IMM, dst, 0, 0, r(2) ? 63 : 127);
        add(Op::ADD64_REG, dst, 1, 0, 0);
        break;
      }
      case 4: {  // load through a register (maybe r1, maybe a derived pointer, maybe r10)
        uint8_t base = r(3) == 0 ? 10 : reg();
        int16_t off = base == 10 ? static_cast<int16_t>(-8 * (1 + r(8))) : static_cast<int16_t>(r(72) - 4);
        add(ld[r(4)], reg(), base, off, 0);
        break;
      }
      case 5: {  // store
        uint8_t base = r(2) == 0 ? 10 : reg();
        int16_t off = base == 10 ? static_cast<int16_t>(-8 * (1 + r(8))) : static_cast<int16_t>(r(72) - 4);
        add(st[r(4)], base, reg(), off, 0);
        break;
      }
      case 6: case 7: {  // forward conditional jump
        Op op = jmp[r(std::size(jmp))];
        const OpInfo& info = op_info(op);
        add(op, reg(), info.uses_reg_src ? reg() : 0, static_cast<int16_t>(r(4)), r(80));
        break;
      }
      case 8: {  // short counted loop: rX = 0; rX += 1; if rX < K goto -2
        uint8_t c = static_cast<uint8_t>(6 + r(4));
        add(Op::MOV64_IMM, c, 0, 0, 0);
        add(Op::ADD64_IMM, c, 0, 0, 1);
        add(Op::JLT_IMM, c, 0, -2, 1 + r(20));
        break;
      }
      default: {  // compare against the memory size via r2
        uint8_t x = reg();
        add(Op::JGT_REG, x, 2, static_cast<int16_t>(r(3)), 0);
        break;
      }
    }
  }
  add(Op::EXIT, 0, 0, 0, 0);
  // Forward jumps must land inside the program.
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i].info().kind == OpKind::CondJump && p[i].off >= 0 &&
        static_cast<size_t>(i + 1 + p[i].off) >= p.size())
      p[i].off = static_cast<int16_t>(p.size() - 2 - i);
  }
  return p;
}

TEST(VerifierFuzz, AcceptedProgramsNeverFault) {
  uint64_t count = 3200;
  if (const char* env = std::getenv("BPFVM_VERIFIER_FUZZ"); env && *env) count = std::strtoull(env, nullptr, 10);
  uint64_t seed = 1;
  if (const char* env = std::getenv("BPFVM_VERIFIER_FUZZ_SEED"); env && *env) seed = std::strtoull(env, nullptr, 10);
  std::mt19937_64 rng(seed);
  const ProgTypeInfo* mem = find_prog_type(static_cast<uint32_t>(kProgMem));
  // The conformance helpers, and bpf_loop (the template generator's callbacks).
  HelperTable helpers = HelperTable::conformance();
  const auto kernel_helpers = HelperSet::kernel().table_for(kProgMem);  // find() points into it
  if (const HelperDef* loop = kernel_helpers.find(181)) helpers.add(*loop);
  ASSERT_NE(mem, nullptr);
  uint64_t accepted = 0, runs = 0;
  std::vector<uint8_t> buf(kMem);
  uint64_t generated = 0, gen_accepted = 0;
  for (uint64_t i = 0; i < count; ++i) {
    // Three programs in four from the templates (one per memory mode), one fully random.
    const bool templ = i % 4 != 3;
    const int known_mode = static_cast<int>(i % 2);
    std::vector<Insn> prog;
    if (templ) {
      vgen::Generator g(rng(), known_mode == 1);
      prog = g.generate();
      ++generated;
    } else {
      prog = random_program(rng);
    }
    if (!check_structure(prog).ok()) continue;
    for (int known = 0; known < 2; ++known) {
      if (templ && known != known_mode) continue;
      VerifyOptions o;
      o.type = mem;
      o.mem_size = known ? kMem : -1;
      o.limits.insn_budget = 200000;
      auto r = verify(prog, o);
      ASSERT_TRUE(r.ok());
      if (!r->accepted) continue;
      ++accepted;
      if (templ) ++gen_accepted;
      ExecOptions eo;
      eo.checked = true;
      eo.insn_budget = 10'000'000;
      auto exe = Executable::create(Program{"fuzz", prog}, helpers, eo);
      ASSERT_TRUE(exe.ok()) << exe.error().to_string();
      for (int k = 0; k < 4; ++k) {
        for (auto& b : buf) b = static_cast<uint8_t>(rng());
        size_t len = known ? kMem : static_cast<size_t>(rng() % (kMem + 1));
        auto res = (*exe)->run_on_memory(buf.data(), len);
        ++runs;
        if (!res.ok() && res.error().code == ErrorCode::MemoryFault) {
          FAIL() << "accepted program faults (seed " << seed << ", program " << i << ", mem "
                 << (known ? "known" : "unknown") << ", len " << len << "): " << res.error().to_string() << "\n"
                 << disassemble(prog);
        }
      }
    }
  }
  std::printf("verifier fuzz: %llu programs (%llu from templates, %llu of them accepted), %llu accepted in all, "
              "%llu checked runs, no fault\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(generated),
              static_cast<unsigned long long>(gen_accepted), static_cast<unsigned long long>(accepted),
              static_cast<unsigned long long>(runs));
  EXPECT_GT(gen_accepted, generated / 2) << "the template generator should produce mostly valid programs";
}

}  // namespace
}  // namespace bpfvm
