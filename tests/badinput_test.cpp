// Bad input that must end well: unverified code under an instruction budget, the checked
// interpreter's per-frame stack rule, the strict rules' program size, callback faults on every run
// path, llvm-mc's immediates, per-slot decoding, and one packet layout for test runs and hooks.
#include <gtest/gtest.h>

#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/bpfvm.h"
#include "bpfvm/helpers.hpp"
#include "bpfvm/packet.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/verifier.hpp"

using namespace bpfvm;

namespace {

Insn In(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  Insn i;
  i.op = op;
  i.dst = dst;
  i.src = src;
  i.off = off;
  i.imm = imm;
  return i;
}

constexpr int32_t kBpfLoop = 181;
constexpr int32_t kXdpAdjustHead = 44;

// r0 = 0; goto pc-1 (never ends).
Program spin() { return Program{"spin", {In(Op::MOV64_IMM, 0, 0, 0, 0), In(Op::JA, 0, 0, -1)}}; }

Result<uint64_t> run_checked(std::vector<Insn> insns) {
  ExecOptions eo;
  eo.checked = true;
  auto exe = Executable::create(Program{"p", std::move(insns)}, HelperSet::kernel().table_for(kProgMem), eo);
  if (!exe) return exe.error();
  return (*exe)->run_on_memory(nullptr, 0);
}

// bpf_loop(1, cb, 0, 0) whose callback reads address 0: a fault inside the callback.
std::vector<Insn> faulting_callback() {
  //   0: r1 = 1; 1-2: r2 = cb; 3: r3 = 0; 4: r4 = 0; 5: call bpf_loop; 6: r0 = 0; 7: exit
  //   8 (cb): r0 = *(u64 *)(r3 + 0) -- r3 is not set in the callback: 0; 9: exit
  return {In(Op::MOV64_IMM, 1, 0, 0, 1), In(Op::LDDW_CODE_ADDR, 2, 4, 0, 8 - 1 - 1), In(Op::LDDW_HI),
          In(Op::MOV64_IMM, 3, 0, 0, 0), In(Op::MOV64_IMM, 4, 0, 0, 0), In(Op::CALL_HELPER, 0, 0, 0, kBpfLoop),
          In(Op::MOV64_IMM, 0, 0, 0, 0), In(Op::EXIT), In(Op::LDXDW, 0, 3, 0), In(Op::EXIT)};
}

}  // namespace

TEST(BadInput, UnverifiedCodeRunsUnderADefaultBudget) {
  PrepareOptions po;
  po.verify = false;
  auto p = prepare_program(spin(), *find_prog_type(kProgMem), po);
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(p->exe->options().engine, EngineKind::Interpreter);
  EXPECT_TRUE(p->exe->options().checked);
  EXPECT_EQ(p->exe->options().insn_budget, kUnverifiedInsnBudget);
  // An explicit budget replaces the default; the spinning program stops with ErrorCode::Budget.
  po.exec.insn_budget = 1000;
  auto q = prepare_program(spin(), *find_prog_type(kProgMem), po);
  ASSERT_TRUE(q.ok()) << q.error().to_string();
  auto r = test_run(*q, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Budget);
  EXPECT_NE(r.error().message.find("budget of 1000"), std::string::npos) << r.error().message;
}

TEST(BadInput, TheJitRefusesUnverifiedCode) {
  PrepareOptions po;
  po.verify = false;
  po.engine = EngineChoice::Jit;
  auto p = prepare_program(spin(), *find_prog_type(kProgMem), po);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(p.error().message.find("unverified code does not run in the JIT"), std::string::npos);
  // The older way of asking (exec.engine) is refused the same way.
  PrepareOptions old;
  old.verify = false;
  old.exec.engine = EngineKind::Jit;
  EXPECT_FALSE(prepare_program(spin(), *find_prog_type(kProgMem), old).ok());
  // The C API too.
  bpfvm_load_opts o;
  bpfvm_load_opts_init(&o);
  o.no_verify = 1;
  o.engine = BPFVM_ENGINE_JIT;
  auto bytes = to_bytes(encode(spin().insns));
  char err[512] = "";
  bpfvm_program* cp = bpfvm_program_from_bytecode(bytes.data(), bytes.size(), &o, err, sizeof err);
  EXPECT_EQ(cp, nullptr);
  EXPECT_NE(std::string(err).find("JIT"), std::string::npos) << err;
  bpfvm_program_free(cp);
}

