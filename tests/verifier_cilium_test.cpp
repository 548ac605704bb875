// Cilium's datapath programs (../shared/samples/cilium) against the running kernel's verifier, each
// loaded as iproute2 loads it (sched_cls; xdp for the bpf_xdp* objects). Where the kernel judges a
// program: the same verdict, with at most twice the kernel's processed instructions (bench_verify's
// Cilium table has the figures). Where the kernel cannot judge one (the probe says it does not
// offer a helper the program calls to its type, e.g. an XDP without bpf_xdp_adjust_meta), bpfvm still
// verifies it and must not fail for its own limits. Every program stays under 256 MiB of verifier
// state.
//
// By default (the suite stays fast) the programs the kernel needs at most 20,000 instructions for are
// compared with the recorded verdicts and instruction counts (KERNEL.tsv, kernel 6.18.44 as here;
// its "cannot use helper" rejections are a property of that kernel's build and are not judged):
// loading Cilium's objects into the kernel creates their large maps for every program, which takes
// seconds. BPFVM_CILIUM_ALL=1 runs every program against the running kernel (judged by its probe).
// bench_verify's Cilium table has the figures.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "test_util.hpp"
#include "verifier_util.hpp"

namespace bpfvm {
namespace {

struct Recorded {
  std::string verdict, error;
  uint64_t insns = 0;
};

std::map<std::pair<std::string, std::string>, Recorded> read_kernel_tsv(const std::filesystem::path& p) {
  std::map<std::pair<std::string, std::string>, Recorded> out;
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, '\t')) f.push_back(x);
    if (f.size() < 6) continue;
    out[{f[0], f[1]}] = Recorded{f[3], f.size() > 6 ? f[6] : "", std::strtoull(f[4].c_str(), nullptr, 10)};
  }
  return out;
}

// "processed N insns" of a kernel log (log level 1 or more).
uint64_t kernel_processed(const std::string& log) {
  auto pos = log.rfind("processed ");
  return pos == std::string::npos ? 0 : std::strtoull(log.c_str() + pos + 10, nullptr, 10);
}

bool own_limit(const VerifyReport& r) {
  return r.error.code == ErrorCode::Budget || r.error.message.find("memory cap") != std::string::npos;
}

TEST(VerifierCilium, AgreesWithTheKernelWithinItsEffort) {
  auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "no ../shared (set BPFVM_SHARED)";
  const auto dir = shared / "samples" / "cilium";
  if (!std::filesystem::exists(dir / "KERNEL.tsv")) GTEST_SKIP() << "no " << dir << "/KERNEL.tsv";
  const auto recorded = read_kernel_tsv(dir / "KERNEL.tsv");
  const bool all = std::getenv("BPFVM_CILIUM_ALL") != nullptr;
  const bool kernel_ok = all && kernel::available();
  auto corpus = vtest::load_corpus({dir}, dir);
  ASSERT_FALSE(corpus.empty());
  int verified = 0, judged = 0, agree = 0, not_judged = 0, heavy = 0;
  std::set<std::vector<uint64_t>> seen;  // the dsr/snat objects share programs: each is verified once
  std::vector<double> ratios;
  for (const auto& cp : corpus) {
    const std::string obj = std::filesystem::path(cp.file).filename().string();
    const std::string name = obj + ":" + cp.program.section;
    auto rec = recorded.find({obj, cp.program.section});
    ASSERT_NE(rec, recorded.end()) << name << " is not in KERNEL.tsv";
    if (!all && rec->second.insns > 20000) {
      ++heavy;
      continue;
    }
    ObjectProgram p = cp.program;
    p.type = obj.rfind("bpf_xdp", 0) == 0 ? kProgXdp : kProgSchedCls;
    std::vector<uint64_t> key{p.type};
    for (const Insn& in : p.insns)
      key.push_back(static_cast<uint64_t>(in.op) << 48 ^ static_cast<uint64_t>(in.dst) << 40 ^
                    static_cast<uint64_t>(in.src) << 32 ^ static_cast<uint64_t>(static_cast<uint16_t>(in.off)) << 16 ^
                    static_cast<uint64_t>(in.imm) * 0x9e3779b97f4a7c15ull);
    if (!seen.insert(key).second) continue;
    VerifyOptions o = verify_options_for(*cp.object, p, RuleSet::Privileged);
    ASSERT_NE(o.type, nullptr) << name;
    auto ours = verify(p.insns, o);
    ASSERT_TRUE(ours.ok()) << name;
    ++verified;
    SCOPED_TRACE(name);
    EXPECT_FALSE(own_limit(*ours)) << "bpfvm fails for its own limits: " << ours->error.to_string();
    EXPECT_LT(ours->peak_memory, 256ull << 20);
    // The kernel's verdict: the running kernel's where it can judge, else the recorded one.
    bool k_accepts;
    uint64_t k_insns = 0;
    std::string k_error;
    if (kernel_ok) {
      auto k = vtest::kernel_verify_object(*cp.object, p, 1);
      if (!k.ran) {
        // Not offered by this kernel's build (or not loadable here): bpfvm's own verdict stands,
        // within its limits (checked above).
        ++not_judged;
        std::printf("  not judged by the kernel: %s: %s; bpfvm %s\n", name.c_str(), k.skip.c_str(),
                    ours->accepted ? "accepts" : ours->error.message.c_str());
        continue;
      }
      k_accepts = k.accepted;
      k_insns = kernel_processed(k.log);
      k_error = vtest::kernel_error_line(k.log);
    } else {
      if (rec->second.verdict != "accept" && rec->second.verdict != "reject") continue;
      k_accepts = rec->second.verdict == "accept";
      k_insns = rec->second.insns;
      k_error = rec->second.error;
      if (!k_accepts && k_error.find("cannot use helper") != std::string::npos) {
        ++not_judged;  // which helpers a kernel offers is a property of its build: only a live probe says
        continue;
      }
    }
    ++judged;
    if (ours->accepted == k_accepts) ++agree;
    EXPECT_EQ(ours->accepted, k_accepts) << "bpfvm " << (ours->accepted ? "accepts" : ours->error.to_string())
                                         << "; kernel " << (k_accepts ? "accepts" : k_error);
    if (k_accepts && ours->accepted && k_insns) {
      // The effort target: at most twice the kernel's processed instructions (deterministic counts;
      // bench_verify's Cilium table has the figures).
      const double q = static_cast<double>(ours->insns_processed) / static_cast<double>(k_insns);
      ratios.push_back(q);
      EXPECT_LE(q, 2.0) << "above 2x the kernel's instructions: bpfvm " << ours->insns_processed << ", kernel "
                        << k_insns;
    }
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("cilium vs %s: %d of %d judged programs agree (%d distinct verified, %d not judged by the kernel, %d "
              "heavy ones left to BPFVM_CILIUM_ALL=1); instructions bpfvm/kernel median %.2f, max %.2f\n",
              kernel_ok ? "the running kernel" : "KERNEL.tsv", agree, judged, verified, not_judged, heavy,
              ratios.empty() ? 0.0 : ratios[ratios.size() / 2], ratios.empty() ? 0.0 : ratios.back());
  EXPECT_GT(verified, 0);
}

}  // namespace
}  // namespace bpfvm
