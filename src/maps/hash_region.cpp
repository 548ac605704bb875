// Hash maps in a region (hash, percpu_hash, lru_hash, lru_percpu_hash): the layout the store pins
// and shares between processes. Everything is an index into the region, never a pointer, so any process that maps the
// file reads the same structure, and every index read from it is checked before use.
//
// Layout: a control block, the buckets {robust lock, head}, then max_entries + kSpare elements
// {next, hash, owner, linked, key, value(s)} preallocated as the kernel's prealloc hash maps are.
// Chains end in a "nulls" marker naming their bucket (the kernel's hlist_nulls): a lock-free reader
// that ends on another bucket's marker was moved by a concurrent reuse and restarts. Elements are
// reused at once (no grace period, like the kernel's preallocated maps: a pointer a program holds
// may see a later value). Walks are bounded by the number of elements, so a damaged file cannot
// make a reader loop.
//
// Surviving SIGKILL: every change to a chain or the free list is one store that leaves it valid.
// What a killed process can leave behind is an element it owned (allocated, not yet linked; or
// unlinked, not yet freed), a count off by one, or for a moment a key twice in a chain (the new
// element is linked before the old is unlinked; lookups find the new one first). Whoever finds a
// lock's holder dead repairs the map, and the repair is what takes that lock over (so nobody
// locks the bucket before it is repaired): with every lock held, it walks every chain (cutting
// anything invalid, dropping older duplicates), recounts, and rebuilds the free list from every
// element that is neither linked nor owned by a live process. A free list that runs dry, and a
// "map full" answer (at most once a second), also trigger a repair, which recovers elements of a
// process that died while holding no lock. A repair killed midway holds the locks it took (so the
// next writer repairs again) and has recorded as its own every element it took out of a chain or is
// putting on the free list, so it loses none either. store::kill_point() marks each step (tests
// kill a writer after every one in turn).
//
// LRU maps hold at most max_entries elements and never answer "full": an insert into a full map
// first evicts the least recently used of a sample of elements. Every insert advances a tick in
// the control block; an element keeps the tick of its insert or of the last program lookup that
// found it (a lookup stores it only when it changed, so hot keys cost no writes between inserts).
// The sample is the next 32 linked elements from a hand shared by every process (the whole map when
// it is smaller), as Redis approximates LRU; the kernel's LRU lists approximate the same order.
// Eviction is a delete under the victim's bucket lock, taken while the inserter holds no other lock.
#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm::maps {
namespace {

constexpr uint32_t kNulls = 0x80000000u;
constexpr uint32_t kFreeEnd = kNulls | 0x7fffffffu;
constexpr uint32_t kSpare = 64;  // elements beyond max_entries, for replacing updates
constexpr uint32_t kLayoutMagic = 0x48415348;  // "HASH"

struct HCtl {
  uint32_t magic;
  uint32_t nbuckets;
  uint32_t nelems;
  uint32_t elem_size;
  uint64_t seed;
  store::RobustLock free_lock;
  std::atomic<uint32_t> free_head;  // element index + 1, or kFreeEnd
  std::atomic<uint32_t> count;      // linked elements
  store::RobustLock repair_lock;
  std::atomic<uint32_t> repairs;    // repairs done so far
  std::atomic<uint32_t> lru_hand;   // LRU maps: where the next eviction sample starts
  std::atomic<uint32_t> lru_tick;   // LRU maps: advanced by every insert
  uint8_t pad[12];
};
static_assert(sizeof(HCtl) == 64);

struct HBucket {
  store::RobustLock lock;
  std::atomic<uint32_t> head;  // element index + 1, or kNulls | bucket
};

using HElem = StoreHashElem;  // map_internal.hpp

struct Shape {
  uint32_t nbuckets, nelems, elem_size;
  uint64_t buckets_off, elems_off, total;
};

Shape shape_of(const MapSpec& s, int ncpus) {
  Shape sh{};
  bool percpu = s.type == kMapPercpuHash || s.type == kMapLruPercpuHash;
  uint64_t nb = roundup_pow2(std::max<uint32_t>(s.max_entries, 1));
  if (nb > (1u << 24)) nb = 1u << 24;
  sh.nbuckets = uint32_t(nb);
  uint64_t ne = uint64_t(s.max_entries) + kSpare;
  uint64_t es = sizeof(HElem) + round_up8(s.key_size) + round_up8(s.value_size) * (percpu ? uint64_t(ncpus) : 1);
  if (ne >= 0x7fffffffu || es > 0xffffffffu) return Shape{};
  sh.nelems = uint32_t(ne);
  sh.elem_size = uint32_t(es);
  sh.buckets_off = sizeof(HCtl);
  sh.elems_off = (sh.buckets_off + nb * sizeof(HBucket) + 63) & ~63ull;
  sh.total = sh.elems_off + ne * es;
  return sh;
}

uint64_t hash_layout(const MapSpec& s, int ncpus) {
  Shape sh = shape_of(s, ncpus);
  return sh.total > (1ull << 40) ? 0 : sh.total;
}

class RegionHash final : public Map {
 public:
  RegionHash(const MapSpec& s, std::shared_ptr<store::Region> region, const Shape& sh) : Map(s) {
    percpu_ = s.type == kMapPercpuHash || s.type == kMapLruPercpuHash;
    lru_ = s.type == kMapLruHash || s.type == kMapLruPercpuHash;
    ncpus_ = percpu_ ? region->ncpus() : 1;
    stride_ = round_up8(s.value_size);
    key_round_ = round_up8(s.key_size);
    nb_ = sh.nbuckets;
    mask_ = nb_ - 1;
    nelems_ = sh.nelems;
    esize_ = sh.elem_size;
    max_ = s.max_entries;
    ctl_ = reinterpret_cast<HCtl*>(region->base());
    buckets_ = reinterpret_cast<HBucket*>(region->base() + sh.buckets_off);
    elems_ = region->base() + sh.elems_off;
    if (region->fresh()) {
      ctl_->magic = kLayoutMagic;
      ctl_->nbuckets = nb_;
      ctl_->nelems = nelems_;
      ctl_->elem_size = esize_;
      ctl_->seed = (s.flags & kMapFZeroSeed) ? 0 : random_seed();
      for (uint32_t b = 0; b < nb_; ++b) buckets_[b].head.store(kNulls | b, std::memory_order_relaxed);
      for (uint32_t i = 0; i < nelems_; ++i)
        elem(i)->next.store(i + 1 < nelems_ ? i + 2 : kFreeEnd, std::memory_order_relaxed);
      ctl_->free_head.store(1, std::memory_order_relaxed);
    }
    seed_ = ctl_->seed;
    region_ = std::move(region);
    if (!percpu_ && !lru_) {
      switch (s.key_size) {
        case 4: lookup_fn_ = &fast_lookup<4>; break;
        case 8: lookup_fn_ = &fast_lookup<8>; break;
        default: lookup_fn_ = &fast_lookup<0>; break;
      }
    }
  }