TEST(BadInput, PacketHookCountsBudgetStopsPerPacket) {
  // An XDP program that spins until the first packet byte is 0xAB.
  //   0: r2 = *(u32 *)(r1 + 0) (data); 1: r3 = *(u32 *)(r1 + 4) (data_end); 2: r4 = r2; 3: r4 += 1
  //   4: if r4 > r3 goto 4 (spin: no room); 5: r5 = *(u8 *)(r2 + 0); 6: if r5 != 0xab goto 6 (spin); 7: r0 = 2; 8: exit
  std::vector<Insn> p = {In(Op::LDXW, 2, 1, 0),         In(Op::LDXW, 3, 1, 4),
                         In(Op::MOV64_REG, 4, 2),       In(Op::ADD64_IMM, 4, 0, 0, 1),
                         In(Op::JGT_REG, 4, 3, -1),     In(Op::LDXB, 5, 2, 0),
                         In(Op::JNE_IMM, 5, 0, -1, 0xab), In(Op::MOV64_IMM, 0, 0, 0, 2),
                         In(Op::EXIT)};
  HookOptions ho;
  ho.prepare.verify = false;
  ho.prepare.exec.insn_budget = 500;
  auto h = PacketHook::create(*find_prog_type(kProgXdp), Program{"spin_until_ab", p}, ho);
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  std::vector<uint8_t> frame(60, 0);
  PacketView v;
  v.data = frame.data();
  v.caplen = v.wirelen = 60;
  for (int i = 0; i < 3; ++i) {
    auto r = (*h)->process(v);
    EXPECT_EQ(r.action, PacketAction::Error);
    EXPECT_NE(r.error.find("instruction budget of 500"), std::string::npos) << r.error;
  }
  frame[0] = 0xab;
  EXPECT_EQ((*h)->process(v).action, PacketAction::Pass);  // the budget is per packet
  EXPECT_EQ((*h)->counters().budget_exhausted, 3u);
  EXPECT_EQ((*h)->counters().packets, 4u);
}

