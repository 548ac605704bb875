// LPM trie in the store (pinned lpm_trie): the kernel's lpm_trie semantics over a table in the map
// file, shared by every process that opens it. Private LPM tries keep their own code
// (lpm_trie.cpp); the order of get_next_key is the same (the kernel's post-order walk).
//
// Layout: a control block {robust lock, count, ...}, a count of elements per prefix length, then
// an open-addressed table of 2 x max_entries (rounded up to a power of 2) slots {state, prefixlen,
// hash, data, value} keyed by (prefixlen, data masked to it). A lookup probes the prefix lengths
// present, longest first. Every operation holds the map's robust lock (lookups too: a slot is
// reused at once, and a lock is what keeps a reader from matching a half-written key).
//
// Surviving SIGKILL: an insert writes the slot's key and value first and then marks it used (one
// store); a delete marks it deleted (one store); deleted slots are reused by later inserts. So a
// process killed at any point leaves every slot either used with a whole key or not used; the
// counts it may leave off by one are recounted by whoever takes its lock over. Replacing a value
// writes it in place (a killed writer may leave it partly written, as for arrays). Slots and
// prefix lengths read from the file are checked; every probe is bounded by the table's size.
#include <algorithm>
#include <cstring>
#include <vector>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm::maps {
namespace {

constexpr uint32_t kLpmMagic = 0x4c504d54;  // "LPMT"
enum : uint32_t { kEmpty = 0, kUsed = 1, kDeleted = 2 };

struct LCtl {
  uint32_t magic;
  uint32_t cap;
  uint32_t slot_size;
  store::RobustLock lock;
  uint32_t count;
  uint32_t pad0;
  uint64_t seed;
  uint8_t pad[32];
};
static_assert(sizeof(LCtl) == 64);

struct LSlot {
  std::atomic<uint32_t> state;
  uint32_t prefixlen;
  uint32_t hash;
  uint32_t pad;
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};
static_assert(sizeof(LSlot) == 16);

struct LShape {
  uint32_t cap, slot_size, ds, max_prefix;
  uint64_t lens_off, slots_off, total;
};

LShape lpm_shape(const MapSpec& s) {
  LShape sh{};
  if (s.key_size < 5 || s.key_size > 260) return sh;
  sh.ds = s.key_size - 4;
  sh.max_prefix = sh.ds * 8;
  uint64_t cap = roundup_pow2(std::max<uint64_t>(2, uint64_t(s.max_entries) * 2));
  if (cap > (1u << 28)) return LShape{};
  sh.cap = uint32_t(cap);
  sh.slot_size = uint32_t(sizeof(LSlot) + round_up8(sh.ds) + round_up8(s.value_size));
  sh.lens_off = sizeof(LCtl);
  sh.slots_off = (sh.lens_off + uint64_t(sh.max_prefix + 1) * 4 + 63) & ~63ull;
  sh.total = sh.slots_off + cap * sh.slot_size;
  return sh;
}

uint64_t lpm_layout(const MapSpec& s, int) {
  LShape sh = lpm_shape(s);
  return sh.total > (uint64_t(1) << 40) ? 0 : sh.total;
}

inline int bit_at(const uint8_t* d, uint32_t i) { return (d[i / 8] >> (7 - i % 8)) & 1; }

class StoreLpmTrie final : public Map {
 public:
  StoreLpmTrie(const MapSpec& s, std::shared_ptr<store::Region> region, const LShape& sh) : Map(s), sh_(sh) {
    ctl_ = reinterpret_cast<LCtl*>(region->base());
    lens_ = reinterpret_cast<uint32_t*>(region->base() + sh.lens_off);
    slots_ = region->base() + sh.slots_off;
    data_round_ = round_up8(sh.ds);
    if (region->fresh()) {
      ctl_->magic = kLpmMagic;
      ctl_->cap = sh.cap;
      ctl_->slot_size = sh.slot_size;
      ctl_->seed = random_seed();
    }
    seed_ = ctl_->seed;
    region_ = std::move(region);
  }
  static bool validate(const LCtl& c, const LShape& sh, std::string* why) {
    if (c.magic != kLpmMagic || c.cap != sh.cap || c.slot_size != sh.slot_size) {
      if (why) *why = "damaged LPM trie header (table size does not match the map)";
      return false;
    }
    return true;
  }

  LSlot* slot(uint32_t i) const { return reinterpret_cast<LSlot*>(slots_ + uint64_t(i) * sh_.slot_size); }
  uint8_t* val(LSlot* e) const { return e->data() + data_round_; }

  void masked(const uint8_t* d, uint32_t plen, uint8_t* out) const {
    std::memset(out, 0, sh_.ds);
    uint32_t full = plen / 8;
    std::memcpy(out, d, full);
    if (plen % 8) out[full] = d[full] & uint8_t(0xFF00u >> (plen % 8));
  }
  uint32_t hash_of(uint32_t plen, const uint8_t* m) const {
    return uint32_t(hash_bytes(m, sh_.ds, seed_ ^ (uint64_t(plen) * 0x9E3779B97F4A7C15ull)));
  }
  bool matches(LSlot* e, uint32_t plen, const uint8_t* d) const {
    return e->prefixlen == plen && prefix_bits_equal(e->data(), d, plen);
  }
  // Under the lock. *free_slot (when asked): the first empty or deleted slot on the way.
  LSlot* find(uint32_t plen, const uint8_t* d, uint32_t h, LSlot** free_slot = nullptr) const {
    if (free_slot) *free_slot = nullptr;
    for (uint32_t n = 0, i = h & (sh_.cap - 1); n < sh_.cap; ++n, i = (i + 1) & (sh_.cap - 1)) {
      LSlot* e = slot(i);
      uint32_t st = e->state.load(std::memory_order_relaxed);
      if (st == kUsed) {
        if (e->hash == h && matches(e, plen, d)) return e;
        continue;
      }
      if (free_slot && !*free_slot) *free_slot = e;
      if (st == kEmpty) return nullptr;
    }
    return nullptr;
  }
  // The lock; taking it over from a dead holder recounts what it may have left off by one.
  void lock() {
    if (!ctl_->lock.lock()) return;
    std::fill(lens_, lens_ + sh_.max_prefix + 1, 0u);
    uint32_t count = 0;
    for (uint32_t i = 0; i < sh_.cap; ++i) {
      LSlot* e = slot(i);
      if (e->state.load(std::memory_order_relaxed) != kUsed) continue;
      if (e->prefixlen > sh_.max_prefix) {  // damaged: drop it
        e->state.store(kDeleted, std::memory_order_relaxed);
        continue;
      }
      ++lens_[e->prefixlen];
      ++count;
    }
    ctl_->count = count;
  }
  void unlock() { ctl_->lock.unlock(); }

