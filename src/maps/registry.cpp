// One row per map type, like the kernel's bpf_types.h: type number, bpftool name, the kernel's
// creation rules and the factory. Nothing else in bpfvm switches over map types.
#include <fmt/format.h>

#include "maps/map_internal.hpp"

namespace bpfvm {
namespace maps {
namespace {

// clang-format off
const MapTypeRow kRows[] = {
  {kMapHash,                "hash",                  hash_check,             make_hash, &kHashRegion},
  {kMapArray,               "array",                 array_check,            make_array, &kArrayRegion},
  {kMapProgArray,           "prog_array",            fd_array_check,         make_prog_array, &kProgArrayRegion},
  {kMapPerfEventArray,      "perf_event_array",      perf_event_array_check, make_perf_event_array, &kPerfRegion},
  {kMapPercpuHash,          "percpu_hash",           hash_check,             make_hash, &kHashRegion},
  {kMapPercpuArray,         "percpu_array",          array_check,            make_percpu_array, &kArrayRegion},
  {kMapStackTrace,          "stack_trace",           stack_trace_check,      make_typed_array, nullptr},
  {kMapCgroupArray,         "cgroup_array",          fd_array_check,         make_typed_array, nullptr},
  {kMapLruHash,             "lru_hash",              hash_check,             make_hash, &kHashRegion},
  {kMapLruPercpuHash,       "lru_percpu_hash",       hash_check,             make_hash, &kHashRegion},
  {kMapLpmTrie,             "lpm_trie",              lpm_trie_check,         make_lpm_trie, &kLpmRegion},
  {kMapArrayOfMaps,         "array_of_maps",         map_in_map_check,       make_array_of_maps, &kMapInMapRegion},
  {kMapHashOfMaps,          "hash_of_maps",          map_in_map_check,       make_hash_of_maps, &kMapInMapRegion},
  {kMapDevmap,              "devmap",                devmap_check,           make_typed_array, nullptr},
  {kMapSockmap,             "sockmap",               sockmap_check,          make_typed_array, nullptr},
  {kMapCpumap,              "cpumap",                cpumap_check,           make_typed_array, nullptr},
  {kMapXskmap,              "xskmap",                xskmap_check,           make_typed_array, nullptr},
  {kMapSockhash,            "sockhash",              sockhash_check,         make_typed_hash, nullptr},
  {kMapCgroupStorage,       "cgroup_storage",        cgroup_storage_check,   make_typed_hash, nullptr},
  {kMapReuseportSockarray,  "reuseport_sockarray",   sockmap_check,          make_typed_array, nullptr},
  {kMapPercpuCgroupStorage, "percpu_cgroup_storage", cgroup_storage_check,   make_typed_hash, nullptr},
  {kMapQueue,               "queue",                 queue_stack_check,      make_queue_stack, &kQueueStackRegion},
  {kMapStack,               "stack",                 queue_stack_check,      make_queue_stack, &kQueueStackRegion},
  {kMapSkStorage,           "sk_storage",            local_storage_check,    make_typed_hash, nullptr},
  {kMapDevmapHash,          "devmap_hash",           devmap_check,           make_typed_hash, nullptr},
  {kMapStructOps,           "struct_ops",            struct_ops_check,       make_typed_array, nullptr},
  {kMapRingbuf,             "ringbuf",               ringbuf_check,          make_ringbuf, &kRingbufRegion},
  {kMapInodeStorage,        "inode_storage",         local_storage_check,    make_typed_hash, nullptr},
  {kMapTaskStorage,         "task_storage",          local_storage_check,    make_typed_hash, nullptr},
  {kMapBloomFilter,         "bloom_filter",          bloom_check,            make_bloom, &kBloomRegion},
  {kMapUserRingbuf,         "user_ringbuf",          ringbuf_check,          make_ringbuf, nullptr},
  {kMapCgrpStorage,         "cgrp_storage",          local_storage_check,    make_typed_hash, nullptr},
  {kMapArena,               "arena",                 arena_check,            make_typed_array, nullptr},
};
// clang-format on

}  // namespace

const MapTypeRow* find_row(uint32_t type) {
  for (const MapTypeRow& r : kRows)
    if (r.type == type) return &r;
  return nullptr;
}

}  // namespace maps

const char* map_type_name(uint32_t type) {
  const maps::MapTypeRow* r = maps::find_row(type);
  return r ? r->name : "";
}

int map_type_from_name(const std::string& name) {
  for (const maps::MapTypeRow& r : maps::kRows)
    if (name == r.name) return int(r.type);
  return -1;
}

long check_map_spec(const MapSpec& spec, std::string* why) {
  const maps::MapTypeRow* row = maps::find_row(spec.type);
  if (!row) return maps::fail(why, EINVAL, fmt::format("unknown map type {}", spec.type));
  if (spec.map_extra != 0 && spec.type != kMapBloomFilter && spec.type != kMapArena)
    return maps::fail(why, EINVAL, "map_extra is only valid for bloom_filter maps");
  if (spec.spin_lock_off >= 0 && uint64_t(spec.spin_lock_off) + 4 > spec.value_size)
    return maps::fail(why, EINVAL, "bpf_spin_lock lies outside the value");
  if (spec.spin_lock_off >= 0 && (spec.spin_lock_off % 4) != 0)
    return maps::fail(why, EINVAL, "bpf_spin_lock is not 4-byte aligned");
  if (long e = row->check(spec, why)) return e;
  if (spec.spin_lock_off >= 0) {
    // map_check_btf: a bpf_spin_lock is allowed only in these map types
    switch (spec.type) {
      case kMapHash: case kMapArray: case kMapCgroupStorage: case kMapSkStorage:
      case kMapInodeStorage: case kMapTaskStorage: case kMapCgrpStorage:
        break;
      default:
        return maps::fail(why, EOPNOTSUPP, "a bpf_spin_lock is not allowed in this map type");
    }
  }
  return 0;
}

Result<std::shared_ptr<Map>> create_map(const MapSpec& spec) {
  std::string why;
  long err = check_map_spec(spec, &why);
  const char* name = spec.name.empty() ? "(anonymous)" : spec.name.c_str();
  if (err) {
    if (!maps::find_row(spec.type))
      return make_error(ErrorCode::Load, fmt::format("map '{}': unknown map type {}", name, spec.type));
    return make_error(ErrorCode::Load, fmt::format("map '{}' ({}): {} ({})", name,
                                                   map_type_name(spec.type), why,
                                                   err == -E2BIG ? "-E2BIG" : err == -kENOTSUPP ? "-ENOTSUPP" : err == -ENOMEM ? "-ENOMEM" : err == -EOPNOTSUPP ? "-EOPNOTSUPP" : err == -EBADF ? "-EBADF" : "-EINVAL"));
  }
  std::shared_ptr<Map> m;
  try {
    m = maps::find_row(spec.type)->make(spec);
  } catch (const std::bad_alloc&) {
    m = nullptr;
  }
  if (!m)
    return make_error(ErrorCode::Load, fmt::format("map '{}' ({}): cannot allocate {} entries (-ENOMEM)",
                                                   name, map_type_name(spec.type), spec.max_entries));
  return m;
}

}  // namespace bpfvm
