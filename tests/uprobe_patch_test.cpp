// Function hooks inside the process (src/hooks/uprobe/patch.hpp): every prologue shape the patch may
// displace, breakpoint fallbacks, handlers' view of the registers, return hooks, detach restoring the
// bytes, and threads running the function while it is patched.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <cstring>
#include <thread>
#include <vector>

#include "hooks/uprobe/patch.hpp"
#include "uprobe_targets.hpp"

namespace {

using namespace bpfvm::uprobe;

// Called through a volatile pointer: the compiler cannot inline or fold the call.
template <class F>
F opaque(F f) {
  F volatile p = f;
  return p;
}

struct Seen {
  std::atomic<uint64_t> n{0};
  uint64_t di = 0, si = 0, ax = 0, ip = 0, sp = 0;
  double xmm_result = 0;
};

// Several threads may run it at once (the thread tests): the fields are stored atomically (relaxed),
// and read by the test once the threads are joined or the hook detached.
void record(void* c, PtRegs* r) {
  auto* s = static_cast<Seen*>(c);
  __atomic_store_n(&s->di, r->di, __ATOMIC_RELAXED);
  __atomic_store_n(&s->si, r->si, __ATOMIC_RELAXED);
  __atomic_store_n(&s->ax, r->ax, __ATOMIC_RELAXED);
  __atomic_store_n(&s->ip, r->ip, __ATOMIC_RELAXED);
  __atomic_store_n(&s->sp, r->sp, __ATOMIC_RELAXED);
  // Floating-point work in the handler uses xmm registers the probed code may hold.
  volatile double x = 1.25;
  const double v = x * 3.5 + static_cast<double>(r->di);
  __atomic_store(&s->xmm_result, &v, __ATOMIC_RELAXED);
  s->n.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint8_t> bytes_at(uintptr_t a, size_t n) {
  const auto* p = reinterpret_cast<const uint8_t*>(a);
  return std::vector<uint8_t>(p, p + n);
}

constexpr uint64_t kAny = ~0ull - 1;  // a register the function does not take

struct Shape {
  const char* name;
  uintptr_t addr;
  size_t size;
  PatchMethod method;
};

// Attaches an entry and a return hook to `addr`, runs `call` (which checks the results), checks what the
// handlers saw, detaches and checks the bytes are back.
template <class Call>
void check_shape(const Shape& sh, uint64_t di, uint64_t si, uint64_t expect_ret, Call call) {
  SCOPED_TRACE(sh.name);
  const auto before = bytes_at(sh.addr, std::max<size_t>(sh.size, 16));
  Seen in, out;
  auto e = attach(sh.addr, sh.size, HookKind::Entry, record, &in);
  ASSERT_TRUE(e.ok()) << e.error().message;
  auto r = attach(sh.addr, sh.size, HookKind::Return, record, &out);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto m = patch_method(*e);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, sh.method);
  EXPECT_NE(bytes_at(sh.addr, before.size()), before) << "not patched";
  for (int i = 0; i < 3; ++i) call();
  EXPECT_EQ(in.n.load(), 3u);
  EXPECT_EQ(out.n.load(), 3u);
  EXPECT_EQ(in.di, di);
  if (si != kAny) EXPECT_EQ(in.si, si);
  EXPECT_EQ(in.ip, sh.addr);
  EXPECT_EQ(in.sp % 16, 8u) << "sp at a function entry points to the return address";
  EXPECT_EQ(out.ax, expect_ret);
  EXPECT_EQ(out.ip, sh.addr);
  EXPECT_EQ(out.sp, in.sp + 8) << "sp after the return";
  EXPECT_EQ(in.xmm_result, 1.25 * 3.5 + static_cast<double>(di));
  ASSERT_TRUE(detach(*e).ok());
  ASSERT_TRUE(detach(*r).ok());
  EXPECT_EQ(bytes_at(sh.addr, before.size()), before) << "detach restores the original bytes";
  call();  // unhooked
  EXPECT_EQ(in.n.load(), 3u);
  EXPECT_EQ(out.n.load(), 3u);
}

TEST(UprobePatch, ExactlyFiveBytes) {
  check_shape({"ut_add", UT_FN(ut_add), PatchMethod::Jump}, 40, 2, 42, [] { EXPECT_EQ(opaque(ut_add)(40, 2), 42u); });
}

TEST(UprobePatch, FramePrologue) {
  check_shape({"ut_frame", UT_FN(ut_frame), PatchMethod::Jump}, 6, 7, 42, [] { EXPECT_EQ(opaque(ut_frame)(6, 7), 42u); });
}

TEST(UprobePatch, Endbr64KeptAtEntry) {
  const auto before = bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_endbr)), 4);
  check_shape({"ut_endbr", UT_FN(ut_endbr), PatchMethod::Jump}, 2, 20, 42, [&] {
    EXPECT_EQ(opaque(ut_endbr)(2, 20), 42u);
    EXPECT_EQ(bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_endbr)), 4), before) << "endbr64 stays";
  });
}

