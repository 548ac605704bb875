// Time, randomness, CPU, current task, safe memory reads and stacks.
#include <execinfo.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "bpfvm/map.hpp"
#include "helpers/impl.hpp"

namespace bpfvm::helpers {

namespace {

template <class T>
T* ptr(uint64_t v) {
  return reinterpret_cast<T*>(v);
}

constexpr uint64_t kHz = 250;  // CONFIG_HZ of Debian's kernels; jiffies64 counts at this rate

uint64_t ktime_get_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t ktime_get_boot_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return clock_ns(CLOCK_BOOTTIME); }
uint64_t ktime_get_coarse_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}
uint64_t ktime_get_tai_ns(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return clock_ns(CLOCK_TAI); }
uint64_t jiffies64(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return clock_ns(CLOCK_MONOTONIC) / (1'000'000'000ull / kHz);
}

uint64_t get_prandom_u32(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) { return next_random_u32(); }

uint64_t get_smp_processor_id(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  return static_cast<uint64_t>(current_cpu());
}

uint64_t get_numa_node_id(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (deterministic()) return 0;
  unsigned cpu = 0, node = 0;
  if (getcpu(&cpu, &node) != 0) return 0;
  return node;
}

uint64_t get_current_pid_tgid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (TracedTask* t = current_traced_task()) return task_pid_tgid(*t);
  if (deterministic()) {
    const auto& c = deterministic_config();
    return (static_cast<uint64_t>(c.tgid) << 32) | c.pid;
  }
  return (static_cast<uint64_t>(getpid()) << 32) | static_cast<uint32_t>(gettid());
}

uint64_t get_current_uid_gid(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (TracedTask* t = current_traced_task()) return t->uid_gid();
  if (deterministic()) {
    const auto& c = deterministic_config();
    return (static_cast<uint64_t>(c.gid) << 32) | c.uid;
  }
  return (static_cast<uint64_t>(getgid()) << 32) | static_cast<uint32_t>(getuid());
}

uint64_t get_current_comm(uint64_t buf, uint64_t size, uint64_t, uint64_t, uint64_t) {
  char* out = ptr<char>(buf);
  if (size == 0) return neg(kEINVAL);
  if (TracedTask* t = current_traced_task()) return task_comm(*t, out, size);
  char comm[17] = {};
  if (deterministic()) {
    std::strncpy(comm, deterministic_config().comm.c_str(), 16);
  } else if (prctl(PR_GET_NAME, comm) != 0) {
    std::memset(out, 0, size);
    return neg(kEINVAL);
  }
  // strscpy: copies at most size-1 characters and always terminates.
  size_t n = std::strlen(comm);
  if (n > size - 1) n = size - 1;
  std::memcpy(out, comm, n);
  out[n] = 0;
  return 0;
}

// bpf_probe_read{,_user,_kernel}: copy or clear and return -EFAULT. For a traced task, _user reads
// the task's memory, _kernel bpfvm's (the event's kernel data), and the old bpf_probe_read decides
// by the address, as the kernel's does on x86-64.
uint64_t probe_read_task(uint64_t dst, uint64_t size, uint64_t src, TaskMem where) {
  return static_cast<uint64_t>(task_read(*current_traced_task(), ptr<void>(dst), src, size, where));
}
uint64_t probe_read(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_task(dst, size, src, TaskMem::Either);
  long r = safe_read(ptr<void>(dst), ptr<const void>(src), size);
  if (r < 0) std::memset(ptr<void>(dst), 0, size);
  return static_cast<uint64_t>(r);
}

uint64_t probe_read_kernel(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_task(dst, size, src, TaskMem::Kernel);
  return probe_read(dst, size, src, 0, 0);
}
uint64_t probe_read_user(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_task(dst, size, src, TaskMem::User);
  return probe_read(dst, size, src, 0, 0);
}

uint64_t probe_read_str_task(uint64_t dst, uint64_t size, uint64_t src, TaskMem where) {
  if (size == 0) return 0;
  return static_cast<uint64_t>(task_read_str(*current_traced_task(), ptr<char>(dst), src, size, where));
}
uint64_t probe_read_str(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_str_task(dst, size, src, TaskMem::Either);
  if (size == 0) return 0;
  long r = safe_read_str(ptr<char>(dst), ptr<const void>(src), size);
  if (r < 0) std::memset(ptr<void>(dst), 0, size);
  return static_cast<uint64_t>(r);
}

