// Agreement with the Linux verifier (privileged rules): every program of the sample corpus and of the
// test programs is judged by bpfvm and by the kernel, loaded there as libbpf loads it (maps, BTF,
// func_info, line_info). Programs the running kernel cannot judge — a program type, map type or helper
// it does not offer, as its probe says — are counted and listed, not compared. Any other
// disagreement fails the test unless it is of a kind docs/verifier-differences.md documents.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <functional>
#include <map>

#include <bpf/btf.h>

#include "bpfvm/kernel_probe.hpp"
#include "test_util.hpp"
#include "verifier_cases.hpp"
#include "verifier_util.hpp"

namespace bpfvm {
namespace {

struct CorpusAgreement {
  int judged = 0, agree = 0;
  int untyped = 0;                              // no program type to verify as
  std::map<std::string, int> not_judged;        // reason -> programs
  std::vector<std::string> not_judged_programs; // "file:program (reason)"
  std::vector<std::string> unexplained;
  std::vector<std::string> judged_programs;     // "file:program"
};

// True when the program calls a global (non-static) function: with the object's BTF the kernel
// verifies such a function once, on its own, with its arguments typed from its BTF prototype (a
// pointer argument may be NULL); bpfvm verifies every function in its caller's context.
bool calls_global_function(const Object& obj, const ObjectProgram& p) {
  auto* btf = static_cast<const struct btf*>(obj.btf_handle());
  if (!btf) return false;
  for (const FuncInfo& f : p.func_info) {
    if (f.insn == 0) continue;
    const struct btf_type* t = btf__type_by_id(btf, f.btf_type_id);
    if (t && btf_is_func(t) && btf_vlen(t) == BTF_FUNC_GLOBAL) return true;
  }
  return false;
}

// Documented kinds of disagreement (docs/verifier-differences.md), recognised by what the program is
// and what the verdicts say, never by file name. "" when the disagreement is of no documented kind.
std::string documented_kind(const Object& obj, const ObjectProgram& p, bool ours_accepted, bool kernel_accepted) {
  if (ours_accepted && !kernel_accepted && calls_global_function(obj, p))
    return "global function verified on its own from its BTF prototype";
  return "";
}

// Programs of the corpus for which `only` (when given) is true.
CorpusAgreement agree_on_corpus(const std::function<bool(const vtest::CorpusProgram&)>& only = {}) {
  CorpusAgreement out;
  auto shared = test::shared_dir();
  std::vector<std::filesystem::path> dirs;
  if (!shared.empty()) dirs.push_back(shared / "samples");
  dirs.push_back(BPFVM_PROGS_DIR);
  auto base = shared.empty() ? std::filesystem::path(BPFVM_PROGS_DIR) : shared;
  auto corpus = vtest::load_corpus(dirs, base);
  EXPECT_FALSE(corpus.empty());
  for (const auto& cp : corpus) {
    if (only && !only(cp)) continue;
    VerifyOptions o = verify_options_for(*cp.object, cp.program, RuleSet::Privileged);
    if (!o.type) {
      ++out.untyped;
      continue;
    }
    std::string key = cp.file + ":" + cp.program.name;
    std::string build = vtest::kernel_build_difference(cp.program, o.type->type);
    if (!build.empty()) {
      ++out.not_judged[build.substr(0, build.find(" ("))];
      out.not_judged_programs.push_back(key + " (" + build + ")");
      continue;
    }
    auto k = vtest::kernel_verify_object(*cp.object, cp.program, 1, false);
    if (!k.ran) {
      ++out.not_judged[k.skip.substr(0, k.skip.find(" ("))];
      out.not_judged_programs.push_back(key + " (" + k.skip + ")");
      continue;
    }
    auto ours = verify(cp.program.insns, o);
    EXPECT_TRUE(ours.ok()) << cp.file;
    if (!ours.ok()) continue;
    ++out.judged;
    out.judged_programs.push_back(key);
    if (k.accepted == ours->accepted) {
      ++out.agree;
      continue;
    }
    std::string kerr = vtest::kernel_error_line(k.log);
    std::string line = fmt::format("{} ({}): bpfvm {} [{}], kernel {} [{}]", key, cp.program.type_name(),
                                   ours->accepted ? "accepts" : "rejects", ours->error.to_string(),
                                   k.accepted ? "accepts" : "rejects", kerr);
    std::string kind = documented_kind(*cp.object, cp.program, ours->accepted, k.accepted);
    std::printf("  disagreement: %s%s\n", line.c_str(), kind.empty() ? "" : (" (documented: " + kind + ")").c_str());
    if (kind.empty()) out.unexplained.push_back(line);
  }
  std::printf("verifier vs kernel: %d of %d programs agree (%d without a program type)\n", out.agree, out.judged,
              out.untyped);
  for (const auto& [why, n] : out.not_judged) std::printf("  not judged (%d): %s\n", n, why.c_str());
  return out;
}

TEST(VerifierKernel, AgreesOnCorpus) {
  if (!kernel::available()) GTEST_SKIP() << "kernel verifier unavailable: " << kernel::unavailable_reason();
  auto r = agree_on_corpus();
  EXPECT_GT(r.judged, 0);
  EXPECT_TRUE(r.unexplained.empty()) << r.unexplained.size() << " undocumented disagreements";
}

// The data-driven cases (tests/verifier_cases) with a kernel program type: the kernel gives each the
// verdict its privileged expectation says (cases marked `kernel: skip` say why they are not compared).
TEST(VerifierKernel, AgreesOnCases) {
  if (!kernel::available()) GTEST_SKIP() << "kernel verifier unavailable: " << kernel::unavailable_reason();
  auto cases = vtest::load_cases(std::filesystem::path(BPFVM_SOURCE_DIR) / "tests" / "verifier_cases");
  int judged = 0, agree = 0;
  std::map<std::string, int> not_judged;
  for (const auto& c : cases) {
    const ProgTypeInfo* t = find_prog_type(c.type);
    if (!c.kernel || !c.error.empty() || !t || t->type == kProgMem) continue;
    auto k = vtest::kernel_verify(c.insns, t->type, c.maps, {}, {}, 1);
    if (!k.ran) {
      not_judged[k.skip]++;
      continue;
    }
    ++judged;
    if (k.accepted == c.privileged.accept) {
      ++agree;
      continue;
    }
    ADD_FAILURE() << c.where << ": " << c.name << ": expected " << (c.privileged.accept ? "accept" : "reject")
                  << ", the kernel " << (k.accepted ? "accepts" : "rejects: " + vtest::kernel_error_line(k.log));
  }
  std::printf("verifier cases vs kernel: %d of %d agree\n", agree, judged);
  for (const auto& [why, n] : not_judged) std::printf("  not judged (%d): %s\n", n, why.c_str());
  EXPECT_GT(judged, 0);
}

// The probe decides what is compared: hiding a helper the kernel does offer (as a kernel built without
// it would) takes every program that calls it out of the comparison, with the reason, and the
// comparison still passes.
TEST(KernelProbe, HidingAHelperMakesComparisonsAdapt) {
  if (!kernel::available()) GTEST_SKIP() << "kernel verifier unavailable: " << kernel::unavailable_reason();
  const int32_t helper = kernel_helper_id("bpf_xdp_adjust_head");
  ASSERT_GT(helper, 0);
  if (kernel::probe_helper(kProgXdp, helper).offer != kernel::Offer::Yes)
    GTEST_SKIP() << "this kernel does not offer bpf_xdp_adjust_head to XDP: nothing to hide";
  kernel::hide_helper(kProgXdp, helper);
  struct Unhide {
    ~Unhide() { kernel::unhide_all(); }
  } unhide;
  EXPECT_EQ(kernel::probe_helper(kProgXdp, helper).offer, kernel::Offer::No);
  EXPECT_EQ(kernel::probe_helper(kProgSchedCls, kernel_helper_id("bpf_skb_load_bytes")).offer, kernel::Offer::Yes);
  // The programs that call it, and as many that do not (the first of each object's other programs).
  auto calls = [helper](const ObjectProgram& p) {
    for (const Insn& in : p.insns)
      if (in.op == Op::CALL_HELPER && in.imm == helper) return true;
    return false;
  };
  auto r = agree_on_corpus([&](const vtest::CorpusProgram& cp) {
    if (calls(cp.program)) return true;
    for (const auto& other : cp.object->programs)
      if (calls(other)) return other.name != cp.program.name;
    return false;
  });
  EXPECT_TRUE(r.unexplained.empty()) << r.unexplained.size() << " undocumented disagreements";
  int hidden = 0;
  for (const auto& p : r.not_judged_programs)
    if (p.find("bpf_xdp_adjust_head#44 to xdp") != std::string::npos) ++hidden;
  EXPECT_GT(hidden, 0) << "no corpus program calls bpf_xdp_adjust_head from XDP: the test proves nothing";
  EXPECT_GT(r.judged, 0);
  // The same switch through the raw loader the other comparisons use.
  RawInsn prog[3];
  prog[0].code = 0x85;
  prog[0].imm = helper;
  prog[1].code = 0xb7;
  prog[2].code = 0x95;
  auto lr = kernel::load_program(prog, kProgXdp, 1);
  EXPECT_FALSE(lr.fd);
  EXPECT_NE(lr.not_offered.find("bpf_xdp_adjust_head"), std::string::npos) << lr.not_offered;
}

TEST(KernelProbe, ClassifiesTheKernelsAnswers) {
  if (!kernel::available()) GTEST_SKIP() << "kernel unavailable: " << kernel::unavailable_reason();
  // Every kernel with BPF has socket filters, arrays and bpf_map_lookup_elem for them.
  EXPECT_EQ(kernel::probe_prog_type(kProgSocketFilter).offer, kernel::Offer::Yes);
  EXPECT_EQ(kernel::probe_map_type(kMapArray).offer, kernel::Offer::Yes);
  EXPECT_EQ(kernel::probe_helper(kProgSocketFilter, kernel_helper_id("bpf_map_lookup_elem")).offer,
            kernel::Offer::Yes);
  // No kernel gives a socket filter bpf_xdp_adjust_head, nor knows helper 100000.
  auto xdp_only = kernel::probe_helper(kProgSocketFilter, kernel_helper_id("bpf_xdp_adjust_head"));
  EXPECT_EQ(xdp_only.offer, kernel::Offer::No);
  EXPECT_NE(xdp_only.detail.find("cannot use helper"), std::string::npos) << xdp_only.detail;
  EXPECT_EQ(kernel::probe_helper(kProgSocketFilter, 100000).offer, kernel::Offer::No);
  // A program type number no kernel has.
  EXPECT_EQ(kernel::probe_prog_type(9999).offer, kernel::Offer::No);
  std::string why;
  EXPECT_FALSE(kernel::hide_from_spec("nosuchtype:bpf_ktime_get_ns", &why));
  EXPECT_NE(why.find("nosuchtype"), std::string::npos);
  EXPECT_FALSE(kernel::hide_from_spec("xdp:bpf_no_such_helper", &why));
  EXPECT_NE(why.find("bpf_no_such_helper"), std::string::npos);
}

}  // namespace
}  // namespace bpfvm
