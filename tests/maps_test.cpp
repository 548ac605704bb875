// Map semantics (kernel rules) for every family; tests/maps_kernel_test.cpp checks the same rules
// against the running kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <chrono>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include <time.h>
#include <unistd.h>

#include "bpfvm/map.hpp"
#include "map_util.hpp"

using namespace bpfvm;

namespace {

std::shared_ptr<Map> mk(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags = 0,
                        uint64_t extra = 0) {
  MapSpec s{"m", type, ks, vs, max, flags};
  s.map_extra = extra;
  return bpfvm::test::make_map(s);
}

long check(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags = 0, uint64_t extra = 0) {
  MapSpec s;
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  s.flags = flags;
  s.map_extra = extra;
  return check_map_spec(s);
}

}  // namespace

TEST(Maps, RegistryNamesEveryKernelType) {
  for (uint32_t t = 1; t <= 33; ++t) EXPECT_STRNE(map_type_name(t), "") << t;
  EXPECT_STREQ(map_type_name(kMapLruPercpuHash), "lru_percpu_hash");
  EXPECT_STREQ(map_type_name(kMapBloomFilter), "bloom_filter");
  EXPECT_EQ(map_type_from_name("ringbuf"), int(kMapRingbuf));
  EXPECT_STREQ(map_type_name(99), "");
  MapSpec s;
  s.name = "foo";
  s.type = 99;
  auto r = create_map(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "map 'foo': unknown map type 99");
  s.type = 0;
  EXPECT_FALSE(create_map(s).ok());
}

TEST(Maps, CreationRules) {
  EXPECT_EQ(check(kMapArray, 4, 8, 0), -EINVAL);
  EXPECT_EQ(check(kMapArray, 8, 8, 1), -EINVAL);
  EXPECT_EQ(check(kMapArray, 4, 0, 1), -EINVAL);
  EXPECT_EQ(check(kMapArray, 4, 8, 1, kMapFNoPrealloc), -EINVAL);
  EXPECT_EQ(check(kMapPercpuArray, 4, 40000, 1), -E2BIG);
  EXPECT_EQ(check(kMapHash, 0, 8, 1), -EINVAL);
  EXPECT_EQ(check(kMapHash, 4, 8, 1, kMapFNoCommonLru), -EINVAL);
  EXPECT_EQ(check(kMapLruHash, 4, 8, 1, kMapFNoPrealloc), -kENOTSUPP);
  EXPECT_EQ(check(kMapHash, 4, 8, 1, kMapFNoPrealloc), 0);
  EXPECT_EQ(check(kMapQueue, 4, 8, 1), -EINVAL);
  EXPECT_EQ(check(kMapQueue, 0, 8, 1), 0);
  EXPECT_EQ(check(kMapBloomFilter, 4, 8, 1), -EINVAL);
  EXPECT_EQ(check(kMapBloomFilter, 0, 8, 1, 0, 16), -EINVAL);
  EXPECT_EQ(check(kMapBloomFilter, 0, 8, 1, 0, 3), 0);
  EXPECT_EQ(check(kMapHash, 4, 8, 1, 0, 3), -EINVAL);  // map_extra only for bloom
  EXPECT_EQ(check(kMapRingbuf, 0, 0, 4096), 0);
  EXPECT_EQ(check(kMapRingbuf, 0, 0, 4096 * 3), -EINVAL);
  EXPECT_EQ(check(kMapRingbuf, 0, 0, 2048), -EINVAL);
  EXPECT_EQ(check(kMapRingbuf, 4, 0, 4096), -EINVAL);
  EXPECT_EQ(check(kMapLpmTrie, 8, 8, 10), -EINVAL);  // needs BPF_F_NO_PREALLOC
  EXPECT_EQ(check(kMapLpmTrie, 8, 8, 10, kMapFNoPrealloc), 0);
  EXPECT_EQ(check(kMapLpmTrie, 4, 8, 10, kMapFNoPrealloc), -EINVAL);
  EXPECT_EQ(check(kMapLpmTrie, 261, 8, 10, kMapFNoPrealloc), -EINVAL);
  EXPECT_EQ(check(kMapProgArray, 4, 8, 4), -EINVAL);
  EXPECT_EQ(check(kMapDevmap, 4, 8, 4), 0);
  EXPECT_EQ(check(kMapDevmap, 4, 12, 4), -EINVAL);
  EXPECT_EQ(check(kMapCgroupStorage, 16, 8, 0), 0);
  EXPECT_EQ(check(kMapCgroupStorage, 16, 8, 1), -EINVAL);
  EXPECT_EQ(check(kMapSkStorage, 4, 8, 0, kMapFNoPrealloc), 0);
  EXPECT_EQ(check(kMapSkStorage, 4, 8, 0), -EINVAL);
  EXPECT_EQ(check(kMapStackTrace, 4, 127 * 8, 16), 0);
  EXPECT_EQ(check(kMapStackTrace, 4, 128 * 8, 16), -EINVAL);
  MapSpec s;
  s.name = "bad";
  s.type = kMapArray;
  s.key_size = 8;
  s.value_size = 4;
  s.max_entries = 1;
  auto r = create_map(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("map 'bad' (array): key_size must be 4"), std::string::npos) << r.error().message;
}

