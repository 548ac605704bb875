// Pinned maps of maps (array_of_maps, hash_of_maps): slots that refer to pinned inner maps, shared
// between processes; damaged, missing and replaced inner files; maps of maps pinned by an object.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include <gtest/gtest.h>

#include <functional>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/runtime.hpp"
#include "maps/map_internal.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

class MimStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs st;
    if (statfs("/dev/shm", &st) != 0 || static_cast<unsigned long>(st.f_type) != TMPFS_MAGIC)
      GTEST_SKIP() << "/dev/shm is not tmpfs here";
    static std::atomic<int> n{0};
    dir_ = "/dev/shm/bpfvm-mim-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
    fs::create_directories(dir_);
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
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  bool had_root_ = false;
  std::string old_root_, dir_;
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
MapSpec outer_spec(uint32_t type, uint32_t max, const MapSpec& inner) {
  MapSpec s = spec(type, 4, 4, max, "outer");
  s.inner = std::make_shared<MapSpec>(inner);
  return s;
}

// Runs fn in a child process; its exit status (0 = fn returned true), or -1 when it crashed or
// did not finish within timeout_s.
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

std::shared_ptr<Map> must(Result<std::shared_ptr<Map>> r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? *r : nullptr;
}

uint64_t inner_value(Map& inner, uint32_t k) {
  uint64_t v = 0;
  EXPECT_EQ(inner.lookup_copy(&k, &v, 0), 0);
  return v;
}

TEST_F(MimStoreTest, ArrayOfMapsSharedBetweenProcesses) {
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto a = must(create_pinned_map(in, path("in_a")));
  auto b = must(create_pinned_map(in, path("in_b")));
  auto outer = must(create_pinned_map(outer_spec(kMapArrayOfMaps, 4, in), path("outer")));
  ASSERT_TRUE(a && b && outer);
  uint32_t k0 = 0, k1 = 1, id = a->id();
  ASSERT_EQ(outer->update_user(&k0, &id, 0), 0);
  // Another process opens the outer map only: a program's lookup gives the inner map, whose
  // update this process sees; it also puts in_b (which it opens itself) in slot 1.
  int rc = in_child([&] {
    auto o = open_pinned_map(path("outer"));
    if (!o || !(*o)->spec().inner || (*o)->spec().inner->max_entries != 4) return false;
    MapReadSection rs;
    Map* inner = static_cast<Map*>((*o)->lookup(&k0));
    if (!inner || inner->pin_path() != path("in_a")) return false;
    uint32_t k = 2;
    uint64_t v = 77;
    if (inner->update(&k, &v, 0) != 0) return false;
    if ((*o)->lookup(&k1) != nullptr) return false;  // slot 1 is empty
    auto ib = open_pinned_map(path("in_b"));
    if (!ib) return false;
    uint32_t bid = (*ib)->id();
    return (*o)->update_user(&k1, &bid, 0) == 0;
  });
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(inner_value(*a, 2), 77u);
  {
    MapReadSection rs;
    Map* in1 = static_cast<Map*>(outer->lookup(&k1));
    ASSERT_NE(in1, nullptr);
    EXPECT_EQ(in1->pin_path(), path("in_b"));
    EXPECT_EQ(in1->store_id(), b->store_id());
  }
  // User space reads an id of this process's map object for the inner map.
  uint32_t got = 0;
  ASSERT_EQ(outer->lookup_copy(&k1, &got, 0), 0);
  auto by_id = map_by_id(got);
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->store_id(), b->store_id());
  // Delete clears the slot, in every process.
  ASSERT_EQ(outer->delete_user(&k1), 0);
  EXPECT_EQ(outer->delete_user(&k1), -ENOENT);
  EXPECT_EQ(outer->lookup_copy(&k1, &got, 0), -ENOENT);
  rc = in_child([&] {
    auto o = open_pinned_map(path("outer"));
    uint32_t x;
    return o && (*o)->lookup_copy(&k1, &x, 0) == -ENOENT && (*o)->lookup_copy(&k0, &x, 0) == 0;
  });
  EXPECT_EQ(rc, 0);
  // Keys: every index, as the kernel's array_of_maps; out of range refused.
  uint32_t next = 9;
  ASSERT_EQ(outer->get_next_key(nullptr, &next), 0);
  EXPECT_EQ(next, 0u);
  uint32_t k9 = 9;
  EXPECT_EQ(outer->update_user(&k9, &id, 0), -E2BIG);
}

