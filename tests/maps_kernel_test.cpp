// Differential test: the same maps created in the running kernel (bpf() syscalls) and in bpfvm,
// the same random operation sequences applied to both, every return code and value compared.
// Iteration order of hash maps is compared as sets, LRU victims and bloom false positives loosely.
// Skips cleanly when bpf() is unavailable (not root, no CAP_BPF).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "bpfvm/map.hpp"
#include "kernel/oracle.hpp"

using namespace bpfvm;

namespace {

#define REQUIRE_KERNEL()                                                                  \
  do {                                                                                    \
    if (!kernel::available()) GTEST_SKIP() << "bpf() unavailable: " << kernel::unavailable_reason(); \
  } while (0)

int kernel_possible_cpus() {
  std::ifstream f("/sys/devices/system/cpu/possible");
  std::string s;
  std::getline(f, s);
  int n = 0;
  size_t i = 0;
  while (i < s.size()) {  // "0-3,5,7-8"
    size_t j = s.find(',', i);
    std::string part = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    size_t d = part.find('-');
    if (d == std::string::npos)
      n = std::max(n, std::stoi(part) + 1);
    else
      n = std::max(n, std::stoi(part.substr(d + 1)) + 1);
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return n > 0 ? n : 1;
}

struct Spec {
  uint32_t type, ks, vs, max, flags = 0;
  uint64_t extra = 0;
};

std::string describe(const Spec& s) {
  return std::string(map_type_name(s.type)) + " key " + std::to_string(s.ks) + " value " + std::to_string(s.vs) +
         " max " + std::to_string(s.max) + " flags 0x" + ([&] {
           char b[16];
           snprintf(b, sizeof b, "%x", s.flags);
           return std::string(b);
         })() + " extra " + std::to_string(s.extra);
}

MapSpec to_spec(const Spec& s) {
  MapSpec m;
  m.name = "diff";
  m.type = s.type;
  m.key_size = s.ks;
  m.value_size = s.vs;
  m.max_entries = s.max;
  m.flags = s.flags;
  m.map_extra = s.extra;
  return m;
}

struct Pair {
  kernel::Fd k;
  std::shared_ptr<Map> v;
};

Pair make_pair(const Spec& s) {
  Pair p;
  int err = 0;
  p.k = kernel::create_map(s.type, s.ks, s.vs, s.max, s.flags, &err, s.extra);
  auto r = create_map(to_spec(s));
  EXPECT_TRUE(bool(p.k)) << "kernel refused " << describe(s) << ": " << err;
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (r.ok()) p.v = *r;
  return p;
}

// A map type the running kernel's build does not offer cannot be compared (it refuses every spec).
bool kernel_lacks(uint32_t type) {
  if (!*map_type_name(type)) return false;  // numbers no kernel knows: compared (both refuse)
  auto a = kernel::probe_map_type(type);
  if (a.offer != kernel::Offer::No) return false;
  std::printf("  not compared: the kernel does not offer map type %s (%s)\n", map_type_name(type), a.detail.c_str());
  return true;
}

class CpuScope {
 public:
  CpuScope() { set_possible_cpus(kernel_possible_cpus()); }
  ~CpuScope() { set_possible_cpus(0); }
};

}  // namespace

// map_create's validation: the same errno for the same attributes.
TEST(MapsKernel, CreationErrnoMatches) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  const uint32_t NP = kMapFNoPrealloc, LRU1 = kMapFNoCommonLru, RO = kMapFRdonlyProg, WO = kMapFWronlyProg;
  std::vector<Spec> specs = {
      // arrays
      {kMapArray, 4, 8, 1}, {kMapArray, 4, 8, 0}, {kMapArray, 8, 8, 1}, {kMapArray, 0, 8, 1},
      {kMapArray, 4, 0, 1}, {kMapArray, 4, 8, 1, NP}, {kMapArray, 4, 8, 1, RO | WO},
      {kMapArray, 4, 8, 1, RO}, {kMapArray, 4, 8, 1, kMapFMmapable}, {kMapArray, 4, 8, 1, kMapFInnerMap},
      {kMapArray, 4, 8, 1, kMapFPreserveElems}, {kMapArray, 4, 8, 1, kMapFZeroSeed},
      {kMapArray, 4, 8, 1, 1u << 20}, {kMapArray, 4, 8, 4, 0, 1},
      {kMapPercpuArray, 4, 8, 4}, {kMapPercpuArray, 4, 32768, 1}, {kMapPercpuArray, 4, 32769, 1},
      {kMapPercpuArray, 4, 8, 1, kMapFMmapable}, {kMapPercpuArray, 4, 8, 1, kMapFInnerMap},
      // hashes
      {kMapHash, 4, 8, 1}, {kMapHash, 0, 8, 1}, {kMapHash, 4, 0, 1}, {kMapHash, 4, 8, 0},
      {kMapHash, 4, 8, 1, NP}, {kMapHash, 4, 8, 1, LRU1}, {kMapHash, 4, 8, 1, kMapFZeroSeed},
      {kMapHash, 4, 8, 1, kMapFMmapable}, {kMapHash, 4, 8, 1, RO | WO}, {kMapHash, 4, 8, 1, kMapFStackBuildId},
      {kMapHash, 512, 8, 1}, {kMapHash, 4, 8, 4, 0, 5}, {kMapHash, 4, 1 << 22, 1},
      {kMapPercpuHash, 4, 8, 4}, {kMapPercpuHash, 4, 32769, 4}, {kMapPercpuHash, 4, 8, 4, NP},
      {kMapLruHash, 4, 8, 4}, {kMapLruHash, 4, 8, 4, NP}, {kMapLruHash, 4, 8, 4, LRU1},
      {kMapLruHash, 4, 8, 4, LRU1 | NP}, {kMapLruPercpuHash, 4, 8, 4, LRU1}, {kMapLruPercpuHash, 4, 8, 4},
      // lpm
      {kMapLpmTrie, 8, 8, 4, NP}, {kMapLpmTrie, 8, 8, 4}, {kMapLpmTrie, 4, 8, 4, NP},
      {kMapLpmTrie, 5, 8, 4, NP}, {kMapLpmTrie, 260, 8, 4, NP}, {kMapLpmTrie, 261, 8, 4, NP},
      {kMapLpmTrie, 8, 0, 4, NP}, {kMapLpmTrie, 8, 8, 0, NP}, {kMapLpmTrie, 20, 8, 4, NP | kMapFZeroSeed},
      // queue / stack / bloom
      {kMapQueue, 0, 8, 4}, {kMapQueue, 4, 8, 4}, {kMapQueue, 0, 0, 4}, {kMapQueue, 0, 8, 0},
      {kMapQueue, 0, 8, 4, NP}, {kMapStack, 0, 8, 4}, {kMapStack, 0, 8, 4, kMapFZeroSeed},
      {kMapBloomFilter, 0, 8, 100}, {kMapBloomFilter, 4, 8, 100}, {kMapBloomFilter, 0, 0, 100},
      {kMapBloomFilter, 0, 8, 0}, {kMapBloomFilter, 0, 8, 100, 0, 15}, {kMapBloomFilter, 0, 8, 100, 0, 16},
      {kMapBloomFilter, 0, 8, 100, kMapFZeroSeed}, {kMapBloomFilter, 0, 8, 100, NP},
      // ring buffers
      {kMapRingbuf, 0, 0, 4096}, {kMapRingbuf, 0, 0, 8192}, {kMapRingbuf, 0, 0, 2048},
      {kMapRingbuf, 0, 0, 12288}, {kMapRingbuf, 4, 0, 4096}, {kMapRingbuf, 0, 4, 4096},
      {kMapRingbuf, 0, 0, 4096, NP}, {kMapRingbuf, 0, 0, 0},
      // fd arrays
      {kMapProgArray, 4, 4, 4}, {kMapProgArray, 4, 8, 4}, {kMapProgArray, 4, 4, 4, RO},
      {kMapProgArray, 4, 4, 0}, {kMapPerfEventArray, 4, 4, 4}, {kMapPerfEventArray, 4, 4, 4, kMapFPreserveElems},
      {kMapPerfEventArray, 4, 8, 4}, {kMapCgroupArray, 4, 4, 4}, {kMapCgroupArray, 4, 8, 4},
      // typed-only
      {kMapDevmap, 4, 4, 4}, {kMapDevmap, 4, 8, 4}, {kMapDevmap, 4, 12, 4}, {kMapDevmap, 8, 4, 4},
      {kMapDevmap, 4, 4, 0}, {kMapDevmapHash, 4, 8, 4}, {kMapDevmapHash, 4, 2, 4},
      {kMapCpumap, 4, 4, 4}, {kMapCpumap, 4, 8, 4}, {kMapCpumap, 4, 12, 4},
      {kMapXskmap, 4, 4, 4}, {kMapXskmap, 4, 8, 4},
      {kMapStackTrace, 4, 8, 4}, {kMapStackTrace, 4, 12, 4}, {kMapStackTrace, 4, 127 * 8, 4},
      {kMapStackTrace, 4, 128 * 8, 4}, {kMapStackTrace, 4, 64, 4, kMapFStackBuildId},
      {kMapStackTrace, 4, 48, 4, kMapFStackBuildId},
      {kMapSockmap, 4, 4, 4}, {kMapSockmap, 4, 8, 4}, {kMapSockmap, 4, 2, 4}, {kMapSockhash, 12, 8, 4},
      {kMapSockhash, 0, 8, 4}, {kMapReuseportSockarray, 4, 8, 4}, {kMapReuseportSockarray, 4, 2, 4},
      {kMapCgroupStorage, 16, 8, 0}, {kMapCgroupStorage, 8, 8, 0}, {kMapCgroupStorage, 16, 8, 1},
      {kMapCgroupStorage, 12, 8, 0}, {kMapCgroupStorage, 16, 8192, 0}, {kMapCgroupStorage, 8, 70000, 0},
      {kMapPercpuCgroupStorage, 16, 8, 0}, {kMapPercpuCgroupStorage, 8, 32769, 0},
      {kMapSkStorage, 4, 8, 0}, {kMapSkStorage, 4, 8, 1, NP},
      {kMapUserRingbuf, 0, 0, 4096}, {kMapUserRingbuf, 0, 0, 1000},
      // unknown
      {0, 4, 4, 4}, {99, 4, 4, 4},
  };
  int mismatches = 0;
  for (const Spec& s : specs) {
    if (kernel_lacks(s.type)) continue;
    int kerr = 0;
    kernel::Fd fd = kernel::create_map(s.type, s.ks, s.vs, s.max, s.flags, &kerr, s.extra);
    long kret = fd ? 0 : -long(std::abs(kerr));
    std::string why;
    long vret = check_map_spec(to_spec(s), &why);
    if (kret != vret) ++mismatches;
    EXPECT_EQ(vret, kret) << describe(s) << " (bpfvm says: " << why << ")";
  }
  EXPECT_EQ(mismatches, 0);
}

