// Hash family: hash, percpu_hash, lru_hash, lru_percpu_hash, hash_of_maps (the kernel's hashtab.c),
// also the storage of the typed hash-like maps.
//
// Buckets are singly linked lists read without locks; writers hold a striped bucket spin lock.
// An update links a new element at the head of its bucket before unlinking the old one, so a
// concurrent reader finds the old or the new element, never a half-written value; unlinked
// elements go through epoch-based reclamation (epoch.cpp). Per-CPU values and BPF_F_LOCK updates
// are in place, as in the kernel. LRU maps keep a list (one mutex) with a reference bit set by
// lookups; eviction is a second-chance scan from the cold end, one element at a time.
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long hash_check(const MapSpec& s, std::string* why) {
  bool percpu = s.type == kMapPercpuHash || s.type == kMapLruPercpuHash;
  bool lru = s.type == kMapLruHash || s.type == kMapLruPercpuHash;
  bool percpu_lru = s.flags & kMapFNoCommonLru;
  bool prealloc = !(s.flags & kMapFNoPrealloc);
  constexpr uint32_t kMask = kMapFNoPrealloc | kMapFNoCommonLru | kMapFNumaNode | kAccessMask | kMapFZeroSeed;
  if ((s.flags & ~kMask) || !access_ok(s.flags))
    return fail(why, EINVAL, "unsupported map_flags for a hash map");
  if (!lru && percpu_lru) return fail(why, EINVAL, "BPF_F_NO_COMMON_LRU needs an LRU map");
  if (lru && !prealloc) return fail(why, kENOTSUPP, "LRU maps cannot use BPF_F_NO_PREALLOC");
  if ((s.flags & kMapFNumaNode) && (percpu || percpu_lru))
    return fail(why, EINVAL, "per-CPU maps take no NUMA node");
  if (s.max_entries == 0 || s.key_size == 0 || s.value_size == 0)
    return fail(why, EINVAL, "max_entries, key_size and value_size must be > 0");
  if (uint64_t(s.key_size) + s.value_size >= kKmallocMaxSize - 48)
    return fail(why, E2BIG, "key_size + value_size too large");
  if (percpu && round_up8(s.value_size) > kPcpuMinUnitSize)
    return fail(why, E2BIG, "per-CPU value larger than 32 KiB");
  return 0;
}

