// Longest-prefix-match trie (the kernel's lpm_trie.c semantics; own structure).
//
// Keys are struct bpf_lpm_trie_key { u32 prefixlen; u8 data[]; } with data in network bit order.
// Elements live in one hash table keyed by (prefixlen, data masked to prefixlen); a lookup probes
// the prefix lengths present, longest first. Writers serialise on a mutex; elements are replaced
// RCU-style (new linked before old unlinked) and reclaimed by epochs, so readers need no lock.
// get_next_key follows the kernel's order: a post-order walk of the trie, i.e. a key comes before
// its shorter prefixes, and at the first differing bit the 0 side comes first. That order is kept
// in a tree of key records (writers' and get_next_key's, under the mutex), one per key, which a
// key's nodes point to: replacing a key's value hands the record to the new node (no tree work),
// and delete and get_next_key start from the record's place in the tree.
#include <cstdlib>
#include <mutex>
#include <set>
#include <type_traits>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long lpm_trie_check(const MapSpec& s, std::string* why) {
  constexpr uint32_t kMask = kMapFNoPrealloc | kMapFNumaNode | kAccessMask;
  if (s.max_entries == 0) return fail(why, EINVAL, "max_entries must be > 0");
  if (!(s.flags & kMapFNoPrealloc)) return fail(why, EINVAL, "lpm_trie maps need BPF_F_NO_PREALLOC");
  if ((s.flags & ~kMask) || !access_ok(s.flags)) return fail(why, EINVAL, "unsupported map_flags");
  if (s.key_size < 5 || s.key_size > 4 + 256)
    return fail(why, EINVAL, "key_size must be 4 (prefixlen) + 1..256 data bytes");
  if (s.value_size < 1 || s.value_size > kKmallocMaxSize - 256 - 64)
    return fail(why, EINVAL, "value_size out of range");
  return 0;
}

namespace {

struct KeyRec;
// The post-order comparison of two keys (before()), for the order tree.
struct KeyLess {
  bool operator()(const KeyRec* a, const KeyRec* b) const;
};
using Order = std::set<KeyRec*, KeyLess>;

// A key in the order tree (malloc'd with its data after it; touched under the mutex only).
struct KeyRec {
  Order::iterator pos;  // its place in the tree
  uint32_t prefixlen;
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};
static_assert(std::is_trivially_destructible_v<Order::iterator>);

struct Node {
  std::atomic<Node*> next;
  uint32_t hash;
  uint32_t prefixlen;
  KeyRec* key;  // the key's record (writers only)
  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};

// Post-order position: does (pa, a) come before (pb, b)? At the first bit where the two differ
// within the shorter prefix, the 0 side comes first (that bit is the highest set bit of the first
// differing byte, so comparing the bytes decides); when one is a prefix of the other, the longer
// one comes first.
bool before(uint32_t pa, const uint8_t* a, uint32_t pb, const uint8_t* b) {
  uint32_t common = std::min(pa, pb), full = common / 8;
  if (int c = std::memcmp(a, b, full)) return c < 0;
  if (common % 8) {
    uint8_t m = uint8_t(0xFF00u >> (common % 8));
    uint8_t x = a[full] & m, y = b[full] & m;
    if (x != y) return x < y;
  }
  return pa > pb;
}
bool KeyLess::operator()(const KeyRec* a, const KeyRec* b) const {
  return before(a->prefixlen, const_cast<KeyRec*>(a)->data(), b->prefixlen, const_cast<KeyRec*>(b)->data());
}

void free_node(void* p) { std::free(p); }

class LpmTrie final : public Map {
 public:
  explicit LpmTrie(const MapSpec& s)
      : Map(s), ds_(s.key_size - 4), max_prefix_(ds_ * 8), order_(KeyLess{}) {
    nb_ = roundup_pow2(std::min<uint32_t>(std::max<uint32_t>(s.max_entries, 1), 1u << 20));
    buckets_ = ZeroArray<std::atomic<Node*>>(nb_);
    len_count_ = std::vector<std::atomic<uint32_t>>(max_prefix_ + 1);
    data_round_ = round_up8(ds_);
    seed_ = random_seed();
  }
  ~LpmTrie() override {
    for (KeyRec* k : order_) std::free(k);
    for (auto& b : buckets_) {
      Node* n = b.load();
      while (n) {
        Node* x = n->next.load();
        std::free(n);
        n = x;
      }
    }
  }

  void masked(const uint8_t* d, uint32_t plen, uint8_t* out) const {
    std::memset(out, 0, ds_);
    uint32_t full = plen / 8;
    std::memcpy(out, d, full);
    if (plen % 8) out[full] = d[full] & uint8_t(0xFF00u >> (plen % 8));
  }
  uint32_t hash_of(uint32_t plen, const uint8_t* m) const {
    return uint32_t(hash_bytes(m, ds_, seed_ ^ (uint64_t(plen) * 0x9E3779B97F4A7C15ull)));
  }
  bool matches(Node* n, uint32_t plen, const uint8_t* d) const {
    return n->prefixlen == plen && prefix_bits_equal(n->data(), d, plen);
  }
  Node* find_exact(uint32_t plen, const uint8_t* d, uint32_t h) const {
    for (Node* n = buckets_[h & (nb_ - 1)].load(std::memory_order_acquire); n; n = n->next.load(std::memory_order_acquire))
      if (n->hash == h && matches(n, plen, d)) return n;
    return nullptr;
  }
  uint8_t* val(Node* n) const { return n->data() + data_round_; }

