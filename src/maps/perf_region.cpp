// perf_event_array in the store (pinned): every index has its ring in the map file, so a program in
// one process writes records (bpf_perf_event_output) that another process reads (`bpfvm map
// event_pipe`, PerfEventArrayMap::consume / poll). Records are those of the private map
// (perf_event_array.cpp): PERF_RECORD_SAMPLE {header; u64 time; u32 size; data, 8-byte aligned}
// (time: CLOCK_MONOTONIC ns when bpf_perf_event_output ran), and PERF_RECORD_LOST {header; u64 id;
// u64 lost} before the next sample after drops. The control block's magic names the record format:
// files of the format without the time ("PERF") are refused with that reason.
//
// Layout: a control block, then per index a 64-byte ring header {robust lock, cpu, head, tail,
// lost} and kStoreRingBytes of data. Ring i is bound to CPU slot i (i < the map's CPU slots) when
// the map is created, as libbpf's perf_buffer opens one ring per CPU; open_ring() rebinds one.
// A producer writes a record past head and then moves head; a consumer reads up to head and then
// moves tail; both under the ring's robust lock. So a producer killed at any point leaves no partial
// record (head did not move), and a consumer killed before moving tail leaves its records to be
// read again. Positions and record sizes read from the file are checked; a ring found damaged is
// emptied.
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm::maps {
namespace {

constexpr uint32_t kRecordLost = 2, kRecordSample = 9;
constexpr uint32_t kPerfMagic = 0x54465250;    // "PRFT": samples carry their time
constexpr uint32_t kPerfMagicV0 = 0x50455246;  // "PERF": the format before, samples without time
constexpr uint64_t kStoreRingBytes = 64 * 1024;

struct PCtl {
  uint32_t magic;
  uint32_t nrings;
  uint64_t ring_bytes;
  uint8_t pad[48];
};
static_assert(sizeof(PCtl) == 64);

struct PRing {
  store::RobustLock lock;
  std::atomic<int32_t> cpu;  // CPU slot the ring is bound to, -1: not opened
  std::atomic<uint64_t> head, tail, lost;
  uint8_t pad[32];
};
static_assert(sizeof(PRing) == 64);

uint64_t perf_layout(const MapSpec& s, int) {
  uint64_t total = sizeof(PCtl) + uint64_t(s.max_entries) * (sizeof(PRing) + kStoreRingBytes);
  return total > (uint64_t(1) << 30) ? 0 : total;  // at most 1 GiB of rings (16384 indices)
}

class StorePerfEventArray final : public PerfEventArrayMap {
 public:
  StorePerfEventArray(const MapSpec& s, std::shared_ptr<store::Region> region) : PerfEventArrayMap(s) {
    ctl_ = reinterpret_cast<PCtl*>(region->base());
    n_ = s.max_entries;
    slots_ = region->ncpus();
    if (region->fresh()) {
      ctl_->magic = kPerfMagic;
      ctl_->nrings = n_;
      ctl_->ring_bytes = kStoreRingBytes;
      for (uint32_t i = 0; i < n_; ++i) ring(i)->cpu.store(int(i) < slots_ ? int32_t(i) : -1, std::memory_order_relaxed);
    }
    region_ = std::move(region);
  }
  static bool validate(const PCtl& c, const MapSpec& s, std::string* why) {
    if (c.magic == kPerfMagicV0) {
      if (why)
        *why = "perf event array of an older format (records without timestamps); remove the file and create the map again";
      return false;
    }
    if (c.magic != kPerfMagic || c.nrings != s.max_entries || c.ring_bytes != kStoreRingBytes) {
      if (why) *why = "damaged perf event array header (ring count or size does not match the map)";
      return false;
    }
    return true;
  }

  PRing* ring(uint32_t i) const {
    return reinterpret_cast<PRing*>(reinterpret_cast<uint8_t*>(ctl_ + 1) + uint64_t(i) * (sizeof(PRing) + kStoreRingBytes));
  }
  uint8_t* data(uint32_t i) const { return reinterpret_cast<uint8_t*>(ring(i) + 1); }

  void put(uint32_t i, uint64_t pos, const void* p, uint64_t n) {
    uint64_t off = pos & (kStoreRingBytes - 1), first = std::min(n, kStoreRingBytes - off);
    std::memcpy(data(i) + off, p, first);
    std::memcpy(data(i), static_cast<const uint8_t*>(p) + first, n - first);
  }
  void get(uint32_t i, uint64_t pos, void* out, uint64_t n) const {
    uint64_t off = pos & (kStoreRingBytes - 1), first = std::min(n, kStoreRingBytes - off);
    std::memcpy(out, data(i) + off, first);
    std::memcpy(static_cast<uint8_t*>(out) + first, data(i), n - first);
  }
  // Under the ring's lock: positions another process wrote, checked (a damaged ring is emptied).
  void lock(PRing* r) {
    r->lock.lock();
    uint64_t h = r->head.load(std::memory_order_relaxed), t = r->tail.load(std::memory_order_relaxed);
    if (h < t || h - t > kStoreRingBytes || (h & 7) || (t & 7)) {
      r->tail.store(h & ~uint64_t(7), std::memory_order_relaxed);
      r->head.store(h & ~uint64_t(7), std::memory_order_relaxed);
    }
  }

  long open_ring(uint32_t index, int cpu, uint32_t pages) override {
    if (index >= n_) return -E2BIG;
    if (!is_pow2(pages) || cpu < 0) return -EINVAL;
    PRing* r = ring(index);
    lock(r);
    r->cpu.store(cpu, std::memory_order_relaxed);
    r->lock.unlock();
    return 0;
  }
  long open_all(uint32_t pages) override {
    uint32_t n = std::min<uint32_t>(n_, uint32_t(slots_));
    for (uint32_t i = 0; i < n; ++i)
      if (long e = open_ring(i, int(i), pages)) return e;
    return 0;
  }

  long output(uint64_t flags, const void* src, uint64_t size) override {
    constexpr uint64_t kIndexMask = 0xffffffffull, kCtxLenMask = 0xfffffull << 32;
    if (flags & ~(kIndexMask | kCtxLenMask)) return -EINVAL;
    uint64_t index = flags & kIndexMask;
    const int cpu = region_->cpu_slot(slots_);
    if (index == kIndexMask) index = uint64_t(cpu);
    if (index >= n_) return -E2BIG;
    PRing* r = ring(uint32_t(index));
    if (r->cpu.load(std::memory_order_relaxed) < 0) return -ENOENT;
    if (r->cpu.load(std::memory_order_relaxed) != cpu) return -EOPNOTSUPP;
    uint64_t raw = round_up8(size + 4), rec = 16 + raw;
    if (rec > 0xffff) return -E2BIG;
    const uint64_t now = monotonic_ns();
    lock(r);
    uint64_t h = r->head.load(std::memory_order_relaxed), t = r->tail.load(std::memory_order_relaxed);
    uint64_t lost = r->lost.load(std::memory_order_relaxed);
    uint64_t lost_rec = lost ? 24 : 0;
    if (h - t + rec + lost_rec > kStoreRingBytes) {
      r->lost.store(lost + 1, std::memory_order_relaxed);
      r->lock.unlock();
      return -ENOSPC;
    }
    uint64_t pos = h;
    if (lost) {
      uint8_t lr[24] = {};
      uint32_t type = kRecordLost;
      uint16_t sz = 24;
      std::memcpy(lr, &type, 4);
      std::memcpy(lr + 6, &sz, 2);
      std::memcpy(lr + 16, &lost, 8);
      put(uint32_t(index), pos, lr, 24);
      pos += 24;
    }
    uint8_t hdr[20] = {};
    uint32_t type = kRecordSample, rs = uint32_t(raw - 4);
    uint16_t sz = uint16_t(rec);
    std::memcpy(hdr, &type, 4);
    std::memcpy(hdr + 6, &sz, 2);
    std::memcpy(hdr + 8, &now, 8);
    std::memcpy(hdr + 16, &rs, 4);
    put(uint32_t(index), pos, hdr, 20);
    put(uint32_t(index), pos + 20, src, size);
    static const uint8_t zeros[8] = {};
    put(uint32_t(index), pos + 20 + size, zeros, raw - 4 - size);
    // The records are complete before head moves past them (the order a killed producer relies on).
    r->head.store(pos + rec, std::memory_order_release);
    if (lost) r->lost.store(0, std::memory_order_relaxed);
    r->lock.unlock();
    return 0;
  }

  long consume_records(const RecordFn& sample, const LostFn& lost) override {
    long cnt = 0;
    std::vector<uint8_t> buf;
    for (uint32_t i = 0; i < n_; ++i) {
      PRing* r = ring(i);
      if (r->head.load(std::memory_order_acquire) == r->tail.load(std::memory_order_relaxed)) continue;
      lock(r);
      const int cpu = r->cpu.load(std::memory_order_relaxed);
      uint64_t h = r->head.load(std::memory_order_acquire), t = r->tail.load(std::memory_order_relaxed);
      while (t < h) {
        uint8_t hd[8];
        get(i, t, hd, 8);
        uint32_t type;
        uint16_t sz;
        std::memcpy(&type, hd, 4);
        std::memcpy(&sz, hd + 6, 2);
        if (sz < 8 || (sz & 7) || sz > h - t) {  // damaged: drop what is left
          t = h;
          break;
        }
        buf.resize(sz);
        get(i, t, buf.data(), sz);
        if (type == kRecordSample && sz >= 20 && sample) {
          uint64_t time;
          uint32_t rs;
          std::memcpy(&time, buf.data() + 8, 8);
          std::memcpy(&rs, buf.data() + 16, 4);
          if (rs <= uint32_t(sz) - 20) sample(cpu, time, buf.data() + 20, rs);
        } else if (type == kRecordLost && sz >= 24 && lost) {
          uint64_t n;
          std::memcpy(&n, buf.data() + 16, 8);
          lost(cpu, n);
        }
        t += sz;
        ++cnt;
      }
      r->tail.store(t, std::memory_order_release);
      r->lock.unlock();
    }
    return cnt;
  }

  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long do_update_user(const void* key, const void*, uint64_t flags) override {
    if (flags != kBpfAny) return -EINVAL;
    if (*static_cast<const uint32_t*>(key) >= n_) return -E2BIG;
    return -EBADF;  // the kernel wants a perf event fd here; rings are opened with open_ring()
  }
  // BPF_MAP_DELETE_ELEM closes the index's ring (until open_ring() binds it again).
  long remove(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= n_) return -E2BIG;
    PRing* r = ring(idx);
    lock(r);
    bool was = r->cpu.load(std::memory_order_relaxed) >= 0;
    r->cpu.store(-1, std::memory_order_relaxed);
    r->tail.store(r->head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    r->lost.store(0, std::memory_order_relaxed);
    r->lock.unlock();
    return was ? 0 : -ENOENT;
  }
  long lookup_copy(const void*, void*, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  long get_next_key(const void* key, void* next) override {
    uint32_t idx = key ? *static_cast<const uint32_t*>(key) : n_;
    uint32_t n;
    if (idx >= n_) n = 0;
    else if (idx == n_ - 1) return -ENOENT;
    else n = idx + 1;
    std::memcpy(next, &n, 4);
    return 0;
  }

 private:
  PCtl* ctl_ = nullptr;
  uint32_t n_ = 0;
  int slots_ = 1;
};

std::shared_ptr<Map> perf_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  uint64_t need = perf_layout(s, r->ncpus());
  if (!need || r->size() < need) {
    if (why) *why = "the perf event array's area is shorter than its rings need";
    return nullptr;
  }
  if (!r->fresh() && !StorePerfEventArray::validate(*reinterpret_cast<PCtl*>(r->base()), s, why)) return nullptr;
  return std::make_shared<StorePerfEventArray>(s, std::move(r));
}

}  // namespace

const store::RegionFamily kPerfRegion = {&perf_layout, &perf_in_region, false};

}  // namespace bpfvm::maps