TEST(UprobePatch, RipRelativeLoad) {
  check_shape({"ut_rip", UT_FN(ut_rip), PatchMethod::Jump}, 5, kAny, 1005, [] { EXPECT_EQ(opaque(ut_rip)(5), 1005u); });
}

TEST(UprobePatch, RipRelativeLockedIncrement) {
  const uint64_t c0 = ut_counter;
  check_shape({"ut_count", UT_FN(ut_count), PatchMethod::Jump}, 9, kAny, 9, [] { EXPECT_EQ(opaque(ut_count)(9), 9u); });
  EXPECT_EQ(ut_counter - c0, 4u) << "the relocated increment hits the same variable, once per call";
}

TEST(UprobePatch, ShortConditionalJump) {
  check_shape({"ut_jcc", UT_FN(ut_jcc), PatchMethod::Jump}, 21, kAny, 42, [] { EXPECT_EQ(opaque(ut_jcc)(21), 42u); });
  check_shape({"ut_jcc taken", UT_FN(ut_jcc), PatchMethod::Jump}, 0, kAny, ~0ull,
              [] { EXPECT_EQ(opaque(ut_jcc)(0), ~0ull); });
}

TEST(UprobePatch, CallDisplaced) {
  check_shape({"ut_call", UT_FN(ut_call), PatchMethod::Jump}, 5, kAny, 105, [] { EXPECT_EQ(opaque(ut_call)(5), 105u); });
  check_shape({"ut_push_call", UT_FN(ut_push_call), PatchMethod::Jump}, 1, 2, 102,
              [] { EXPECT_EQ(opaque(ut_push_call)(1, 2), 102u); });
}

TEST(UprobePatch, JrcxzDisplaced) {
  check_shape({"ut_jrcxz", UT_FN(ut_jrcxz), PatchMethod::Jump}, 37, kAny, 42, [] { EXPECT_EQ(opaque(ut_jrcxz)(37), 42u); });
  check_shape({"ut_jrcxz zero", UT_FN(ut_jrcxz), PatchMethod::Jump}, 0, kAny, 7, [] { EXPECT_EQ(opaque(ut_jrcxz)(0), 7u); });
}

TEST(UprobePatch, FloatingPointArgumentsSurvive) {
  Seen in;
  auto e = attach(UT_FN(ut_fmul), HookKind::Entry, record, &in);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(opaque(ut_fmul)(1.5, 4.0), 6.0);
  EXPECT_EQ(in.n.load(), 1u);
  ASSERT_TRUE(detach(*e).ok());
}

