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
// tag. A program's lookup finds them through a per-process table of entries {tag, inner map,
// where the reference is}: for array_of_maps one per slot, checked against the slot's tag; for
// hash_of_maps indexed by a hash of the key, checked against the element it names (it must
// still hold the key, in a chain, and the tag), so an unchanged slot costs about what a private
// map's lookup does; when the entry does not answer, the outer map is searched and the slot's
// reference resolved (and recorded in the entry). A reference that is damaged (bad length, not NUL-terminated, tag mismatch), names a missing
// file, a file that is no longer the map it named (other inode or creation time) or a map that does
// not match the template reads as an empty slot.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>
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

// An entry of the slot table: the tag of a reference, what it resolved to, and (hash_of_maps)
// where the reference was. Written under mu_ with its tag zeroed first; read without a lock and
// believed only when its tag reads the same before and after the other fields.
struct Slot {
  std::atomic<uint64_t> tag;
  std::atomic<Map*> map;
  std::atomic<const Ref*> ref;
  uint64_t pad;
  uint64_t read(Map** m, const Ref** r = nullptr) const {
    const uint64_t t = tag.load(std::memory_order_acquire);
    *m = map.load(std::memory_order_relaxed);
    if (r) *r = ref.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return tag.load(std::memory_order_relaxed) == t ? t : 0;
  }
};

class PinnedMapOfMaps final : public Map {
 public:
  PinnedMapOfMaps(const MapSpec& s, std::shared_ptr<Map> refs, std::shared_ptr<store::Region> region)
      : Map(s), refs_(std::move(refs)), is_array_(s.type == kMapArrayOfMaps) {
    region_ = std::move(region);
    refs_lookup_ = refs_->lookup_fn();
    if (is_array_ && !refs_->inline_array(&arr_)) arr_ = {};
    // array_of_maps: an entry per slot; hash_of_maps: sets of kWays entries indexed by a hash of
    // the key (at least four entries per possible key, at most 64 Ki; a full set replaces its first).
    nslots_ = is_array_ ? std::max<size_t>(arr_.max_entries, 1)
                        : size_t(roundup_pow2(std::clamp<uint64_t>(4 * uint64_t(s.max_entries), 64, 1u << 16)));
    slots_ = static_cast<Slot*>(std::calloc(nslots_, sizeof(Slot)));
    if (!slots_) throw std::bad_alloc();
    seed_ = random_seed();
    key_round_ = round_up8(s.key_size);
    if (is_array_) lookup_fn_ = &array_lookup;
    else if (s.key_size == 4) lookup_fn_ = &hash_lookup_fn<4>;
    else if (s.key_size == 8) lookup_fn_ = &hash_lookup_fn<8>;
    else lookup_fn_ = &hash_lookup_fn<0>;
  }
  ~PinnedMapOfMaps() override { std::free(slots_); }

