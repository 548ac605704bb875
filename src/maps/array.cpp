// Array family: array, percpu_array, prog_array, array_of_maps (the kernel's arraymap.c).
// Values live in one zeroed block and are updated in place, like the kernel's.
#include <cstdlib>
#include <mutex>
#include <vector>

#include "maps/array_layout.hpp"
#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long array_check(const MapSpec& s, std::string* why) {
  bool percpu = s.type == kMapPercpuArray;
  constexpr uint32_t kMask = kMapFNumaNode | kMapFMmapable | kAccessMask | kMapFPreserveElems | kMapFInnerMap;
  if (s.max_entries == 0) return fail(why, EINVAL, "max_entries must be > 0");
  if (s.key_size != 4) return fail(why, EINVAL, "key_size must be 4 for array maps");
  if (s.value_size == 0) return fail(why, EINVAL, "value_size must be > 0");
  if (s.flags & ~kMask) return fail(why, EINVAL, "unsupported map_flags for an array map");
  if (!access_ok(s.flags)) return fail(why, EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together");
  if (percpu && (s.flags & kMapFNumaNode)) return fail(why, EINVAL, "per-CPU arrays take no NUMA node");
  if (s.type != kMapArray && (s.flags & (kMapFMmapable | kMapFInnerMap)))
    return fail(why, EINVAL, "BPF_F_MMAPABLE/BPF_F_INNER_MAP only for plain arrays");
  if (s.type != kMapPerfEventArray && (s.flags & kMapFPreserveElems))
    return fail(why, EINVAL, "BPF_F_PRESERVE_ELEMS only for perf_event_array");
  if (s.value_size > 0x7fffffffu) return fail(why, E2BIG, "value_size too large");
  if (percpu && round_up8(s.value_size) > kPcpuMinUnitSize)
    return fail(why, E2BIG, "per-CPU value larger than 32 KiB");
  if (uint64_t(s.max_entries) * round_up8(s.value_size) * (percpu ? possible_cpus() : 1) > (1ull << 36))
    return fail(why, ENOMEM, "array too large");
  return 0;
}

long fd_array_check(const MapSpec& s, std::string* why) {
  if (s.value_size != 4) return fail(why, EINVAL, "value_size must be 4 (a file descriptor)");
  if (s.flags & (kMapFRdonlyProg | kMapFWronlyProg))
    return fail(why, EINVAL, "BPF_F_RDONLY_PROG/BPF_F_WRONLY_PROG not allowed on fd arrays");
  return array_check(s, why);
}

namespace {

// get_next_key over indexes 0..max_entries-1 (out of range or no key: the first index).
long array_next_key(uint32_t max, const void* key, void* next) {
  uint32_t idx = key ? *static_cast<const uint32_t*>(key) : max;
  uint32_t n;
  if (idx >= max)
    n = 0;
  else if (idx == max - 1)
    return -ENOENT;
  else
    n = idx + 1;
  std::memcpy(next, &n, 4);
  return 0;
}

class ArrayMap final : public Map {
 public:
  // The values: max_entries * slots * round_up(value_size, 8) bytes, nothing else (a region of
  // exactly that size is valid whatever it holds).
  static uint64_t layout(const MapSpec& s, int ncpus) {
    uint64_t slots = s.type == kMapPercpuArray ? uint64_t(ncpus) : 1;
    uint64_t n = uint64_t(s.max_entries) * slots * round_up8(s.value_size);
    return n ? n : 8;
  }
  ArrayMap(const MapSpec& s, std::shared_ptr<store::Region> region) : Map(s), percpu_(s.type == kMapPercpuArray) {
    ncpus_ = percpu_ ? region->ncpus() : 1;
    stride_ = round_up8(s.value_size);
    data_ = region->base();
    region_ = std::move(region);
    if (!percpu_) lookup_fn_ = &plain_lookup;
  }

  static ArrayLayout layout_offsets();
  // The engines' fast path of a plain array (no per-CPU slot choice).
  static void* plain_lookup(Map* m, const void* key) {
    auto* a = static_cast<ArrayMap*>(m);
    uint32_t idx = *static_cast<const uint32_t*>(key);
    return idx < a->spec_.max_entries ? a->data_ + size_t(idx) * a->stride_ : nullptr;
  }
  bool inline_array(InlineArray* out) const override {
    if (percpu_ || stride_ > 0xffffffffu) return false;
    out->base = data_;
    out->stride = uint32_t(stride_);
    out->max_entries = spec_.max_entries;
    return true;
  }

