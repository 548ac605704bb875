// The Map base class: defaults shared by every family, map ids, and the generic batch lookup.
#include <mutex>
#include <unordered_map>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm {
namespace maps {
namespace {
struct IdTable {
  std::mutex mu;
  uint32_t next = 1;
  std::unordered_map<uint32_t, Map*> live;
};
IdTable& ids() {
  static IdTable* t = new IdTable;
  return *t;
}
}  // namespace

uint32_t register_map(Map* m) {
  IdTable& t = ids();
  std::lock_guard<std::mutex> lk(t.mu);
  uint32_t id = t.next++;
  if (t.next == 0) t.next = 1;
  t.live[id] = m;
  return id;
}
void unregister_map(uint32_t id) {
  IdTable& t = ids();
  std::lock_guard<std::mutex> lk(t.mu);
  t.live.erase(id);
}
}  // namespace maps

std::shared_ptr<Map> map_by_id(uint32_t id) {
  maps::IdTable& t = maps::ids();
  std::lock_guard<std::mutex> lk(t.mu);
  auto it = t.live.find(id);
  if (it == t.live.end()) return nullptr;
  return it->second->weak_from_this().lock();
}

Map::Map(MapSpec spec) : spec_(std::move(spec)) { id_ = maps::register_map(this); }
Map::~Map() { maps::unregister_map(id_); }

long Map::push(const void*, uint64_t) { return -EINVAL; }
long Map::pop(void*) { return -EINVAL; }
long Map::peek(void*) { return -EINVAL; }
long Map::for_each(ForEachFn, void*) { return -EINVAL; }

void Map::copy_value(void* dst, const void* src) const {
  if (!has_lock()) {
    std::memcpy(dst, src, spec_.value_size);
    return;
  }
  uint32_t off = uint32_t(spec_.spin_lock_off);
  std::memcpy(dst, src, off);
  std::memcpy(static_cast<uint8_t*>(dst) + off + 4, static_cast<const uint8_t*>(src) + off + 4,
              spec_.value_size - off - 4);
}

void Map::copy_value_locked(void* dst, const void* src) const {
  void* lock = static_cast<uint8_t*>(dst) + spec_.spin_lock_off;
  map_spin_lock(lock);
  copy_value(dst, src);
  map_spin_unlock(lock);
}

void Map::copy_value_from_locked(void* dst, const void* src) const {
  void* lock = const_cast<uint8_t*>(static_cast<const uint8_t*>(src)) + spec_.spin_lock_off;
  map_spin_lock(lock);
  copy_value(dst, src);
  map_spin_unlock(lock);
  std::memset(static_cast<uint8_t*>(dst) + spec_.spin_lock_off, 0, 4);
}

long Map::lookup_copy(const void* key, void* value_out, uint64_t flags) {
  if (flags & ~kBpfFLock) return -EINVAL;
  if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
  maps::ReadGuard rg;
  void* p = lookup(key);
  if (!p) return -ENOENT;
  if (flags & kBpfFLock) {
    copy_value_from_locked(value_out, p);
  } else {
    std::memcpy(value_out, p, spec_.value_size);
    if (has_lock()) std::memset(static_cast<uint8_t*>(value_out) + spec_.spin_lock_off, 0, 4);
  }
  return 0;
}

long Map::update_user(const void* key, const void* value, uint64_t flags) {
  if (frozen()) return -EPERM;
  return do_update_user(key, value, flags);
}

long Map::delete_user(const void* key) {
  if (frozen()) return -EPERM;
  return do_delete_user(key);
}

long Map::lookup_and_delete(const void* key, void* value_out, uint64_t flags) {
  if (frozen()) return -EPERM;
  return do_lookup_and_delete(key, value_out, flags);
}

long Map::do_update_user(const void* key, const void* value, uint64_t flags) {
  if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
  maps::ReadGuard rg;
  return update(key, value, flags);
}

long Map::do_lookup_and_delete(const void*, void*, uint64_t flags) {
  if (flags & ~kBpfFLock) return -EINVAL;
  if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
  return -kENOTSUPP;
}

long Map::lookup_batch(const void* in_batch, void* out_batch, void* keys, void* values,
                       uint32_t* count, uint64_t flags, bool and_delete) {
  if (and_delete && frozen()) return -EPERM;
  if (flags & ~kBpfFLock) return -EINVAL;
  if ((flags & kBpfFLock) && !has_lock()) return -EINVAL;
  uint32_t max = *count;
  *count = 0;
  if (max == 0) return 0;
  const size_t ks = spec_.key_size, vs = user_value_size();
  std::vector<uint8_t> prev(ks), cur(ks);
  bool have_prev = in_batch != nullptr;
  if (have_prev) std::memcpy(prev.data(), in_batch, ks);
  long err = 0;
  uint32_t cp = 0;
  int retry = 3;
  while (cp < max) {
    err = get_next_key(have_prev ? prev.data() : nullptr, cur.data());
    if (err) break;
    uint8_t* vout = static_cast<uint8_t*>(values) + size_t(cp) * vs;
    err = and_delete ? lookup_and_delete(cur.data(), vout, flags) : lookup_copy(cur.data(), vout, flags);
    if (err == -ENOENT) {
      if (retry-- > 0) continue;
      err = -EINTR;
      break;
    }
    if (err) return err;
    std::memcpy(static_cast<uint8_t*>(keys) + size_t(cp) * ks, cur.data(), ks);
    if (!and_delete) {
      prev.swap(cur);
      have_prev = true;
    }
    retry = 3;
    ++cp;
  }
  *count = cp;
  if (cp && out_batch) std::memcpy(out_batch, and_delete ? cur.data() : prev.data(), ks);
  return err;
}

}  // namespace bpfvm