namespace {

// 16-byte header, then the key (rounded up to 8), then the value (per-CPU: one slot per CPU),
// then, for LRU maps only, the LRU links.
struct Elem {
  std::atomic<Elem*> next;
  uint32_t hash;
  uint16_t val_off;          // value offset from the element start
  uint8_t holder : 1;        // value holds a MapHolder* (hash_of_maps)
  uint8_t cls : 7;           // size class of the memory (elem_alloc)
  std::atomic<uint8_t> ref;  // LRU reference bit
  uint8_t* key() { return reinterpret_cast<uint8_t*>(this + 1); }
  uint8_t* val() { return reinterpret_cast<uint8_t*>(this) + val_off; }
};
static_assert(sizeof(Elem) == 16);

struct LruLinks {
  Elem* prev;
  Elem* next;
  uint8_t state;             // 0 new, 1 linked, 2 unlinked (changed under the bucket lock)
  uint8_t in_lru;            // on the LRU list (changed under the LRU mutex)
};

struct MapHolder {
  std::shared_ptr<Map> ptr;
  uint32_t id;
};

void free_elem(void* p) {
  Elem* e = static_cast<Elem*>(p);
  if (e->holder) delete *reinterpret_cast<MapHolder**>(e->val());
  elem_free(e, e->cls);
}

class HashMap : public Map {
 public:
  HashMap(const MapSpec& s, uint32_t internal_value_size, uint32_t capacity = 0) : Map(s) {
    percpu_ = s.type == kMapPercpuHash || s.type == kMapLruPercpuHash || s.type == kMapPercpuCgroupStorage;
    lru_ = s.type == kMapLruHash || s.type == kMapLruPercpuHash;
    ncpus_ = percpu_ ? possible_cpus() : 1;
    vsize_ = internal_value_size;
    stride_ = round_up8(vsize_);
    max_ = capacity ? capacity : s.max_entries;
    if (lru_ && (s.flags & kMapFNoCommonLru)) {
      // the kernel splits the entries between CPUs and rounds max_entries up to a multiple of them
      uint64_t m = (uint64_t(max_) + ncpus_ - 1) / ncpus_ * ncpus_;
      if (m <= 0xffffffffull) max_ = uint32_t(m);
    }
    uint64_t nb = roundup_pow2(std::max<uint32_t>(max_, 1));
    if (nb > (1u << 24)) nb = 1u << 24;
    nbuckets_ = nb;
    mask_ = nb - 1;
    buckets_ = static_cast<std::atomic<Elem*>*>(std::calloc(nb, sizeof(std::atomic<Elem*>)));
    if (!buckets_) throw std::bad_alloc();
    nlocks_ = std::min<uint64_t>(nb, 1024);
    locks_ = std::make_unique<SpinLock[]>(nlocks_);
    seed_ = (s.flags & kMapFZeroSeed) ? 0 : random_seed();
    key_round_ = round_up8(s.key_size);
    lru_off_ = sizeof(Elem) + key_round_ + stride_ * ncpus_;
    elem_size_ = lru_off_ + (lru_ ? sizeof(LruLinks) : 0);
    cls_ = elem_class(elem_size_);
    if (!percpu_ && !lru_) {
      switch (s.key_size) {
        case 4: lookup_fn_ = &fast_lookup<4>; break;
        case 8: lookup_fn_ = &fast_lookup<8>; break;
        default: lookup_fn_ = &fast_lookup<0>; break;
      }
    }
  }
  // The engines' fast path (plain hash maps): the key size is a constant of the instance.
  template <uint32_t KS>
  static void* fast_lookup(Map* m, const void* key) {
    auto* h = static_cast<HashMap*>(m);
    reader_touch();
    uint32_t ks = KS ? KS : h->spec_.key_size;
    uint32_t hv = uint32_t(hash_bytes(key, ks, h->seed_));
    for (Elem* e = h->buckets_[hv & h->mask_].load(std::memory_order_acquire); e;
         e = e->next.load(std::memory_order_acquire))
      if (e->hash == hv && std::memcmp(e->key(), key, ks) == 0) return e->val();
    return nullptr;
  }
  ~HashMap() override {
    for (uint64_t b = 0; b < nbuckets_; ++b) {
      Elem* e = buckets_[b].load(std::memory_order_relaxed);
      while (e) {
        Elem* n = e->next.load(std::memory_order_relaxed);
        free_elem(e);
        e = n;
      }
    }
    std::free(buckets_);
  }

  // ---- internals ----
  uint32_t hash_of(const void* key) const { return uint32_t(hash_bytes(key, spec_.key_size, seed_)); }
  std::atomic<Elem*>& bucket(uint32_t h) const { return buckets_[h & mask_]; }
  SpinLock& lock_of(uint32_t h) const { return locks_[h & mask_ & (nlocks_ - 1)]; }
  bool key_eq(const Elem* e, const void* key) const {
    const uint8_t* k = reinterpret_cast<const uint8_t*>(e + 1);
    switch (spec_.key_size) {
      case 4: {
        uint32_t a, b;
        std::memcpy(&a, k, 4);
        std::memcpy(&b, key, 4);
        return a == b;
      }
      case 8: {
        uint64_t a, b;
        std::memcpy(&a, k, 8);
        std::memcpy(&b, key, 8);
        return a == b;
      }
      default:
        return std::memcmp(k, key, spec_.key_size) == 0;
    }
  }
  Elem* find(uint32_t h, const void* key) const {
    for (Elem* e = bucket(h).load(std::memory_order_acquire); e; e = e->next.load(std::memory_order_acquire))
      if (e->hash == h && key_eq(e, key)) return e;
    return nullptr;
  }
  int cpu() const { return percpu_ ? current_cpu() % ncpus_ : 0; }
  uint8_t* cpu_val(Elem* e, int c) const { return e->val() + size_t(c) * stride_; }