// Map-in-map: inner map types and the meta checks on insertion.
TEST(MapsKernel, MapInMapRules) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::vector<Spec> inners = {
      {kMapArray, 4, 8, 4}, {kMapHash, 4, 8, 4}, {kMapPercpuArray, 4, 8, 4}, {kMapLruHash, 4, 8, 4},
      {kMapQueue, 0, 8, 4}, {kMapRingbuf, 0, 0, 4096}, {kMapBloomFilter, 0, 8, 16}, {kMapLpmTrie, 8, 8, 4, kMapFNoPrealloc},
      {kMapProgArray, 4, 4, 4}, {kMapPerfEventArray, 4, 4, 4}, {kMapDevmap, 4, 4, 4}, {kMapStackTrace, 4, 8, 4},
      {kMapCpumap, 4, 4, 4}, {kMapXskmap, 4, 4, 4}, {kMapDevmapHash, 4, 4, 4}, {kMapSockmap, 4, 4, 4},
      {kMapCgroupArray, 4, 4, 4}, {kMapStack, 0, 4, 4}, {kMapPercpuHash, 4, 8, 4},
  };
  for (uint32_t outer_type : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
    for (const Spec& in : inners) {
      if (kernel_lacks(in.type)) continue;
      int kerr = 0;
      kernel::Fd ifd = kernel::create_map(in.type, in.ks, in.vs, in.max, in.flags, &kerr, in.extra);
      ASSERT_TRUE(bool(ifd)) << describe(in);
      kernel::Fd ofd = kernel::create_map(outer_type, 4, 4, 4, 0, &kerr, 0, ifd.get());
      long kret = ofd ? 0 : -long(std::abs(kerr));
      MapSpec os = to_spec({outer_type, 4, 4, 4});
      os.inner = std::make_shared<MapSpec>(to_spec(in));
      std::string why;
      long vret = check_map_spec(os, &why);
      EXPECT_EQ(vret, kret) << map_type_name(outer_type) << " of " << describe(in) << " (" << why << ")";
    }
  }
  // insertion: same shape accepted, other max_entries (array inner) and other type refused
  int kerr = 0;
  kernel::Fd inner = kernel::create_map(kMapArray, 4, 8, 4, 0, &kerr);
  kernel::Fd other = kernel::create_map(kMapArray, 4, 8, 5, 0, &kerr);
  kernel::Fd hash = kernel::create_map(kMapHash, 4, 8, 4, 0, &kerr);
  kernel::Fd outer = kernel::create_map(kMapArrayOfMaps, 4, 4, 2, 0, &kerr, 0, inner.get());
  ASSERT_TRUE(inner && other && hash && outer);
  MapSpec os = to_spec({kMapArrayOfMaps, 4, 4, 2});
  os.inner = std::make_shared<MapSpec>(to_spec({kMapArray, 4, 8, 4}));
  auto vouter = *create_map(os);
  auto vin = *create_map(to_spec({kMapArray, 4, 8, 4}));
  auto vother = *create_map(to_spec({kMapArray, 4, 8, 5}));
  auto vhash = *create_map(to_spec({kMapHash, 4, 8, 4}));
  uint32_t key = 0;
  struct Case {
    int kfd;
    uint32_t vid;
    uint64_t flags;
    uint32_t key;
  } cases[] = {{inner.get(), vin->id(), 0, 0}, {other.get(), vother->id(), 0, 1}, {hash.get(), vhash->id(), 0, 1},
               {inner.get(), vin->id(), kBpfNoexist, 1}, {inner.get(), vin->id(), 0, 2}};
  for (const Case& c : cases) {
    uint32_t kv = uint32_t(c.kfd);
    key = c.key;
    int kr = kernel::map_update(outer.get(), &key, &kv, c.flags);
    long vr = vouter->update_user(&key, &c.vid, c.flags);
    EXPECT_EQ(vr, kr) << "insert case key " << c.key << " flags " << c.flags;
  }
}

