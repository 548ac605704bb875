// BPF ring buffer (the kernel's ringbuf.c layout): data area of max_entries bytes mapped twice back
// to back (records may wrap), 8-byte record headers {len | BUSY | DISCARD, pg_off}, producer and
// consumer positions that only grow. Producers serialise on a spin lock to reserve; commits are
// lock-free (the header's BUSY bit is cleared with a release store); the consumer side follows
// libbpf's ring_buffer__consume.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "maps/map_internal.hpp"

namespace bpfvm::maps {

long ringbuf_check(const MapSpec& s, std::string* why) {
  if (s.flags & ~kMapFNumaNode) return fail(why, EINVAL, "unsupported map_flags for a ring buffer");
  if (s.key_size || s.value_size) return fail(why, EINVAL, "key_size and value_size must be 0 for a ring buffer");
  if (!is_pow2(s.max_entries) || (s.max_entries % kPageSize))
    return fail(why, EINVAL, "max_entries must be a power of 2 and a multiple of the page size");
  return 0;
}

namespace {

constexpr uint64_t kMaxRecord = 0xffffffffu / 4;  // RINGBUF_MAX_RECORD_SZ
constexpr uint64_t kNoWakeup = 1, kForceWakeup = 2;

class Ringbuf final : public RingbufMap {
 public:
  explicit Ringbuf(const MapSpec& s) : RingbufMap(s), size_(s.max_entries), mask_(s.max_entries - 1) {
    int fd = memfd_create("bpfvm-ringbuf", MFD_CLOEXEC);
    if (fd < 0) throw std::bad_alloc();
    if (ftruncate(fd, off_t(size_)) != 0) {
      close(fd);
      throw std::bad_alloc();
    }
    void* base = mmap(nullptr, 2 * size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
      close(fd);
      throw std::bad_alloc();
    }
    uint8_t* b = static_cast<uint8_t*>(base);
    if (mmap(b, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
        mmap(b + size_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
      munmap(base, 2 * size_);
      close(fd);
      throw std::bad_alloc();
    }
    close(fd);
    data_ = b;
  }
  ~Ringbuf() override { munmap(data_, 2 * size_); }

  std::atomic<uint32_t>& hdr_len(uint64_t pos) const {
    return *reinterpret_cast<std::atomic<uint32_t>*>(data_ + (pos & mask_));
  }

  void* reserve(uint64_t size, uint64_t flags) override {
    if (flags) return nullptr;
    if (size > kMaxRecord) return nullptr;
    uint64_t len = round_up8(size + kHdrSize);
    if (len > size_) return nullptr;
    std::lock_guard<SpinLock> lk(prod_lock_);
    uint64_t cons = cons_pos_.load(std::memory_order_acquire);
    uint64_t prod = prod_pos_.load(std::memory_order_relaxed);
    uint64_t np = prod + len;
    if (np - cons > mask_) return nullptr;
    uint8_t* hdr = data_ + (prod & mask_);
    hdr_len(prod).store(uint32_t(size) | kBusyBit, std::memory_order_relaxed);
    uint32_t pg_off = uint32_t((prod & mask_) / kPageSize);
    std::memcpy(hdr + 4, &pg_off, 4);
    prod_pos_.store(np, std::memory_order_release);
    return hdr + kHdrSize;
  }
  void commit(void* sample, uint64_t flags, bool discard) {
    uint8_t* hdr = static_cast<uint8_t*>(sample) - kHdrSize;
    auto* len = reinterpret_cast<std::atomic<uint32_t>*>(hdr);
    uint32_t v = len->load(std::memory_order_relaxed) & ~kBusyBit;
    if (discard) v |= kDiscardBit;
    len->store(v, std::memory_order_release);
    uint64_t rec_pos = uint64_t(hdr - data_);
    uint64_t cons = cons_pos_.load(std::memory_order_acquire);
    bool wake = (flags & kForceWakeup) || (!(flags & kNoWakeup) && (cons & mask_) == (rec_pos & mask_));
    if (wake) wakeup();
  }
  void wakeup() {
    seq_.fetch_add(1, std::memory_order_release);
    if (waiters_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lk(wait_mu_);
      cv_.notify_all();
    }
  }
  void submit(void* sample, uint64_t flags) override { commit(sample, flags, false); }
  void discard(void* sample, uint64_t flags) override { commit(sample, flags, true); }
  long output(const void* data, uint64_t size, uint64_t flags) override {
    if (flags & ~(kNoWakeup | kForceWakeup)) return -EINVAL;
    void* rec = reserve(size, 0);
    if (!rec) return -EAGAIN;
    std::memcpy(rec, data, size);
    submit(rec, flags);
    return 0;
  }
  uint64_t query(uint64_t flags) const override {
    switch (flags) {
      case 0: return prod_pos_.load(std::memory_order_acquire) - cons_pos_.load(std::memory_order_acquire);
      case 1: return size_;
      case 2: return cons_pos_.load(std::memory_order_acquire);
      case 3: return prod_pos_.load(std::memory_order_acquire);
      default: return 0;
    }
  }

  long consume(const SampleFn& cb) override {
    std::lock_guard<std::mutex> lk(cons_mu_);
    long cnt = 0;
    uint64_t cons = cons_pos_.load(std::memory_order_relaxed);
    for (;;) {
      bool got = false;
      uint64_t prod = prod_pos_.load(std::memory_order_acquire);
      while (cons < prod) {
        uint32_t len = hdr_len(cons).load(std::memory_order_acquire);
        if (len & kBusyBit) return cnt;
        got = true;
        uint32_t dlen = len & ~(kBusyBit | kDiscardBit);
        uint64_t rec = cons;
        cons += round_up8(uint64_t(dlen) + kHdrSize);
        if (!(len & kDiscardBit)) {
          int err = cb(data_ + (rec & mask_) + kHdrSize, dlen);
          if (err < 0) {
            cons_pos_.store(cons, std::memory_order_release);
            return err;
          }
          ++cnt;
        }
        cons_pos_.store(cons, std::memory_order_release);
      }
      if (!got) return cnt;
    }
  }
  long poll(const SampleFn& cb, int timeout_ms) override {
    long n = consume(cb);
    if (n != 0 || timeout_ms == 0) return n;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
      uint32_t s = seq_.load(std::memory_order_acquire);
      n = consume(cb);
      if (n != 0) return n;
      waiters_.fetch_add(1, std::memory_order_acq_rel);
      {
        std::unique_lock<std::mutex> lk(wait_mu_);
        auto slice = std::chrono::milliseconds(10);
        if (timeout_ms >= 0) {
          auto now = std::chrono::steady_clock::now();
          if (now >= deadline) {
            waiters_.fetch_sub(1);
            return consume(cb);
          }
          slice = std::min(slice, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1));
        }
        cv_.wait_for(lk, slice, [&] { return seq_.load(std::memory_order_acquire) != s; });
      }
      waiters_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
  uint64_t producer_pos() const override { return prod_pos_.load(std::memory_order_acquire); }
  uint64_t consumer_pos() const override { return cons_pos_.load(std::memory_order_acquire); }
  const uint8_t* data_area() const override { return data_; }

  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -kENOTSUPP; }
  long remove(const void*) override { return -kENOTSUPP; }
  long delete_user(const void* key) override { return key ? -EINVAL : -kENOTSUPP; }
  long get_next_key(const void* key, void*) override { return key ? -EINVAL : -kENOTSUPP; }
  long lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    return key ? -EINVAL : Map::lookup_and_delete(key, out, flags);
  }
  long lookup_copy(const void* key, void*, uint64_t flags) override {
    if (key || (flags & ~kBpfFLock)) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  long update_user(const void* key, const void*, uint64_t flags) override {
    if (key || (flags & kBpfFLock)) return -EINVAL;
    return -kENOTSUPP;
  }

 private:
  uint64_t size_, mask_;
  uint8_t* data_ = nullptr;
  alignas(64) std::atomic<uint64_t> cons_pos_{0};
  alignas(64) std::atomic<uint64_t> prod_pos_{0};
  alignas(64) SpinLock prod_lock_;
  std::mutex cons_mu_;
  std::atomic<uint32_t> seq_{0};
  std::atomic<int> waiters_{0};
  std::mutex wait_mu_;
  std::condition_variable cv_;
};

}  // namespace

std::shared_ptr<Map> make_ringbuf(const MapSpec& s) { return std::make_shared<Ringbuf>(s); }

}  // namespace bpfvm::maps
