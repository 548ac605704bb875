// Return hooks and the ways a function is left without returning: a C++ exception thrown through
// hooked functions and longjmp out of them behave exactly as without hooks, and fire no return hook.
#include <gtest/gtest.h>

#include <atomic>
#include <csetjmp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "hooks/uprobe/patch.hpp"

namespace {

using namespace bpfvm::uprobe;

std::atomic<uint64_t> g_entries{0}, g_returns{0}, g_ret_sum{0};
void on_entry(void*, PtRegs*) { g_entries.fetch_add(1); }
void on_return(void*, PtRegs* r) {
  g_returns.fetch_add(1);
  g_ret_sum.fetch_add(r->ax);
}

__attribute__((noinline)) int may_throw(int x) {
  asm volatile("");
  if (x % 3 == 0) throw std::runtime_error("three");
  return x * 2;
}
// Catches some of may_throw's exceptions itself, lets the others through.
__attribute__((noinline)) int middle(int x) {
  asm volatile("");
  try {
    return may_throw(x) + 1;
  } catch (const std::runtime_error&) {
    if (x % 2) throw;
    return -1;
  }
}
__attribute__((noinline)) long run_exceptions(int n) {
  long sum = 0;
  for (int i = 0; i < n; ++i) {
    try {
      sum += middle(i);
    } catch (const std::exception& e) {
      sum += 1000;
    }
  }
  return sum;
}

std::jmp_buf g_jb;
__attribute__((noinline)) int may_jump(int x) {
  asm volatile("");
  if (x % 4 == 0) std::longjmp(g_jb, x + 1);
  return x + 10;
}
__attribute__((noinline)) long run_longjmp(int n) {
  long sum = 0;
  for (volatile int i = 0; i < n; i = i + 1) {
    const int j = setjmp(g_jb);
    if (j) {
      sum += 100 * j;
      continue;
    }
    sum += may_jump(i);
  }
  return sum;
}

uintptr_t addr_of(const void* f) { return reinterpret_cast<uintptr_t>(f); }

struct Hooks {
  std::vector<HookId> ids;
  void add(const void* f, bool force_bp) {
    AttachOptions o;
    o.force_breakpoint = force_bp;
    for (HookKind k : {HookKind::Entry, HookKind::Return}) {
      auto r = attach(addr_of(f), k, k == HookKind::Entry ? on_entry : on_return, nullptr, o);
      ASSERT_TRUE(r.ok()) << r.error().message;
      ids.push_back(*r);
    }
  }
  ~Hooks() {
    for (HookId id : ids) EXPECT_TRUE(detach(id).ok());
  }
};

TEST(UprobeUnwind, ExceptionsThroughReturnHooks) {
  constexpr int kN = 3000;  // far more throws than the shadow stack is deep
  const long expect = run_exceptions(kN);
  // Calls that return normally: middle returns unless i%3==0 && i odd; may_throw unless i%3==0.
  uint64_t may_throw_returns = 0, middle_returns = 0, ret_sum = 0;
  for (int i = 0; i < kN; ++i) {
    if (i % 3) {
      ++may_throw_returns;
      ret_sum += static_cast<uint64_t>(i * 2);
    }
    if (i % 3 || i % 2 == 0) {
      ++middle_returns;
      ret_sum += static_cast<uint64_t>(i % 3 ? i * 2 + 1 : -1);
    }
  }
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    g_entries = g_returns = g_ret_sum = 0;
    const uint64_t missed = stats().missed_returns;
    {
      Hooks h;
      h.add(reinterpret_cast<const void*>(&may_throw), bp);
      h.add(reinterpret_cast<const void*>(&middle), bp);
      EXPECT_EQ(run_exceptions(kN), expect) << "the program behaves as unprobed";
    }
    EXPECT_EQ(g_entries.load(), 2u * kN);
    EXPECT_EQ(g_returns.load(), may_throw_returns + middle_returns) << "no return hook for a function left by an exception";
    EXPECT_EQ(static_cast<uint32_t>(g_ret_sum.load()), static_cast<uint32_t>(ret_sum));
    EXPECT_EQ(stats().missed_returns, missed) << "stale shadow-stack entries were dropped";
  }
}

TEST(UprobeUnwind, LongjmpThroughReturnHooks) {
  constexpr int kN = 2000;
  const long expect = run_longjmp(kN);
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    g_entries = g_returns = g_ret_sum = 0;
    const uint64_t missed = stats().missed_returns;
    {
      Hooks h;
      h.add(reinterpret_cast<const void*>(&may_jump), bp);
      EXPECT_EQ(run_longjmp(kN), expect);
    }
    EXPECT_EQ(g_entries.load(), static_cast<uint64_t>(kN));
    EXPECT_EQ(g_returns.load(), static_cast<uint64_t>(kN - kN / 4));
    EXPECT_EQ(stats().missed_returns, missed);
  }
}

// Exceptions in several threads at once (each thread has its own shadow stack and return stubs).
TEST(UprobeUnwind, ExceptionsInThreads) {
  constexpr int kN = 500;
  const long expect = run_exceptions(kN);
  g_entries = g_returns = 0;
  Hooks h;
  h.add(reinterpret_cast<const void*>(&may_throw), false);
  h.add(reinterpret_cast<const void*>(&middle), false);
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      if (run_exceptions(kN) != expect) wrong.fetch_add(1);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(g_entries.load(), 4u * 2 * kN);
}

// Deep recursion beyond the shadow stack: the deeper calls run, their return hooks are counted missed.
__attribute__((noinline)) int recurse(int n) {
  if (n == 0) return 0;
  int r = recurse(n - 1);
  asm volatile("" : "+r"(r));  // a real call per level (no recursion turned into a loop)
  return r + 1;
}
TEST(UprobeUnwind, DeeperThanTheShadowStack) {
  g_entries = g_returns = 0;
  const uint64_t missed = stats().missed_returns;
  {
    Hooks h;
    h.add(reinterpret_cast<const void*>(&recurse), false);
    EXPECT_EQ(recurse(100), 100);
  }
  EXPECT_EQ(g_entries.load(), 101u);
  EXPECT_EQ(g_returns.load(), kMaxReturnDepth);
  EXPECT_EQ(stats().missed_returns - missed, 101u - kMaxReturnDepth);
}

}  // namespace
