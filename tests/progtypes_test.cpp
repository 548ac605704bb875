// Program-type registry: context layouts and rights, the context rewrite, test-run contexts,
// and (when the kernel is usable) agreement with BPF_PROG_TEST_RUN.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/vm.hpp"
#include "kernel/oracle.hpp"

using namespace bpfvm;

namespace {

std::vector<Insn> A(const std::string& text) {
  auto r = assemble(text, Syntax::Kernel, [](std::string_view n) { return kernel_helper_id(n); });
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string()) << "\n" << text;
  return r.ok() ? *r : std::vector<Insn>{};
}

const ProgTypeInfo& T(uint32_t t) {
  const ProgTypeInfo* p = find_prog_type(t);
  EXPECT_NE(p, nullptr) << t;
  return *p;
}

// Rewrites and runs a program of `type` on a test-run context.
struct Ran {
  uint64_t r0 = 0;
  std::unique_ptr<TestRunContext> tr;
};
Result<Ran> run_prog(const std::string& text, uint32_t type, std::vector<uint8_t> data,
                     std::vector<uint8_t> ctx = {}, bool checked = true) {
  const ProgTypeInfo& pt = T(type);
  auto insns = A(text);
  auto rw = rewrite_ctx_accesses(insns, pt);
  if (!rw) return rw.error();
  if (auto st = HelperSet::kernel().check_program(*rw, type); !st) return st.error();
  ExecOptions opts;
  opts.checked = checked;
  auto exe = Executable::create(Program{"t", *rw}, HelperSet::kernel().table_for(type), opts);
  if (!exe) return exe.error();
  auto tr = make_test_run(pt, data, ctx);
  if (!tr) return tr.error();
  auto r = (*exe)->run((*tr)->args());
  if (!r) return r.error();
  Ran out;
  out.r0 = *r;
  out.tr = std::move(*tr);
  return out;
}

std::vector<uint8_t> ipv4_udp_frame() {
  std::vector<uint8_t> f(60, 0);
  const uint8_t eth[14] = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00};
  std::memcpy(f.data(), eth, 14);
  f[14] = 0x45;
  f[16] = 0;
  f[17] = 46;
  f[23] = 17;  // UDP
  const uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {10, 0, 0, 2};
  std::memcpy(&f[26], src, 4);
  std::memcpy(&f[30], dst, 4);
  return f;
}

}  // namespace

// ---- the registry ----------------------------------------------------------------------------------

TEST(ProgTypes, EveryKernelTypeAndMemAreDescribed) {
  for (uint32_t t = 1; t <= 31; ++t) {
    const ProgTypeInfo* p = find_prog_type(t);
    ASSERT_NE(p, nullptr) << "type " << t;
    EXPECT_EQ(p->type, t);
    EXPECT_FALSE(p->name.empty());
    EXPECT_FALSE(p->helpers.empty()) << p->name;
    EXPECT_EQ(p->native_size % 8, 0u) << p->name;
  }
  EXPECT_EQ(find_prog_type("mem")->type, kProgMem);
  EXPECT_GT(static_cast<uint32_t>(kProgMem), 31u);
  EXPECT_FALSE(find_prog_type(kProgMem)->has_ctx);
  EXPECT_EQ(find_prog_type("xdp")->type, kProgXdp);
  EXPECT_EQ(find_prog_type("socket")->type, kProgSocketFilter);
  EXPECT_EQ(find_prog_type("tc")->type, kProgSchedCls);
  EXPECT_EQ(find_prog_type("sched_act")->type, kProgSchedAct);
  EXPECT_EQ(find_prog_type("no_such_type"), nullptr);
  EXPECT_EQ(find_prog_type(1000), nullptr);
}

