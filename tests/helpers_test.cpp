// Helpers: the prototype table, the per-type check, every implemented helper with the kernel's
// conventions (return values, errno), and a few programs compared with the kernel.
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <set>
#include <string>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/vm.hpp"
#include "kernel/object_load.hpp"
#include "kernel/oracle.hpp"
#include "map_util.hpp"

using namespace bpfvm;

namespace {

using Fn = HelperFn;
Fn H(int32_t id) {
  Fn f = builtin_helper_impl(id);
  EXPECT_NE(f, nullptr) << "helper " << id;
  return f;
}
template <class T>
uint64_t P(T* p) {
  return reinterpret_cast<uint64_t>(p);
}
int64_t S(uint64_t v) { return static_cast<int64_t>(v); }

Insn I(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  return Insn{op, dst, src, off, imm};
}
// lddw rD, <64-bit value> (two slots)
void lddw(std::vector<Insn>& v, uint8_t dst, uint64_t value) {
  v.push_back(I(Op::LDDW, dst, 0, 0, static_cast<int64_t>(value)));
  v.push_back(I(Op::LDDW_HI));
}

std::shared_ptr<Map> mk(uint32_t type, uint32_t key, uint32_t value, uint32_t max, uint32_t flags = 0) {
  return bpfvm::test::make_map(MapSpec{"m", type, key, value, max, flags});
}

struct DetGuard {
  explicit DetGuard(DeterministicConfig c = {}) { set_deterministic(c); }
  ~DetGuard() { clear_deterministic(); }
};

}  // namespace

// ---- the prototype table -----------------------------------------------------------------------------

TEST(HelperProtos, TableMatchesTheKernelIdsAndNames) {
  std::map<int, std::string> expect;
#define BPFVM_TEST_FN(x) std::pair<int, const char*>{BPF_FUNC_##x, "bpf_" #x}
  const std::pair<int, const char*> list[] = {__BPF_FUNC_MAPPER(BPFVM_TEST_FN)};
#undef BPFVM_TEST_FN
  for (const auto& [id, name] : list) expect[id] = name;
  expect.erase(0);
  ASSERT_EQ(expect.size(), 209u);  // Linux 6.1's uapi
  for (const auto& [id, name] : expect) {
    const HelperProto* p = kernel_helper_proto(id);
    ASSERT_NE(p, nullptr) << id;
    EXPECT_EQ(p->id, id);
    EXPECT_EQ(p->name, name);
    EXPECT_EQ(kernel_helper_id(name), id);
  }
  EXPECT_EQ(kernel_helper_protos().size(), 212u);
  EXPECT_EQ(kernel_helper_proto(210)->name, "bpf_cgrp_storage_get");
  EXPECT_EQ(kernel_helper_proto(0), nullptr);
  EXPECT_EQ(kernel_helper_proto(212), nullptr);
  EXPECT_EQ(kernel_helper_id("loop"), 181);
  EXPECT_EQ(kernel_helper_id("bpf_no_such_helper"), -1);
}

TEST(HelperProtos, KernelArgumentAndReturnTypes) {
  const HelperProto* lookup = kernel_helper_proto(BPF_FUNC_map_lookup_elem);
  EXPECT_EQ(lookup->ret, RetType::MapValue);
  EXPECT_TRUE(lookup->ret_flags & kRetMaybeNull);
  EXPECT_EQ(lookup->nargs(), 2);
  EXPECT_EQ(format_proto(*lookup),
            "RET_PTR_TO_MAP_VALUE_OR_NULL bpf_map_lookup_elem(ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY)");
  const HelperProto* rr = kernel_helper_proto(BPF_FUNC_ringbuf_reserve);
  EXPECT_EQ(ret_type_name(rr->ret, rr->ret_flags), "RET_PTR_TO_RINGBUF_MEM_OR_NULL");
  EXPECT_EQ(rr->args[1].type, ArgType::ConstAllocSizeOrZero);
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_ringbuf_submit)->args[0].type, ArgType::RingbufMem);
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_ringbuf_submit)->ret, RetType::Void);
  const HelperProto* pr = kernel_helper_proto(BPF_FUNC_probe_read_kernel);
  EXPECT_EQ(arg_type_name(pr->args[0]), "ARG_PTR_TO_MEM | MEM_UNINIT");
  EXPECT_EQ(pr->args[1].type, ArgType::ConstSizeOrZero);
  EXPECT_TRUE(pr->gpl_only());
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_loop)->args[1].type, ArgType::Func);
  EXPECT_TRUE(kernel_helper_proto(BPF_FUNC_loop)->flags & kHelperCallsBack);
  EXPECT_TRUE(kernel_helper_proto(BPF_FUNC_xdp_adjust_head)->changes_pkt_data());
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_snprintf)->args[2].type, ArgType::ConstStr);
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_map_pop_elem)->args[1].flags, kArgUninit);
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_spin_lock)->args[0].type, ArgType::SpinLock);
  EXPECT_EQ(kernel_helper_proto(BPF_FUNC_tcp_raw_check_syncookie_ipv4)->args[0].size, 20);
  // Every proto is well formed: a size argument follows a memory argument without a fixed size.
  for (const auto& p : kernel_helper_protos()) {
    for (int i = 0; i < 5; ++i) {
      if (p.args[i].type == ArgType::ConstSize || p.args[i].type == ArgType::ConstSizeOrZero) {
        ASSERT_GT(i, 0) << p.name;
        EXPECT_EQ(p.args[i - 1].type, ArgType::Mem) << p.name << " arg " << i + 1;
      }
    }
  }
}

// The privilege tiers (strict rules allow Unprivileged and ProgType only): bpf_base_func_proto's
// tier for everyone is exactly this list; its CAP_BPF and CAP_PERFMON tiers and the tracing-only
// helpers are never given to an unprivileged loader.
TEST(HelperProtos, PrivilegeTiersFollowTheKernel) {
  const std::set<int32_t> base = {
      BPF_FUNC_map_lookup_elem, BPF_FUNC_map_update_elem, BPF_FUNC_map_delete_elem, BPF_FUNC_map_push_elem,
      BPF_FUNC_map_pop_elem, BPF_FUNC_map_peek_elem, BPF_FUNC_map_lookup_percpu_elem, BPF_FUNC_get_prandom_u32,
      BPF_FUNC_get_smp_processor_id, BPF_FUNC_get_numa_node_id, BPF_FUNC_tail_call, BPF_FUNC_ktime_get_ns,
      BPF_FUNC_ktime_get_boot_ns, BPF_FUNC_ktime_get_tai_ns, BPF_FUNC_ringbuf_output, BPF_FUNC_ringbuf_reserve,
      BPF_FUNC_ringbuf_submit, BPF_FUNC_ringbuf_discard, BPF_FUNC_ringbuf_query, BPF_FUNC_for_each_map_elem,
      BPF_FUNC_loop, BPF_FUNC_strncmp};
  for (const HelperProto& p : kernel_helper_protos().subspan(1)) {
    SCOPED_TRACE(std::string(p.name));
    EXPECT_EQ(p.priv == HelperPriv::Unprivileged, base.count(p.id) == 1);
  }
  auto priv = [](int32_t id) { return kernel_helper_proto(id)->priv; };
  for (int32_t id : {BPF_FUNC_spin_lock, BPF_FUNC_spin_unlock, BPF_FUNC_jiffies64, BPF_FUNC_per_cpu_ptr,
                     BPF_FUNC_this_cpu_ptr, BPF_FUNC_timer_init, BPF_FUNC_timer_set_callback, BPF_FUNC_timer_start,
                     BPF_FUNC_timer_cancel, BPF_FUNC_kptr_xchg, BPF_FUNC_dynptr_read})
    EXPECT_EQ(priv(id), HelperPriv::CapBpf) << id;
  for (int32_t id : {BPF_FUNC_trace_printk, BPF_FUNC_get_current_task, BPF_FUNC_get_current_task_btf,
                     BPF_FUNC_probe_read_user, BPF_FUNC_probe_read_kernel, BPF_FUNC_probe_read_user_str,
                     BPF_FUNC_probe_read_kernel_str, BPF_FUNC_snprintf_btf, BPF_FUNC_snprintf, BPF_FUNC_task_pt_regs,
                     BPF_FUNC_trace_vprintk, BPF_FUNC_skc_to_tcp_sock})
    EXPECT_EQ(priv(id), HelperPriv::CapPerfmon) << id;
  for (int32_t id : {BPF_FUNC_probe_read, BPF_FUNC_probe_read_str, BPF_FUNC_probe_write_user, BPF_FUNC_send_signal,
                     BPF_FUNC_override_return, BPF_FUNC_get_stack, BPF_FUNC_get_stackid, BPF_FUNC_d_path,
                     BPF_FUNC_copy_from_user, BPF_FUNC_get_func_ip})
    EXPECT_EQ(priv(id), HelperPriv::Tracing) << id;
  // A socket filter's own helpers (the kernel gives them to unprivileged socket filters).
  for (int32_t id : {BPF_FUNC_skb_load_bytes, BPF_FUNC_skb_load_bytes_relative, BPF_FUNC_get_socket_cookie,
                     BPF_FUNC_get_socket_uid, BPF_FUNC_perf_event_output, BPF_FUNC_ktime_get_coarse_ns})
    EXPECT_EQ(priv(id), HelperPriv::ProgType) << id;
  EXPECT_TRUE(helper_priv_unprivileged(HelperPriv::ProgType));
  EXPECT_FALSE(helper_priv_unprivileged(HelperPriv::CapBpf));
  EXPECT_STREQ(helper_priv_capability(HelperPriv::CapPerfmon), "CAP_PERFMON");
}