  ~RegionHash() override {
    if (HElem* e = stash_take()) release_to_list(e);
  }

  static bool validate(const HCtl& c, const Shape& sh, std::string* why) {
    if (c.magic != kLayoutMagic || c.nbuckets != sh.nbuckets || c.nelems != sh.nelems || c.elem_size != sh.elem_size) {
      if (why) *why = "damaged hash table header (bucket or element counts do not match the map's shape)";
      return false;
    }
    return true;
  }

  HElem* elem(uint32_t i) const { return reinterpret_cast<HElem*>(elems_ + size_t(i) * esize_); }
  uint32_t index_of(const HElem* e) const { return uint32_t((reinterpret_cast<const uint8_t*>(e) - elems_) / esize_); }
  uint8_t* val(HElem* e) const { return e->key() + key_round_; }
  uint8_t* cpu_val(HElem* e, int c) const { return val(e) + size_t(c) * stride_; }
  int cpu() const { return percpu_ ? region_->cpu_slot(ncpus_) : 0; }
  uint32_t hash_of(const void* key) const { return uint32_t(hash_bytes(key, spec_.key_size, seed_)); }

  template <uint32_t KS>
  bool key_eq(HElem* e, const void* key) const {
    const uint32_t ks = KS ? KS : spec_.key_size;
    if constexpr (KS == 4) {
      uint32_t a, b;
      std::memcpy(&a, e->key(), 4);
      std::memcpy(&b, key, 4);
      return a == b;
    } else if constexpr (KS == 8) {
      uint64_t a, b;
      std::memcpy(&a, e->key(), 8);
      std::memcpy(&b, key, 8);
      return a == b;
    } else {
      return std::memcmp(e->key(), key, ks) == 0;
    }
  }

