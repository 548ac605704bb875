// The memory a map lives in: private (heap, or a memfd for families that map their memory twice)
// or a pinned map file (a header page, then the family's area). A map family lays out its
// structures in a Region and does not know which kind it has (see docs/maps.md, "Pinned maps").
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "bpfvm/map.hpp"

namespace bpfvm::store {

inline constexpr char kMagic[8] = {'B', 'P', 'F', 'V', 'M', 'M', 'A', 'P'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kHeaderSize = 4096;
inline constexpr uint32_t kMaxCpus = 4096;

// Page 0 of a pinned map file. Every field is validated when a file is opened.
struct StoreHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t file_size;
  uint64_t layout_size;          // bytes of the family's area (file_size - header_size)
  uint32_t type, key_size, value_size, max_entries, flags;
  int32_t spin_lock_off;
  uint64_t map_extra;
  uint32_t ncpus;                // per-CPU slots of the map (the creator's possible CPUs)
  std::atomic<uint32_t> ready;   // 1 once the family's area is initialised
  std::atomic<uint32_t> frozen;  // BPF_MAP_FREEZE: user-space writes refused
  uint32_t creator_pid;
  char name[16];                 // BPF_OBJ_NAME_LEN, NUL-terminated
  uint64_t created_unix_ns;
  // The map's BTF (0 bytes: none): raw BTF at file offset header_size + layout_size, after the
  // family's area; the key and value type ids in it. Files made before these fields were added
  // have zeros here (no BTF).
  uint64_t btf_size;
  uint32_t btf_key_type_id, btf_value_type_id;
  // array_of_maps / hash_of_maps: the inner map template (inner_type 0: none), as checked by
  // the kernel's map_meta_equal when a map is put in a slot.
  uint32_t inner_type, inner_key_size, inner_value_size, inner_max_entries, inner_flags;
  int32_t inner_spin_lock_off;
};
inline constexpr uint64_t kMaxBtfSize = uint64_t(16) << 20;
static_assert(sizeof(StoreHeader) <= 256);

// The creation time kept in a pinned map's header (0 for private maps): with the inode number,
// it tells a map from a later one created at the same path.
uint64_t created_ns_of(const Map& m);

// The per-CPU slot a program run uses in a pinned map: leased exclusively across processes for the
// run (lease.cpp); released when the thread leaves its outermost read-side section.
int cpu_slot_shared(int ncpus);
void cpu_slot_release();

class Region {
 public:
  // Private memory of `size` zero bytes; need_fd: backed by a memfd (fd() valid).
  static std::shared_ptr<Region> anonymous(size_t size, bool need_fd, int ncpus);
  // A mapped pinned file (takes ownership of fd and of the mapping of `map_len` bytes).
  Region(int fd, uint8_t* mapping, size_t map_len, bool fresh);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint8_t* base() const { return base_; }      // the family's area
  size_t size() const { return size_; }
  bool fresh() const { return fresh_; }         // zero-filled, the family initialises it
  int fd() const { return fd_; }                 // -1 for heap memory
  uint64_t file_offset() const { return file_off_; }  // of base() in fd()
  int ncpus() const { return ncpus_; }
  StoreHeader* header() const { return hdr_; }  // nullptr for private memory
  bool shared() const { return hdr_ != nullptr; }
  // The slot of the current program run in a map with `ncpus` per-CPU slots.
  int cpu_slot(int ncpus) const { return hdr_ ? cpu_slot_shared(ncpus) : current_cpu() % ncpus; }

 private:
  Region() = default;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool fresh_ = true;
  int fd_ = -1;
  uint64_t file_off_ = 0;
  int ncpus_ = 1;
  StoreHeader* hdr_ = nullptr;
  void* mapping_ = nullptr;  // mmap'd (file or memfd)
  size_t map_len_ = 0;
  void* heap_ = nullptr;     // calloc'd
};

// A family that keeps its whole state in a Region (one column of the map type table).
struct RegionFamily {
  // Bytes of the family's area for this spec and number of per-CPU slots (0: spec not supported).
  uint64_t (*layout)(const MapSpec& spec, int ncpus);
  // Builds the map over a region: initialises it when region->fresh(), else validates what the
  // region holds (a damaged file gives nullptr and *why).
  std::shared_ptr<Map> (*make)(const MapSpec& spec, std::shared_ptr<Region> region, std::string* why);
  bool need_fd;  // the family maps part of its area itself (ring buffer: the data twice)
};

}  // namespace bpfvm::store