TEST(ProgTypes, LayoutsFollowTheUapiHeaders) {
  const ProgTypeInfo& xdp = T(kProgXdp);
  EXPECT_EQ(xdp.ctx_size, sizeof(struct xdp_md));
  ASSERT_NE(xdp.field("data_end"), nullptr);
  EXPECT_EQ(xdp.field("data_end")->off, offsetof(struct xdp_md, data_end));
  EXPECT_EQ(xdp.field("data_end")->ptr, CtxPtr::PacketEnd);
  EXPECT_EQ(xdp.field("rx_queue_index")->off, offsetof(struct xdp_md, rx_queue_index));
  const ProgTypeInfo& tc = T(kProgSchedCls);
  EXPECT_EQ(tc.ctx_size, sizeof(struct __sk_buff));
  EXPECT_EQ(tc.field("data_meta")->off, offsetof(struct __sk_buff, data_meta));
  EXPECT_EQ(tc.field("sk")->off, offsetof(struct __sk_buff, sk));
  EXPECT_EQ(tc.field("sk")->ptr, CtxPtr::SockCommonOrNull);
  EXPECT_EQ(tc.field("hwtstamp")->off, offsetof(struct __sk_buff, hwtstamp));
  // Native scalar fields sit at their uapi offsets; the __u32 pointers get 8-byte slots after the struct.
  EXPECT_EQ(offsetof(SkbNative, mark), offsetof(struct __sk_buff, mark));
  EXPECT_EQ(offsetof(SkbNative, cb), offsetof(struct __sk_buff, cb));
  EXPECT_EQ(offsetof(SkbNative, tstamp), offsetof(struct __sk_buff, tstamp));
  EXPECT_EQ(offsetof(SkbNative, gso_size), offsetof(struct __sk_buff, gso_size));
  EXPECT_EQ(offsetof(XdpNative, ingress_ifindex), offsetof(struct xdp_md, ingress_ifindex));
  EXPECT_EQ(tc.field("data")->native_off, offsetof(SkbNative, data));
  EXPECT_EQ(T(kProgSockOps).field("bytes_acked")->off, offsetof(struct bpf_sock_ops, bytes_acked));
  EXPECT_EQ(T(kProgSkMsg).field("sk")->off, offsetof(struct sk_msg_md, sk));
  EXPECT_EQ(T(kProgCgroupSockAddr).field("msg_src_ip6")->off, offsetof(struct bpf_sock_addr, msg_src_ip6));
  EXPECT_EQ(T(kProgKprobe).ctx_size, 168u);  // x86-64 struct pt_regs
  // Socket filters cannot see data/data_end or tc_classid; tc programs can.
  EXPECT_EQ(T(kProgSocketFilter).field("data")->access, 0);
  EXPECT_EQ(T(kProgSocketFilter).field("tc_classid")->access, 0);
  EXPECT_EQ(tc.field("tc_classid")->access, kCtxRead | kCtxNarrowRead | kCtxWrite);
  EXPECT_TRUE(T(kProgSocketFilter).ld_abs);
  EXPECT_FALSE(T(kProgXdp).ld_abs);
}

TEST(ProgTypes, ReturnValueMeanings) {
  EXPECT_EQ(T(kProgXdp).ret.min, 0);
  EXPECT_EQ(T(kProgXdp).ret.max, 4);
  EXPECT_FALSE(T(kProgXdp).ret.checked);
  EXPECT_TRUE(T(kProgCgroupSock).ret.checked);
  EXPECT_EQ(T(kProgCgroupSock).ret.max, 1);
  EXPECT_NE(T(kProgSchedCls).ret.meaning.find("TC_ACT_SHOT 2"), std::string_view::npos);
}

TEST(ProgTypes, AllowedHelpers) {
  EXPECT_TRUE(T(kProgXdp).allows_helper(BPF_FUNC_xdp_adjust_head));
  EXPECT_TRUE(T(kProgXdp).allows_helper(BPF_FUNC_map_lookup_elem));
  EXPECT_FALSE(T(kProgXdp).allows_helper(BPF_FUNC_skb_load_bytes));
  EXPECT_FALSE(T(kProgSocketFilter).allows_helper(BPF_FUNC_xdp_adjust_head));
  EXPECT_TRUE(T(kProgSocketFilter).allows_helper(BPF_FUNC_skb_load_bytes));
  EXPECT_FALSE(T(kProgSocketFilter).allows_helper(BPF_FUNC_skb_store_bytes));
  EXPECT_TRUE(T(kProgSchedCls).allows_helper(BPF_FUNC_skb_store_bytes));
  EXPECT_TRUE(T(kProgKprobe).allows_helper(BPF_FUNC_probe_read_kernel));
  EXPECT_TRUE(T(kProgKprobe).allows_helper(BPF_FUNC_get_current_pid_tgid));
  EXPECT_FALSE(T(kProgXdp).allows_helper(BPF_FUNC_get_current_pid_tgid));
}

// ---- context access checks -----------------------------------------------------------------------

