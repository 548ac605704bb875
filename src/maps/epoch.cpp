// Epoch-based reclamation for map elements, the per-CPU model and the bpf_spin_lock protocol.
//
// Readers: entering the outermost read-side section loads the global epoch G, announces it in the
// thread's record and issues a seq_cst fence; leaving announces "idle". Writers unlink an element
// and retire it: it joins the thread's batch of fresh (unsealed) elements. Sealing a batch takes
// e = G++ (a seq_cst read-modify-write, after every unlink of the batch in program order) and
// stamps every element of the batch with e. A sealed element is freed when every announced epoch
// is > e: a reader that announced a value <= e may still hold it; a reader whose announcement the
// reclaimer did not see, or that announced a later epoch, ordered its list reads after the unlink
// (fence/fence and release/acquire on G), so it cannot reach the element. Sealing per batch (64
// elements, and whenever the thread leaves its outermost read-side section or synchronizes) costs
// one contended atomic per batch instead of one per update.
//
// Freed hash-map elements go to a small per-thread cache per size class (elem_alloc/elem_free),
// so an update reuses the memory of an element freed earlier without a trip through malloc.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <vector>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm {
namespace maps {
namespace {

constexpr uint64_t kIdle = ~0ull;

struct alignas(64) Rec {
  std::atomic<uint64_t> ann{kIdle};
  std::atomic<bool> used{false};
  Rec* next = nullptr;
};

struct Fresh {
  void* p;
  void (*del)(void*);
};

// A sealed batch of retired elements: all freed together once no announced epoch is <= epoch.
struct Batch {
  uint64_t epoch;
  std::vector<Fresh> items;
};

struct Global {
  std::atomic<uint64_t> epoch{1};
  std::atomic<Rec*> head{nullptr};
  std::mutex orphan_mu;
  std::vector<Batch> orphans;
};
Global& g() {
  static Global* gl = new Global;  // never destroyed: thread exit may run after static dtors
  return *gl;
}

Rec* acquire_rec() {
  Global& gl = g();
  for (Rec* r = gl.head.load(std::memory_order_acquire); r; r = r->next) {
    bool f = false;
    if (!r->used.load(std::memory_order_relaxed) && r->used.compare_exchange_strong(f, true)) return r;
  }
  Rec* r = new Rec;
  r->used.store(true, std::memory_order_relaxed);
  Rec* h = gl.head.load(std::memory_order_relaxed);
  do {
    r->next = h;
  } while (!gl.head.compare_exchange_weak(h, r, std::memory_order_release, std::memory_order_relaxed));
  return r;
}

uint64_t min_announced() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint64_t m = kIdle;
  for (Rec* r = g().head.load(std::memory_order_acquire); r; r = r->next)
    m = std::min(m, r->ann.load(std::memory_order_seq_cst));
  return m;
}

// Frees the batches older than min_ann; keeps up to 16 emptied item vectors in *spares for reuse
// (a thread that seals often — one user-space update at a time — allocates no new vectors).
void free_older(std::vector<Batch>& v, uint64_t min_ann, std::vector<std::vector<Fresh>>* spares = nullptr) {
  size_t k = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].epoch < min_ann) {
      for (const Fresh& f : v[i].items) f.del(f.p);
      if (spares && spares->size() < 16) {
        v[i].items.clear();
        spares->push_back(std::move(v[i].items));
      }
    } else {
      if (k != i) v[k] = std::move(v[i]);
      ++k;
    }
  }
  v.resize(k);
}

}  // namespace

thread_local constinit ReaderState t_reader __attribute__((tls_model("initial-exec"))) = {0, false};

