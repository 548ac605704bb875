// bpfvm: maps with the kernel's semantics.
// One ops table per map family (src/maps/<family>.cpp), registered by one row in src/maps/registry.cpp.
//
// Semantics follow the running kernel's bpf() map commands (checked by tests/maps_kernel_test.cpp):
// return values are 0 or a negative errno exactly as the kernel's helpers and syscalls give them
// (-ENOTSUPP is the kernel-internal 524).
//
// Concurrency model (see src/maps/epoch.hpp):
// - Arrays are updated in place, like the kernel: programs' atomic adds work on shared memory.
// - Hash maps never overwrite a visible element: an update links a new element in front of the old
//   one and then unlinks the old one (the kernel's RCU discipline), so a reader sees the old or the new
//   value, never a mix. Unlinked elements are freed by epoch-based reclamation: a thread inside a
//   MapReadSection (one per program run, like rcu_read_lock) keeps every element it could have seen
//   alive. A thread that calls lookup() outside any section is pinned conservatively (nothing it could
//   see is freed) until it next leaves a section or calls map_quiescent().
// - Per-CPU values: one slot per worker (current_cpu()); user space reads/writes an array of
//   round_up(value_size, 8) bytes per possible CPU.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bpfvm/result.hpp"

namespace bpfvm {

namespace store {
class Region;
}

// Map type numbers are the kernel's (enum bpf_map_type in <linux/bpf.h>).
enum MapType : uint32_t {
  kMapUnspec = 0, kMapHash = 1, kMapArray = 2, kMapProgArray = 3, kMapPerfEventArray = 4,
  kMapPercpuHash = 5, kMapPercpuArray = 6, kMapStackTrace = 7, kMapCgroupArray = 8,
  kMapLruHash = 9, kMapLruPercpuHash = 10, kMapLpmTrie = 11, kMapArrayOfMaps = 12,
  kMapHashOfMaps = 13, kMapDevmap = 14, kMapSockmap = 15, kMapCpumap = 16, kMapXskmap = 17,
  kMapSockhash = 18, kMapCgroupStorage = 19, kMapReuseportSockarray = 20,
  kMapPercpuCgroupStorage = 21, kMapQueue = 22, kMapStack = 23, kMapSkStorage = 24,
  kMapDevmapHash = 25, kMapStructOps = 26, kMapRingbuf = 27, kMapInodeStorage = 28,
  kMapTaskStorage = 29, kMapBloomFilter = 30, kMapUserRingbuf = 31, kMapCgrpStorage = 32,
  kMapArena = 33,
};

// Update flags.
inline constexpr uint64_t kBpfAny = 0, kBpfNoexist = 1, kBpfExist = 2, kBpfFLock = 4;
// Map creation flags (map_flags).
inline constexpr uint32_t kMapFNoPrealloc = 1u << 0, kMapFNoCommonLru = 1u << 1,
                          kMapFNumaNode = 1u << 2, kMapFRdonly = 1u << 3, kMapFWronly = 1u << 4,
                          kMapFStackBuildId = 1u << 5, kMapFZeroSeed = 1u << 6,
                          kMapFRdonlyProg = 1u << 7, kMapFWronlyProg = 1u << 8,
                          kMapFClone = 1u << 9, kMapFMmapable = 1u << 10,
                          kMapFPreserveElems = 1u << 11, kMapFInnerMap = 1u << 12;
// errno values the kernel's map code returns (ENOTSUPP is kernel-internal but reaches user space).
inline constexpr long kENOTSUPP = 524;

struct MapSpec {
  std::string name;
  uint32_t type = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t max_entries = 0;
  uint32_t flags = 0;
  uint32_t pinning = 0;       // LIBBPF_PIN_NONE 0, LIBBPF_PIN_BY_NAME 1 (iproute2: 2 = global namespace)
  uint32_t numa_node = 0;
  uint64_t map_extra = 0;     // bloom filter: low 4 bits = number of hash functions (0 = 5)
  int32_t spin_lock_off = -1; // offset of a struct bpf_spin_lock in the value (from BTF), -1 none
  // map-in-map: the spec of the inner map (its type, sizes). Required for array/hash_of_maps.
  std::shared_ptr<MapSpec> inner;
};

// The BTF describing a map's key and value (BPF_MAP_CREATE's btf_fd, btf_key_type_id,
// btf_value_type_id): raw BTF as in an object's .BTF section, and the two type ids in it (0: none).
// Pinned maps keep it in their file; bpfvm map dump prints values through it (btf_format.hpp).
struct MapBtf {
  std::vector<uint8_t> data;
  uint32_t key_type_id = 0;
  uint32_t value_type_id = 0;
};

// ---- per-CPU model ---------------------------------------------------------------------------
int current_cpu();              // this thread's worker index (default 0)
void set_current_cpu(int cpu);
int possible_cpus();            // default: the machine's CPU count; the deterministic mode fixes it
void set_possible_cpus(int n);  // affects maps created afterwards

// ---- read-side sections (RCU-like) -----------------------------------------------------------
// Wrap each program run (and any host code that keeps pointers returned by lookup()) in one.
void map_read_lock();
void map_read_unlock();
struct MapReadSection {
  MapReadSection() { map_read_lock(); }
  ~MapReadSection() { map_read_unlock(); }
  MapReadSection(const MapReadSection&) = delete;
  MapReadSection& operator=(const MapReadSection&) = delete;
};
// Declares this thread holds no pointer obtained from lookup() (ends a conservative pin).
void map_quiescent();
// Waits until no element retired so far can be in use and frees them (tests, teardown).
void map_synchronize();

// ---- struct bpf_spin_lock: the one lock protocol shared by BPF_F_LOCK and the spin_lock helpers --
void map_spin_lock(void* lock);    // lock points at the 4-byte bpf_spin_lock in a map value
void map_spin_unlock(void* lock);

class Map : public std::enable_shared_from_this<Map> {
 public:
  explicit Map(MapSpec spec);
  virtual ~Map();
  const MapSpec& spec() const { return spec_; }
  // Process-wide id (like the kernel's map id), unique while the process lives.
  uint32_t id() const { return id_; }