// Pinned maps of maps answer insertions as the kernel does (pinned inner maps of the same and of
// other shapes, flags, keys out of range), for both outer types.
TEST(MapsKernel, PinnedMapInMapInsertionMatchesKernel) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::error_code ec;
  if (std::filesystem::space("/dev/shm", ec).capacity == 0 || ec) GTEST_SKIP() << "/dev/shm unavailable";
  const std::string dir = "/dev/shm/bpfvm-kernel-mim-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};
  int kerr = 0;
  kernel::Fd kin = kernel::create_map(kMapArray, 4, 8, 4, 0, &kerr);
  kernel::Fd kother = kernel::create_map(kMapArray, 4, 8, 5, 0, &kerr);
  kernel::Fd khash = kernel::create_map(kMapHash, 4, 8, 4, 0, &kerr);
  ASSERT_TRUE(kin && kother && khash);
  const MapSpec in = to_spec({kMapArray, 4, 8, 4});
  auto vin = create_pinned_map(in, dir + "/in");
  auto vother = create_pinned_map(to_spec({kMapArray, 4, 8, 5}), dir + "/other");
  auto vhash = create_pinned_map(to_spec({kMapHash, 4, 8, 4}), dir + "/hash");
  ASSERT_TRUE(vin.ok() && vother.ok() && vhash.ok());
  for (uint32_t t : {uint32_t(kMapArrayOfMaps), uint32_t(kMapHashOfMaps)}) {
    kernel::Fd kouter = kernel::create_map(t, 4, 4, 3, 0, &kerr, 0, kin.get());
    ASSERT_TRUE(bool(kouter));
    MapSpec os = to_spec({t, 4, 4, 3});
    os.inner = std::make_shared<MapSpec>(in);
    auto vouter = create_pinned_map(os, dir + "/outer_" + map_type_name(t));
    ASSERT_TRUE(vouter.ok()) << vouter.error().to_string();
    struct Case {
      int kfd;
      Map* v;
      uint64_t flags;
      uint32_t key;
    } cases[] = {{kin.get(), vin->get(), 0, 0},           {kother.get(), vother->get(), 0, 1},
                 {khash.get(), vhash->get(), 0, 1},       {kin.get(), vin->get(), kBpfNoexist, 0},
                 {kin.get(), vin->get(), kBpfExist, 2},   {kin.get(), vin->get(), kBpfExist, 0},
                 {kin.get(), vin->get(), 0, 7},           {kin.get(), vin->get(), 3, 1}};
    for (const Case& c : cases) {
      uint32_t kv = uint32_t(c.kfd), vid = c.v->id(), key = c.key;
      int kr = kernel::map_update(kouter.get(), &key, &kv, c.flags);
      long vr = (*vouter)->update_user(&key, &vid, c.flags);
      EXPECT_EQ(vr, kr) << map_type_name(t) << " key " << c.key << " flags " << c.flags;
    }
    // Deleting: a filled slot, then an empty one.
    for (uint32_t key : {0u, 0u}) {
      int kr = kernel::map_delete(kouter.get(), &key);
      long vr = (*vouter)->delete_user(&key);
      EXPECT_EQ(vr, kr) << map_type_name(t) << " delete";
    }
  }
}