  // Lock-free search (also used under the bucket lock).
  template <uint32_t KS = 0>
  HElem* find(uint32_t h, const void* key) const {
    const uint32_t b = h & mask_;
    for (int restart = 0; restart < 8; ++restart) {
      uint32_t v = buckets_[b].head.load(std::memory_order_acquire);
      uint32_t steps = 0;
      while (!(v & kNulls)) {
        if (v == 0 || v > nelems_ || ++steps > nelems_) return nullptr;  // damaged
        HElem* e = elem(v - 1);
        if (e->hash == h && key_eq<KS>(e, key)) return e;
        v = e->next.load(std::memory_order_acquire);
      }
      if ((v & ~kNulls) == b) return nullptr;
    }
    return nullptr;
  }

  // find() with the key size of this map as a constant (4 and 8 bytes).
  HElem* find_any(uint32_t h, const void* key) const {
    switch (spec_.key_size) {
      case 4: return find<4>(h, key);
      case 8: return find<8>(h, key);
      default: return find<0>(h, key);
    }
  }

  template <uint32_t KS>
  static void* fast_lookup(Map* m, const void* key) {
    auto* h = static_cast<RegionHash*>(m);
    uint32_t hv = uint32_t(hash_bytes(key, KS ? KS : h->spec_.key_size, h->seed_));
    HElem* e = h->find<KS>(hv, key);
    return e ? h->val(e) : nullptr;
  }

  // ---- locks (a lock whose holder died is taken over by a repair, which repairs the map first) ----
  // The lock stays with the dead holder until the repair takes it over in its lock order: were it
  // taken and released first, another process could lock the bucket in between and find what the
  // dead holder left (a key linked twice: deleting the newer element would bring back the older).
  void lock_bucket(uint32_t b) {
    while (!buckets_[b].lock.lock_live()) repair();
    store::kill_point();
  }
  void unlock_bucket(uint32_t b) {
    buckets_[b].lock.unlock();
    store::kill_point();
  }
  void lock_free() {
    while (!ctl_->free_lock.lock_live()) repair();
    store::kill_point();
  }

