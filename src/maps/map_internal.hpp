// Internal pieces shared by the map families (not part of the public API).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <memory>
#include <string>
#include <thread>

#include <time.h>

#include "bpfvm/map.hpp"
#include "store/region.hpp"

namespace bpfvm::maps {

inline constexpr uint32_t kAccessMask = kMapFRdonly | kMapFWronly | kMapFRdonlyProg | kMapFWronlyProg;
inline constexpr uint64_t kKmallocMaxSize = 1ull << 22;  // x86-64: KMALLOC_MAX_SIZE (4 MiB)
inline constexpr uint32_t kPcpuMinUnitSize = 32768;      // PCPU_MIN_UNIT_SIZE
inline constexpr uint32_t kPageSize = 4096;

inline uint64_t round_up8(uint64_t v) { return (v + 7) & ~7ull; }
// CLOCK_MONOTONIC in ns (the clock of perf records' PERF_SAMPLE_TIME here).
inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
inline bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }
inline uint64_t roundup_pow2(uint64_t v) {
  uint64_t r = 1;
  while (r < v) r <<= 1;
  return r;
}
// bpf_map_flags_access_ok: not both read-only and write-only for programs.
inline bool access_ok(uint32_t flags) {
  return (flags & (kMapFRdonlyProg | kMapFWronlyProg)) != (kMapFRdonlyProg | kMapFWronlyProg);
}

// Sets *why and returns -err (a one-liner for check functions).
inline long fail(std::string* why, long err, const std::string& msg) {
  if (why) *why = msg;
  return -err;
}

// 64-bit hash of a key (own design: multiply-xorshift over 8-byte words), seeded per map.
inline uint64_t hash_mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}
// BPF_NOEXIST / BPF_EXIST (BPF_F_LOCK aside) against whether the key is there: 0 or -errno.
inline long check_update_flags(bool exists, uint64_t flags) {
  uint64_t f = flags & ~kBpfFLock;
  if (exists && f == kBpfNoexist) return -EEXIST;
  if (!exists && f == kBpfExist) return -ENOENT;
  return 0;
}

// The value layout of a hash element, for writing a whole value (private and pinned hashes alike).
struct HashValueLayout {
  bool percpu;
  bool has_lock;        // a bpf_spin_lock in the value: copies go around it
  uint32_t value_size;
  size_t stride;        // bytes per value slot (value_size rounded up to 8)
  int ncpus;
};

// Sets an element's value: a plain value (`val`), or every per-CPU slot (`cpu_val(c)`) from a
// user-space array (onallcpus) or only slot `me` with the others zeroed. `copy(dst, src)` copies
// a value as the map does (Map::copy_value: the lock word kept).
template <class CpuVal, class Copy>
void fill_hash_value(const HashValueLayout& l, uint8_t* val, CpuVal cpu_val, int me, Copy copy, const void* value,
                     bool onallcpus) {
  if (!l.percpu) {
    if (!l.has_lock && value) {  // the common case: one copy, zero only the padding
      std::memcpy(val, value, l.value_size);
      if (l.stride > l.value_size) std::memset(val + l.value_size, 0, l.stride - l.value_size);
      return;
    }
    std::memset(val, 0, l.stride);
    copy(val, value);
    return;
  }
  for (int c = 0; c < l.ncpus; ++c) {
    uint8_t* d = cpu_val(c);
    std::memset(d, 0, l.stride);
    if (onallcpus)
      copy(d, static_cast<const uint8_t*>(value) + size_t(c) * l.stride);
    else if (c == me)
      copy(d, value);
  }
}

// An element of the store's hash family (hash_region.cpp): this header, the key (rounded up to 8
// bytes), the value(s). Declared here for readers that check that an element they found earlier
// still holds a key (map_in_map_region.cpp): it does while owner == 0 and bit 0 of linked is set
// (linking sets linked, then links, then clears owner; unlinking sets owner, then unlinks, then
// clears linked).
struct StoreHashElem {
  std::atomic<uint32_t> next;
  uint32_t hash;
  std::atomic<uint32_t> owner;   // pid holding it outside a chain and the free list, else 0
  std::atomic<uint32_t> linked;  // bit 0: in a chain; bits 1-31 (LRU maps): the tick of its last use
  uint8_t* key() { return reinterpret_cast<uint8_t*>(this + 1); }
};
static_assert(sizeof(StoreHashElem) == 16);