  // ---- program side (helpers) ----------------------------------------------------------------
  // Pointer to the value for this key (per-CPU maps: the current worker's slot), or nullptr.
  // array_of_maps / hash_of_maps: the inner Map* itself (as the kernel returns struct bpf_map *).
  virtual void* lookup(const void* key) = 0;
  // bpf_map_lookup_percpu_elem: the slot of `cpu`; nullptr for other maps or cpu out of range.
  virtual void* lookup_percpu(const void* key, uint32_t cpu) { return nullptr; }
  // 0 or a negative errno, as the kernel's helpers return. Program side: per-CPU maps set the
  // current worker's slot only.
  virtual long update(const void* key, const void* value, uint64_t flags) = 0;
  virtual long remove(const void* key) = 0;
  // Queue / stack / bloom filter.
  virtual long push(const void* value, uint64_t flags);
  virtual long pop(void* value);
  virtual long peek(void* value);
  // bpf_for_each_map_elem: cb returns 0 to continue, 1 to stop. Returns the number of elements
  // visited, or a negative errno when the map type does not support iteration by programs.
  using ForEachFn = long (*)(void* ctx, const void* key, void* value);
  virtual long for_each(ForEachFn cb, void* ctx);

  // ---- user-space side (the bpf() syscall's map commands) -------------------------------------
  // Copies the value out (per-CPU maps: one value per possible CPU, each rounded up to 8 bytes).
  // Queue/stack: peek (key ignored). Bloom filter: value_out is the value to test (0 = maybe
  // present, -ENOENT = absent). Map-in-map: the inner map's id(); prog_array: the program id.
  virtual long lookup_copy(const void* key, void* value_out, uint64_t flags);
  // BPF_MAP_UPDATE_ELEM from user space (per-CPU maps take one value per possible CPU; queue,
  // stack and bloom filter push; map-in-map takes a map id, prog_array a program id).
  // update_user, delete_user and lookup_and_delete (queue/stack: pop) are user-space writes: on a
  // frozen map they return -EPERM before looking at their arguments, as the kernel's bpf() does.
  long update_user(const void* key, const void* value, uint64_t flags);
  long delete_user(const void* key);
  virtual long get_next_key(const void* key, void* next_key) = 0;  // key == nullptr: first key
  long lookup_and_delete(const void* key, void* value_out, uint64_t flags);
  // Size of one user-space value (per-CPU: round_up(value_size, 8) * ncpus).
  virtual size_t user_value_size() const { return spec_.value_size; }
  // BPF_MAP_LOOKUP_BATCH / LOOKUP_AND_DELETE_BATCH, generic form (keys as batch tokens, like the
  // kernel's generic_map_lookup_batch): in_batch == nullptr starts at the first key; out_batch
  // receives the last key copied. *count: in = capacity, out = number copied. Returns 0, or
  // -ENOENT when the end was reached (with *count possibly > 0).
  long lookup_batch(const void* in_batch, void* out_batch, void* keys, void* values,
                    uint32_t* count, uint64_t flags, bool and_delete = false);

