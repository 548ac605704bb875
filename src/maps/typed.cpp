// Map types whose meaning comes from kernel objects bpfvm does not have (devices, sockets, cgroups,
// inodes, tasks, struct_ops, arenas...). They are created with the kernel's exact key/value rules so
// objects that declare them load, and store values in basic array (key = u32 index) or hash
// storage so helpers and hooks can give them meaning.
#include <cstdlib>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long devmap_check(const MapSpec& s, std::string* why) {
  if (s.max_entries == 0 || s.key_size != 4 || (s.value_size != 4 && s.value_size != 8) ||
      (s.flags & ~(kMapFNumaNode | kMapFRdonlyProg | kMapFWronlyProg)))
    return fail(why, EINVAL, "devmap needs key_size 4, value_size 4 or 8, max_entries > 0");
  return 0;
}
long cpumap_check(const MapSpec& s, std::string* why) {
  if (s.max_entries == 0 || s.key_size != 4 || (s.value_size != 4 && s.value_size != 8) ||
      (s.flags & ~kMapFNumaNode))
    return fail(why, EINVAL, "cpumap needs key_size 4, value_size 4 or 8, max_entries > 0");
  if (s.max_entries > 8192) return fail(why, E2BIG, "cpumap max_entries above NR_CPUS");
  return 0;
}
long xskmap_check(const MapSpec& s, std::string* why) {
  if (s.max_entries == 0 || s.key_size != 4 || s.value_size != 4 ||
      (s.flags & ~(kMapFNumaNode | kMapFRdonly | kMapFWronly)))
    return fail(why, EINVAL, "xskmap needs key_size 4, value_size 4, max_entries > 0");
  return 0;
}
long stack_trace_check(const MapSpec& s, std::string* why) {
  if (s.flags & ~(kMapFNumaNode | kAccessMask | kMapFStackBuildId))
    return fail(why, EINVAL, "unsupported map_flags for stack_trace");
  if (s.max_entries == 0 || s.key_size != 4 || s.value_size < 8 || s.value_size % 8)
    return fail(why, EINVAL, "stack_trace needs key_size 4 and value_size a multiple of 8");
  if (s.flags & kMapFStackBuildId) {
    if (s.value_size % 32) return fail(why, EINVAL, "build-id stack value must be a multiple of 32");
  } else if (s.value_size / 8 > 127) {
    return fail(why, EINVAL, "stack_trace value holds more than perf_event_max_stack (127) frames");
  }
  return 0;
}
long sockmap_check(const MapSpec& s, std::string* why) {
  if (s.type == kMapReuseportSockarray) {
    if (s.value_size != 4 && s.value_size != 8) return fail(why, EINVAL, "value_size must be 4 or 8");
    return array_check(s, why);
  }
  if (s.max_entries == 0 || s.key_size != 4 || (s.value_size != 4 && s.value_size != 8) ||
      (s.flags & ~(kMapFNumaNode | kMapFRdonly | kMapFWronly)))
    return fail(why, EINVAL, "sockmap needs key_size 4, value_size 4 or 8, max_entries > 0");
  return 0;
}
long sockhash_check(const MapSpec& s, std::string* why) {
  if (s.max_entries == 0 || s.key_size == 0 || (s.value_size != 4 && s.value_size != 8) ||
      (s.flags & ~(kMapFNumaNode | kMapFRdonly | kMapFWronly)))
    return fail(why, EINVAL, "sockhash needs key_size > 0, value_size 4 or 8, max_entries > 0");
  if (s.key_size > 512) return fail(why, E2BIG, "sockhash key larger than the BPF stack");
  return 0;
}
long cgroup_storage_check(const MapSpec& s, std::string* why) {
  if (s.key_size != 16 && s.key_size != 8)
    return fail(why, EINVAL, "cgroup storage key must be struct bpf_cgroup_storage_key (16) or u64");
  if (s.value_size == 0) return fail(why, EINVAL, "value_size must be > 0");
  uint32_t maxv = s.type == kMapPercpuCgroupStorage ? kPcpuMinUnitSize : 65535 - 128;
  if (s.value_size > maxv) return fail(why, E2BIG, "cgroup storage value too large");
  if ((s.flags & ~(kMapFNumaNode | kAccessMask)) || !access_ok(s.flags))
    return fail(why, EINVAL, "unsupported map_flags for cgroup storage");
  if (s.max_entries) return fail(why, EINVAL, "cgroup storage max_entries must be 0");
  return 0;
}
long local_storage_check(const MapSpec& s, std::string* why) {
  if ((s.flags & ~(kMapFNoPrealloc | kMapFClone)) || !(s.flags & kMapFNoPrealloc) || s.max_entries ||
      s.key_size != 4 || s.value_size == 0)
    return fail(why, EINVAL,
                "local storage needs BPF_F_NO_PREALLOC, max_entries 0, key_size 4, value_size > 0");
  if (s.value_size > 65535 - 256) return fail(why, E2BIG, "local storage value too large");
  return 0;
}
long struct_ops_check(const MapSpec& s, std::string* why) {
  if (s.key_size != 4 || s.max_entries != 1 || (s.flags & ~((1u << 13) | (1u << 15))))
    return fail(why, EINVAL, "struct_ops needs key_size 4 and max_entries 1");
  return 0;
}
long arena_check(const MapSpec& s, std::string* why) {
  if (s.key_size || s.value_size || s.max_entries == 0 || !(s.flags & kMapFMmapable) ||
      (s.flags & ~(kMapFMmapable | (1u << 17) | (1u << 18))))
    return fail(why, EINVAL, "arena needs key/value size 0, max_entries > 0 pages and BPF_F_MMAPABLE");
  return 0;
}

