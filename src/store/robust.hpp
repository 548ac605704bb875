// Locks and liveness for memory shared between processes (pinned maps).
//
// A lock word holds the process id of its holder (0 = free). A waiter that spins for long checks
// whether the holder still lives (kill(pid, 0) and /proc/PID/stat: a zombie is dead) and, if not,
// takes the lock over with a compare-exchange from the dead pid to its own. Every structure guarded
// by these locks is changed by single stores that each leave it valid, so a holder killed at any
// point leaves nothing a successor cannot use (see docs/maps.md, "Pinned maps"). A word that names
// the same live holder for more than two seconds is taken over too (a stopped holder, or damage).
#pragma once

#include <atomic>
#include <cstdint>

namespace bpfvm::store {

// This process's id (cached; refreshed after fork).
extern std::atomic<uint32_t> g_self_pid;
uint32_t self_pid_slow();
inline uint32_t self_pid() {
  uint32_t p = g_self_pid.load(std::memory_order_relaxed);
  return __builtin_expect(p != 0, 1) ? p : self_pid_slow();
}
// False when `pid` is gone or a zombie; true otherwise (including "cannot tell").
bool pid_alive(uint32_t pid);

// Acquires the lock word; returns true when it was taken over from a dead holder.
bool robust_lock_slow(std::atomic<uint32_t>& word);
inline bool robust_lock(std::atomic<uint32_t>& word) {
  uint32_t cur = 0;
  if (__builtin_expect(word.compare_exchange_strong(cur, self_pid(), std::memory_order_acquire,
                                                    std::memory_order_relaxed), 1))
    return false;
  return robust_lock_slow(word);
}
// Acquires the lock word and returns true; or, when its holder is dead (or the word abandoned),
// returns false and leaves the word naming that holder. For structures a dead holder may leave in
// a state others must not see: the caller repairs them (taking the lock over there, in its lock
// order) and tries again, so no other process can take the lock in between.
bool robust_lock_live_slow(std::atomic<uint32_t>& word);
inline bool robust_lock_live(std::atomic<uint32_t>& word) {
  uint32_t cur = 0;
  if (__builtin_expect(word.compare_exchange_strong(cur, self_pid(), std::memory_order_acquire,
                                                    std::memory_order_relaxed), 1))
    return true;
  return robust_lock_live_slow(word);
}
inline void robust_unlock(std::atomic<uint32_t>& word) { word.store(0, std::memory_order_release); }

struct RobustLock {
  std::atomic<uint32_t> word{0};
  bool lock() { return robust_lock(word); }
  bool lock_live() { return robust_lock_live(word); }
  void unlock() { robust_unlock(word); }
};
static_assert(sizeof(RobustLock) == 4);

// Kill points: the steps between the stores of a change to shared memory, where a process may be
// killed. kill_point() is a compiler barrier (the stores before it are emitted before the stores
// after it, so a process killed between two steps left exactly the first), and a test hook: after
// kill_after(n) in a process, its nth kill point from then on raises SIGKILL, so that a test can
// kill a writer after every step of an operation in turn. The cost when unused is one load and
// one branch.
extern std::atomic<uint64_t> g_kill_countdown;
void kill_point_hit();
inline void kill_point() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (__builtin_expect(g_kill_countdown.load(std::memory_order_relaxed) != 0, 0)) kill_point_hit();
}
// Tests: SIGKILL this process at its nth kill point from now (0: never).
void kill_after(uint64_t n);

// futex wait/wake on a 32-bit word in shared memory (works across processes).
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, int timeout_ms);
void futex_wake_all(std::atomic<uint32_t>& word);

}  // namespace bpfvm::store
