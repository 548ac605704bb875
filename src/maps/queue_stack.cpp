// Queue and stack maps (the kernel's queue_stack_maps.c): a ring of max_entries + 1 slots under a
// robust lock, all in a region (private or pinned); pushing into a full map fails with -E2BIG unless BPF_EXIST asks to drop the oldest element.
#include <mutex>
#include <vector>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm::maps {

long queue_stack_check(const MapSpec& s, std::string* why) {
  constexpr uint32_t kMask = kMapFNumaNode | kAccessMask;
  if (s.max_entries == 0) return fail(why, EINVAL, "max_entries must be > 0");
  if (s.key_size != 0) return fail(why, EINVAL, "key_size must be 0 for queue/stack maps");
  if (s.value_size == 0) return fail(why, EINVAL, "value_size must be > 0");
  if ((s.flags & ~kMask) || !access_ok(s.flags)) return fail(why, EINVAL, "unsupported map_flags");
  if (s.value_size > kKmallocMaxSize) return fail(why, E2BIG, "value_size too large");
  if (uint64_t(s.max_entries + 1ull) * s.value_size > (1ull << 36)) return fail(why, ENOMEM, "map too large");
  return 0;
}

namespace {

// The control block at the start of the region; the slots follow it.
struct QsCtl {
  store::RobustLock lock;
  uint32_t pad;
  uint64_t head, tail;
  uint8_t pad2[40];
};
static_assert(sizeof(QsCtl) == 64);

class QueueStack final : public Map {
 public:
  static uint64_t layout(const MapSpec& s, int) {
    return sizeof(QsCtl) + (uint64_t(s.max_entries) + 1) * s.value_size;
  }
  QueueStack(const MapSpec& s, std::shared_ptr<store::Region> region)
      : Map(s), stack_(s.type == kMapStack), size_(uint64_t(s.max_entries) + 1) {
    ctl_ = reinterpret_cast<QsCtl*>(region->base());
    buf_ = region->base() + sizeof(QsCtl);
    region_ = std::move(region);
  }
  // Under the lock. Positions come from memory other processes write: out of range means damage,
  // and the map starts over empty rather than read outside its slots.
  void lock() {
    ctl_->lock.lock();
    if (ctl_->head >= size_ || ctl_->tail >= size_) ctl_->head = ctl_->tail = 0;
  }
  void unlock() { ctl_->lock.unlock(); }
  bool full() const { return (ctl_->head + 1) % size_ == ctl_->tail; }
  bool empty() const { return ctl_->head == ctl_->tail; }
  long push(const void* value, uint64_t flags) override {
    bool replace = flags & kBpfExist;
    if ((flags & kBpfNoexist) || flags > kBpfExist) return -EINVAL;
    lock();
    if (full()) {
      if (!replace) {
        unlock();
        return -E2BIG;
      }
      ctl_->tail = ctl_->tail + 1 >= size_ ? 0 : ctl_->tail + 1;  // drop the oldest element
    }
    std::memcpy(&buf_[ctl_->head * spec_.value_size], value, spec_.value_size);
    ctl_->head = ctl_->head + 1 >= size_ ? 0 : ctl_->head + 1;
    unlock();
    return 0;
  }
  long take(void* value, bool del) {
    lock();
    if (empty()) {
      unlock();
      std::memset(value, 0, spec_.value_size);
      return -ENOENT;
    }
    if (stack_) {
      uint64_t i = ctl_->head == 0 ? size_ - 1 : ctl_->head - 1;
      std::memcpy(value, &buf_[i * spec_.value_size], spec_.value_size);
      if (del) ctl_->head = i;
    } else {
      std::memcpy(value, &buf_[ctl_->tail * spec_.value_size], spec_.value_size);
      if (del) ctl_->tail = ctl_->tail + 1 >= size_ ? 0 : ctl_->tail + 1;
    }
    unlock();
    return 0;
  }
  long pop(void* value) override { return take(value, true); }
  long peek(void* value) override { return take(value, false); }

  void* lookup(const void*) override { return nullptr; }
  long update(const void*, const void*, uint64_t) override { return -EINVAL; }
  long remove(const void*) override { return -EINVAL; }

  // User space: the syscall refuses a key pointer for key_size 0, and writes the value only on
  // success (the helpers zero it when empty).
  long lookup_copy(const void* key, void* out, uint64_t flags) override {
    if (key || (flags & ~kBpfFLock) || (flags & kBpfFLock)) return -EINVAL;
    std::vector<uint8_t> tmp(spec_.value_size);
    long r = peek(tmp.data());
    if (r == 0) std::memcpy(out, tmp.data(), tmp.size());
    return r;
  }
  long do_update_user(const void* key, const void* value, uint64_t flags) override {
    if (key || ((flags & kBpfFLock) && !has_lock())) return -EINVAL;
    return push(value, flags);
  }
  long do_delete_user(const void* key) override { return key ? -EINVAL : remove(key); }
  long get_next_key(const void* key, void*) override { return -EINVAL; }
  long do_lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    if (key || flags) return -EINVAL;
    std::vector<uint8_t> tmp(spec_.value_size);
    long r = pop(tmp.data());
    if (r == 0) std::memcpy(out, tmp.data(), tmp.size());
    return r;
  }

 private:
  bool stack_;
  uint64_t size_;
  QsCtl* ctl_ = nullptr;
  uint8_t* buf_ = nullptr;
};

std::shared_ptr<Map> qs_in_region(const MapSpec& s, std::shared_ptr<store::Region> r, std::string* why) {
  if (r->size() < QueueStack::layout(s, 1)) {
    if (why) *why = "the queue's area is shorter than its slots";
    return nullptr;
  }
  return std::make_shared<QueueStack>(s, std::move(r));
}

}  // namespace

const store::RegionFamily kQueueStackRegion = {&QueueStack::layout, &qs_in_region, false};

std::shared_ptr<Map> make_queue_stack(const MapSpec& s) {
  return std::make_shared<QueueStack>(s, store::Region::anonymous(QueueStack::layout(s, 1), false, 1));
}

}  // namespace bpfvm::maps
