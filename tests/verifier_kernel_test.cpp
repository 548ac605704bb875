// Agreement with the Linux verifier (privileged rules): every program of the sample corpus and of the
// test programs is judged by bpfvm and by the kernel; the test prints how many agree and fails on a
// disagreement that docs/verifier-differences.md does not list.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "test_util.hpp"
#include "verifier_util.hpp"

namespace bpfvm {
namespace {

// Disagreements explained in docs/verifier-differences.md: "file:program".
const char* const kKnownDifferences[] = {
    // Helpers this kernel's configuration withholds (lockdown / no CONFIG_BPF_KPROBE_OVERRIDE).
    "samples/linux/test_probe_write_user_kern.o:bpf_prog1",
    "samples/linux/tracex7_kern.o:bpf_prog1",
    "samples/new_linux/tracex7_kern.o:bpf_prog1",
    // The kernel wants the object's BTF (spin locks, func_info), which this test does not load.
    "ld_multi.bpf.o:xdp_main",
    "ld_multi.bpf.o:xdp_second",
};

bool known(const std::string& key) {
  for (std::string k : kKnownDifferences)
    if (key.size() >= k.size() && key.compare(key.size() - k.size(), k.size(), k) == 0) return true;
  return false;
}

TEST(VerifierKernel, AgreesOnCorpus) {
  if (!kernel::available()) GTEST_SKIP() << "kernel verifier unavailable: " << kernel::unavailable_reason();
  auto shared = test::shared_dir();
  std::vector<std::filesystem::path> dirs;
  if (!shared.empty()) dirs.push_back(shared / "samples");
  dirs.push_back(BPFVM_PROGS_DIR);
  auto base = shared.empty() ? std::filesystem::path(BPFVM_PROGS_DIR) : shared;
  auto corpus = vtest::load_corpus(dirs, base);
  ASSERT_FALSE(corpus.empty());
  int judged = 0, agree = 0, skipped = 0;
  std::vector<std::string> unexplained;
  for (const auto& cp : corpus) {
    VerifyOptions o = verify_options_for(*cp.object, cp.program, RuleSet::Privileged);
    if (!o.type) {
      ++skipped;
      continue;
    }
    auto ours = verify(cp.program.insns, o);
    ASSERT_TRUE(ours.ok()) << cp.file;
    auto k = vtest::kernel_verify_object(*cp.object, cp.program, 1);
    if (!k.ran) {
      ++skipped;
      continue;
    }
    ++judged;
    std::string key = cp.file + ":" + cp.program.name;
    if (k.accepted == ours->accepted) {
      ++agree;
      continue;
    }
    std::string line = fmt::format("{} ({}): bpfvm {} [{}], kernel {} [{}]", key, cp.program.type_name(),
                                   ours->accepted ? "accepts" : "rejects", ours->error.to_string(),
                                   k.accepted ? "accepts" : "rejects", vtest::kernel_error_line(k.log));
    // The test loads no BTF: programs with subprograms (func_info) or spin locks (map BTF) are refused
    // by the kernel for that reason alone (documented as a class).
    std::string kerr = vtest::kernel_error_line(k.log);
    bool needs_btf = !k.accepted && (kerr.find("missing btf func_info") != std::string::npos ||
                                     kerr.find("has to have BTF") != std::string::npos);
    bool documented = known(key) || needs_btf;
    std::printf("  disagreement: %s%s\n", line.c_str(), documented ? " (documented)" : "");
    if (!documented) unexplained.push_back(line);
  }
  std::printf("verifier vs kernel: %d of %d programs agree (%d not judged)\n", agree, judged, skipped);
  EXPECT_TRUE(unexplained.empty()) << unexplained.size() << " undocumented disagreements";
}

}  // namespace
}  // namespace bpfvm
