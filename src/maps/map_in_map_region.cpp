// Pinned array_of_maps / hash_of_maps (docs/maps.md, "Maps of maps").
//
// A map's memory cannot hold another process's Map objects, so a pinned outer map holds, for each
// slot, a reference to a pinned inner map: its absolute pin path, inode number and creation time
// (the inner file's header), and a 64-bit tag that hashes them (0: empty slot). The references
// are the values of an ordinary store map laid out in the outer map's area (an array for
// array_of_maps, a hash for hash_of_maps) whose value starts with a bpf_spin_lock: writers and
// the readers that copy a reference take it (robust: a dead holder's lock is taken over), so no
// one reads half a reference. The inner map template lives in the file's header.
//
// Every process opens the referenced files itself and keeps them in a per-map cache keyed by the
// tag. A reference that is damaged (bad length, not NUL-terminated, tag mismatch), names a missing
// file, a file that is no longer the map it named (other inode or creation time) or a map that does
// not match the template reads as an empty slot.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <array>
#include <unordered_map>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {
namespace {

constexpr size_t kRefPathMax = 224;  // bytes of path, NUL included
struct Ref {
  uint32_t lock;       // bpf_spin_lock of the value (offset 0)
  uint32_t path_len;   // without the NUL
  uint64_t tag;        // 0: empty; else ref_tag(*this)
  uint64_t ino;        // the inner file's inode number (Map::store_id)
  uint64_t created_ns; // the inner file's creation time (its header)
  char path[kRefPathMax];
};
static_assert(sizeof(Ref) == 256);

uint64_t ref_tag(const Ref& r) {
  uint64_t h = hash_bytes(r.path, r.path_len < kRefPathMax ? r.path_len : 0, 0x6d696d72656631ull);
  h = hash_mix(h ^ (r.ino * 0x9E3779B97F4A7C15ull));
  h = hash_mix(h ^ (r.created_ns * 0xC2B2AE3D27D4EB4Full));
  return h | 1;
}
// A reference read from the file is believed only when every field is consistent.
bool ref_valid(const Ref& r) {
  if (r.tag == 0 || r.path_len == 0 || r.path_len >= kRefPathMax) return false;
  if (r.path[0] != '/' || r.path[r.path_len] != '\0') return false;
  if (std::memchr(r.path, 0, r.path_len)) return false;
  return r.tag == ref_tag(r);
}

// The store map of references: same key, a Ref as the value, a bpf_spin_lock at offset 0.
MapSpec ref_spec(const MapSpec& s) {
  MapSpec r;
  r.type = s.type == kMapArrayOfMaps ? kMapArray : kMapHash;
  r.key_size = s.key_size;
  r.value_size = sizeof(Ref);
  r.max_entries = s.max_entries;
  r.flags = 0;
  r.spin_lock_off = 0;
  r.name = s.name;
  return r;
}
const store::RegionFamily& ref_family(const MapSpec& s) {
  return s.type == kMapArrayOfMaps ? kArrayRegion : kHashRegion;
}

class PinnedMapOfMaps final : public Map {
 public:
  PinnedMapOfMaps(const MapSpec& s, std::shared_ptr<Map> refs, std::shared_ptr<store::Region> region)
      : Map(s), refs_(std::move(refs)), is_array_(s.type == kMapArrayOfMaps) {
    region_ = std::move(region);
    refs_lookup_ = refs_->lookup_fn();
    if (is_array_ && !refs_->inline_array(&arr_)) arr_ = {};
  }