  Elem* alloc_elem(uint32_t h, const void* key) {
    Elem* e = static_cast<Elem*>(elem_alloc(elem_size_, cls_));
    if (!e) return nullptr;
    new (&e->next) std::atomic<Elem*>(nullptr);
    e->hash = h;
    e->val_off = uint16_t(sizeof(Elem) + key_round_);
    e->holder = 0;
    e->cls = cls_;
    new (&e->ref) std::atomic<uint8_t>(0);
    if (lru_) L(e) = LruLinks{nullptr, nullptr, 0, 0};
    if (key_round_ > spec_.key_size) std::memset(e->key() + spec_.key_size, 0, key_round_ - spec_.key_size);
    std::memcpy(e->key(), key, spec_.key_size);
    return e;
  }
  // Sets an element's value: all CPUs from a user-space array, or one CPU (others zero).
  void fill_value(Elem* e, const void* value, bool onallcpus) {
    fill_hash_value(
        HashValueLayout{percpu_, has_lock(), spec_.value_size, stride_, ncpus_}, e->val(),
        [&](int c) { return cpu_val(e, c); }, cpu(), [this](void* d, const void* v) { copy_value(d, v); }, value,
        onallcpus);
  }
  void set_percpu_in_place(Elem* e, const void* value, bool onallcpus) {
    if (onallcpus) {
      for (int c = 0; c < ncpus_; ++c)
        copy_value(cpu_val(e, c), static_cast<const uint8_t*>(value) + size_t(c) * stride_);
    } else {
      copy_value(cpu_val(e, cpu()), value);
    }
  }
  static long check_flags(Elem* old, uint64_t flags) { return check_update_flags(old != nullptr, flags); }
  // Unlinks e (under its bucket lock).
  void unlink_locked(Elem* e) {
    std::atomic<Elem*>* pp = &bucket(e->hash);
    for (Elem* c = pp->load(std::memory_order_relaxed); c; c = c->next.load(std::memory_order_relaxed)) {
      if (c == e) {
        pp->store(e->next.load(std::memory_order_relaxed), std::memory_order_release);
        if (lru_) L(e).state = 2;
        return;
      }
      pp = &c->next;
    }
  }
  void link_locked(Elem* e) {
    std::atomic<Elem*>& b = bucket(e->hash);
    e->next.store(b.load(std::memory_order_relaxed), std::memory_order_relaxed);
    if (lru_) L(e).state = 1;
    b.store(e, std::memory_order_release);
  }