TEST(UprobePatch, ShorterThanThePatchUsesABreakpoint) {
  const auto after = bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_after)), 6);
  const uint64_t traps = stats().trap_hits;
  check_shape({"ut_short", UT_FN(ut_short), PatchMethod::Breakpoint}, 77, kAny, 77, [&] {
    EXPECT_EQ(opaque(ut_short)(77), 77u);
    EXPECT_EQ(opaque(ut_after)(), 42u);
    EXPECT_EQ(bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_after)), 6), after) << "the next function is untouched";
  });
  EXPECT_EQ(stats().trap_hits - traps, 3u);
  // Unknown size: a first instruction shorter than 5 bytes is never displaced.
  check_shape({"ut_short unknown size", ut_addr(reinterpret_cast<const void*>(&ut_short)), 0, PatchMethod::Breakpoint}, 8,
              kAny, 8, [] { EXPECT_EQ(opaque(ut_short)(8), 8u); });
}

TEST(UprobePatch, JumpTargetInTheFirstBytesUsesABreakpoint) {
  check_shape({"ut_target", UT_FN(ut_target), PatchMethod::Breakpoint}, 6, 7, 42,
              [] { EXPECT_EQ(opaque(ut_target)(6, 7), 42u); });
}

TEST(UprobePatch, ShortJumpFirstIsRelocatedUnderABreakpoint) {
  check_shape({"ut_jmp_first", UT_FN(ut_jmp_first), PatchMethod::Breakpoint}, 39, kAny, 42,
              [] { EXPECT_EQ(opaque(ut_jmp_first)(39), 42u); });
}

TEST(UprobePatch, UnknownSizeWithALongFirstInstructionJumps) {
  check_shape({"ut_rip unknown size", ut_addr(reinterpret_cast<const void*>(&ut_rip)), 0, PatchMethod::Jump}, 1, kAny, 1001,
              [] { EXPECT_EQ(opaque(ut_rip)(1), 1001u); });
}

TEST(UprobePatch, ForcedBreakpointRunsTheSameHandlers) {
  Seen in, out;
  AttachOptions o;
  o.func_size = ut_size(reinterpret_cast<const void*>(&ut_frame), ut_frame_end);
  o.force_breakpoint = true;
  auto e = attach(ut_addr(reinterpret_cast<const void*>(&ut_frame)), HookKind::Entry, record, &in, o);
  ASSERT_TRUE(e.ok()) << e.error().message;
  auto r = attach(ut_addr(reinterpret_cast<const void*>(&ut_frame)), HookKind::Return, record, &out, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*patch_method(*e), PatchMethod::Breakpoint);
  EXPECT_EQ(opaque(ut_frame)(3, 14), 42u);
  EXPECT_EQ(in.di, 3u);
  EXPECT_EQ(in.si, 14u);
  EXPECT_EQ(out.ax, 42u);
  ASSERT_TRUE(detach(*e).ok());
  ASSERT_TRUE(detach(*r).ok());
}

// A hook inside a function, where the flags are live: they reach the next instruction unchanged
// (arithmetic flags and DF), and ip is the hooked address.
TEST(UprobePatch, FlagsSurviveAHookInsideAFunction) {
  const uint64_t pairs[][3] = {{1, 2, 0}, {2, 1, 0}, {5, 5, 0}, {0x8000000000000000ull, 1, 0}, {1, 0x8000000000000000ull, 1}, {7, 3, 1}};
  constexpr uint64_t kMask = 0x8d5 | 0x400;
  std::vector<uint64_t> plain;
  for (auto& p : pairs) plain.push_back(opaque(ut_flags)(p[0], p[1], p[2]) & kMask);
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    Seen in;
    AttachOptions o;
    o.force_breakpoint = bp;
    // A handler that computes (and so changes the flags in its own code).
    auto e = attach(ut_addr(ut_flags_point), HookKind::Entry,
                    [](void* c, PtRegs* r) { record(c, r); static_cast<Seen*>(c)->ax = r->flags; }, &in, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    EXPECT_EQ(*patch_method(*e), bp ? PatchMethod::Breakpoint : PatchMethod::Jump);
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(opaque(ut_flags)(pairs[i][0], pairs[i][1], pairs[i][2]) & kMask, plain[i]) << "pair " << i;
      EXPECT_EQ(in.ax & kMask, plain[i]) << "the handler sees the flags, pair " << i;
    }
    EXPECT_EQ(in.n.load(), plain.size());
    EXPECT_EQ(in.ip, ut_addr(ut_flags_point));
    EXPECT_NE(plain[3] & 0x800, 0u) << "the pairs cover OF";
    ASSERT_TRUE(detach(*e).ok());
  }
}

