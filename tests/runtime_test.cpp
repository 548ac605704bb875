// The shared pipeline (include/bpfvm/runtime.hpp): verification before running, the engine rule
// ("verified programs run in the JIT; unverified ones only on request, in the checked interpreter
// unless the JIT is asked for"), static tail-call targets.
#include <gtest/gtest.h>

#include <filesystem>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/runtime.hpp"
#include "conformance_cases.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

struct Loaded {
  std::shared_ptr<Object> obj;
  std::shared_ptr<LoadedObject> live;
};

Loaded load(const std::string& name) {
  auto o = load_object_file((fs::path(BPFVM_PROGS_DIR) / name).string());
  EXPECT_TRUE(o.ok()) << (o.ok() ? "" : o.error().to_string());
  if (!o.ok()) return {};
  Loaded l;
  l.obj = std::make_shared<Object>(std::move(*o));
  auto live = instantiate(*l.obj);
  EXPECT_TRUE(live.ok()) << (live.ok() ? "" : live.error().to_string());
  if (live.ok()) l.live = std::make_shared<LoadedObject>(std::move(*live));
  return l;
}

Program asm_program(const char* text) {
  auto insns = assemble(text, Syntax::Kernel);
  EXPECT_TRUE(insns.ok()) << (insns.ok() ? "" : insns.error().to_string());
  return Program{"t", insns.ok() ? *insns : std::vector<Insn>{}};
}

const ProgTypeInfo& xdp() { return *find_prog_type(kProgXdp); }

TEST(Runtime, EngineFollowsVerification) {
  // A safe xdp program: bounds-checked read of the first packet byte.
  const char* safe =
      "r2 = *(u32 *)(r1 +0)\n"
      "r3 = *(u32 *)(r1 +4)\n"
      "r0 = 1\n"
      "r4 = r2\n"
      "r4 += 1\n"
      "if r4 > r3 goto +1\n"
      "r0 = *(u8 *)(r2 +0)\n"
      "exit\n";
  struct Case {
    EngineChoice choice;
    bool verify;
    EngineKind engine;
    bool checked;
  } cases[] = {
      {EngineChoice::Auto, true, EngineKind::Jit, false},
      {EngineChoice::Interpreter, true, EngineKind::Interpreter, false},
      {EngineChoice::Jit, true, EngineKind::Jit, false},
      {EngineChoice::Auto, false, EngineKind::Interpreter, true},
      {EngineChoice::Interpreter, false, EngineKind::Interpreter, true},
  };
  for (const Case& c : cases) {
    PrepareOptions po;
    po.rules = RuleSet::Privileged;  // XDP returns any value under root's rules
    po.engine = c.choice;
    po.verify = c.verify;
    auto p = prepare_program(asm_program(safe), xdp(), po);
    ASSERT_TRUE(p.ok()) << p.error().to_string();
    EXPECT_EQ(p->verified, c.verify);
    EXPECT_EQ(p->exe->options().engine, c.engine) << static_cast<int>(c.choice) << " verify=" << c.verify;
    EXPECT_EQ(p->exe->options().checked, c.checked) << static_cast<int>(c.choice) << " verify=" << c.verify;
    std::vector<uint8_t> pkt(20, 0);
    pkt[0] = 42;
    auto r = test_run(*p, pkt);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->retval, 42u);
  }
  // A budget needs instruction counting: the interpreter, even for a verified program.
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  po.exec.insn_budget = 100;
  auto p = prepare_program(asm_program(safe), xdp(), po);
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(p->exe->options().engine, EngineKind::Interpreter);
  // exec.engine = Jit (the older way of asking) still means the JIT.
  PrepareOptions old;
  old.rules = RuleSet::Privileged;
  old.exec.engine = EngineKind::Jit;
  auto q = prepare_program(asm_program(safe), xdp(), old);
  ASSERT_TRUE(q.ok()) << q.error().to_string();
  EXPECT_EQ(q->exe->options().engine, EngineKind::Jit);
  // Unverified code is refused by the JIT, asked for either way: nothing would stop it (it counts no
  // instructions). It runs in the checked interpreter, under kUnverifiedInsnBudget.
  for (int how = 0; how < 2; ++how) {
    PrepareOptions u;
    u.verify = false;
    if (how) u.exec.engine = EngineKind::Jit;
    else u.engine = EngineChoice::Jit;
    auto refused = prepare_program(asm_program(safe), xdp(), u);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::InvalidArgument);
  }
}