  // ---- LRU list (lru_mu_) ----
  LruLinks& L(Elem* e) const { return *reinterpret_cast<LruLinks*>(reinterpret_cast<uint8_t*>(e) + lru_off_); }
  void lru_push_head(Elem* e) {
    L(e).prev = nullptr;
    L(e).next = lru_head_;
    if (lru_head_) L(lru_head_).prev = e;
    lru_head_ = e;
    if (!lru_tail_) lru_tail_ = e;
    L(e).in_lru = 1;
  }
  void lru_del(Elem* e) {
    LruLinks& l = L(e);
    if (!l.in_lru) return;
    if (l.prev) L(l.prev).next = l.next; else lru_head_ = l.next;
    if (l.next) L(l.next).prev = l.prev; else lru_tail_ = l.prev;
    l.prev = l.next = nullptr;
    l.in_lru = 0;
  }
  // Evicts one element (second chance from the cold end). Returns false if none could be.
  bool evict_one() {
    std::lock_guard<std::mutex> lk(lru_mu_);
    size_t budget = 2 * size_t(max_) + 2;
    Elem* e = lru_tail_;
    while (e && budget--) {
      Elem* prev = L(e).prev;
      SpinLock& bl = lock_of(e->hash);
      bl.lock();
      uint8_t state = L(e).state;
      if (state == 1 && !e->ref.load(std::memory_order_relaxed)) {
        unlink_locked(e);
        count_.fetch_sub(1, std::memory_order_relaxed);
        bl.unlock();
        lru_del(e);
        retire(e, free_elem);
        return true;
      }
      bl.unlock();
      if (state != 2) {  // referenced or not yet linked: second chance
        e->ref.store(0, std::memory_order_relaxed);
        lru_del(e);
        lru_push_head(e);
      }
      e = prev ? prev : lru_tail_;
    }
    return false;
  }
  // Reserves room for one more element (LRU: evicting if needed).
  // Under contention another thread may take the room an eviction made, so LRU maps keep trying
  // (yielding after a few rounds) rather than fail an update the kernel would not fail.
  bool reserve_slot() {
    for (int attempt = 0; attempt < 256; ++attempt) {
      if (count_.fetch_add(1, std::memory_order_relaxed) < max_) return true;
      count_.fetch_sub(1, std::memory_order_relaxed);
      if (!lru_) return false;
      evict_one();
      if (attempt >= 8) std::this_thread::yield();
    }
    return false;
  }
  void release_slot() { count_.fetch_sub(1, std::memory_order_relaxed); }
  void lru_add_new(Elem* e) {
    e->ref.store(0, std::memory_order_relaxed);  // new elements enter at the hot end, unreferenced
    std::lock_guard<std::mutex> lk(lru_mu_);
    lru_push_head(e);
  }
  void lru_forget(Elem* e) {
    std::lock_guard<std::mutex> lk(lru_mu_);
    lru_del(e);
  }

  // The one update path. onallcpus: user-space per-CPU layout. holder: value is an Owned map.
  long do_update(const void* key, const void* value, uint64_t flags, bool onallcpus, MapHolder* holder = nullptr) {
    if (percpu_ || lru_) {
      if (flags > kBpfExist) return -EINVAL;
    } else if ((flags & ~kBpfFLock) > kBpfExist) {
      return -EINVAL;
    }
    uint32_t h = hash_of(key);
    if (flags & kBpfFLock) {
      if (!has_lock()) return -EINVAL;
      reader_touch();
      Elem* old = find(h, key);
      if (long e = check_flags(old, flags)) return e;
      if (old) {
        copy_value_locked(old->val(), value);
        return 0;
      }
    }
    if (percpu_) return update_percpu(h, key, value, flags, onallcpus);
    bool slot = false;
    if (lru_) {
      if (!reserve_slot()) return -E2BIG;
      slot = true;
    }
    Elem* n = alloc_elem(h, key);
    if (!n) {
      if (slot) release_slot();
      return -ENOMEM;
    }
    if (holder) {
      n->holder = 1;
      std::memcpy(n->val(), &holder, sizeof(holder));
    } else {
      fill_value(n, value, onallcpus);
    }
    if (lru_) lru_add_new(n);
    SpinLock& bl = lock_of(h);
    bl.lock();
    Elem* old = find(h, key);
    long err = check_flags(old, flags);
    if (!err && !old && !slot) {
      if (count_.fetch_add(1, std::memory_order_relaxed) >= max_) {
        count_.fetch_sub(1, std::memory_order_relaxed);
        err = -E2BIG;
      }
    }
    if (err) {
      bl.unlock();
      if (lru_) lru_forget(n);
      if (slot) release_slot();
      n->holder = 0;
      free_elem(n);
      return err;
    }
    link_locked(n);
    if (old) {
      unlink_locked(old);
      if (slot) release_slot();
    }
    bl.unlock();
    if (old) {
      if (lru_) lru_forget(old);
      retire(old, free_elem);
    }
    return 0;
  }
  long update_percpu(uint32_t h, const void* key, const void* value, uint64_t flags, bool onallcpus) {
    bool slot = false;
    if (lru_ && flags != kBpfExist) {
      if (!reserve_slot()) return -E2BIG;
      slot = true;
    }
    SpinLock& bl = lock_of(h);
    bl.lock();
    Elem* old = find(h, key);
    long err = check_flags(old, flags);
    if (err) {
      bl.unlock();
      if (slot) release_slot();
      return err;
    }
    if (old) {
      set_percpu_in_place(old, value, onallcpus);
      if (lru_) old->ref.store(1, std::memory_order_relaxed);
      bl.unlock();
      if (slot) release_slot();
      return 0;
    }
    if (!slot && count_.fetch_add(1, std::memory_order_relaxed) >= max_) {
      count_.fetch_sub(1, std::memory_order_relaxed);
      bl.unlock();
      return -E2BIG;
    }
    Elem* n = alloc_elem(h, key);
    if (!n) {
      release_slot();
      bl.unlock();
      return -ENOMEM;
    }
    fill_value(n, value, onallcpus);
    if (lru_) {
      // LRU insertion happens before linking so that eviction never sees a linked element missing
      // from the list; the LRU mutex is never taken under a bucket lock, so unlock first.
      bl.unlock();
      lru_add_new(n);
      bl.lock();
      Elem* again = find(h, key);
      if (again) {  // raced with another insert of the same key
        bl.unlock();
        lru_forget(n);
        release_slot();
        free_elem(n);
        return flags == kBpfNoexist ? -EEXIST : update_percpu(h, key, value, flags, onallcpus);
      }
    }
    link_locked(n);
    bl.unlock();
    return 0;
  }