TEST(Maps, ArraySemantics) {
  auto m = mk(kMapArray, 4, 8, 4);
  uint32_t k = 1;
  uint64_t v = 42, out = 0;
  EXPECT_EQ(m->update(&k, &v, kBpfAny), 0);
  EXPECT_EQ(m->update(&k, &v, kBpfExist), 0);
  EXPECT_EQ(m->update(&k, &v, kBpfNoexist), -EEXIST);
  EXPECT_EQ(m->update(&k, &v, 3), -EINVAL);
  EXPECT_EQ(m->update(&k, &v, kBpfFLock), -EINVAL);  // no spin lock in the value
  k = 4;
  EXPECT_EQ(m->update(&k, &v, kBpfAny), -E2BIG);
  EXPECT_EQ(m->lookup(&k), nullptr);
  EXPECT_EQ(m->lookup_copy(&k, &out, 0), -ENOENT);
  k = 1;
  EXPECT_EQ(*static_cast<uint64_t*>(m->lookup(&k)), 42u);
  EXPECT_EQ(m->remove(&k), -EINVAL);
  EXPECT_EQ(m->lookup_and_delete(&k, &out, 0), -kENOTSUPP);
  std::vector<uint32_t> keys;
  uint32_t next;
  for (const uint32_t* kp = nullptr; m->get_next_key(kp, &next) == 0; kp = &keys.back()) keys.push_back(next);
  EXPECT_EQ(keys, (std::vector<uint32_t>{0, 1, 2, 3}));
  k = 77;
  EXPECT_EQ(m->get_next_key(&k, &next), 0);
  EXPECT_EQ(next, 0u);
}

TEST(Maps, PercpuArrayOneSlotPerWorker) {
  set_possible_cpus(4);
  auto m = mk(kMapPercpuArray, 4, 4, 2);
  set_possible_cpus(0);
  ASSERT_EQ(m->ncpus(), 4);
  EXPECT_EQ(m->user_value_size(), 32u);
  uint32_t k = 0;
  for (int c = 0; c < 4; ++c) {
    set_current_cpu(c);
    uint32_t v = 100 + c;
    ASSERT_EQ(m->update(&k, &v, 0), 0);
  }
  set_current_cpu(2);
  EXPECT_EQ(*static_cast<uint32_t*>(m->lookup(&k)), 102u);
  EXPECT_EQ(*static_cast<uint32_t*>(m->lookup_percpu(&k, 3)), 103u);
  EXPECT_EQ(m->lookup_percpu(&k, 4), nullptr);
  set_current_cpu(0);
  uint8_t out[32];
  ASSERT_EQ(m->lookup_copy(&k, out, 0), 0);
  for (int c = 0; c < 4; ++c) {
    uint32_t v;
    std::memcpy(&v, out + 8 * c, 4);
    EXPECT_EQ(v, 100u + c);
  }
  uint8_t in[32] = {};
  for (int c = 0; c < 4; ++c) in[8 * c] = uint8_t(c + 1);
  ASSERT_EQ(m->update_user(&k, in, 0), 0);
  EXPECT_EQ(*static_cast<uint8_t*>(m->lookup_percpu(&k, 3)), 4);
  EXPECT_EQ(m->update_user(&k, in, kBpfFLock), -EINVAL);
}

TEST(Maps, HashFlagsFullAndIteration) {
  auto m = mk(kMapHash, 4, 8, 3);
  uint64_t v = 7, out;
  for (uint32_t k = 0; k < 3; ++k) ASSERT_EQ(m->update(&k, &v, kBpfNoexist), 0);
  uint32_t k = 3;
  EXPECT_EQ(m->update(&k, &v, kBpfAny), -E2BIG);
  EXPECT_EQ(m->update(&k, &v, kBpfExist), -ENOENT);
  k = 1;
  EXPECT_EQ(m->update(&k, &v, kBpfNoexist), -EEXIST);
  v = 9;
  EXPECT_EQ(m->update(&k, &v, kBpfExist), 0);  // replace works in a full map
  EXPECT_EQ(m->lookup_copy(&k, &out, 0), 0);
  EXPECT_EQ(out, 9u);
  EXPECT_EQ(m->update(&k, &v, 5), -EINVAL);
  std::set<uint32_t> seen;
  uint32_t next, cur;
  const uint32_t* kp = nullptr;
  while (m->get_next_key(kp, &next) == 0) {
    seen.insert(next);
    cur = next;
    kp = &cur;
  }
  EXPECT_EQ(seen, (std::set<uint32_t>{0, 1, 2}));
  k = 1000;  // missing key: iteration restarts at the first key
  EXPECT_EQ(m->get_next_key(&k, &next), 0);
  EXPECT_TRUE(seen.count(next));
  k = 1;
  EXPECT_EQ(m->lookup_and_delete(&k, &out, 0), 0);
  EXPECT_EQ(out, 9u);
  EXPECT_EQ(m->remove(&k), -ENOENT);
  EXPECT_EQ(m->lookup_and_delete(&k, &out, 0), -ENOENT);
  EXPECT_EQ(m->lookup_and_delete(&k, &out, 8), -EINVAL);
  k = 5;
  EXPECT_EQ(m->update(&k, &v, kBpfAny), 0);  // room again
}

TEST(Maps, HashReadersKeepTheOldValue) {
  auto m = mk(kMapHash, 4, 8, 4);
  uint32_t k = 1;
  uint64_t v = 1;
  ASSERT_EQ(m->update(&k, &v, 0), 0);
  MapReadSection rs;
  auto* p = static_cast<uint64_t*>(m->lookup(&k));
  v = 2;
  ASSERT_EQ(m->update(&k, &v, 0), 0);
  EXPECT_EQ(*p, 1u);  // the reader's element is not overwritten
  EXPECT_EQ(*static_cast<uint64_t*>(m->lookup(&k)), 2u);
  ASSERT_EQ(m->remove(&k), 0);
  EXPECT_EQ(*p, 1u);  // nor freed while the section lasts
}

