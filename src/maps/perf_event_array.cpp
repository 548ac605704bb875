// perf_event_array: each index holds a ring of perf records bound to one CPU, as the kernel's
// BPF_PERF_EVENT_ARRAY holds a perf event (PERF_COUNT_SW_BPF_OUTPUT) per CPU. bpf_perf_event_output
// appends PERF_RECORD_SAMPLE as the kernel writes it for PERF_SAMPLE_TIME | PERF_SAMPLE_RAW (what
// bpftool's event_pipe asks for): {header; u64 time; u32 size; data padded so the record is 8-byte
// aligned}, the time being CLOCK_MONOTONIC ns when the helper ran; when a
// ring is full the sample is dropped (-ENOSPC) and counted, and the next record that fits is
// preceded by PERF_RECORD_LOST {header; u64 id; u64 lost}. The consumer follows libbpf's perf_buffer.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long perf_event_array_check(const MapSpec& s, std::string* why) { return fd_array_check(s, why); }

namespace {

constexpr uint32_t kRecordLost = 2, kRecordSample = 9;

struct PerfRing {
  int cpu = 0;
  uint64_t size = 0;  // bytes, power of 2
  std::vector<uint8_t> data;
  uint64_t head = 0, tail = 0;  // producer / consumer positions
  uint64_t lost = 0;
  std::mutex mu;

  void put(const void* p, uint64_t n) {
    const uint8_t* s = static_cast<const uint8_t*>(p);
    for (uint64_t i = 0; i < n; ++i) data[(head + i) & (size - 1)] = s[i];
    head += n;
  }
  void get(uint64_t pos, void* out, uint64_t n) const {
    uint8_t* o = static_cast<uint8_t*>(out);
    for (uint64_t i = 0; i < n; ++i) o[i] = data[(pos + i) & (size - 1)];
  }
};

void free_ring(void* p) { delete static_cast<PerfRing*>(p); }

class PerfEventArray final : public PerfEventArrayMap {
 public:
  explicit PerfEventArray(const MapSpec& s) : PerfEventArrayMap(s), rings_(s.max_entries) {}
  ~PerfEventArray() override {
    for (auto& r : rings_) delete r.load();
  }

  long open_ring(uint32_t index, int cpu, uint32_t pages) override {
    if (index >= spec_.max_entries) return -E2BIG;
    if (!is_pow2(pages)) return -EINVAL;
    auto* r = new PerfRing;
    r->cpu = cpu;
    r->size = uint64_t(pages) * kPageSize;
    r->data.resize(r->size);
    PerfRing* old = rings_[index].exchange(r, std::memory_order_acq_rel);
    if (old) retire(old, free_ring);
    return 0;
  }
  long open_all(uint32_t pages) override {
    uint32_t n = std::min<uint32_t>(spec_.max_entries, uint32_t(possible_cpus()));
    for (uint32_t i = 0; i < n; ++i)
      if (long e = open_ring(i, int(i), pages)) return e;
    return 0;
  }

  long output(uint64_t flags, const void* data, uint64_t size) override {
    constexpr uint64_t kIndexMask = 0xffffffffull, kCtxLenMask = 0xfffffull << 32;
    if (flags & ~(kIndexMask | kCtxLenMask)) return -EINVAL;
    uint64_t index = flags & kIndexMask;
    int cpu = current_cpu();
    if (index == kIndexMask) index = uint64_t(cpu);
    if (index >= spec_.max_entries) return -E2BIG;
    ReadGuard rg;
    PerfRing* r = rings_[index].load(std::memory_order_acquire);
    if (!r) return -ENOENT;
    if (r->cpu != cpu) return -EOPNOTSUPP;
    uint64_t raw = round_up8(size + 4);
    uint64_t rec = 16 + raw;
    if (rec > 0xffff) return -E2BIG;
    const uint64_t now = monotonic_ns();
    std::lock_guard<std::mutex> lk(r->mu);
    uint64_t lost_rec = r->lost ? 24 : 0;
    if (r->head - r->tail + rec + lost_rec > r->size) {
      ++r->lost;
      return -ENOSPC;
    }
    if (r->lost) {
      uint32_t t = kRecordLost;
      uint16_t misc = 0, sz = 24;
      uint64_t id = 0;
      r->put(&t, 4);
      r->put(&misc, 2);
      r->put(&sz, 2);
      r->put(&id, 8);
      r->put(&r->lost, 8);
      r->lost = 0;
    }
    uint32_t t = kRecordSample;
    uint16_t misc = 0, sz = uint16_t(rec);
    uint32_t rs = uint32_t(raw - 4);
    r->put(&t, 4);
    r->put(&misc, 2);
    r->put(&sz, 2);
    r->put(&now, 8);
    r->put(&rs, 4);
    r->put(data, size);
    static const uint8_t zeros[8] = {};
    r->put(zeros, raw - 4 - size);
    return 0;
  }

