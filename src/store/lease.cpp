// Per-CPU slots of pinned maps, held exclusively by one program run at a time.
//
// In the kernel a program runs on one CPU with preemption off, so its per-CPU slot is its own. In
// user space two processes on one CPU would both update "CPU 0", so a run that touches a pinned
// per-CPU map leases a slot from a table shared by every process that uses the pin root
// (<pin root>/.bpfvm-cpu-slots, one robust lock word per slot holding the thread id): first the
// slot of the thread's worker index, else any free one (waiting when all are held). The lease lasts
// until the thread leaves its outermost read-side section (the end of the program run), and while
// it is held current_cpu() -- what bpf_get_smp_processor_id returns -- is the slot. A lease held by
// a thread that died is taken over (robust.hpp).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>
#include <thread>

#include "maps/map_internal.hpp"
#include "store/robust.hpp"

namespace bpfvm::store {

namespace {

constexpr size_t kTableBytes = size_t(kMaxCpus) * 4;

std::atomic<uint32_t>* table() {
  static std::once_flag once;
  static std::atomic<uint32_t>* t = nullptr;
  std::call_once(once, [] {
    const std::string root = pin_root();
    mkdir(root.c_str(), 0755);
    const std::string path = root + "/.bpfvm-cpu-slots";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return;
    fchmod(fd, 0666);  // every user that shares maps through this root shares the slots
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t(st.st_size) < kTableBytes && ftruncate(fd, off_t(kTableBytes)) != 0)) {
      close(fd);
      return;
    }
    void* p = mmap(nullptr, kTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED) t = static_cast<std::atomic<uint32_t>*>(p);
  });
  return t;
}

uint32_t self_tid() {
  thread_local uint32_t tid = 0;
  thread_local uint32_t pid_of_tid = 0;
  if (pid_of_tid != self_pid()) {  // first use, or a child of fork()
    tid = uint32_t(syscall(SYS_gettid));
    pid_of_tid = self_pid();
  }
  return tid;
}

struct Lease {
  int slot = -1;
  int saved_cpu = 0;
};
thread_local constinit Lease t_lease __attribute__((tls_model("initial-exec")));  // read at every run's end

bool try_take(std::atomic<uint32_t>& w, uint32_t me) {
  uint32_t cur = 0;
  if (w.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  if (cur != me && !pid_alive(cur))
    return w.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed);
  return false;
}

}  // namespace

int cpu_slot_shared(int ncpus) {
  if (t_lease.slot >= 0) return t_lease.slot % ncpus;
  // Outside a program run (user-space access, or no read-side section): no lease.
  if (maps::t_reader.depth == 0) return current_cpu() % ncpus;
  std::atomic<uint32_t>* t = table();
  if (!t) return current_cpu() % ncpus;
  const uint32_t me = self_tid();
  const int n = std::min<int>(ncpus, int(kMaxCpus));
  const int pref = current_cpu() % n;
  for (unsigned round = 0;; ++round) {
    for (int i = 0; i < n; ++i) {
      int s = (pref + i) % n;
      if (try_take(t[s], me)) {
        t_lease.slot = s;
        t_lease.saved_cpu = current_cpu();
        set_current_cpu(s);
        return s;
      }
    }
    if (round > 64) std::this_thread::yield();
  }
}

void cpu_slot_release() {
  if (t_lease.slot < 0) return;
  std::atomic<uint32_t>* t = table();
  if (t) t[t_lease.slot].store(0, std::memory_order_release);
  set_current_cpu(t_lease.saved_cpu);
  t_lease.slot = -1;
}

}  // namespace bpfvm::store
