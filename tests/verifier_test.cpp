// The verifier: abstract domain unit tests, the data-driven cases of tests/verifier_cases/, the
// sample corpus expectations (../shared/samples/README.md), facts for the context rewrite.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <random>
#include <sstream>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/verifier.hpp"
#include "test_util.hpp"
#include "verifier/scalar.hpp"
#include "verifier_cases.hpp"
#include "verifier_util.hpp"

namespace bpfvm {
namespace {

using verifier::Scalar;
using verifier::Tnum;

// ---- abstract domain ----------------------------------------------------------------------------

TEST(VerifierScalar, TnumArithmeticIsSound) {
  std::mt19937_64 rng(42);
  auto rand_tnum = [&](uint64_t& concrete) {
    uint64_t mask = rng() & rng();
    concrete = rng();
    return Tnum{concrete & ~mask, mask};
  };
  for (int i = 0; i < 20000; ++i) {
    uint64_t a, b;
    Tnum ta = rand_tnum(a), tb = rand_tnum(b);
    ASSERT_TRUE(verifier::tnum_add(ta, tb).contains_value(a + b));
    ASSERT_TRUE(verifier::tnum_sub(ta, tb).contains_value(a - b));
    ASSERT_TRUE(verifier::tnum_and(ta, tb).contains_value(a & b));
    ASSERT_TRUE(verifier::tnum_or(ta, tb).contains_value(a | b));
    ASSERT_TRUE(verifier::tnum_xor(ta, tb).contains_value(a ^ b));
    ASSERT_TRUE(verifier::tnum_mul(ta, tb).contains_value(a * b));
  }
}

// Random concrete values inside random abstract values: every ALU result and every branch refinement
// must keep the concrete value.
TEST(VerifierScalar, AluAndBranchesAreSound) {
  std::mt19937_64 rng(7);
  auto pick = [&](uint64_t& v) {
    switch (rng() % 4) {
      case 0: v = rng() % 64; return Scalar::constant(v);
      case 1: { uint64_t lo = rng() % 1000, hi = lo + rng() % 1000; v = lo + rng() % (hi - lo + 1); return Scalar::urange(lo, hi); }
      case 2: { int64_t lo = -static_cast<int64_t>(rng() % 1000), hi = lo + static_cast<int64_t>(rng() % 2000); v = static_cast<uint64_t>(lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1))); return Scalar::srange(lo, hi); }
      default: v = rng(); return Scalar::unknown();
    }
  };
  const int ops[] = {verifier::kAdd, verifier::kSub, verifier::kMul, verifier::kDiv, verifier::kOr, verifier::kAnd,
                     verifier::kLsh, verifier::kRsh, verifier::kMod, verifier::kXor, verifier::kArsh, verifier::kMov,
                     verifier::kSdiv, verifier::kSmod};
  for (int i = 0; i < 200000; ++i) {
    uint64_t a, b;
    Scalar sa = pick(a), sb = pick(b);
    bool is32 = rng() & 1;
    int op = ops[rng() % std::size(ops)];
    if (op == verifier::kLsh || op == verifier::kRsh || op == verifier::kArsh) {
      b &= is32 ? 31 : 63;
      sb = Scalar::constant(b);
    }
    uint64_t r;
    uint32_t a32 = static_cast<uint32_t>(a), b32 = static_cast<uint32_t>(b);
    switch (op) {
      case verifier::kAdd: r = is32 ? uint32_t(a32 + b32) : a + b; break;
      case verifier::kSub: r = is32 ? uint32_t(a32 - b32) : a - b; break;
      case verifier::kMul: r = is32 ? uint32_t(a32 * b32) : a * b; break;
      case verifier::kDiv: r = is32 ? (b32 ? a32 / b32 : 0) : (b ? a / b : 0); break;
      case verifier::kMod: r = is32 ? (b32 ? a32 % b32 : a32) : (b ? a % b : a); break;
      case verifier::kOr: r = is32 ? (a32 | b32) : (a | b); break;
      case verifier::kAnd: r = is32 ? (a32 & b32) : (a & b); break;
      case verifier::kXor: r = is32 ? (a32 ^ b32) : (a ^ b); break;
      case verifier::kLsh: r = is32 ? uint32_t(a32 << b) : a << b; break;
      case verifier::kRsh: r = is32 ? uint32_t(a32 >> b) : a >> b; break;
      case verifier::kArsh: r = is32 ? uint32_t(int32_t(a32) >> b) : uint64_t(int64_t(a) >> b); break;
      case verifier::kMov: r = is32 ? b32 : b; break;
      case verifier::kSdiv:
        if (is32) r = uint32_t(int32_t(b32) == 0 ? 0 : int32_t(b32) == -1 ? uint32_t(0) - a32 : uint32_t(int32_t(a32) / int32_t(b32)));
        else r = int64_t(b) == 0 ? 0 : int64_t(b) == -1 ? 0 - a : uint64_t(int64_t(a) / int64_t(b));
        break;
      default:
        if (is32) r = int32_t(b32) == 0 ? a32 : int32_t(b32) == -1 ? 0 : uint32_t(int32_t(a32) % int32_t(b32));
        else r = int64_t(b) == 0 ? a : int64_t(b) == -1 ? 0 : uint64_t(int64_t(a) % int64_t(b));
        break;
    }
    Scalar res = verifier::scalar_alu(op, sa, sb, is32);
    ASSERT_TRUE(res.valid()) << op;
    ASSERT_TRUE(res.umin <= r && r <= res.umax && res.smin <= int64_t(r) && int64_t(r) <= res.smax &&
                res.t.contains_value(r) && res.u32min <= uint32_t(r) && uint32_t(r) <= res.u32max)
        << "op " << op << (is32 ? "/32" : "") << " a=" << a << " " << sa.str() << " b=" << b << " " << sb.str()
        << " r=" << r << " got " << res.str();
    // Branches: the concrete outcome must be feasible and refinement must keep both values.
    const int conds[] = {verifier::kJeq, verifier::kJne, verifier::kJgt, verifier::kJge, verifier::kJlt,
                         verifier::kJle, verifier::kJsgt, verifier::kJsge, verifier::kJslt, verifier::kJsle};
    int c = conds[rng() % std::size(conds)];
    uint64_t x = is32 ? a32 : a, y = is32 ? b32 : b;
    bool holds;
    auto sx = [&](uint64_t v) { return is32 ? int64_t(int32_t(v)) : int64_t(v); };
    switch (c) {
      case verifier::kJeq: holds = x == y; break;
      case verifier::kJne: holds = x != y; break;
      case verifier::kJgt: holds = x > y; break;
      case verifier::kJge: holds = x >= y; break;
      case verifier::kJlt: holds = x < y; break;
      case verifier::kJle: holds = x <= y; break;
      case verifier::kJsgt: holds = sx(x) > sx(y); break;
      case verifier::kJsge: holds = sx(x) >= sx(y); break;
      case verifier::kJslt: holds = sx(x) < sx(y); break;
      default: holds = sx(x) <= sx(y); break;
    }
    Scalar ra = sa, rb = sb;
    bool feasible = verifier::refine_cond(ra, rb, holds ? c : verifier::negate_cond(c), is32);
    ASSERT_TRUE(feasible) << "cond " << c << " a=" << a << " " << sa.str() << " b=" << b << " " << sb.str();
    auto in = [](const Scalar& s, uint64_t v) {
      return s.umin <= v && v <= s.umax && s.smin <= int64_t(v) && int64_t(v) <= s.smax && s.t.contains_value(v) &&
             s.u32min <= uint32_t(v) && uint32_t(v) <= s.u32max && s.s32min <= int32_t(v) && int32_t(v) <= s.s32max;
    };
    ASSERT_TRUE(in(ra, a) && in(rb, b)) << "cond " << c << (is32 ? "/32" : "") << " a=" << a << " " << sa.str()
                                         << " -> " << ra.str() << " b=" << b << " " << sb.str() << " -> " << rb.str();
  }
}