TEST(CtxAccess, XdpPointerFieldsWidenToNativeSlots) {
  auto a = check_ctx_access(T(kProgXdp), offsetof(xdp_md, data), 4, false);
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  EXPECT_EQ(a->native_off, static_cast<int32_t>(offsetof(XdpNative, data)));
  EXPECT_EQ(a->native_size, 8);
  EXPECT_EQ(a->ptr, CtxPtr::Packet);
  auto b = check_ctx_access(T(kProgXdp), offsetof(xdp_md, ingress_ifindex), 4, false);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->native_off, static_cast<int32_t>(offsetof(xdp_md, ingress_ifindex)));
  EXPECT_EQ(b->native_size, 4);
}

TEST(CtxAccess, RejectsWhatTheKernelRejects) {
  auto msg = [](Result<CtxAccess> r) { return r.ok() ? std::string("accepted") : r.error().message; };
  // xdp_md: 4-byte reads only, read-only.
  EXPECT_NE(msg(check_ctx_access(T(kProgXdp), 0, 8, false)).find("must be 4 bytes"), std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgXdp), 0, 4, true)).find("read-only"), std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgXdp), 24, 4, false)).find("outside the context"), std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgXdp), 2, 2, false)).find("must be 4 bytes"), std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgXdp), 1, 2, false)).find("misaligned"), std::string::npos);
  // __sk_buff: writes by flavour.
  const auto mark = offsetof(__sk_buff, mark);
  EXPECT_TRUE(check_ctx_access(T(kProgSchedCls), mark, 4, true).ok());
  EXPECT_NE(msg(check_ctx_access(T(kProgSocketFilter), mark, 4, true)).find("read-only for socket_filter"),
            std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgSchedCls), mark, 2, true)).find("must be 4 bytes"), std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgSkSkb), mark, 4, false)).find("__sk_buff.mark is not accessible to sk_skb"),
            std::string::npos);
  // Narrow reads of scalars are fine; cb[] takes any size; data needs exactly 4 bytes.
  EXPECT_TRUE(check_ctx_access(T(kProgSocketFilter), offsetof(__sk_buff, len) + 2, 2, false).ok());
  EXPECT_TRUE(check_ctx_access(T(kProgSocketFilter), offsetof(__sk_buff, protocol), 1, false).ok());
  EXPECT_TRUE(check_ctx_access(T(kProgSocketFilter), offsetof(__sk_buff, cb) + 8, 8, true).ok());
  EXPECT_TRUE(check_ctx_access(T(kProgSocketFilter), offsetof(__sk_buff, cb) + 3, 1, true).ok());
  EXPECT_NE(msg(check_ctx_access(T(kProgSchedCls), offsetof(__sk_buff, data), 2, false)).find("must be 4"),
            std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgSocketFilter), offsetof(__sk_buff, data), 4, false)).find("not accessible"),
            std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgSchedCls), offsetof(__sk_buff, tstamp_type) + 1, 1, false)).find("no field"),
            std::string::npos);
  EXPECT_NE(msg(check_ctx_access(T(kProgSchedCls), offsetof(__sk_buff, remote_ip6), 4, false)).find("not accessible"),
            std::string::npos);
  EXPECT_TRUE(check_ctx_access(T(kProgCgroupSkb), offsetof(__sk_buff, remote_ip6) + 4, 4, false).ok());
  EXPECT_NE(msg(check_ctx_access(T(kProgCgroupSkb), offsetof(__sk_buff, remote_ip6) + 4, 2, false)).find("must be 4"),
            std::string::npos);
  // Generic layouts.
  EXPECT_TRUE(check_ctx_access(T(kProgKprobe), 8 * 14, 8, false).ok());
  EXPECT_TRUE(check_ctx_access(T(kProgKprobe), 4, 4, false).ok());
  EXPECT_FALSE(check_ctx_access(T(kProgKprobe), 8, 8, true).ok());
  EXPECT_FALSE(check_ctx_access(T(kProgKprobe), 168, 8, false).ok());
  EXPECT_NE(msg(check_ctx_access(T(kProgTracepoint), 0, 8, false)).find("first 8 bytes"), std::string::npos);
  EXPECT_TRUE(check_ctx_access(T(kProgTracepoint), 16, 8, false).ok());
  EXPECT_FALSE(check_ctx_access(T(kProgMem), 0, 4, false).ok());
}