TEST(HelperSetTest, RefusesWhatATypeCannotCall) {
  const HelperSet& hs = HelperSet::kernel();
  std::vector<Insn> prog = {I(Op::CALL_HELPER, 0, 0, 0, BPF_FUNC_xdp_adjust_head), I(Op::EXIT)};
  EXPECT_TRUE(hs.check_program(prog, kProgXdp).ok());
  auto st = hs.check_program(prog, kProgSocketFilter);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().pc, 0);
  EXPECT_NE(st.error().message.find("bpf_xdp_adjust_head (id 44), which is not allowed for socket_filter"),
            std::string::npos)
      << st.error().message;
  prog[0].imm = BPF_FUNC_skb_vlan_push;  // allowed for tc, not implemented by bpfvm
  st = hs.check_program(prog, kProgSchedCls);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message,
            "program uses helper bpf_skb_vlan_push (id 18), which bpfvm does not provide for sched_cls programs");
  prog[0].imm = BPF_FUNC_probe_read_kernel;
  EXPECT_TRUE(hs.check_program(prog, kProgKprobe, true).ok());
  st = hs.check_program(prog, kProgKprobe, false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("GPL-only"), std::string::npos);
  EXPECT_TRUE(license_is_gpl_compatible("Dual BSD/GPL"));
  EXPECT_FALSE(license_is_gpl_compatible("MIT"));
  prog[0].imm = 999;
  EXPECT_NE(hs.check_program(prog, kProgXdp).error().message.find("unknown helper id 999"), std::string::npos);
  // table_for: only provided helpers; the per-type flavour of bpf_redirect.
  HelperTable xdp = hs.table_for(kProgXdp);
  ASSERT_NE(xdp.find(BPF_FUNC_redirect), nullptr);
  EXPECT_EQ(xdp.find(BPF_FUNC_redirect)->fn(3, 0, 0, 0, 0), 4u);  // XDP_REDIRECT
  HelperTable tc = hs.table_for(kProgSchedCls);
  EXPECT_EQ(tc.find(BPF_FUNC_redirect)->fn(3, 0, 0, 0, 0), 7u);  // TC_ACT_REDIRECT
  EXPECT_EQ(tc.find(BPF_FUNC_redirect)->fn(3, 8, 0, 0, 0), 2u);  // bad flags: TC_ACT_SHOT
  EXPECT_EQ(xdp.find(BPF_FUNC_redirect)->fn(3, 1, 0, 0, 0), 0u);  // bad flags: XDP_ABORTED
  EXPECT_EQ(xdp.find(BPF_FUNC_skb_load_bytes), nullptr);
  EXPECT_TRUE(hs.table_for(kProgSchedCls).find(BPF_FUNC_tail_call)->tail_call);
  EXPECT_TRUE(hs.provided(kProgKprobe, BPF_FUNC_probe_read_kernel));
  EXPECT_FALSE(hs.provided(kProgXdp, BPF_FUNC_probe_read_kernel - 100));
}

namespace {
uint64_t times_three(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return a * 3; }
}  // namespace

TEST(HelperSetTest, EmbedderHelpers) {
  HelperSet hs;
  HelperProto proto;
  proto.ret = RetType::Integer;
  proto.args[0] = HelperArg{ArgType::Anything};
  ASSERT_TRUE(hs.add(10001, "my_triple", proto, &times_three, {kProgMem}).ok());
  EXPECT_EQ(hs.find("my_triple")->proto.id, 10001);
  EXPECT_EQ(hs.name_of(10001), "my_triple");
  EXPECT_TRUE(hs.provided(kProgMem, 10001));
  EXPECT_FALSE(hs.allowed(kProgXdp, 10001));
  EXPECT_FALSE(hs.add(0, "zero", proto, &times_three).ok());
  EXPECT_FALSE(hs.add(10002, "my_triple", proto, &times_three).ok());  // name taken
  EXPECT_FALSE(hs.add(10003, "nofn", proto, nullptr).ok());
  // A program calls it through the table.
  std::vector<Insn> prog = {I(Op::MOV64_IMM, 1, 0, 0, 14), I(Op::CALL_HELPER, 0, 0, 0, 10001), I(Op::EXIT)};
  ASSERT_TRUE(hs.check_program(prog, kProgMem).ok());
  auto exe = Executable::create(Program{"e", prog}, hs.table_for(kProgMem));
  ASSERT_TRUE(exe.ok()) << exe.error().to_string();
  EXPECT_EQ(*(*exe)->run_on_memory(nullptr, 0), 42u);
  // The shared kernel set is untouched.
  EXPECT_EQ(HelperSet::kernel().find(10001), nullptr);
}

// ---- time, randomness, CPU, task -------------------------------------------------------------------

TEST(Helpers, DeterministicMode) {
  DeterministicConfig c;
  c.seed = 42;
  c.clock_start_ns = 5000;
  c.clock_step_ns = 10;
  c.cpus = 3;
  c.pid = 77;
  c.tgid = 66;
  c.uid = 5;
  c.gid = 6;
  c.comm = "detcomm";
  DetGuard g(c);
  EXPECT_EQ(H(BPF_FUNC_ktime_get_ns)(0, 0, 0, 0, 0), 5000u);
  EXPECT_EQ(H(BPF_FUNC_ktime_get_boot_ns)(0, 0, 0, 0, 0), 5010u);
  EXPECT_EQ(H(BPF_FUNC_ktime_get_coarse_ns)(0, 0, 0, 0, 0), 5020u);
  std::vector<uint64_t> a, b;
  for (int i = 0; i < 5; ++i) a.push_back(H(BPF_FUNC_get_prandom_u32)(0, 0, 0, 0, 0));
  reset_deterministic_state();
  EXPECT_EQ(H(BPF_FUNC_ktime_get_ns)(0, 0, 0, 0, 0), 5000u);
  for (int i = 0; i < 5; ++i) b.push_back(H(BPF_FUNC_get_prandom_u32)(0, 0, 0, 0, 0));
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]);
  for (uint64_t v : a) EXPECT_LE(v, 0xffffffffu);
  EXPECT_EQ(possible_cpus(), 3);
  EXPECT_EQ(H(BPF_FUNC_get_current_pid_tgid)(0, 0, 0, 0, 0), (66ull << 32) | 77);
  EXPECT_EQ(H(BPF_FUNC_get_current_uid_gid)(0, 0, 0, 0, 0), (6ull << 32) | 5);
  char comm[16];
  EXPECT_EQ(H(BPF_FUNC_get_current_comm)(P(comm), sizeof comm, 0, 0, 0), 0u);
  EXPECT_STREQ(comm, "detcomm");
  EXPECT_EQ(H(BPF_FUNC_get_numa_node_id)(0, 0, 0, 0, 0), 0u);
}

TEST(Helpers, HostTaskAndClock) {
  clear_deterministic();
  uint64_t pt = H(BPF_FUNC_get_current_pid_tgid)(0, 0, 0, 0, 0);
  EXPECT_EQ(pt >> 32, static_cast<uint64_t>(getpid()));
  EXPECT_EQ(pt & 0xffffffff, static_cast<uint64_t>(gettid()));
  EXPECT_EQ(H(BPF_FUNC_get_current_uid_gid)(0, 0, 0, 0, 0), (uint64_t(getgid()) << 32) | getuid());
  char name[17] = {};
  prctl(PR_GET_NAME, name);
  char comm[16];
  ASSERT_EQ(H(BPF_FUNC_get_current_comm)(P(comm), sizeof comm, 0, 0, 0), 0u);
  EXPECT_STREQ(comm, name);
  char small[4];
  ASSERT_EQ(H(BPF_FUNC_get_current_comm)(P(small), sizeof small, 0, 0, 0), 0u);
  EXPECT_EQ(std::strlen(small), std::min<size_t>(3, std::strlen(name)));
  uint64_t t1 = H(BPF_FUNC_ktime_get_ns)(0, 0, 0, 0, 0), t2 = H(BPF_FUNC_ktime_get_ns)(0, 0, 0, 0, 0);
  EXPECT_LE(t1, t2);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  EXPECT_NEAR(static_cast<double>(t2), ts.tv_sec * 1e9 + ts.tv_nsec, 1e9);
  EXPECT_EQ(H(BPF_FUNC_get_smp_processor_id)(0, 0, 0, 0, 0), static_cast<uint64_t>(current_cpu()));
  set_current_cpu(1);
  EXPECT_EQ(H(BPF_FUNC_get_smp_processor_id)(0, 0, 0, 0, 0), 1u);
  set_current_cpu(0);
  uint64_t j = H(BPF_FUNC_jiffies64)(0, 0, 0, 0, 0);
  EXPECT_GT(j, 0u);
}