namespace {

struct Tls {
  Rec* rec = nullptr;
  std::vector<Batch> pending;  // sealed, oldest first
  size_t pending_items = 0;
  std::vector<Fresh> fresh;    // retired, not yet sealed with an epoch
  std::vector<std::vector<Fresh>> spares;  // emptied batch vectors, reused for the next fresh batches
  void seal() {
    if (fresh.empty()) return;
    uint64_t e = g().epoch.fetch_add(1, std::memory_order_seq_cst);
    pending_items += fresh.size();
    pending.push_back(Batch{e, std::move(fresh)});
    fresh.clear();  // moved-from: take a spare vector (its capacity) if there is one
    if (!spares.empty()) {
      fresh.swap(spares.back());
      spares.pop_back();
    }
    if (fresh.capacity() < 64) fresh.reserve(64);
  }
  void count_pending() {
    pending_items = 0;
    for (const Batch& b : pending) pending_items += b.items.size();
  }
  Rec* get() {
    if (!rec) rec = acquire_rec();
    return rec;
  }
  void announce() {
    Rec* r = get();
    r->ann.store(g().epoch.load(std::memory_order_seq_cst), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void idle() {
    if (rec) rec->ann.store(kIdle, std::memory_order_release);
  }
  ~Tls() {
    t_reader.depth = 0;
    t_reader.sticky = false;
    idle();
    seal();
    if (!pending.empty()) {
      free_older(pending, min_announced());
      if (!pending.empty()) {
        std::lock_guard<std::mutex> lk(g().orphan_mu);
        for (Batch& b : pending) g().orphans.push_back(std::move(b));
        pending.clear();
      }
    }
    if (rec) rec->used.store(false, std::memory_order_release);
  }
};
thread_local Tls tls;

void reclaim_now() {
  uint64_t m = min_announced();
  free_older(tls.pending, m, &tls.spares);
  tls.count_pending();
  Global& gl = g();
  std::unique_lock<std::mutex> lk(gl.orphan_mu, std::try_to_lock);
  if (lk.owns_lock() && !gl.orphans.empty()) free_older(gl.orphans, m);
}

}  // namespace

void retire(void* p, void (*del)(void*)) {
  Tls& t = tls;
  t.fresh.push_back(Fresh{p, del});
  if (t.fresh.size() >= 64) {
    t.seal();
    if (t.pending_items >= 128) reclaim_now();
  }
}

void seal_retired() { tls.seal(); }

void reader_touch_slow() {
  if (t_reader.depth == 0 && !t_reader.sticky) {
    tls.announce();
    t_reader.sticky = true;
  }
}

// ---- element cache -----------------------------------------------------------------------------
namespace {
constexpr uint32_t kCacheClasses = 128;    // 16-byte classes up to 2032 bytes
constexpr uint32_t kCachePerClass = 512;   // at most this many free elements kept per class
constexpr size_t kCacheMaxBytes = 1 << 20; // and at most this much memory per thread

// Each thread's cache lives on the heap, reached through a thread-local pointer: the agent library's
// thread-local block stays small enough for the static TLS that dlopen can still give a running
// process (bpfvm trace -p). The pointer is trivially destructible (constinit), so that frees during
// thread exit (the epoch records' destructor frees pending elements) never touch a destroyed object:
// once the drain has run, the pointer is kDeadCache and frees go to std::free.
struct ElemCache {
  void* head[kCacheClasses];
  uint32_t count[kCacheClasses];
  size_t bytes;
};
ElemCache* const kDeadCache = reinterpret_cast<ElemCache*>(uintptr_t{1});
thread_local constinit ElemCache* t_cache __attribute__((tls_model("initial-exec"))) = nullptr;

struct ElemCacheDrain {
  void touch() {}
  ~ElemCacheDrain() {
    ElemCache* c = t_cache;
    t_cache = kDeadCache;
    if (!c || c == kDeadCache) return;
    for (uint32_t k = 0; k < kCacheClasses; ++k) {
      while (void* p = c->head[k]) {
        c->head[k] = *static_cast<void**>(p);
        std::free(p);
      }
    }
    std::free(c);
  }
};
thread_local ElemCacheDrain t_cache_drain;
}  // namespace

uint8_t elem_class(size_t size) {
  size_t k = (size + 15) / 16;
  return k < kCacheClasses ? uint8_t(k) : 0;
}

void* elem_alloc(size_t size, uint8_t cls) {
  ElemCache* c = t_cache;
  if (cls) {
    if (c && c != kDeadCache)
      if (void* p = c->head[cls]) {
        c->head[cls] = *static_cast<void**>(p);
        --c->count[cls];
        c->bytes -= size_t(cls) * 16;
        return p;
      }
    return std::malloc(size_t(cls) * 16);
  }
  return std::malloc(size);
}

void elem_free(void* p, uint8_t cls) {
  ElemCache* c = t_cache;
  if (!cls || c == kDeadCache) {
    std::free(p);
    return;
  }
  if (!c) {
    c = static_cast<ElemCache*>(std::calloc(1, sizeof(ElemCache)));
    if (!c) {
      std::free(p);
      return;
    }
    t_cache = c;
    t_cache_drain.touch();  // constructs it: its destructor empties the cache at thread exit
  }
  if (c->count[cls] >= kCachePerClass || c->bytes + size_t(cls) * 16 > kCacheMaxBytes) {
    std::free(p);
    return;
  }
  *static_cast<void**>(p) = c->head[cls];
  c->head[cls] = p;
  ++c->count[cls];
  c->bytes += size_t(cls) * 16;
}

uint64_t random_seed() {
  static std::atomic<uint64_t> ctr{0};
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd() ^ (ctr.fetch_add(0x9E3779B97F4A7C15ull) + 1);
}

}  // namespace maps

void map_read_lock() {
  if (maps::t_reader.depth++ == 0 && !maps::t_reader.sticky) maps::tls.announce();
}

void map_read_unlock() {
  if (maps::t_reader.depth > 0 && --maps::t_reader.depth == 0) {
    store::cpu_slot_release();
    maps::t_reader.sticky = false;
    maps::Tls& t = maps::tls;
    t.idle();
    if (!t.fresh.empty()) t.seal();
  }
}

namespace maps {
void internal_read_unlock() {
  if (t_reader.depth > 0 && --t_reader.depth == 0) {
    store::cpu_slot_release();
    if (!t_reader.sticky) {
      Tls& t = tls;
      t.idle();
      if (!t.fresh.empty()) t.seal();
    }
  }
}
}  // namespace maps

void map_quiescent() {
  if (maps::t_reader.depth == 0 && maps::t_reader.sticky) {
    maps::t_reader.sticky = false;
    maps::tls.idle();
  }
}

void map_synchronize() {
  using namespace maps;
  map_quiescent();
  tls.seal();
  uint64_t target = g().epoch.fetch_add(1, std::memory_order_seq_cst) + 1;
  // Wait (at most a second: a thread pinned outside any section may never leave) for every thread
  // that announced an epoch below target, then free what no announced epoch can still reach.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool busy = false;
    for (Rec* r = g().head.load(std::memory_order_acquire); r; r = r->next) {
      if (r == tls.rec) continue;
      uint64_t a = r->ann.load(std::memory_order_seq_cst);
      if (a != kIdle && a < target) busy = true;
    }
    if (!busy || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::yield();
  }
  uint64_t threshold = std::min(target, min_announced());
  free_older(tls.pending, threshold, &tls.spares);
  tls.count_pending();
  std::lock_guard<std::mutex> lk(g().orphan_mu);
  free_older(g().orphans, threshold);
}

// ---- per-CPU model -----------------------------------------------------------------------------
namespace {
thread_local constinit int t_cpu __attribute__((tls_model("initial-exec"))) = 0;  // set per probe hit
std::atomic<int> g_possible{0};
}  // namespace

int current_cpu() { return t_cpu; }
void set_current_cpu(int cpu) { t_cpu = cpu < 0 ? 0 : cpu; }
int possible_cpus() {
  int n = g_possible.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = int(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
    g_possible.store(n, std::memory_order_relaxed);
  }
  return n;
}
void set_possible_cpus(int n) { g_possible.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

// ---- bpf_spin_lock ------------------------------------------------------------------------------
// The lock word holds the holder's process id, so that a lock held by a process that died (a map
// shared through the store) is taken over after a liveness check (store/robust.hpp).
void map_spin_lock(void* lock) {
  store::robust_lock(*reinterpret_cast<std::atomic<uint32_t>*>(lock));
}
void map_spin_unlock(void* lock) {
  store::robust_unlock(*reinterpret_cast<std::atomic<uint32_t>*>(lock));
}

}  // namespace bpfvm
