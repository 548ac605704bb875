// Queue and stack maps (the kernel's queue_stack_maps.c): a ring of max_entries + 1 slots under a
// lock; pushing into a full map fails with -E2BIG unless BPF_EXIST asks to drop the oldest element.
#include <mutex>
#include <vector>

#include "maps/map_internal.hpp"

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

class QueueStack final : public Map {
 public:
  explicit QueueStack(const MapSpec& s)
      : Map(s), stack_(s.type == kMapStack), size_(uint64_t(s.max_entries) + 1),
        buf_(size_ * s.value_size) {}

  bool full() const { return (head_ + 1) % size_ == tail_; }
  bool empty() const { return head_ == tail_; }

  long push(const void* value, uint64_t flags) override {
    bool replace = flags & kBpfExist;
    if ((flags & kBpfNoexist) || flags > kBpfExist) return -EINVAL;
    std::lock_guard<SpinLock> lk(lock_);
    if (full()) {
      if (!replace) return -E2BIG;
      if (++tail_ >= size_) tail_ = 0;  // drop the oldest element
    }
    std::memcpy(&buf_[head_ * spec_.value_size], value, spec_.value_size);
    if (++head_ >= size_) head_ = 0;
    return 0;
  }
  long take(void* value, bool del) {
    std::lock_guard<SpinLock> lk(lock_);
    if (empty()) {
      std::memset(value, 0, spec_.value_size);
      return -ENOENT;
    }
    if (stack_) {
      uint64_t i = head_ == 0 ? size_ - 1 : head_ - 1;
      std::memcpy(value, &buf_[i * spec_.value_size], spec_.value_size);
      if (del) head_ = i;
    } else {
      std::memcpy(value, &buf_[tail_ * spec_.value_size], spec_.value_size);
      if (del && ++tail_ >= size_) tail_ = 0;
    }
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
  long update_user(const void* key, const void* value, uint64_t flags) override {
    if (key || ((flags & kBpfFLock) && !has_lock())) return -EINVAL;
    return push(value, flags);
  }
  long delete_user(const void* key) override { return key ? -EINVAL : remove(key); }
  long get_next_key(const void* key, void*) override { return -EINVAL; }
  long lookup_and_delete(const void* key, void* out, uint64_t flags) override {
    if (key || flags) return -EINVAL;
    std::vector<uint8_t> tmp(spec_.value_size);
    long r = pop(tmp.data());
    if (r == 0) std::memcpy(out, tmp.data(), tmp.size());
    return r;
  }

 private:
  bool stack_;
  uint64_t size_;
  ZeroArray<uint8_t> buf_;
  uint64_t head_ = 0, tail_ = 0;
  SpinLock lock_;
};

}  // namespace

std::shared_ptr<Map> make_queue_stack(const MapSpec& s) { return std::make_shared<QueueStack>(s); }

}  // namespace bpfvm::maps
