// The current-task helpers for programs that run for a traced task (trace.hpp: TracedTask): the
// task's ids, name and memory instead of bpfvm's own, bpf_send_signal to the task, and
// bpf_override_return at a syscall entry, bpf_get_func_ip / bpf_get_attach_cookie at a probe.
#include <linux/bpf.h>

#include <csignal>
#include <cstring>

#include "bpfvm/trace.hpp"
#include "helpers/impl.hpp"

namespace bpfvm {

namespace {
thread_local TracedTask* t_task = nullptr;
}  // namespace

TracedTask* current_traced_task() { return t_task; }
void set_current_traced_task(TracedTask* task) { t_task = task; }

namespace helpers {

uint64_t task_pid_tgid(TracedTask& t) { return (static_cast<uint64_t>(t.tgid()) << 32) | t.tid(); }

uint64_t task_comm(TracedTask& t, char* out, uint64_t size) {
  char comm[16] = {};
  t.comm(comm);
  comm[15] = 0;
  size_t n = std::strlen(comm);
  if (n > size - 1) n = size - 1;
  std::memcpy(out, comm, n);
  out[n] = 0;
  return 0;
}

// Either: the kernel decides by the address (below TASK_SIZE: user memory). In bpfvm both are user
// addresses: the event's kernel data and the program's own memory (is_kernel) are bpfvm's, anything
// else is the task's first, and bpfvm's when the task has nothing there (a map value's address).
long task_read(TracedTask& t, void* dst, uint64_t src, uint64_t size, TaskMem where) {
  if (size == 0) return 0;
  bool kernel = where == TaskMem::Kernel || (where == TaskMem::Either && t.is_kernel(src));
  long r = kernel ? safe_read(dst, reinterpret_cast<const void*>(src), size) : t.read_user(dst, src, size);
  if (r < 0 && where == TaskMem::Either && !kernel) r = safe_read(dst, reinterpret_cast<const void*>(src), size);
  if (r < 0) std::memset(dst, 0, size);
  return r;
}

long task_read_str(TracedTask& t, char* dst, uint64_t src, uint64_t size, TaskMem where) {
  if (size == 0) return 0;
  bool kernel = where == TaskMem::Kernel || (where == TaskMem::Either && t.is_kernel(src));
  long r = kernel ? safe_read_str(dst, reinterpret_cast<const void*>(src), size) : t.read_user_str(dst, src, size);
  if (r < 0 && where == TaskMem::Either && !kernel) r = safe_read_str(dst, reinterpret_cast<const void*>(src), size);
  if (r < 0) std::memset(dst, 0, size);
  return r;
}

long read_str_for_current(char* dst, uint64_t src, size_t size, TaskMem where) {
  if (TracedTask* t = t_task) return task_read_str(*t, dst, src, size, where);
  long r = safe_read_str(dst, reinterpret_cast<const void*>(src), size);
  if (r < 0 && size) dst[0] = 0;
  return r;
}

namespace {

// bpf_send_signal / bpf_send_signal_thread: the signal goes to the traced task (its process, or
// the thread). Without a traced task there is no user task to signal: -EPERM, as the kernel's
// answer for a kernel thread.
uint64_t send_signal_impl(uint64_t sig, bool thread) {
  if (sig == 0 || sig >= static_cast<uint64_t>(_NSIG)) return neg(kEINVAL);
  TracedTask* t = t_task;
  if (!t) return neg(kEPERM);
  return static_cast<uint64_t>(t->send_signal(static_cast<int>(sig), thread));
}
uint64_t send_signal(uint64_t sig, uint64_t, uint64_t, uint64_t, uint64_t) { return send_signal_impl(sig, false); }
uint64_t send_signal_thread(uint64_t sig, uint64_t, uint64_t, uint64_t, uint64_t) {
  return send_signal_impl(sig, true);
}

// bpf_override_return(regs, rc): the probed syscall does not run and returns rc. Only where the
// attach point allows it (kprobes at a syscall entry); with no traced task nothing can be
// overridden (-EOPNOTSUPP).
uint64_t override_return(uint64_t, uint64_t rc, uint64_t, uint64_t, uint64_t) {
  TracedTask* t = t_task;
  if (!t) return neg(kEOPNOTSUPP);
  return static_cast<uint64_t>(t->override_return(rc));
}

// bpf_get_func_ip / bpf_get_attach_cookie: what the probe the program runs at says (the probed
// address; the cookie of the attachment). 0 where no probe is running, as the kernel's answer for
// programs without a cookie.
uint64_t get_func_ip(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  TracedTask* t = t_task;
  return t ? t->func_ip() : 0;
}
uint64_t get_attach_cookie(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  TracedTask* t = t_task;
  return t ? t->attach_cookie() : 0;
}

}  // namespace

void task_helper_rows(void (*add)(int32_t, HelperFn)) {
  add(BPF_FUNC_override_return, &override_return);
  add(BPF_FUNC_send_signal, &send_signal);
  add(BPF_FUNC_send_signal_thread, &send_signal_thread);
  add(BPF_FUNC_get_func_ip, &get_func_ip);
  add(BPF_FUNC_get_attach_cookie, &get_attach_cookie);
}

}  // namespace helpers
}  // namespace bpfvm