  void* lookup(const void* key) override {
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > sh_.max_prefix) return nullptr;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint8_t m[256];
    lock();
    void* out = nullptr;
    for (int64_t l = plen; l >= 0 && !out; --l) {
      if (lens_[l] == 0) continue;
      masked(d, uint32_t(l), m);
      if (LSlot* e = find(uint32_t(l), d, hash_of(uint32_t(l), m))) out = val(e);
    }
    unlock();
    return out;
  }
  long update(const void* key, const void* value, uint64_t flags) override {
    if (flags > kBpfExist) return -EINVAL;
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > sh_.max_prefix) return -EINVAL;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint8_t m[256];
    masked(d, plen, m);
    const uint32_t h = hash_of(plen, m);
    lock();
    LSlot* free_slot = nullptr;
    LSlot* old = find(plen, d, h, &free_slot);
    long err = 0;
    if (old) {
      if (flags == kBpfNoexist) {
        err = -EEXIST;
      } else {
        // The kernel replaces the node, bits past the prefix included (get_next_key shows them).
        std::memcpy(old->data(), d, sh_.ds);
        copy_value(val(old), value);
      }
    } else if (flags == kBpfExist) {
      err = -ENOENT;
    } else if (ctl_->count >= spec_.max_entries || !free_slot) {
      err = -ENOSPC;
    } else {
      free_slot->prefixlen = plen;
      free_slot->hash = h;
      std::memset(free_slot->data(), 0, data_round_);
      std::memcpy(free_slot->data(), d, sh_.ds);
      std::memset(val(free_slot), 0, round_up8(spec_.value_size));
      copy_value(val(free_slot), value);
      free_slot->state.store(kUsed, std::memory_order_release);  // the slot is whole before it is used
      ++ctl_->count;
      ++lens_[plen];
    }
    unlock();
    return err;
  }
  long remove(const void* key) override {
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > sh_.max_prefix) return -EINVAL;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint8_t m[256];
    masked(d, plen, m);
    lock();
    LSlot* e = find(plen, d, hash_of(plen, m));
    if (e) {
      e->state.store(kDeleted, std::memory_order_release);
      if (ctl_->count) --ctl_->count;
      if (lens_[plen]) --lens_[plen];
    }
    unlock();
    return e ? 0 : -ENOENT;
  }
  // Post-order position (the kernel's get_next_key order): does (pa, a) come before (pb, b)?
  bool before(uint32_t pa, const uint8_t* a, uint32_t pb, const uint8_t* b) const {
    uint32_t common = std::min(pa, pb);
    for (uint32_t i = 0; i < common; ++i) {
      int x = bit_at(a, i), y = bit_at(b, i);
      if (x != y) return x < y;
    }
    return pa > pb;
  }
  long get_next_key(const void* key, void* next) override {
    lock();
    LSlot* from = nullptr;
    if (key) {
      uint32_t plen;
      std::memcpy(&plen, key, 4);
      const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
      if (plen <= sh_.max_prefix) {
        uint8_t m[256];
        masked(d, plen, m);
        from = find(plen, d, hash_of(plen, m));
      }
    }
    // The first element after `from` in post-order (the first of all when `from` is absent).
    LSlot* best = nullptr;
    for (uint32_t i = 0; i < sh_.cap; ++i) {
      LSlot* e = slot(i);
      if (e->state.load(std::memory_order_relaxed) != kUsed || e->prefixlen > sh_.max_prefix || e == from) continue;
      if (from && !before(from->prefixlen, from->data(), e->prefixlen, e->data())) continue;
      if (!best || before(e->prefixlen, e->data(), best->prefixlen, best->data())) best = e;
    }
    long err = -ENOENT;
    if (best) {
      std::memcpy(next, &best->prefixlen, 4);
      std::memcpy(static_cast<uint8_t*>(next) + 4, best->data(), sh_.ds);
      err = 0;
    }
    unlock();
    return err;
  }

 private:
  LShape sh_;
  LCtl* ctl_ = nullptr;
  uint32_t* lens_ = nullptr;
  uint8_t* slots_ = nullptr;
  size_t data_round_ = 0;
  uint64_t seed_ = 0;
};

std::shared_ptr<Map> lpm_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  LShape sh = lpm_shape(s);
  if (!sh.total || r->size() < sh.total) {
    if (why) *why = "the LPM trie's area is shorter than its table";
    return nullptr;
  }
  if (!r->fresh() && !StoreLpmTrie::validate(*reinterpret_cast<LCtl*>(r->base()), sh, why)) return nullptr;
  return std::make_shared<StoreLpmTrie>(s, std::move(r), sh);
}

}  // namespace

const store::RegionFamily kLpmRegion = {&lpm_layout, &lpm_in_region, false};

}  // namespace bpfvm::maps