TEST(Runtime, RejectedProgramsDoNotRun) {
  // Reads the packet without comparing against data_end.
  const char* unsafe =
      "r2 = *(u32 *)(r1 +0)\n"
      "r0 = *(u32 *)(r2 +8000)\n"
      "exit\n";
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  VerifyReport rep;
  std::string text;
  po.report = &rep;
  po.rejection = &text;
  auto p = prepare_program(asm_program(unsafe), xdp(), po);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::Verify);
  EXPECT_EQ(p.error().pc, 1);
  EXPECT_FALSE(rep.accepted);
  EXPECT_NE(text.find("invalid access to packet"), std::string::npos) << text;
  EXPECT_NE(text.find("why:"), std::string::npos) << text;
  // On explicit request it runs unverified, in the checked interpreter: reading 8000 bytes past a 14-byte packet faults.
  po.verify = false;
  auto u = prepare_program(asm_program(unsafe), xdp(), po);
  ASSERT_TRUE(u.ok()) << u.error().to_string();
  EXPECT_TRUE(u->exe->options().checked);
  auto r = test_run(*u, std::vector<uint8_t>(14, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault) << r.error().to_string();
  // The rule set is passed through: returning a pointer is fine for root, a leak for strict -- the
  // API's default (code not marked trusted is untrusted).
  const char* leak = "r0 = r10\nexit\n";
  PrepareOptions priv;
  priv.rules = RuleSet::Privileged;
  auto mem = find_prog_type(static_cast<uint32_t>(kProgMem));
  EXPECT_TRUE(prepare_program(asm_program(leak), *mem, priv).ok());
  PrepareOptions untrusted;
  EXPECT_EQ(untrusted.rules, RuleSet::Strict);
  auto s = prepare_program(asm_program(leak), *mem, untrusted);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::Verify);
  EXPECT_NE(s.error().message.find("leaks addr"), std::string::npos) << s.error().to_string();
  // A loop: accepted for trusted code, refused by default (the kernel's unprivileged rules).
  const char* loop = "r0 = 0\nr0 += 1\nif r0 < 10 goto -2\nexit\n";
  EXPECT_TRUE(prepare_program(asm_program(loop), *mem, priv).ok());
  auto l = prepare_program(asm_program(loop), *mem, untrusted);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("back-edge"), std::string::npos) << l.error().to_string();
}

TEST(Runtime, PlainMemorySizeKnownAtLoad) {
  // Reads 8 bytes at r1: fine for 8 known bytes, rejected for 4; unknown size needs an r2 check.
  const char* read8 = "r0 = *(u64 *)(r1 +0)\nexit\n";
  const ProgTypeInfo& mem = *find_prog_type(static_cast<uint32_t>(kProgMem));
  PrepareOptions po;
  po.mem_size = 8;
  auto ok = prepare_program(asm_program(read8), mem, po);
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  std::vector<uint8_t> m = {1, 2, 3, 4, 5, 6, 7, 8};
  auto r = test_run(*ok, m);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->retval, 0x0807060504030201ull);
  po.mem_size = 4;
  EXPECT_FALSE(prepare_program(asm_program(read8), mem, po).ok());
  po.mem_size = -1;
  EXPECT_FALSE(prepare_program(asm_program(read8), mem, po).ok());
  const char* guarded =
      "r0 = 0\n"
      "if r2 < 8 goto +1\n"
      "r0 = *(u64 *)(r1 +0)\n"
      "exit\n";
  EXPECT_TRUE(prepare_program(asm_program(guarded), mem, po).ok());
}

TEST(Runtime, StaticTailCallTargetsAreFilled) {
  Loaded l = load("rt_tailcall.bpf.o");
  ASSERT_TRUE(l.live);
  const ObjectProgram* dispatch = l.obj->find_program("dispatch");
  ASSERT_NE(dispatch, nullptr);
  for (EngineChoice e : {EngineChoice::Interpreter, EngineChoice::Jit}) {
    PrepareOptions po;
    po.engine = e;
    auto p = prepare_program(*dispatch, *l.live, nullptr, po);
    ASSERT_TRUE(p.ok()) << p.error().to_string();
    // steps[0] = step_a (XDP_DROP), steps[2] = step_b (XDP_TX), 1 and 3 empty (fall through: PASS).
    const uint64_t want[] = {1, 2, 3, 2};
    for (uint8_t first = 0; first < 4; ++first) {
      std::vector<uint8_t> pkt(20, 0);
      pkt[0] = first;
      auto r = test_run(*p, pkt);
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(r->retval, want[first]) << "index " << int(first) << " engine " << static_cast<int>(e);
    }
  }
  // The program that fails verification in the same object is refused with its section and line.
  const ObjectProgram* bad = l.obj->find_program("unchecked_read");
  ASSERT_NE(bad, nullptr);
  std::string text;
  PrepareOptions po;
  po.rejection = &text;
  auto b = prepare_program(*bad, *l.live, nullptr, po);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ErrorCode::Verify);
  EXPECT_EQ(text.rfind("xdp/unchecked_read: ", 0), 0u) << text;
  EXPECT_NE(text.find("source: rt_tailcall.bpf.c"), std::string::npos) << text;
}