TEST(Maps, PercpuHash) {
  set_possible_cpus(3);
  auto m = mk(kMapPercpuHash, 4, 4, 8);
  set_possible_cpus(0);
  uint32_t k = 5, v = 11;
  set_current_cpu(1);
  ASSERT_EQ(m->update(&k, &v, 0), 0);
  set_current_cpu(0);
  EXPECT_EQ(*static_cast<uint32_t*>(m->lookup(&k)), 0u);  // other CPUs start at zero
  uint8_t out[24];
  ASSERT_EQ(m->lookup_copy(&k, out, 0), 0);
  uint32_t got;
  std::memcpy(&got, out + 8, 4);
  EXPECT_EQ(got, 11u);
  EXPECT_EQ(m->update(&k, &v, kBpfFLock), -EINVAL);
  ASSERT_EQ(m->lookup_and_delete(&k, out, 0), 0);
  std::memcpy(&got, out + 8, 4);
  EXPECT_EQ(got, 11u);
}

TEST(Maps, LruEvictsInsteadOfFailing) {
  auto m = mk(kMapLruHash, 4, 8, 16);
  uint64_t v = 0;
  for (uint32_t k = 0; k < 16; ++k) ASSERT_EQ(m->update(&k, &v, 0), 0);
  // keep 0..3 hot
  for (int round = 0; round < 3; ++round) {
    for (uint32_t k = 0; k < 4; ++k) ASSERT_NE(m->lookup(&k), nullptr);
    for (uint32_t k = 100 + round * 4; k < 104 + round * 4; ++k) ASSERT_EQ(m->update(&k, &v, kBpfNoexist), 0);
  }
  size_t n = 0;
  uint32_t next, cur;
  const uint32_t* kp = nullptr;
  while (m->get_next_key(kp, &next) == 0) {
    ++n;
    cur = next;
    kp = &cur;
  }
  EXPECT_LE(n, 16u);
  for (uint32_t k = 0; k < 4; ++k) EXPECT_NE(m->lookup(&k), nullptr) << "hot key " << k << " evicted";
  uint32_t last = 111;
  EXPECT_NE(m->lookup(&last), nullptr);
}

TEST(Maps, SpinLockedUpdates) {
  MapSpec s;
  s.name = "locked";
  s.type = kMapHash;
  s.key_size = 4;
  s.value_size = 16;
  s.max_entries = 4;
  s.spin_lock_off = 0;
  auto m = *create_map(s);
  uint32_t k = 1;
  uint32_t v[4] = {0xdead, 1, 2, 3}, out[4];
  ASSERT_EQ(m->update(&k, v, kBpfFLock), 0);  // not existing: plain insert
  v[1] = 5;
  ASSERT_EQ(m->update(&k, v, kBpfFLock | kBpfExist), 0);
  ASSERT_EQ(m->lookup_copy(&k, out, kBpfFLock), 0);
  EXPECT_EQ(out[0], 0u);  // the lock word reads as 0
  EXPECT_EQ(out[1], 5u);
  EXPECT_EQ(m->update(&k, v, kBpfFLock | kBpfNoexist), -EEXIST);
  s.type = kMapArray;
  auto a = *create_map(s);
  ASSERT_EQ(a->update(&k, v, kBpfFLock), 0);
  ASSERT_EQ(a->lookup_copy(&k, out, kBpfFLock), 0);
  EXPECT_EQ(out[1], 5u);
}

TEST(Maps, LpmTrie) {
  auto m = mk(kMapLpmTrie, 8, 4, 4, kMapFNoPrealloc);
  struct Key {
    uint32_t plen;
    uint8_t d[4];
  };
  auto put = [&](uint32_t plen, std::initializer_list<int> b, uint32_t v, uint64_t f = 0) {
    Key k{plen, {}};
    int i = 0;
    for (int x : b) k.d[i++] = uint8_t(x);
    return m->update(&k, &v, f);
  };
  ASSERT_EQ(put(8, {10}, 1), 0);
  ASSERT_EQ(put(16, {10, 1}, 2), 0);
  ASSERT_EQ(put(24, {10, 1, 2}, 3), 0);
  ASSERT_EQ(put(9, {10, 128}, 4), 0);
  EXPECT_EQ(put(16, {11, 0}, 5), -ENOSPC);
  EXPECT_EQ(put(16, {10, 1}, 6, kBpfNoexist), -EEXIST);
  EXPECT_EQ(put(16, {10, 1}, 6, kBpfExist), 0);  // in-place replace in a full trie
  EXPECT_EQ(put(12, {10, 1}, 6, kBpfExist), -ENOENT);
  EXPECT_EQ(put(33, {10, 1}, 6), -EINVAL);
  auto find = [&](std::initializer_list<int> b) -> long {
    Key k{32, {}};
    int i = 0;
    for (int x : b) k.d[i++] = uint8_t(x);
    void* p = m->lookup(&k);
    return p ? long(*static_cast<uint32_t*>(p)) : -1;
  };
  EXPECT_EQ(find({10, 1, 2, 3}), 3);
  EXPECT_EQ(find({10, 1, 3, 3}), 6);
  EXPECT_EQ(find({10, 2, 3, 3}), 1);
  EXPECT_EQ(find({10, 200, 3, 3}), 4);
  EXPECT_EQ(find({11, 1, 2, 3}), -1);
  // post-order: longer prefixes before their parents, 0-branch first
  std::vector<std::pair<uint32_t, int>> order;
  Key cur, next;
  const Key* kp = nullptr;
  while (m->get_next_key(kp, &next) == 0) {
    order.push_back({next.plen, next.d[1]});
    cur = next;
    kp = &cur;
  }
  EXPECT_EQ(order, (std::vector<std::pair<uint32_t, int>>{{24, 1}, {16, 1}, {9, 128}, {8, 0}}));
  Key d{9, {10, 128}};
  EXPECT_EQ(m->remove(&d), 0);
  EXPECT_EQ(m->remove(&d), -ENOENT);
  EXPECT_EQ(find({10, 200, 3, 3}), 1);
}

