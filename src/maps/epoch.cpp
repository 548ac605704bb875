// Epoch-based reclamation for map elements, the per-CPU model and the bpf_spin_lock protocol.
//
// Readers: entering the outermost read-side section loads the global epoch G, announces it in the
// thread's record and issues a seq_cst fence; leaving announces "idle". Writers unlink an element,
// take e = G++ (seq_cst) and retire the element with e. A retired element is freed when every
// announced epoch is > e: a reader that announced a value <= e may still hold it; a reader whose
// announcement the reclaimer did not see, or that announced a later epoch, ordered its list reads
// after the unlink (fence/fence and release/acquire on G), so it cannot reach the element.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <vector>

#include "maps/map_internal.hpp"

namespace bpfvm {
namespace maps {
namespace {

constexpr uint64_t kIdle = ~0ull;

struct alignas(64) Rec {
  std::atomic<uint64_t> ann{kIdle};
  std::atomic<bool> used{false};
  Rec* next = nullptr;
};

struct Retired {
  void* p;
  void (*del)(void*);
  uint64_t epoch;
};

struct Global {
  std::atomic<uint64_t> epoch{1};
  std::atomic<Rec*> head{nullptr};
  std::mutex orphan_mu;
  std::vector<Retired> orphans;
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

void free_older(std::vector<Retired>& v, uint64_t min_ann) {
  size_t k = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].epoch < min_ann)
      v[i].del(v[i].p);
    else
      v[k++] = v[i];
  }
  v.resize(k);
}

}  // namespace

thread_local constinit ReaderState t_reader __attribute__((tls_model("initial-exec"))) = {0, false};

namespace {

struct Tls {
  Rec* rec = nullptr;
  std::vector<Retired> pending;
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
    if (!pending.empty()) {
      free_older(pending, min_announced());
      if (!pending.empty()) {
        std::lock_guard<std::mutex> lk(g().orphan_mu);
        g().orphans.insert(g().orphans.end(), pending.begin(), pending.end());
      }
    }
    if (rec) rec->used.store(false, std::memory_order_release);
  }
};
thread_local Tls tls;

void reclaim_now() {
  uint64_t m = min_announced();
  free_older(tls.pending, m);
  Global& gl = g();
  std::unique_lock<std::mutex> lk(gl.orphan_mu, std::try_to_lock);
  if (lk.owns_lock() && !gl.orphans.empty()) free_older(gl.orphans, m);
}

}  // namespace

void retire(void* p, void (*del)(void*)) {
  uint64_t e = g().epoch.fetch_add(1, std::memory_order_seq_cst);
  tls.pending.push_back(Retired{p, del, e});
  if (tls.pending.size() >= 64 && (tls.pending.size() & 63) == 0) reclaim_now();
}

void reader_touch_slow() {
  if (t_reader.depth == 0 && !t_reader.sticky) {
    tls.announce();
    t_reader.sticky = true;
  }
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
    maps::t_reader.sticky = false;
    maps::tls.idle();
  }
}

namespace maps {
void internal_read_unlock() {
  if (t_reader.depth > 0 && --t_reader.depth == 0 && !t_reader.sticky) tls.idle();
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
  free_older(tls.pending, threshold);
  std::lock_guard<std::mutex> lk(g().orphan_mu);
  free_older(g().orphans, threshold);
}

// ---- per-CPU model -----------------------------------------------------------------------------
namespace {
thread_local int t_cpu = 0;
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
void map_spin_lock(void* lock) {
  std::atomic_ref<uint32_t> a(*static_cast<uint32_t*>(lock));
  for (;;) {
    if (a.exchange(1, std::memory_order_acquire) == 0) return;
    int spins = 0;
    while (a.load(std::memory_order_relaxed) != 0) {
      if (++spins > 128) {
        std::this_thread::yield();
        spins = 0;
      }
    }
  }
}
void map_spin_unlock(void* lock) {
  std::atomic_ref<uint32_t> a(*static_cast<uint32_t*>(lock));
  a.store(0, std::memory_order_release);
}

}  // namespace bpfvm
