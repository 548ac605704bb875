// Pinned maps (the store): files on tmpfs shared between processes, robustness against processes
// killed at any point, damaged files, pinning by name from objects.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/runtime.hpp"
#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

// A fresh directory on tmpfs for one test (removed afterwards).
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs st;
    if (statfs("/dev/shm", &st) != 0 || static_cast<unsigned long>(st.f_type) != TMPFS_MAGIC)
      GTEST_SKIP() << "/dev/shm is not tmpfs here";
    static std::atomic<int> n{0};
    dir_ = "/dev/shm/bpfvm-store-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
    fs::create_directories(dir_);
    // The pin root (and with it the per-CPU slot table) of every process these tests start.
    const char* old = std::getenv("BPFVM_PIN_ROOT");
    had_root_ = old != nullptr;
    if (old) old_root_ = old;
    setenv("BPFVM_PIN_ROOT", dir_.c_str(), 1);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    fs::remove_all(dir_);
    if (had_root_) setenv("BPFVM_PIN_ROOT", old_root_.c_str(), 1); else unsetenv("BPFVM_PIN_ROOT");
  }
  bool had_root_ = false;
  std::string old_root_;
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

MapSpec spec(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, const char* name = "m") {
  MapSpec s;
  s.name = name;
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  return s;
}