// ---- data-driven cases --------------------------------------------------------------------------

TEST(VerifierCases, AllCasesMatchTheirExpectations) {
  auto cases = vtest::load_cases(std::filesystem::path(BPFVM_SOURCE_DIR) / "tests" / "verifier_cases");
  ASSERT_GT(cases.size(), 40u);
  int checked = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.where + ": " + c.name);
    ASSERT_TRUE(c.error.empty()) << c.error;
    for (RuleSet rules : {RuleSet::Privileged, RuleSet::Strict}) {
      const vtest::Expect& e = rules == RuleSet::Privileged ? c.privileged : c.strict;
      auto o = c.options(rules);
      auto r = verify(c.insns, o);
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(r->accepted, e.accept) << rule_set_name(rules) << ": " << r->error.to_string();
      if (!e.accept && !r->accepted && !e.message.empty())
        EXPECT_NE(r->error.message.find(e.message), std::string::npos)
            << rule_set_name(rules) << ": message '" << r->error.message << "' lacks '" << e.message << "'";
      if (!r->accepted) EXPECT_FALSE(r->explanation.empty());
      ++checked;
    }
  }
  std::printf("verifier cases: %d checks in %zu cases\n", checked, cases.size());
}

// ---- the sample corpus --------------------------------------------------------------------------

