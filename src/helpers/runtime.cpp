// Run-time configuration of the helpers: deterministic mode, trace_printk sink, helper faults,
// safe reads of host memory, and the id -> implementation dispatch.
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "bpfvm/map.hpp"
#include "helpers/impl.hpp"

namespace bpfvm {

namespace {

struct DetState {
  std::mutex mu;
  bool on = false;
  DeterministicConfig config;
  std::atomic<uint64_t> clock{0};
  std::atomic<uint64_t> epoch{1};
};
DetState& det() {
  static DetState s;
  return s;
}

std::atomic<bool> g_det_on{false};

struct Rng {
  uint64_t epoch = 0;
  uint64_t state = 0;
};
thread_local Rng t_rng;

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::mutex g_sink_mu;
PrintkSink g_sink;

thread_local std::optional<Diagnostic> t_fault;
// Whether t_fault holds one: a plain flag read by every run (no TLS wrapper or descriptor call).
thread_local constinit bool t_fault_set __attribute__((tls_model("initial-exec"))) = false;

}  // namespace

void set_deterministic(const DeterministicConfig& config) {
  auto& d = det();
  std::lock_guard<std::mutex> lock(d.mu);
  d.config = config;
  d.on = true;
  d.clock.store(config.clock_start_ns);
  d.epoch.fetch_add(1);
  g_det_on.store(true);
  set_possible_cpus(config.cpus > 0 ? config.cpus : 1);
}

void clear_deterministic() {
  auto& d = det();
  std::lock_guard<std::mutex> lock(d.mu);
  d.on = false;
  g_det_on.store(false);
  d.epoch.fetch_add(1);
}

bool deterministic_mode() { return g_det_on.load(std::memory_order_relaxed); }

void reset_deterministic_state() {
  auto& d = det();
  d.clock.store(d.config.clock_start_ns);
  d.epoch.fetch_add(1);
}

void set_printk_sink(PrintkSink sink) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  g_sink = std::move(sink);
}

std::optional<Diagnostic> take_helper_fault() {
  if (!t_fault_set) return std::nullopt;
  t_fault_set = false;
  auto f = std::move(t_fault);
  t_fault.reset();
  return f;
}
void set_helper_fault(Diagnostic d) {
  if (!t_fault) {
    t_fault = std::move(d);
    t_fault_set = true;
  }
}

long safe_read(void* dst, const void* src, size_t len) {
  if (len == 0) return 0;
  if (!src) return -helpers::kEFAULT;
  struct iovec local{dst, len};
  struct iovec remote{const_cast<void*>(src), len};
  ssize_t n = process_vm_readv(gettid(), &local, 1, &remote, 1, 0);  // this thread: the main one may have ended
  if (n == static_cast<ssize_t>(len)) return 0;
  return -helpers::kEFAULT;
}

long safe_read_str(char* dst, const void* src, size_t size) {
  if (size == 0) return 0;
  if (!src) return -helpers::kEFAULT;
  const uintptr_t base = reinterpret_cast<uintptr_t>(src);
  size_t done = 0;
  while (done < size) {
    // Read up to the end of the current page, so a string ending just before unmapped memory works.
    uintptr_t cur = base + done;
    size_t chunk = 4096 - (cur & 4095);
    if (chunk > size - done) chunk = size - done;
    if (safe_read(dst + done, reinterpret_cast<const void*>(cur), chunk) != 0) return -helpers::kEFAULT;
    void* nul = std::memchr(dst + done, 0, chunk);
    if (nul) return static_cast<long>(static_cast<char*>(nul) - dst) + 1;
    done += chunk;
  }
  dst[size - 1] = 0;
  return static_cast<long>(size);
}

namespace helpers {

bool deterministic() { return deterministic_mode(); }
const DeterministicConfig& deterministic_config() { return det().config; }

uint64_t clock_ns(int clock_id) {
  if (deterministic()) return det().clock.fetch_add(det().config.clock_step_ns, std::memory_order_relaxed);
  struct timespec ts;
  clock_gettime(clock_id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint32_t next_random_u32() {
  Rng& r = t_rng;
  uint64_t epoch = det().epoch.load(std::memory_order_relaxed);
  if (r.epoch != epoch) {
    r.epoch = epoch;
    if (deterministic()) {
      r.state = det().config.seed;
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      r.state = static_cast<uint64_t>(ts.tv_nsec) ^ (reinterpret_cast<uintptr_t>(&r) << 16) ^
                static_cast<uint64_t>(gettid());
    }
  }
  return static_cast<uint32_t>(splitmix(r.state) >> 32);
}

void printk_emit(std::string_view msg) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  if (g_sink) {
    g_sink(msg);
  } else {
    std::fwrite(msg.data(), 1, msg.size(), stderr);
    std::fflush(stderr);
  }
}

}  // namespace helpers

// ---- dispatch --------------------------------------------------------------------------------------

namespace {

struct ImplTables {
  std::unordered_map<int32_t, HelperFn> generic;
  std::unordered_map<uint64_t, HelperFn> typed;  // (id << 32 | type)
};

ImplTables* g_building = nullptr;

const ImplTables& impls() {
  static const ImplTables t = [] {
    ImplTables tt;
    g_building = &tt;
    auto add = [](int32_t id, HelperFn fn) { g_building->generic[id] = fn; };
    auto add_typed = [](int32_t id, uint32_t type, HelperFn fn) {
      g_building->typed[(static_cast<uint64_t>(id) << 32) | type] = fn;
    };
    helpers::map_helper_rows(add);
    helpers::misc_helper_rows(add);
    helpers::string_helper_rows(add);
    helpers::net_helper_rows(add, add_typed);
    helpers::task_helper_rows(add);
    g_building = nullptr;
    return tt;
  }();
  return t;
}

}  // namespace

HelperFn builtin_helper_impl(int32_t id) {
  const auto& t = impls();
  auto it = t.generic.find(id);
  return it == t.generic.end() ? nullptr : it->second;
}

HelperFn helper_impl_for(int32_t id, uint32_t prog_type) {
  const auto& t = impls();
  auto it = t.typed.find((static_cast<uint64_t>(id) << 32) | prog_type);
  if (it != t.typed.end()) return it->second;
  return builtin_helper_impl(id);
}

}  // namespace bpfvm