// 256-bit arguments survive a handler whose code runs vzeroupper (as glibc's AVX string functions do).
TEST(UprobePatch, YmmArgumentsSurviveVzeroupperInAHandler) {
  if (!__builtin_cpu_supports("avx")) GTEST_SKIP() << "no AVX on this CPU";
  const double in[8] = {1, 2, 3, 4, 10, 20, 30, 40};
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    AttachOptions o;
    o.func_size = ut_size(reinterpret_cast<const void*>(&ut_ymm_add), ut_ymm_add_end);
    o.force_breakpoint = bp;
    static std::atomic<int> hits{0};
    hits = 0;
    auto e = attach(ut_addr(reinterpret_cast<const void*>(&ut_ymm_add)), HookKind::Entry,
                    [](void*, PtRegs*) {
                      asm volatile("vzeroupper");
                      hits.fetch_add(1);
                    },
                    nullptr, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    double out[4] = {};
    opaque(ut_ymm_call)(in, out);
    ASSERT_TRUE(detach(*e).ok());
    EXPECT_EQ(hits.load(), 1);
    EXPECT_EQ(out[0], 11.0);
    EXPECT_EQ(out[1], 22.0);
    EXPECT_EQ(out[2], 33.0) << "upper half of ymm0";
    EXPECT_EQ(out[3], 44.0) << "upper half of ymm0";
  }
}

// Handlers may change registers: arguments at entry, the return value at return.
TEST(UprobePatch, HandlersChangeRegisters) {
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    AttachOptions o;
    o.func_size = ut_size(reinterpret_cast<const void*>(&ut_add), ut_add_end);
    o.force_breakpoint = bp;
    const uintptr_t a = ut_addr(reinterpret_cast<const void*>(&ut_add));
    auto e = attach(a, HookKind::Entry, [](void*, PtRegs* r) { r->di = 100; }, nullptr, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    EXPECT_EQ(opaque(ut_add)(1, 2), 102u);
    auto r = attach(a, HookKind::Return, [](void*, PtRegs* r) { r->ax += 1000; }, nullptr, o);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(opaque(ut_add)(1, 2), 1102u);
    ASSERT_TRUE(detach(*e).ok());
    ASSERT_TRUE(detach(*r).ok());
    EXPECT_EQ(opaque(ut_add)(1, 2), 3u);
  }
}

// A handler calling the hooked function: the inner hit runs no handler (the recursion guard).
Seen g_recursive;
void recursive_handler(void*, PtRegs* r) {
  EXPECT_TRUE(in_hook());
  g_recursive.n.fetch_add(1);
  g_recursive.ax = opaque(ut_add)(r->di, 1);
}
TEST(UprobePatch, HandlersDoNotRecurse) {
  g_recursive.n = 0;
  auto e = attach(UT_FN(ut_add), HookKind::Entry, recursive_handler, nullptr);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(in_hook());
  EXPECT_EQ(opaque(ut_add)(10, 5), 15u);
  EXPECT_EQ(g_recursive.n.load(), 1u);
  EXPECT_EQ(g_recursive.ax, 11u);
  ASSERT_TRUE(detach(*e).ok());
}