TEST(CtxAccess, ObjectsBehindContextPointers) {
  auto msg = [](Result<CtxAccess> r) { return r.ok() ? std::string("accepted") : r.error().message; };
  EXPECT_TRUE(check_pointee_access(CtxPtr::SockCommonOrNull, offsetof(bpf_sock, family), 4, false).ok());
  EXPECT_NE(msg(check_pointee_access(CtxPtr::SockCommonOrNull, offsetof(bpf_sock, mark), 4, false))
                .find("bpf_sock.mark is not accessible to sock_common pointers"),
            std::string::npos);
  EXPECT_TRUE(check_pointee_access(CtxPtr::Socket, offsetof(bpf_sock, mark), 4, false).ok());
  EXPECT_FALSE(check_pointee_access(CtxPtr::Socket, offsetof(bpf_sock, mark), 4, true).ok());
  EXPECT_TRUE(check_pointee_access(CtxPtr::FlowKeys, offsetof(bpf_flow_keys, nhoff), 2, true).ok());
  EXPECT_TRUE(check_pointee_access(CtxPtr::FlowKeys, offsetof(bpf_flow_keys, ipv4_src), 4, true).ok());
  EXPECT_FALSE(check_pointee_access(CtxPtr::FlowKeys, sizeof(bpf_flow_keys), 4, false).ok());
  EXPECT_FALSE(check_pointee_access(CtxPtr::Packet, 0, 4, false).ok());
  const ProgTypeInfo& tcp = tcp_sock_layout();
  EXPECT_TRUE(check_ctx_access(tcp, offsetof(bpf_tcp_sock, bytes_acked), 8, false).ok());
  EXPECT_FALSE(check_ctx_access(tcp, offsetof(bpf_tcp_sock, bytes_acked), 4, false).ok());
  EXPECT_TRUE(check_ctx_access(tcp, offsetof(bpf_tcp_sock, snd_cwnd), 4, false).ok());
  EXPECT_FALSE(check_ctx_access(tcp, offsetof(bpf_tcp_sock, snd_cwnd), 4, true).ok());
}

// ---- the rewrite -----------------------------------------------------------------------------------

TEST(CtxRewrite, XdpLoadsBecomeNativePointerLoads) {
  auto insns = A("r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr4 = *(u32 *)(r1 +12)\nr0 = 2\nexit\n");
  auto rw = rewrite_ctx_accesses(insns, T(kProgXdp));
  ASSERT_TRUE(rw.ok()) << rw.error().to_string();
  ASSERT_EQ(rw->size(), insns.size());
  EXPECT_EQ((*rw)[0].op, Op::LDXDW);
  EXPECT_EQ((*rw)[0].off, static_cast<int16_t>(offsetof(XdpNative, data)));
  EXPECT_EQ((*rw)[1].op, Op::LDXDW);
  EXPECT_EQ((*rw)[1].off, static_cast<int16_t>(offsetof(XdpNative, data_end)));
  EXPECT_EQ((*rw)[2].op, Op::LDXW);  // ingress_ifindex: identity
  EXPECT_EQ((*rw)[2].off, 12);
}

TEST(CtxRewrite, FollowsCopiesSpillsBranchesAndCalls) {
  // ctx copied to r6, spilled and filled, passed to a subprogram that reads __sk_buff.data.
  auto insns = A(
      "r6 = r1\n"
      "*(u64 *)(r10 -8) = r6\n"
      "r1 = 0\n"
      "if r2 == 0 goto +1\n"
      "r1 = 1\n"
      "r7 = *(u64 *)(r10 -8)\n"
      "r2 = *(u32 *)(r7 +80)\n"
      "*(u32 *)(r10 -16) = r2\n"
      "r1 = r7\n"
      "call pc+2\n"
      "r0 = *(u32 *)(r10 -16)\n"
      "exit\n"
      "r0 = *(u32 *)(r1 +76)\n"
      "exit\n");
  auto rw = rewrite_ctx_accesses(insns, T(kProgSchedCls));
  ASSERT_TRUE(rw.ok()) << rw.error().to_string();
  EXPECT_EQ((*rw)[6].op, Op::LDXDW);
  EXPECT_EQ((*rw)[6].off, static_cast<int16_t>(offsetof(SkbNative, data_end)));
  EXPECT_EQ((*rw)[12].op, Op::LDXDW);
  EXPECT_EQ((*rw)[12].off, static_cast<int16_t>(offsetof(SkbNative, data)));
  // Stack accesses are left alone.
  EXPECT_EQ((*rw)[7].off, -16);
  EXPECT_EQ((*rw)[10].off, -16);
  EXPECT_EQ((*rw)[10].op, Op::LDXW);
}

