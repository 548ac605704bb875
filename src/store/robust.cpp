// Robust locks over process ids, liveness checks and futexes (see robust.hpp).
#include "store/robust.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

namespace bpfvm::store {

namespace {
constexpr std::chrono::seconds kAbandonAfter{2};
void reset_pid() { g_self_pid.store(0, std::memory_order_relaxed); }
struct AtForkReset {
  AtForkReset() { pthread_atfork(nullptr, nullptr, reset_pid); }
} g_atfork;
}  // namespace

std::atomic<uint32_t> g_self_pid{0};

uint32_t self_pid_slow() {
  uint32_t p = uint32_t(getpid());
  g_self_pid.store(p, std::memory_order_relaxed);
  return p;
}

bool pid_alive(uint32_t pid) {
  if (pid == 0) return false;
  if (pid == self_pid()) return true;
  if (pid > 0x3fffffffu) return false;  // not a pid: a damaged word
  if (kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return true;  // cannot tell: treat as alive
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // "pid (comm) S ...": the state follows the last ')'
  char* rp = nullptr;
  for (char* p = buf; *p; ++p)
    if (*p == ')') rp = p;
  if (!rp || rp[1] != ' ') return true;
  char st = rp[2];
  return !(st == 'Z' || st == 'X' || st == 'x');
}

namespace {
enum LockResult { kAcquired, kTakenOver, kHolderDead };
// Spins until the word is free (acquires it) or its holder is dead or the word abandoned (takes it
// over when `take`, else leaves it as it is).
LockResult lock_slow(std::atomic<uint32_t>& word, bool take_dead) {
  const uint32_t me = self_pid();
  uint32_t cur = 0;
  unsigned spins = 0, rounds = 0;
  uint32_t seen = 0;
  std::chrono::steady_clock::time_point since;
  for (;;) {
    cur = word.load(std::memory_order_relaxed);
    if (cur == 0) {
      if (word.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed)) return kAcquired;
      continue;
    }
    if (++spins < 128) {
      __builtin_ia32_pause();
      continue;
    }
    spins = 0;
    // Held for a while: is the holder still there? (Checked every few rounds: a syscall each.)
    if ((++rounds & 7) == 0) {
      bool take = cur != me && !pid_alive(cur);
      // Critical sections last microseconds: a word that names the same holder for seconds is a
      // lock abandoned (a stopped process) or a damaged word; take it rather than wait forever.
      auto now = std::chrono::steady_clock::now();
      if (cur != seen) {
        seen = cur;
        since = now;
      } else if (now - since > kAbandonAfter) {
        take = true;
      }
      if (take) {
        if (!take_dead) return kHolderDead;
        if (word.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed)) return kTakenOver;
        continue;
      }
    }
    std::this_thread::yield();
  }
}
}  // namespace

bool robust_lock_slow(std::atomic<uint32_t>& word) { return lock_slow(word, true) == kTakenOver; }
bool robust_lock_live_slow(std::atomic<uint32_t>& word) { return lock_slow(word, false) == kAcquired; }

std::atomic<uint64_t> g_kill_countdown{0};

void kill_point_hit() {
  if (g_kill_countdown.fetch_sub(1, std::memory_order_relaxed) == 1) raise(SIGKILL);
}

void kill_after(uint64_t n) { g_kill_countdown.store(n, std::memory_order_relaxed); }

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, int timeout_ms) {
  struct timespec ts;
  struct timespec* tp = nullptr;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = long(timeout_ms % 1000) * 1000000L;
    tp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, tp, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, 0x7fffffff, nullptr, nullptr, 0);
}

}  // namespace bpfvm::store