uint64_t probe_read_kernel_str(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_str_task(dst, size, src, TaskMem::Kernel);
  return probe_read_str(dst, size, src, 0, 0);
}
uint64_t probe_read_user_str(uint64_t dst, uint64_t size, uint64_t src, uint64_t, uint64_t) {
  if (current_traced_task()) return probe_read_str_task(dst, size, src, TaskMem::User);
  return probe_read_str(dst, size, src, 0, 0);
}

// ---- stacks: the host process's own user stack ----------------------------------------------------

constexpr uint64_t kSkipMask = 0xff, kUserStack = 1 << 8, kFastStackCmp = 1 << 9, kReuseStackid = 1 << 10,
                   kUserBuildId = 1 << 11;
constexpr int kMaxFrames = 127;  // sysctl kernel.perf_event_max_stack default

// Frames of the calling thread, innermost first, with `skip` frames dropped (after this helper's own).
int host_stack(uint64_t* out, int max, int skip) {
  void* frames[kMaxFrames + 8];
  int n = backtrace(frames, kMaxFrames + 8);
  int first = 2 + skip;  // host_stack and the helper itself
  int k = 0;
  for (int i = first; i < n && k < max; ++i) out[k++] = reinterpret_cast<uint64_t>(frames[i]);
  return k;
}

uint64_t get_stack(uint64_t ctx, uint64_t buf, uint64_t size, uint64_t flags, uint64_t) {
  auto clear = [&](long err) {
    std::memset(ptr<void>(buf), 0, size);
    return neg(err);
  };
  if (flags & ~(kSkipMask | kUserStack | kUserBuildId)) return clear(kEINVAL);
  if (!(flags & kUserStack)) return clear(kEFAULT);   // no kernel stack in user space
  if (flags & kUserBuildId) return clear(kEINVAL);    // build-id stacks are not provided
  if (size % 8) return clear(kEINVAL);
  int max = static_cast<int>(size / 8);
  if (max > kMaxFrames) max = kMaxFrames;
  int n = host_stack(ptr<uint64_t>(buf), max, static_cast<int>(flags & kSkipMask));
  uint64_t copied = static_cast<uint64_t>(n) * 8;
  if (copied < size) std::memset(ptr<uint8_t>(buf) + copied, 0, size - copied);
  return copied;
}

uint64_t get_stackid(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t, uint64_t) {
  if (flags & ~(kSkipMask | kUserStack | kFastStackCmp | kReuseStackid)) return neg(kEINVAL);
  Map* m = reinterpret_cast<Map*>(map);
  if (m->spec().type != kMapStackTrace || m->spec().key_size != 4 || m->spec().value_size % 8)
    return neg(kEINVAL);
  if (!(flags & kUserStack)) return neg(kEFAULT);  // no kernel stack in user space
  uint32_t depth = m->spec().value_size / 8;
  std::vector<uint64_t> ips(depth, 0);
  int n = host_stack(ips.data(), static_cast<int>(depth < kMaxFrames ? depth : kMaxFrames),
                     static_cast<int>(flags & kSkipMask));
  if (n == 0) return neg(kEFAULT);
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < n; ++i) h = (h ^ ips[i]) * 0x100000001b3ull;
  uint32_t id = static_cast<uint32_t>(h % m->spec().max_entries);
  if (void* old = m->lookup(&id)) {
    if (std::memcmp(old, ips.data(), m->spec().value_size) == 0) return id;
    if (!(flags & kReuseStackid)) return neg(kEEXIST);
  }
  long r = m->update(&id, ips.data(), 0);
  if (r < 0) return static_cast<uint64_t>(r);
  return id;
}

}  // namespace

void misc_helper_rows(void (*add)(int32_t, HelperFn)) {
  add(4, &probe_read);
  add(5, &ktime_get_ns);
  add(7, &get_prandom_u32);
  add(8, &get_smp_processor_id);
  add(14, &get_current_pid_tgid);
  add(15, &get_current_uid_gid);
  add(16, &get_current_comm);
  add(27, &get_stackid);
  add(42, &get_numa_node_id);
  add(45, &probe_read_str);
  add(67, &get_stack);
  add(112, &probe_read_user);
  add(113, &probe_read_kernel);
  add(114, &probe_read_user_str);
  add(115, &probe_read_kernel_str);
  add(118, &jiffies64);
  add(125, &ktime_get_boot_ns);
  add(160, &ktime_get_coarse_ns);
  add(208, &ktime_get_tai_ns);
}

}  // namespace bpfvm::helpers