  // ---- program side ----
  void* lookup(const void* key) override {
    reader_touch();
    Elem* e = find(hash_of(key), key);
    if (!e) return nullptr;
    if (lru_ && !e->ref.load(std::memory_order_relaxed)) e->ref.store(1, std::memory_order_relaxed);
    return percpu_ ? cpu_val(e, cpu()) : e->val();
  }
  void* lookup_percpu(const void* key, uint32_t c) override {
    if (!percpu_ || c >= uint32_t(ncpus_)) return nullptr;
    reader_touch();
    Elem* e = find(hash_of(key), key);
    return e ? cpu_val(e, int(c)) : nullptr;
  }
  long update(const void* key, const void* value, uint64_t flags) override {
    return do_update(key, value, flags, false);
  }
  long remove(const void* key) override {
    uint32_t h = hash_of(key);
    SpinLock& bl = lock_of(h);
    bl.lock();
    Elem* e = find(h, key);
    if (!e) {
      bl.unlock();
      return -ENOENT;
    }
    unlink_locked(e);
    count_.fetch_sub(1, std::memory_order_relaxed);
    bl.unlock();
    if (lru_) lru_forget(e);
    retire(e, free_elem);
    return 0;
  }
  long for_each(ForEachFn cb, void* ctx) override {
    reader_touch();
    long n = 0;
    int c = cpu();
    for (uint64_t b = 0; b < nbuckets_; ++b)
      for (Elem* e = buckets_[b].load(std::memory_order_acquire); e; e = e->next.load(std::memory_order_acquire)) {
        ++n;
        if (cb(ctx, e->key(), percpu_ ? cpu_val(e, c) : e->val())) return n;
      }
    return n;
  }