TEST(VerifierSamples, RealWorldObjectsAreAccepted) {
  auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found";
  auto corpus = vtest::load_corpus({shared / "samples" / "linux", shared / "samples" / "new_linux",
                                    shared / "samples" / "suricata"},
                                   shared);
  ASSERT_GT(corpus.size(), 100u);
  // Programs the kernel here refuses too (docs/verifier-differences.md): typed by section names that
  // do not fit them, or using helpers this kernel does not offer.
  const std::set<std::string> skip = {
      "samples/linux/test_cgrp2_tc_kern.o:handle_egress",
  };
  int accepted = 0, total = 0;
  for (const auto& cp : corpus) {
    ObjectProgram p = cp.program;
    // Sections whose names say nothing (old iproute2 tc samples): they are tc classifiers.
    if (!section_prog_type(p.section).known) p.type = kProgSchedCls;
    VerifyOptions o = verify_options_for(*cp.object, p, RuleSet::Privileged);
    if (!o.type) continue;
    std::string key = cp.file + ":" + cp.program.name;
    if (skip.count(key)) continue;
    auto r = verify(p.insns, o);
    ASSERT_TRUE(r.ok());
    ++total;
    if (r->accepted) ++accepted;
    else ADD_FAILURE() << key << ": " << r->error.to_string();
  }
  std::printf("samples accepted (privileged): %d of %d\n", accepted, total);
}

TEST(VerifierSamples, BuiltToBreakARuleAreRejectedUnderStrict) {
  auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found";
  // object -> the text the rejection must contain
  const std::vector<std::pair<std::string, std::string>> expect = {
      {"ctxoffset", "modified ctx"},
      {"nullmapref", "map_value_or_null"},
      {"packet_overflow", "invalid access to packet"},
      {"packet_reallocate", "socket_filter"},
      {"tail_call_bad", "cannot pass map_type"},
      {"ringbuf_uninit", "invalid indirect read from stack"},
      {"badmapptr", "pointer arithmetic on map_ptr"},
      {"exposeptr", "leaks addr"},
      {"exposeptr2", "leaks addr"},
      {"mapvalue-overrun", "invalid access to map value"},
      {"badhelpercall", "invalid stack"},
      {"wronghelper", "not allowed to call"},
      {"mapoverflow", "out of range of array map"},
      {"mapunderflow", "out of range of array map"},
  };
  for (const auto& [name, text] : expect) {
    SCOPED_TRACE(name);
    LoadOptions lo;
    lo.default_type = vtest::kFallbackType;
    auto obj = load_object_file((shared / "samples" / "build" / (name + ".o")).string(), lo);
    ASSERT_TRUE(obj.ok()) << obj.error().to_string();
    bool rejected = false;
    std::string msgs;
    for (auto p : obj->programs) {
      if (!p.type) p.type = vtest::kFallbackType;
      auto r = verify(p.insns, verify_options_for(*obj, p, RuleSet::Strict));
      ASSERT_TRUE(r.ok());
      if (!r->accepted) {
        msgs += r->error.to_string() + "\n";
        if (r->error.message.find(text) != std::string::npos) rejected = true;
      }
    }
    EXPECT_TRUE(rejected) << "expected a rejection mentioning '" << text << "', got:\n" << msgs;
  }
}

// Path-sensitive precision: a register needed exactly on one path (in tracex3's log2 histogram, when
// the delta is 0 a later branch is decided) is not needed on the others, so their states prune; a
// path-insensitive slice (since removed) processed 1,759 instructions here in two rounds, the kernel 397.
TEST(VerifierSamples, PrecisionIsMarkedAlongThePathThatNeedsIt) {
  auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found";
  auto obj = load_object_file((shared / "samples" / "linux" / "tracex3_kern.o").string());
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  const ObjectProgram* prog = nullptr;
  for (const auto& p : obj->programs)
    if (p.name == "bpf_prog2") prog = &p;
  ASSERT_NE(prog, nullptr);
  auto r = verify(prog->insns, verify_options_for(*obj, *prog));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->accepted) << r->error.to_string();
  EXPECT_LT(r->insns_processed, 400u) << "processed " << r->insns_processed;
}

TEST(VerifierSamples, RejectionShowsTheSourceLine) {
  auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found";
  auto obj = load_object_file((shared / "samples" / "build" / "packet_overflow.o").string());
  ASSERT_TRUE(obj.ok());
  const auto& p = obj->programs[0];
  auto r = verify(p.insns, verify_options_for(*obj, p));
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->accepted);
  EXPECT_NE(r->error.source_line.find("packet_overflow.c"), std::string::npos) << r->error.source_line;
  std::string text = format_rejection(*r, p.insns);
  EXPECT_NE(text.find("rejected at insn"), std::string::npos) << text;
  EXPECT_NE(text.find("why:"), std::string::npos) << text;
  EXPECT_NE(text.find("source:"), std::string::npos) << text;
}

// ---- facts and logs -----------------------------------------------------------------------------