TEST(UprobePatch, HooksShareAnAddressAndDetachOneByOne) {
  Seen a, b;
  auto ha = attach(UT_FN(ut_add), HookKind::Entry, record, &a);
  auto hb = attach(UT_FN(ut_add), HookKind::Entry, record, &b);
  ASSERT_TRUE(ha.ok() && hb.ok());
  opaque(ut_add)(1, 1);
  ASSERT_TRUE(detach(*ha).ok());
  opaque(ut_add)(1, 1);
  ASSERT_TRUE(detach(*hb).ok());
  opaque(ut_add)(1, 1);
  EXPECT_EQ(a.n.load(), 1u);
  EXPECT_EQ(b.n.load(), 2u);
  EXPECT_FALSE(detach(*hb).ok()) << "a detached id is unknown";
}

TEST(UprobePatch, OverlappingHooksAreRefused) {
  // ut_frame's jump displaces push rbp; mov rbp,rsp; mov rax,rdi (7 bytes): a hook at +1 is inside.
  const uintptr_t f = ut_addr(reinterpret_cast<const void*>(&ut_frame));
  const size_t size = ut_size(reinterpret_cast<const void*>(&ut_frame), ut_frame_end);
  const auto before = bytes_at(f, size);
  auto a = attach(f, size, HookKind::Entry, record, nullptr);
  ASSERT_TRUE(a.ok());
  auto b = attach(f + 1, 0, HookKind::Entry, record, nullptr);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("overlap"), std::string::npos) << b.error().message;
  ASSERT_TRUE(detach(*a).ok());
  EXPECT_EQ(bytes_at(f, size), before);
  // Without the first hook, +1 (mov rbp,rsp: 3 bytes, unknown size) takes a breakpoint.
  Seen in;
  auto c = attach(f + 1, 0, HookKind::Entry, record, &in);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*patch_method(*c), PatchMethod::Breakpoint);
  EXPECT_EQ(opaque(ut_frame)(6, 7), 42u);
  EXPECT_EQ(in.n.load(), 1u);
  EXPECT_EQ(in.ip, f + 1);
  ASSERT_TRUE(detach(*c).ok());
}

// An address inside a function (FUNC+OFFSET, a USDT site) with the function's bounds: the body is
// scanned, so a short first instruction is displaced with the next ones (a jump, not an int3).
TEST(UprobePatch, InsideAFunctionWithItsBounds) {
  const uintptr_t f = ut_addr(reinterpret_cast<const void*>(&ut_frame));
  const size_t size = ut_size(reinterpret_cast<const void*>(&ut_frame), ut_frame_end);
  AttachOptions o;
  o.func_start = f;
  o.func_size = size;
  Seen in;
  auto e = attach(f + 1, HookKind::Entry, record, &in, o);  // mov rbp,rsp (3 bytes); mov rax,rdi
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(*patch_method(*e), PatchMethod::Jump);
  EXPECT_EQ(opaque(ut_frame)(6, 7), 42u);
  EXPECT_EQ(in.n.load(), 1u);
  EXPECT_EQ(in.ip, f + 1);
  EXPECT_EQ(in.di, 6u);
  ASSERT_TRUE(detach(*e).ok());
  // Not an instruction boundary (inside mov rbp,rsp), or outside the function: refused.
  auto bad = attach(f + 2, HookKind::Entry, record, &in, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("instruction boundary"), std::string::npos) << bad.error().message;
  auto outside = attach(f + size, HookKind::Entry, record, &in, o);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.error().message.find("outside"), std::string::npos) << outside.error().message;
  // The jump target 2 bytes into ut_target, seen from an address before it.
  const uintptr_t t = ut_addr(reinterpret_cast<const void*>(&ut_target));
  o.func_start = t;
  o.func_size = ut_size(reinterpret_cast<const void*>(&ut_target), ut_target_end);
  auto bp = attach(t + 2, HookKind::Entry, record, &in, o);  // the loop head: add; dec; jnz back to it
  ASSERT_TRUE(bp.ok()) << bp.error().message;
  EXPECT_EQ(*patch_method(*bp), PatchMethod::Jump) << "a jump to the point itself is fine";
  EXPECT_EQ(opaque(ut_target)(6, 7), 42u);
  EXPECT_EQ(in.n.load(), 1u + 7u) << "once per loop iteration";
  ASSERT_TRUE(detach(*bp).ok());
}