TEST_F(MimStoreTest, InsertionRulesMatchThePrivateMap) {
  // The private map's rules are the kernel's (tests/maps_kernel_test.cpp): a pinned outer map
  // answers the same for pinned inner maps, and refuses a private inner map (no other process
  // could reach it) with -EOPNOTSUPP.
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto same = must(create_pinned_map(in, path("same")));
  auto other = must(create_pinned_map(spec(kMapArray, 4, 8, 5), path("other")));
  auto hash = must(create_pinned_map(spec(kMapHash, 4, 8, 4), path("hash")));
  auto priv = must(create_map(in));
  for (uint32_t t : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
    auto pinned = must(create_pinned_map(outer_spec(t, 4, in), path(std::string("o") + map_type_name(t))));
    auto privo = must(create_map(outer_spec(t, 4, in)));
    ASSERT_TRUE(pinned && privo);
    struct Case {
      Map* m;
      uint64_t flags;
      uint32_t key;
    } cases[] = {{same.get(), 0, 0},           {other.get(), 0, 1},          {hash.get(), 0, 1},
                 {same.get(), kBpfNoexist, 0}, {same.get(), kBpfExist, 2},   {same.get(), kBpfNoexist, 3},
                 {same.get(), 7, 1},           {same.get(), 0, 6}};
    for (const Case& c : cases) {
      uint32_t id = c.m->id(), key = c.key;
      EXPECT_EQ(pinned->update_user(&key, &id, c.flags), privo->update_user(&key, &id, c.flags))
          << map_type_name(t) << " key " << c.key << " flags " << c.flags << " map " << c.m->spec().max_entries;
    }
    uint32_t key = 1, id = priv->id(), bad = 0xfffffff0u;
    EXPECT_EQ(pinned->update_user(&key, &id, 0), -EOPNOTSUPP);
    EXPECT_EQ(pinned->update_user(&key, &bad, 0), -EBADF);
  }
}

TEST_F(MimStoreTest, HashOfMapsSharedBetweenProcesses) {
  const MapSpec in = spec(kMapHash, 4, 8, 16, "in");
  auto a = must(create_pinned_map(in, path("in_a")));
  auto outer = must(create_pinned_map(outer_spec(kMapHashOfMaps, 8, in), path("houter")));
  ASSERT_TRUE(a && outer);
  uint32_t key = 1234, id = a->id();
  ASSERT_EQ(outer->update_user(&key, &id, kBpfNoexist), 0);
  EXPECT_EQ(outer->update_user(&key, &id, kBpfNoexist), -EEXIST);
  int rc = in_child([&] {
    auto o = open_pinned_map(path("houter"));
    if (!o) return false;
    MapReadSection rs;
    Map* inner = static_cast<Map*>((*o)->lookup(&key));
    if (!inner) return false;
    uint32_t k = 5;
    uint64_t v = 555;
    if (inner->update(&k, &v, 0) != 0) return false;
    uint32_t other = 99;
    return (*o)->lookup(&other) == nullptr;
  });
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(inner_value(*a, 5), 555u);
  uint32_t first = 0;
  ASSERT_EQ(outer->get_next_key(nullptr, &first), 0);
  EXPECT_EQ(first, key);
  ASSERT_EQ(outer->delete_user(&key), 0);
  rc = in_child([&] {
    auto o = open_pinned_map(path("houter"));
    uint32_t x;
    return o && (*o)->lookup_copy(&key, &x, 0) == -ENOENT && (*o)->get_next_key(nullptr, &x) == -ENOENT;
  });
  EXPECT_EQ(rc, 0);
}