  long consume_records(const RecordFn& sample, const LostFn& lost) override {
    ReadGuard rg;
    long cnt = 0;
    std::vector<uint8_t> buf;
    for (auto& slot : rings_) {
      PerfRing* r = slot.load(std::memory_order_acquire);
      if (!r) continue;
      std::lock_guard<std::mutex> lk(r->mu);
      while (r->tail < r->head) {
        uint8_t h[8];
        r->get(r->tail, h, 8);
        uint32_t type;
        uint16_t sz;
        std::memcpy(&type, h, 4);
        std::memcpy(&sz, h + 6, 2);
        buf.resize(sz);
        r->get(r->tail, buf.data(), sz);
        if (type == kRecordSample && sample) {
          uint64_t time;
          uint32_t rs;
          std::memcpy(&time, buf.data() + 8, 8);
          std::memcpy(&rs, buf.data() + 16, 4);
          sample(r->cpu, time, buf.data() + 20, rs);
        } else if (type == kRecordLost && lost) {
          uint64_t n;
          std::memcpy(&n, buf.data() + 16, 8);
          lost(r->cpu, n);
        }
        r->tail += sz;
        ++cnt;
      }
    }
    return cnt;
  }

  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long do_update_user(const void* key, const void*, uint64_t flags) override {
    if (flags != kBpfAny) return -EINVAL;
    if (*static_cast<const uint32_t*>(key) >= spec_.max_entries) return -E2BIG;
    return -EBADF;  // the kernel wants a perf event fd here; bpfvm opens rings with open_ring()
  }
  long remove(const void* key) override {
    uint32_t idx = *static_cast<const uint32_t*>(key);
    if (idx >= spec_.max_entries) return -E2BIG;
    PerfRing* old = rings_[idx].exchange(nullptr, std::memory_order_acq_rel);
    if (!old) return -ENOENT;
    retire(old, free_ring);
    return 0;
  }
  long lookup_copy(const void*, void*, uint64_t flags) override {
    if (flags & ~kBpfFLock) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  long get_next_key(const void* key, void* next) override {
    uint32_t max = spec_.max_entries;
    uint32_t idx = key ? *static_cast<const uint32_t*>(key) : max;
    uint32_t n;
    if (idx >= max) n = 0;
    else if (idx == max - 1) return -ENOENT;
    else n = idx + 1;
    std::memcpy(next, &n, 4);
    return 0;
  }

 private:
  ZeroArray<std::atomic<PerfRing*>> rings_;
};

}  // namespace

std::shared_ptr<Map> make_perf_event_array(const MapSpec& s) { return std::make_shared<PerfEventArray>(s); }

}  // namespace bpfvm::maps

namespace bpfvm {

long PerfEventArrayMap::consume(const SampleFn& sample, const LostFn& lost) {
  if (!sample) return consume_records(nullptr, lost);
  return consume_records([&](int cpu, uint64_t, const void* d, uint32_t n) { sample(cpu, d, n); }, lost);
}

long PerfEventArrayMap::poll(const SampleFn& sample, const LostFn& lost, int timeout_ms) {
  if (!sample) return poll_records(nullptr, lost, timeout_ms);
  return poll_records([&](int cpu, uint64_t, const void* d, uint32_t n) { sample(cpu, d, n); }, lost, timeout_ms);
}

long PerfEventArrayMap::poll_records(const RecordFn& sample, const LostFn& lost, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    long n = consume_records(sample, lost);
    if (n != 0 || timeout_ms == 0) return n;
    if (timeout_ms > 0 && std::chrono::steady_clock::now() >= deadline) return 0;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace bpfvm