// The checked interpreter: r10-based accesses stay in the current frame [fp-512, fp); other
// pointers reach the live call chain; nothing below the deepest live frame.
TEST(BadInput, CheckedStackIsPerFrame) {
  // A store at fp-1000 (the top frame's r10: below its 512 bytes).
  auto r = run_checked({In(Op::STDW, 10, 0, -1000, 0), In(Op::MOV64_IMM, 0), In(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_NE(r.error().message.find("fp-1000 is outside the current stack frame [fp-512, fp)"), std::string::npos)
      << r.error().message;
  // The same address through another register: below the deepest live frame.
  r = run_checked({In(Op::MOV64_REG, 1, 10), In(Op::ADD64_IMM, 1, 0, 0, -1000), In(Op::STDW, 1, 0, 0, 0),
                   In(Op::MOV64_IMM, 0), In(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_NE(r.error().message.find("below the deepest live stack frame"), std::string::npos) << r.error().message;
  // A callee writing r10+504 (its caller's frame, through r10).
  //   0: call 2; 1: r0 = 0 ... 2: exit; 3 (callee): *(u64 *)(r10 + 504) = 1; 4: r0 = 0; 5: exit
  r = run_checked({In(Op::CALL_LOCAL, 0, 1, 0, 2), In(Op::MOV64_IMM, 0), In(Op::EXIT), In(Op::STDW, 10, 0, 504, 1),
                   In(Op::MOV64_IMM, 0), In(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_EQ(r.error().pc, 3);
  EXPECT_NE(r.error().message.find("fp+504 is outside the current stack frame"), std::string::npos)
      << r.error().message;
  // A caller passing a pointer to its stack: the callee may write it.
  //   0: *(u64 *)(r10 - 8) = 0; 1: r1 = r10; 2: r1 += -8; 3: call 2; 4: r0 = *(u64 *)(r10 - 8); 5: exit
  //   6 (callee): *(u64 *)(r1 + 0) = 42; 7: r0 = 0; 8: exit
  r = run_checked({In(Op::STDW, 10, 0, -8, 0), In(Op::MOV64_REG, 1, 10), In(Op::ADD64_IMM, 1, 0, 0, -8),
                   In(Op::CALL_LOCAL, 0, 1, 0, 2), In(Op::LDXDW, 0, 10, -8), In(Op::EXIT), In(Op::STDW, 1, 0, 0, 42),
                   In(Op::MOV64_IMM, 0), In(Op::EXIT)});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 42u);
  // A pointer into a frame that has returned: below the deepest live frame.
  //   0: call 3; 1: *(u64 *)(r0 + 0) = 1; 2: r0 = 0 ... 3: exit; 4 (callee): r0 = r10; 5: r0 += -8; 6: exit
  r = run_checked({In(Op::CALL_LOCAL, 0, 1, 0, 3), In(Op::STDW, 0, 0, 0, 1), In(Op::MOV64_IMM, 0), In(Op::EXIT),
                   In(Op::MOV64_REG, 0, 10), In(Op::ADD64_IMM, 0, 0, 0, -8), In(Op::EXIT)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().pc, 1);
  EXPECT_NE(r.error().message.find("below the deepest live stack frame"), std::string::npos) << r.error().message;
  // Both ends of the current frame: fp-512 is in, fp+0 is not.
  EXPECT_TRUE(run_checked({In(Op::STDW, 10, 0, -512, 0), In(Op::MOV64_IMM, 0), In(Op::EXIT)}).ok());
  EXPECT_FALSE(run_checked({In(Op::STB, 10, 0, 0, 0), In(Op::MOV64_IMM, 0), In(Op::EXIT)}).ok());
}

TEST(BadInput, StrictRulesRefuseMoreThan4096Instructions) {
  auto make = [](size_t n) {
    std::vector<Insn> p(n - 1, In(Op::MOV64_IMM, 0, 0, 0, 0));
    p.push_back(In(Op::EXIT));
    return p;
  };
  VerifyOptions vo;
  vo.type = find_prog_type(kProgMem);
  vo.rules = RuleSet::Strict;
  auto ok = verify(make(4096), vo);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->accepted) << ok->error.to_string();
  auto big = verify(make(4097), vo);
  ASSERT_TRUE(big.ok());
  EXPECT_FALSE(big->accepted);
  EXPECT_NE(big->error.message.find("4097 instructions; strict rules allow at most 4096"), std::string::npos)
      << big->error.message;
  vo.rules = RuleSet::Privileged;
  auto priv = verify(make(5002), vo);
  ASSERT_TRUE(priv.ok());
  EXPECT_TRUE(priv->accepted) << priv->error.to_string();
}

// A fault inside a callback (bpf_loop) fails the run on every path, not only test_run.
TEST(BadInput, CallbackFaultFailsEveryRunPath) {
  // Executable::run (the API).
  auto r = run_checked(faulting_callback());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
  EXPECT_NE(r.error().message.find("in the callback of bpf_loop"), std::string::npos) << r.error().message;
  // The next run on the thread starts clean.
  auto clean = run_checked({In(Op::MOV64_IMM, 0, 0, 0, 7), In(Op::EXIT)});
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(*clean, 7u);
  // The packet hook.
  HookOptions ho;
  ho.prepare.verify = false;
  auto h = PacketHook::create(*find_prog_type(kProgXdp), Program{"cb", faulting_callback()}, ho);
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  std::vector<uint8_t> frame(60, 0);
  PacketView v;
  v.data = frame.data();
  v.caplen = v.wirelen = 60;
  auto pr = (*h)->process(v);
  EXPECT_EQ(pr.action, PacketAction::Error);
  EXPECT_NE(pr.error.find("in the callback of bpf_loop"), std::string::npos) << pr.error;
  // The C API.
  bpfvm_load_opts o;
  bpfvm_load_opts_init(&o);
  o.no_verify = 1;
  o.prog_type = "xdp";
  auto bytes = to_bytes(encode(faulting_callback()));
  char err[512] = "";
  bpfvm_program* cp = bpfvm_program_from_bytecode(bytes.data(), bytes.size(), &o, err, sizeof err);
  ASSERT_NE(cp, nullptr) << err;
  uint64_t ret = 0;
  EXPECT_EQ(bpfvm_program_test_run(cp, frame.data(), frame.size(), nullptr, 0, &ret, nullptr, nullptr, err, sizeof err),
            -1);
  EXPECT_NE(std::string(err).find("in the callback of bpf_loop"), std::string::npos) << err;
  bpfvm_program_free(cp);
}

// Library messages give no command-line advice (the C API and embedders have no --strict).
TEST(BadInput, StrictRejectionsGiveNoCliAdvice) {
  bpfvm_load_opts o;
  bpfvm_load_opts_init(&o);  // strict rules
  std::vector<Insn> loop = {In(Op::MOV64_IMM, 0, 0, 0, 3), In(Op::SUB64_IMM, 0, 0, 0, 1),
                            In(Op::JNE_IMM, 0, 0, -2, 0), In(Op::EXIT)};
  auto bytes = to_bytes(encode(loop));
  char err[2048] = "";
  bpfvm_program* cp = bpfvm_program_from_bytecode(bytes.data(), bytes.size(), &o, err, sizeof err);
  EXPECT_EQ(cp, nullptr);
  std::string e = err;
  EXPECT_NE(e.find("back-edge"), std::string::npos) << e;
  EXPECT_EQ(e.find("--"), std::string::npos) << e;
  bpfvm_program_free(cp);
}

// As llvm-mc: a move's 32-bit immediate is sign-extended; only `ll` loads 64 bits.
TEST(BadInput, AssemblerImmediatesFollowLlvmMc) {
  auto k = assemble("r0 = 0xffffffff\nexit\n", Syntax::Kernel);
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ((*k)[0].op, Op::MOV64_IMM);
  EXPECT_EQ((*k)[0].imm, -1);
  auto kl = assemble("r0 = 0xffffffff ll\nexit\n", Syntax::Kernel);
  ASSERT_TRUE(kl.ok()) << kl.error().to_string();
  EXPECT_EQ((*kl)[0].op, Op::LDDW);
  EXPECT_EQ((*kl)[0].imm, 0xffffffff);
  auto c = assemble("mov %r0, 0xffffffff\nexit\n", Syntax::Conformance);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ((*c)[0].op, Op::MOV64_IMM);
  EXPECT_EQ((*c)[0].imm, -1);
  auto cl = assemble("lddw %r0, 0xffffffff\nexit\n", Syntax::Conformance);
  ASSERT_TRUE(cl.ok()) << cl.error().to_string();
  EXPECT_EQ((*cl)[0].op, Op::LDDW);
  EXPECT_EQ((*cl)[0].imm, 0xffffffff);
  // Too large for 32 bits without `ll`: an error that says how to ask for the 64-bit load.
  auto big = assemble("r0 = 0x100000000\nexit\n", Syntax::Kernel);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::Assemble);
  EXPECT_NE(big.error().message.find("r0 = 0x100000000 ll"), std::string::npos) << big.error().message;
  // A verifier-log or bpftool line with the lddw opcode prefix stays an lddw.
  auto log = assemble("(18) r1 = 0x5\n(95) exit\n", Syntax::Kernel);
  ASSERT_TRUE(log.ok()) << log.error().to_string();
  EXPECT_EQ((*log)[0].op, Op::LDDW);
  // The disassembly of each assembles back to the same instruction.
  for (const auto* p : {&*k, &*kl}) {
    auto back = assemble(disassemble(*p, DisasmOptions{Syntax::Kernel, {}, false, false}), Syntax::Kernel);
    ASSERT_TRUE(back.ok()) << back.error().to_string();
    EXPECT_EQ((*back)[0].op, (*p)[0].op);
    EXPECT_EQ((*back)[0].imm, (*p)[0].imm);
  }
}

TEST(BadInput, DecodeEachListsWhatDecodes) {
  std::vector<RawInsn> raw(5);
  raw[0].code = 0xb7;  // r0 = 0
  raw[1].code = 0xff;  // unknown
  raw[2].code = 0x18;  // lddw ...
  raw[2].imm = 7;      // ... its second slot (raw[3]) is all zero
  raw[4].code = 0x95;  // exit
  auto e = decode_each(raw);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_TRUE(e[0].ok);
  EXPECT_FALSE(e[1].ok);
  EXPECT_EQ(e[1].pc, 1u);
  EXPECT_NE(e[1].error.message.find("unknown opcode 0xff"), std::string::npos);
  EXPECT_TRUE(e[2].ok);
  EXPECT_EQ(e[2].slots, 2u);
  EXPECT_EQ(e[2].insn.imm, 7);
  EXPECT_EQ(e[3].pc, 4u);
  EXPECT_EQ(e[3].insn.op, Op::EXIT);
  // An lddw whose second slot is missing.
  std::vector<RawInsn> cut(1);
  cut[0].code = 0x18;
  auto c = decode_each(cut);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].ok);
}

// The test run and the packet hook lay a packet out the same way (progtypes/packet_ctx.hpp).
TEST(BadInput, TestRunAndHookShareThePacketLayout) {
  std::vector<uint8_t> frame(60, 0);
  frame[0] = 0x02;  // unicast
  frame[12] = 0x00;
  frame[13] = 0x40;  // an 802.3 length ...
  frame[14] = frame[15] = 0xff;  // ... with raw IPX: ETH_P_802_3
  PacketView v;
  v.data = frame.data();
  v.caplen = v.wirelen = static_cast<uint32_t>(frame.size());
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  HookOptions ho;
  ho.prepare = po;
  // XDP: bpf_xdp_adjust_head can move data down by XDP_PACKET_HEADROOM - sizeof(struct xdp_frame)
  // (216) bytes, not one more, in both.
  for (int32_t grow : {216, 217}) {
    std::vector<Insn> p = {In(Op::MOV64_IMM, 2, 0, 0, -grow), In(Op::CALL_HELPER, 0, 0, 0, kXdpAdjustHead),
                           In(Op::EXIT)};
    auto tp = prepare_program(Program{"grow", p}, *find_prog_type(kProgXdp), po);
    ASSERT_TRUE(tp.ok()) << tp.error().to_string();
    auto tr = test_run(*tp, frame);
    ASSERT_TRUE(tr.ok()) << tr.error().to_string();
    auto h = PacketHook::create(*find_prog_type(kProgXdp), Program{"grow", p}, ho);
    ASSERT_TRUE(h.ok()) << h.error().to_string();
    auto hr = (*h)->process(v);
    EXPECT_EQ(tr->retval, hr.retval) << grow;
    EXPECT_EQ(tr->retval, grow == 216 ? 0u : static_cast<uint64_t>(-22)) << grow;
  }
  // tc: eth_type_trans's protocol, the same in both (offsetof(struct __sk_buff, protocol) = 16).
  std::vector<Insn> proto = {In(Op::LDXW, 0, 1, 16), In(Op::EXIT)};
  auto tp = prepare_program(Program{"proto", proto}, *find_prog_type(kProgSchedCls), po);
  ASSERT_TRUE(tp.ok()) << tp.error().to_string();
  auto tr = test_run(*tp, frame);
  ASSERT_TRUE(tr.ok()) << tr.error().to_string();
  auto h = PacketHook::create(*find_prog_type(kProgSchedCls), Program{"proto", proto}, ho);
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  auto hr = (*h)->process(v);
  EXPECT_EQ(tr->retval, 0x0100u);  // htons(ETH_P_802_3)
  EXPECT_EQ(hr.retval, tr->retval);
}