  // ---- user space ----
  void copy_out(Elem* e, void* out, uint64_t flags) const {
    if (percpu_) {
      for (int c = 0; c < ncpus_; ++c) {
        uint8_t* o = static_cast<uint8_t*>(out) + size_t(c) * stride_;
        std::memcpy(o, cpu_val(e, c), stride_);
        if (has_lock()) std::memset(o + spec_.spin_lock_off, 0, 4);
      }
    } else if (flags & kBpfFLock) {
      copy_value_from_locked(out, e->val());
    } else {
      std::memcpy(out, e->val(), spec_.value_size);
      if (has_lock()) std::memset(static_cast<uint8_t*>(out) + spec_.spin_lock_off, 0, 4);
    }
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    ReadGuard rg;
    Elem* e = find(hash_of(key), key);
    if (!e) return -ENOENT;
    copy_out(e, out, flags);
    return 0;
  }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    ReadGuard rg;
    return do_update(key, value, flags, true);
  }
  long get_next_key(const void* key, void* next) override {
    ReadGuard rg;
    uint64_t start = 0;
    if (key) {
      uint32_t h = hash_of(key);
      Elem* e = find(h, key);
      if (e) {
        Elem* n = e->next.load(std::memory_order_acquire);
        if (n) {
          std::memcpy(next, n->key(), spec_.key_size);
          return 0;
        }
        start = (h & mask_) + 1;
      }
    }
    for (uint64_t b = start; b < nbuckets_; ++b) {
      Elem* e = buckets_[b].load(std::memory_order_acquire);
      if (e) {
        std::memcpy(next, e->key(), spec_.key_size);
        return 0;
      }
    }
    return -ENOENT;
  }
  long do_lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    ReadGuard rg;
    uint32_t h = hash_of(key);
    SpinLock& bl = lock_of(h);
    bl.lock();
    Elem* e = find(h, key);
    if (!e) {
      bl.unlock();
      return -ENOENT;
    }
    copy_out(e, out, flags);
    unlink_locked(e);
    count_.fetch_sub(1, std::memory_order_relaxed);
    bl.unlock();
    if (lru_) lru_forget(e);
    retire(e, free_elem);
    return 0;
  }
  size_t user_value_size() const override { return percpu_ ? stride_ * ncpus_ : spec_.value_size; }

 protected:
  bool percpu_ = false, lru_ = false;
  uint32_t vsize_ = 0, max_ = 0;
  size_t stride_ = 0, key_round_ = 0, elem_size_ = 0, lru_off_ = 0;
  uint8_t cls_ = 0;
  uint64_t nbuckets_ = 0, mask_ = 0, nlocks_ = 0, seed_ = 0;
  std::atomic<Elem*>* buckets_ = nullptr;
  std::unique_ptr<SpinLock[]> locks_;
  std::atomic<uint32_t> count_{0};
  std::mutex lru_mu_;
  Elem* lru_head_ = nullptr;
  Elem* lru_tail_ = nullptr;
};

// hash_of_maps: the value is a held map; programs get the inner Map*, user space its id.
class HashOfMaps final : public HashMap {
 public:
  explicit HashOfMaps(const MapSpec& s) : HashMap(s, 8) { lookup_fn_ = &generic_lookup; }
  void* lookup(const void* key) override {
    reader_touch();
    Elem* e = find(hash_of(key), key);
    if (!e) return nullptr;
    MapHolder* h;
    std::memcpy(&h, e->val(), sizeof(h));
    return h->ptr.get();
  }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (flags > kBpfExist) return -EINVAL;
    std::shared_ptr<Map> m = map_by_id(*static_cast<const uint32_t*>(value));
    if (!m) return -EBADF;
    if (!inner_meta_equal(*spec_.inner, m->spec())) return -EINVAL;
    uint32_t id = m->id();
    auto* holder = new MapHolder{std::move(m), id};
    ReadGuard rg;
    long err = do_update(key, nullptr, flags, true, holder);
    if (err) delete holder;
    return err;
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags) return -EINVAL;
    ReadGuard rg;
    Elem* e = find(hash_of(key), key);
    if (!e) return -ENOENT;
    MapHolder* h;
    std::memcpy(&h, e->val(), sizeof(h));
    std::memcpy(out, &h->id, 4);
    return 0;
  }
  long do_lookup_and_delete(const void*, void*, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  size_t user_value_size() const override { return 4; }
  long for_each(ForEachFn, void*) override { return -EINVAL; }
};

}  // namespace

std::shared_ptr<Map> make_hash(const MapSpec& s) { return std::make_shared<HashMap>(s, s.value_size); }
std::shared_ptr<Map> make_hash_of_maps(const MapSpec& s) { return std::make_shared<HashOfMaps>(s); }
std::shared_ptr<Map> make_plain_hash_storage(const MapSpec& s) {
  // local/cgroup storage has max_entries 0 (one element per kernel object): give it room.
  return std::make_shared<HashMap>(s, s.value_size, s.max_entries ? 0 : 65536);
}

}  // namespace bpfvm::maps