// A nop inside a function (a USDT site) takes a jump patch where the body shows no jump into the
// displaced bytes; an int3 where an indirect jump could land there (unseen targets) or where a call
// among them would return into the patch.
TEST(UprobePatch, NopSiteInsideAFunction) {
  struct Case {
    const char* name;
    const void* fn;
    const uint8_t* point;
    const uint8_t* end;
    PatchMethod method;
    std::function<uint64_t()> call;
    uint64_t want;
  };
  const Case cases[] = {
      {"room behind", reinterpret_cast<const void*>(&ut_nop_site), ut_nop_site_point, ut_nop_site_end,
       PatchMethod::Jump, [] { return opaque(ut_nop_site)(41); }, 42},
      {"indirect jump", reinterpret_cast<const void*>(&ut_nop_indirect), ut_nop_indirect_point, ut_nop_indirect_end,
       PatchMethod::Breakpoint, [] { return opaque(ut_nop_indirect)(5); }, 9},
      {"short call", reinterpret_cast<const void*>(&ut_nop_call), ut_nop_call_point, ut_nop_call_end,
       PatchMethod::Breakpoint, [] { return opaque(ut_nop_call)(5, &ut_helper); }, 105},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const uintptr_t f = ut_addr(c.fn), p = ut_addr(c.point);
    const auto before = bytes_at(p, 16);
    AttachOptions o;
    o.func_start = f;
    o.func_size = ut_size(c.fn, c.end);
    Seen in;
    auto e = attach(p, HookKind::Entry, record, &in, o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    EXPECT_EQ(*patch_method(*e), c.method);
    EXPECT_EQ(c.call(), c.want);
    EXPECT_EQ(c.call(), c.want);
    EXPECT_GE(in.n.load(), 2u);
    EXPECT_EQ(in.ip, p);
    ASSERT_TRUE(detach(*e).ok());
    EXPECT_EQ(bytes_at(p, 16), before);
  }
}

TEST(UprobePatch, BadInputIsRefused) {
  EXPECT_FALSE(attach(0, 0, HookKind::Entry, record, nullptr).ok());
  EXPECT_FALSE(attach(UT_FN(ut_add), HookKind::Entry, nullptr, nullptr).ok());
  EXPECT_FALSE(detach(HookId{987654321}).ok());
  // An int3 already there (a debugger's) is not hooked over.
  static const uint8_t int3_code[] = {0xcc, 0xc3};
  auto r = attach(ut_addr(int3_code), 2, HookKind::Entry, record, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("int3"), std::string::npos) << r.error().message;
}

// Threads call the function in a loop while it is patched and unpatched again and again: every call
// runs the function exactly once, none crashes; with the hook attached for a known window, the
// handler counts every call.
TEST(UprobePatch, ThreadsRunThroughAttachAndDetach) {
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    constexpr int kThreads = 3;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> calls{0};
    const uint64_t c0 = ut_counter;
    std::vector<std::thread> ts;
    std::atomic<int> running{0};
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&] {
        uint64_t n = 0;
        auto f = opaque(ut_count);
        running.fetch_add(1);
        while (!stop.load(std::memory_order_relaxed)) {
          if (f(n) != n) ADD_FAILURE() << "wrong result";
          ++n;
        }
        calls.fetch_add(n);
      });
    Seen in;
    AttachOptions o;
    o.func_size = ut_size(reinterpret_cast<const void*>(&ut_count), ut_count_end);
    o.force_breakpoint = bp;
    while (running.load() < kThreads) std::this_thread::yield();
    for (int i = 0; i < 15; ++i) {
      auto e = attach(ut_addr(reinterpret_cast<const void*>(&ut_count)), HookKind::Entry, record, &in, o);
      ASSERT_TRUE(e.ok()) << e.error().message;
      auto r = attach(ut_addr(reinterpret_cast<const void*>(&ut_count)), HookKind::Return, record, &in, o);
      ASSERT_TRUE(r.ok()) << r.error().message;
      std::this_thread::yield();
      ASSERT_TRUE(detach(*r).ok());
      ASSERT_TRUE(detach(*e).ok());
    }
    stop = true;
    for (auto& t : ts) t.join();
    EXPECT_EQ(ut_counter - c0, calls.load()) << "each call ran the function once";
    EXPECT_GT(calls.load(), 0u);

    // A known window: every call between attach and detach is counted, entry and return.
    Seen entry, ret;
    auto e = attach(ut_addr(reinterpret_cast<const void*>(&ut_count)), HookKind::Entry, record, &entry, o);
    auto r = attach(ut_addr(reinterpret_cast<const void*>(&ut_count)), HookKind::Return, record, &ret, o);
    ASSERT_TRUE(e.ok() && r.ok());
    const uint64_t kPerThread = bp ? 300 : 5000;
    ts.clear();
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&] {
        auto f = opaque(ut_count);
        for (uint64_t i = 0; i < kPerThread; ++i) f(i);
      });
    for (auto& t : ts) t.join();
    ASSERT_TRUE(detach(*e).ok());
    ASSERT_TRUE(detach(*r).ok());
    EXPECT_EQ(entry.n.load(), kThreads * kPerThread);
    EXPECT_EQ(ret.n.load(), kThreads * kPerThread);
  }
}