  void* lookup(const void* key) override {
    reader_touch();
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > max_prefix_) return nullptr;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint32_t lim = plen;
    uint8_t m[256];
    for (int64_t l = lim; l >= 0; --l) {
      if (len_count_[size_t(l)].load(std::memory_order_acquire) == 0) continue;
      masked(d, uint32_t(l), m);
      if (Node* n = find_exact(uint32_t(l), d, hash_of(uint32_t(l), m))) return val(n);
    }
    return nullptr;
  }

  void unlink_locked(Node* n) {
    std::atomic<Node*>* pp = &buckets_[n->hash & (nb_ - 1)];
    for (Node* c = pp->load(std::memory_order_relaxed); c; c = c->next.load(std::memory_order_relaxed)) {
      if (c == n) {
        pp->store(n->next.load(std::memory_order_relaxed), std::memory_order_release);
        return;
      }
      pp = &c->next;
    }
  }

  long update(const void* key, const void* value, uint64_t flags) override {
    if (flags > kBpfExist) return -EINVAL;
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > max_prefix_) return -EINVAL;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint8_t m[256];
    masked(d, plen, m);
    uint32_t h = hash_of(plen, m);
    Node* n = static_cast<Node*>(std::malloc(sizeof(Node) + data_round_ + spec_.value_size));
    if (!n) return -ENOMEM;
    new (&n->next) std::atomic<Node*>(nullptr);
    n->key = nullptr;
    n->hash = h;
    n->prefixlen = plen;
    std::memset(n->data(), 0, data_round_);
    std::memcpy(n->data(), d, ds_);
    std::memset(val(n), 0, spec_.value_size);
    copy_value(val(n), value);
    std::lock_guard<std::mutex> lk(mu_);
    Node* old = find_exact(plen, d, h);
    if (old) {
      if (flags == kBpfNoexist) {
        std::free(n);
        return -EEXIST;
      }
      // Same key, same place in the order. The data past the prefix is the latest update's (the
      // kernel's new node copies it, and get_next_key reports it); it does not change the order.
      n->key = old->key;
      std::memcpy(n->key->data(), d, ds_);
    } else {
      long err = flags == kBpfExist ? -ENOENT : count_ == spec_.max_entries ? -ENOSPC : 0;
      auto* k = err ? nullptr : static_cast<KeyRec*>(std::malloc(sizeof(KeyRec) + ds_));
      if (!err && !k) err = -ENOMEM;
      if (err) {
        std::free(n);
        return err;
      }
      new (&k->pos) Order::iterator();
      k->prefixlen = plen;
      std::memcpy(k->data(), d, ds_);
      k->pos = order_.insert(k).first;
      n->key = k;
      ++count_;
      len_count_[plen].fetch_add(1, std::memory_order_release);
    }
    std::atomic<Node*>& b = buckets_[h & (nb_ - 1)];
    n->next.store(b.load(std::memory_order_relaxed), std::memory_order_relaxed);
    b.store(n, std::memory_order_release);
    if (old) {
      unlink_locked(old);
      retire(old, free_node);
    }
    return 0;
  }

  long remove(const void* key) override {
    uint32_t plen;
    std::memcpy(&plen, key, 4);
    if (plen > max_prefix_) return -EINVAL;
    const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
    uint8_t m[256];
    masked(d, plen, m);
    std::lock_guard<std::mutex> lk(mu_);
    Node* old = find_exact(plen, d, hash_of(plen, m));
    if (!old) return -ENOENT;
    unlink_locked(old);
    order_.erase(old->key->pos);
    std::free(old->key);
    --count_;
    len_count_[plen].fetch_sub(1, std::memory_order_release);
    retire(old, free_node);
    return 0;
  }

  long get_next_key(const void* key, void* next) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (order_.empty()) return -ENOENT;
    Node* from = nullptr;  // its record: where the walk starts
    if (key) {
      uint32_t plen;
      std::memcpy(&plen, key, 4);
      const uint8_t* d = static_cast<const uint8_t*>(key) + 4;
      if (plen <= max_prefix_) {
        uint8_t m[256];
        masked(d, plen, m);
        from = find_exact(plen, d, hash_of(plen, m));
      }
    }
    KeyRec* out;
    if (!from) {
      out = *order_.begin();
    } else {
      auto it = std::next(from->key->pos);
      if (it == order_.end()) return -ENOENT;
      out = *it;
    }
    std::memcpy(next, &out->prefixlen, 4);
    std::memcpy(static_cast<uint8_t*>(next) + 4, out->data(), ds_);
    return 0;
  }

 private:
  uint32_t ds_, max_prefix_;
  size_t data_round_ = 0;
  uint64_t nb_ = 0, seed_ = 0;
  ZeroArray<std::atomic<Node*>> buckets_;
  std::vector<std::atomic<uint32_t>> len_count_;
  std::mutex mu_;
  uint32_t count_ = 0;
  Order order_;
};

}  // namespace

std::shared_ptr<Map> make_lpm_trie(const MapSpec& s) { return std::make_shared<LpmTrie>(s); }

}  // namespace bpfvm::maps