namespace {

// Applies random operations to both and compares. `keyspace`: keys drawn from [0, keyspace).
struct Differ {
  Pair p;
  Spec s;
  std::mt19937_64 rng;
  bool ordered;  // get_next_key order comparable exactly (array, lpm)
  bool lru = false;
  int ops = 0;
  std::string trace;

  Differ(const Spec& spec, uint64_t seed, bool ord) : p(make_pair(spec)), s(spec), rng(seed), ordered(ord) {}

  size_t uvs() const { return p.v ? p.v->user_value_size() : 0; }
  std::vector<uint8_t> rand_bytes(size_t n, uint32_t space) {
    std::vector<uint8_t> b(n, 0);
    if (n == 0) return b;
    uint32_t x = uint32_t(rng() % space);
    std::memcpy(b.data(), &x, std::min<size_t>(4, n));
    return b;
  }
  std::vector<uint8_t> rand_value() {
    std::vector<uint8_t> b(uvs());
    for (auto& c : b) c = uint8_t(rng());
    // per-CPU values: padding bytes beyond value_size are not stored
    if (s.type == kMapPercpuArray || s.type == kMapPercpuHash || s.type == kMapLruPercpuHash) {
      size_t stride = (s.vs + 7) / 8 * 8;
      for (size_t i = 0; i < b.size(); ++i)
        if (i % stride >= s.vs) b[i] = 0;
    }
    return b;
  }
  std::set<std::vector<uint8_t>> vm_keys() {
    std::set<std::vector<uint8_t>> out;
    std::vector<uint8_t> cur(s.ks), nx(s.ks);
    bool first = true;
    for (int guard = 0; guard < 100000 && p.v->get_next_key(first ? nullptr : cur.data(), nx.data()) == 0; ++guard) {
      out.insert(nx);
      cur = nx;
      first = false;
    }
    return out;
  }
  std::set<std::vector<uint8_t>> k_keys() {
    std::set<std::vector<uint8_t>> out;
    std::vector<uint8_t> cur(s.ks), nx(s.ks);
    bool first = true;
    for (int guard = 0; guard < 100000 && kernel::map_get_next_key(p.k.get(), first ? nullptr : cur.data(), nx.data()) == 0; ++guard) {
      out.insert(nx);
      cur = nx;
      first = false;
    }
    return out;
  }
};

uint64_t pick_flags(std::mt19937_64& rng) {
  static const uint64_t f[] = {0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 8};
  return f[rng() % (sizeof f / sizeof f[0])];
}

// Key/value ops (array, hash, percpu, lpm): update/lookup/delete/get_next_key/lookup_and_delete.
void run_kv(Differ& d, int n, uint32_t keyspace, const std::function<std::vector<uint8_t>()>& key_gen) {
  ASSERT_TRUE(d.p.k && d.p.v);
  for (int i = 0; i < n; ++i) {
    int op = int(d.rng() % 6);
    std::vector<uint8_t> key = key_gen();
    std::vector<uint8_t> kv(d.uvs(), 0xEE), vv(d.uvs(), 0xEE);
    std::string where = describe(d.s) + " op#" + std::to_string(i) + " kind " + std::to_string(op);
    bool present_before = d.k_keys().count(key) > 0;
    switch (op) {
      case 0:
      case 1: {  // update
        uint64_t fl = pick_flags(d.rng);
        auto val = d.rand_value();
        int kr = kernel::map_update(d.p.k.get(), key.data(), val.data(), fl);
        long vr = d.p.v->update_user(key.data(), val.data(), fl);
        if (d.lru && fl == kBpfAny) {
          EXPECT_EQ(kr, 0) << where;
          EXPECT_EQ(vr, 0) << where;
        } else if (!d.lru || (fl & ~3ull) || fl == 3) {
          EXPECT_EQ(vr, kr) << where << " update flags " << fl;
        }
        break;
      }
      case 2: {  // lookup
        uint64_t fl = d.rng() % 4 == 0 ? kBpfFLock : (d.rng() % 8 == 0 ? 8 : 0);
        int kr = kernel::map_lookup(d.p.k.get(), key.data(), kv.data(), fl);
        long vr = d.p.v->lookup_copy(key.data(), vv.data(), fl);
        if (!d.lru) {
          EXPECT_EQ(vr, kr) << where << " lookup flags " << fl;
          if (kr == 0 && vr == 0) EXPECT_EQ(vv, kv) << where;
        } else if (kr == 0 && vr == 0) {
          EXPECT_EQ(vv, kv) << where;
        }
        break;
      }
      case 3: {  // delete
        int kr = kernel::map_delete(d.p.k.get(), key.data());
        long vr = d.p.v->delete_user(key.data());
        if (!d.lru) EXPECT_EQ(vr, kr) << where << " delete";
        break;
      }
      case 4: {  // get_next_key
        bool null_key = d.rng() % 4 == 0;
        std::vector<uint8_t> kn(d.s.ks, 0), vn(d.s.ks, 0);
        int kr = kernel::map_get_next_key(d.p.k.get(), null_key ? nullptr : key.data(), kn.data());
        long vr = d.p.v->get_next_key(null_key ? nullptr : key.data(), vn.data());
        if (d.ordered) {
          EXPECT_EQ(vr, kr) << where << " get_next_key";
          if (kr == 0 && vr == 0) EXPECT_EQ(vn, kn) << where;
        } else if (!d.lru && (null_key || !present_before)) {
          EXPECT_EQ(vr, kr) << where << " get_next_key (first)";
        }
        break;
      }
      case 5: {  // lookup_and_delete
        uint64_t fl = d.rng() % 4 == 0 ? kBpfFLock : 0;
        int kr = kernel::map_lookup_and_delete(d.p.k.get(), key.data(), kv.data(), fl);
        long vr = d.p.v->lookup_and_delete(key.data(), vv.data(), fl);
        if (!d.lru) {
          EXPECT_EQ(vr, kr) << where << " lookup_and_delete flags " << fl;
          if (kr == 0 && vr == 0) EXPECT_EQ(vv, kv) << where;
        }
        break;
      }
    }
    if (!d.lru && i % 16 == 15) ASSERT_EQ(d.vm_keys(), d.k_keys()) << where << ": key sets differ";
    if (::testing::Test::HasFailure()) return;
  }
  if (d.lru) {
    EXPECT_LE(d.vm_keys().size(), d.s.max);
    EXPECT_LE(d.k_keys().size(), d.s.max);
  } else {
    EXPECT_EQ(d.vm_keys(), d.k_keys());
  }
}

}  // namespace