TEST(CtxRewrite, RejectsUnsafeOrAmbiguousBases) {
  auto err = [](const std::string& text, uint32_t type) {
    auto rw = rewrite_ctx_accesses(A(text), T(type));
    return rw.ok() ? std::string("accepted") : rw.error().to_string();
  };
  EXPECT_NE(err("r1 += 4\nr0 = *(u32 *)(r1 +0)\nexit\n", kProgXdp).find("modified context pointer"),
            std::string::npos);
  EXPECT_NE(err("if r2 == 0 goto +1\nr1 = r10\nr0 = *(u32 *)(r1 -8)\nexit\n", kProgXdp).find("some paths"),
            std::string::npos);
  EXPECT_NE(err("*(u32 *)(r1 +8) = 1\nr0 = 0\nexit\n", kProgSchedCls).find("BPF_ST"), std::string::npos);
  EXPECT_NE(err("r2 = 1\nlock *(u32 *)(r1 +8) += r2\nr0 = 0\nexit\n", kProgSchedCls).find("atomic"),
            std::string::npos);
  std::string e = err("r0 = *(u32 *)(r1 +77)\nexit\n", kProgSchedCls);
  EXPECT_NE(e.find("insn 0"), std::string::npos) << e;
  EXPECT_NE(e.find("misaligned"), std::string::npos) << e;
  e = err("r2 = 0\n*(u32 *)(r1 +0) = r2\nr0 = 0\nexit\n", kProgXdp);
  EXPECT_NE(e.find("xdp_md.data is read-only"), std::string::npos) << e;
  e = err("r0 = *(u32 *)(r1 +76)\nexit\n", kProgSocketFilter);
  EXPECT_NE(e.find("__sk_buff"), std::string::npos) << e;
  // The context stored into memory bpfvm cannot follow (here: into the packet).
  e = err("r2 = *(u32 *)(r1 +76)\n*(u64 *)(r2 +0) = r1\nr0 = 0\nexit\n", kProgSchedCls);
  EXPECT_NE(e.find("cannot follow"), std::string::npos) << e;
}

TEST(CtxRewrite, VerifierFactsCanBeSupplied) {
  auto insns = A("r2 = *(u32 *)(r1 +4)\nr0 = 0\nexit\n");
  CtxBaseFacts facts(insns.size(), BaseFact::NotCtx);  // claims: not the context
  auto rw = rewrite_ctx_accesses(insns, T(kProgXdp), &facts);
  ASSERT_TRUE(rw.ok());
  EXPECT_EQ((*rw)[0].op, Op::LDXW);
  facts[0] = BaseFact::Ctx;
  rw = rewrite_ctx_accesses(insns, T(kProgXdp), &facts);
  ASSERT_TRUE(rw.ok());
  EXPECT_EQ((*rw)[0].off, static_cast<int16_t>(offsetof(XdpNative, data_end)));
  CtxBaseFacts short_facts(1, BaseFact::NotCtx);
  EXPECT_FALSE(rewrite_ctx_accesses(insns, T(kProgXdp), &short_facts).ok());
}

TEST(CtxRewrite, LoopsAndCallbacksConverge) {
  auto insns = A(
      "r6 = r1\n"
      "r2 = 0\n"
      "r3 = *(u32 *)(r6 +0)\n"
      "r2 += 1\n"
      "if r2 < 10 goto -3\n"
      "r1 = 4\n"
      "r2 = 0 ll\n"  // placeholder for a callback address (not used as ctx)
      "r0 = *(u32 *)(r6 +16)\n"
      "exit\n");
  auto rw = rewrite_ctx_accesses(insns, T(kProgXdp));
  ASSERT_TRUE(rw.ok()) << rw.error().to_string();
  EXPECT_EQ((*rw)[2].op, Op::LDXDW);
  EXPECT_EQ((*rw)[8].off, 16);
}

// ---- test-run contexts and end-to-end runs ---------------------------------------------------------

