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

#include <sys/wait.h>
#include <unistd.h>

using namespace bpfvm;
using namespace bpfvm::detail;

namespace {

// Runs the body once per code-write mode this machine has (kernel writes need /proc/self/mem).
struct ModeScope {
  CodeWriteMode prev;
  explicit ModeScope(CodeWriteMode m) : prev(exec_memory_set_mode(m)) {}
  ~ModeScope() { exec_memory_set_mode(prev); }
};
std::vector<CodeWriteMode> modes() {
  std::vector<CodeWriteMode> v = {CodeWriteMode::Mprotect};
  ModeScope k(CodeWriteMode::KernelWrite);
  if (exec_memory_mode() == CodeWriteMode::KernelWrite) v.push_back(CodeWriteMode::KernelWrite);
  else std::fprintf(stderr, "[ exec     ] kernel writes (/proc/self/mem) not available here: mprotect mode only\n");
  return v;
}
const char* name(CodeWriteMode m) { return m == CodeWriteMode::KernelWrite ? "kernel writes" : "mprotect"; }

std::vector<uint8_t> code_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(ExecMemory, KernelWritesAreTheDefaultWhereAvailable) {
  // The probe writes into a read+execute page through /proc/self/mem; where that works (here: root,
  // Linux >= 2.6.39) it is the mode in use.
  if (access("/proc/self/mem", W_OK) != 0) GTEST_SKIP() << "/proc/self/mem is not writable here";
  EXPECT_EQ(exec_memory_mode(), CodeWriteMode::KernelWrite);
}

TEST(ExecMemory, PiecesAreReadExecuteWholePagesWithInt3Padding) {
  for (CodeWriteMode mode : modes()) {
  SCOPED_TRACE(name(mode));
  ModeScope scope(mode);
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
}

// Released pages: read-write and not executable (mprotect), or still read+execute with every byte of
// the old code overwritten by int3 (kernel writes); then reused for the next piece.
TEST(ExecMemory, ReleasedPagesHoldNoCodeAndAreReused) {
  for (CodeWriteMode mode : modes()) {
  SCOPED_TRACE(name(mode));
  ModeScope scope(mode);
  auto bytes = code_of(5000, 3);  // two pages
  const uint8_t* first;
  {
    ExecMemory m;
    ASSERT_TRUE(m.install(bytes.data(), bytes.size()).ok());
    EXPECT_EQ(m.mapped(), 2 * ExecMemory::page_size());
    first = m.base();
  }
  if (mode == CodeWriteMode::Mprotect) {
    EXPECT_EQ(bpfvm::test::perms_at(first).substr(0, 3), "rw-");
  } else {
    EXPECT_EQ(bpfvm::test::perms_at(first).substr(0, 3), "r-x");
    for (size_t i = 0; i < 2 * ExecMemory::page_size(); ++i) ASSERT_EQ(first[i], 0xcc) << i;
  }
  // Lowest-address first fit: the next piece of the same size takes the pages just given back
  // (nothing else in this test binary's thread allocates in between).
  auto other = code_of(4500, 9);
  ExecMemory m;
  ASSERT_TRUE(m.install(other.data(), other.size()).ok());
  EXPECT_EQ(m.base(), first);
  EXPECT_EQ(std::memcmp(m.base(), other.data(), other.size()), 0);
  for (size_t i = other.size(); i < m.mapped(); ++i) ASSERT_EQ(m.base()[i], 0xcc) << i;  // no bytes of the old code
  }
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
  for (CodeWriteMode mode : modes()) {
  SCOPED_TRACE(name(mode));
  ModeScope scope(mode);
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
  // Everything released: arenas without live code are unmapped but one per mode (an arena with live code has
  // at least one used page: other tests' programs), and freed pages beyond kExecMaxResidentFreePages
  // are given back to the kernel (only the pages of arenas mapped since can add to that).
  ExecPoolStats s = exec_pool_stats();
  EXPECT_LE(s.arenas, s.used_pages + 2) << "used pages " << s.used_pages;  // + one spare per mode
  EXPECT_LE(s.free_resident_pages, kExecMaxResidentFreePages + kExecArenaPages * (s.used_pages + 1));
  EXPECT_GT(s.free_dropped_pages + s.free_resident_pages, 0u);
  // Dropped pages read as zeros: a piece reusing them is written whole (code, then int3).
  for (int k = 0; k < 3; ++k) {
    std::vector<std::unique_ptr<ExecMemory>> v;
    for (size_t i = 0; i < 2 * kExecArenaPages; ++i) {
      auto small = code_of(100 + i, static_cast<uint8_t>(i));
      v.push_back(std::make_unique<ExecMemory>());
      ASSERT_TRUE(v.back()->install(small.data(), small.size()).ok());
      ASSERT_EQ(std::memcmp(v.back()->base(), small.data(), small.size()), 0);
      for (size_t j = small.size(); j < page; ++j) ASSERT_EQ(v.back()->base()[j], 0xcc) << j;
    }
  }
  }
}

TEST(ExecMemory, ConcurrentInstallAndRelease) {
  for (CodeWriteMode mode : modes()) {
  SCOPED_TRACE(name(mode));
  ModeScope scope(mode);
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
}

// A forked child has the parent's /proc/self/mem descriptor, which writes the parent's memory: the
// child opens its own, and code it installs runs in the child (and leaves the parent's pages alone).
TEST(ExecMemory, ForkedChildWritesItsOwnMemory) {
  if (exec_memory_mode() != CodeWriteMode::KernelWrite) GTEST_SKIP() << "kernel writes not available here";
  const uint8_t ret7[] = {0xb8, 7, 0, 0, 0, 0xc3};  // mov eax, 7; ret
  ExecMemory keep;  // a piece in the parent, so the child's next piece is a page the parent also has
  ASSERT_TRUE(keep.install(ret7, sizeof ret7).ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const uint8_t ret9[] = {0xb8, 9, 0, 0, 0, 0xc3};
    ExecMemory m;
    int rc = m.install(ret9, sizeof ret9).ok() ? 0 : 10;
    if (rc == 0) rc = reinterpret_cast<int (*)()>(const_cast<uint8_t*>(m.base()))() == 9 ? 0 : 11;
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent's free pages after `keep` are still all int3 (the child wrote its own copy).
  const size_t page = ExecMemory::page_size();
  ExecMemory next;
  const uint8_t one = 0xc3;
  ASSERT_TRUE(next.install(&one, 1).ok());
  for (size_t i = 1; i < page; ++i) ASSERT_EQ(next.base()[i], 0xcc) << i;
  EXPECT_EQ(reinterpret_cast<int (*)()>(const_cast<uint8_t*>(keep.base()))(), 7);
}

}  // namespace