// A process whose lookups have resolved its slots (its table of resolved references is warm)
// sees every change another process makes at once: a slot pointed at another inner map, deleted,
// inserted again; with more keys than fit in one set of that table, each finds its own map.
TEST_F(MimStoreTest, HashOfMapsLookupsFollowOtherProcessesChanges) {
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto a = must(create_pinned_map(in, path("in_a")));
  auto b = must(create_pinned_map(in, path("in_b")));
  auto outer = must(create_pinned_map(outer_spec(kMapHashOfMaps, 64, in), path("houter")));
  ASSERT_TRUE(a && b && outer);
  auto reader = must(open_pinned_map(path("houter")));
  ASSERT_TRUE(reader);
  // The inner map objects this process resolves: found through their file's identity.
  auto is = [&](void* inner, const std::shared_ptr<Map>& m) {
    return inner && static_cast<Map*>(inner)->store_id() == m->store_id();
  };
  // fn(outer, id of in_a, id of in_b) in another process.
  auto write = [&](std::function<bool(Map&, uint32_t, uint32_t)> fn) {
    return in_child([&] {
      auto o = open_pinned_map(path("houter"));
      auto ia = open_pinned_map(path("in_a")), ib = open_pinned_map(path("in_b"));
      return o && ia && ib && fn(**o, (*ia)->id(), (*ib)->id());
    });
  };
  MapReadSection rs;
  uint32_t key = 7;
  ASSERT_EQ(write([&](Map& o, uint32_t ida, uint32_t) { return o.update_user(&key, &ida, 0) == 0; }), 0);
  EXPECT_TRUE(is(reader->lookup(&key), a));
  EXPECT_TRUE(is(reader->lookup(&key), a));  // from the table
  ASSERT_EQ(write([&](Map& o, uint32_t, uint32_t idb) { return o.update_user(&key, &idb, kBpfExist) == 0; }), 0);
  EXPECT_TRUE(is(reader->lookup(&key), b));
  ASSERT_EQ(write([&](Map& o, uint32_t, uint32_t) { return o.delete_user(&key) == 0; }), 0);
  EXPECT_EQ(reader->lookup(&key), nullptr);
  ASSERT_EQ(write([&](Map& o, uint32_t ida, uint32_t) { return o.update_user(&key, &ida, kBpfNoexist) == 0; }), 0);
  EXPECT_TRUE(is(reader->lookup(&key), a));
  // 64 keys, alternating inner maps, written by another process; looked up twice each.
  ASSERT_EQ(write([&](Map& o, uint32_t ida, uint32_t idb) {
    uint32_t ids[2] = {ida, idb};
    for (uint32_t k = 100; k < 163; ++k)
      if (o.update_user(&k, &ids[k & 1], 0) != 0) return false;
    return true;
  }), 0);
  for (int round = 0; round < 2; ++round)
    for (uint32_t k = 100; k < 163; ++k) EXPECT_TRUE(is(reader->lookup(&k), (k & 1) ? b : a)) << k;
  uint32_t absent = 99;
  EXPECT_EQ(reader->lookup(&absent), nullptr);
  // The engines' entry point answers the same.
  EXPECT_TRUE(is(reader->lookup_fn()(reader.get(), &key), a));
}

// Writers in several processes replace one slot over and over while readers in others look it up:
// a reader always finds one of the two inner maps (never half a reference); writers killed at
// random points (possibly holding the slot's lock) leave a slot the others keep using.
TEST_F(MimStoreTest, ConcurrentReplacementsAndKilledWriters) {
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto a = must(create_pinned_map(in, path("in_a")));
  auto b = must(create_pinned_map(in, path("in_b")));
  for (uint32_t t : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
    const std::string op = path(std::string("o_") + map_type_name(t));
    auto outer = must(create_pinned_map(outer_spec(t, 4, in), op));
    ASSERT_TRUE(a && b && outer);
    uint32_t k0 = 0, ia = a->id();
    ASSERT_EQ(outer->update_user(&k0, &ia, 0), 0);
    auto writer = [&](bool forever) {
      auto o = open_pinned_map(op);
      auto ma = open_pinned_map(path("in_a"));
      auto mb = open_pinned_map(path("in_b"));
      if (!o || !ma || !mb) return false;
      uint32_t ids[2] = {(*ma)->id(), (*mb)->id()};
      for (int i = 0; forever || i < 3000; ++i)
        if ((*o)->update_user(&k0, &ids[i & 1], 0) != 0) return false;
      return true;
    };
    auto reader = [&] {
      auto o = open_pinned_map(op);
      if (!o) return false;
      for (int i = 0; i < 20000; ++i) {
        MapReadSection rs;
        Map* m = static_cast<Map*>((*o)->lookup(&k0));
        if (!m || (m->store_id() != a->store_id() && m->store_id() != b->store_id())) return false;
      }
      return true;
    };
    std::vector<pid_t> kids;
    for (int w = 0; w < 2; ++w) {
      pid_t p = fork();
      if (p == 0) _exit(writer(false) ? 0 : 1);
      kids.push_back(p);
    }
    pid_t r = fork();
    if (r == 0) _exit(reader() ? 0 : 1);
    kids.push_back(r);
    for (pid_t p : kids) {
      int st = 0;
      waitpid(p, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << map_type_name(t);
    }
    // Writers killed at random points.
    std::mt19937 rng(t);
    for (int round = 0; round < 8; ++round) {
      pid_t p = fork();
      if (p == 0) _exit(writer(true) ? 0 : 1);
      std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 3000));
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
    int rc = in_child([&] { return writer(false) && reader(); }, 20);
    EXPECT_EQ(rc, 0) << map_type_name(t) << ": the slot is not usable after writers were killed";
  }
}