  HElem* alloc_once() {
    lock_free();
    uint32_t v = ctl_->free_head.load(std::memory_order_relaxed);
    HElem* e = nullptr;
    bool damaged = false;
    if (v != kFreeEnd) {
      if (v >= 1 && v <= nelems_) {
        // Owned first: a process killed at any step leaves the element on the list or recorded
        // as its own (reclaimed by a repair), never neither.
        e = elem(v - 1);
        e->owner.store(store::self_pid(), std::memory_order_relaxed);
        store::kill_point();
        e->linked.store(0, std::memory_order_relaxed);
        store::kill_point();
        ctl_->free_head.store(e->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
        store::kill_point();
      } else {
        damaged = true;
      }
    }
    ctl_->free_lock.unlock();
    store::kill_point();
    if (damaged) repair();
    return e;
  }
  // One element per thread and map kept back from the free list: an update that replaces an
  // element (or a delete) leaves the old one here and the thread's next insert takes it, without
  // the free list's lock. It stays owned by this process (a repair leaves it alone while the
  // process lives, and reclaims it after). Entries name the map by a process-unique serial, so an
  // entry of a map object since destroyed never matches, and the process, so that a child of
  // fork() never uses an element its parent holds.
  struct Stash {
    uint64_t serial;
    HElem* e;
    uint32_t pid;  // a child of fork() must not use its parent's entries
  };
  static constexpr int kStashSlots = 4;
  static Stash* stash() {
    thread_local Stash s[kStashSlots] = {};
    return s;
  }
  HElem* stash_take() {
    Stash* s = stash();
    for (int i = 0; i < kStashSlots; ++i)
      if (s[i].serial == serial_ && s[i].e && s[i].pid == store::self_pid()) {
        HElem* e = s[i].e;
        s[i].e = nullptr;
        return e;
      }
    return nullptr;
  }
  bool stash_put(HElem* e) {
    Stash* s = stash();
    int victim = -1;
    const uint32_t me = store::self_pid();
    for (int i = 0; i < kStashSlots; ++i) {
      if (s[i].pid != me) s[i] = Stash{0, nullptr, me};  // inherited through fork(): not ours
      if (s[i].serial == serial_) {
        if (s[i].e) return false;
        s[i].e = e;
        return true;
      }
      if (!s[i].e && victim < 0) victim = i;
    }
    if (victim < 0) return false;
    s[victim] = Stash{serial_, e, me};
    return true;
  }

  HElem* alloc() {
    if (HElem* e = stash_take()) return e;
    if (HElem* e = alloc_once()) return e;
    repair();  // elements of dead processes, or a damaged free list
    return alloc_once();
  }
  // Gives an element back (owned by this process, in no chain).
  void release(HElem* e) {
    if (stash_put(e)) return;
    release_to_list(e);
  }
  // The element stays owned until it is on the list.
  void release_to_list(HElem* e) {
    lock_free();
    e->linked.store(0, std::memory_order_relaxed);
    store::kill_point();
    e->next.store(ctl_->free_head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    store::kill_point();
    ctl_->free_head.store(index_of(e) + 1, std::memory_order_release);
    store::kill_point();
    e->owner.store(0, std::memory_order_relaxed);
    store::kill_point();
    ctl_->free_lock.unlock();
    store::kill_point();
  }
  // Under the bucket lock. The element stays owned until it is in the chain.
  void link(HElem* n, uint32_t b) {
    n->next.store(buckets_[b].head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    store::kill_point();
    n->linked.store(lru_ ? 1 | (ctl_->lru_tick.fetch_add(1, std::memory_order_relaxed) + 1) << 1 : 1,
                    std::memory_order_relaxed);
    store::kill_point();
    buckets_[b].head.store(index_of(n) + 1, std::memory_order_release);
    store::kill_point();
    n->owner.store(0, std::memory_order_relaxed);
    store::kill_point();
  }
  bool unlink(HElem* e, uint32_t b) {
    std::atomic<uint32_t>* pp = &buckets_[b].head;
    const uint32_t target = index_of(e) + 1;
    uint32_t steps = 0;
    for (uint32_t v = pp->load(std::memory_order_relaxed); !(v & kNulls); v = pp->load(std::memory_order_relaxed)) {
      if (v == 0 || v > nelems_ || ++steps > nelems_) return false;
      if (v == target) {  // owned before it leaves the chain
        e->owner.store(store::self_pid(), std::memory_order_relaxed);
        store::kill_point();
        pp->store(e->next.load(std::memory_order_relaxed), std::memory_order_release);
        store::kill_point();
        e->linked.store(0, std::memory_order_relaxed);
        store::kill_point();
        return true;
      }
      pp = &elem(v - 1)->next;
    }
    return false;
  }

  // ---- repair: see the file comment ----
  // A repair may be killed too (it holds every lock, so whoever takes one over repairs again): at
  // every step each element is in a chain, on the free list, or owned by the repairing process.
  // An element it takes out of a chain, and every element it puts on the rebuilt free list, is
  // recorded as its own first; the old list stays whole until the new one replaces it.
  void repair() {
    store::RobustLock& rl = ctl_->repair_lock;
    rl.lock();
    store::kill_point();
    for (uint32_t b = 0; b < nb_; ++b) {
      buckets_[b].lock.lock();
      store::kill_point();
    }
    ctl_->free_lock.lock();
    store::kill_point();
    const uint32_t me = store::self_pid();
    std::vector<uint8_t> in_chain(nelems_, 0), dropped(nelems_, 0);
    uint32_t count = 0;
    for (uint32_t b = 0; b < nb_; ++b) {
      std::atomic<uint32_t>* pp = &buckets_[b].head;
      std::vector<HElem*> seen;
      for (;;) {
        uint32_t v = pp->load(std::memory_order_relaxed);
        if (v & kNulls) {
          if (v != (kNulls | b)) pp->store(kNulls | b, std::memory_order_release);
          store::kill_point();
          break;
        }
        bool bad = v == 0 || v > nelems_ || in_chain[v - 1] || dropped[v - 1];
        HElem* e = bad ? nullptr : elem(v - 1);
        if (e && (e->hash & mask_) != b) bad = true;
        if (bad) {  // damage (no kill leaves this): cut the chain here
          pp->store(kNulls | b, std::memory_order_release);
          store::kill_point();
          break;
        }
        bool dup = false;
        for (HElem* s : seen)
          if (s->hash == e->hash && std::memcmp(s->key(), e->key(), spec_.key_size) == 0) dup = true;
        if (dup) {  // an older element of a key linked again: drop it (owned first, as unlink())
          e->owner.store(me, std::memory_order_relaxed);
          store::kill_point();
          pp->store(e->next.load(std::memory_order_relaxed), std::memory_order_release);
          store::kill_point();
          e->linked.store(0, std::memory_order_relaxed);
          store::kill_point();
          dropped[v - 1] = 1;
          continue;
        }
        in_chain[v - 1] = 1;
        seen.push_back(e);
        const uint32_t l = e->linked.load(std::memory_order_relaxed);
        if (!(l & kLinked)) e->linked.store(l | kLinked, std::memory_order_relaxed);  // keeps an LRU tick
        e->owner.store(0, std::memory_order_relaxed);
        store::kill_point();
        ++count;
        pp = &e->next;
      }
    }
    ctl_->count.store(count, std::memory_order_relaxed);
    store::kill_point();
    // The free list: every element neither linked nor owned by a live process (this one's own are
    // in flight in another thread, or kept back for its next insert), and those dropped above.
    std::unordered_map<uint32_t, bool> alive;
    std::vector<uint32_t> take;
    for (uint32_t i = 0; i < nelems_; ++i) {
      if (in_chain[i]) continue;
      uint32_t o = elem(i)->owner.load(std::memory_order_relaxed);
      if (o && !dropped[i]) {
        auto it = alive.find(o);
        bool a = it != alive.end() ? it->second : (alive[o] = store::pid_alive(o));
        if (a) continue;  // in flight in a live process: it links or frees it itself
      }
      take.push_back(i);
    }
    for (uint32_t i : take) {  // ours while the list is rebuilt
      elem(i)->owner.store(me, std::memory_order_relaxed);
      store::kill_point();
    }
    uint32_t head = kFreeEnd;
    for (size_t j = take.size(); j-- > 0;) {
      HElem* e = elem(take[j]);
      e->linked.store(0, std::memory_order_relaxed);
      e->next.store(head, std::memory_order_relaxed);
      store::kill_point();
      head = take[j] + 1;
    }
    ctl_->free_head.store(head, std::memory_order_release);
    store::kill_point();
    for (uint32_t i : take) {
      elem(i)->owner.store(0, std::memory_order_relaxed);
      store::kill_point();
    }
    ctl_->repairs.fetch_add(1, std::memory_order_relaxed);
    ctl_->free_lock.unlock();
    for (uint32_t b = nb_; b-- > 0;) buckets_[b].lock.unlock();
    rl.unlock();
    store::kill_point();
  }
  // "Map full": a count left high by a dead process is corrected at most once a second.
  bool maybe_repair_full() {
    using clock = std::chrono::steady_clock;
    auto now = clock::now().time_since_epoch().count();
    int64_t last = last_full_repair_.load(std::memory_order_relaxed);
    if (now - last < int64_t(std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count())) return false;
    if (!last_full_repair_.compare_exchange_strong(last, now)) return false;
    repair();
    return true;
  }

  // ---- LRU eviction (see the file comment) ----
  static constexpr uint32_t kLinked = 1, kSample = 32;
  void touch(HElem* e) {
    const uint32_t t = ctl_->lru_tick.load(std::memory_order_relaxed) & 0x7fffffffu;
    uint32_t l = e->linked.load(std::memory_order_relaxed);
    // A compare-and-swap, so that a use never marks linked an element just unlinked.
    if ((l & kLinked) && (l >> 1) != t) e->linked.compare_exchange_strong(l, kLinked | t << 1, std::memory_order_relaxed);
  }
  // Evicts one element; false when none could be (every element in flight elsewhere).
  bool evict_one() {
    for (int attempt = 0; attempt < 8; ++attempt) {
      const uint32_t now = ctl_->lru_tick.load(std::memory_order_relaxed) & 0x7fffffffu;
      uint32_t start = ctl_->lru_hand.fetch_add(kSample, std::memory_order_relaxed) % nelems_;
      HElem* victim = nullptr;
      uint32_t victim_age = 0, found = 0;
      for (uint32_t n = 0; n < nelems_ && found < kSample; ++n) {
        HElem* e = elem((start + n) % nelems_);
        uint32_t l = e->linked.load(std::memory_order_relaxed);
        if (!(l & kLinked)) continue;
        ++found;
        uint32_t age = (now - (l >> 1)) & 0x7fffffffu;
        if (!victim || age > victim_age) victim = e, victim_age = age;
      }
      if (!victim) return false;
      const uint32_t b = victim->hash & mask_;
      lock_bucket(b);
      // Still linked in that bucket (unlink() walks the chain): else another process took it.
      bool gone = (victim->linked.load(std::memory_order_relaxed) & kLinked) && unlink(victim, b);
      if (gone) ctl_->count.fetch_sub(1, std::memory_order_relaxed);
      store::kill_point();
      unlock_bucket(b);
      if (gone) {
        release(victim);
        return true;
      }
    }
    return false;
  }

  // ---- values ----
  void fill(HElem* e, const void* value, bool onallcpus) {
    fill_hash_value(
        HashValueLayout{percpu_, has_lock(), spec_.value_size, stride_, ncpus_}, val(e),
        [&](int c) { return cpu_val(e, c); }, cpu(), [this](void* d, const void* v) { copy_value(d, v); }, value,
        onallcpus);
  }
  void set_in_place(HElem* e, const void* value, bool onallcpus) {
    if (!percpu_) {
      copy_value(val(e), value);
    } else if (onallcpus) {
      for (int c = 0; c < ncpus_; ++c) copy_value(cpu_val(e, c), static_cast<const uint8_t*>(value) + size_t(c) * stride_);
    } else {
      copy_value(cpu_val(e, cpu()), value);
    }
  }
  static long check_flags(HElem* old, uint64_t flags) { return check_update_flags(old != nullptr, flags); }

  long do_update(const void* key, const void* value, uint64_t flags, bool onallcpus) {
    if (percpu_ ? flags > kBpfExist : (flags & ~kBpfFLock) > kBpfExist) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    const uint32_t h = hash_of(key), b = h & mask_;
    if (flags & kBpfFLock) {
      HElem* old = find_any(h, key);
      if (long e = check_flags(old, flags)) return e;
      if (old) {
        copy_value_locked(val(old), value);
        return 0;
      }
    }
    if (percpu_) {  // per-CPU values are updated in place, as in the kernel
      lock_bucket(b);
      HElem* old = find_any(h, key);
      if (old) {
        long e = check_flags(old, flags);
        if (!e) set_in_place(old, value, onallcpus);
        unlock_bucket(b);
        return e;
      }
      unlock_bucket(b);
    }
    for (int attempt = 0;; ++attempt) {
      if (lru_ && ctl_->count.load(std::memory_order_relaxed) >= max_ && !find_any(h, key)) evict_one();
      HElem* n = alloc();
      if (!n && lru_ && attempt < 64 && evict_one()) continue;
      if (!n) {
        // No spare element: replace in place, or the map is full.
        lock_bucket(b);
        HElem* old = find_any(h, key);
        long e = check_flags(old, flags);
        if (!e && old) set_in_place(old, value, onallcpus);
        unlock_bucket(b);
        return e ? e : old ? 0 : -E2BIG;
      }
      n->hash = h;
      if (key_round_ > spec_.key_size) std::memset(n->key() + key_round_ - 8, 0, 8);
      std::memcpy(n->key(), key, spec_.key_size);
      fill(n, value, onallcpus);
      lock_bucket(b);
      HElem* old = find_any(h, key);
      long err = check_flags(old, flags);
      if (!err && !old) {
        if (ctl_->count.load(std::memory_order_relaxed) >= max_)
          err = -E2BIG;
        else
          ctl_->count.fetch_add(1, std::memory_order_relaxed);
        store::kill_point();
      }
      if (err) {
        unlock_bucket(b);
        release(n);
        if (err == -E2BIG && lru_ && attempt < 64) continue;  // evicts at the top of the loop
        if (err == -E2BIG && attempt == 0 && maybe_repair_full()) continue;
        return err;
      }
      link(n, b);
      if (old) unlink(old, b);
      unlock_bucket(b);
      if (old) release(old);
      return 0;
    }
  }

  // ---- program side ----
  void* lookup(const void* key) override {
    HElem* e = find_any(hash_of(key), key);
    if (!e) return nullptr;
    if (lru_) touch(e);
    return percpu_ ? cpu_val(e, cpu()) : val(e);
  }
  void* lookup_percpu(const void* key, uint32_t c) override {
    if (!percpu_ || c >= uint32_t(ncpus_)) return nullptr;
    HElem* e = find_any(hash_of(key), key);
    if (e && lru_) touch(e);
    return e ? cpu_val(e, int(c)) : nullptr;
  }
  long update(const void* key, const void* value, uint64_t flags) override {
    return do_update(key, value, flags, false);
  }
  long remove(const void* key) override {
    const uint32_t h = hash_of(key), b = h & mask_;
    lock_bucket(b);
    HElem* e = find_any(h, key);
    if (!e || !unlink(e, b)) {
      unlock_bucket(b);
      return -ENOENT;
    }
    ctl_->count.fetch_sub(1, std::memory_order_relaxed);
    store::kill_point();
    unlock_bucket(b);
    release(e);
    return 0;
  }
  long for_each(ForEachFn cb, void* ctx) override {
    long n = 0;
    int c = cpu();
    for (uint32_t b = 0; b < nb_; ++b) {
      uint32_t steps = 0;
      for (uint32_t v = buckets_[b].head.load(std::memory_order_acquire); !(v & kNulls);) {
        if (v == 0 || v > nelems_ || ++steps > nelems_) break;
        HElem* e = elem(v - 1);
        ++n;
        if (cb(ctx, e->key(), percpu_ ? cpu_val(e, c) : val(e))) return n;
        v = e->next.load(std::memory_order_acquire);
      }
    }
    return n;
  }

  // ---- user space ----
  void copy_out(HElem* e, void* out, uint64_t flags) const {
    if (percpu_) {
      for (int c = 0; c < ncpus_; ++c) {
        uint8_t* o = static_cast<uint8_t*>(out) + size_t(c) * stride_;
        std::memcpy(o, cpu_val(e, c), stride_);
      }
    } else if (flags & kBpfFLock) {
      copy_value_from_locked(out, val(e));
    } else {
      std::memcpy(out, val(e), spec_.value_size);
      if (has_lock()) std::memset(static_cast<uint8_t*>(out) + spec_.spin_lock_off, 0, 4);
    }
  }
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    HElem* e = find_any(hash_of(key), key);
    if (!e) return -ENOENT;
    copy_out(e, out, flags);
    return 0;
  }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    return do_update(key, value, flags, true);
  }
  long get_next_key(const void* key, void* next) override {
    uint32_t start = 0;
    if (key) {
      uint32_t h = hash_of(key);
      HElem* e = find_any(h, key);
      if (e) {
        uint32_t v = e->next.load(std::memory_order_acquire);
        if (!(v & kNulls) && v >= 1 && v <= nelems_) {
          std::memcpy(next, elem(v - 1)->key(), spec_.key_size);
          return 0;
        }
        start = (h & mask_) + 1;
      }
    }
    for (uint32_t b = start; b < nb_; ++b) {
      uint32_t v = buckets_[b].head.load(std::memory_order_acquire);
      if (!(v & kNulls) && v >= 1 && v <= nelems_) {
        std::memcpy(next, elem(v - 1)->key(), spec_.key_size);
        return 0;
      }
    }
    return -ENOENT;
  }
  long do_lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
    const uint32_t h = hash_of(key), b = h & mask_;
    lock_bucket(b);
    HElem* e = find_any(h, key);
    if (!e) {
      unlock_bucket(b);
      return -ENOENT;
    }
    copy_out(e, out, flags);
    unlink(e, b);
    ctl_->count.fetch_sub(1, std::memory_order_relaxed);
    store::kill_point();
    unlock_bucket(b);
    release(e);
    return 0;
  }
  size_t user_value_size() const override { return percpu_ ? stride_ * ncpus_ : spec_.value_size; }