TEST(Maps, QueueAndStack) {
  auto q = mk(kMapQueue, 0, 4, 3);
  auto s = mk(kMapStack, 0, 4, 3);
  for (uint32_t v = 1; v <= 3; ++v) {
    ASSERT_EQ(q->push(&v, 0), 0);
    ASSERT_EQ(s->push(&v, 0), 0);
  }
  uint32_t v = 4, out = 0;
  EXPECT_EQ(q->push(&v, 0), -E2BIG);
  EXPECT_EQ(q->push(&v, kBpfNoexist), -EINVAL);
  EXPECT_EQ(q->push(&v, kBpfExist), 0);  // drops 1
  EXPECT_EQ(s->push(&v, kBpfExist), 0);  // drops 1 (the oldest, at the bottom)
  EXPECT_EQ(q->peek(&out), 0);
  EXPECT_EQ(out, 2u);
  std::vector<uint32_t> qo, so;
  while (q->pop(&out) == 0) qo.push_back(out);
  while (s->lookup_and_delete(nullptr, &out, 0) == 0) so.push_back(out);
  EXPECT_EQ(qo, (std::vector<uint32_t>{2, 3, 4}));
  EXPECT_EQ(so, (std::vector<uint32_t>{4, 3, 2}));
  EXPECT_EQ(q->peek(&out), -ENOENT);
  EXPECT_EQ(q->remove(nullptr), -EINVAL);
  EXPECT_EQ(q->get_next_key(nullptr, &out), -EINVAL);
  EXPECT_EQ(q->lookup_and_delete(nullptr, &out, kBpfFLock), -EINVAL);
  EXPECT_EQ(q->update_user(nullptr, &v, 0), 0);
  EXPECT_EQ(q->lookup_copy(nullptr, &out, 0), 0);
  EXPECT_EQ(out, 4u);
}

TEST(Maps, BloomFilter) {
  auto b = mk(kMapBloomFilter, 0, 8, 1000, 0, 3);
  for (uint64_t v = 0; v < 1000; ++v) ASSERT_EQ(b->push(&v, 0), 0);
  uint64_t v = 1;
  EXPECT_EQ(b->push(&v, kBpfExist), -EINVAL);
  for (uint64_t x = 0; x < 1000; ++x) ASSERT_EQ(b->peek(&x), 0) << "false negative";
  int fp = 0;
  for (uint64_t x = 1000000; x < 1010000; ++x) fp += b->peek(&x) == 0;
  EXPECT_LT(fp, 1500);  // ~8% expected at 3 hashes and the kernel's sizing
  EXPECT_EQ(b->pop(&v), -EOPNOTSUPP);
  EXPECT_EQ(b->remove(&v), -EOPNOTSUPP);
  EXPECT_EQ(b->get_next_key(nullptr, &v), -EOPNOTSUPP);
}