TEST(Runtime, LoadedObjectWithoutItsObjectCannotBeVerified) {
  Loaded l = load("rt_tailcall.bpf.o");
  ASSERT_TRUE(l.live);
  LoadedObject bare = *l.live;
  bare.object.reset();
  const ObjectProgram* dispatch = l.obj->find_program("dispatch");
  ASSERT_NE(dispatch, nullptr);
  auto p = prepare_program(*dispatch, bare, nullptr, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::InvalidArgument);
  PrepareOptions po;
  po.verify = false;
  EXPECT_TRUE(prepare_program(*dispatch, bare, nullptr, po).ok());
}

uint64_t sum_bytes(uint64_t p, uint64_t n, uint64_t, uint64_t, uint64_t) {
  uint64_t s = 0;
  for (uint64_t i = 0; i < n; ++i) s += reinterpret_cast<const uint8_t*>(p)[i];
  return s;
}

// An embedder's helper is verified against its own prototype (a pointer to n readable bytes).
TEST(Runtime, EmbedderHelpersAreVerifiedByTheirPrototype) {
  HelperSet hs;
  HelperProto proto;
  proto.ret = RetType::Integer;
  proto.args[0] = HelperArg{ArgType::Mem, kArgReadOnly};
  proto.args[1] = HelperArg{ArgType::ConstSize};
  ASSERT_TRUE(hs.add(10001, "host_sum", proto, &sum_bytes, {kProgMem}).ok());
  const ProgTypeInfo& mem = *find_prog_type(static_cast<uint32_t>(kProgMem));
  PrepareOptions po;
  po.helpers = &hs;
  po.mem_size = 4;
  // host_sum(r1, 4): the 4 bytes are known to be there.
  auto ok = prepare_program(asm_program("r2 = 4\ncall 10001\nexit\n"), mem, po);
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_TRUE(ok->verified);
  auto r = test_run(*ok, std::vector<uint8_t>{1, 2, 3, 4});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->retval, 10u);
  // host_sum(r1, 8) would read past the memory: rejected by the prototype's size rule.
  auto bad = prepare_program(asm_program("r2 = 8\ncall 10001\nexit\n"), mem, po);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::Verify) << bad.error().to_string();
  // Without the embedder's set the id is unknown.
  PrepareOptions kernel;
  kernel.mem_size = 4;
  auto unknown = prepare_program(asm_program("r2 = 4\ncall 10001\nexit\n"), mem, kernel);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown"), std::string::npos) << unknown.error().to_string();
}

// The conformance suite through the verified path (what `bpfvm run FILE --mem HEX` does): the memory
// size is known at load. Every program is accepted except those the kernel's verifier also refuses
// (immediate shifts out of range, callx), and the accepted ones give the expected result in the JIT,
// unchecked.
TEST(Runtime, ConformanceSuiteThroughTheVerifier) {
  auto files = test::conformance_files();
  if (files.empty()) GTEST_SKIP() << "../shared/conformance (or $BPFVM_SHARED) not found";
  size_t accepted = 0, compared = 0;
  std::vector<std::string> rejected;
  for (const auto& f : files) {
    test::ConformanceCase c = test::parse_case(f);
    if (c.asm_text.empty() || !c.error.empty()) continue;
    auto insns = assemble(c.asm_text, Syntax::Conformance);
    if (!insns) continue;
    bool calls = false;
    for (const Insn& in : *insns) calls |= in.op == Op::CALL_HELPER;
    PrepareOptions po;
    po.rules = RuleSet::Privileged;  // the suite has loops and calls: trusted test programs
    po.mem_size = static_cast<int64_t>(c.mem.size());
    auto p = prepare_program(Program{c.name, *insns}, *find_prog_type(static_cast<uint32_t>(kProgMem)), po);
    if (!p) {
      EXPECT_EQ(p.error().code, ErrorCode::Verify) << c.name << ": " << p.error().to_string();
      rejected.push_back(c.name + ": " + p.error().message);
      continue;
    }
    ++accepted;
    EXPECT_EQ(p->exe->options().engine, EngineKind::Jit);
    if (calls || !c.has_result) continue;  // helper ids mean other things in the suite
    auto r = test_run(*p, c.mem);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.error().to_string();
    EXPECT_EQ(r->retval, c.result) << c.name;
    ++compared;
  }
  for (const std::string& r : rejected)
    EXPECT_TRUE(r.find("invalid shift") != std::string::npos || r.find("callx") != std::string::npos) << r;
  EXPECT_GE(accepted, 290u);
  EXPECT_LE(rejected.size(), 13u);
  EXPECT_GE(compared, 250u);
}

}  // namespace
}  // namespace bpfvm