  // Number of possible CPUs this map was created for (per-CPU maps; 1 otherwise).
  int ncpus() const { return ncpus_; }

  // ---- the store (pinned maps) -----------------------------------------------------------------
  // True when the map's memory is a pinned map file shared with other processes.
  bool shared() const;
  // The path the map was created or opened at ("" for private maps).
  const std::string& pin_path() const { return pin_path_; }
  // The store's id of a pinned map (the file's inode number; 0 for private maps).
  uint64_t store_id() const { return store_id_; }
  // BPF_MAP_FREEZE: user-space writes (update_user, delete_user, lookup_and_delete, their batch
  // forms; so the CLI and the C API too) are refused afterwards with -EPERM; programs keep
  // writing, as in the kernel. Pinned maps keep the flag in their file, so a map frozen by one
  // process is frozen for all.
  bool frozen() const;
  void freeze();
  // The BTF of the map's key and value (nullptr when it has none). A pinned map has the BTF it was
  // created with, in every process.
  std::shared_ptr<const MapBtf> btf() const { return btf_; }
  void set_btf(std::shared_ptr<const MapBtf> btf) { btf_ = std::move(btf); }

  // ---- engines' fast paths ---------------------------------------------------------------------
  // A function an engine may call instead of the generic bpf_map_lookup_elem helper when the map
  // argument is a constant of the program (lddw): r0 = fn(map, key), exactly what lookup() returns
  // (specialised per family and key size, e.g. the hash map's for 4- and 8-byte keys). It does no
  // checked-mode bookkeeping (RunContext::allow_region): unchecked runs (JIT) only.
  using LookupFn = void* (*)(Map* map, const void* key);
  LookupFn lookup_fn() const { return lookup_fn_; }
  // BPF_MAP_TYPE_ARRAY (not per-CPU): the value of u32 key k is at base + k * stride when
  // k < max_entries, else NULL; an engine may inline that as the kernel's array_map_gen_lookup
  // does. false for every other map.
  struct InlineArray {
    uint8_t* base = nullptr;
    uint32_t stride = 0;
    uint32_t max_entries = 0;
  };
  virtual bool inline_array(InlineArray* out) const { return false; }

  // Family tag (set by the family base classes below), so that helpers find a map's family
  // interface without a dynamic_cast: see as_ringbuf(), as_perf_event_array(), as_prog_array().
  enum Family : uint8_t { kFamilyOther, kFamilyRingbuf, kFamilyPerfEventArray, kFamilyProgArray };
  Family family() const { return family_; }

 protected:
  // What the user-space writes do once the frozen check passed (the families override these).
  virtual long do_update_user(const void* key, const void* value, uint64_t flags);
  virtual long do_delete_user(const void* key) { return remove(key); }
  virtual long do_lookup_and_delete(const void* key, void* value_out, uint64_t flags);

  LookupFn lookup_fn_ = &generic_lookup;
  Family family_ = kFamilyOther;
  static void* generic_lookup(Map* m, const void* key) { return m->lookup(key); }

  // Offsets helpers for values with a bpf_spin_lock.
  void copy_value(void* dst, const void* src) const;          // skips the lock word
  void copy_value_locked(void* dst, const void* src) const;   // dst's lock held during copy
  void copy_value_from_locked(void* dst, const void* src) const;  // src's lock held; dst lock = 0
  bool has_lock() const { return spec_.spin_lock_off >= 0; }

