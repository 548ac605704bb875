// The current-task helpers for programs that run for a traced task (trace.hpp: TracedTask): the
// task's ids, name and memory instead of bpfvm's own, bpf_send_signal to the task, and
// bpf_override_return at a syscall entry, bpf_get_func_ip / bpf_get_attach_cookie at a probe.
#include <linux/bpf.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <mutex>

#include "bpfvm/trace.hpp"
#include "helpers/impl.hpp"
#include "hooks/syscall/task_struct.hpp"
#include "loader/core.hpp"

namespace bpfvm {

namespace {
// initial-exec: read and set on every probe hit; no TLS-descriptor call where this code is in a
// shared object (the agent library, which is in the static TLS block: it is marked STATIC_TLS anyway).
thread_local constinit TracedTask* t_task __attribute__((tls_model("initial-exec"))) = nullptr;
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

// Outside a traced event the current task is bpfvm's own thread (as for the other current-task
// helpers), or the deterministic mode's fixed ids and name.
class SelfTask final : public TracedTask {
 public:
  uint32_t tid() const override { return deterministic() ? deterministic_config().pid : static_cast<uint32_t>(gettid()); }
  uint32_t tgid() const override { return deterministic() ? deterministic_config().tgid : static_cast<uint32_t>(getpid()); }
  uint64_t uid_gid() override {
    if (deterministic()) return (static_cast<uint64_t>(deterministic_config().gid) << 32) | deterministic_config().uid;
    return (static_cast<uint64_t>(getgid()) << 32) | getuid();
  }
  void comm(char out[16]) override {
    std::memset(out, 0, 16);
    if (deterministic())
      std::strncpy(out, deterministic_config().comm.c_str(), 15);
    else
      prctl(PR_GET_NAME, out);
  }
  long read_user(void* dst, uint64_t addr, size_t len) override {
    return safe_read(dst, reinterpret_cast<const void*>(addr), len);
  }
  long read_user_str(char* dst, uint64_t addr, size_t size) override {
    return safe_read_str(dst, reinterpret_cast<const void*>(addr), size);
  }
  long send_signal(int, bool) override { return neg(kEPERM); }
};

// bpfvm's own task, laid out by the default CO-RE target (/sys/kernel/btf/vmlinux, else bpfvm's
// synthetic BTF). In deterministic mode nothing comes from /proc (no parent, no start time).
uint64_t self_task() {
  static std::mutex mu;
  static std::unique_ptr<syscall_hooks::TaskStructs> tasks;
  static bool tried = false;
  std::lock_guard<std::mutex> lk(mu);
  if (!tried) {
    tried = true;
    if (auto target = core::target_for(""))
      if (auto layout = syscall_hooks::task_layout((*target)->btf(), (*target)->origin()))
        tasks = std::make_unique<syscall_hooks::TaskStructs>(std::move(*layout));
  }
  if (!tasks) return 0;
  SelfTask self;
  return tasks->current(self, !deterministic());
}

// bpf_get_current_task / bpf_get_current_task_btf: the synthetic task_struct of the task the
// program runs for.
uint64_t get_current_task(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t) {
  if (TracedTask* t = t_task) return t->current_task();
  return self_task();
}

void task_helper_rows(void (*add)(int32_t, HelperFn)) {
  add(BPF_FUNC_get_current_task, &get_current_task);
  add(BPF_FUNC_get_current_task_btf, &get_current_task);
  add(BPF_FUNC_override_return, &override_return);
  add(BPF_FUNC_send_signal, &send_signal);
  add(BPF_FUNC_send_signal_thread, &send_signal_thread);
  add(BPF_FUNC_get_func_ip, &get_func_ip);
  add(BPF_FUNC_get_attach_cookie, &get_attach_cookie);
}

}  // namespace helpers
}  // namespace bpfvm