TEST(MapsKernel, RandomOpsArrays) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  for (uint32_t type : {uint32_t(kMapArray), uint32_t(kMapPercpuArray)}) {
    if (kernel_lacks(type)) continue;
    Differ d({type, 4, 12, 8}, 1234 + type, true);
    run_kv(d, 400, 10, [&] { return d.rand_bytes(4, 10); });
  }
}

TEST(MapsKernel, RandomOpsHashes) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::vector<Spec> specs = {{kMapHash, 4, 8, 6},          {kMapHash, 6, 5, 6, kMapFNoPrealloc},
                             {kMapHash, 16, 8, 12},        {kMapPercpuHash, 4, 12, 6},
                             {kMapPercpuHash, 4, 8, 6, kMapFNoPrealloc}};
  for (const Spec& s : specs) {
    if (kernel_lacks(s.type)) continue;
    Differ d(s, 99 + s.type * 7 + s.ks, false);
    run_kv(d, 500, 10, [&] { return d.rand_bytes(s.ks, 10); });
    if (HasFailure()) return;
  }
}

TEST(MapsKernel, RandomOpsLru) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  for (uint32_t type : {uint32_t(kMapLruHash), uint32_t(kMapLruPercpuHash)}) {
    if (kernel_lacks(type)) continue;
    Differ d({type, 4, 8, 64}, 555 + type, false);
    d.lru = true;
    run_kv(d, 400, 400, [&] { return d.rand_bytes(4, 400); });
    // the key just written is present in both
    uint32_t k = 100000;
    auto val = d.rand_value();
    ASSERT_EQ(kernel::map_update(d.p.k.get(), &k, val.data(), 0), 0);
    ASSERT_EQ(d.p.v->update_user(&k, val.data(), 0), 0);
    std::vector<uint8_t> a(d.uvs()), b(d.uvs());
    EXPECT_EQ(kernel::map_lookup(d.p.k.get(), &k, a.data()), 0);
    EXPECT_EQ(d.p.v->lookup_copy(&k, b.data(), 0), 0);
    EXPECT_EQ(a, b);
  }
}

TEST(MapsKernel, RandomOpsLpmTrie) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  for (uint32_t ks : {5u, 8u, 20u}) {
    if (kernel_lacks(kMapLpmTrie)) continue;
    Differ d({kMapLpmTrie, ks, 4, 12, kMapFNoPrealloc}, 77 + ks, true);
    uint32_t maxp = (ks - 4) * 8;
    auto gen = [&] {
      std::vector<uint8_t> k(ks, 0);
      uint32_t r = uint32_t(d.rng());
      uint32_t plen = (r % 7 == 0) ? maxp + 1 + r % 3 : uint32_t(d.rng() % (maxp + 1));
      if (d.rng() % 3 == 0) plen = maxp;  // lookups usually ask for a full address
      std::memcpy(k.data(), &plen, 4);
      for (uint32_t i = 4; i < ks; ++i) k[i] = uint8_t(d.rng() % 4 == 0 ? d.rng() : (i == 4 ? 10 : (d.rng() % 2) * 128));
      return k;
    };
    run_kv(d, 600, 0, gen);
    if (HasFailure()) return;
  }
}

