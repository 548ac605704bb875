// Bloom filter map (the kernel's bloom_filter.c): a bit array sized like the kernel's
// (max_entries * nr_hashes * 7/5 bits, a power of two, at least 64), nr_hashes from map_extra.
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long bloom_check(const MapSpec& s, std::string* why) {
  constexpr uint32_t kMask = kMapFNumaNode | kMapFZeroSeed | kAccessMask;
  if (s.key_size != 0) return fail(why, EINVAL, "key_size must be 0 for a bloom filter");
  if (s.value_size == 0) return fail(why, EINVAL, "value_size must be > 0");
  if (s.max_entries == 0) return fail(why, EINVAL, "max_entries must be > 0");
  if ((s.flags & ~kMask) || !access_ok(s.flags)) return fail(why, EINVAL, "unsupported map_flags");
  if (s.map_extra & ~0xFull) return fail(why, EINVAL, "map_extra: only the low 4 bits (hash count) are valid");
  if (s.value_size > kKmallocMaxSize) return fail(why, E2BIG, "value_size too large");
  return 0;
}

namespace {

// Bits of the filter for a spec (the kernel's sizing).
uint64_t bloom_bits(const MapSpec& s) {
    uint32_t nhash = uint32_t(s.map_extra & 0xF);
    if (nhash == 0) nhash = 5;
    uint64_t nbits = uint64_t(s.max_entries) * nhash;
    bool overflow = nbits > 0xffffffffull;
    if (!overflow) {
      nbits = nbits / 5 * 7;
      overflow = nbits > 0xffffffffull || nbits > (1ull << 31);
    }
    if (overflow) {
      nbits = 1ull << 32;
    } else if (nbits <= 64) {
      nbits = 64;
    } else {
      nbits = roundup_pow2(nbits);
    }
    return nbits;
}

// The region: 64 bytes of control (the hash seed), then the bits.
class Bloom final : public Map {
 public:
  static uint64_t layout(const MapSpec& s, int) { return 64 + bloom_bits(s) / 8; }
  Bloom(const MapSpec& s, std::shared_ptr<store::Region> region) : Map(s) {
    nhash_ = uint32_t(s.map_extra & 0xF);
    if (nhash_ == 0) nhash_ = 5;
    mask_ = bloom_bits(s) - 1;
    auto* seed = reinterpret_cast<uint64_t*>(region->base());
    if (region->fresh()) *seed = (s.flags & kMapFZeroSeed) ? 0 : random_seed();
    seed_ = *seed;
    bits_ = reinterpret_cast<std::atomic<uint64_t>*>(region->base() + 64);
    region_ = std::move(region);
  }
  uint64_t bit(const void* v, uint32_t i) const {
    return hash_bytes(v, spec_.value_size, seed_ + i) & mask_;
  }
  long push(const void* value, uint64_t flags) override {
    if (flags != kBpfAny) return -EINVAL;
    for (uint32_t i = 0; i < nhash_; ++i) {
      uint64_t b = bit(value, i);
      bits_[b >> 6].fetch_or(1ull << (b & 63), std::memory_order_relaxed);
    }
    return 0;
  }
  long peek(void* value) override {
    for (uint32_t i = 0; i < nhash_; ++i) {
      uint64_t b = bit(value, i);
      if (!(bits_[b >> 6].load(std::memory_order_relaxed) & (1ull << (b & 63)))) return -ENOENT;
    }
    return 0;
  }
  long pop(void*) override { return -EOPNOTSUPP; }
  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long remove(const void*) override { return -EOPNOTSUPP; }
  long do_delete_user(const void* key) override { return key ? -EINVAL : -EOPNOTSUPP; }
  long get_next_key(const void* key, void*) override { return key ? -EINVAL : -EOPNOTSUPP; }
  long do_lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    return key ? -EINVAL : Map::do_lookup_and_delete(key, out, flags);
  }
  long lookup_copy(const void* key, void* value, uint64_t flags) override {
    if (key || (flags & ~kBpfFLock)) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    return peek(value);
  }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (key || ((flags & kBpfFLock) && !has_lock())) return -EINVAL;
    return push(value, flags);
  }

 private:
  uint32_t nhash_;
  uint64_t mask_;
  uint64_t seed_;
  std::atomic<uint64_t>* bits_ = nullptr;
};

std::shared_ptr<Map> bloom_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (r->size() < Bloom::layout(s, 1)) {
    if (why) *why = "the bloom filter's area is shorter than its bits";
    return nullptr;
  }
  return std::make_shared<Bloom>(s, std::move(r));
}

}  // namespace

const store::RegionFamily kBloomRegion = {&Bloom::layout, &bloom_in_region, false};

std::shared_ptr<Map> make_bloom(const MapSpec& s) {
  return std::make_shared<Bloom>(s, store::Region::anonymous(Bloom::layout(s, 1), false, 1));
}

}  // namespace bpfvm::maps