TEST(TestRun, XdpFollowsTheKernelConventions) {
  auto frame = ipv4_udp_frame();
  auto tr = make_test_run(T(kProgXdp), frame, {});
  ASSERT_TRUE(tr.ok()) << tr.error().to_string();
  auto* x = static_cast<XdpNative*>((*tr)->native_ctx());
  EXPECT_EQ(x->data_end - x->data, frame.size());
  EXPECT_EQ(x->data_meta, x->data);
  EXPECT_EQ(x->ingress_ifindex, 1u);  // loopback, as the kernel's test run
  EXPECT_EQ(x->data - x->bounds.buf_start, 256u);
  EXPECT_EQ((*tr)->data_out(), frame);
  // Metadata from ctx_in: data_in = [4 bytes meta][frame].
  std::vector<uint8_t> in(4, 0xAB);
  in.insert(in.end(), frame.begin(), frame.end());
  xdp_md md{};
  md.data = 4;
  md.data_end = static_cast<uint32_t>(in.size());
  std::vector<uint8_t> ctx(sizeof md);
  std::memcpy(ctx.data(), &md, sizeof md);
  auto tr2 = make_test_run(T(kProgXdp), in, ctx);
  ASSERT_TRUE(tr2.ok()) << tr2.error().to_string();
  auto* x2 = static_cast<XdpNative*>((*tr2)->native_ctx());
  EXPECT_EQ(x2->data - x2->data_meta, 4u);
  EXPECT_EQ(x2->ingress_ifindex, 0u);
  // Kernel -EINVAL cases.
  md.data_end = 3;
  std::memcpy(ctx.data(), &md, sizeof md);
  auto bad = make_test_run(T(kProgXdp), in, ctx);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("data_end"), std::string::npos);
  EXPECT_FALSE(make_test_run(T(kProgXdp), std::vector<uint8_t>(10), {}).ok());
}

TEST(TestRun, SkbContexts) {
  auto frame = ipv4_udp_frame();
  auto tc = make_test_run(T(kProgSchedCls), frame, {});
  ASSERT_TRUE(tc.ok());
  auto* s = static_cast<SkbNative*>((*tc)->native_ctx());
  EXPECT_EQ(s->len, frame.size());
  EXPECT_EQ(s->protocol, 0x0008u);  // htons(ETH_P_IP) as the field reads
  EXPECT_EQ(s->pkt_type, 3u);       // PACKET_OTHERHOST on the loopback device
  EXPECT_EQ(s->ifindex, 1u);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(s->data)[12], 0x08);
  auto sf = make_test_run(T(kProgSocketFilter), frame, {});
  ASSERT_TRUE(sf.ok());
  auto* s2 = static_cast<SkbNative*>((*sf)->native_ctx());
  EXPECT_EQ(s2->len, frame.size() - 14);  // Ethernet header pulled
  EXPECT_EQ((*sf)->args().packet[0], 0x45);
  auto out = (*sf)->data_out();
  ASSERT_EQ(out.size(), frame.size());
  EXPECT_EQ(out[12], 0);  // the kernel re-pushes a zeroed Ethernet header
  EXPECT_EQ(out[14], 0x45);
  // ctx_in: mark and cb accepted, len refused.
  __sk_buff u{};
  u.mark = 7;
  u.cb[2] = 9;
  std::vector<uint8_t> ctx(sizeof u);
  std::memcpy(ctx.data(), &u, sizeof u);
  auto withctx = make_test_run(T(kProgSchedCls), frame, ctx);
  ASSERT_TRUE(withctx.ok()) << withctx.error().to_string();
  EXPECT_EQ(static_cast<SkbNative*>((*withctx)->native_ctx())->mark, 7u);
  u.len = 5;
  std::memcpy(ctx.data(), &u, sizeof u);
  auto bad = make_test_run(T(kProgSchedCls), frame, ctx);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("must be zero"), std::string::npos);
}

TEST(TestRun, RunsRewrittenPrograms) {
  auto frame = ipv4_udp_frame();
  // XDP: r0 = data_end - data.
  auto r = run_prog("r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr0 = r3\nr0 -= r2\nexit\n", kProgXdp, frame);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->r0, frame.size());
  // tc: read the IP protocol byte through data/data_end with a bounds check, write mark and cb[1].
  r = run_prog(
      "r2 = *(u32 *)(r1 +76)\n"
      "r3 = *(u32 *)(r1 +80)\n"
      "r4 = r2\n"
      "r4 += 24\n"
      "r0 = 0\n"
      "if r4 > r3 goto +6\n"
      "r0 = *(u8 *)(r2 +23)\n"
      "r5 = 0x55\n"
      "*(u32 *)(r1 +8) = r5\n"
      "*(u32 *)(r1 +52) = r0\n"
      "r5 = *(u32 *)(r1 +0)\n"
      "r0 += r5\n"
      "exit\n",
      kProgSchedCls, frame);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->r0, 17u + frame.size());
  auto ctx_out = r->tr->ctx_out();
  __sk_buff u;
  std::memcpy(&u, ctx_out.data(), sizeof u);
  EXPECT_EQ(u.mark, 0x55u);
  EXPECT_EQ(u.cb[1], 17u);
  // mem: r1 = data, r2 = length.
  r = run_prog("r0 = r2\nr3 = *(u8 *)(r1 +1)\nr0 += r3\nexit\n", kProgMem, {1, 2, 3});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->r0, 5u);
  // kprobe: ctx_in is struct pt_regs; read di (offset 112 on x86-64).
  std::vector<uint8_t> regs(168, 0);
  regs[112] = 42;
  r = run_prog("r0 = *(u64 *)(r1 +112)\nexit\n", kProgKprobe, {}, regs);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->r0, 42u);
}