// The same random operations on a pinned LPM trie (the store's table, lpm_region.cpp).
TEST(MapsKernel, RandomOpsPinnedLpmTrie) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  const std::string dir = "/dev/shm/bpfvm-lpm-diff-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  for (uint32_t ks : {5u, 8u, 20u}) {
    if (kernel_lacks(kMapLpmTrie)) continue;
    Differ d({kMapLpmTrie, ks, 4, 12, kMapFNoPrealloc}, 177 + ks, true);
    auto pinned = create_pinned_map(to_spec(d.s), dir + "/lpm" + std::to_string(ks));
    ASSERT_TRUE(pinned.ok()) << pinned.error().to_string();
    ASSERT_TRUE((*pinned)->shared());
    d.p.v = *pinned;
    uint32_t maxp = (ks - 4) * 8;
    auto gen = [&] {
      std::vector<uint8_t> k(ks, 0);
      uint32_t r = uint32_t(d.rng());
      uint32_t plen = (r % 7 == 0) ? maxp + 1 + r % 3 : uint32_t(d.rng() % (maxp + 1));
      if (d.rng() % 3 == 0) plen = maxp;
      std::memcpy(k.data(), &plen, 4);
      for (uint32_t i = 4; i < ks; ++i) k[i] = uint8_t(d.rng() % 4 == 0 ? d.rng() : (i == 4 ? 10 : (d.rng() % 2) * 128));
      return k;
    };
    run_kv(d, 600, 0, gen);
    if (HasFailure()) break;
  }
  std::filesystem::remove_all(dir);
}

TEST(MapsKernel, RandomOpsQueueStack) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  for (uint32_t type : {uint32_t(kMapQueue), uint32_t(kMapStack)}) {
    if (kernel_lacks(type)) continue;
    Differ d({type, 0, 8, 5}, 4242 + type, true);
    ASSERT_TRUE(d.p.k && d.p.v);
    for (int i = 0; i < 500; ++i) {
      std::vector<uint8_t> kv(8, 0xEE), vv(8, 0xEE);
      std::string where = describe(d.s) + " op#" + std::to_string(i);
      int op = int(d.rng() % 5);
      if (op <= 1) {
        uint64_t fl = pick_flags(d.rng);
        auto val = d.rand_value();
        EXPECT_EQ(d.p.v->update_user(nullptr, val.data(), fl), kernel::map_update(d.p.k.get(), nullptr, val.data(), fl))
            << where << " push flags " << fl;
      } else if (op == 2) {
        uint64_t fl = d.rng() % 4 == 0 ? kBpfFLock : 0;
        EXPECT_EQ(d.p.v->lookup_copy(nullptr, vv.data(), fl), kernel::map_lookup(d.p.k.get(), nullptr, kv.data(), fl))
            << where << " peek";
        EXPECT_EQ(vv, kv) << where;
      } else if (op == 3) {
        uint64_t fl = d.rng() % 5 == 0 ? kBpfFLock : 0;
        EXPECT_EQ(d.p.v->lookup_and_delete(nullptr, vv.data(), fl),
                  kernel::map_lookup_and_delete(d.p.k.get(), nullptr, kv.data(), fl))
            << where << " pop";
        EXPECT_EQ(vv, kv) << where;
      } else {
        uint8_t k4[4] = {}, n1[4], n2[4];
        EXPECT_EQ(d.p.v->delete_user(nullptr), kernel::map_delete(d.p.k.get(), nullptr)) << where << " delete";
        EXPECT_EQ(d.p.v->get_next_key(nullptr, n1), kernel::map_get_next_key(d.p.k.get(), nullptr, n2)) << where;
        (void)k4;
      }
      if (HasFailure()) return;
    }
  }
}

TEST(MapsKernel, BloomFilter) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  for (uint64_t nh : {0ull, 1ull, 3ull}) {
    if (kernel_lacks(kMapBloomFilter)) continue;
    Differ d({kMapBloomFilter, 0, 8, 500, 0, nh}, 9 + nh, false);
    ASSERT_TRUE(d.p.k && d.p.v);
    for (uint64_t v = 0; v < 500; ++v) {
      uint64_t x = v * 2654435761u;
      ASSERT_EQ(d.p.v->update_user(nullptr, &x, 0), kernel::map_update(d.p.k.get(), nullptr, &x, 0));
    }
    uint64_t x = 1;
    EXPECT_EQ(d.p.v->update_user(nullptr, &x, kBpfExist), kernel::map_update(d.p.k.get(), nullptr, &x, kBpfExist));
    for (uint64_t v = 0; v < 500; ++v) {
      uint64_t y = v * 2654435761u;
      ASSERT_EQ(d.p.v->lookup_copy(nullptr, &y, 0), 0);
      ASSERT_EQ(kernel::map_lookup(d.p.k.get(), nullptr, &y), 0);
    }
    int fk = 0, fv = 0;
    for (uint64_t v = 0; v < 20000; ++v) {
      uint64_t y = (v + 1) * 0x9E3779B97F4A7C15ull;
      fk += kernel::map_lookup(d.p.k.get(), nullptr, &y) == 0;
      fv += d.p.v->lookup_copy(nullptr, &y, 0) == 0;
    }
    // same sizing and hash count: false-positive rates within a factor of two (plus noise)
    EXPECT_LT(fv, 2 * fk + 100) << "hashes " << nh << " kernel fp " << fk << " bpfvm fp " << fv;
    EXPECT_GT(2 * fv + 100, fk) << "hashes " << nh << " kernel fp " << fk << " bpfvm fp " << fv;
    uint8_t k4[8];
    EXPECT_EQ(d.p.v->delete_user(&x), kernel::map_delete(d.p.k.get(), &x));
    EXPECT_EQ(d.p.v->get_next_key(nullptr, k4), kernel::map_get_next_key(d.p.k.get(), nullptr, k4));
    EXPECT_EQ(d.p.v->lookup_and_delete(nullptr, &x, 0), kernel::map_lookup_and_delete(d.p.k.get(), nullptr, &x));
  }
}