  // Invariants (tests): "" when every chain is valid, no key is linked twice, the count matches
  // the chains, and every element is linked, free, or owned by a live process (or, with
  // allow_dead_owned, by a dead one: reclaimed by the next repair; then also what a bucket locked
  // by a dead process may hold until its takeover).
  std::string check(bool allow_dead_owned) const {
    std::vector<uint8_t> st(nelems_, 0);
    uint32_t linked = 0, dead_locks = 0;
    for (uint32_t b = 0; b < nb_; ++b) {
      // A bucket whose lock names a dead process is awaiting the repair that takes it over: a key
      // linked twice there (killed between linking the new element and unlinking the old one) and
      // the count off by one (for each such bucket) are the documented transient states.
      const uint32_t holder = buckets_[b].lock.word.load();
      const bool dead_locked = allow_dead_owned && holder && !store::pid_alive(holder);
      dead_locks += dead_locked;
      uint32_t v = buckets_[b].head.load(std::memory_order_acquire), steps = 0;
      std::vector<HElem*> seen;
      while (!(v & kNulls)) {
        if (v == 0 || v > nelems_ || ++steps > nelems_) return fmt::format("bucket {}: invalid link {}", b, v);
        if (st[v - 1]) return fmt::format("bucket {}: element {} reached twice", b, v - 1);
        st[v - 1] = 1;
        HElem* e = elem(v - 1);
        if ((e->hash & mask_) != b) return fmt::format("bucket {}: element {} belongs to bucket {}", b, v - 1, e->hash & mask_);
        for (HElem* s : seen)
          if (!dead_locked && std::memcmp(s->key(), e->key(), spec_.key_size) == 0)
            return fmt::format("bucket {}: a key is linked twice", b);
        seen.push_back(e);
        ++linked;
        v = e->next.load(std::memory_order_acquire);
      }
      if (v != (kNulls | b)) return fmt::format("bucket {}: chain ends in the marker of bucket {}", b, v & ~kNulls);
    }
    const uint32_t count = ctl_->count.load();
    if (std::max(linked, count) - std::min(linked, count) > dead_locks)  // off by one per bucket
      return fmt::format("count is {}, the chains hold {}", count, linked);
    uint32_t v = ctl_->free_head.load(), steps = 0;
    while (v != kFreeEnd) {
      if (v == 0 || v > nelems_ || ++steps > nelems_) return fmt::format("free list: invalid link {}", v);
      if (st[v - 1]) return fmt::format("free list: element {} is also linked or listed twice", v - 1);
      st[v - 1] = 2;
      v = elem(v - 1)->next.load();
    }
    for (uint32_t i = 0; i < nelems_; ++i)
      if (!st[i] && !store::pid_alive(elem(i)->owner.load()) && !(allow_dead_owned && elem(i)->owner.load()))
        return fmt::format("element {} is lost (neither linked nor free)", i);
    return "";
  }
  uint32_t repairs() const { return ctl_->repairs.load(); }