// Whether two LPM keys' data agree on their first `plen` bits.
inline bool prefix_bits_equal(const uint8_t* a, const uint8_t* b, uint32_t plen) {
  uint32_t full = plen / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  if (plen % 8) {
    uint8_t m = uint8_t(0xFF00u >> (plen % 8));
    if ((a[full] & m) != (b[full] & m)) return false;
  }
  return true;
}

inline uint64_t hash_bytes(const void* p, size_t n, uint64_t seed) {
  if (n == 4) {  // the common key sizes: one load, one multiply, one mix
    uint32_t w;
    std::memcpy(&w, p, 4);
    return hash_mix((seed ^ (4 * 0x9E3779B97F4A7C15ull)) ^ (uint64_t(w) * 0x9FB21C651E98DF25ull));
  }
  if (n == 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return hash_mix((seed ^ (8 * 0x9E3779B97F4A7C15ull)) ^ (w * 0x9FB21C651E98DF25ull));
  }
  const uint8_t* b = static_cast<const uint8_t*>(p);
  uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);
  auto mix = [](uint64_t x) {
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return x;
  };
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, b, 8);
    h = mix(h ^ (w * 0x9FB21C651E98DF25ull));
    b += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, b, n);
    h = mix(h ^ (w * 0x9FB21C651E98DF25ull) ^ (n << 59));
  }
  return mix(h);
}