// Errors of operations a family does not support, from user space.
TEST(MapsKernel, UnsupportedOperationErrno) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::vector<Spec> specs = {{kMapArray, 4, 8, 4}, {kMapRingbuf, 0, 0, 4096}, {kMapProgArray, 4, 4, 4},
                             {kMapPerfEventArray, 4, 4, 4}, {kMapLpmTrie, 8, 8, 4, kMapFNoPrealloc},
                             {kMapPercpuArray, 4, 8, 4}, {kMapHash, 4, 8, 4}, {kMapQueue, 0, 4, 4}, {kMapBloomFilter, 0, 4, 4}};
  for (const Spec& s : specs) {
    if (kernel_lacks(s.type)) continue;
    Pair p = make_pair(s);
    ASSERT_TRUE(p.k && p.v);
    std::vector<uint8_t> key(std::max<uint32_t>(s.ks, 8), 0), kv(4096, 0), vv(4096, 0), n1(64), n2(64);
    std::string w = describe(s);
    if (s.ks == 0) {
      EXPECT_EQ(p.v->lookup_and_delete(nullptr, vv.data(), 0), kernel::map_lookup_and_delete(p.k.get(), nullptr, kv.data()))
          << w << " lookup_and_delete (no key)";
      EXPECT_EQ(p.v->lookup_copy(nullptr, vv.data(), 0), kernel::map_lookup(p.k.get(), nullptr, kv.data(), 0)) << w << " lookup (no key)";
      EXPECT_EQ(p.v->delete_user(nullptr), kernel::map_delete(p.k.get(), nullptr)) << w << " delete (no key)";
      EXPECT_EQ(p.v->update_user(nullptr, vv.data(), 0), kernel::map_update(p.k.get(), nullptr, kv.data(), 0)) << w << " update (no key)";
    }
    EXPECT_EQ(p.v->lookup_and_delete(key.data(), vv.data(), 0), kernel::map_lookup_and_delete(p.k.get(), key.data(), kv.data()))
        << w << " lookup_and_delete";
    EXPECT_EQ(p.v->lookup_and_delete(key.data(), vv.data(), 8), kernel::map_lookup_and_delete(p.k.get(), key.data(), kv.data(), 8))
        << w << " lookup_and_delete bad flags";
    EXPECT_EQ(p.v->lookup_copy(key.data(), vv.data(), 0), kernel::map_lookup(p.k.get(), key.data(), kv.data(), 0)) << w << " lookup";
    EXPECT_EQ(p.v->delete_user(key.data()), kernel::map_delete(p.k.get(), key.data())) << w << " delete";
    if (s.type != kMapProgArray && s.type != kMapPerfEventArray)
      EXPECT_EQ(p.v->update_user(key.data(), vv.data(), 0), kernel::map_update(p.k.get(), key.data(), kv.data(), 0)) << w << " update";
    EXPECT_EQ(p.v->get_next_key(nullptr, n1.data()), kernel::map_get_next_key(p.k.get(), nullptr, n2.data())) << w << " get_next_key";
  }
}

// BPF_MAP_FREEZE: every user-space write of a frozen map is refused with the kernel's errno (EPERM,
// before the arguments are looked at); lookups keep working.
TEST(MapsKernel, FrozenMapRefusesUserSpaceWrites) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::vector<Spec> specs = {{kMapArray, 4, 8, 4}, {kMapPercpuArray, 4, 8, 4}, {kMapHash, 4, 8, 4},
                             {kMapPercpuHash, 4, 8, 4}, {kMapLruHash, 4, 8, 4}, {kMapQueue, 0, 4, 4},
                             {kMapStack, 0, 4, 4}, {kMapBloomFilter, 0, 4, 4}, {kMapLpmTrie, 8, 8, 4, kMapFNoPrealloc}};
  for (const Spec& s : specs) {
    if (kernel_lacks(s.type)) continue;
    Pair p = make_pair(s);
    ASSERT_TRUE(p.k && p.v);
    std::string w = describe(s);
    std::vector<uint8_t> key(std::max<uint32_t>(s.ks, 8), 0), kv(4096, 0), vv(4096, 0);
    key[0] = 32;  // an LPM prefix length that fits the 4 data bytes
    const void* k = s.ks ? key.data() : nullptr;
    // One element before freezing (the same in both).
    ASSERT_EQ(p.v->update_user(k, vv.data(), 0), kernel::map_update(p.k.get(), k, kv.data(), 0)) << w;
    ASSERT_EQ(kernel::map_freeze(p.k.get()), 0) << w << ": the kernel refused to freeze";
    EXPECT_FALSE(p.v->frozen());
    p.v->freeze();
    EXPECT_TRUE(p.v->frozen());
    EXPECT_EQ(p.v->update_user(k, vv.data(), 0), kernel::map_update(p.k.get(), k, kv.data(), 0)) << w << " update";
    EXPECT_EQ(p.v->update_user(k, vv.data(), 0), -EPERM) << w;
    EXPECT_EQ(p.v->delete_user(k), kernel::map_delete(p.k.get(), k)) << w << " delete";
    EXPECT_EQ(p.v->lookup_and_delete(k, vv.data(), 0), kernel::map_lookup_and_delete(p.k.get(), k, kv.data())) << w
        << " lookup_and_delete";
    EXPECT_EQ(p.v->lookup_copy(k, vv.data(), 0), kernel::map_lookup(p.k.get(), k, kv.data(), 0)) << w << " lookup";
  }
}

// ---- BPF_F_LOCK: values that start with a struct bpf_spin_lock (needs BTF in the kernel) ----------
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

