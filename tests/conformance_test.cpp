// The public bpf_conformance suite (../shared/conformance, 313 .data files) through bpfvm's own runner,
// in every engine: the unchecked interpreter, the checked interpreter and the JIT.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/vm.hpp"
#include "conformance_cases.hpp"

using namespace bpfvm;
using namespace bpfvm::test;
namespace fs = std::filesystem;

namespace {

struct EngineMode {
  const char* name;
  EngineKind kind;
  bool checked;
};

class Conformance : public ::testing::TestWithParam<EngineMode> {};

TEST_P(Conformance, AllTestsPass) {
  auto files = conformance_files();
  if (files.empty()) GTEST_SKIP() << "../shared/conformance not found (set BPFVM_SHARED)";
  EngineMode mode = GetParam();
  if (mode.kind == EngineKind::Jit) {
    auto probe = Executable::create(Program{"probe", {Insn{Op::EXIT}}}, HelperTable::conformance(),
                                    ExecOptions{EngineKind::Jit});
    if (!probe && probe.error().code == ErrorCode::Unsupported) GTEST_SKIP() << probe.error().message;
  }
  int passed = 0, failed = 0;
  for (const auto& f : files) {
    ConformanceCase c = parse_case(f);
    std::vector<Insn> insns;
    if (!c.raw.empty()) {
      std::vector<uint8_t> bytes(c.raw.size() * 8);
      std::memcpy(bytes.data(), c.raw.data(), bytes.size());
      auto d = decode_bytes(bytes);
      ASSERT_TRUE(d.ok()) << c.name << ": " << d.error().to_string();
      insns = std::move(*d);
    } else {
      auto a = assemble(c.asm_text, Syntax::Conformance);
      ASSERT_TRUE(a.ok()) << c.name << ": " << a.error().to_string();
      insns = std::move(*a);
    }
    ExecOptions opts;
    opts.engine = mode.kind;
    opts.checked = mode.checked;
    auto exe = Executable::create(Program{c.name, std::move(insns)}, HelperTable::conformance(), opts);
    Result<uint64_t> r = exe ? (*exe)->run_on_memory(c.mem.empty() ? nullptr : c.mem.data(), c.mem.size())
                             : Result<uint64_t>(exe.error());
    bool ok;
    if (!c.error.empty() || !c.has_result) {
      ok = !r.ok();
    } else {
      ok = r.ok() && *r == c.result;
    }
    if (ok) {
      ++passed;
    } else {
      ++failed;
      ADD_FAILURE() << c.name << ": expected " << (c.has_result ? std::to_string(c.result) : "an error") << ", got "
                    << (r.ok() ? std::to_string(*r) : r.error().to_string());
    }
  }
  std::printf("conformance (%s): %d/%zu passed\n", mode.name, passed, files.size());
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(static_cast<size_t>(passed), files.size());
}

INSTANTIATE_TEST_SUITE_P(Engines, Conformance,
                         ::testing::Values(EngineMode{"interp", EngineKind::Interpreter, false},
                                           EngineMode{"interp-checked", EngineKind::Interpreter, true},
                                           EngineMode{"jit", EngineKind::Jit, false}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