// ---- safe reads ------------------------------------------------------------------------------------

TEST(Helpers, ProbeReadNeverFaults) {
  const char src[] = "hello, probe";
  char dst[32];
  for (int id : {BPF_FUNC_probe_read, BPF_FUNC_probe_read_user, BPF_FUNC_probe_read_kernel}) {
    std::memset(dst, 'x', sizeof dst);
    EXPECT_EQ(H(id)(P(dst), 5, P(src), 0, 0), 0u);
    EXPECT_EQ(std::memcmp(dst, "hello", 5), 0);
    // Unmapped memory: -EFAULT and the destination cleared.
    void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(page, MAP_FAILED);
    std::memset(dst, 'x', sizeof dst);
    EXPECT_EQ(S(H(id)(P(dst), 16, P(page), 0, 0)), -EFAULT);
    EXPECT_EQ(dst[0], 0);
    EXPECT_EQ(dst[15], 0);
    EXPECT_EQ(S(H(id)(P(dst), 8, 16, 0, 0)), -EFAULT);  // NULL page
    munmap(page, 4096);
    EXPECT_EQ(H(id)(P(dst), 0, 16, 0, 0), 0u);  // size 0
  }
  for (int id : {BPF_FUNC_probe_read_str, BPF_FUNC_probe_read_user_str, BPF_FUNC_probe_read_kernel_str}) {
    std::memset(dst, 'x', sizeof dst);
    EXPECT_EQ(H(id)(P(dst), sizeof dst, P(src), 0, 0), sizeof(src));  // length including the NUL
    EXPECT_STREQ(dst, src);
    EXPECT_EQ(H(id)(P(dst), 6, P(src), 0, 0), 6u);  // truncated: size, NUL-terminated
    EXPECT_STREQ(dst, "hello");
    EXPECT_EQ(S(H(id)(P(dst), 8, 24, 0, 0)), -EFAULT);
    EXPECT_EQ(H(id)(P(dst), 0, P(src), 0, 0), 0u);
  }
  // A string ending right before an unmapped page is read fine.
  uint8_t* two = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(two, MAP_FAILED);
  mprotect(two + 4096, 4096, PROT_NONE);
  std::memcpy(two + 4096 - 4, "abc", 4);
  EXPECT_EQ(H(BPF_FUNC_probe_read_kernel_str)(P(dst), sizeof dst, P(two + 4096 - 4), 0, 0), 4u);
  EXPECT_STREQ(dst, "abc");
  std::memcpy(two + 4096 - 4, "abcd", 4);  // no NUL before the hole
  EXPECT_EQ(S(H(BPF_FUNC_probe_read_kernel_str)(P(dst), sizeof dst, P(two + 4096 - 4), 0, 0)), -EFAULT);
  munmap(two, 8192);
}

TEST(Helpers, Stacks) {
  uint64_t buf[8];
  uint64_t n = H(BPF_FUNC_get_stack)(0, P(buf), sizeof buf, BPF_F_USER_STACK, 0);
  EXPECT_GT(S(n), 0);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_NE(buf[0], 0u);
  EXPECT_EQ(S(H(BPF_FUNC_get_stack)(0, P(buf), sizeof buf, 0, 0)), -EFAULT);  // no kernel stack
  EXPECT_EQ(S(H(BPF_FUNC_get_stack)(0, P(buf), 12, BPF_F_USER_STACK, 0)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_get_stack)(0, P(buf), sizeof buf, 1ull << 20, 0)), -EINVAL);
  auto st = mk(BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 16, 64);
  ASSERT_TRUE(st);
  uint64_t id1 = H(BPF_FUNC_get_stackid)(0, P(st.get()), BPF_F_USER_STACK, 0, 0);
  ASSERT_GE(S(id1), 0);
  EXPECT_LT(id1, 64u);
  uint64_t copy[16];
  EXPECT_EQ(st->lookup_copy(&id1, copy, 0), 0);
  EXPECT_NE(copy[0], 0u);
  EXPECT_EQ(S(H(BPF_FUNC_get_stackid)(0, P(st.get()), 1ull << 20, 0, 0)), -EINVAL);
}

// ---- strings ----------------------------------------------------------------------------------------

TEST(Helpers, StrtolAndStrtoul) {
  auto strtol = [](const char* s, uint64_t flags, int64_t* out, size_t len = 0) {
    return S(H(BPF_FUNC_strtol)(P(s), len ? len : std::strlen(s), flags, P(out), 0));
  };
  auto strtoul = [](const char* s, uint64_t flags, uint64_t* out) {
    return S(H(BPF_FUNC_strtoul)(P(s), std::strlen(s), flags, P(out), 0));
  };
  int64_t v = 0;
  uint64_t u = 0;
  EXPECT_EQ(strtol("  -123abc", 0, &v), 6);
  EXPECT_EQ(v, -123);
  EXPECT_EQ(strtol("0x1f", 0, &v), 4);
  EXPECT_EQ(v, 31);
  EXPECT_EQ(strtol("0x1f", 16, &v), 4);
  EXPECT_EQ(strtol("017", 0, &v), 3);
  EXPECT_EQ(v, 15);
  EXPECT_EQ(strtol("1234", 10, &v, 2), 2);  // only buf_len bytes
  EXPECT_EQ(v, 12);
  EXPECT_EQ(strtol("abc", 10, &v), -EINVAL);
  EXPECT_EQ(strtol("12", 7, &v), -EINVAL);    // base must be 0, 8, 10 or 16
  EXPECT_EQ(strtol("12", 0x20, &v), -EINVAL);  // unknown flag bits
  EXPECT_EQ(strtol("9223372036854775808", 10, &v), -ERANGE);
  EXPECT_EQ(strtol("-9223372036854775808", 10, &v), 20);
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_EQ(strtol("99999999999999999999", 10, &v), -ERANGE);
  EXPECT_EQ(strtoul("18446744073709551615", 10, &u), 20);
  EXPECT_EQ(u, UINT64_MAX);
  EXPECT_EQ(strtoul("-1", 10, &u), -EINVAL);
  EXPECT_EQ(strtoul("  ", 10, &u), -EINVAL);
}

TEST(Helpers, StrncmpAndSnprintf) {
  auto cmp = [](const char* a, size_t n, const char* b) { return S(H(BPF_FUNC_strncmp)(P(a), n, P(b), 0, 0)); };
  EXPECT_EQ(cmp("abc", 3, "abc"), 0);
  EXPECT_EQ(cmp("abd", 3, "abc"), 1);
  EXPECT_EQ(cmp("abb", 3, "abc"), -1);
  EXPECT_EQ(cmp("abcX", 3, "abcY"), 0);
  char out[64];
  const char* str = "str";
  uint64_t args[] = {static_cast<uint64_t>(-5), P(str), 0xbeef, 'Z'};
  const char fmt1[] = "%d|%s|%llx|%c|%%|%5u";
  uint64_t args2[] = {args[0], args[1], args[2], args[3], 42};
  EXPECT_EQ(H(BPF_FUNC_snprintf)(P(out), sizeof out, P(fmt1), P(args2), sizeof args2), 22u);
  EXPECT_STREQ(out, "-5|str|beef|Z|%|   42");
  EXPECT_EQ(H(BPF_FUNC_snprintf)(P(out), 5, P(fmt1), P(args2), sizeof args2), 22u);  // truncated
  EXPECT_STREQ(out, "-5|s");
  const char bad[] = "%q";
  EXPECT_EQ(S(H(BPF_FUNC_snprintf)(P(out), sizeof out, P(bad), P(args), 8)), -EINVAL);
  const char two[] = "%d %d";
  EXPECT_EQ(S(H(BPF_FUNC_snprintf)(P(out), sizeof out, P(two), P(args), 8)), -EINVAL);  // too few args
  EXPECT_EQ(S(H(BPF_FUNC_snprintf)(P(out), sizeof out, P(two), P(args), 7)), -EINVAL);  // data_len % 8
  const char ip[] = "%pI4";
  uint8_t addr[4] = {10, 1, 2, 3};
  uint64_t ipargs[] = {P(addr)};
  EXPECT_EQ(H(BPF_FUNC_snprintf)(P(out), sizeof out, P(ip), P(ipargs), 8), 9u);
  EXPECT_STREQ(out, "10.1.2.3");
}

