// Agreement with the Linux verifier on generated programs: the template generator of the soundness
// fuzz (tests/verifier_gen.hpp, memory of a known size) wrapped as XDP programs -- a prologue proves
// 64 packet bytes and hands the body r1 = data, r2 = 64, as the plain-memory type would -- and the
// very same instructions go to bpfvm's verifier (privileged rules) and to the kernel's. The test
// prints how many agree and groups the disagreements by kind; every kind must be one that
// docs/verifier-differences.md explains. BPFVM_VERIFIER_KERNEL_GEN=N judges N programs (default 400).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>

#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"
#include "bpfvm/verifier.hpp"
#include "test_util.hpp"
#include "verifier_gen.hpp"
#include "verifier_util.hpp"

namespace bpfvm {
namespace {

std::vector<Insn> wrap_as_xdp(const std::vector<Insn>& body) {
  std::vector<Insn> p = {
      Insn{Op::LDXW, 2, 1, 4, 0},       // r2 = ctx->data_end
      Insn{Op::LDXW, 1, 1, 0, 0},       // r1 = ctx->data
      Insn{Op::MOV64_REG, 3, 1, 0, 0},  // r3 = r1 + 64
      Insn{Op::ADD64_IMM, 3, 0, 0, vgen::kMemSize},
      Insn{Op::JLE_REG, 3, 2, 2, 0},    // if r3 <= r2 goto body
      Insn{Op::MOV64_IMM, 0, 0, 0, 0},
      Insn{Op::EXIT, 0, 0, 0, 0},
      Insn{Op::MOV64_IMM, 2, 0, 0, vgen::kMemSize},  // r2 = the memory's length
  };
  p.insert(p.end(), body.begin(), body.end());
  return p;
}

// The kind of a disagreement: who accepts, and the kernel's or bpfvm's message up to its first
// register number or digit (so that "R3 invalid mem access" and "R4 invalid mem access" group).
std::string kind_of(bool ours_accepts, const std::string& ours_error, const std::string& kernel_error) {
  const std::string& msg = ours_accepts ? kernel_error : ours_error;
  std::string k;
  for (char c : msg) {
    if (c == '\'' || c == '(' || c == '=' || c == ',') break;
    if (c >= '0' && c <= '9') c = 'N';
    k += c;
  }
  while (!k.empty() && k.back() == ' ') k.pop_back();
  return std::string(ours_accepts ? "bpfvm accepts, kernel: " : "kernel accepts, bpfvm: ") + k;
}

// Whether a line of the kernel's log matches `re` (each line searched on its own, so ^ is its start).
bool log_has_line(const std::string& log, const std::regex& re) {
  size_t s = 0;
  while (s < log.size()) {
    size_t e = log.find('\n', s);
    if (e == std::string::npos) e = log.size();
    if (std::regex_search(log.begin() + static_cast<std::ptrdiff_t>(s), log.begin() + static_cast<std::ptrdiff_t>(e), re))
      return true;
    s = e + 1;
  }
  return false;
}

// The kernel's log shows a division or modulo (64- or 32-bit, immediate or register divisor) whose
// result it only knows as an unknown scalar: "24: (9f) r2 %= r0 ; R0=57 R2=scalar()".
bool kernel_lost_a_quotient(const std::string& log) {
  static const std::regex re(R"(^\d+: \((3f|37|9f|97|3c|34|9c|94)\) [^;]*; .*R\d=scalar\(\))");
  return log_has_line(log, re);
}

// The kernel's log shows a sign-extending move whose result it knows only as a range: "29: (bf) r0 =
// (s8)r3 ; R0=scalar(smin=smin32=-128,smax=smax32=127)" (r3's low byte known to be 0 there).
bool kernel_lost_a_sign_extension(const std::string& log) {
  static const std::regex re(R"(^\d+: \(bf\) r\d = \(s(8|16|32)\)r\d +; .*R\d=scalar\()");
  return log_has_line(log, re);
}

// Kinds explained in docs/verifier-differences.md ("Generated programs").
bool documented_kind(const std::string& k) {
  static const char* const known[] = {
      // decode() refuses reserved fields in every instruction (bad input gets an error naming it);
      // the kernel checks most classes only on instructions its walk visits, so a reserved field in
      // code no path reaches passes there.
      "kernel accepts, bpfvm: decode refuses a reserved field",
      // The kernel (6.18) does not track BPF_DIV/BPF_MOD: the result is an unknown scalar, so a later
      // pointer offset derived from it is variable there; bpfvm computes constants and bounds.
      "bpfvm accepts, kernel: lost a division or modulo result",
      // The kernel sign-extends a range (s8 of [0, 0xff00] is [-128, 127]); bpfvm keeps the known
      // bits (the low byte of x << 8 is 0, so (s8) gives 0).
      "bpfvm accepts, kernel: lost a sign extension's known bits",
  };
  for (const char* s : known)
    if (k == s) return true;
  return false;
}

TEST(VerifierKernel, AgreesOnGeneratedPrograms) {
  if (!kernel::available()) GTEST_SKIP() << "kernel verifier unavailable: " << kernel::unavailable_reason();
  int count = 400;
  if (const char* e = std::getenv("BPFVM_VERIFIER_KERNEL_GEN")) count = std::max(1, std::atoi(e));
  uint64_t seed = 1234;
  if (const char* e = std::getenv("BPFVM_VERIFIER_KERNEL_GEN_SEED")) seed = std::strtoull(e, nullptr, 10);
  vgen::Generator gen(seed, true);
  const ProgTypeInfo* xdp = find_prog_type(static_cast<uint32_t>(kProgXdp));
  ASSERT_NE(xdp, nullptr);
  int judged = 0, agree = 0, accepted_both = 0, rejected_both = 0;
  std::map<std::string, int> kinds;
  std::map<std::string, std::string> example;
  for (int i = 0; i < count; ++i) {
    // Both verifiers judge the same bytes: bpfvm decodes what the kernel is given (the generator's IR
    // may hold fields encode() does not write, or reserved fields decode() refuses).
    std::vector<Insn> gen_ir = wrap_as_xdp(gen.generate());
    auto decoded = decode(encode(gen_ir));
    std::vector<Insn> p = decoded ? *decoded : gen_ir;
    VerifyOptions o;
    o.type = xdp;
    o.rules = RuleSet::Privileged;
    Result<VerifyReport> ours = VerifyReport{};
    if (decoded) {
      ours = verify(p, o);
      ASSERT_TRUE(ours.ok()) << ours.error().to_string();
    } else {
      VerifyReport refused;
      refused.accepted = false;
      refused.error = decoded.error();
      ours = refused;
    }
    auto k = vtest::kernel_verify(p, kProgXdp, {}, {}, {}, 1);
    if (!k.ran) continue;
    ++judged;
    if (k.accepted == ours->accepted) {
      ++agree;
      (k.accepted ? accepted_both : rejected_both) += 1;
      continue;
    }
    std::string kind = kind_of(ours->accepted, ours->error.message, vtest::kernel_error_line(k.log));
    if (ours->accepted && kernel_lost_a_quotient(k.log)) kind = "bpfvm accepts, kernel: lost a division or modulo result";
    else if (ours->accepted && kernel_lost_a_sign_extension(k.log))
      kind = "bpfvm accepts, kernel: lost a sign extension's known bits";
    if (!decoded) kind = "kernel accepts, bpfvm: decode refuses a reserved field";
    if (const char* dir = std::getenv("BPFVM_VERIFIER_KERNEL_GEN_DUMP")) {  // every disagreement, for study
      DisasmOptions d;
      std::string path = std::string(dir) + "/" + std::to_string(i) + ".txt";
      if (FILE* f = std::fopen(path.c_str(), "w")) {
        std::fprintf(f, "%s\n%s\n%s\nkernel:\n%s", kind.c_str(), disassemble(p, d).c_str(),
                     ours->accepted ? "bpfvm accepts" : format_rejection(*ours, p).c_str(), k.log.c_str());
        std::fclose(f);
      }
    }
    if (!kinds[kind]++) {
      DisasmOptions d;
      d.show_index = true;
      example[kind] = disassemble(p, d) + (ours->accepted ? "bpfvm accepts" : format_rejection(*ours, p)) +
                      "\nkernel: " + (k.accepted ? "accepts" : k.log);
    }
  }
  std::printf("verifier vs kernel on %d generated programs: %d agree (%d accepted by both, %d rejected by both)\n",
              judged, agree, accepted_both, rejected_both);
  int undocumented = 0;
  for (const auto& [kind, n] : kinds) {
    bool doc = documented_kind(kind);
    std::printf("  %4d  %s%s\n", n, kind.c_str(), doc ? " (documented)" : "");
    if (!doc) {
      ++undocumented;
      ADD_FAILURE() << "undocumented disagreement (" << n << " programs): " << kind << "\nexample:\n" << example[kind];
    }
  }
  EXPECT_GT(judged, count / 2);
  EXPECT_GT(accepted_both, judged / 4);  // the generator makes mostly valid programs
  EXPECT_EQ(undocumented, 0);
}

}  // namespace
}  // namespace bpfvm