  // Program side: the inner Map*, opened once per process and kept for the outer map's life.
  void* lookup(const void* key) override {
    void* v;
    if (is_array_) {  // the array of references, indexed in place
      uint32_t idx = *static_cast<const uint32_t*>(key);
      if (idx >= arr_.max_entries) return nullptr;
      v = arr_.base + size_t(idx) * arr_.stride;
    } else {
      v = refs_lookup_(refs_.get(), key);
      if (!v) return nullptr;
    }
    uint64_t tag = __atomic_load_n(&static_cast<Ref*>(v)->tag, __ATOMIC_ACQUIRE);
    if (tag == 0) return nullptr;
    // Fast path: a small set-associative table of resolved tags (lock-free; entries live as long
    // as this object).
    for (size_t w = 0; w < kWays; ++w) {
      const Resolved* f = fast_[(tag + w) % kFast].load(std::memory_order_acquire);
      if (f && f->tag == tag) return f->map.get();
    }
    return resolve(key).get();
  }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long remove(const void* key) override {
    if (!is_array_) return refs_->remove(key);
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    Ref cur{};
    if (refs_->lookup_copy(key, &cur, kBpfFLock) != 0 || cur.tag == 0) return -ENOENT;
    Ref empty{};
    return refs_->update_user(key, &empty, kBpfFLock);
  }
  // User space: the value is the id of a pinned map of this process (map_by_id).
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (is_array_ ? flags != kBpfAny : flags > kBpfExist) return -EINVAL;
    if (is_array_ && *static_cast<const uint32_t*>(key) >= spec_.max_entries) return -E2BIG;
    std::shared_ptr<Map> m = map_by_id(*static_cast<const uint32_t*>(value));
    if (!m) return -EBADF;
    if (!inner_meta_equal(*spec_.inner, m->spec())) return -EINVAL;
    // Another process can only reach a pinned map: a private one cannot go in a pinned slot.
    if (!m->shared() || m->pin_path().empty()) return -EOPNOTSUPP;
    Ref r{};
    char abs[PATH_MAX];
    if (!realpath(m->pin_path().c_str(), abs)) return -ENOENT;
    size_t n = std::strlen(abs);
    if (n >= kRefPathMax) return -ENAMETOOLONG;
    std::memcpy(r.path, abs, n);
    r.path_len = uint32_t(n);
    r.ino = m->store_id();
    r.created_ns = store::created_ns_of(*m);
    r.tag = ref_tag(r);
    remember(r.tag, m);
    return refs_->update_user(key, &r, flags | kBpfFLock);
  }
  long do_delete_user(const void* key) override { return remove(key); }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags) return -EINVAL;
    std::shared_ptr<Map> m = resolve(key);
    if (!m) return -ENOENT;
    uint32_t id = m->id();
    std::memcpy(out, &id, 4);
    return 0;
  }
  long do_lookup_and_delete(const void*, void*, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  long get_next_key(const void* key, void* next) override { return refs_->get_next_key(key, next); }
  size_t user_value_size() const override { return 4; }

  // The inner map in `key`'s slot, opened in this process (nullptr: empty, damaged or gone).
  std::shared_ptr<Map> resolve(const void* key) {
    Ref r;
    if (refs_->lookup_copy(key, &r, kBpfFLock) != 0) return nullptr;
    if (!ref_valid(r)) return nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = cache_.find(r.tag);
      if (it != cache_.end()) {
        publish(it->second.get());
        return it->second->map;
      }
    }
    std::shared_ptr<Map> m;
    auto opened = open_pinned_map(std::string(r.path, r.path_len));
    if (opened && (*opened)->store_id() == r.ino && store::created_ns_of(**opened) == r.created_ns &&
        inner_meta_equal(*spec_.inner, (*opened)->spec()))
      m = std::move(*opened);
    // A reference that cannot be resolved is remembered too (as empty): it names one map, and that
    // map does not come back.
    return remember(r.tag, std::move(m));
  }

 private:
  // What a tag resolved to in this process (map nullptr: an empty slot).
  struct Resolved {
    uint64_t tag;
    std::shared_ptr<Map> map;
  };
  std::shared_ptr<Map> remember(uint64_t tag, std::shared_ptr<Map> m) {
    std::lock_guard<std::mutex> lk(mu_);
    auto [it, fresh] = cache_.try_emplace(tag, nullptr);
    if (fresh) it->second = std::make_unique<Resolved>(Resolved{tag, std::move(m)});
    publish(it->second.get());
    return it->second->map;
  }
  // Puts r in the fast table: in a free or matching way of its set, else in its first way.
  void publish(const Resolved* r) {
    for (size_t w = 0; w < kWays; ++w) {
      auto& e = fast_[(r->tag + w) % kFast];
      const Resolved* cur = e.load(std::memory_order_relaxed);
      if (!cur || cur == r) {
        e.store(r, std::memory_order_release);
        return;
      }
    }
    fast_[r->tag % kFast].store(r, std::memory_order_release);
  }

  static constexpr size_t kFast = 1024, kWays = 4;
  Map::LookupFn refs_lookup_ = nullptr;
  Map::InlineArray arr_;  // array_of_maps: where the references are (max_entries 0: none)
  std::shared_ptr<Map> refs_;
  bool is_array_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Resolved>> cache_;  // never shrinks (see docs)
  std::array<std::atomic<const Resolved*>, kFast> fast_{};
};

uint64_t mim_layout(const MapSpec& s, int ncpus) {
  if (s.type != kMapArrayOfMaps && s.type != kMapHashOfMaps) return 0;
  return ref_family(s).layout(ref_spec(s), ncpus);
}

std::shared_ptr<Map> mim_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (!s.inner) {
    if (why) *why = "the header has no inner map template";
    return nullptr;
  }
  std::string w;
  std::shared_ptr<Map> refs = ref_family(s).make(ref_spec(s), r, &w);
  if (!refs) {
    if (why) *why = "its slots: " + w;
    return nullptr;
  }
  return std::make_shared<PinnedMapOfMaps>(s, std::move(refs), std::move(r));
}

}  // namespace

const store::RegionFamily kMapInMapRegion = {&mim_layout, &mim_in_region, false};

std::shared_ptr<Map> pinned_map_in_map_inner(Map& outer, const void* key) {
  if (auto* p = dynamic_cast<PinnedMapOfMaps*>(&outer)) return p->resolve(key);
  return nullptr;
}

}  // namespace bpfvm::maps