TEST(Helpers, TracePrintk) {
  std::string got;
  set_printk_sink([&](std::string_view m) { got += m; });
  const char fmt[] = "x=%d y=%lu\n";
  EXPECT_EQ(H(BPF_FUNC_trace_printk)(P(fmt), sizeof fmt, 7, 9, 0), 8u);
  EXPECT_EQ(got, "x=7 y=9\n");
  const char nonul[3] = {'a', 'b', 'c'};
  EXPECT_EQ(S(H(BPF_FUNC_trace_printk)(P(nonul), 3, 0, 0, 0)), -EINVAL);
  uint64_t data[4] = {1, 2, 3, 4};
  const char vf[] = "%d%d%d%d";
  got.clear();
  EXPECT_EQ(H(BPF_FUNC_trace_vprintk)(P(vf), sizeof vf, P(data), sizeof data, 0), 4u);
  EXPECT_EQ(got, "1234");
  set_printk_sink({});
}

// ---- packets -----------------------------------------------------------------------------------------

TEST(Helpers, CsumDiffAndReplace) {
  uint32_t to[2] = {0x01020304, 0x0a0b0c0d};
  uint32_t from[1] = {0x01020304};
  EXPECT_EQ(H(BPF_FUNC_csum_diff)(0, 0, P(to), 4, 0), 0x0406u);  // 0x0102 + 0x0304, folded
  EXPECT_EQ(H(BPF_FUNC_csum_diff)(P(from), 4, P(to), 4, 0), 0xffffu);    // ~x + x
  EXPECT_EQ(H(BPF_FUNC_csum_diff)(0, 0, P(to), 8, 0x10000), 0x1a1fu);
  EXPECT_EQ(S(H(BPF_FUNC_csum_diff)(P(from), 3, P(to), 4, 0)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_csum_diff)(P(from), 4, P(to), 516, 0)), -EINVAL);
  // l3_csum_replace keeps an IPv4 header checksum valid.
  std::vector<uint8_t> frame(34, 0);
  frame[12] = 0x08;
  uint8_t* ip = frame.data() + 14;
  const uint8_t hdr[20] = {0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2};
  std::memcpy(ip, hdr, 20);
  auto checksum = [](const uint8_t* h) {
    uint32_t s = 0;
    for (int i = 0; i < 20; i += 2) s += (h[i] << 8) | h[i + 1];
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
  };
  uint16_t c = checksum(ip);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  ASSERT_EQ(checksum(ip), 0);
  auto tr = make_test_run(*find_prog_type(kProgSchedCls), frame, {});
  ASSERT_TRUE(tr.ok());
  auto* s = static_cast<SkbNative*>((*tr)->native_ctx());
  uint8_t* pip = reinterpret_cast<uint8_t*>(s->data) + 14;
  uint32_t old_daddr, new_daddr;
  std::memcpy(&old_daddr, pip + 16, 4);
  const uint8_t nd[4] = {192, 168, 7, 9};
  std::memcpy(&new_daddr, nd, 4);
  std::memcpy(pip + 16, nd, 4);
  EXPECT_EQ(H(BPF_FUNC_l3_csum_replace)(P(s), 24, old_daddr, new_daddr, 4), 0u);
  EXPECT_EQ(checksum(pip), 0);
  // 2-byte form: change the TTL/protocol word.
  uint16_t old_w, new_w;
  std::memcpy(&old_w, pip + 8, 2);
  pip[8] = 3;
  std::memcpy(&new_w, pip + 8, 2);
  EXPECT_EQ(H(BPF_FUNC_l3_csum_replace)(P(s), 24, old_w, new_w, 2), 0u);
  EXPECT_EQ(checksum(pip), 0);
  EXPECT_EQ(S(H(BPF_FUNC_l3_csum_replace)(P(s), 25, 0, 0, 2)), -EFAULT);  // odd offset
  EXPECT_EQ(S(H(BPF_FUNC_l3_csum_replace)(P(s), 24, 0, 0, 3)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_l3_csum_replace)(P(s), 24, 1, 0, 0)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_l4_csum_replace)(P(s), 24, 0, 0, 1 << 8)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_l3_csum_replace)(P(s), 33, 0, 0, 4)), -EFAULT);
}

TEST(Helpers, XdpAdjustments) {
  std::vector<uint8_t> frame(64, 0x11);
  auto tr = make_test_run(*find_prog_type(kProgXdp), frame, {});
  ASSERT_TRUE(tr.ok());
  auto* x = static_cast<XdpNative*>((*tr)->native_ctx());
  uint64_t ctx = P(x);
  uint64_t data0 = x->data;
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, static_cast<uint64_t>(-16), 0, 0, 0), 0u);
  EXPECT_EQ(x->data, data0 - 16);
  EXPECT_EQ(x->data_meta, x->data);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, 16, 0, 0, 0), 0u);
  // Headroom: 256 bytes minus the 40-byte xdp_frame.
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_head)(ctx, static_cast<uint64_t>(-217), 0, 0, 0)), -EINVAL);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, static_cast<uint64_t>(-216), 0, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, 216, 0, 0, 0), 0u);
  // Must keep at least 14 bytes.
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_head)(ctx, 51, 0, 0, 0)), -EINVAL);
  EXPECT_EQ(H(BPF_FUNC_xdp_get_buff_len)(ctx, 0, 0, 0, 0), 64u);
  // Metadata: multiple of 4, at most 32.
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_meta)(ctx, static_cast<uint64_t>(-6), 0, 0, 0)), -EACCES);
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_meta)(ctx, static_cast<uint64_t>(-36), 0, 0, 0)), -EACCES);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_meta)(ctx, static_cast<uint64_t>(-8), 0, 0, 0), 0u);
  EXPECT_EQ(x->data - x->data_meta, 8u);
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_meta)(ctx, 12, 0, 0, 0)), -EINVAL);  // beyond data
  // adjust_head moves the metadata along.
  std::memset(reinterpret_cast<void*>(x->data_meta), 0xAB, 8);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, static_cast<uint64_t>(-4), 0, 0, 0), 0u);
  EXPECT_EQ(x->data - x->data_meta, 8u);
  EXPECT_EQ(*reinterpret_cast<uint8_t*>(x->data_meta), 0xAB);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_head)(ctx, 4, 0, 0, 0), 0u);
  // Tail: grow up to frame end - 320 (zero filled), shrink to 14 bytes.
  uint64_t room = x->bounds.buf_end - x->data_end;
  EXPECT_EQ(room, 4096u - 320 - 256 - 64);
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_tail)(ctx, room + 1, 0, 0, 0)), -EINVAL);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_tail)(ctx, 10, 0, 0, 0), 0u);
  EXPECT_EQ(reinterpret_cast<uint8_t*>(x->data_end)[-1], 0);
  EXPECT_EQ(H(BPF_FUNC_xdp_adjust_tail)(ctx, static_cast<uint64_t>(-60), 0, 0, 0), 0u);
  EXPECT_EQ(x->data_end - x->data, 14u);
  EXPECT_EQ(S(H(BPF_FUNC_xdp_adjust_tail)(ctx, static_cast<uint64_t>(-1), 0, 0, 0)), -EINVAL);
  // load/store bytes.
  uint8_t b[4];
  EXPECT_EQ(H(BPF_FUNC_xdp_load_bytes)(ctx, 10, P(b), 4, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_xdp_load_bytes)(ctx, 11, P(b), 4, 0)), -EINVAL);
  EXPECT_EQ(H(BPF_FUNC_xdp_store_bytes)(ctx, 0, P(b), 4, 0), 0u);
  // redirect_map: a missing key returns the low bits of flags (the fallback action).
  auto devmap = mk(BPF_MAP_TYPE_DEVMAP, 4, 4, 8);
  ASSERT_TRUE(devmap);
  HelperTable xdp = HelperSet::kernel().table_for(kProgXdp);
  EXPECT_EQ(xdp.find(BPF_FUNC_redirect_map)->fn(P(devmap.get()), 3, 2, 0, 0), 2u);  // XDP_PASS fallback
  uint32_t k = 3, ifx = 1;
  ASSERT_EQ(devmap->update_user(&k, &ifx, 0), 0);
  redirect_info() = {};
  EXPECT_EQ(xdp.find(BPF_FUNC_redirect_map)->fn(P(devmap.get()), 3, 0, 0, 0), 4u);
  EXPECT_TRUE(redirect_info().set);
  EXPECT_EQ(redirect_info().ifindex, 3u);
  EXPECT_EQ(xdp.find(BPF_FUNC_redirect_map)->fn(P(devmap.get()), 3, 1 << 7, 0, 0), 0u);  // bad flag: ABORTED
}