  // Program side: the inner Map*, opened once per process and kept for the outer map's life.
  void* lookup(const void* key) override { return lookup_fn_(this, key); }
  // array_of_maps: the slot's entry answers when it holds the slot's tag.
  static void* array_lookup(Map* map, const void* key) {
    auto* m = static_cast<PinnedMapOfMaps*>(map);
    const uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= m->arr_.max_entries) return nullptr;
    const Ref* v = reinterpret_cast<const Ref*>(m->arr_.base + size_t(idx) * m->arr_.stride);
    const uint64_t tag = __atomic_load_n(&v->tag, __ATOMIC_ACQUIRE);
    if (tag == 0) return nullptr;
    Map* inner;
    if (m->slots_[idx].read(&inner) == tag) return inner;
    return m->lookup_slow(key, nullptr, &m->slots_[idx]);
  }
  template <uint32_t KS>
  static void* hash_lookup_fn(Map* map, const void* key) {
    return hash_lookup<KS>(static_cast<PinnedMapOfMaps*>(map), key);
  }
  // hash_of_maps: an entry of the key's set names an element of the outer map's area, the tag its
  // reference had, and what that resolved to. It answers when the element still holds this key
  // and that tag and is in a chain (not owned by a writer: see StoreHashElem); else the outer map
  // is searched. KS: the key size when a constant (0: spec_.key_size).
  template <uint32_t KS>
  static void* hash_lookup(PinnedMapOfMaps* m, const void* key) {
    const uint32_t ks = KS ? KS : m->spec_.key_size;
    const size_t h = hash_bytes(key, ks, m->seed_);
    Map* inner;
    if (m->entry_answers<KS>(m->slots_[h & (m->nslots_ - 1)], key, &inner)) return inner;
    return m->hash_lookup_slow<KS>(key, h);
  }
  template <uint32_t KS>
  bool entry_answers(const Slot& e, const void* key, Map** inner) const {
    const Ref* v;
    const uint64_t t = e.read(inner, &v);
    if (!t) return false;
    auto* el = reinterpret_cast<StoreHashElem*>(reinterpret_cast<uint8_t*>(const_cast<Ref*>(v)) - key_round_) - 1;
    const uint64_t before = __atomic_load_n(&v->tag, __ATOMIC_ACQUIRE);
    const bool same_key = std::memcmp(el->key(), key, KS ? KS : spec_.key_size) == 0;
    return before == t && same_key && el->owner.load(std::memory_order_acquire) == 0 &&
           (el->linked.load(std::memory_order_acquire) & 1) && __atomic_load_n(&v->tag, __ATOMIC_ACQUIRE) == t;
  }
  template <uint32_t KS>
  __attribute__((noinline)) void* hash_lookup_slow(const void* key, size_t h) {
    Map* inner;
    for (size_t w = 1; w < kWays; ++w)
      if (entry_answers<KS>(slots_[(h + w) & (nslots_ - 1)], key, &inner)) return inner;
    void* found = refs_lookup_(refs_.get(), key);
    if (!found) return nullptr;
    return lookup_slow(key, static_cast<const Ref*>(found), &slots_[h & (nslots_ - 1)]);
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
    const Resolved* r = resolve_ref(key);
    return r ? r->map : nullptr;
  }

 private:
  // What a tag resolved to in this process (map nullptr: an empty slot). Kept while this object
  // lives, so the slot table's raw pointers stay valid.
  struct Resolved {
    uint64_t tag;
    std::shared_ptr<Map> map;
  };
  // The reference in `key`'s slot, copied under its lock, validated and resolved (nullptr: no
  // reference, or a damaged one).
  const Resolved* resolve_ref(const void* key) {
    Ref r;
    if (refs_->lookup_copy(key, &r, kBpfFLock) != 0) return nullptr;
    if (!ref_valid(r)) return nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = cache_.find(r.tag);
      if (it != cache_.end()) return it->second.get();
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
  const Resolved* remember(uint64_t tag, std::shared_ptr<Map> m) {
    std::lock_guard<std::mutex> lk(mu_);
    auto [it, fresh] = cache_.try_emplace(tag, nullptr);
    if (fresh) it->second = std::make_unique<Resolved>(Resolved{tag, std::move(m)});
    return it->second.get();
  }
  // A program's lookup that its entry could not answer: resolve the slot's reference and record
  // it in the entry (for hash_of_maps with `found`, the reference the outer map's search found,
  // and only if it still holds the tag resolved).
  __attribute__((noinline)) Map* lookup_slow(const void* key, const Ref* found, Slot* set) {
    const Resolved* r = resolve_ref(key);
    if (!r) return nullptr;
    if (found && __atomic_load_n(&found->tag, __ATOMIC_ACQUIRE) != r->tag) return r->map.get();
    std::lock_guard<std::mutex> lk(mu_);
    // hash_of_maps: the way of the key's set that holds this reference or is free, else the first.
    Slot* pe = set;
    if (found) {
      const size_t base = size_t(set - slots_);
      for (size_t w = 0; w < kWays; ++w) {
        Slot* c = &slots_[(base + w) & (nslots_ - 1)];
        if (c->ref.load(std::memory_order_relaxed) == found || !c->tag.load(std::memory_order_relaxed)) {
          pe = c;
          break;
        }
      }
    }
    Slot& e = *pe;
    e.tag.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    e.map.store(r->map.get(), std::memory_order_relaxed);
    e.ref.store(found, std::memory_order_relaxed);
    e.tag.store(r->tag, std::memory_order_release);
    return r->map.get();
  }

  static constexpr size_t kWays = 4;
  Map::LookupFn refs_lookup_ = nullptr;
  Map::InlineArray arr_;  // array_of_maps: where the references are (max_entries 0: none)
  std::shared_ptr<Map> refs_;
  bool is_array_;
  size_t nslots_ = 0;
  Slot* slots_ = nullptr;
  uint64_t seed_ = 0;
  size_t key_round_ = 0;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Resolved>> cache_;  // never shrinks (see docs)
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