// Runs fn in a child process; returns its exit status (0 = fn returned true), or -1 when it crashed
// or did not finish within timeout_s.
template <class F>
int in_child(F fn, int timeout_s = 20) {
  pid_t pid = fork();
  if (pid == 0) _exit(fn() ? 0 : 1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST_F(StoreTest, ArraySharedBetweenProcesses) {
  auto m = create_pinned_map(spec(kMapArray, 4, 8, 16), path("arr"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_TRUE((*m)->shared());
  EXPECT_EQ((*m)->pin_path(), path("arr"));
  int rc = in_child([&] {
    auto o = open_pinned_map(path("arr"));
    if (!o) return false;
    uint32_t k = 3;
    uint64_t v = 42;
    return (*o)->update_user(&k, &v, 0) == 0;
  });
  ASSERT_EQ(rc, 0);
  uint32_t k = 3;
  uint64_t v = 0;
  ASSERT_EQ((*m)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 42u);
  // Creating it again is refused; the map outlives the object that made it.
  EXPECT_FALSE(create_pinned_map(spec(kMapArray, 4, 8, 16), path("arr")).ok());
  m = Result<std::shared_ptr<Map>>(make_error(ErrorCode::Ok, ""));
  auto again = open_pinned_map(path("arr"));
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  v = 0;
  ASSERT_EQ((*again)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 42u);
  EXPECT_EQ((*again)->spec().max_entries, 16u);
}

TEST_F(StoreTest, AtomicAddsFromTwoProcessesLoseNothing) {
  auto m = create_pinned_map(spec(kMapArray, 4, 8, 1), path("ctr"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  constexpr int kN = 200000;
  std::vector<pid_t> kids;
  for (int c = 0; c < 2; ++c) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("ctr"));
      if (!o) _exit(1);
      uint32_t k = 0;
      auto* v = static_cast<uint64_t*>((*o)->lookup(&k));
      for (int i = 0; i < kN; ++i) __atomic_fetch_add(v, 1, __ATOMIC_RELAXED);
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  uint32_t k = 0;
  uint64_t v = 0;
  ASSERT_EQ((*m)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 2u * kN);
}

TEST_F(StoreTest, HashSharedBetweenProcesses) {
  for (uint32_t type : {kMapHash, kMapPercpuHash}) {
    std::string p = path(std::string("h") + map_type_name(type));
    auto m = create_pinned_map(spec(type, 4, 8, 128), p);
    ASSERT_TRUE(m.ok()) << m.error().to_string();
    const size_t vs = (*m)->user_value_size();
    int rc = in_child([&] {
      auto o = open_pinned_map(p);
      if (!o) return false;
      std::vector<uint64_t> v(vs / 8);
      for (uint32_t k = 0; k < 128; ++k) {
        for (auto& x : v) x = k * 10;
        if ((*o)->update_user(&k, v.data(), kBpfNoexist) != 0) return false;
      }
      uint32_t extra = 1000;
      return (*o)->update_user(&extra, v.data(), 0) == -E2BIG;
    });
    ASSERT_EQ(rc, 0) << map_type_name(type);
    std::vector<uint64_t> v(vs / 8);
    for (uint32_t k = 0; k < 128; ++k) {
      ASSERT_EQ((*m)->lookup_copy(&k, v.data(), 0), 0) << k;
      EXPECT_EQ(v[0], k * 10u);
    }
    uint32_t k = 5;
    EXPECT_EQ((*m)->delete_user(&k), 0);
    EXPECT_EQ((*m)->lookup_copy(&k, v.data(), 0), -ENOENT);
    // iteration sees the 127 others exactly once
    uint32_t cur, n = 0;
    const void* prev = nullptr;
    uint32_t prevk;
    while ((*m)->get_next_key(prev, &cur) == 0) {
      ++n;
      prevk = cur;
      prev = &prevk;
    }
    EXPECT_EQ(n, 127u);
    EXPECT_EQ(maps::region_hash_check(m->get()), "");
  }
}

TEST_F(StoreTest, ConcurrentHashWritersInSeveralProcessesAndThreads) {
  auto m = create_pinned_map(spec(kMapHash, 4, 8, 64), path("h"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  constexpr int kProcs = 3, kThreads = 2, kOps = 20000;
  std::vector<pid_t> kids;
  for (int c = 0; c < kProcs; ++c) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("h"));
      if (!o) _exit(1);
      std::vector<std::thread> ts;
      for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
          std::mt19937 rng(c * 16 + t);
          for (int i = 0; i < kOps; ++i) {
            uint32_t k = rng() % 96;
            uint64_t v = k;
            if (rng() % 3) (*o)->update_user(&k, &v, 0); else (*o)->delete_user(&k);
          }
        });
      for (auto& t : ts) t.join();
      // each process owns key 1000 + c and adds to it: nothing may be lost
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  // Elements the exited processes' threads held back for their next insert are owned by dead
  // processes until a repair reclaims them.
  EXPECT_EQ(maps::region_hash_check(m->get(), true), "");
  maps::region_hash_repair(m->get());
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
  // every value still matches its key
  uint32_t cur, prevk, n = 0;
  const void* prev = nullptr;
  while ((*m)->get_next_key(prev, &cur) == 0) {
    uint64_t v = 0;
    ASSERT_EQ((*m)->lookup_copy(&cur, &v, 0), 0);
    EXPECT_EQ(v, cur);
    ++n;
    prevk = cur;
    prev = &prevk;
  }
  EXPECT_LE(n, 64u);
}

// Writers killed with SIGKILL at random points: the table stays valid, and after the survivors
// take over what the dead left, exactly max_entries keys fit again.
TEST_F(StoreTest, HashSurvivesWritersKilledAtRandomPoints) {
  auto m = create_pinned_map(spec(kMapHash, 4, 8, 32), path("h"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    std::vector<pid_t> kids;
    for (int c = 0; c < 2; ++c) {
      pid_t pid = fork();
      if (pid == 0) {
        auto o = open_pinned_map(path("h"));
        if (!o) _exit(1);
        std::mt19937 r(getpid());
        for (;;) {
          uint32_t k = r() % 48;
          uint64_t v = k;
          if (r() % 3) (*o)->update_user(&k, &v, 0); else (*o)->delete_user(&k);
        }
      }
      kids.push_back(pid);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    for (pid_t p : kids) kill(p, SIGKILL);
    for (pid_t p : kids) waitpid(p, nullptr, 0);
    // Readers never need the writers: a lookup of every key finishes and finds its own value.
    for (uint32_t k = 0; k < 48; ++k) {
      uint64_t v;
      if ((*m)->lookup_copy(&k, &v, 0) == 0) EXPECT_EQ(v, k);
    }
  }
  // Chains, count and free list are valid; what a dead writer may have left is an element it owned
  // (taken from the free list, not yet linked), reclaimed when the spare elements run out or by any
  // repair, and in a bucket whose lock it died holding, a key linked twice or a count off by one,
  // repaired by whoever takes that lock over.
  EXPECT_EQ(maps::region_hash_check(m->get(), true), "");
  // Survivors: delete everything (taking over any lock a dead writer held), then fill exactly.
  for (uint32_t k = 0; k < 48; ++k)
    while ((*m)->delete_user(&k) == 0) {
    }
  // A repair (what taking over a dead process's lock, or running out of spare elements, does)
  // reclaims whatever the dead writers owned.
  maps::region_hash_repair(m->get());
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
  for (uint32_t k = 100; k < 132; ++k) {
    uint64_t v = k;
    ASSERT_EQ((*m)->update_user(&k, &v, kBpfNoexist), 0) << "key " << k << " of 32";
  }
  uint32_t k = 500;
  uint64_t v = 0;
  EXPECT_EQ((*m)->update_user(&k, &v, kBpfNoexist), -E2BIG);
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
}

// LRU hashes in the store: a full map takes every insert by evicting an element not used recently
// (programs' lookups mark use), in any process; never more than max_entries elements.
TEST_F(StoreTest, LruHashEvictsInsteadOfFailingAcrossProcesses) {
  for (uint32_t type : {kMapLruHash, kMapLruPercpuHash}) {
    const std::string p = path(std::string("l") + map_type_name(type));
    auto m = create_pinned_map(spec(type, 4, 8, 16), p);
    ASSERT_TRUE(m.ok()) << m.error().to_string();
    const size_t vs = (*m)->user_value_size();
    std::vector<uint64_t> v(vs / 8, 7);
    for (uint32_t k = 0; k < 16; ++k) ASSERT_EQ((*m)->update_user(&k, v.data(), kBpfNoexist), 0);
    // Another process keeps keys 0..3 in use (program-side lookups) while it inserts 3 x 4 more.
    ASSERT_EQ(in_child([&] {
                auto o = open_pinned_map(p);
                if (!o) return false;
                std::vector<uint64_t> w(vs / 8, 9);
                for (int round = 0; round < 3; ++round) {
                  {
                    MapReadSection rs;
                    for (uint32_t k = 0; k < 4; ++k)
                      if (!(*o)->lookup(&k)) return false;
                  }
                  for (uint32_t k = 100 + round * 4; k < 104 + round * 4; ++k)
                    if ((*o)->update_user(&k, w.data(), kBpfNoexist) != 0) return false;
                }
                return true;
              }),
              0)
        << map_type_name(type);
    uint32_t cur, prevk, n = 0;
    const void* prev = nullptr;
    while ((*m)->get_next_key(prev, &cur) == 0) {
      ++n;
      prevk = cur;
      prev = &prevk;
    }
    EXPECT_EQ(n, 16u) << map_type_name(type);
    for (uint32_t k = 0; k < 4; ++k) EXPECT_EQ((*m)->lookup_copy(&k, v.data(), 0), 0) << "hot key " << k << " evicted";
    uint32_t last = 111;
    EXPECT_EQ((*m)->lookup_copy(&last, v.data(), 0), 0);
    EXPECT_EQ(v[0], 9u);
    // The child's thread kept an evicted element back for its next insert (owned by a dead process
    // now, until a repair reclaims it).
    EXPECT_EQ(maps::region_hash_check(m->get(), true), "");
  }
}

// Several processes and threads inserting distinct keys into one full LRU map: every insert
// succeeds, the table stays consistent and holds exactly max_entries keys, each with its value.
TEST_F(StoreTest, ConcurrentLruInsertsInSeveralProcesses) {
  auto m = create_pinned_map(spec(kMapLruHash, 4, 8, 64), path("l"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  constexpr int kProcs = 3, kThreads = 2, kOps = 5000;
  std::vector<pid_t> kids;
  for (int c = 0; c < kProcs; ++c) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("l"));
      if (!o) _exit(1);
      std::atomic<int> failures{0};
      std::vector<std::thread> ts;
      for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
          for (uint32_t i = 0; i < kOps; ++i) {
            uint32_t k = (uint32_t(c * kThreads + t) << 20) | i;
            uint64_t v = k;
            if ((*o)->update_user(&k, &v, kBpfNoexist) != 0) ++failures;
          }
        });
      for (auto& t : ts) t.join();
      _exit(failures ? 2 : 0);
    }
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "an insert into the full LRU map failed";
  }
  maps::region_hash_repair(m->get());  // elements the exited threads held back for their next insert
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
  uint32_t cur, prevk, n = 0;
  const void* prev = nullptr;
  while ((*m)->get_next_key(prev, &cur) == 0) {
    uint64_t v = 0;
    ASSERT_EQ((*m)->lookup_copy(&cur, &v, 0), 0);
    EXPECT_EQ(v, cur);
    ++n;
    prevk = cur;
    prev = &prevk;
  }
  EXPECT_EQ(n, 64u);
}

// Inserting (and so evicting) writers killed with SIGKILL at random points: the table stays valid
// and, once what the dead held is reclaimed, the map is full again after max_entries inserts.
TEST_F(StoreTest, LruHashSurvivesWritersKilledAtRandomPoints) {
  auto m = create_pinned_map(spec(kMapLruHash, 4, 8, 32), path("l"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  std::mt19937 rng(11);
  for (int round = 0; round < 30; ++round) {
    std::vector<pid_t> kids;
    for (int c = 0; c < 2; ++c) {
      pid_t pid = fork();
      if (pid == 0) {
        auto o = open_pinned_map(path("l"));
        if (!o) _exit(1);
        std::mt19937 r(getpid());
        for (;;) {
          uint32_t k = r() % 200;
          uint64_t v = k;
          if (r() % 4) (*o)->update_user(&k, &v, 0); else (*o)->delete_user(&k);
        }
      }
      kids.push_back(pid);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    for (pid_t p : kids) kill(p, SIGKILL);
    for (pid_t p : kids) waitpid(p, nullptr, 0);
    for (uint32_t k = 0; k < 200; ++k) {
      uint64_t v;
      if ((*m)->lookup_copy(&k, &v, 0) == 0) EXPECT_EQ(v, k);
    }
  }
  EXPECT_EQ(maps::region_hash_check(m->get(), true), "");
  maps::region_hash_repair(m->get());
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
  for (uint32_t k = 1000; k < 1032; ++k) {
    uint64_t v = k;
    ASSERT_EQ((*m)->update_user(&k, &v, 0), 0);
  }
  uint32_t n = 0, cur, prevk;
  const void* prev = nullptr;
  while ((*m)->get_next_key(prev, &cur) == 0) {
    ++n;
    prevk = cur;
    prev = &prevk;
  }
  EXPECT_EQ(n, 32u);
  EXPECT_EQ(maps::region_hash_check(m->get()), "");
}

// The file's bytes, to run each kill point from the same state.
std::vector<char> read_file_bytes(const std::string& p) {
  std::vector<char> b(fs::file_size(p));
  int fd = open(p.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(pread(fd, b.data(), b.size(), 0), ssize_t(b.size()));
  close(fd);
  return b;
}
void write_file_bytes(const std::string& p, const std::vector<char>& b) {
  int fd = open(p.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), 0), ssize_t(b.size()));
  close(fd);
}

// Runs op in a child process that raises SIGKILL at its nth kill point (store::kill_point).
// Returns 0 when op finished before that point, 9 when the child was killed there, else a failure.
template <class F>
int killed_at(const std::string& p, uint64_t n, F op) {
  pid_t pid = fork();
  if (pid == 0) {
    auto o = open_pinned_map(p);
    if (!o) _exit(3);
    store::kill_after(n);
    op(**o);
    store::kill_after(0);
    _exit(0);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int st = 0;
  while (waitpid(pid, &st, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st) == 0 ? 0 : -2;
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 9 : -3;
}

// Value k * 10 + 1 before an operation, k * 10 + 2 when the operation writes it.
uint64_t old_value(uint32_t k) { return k * 10 + 1; }
uint64_t new_value(uint32_t k) { return k * 10 + 2; }

struct KillCase {
  const char* what;
  std::function<void(Map&)> op;
  std::vector<uint32_t> touched;  // keys the operation writes or deletes
};

// Kills op's process after each of its steps in turn, every time from the state the file holds
// now (keys `present`, each with its old value). Right after each kill the table holds only what a
// dead writer may leave (region_hash_check with allow_dead_owned); after a repair nothing is
// lost: keys op does not touch keep their values (unless an LRU insert evicted them), touched keys
// hold their old or new value or are gone, and exactly max_entries keys fit again.
void kill_at_every_step(const std::string& p, Map& m, const KillCase& c, const std::vector<uint32_t>& present) {
  const bool lru = m.spec().type == kMapLruHash;
  const uint32_t max = m.spec().max_entries;
  const std::vector<char> start = read_file_bytes(p);
  uint64_t n = 1;
  for (;; ++n) {
    write_file_bytes(p, start);
    int r = killed_at(p, n, c.op);
    if (r == 0) break;
    ASSERT_EQ(r, 9) << c.what << ": the child failed after " << n << " steps";
    std::string why = maps::region_hash_check(&m, true);
    ASSERT_EQ(why, "") << c.what << ", killed after step " << n;
    // Recovery, by a map object of its own (its kept-back element is freed before the next restore).
    auto o = open_pinned_map(p);
    ASSERT_TRUE(o.ok());
    maps::region_hash_repair(o->get());
    ASSERT_EQ(maps::region_hash_check(o->get()), "") << c.what << ", killed after step " << n << ", repaired";
    for (uint32_t k : present) {
      const bool touched = std::find(c.touched.begin(), c.touched.end(), k) != c.touched.end();
      uint64_t v = 0;
      long e = (*o)->lookup_copy(&k, &v, 0);
      if (e == -ENOENT && (touched || lru)) continue;
      ASSERT_EQ(e, 0) << c.what << ", killed after step " << n << ": key " << k << " lost";
      if (touched)
        EXPECT_TRUE(v == old_value(k) || v == new_value(k)) << c.what << ", step " << n << ", key " << k << ": " << v;
      else
        EXPECT_EQ(v, old_value(k)) << c.what << ", step " << n << ", key " << k;
    }
    // Capacity: empty the map, then exactly max_entries keys fit (LRU: the map holds max_entries).
    for (uint32_t k = 0; k < 1000; ++k) (*o)->delete_user(&k);
    for (uint32_t k = 5000; k < 5000 + max; ++k) {
      uint64_t v = k;
      ASSERT_EQ((*o)->update_user(&k, &v, kBpfNoexist), 0) << c.what << ", step " << n << ": key " << k - 5000 << " of " << max;
    }
    uint32_t k = 9999;
    uint64_t v = 0;
    EXPECT_EQ((*o)->update_user(&k, &v, kBpfNoexist), lru ? 0 : -E2BIG) << c.what << ", step " << n;
    ASSERT_EQ(maps::region_hash_check(o->get()), "") << c.what << ", step " << n << ", refilled";
  }
  write_file_bytes(p, start);
  EXPECT_GT(n, 5u) << c.what << ": too few kill points";
}

// A writer killed after each step of each hash map operation in turn (not only at random points as
// above): inserting, replacing, deleting, lookup-and-delete, reusing the element a delete kept
// back, an insert into a full map (which repairs it), an LRU insert that evicts, and an update of
// a bucket whose lock a dead writer holds (a repair that takes it over, drops a key linked twice
// and reclaims elements of dead processes).
TEST_F(StoreTest, HashWritersKilledAfterEveryStepLoseNothing) {
  const std::string p = path("h");
  auto m = create_pinned_map(spec(kMapHash, 4, 8, 8), p);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  auto fill = [&](uint32_t n) {
    std::vector<uint32_t> keys;
    auto o = open_pinned_map(p);
    for (uint32_t k = 0; k < n; ++k) {
      uint64_t v = old_value(k);
      EXPECT_EQ((*o)->update_user(&k, &v, 0), 0);
      keys.push_back(k);
    }
    return keys;
  };
  auto put = [](uint32_t k) {
    return [k](Map& o) {
      uint64_t v = new_value(k);
      o.update_user(&k, &v, 0);
    };
  };
  std::vector<uint32_t> keys = fill(6);
  const std::vector<KillCase> cases = {
      {"insert", put(6), {6}},
      {"replace", put(3), {3}},
      {"delete, then an insert that reuses the element",
       [](Map& o) {
         uint32_t k = 2;
         o.delete_user(&k);
         uint64_t v = new_value(7);
         k = 7;
         o.update_user(&k, &v, 0);
       },
       {2, 7}},
      {"two deletes (the second frees its element to the list)",
       [](Map& o) {
         for (uint32_t k : {1u, 5u}) o.delete_user(&k);
       },
       {1, 5}},
      {"lookup and delete",
       [](Map& o) {
         uint32_t k = 4;
         uint64_t v;
         o.lookup_and_delete(&k, &v, 0);
       },
       {4}},
  };
  for (const KillCase& c : cases) kill_at_every_step(p, **m, c, keys);
  if (HasFatalFailure()) return;

  // A full map: the insert that finds no room repairs the map once (a "map full" answer).
  keys = fill(8);
  kill_at_every_step(p, **m, {"insert into a full map", put(100), {100}}, keys);
  if (HasFatalFailure()) return;

  // A repair with work to do: an element a dead process kept back (a replacing update, then _exit),
  // and a key linked twice in a bucket whose lock a dead process holds (killed between linking the
  // new element and unlinking the old one, found by trying each step).
  {
    auto o = open_pinned_map(p);
    for (uint32_t k = 0; k < 1000; ++k) (*o)->delete_user(&k);
  }
  keys = fill(6);
  ASSERT_EQ(killed_at(p, 0, put(5)), 0);
  const std::vector<char> before = read_file_bytes(p);
  bool twice = false;
  for (uint64_t n = 1; n < 100 && !twice; ++n) {
    write_file_bytes(p, before);
    ASSERT_EQ(killed_at(p, n, put(3)), 9);
    twice = maps::region_hash_check(m->get()).find("linked twice") != std::string::npos;
  }
  ASSERT_TRUE(twice) << "no step of a replacing update leaves a key linked twice";
  // The next writer of that bucket finds its holder dead: a repair takes the lock over (no other
  // process can lock the bucket before the key is there once again), then the update proceeds.
  kill_at_every_step(p, **m, {"replace a key left twice (repair, then update)", put(3), {3, 5}}, keys);
}

TEST_F(StoreTest, LruHashWritersKilledAfterEveryStepLoseNothing) {
  const std::string p = path("l");
  auto m = create_pinned_map(spec(kMapLruHash, 4, 8, 8), p);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  std::vector<uint32_t> keys;
  {
    auto o = open_pinned_map(p);
    for (uint32_t k = 0; k < 8; ++k) {
      uint64_t v = old_value(k);
      ASSERT_EQ((*o)->update_user(&k, &v, kBpfNoexist), 0);
      keys.push_back(k);
    }
  }
  auto put = [](uint32_t k) {
    return [k](Map& o) {
      uint64_t v = new_value(k);
      o.update_user(&k, &v, 0);
    };
  };
  kill_at_every_step(p, **m, {"insert into a full LRU map (evicts)", put(100), {100}}, keys);
  if (HasFatalFailure()) return;
  kill_at_every_step(p, **m, {"replace in a full LRU map", put(2), {2}}, keys);
  if (HasFatalFailure()) return;
  kill_at_every_step(p, **m,
                     {"delete, then an insert that reuses the element",
                      [](Map& o) {
                        uint32_t k = 1;
                        o.delete_user(&k);
                        k = 101;
                        uint64_t v = new_value(k);
                        o.update_user(&k, &v, 0);
                      },
                      {1, 101}},
                     keys);
}

TEST_F(StoreTest, SpinLockOfADeadProcessIsTakenOver) {
  MapSpec s = spec(kMapArray, 4, 8, 1);
  s.spin_lock_off = 0;
  auto m = create_pinned_map(s, path("locked"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto o = open_pinned_map(path("locked"));
    uint32_t k = 0;
    map_spin_lock((*o)->lookup(&k));
    char c = 1;
    (void)!write(pipefd[1], &c, 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  close(pipefd[0]);
  close(pipefd[1]);
  uint32_t k = 0;
  auto* lock = static_cast<uint32_t*>((*m)->lookup(&k));
  EXPECT_EQ(__atomic_load_n(lock, __ATOMIC_ACQUIRE), uint32_t(pid));  // held by the child
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  auto t0 = std::chrono::steady_clock::now();
  map_spin_lock(lock);  // must not wait for the dead child
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(*lock, uint32_t(getpid()));
  map_spin_unlock(lock);
}

// A program run holds its per-CPU slot alone: a run in another process on the same worker index
// gets another slot (and bpf_get_smp_processor_id says which), and a slot of a dead run is freed.
TEST_F(StoreTest, PerCpuSlotIsHeldByOneRunAcrossProcesses) {
  int before = possible_cpus();
  set_possible_cpus(2);
  auto m = create_pinned_map(spec(kMapPercpuArray, 4, 8, 1), path("pc"));
  set_possible_cpus(before);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  int to_child[2], to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto o = open_pinned_map(path("pc"));
    set_current_cpu(0);
    {
      MapReadSection run;  // one program run
      uint32_t k = 0;
      (*o)->lookup(&k);
      char c = char('0' + current_cpu());
      (void)!write(to_parent[1], &c, 1);
      (void)!read(to_child[0], &c, 1);  // hold the slot until told
    }
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(to_parent[0], &c, 1), 1);
  EXPECT_EQ(c, '0');
  uint32_t k = 0;
  set_current_cpu(0);
  {
    MapReadSection run;
    void* mine = (*m)->lookup(&k);
    EXPECT_EQ(current_cpu(), 1);  // slot 0 is held by the child's run
    EXPECT_EQ(mine, (*m)->lookup_percpu(&k, 1));
  }
  EXPECT_EQ(current_cpu(), 0);  // the run's end gives the slot back and restores the worker index
  kill(pid, SIGKILL);  // dies holding slot 0
  waitpid(pid, nullptr, 0);
  {
    MapReadSection run;
    (*m)->lookup(&k);
    EXPECT_EQ(current_cpu(), 0);  // taken over from the dead run
  }
  close(to_child[0]);
  close(to_child[1]);
  close(to_parent[0]);
  close(to_parent[1]);
}

TEST_F(StoreTest, RingbufProducerAndConsumerInTwoProcesses) {
  MapSpec s = spec(kMapRingbuf, 0, 0, 1 << 14);
  auto m = create_pinned_map(s, path("rb"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  RingbufMap* rb = as_ringbuf(m->get());
  ASSERT_NE(rb, nullptr);
  constexpr uint32_t kRecords = 3000;  // more than the ring holds at once
  pid_t pid = fork();
  if (pid == 0) {
    auto o = open_pinned_map(path("rb"));
    if (!o) _exit(1);
    RingbufMap* r = as_ringbuf(o->get());
    for (uint32_t i = 0; i < kRecords;) {
      if (r->output(&i, sizeof i, 0) == 0) ++i; else std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    _exit(0);
  }
  uint32_t next = 0;
  bool in_order = true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (next < kRecords && std::chrono::steady_clock::now() < deadline) {
    rb->poll([&](const void* d, uint32_t n) {
      uint32_t v;
      std::memcpy(&v, d, 4);
      if (n != 4 || v != next) in_order = false;
      ++next;
      return 0;
    }, 1000);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_EQ(next, kRecords);
  EXPECT_TRUE(in_order);
}

TEST_F(StoreTest, RingbufRecordOfADeadProducerIsDiscarded) {
  auto m = create_pinned_map(spec(kMapRingbuf, 0, 0, 1 << 14), path("rb"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  RingbufMap* rb = as_ringbuf(m->get());
  int rc = in_child([&] {
    auto o = open_pinned_map(path("rb"));
    if (!o) return false;
    void* rec = as_ringbuf(o->get())->reserve(16, 0);
    if (!rec) return false;
    raise(SIGKILL);  // dies holding a reserved record
    return true;
  });
  EXPECT_EQ(rc, -1);  // killed
  uint64_t after = 77;
  ASSERT_EQ(rb->output(&after, sizeof after, 0), 0);
  std::vector<uint64_t> got;
  rb->consume([&](const void* d, uint32_t n) {
    uint64_t v;
    std::memcpy(&v, d, 8);
    got.push_back(v);
    return 0;
  });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], 77u);
  EXPECT_EQ(rb->consumer_pos(), rb->producer_pos());
}

TEST_F(StoreTest, QueueStackAndBloomFilterSharedBetweenProcesses) {
  auto q = create_pinned_map(spec(kMapQueue, 0, 4, 8), path("q"));
  auto st = create_pinned_map(spec(kMapStack, 0, 4, 8), path("s"));
  auto bl = create_pinned_map(spec(kMapBloomFilter, 0, 4, 100), path("b"));
  ASSERT_TRUE(q.ok() && st.ok() && bl.ok());
  int rc = in_child([&] {
    auto oq = open_pinned_map(path("q")), os = open_pinned_map(path("s")), ob = open_pinned_map(path("b"));
    if (!oq || !os || !ob) return false;
    for (uint32_t v = 1; v <= 8; ++v)
      if ((*oq)->push(&v, 0) || (*os)->push(&v, 0) || (*ob)->push(&v, 0)) return false;
    uint32_t nine = 9;
    return (*oq)->push(&nine, 0) == -E2BIG;
  });
  ASSERT_EQ(rc, 0);
  for (uint32_t want = 1; want <= 8; ++want) {
    uint32_t v = 0;
    ASSERT_EQ((*q)->pop(&v), 0);
    EXPECT_EQ(v, want);                 // FIFO
    ASSERT_EQ((*st)->pop(&v), 0);
    EXPECT_EQ(v, 9 - want);             // LIFO
    EXPECT_EQ((*bl)->peek(&want), 0);   // maybe present
  }
  uint32_t v;
  EXPECT_EQ((*q)->pop(&v), -ENOENT);
  uint32_t absent = 12345;
  int misses = 0;
  for (uint32_t x = 1000; x < 1100; ++x) misses += (*bl)->peek(&x) == -ENOENT;
  EXPECT_GT(misses, 80);  // a bloom filter of 100 entries holding 8 says "absent" for most others
  (void)absent;
}

TEST_F(StoreTest, QueueSurvivesProducersKilledAtRandomPoints) {
  auto q = create_pinned_map(spec(kMapQueue, 0, 8, 16), path("q"));
  ASSERT_TRUE(q.ok());
  std::mt19937 rng(3);
  for (int round = 0; round < 20; ++round) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("q"));
      for (uint64_t i = 0;; ++i) {
        uint64_t v = 0x1111111111111111ull * (i % 15 + 1);
        if ((*o)->push(&v, kBpfExist)) _exit(1);
        if (i % 3 == 0) (*o)->pop(&v);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100 + rng() % 2000));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  // The lock of a killed producer is taken over; at most 16 elements, each a whole value written
  // before the position moved.
  int n = 0;
  uint64_t v;
  while ((*q)->pop(&v) == 0) {
    EXPECT_EQ(v % 0x1111111111111111ull, 0u);
    ++n;
  }
  EXPECT_LE(n, 16);
  for (uint64_t i = 0; i < 16; ++i) EXPECT_EQ((*q)->push(&i, 0), 0);
  EXPECT_EQ((*q)->push(&v, 0), -E2BIG);
}

TEST_F(StoreTest, ForeignAndDamagedFilesAreRefused) {
  auto write = [&](const std::string& name, const std::string& bytes) {
    FILE* f = std::fopen(path(name).c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  };
  write("empty", "");
  write("text", std::string(8192, 'x'));
  auto e = open_pinned_map(path("empty"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("too short"), std::string::npos) << e.error().message;
  e = open_pinned_map(path("text"));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("bad magic"), std::string::npos) << e.error().message;
  EXPECT_FALSE(open_pinned_map(path("missing")).ok());

  auto m = create_pinned_map(spec(kMapHash, 4, 8, 64), path("h"));
  ASSERT_TRUE(m.ok());
  m = Result<std::shared_ptr<Map>>(make_error(ErrorCode::Ok, ""));
  std::string good;
  {
    FILE* f = std::fopen(path("h").c_str(), "rb");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) good.append(buf, n);
    std::fclose(f);
  }
  struct Case {
    size_t off;
    uint32_t value;
    const char* expect;
  };
  const Case cases[] = {
      {8, 99, "version 99"},                  // version
      {16, 1, "the header says"},             // file_size
      {32, 77, "map type 77"},                // type
      {40, 0, "value_size"},                  // value_size 0: an invalid spec
      {40, 16, "needs"},                      // value_size 16: the layout does not match the file
      {4096 + 4, 3, "damaged hash table"},    // nbuckets in the hash's control block
  };
  for (const Case& c : cases) {
    std::string bad = good;
    std::memcpy(&bad[c.off], &c.value, 4);
    write("bad", bad);
    auto r = open_pinned_map(path("bad"));
    ASSERT_FALSE(r.ok()) << "offset " << c.off;
    EXPECT_TRUE(r.error().message.find("damaged") != std::string::npos ||
                r.error().message.find(c.expect) != std::string::npos)
        << r.error().message;
  }
  write("trunc", good.substr(0, good.size() - 8));
  EXPECT_FALSE(open_pinned_map(path("trunc")).ok());
}

// Random bytes anywhere in a map's own area never crash or hang a process that uses it.
TEST_F(StoreTest, GarbageInsideAMapNeverCrashesOrHangs) {
  for (uint32_t type : {kMapHash, kMapPercpuHash, kMapArray, kMapRingbuf, kMapQueue}) {
    MapSpec s = type == kMapRingbuf ? spec(type, 0, 0, 4096) : type == kMapQueue ? spec(type, 0, 8, 64) : spec(type, 4, 8, 64);
    std::string p = path(std::string("g") + map_type_name(type));
    {
      auto m = create_pinned_map(s, p);
      ASSERT_TRUE(m.ok()) << m.error().to_string();
      if (type == kMapRingbuf) {
        uint64_t x = 1;
        for (int i = 0; i < 10; ++i) as_ringbuf(m->get())->output(&x, 8, 0);
      } else if (type == kMapQueue) {
        for (uint64_t x = 0; x < 40; ++x) (*m)->push(&x, 0);
      } else {
        for (uint32_t k = 0; k < 40; ++k) {
          std::vector<uint8_t> v((*m)->user_value_size(), uint8_t(k));
          (*m)->update_user(&k, v.data(), 0);
        }
      }
    }
    // A few trials here (a damaged lock word naming a live process costs a 2 s takeover);
    // BPFVM_STORE_GARBAGE_TRIALS=N runs more.
    const char* env = std::getenv("BPFVM_STORE_GARBAGE_TRIALS");
    const int trials = env ? std::atoi(env) : 4;
    for (int trial = 0; trial < trials; ++trial) {
      int rc = in_child([&] {
        int fd = open(p.c_str(), O_RDWR);
        struct stat st;
        fstat(fd, &st);
        std::mt19937 rng(trial * 31 + type);
        // Scribble over the area after the header (the header itself is validated on open).
        for (int i = 0; i < 64; ++i) {
          uint64_t off = 4096 + rng() % (uint64_t(st.st_size) - 4096 - 4);
          uint32_t w = trial % 2 ? rng() : rng() % 200;
          pwrite(fd, &w, 4, off_t(off));
        }
        close(fd);
        auto o = open_pinned_map(p);
        if (!o) return true;  // refused: fine
        Map& m = **o;
        if (type == kMapRingbuf) {
          as_ringbuf(&m)->consume([](const void*, uint32_t) { return 0; });
          uint64_t x = 2;
          as_ringbuf(&m)->output(&x, 8, 0);
          return true;
        }
        if (type == kMapQueue) {
          uint64_t x = 3;
          for (int i = 0; i < 100; ++i) m.pop(&x);
          for (int i = 0; i < 100; ++i) m.push(&x, kBpfExist);
          return true;
        }
        std::vector<uint8_t> v(m.user_value_size());
        for (uint32_t k = 0; k < 80; ++k) {
          m.lookup_copy(&k, v.data(), 0);
          m.lookup(&k);
          m.update_user(&k, v.data(), 0);
          if (k % 3 == 0) m.delete_user(&k);
        }
        uint32_t cur, prevk;
        const void* prev = nullptr;
        for (int i = 0; i < 1000 && m.get_next_key(prev, &cur) == 0; ++i) {
          prevk = cur;
          prev = &prevk;
        }
        return true;
      }, 30);
      EXPECT_EQ(rc, 0) << map_type_name(type) << " trial " << trial << (rc == -1 ? ": crashed or hung" : "");
    }
  }
}

TEST_F(StoreTest, NotOnTmpfsIsRefused) {
  struct statfs st;
  if (statfs("/var/tmp", &st) != 0 || static_cast<unsigned long>(st.f_type) == TMPFS_MAGIC)
    GTEST_SKIP() << "/var/tmp is tmpfs here";
  std::string p = "/var/tmp/bpfvm-store-test-" + std::to_string(getpid());
  auto m = create_pinned_map(spec(kMapArray, 4, 4, 1), p);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("not on tmpfs"), std::string::npos) << m.error().message;
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(StoreTest, UnpinnableTypeIsRefusedWithTheReason) {
  MapSpec s = spec(kMapDevmap, 4, 4, 4);
  auto m = create_pinned_map(s, path("devmap"));
  if (map_type_pinnable(kMapDevmap)) GTEST_SKIP() << "devmap is pinnable";
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("cannot be pinned"), std::string::npos) << m.error().message;
}

// A pinned LPM trie: prefixes inserted by several processes at once are all there, longest-prefix
// lookups agree in every process, and writers killed at random points leave the table valid.
TEST_F(StoreTest, LpmTrieSharedBetweenProcesses) {
  MapSpec s = spec(kMapLpmTrie, 8, 8, 4096, "lpm");
  s.flags = kMapFNoPrealloc;
  auto m = create_pinned_map(s, path("lpm"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  // Process c inserts 10.c.x.0/24 -> x for x < 250, and 10.c.0.0/16 -> 1000.
  auto key = [](uint32_t plen, uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    std::array<uint8_t, 8> k{};
    std::memcpy(k.data(), &plen, 4);
    k[4] = a, k[5] = b, k[6] = c, k[7] = d;
    return k;
  };
  std::vector<pid_t> kids;
  for (int c = 0; c < 3; ++c) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("lpm"));
      if (!o) _exit(1);
      for (uint32_t x = 0; x < 250; ++x) {
        auto k = key(24, 10, uint8_t(c), uint8_t(x), 0);
        uint64_t v = x;
        if ((*o)->update_user(k.data(), &v, kBpfNoexist) != 0) _exit(2);
      }
      auto k = key(16, 10, uint8_t(c), 0, 0);
      uint64_t v = 1000;
      _exit((*o)->update_user(k.data(), &v, 0) == 0 ? 0 : 3);
    }
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  uint64_t v = 0;
  for (int c = 0; c < 3; ++c) {
    auto k = key(32, 10, uint8_t(c), 7, 9);  // longest match: the /24
    ASSERT_EQ((*m)->lookup_copy(k.data(), &v, 0), 0);
    EXPECT_EQ(v, 7u);
    k = key(32, 10, uint8_t(c), 251, 1);  // no /24: the /16
    ASSERT_EQ((*m)->lookup_copy(k.data(), &v, 0), 0);
    EXPECT_EQ(v, 1000u);
  }
  auto none = key(32, 11, 0, 0, 0);
  EXPECT_EQ((*m)->lookup_copy(none.data(), &v, 0), -ENOENT);
  uint32_t n = 0;
  std::array<uint8_t, 8> cur{}, prev{};
  const void* pk = nullptr;
  while ((*m)->get_next_key(pk, cur.data()) == 0 && n < 10000) {
    ++n;
    prev = cur;
    pk = prev.data();
  }
  EXPECT_EQ(n, 3u * 251u);
  // Writers killed at random points: afterwards every present key still maps to its own value,
  // and deleting and re-inserting everything works (the lock of a dead writer is taken over).
  std::mt19937 rng(9);
  for (int round = 0; round < 20; ++round) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("lpm"));
      if (!o) _exit(1);
      std::mt19937 r(getpid());
      for (;;) {
        auto k = key(24, 20, uint8_t(r() % 4), uint8_t(r() % 200), 0);
        uint64_t val = k[5] * 1000u + k[6];
        if (r() % 3) (*o)->update_user(k.data(), &val, 0); else (*o)->delete_user(k.data());
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    for (uint32_t b = 0; b < 4; ++b)
      for (uint32_t x = 0; x < 200; ++x) {
        auto k = key(32, 20, uint8_t(b), uint8_t(x), 1);
        if ((*m)->lookup_copy(k.data(), &v, 0) == 0) EXPECT_EQ(v, b * 1000 + x);
      }
  }
  for (uint32_t b = 0; b < 4; ++b)
    for (uint32_t x = 0; x < 200; ++x) {
      auto k = key(24, 20, uint8_t(b), uint8_t(x), 0);
      (*m)->delete_user(k.data());
      uint64_t val = b * 1000 + x;
      ASSERT_EQ((*m)->update_user(k.data(), &val, kBpfNoexist), 0);
    }
  pk = nullptr;
  n = 0;
  while ((*m)->get_next_key(pk, cur.data()) == 0 && n < 10000) {
    ++n;
    prev = cur;
    pk = prev.data();
  }
  EXPECT_EQ(n, 3u * 251u + 800u);
}

// ---- pinning declared in objects ------------------------------------------------------------------

std::string progs_dir() { return BPFVM_PROGS_DIR; }

TEST_F(StoreTest, PinByNameSharesMapsBetweenProcessesRunningThePrograms) {
  const std::string obj_path = progs_dir() + "/st_pinned.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  InstantiateOptions io;
  io.pin_root = dir_;
  constexpr uint64_t kRuns = 20000;
  auto run_n = [&](uint64_t n) {
    auto live = instantiate_with(*obj, io);
    if (!live) return false;
    PrepareOptions po;
    po.rules = RuleSet::Privileged;
    auto p = prepare_program(*obj->find_program("st_count"), *live, nullptr, po);
    if (!p) return false;
    std::vector<uint8_t> pkt(60, 0);
    for (uint64_t i = 0; i < n; ++i)
      if (!test_run(*p, pkt).ok()) return false;
    return true;
  };
  std::vector<pid_t> kids;
  for (int c = 0; c < 2; ++c) {
    pid_t pid = fork();
    if (pid == 0) _exit(run_n(kRuns) ? 0 : 1);
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  EXPECT_TRUE(fs::exists(path("st_counts")));
  EXPECT_TRUE(fs::exists(path("st_hash")));
  EXPECT_TRUE(fs::exists(path("st_events")));
  EXPECT_FALSE(fs::exists(path("st_private")));
  EXPECT_TRUE(fs::exists(path("st_percpu")));
  // A third process (this one) sees what both did: exactly 2N runs.
  auto counts = open_pinned_map(path("st_counts"));
  ASSERT_TRUE(counts.ok()) << counts.error().to_string();
  uint32_t k = 0;
  uint64_t v = 0;
  ASSERT_EQ((*counts)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 2 * kRuns);
  auto hash = open_pinned_map(path("st_hash"));
  ASSERT_TRUE(hash.ok());
  k = 60;
  ASSERT_EQ((*hash)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 2 * kRuns);
  // Per-CPU slots are leased per run across processes: plain adds lose nothing either.
  auto pc = open_pinned_map(path("st_percpu"));
  ASSERT_TRUE(pc.ok()) << pc.error().to_string();
  std::vector<uint64_t> slots((*pc)->user_value_size() / 8);
  k = 0;
  ASSERT_EQ((*pc)->lookup_copy(&k, slots.data(), 0), 0);
  uint64_t sum = 0;
  for (uint64_t x : slots) sum += x;
  EXPECT_EQ(sum, 2 * kRuns);
  auto ev = open_pinned_map(path("st_events"));
  ASSERT_TRUE(ev.ok());
  uint64_t records = 0, maxn = 0;
  as_ringbuf(ev->get())->consume([&](const void* d, uint32_t) {
    uint64_t n;
    std::memcpy(&n, d, 8);
    maxn = std::max(maxn, n);
    ++records;
    return 0;
  });
  EXPECT_GT(records, 0u);
  EXPECT_LE(maxn, 2 * kRuns);
}

// BPF_MAP_FREEZE on a pinned map: frozen by one process, every process's user-space writes are
// refused (-EPERM, through the C++ API and its batch form), while programs keep writing.
TEST_F(StoreTest, FrozenPinnedMapRefusesUserWritesButProgramsWrite) {
  const std::string obj_path = progs_dir() + "/st_pinned.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  InstantiateOptions io;
  io.pin_root = dir_;
  auto live = instantiate_with(*obj, io);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  auto p = prepare_program(*obj->find_program("st_count"), *live, nullptr, po);
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  std::vector<uint8_t> pkt(60, 0);
  // Another process freezes the maps (before any run: the program's first bpf_map_update_elem
  // into st_hash comes after the freeze).
  ASSERT_EQ(in_child([&] {
              for (const char* n : {"st_counts", "st_hash"}) {
                auto m = open_pinned_map(path(n));
                if (!m) return false;
                (*m)->freeze();
              }
              return true;
            }),
            0);
  auto counts = open_pinned_map(path("st_counts"));
  auto hash = open_pinned_map(path("st_hash"));
  ASSERT_TRUE(counts.ok() && hash.ok());
  EXPECT_TRUE((*counts)->frozen());
  uint32_t k = 0;
  uint64_t v = 99;
  EXPECT_EQ((*counts)->update_user(&k, &v, 0), -EPERM);
  k = 60;
  EXPECT_EQ((*hash)->update_user(&k, &v, 0), -EPERM);
  EXPECT_EQ((*hash)->delete_user(&k), -EPERM);
  EXPECT_EQ((*hash)->lookup_and_delete(&k, &v, 0), -EPERM);
  uint32_t count = 4;
  std::vector<uint8_t> keys(4 * 4), vals(4 * 8);
  EXPECT_EQ((*hash)->lookup_batch(nullptr, nullptr, keys.data(), vals.data(), &count, 0, true), -EPERM);
  // The program still counts, in the maps this process had open before the freeze.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(test_run(*p, pkt).ok());
  k = 0;
  ASSERT_EQ((*counts)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 10u);
  k = 60;
  ASSERT_EQ((*hash)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 10u);
}

// A pinned perf event array: programs in two processes write records on their CPU slot's ring
// while this process reads them; every run is accounted for, as a record or as a lost sample.
TEST_F(StoreTest, PerfEventArrayProducersAndConsumerInSeveralProcesses) {
  const std::string obj_path = progs_dir() + "/st_perf.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  InstantiateOptions io;
  io.pin_root = dir_;
  auto live = instantiate_with(*obj, io);  // creates the pinned maps
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  constexpr uint64_t kRuns = 20000;
  std::vector<pid_t> kids;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  for (int c = 0; c < 2; ++c) {
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      set_current_cpu(c);  // each producer prefers its own CPU slot
      auto l = instantiate_with(*obj, io);
      if (!l) _exit(1);
      PrepareOptions po;
      po.rules = RuleSet::Privileged;
      auto p = prepare_program(*obj->find_program("st_perf_emit"), *l, nullptr, po);
      if (!p) _exit(1);
      std::vector<uint8_t> pkt(60 + c, 0);
      uint64_t dropped = 0;
      for (uint64_t i = 0; i < kRuns; ++i) {
        auto r = test_run(*p, pkt);
        if (!r || r->retval > 1) _exit(2);
        dropped += r->retval;  // 1: the ring was full
      }
      _exit(write(fds[1], &dropped, 8) == 8 ? 0 : 3);
    }
    kids.push_back(pid);
  }
  close(fds[1]);
  auto pa = open_pinned_map(path("st_perf"));
  ASSERT_TRUE(pa.ok()) << pa.error().to_string();
  auto* perf = as_perf_event_array(pa->get());
  ASSERT_NE(perf, nullptr);
  uint64_t samples = 0, lost = 0, bad = 0;
  std::vector<uint8_t> seen(2 * kRuns, 0);
  auto on_sample = [&](int, const void* d, uint32_t n) {
    uint64_t seq;
    uint32_t len, magic;
    std::memcpy(&seq, d, 8);
    std::memcpy(&len, static_cast<const uint8_t*>(d) + 8, 4);
    std::memcpy(&magic, static_cast<const uint8_t*>(d) + 12, 4);
    if (n < 16 || magic != 0x5eed5eed || (len != 60 && len != 61) || seq >= seen.size() || seen[seq]++) ++bad;
    ++samples;
  };
  auto on_lost = [&](int, uint64_t n) { lost += n; };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t done = 0;
  while (done < kids.size() && std::chrono::steady_clock::now() < deadline) {
    perf->poll(on_sample, on_lost, 10);
    for (pid_t& k : kids) {
      int st = 0;
      if (k > 0 && waitpid(k, &st, WNOHANG) == k) {
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        k = -1;
        ++done;
      }
    }
  }
  ASSERT_EQ(done, kids.size()) << "producers did not finish";
  while (perf->consume(on_sample, on_lost) > 0) {
  }
  uint64_t dropped = 0, d;
  while (read(fds[0], &d, 8) == 8) dropped += d;
  close(fds[0]);
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(samples, 0u);
  // Every run wrote a record this process read, or was dropped (and reported as lost before the
  // ring's next record: drops after a ring's last record stay unreported).
  EXPECT_EQ(samples + dropped, 2 * kRuns);
  EXPECT_LE(lost, dropped);
  auto seq = open_pinned_map(path("st_perf_seq"));
  ASSERT_TRUE(seq.ok());
  uint32_t k = 0;
  uint64_t runs = 0;
  ASSERT_EQ((*seq)->lookup_copy(&k, &runs, 0), 0);
  EXPECT_EQ(runs, 2 * kRuns);
}

// Producers killed with SIGKILL at random points leave every ring readable: only whole records
// are ever seen, and the ring keeps working afterwards.
TEST_F(StoreTest, PerfEventArraySurvivesProducersKilledAtRandomPoints) {
  MapSpec s = spec(kMapPerfEventArray, 4, 4, 4, "pk");
  auto m = create_pinned_map(s, path("pk"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  auto* perf = as_perf_event_array(m->get());
  ASSERT_NE(perf, nullptr);
  std::mt19937 rng(5);
  uint64_t samples = 0, bad = 0, lost = 0;
  auto on_sample = [&](int, const void* d, uint32_t n) {
    // A record is its length repeated (v bytes of value v), then the zeros padding it to 8 bytes
    // (the size a perf sample reports includes them, as the kernel's).
    const uint8_t* p = static_cast<const uint8_t*>(d);
    uint32_t v = n ? p[0] : 0;
    if (v == 0 || v > n || n - v >= 8) ++bad;
    for (uint32_t i = 0; i < n && !bad; ++i)
      if (p[i] != (i < v ? uint8_t(v) : 0)) ++bad;
    ++samples;
  };
  auto on_lost = [&](int, uint64_t n) { lost += n; };
  for (int round = 0; round < 30; ++round) {
    pid_t pid = fork();
    if (pid == 0) {
      auto o = open_pinned_map(path("pk"));
      if (!o) _exit(1);
      auto* pe = as_perf_event_array(o->get());
      std::mt19937 r(getpid());
      uint8_t buf[200];
      for (;;) {
        uint32_t n = 1 + r() % 200;
        std::memset(buf, int(n), n);
        set_current_cpu(int(r() % 2));
        pe->output(0xffffffffull, buf, n);  // BPF_F_CURRENT_CPU: the ring of CPU slot 0 or 1
      }
    }
    // This process reads while the producer writes, then kills it.
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300 + rng() % 3000);
    while (std::chrono::steady_clock::now() < until) perf->consume(on_sample, on_lost);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    perf->consume(on_sample, on_lost);
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(samples, 0u);
  // The rings still work (a lock a killed producer held is taken over).
  uint8_t rec[8];
  std::memset(rec, 8, 8);
  set_current_cpu(0);
  uint64_t before = samples;
  ASSERT_EQ(perf->output(0xffffffffull, rec, 8), 0);
  perf->consume(on_sample, on_lost);
  EXPECT_EQ(samples, before + 1);
  EXPECT_EQ(bad, 0u);
}

// A sample carries the time bpf_perf_event_output wrote it (CLOCK_MONOTONIC ns, the kernel's
// PERF_SAMPLE_TIME), not the time it is read: written in another process, read after a pause.
TEST_F(StoreTest, PerfEventArraySamplesCarryTheTimeTheyWereWritten) {
  auto m = create_pinned_map(spec(kMapPerfEventArray, 4, 4, 1, "pt"), path("pt"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto o = open_pinned_map(path("pt"));
    if (!o) _exit(1);
    set_current_cpu(0);
    uint64_t t[2];
    uint32_t v = 42;
    t[0] = maps::monotonic_ns();
    long r = as_perf_event_array(o->get())->output(0xffffffffull, &v, 4);
    t[1] = maps::monotonic_ns();
    _exit(r == 0 && write(fds[1], t, sizeof t) == ssize_t(sizeof t) ? 0 : 2);
  }
  close(fds[1]);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  uint64_t t[2] = {};
  ASSERT_EQ(read(fds[0], t, sizeof t), ssize_t(sizeof t));
  close(fds[0]);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const uint64_t read_at = maps::monotonic_ns();
  std::vector<uint64_t> times;
  auto* perf = as_perf_event_array(m->get());
  perf->consume_records([&](int, uint64_t time, const void*, uint32_t) { times.push_back(time); }, nullptr);
  ASSERT_EQ(times.size(), 1u);
  EXPECT_GE(times[0], t[0]);
  EXPECT_LE(times[0], t[1]);
  EXPECT_LT(times[0] + 50'000'000, read_at);
}

// A perf event array file of the format whose samples had no time is refused, saying so.
TEST_F(StoreTest, PerfEventArrayOfTheFormatWithoutTimesIsRefused) {
  {
    auto m = create_pinned_map(spec(kMapPerfEventArray, 4, 4, 1, "pold"), path("pold"));
    ASSERT_TRUE(m.ok()) << m.error().to_string();
  }
  int fd = open(path("pold").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint32_t old_magic = 0x50455246;  // "PERF": the control block's magic of that format
  ASSERT_EQ(pwrite(fd, &old_magic, 4, 4096), 4);
  close(fd);
  auto o = open_pinned_map(path("pold"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().to_string().find("older format (records without timestamps)"), std::string::npos)
      << o.error().to_string();
}

// A pinned prog_array: programs are code of the process that put them there, so each process that
// opens the map has its own slots (another process's programs are not visible, its tail calls
// through an empty slot fall through); the file holds the shape and the frozen flag.
TEST_F(StoreTest, PinnedProgArraySlotsBelongToEachProcess) {
  auto m = create_pinned_map(spec(kMapProgArray, 4, 4, 8, "progs"), path("progs"));
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  auto* pa = as_prog_array(m->get());
  ASSERT_NE(pa, nullptr);
  EXPECT_TRUE((*m)->shared());
  auto prog = std::make_shared<int>(42);
  ASSERT_EQ(pa->set_prog(3, prog, 77), 0);
  EXPECT_EQ(pa->prog_at(3), prog.get());
  uint32_t k = 3, id = 0;
  ASSERT_EQ((*m)->lookup_copy(&k, &id, 0), 0);
  EXPECT_EQ(id, 77u);
  ASSERT_EQ(in_child([&] {
              auto o = open_pinned_map(path("progs"));
              if (!o) return false;
              auto* c = as_prog_array(o->get());
              uint32_t key = 3, v = 0;
              if (!c || c->prog_at(3) != nullptr || (*o)->lookup_copy(&key, &v, 0) != -ENOENT) return false;
              auto mine = std::make_shared<int>(7);
              return c->set_prog(3, mine, 5) == 0 && c->prog_at(3) == mine.get();
            }),
            0);
  EXPECT_EQ(pa->prog_at(3), prog.get());  // the child's program did not replace this process's
  // A shape mismatch is refused when the map is reused by name.
  auto again = open_or_create_pinned_map(spec(kMapProgArray, 4, 4, 16, "progs"), path("progs"));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("max_entries"), std::string::npos) << again.error().message;
}

TEST_F(StoreTest, PinByNameRefusesAnIncompatibleExistingMap) {
  const std::string obj_path = progs_dir() + "/st_pinned.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  ASSERT_TRUE(create_pinned_map(spec(kMapArray, 4, 16, 4, "st_counts"), path("st_counts")).ok());
  InstantiateOptions io;
  io.pin_root = dir_;
  auto live = instantiate_with(*obj, io);
  ASSERT_FALSE(live.ok());
  EXPECT_NE(live.error().message.find("value_size 16"), std::string::npos) << live.error().message;
  EXPECT_NE(live.error().message.find("st_counts"), std::string::npos) << live.error().message;
}

TEST_F(StoreTest, Iproute2GlobalNamespacePinning) {
  const std::string obj_path = progs_dir() + "/ld_elfmap.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  InstantiateOptions io;
  io.pin_root = dir_;
  auto live = instantiate_with(*obj, io);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  const int idx = obj->find_map("tc_counts");
  ASSERT_GE(idx, 0);
  EXPECT_TRUE(live->maps[idx]->shared());
  EXPECT_EQ(live->maps[idx]->pin_path(), dir_ + "/tc/globals/tc_counts");
  EXPECT_TRUE(fs::exists(dir_ + "/tc/globals/tc_counts"));
  EXPECT_FALSE(live->maps[obj->find_map("tc_hash")]->shared());
}

TEST_F(StoreTest, PinRootFollowsTheEnvironment) {
  const char* old = std::getenv("BPFVM_PIN_ROOT");
  std::string saved = old ? old : "";
  setenv("BPFVM_PIN_ROOT", dir_.c_str(), 1);
  EXPECT_EQ(pin_root(), dir_);
  unsetenv("BPFVM_PIN_ROOT");
  if (geteuid() == 0) EXPECT_EQ(pin_root(), "/run/bpfvm");
  if (old) setenv("BPFVM_PIN_ROOT", saved.c_str(), 1);
}

TEST_F(StoreTest, PinMapAddsASecondName) {
  auto m = create_pinned_map(spec(kMapArray, 4, 4, 2), path("a"));
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(pin_map(**m, path("b")).ok());
  auto b = open_pinned_map(path("b"));
  ASSERT_TRUE(b.ok());
  uint32_t k = 1, v = 9;
  ASSERT_EQ((*m)->update_user(&k, &v, 0), 0);
  v = 0;
  ASSERT_EQ((*b)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 9u);
  auto priv = create_map(spec(kMapArray, 4, 4, 2));
  ASSERT_TRUE(priv.ok());
  auto r = pin_map(**priv, path("c"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("private"), std::string::npos);
}

}  // namespace
}  // namespace bpfvm

// The C API opens and creates the same files.
#include "bpfvm/bpfvm.h"

namespace bpfvm {
namespace {

TEST_F(StoreTest, CApiSharesPinnedMapsWithTheCppApi) {
  char err[256] = "";
  bpfvm_map* c = bpfvm_map_create_pinned(path("c").c_str(), "cmap", kMapHash, 4, 8, 8, 0, err, sizeof err);
  ASSERT_NE(c, nullptr) << err;
  uint32_t k = 2;
  uint64_t v = 5;
  ASSERT_EQ(bpfvm_map_update(c, &k, &v, 0), 0);
  auto cpp = open_pinned_map(path("c"));
  ASSERT_TRUE(cpp.ok());
  v = 0;
  ASSERT_EQ((*cpp)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 5u);
  ASSERT_EQ(bpfvm_map_pin(c, path("c2").c_str(), err, sizeof err), 0) << err;
  bpfvm_map* c2 = bpfvm_map_open_pinned(path("c2").c_str(), err, sizeof err);
  ASSERT_NE(c2, nullptr) << err;
  EXPECT_STREQ(bpfvm_map_name(c2), "cmap");
  (*cpp)->freeze();
  EXPECT_EQ(bpfvm_map_update(c2, &k, &v, 0), -EPERM);
  EXPECT_EQ(bpfvm_map_delete(c2, &k), -EPERM);
  EXPECT_EQ(bpfvm_map_open_pinned(path("nope").c_str(), err, sizeof err), nullptr);
  EXPECT_NE(std::string(err).find("No such file"), std::string::npos) << err;
  bpfvm_map_close(c2);
  bpfvm_map_close(c);
}

}  // namespace
}  // namespace bpfvm