TEST(Helpers, SkbLoadStoreBytes) {
  std::vector<uint8_t> frame(40);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i);
  auto tr = make_test_run(*find_prog_type(kProgSchedCls), frame, {});
  ASSERT_TRUE(tr.ok());
  auto* s = static_cast<SkbNative*>((*tr)->native_ctx());
  uint8_t b[8];
  EXPECT_EQ(H(BPF_FUNC_skb_load_bytes)(P(s), 12, P(b), 2, 0), 0u);
  EXPECT_EQ(b[0], 12);
  std::memset(b, 0x77, sizeof b);
  EXPECT_EQ(S(H(BPF_FUNC_skb_load_bytes)(P(s), 36, P(b), 8, 0)), -EFAULT);
  EXPECT_EQ(b[0], 0);  // cleared on error
  const uint8_t w[2] = {0xAA, 0xBB};
  s->hash = 99;
  EXPECT_EQ(H(BPF_FUNC_skb_store_bytes)(P(s), 38, P(w), 2, BPF_F_INVALIDATE_HASH), 0u);
  EXPECT_EQ(s->hash, 0u);
  EXPECT_EQ((*tr)->data_out()[39], 0xBB);
  EXPECT_EQ(S(H(BPF_FUNC_skb_store_bytes)(P(s), 39, P(w), 2, 0)), -EFAULT);
  EXPECT_EQ(S(H(BPF_FUNC_skb_store_bytes)(P(s), 0, P(w), 2, 4)), -EINVAL);
  // Socket filters see the frame after the Ethernet header.
  auto sf = make_test_run(*find_prog_type(kProgSocketFilter), frame, {});
  ASSERT_TRUE(sf.ok());
  EXPECT_EQ(H(BPF_FUNC_skb_load_bytes)(P((*sf)->native_ctx()), 0, P(b), 1, 0), 0u);
  EXPECT_EQ(b[0], 14);
  // Relative to the MAC or network header, whatever data points at.
  EXPECT_EQ(H(BPF_FUNC_skb_load_bytes_relative)(P((*sf)->native_ctx()), 12, P(b), 2, BPF_HDR_START_MAC), 0u);
  EXPECT_EQ(b[0], 12);
  EXPECT_EQ(H(BPF_FUNC_skb_load_bytes_relative)(P((*sf)->native_ctx()), 1, P(b), 1, BPF_HDR_START_NET), 0u);
  EXPECT_EQ(b[0], 15);
  EXPECT_EQ(S(H(BPF_FUNC_skb_load_bytes_relative)(P((*sf)->native_ctx()), 30, P(b), 8, BPF_HDR_START_NET)),
            -EFAULT);
  EXPECT_EQ(S(H(BPF_FUNC_skb_load_bytes_relative)(P((*sf)->native_ctx()), 0, P(b), 1, 2)), -EFAULT);
}

// ---- maps, callbacks and tail calls in running programs ----------------------------------------------

TEST(HelperMaps, LookupUpdateDeleteWithKernelErrnos) {
  auto hash = mk(BPF_MAP_TYPE_HASH, 4, 8, 2);
  ASSERT_TRUE(hash);
  uint32_t k = 1;
  uint64_t v = 10;
  uint64_t m = P(hash.get());
  EXPECT_EQ(H(BPF_FUNC_map_lookup_elem)(m, P(&k), 0, 0, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_map_update_elem)(m, P(&k), P(&v), BPF_EXIST, 0)), -ENOENT);
  EXPECT_EQ(H(BPF_FUNC_map_update_elem)(m, P(&k), P(&v), BPF_NOEXIST, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_map_update_elem)(m, P(&k), P(&v), BPF_NOEXIST, 0)), -EEXIST);
  auto* pv = reinterpret_cast<uint64_t*>(H(BPF_FUNC_map_lookup_elem)(m, P(&k), 0, 0, 0));
  ASSERT_NE(pv, nullptr);
  EXPECT_EQ(*pv, 10u);
  uint32_t k2 = 2, k3 = 3;
  EXPECT_EQ(H(BPF_FUNC_map_update_elem)(m, P(&k2), P(&v), BPF_ANY, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_map_update_elem)(m, P(&k3), P(&v), BPF_ANY, 0)), -E2BIG);
  EXPECT_EQ(H(BPF_FUNC_map_delete_elem)(m, P(&k), 0, 0, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_map_delete_elem)(m, P(&k), 0, 0, 0)), -ENOENT);
  // Queue: push / peek / pop.
  auto q = mk(BPF_MAP_TYPE_QUEUE, 0, 4, 2);
  ASSERT_TRUE(q);
  uint32_t a = 5, b = 6, c = 7, out = 0;
  uint64_t qm = P(q.get());
  EXPECT_EQ(H(BPF_FUNC_map_push_elem)(qm, P(&a), 0, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_map_push_elem)(qm, P(&b), 0, 0, 0), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_map_push_elem)(qm, P(&c), 0, 0, 0)), -E2BIG);
  EXPECT_EQ(H(BPF_FUNC_map_push_elem)(qm, P(&c), BPF_EXIST, 0, 0), 0u);  // overwrite oldest
  EXPECT_EQ(H(BPF_FUNC_map_peek_elem)(qm, P(&out), 0, 0, 0), 0u);
  EXPECT_EQ(out, 6u);
  EXPECT_EQ(H(BPF_FUNC_map_pop_elem)(qm, P(&out), 0, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_map_pop_elem)(qm, P(&out), 0, 0, 0), 0u);
  EXPECT_EQ(out, 7u);
  EXPECT_EQ(S(H(BPF_FUNC_map_pop_elem)(qm, P(&out), 0, 0, 0)), -ENOENT);
  // Per-CPU lookup of another CPU's slot.
  auto pa = mk(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1);
  ASSERT_TRUE(pa);
  uint32_t zero = 0;
  EXPECT_NE(H(BPF_FUNC_map_lookup_percpu_elem)(P(pa.get()), P(&zero), 0, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_map_lookup_percpu_elem)(P(pa.get()), P(&zero), 100000, 0, 0), 0u);
}

TEST(HelperMaps, RingbufAndPerfOutput) {
  auto rb = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096);
  ASSERT_TRUE(rb);
  uint64_t m = P(rb.get());
  auto* rec = reinterpret_cast<uint32_t*>(H(BPF_FUNC_ringbuf_reserve)(m, 8, 0, 0, 0));
  ASSERT_NE(rec, nullptr);
  rec[0] = 0xabc;
  rec[1] = 1;
  H(BPF_FUNC_ringbuf_submit)(P(rec), 0, 0, 0, 0);
  auto* rec2 = reinterpret_cast<uint8_t*>(H(BPF_FUNC_ringbuf_reserve)(m, 4, 0, 0, 0));
  ASSERT_NE(rec2, nullptr);
  H(BPF_FUNC_ringbuf_discard)(P(rec2), 0, 0, 0, 0);
  uint32_t payload = 0x1234;
  EXPECT_EQ(H(BPF_FUNC_ringbuf_output)(m, P(&payload), 4, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_ringbuf_reserve)(m, 8192, 0, 0, 0), 0u);  // larger than the ring
  EXPECT_GT(H(BPF_FUNC_ringbuf_query)(m, BPF_RB_AVAIL_DATA, 0, 0, 0), 0u);
  EXPECT_EQ(H(BPF_FUNC_ringbuf_query)(m, BPF_RB_RING_SIZE, 0, 0, 0), 4096u);
  std::vector<std::vector<uint8_t>> got;
  auto* ring = dynamic_cast<RingbufMap*>(rb.get());
  ASSERT_NE(ring, nullptr);
  ring->consume([&](const void* d, uint32_t n) {
    got.emplace_back(static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + n);
    return 0;
  });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].size(), 8u);
  EXPECT_EQ(got[0][0], 0xbc);
  EXPECT_EQ(got[1].size(), 4u);
  EXPECT_EQ(take_helper_fault(), std::nullopt);
  H(BPF_FUNC_ringbuf_submit)(P(&payload), 0, 0, 0, 0);  // not a reserved record
  auto fault = take_helper_fault();
  ASSERT_TRUE(fault.has_value());
  EXPECT_NE(fault->message.find("not a reserved ringbuf record"), std::string::npos);
  // perf_event_output (tracing flavour) to a perf event array ring.
  auto pe = mk(BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 1);
  ASSERT_TRUE(pe);
  auto* pem = dynamic_cast<PerfEventArrayMap*>(pe.get());
  ASSERT_NE(pem, nullptr);
  ASSERT_EQ(pem->open_ring(0, 0, 1), 0);
  EXPECT_EQ(H(BPF_FUNC_perf_event_output)(0, P(pe.get()), 0, P(&payload), 4), 0u);
  EXPECT_EQ(S(H(BPF_FUNC_perf_event_output)(0, P(pe.get()), 1ull << 40, P(&payload), 4)), -EINVAL);
  int samples = 0;
  pem->consume([&](int, const void* d, uint32_t n) { samples += n >= 4 && !std::memcmp(d, &payload, 4); },
               [](int, uint64_t) {});
  EXPECT_EQ(samples, 1);
}

