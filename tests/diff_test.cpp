// Differential testing: random valid programs (tests/diff_gen.hpp) run in the checked interpreter and
// the JIT (plain, hardened, without BMI2), comparing the result, r0 and memory (which holds a copy of
// the stack at the end). Where the kernel is usable, the kernel-acceptable variants also run through
// BPF_PROG_TEST_RUN as XDP programs and the kernel's verdict and results are compared.
//
//   BPFVM_DIFF_COUNT=N        programs for Diff.InterpreterVsJit (default 3000)
//   BPFVM_DIFF_SEED=S         first seed (default 1); program k uses seed S + k
//   BPFVM_DIFF_KERNEL_COUNT=N programs for Diff.KernelAgrees (default 300)
// Millions: BPFVM_DIFF_COUNT=1000000 BPFVM_DIFF_SEED=$RANDOM build/bpfvm_tests --gtest_filter='Diff.InterpreterVsJit'
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstdlib>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/jit.hpp"
#include "diff_gen.hpp"
#include "kernel/oracle.hpp"

using namespace bpfvm;

namespace {

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : def;
}

struct Outcome {
  bool ok = false;
  ErrorCode code = ErrorCode::Ok;
  std::string error;
  uint64_t r0 = 0;
  std::vector<uint8_t> mem;
};

Outcome run_one(const std::vector<Insn>& prog, const std::vector<uint8_t>& mem0, ExecOptions opts) {
  Outcome o;
  auto exe = Executable::create(Program{"diff", prog}, diffgen::helpers(), opts);
  if (!exe) {
    o.code = exe.error().code;
    o.error = "create: " + exe.error().to_string();
    return o;
  }
  o.mem = mem0;
  auto r = (*exe)->run_on_memory(o.mem.data(), o.mem.size());
  if (!r) {
    o.code = r.error().code;
    o.error = r.error().to_string();
    return o;
  }
  o.ok = true;
  o.r0 = *r;
  return o;
}

std::string first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) return "byte " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
  return a.size() == b.size() ? "" : "sizes differ";
}

// Compares one program in the interpreter and the JIT; returns "" or a description of the mismatch.
std::string compare(const std::vector<Insn>& prog, const std::vector<uint8_t>& mem0, bool harden, bool bmi2) {
  ExecOptions ref;
  ref.checked = true;  // a generator bug (out-of-bounds access) shows up as a MemoryFault here
  Outcome a = run_one(prog, mem0, ref);
  if (!a.ok && a.code == ErrorCode::MemoryFault) return "generator bug: " + a.error;
  ExecOptions jo;
  jo.engine = EngineKind::Jit;
  jo.jit_harden = harden;
  bool prev = jit_set_use_bmi2(bmi2);
  Outcome b = run_one(prog, mem0, jo);
  jit_set_use_bmi2(prev);
  if (a.ok != b.ok) return "interp " + (a.ok ? "ok" : a.error) + " / jit " + (b.ok ? "ok" : b.error);
  if (!a.ok) return a.code == b.code ? "" : "error codes differ: " + a.error + " / " + b.error;
  if (a.r0 != b.r0) return "r0 differs: interp " + std::to_string(a.r0) + " jit " + std::to_string(b.r0);
  if (a.mem != b.mem) return "memory differs at " + first_difference(a.mem, b.mem);
  return "";
}

std::string listing(const std::vector<Insn>& prog) { return disassemble(prog); }

}  // namespace