TEST(Maps, RingbufRecordsAndConsumer) {
  auto m = mk(kMapRingbuf, 0, 0, 4096);
  auto* rb = dynamic_cast<RingbufMap*>(m.get());
  ASSERT_NE(rb, nullptr);
  EXPECT_EQ(rb->query(1), 4096u);
  void* a = rb->reserve(10, 0);
  void* b = rb->reserve(3, 0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(rb->reserve(1, 1), nullptr);  // flags must be 0
  EXPECT_EQ(rb->query(3), 24u + 16u);  // round_up(len + 8, 8) each
  std::memset(a, 'a', 10);
  std::memset(b, 'b', 3);
  rb->submit(b, 0);
  std::vector<std::string> got;
  auto cb = [&](const void* d, uint32_t n) {
    got.emplace_back(static_cast<const char*>(d), n);
    return 0;
  };
  EXPECT_EQ(rb->consume(cb), 0);  // a is still busy: nothing delivered
  rb->discard(a, 0);
  EXPECT_EQ(rb->consume(cb), 1);
  EXPECT_EQ(got, (std::vector<std::string>{"bbb"}));
  EXPECT_EQ(rb->query(0), 0u);
  EXPECT_EQ(rb->output("hello", 5, 4), -EINVAL);
  // fill and wrap: 4096 bytes of ring, 1000-byte records (1008 with header)
  std::vector<uint8_t> rec(1000);
  int ok = 0;
  while (rb->output(rec.data(), rec.size(), 0) == 0) ++ok;
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(rb->output(rec.data(), rec.size(), 0), -EAGAIN);
  got.clear();
  EXPECT_EQ(rb->consume(cb), 4);
  for (int i = 0; i < 8; ++i) {  // records now straddle the end of the data area
    rec.assign(1000, uint8_t(i));
    ASSERT_EQ(rb->output(rec.data(), rec.size(), 0), 0);
    got.clear();
    ASSERT_EQ(rb->consume(cb), 1);
    ASSERT_EQ(got[0], std::string(1000, char(i)));
  }
  EXPECT_EQ(rb->producer_pos(), rb->consumer_pos());
  EXPECT_EQ(rb->reserve(4096, 0), nullptr);
  EXPECT_EQ(m->lookup_copy(nullptr, nullptr, 0), -kENOTSUPP);
  rb->output("x", 1, 0);
  EXPECT_EQ(rb->consume([](const void*, uint32_t) { return -7; }), -7);
}

// A sample carries the time the helper wrote it (CLOCK_MONOTONIC ns), not the time it is read.
TEST(Maps, PerfEventArraySamplesCarryTheTimeTheyWereWritten) {
  auto mono_ns = [] {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  };
  auto m = mk(kMapPerfEventArray, 4, 4, 1);
  auto* pe = as_perf_event_array(m.get());
  ASSERT_NE(pe, nullptr);
  ASSERT_EQ(pe->open_ring(0, 0, 1), 0);
  set_current_cpu(0);
  uint32_t v = 7;
  const uint64_t t0 = mono_ns();
  ASSERT_EQ(pe->output(0xffffffffull, &v, 4), 0);
  const uint64_t t1 = mono_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const uint64_t read_at = mono_ns();
  std::vector<uint64_t> times;
  uint32_t got = 0;
  pe->consume_records([&](int, uint64_t time, const void* d, uint32_t n) {
    times.push_back(time);
    if (n >= 4) std::memcpy(&got, d, 4);
  }, nullptr);
  ASSERT_EQ(times.size(), 1u);
  EXPECT_EQ(got, 7u);
  EXPECT_GE(times[0], t0);
  EXPECT_LE(times[0], t1);
  EXPECT_LT(times[0] + 20'000'000, read_at);
}

TEST(Maps, PerfEventArray) {
  auto m = mk(kMapPerfEventArray, 4, 4, 2);
  auto* pe = dynamic_cast<PerfEventArrayMap*>(m.get());
  ASSERT_NE(pe, nullptr);
  const uint64_t cur = 0xffffffffull;
  set_current_cpu(0);
  EXPECT_EQ(pe->output(cur, "abc", 3), -ENOENT);
  ASSERT_EQ(pe->open_ring(0, 0, 1), 0);
  ASSERT_EQ(pe->open_ring(1, 1, 1), 0);
  EXPECT_EQ(pe->output(cur, "abc", 3), 0);
  EXPECT_EQ(pe->output(1, "abc", 3), -EOPNOTSUPP);  // ring of another CPU
  EXPECT_EQ(pe->output(2, "abc", 3), -E2BIG);
  EXPECT_EQ(pe->output(1ull << 63, "abc", 3), -EINVAL);
  std::vector<uint8_t> big(1000);
  int dropped = 0;
  for (int i = 0; i < 10; ++i) dropped += pe->output(cur, big.data(), big.size()) == -ENOSPC;
  EXPECT_GT(dropped, 0);
  std::vector<uint32_t> sizes;
  uint64_t lost_total = 0;
  long n = pe->consume([&](int cpu, const void*, uint32_t sz) { sizes.push_back(sz); },
                       [&](int, uint64_t l) { lost_total += l; });
  EXPECT_GT(n, 0);
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes[0], 4u);  // raw size padded so the record is 8-aligned (3 + 4 -> 8, minus the u32)
  EXPECT_EQ(pe->output(cur, "z", 1), 0);
  pe->consume([](int, const void*, uint32_t) {}, [&](int, uint64_t l) { lost_total += l; });
  EXPECT_EQ(lost_total, uint64_t(dropped));
  uint32_t k = 1;
  EXPECT_EQ(m->remove(&k), 0);
  EXPECT_EQ(m->remove(&k), -ENOENT);
}

TEST(Maps, ProgArrayAndMapInMap) {
  auto pa_m = mk(kMapProgArray, 4, 4, 4);
  auto* pa = dynamic_cast<ProgArrayMap*>(pa_m.get());
  ASSERT_NE(pa, nullptr);
  auto prog = std::make_shared<int>(5);
  EXPECT_EQ(pa->prog_at(1), nullptr);
  ASSERT_EQ(pa->set_prog(1, prog, 77), 0);
  EXPECT_EQ(pa->prog_at(1), prog.get());
  EXPECT_EQ(pa->set_prog(4, prog, 77), -E2BIG);
  uint32_t k = 1, id = 0;
  EXPECT_EQ(pa_m->lookup_copy(&k, &id, 0), 0);
  EXPECT_EQ(id, 77u);
  EXPECT_EQ(pa_m->remove(&k), 0);
  EXPECT_EQ(pa_m->remove(&k), -ENOENT);
  EXPECT_EQ(pa->prog_at(1), nullptr);
  ProgArrayMap::set_resolver([&](uint32_t pid) -> std::shared_ptr<const void> { return pid == 9 ? prog : nullptr; });
  uint32_t pid = 9;
  EXPECT_EQ(pa_m->update_user(&k, &pid, 0), 0);
  EXPECT_EQ(pa->prog_at(1), prog.get());
  pid = 10;
  EXPECT_EQ(pa_m->update_user(&k, &pid, 0), -EBADF);
  EXPECT_EQ(pa_m->update_user(&k, &pid, kBpfNoexist), -EINVAL);
  ProgArrayMap::set_resolver(nullptr);

  MapSpec outer;
  outer.name = "outer";
  outer.type = kMapArrayOfMaps;
  outer.key_size = 4;
  outer.value_size = 4;
  outer.max_entries = 2;
  EXPECT_FALSE(create_map(outer).ok());  // no inner definition
  outer.inner = std::make_shared<MapSpec>();
  *outer.inner = MapSpec{"inner", kMapArray, 4, 8, 16};
  auto aom = *create_map(outer);
  auto good = mk(kMapArray, 4, 8, 16);
  auto wrong = mk(kMapArray, 4, 8, 17);
  uint32_t gid = good->id(), wid = wrong->id(), bad = 0xfffffff0;
  k = 0;
  EXPECT_EQ(aom->update_user(&k, &wid, 0), -EINVAL);
  EXPECT_EQ(aom->update_user(&k, &bad, 0), -EBADF);
  ASSERT_EQ(aom->update_user(&k, &gid, 0), 0);
  EXPECT_EQ(aom->lookup(&k), good.get());
  EXPECT_EQ(aom->lookup_copy(&k, &id, 0), 0);
  EXPECT_EQ(id, gid);
  k = 1;
  EXPECT_EQ(aom->lookup(&k), nullptr);
  outer.type = kMapHashOfMaps;
  auto hom = *create_map(outer);
  k = 12345;
  ASSERT_EQ(hom->update_user(&k, &gid, kBpfNoexist), 0);
  EXPECT_EQ(hom->update_user(&k, &gid, kBpfNoexist), -EEXIST);
  EXPECT_EQ(hom->lookup(&k), good.get());
  std::weak_ptr<Map> w = good;
  good.reset();
  EXPECT_FALSE(w.expired());  // held by the outer maps
  EXPECT_EQ(hom->remove(&k), 0);
  k = 0;
  EXPECT_EQ(aom->remove(&k), 0);
  map_synchronize();
  EXPECT_TRUE(w.expired());
  outer.inner->type = kMapProgArray;
  outer.inner->value_size = 4;
  EXPECT_FALSE(create_map(outer).ok());
}