TEST(HelperMaps, LoopForEachAndTailCallFromPrograms) {
  // bpf_loop(5, cb, &counter, 0); cb adds its index to *(u64 *)ctx and returns 0.
  //   0: r1 = 0; 1: *(u64*)(r10-8) = r1; 2: r1 = 5; 3-4: r2 = cb (pseudo func); 5: r3 = r10;
  //   6: r3 += -8; 7: r4 = 0; 8: call loop; 9: r1 = *(u64*)(r10-8); 10: r0 <<= 32; 11: r0 += r1; 12: exit
  //   13 (cb): r3 = *(u64*)(r2+0); 14: r3 += r1; 15: *(u64*)(r2+0) = r3; 16: r0 = 0; 17: exit
  std::vector<Insn> p = {I(Op::MOV64_IMM, 1, 0, 0, 0), I(Op::STXDW, 10, 1, -8), I(Op::MOV64_IMM, 1, 0, 0, 5),
                         I(Op::LDDW_CODE_ADDR, 2, 4, 0, 13 - 3 - 1), I(Op::LDDW_HI), I(Op::MOV64_REG, 3, 10),
                         I(Op::ADD64_IMM, 3, 0, 0, -8), I(Op::MOV64_IMM, 4), I(Op::CALL_HELPER, 0, 0, 0, BPF_FUNC_loop),
                         I(Op::LDXDW, 1, 10, -8), I(Op::LSH64_IMM, 0, 0, 0, 32), I(Op::ADD64_REG, 0, 1), I(Op::EXIT),
                         I(Op::LDXDW, 3, 2, 0), I(Op::ADD64_REG, 3, 1), I(Op::STXDW, 2, 3, 0),
                         I(Op::MOV64_IMM, 0), I(Op::EXIT)};
  ExecOptions checked;
  checked.checked = true;
  auto exe = Executable::create(Program{"loop", p}, HelperSet::kernel().table_for(kProgMem), checked);
  ASSERT_TRUE(exe.ok()) << exe.error().to_string();
  auto r = (*exe)->run_on_memory(nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, (5ull << 32) | (0 + 1 + 2 + 3 + 4));
  // The callback stops the loop by returning 1: bpf_loop returns the number of calls made.
  p[16] = I(Op::MOV64_IMM, 0, 0, 0, 1);
  exe = Executable::create(Program{"loop1", p}, HelperSet::kernel().table_for(kProgMem));
  ASSERT_TRUE(exe.ok());
  EXPECT_EQ(*(*exe)->run_on_memory(nullptr, 0) >> 32, 1u);
  // flags != 0: -EINVAL; too many loops: -E2BIG.
  EXPECT_EQ(S(H(BPF_FUNC_loop)(1, 0, 0, 1, 0)), -EINVAL);
  EXPECT_EQ(S(H(BPF_FUNC_loop)((1 << 23) + 1, 0, 0, 0, 0)), -E2BIG);

  // bpf_for_each_map_elem over an array of 4 u64: the callback sums values into *ctx.
  auto arr = mk(BPF_MAP_TYPE_ARRAY, 4, 8, 4);
  ASSERT_TRUE(arr);
  for (uint32_t i = 0; i < 4; ++i) {
    uint64_t v = 10 * (i + 1);
    ASSERT_EQ(arr->update(&i, &v, 0), 0);
  }
  //   0-1: r1 = map; 2-3: r2 = cb; 4: r3 = r10; 5: r3 += -8; 6: r5 = 0; 7: *(u64*)(r10-8) = r5; 8: r4 = 0;
  //   9: call for_each; 10: r1 = *(u64*)(r10-8); 11: r0 <<= 32; 12: r0 += r1; 13: exit
  //   14 (cb: r1 map, r2 key, r3 value, r4 ctx): r5 = *(u64*)(r3+0); 15: r6 = *(u64*)(r4+0); 16: r6 += r5;
  //   17: *(u64*)(r4+0) = r6; 18: r0 = 0; 19: exit
  std::vector<Insn> f;
  lddw(f, 1, P(arr.get()));
  f.push_back(I(Op::LDDW_CODE_ADDR, 2, 4, 0, 14 - 2 - 1));
  f.push_back(I(Op::LDDW_HI));
  for (Insn in : {I(Op::MOV64_REG, 3, 10), I(Op::ADD64_IMM, 3, 0, 0, -8), I(Op::MOV64_IMM, 5), I(Op::STXDW, 10, 5, -8),
                  I(Op::MOV64_IMM, 4), I(Op::CALL_HELPER, 0, 0, 0, BPF_FUNC_for_each_map_elem),
                  I(Op::LDXDW, 1, 10, -8), I(Op::LSH64_IMM, 0, 0, 0, 32), I(Op::ADD64_REG, 0, 1), I(Op::EXIT),
                  I(Op::LDXDW, 5, 3, 0), I(Op::LDXDW, 6, 4, 0), I(Op::ADD64_REG, 6, 5), I(Op::STXDW, 4, 6, 0),
                  I(Op::MOV64_IMM, 0), I(Op::EXIT)})
    f.push_back(in);
  exe = Executable::create(Program{"foreach", f}, HelperSet::kernel().table_for(kProgMem), checked);
  ASSERT_TRUE(exe.ok()) << exe.error().to_string();
  r = (*exe)->run_on_memory(nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, (4ull << 32) | 100);

  // Tail call: prog_array[1] = a program returning 77; the caller falls through for index 0.
  auto target = Executable::create(Program{"t", {I(Op::MOV64_IMM, 0, 0, 0, 77), I(Op::EXIT)}},
                                   HelperSet::kernel().table_for(kProgSchedCls));
  ASSERT_TRUE(target.ok());
  std::shared_ptr<const Executable> tgt(std::move(*target));
  auto progs = mk(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 2);
  ASSERT_TRUE(progs);
  auto* pa = dynamic_cast<ProgArrayMap*>(progs.get());
  ASSERT_NE(pa, nullptr);
  ASSERT_EQ(pa->set_prog(1, std::shared_ptr<const void>(tgt, tgt.get()), 1), 0);
  for (int idx : {0, 1, 5}) {
    std::vector<Insn> t;
    t.push_back(I(Op::MOV64_REG, 6, 1));
    lddw(t, 2, P(progs.get()));
    t.push_back(I(Op::MOV64_IMM, 3, 0, 0, idx));
    t.push_back(I(Op::CALL_HELPER, 0, 0, 0, BPF_FUNC_tail_call));
    t.push_back(I(Op::MOV64_IMM, 0, 0, 0, 5));
    t.push_back(I(Op::EXIT));
    auto caller = Executable::create(Program{"c", t}, HelperSet::kernel().table_for(kProgSchedCls));
    ASSERT_TRUE(caller.ok()) << caller.error().to_string();
    auto tr = make_test_run(*find_prog_type(kProgSchedCls), std::vector<uint8_t>(20), {});
    ASSERT_TRUE(tr.ok());
    auto res = (*caller)->run((*tr)->args());
    ASSERT_TRUE(res.ok()) << res.error().to_string();
    EXPECT_EQ(*res, idx == 1 ? 77u : 5u) << "index " << idx;
  }
}

TEST(HelperMaps, CheckedModeAllowsReturnedValues) {
  auto arr = mk(BPF_MAP_TYPE_ARRAY, 4, 16, 1);
  ASSERT_TRUE(arr);
  uint32_t z = 0;
  uint64_t vals[2] = {3, 4};
  ASSERT_EQ(arr->update(&z, vals, 0), 0);
  // key on the stack, lookup, read value[1] (allowed: the helper declared the region), then value[2] (faults).
  for (int off : {8, 16}) {
    std::vector<Insn> p = {I(Op::MOV64_IMM, 1), I(Op::STXW, 10, 1, -4), I(Op::MOV64_REG, 2, 10),
                           I(Op::ADD64_IMM, 2, 0, 0, -4)};
    lddw(p, 1, P(arr.get()));
    for (Insn in : {I(Op::CALL_HELPER, 0, 0, 0, BPF_FUNC_map_lookup_elem), I(Op::JEQ_IMM, 0, 0, 2, 0),
                    I(Op::LDXDW, 0, 0, static_cast<int16_t>(off)), I(Op::EXIT), I(Op::MOV64_IMM, 0, 0, 0, 99),
                    I(Op::EXIT)})
      p.push_back(in);
    ExecOptions o;
    o.checked = true;
    auto exe = Executable::create(Program{"cv", p}, HelperSet::kernel().table_for(kProgMem), o);
    ASSERT_TRUE(exe.ok());
    auto r = (*exe)->run_on_memory(nullptr, 0);
    if (off == 8) {
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(*r, 4u);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, ErrorCode::MemoryFault);
    }
  }
}