  uint8_t* slot(uint32_t idx, int cpu) const {
    return data_ + (size_t(idx) * ncpus_ + size_t(cpu)) * stride_;
  }
  int cpu() const { return percpu_ ? region_->cpu_slot(ncpus_) : 0; }

  void* lookup(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return nullptr;
    return slot(idx, cpu());
  }
  void* lookup_percpu(const void* key, uint32_t c) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (!percpu_ || idx >= spec_.max_entries || c >= uint32_t(ncpus_)) return nullptr;
    return slot(idx, int(c));
  }
  long update(const void* key, const void* value, uint64_t flags) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (percpu_ ? flags > kBpfExist : (flags & ~kBpfFLock) > kBpfExist) return -EINVAL;
    if (idx >= spec_.max_entries) return -E2BIG;
    if (flags & kBpfNoexist) return -EEXIST;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    uint8_t* dst = slot(idx, cpu());
    if (flags & kBpfFLock)
      copy_value_locked(dst, value);
    else
      copy_value(dst, value);
    return 0;
  }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (!percpu_) return Map::do_update_user(key, value, flags);
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (flags > kBpfExist) return -EINVAL;
    if (idx >= spec_.max_entries) return -E2BIG;
    if (flags & kBpfNoexist) return -EEXIST;
    for (int c = 0; c < ncpus_; ++c)
      copy_value(slot(idx, c), static_cast<const uint8_t*>(value) + size_t(c) * stride_);
    return 0;
  }
  long remove(const void*) override { return -EINVAL; }
  long get_next_key(const void* key, void* next) override {
    return array_next_key(spec_.max_entries, key, next);
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (!percpu_) return Map::lookup_copy(key, out, flags);
    if (flags & ~kBpfFLock) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -ENOENT;
    for (int c = 0; c < ncpus_; ++c) {
      uint8_t* o = static_cast<uint8_t*>(out) + size_t(c) * stride_;
      std::memcpy(o, slot(idx, c), stride_);
      if (has_lock()) std::memset(o + spec_.spin_lock_off, 0, 4);
    }
    return 0;
  }
  size_t user_value_size() const override { return percpu_ ? stride_ * ncpus_ : spec_.value_size; }
  long for_each(ForEachFn cb, void* ctx) override {
    long n = 0;
    int c = cpu();
    for (uint32_t i = 0; i < spec_.max_entries; ++i) {
      ++n;
      if (cb(ctx, &i, slot(i, c))) break;
    }
    return n;
  }

 private:
  bool percpu_;
  size_t stride_;
  uint8_t* data_;
};

// ---- prog_array -------------------------------------------------------------------------------
struct ProgResolverBox {
  std::mutex mu;
  ProgArrayMap::ProgResolver fn;
};
ProgResolverBox& resolver_box() {
  static ProgResolverBox* b = new ProgResolverBox;
  return *b;
}

// Slots hold a heap-allocated owner so that a replaced program is released only after readers
// (a running tail call) can no longer see it.
template <class T>
struct Owned {
  std::shared_ptr<T> ptr;
  uint32_t id = 0;
};
template <class T>
void delete_owned(void* p) {
  delete static_cast<Owned<T>*>(p);
}