TEST(Maps, TypedOnlyTypesLoadAndStore) {
  auto d = mk(kMapDevmap, 4, 4, 8);
  uint32_t k = 3, v = 2, out = 0;
  EXPECT_EQ(d->lookup(&k), nullptr);
  ASSERT_EQ(d->update(&k, &v, 0), 0);
  EXPECT_EQ(d->lookup_copy(&k, &out, 0), 0);
  EXPECT_EQ(out, 2u);
  EXPECT_EQ(d->remove(&k), 0);
  EXPECT_EQ(d->lookup(&k), nullptr);
  k = 8;
  EXPECT_EQ(d->update(&k, &v, 0), -E2BIG);
  auto sh = mk(kMapSockhash, 12, 8, 8);
  ASSERT_NE(sh, nullptr);
  auto cg = mk(kMapCgroupStorage, 8, 16, 0);
  uint64_t ck = 1;
  uint8_t cv[16] = {1};
  EXPECT_EQ(cg->update(&ck, cv, 0), 0);
  EXPECT_NE(cg->lookup(&ck), nullptr);
}

TEST(Maps, BatchLookup) {
  auto m = mk(kMapHash, 4, 4, 64);
  for (uint32_t k = 0; k < 10; ++k) {
    uint32_t v = k * 10;
    ASSERT_EQ(m->update(&k, &v, 0), 0);
  }
  uint32_t keys[4], vals[4], token = 0, count = 4;
  std::set<uint32_t> seen;
  long r = m->lookup_batch(nullptr, &token, keys, vals, &count, 0);
  for (;;) {
    for (uint32_t i = 0; i < count; ++i) {
      EXPECT_EQ(vals[i], keys[i] * 10);
      seen.insert(keys[i]);
    }
    if (r == -ENOENT) break;
    ASSERT_EQ(r, 0);
    uint32_t in = token;
    count = 4;
    r = m->lookup_batch(&in, &token, keys, vals, &count, 0);
  }
  EXPECT_EQ(seen.size(), 10u);
  count = 100;
  uint32_t k2[100], v2[100];
  EXPECT_EQ(m->lookup_batch(nullptr, &token, k2, v2, &count, 0, true), -ENOENT);
  EXPECT_EQ(count, 10u);
  uint32_t nk;
  EXPECT_EQ(m->get_next_key(nullptr, &nk), -ENOENT);
}

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer an allocation the allocator cannot map returns null (as glibc's does)
// instead of ending the process, so the tests see the library's own out-of-memory handling.
extern "C" __attribute__((used, visibility("default"))) const char* __asan_default_options() {
  return "allocator_may_return_null=1";
}
#endif

// Resident memory of this process in bytes (/proc/self/statm), 0 where unavailable.
static uint64_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? uint64_t(resident) * uint64_t(sysconf(_SC_PAGESIZE)) : 0;
}