// ---- against the kernel ------------------------------------------------------------------------------

TEST(HelpersKernel, SameResultsAsTheKernel) {
  if (!kernel::available()) GTEST_SKIP() << "kernel BPF unavailable: " << kernel::unavailable_reason();
  std::vector<uint8_t> frame(64);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i * 7 + 3);
  frame[12] = 0x08;
  frame[13] = 0x00;
  auto idf = [](std::string_view n) { return kernel_helper_id(n); };
  struct Case {
    uint32_t type;
    const char* text;
  } cases[] = {
      // csum_diff over 8 packet bytes (bounds-checked), seed 0x1234.
      {kProgXdp,
       "r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr4 = r2\nr4 += 24\nr0 = 0\nif r4 > r3 goto +7\n"
       "r1 = r2\nr1 += 16\nr2 = 8\nr3 = 0\nr4 = 0\nr5 = 0x1234\ncall bpf_csum_diff\nexit\n"},
      // xdp_adjust_tail(-10) then xdp_adjust_meta(-8): data_out shrinks and gains 8 metadata bytes.
      {kProgXdp,
       "r6 = r1\nr2 = -10\ncall bpf_xdp_adjust_tail\nr7 = r0\nr1 = r6\nr2 = -8\ncall bpf_xdp_adjust_meta\n"
       "r0 <<= 8\nr0 += r7\nr0 &= 0xffff\nexit\n"},
      // skb_load_bytes / skb_store_bytes / l3_csum_replace in tc.
      {kProgSchedCls,
       "r6 = r1\nr2 = 20\nr3 = r10\nr3 += -8\nr4 = 4\ncall bpf_skb_load_bytes\nr7 = *(u32 *)(r10 -8)\n"
       "r1 = r6\nr2 = 30\nr3 = r10\nr3 += -8\nr4 = 4\nr5 = 0\ncall bpf_skb_store_bytes\n"
       "r1 = r6\nr2 = 24\nr3 = 0x1111\nr4 = 0x2222\nr5 = 2\ncall bpf_l3_csum_replace\nr0 = r7\nexit\n"},
      // skb_load_bytes_relative from the MAC header (EtherType) and the network header (protocol).
      {kProgSocketFilter,
       "r6 = r1\nr2 = 12\nr3 = r10\nr3 += -8\nr4 = 2\nr5 = 0\ncall bpf_skb_load_bytes_relative\n"
       "r7 = *(u16 *)(r10 -8)\nr1 = r6\nr2 = 9\nr3 = r10\nr3 += -8\nr4 = 1\nr5 = 1\n"
       "call bpf_skb_load_bytes_relative\nr8 = *(u8 *)(r10 -8)\nr8 <<= 16\nr7 += r8\nr0 <<= 24\nr0 += r7\nexit\n"},
      // skb_change_tail: grow by 20 then trim to 30 (r0 = the two results' low bytes and the length).
      {kProgSchedCls,
       "r6 = r1\nr2 = *(u32 *)(r6 +0)\nr2 += 20\nr3 = 0\ncall bpf_skb_change_tail\nr7 = r0\nr7 &= 0xff\n"
       "r1 = r6\nr2 = 30\nr3 = 0\ncall bpf_skb_change_tail\nr0 &= 0xff\nr7 <<= 8\nr7 += r0\n"
       "r0 = *(u32 *)(r6 +0)\nr0 <<= 16\nr0 += r7\nexit\n"},
      // skb_change_tail below the network header, above BPF_SKB_MAX_LEN, with flags: -EINVAL each.
      {kProgSchedCls,
       "r6 = r1\nr2 = 13\nr3 = 0\ncall bpf_skb_change_tail\nr7 = r0\nr7 &= 0xff\n"
       "r1 = r6\nr2 = 16065\nr3 = 0\ncall bpf_skb_change_tail\nr0 &= 0xff\nr7 <<= 8\nr7 += r0\n"
       "r1 = r6\nr2 = 40\nr3 = 1\ncall bpf_skb_change_tail\nr0 &= 0xff\nr7 <<= 8\nr0 += r7\nexit\n"},
      // skb_change_head: 16 bytes pushed (zeroed), then past BPF_SKB_MAX_LEN, then with flags.
      {kProgSchedCls,
       "r6 = r1\nr2 = 16\nr3 = 0\ncall bpf_skb_change_head\nr7 = r0\nr7 &= 0xff\n"
       "r1 = r6\nr2 = 16000\nr3 = 0\ncall bpf_skb_change_head\nr0 &= 0xff\nr7 <<= 8\nr7 += r0\n"
       "r1 = r6\nr2 = 4\nr3 = 2\ncall bpf_skb_change_head\nr0 &= 0xff\nr7 <<= 8\nr0 += r7\nexit\n"},
      // skb_pull_data: all of the packet (0), one byte more (-ENOMEM).
      {kProgSchedCls,
       "r6 = r1\nr2 = 64\ncall bpf_skb_pull_data\nr7 = r0\nr7 &= 0xff\nr1 = r6\nr2 = 65\n"
       "call bpf_skb_pull_data\nr0 &= 0xff\nr7 <<= 8\nr0 += r7\nexit\n"},
      // skb_load_bytes out of range: -EFAULT.
      {kProgSocketFilter,
       "r2 = 60\nr3 = r10\nr3 += -8\nr4 = 8\ncall bpf_skb_load_bytes\nexit\n"},
  };
  int compared = 0;
  for (const auto& c : cases) {
    auto insns = assemble(c.text, Syntax::Kernel, idf);
    ASSERT_TRUE(insns.ok()) << insns.error().to_string();
    auto k = kernel::load_program(encode(*insns), c.type, 1);
    if (!k.not_offered.empty()) {
      std::printf("  not compared: %s\n%s", k.not_offered.c_str(), c.text);
      continue;
    }
    ++compared;
    ASSERT_TRUE(static_cast<bool>(k.fd)) << "kernel refused (errno " << k.err << "):\n" << k.log << c.text;
    auto kr = kernel::test_run(k.fd.get(), frame, {}, 1, 4096);
    ASSERT_EQ(kr.err, 0);
    const ProgTypeInfo& pt = *find_prog_type(c.type);
    auto rw = rewrite_ctx_accesses(*insns, pt);
    ASSERT_TRUE(rw.ok()) << rw.error().to_string();
    auto exe = Executable::create(Program{"k", *rw}, HelperSet::kernel().table_for(c.type));
    ASSERT_TRUE(exe.ok()) << exe.error().to_string();
    auto tr = make_test_run(pt, frame, {});
    ASSERT_TRUE(tr.ok());
    auto r = (*exe)->run((*tr)->args());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(static_cast<uint32_t>(*r), kr.retval) << c.text;
    EXPECT_EQ((*tr)->data_out(), kr.data_out) << c.text;
  }
  if (compared == 0) GTEST_SKIP() << "the kernel offers none of the helpers these cases call";
}

// ---- real objects (tests/progs/hl_*.bpf.c) ------------------------------------------------------------

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"

TEST(HelperObjects, MapsLoopForEachRingbuf) {
  auto obj = load_object_file(std::string(BPFVM_PROGS_DIR) + "/hl_maps.bpf.o");
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  for (EngineKind e : {EngineKind::Interpreter, EngineKind::Jit}) {
    SCOPED_TRACE(engine_name(e));
    auto live = instantiate(*obj);
    ASSERT_TRUE(live.ok()) << live.error().to_string();
    PrepareOptions o;
    o.rules = RuleSet::Privileged;  // bpf_loop, for_each_map_elem: trusted code
    o.engine = engine_choice(e);
    o.exec.checked = e == EngineKind::Interpreter;
    auto prep = prepare_program(obj->programs.at(0), *live, nullptr, o);
    if (!prep && prep.error().code == ErrorCode::Unsupported) continue;
    ASSERT_TRUE(prep.ok()) << prep.error().to_string();
    std::vector<uint8_t> frame(64, 0);
    auto r = test_run(*prep, frame);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->retval, 45u + 1000u + 10000u);
    r = test_run(*prep, frame);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->retval, 45u + 1000u + 20000u);
    auto* rb = dynamic_cast<RingbufMap*>(live->maps.at(obj->find_map("events")).get());
    ASSERT_NE(rb, nullptr);
    std::vector<std::array<uint64_t, 2>> recs;
    rb->consume([&](const void* d, uint32_t n) {
      std::array<uint64_t, 2> a{};
      std::memcpy(a.data(), d, std::min<size_t>(n, 16));
      recs.push_back(a);
      return 0;
    });
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0][0], 1045u);
    EXPECT_EQ(recs[0][1], 10004u);
  }
}