TEST(VerifierFacts, ContextBaseFactsDriveTheRewrite) {
  auto insns = assemble("r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\n*(u64 *)(r10 -8) = r1\n"
                        "r4 = *(u64 *)(r10 -8)\nr0 = *(u32 *)(r4 +12)\nr0 = 2\nexit\n",
                        Syntax::Kernel);
  ASSERT_TRUE(insns.ok()) << insns.error().to_string();
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgXdp));
  auto r = verify(*insns, o);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->accepted) << r->error.to_string();
  auto facts = r->ctx_base_facts();
  EXPECT_EQ(facts[0], BaseFact::Ctx);
  EXPECT_EQ(facts[1], BaseFact::Ctx);
  EXPECT_EQ(facts[2], BaseFact::NotCtx);  // the stack
  EXPECT_EQ(facts[4], BaseFact::Ctx);     // filled from the stack
  EXPECT_TRUE(r->facts[0].in_bounds);
  auto rewritten = rewrite_ctx_accesses(*insns, *o.type, &facts);
  ASSERT_TRUE(rewritten.ok()) << rewritten.error().to_string();
  EXPECT_EQ((*rewritten)[0].op, Op::LDXDW);  // xdp_md.data -> the native 8-byte pointer slot
}

TEST(VerifierLog, LevelTwoPrintsStatesInKernelStyle) {
  auto insns = assemble("r2 = *(u32 *)(r1 +0)\nr0 = 2\nexit\n", Syntax::Kernel);
  ASSERT_TRUE(insns.ok());
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgXdp));
  o.log_level = 2;
  auto r = verify(*insns, o);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->log.find("R1=ctx() R10=fp0"), std::string::npos) << r->log;
  EXPECT_NE(r->log.find("R2=pkt(r=0)"), std::string::npos) << r->log;
  EXPECT_NE(r->log.find("processed 3 insns"), std::string::npos) << r->log;
}

// ---- hostile programs ---------------------------------------------------------------------------

TEST(VerifierHostile, StateExplosionEndsWithinBudget) {
  // 40 independent two-way branches, each writing a different value: 2^40 paths without pruning.
  std::string text = "r6 = 0\n";
  for (int i = 0; i < 40; ++i)
    text += "call bpf_get_prandom_u32\nif r0 > 100 goto +1\nr6 += " + std::to_string(i + 1) + "\n";
  text += "r0 = 2\nexit\n";
  auto insns = assemble(text, Syntax::Kernel, [](std::string_view n) { return kernel_helper_id(n); });
  ASSERT_TRUE(insns.ok()) << insns.error().to_string();
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgXdp));
  auto r = verify(*insns, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->accepted) << r->error.to_string();  // r6 is never used: pruning collapses the paths
  EXPECT_LT(r->insns_processed, 100000u);
}

TEST(VerifierHostile, HugeLoopIsRejectedWithinBudget) {
  auto insns = assemble("r1 = 0\nr1 += 1\nif r1 < 100000000 goto -2\nr0 = 2\nexit\n", Syntax::Kernel);
  ASSERT_TRUE(insns.ok());
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgXdp));
  auto r = verify(*insns, o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->accepted);
  EXPECT_NE(r->error.message.find("too large"), std::string::npos) << r->error.message;
  // Within budget: the work done, not the wall time (which depends on the machine and the build,
  // e.g. 20 s under AddressSanitizer on a loaded machine), is what is bounded.
  EXPECT_LE(r->insns_processed, o.limits.insn_budget);
}

TEST(VerifierHostile, ThousandsOfCallsAndDeepNesting) {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "call pc+" + std::to_string(3000 - i + 1) + "\n";
  text += "r0 = 2\nexit\nr0 = 0\nexit\n";
  auto insns = assemble(text, Syntax::Kernel);
  ASSERT_TRUE(insns.ok()) << insns.error().to_string();
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgXdp));
  auto r = verify(*insns, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->accepted) << r->error.to_string();
}

}  // namespace
}  // namespace bpfvm

namespace bpfvm {
namespace {

// Found by fuzz_verifier: an IR sign-extending move whose raw `off` field disagrees with its op (off
// selects the op in the encoding; the IR's op is what counts) made the verifier shift by -1.
TEST(VerifierRobustness, MovsxWidthComesFromTheOp) {
  std::vector<Insn> p(3);
  p[0].op = Op::MOV64_IMM;
  p[0].dst = 2;
  p[0].imm = 0x80;
  p[1].op = Op::MOVSX64_8;
  p[1].dst = 0;
  p[1].src = 2;
  p[1].off = 0;  // inconsistent with the op on purpose
  p[2].op = Op::EXIT;
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgMem));
  o.log_level = 2;
  auto r = verify(p, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->accepted) << r->error.to_string();
  EXPECT_NE(r->log.find("R0=-128"), std::string::npos) << r->log;
}

}  // namespace
}  // namespace bpfvm