 private:
  bool percpu_ = false, lru_ = false;
  size_t stride_ = 0, key_round_ = 0;
  uint32_t nb_ = 0, mask_ = 0, nelems_ = 0, esize_ = 0, max_ = 0;
  uint64_t seed_ = 0;
  HCtl* ctl_ = nullptr;
  HBucket* buckets_ = nullptr;
  uint8_t* elems_ = nullptr;
  std::atomic<int64_t> last_full_repair_{0};
  uint64_t serial_ = next_serial();
  static uint64_t next_serial() {
    static std::atomic<uint64_t> n{1};
    return n.fetch_add(1, std::memory_order_relaxed);
  }
};

std::shared_ptr<Map> hash_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  Shape sh = shape_of(s, r->ncpus());
  if (!sh.total || r->size() < sh.total) {
    if (why) *why = "the hash table's area is shorter than its shape needs";
    return nullptr;
  }
  if (!r->fresh() && !RegionHash::validate(*reinterpret_cast<HCtl*>(r->base()), sh, why)) return nullptr;
  return std::make_shared<RegionHash>(s, std::move(r), sh);
}

}  // namespace

const store::RegionFamily kHashRegion = {&hash_layout, &hash_in_region, false};

std::string region_hash_check(Map* m, bool allow_dead_owned) {
  const uint32_t t = m ? m->spec().type : 0;
  if (!m || !m->shared() || (t != kMapHash && t != kMapPercpuHash && t != kMapLruHash && t != kMapLruPercpuHash))
    return "not a pinned hash map";
  return static_cast<RegionHash*>(m)->check(allow_dead_owned);
}
uint32_t region_hash_repairs(Map* m) { return static_cast<RegionHash*>(m)->repairs(); }
void region_hash_repair(Map* m) { static_cast<RegionHash*>(m)->repair(); }

}  // namespace bpfvm::maps