  MapSpec spec_;
  int ncpus_ = 1;
  uint32_t id_ = 0;
  std::shared_ptr<store::Region> region_;  // set by families that live in a Region
  std::atomic<bool> frozen_{false};

 private:
  friend struct StoreAccess;
  std::string pin_path_;
  uint64_t store_id_ = 0;
  std::shared_ptr<const MapBtf> btf_;
};

// ---- families with extra interfaces -----------------------------------------------------------

// BPF_MAP_TYPE_PROG_ARRAY: holds programs for bpf_tail_call. The runtime stores opaque program
// handles; prog_at() is a single acquire load, safe while a MapReadSection is held.
class ProgArrayMap : public Map {
 public:
  explicit ProgArrayMap(MapSpec spec) : Map(std::move(spec)) { family_ = kFamilyProgArray; }
  virtual const void* prog_at(uint32_t index) const = 0;
  // Stores a program (nullptr clears). -E2BIG when index >= max_entries.
  virtual long set_prog(uint32_t index, std::shared_ptr<const void> prog, uint32_t prog_id) = 0;
  // Resolves program ids for update_user() (BPF_MAP_UPDATE_ELEM with a program id as value).
  using ProgResolver = std::function<std::shared_ptr<const void>(uint32_t prog_id)>;
  static void set_resolver(ProgResolver r);
};

// BPF_MAP_TYPE_RINGBUF (and the kernel's record layout: an 8-byte header {u32 len | BUSY (1<<31) |
// DISCARD (1<<30); u32 pg_off}, records rounded up to 8 bytes, producer/consumer positions).
class RingbufMap : public Map {
 public:
  explicit RingbufMap(MapSpec spec) : Map(std::move(spec)) { family_ = kFamilyRingbuf; }
  static constexpr uint32_t kBusyBit = 1u << 31, kDiscardBit = 1u << 30, kHdrSize = 8;
  // Helpers: bpf_ringbuf_reserve/submit/discard/output/query.
  virtual void* reserve(uint64_t size, uint64_t flags) = 0;
  virtual void submit(void* sample, uint64_t flags) = 0;
  virtual void discard(void* sample, uint64_t flags) = 0;
  virtual long output(const void* data, uint64_t size, uint64_t flags) = 0;
  virtual uint64_t query(uint64_t flags) const = 0;
  // Consumer (like libbpf's ring_buffer__consume / __poll): calls cb for each committed record,
  // skips discarded ones, stops at a busy one. cb returning < 0 stops and that value is returned.
  // Returns the number of records delivered (or cb's error).
  using SampleFn = std::function<int(const void* data, uint32_t size)>;
  virtual long consume(const SampleFn& cb) = 0;
  // Waits up to timeout_ms (-1: forever) for data, then consumes.
  virtual long poll(const SampleFn& cb, int timeout_ms) = 0;
  virtual uint64_t producer_pos() const = 0;
  virtual uint64_t consumer_pos() const = 0;
  virtual const uint8_t* data_area() const = 0;  // ring data, mapped twice back to back
};

// BPF_MAP_TYPE_PERF_EVENT_ARRAY: one ring of perf records per index (the kernel binds a perf event
// per CPU there). bpf_perf_event_output writes PERF_RECORD_SAMPLE records with raw data; a full
// ring drops the sample (-ENOSPC) and the consumer later gets a lost-count callback.
class PerfEventArrayMap : public Map {
 public:
  explicit PerfEventArrayMap(MapSpec spec) : Map(std::move(spec)) { family_ = kFamilyPerfEventArray; }
  // Opens a ring of `pages` 4 KiB pages (power of 2) at `index`, bound to `cpu`
  // (like perf_event_open + update of the array).
  virtual long open_ring(uint32_t index, int cpu, uint32_t pages) = 0;
  // Opens rings for every index < min(max_entries, possible CPUs) with cpu = index (perf_buffer__new).
  virtual long open_all(uint32_t pages) = 0;
  // bpf_perf_event_output: flags low 32 bits = index or BPF_F_CURRENT_CPU.
  virtual long output(uint64_t flags, const void* data, uint64_t size) = 0;
  // A sample: the CPU of its ring, the time bpf_perf_event_output wrote it (CLOCK_MONOTONIC ns,
  // the kernel's PERF_SAMPLE_TIME), its raw data.
  using RecordFn = std::function<void(int cpu, uint64_t time_ns, const void* data, uint32_t size)>;
  using SampleFn = std::function<void(int cpu, const void* data, uint32_t size)>;  // without the time
  using LostFn = std::function<void(int cpu, uint64_t lost)>;
  // Reads every ring; returns the number of records (samples + lost records) handled.
  virtual long consume_records(const RecordFn& sample, const LostFn& lost) = 0;
  long consume(const SampleFn& sample, const LostFn& lost);
  // consume_records(), waiting up to timeout_ms (-1: forever; checked every 200 µs) while there is
  // nothing.
  long poll_records(const RecordFn& sample, const LostFn& lost, int timeout_ms);
  long poll(const SampleFn& sample, const LostFn& lost, int timeout_ms);
};

// The family interface of a map, or nullptr (a tag test, no dynamic_cast).
inline RingbufMap* as_ringbuf(Map* m) {
  return m && m->family() == Map::kFamilyRingbuf ? static_cast<RingbufMap*>(m) : nullptr;
}
inline PerfEventArrayMap* as_perf_event_array(Map* m) {
  return m && m->family() == Map::kFamilyPerfEventArray ? static_cast<PerfEventArrayMap*>(m) : nullptr;
}
inline ProgArrayMap* as_prog_array(Map* m) {
  return m && m->family() == Map::kFamilyProgArray ? static_cast<ProgArrayMap*>(m) : nullptr;
}

// ---- creation ---------------------------------------------------------------------------------

// Checks a spec as the kernel's map_create would: 0 or a negative errno; *why gets a message.
long check_map_spec(const MapSpec& spec, std::string* why = nullptr);

// Creates a map of spec.type. Unknown type numbers and invalid sizes give an error
// naming the map, as the kernel's map_create would refuse them.
Result<std::shared_ptr<Map>> create_map(const MapSpec& spec);

// Name of a map type as bpftool prints it ("hash", "array", "percpu_array", ...); "" if unknown.
const char* map_type_name(uint32_t type);
// Type number for a bpftool name, or -1.
int map_type_from_name(const std::string& name);

// Live maps by id (user-space update of map-in-map values uses ids, the way the kernel uses fds).
std::shared_ptr<Map> map_by_id(uint32_t id);

// ---- pinned maps: the store (src/store/, docs/maps.md "Pinned maps") ----------------------------
// A pinned map is a file on tmpfs (shared memory): a versioned header, then the map's structures,
// mmap'd by every process that opens it. It lives until the file is removed; file permissions
// decide who may open it (read and write access are both needed).

// Whether maps of this type can live in the store.
bool map_type_pinnable(uint32_t type);
// The pin root for maps pinned by name: $BPFVM_PIN_ROOT, else /run/bpfvm for root and
// $XDG_RUNTIME_DIR/bpfvm otherwise (/tmp/bpfvm-UID when XDG_RUNTIME_DIR is unset).
std::string pin_root();
// Creates a map at `path` (refused when the path exists, or its directory is not on tmpfs). `btf`
// (optional) is kept in the file: every process that opens the map gets it from Map::btf().
Result<std::shared_ptr<Map>> create_pinned_map(const MapSpec& spec, const std::string& path,
                                               std::shared_ptr<const MapBtf> btf = nullptr);
// Opens the map pinned at `path`; a foreign, damaged or incompatible file is refused with the reason.
Result<std::shared_ptr<Map>> open_pinned_map(const std::string& path);
// LIBBPF_PIN_BY_NAME: opens `path` when it exists and matches `spec` (type, key and value sizes,
// max_entries, flags; a mismatch is refused with the reason), else creates it there (with `btf`).
Result<std::shared_ptr<Map>> open_or_create_pinned_map(const MapSpec& spec, const std::string& path,
                                                       std::shared_ptr<const MapBtf> btf = nullptr);
// Pins a pinned map at another path too (a hard link: both names are the same map). Private maps
// cannot be pinned after creation (their memory is not in the store): create them pinned.
Status pin_map(const Map& map, const std::string& path);
// Describes why `m` could not be reused for `spec` ("" when compatible).
std::string pinned_map_mismatch(const MapSpec& spec, const MapSpec& existing);

}  // namespace bpfvm
