// The public bpf_conformance suite (../shared/conformance, 313 .data files) through bpfvm's own runner,
// in every engine: the unchecked interpreter, the checked interpreter and the JIT.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/vm.hpp"
#include "test_util.hpp"

using namespace bpfvm;
namespace fs = std::filesystem;

namespace {

struct ConformanceCase {
  std::string name;
  std::string asm_text;
  std::vector<uint64_t> raw;
  std::vector<uint8_t> mem;
  bool has_result = false;
  uint64_t result = 0;
  std::string error;
};

uint64_t parse_number(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 0); }

ConformanceCase parse_case(const fs::path& path) {
  ConformanceCase c;
  c.name = path.stem().string();
  std::istringstream in(test::read_text(path));
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.rfind("--", 0) == 0) {
      section = line.substr(2);
      section.erase(0, section.find_first_not_of(' '));
      continue;
    }
    std::string body = line;
    if (section != "asm") {
      if (auto h = body.find('#'); h != std::string::npos) body.erase(h);
    }
    if (section == "asm") {
      c.asm_text += line + "\n";
    } else if (section == "raw") {
      std::istringstream ws(body);
      std::string w;
      while (ws >> w) c.raw.push_back(parse_number(w));
    } else if (section == "mem") {
      std::istringstream ws(body);
      std::string w;
      while (ws >> w) c.mem.push_back(static_cast<uint8_t>(std::strtoul(w.c_str(), nullptr, 16)));
    } else if (section == "result") {
      std::istringstream ws(body);
      std::string w;
      if (ws >> w) {
        c.has_result = true;
        c.result = parse_number(w);
      }
    } else if (section == "error") {
      c.error += body;
    }
  }
  return c;
}

std::vector<fs::path> conformance_files() {
  std::vector<fs::path> files;
  fs::path dir = test::shared_dir() / "conformance";
  if (test::shared_dir().empty() || !fs::exists(dir)) return files;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".data") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

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