namespace {

long next_index(uint32_t max, const void* key, void* next) {
  uint32_t idx = key ? *static_cast<const uint32_t*>(key) : max;
  uint32_t n;
  if (idx >= max) n = 0;
  else if (idx == max - 1) return -ENOENT;
  else n = idx + 1;
  std::memcpy(next, &n, 4);
  return 0;
}

// Array storage with presence: lookup of an empty slot gives nothing, delete empties a slot.
class TypedArray final : public Map {
 public:
  explicit TypedArray(const MapSpec& s)
      : Map(s), stride_(round_up8(s.value_size)), present_(s.max_entries) {
    data_ = static_cast<uint8_t*>(std::calloc(std::max<size_t>(s.max_entries, 1), stride_));
    if (!data_) throw std::bad_alloc();
  }
  ~TypedArray() override { std::free(data_); }
  void* lookup(const void* key) override {
    uint32_t i = *static_cast<const uint32_t*>(key);
    if (i >= spec_.max_entries || !present_[i].load(std::memory_order_acquire)) return nullptr;
    return data_ + size_t(i) * stride_;
  }
  long update(const void* key, const void* value, uint64_t flags) override {
    uint32_t i = *static_cast<const uint32_t*>(key);
    if (flags > kBpfExist) return -EINVAL;
    if (i >= spec_.max_entries) return -E2BIG;
    if (flags == kBpfNoexist) return -EEXIST;
    std::memcpy(data_ + size_t(i) * stride_, value, spec_.value_size);
    present_[i].store(1, std::memory_order_release);
    return 0;
  }
  long remove(const void* key) override {
    uint32_t i = *static_cast<const uint32_t*>(key);
    if (i >= spec_.max_entries) return -E2BIG;
    present_[i].store(0, std::memory_order_release);
    return 0;
  }
  long get_next_key(const void* key, void* next) override { return next_index(spec_.max_entries, key, next); }

 private:
  size_t stride_;
  uint8_t* data_;
  ZeroArray<std::atomic<uint8_t>> present_;
};

// Types without keys (arena): nothing to look up.
class OpaqueMap final : public Map {
 public:
  using Map::Map;
  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -EOPNOTSUPP; }
  long remove(const void*) override { return -EOPNOTSUPP; }
  long get_next_key(const void*, void*) override { return -EOPNOTSUPP; }
  long lookup_copy(const void*, void*, uint64_t) override { return -EOPNOTSUPP; }
};

}  // namespace

std::shared_ptr<Map> make_typed_array(const MapSpec& s) {
  if (s.key_size != 4 || s.value_size == 0) return std::make_shared<OpaqueMap>(s);
  return std::make_shared<TypedArray>(s);
}

std::shared_ptr<Map> make_typed_hash(const MapSpec& s) { return make_plain_hash_storage(s); }

}  // namespace bpfvm::maps