TEST(Maps, HugeMaxEntriesCostNoMemory) {
  // A hostile object may declare 4 billion entries: creation either succeeds lazily or fails
  // with a clear error; it never fills memory (resident memory grows by less than 64 MiB per map).
  // Under AddressSanitizer the allocator returns null for what it cannot map, as glibc's does
  // (allocator_may_return_null, __asan_default_options below), so the same two outcomes are checked.
  struct Case {
    uint32_t type, ks, vs, flags;
  } cases[] = {{kMapArray, 4, 8, 0},      {kMapHash, 4, 8, 0},     {kMapQueue, 0, 8, 0},
               {kMapBloomFilter, 0, 8, 0}, {kMapDevmap, 4, 4, 0},   {kMapProgArray, 4, 4, 0},
               {kMapLpmTrie, 8, 8, kMapFNoPrealloc}, {kMapPerfEventArray, 4, 4, 0}, {kMapLruHash, 4, 8, 0}};
  for (const Case& c : cases) {
    MapSpec s;
    s.name = "huge";
    s.type = c.type;
    s.key_size = c.ks;
    s.value_size = c.vs;
    s.max_entries = 0xffffffffu;
    s.flags = c.flags;
    uint64_t before = resident_bytes();
    auto r = create_map(s);
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("map 'huge'"), std::string::npos) << r.error().message;
      continue;
    }
    uint32_t k = 123456789;
    uint64_t v = 5;
    if (c.type == kMapQueue || c.type == kMapBloomFilter) {
      EXPECT_EQ((*r)->push(&v, 0), 0) << map_type_name(c.type);
    } else if (c.type != kMapProgArray && c.type != kMapPerfEventArray && c.type != kMapLpmTrie) {
      EXPECT_EQ((*r)->update(&k, &v, 0), 0) << map_type_name(c.type);
    }
    EXPECT_LT(resident_bytes(), before + (64ull << 20)) << map_type_name(c.type);
  }
}

TEST(Maps, PinnedReaderOutsideSectionIsSafeAndSynchronizeDoesNotHang) {
  auto m = mk(kMapHash, 4, 8, 4);
  uint32_t k = 1;
  uint64_t v = 10;
  ASSERT_EQ(m->update(&k, &v, 0), 0);
  std::atomic<int> step{0};
  uint64_t seen = 0;
  std::thread reader([&] {
    auto* p = static_cast<uint64_t*>(m->lookup(&k));  // no section: the thread is pinned
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    seen = *p;  // still the old element, not freed memory
    map_quiescent();
  });
  while (step.load() != 1) std::this_thread::yield();
  v = 20;
  ASSERT_EQ(m->update(&k, &v, 0), 0);
  ASSERT_EQ(m->remove(&k), 0);
  auto t0 = std::chrono::steady_clock::now();
  map_synchronize();  // must not free the pinned reader's element, must not hang
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  step = 2;
  reader.join();
  EXPECT_EQ(seen, 10u);
  map_synchronize();
}

TEST(Maps, RingbufHeaderLayout) {
  auto m = mk(kMapRingbuf, 0, 0, 8192);
  auto* rb = dynamic_cast<RingbufMap*>(m.get());
  auto hdr_len = [&](uint64_t pos) {
    uint32_t v;
    std::memcpy(&v, rb->data_area() + (pos & 8191), 4);
    return v;
  };
  // move the producer to page 1 so that pg_off is visible
  std::vector<uint8_t> pad(4096 - 8);
  ASSERT_EQ(rb->output(pad.data(), pad.size(), 0), 0);
  ASSERT_EQ(rb->consume([](const void*, uint32_t) { return 0; }), 1);
  uint64_t pos = rb->producer_pos();
  EXPECT_EQ(pos, 4096u);
  void* r = rb->reserve(5, 0);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(static_cast<const uint8_t*>(r), rb->data_area() + 4096 + 8);
  EXPECT_EQ(hdr_len(pos), 5u | RingbufMap::kBusyBit);
  uint32_t pg_off;
  std::memcpy(&pg_off, rb->data_area() + 4096 + 4, 4);
  EXPECT_EQ(pg_off, 1u);
  rb->discard(r, 0);
  EXPECT_EQ(hdr_len(pos), 5u | RingbufMap::kDiscardBit);
  EXPECT_EQ(rb->query(2), 4096u);         // BPF_RB_CONS_POS
  EXPECT_EQ(rb->query(3), 4096u + 16u);   // BPF_RB_PROD_POS
  EXPECT_EQ(rb->query(0), 16u);           // BPF_RB_AVAIL_DATA
  EXPECT_EQ(rb->query(9), 0u);
  // a record that wraps is contiguous thanks to the double mapping
  ASSERT_EQ(rb->consume([](const void*, uint32_t) { return 0; }), 0);
  std::vector<uint8_t> big(4000);
  ASSERT_EQ(rb->output(big.data(), big.size(), 0), 0);  // ends at 4096+16+4008 = 8120
  std::vector<uint8_t> wrap(200);
  for (size_t i = 0; i < wrap.size(); ++i) wrap[i] = uint8_t(i);
  ASSERT_EQ(rb->consume([](const void*, uint32_t) { return 0; }), 1);
  ASSERT_EQ(rb->output(wrap.data(), wrap.size(), 0), 0);  // straddles offset 8192
  std::vector<uint8_t> got;
  ASSERT_EQ(rb->consume([&](const void* d, uint32_t n) {
    got.assign(static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + n);
    return 0;
  }), 1);
  EXPECT_EQ(got, wrap);
}

namespace {

// lookup_fn() must return exactly what lookup() returns, present or absent, for every family.
void expect_lookup_fn_agrees(Map& m, std::span<const std::vector<uint8_t>> keys) {
  MapReadSection rs;
  for (const auto& k : keys) EXPECT_EQ(m.lookup_fn()(&m, k.data()), m.lookup(k.data())) << m.spec().name;
}

std::vector<uint8_t> key_bytes(uint32_t ks, uint32_t i) {
  std::vector<uint8_t> k(ks, 0);
  for (uint32_t b = 0; b < ks; ++b) k[b] = uint8_t((i * 131 + b * 7) & 0xff);
  std::memcpy(k.data(), &i, std::min<uint32_t>(ks, 4));
  return k;
}

}  // namespace

