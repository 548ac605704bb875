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
uint32_t self_pid();
// False when `pid` is gone or a zombie; true otherwise (including "cannot tell").
bool pid_alive(uint32_t pid);

// Acquires the lock word; returns true when it was taken over from a dead holder.
bool robust_lock(std::atomic<uint32_t>& word);
void robust_unlock(std::atomic<uint32_t>& word);

struct RobustLock {
  std::atomic<uint32_t> word{0};
  bool lock() { return robust_lock(word); }
  void unlock() { robust_unlock(word); }
};
static_assert(sizeof(RobustLock) == 4);

// futex wait/wake on a 32-bit word in shared memory (works across processes).
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, int timeout_ms);
void futex_wake_all(std::atomic<uint32_t>& word);

}  // namespace bpfvm::store
