// BPF ring buffer (the kernel's ringbuf.c layout): data area of max_entries bytes mapped twice back
// to back (records may wrap), 8-byte record headers {len | BUSY | DISCARD, pg_off}, producer and
// consumer positions that only grow. Producers serialise on a spin lock to reserve; commits are
// lock-free (the header's BUSY bit is cleared with a release store); the consumer side follows
// libbpf's ring_buffer__consume.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <mutex>

#include <fmt/format.h>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

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

// The control page at the start of the region (the data area follows it, page aligned).
struct RingCtl {
  alignas(64) std::atomic<uint64_t> cons_pos;
  alignas(64) std::atomic<uint64_t> prod_pos;
  alignas(64) store::RobustLock prod_lock;
  alignas(64) std::atomic<uint32_t> seq;      // bumped on every wake-up (a futex word)
  std::atomic<uint32_t> waiters;              // consumers sleeping on seq
};
static_assert(sizeof(RingCtl) <= kPageSize);

class Ringbuf final : public RingbufMap {
 public:
  // The control page, the data, then the reservers' table, so that a consumer can discard a record
  // whose producer died before submitting it: entry (offset / 8) % kPidSlots holds
  // (record offset << 32 | pid of the reserving process). It is small enough to stay in cache; an
  // entry that a later reservation overwrote no longer names the record's offset, and the record is
  // then waited for like a live producer's (a stall only when records more than kPidSlots * 8 bytes
  // apart are in flight together and the earlier producer dies).
  static constexpr uint64_t kPidSlots = 4096;
  static uint64_t pid_table_bytes(const MapSpec&) { return kPidSlots * 8; }
  static uint64_t layout(const MapSpec& s, int) { return uint64_t(kPageSize) + s.max_entries + pid_table_bytes(s); }

  Ringbuf(const MapSpec& s, std::shared_ptr<store::Region> region)
      : RingbufMap(s), size_(s.max_entries), mask_(s.max_entries - 1) {
    ctl_ = reinterpret_cast<RingCtl*>(region->base());
    if (region->fresh()) new (ctl_) RingCtl{};
    // The data area mapped twice back to back, so that a record that wraps reads contiguously.
    void* base = mmap(nullptr, 2 * size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    uint8_t* b = static_cast<uint8_t*>(base);
    off_t off = off_t(region->file_offset() + kPageSize);
    if (mmap(b, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, region->fd(), off) == MAP_FAILED ||
        mmap(b + size_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, region->fd(), off) == MAP_FAILED) {
      munmap(base, 2 * size_);
      throw std::bad_alloc();
    }
    data_ = b;
    pids_ = reinterpret_cast<std::atomic<uint64_t>*>(region->base() + kPageSize + size_);
    region_ = std::move(region);
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
    ctl_->prod_lock.lock();
    uint64_t cons = ctl_->cons_pos.load(std::memory_order_acquire);
    uint64_t prod = ctl_->prod_pos.load(std::memory_order_relaxed);
    uint64_t np = prod + len;
    if (np - cons > mask_ || cons > prod) {
      ctl_->prod_lock.unlock();
      return nullptr;
    }
    uint8_t* hdr = data_ + (prod & mask_);
    pids_[((prod & mask_) >> 3) % kPidSlots].store((prod & mask_) << 32 | store::self_pid(), std::memory_order_relaxed);
    hdr_len(prod).store(uint32_t(size) | kBusyBit, std::memory_order_relaxed);
    uint32_t pg_off = uint32_t((prod & mask_) / kPageSize);
    std::memcpy(hdr + 4, &pg_off, 4);
    ctl_->prod_pos.store(np, std::memory_order_release);
    ctl_->prod_lock.unlock();
    return hdr + kHdrSize;
  }
  void commit(void* sample, uint64_t flags, bool discard) {
    uint8_t* hdr = static_cast<uint8_t*>(sample) - kHdrSize;
    auto* len = reinterpret_cast<std::atomic<uint32_t>*>(hdr);
    uint32_t v = len->load(std::memory_order_relaxed) & ~kBusyBit;
    if (discard) v |= kDiscardBit;
    uint64_t rec_pos = uint64_t(hdr - data_);
    len->store(v, std::memory_order_release);
    uint64_t cons = ctl_->cons_pos.load(std::memory_order_acquire);
    bool wake = (flags & kForceWakeup) || (!(flags & kNoWakeup) && (cons & mask_) == (rec_pos & mask_));
    if (wake) wakeup();
  }
  void wakeup() {
    ctl_->seq.fetch_add(1, std::memory_order_seq_cst);
    if (ctl_->waiters.load(std::memory_order_seq_cst)) store::futex_wake_all(ctl_->seq);
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
      case 0: return ctl_->prod_pos.load(std::memory_order_acquire) - ctl_->cons_pos.load(std::memory_order_acquire);
      case 1: return size_;
      case 2: return ctl_->cons_pos.load(std::memory_order_acquire);
      case 3: return ctl_->prod_pos.load(std::memory_order_acquire);
      default: return 0;
    }
  }