// A small test-and-test-and-set spin lock (bucket locks; critical sections are tiny).
class SpinLock {
 public:
  void lock() {
    for (;;) {
      if (!f_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      while (f_.load(std::memory_order_relaxed)) {
        if (++spins > 64) {
          std::this_thread::yield();
          spins = 0;
        }
      }
    }
  }
  void unlock() { f_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> f_{false};
};

// Epoch-based reclamation (src/maps/epoch.cpp). retire() hands over memory that may still be read
// by threads in a read-side section; `del` frees it once no such thread can hold it.
void retire(void* p, void (*del)(void*));
// Seals this thread's batch of retired elements now (see epoch.cpp).
void seal_retired();

// Memory of hash-map elements: a per-thread cache of freed blocks per 16-byte size class.
// elem_class(size) gives the class (0: too large, plain malloc/free); elem_alloc(size, cls)
// returns cls * 16 bytes (or size bytes for class 0); elem_free(p, cls) gives them back.
uint8_t elem_class(size_t size);
void* elem_alloc(size_t size, uint8_t cls);
void elem_free(void* p, uint8_t cls);
// Called by lookup paths: pins the thread conservatively when it is outside any section.
// The fast check reads a trivially-constructed thread_local (no TLS wrapper call).
struct ReaderState {
  int depth;
  bool sticky;
};
extern thread_local constinit ReaderState t_reader __attribute__((tls_model("initial-exec")));
void reader_touch_slow();
inline void reader_touch() {
  if (__builtin_expect(t_reader.depth == 0 && !t_reader.sticky, 0)) reader_touch_slow();
}
// RAII for internal short read-side sections (user-space lookups, iteration). Unlike the public
// MapReadSection, leaving it keeps a conservative pin the thread already had (a helper may call
// into a map while its program still holds pointers from earlier lookups).
void internal_read_unlock();
struct ReadGuard {
  ReadGuard() { map_read_lock(); }
  ~ReadGuard() { internal_read_unlock(); }
};

// A zero-filled array from calloc: large maps cost address space, not memory, until touched
// (the kernel's maps are allocated up front; a hostile max_entries must not fill RAM here).
// T must be valid when all-zero (integers, pointers, lock-free atomics of those).
template <class T>
class ZeroArray {
 public:
  ZeroArray() = default;
  explicit ZeroArray(size_t n) : n_(n) {
    p_ = static_cast<T*>(std::calloc(n ? n : 1, sizeof(T)));
    if (!p_) throw std::bad_alloc();
  }
  ZeroArray(ZeroArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  ZeroArray& operator=(ZeroArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~ZeroArray() { std::free(p_); }
  T& operator[](size_t i) const { return p_[i]; }
  T* begin() const { return p_; }
  T* end() const { return p_ + n_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Random per-map seed (BPF_F_ZERO_SEED gives 0).
uint64_t random_seed();

// Map ids and the id registry (map_base.cpp).
uint32_t register_map(Map* m);
void unregister_map(uint32_t id);

// ---- the one row per map type (registry.cpp) ---------------------------------------------------
using CheckFn = long (*)(const MapSpec& spec, std::string* why);
using MakeFn = std::shared_ptr<Map> (*)(const MapSpec& spec);
struct MapTypeRow {
  uint32_t type;
  const char* name;  // bpftool's name
  CheckFn check;     // the kernel's map_alloc_check rules; 0 or -errno
  MakeFn make;
  // Families whose whole state lives in a store::Region (those can be pinned); nullptr otherwise.
  const store::RegionFamily* region;
};
const MapTypeRow* find_row(uint32_t type);

// Family entry points (one file each).
long array_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_array(const MapSpec&);
std::shared_ptr<Map> make_percpu_array(const MapSpec&);
long fd_array_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_prog_array(const MapSpec&);
long map_in_map_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_array_of_maps(const MapSpec&);
std::shared_ptr<Map> make_hash_of_maps(const MapSpec&);
long hash_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_hash(const MapSpec&);
long perf_event_array_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_perf_event_array(const MapSpec&);
long lpm_trie_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_lpm_trie(const MapSpec&);
long queue_stack_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_queue_stack(const MapSpec&);
long bloom_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_bloom(const MapSpec&);
long ringbuf_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_ringbuf(const MapSpec&);
// typed-only families (typed.cpp): kernel key/value rules, basic array or hash storage.
long devmap_check(const MapSpec&, std::string*);
long cpumap_check(const MapSpec&, std::string*);
long xskmap_check(const MapSpec&, std::string*);
long stack_trace_check(const MapSpec&, std::string*);
long sockmap_check(const MapSpec&, std::string*);
long sockhash_check(const MapSpec&, std::string*);
long cgroup_storage_check(const MapSpec&, std::string*);
long local_storage_check(const MapSpec&, std::string*);
long struct_ops_check(const MapSpec&, std::string*);
long arena_check(const MapSpec&, std::string*);
std::shared_ptr<Map> make_typed_array(const MapSpec&);
std::shared_ptr<Map> make_typed_hash(const MapSpec&);

std::string fmt_inner_unsupported(uint32_t type);
bool inner_meta_equal(const MapSpec& inner, const MapSpec& m);

// Region layouts (the store): array.cpp, hash_region.cpp, ringbuf.cpp, queue_stack.cpp, bloom_filter.cpp,
// perf_region.cpp.
extern const store::RegionFamily kArrayRegion;
extern const store::RegionFamily kHashRegion;
extern const store::RegionFamily kRingbufRegion;
extern const store::RegionFamily kQueueStackRegion;
extern const store::RegionFamily kBloomRegion;
extern const store::RegionFamily kPerfRegion;  // perf_region.cpp (pinned perf_event_array)
extern const store::RegionFamily kProgArrayRegion;
extern const store::RegionFamily kMapInMapRegion;  // map_in_map_region.cpp (pinned array/hash of maps)
extern const store::RegionFamily kLpmRegion;  // lpm_region.cpp (pinned lpm_trie)  // array.cpp (the shape only: slots are per process)

// A pinned map-in-map's inner map at `key`, opened in this process (nullptr otherwise).
std::shared_ptr<Map> pinned_map_in_map_inner(Map& outer, const void* key);

// Hash-table storage shared by hash maps and the typed hash-like maps (hash.cpp).
std::shared_ptr<Map> make_plain_hash_storage(const MapSpec& spec);

}  // namespace bpfvm::maps

namespace bpfvm::maps {
// Pinned hash maps (hash_region.cpp), for tests: the invariant check ("" when valid) and the
// number of repairs done after dead processes.
std::string region_hash_check(Map* m, bool allow_dead_owned = false);
uint32_t region_hash_repairs(Map* m);
void region_hash_repair(Map* m);
}  // namespace bpfvm::maps
