// bpfvm-conformance-plugin driven the way the public bpf_conformance runner drives it:
// program bytes as hex on stdin, memory as argv[1] ("01  02  ..."), options after it.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/wait.h>

#include "bpfvm/asm.hpp"
#include "conformance_cases.hpp"

using namespace bpfvm;
using namespace bpfvm::test;

namespace {

std::string plugin_path() { return std::string(BPFVM_BINARY_DIR) + "/bpfvm-conformance-plugin"; }

std::string hex(const uint8_t* p, size_t n, const char* sep) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02x", p[i]);
    s += b;
    s += sep;
  }
  return s;
}

struct Outcome {
  int status;
  std::string out;
};

Outcome run_plugin(const std::string& args, const std::string& stdin_text) {
  char tmpl[] = "/tmp/bpfvm-plugin-XXXXXX";
  int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  std::fputs(stdin_text.c_str(), f);
  std::fclose(f);
  std::string cmd = plugin_path() + " " + args + " < " + tmpl + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  int st = p ? pclose(p) : -1;
  std::remove(tmpl);
  return {WEXITSTATUS(st), out};
}

void run_all(const std::string& options) {
  auto files = conformance_files();
  if (files.empty()) GTEST_SKIP() << "../shared/conformance not found (set BPFVM_SHARED)";
  int passed = 0;
  for (const auto& path : files) {
    ConformanceCase c = parse_case(path);
    std::vector<uint8_t> bytes;
    if (!c.raw.empty()) {
      bytes.resize(c.raw.size() * 8);
      std::memcpy(bytes.data(), c.raw.data(), bytes.size());
    } else {
      auto a = assemble(c.asm_text, Syntax::Conformance);
      ASSERT_TRUE(a.ok()) << c.name;
      bytes = to_bytes(encode(*a));
    }
    std::string args;
    if (!c.mem.empty()) args = "'" + hex(c.mem.data(), c.mem.size(), "  ") + "' ";
    args += options;
    Outcome o = run_plugin(args, hex(bytes.data(), bytes.size(), ""));
    if (o.status == 0 && std::strtoull(o.out.c_str(), nullptr, 16) == c.result)
      ++passed;
    else
      ADD_FAILURE() << c.name << ": exit " << o.status << ", output '" << o.out << "', expected 0x" << std::hex
                    << c.result;
  }
  EXPECT_EQ(static_cast<size_t>(passed), files.size());
}

}  // namespace

TEST(Plugin, ConformanceSuiteInterpreter) { run_all("--interpret"); }

TEST(Plugin, ConformanceSuiteJit) {
  Outcome probe = run_plugin("--jit", "9500000000000000");
  if (probe.status != 0 && probe.out.find("not available") != std::string::npos) GTEST_SKIP() << probe.out;
  run_all("--jit");
}

TEST(Plugin, OlderRunnerConventions) {
  // Memory always in argv[1] (empty when none), options in one argument.
  Outcome empty_mem = run_plugin("'' '--interpret --checked'", "b7000000070000009500000000000000");
  EXPECT_EQ(empty_mem.status, 0) << empty_mem.out;
  EXPECT_EQ(empty_mem.out, "7\n");
  Outcome with_mem = run_plugin("'05  00  00  00  ' '--interpret'", "61100000000000009500000000000000");
  EXPECT_EQ(with_mem.status, 0) << with_mem.out;
  EXPECT_EQ(with_mem.out, "5\n");
}

TEST(Plugin, BadInputGivesOneLineAndNonZeroExit) {
  Outcome bad_hex = run_plugin("--interpret", "zz");
  EXPECT_NE(bad_hex.status, 0);
  EXPECT_NE(bad_hex.out.find("invalid hex"), std::string::npos) << bad_hex.out;
  Outcome bad_op = run_plugin("--interpret", "ff00000000000000");
  EXPECT_NE(bad_op.status, 0);
  EXPECT_NE(bad_op.out.find("unknown opcode 0xff"), std::string::npos) << bad_op.out;
  Outcome no_exit = run_plugin("--interpret", "b700000000000000");
  EXPECT_NE(no_exit.status, 0);
  EXPECT_NE(no_exit.out.find("last instruction"), std::string::npos) << no_exit.out;
  Outcome bad_opt = run_plugin("--interpret --frobnicate", "9500000000000000");
  EXPECT_NE(bad_opt.status, 0);
}