// A slot whose inner file was removed, or replaced by another map at the same path, reads as
// empty in a process that opens the outer map afterwards.
TEST_F(MimStoreTest, MissingOrReplacedInnerFileReadsAsEmpty) {
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto outer = must(create_pinned_map(outer_spec(kMapArrayOfMaps, 2, in), path("outer")));
  {
    auto a = must(create_pinned_map(in, path("in_a")));
    auto b = must(create_pinned_map(in, path("in_b")));
    uint32_t k0 = 0, k1 = 1, ia = a->id(), ib = b->id();
    ASSERT_EQ(outer->update_user(&k0, &ia, 0), 0);
    ASSERT_EQ(outer->update_user(&k1, &ib, 0), 0);
  }
  fs::remove(path("in_a"));
  fs::remove(path("in_b"));
  ASSERT_TRUE(create_pinned_map(in, path("in_b")).ok());  // another map with the same name
  int rc = in_child([&] {
    auto o = open_pinned_map(path("outer"));
    if (!o) return false;
    uint32_t k0 = 0, k1 = 1, x;
    MapReadSection rs;
    return (*o)->lookup(&k0) == nullptr && (*o)->lookup(&k1) == nullptr && (*o)->lookup_copy(&k0, &x, 0) == -ENOENT &&
           (*o)->lookup_copy(&k1, &x, 0) == -ENOENT;
  });
  EXPECT_EQ(rc, 0);
}