// ---- agreement with the kernel's BPF_PROG_TEST_RUN -------------------------------------------------

TEST(TestRunKernel, SameResultsAsTheKernel) {
  if (!kernel::available()) GTEST_SKIP() << "kernel BPF unavailable: " << kernel::unavailable_reason();
  auto frame = ipv4_udp_frame();
  struct Case {
    uint32_t type;
    std::string text;
  } cases[] = {
      {kProgXdp, "r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr0 = r3\nr0 -= r2\nr4 = *(u32 *)(r1 +12)\n"
                 "r4 <<= 16\nr0 += r4\nexit\n"},
      // Socket filter: LD_ABS sees the frame after the Ethernet header (byte 9 of IP = protocol), plus len.
      {kProgSocketFilter, "r6 = r1\nr0 = *(u8 *)skb[9]\nr7 = r0\nr2 = *(u32 *)(r6 +0)\nr2 <<= 8\nr7 += r2\n"
                          "r3 = *(u32 *)(r6 +16)\nr3 <<= 24\nr7 += r3\nr0 = r7\nexit\n"},
      {kProgSchedCls, "r2 = *(u32 *)(r1 +76)\nr3 = *(u32 *)(r1 +80)\nr0 = r3\nr0 -= r2\nr4 = *(u32 *)(r1 +4)\n"
                      "r4 <<= 16\nr0 += r4\nr5 = *(u32 *)(r1 +16)\nr5 <<= 20\nr0 += r5\nexit\n"},
      // xdp_adjust_head(-4), then r0 = new length.
      {kProgXdp, "r6 = r1\nr2 = -4\ncall bpf_xdp_adjust_head\nr7 = r0\nr2 = *(u32 *)(r6 +0)\n"
                 "r3 = *(u32 *)(r6 +4)\nr0 = r3\nr0 -= r2\nr7 <<= 16\nr0 += r7\nexit\n"},
  };
  int compared = 0, not_offered = 0;
  for (const auto& c : cases) {
    auto insns = A(c.text);
    auto raw = encode(insns);
    auto k = kernel::load_program(raw, c.type, 1);
    if (!k.not_offered.empty()) {
      std::printf("  not compared: %s\n%s", k.not_offered.c_str(), c.text.c_str());
      ++not_offered;
      continue;
    }
    ASSERT_TRUE(static_cast<bool>(k.fd)) << "kernel refused: " << k.log;
    auto kr = kernel::test_run(k.fd.get(), frame, {}, 1, 4096);
    ASSERT_EQ(kr.err, 0) << c.text;
    auto ours = run_prog(c.text, c.type, frame);
    ASSERT_TRUE(ours.ok()) << ours.error().to_string();
    EXPECT_EQ(static_cast<uint32_t>(ours->r0), kr.retval) << c.text;
    EXPECT_EQ(ours->tr->data_out(), kr.data_out) << c.text;
    ++compared;
  }
  EXPECT_EQ(compared + not_offered, 4);
  if (compared == 0) GTEST_SKIP() << "the kernel offers none of what these cases use";
}

// ---- real objects (tests/progs/pt_*.bpf.c) through the loader, in every engine and in the kernel ------

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"