// A thread blocked in a system call inside the bytes the jump replaces (its ip is there): attaching
// moves it to the relocated copy; it finishes the call there and returns normally.
TEST(UprobePatch, ThreadInsideTheDisplacedBytesIsMovedOut) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::atomic<pid_t> tid{0};
  int64_t got = -1;
  char buf[4] = {};
  std::thread t([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    got = opaque(ut_syscall)(static_cast<uint64_t>(p[0]), reinterpret_cast<uint64_t>(buf), 1, SYS_read);
  });
  // Wait until the thread sleeps in read(2) (its syscall file shows the number, 0).
  bool blocked = false;
  for (int i = 0; i < 2000 && !blocked; ++i) {
    if (tid.load()) {
      std::ifstream f("/proc/self/task/" + std::to_string(tid.load()) + "/syscall");
      std::string nr;
      blocked = (f >> nr) && nr == "0";
    }
    if (!blocked) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(blocked) << "the thread never blocked in read";
  Seen in;
  auto e = attach(UT_FN(ut_syscall), HookKind::Entry, record, &in);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(*patch_method(*e), PatchMethod::Jump);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  t.join();
  EXPECT_EQ(got, 1);
  EXPECT_EQ(buf[0], 'x');
  EXPECT_EQ(in.n.load(), 0u) << "the call began before the hook";
  ASSERT_EQ(write(p[1], "y", 1), 1);
  EXPECT_EQ(opaque(ut_syscall)(static_cast<uint64_t>(p[0]), reinterpret_cast<uint64_t>(buf), 1, SYS_read), 1);
  EXPECT_EQ(in.n.load(), 1u);
  ASSERT_TRUE(detach(*e).ok());
  close(p[0]);
  close(p[1]);
}