class ProgArray final : public ProgArrayMap {
 public:
  explicit ProgArray(const MapSpec& s) : ProgArrayMap(s), slots_(s.max_entries) {}
  // Pinned: the file holds the map's shape (and its frozen flag); the slots stay in this process.
  // Programs are code of the process that loaded them, so every process that opens a pinned
  // prog_array has its own slots, empty until it puts its programs there (docs/maps.md).
  ProgArray(const MapSpec& s, std::shared_ptr<store::Region> region) : ProgArray(s) { region_ = std::move(region); }
  ~ProgArray() override {
    for (auto& s : slots_) delete s.load();
  }
  const void* prog_at(uint32_t index) const override {
    if (index >= spec_.max_entries) return nullptr;
    Owned<const void>* o = slots_[index].load(std::memory_order_acquire);
    return o ? o->ptr.get() : nullptr;
  }
  long set_prog(uint32_t index, std::shared_ptr<const void> prog, uint32_t prog_id) override {
    if (index >= spec_.max_entries) return -E2BIG;
    Owned<const void>* n = prog ? new Owned<const void>{std::move(prog), prog_id} : nullptr;
    Owned<const void>* old = slots_[index].exchange(n, std::memory_order_acq_rel);
    if (old) retire(old, delete_owned<const void>);
    return 0;
  }
  void* lookup(const void*) override { return nullptr; }  // programs use bpf_tail_call
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (flags != kBpfAny) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    uint32_t id = *static_cast<const uint32_t*>(value);
    std::shared_ptr<const void> p;
    {
      std::lock_guard<std::mutex> lk(resolver_box().mu);
      if (resolver_box().fn) p = resolver_box().fn(id);
    }
    if (!p) return -EBADF;
    return set_prog(idx, std::move(p), id);
  }
  long remove(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    Owned<const void>* old = slots_[idx].exchange(nullptr, std::memory_order_acq_rel);
    if (!old) return -ENOENT;
    retire(old, delete_owned<const void>);
    return 0;
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    ReadGuard rg;
    if (idx >= spec_.max_entries) return -ENOENT;
    Owned<const void>* o = slots_[idx].load(std::memory_order_acquire);
    if (!o) return -ENOENT;
    std::memcpy(out, &o->id, 4);
    return 0;
  }
  long get_next_key(const void* key, void* next) override {
    return array_next_key(spec_.max_entries, key, next);
  }

 private:
  ZeroArray<std::atomic<Owned<const void>*>> slots_;
};

}  // namespace

// ArrayMap is not standard-layout (virtual functions), where offsetof is only conditionally
// supported; GCC and Clang give the members' fixed offsets, which is what JIT code reads.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
ArrayLayout ArrayMap::layout_offsets() {
  static_assert(sizeof(stride_) == 8 && sizeof(MapSpec::max_entries) == 4);
  return {int32_t(offsetof(ArrayMap, lookup_fn_)), reinterpret_cast<const void*>(&plain_lookup),
          int32_t(offsetof(ArrayMap, data_)), int32_t(offsetof(ArrayMap, stride_)),
          int32_t(offsetof(ArrayMap, spec_) + offsetof(MapSpec, max_entries))};
}
#pragma GCC diagnostic pop

const ArrayLayout& array_layout() {
  static const ArrayLayout l = ArrayMap::layout_offsets();
  return l;
}

// ---- map-in-map: inner spec rules (bpf_map_meta_alloc / map_meta_equal) -------------------------
long map_in_map_check(const MapSpec& s, std::string* why) {
  if (s.type == kMapArrayOfMaps) {
    if (long e = fd_array_check(s, why)) return e;
  } else {
    if (long e = hash_check(s, why)) return e;
    if (s.value_size != 4) return fail(why, EINVAL, "value_size must be 4 (a map file descriptor)");
  }
  if (!s.inner) return fail(why, EBADF, "map-in-map needs an inner map definition");
  const MapSpec& in = *s.inner;
  if (in.type == kMapArrayOfMaps || in.type == kMapHashOfMaps)
    return fail(why, EINVAL, "inner map cannot itself be a map-in-map");
  switch (in.type) {
    // types without a map_meta_equal op in the kernel (checked: prog_array; the storage types and
    // struct_ops need BTF to create and are refused conservatively)
    case kMapProgArray: case kMapStructOps: case kMapCgroupStorage: case kMapPercpuCgroupStorage:
    case kMapSkStorage: case kMapInodeStorage: case kMapTaskStorage: case kMapCgrpStorage:
      return fail(why, kENOTSUPP, fmt_inner_unsupported(in.type));
    default: break;
  }
  std::string w;
  if (check_map_spec(in, &w)) return fail(why, EINVAL, "inner map: " + w);
  return 0;
}

std::string fmt_inner_unsupported(uint32_t type) {
  return std::string("map type ") + map_type_name(type) + " cannot be an inner map";
}