TEST(Maps, EngineLookupFnAgreesWithLookup) {
  for (uint32_t type : {uint32_t(kMapHash), uint32_t(kMapLruHash), uint32_t(kMapPercpuHash), uint32_t(kMapArray),
                        uint32_t(kMapPercpuArray)}) {
    for (uint32_t ks : {4u, 8u, 12u}) {
      if ((type == kMapArray || type == kMapPercpuArray) && ks != 4) continue;
      auto m = mk(type, ks, 12, 64);
      ASSERT_TRUE(m);
      std::vector<std::vector<uint8_t>> keys;
      for (uint32_t i = 0; i < 100; ++i) keys.push_back(key_bytes(ks, i));  // 64..99: absent / out of range
      std::vector<uint8_t> val(m->user_value_size(), 0x5a);
      for (uint32_t i = 0; i < 64; ++i) ASSERT_EQ(m->update_user(keys[i].data(), val.data(), 0), 0);
      expect_lookup_fn_agrees(*m, keys);
      // The plain families have their own (specialised) entry point.
      if (type == kMapHash || type == kMapArray) {
        void* v = m->lookup_fn()(m.get(), keys[3].data());
        ASSERT_NE(v, nullptr);
        EXPECT_EQ(static_cast<uint8_t*>(v)[0], 0x5a);
      }
    }
  }
}

TEST(Maps, InlineArrayDescribesPlainArraysOnly) {
  auto a = mk(kMapArray, 4, 12, 10);
  Map::InlineArray ia;
  ASSERT_TRUE(a->inline_array(&ia));
  EXPECT_EQ(ia.max_entries, 10u);
  EXPECT_EQ(ia.stride, 16u);  // value size rounded up to 8, as the kernel's elem_size
  for (uint32_t k = 0; k < 10; ++k) EXPECT_EQ(static_cast<void*>(ia.base + size_t(k) * ia.stride), a->lookup(&k));
  uint32_t k = 10;
  EXPECT_EQ(a->lookup(&k), nullptr);
  EXPECT_FALSE(mk(kMapPercpuArray, 4, 8, 4)->inline_array(&ia));
  EXPECT_FALSE(mk(kMapHash, 4, 8, 4)->inline_array(&ia));
}

TEST(Maps, FamilyTagsFindTheInterfaces) {
  auto rb = mk(kMapRingbuf, 0, 0, 4096);
  auto pe = mk(kMapPerfEventArray, 4, 4, 2);
  auto pa = mk(kMapProgArray, 4, 4, 2);
  auto h = mk(kMapHash, 4, 4, 2);
  EXPECT_EQ(as_ringbuf(rb.get()), dynamic_cast<RingbufMap*>(rb.get()));
  EXPECT_NE(as_ringbuf(rb.get()), nullptr);
  EXPECT_EQ(as_perf_event_array(pe.get()), dynamic_cast<PerfEventArrayMap*>(pe.get()));
  EXPECT_NE(as_perf_event_array(pe.get()), nullptr);
  EXPECT_EQ(as_prog_array(pa.get()), dynamic_cast<ProgArrayMap*>(pa.get()));
  EXPECT_NE(as_prog_array(pa.get()), nullptr);
  for (Map* m : {h.get(), pe.get(), pa.get()}) EXPECT_EQ(as_ringbuf(m), nullptr);
  for (Map* m : {h.get(), rb.get(), pa.get()}) EXPECT_EQ(as_perf_event_array(m), nullptr);
  for (Map* m : {h.get(), rb.get(), pe.get()}) EXPECT_EQ(as_prog_array(m), nullptr);
  EXPECT_EQ(as_ringbuf(nullptr), nullptr);
}

// Freed elements are reused (per-thread cache by size class): maps of different element sizes,
// updated and deleted in turn, always read back exactly what was last written.
TEST(Maps, RecycledElementsHoldTheirOwnValues) {
  auto small = mk(kMapHash, 4, 8, 128);
  auto big = mk(kMapHash, 8, 40, 128);
  auto lru = mk(kMapLruHash, 4, 8, 32);
  std::vector<uint64_t> want_small(256, 0), want_big(256, 0);
  for (uint32_t round = 0; round < 4000; ++round) {
    MapReadSection rs;
    uint32_t k = (round * 37) % 200;
    uint64_t v = round * 1000003ull;
    uint64_t kb = k;
    uint64_t vb[5] = {v, ~v, v + 1, v + 2, v + 3};
    if (round % 5 == 4) {
      small->remove(&k);
      big->remove(&kb);
      want_small[k] = want_big[k] = 0;
    } else {
      long es = small->update(&k, &v, kBpfAny), eb = big->update(&kb, vb, kBpfAny);
      if (es == 0) want_small[k] = v;
      if (eb == 0) want_big[k] = v;
    }
    ASSERT_EQ(lru->update(&k, &v, kBpfAny), 0);
    auto* got = static_cast<uint64_t*>(lru->lookup(&k));
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(*got, v);
    if (round % 97 == 0) map_synchronize();
  }
  for (uint32_t k = 0; k < 200; ++k) {
    uint64_t out = 0, kb = k, outb[5] = {};
    long es = small->lookup_copy(&k, &out, 0), eb = big->lookup_copy(&kb, outb, 0);
    if (want_small[k]) {
      ASSERT_EQ(es, 0) << k;
      EXPECT_EQ(out, want_small[k]);
    }
    if (want_big[k]) {
      ASSERT_EQ(eb, 0) << k;
      EXPECT_EQ(outb[0], want_big[k]);
      EXPECT_EQ(outb[1], ~want_big[k]);
      EXPECT_EQ(outb[4], want_big[k] + 3);
    }
  }
  map_synchronize();
}