// When detach returns, no handler of that hook runs any more (the cookie may go away).
TEST(UprobePatch, DetachWaitsForRunningHandlers) {
  struct Slow {
    std::atomic<int> inside{0};
    std::atomic<bool> freed{false};
    std::atomic<uint64_t> after_free{0};
  } slow;
  auto handler = [](void* c, PtRegs*) {
    auto* s = static_cast<Slow*>(c);
    s->inside.fetch_add(1);
    for (int i = 0; i < 20000; ++i) asm volatile("");
    if (s->freed.load()) s->after_free.fetch_add(1);
    s->inside.fetch_sub(1);
  };
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto f = opaque(ut_add);
    while (!stop.load()) f(1, 2);
  });
  for (int i = 0; i < 20; ++i) {
    auto e = attach(UT_FN(ut_add), HookKind::Entry, handler, &slow);
    ASSERT_TRUE(e.ok());
    while (slow.inside.load() == 0) std::this_thread::yield();
    ASSERT_TRUE(detach(*e).ok());
    slow.freed = true;
    for (int k = 0; k < 50000; ++k) asm volatile("");
    slow.freed = false;
  }
  stop = true;
  t.join();
  EXPECT_EQ(slow.after_free.load(), 0u);
}

}  // namespace

namespace {

// A function of a shared library (libc's labs, found with dlsym; its size from the dynamic symbol):
// the trampoline is mapped near the library, far from the executable.
TEST(UprobePatch, SharedLibraryFunction) {
  void* f = dlsym(RTLD_DEFAULT, "labs");
  ASSERT_NE(f, nullptr);
  Dl_info info{};
  void* extra = nullptr;
  ASSERT_NE(dladdr1(f, &info, &extra, RTLD_DL_SYMENT), 0);
  const auto* sym = static_cast<const ElfW(Sym)*>(extra);
  ASSERT_NE(sym, nullptr);
  ASSERT_NE(std::string(info.dli_fname).find("libc"), std::string::npos) << info.dli_fname;
  const auto before = bytes_at(ut_addr(f), sym->st_size);
  Seen in, out;
  auto e = attach(ut_addr(f), sym->st_size, HookKind::Entry, record, &in);
  ASSERT_TRUE(e.ok()) << e.error().message;
  auto r = attach(ut_addr(f), sym->st_size, HookKind::Return, record, &out);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto labs_fn = opaque(reinterpret_cast<long (*)(long)>(f));
  EXPECT_EQ(labs_fn(-42), 42);
  EXPECT_EQ(in.n.load(), 1u);
  EXPECT_EQ(static_cast<long>(in.di), -42);
  EXPECT_EQ(out.ax, 42u);
  ASSERT_TRUE(detach(*e).ok());
  ASSERT_TRUE(detach(*r).ok());
  EXPECT_EQ(bytes_at(ut_addr(f), sym->st_size), before);
}

}  // namespace

namespace {

// A forked child inherits the patched text and the hooks; it can detach and attach on its own
// (membarrier registers again in the child) without touching the parent's.
TEST(UprobePatch, ForkedChildKeepsAndChangesItsOwnHooks) {
  const auto before = bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_add)), 5);
  static Seen in;
  in.n = 0;
  auto e = attach(UT_FN(ut_add), HookKind::Entry, record, &in);
  ASSERT_TRUE(e.ok());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    if (opaque(ut_add)(2, 3) != 5 || in.n.load() != 1) bad |= 1;
    // A second thread, so that the barriers have someone to wait for.
    std::thread t([] { opaque(ut_add)(1, 1); });
    t.join();
    if (in.n.load() != 2) bad |= 2;
    if (!detach(*e).ok() || bytes_at(ut_addr(reinterpret_cast<const void*>(&ut_add)), 5) != before) bad |= 4;
    auto r = attach(UT_FN(ut_add), HookKind::Return, record, &in);
    if (!r.ok() || opaque(ut_add)(4, 4) != 8 || in.n.load() != 3 || in.ax != 8 || !detach(*r).ok()) bad |= 8;
    _exit(bad);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "failed checks (bits): " << WEXITSTATUS(status);
  EXPECT_EQ(opaque(ut_add)(1, 2), 3u);
  EXPECT_EQ(in.n.load(), 1u) << "the parent's hook is still there";
  ASSERT_TRUE(detach(*e).ok());
}

}  // namespace
