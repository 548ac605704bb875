// The JIT's executable-memory pool (src/exec/jit/exec_memory.cpp): W^X per piece, page-granular
// pieces, reuse, the bounds on what the pool keeps, code too large for an arena, concurrent use.
#include "exec/jit/exec_memory.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace bpfvm;
using namespace bpfvm::detail;

namespace {


std::vector<uint8_t> code_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(ExecMemory, PiecesAreReadExecuteWholePagesWithInt3Padding) {
  const size_t page = ExecMemory::page_size();
  auto bytes = code_of(100, 1);
  ExecMemory a, b;
  ASSERT_TRUE(a.install(bytes.data(), bytes.size()).ok());
  ASSERT_TRUE(b.install(bytes.data(), bytes.size()).ok());
  for (ExecMemory* m : {&a, &b}) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m->base()) % page, 0u);
    EXPECT_EQ(m->mapped(), page);
    EXPECT_EQ(m->size(), bytes.size());
    EXPECT_EQ(bpfvm::test::perms_at(m->base()).substr(0, 3), "r-x");
    EXPECT_EQ(std::memcmp(m->base(), bytes.data(), bytes.size()), 0);
    for (size_t i = bytes.size(); i < page; ++i) ASSERT_EQ(m->base()[i], 0xcc) << i;
  }
  EXPECT_NE(a.base(), b.base());
  EXPECT_FALSE(a.install(bytes.data(), bytes.size()).ok());  // once per object
}

TEST(ExecMemory, ReleasedPagesAreWritableNotExecutableAndReused) {
  auto bytes = code_of(5000, 3);  // two pages
  const uint8_t* first;
  {
    ExecMemory m;
    ASSERT_TRUE(m.install(bytes.data(), bytes.size()).ok());
    EXPECT_EQ(m.mapped(), 2 * ExecMemory::page_size());
    first = m.base();
  }
  EXPECT_EQ(bpfvm::test::perms_at(first).substr(0, 3), "rw-");
  // Lowest-address first fit: the next piece of the same size takes the pages just given back
  // (nothing else in this test binary's thread allocates in between).
  auto other = code_of(4500, 9);
  ExecMemory m;
  ASSERT_TRUE(m.install(other.data(), other.size()).ok());
  EXPECT_EQ(m.base(), first);
  EXPECT_EQ(std::memcmp(m.base(), other.data(), other.size()), 0);
  for (size_t i = other.size(); i < m.mapped(); ++i) ASSERT_EQ(m.base()[i], 0xcc) << i;  // no bytes of the old code
}

TEST(ExecMemory, CodeLargerThanAnArenaGetsAMappingOfItsOwn) {
  const size_t page = ExecMemory::page_size();
  auto bytes = code_of((kExecArenaPages + 3) * page - 10, 5);
  const size_t own = exec_pool_stats().own_mappings;
  const uint8_t* base;
  {
    ExecMemory m;
    ASSERT_TRUE(m.install(bytes.data(), bytes.size()).ok());
    base = m.base();
    EXPECT_EQ(exec_pool_stats().own_mappings, own + 1);
    EXPECT_EQ(bpfvm::test::perms_at(base).substr(0, 3), "r-x");
    EXPECT_EQ(std::memcmp(base, bytes.data(), bytes.size()), 0);
  }
  EXPECT_EQ(exec_pool_stats().own_mappings, own);
  EXPECT_EQ(bpfvm::test::perms_at(base).find('x'), std::string::npos);
}

TEST(ExecMemory, PoolBoundsWhatItKeeps) {
  const size_t page = ExecMemory::page_size();
  auto bytes = code_of(page, 7);
  // Enough one-page pieces to fill several arenas.
  const size_t n = 5 * kExecArenaPages;
  {
    std::vector<std::unique_ptr<ExecMemory>> v;
    for (size_t i = 0; i < n; ++i) {
      v.push_back(std::make_unique<ExecMemory>());
      ASSERT_TRUE(v.back()->install(bytes.data(), bytes.size()).ok());
    }
    ExecPoolStats s = exec_pool_stats();
    EXPECT_GE(s.arenas, 5u);
    EXPECT_GE(s.used_pages, n);
  }
  // Everything released: arenas without live code are unmapped but one (an arena with live code has
  // at least one used page: other tests' programs), and freed pages beyond kExecMaxResidentFreePages
  // are given back to the kernel (only the pages of arenas mapped since can add to that).
  ExecPoolStats s = exec_pool_stats();
  EXPECT_LE(s.arenas, s.used_pages + 1) << "used pages " << s.used_pages;
  EXPECT_LE(s.free_resident_pages, kExecMaxResidentFreePages + kExecArenaPages * (s.used_pages + 1));
  EXPECT_GT(s.free_dropped_pages + s.free_resident_pages, 0u);
}

TEST(ExecMemory, ConcurrentInstallAndRelease) {
  auto worker = [](int id, bool* ok) {
    for (int r = 0; r < 200; ++r) {
      auto bytes = code_of(static_cast<size_t>(64 + (r * 37 + id * 11) % 9000), static_cast<uint8_t>(id * 31 + r));
      ExecMemory m;
      if (!m.install(bytes.data(), bytes.size()).ok() || std::memcmp(m.base(), bytes.data(), bytes.size()) != 0) {
        *ok = false;
        return;
      }
    }
  };
  bool ok[4] = {true, true, true, true};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) ts.emplace_back(worker, i, &ok[i]);
  for (auto& t : ts) t.join();
  for (bool b : ok) EXPECT_TRUE(b);
}

}  // namespace