TEST(Diff, InterpreterVsJit) {
  uint64_t count = env_u64("BPFVM_DIFF_COUNT", 3000);
  uint64_t seed0 = env_u64("BPFVM_DIFF_SEED", 1);
  int failures = 0;
  uint64_t errors = 0;
  for (uint64_t k = 0; k < count && failures < 5; ++k) {
    uint64_t seed = seed0 + k;
    diffgen::Generator gen(seed, k % 3 == 0);
    auto g = gen.generate();
    bool harden = k % 4 == 1;
    bool bmi2 = k % 5 != 2;
    std::string why = compare(g.vm, g.mem, harden, bmi2);
    if (!why.empty()) {
      ++failures;
      ADD_FAILURE() << "seed " << seed << (harden ? " hardened" : "") << (bmi2 ? "" : " no-bmi2") << ": " << why
                    << "\n" << listing(g.vm);
    }
    ExecOptions ref;
    if (!run_one(g.vm, g.mem, ref).ok) ++errors;
  }
  std::printf("[ diff     ] %llu programs from seed %llu, %llu ended with a run-time error in both engines\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(seed0),
              static_cast<unsigned long long>(errors));
}

TEST(Diff, KernelAgrees) {
  if (!kernel::available()) GTEST_SKIP() << "bpf() unavailable: " << kernel::unavailable_reason();
  uint64_t count = env_u64("BPFVM_DIFF_KERNEL_COUNT", 300);
  uint64_t seed0 = env_u64("BPFVM_DIFF_SEED", 1) + 1000000;
  uint64_t accepted = 0, compared = 0;
  std::string first_reject;
  int failures = 0;
  for (uint64_t k = 0; k < count && failures < 5; ++k) {
    uint64_t seed = seed0 + k;
    diffgen::Generator gen(seed, true);
    auto g = gen.generate();
    auto raw = encode(g.kernel);
    auto lr = kernel::load_program(raw, BPF_PROG_TYPE_XDP, 1);
    if (!lr.fd) {
      if (std::getenv("BPFVM_DIFF_VERBOSE")) {
        auto end = lr.log.rfind("processed");
        auto line_end = end == std::string::npos ? lr.log.size() : end;
        auto start = lr.log.rfind('\n', line_end >= 2 ? line_end - 2 : 0);
        std::printf("reject %llu: %s\n", (unsigned long long)seed, lr.log.substr(start == std::string::npos ? 0 : start + 1, line_end - start).c_str());
      }
      if (first_reject.empty())
        first_reject = "seed " + std::to_string(seed) + ": errno " + std::to_string(lr.err) + "\n" +
                       lr.log.substr(lr.log.size() > 1500 ? lr.log.size() - 1500 : 0);
      continue;
    }
    ++accepted;
    auto tr = kernel::test_run(lr.fd.get(), g.mem, {}, 1, g.mem.size() + 256);
    if (tr.err) {
      ADD_FAILURE() << "seed " << seed << ": BPF_PROG_TEST_RUN failed with errno " << tr.err;
      ++failures;
      continue;
    }
    ExecOptions jo;
    jo.engine = EngineKind::Jit;
    Outcome j = run_one(g.vm, g.mem, jo);
    ExecOptions io;
    io.checked = true;
    Outcome i = run_one(g.vm, g.mem, io);
    ASSERT_TRUE(i.ok) << "seed " << seed << ": " << i.error;
    ASSERT_TRUE(j.ok) << "seed " << seed << ": " << j.error;
    ++compared;
    std::string why;
    if (tr.retval != static_cast<uint32_t>(j.r0))
      why = "retval: kernel " + std::to_string(tr.retval) + " jit " + std::to_string(static_cast<uint32_t>(j.r0));
    else if (tr.data_out != j.mem)
      why = "packet differs (kernel vs jit) at " + first_difference(tr.data_out, j.mem);
    else if (i.r0 != j.r0 || i.mem != j.mem)
      why = "interpreter and JIT differ";
    if (!why.empty()) {
      ++failures;
      ADD_FAILURE() << "seed " << seed << ": " << why << "\n" << listing(g.vm);
    }
  }
  std::printf("[ diff     ] kernel: %llu of %llu generated XDP programs accepted by the verifier, %llu compared\n",
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(compared));
  if (!first_reject.empty()) std::printf("[ diff     ] first rejection: %s\n", first_reject.c_str());
  RecordProperty("kernel_accepted", static_cast<int>(accepted));
  EXPECT_GT(accepted * 2, count) << "the generator should produce mostly kernel-acceptable programs";
}