  long consume(const SampleFn& cb) override {
    std::lock_guard<std::mutex> lk(cons_mu_);
    long cnt = 0;
    uint64_t cons = ctl_->cons_pos.load(std::memory_order_relaxed);
    for (;;) {
      bool got = false;
      uint64_t prod = ctl_->prod_pos.load(std::memory_order_acquire);
      // Positions come from memory other processes write: a consumer ahead of the producer or
      // more than the ring behind it means damage; stop rather than read garbage.
      if (prod < cons || prod - cons > size_) return cnt ? cnt : -EINVAL;
      while (cons < prod) {
        uint32_t len = hdr_len(cons).load(std::memory_order_acquire);
        if (len & kBusyBit) {
          // A record reserved by a process that died before submitting it is discarded.
          uint64_t owner = pids_[((cons & mask_) >> 3) % kPidSlots].load(std::memory_order_relaxed);
          if ((owner >> 32) != (cons & mask_) || store::pid_alive(uint32_t(owner))) return cnt;
          uint32_t want = (len & ~kBusyBit) | kDiscardBit;
          if (!hdr_len(cons).compare_exchange_strong(len, want, std::memory_order_acq_rel)) continue;
          len = want;
        }
        got = true;
        uint32_t dlen = len & ~(kBusyBit | kDiscardBit);
        uint64_t rec = cons;
        uint64_t step = round_up8(uint64_t(dlen) + kHdrSize);
        if (step > prod - cons) return cnt ? cnt : -EINVAL;  // a length beyond what was produced
        cons += step;
        if (!(len & kDiscardBit)) {
          int err = cb(data_ + (rec & mask_) + kHdrSize, dlen);
          if (err < 0) {
            ctl_->cons_pos.store(cons, std::memory_order_release);
            return err;
          }
          ++cnt;
        }
        ctl_->cons_pos.store(cons, std::memory_order_release);
      }
      if (!got) return cnt;
    }
  }
  long poll(const SampleFn& cb, int timeout_ms) override {
    long n = consume(cb);
    if (n != 0 || timeout_ms == 0) return n;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
      uint32_t s = ctl_->seq.load(std::memory_order_seq_cst);
      ctl_->waiters.fetch_add(1, std::memory_order_seq_cst);
      n = consume(cb);
      if (n != 0) {
        ctl_->waiters.fetch_sub(1, std::memory_order_seq_cst);
        return n;
      }
      int slice = 50;  // also wakes up now and then to look for records of producers that died
      if (timeout_ms >= 0) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
          ctl_->waiters.fetch_sub(1, std::memory_order_seq_cst);
          return consume(cb);
        }
        slice = std::min<int>(slice, int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1);
      }
      store::futex_wait(ctl_->seq, s, slice);
      ctl_->waiters.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
  uint64_t producer_pos() const override { return ctl_->prod_pos.load(std::memory_order_acquire); }
  uint64_t consumer_pos() const override { return ctl_->cons_pos.load(std::memory_order_acquire); }
  const uint8_t* data_area() const override { return data_; }

  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -kENOTSUPP; }
  long remove(const void*) override { return -kENOTSUPP; }
  long do_delete_user(const void* key) override { return key ? -EINVAL : -kENOTSUPP; }
  long get_next_key(const void* key, void*) override { return key ? -EINVAL : -kENOTSUPP; }
  long do_lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    return key ? -EINVAL : Map::do_lookup_and_delete(key, out, flags);
  }
  long lookup_copy(const void* key, void*, uint64_t flags) override {
    if (key || (flags & ~kBpfFLock)) return -EINVAL;
    if (flags & kBpfFLock) return -EINVAL;
    return -kENOTSUPP;
  }
  long do_update_user(const void* key, const void*, uint64_t flags) override {
    if (key || (flags & kBpfFLock)) return -EINVAL;
    return -kENOTSUPP;
  }

 private:
  uint64_t size_, mask_;
  uint8_t* data_ = nullptr;
  RingCtl* ctl_ = nullptr;
  std::atomic<uint64_t>* pids_ = nullptr;
  std::mutex cons_mu_;
};

}  // namespace

namespace {
std::shared_ptr<Map> ringbuf_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (r->fd() < 0 || r->size() != Ringbuf::layout(s, 1)) {
    if (why) *why = "the ring buffer's area does not match its size";
    return nullptr;
  }
  if (!r->fresh()) {
    auto* c = reinterpret_cast<RingCtl*>(r->base());
    uint64_t cons = c->cons_pos.load(), prod = c->prod_pos.load();
    if (prod < cons || prod - cons > s.max_entries || (cons & 7) || (prod & 7)) {
      if (why) *why = fmt::format("damaged ring positions (consumer {}, producer {})", cons, prod);
      return nullptr;
    }
  }
  return std::make_shared<Ringbuf>(s, std::move(r));
}
}  // namespace

const store::RegionFamily kRingbufRegion = {&Ringbuf::layout, &ringbuf_in_region, true};

std::shared_ptr<Map> make_ringbuf(const MapSpec& s) {
  return std::make_shared<Ringbuf>(s, store::Region::anonymous(Ringbuf::layout(s, 1), true, 1));
}

}  // namespace bpfvm::maps