namespace {

bool meta_equal(const MapSpec& inner, const MapSpec& m) {
  if (inner.type != m.type || inner.key_size != m.key_size || inner.value_size != m.value_size ||
      inner.flags != m.flags || inner.spin_lock_off != m.spin_lock_off)
    return false;
  if ((inner.type == kMapArray || inner.type == kMapPercpuArray) && !(inner.flags & kMapFInnerMap) &&
      inner.max_entries != m.max_entries)
    return false;
  return true;
}

class ArrayOfMaps final : public Map {
 public:
  explicit ArrayOfMaps(const MapSpec& s) : Map(s), slots_(s.max_entries) { lookup_fn_ = &direct_lookup; }
  // The engines' fast path: lookup() without the virtual call (the class is final).
  static void* direct_lookup(Map* m, const void* key) { return static_cast<ArrayOfMaps*>(m)->lookup(key); }
  ~ArrayOfMaps() override {
    for (auto& s : slots_) delete s.load();
  }
  void* lookup(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return nullptr;
    reader_touch();
    Owned<Map>* o = slots_[idx].load(std::memory_order_acquire);
    return o ? o->ptr.get() : nullptr;
  }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (flags != kBpfAny) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    std::shared_ptr<Map> m = map_by_id(*static_cast<const uint32_t*>(value));
    if (!m) return -EBADF;
    return set_map(idx, std::move(m));
  }
  long set_map(uint32_t idx, std::shared_ptr<Map> m) {
    if (!meta_equal(*spec_.inner, m->spec())) return -EINVAL;
    uint32_t id = m->id();
    auto* n = new Owned<Map>{std::move(m), id};
    Owned<Map>* old = slots_[idx].exchange(n, std::memory_order_acq_rel);
    if (old) retire(old, delete_owned<Map>);
    return 0;
  }
  long remove(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    Owned<Map>* old = slots_[idx].exchange(nullptr, std::memory_order_acq_rel);
    if (!old) return -ENOENT;
    retire(old, delete_owned<Map>);
    return 0;
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags) return -EINVAL;
    uint32_t idx = *static_cast<const uint32_t*>(key);
    ReadGuard rg;
    if (idx >= spec_.max_entries) return -ENOENT;
    Owned<Map>* o = slots_[idx].load(std::memory_order_acquire);
    if (!o) return -ENOENT;
    std::memcpy(out, &o->id, 4);
    return 0;
  }
  long get_next_key(const void* key, void* next) override {
    return array_next_key(spec_.max_entries, key, next);
  }

 private:
  ZeroArray<std::atomic<Owned<Map>*>> slots_;
};

}  // namespace

bool inner_meta_equal(const MapSpec& inner, const MapSpec& m) { return meta_equal(inner, m); }

namespace {
std::shared_ptr<Map> array_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (r->size() < ArrayMap::layout(s, r->ncpus())) {
    if (why) *why = "the array's area is shorter than its values";
    return nullptr;
  }
  return std::make_shared<ArrayMap>(s, std::move(r));
}
}  // namespace

const store::RegionFamily kArrayRegion = {&ArrayMap::layout, &array_in_region, false};

namespace {
constexpr uint32_t kProgArrayMagic = 0x50524f47;  // "PROG"
struct ProgArrayCtl {
  uint32_t magic;
  uint32_t max_entries;
  uint8_t pad[56];
};
uint64_t prog_array_layout(const MapSpec&, int) { return sizeof(ProgArrayCtl); }
std::shared_ptr<Map> prog_array_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (r->size() < sizeof(ProgArrayCtl)) {
    if (why) *why = "the prog array's area is too short";
    return nullptr;
  }
  auto* c = reinterpret_cast<ProgArrayCtl*>(r->base());
  if (r->fresh()) {
    c->magic = kProgArrayMagic;
    c->max_entries = s.max_entries;
  } else if (c->magic != kProgArrayMagic || c->max_entries != s.max_entries) {
    if (why) *why = "damaged prog array header";
    return nullptr;
  }
  return std::make_shared<ProgArray>(s, std::move(r));
}
}  // namespace

const store::RegionFamily kProgArrayRegion = {&prog_array_layout, &prog_array_in_region, false};

std::shared_ptr<Map> make_array(const MapSpec& s) {
  return std::make_shared<ArrayMap>(s, store::Region::anonymous(ArrayMap::layout(s, 1), false, 1));
}
std::shared_ptr<Map> make_percpu_array(const MapSpec& s) {
  int n = possible_cpus();
  return std::make_shared<ArrayMap>(s, store::Region::anonymous(ArrayMap::layout(s, n), false, n));
}
std::shared_ptr<Map> make_prog_array(const MapSpec& s) { return std::make_shared<ProgArray>(s); }
std::shared_ptr<Map> make_array_of_maps(const MapSpec& s) { return std::make_shared<ArrayOfMaps>(s); }

}  // namespace bpfvm::maps

namespace bpfvm {
void ProgArrayMap::set_resolver(ProgResolver r) {
  std::lock_guard<std::mutex> lk(maps::resolver_box().mu);
  maps::resolver_box().fn = std::move(r);
}
}  // namespace bpfvm