// LD_ABS reads the packet the run started with; a program that also moves it with
// bpf_skb_change_head/_tail stops with a clear fault instead of reading stale bytes (both engines).
TEST(Helpers, LegacyPacketLoadsWithChangeTailFailClearly) {
  auto idf = [](std::string_view n) { return kernel_helper_id(n); };
  auto insns = assemble("r6 = r1\nr0 = *(u8 *)skb[12]\nr1 = r6\nr2 = 100\nr3 = 0\ncall bpf_skb_change_tail\n"
                        "r0 = 0\nexit\n",
                        Syntax::Kernel, idf);
  ASSERT_TRUE(insns.ok()) << insns.error().to_string();
  std::vector<uint8_t> frame(64, 0);
  frame[12] = 0x08;
  for (EngineKind e : {EngineKind::Interpreter, EngineKind::Jit}) {
    SCOPED_TRACE(engine_name(e));
    PrepareOptions o;
    o.engine = engine_choice(e);
    auto prep = prepare_program(Program{"ldabs_tail", *insns}, *find_prog_type(kProgSchedCls), o);
    if (!prep && prep.error().code == ErrorCode::Unsupported) continue;
    ASSERT_TRUE(prep.ok()) << prep.error().to_string();
    auto r = test_run(*prep, frame);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("bpf_skb_change_tail: the program also reads the packet with LD_ABS/LD_IND"),
              std::string::npos)
        << r.error().message;
  }
}

// bpf_skb_change_head / _tail move the packet into a larger buffer when the 64 bytes of headroom
// (and the frame's end) are not enough; the program then sees and writes the new bytes, under the
// checked interpreter and the JIT, and the kernel's test run gives the same packet.
TEST(HelperObjects, SkbGrowsBeyondItsHeadroom) {
  auto obj = load_object_file(std::string(BPFVM_PROGS_DIR) + "/hl_grow.bpf.o");
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  std::vector<uint8_t> frame(64);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i + 1);
  frame[12] = 0x08;
  frame[13] = 0x00;
  std::vector<uint8_t> want(1000, 0);
  want[0] = 0xab;
  want[999] = 0xcd;
  want.insert(want.end(), frame.begin(), frame.end());
  want.resize(want.size() + 40, 0);
  want.back() = 0xef;
  for (EngineKind e : {EngineKind::Interpreter, EngineKind::Jit}) {
    SCOPED_TRACE(engine_name(e));
    auto live = instantiate(*obj);
    ASSERT_TRUE(live.ok()) << live.error().to_string();
    PrepareOptions o;
    o.engine = engine_choice(e);
    o.exec.checked = e == EngineKind::Interpreter;
    auto prep = prepare_program(obj->programs.at(0), *live, nullptr, o);
    if (!prep && prep.error().code == ErrorCode::Unsupported) continue;
    ASSERT_TRUE(prep.ok()) << prep.error().to_string();
    for (int rep = 0; rep < 2; ++rep) {  // a second run starts again from the 64-byte headroom
      auto r = test_run(*prep, frame);
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(r->retval, 0u);
      EXPECT_EQ(r->data_out, want);
    }
  }
  if (!kernel::available()) GTEST_SKIP() << "kernel BPF unavailable: " << kernel::unavailable_reason();
  auto k = kernel::load_object_program(*obj, obj->programs.at(0));
  if (!k.ran()) GTEST_SKIP() << "not compared with the kernel: " << k.skip << k.load.not_offered;
  ASSERT_TRUE(k.accepted()) << k.load.log;
  auto kr = kernel::test_run(k.load.fd.get(), frame, {}, 1, 4096);
  ASSERT_EQ(kr.err, 0);
  EXPECT_EQ(kr.retval, 0u);
  EXPECT_EQ(kr.data_out, want);
}

TEST(HelperObjects, TracingHelpers) {
  auto obj = load_object_file(std::string(BPFVM_PROGS_DIR) + "/hl_trace.bpf.o");
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  auto live = instantiate(*obj);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  PrepareOptions o;
  o.rules = RuleSet::Privileged;  // tracing helpers: root only
  o.exec.checked = true;
  auto prep = prepare_program(obj->programs.at(0), *live, nullptr, o);
  ASSERT_TRUE(prep.ok()) << prep.error().to_string();
  EXPECT_EQ(prep->type->type, kProgKprobe);
  std::string printed;
  set_printk_sink([&](std::string_view m) { printed += m; });
  clear_deterministic();
  auto r = test_run(*prep, {}, std::vector<uint8_t>(168, 0));
  set_printk_sink({});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto global = [&](const char* name) {
    const GlobalVar* g = obj->find_global(name);
    EXPECT_NE(g, nullptr) << name;
    return live->data(g->map) + g->offset;
  };
  uint64_t pt;
  std::memcpy(&pt, global("pid_tgid"), 8);
  EXPECT_EQ(pt, (uint64_t(getpid()) << 32) | uint32_t(gettid()));
  char name[17] = {};
  prctl(PR_GET_NAME, name);
  EXPECT_STREQ(reinterpret_cast<const char*>(global("comm")), name);
  EXPECT_STREQ(reinterpret_cast<const char*>(global("copied")), "secret!");
  long bad;
  std::memcpy(&bad, global("bad_read"), 8);
  EXPECT_EQ(bad, -EFAULT);
  std::string expect = "v=42 p=" + std::to_string(getpid());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(global("formatted"))), expect);
  long len;
  std::memcpy(&len, global("fmt_len"), 8);
  EXPECT_EQ(len, static_cast<long>(expect.size() + 1));
  long cmp;
  std::memcpy(&cmp, global("cmp"), 8);
  EXPECT_EQ(cmp, 0);
  EXPECT_NE(printed.find("hl_trace 7"), std::string::npos) << printed;
}

// bpf_ringbuf_submit/discard find a record's ring among this thread's live reservations, whatever
// their number (an inline array, then an overflow list) and in any order; a pointer that is not a
// live reservation (never reserved, or already submitted) is a helper fault.
TEST(Helpers, RingbufManyOutstandingReservationsAnyOrder) {
  auto rb1 = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16);
  auto rb2 = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16);
  ASSERT_TRUE(rb1 && rb2);
  (void)take_helper_fault();
  std::vector<std::pair<uint64_t, int>> recs;  // record, ring (1 or 2)
  for (uint32_t i = 0; i < 40; ++i) {
    Map* m = (i % 3 == 0) ? rb2.get() : rb1.get();
    uint64_t r = H(BPF_FUNC_ringbuf_reserve)(P(m), 8, 0, 0, 0);
    ASSERT_NE(r, 0u) << i;
    uint64_t v = i;
    std::memcpy(reinterpret_cast<void*>(r), &v, 8);
    recs.push_back({r, m == rb2.get() ? 2 : 1});
  }
  // Submit in a scrambled order (middle, ends, overflow first), discard every 5th.
  std::vector<size_t> order;
  for (size_t i = 0; i < recs.size(); ++i) order.push_back((i * 17 + 5) % recs.size());
  for (size_t i : order) {
    if (i % 5 == 0) H(BPF_FUNC_ringbuf_discard)(recs[i].first, 0, 0, 0, 0);
    else H(BPF_FUNC_ringbuf_submit)(recs[i].first, 0, 0, 0, 0);
    ASSERT_EQ(take_helper_fault(), std::nullopt) << i;
  }
  std::vector<uint64_t> seen1, seen2;
  auto* r1 = as_ringbuf(rb1.get());
  auto* r2 = as_ringbuf(rb2.get());
  r1->consume([&](const void* d, uint32_t) { uint64_t v; std::memcpy(&v, d, 8); seen1.push_back(v); return 0; });
  r2->consume([&](const void* d, uint32_t) { uint64_t v; std::memcpy(&v, d, 8); seen2.push_back(v); return 0; });
  std::vector<uint64_t> want1, want2;
  for (uint32_t i = 0; i < 40; ++i) {
    if (i % 5 == 0) continue;
    (i % 3 == 0 ? want2 : want1).push_back(i);  // committed records come out in reservation order
  }
  EXPECT_EQ(seen1, want1);
  EXPECT_EQ(seen2, want2);
  // Already submitted: no longer a live reservation.
  H(BPF_FUNC_ringbuf_submit)(recs[1].first, 0, 0, 0, 0);
  auto fault = take_helper_fault();
  ASSERT_TRUE(fault.has_value());
  EXPECT_NE(fault->message.find("not a reserved ringbuf record"), std::string::npos);
}