long sys_bpf(int cmd, union bpf_attr* attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

// BTF: [1] int, [2] struct bpf_spin_lock { int val; }, [3] struct val { bpf_spin_lock lock; int a, b, c; }
std::vector<uint8_t> spin_lock_btf() {
  const char strs[] = "\0int\0bpf_spin_lock\0val\0lock\0a\0b\0c";
  auto off = [&](const char* name) {
    for (size_t i = 0; i < sizeof strs; ++i)
      if (std::strcmp(strs + i, name) == 0 && (i == 0 || strs[i - 1] == 0)) return uint32_t(i);
    return 0u;
  };
  std::vector<uint32_t> t;
  // [1] INT int: size 4, signed, 32 bits
  t.insert(t.end(), {off("int"), 1u << 24, 4, (1u << 24) | 32});
  // [2] STRUCT bpf_spin_lock size 4 { val: int @0 }
  t.insert(t.end(), {off("bpf_spin_lock"), (4u << 24) | 1, 4, off("val"), 1, 0});
  // [3] STRUCT val size 16 { lock @0, a @32, b @64, c @96 }
  t.insert(t.end(), {off("val"), (4u << 24) | 4, 16, off("lock"), 2, 0, off("a"), 1, 32, off("b"), 1, 64, off("c"), 1, 96});
  std::vector<uint8_t> out(24);
  uint32_t type_len = uint32_t(t.size() * 4), str_len = sizeof strs;
  uint16_t magic = 0xeB9F;
  std::memcpy(&out[0], &magic, 2);
  out[2] = 1;  // version
  out[3] = 0;
  uint32_t hdr[5] = {24, 0, type_len, type_len, str_len};
  std::memcpy(&out[4], hdr, sizeof hdr);
  const uint8_t* tb = reinterpret_cast<const uint8_t*>(t.data());
  out.insert(out.end(), tb, tb + type_len);
  out.insert(out.end(), strs, strs + str_len);
  return out;
}

}  // namespace

TEST(MapsKernel, SpinLockFlagSemantics) {
  REQUIRE_KERNEL();
  CpuScope cpus;
  std::vector<uint8_t> btf = spin_lock_btf();
  union bpf_attr a;
  std::memset(&a, 0, sizeof a);
  a.btf = uint64_t(uintptr_t(btf.data()));
  a.btf_size = uint32_t(btf.size());
  int btf_fd = int(sys_bpf(BPF_BTF_LOAD, &a));
  if (btf_fd < 0) GTEST_SKIP() << "BPF_BTF_LOAD failed: errno " << errno;
  kernel::Fd btf_owner(btf_fd);
  // which map types may hold a bpf_spin_lock
  for (uint32_t type : {uint32_t(kMapPercpuHash), uint32_t(kMapLruHash), uint32_t(kMapPercpuArray),
                        uint32_t(kMapLruPercpuHash), uint32_t(kMapHash), uint32_t(kMapArray)}) {
    std::memset(&a, 0, sizeof a);
    a.map_type = type;
    a.key_size = 4;
    a.value_size = 16;
    a.max_entries = 4;
    a.btf_fd = uint32_t(btf_fd);
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 3;
    int fd = int(sys_bpf(BPF_MAP_CREATE, &a));
    long kret = fd >= 0 ? 0 : -long(errno);
    if (fd >= 0) close(fd);
    MapSpec s = to_spec({type, 4, 16, 4});
    s.spin_lock_off = 0;
    std::string why;
    EXPECT_EQ(check_map_spec(s, &why), kret) << map_type_name(type) << " with a spin lock (" << why << ")";
  }
  for (uint32_t type : {uint32_t(kMapHash), uint32_t(kMapArray)}) {
    std::memset(&a, 0, sizeof a);
    a.map_type = type;
    a.key_size = 4;
    a.value_size = 16;
    a.max_entries = 4;
    a.btf_fd = uint32_t(btf_fd);
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 3;
    int fd = int(sys_bpf(BPF_MAP_CREATE, &a));
    ASSERT_GE(fd, 0) << "kernel refused a spin-locked " << map_type_name(type) << ": errno " << errno;
    kernel::Fd kfd(fd);
    MapSpec s = to_spec({type, 4, 16, 4});
    s.spin_lock_off = 0;
    auto vm = *create_map(s);
    std::mt19937_64 rng(31 + type);
    int locked_ok = 0;
    for (int i = 0; i < 400; ++i) {
      uint32_t key = uint32_t(rng() % 6);
      uint32_t val[4] = {uint32_t(rng()), uint32_t(rng()), uint32_t(rng()), uint32_t(rng())};
      uint32_t ko[4] = {7, 7, 7, 7}, vo[4] = {7, 7, 7, 7};
      static const uint64_t uf[] = {0, 1, 2, 4, 5, 6, 7, 8};
      std::string where = std::string(map_type_name(type)) + " op#" + std::to_string(i);
      switch (rng() % 4) {
        case 0:
        case 1: {
          uint64_t f = uf[rng() % 8];
          long vr = vm->update_user(&key, val, f);
          EXPECT_EQ(vr, kernel::map_update(kfd.get(), &key, val, f)) << where << " update " << f;
          if (vr == 0 && (f & kBpfFLock)) ++locked_ok;
          break;
        }
        case 2: {
          uint64_t f = rng() % 2 ? kBpfFLock : 0;
          long vr = vm->lookup_copy(&key, vo, f);
          EXPECT_EQ(vr, kernel::map_lookup(kfd.get(), &key, ko, f)) << where << " lookup " << f;
          if (vr == 0) EXPECT_EQ(std::memcmp(vo, ko, 16), 0) << where << " value (lock word reads " << ko[0] << ")";
          break;
        }
        case 3: {
          uint64_t f = rng() % 2 ? kBpfFLock : 0;
          long vr = vm->lookup_and_delete(&key, vo, f);
          EXPECT_EQ(vr, kernel::map_lookup_and_delete(kfd.get(), &key, ko, f)) << where << " lookup_and_delete " << f;
          if (vr == 0) EXPECT_EQ(std::memcmp(vo, ko, 16), 0) << where;
          break;
        }
      }
      if (HasFailure()) return;
    }
    EXPECT_GT(locked_ok, 20) << "BPF_F_LOCK updates were exercised";
  }
}