namespace {

struct ObjRun {
  TestRunResult res;
  Object obj;
};

// Runs the first program of a compiled test object in `engine` (checked when the interpreter).
Result<ObjRun> run_object(const std::string& file, EngineKind engine, std::span<const uint8_t> data,
                          std::span<const uint8_t> ctx = {}) {
  auto obj = load_object_file(std::string(BPFVM_PROGS_DIR) + "/" + file);
  if (!obj) return obj.error();
  auto live = instantiate(*obj);
  if (!live) return live.error();
  PrepareOptions o;
  o.rules = RuleSet::Privileged;  // the test's own programs, compared with the kernel's root rules
  o.engine = engine_choice(engine);
  o.exec.checked = engine == EngineKind::Interpreter;
  auto prep = prepare_program(obj->programs.at(0), *live, nullptr, o);
  if (!prep) return prep.error();
  auto r = test_run(*prep, data, ctx);
  if (!r) return r.error();
  return ObjRun{std::move(*r), std::move(*obj)};
}

}  // namespace

TEST(ProgTypeObjects, ContextFieldsInRealPrograms) {
  auto frame = ipv4_udp_frame();
  for (EngineKind e : {EngineKind::Interpreter, EngineKind::Jit}) {
    SCOPED_TRACE(engine_name(e));
    auto x = run_object("pt_xdp_fields.bpf.o", e, frame);
    if (!x && x.error().code == ErrorCode::Unsupported) continue;  // no JIT on this CPU
    ASSERT_TRUE(x.ok()) << x.error().to_string();
    EXPECT_EQ(x->res.retval, 2u);  // XDP_PASS: every field and helper behaved
    ASSERT_EQ(x->res.data_out.size(), frame.size());  // 4 bytes of metadata + frame minus 4 bytes
    uint32_t meta;
    std::memcpy(&meta, x->res.data_out.data(), 4);
    EXPECT_EQ(meta, 0xfeedu);

    auto t = run_object("pt_tc_fields.bpf.o", e, frame);
    ASSERT_TRUE(t.ok()) << t.error().to_string();
    EXPECT_EQ(t->res.retval, 0u);  // TC_ACT_OK for UDP
    __sk_buff u;
    ASSERT_EQ(t->res.ctx_out.size(), sizeof u);
    std::memcpy(&u, t->res.ctx_out.data(), sizeof u);
    EXPECT_EQ(u.mark, 1017u);
    EXPECT_EQ(u.cb[0], frame.size());
    EXPECT_EQ(u.cb[4], 0x0008u);
    EXPECT_EQ(u.priority, 3u);  // PACKET_OTHERHOST
    EXPECT_EQ(t->res.data_out[22], 42);

    auto s = run_object("pt_socket.bpf.o", e, frame);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_EQ(s->res.retval, 64u);
  }
}

TEST(ProgTypeObjects, SameResultsAsTheKernel) {
  if (!kernel::available()) GTEST_SKIP() << "kernel BPF unavailable: " << kernel::unavailable_reason();
  auto frame = ipv4_udp_frame();
  auto tcp = frame;
  tcp[23] = 6;
  int compared = 0;
  for (const char* file : {"pt_xdp_fields.bpf.o", "pt_tc_fields.bpf.o", "pt_socket.bpf.o"}) {
    for (const auto& data : {frame, tcp}) {
      auto ours = run_object(file, EngineKind::Interpreter, data);
      ASSERT_TRUE(ours.ok()) << ours.error().to_string();
      const ObjectProgram& p = ours->obj.programs.at(0);
      auto k = kernel::load_program(encode(p.insns), p.type, 1);
      if (!k.not_offered.empty()) {
        std::printf("  %s not compared: %s\n", file, k.not_offered.c_str());
        continue;
      }
      ++compared;
      ASSERT_TRUE(static_cast<bool>(k.fd)) << file << ": kernel refused:\n" << k.log;
      auto kr = kernel::test_run(k.fd.get(), data, {}, 1, 4096, p.type == kProgXdp ? 0 : sizeof(__sk_buff));
      ASSERT_EQ(kr.err, 0) << file;
      EXPECT_EQ(static_cast<uint32_t>(ours->res.retval), kr.retval) << file;
      EXPECT_EQ(ours->res.data_out, kr.data_out) << file;
      if (p.type == kProgSchedCls && kr.ctx_out.size() == sizeof(__sk_buff)) {
        __sk_buff a, b;
        std::memcpy(&a, ours->res.ctx_out.data(), sizeof a);
        std::memcpy(&b, kr.ctx_out.data(), sizeof b);
        EXPECT_EQ(a.mark, b.mark);
        EXPECT_EQ(std::memcmp(a.cb, b.cb, sizeof a.cb), 0);
        EXPECT_EQ(a.priority, b.priority);
      }
    }
  }
  if (compared == 0) GTEST_SKIP() << "the kernel offers none of what these programs use";
}