// Trust model: whoever writes the file may write anything in a slot. A damaged reference reads
// as empty, and no content makes an operation crash or hang.
TEST_F(MimStoreTest, DamagedSlotReferenceReadsAsEmpty) {
  const MapSpec in = spec(kMapArray, 4, 8, 4, "in");
  auto a = must(create_pinned_map(in, path("in_a")));
  for (uint32_t t : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
    const std::string op = path(std::string("o_") + map_type_name(t));
    {
      auto outer = must(create_pinned_map(outer_spec(t, 4, in), op));
      ASSERT_TRUE(outer);
      uint32_t k = 0, id = a->id();
      ASSERT_EQ(outer->update_user(&k, &id, 0), 0);
    }
    if (t == kMapArrayOfMaps) {
      // Deterministic damage of slot 0's reference (256 bytes after the header page: lock, length,
      // tag, inode, creation time, then the path at +32): each reads as empty in a new process,
      // while slot 1, undamaged, still resolves.
      auto outer = must(open_pinned_map(op));
      uint32_t k1 = 1, id = a->id();
      ASSERT_EQ(outer->update_user(&k1, &id, 0), 0);
      struct Damage {
        uint64_t off;
        uint32_t value;
        size_t len;
      } damages[] = {{4096 + 32 + 3, 'X', 1}, {4096 + 4, 300, 4}, {4096 + 4, 2, 4}, {4096 + 8, 12345, 4},
                     {4096 + 16, 7, 4}, {4096 + 24, 1, 1}, {4096 + 32, 'r', 1}};
      for (const Damage& d : damages) {
        uint32_t k0 = 0;
        ASSERT_EQ(outer->update_user(&k0, &id, 0), 0);
        int fd = open(op.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(pwrite(fd, &d.value, d.len, off_t(d.off)), ssize_t(d.len));
        close(fd);
        int rc = in_child([&] {
          auto o = open_pinned_map(op);
          if (!o) return false;
          uint32_t x;
          MapReadSection rs;
          return (*o)->lookup(&k0) == nullptr && (*o)->lookup_copy(&k0, &x, 0) == -ENOENT && (*o)->lookup(&k1) != nullptr;
        });
        EXPECT_EQ(rc, 0) << "damage at " << d.off;
      }
    }
    const uint64_t size = fs::file_size(op);
    std::mt19937_64 rng(t);
    int trials = t == kMapArrayOfMaps ? 60 : 30;
    for (int trial = 0; trial < trials; ++trial) {
      // The array's slot 0 reference is the 256 bytes after the header page: damage one field of it
      // (a byte of the path, its length, its tag) or, for both types, scribble anywhere in the area.
      int fd = open(op.c_str(), O_RDWR);
      ASSERT_GE(fd, 0);
      uint64_t off;
      if (t == kMapArrayOfMaps && trial % 2 == 0)
        off = 4096 + 4 + rng() % 252;
      else
        off = 4096 + rng() % (size - 4096 - 8);
      uint64_t junk = rng();
      const size_t len = 1 + rng() % 8;
      ASSERT_EQ(pwrite(fd, &junk, len, off_t(off)), ssize_t(len));
      close(fd);
      int rc = in_child(
          [&] {
            auto o = open_pinned_map(op);
            if (!o) return true;  // refused with a reason: fine
            Map& m = **o;
            MapReadSection rs;
            uint32_t key = 0, x = 0, next = 0;
            Map* inner = static_cast<Map*>(m.lookup(&key));
            long lc = m.lookup_copy(&key, &x, 0);
            // Whatever is found must be the real inner map (or nothing).
            if (inner && inner->store_id() != a->store_id()) return false;
            if ((inner != nullptr) != (lc == 0)) return false;
            for (int i = 0; i < 16 && m.get_next_key(i ? &key : nullptr, &next) == 0; ++i) key = next;
            uint32_t k2 = 2, id = 0;
            auto ia = open_pinned_map(path("in_a"));
            if (ia) id = (*ia)->id();
            m.update_user(&k2, &id, 0);
            m.delete_user(&k2);
            return true;
          },
          10);
      ASSERT_EQ(rc, 0) << map_type_name(t) << " trial " << trial;
    }
  }
}

std::string progs_dir() { return BPFVM_PROGS_DIR; }

// An object's map-in-map pinned by name: its initialised slots refer to inner maps pinned next to
// it as OUTER.INNER; programs of two other processes reach them, and a slot replaced by one
// process is followed by a program in another.
TEST_F(MimStoreTest, PinnedByNameFromAnObjectAcrossProcesses) {
  const std::string obj_path = progs_dir() + "/st_mim.bpf.o";
  if (!fs::exists(obj_path)) GTEST_SKIP() << obj_path << " not built";
  auto obj = load_object_file(obj_path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  InstantiateOptions io;
  io.pin_root = dir_;
  auto run_n = [&](uint64_t n, uint64_t want) {
    auto live = instantiate_with(*obj, io);
    if (!live) return false;
    PrepareOptions po;
    po.rules = RuleSet::Privileged;
    auto p = prepare_program(*obj->find_program("st_mim_count"), *live, nullptr, po);
    if (!p) return false;
    std::vector<uint8_t> pkt(60, 0);
    for (uint64_t i = 0; i < n; ++i) {
      auto r = test_run(*p, pkt);
      if (!r.ok() || r->retval != want) return false;
    }
    return true;
  };
  ASSERT_EQ(in_child([&] { return run_n(100, 2 /* XDP_PASS */); }), 0);
  ASSERT_TRUE(fs::exists(path("st_outer")));
  ASSERT_TRUE(fs::exists(path("st_outer.st_inner_a")));
  ASSERT_TRUE(fs::exists(path("st_outer.st_inner_b")));
  ASSERT_TRUE(fs::exists(path("st_houter")));
  auto ia = must(open_pinned_map(path("st_outer.st_inner_a")));
  auto ib = must(open_pinned_map(path("st_outer.st_inner_b")));
  ASSERT_TRUE(ia && ib);
  EXPECT_EQ(inner_value(*ia, 0), 100u);
  EXPECT_EQ(inner_value(*ib, 1), 100u);  // through st_houter[3]
  // This process puts inner_b in st_outer's slot 0; a program in another process follows it.
  auto outer = must(open_pinned_map(path("st_outer")));
  uint32_t k0 = 0, id = ib->id();
  ASSERT_EQ(outer->update_user(&k0, &id, 0), 0);
  ASSERT_EQ(in_child([&] { return run_n(50, 2); }), 0);
  EXPECT_EQ(inner_value(*ia, 0), 100u);
  EXPECT_EQ(inner_value(*ib, 0), 50u);
  // The reused outer map keeps its slots (libbpf initialises slots only in maps it creates), and an
  // emptied slot makes the program return XDP_DROP.
  ASSERT_EQ(outer->delete_user(&k0), 0);
  ASSERT_EQ(in_child([&] { return run_n(5, 1 /* XDP_DROP */); }), 0);
}

}  // namespace
}  // namespace bpfvm
