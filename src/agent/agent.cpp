// The agent's work inside the traced process: the object loaded, verified and prepared here, its
// maps opened pinned (shared with bpfvm trace), probes in user code attached to the modules loaded
// now and to libraries loaded later, programs run on the thread that hits a probe.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <link.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "agent/syscalls.hpp"
#include "agent/usdt.hpp"
#include "bpfvm/agent.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/probe_target.hpp"
#include "hooks/uprobe/patch.hpp"
#include "store/robust.hpp"

namespace bpfvm {

namespace {

// ---- reports ------------------------------------------------------------------------------------

std::string g_socket;  // the report socket's path ("" = none)

// One datagram per message; a socket of its own each time, so the agent keeps no descriptor the
// application could close or reuse.
void report_to(const std::string& sock, AgentMessage m) {
  if (sock.empty()) return;
  uprobe::QuietScope quiet;
  if (m.pid == 0) m.pid = getpid();
  std::string text = agent_message_to_json(m);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  (void)sendto(fd, text.data(), text.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  close(fd);
}

void report(AgentMessage m) { report_to(g_socket, std::move(m)); }

void report_text(AgentMessage::Kind k, std::string text) {
  AgentMessage m;
  m.kind = k;
  m.text = std::move(text);
  report(std::move(m));
}

// ---- the task programs run for: this thread ------------------------------------------------------

// This thread's id and its process's, without a system call per hit (glibc caches neither): the
// process id is the store's (refreshed after fork), the thread id is cached per thread for that pid.
struct ThreadIds {
  uint32_t tid;
  uint32_t pid;
};
thread_local constinit ThreadIds t_ids __attribute__((tls_model("initial-exec"))) = {0, 0};
inline ThreadIds thread_ids() {
  const uint32_t pid = store::self_pid();
  if (__builtin_expect(t_ids.pid != pid, 0)) t_ids = {static_cast<uint32_t>(gettid()), pid};
  return t_ids;
}

class ProbeTask final : public TracedTask {
 public:
  ProbeTask(uint64_t ip, uint64_t cookie) : ip_(ip), cookie_(cookie) {}
  uint32_t tid() const override { return thread_ids().tid; }
  uint32_t tgid() const override { return thread_ids().pid; }
  uint64_t uid_gid() override { return (static_cast<uint64_t>(getgid()) << 32) | getuid(); }
  void comm(char out[16]) override {
    std::memset(out, 0, 16);
    char name[17] = {};
    if (prctl(PR_GET_NAME, name) == 0) std::memcpy(out, name, 15);
  }
  // The thread's own memory, read so that a bad pointer gives -EFAULT instead of a fault.
  long read_user(void* dst, uint64_t addr, size_t len) override {
    return safe_read(dst, reinterpret_cast<const void*>(addr), len);
  }
  long read_user_str(char* dst, uint64_t addr, size_t size) override {
    return safe_read_str(dst, reinterpret_cast<const void*>(addr), size);
  }
  long send_signal(int sig, bool thread_only) override {
    int r = thread_only ? static_cast<int>(syscall(SYS_tgkill, getpid(), gettid(), sig)) : kill(getpid(), sig);
    return r == 0 ? 0 : -errno;
  }
  uint64_t func_ip() const override { return ip_; }
  uint64_t attach_cookie() const override { return cookie_; }

 private:
  uint64_t ip_, cookie_;
};

// ---- probes --------------------------------------------------------------------------------------

// One attached hook. Never freed: a thread may still be in its handler or return through it.
struct Probe {
  AttachedProgram* prog = nullptr;
  uint64_t ip = 0;      // the probed address in this process
  uint64_t cookie = 0;  // bpf_get_attach_cookie
  uprobe::HookId hook;
  std::atomic<bool> fault_reported{false};
};

// The control word (AgentSpec::control): nonzero while bpfvm trace wants events.
const std::atomic<uint32_t>* g_enabled = nullptr;

// The CPU this thread runs on: the kernel keeps it in the thread's rseq area, which glibc registers
// (what sched_getcpu reads, without its call); sched_getcpu where rseq is not registered.
int this_cpu() {
  if (__rseq_size >= 8) {
    const auto* area = static_cast<const char*>(__builtin_thread_pointer()) + __rseq_offset;
    const int cpu = *reinterpret_cast<const volatile int32_t*>(area + 4);  // struct rseq: cpu_id_start, cpu_id
    if (cpu >= 0) return cpu;
  }
  return sched_getcpu();
}

// The hit path: what a program run needs and nothing more. The engine's run brackets the program
// with the map read section and takes a helper's fault itself (Executable::run), so neither is
// repeated here; programs with no call at all go straight into their native code.
void on_hit(void* cookie, uprobe::PtRegs* regs) {
  if (g_enabled && g_enabled->load(std::memory_order_relaxed) == 0) return;
  auto* p = static_cast<Probe*>(cookie);
  ProbeTask task(p->ip, p->cookie);
  TracedTask* prev = current_traced_task();
  set_current_traced_task(&task);
  const int cpu = this_cpu();
  const int n = possible_cpus();
  set_current_cpu(cpu >= 0 && cpu < n ? cpu : (cpu >= 0 && n > 0 ? cpu % n : 0));
  RunArgs args;
  args.r1 = reinterpret_cast<uint64_t>(regs);
  const PreparedProgram& pp = p->prog->prog;
  if (__builtin_expect(pp.exe->options().checked, 0)) {
    args.regions.push_back(MemRegion{args.r1, sizeof(PtRegsNative), false, "ctx"});
    args.regions.insert(args.regions.end(), pp.regions.begin(), pp.regions.end());
  }
  auto r = pp.exe->run(args);
  if (__builtin_expect(!r, 0) && !p->fault_reported.exchange(true))
    report_text(AgentMessage::Kind::Fault, fmt::format("program {}: {}", p->prog->name, r.error().message));
  set_current_traced_task(prev);
}

// A loaded module: its file and load bias.
struct Module {
  std::string path;
  uint64_t bias = 0;
  dev_t dev = 0;
  ino_t ino = 0;
};

std::vector<Module> loaded_modules() {
  std::vector<Module> out;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& v = *static_cast<std::vector<Module>*>(data);
        Module m;
        m.bias = info->dlpi_addr;
        if (info->dlpi_name && info->dlpi_name[0]) {
          m.path = info->dlpi_name;
        } else if (v.empty()) {
          char buf[4096];
          ssize_t n = readlink("/proc/thread-self/exe", buf, sizeof buf - 1);  // the main thread may have ended
          if (n <= 0) return 0;
          m.path.assign(buf, static_cast<size_t>(n));
        } else {
          return 0;
        }
        struct stat st;
        if (stat(m.path.c_str(), &st) != 0) return 0;  // the vDSO and the like
        m.dev = st.st_dev;
        m.ino = st.st_ino;
        v.push_back(std::move(m));
        return 0;
      },
      &out);
  return out;
}

// A program in user code and where it stands.
struct Target {
  AttachedProgram* prog = nullptr;
  bool by_path = false;  // PATH has a '/': matched by file identity, else by file name
  dev_t dev = 0;
  ino_t ino = 0;
  bool done = false;     // attached (or failed) in this process
};

struct Agent {
  AgentSpec spec;
  std::unique_ptr<Object> object;
  std::unique_ptr<SyscallHooks> hooks;
  std::vector<Target> targets;
  std::vector<Probe*> probes;  // attached in this process
  std::unique_ptr<usdt::Specs> usdt;
  std::vector<uint16_t*> semaphores;  // USDT semaphores incremented while attached
  std::optional<uprobe::HookId> dlopen_hook;  // on the C library's dlopen when ours does not interpose it
  std::mutex mu;
  std::atomic<bool> waiting{false};  // targets not attached yet
};

Agent* g_agent = nullptr;  // kept for the process's lifetime (hooks point into it)

bool matches(const Target& t, const Module& m) {
  if (t.by_path) return t.dev == m.dev && t.ino == m.ino;
  std::string_view p = m.path;
  auto s = p.rfind('/');
  return (s == std::string_view::npos ? p : p.substr(s + 1)) == t.prog->point.binary;
}

// `start`/`size`: the function holding `addr` (0 when unknown): the patcher then checks that `addr`
// starts an instruction and that the bytes it displaces are no jump target.
Result<uprobe::HookId> hook_at(uint64_t addr, uint64_t start, size_t size, uprobe::HookKind kind, Probe* p,
                               bool breakpoint = false) {
  uprobe::AttachOptions o;
  o.func_size = size;
  o.func_start = start != addr ? start : 0;
  o.force_breakpoint = breakpoint;
  return uprobe::attach(addr, kind, &on_hit, p, o);
}

// Where a USDT site may take a jump patch: the bounds of the function that holds it (the patcher
// scans its body for jumps into the displaced bytes and refuses where it cannot tell), and whether
// another probe point of the module lies within the bytes a jump would displace (then an int3, so
// that both can be hooked). The sites are 1-byte nops, often one right behind another.
struct UsdtPlacement {
  uint64_t start = 0;  // 0: no function symbol covers the site
  size_t size = 0;
  bool breakpoint = true;
};
UsdtPlacement usdt_placement(const Module& m, const UsdtNote& n, const std::vector<UsdtNote>& all) {
  UsdtPlacement out;
  auto fn = find_enclosing_function(m.path, n.pc);
  if (!fn) return out;
  out.start = fn->vaddr + (fn->relocatable ? m.bias : 0);
  out.size = fn->size;
  // A jump displaces 5 bytes and at most one more instruction (up to 15 bytes).
  out.breakpoint = false;
  for (const UsdtNote& o : all)
    if (o.pc > n.pc && o.pc < n.pc + 5 + 15) out.breakpoint = true;
  return out;
}

// Attaches one program to a module it matched: every hook or none. Returns the hooks made.
Result<std::vector<Probe*>> attach_target(Agent& a, Target& t, const Module& m) {
  const AttachPoint& pt = t.prog->point;
  std::vector<Probe*> made;
  auto undo = [&] {
    for (Probe* p : made) (void)uprobe::detach(p->hook);
  };
  auto where = [&] { return fmt::format("program {} ({})", t.prog->name, pt.canonical); };
  if (pt.event == TraceEvent::UsdtProbe) {
    auto notes = find_usdt_notes(m.path, pt.provider, pt.function);
    if (!notes) return make_error(notes.error().code, fmt::format("{}: {}", where(), notes.error().message));
    auto every = find_usdt_notes(m.path, "", "");
    for (const UsdtNote& n : *notes) {
      auto id = a.usdt->add(n, m.bias);
      if (!id) {
        undo();
        return make_error(id.error().code, fmt::format("{}: {}", where(), id.error().message));
      }
      auto* p = new Probe();
      p->prog = t.prog;
      p->ip = n.pc + (n.relocatable ? m.bias : 0);
      p->cookie = *id;
      // A jump where the function's body allows it (usdt_placement), else an int3.
      const UsdtPlacement place = every ? usdt_placement(m, n, *every) : UsdtPlacement{};
      auto h = hook_at(p->ip, place.start, place.size, uprobe::HookKind::Entry, p, place.breakpoint);
      // The function's bounds are the symbol's: where they mislead the patcher (the sweep of its body
      // does not meet the site), the site still takes the int3 it takes without them.
      if (!h && place.start) h = hook_at(p->ip, 0, 0, uprobe::HookKind::Entry, p, true);
      if (!h) {
        undo();
        return make_error(h.error().code, fmt::format("{}: {}", where(), h.error().message));
      }
      p->hook = *h;
      made.push_back(p);
    }
    // Semaphores: incremented while attached (the program's code tests them before the probe).
    for (const UsdtNote& n : *notes)
      if (n.semaphore) {
        auto* sem = reinterpret_cast<uint16_t*>(n.semaphore + (n.relocatable ? m.bias : 0));
        __atomic_add_fetch(sem, 1, __ATOMIC_SEQ_CST);
        a.semaphores.push_back(sem);
      }
    return made;
  }
  auto fn = find_elf_function(m.path, pt.function, pt.offset);
  if (!fn) return make_error(fn.error().code, fmt::format("{}: {}", where(), fn.error().message));
  auto* p = new Probe();
  p->prog = t.prog;
  p->ip = fn->vaddr + (fn->relocatable ? m.bias : 0);
  const uint64_t entry = p->ip - (pt.function.empty() ? 0 : pt.offset);
  auto h = hook_at(p->ip, entry, pt.function.empty() ? 0 : fn->size,
                   pt.event == TraceEvent::FunctionReturn ? uprobe::HookKind::Return : uprobe::HookKind::Entry, p);
  if (!h) {
    delete p;
    return make_error(h.error().code, fmt::format("{}: {}", where(), h.error().message));
  }
  p->hook = *h;
  made.push_back(p);
  return made;
}

// Attaches every waiting target that a loaded module now matches. At start (`all_or_nothing`) a
// failure detaches everything; later (a dlopen) a failing target is reported and left out.
Status attach_loaded(Agent& a, bool all_or_nothing, uint32_t* attached) {
  std::vector<Module> mods = loaded_modules();
  *attached = 0;
  bool waiting = false;
  for (Target& t : a.targets) {
    if (t.done) continue;
    const Module* mod = nullptr;
    for (const Module& m : mods)
      if (matches(t, m)) {
        mod = &m;
        break;
      }
    if (!mod) {
      waiting = true;
      continue;
    }
    t.done = true;
    auto r = attach_target(a, t, *mod);
    if (!r) {
      if (all_or_nothing) {
        for (Probe* p : a.probes) (void)uprobe::detach(p->hook);
        a.probes.clear();
        return r.error();
      }
      report_text(AgentMessage::Kind::Error, r.error().message);
      continue;
    }
    a.probes.insert(a.probes.end(), r->begin(), r->end());
    *attached += static_cast<uint32_t>(r->size());
  }
  a.waiting = waiting;
  return {};
}

void rescan_after_dlopen(void*, uprobe::PtRegs* regs) {
  if (regs->ax) agent_rescan_modules();
}

// Probes waiting for a library are attached when dlopen loads it: the agent's own dlopen does it when
// it interposes (LD_PRELOAD); loaded by dlopen into a running process (bpfvm trace -p) it does not,
// and a return hook on the dlopen every other module calls does it instead.
void watch_dlopen(Agent& a) {
  void* global = dlsym(RTLD_DEFAULT, "dlopen");
  Dl_info mine{}, theirs{};
  if (!global || !dladdr(reinterpret_cast<void*>(&agent_rescan_modules), &mine) || !dladdr(global, &theirs)) return;
  if (mine.dli_fbase == theirs.dli_fbase) return;  // our dlopen is the process's
  auto h = uprobe::attach(reinterpret_cast<uintptr_t>(global), uprobe::HookKind::Return, &rescan_after_dlopen, nullptr);
  if (!h) {
    report_text(AgentMessage::Kind::Note,
                fmt::format("libraries loaded later are not watched (dlopen cannot be hooked: {})", h.error().message));
    return;
  }
  a.dlopen_hook = *h;
}

uint32_t count_waiting(const Agent& a) {
  uint32_t n = 0;
  for (const Target& t : a.targets) n += t.done ? 0 : 1;
  return n;
}

Status start(const std::string& spec_path) {
  std::ifstream in(spec_path);
  if (!in) return make_error(ErrorCode::Io, fmt::format("cannot read the agent spec {}: {}", spec_path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  auto spec = agent_spec_from_json(ss.str());
  if (!spec) return spec.error();
  g_socket = spec->socket;
  if (!spec->control.empty()) {
    int fd = open(spec->control.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return make_error(ErrorCode::Io, fmt::format("cannot open the control page {}: {}", spec->control, std::strerror(errno)));
    void* page = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED)
      return make_error(ErrorCode::Io, fmt::format("cannot map the control page {}: {}", spec->control, std::strerror(errno)));
    g_enabled = static_cast<const std::atomic<uint32_t>*>(page);
  }
  auto a = std::make_unique<Agent>();
  a->spec = std::move(*spec);
  LoadOptions lo;
  lo.name = a->spec.name;
  lo.prog_type = a->spec.prog_type;
  for (const auto& [s, t] : a->spec.section_types) lo.section_types[s] = t;
  lo.target_btf = a->spec.target_btf;
  auto obj = load_object_file(a->spec.object, lo);
  if (!obj) return make_error(obj.error().code, fmt::format("{}: {}", a->spec.object, obj.error().message));
  for (const auto& [n, v] : a->spec.sets)
    if (Status st = obj->set_global_text(n, v); !st)
      return make_error(st.error().code, fmt::format("--set {}={}: {}", n, v, st.error().message));
  a->object = std::make_unique<Object>(std::move(*obj));
  SyscallHooksOptions ho;
  ho.attach = a->spec.attach;
  ho.prepare.engine = a->spec.engine;
  ho.prepare.verify = a->spec.verify;
  ho.prepare.rules = a->spec.rules;
  ho.pin_maps_dir = a->spec.pin_dir;
  auto hooks = SyscallHooks::create(*a->object, ho);
  if (!hooks) return hooks.error();
  a->hooks = std::move(*hooks);
  bool syscall_programs = false;
  for (const auto& p : a->hooks->programs()) {
    if (!p->point.in_user_code()) {
      syscall_programs = true;  // agent_syscalls runs them (below)
      continue;
    }
    Target t;
    t.prog = p.get();
    const std::string& bin = p->point.binary;
    if (bin.find('/') != std::string::npos) {
      struct stat st;
      if (stat(bin.c_str(), &st) != 0)
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("program {} ({}): {}: {}", p->name, p->point.canonical, bin, std::strerror(errno)));
      t.by_path = true;
      t.dev = st.st_dev;
      t.ino = st.st_ino;
    }
    a->targets.push_back(t);
  }
  a->usdt = std::make_unique<usdt::Specs>(a->hooks->loaded());
  if (Status st = a->usdt->check(); !st) return st;
  // Everything below runs with the lock: a dlopen on another thread waits for the first attach.
  Agent& ag = *a;
  std::lock_guard<std::mutex> lock(ag.mu);
  uint32_t attached = 0;
  if (Status st = attach_loaded(ag, true, &attached); !st) return st;
  // bpf_trace_printk lines go to bpfvm trace, with the thread that printed them.
  set_printk_sink([](std::string_view msg) {
    AgentMessage m;
    m.kind = AgentMessage::Kind::Printk;
    m.text = std::string(msg);
    if (TracedTask* t = current_traced_task()) {
      m.tid = static_cast<int32_t>(t->tid());
      char comm[16];
      t->comm(comm);
      m.comm = comm;
    }
    report(std::move(m));
  });
  // A syscall program's first failing run is reported at once (as a probe's is).
  ag.hooks->set_fault_sink([](const std::string& m) { report_text(AgentMessage::Kind::Fault, m); });
  if (syscall_programs)
    if (Status st = agent_syscalls::start(*ag.hooks, ag.spec.syscalls, ag.spec.rewrite_sites, g_enabled,
                                          [](const std::string& m) { report_text(AgentMessage::Kind::Note, m); });
        !st) {
      for (Probe* p : ag.probes) (void)uprobe::detach(p->hook);
      ag.probes.clear();
      return make_error(st.error().code, fmt::format("system-call programs ({}): {}",
                                                     syscall_mechanism_name(ag.spec.syscalls), st.error().message));
    }
  g_agent = a.release();
  if (count_waiting(ag)) watch_dlopen(ag);
  AgentMessage ready;
  ready.kind = AgentMessage::Kind::Ready;
  ready.attached = attached;
  ready.pending = count_waiting(ag);
  if (ready.pending) {
    std::string names;
    for (const Target& t : ag.targets)
      if (!t.done) names += fmt::format("{}{}", names.empty() ? "" : ", ", t.prog->point.binary);
    ready.text = fmt::format("waiting for {} to be loaded", names);
  }
  report(std::move(ready));
  return {};
}

}  // namespace

Status agent_start(const std::string& spec_path) {
  uprobe::QuietScope quiet;  // the agent's own calls (getpid for a report, ...) hit no probe
  // A session whose bpfvm trace has detached (it cleared the control word: --duration of a command)
  // is over: it ends before a new one starts here (bpfvm trace -p).
  if (g_agent && g_enabled && g_enabled->load() == 0) (void)agent_stop();
  if (g_agent) {
    Status busy = make_error(ErrorCode::InvalidArgument,
                             "the agent is already running in this process (another bpfvm trace serves it)");
    std::ifstream in(spec_path);
    std::stringstream ss;
    ss << in.rdbuf();
    AgentMessage m;
    m.kind = AgentMessage::Kind::Error;
    m.text = busy.error().message;
    if (auto spec = agent_spec_from_json(ss.str())) report_to(spec->socket, std::move(m));
    return busy;
  }
  Status st = start(spec_path);
  if (!st) report_text(AgentMessage::Kind::Error, st.error().message);
  return st;
}

void agent_rescan_modules() {
  Agent* a = g_agent;
  if (!a || !a->waiting.load(std::memory_order_acquire)) return;
  uprobe::QuietScope quiet;
  std::lock_guard<std::mutex> lock(a->mu);
  uint32_t attached = 0;
  (void)attach_loaded(*a, false, &attached);
  if (attached) {
    AgentMessage m;
    m.kind = AgentMessage::Kind::Attach;
    m.attached = attached;
    m.pending = count_waiting(*a);
    report(std::move(m));
  }
}

Status agent_start_syscalls(SyscallMechanism m) {
  Agent* a = g_agent;
  if (!a) return make_error(ErrorCode::InvalidArgument, "the agent does not run in this process");
  uprobe::QuietScope quiet;
  bool any = false;
  for (const auto& p : a->hooks->programs()) any |= !p->point.in_user_code();
  if (!any) return make_error(ErrorCode::InvalidArgument, "the agent's object has no programs at system-call events");
  return agent_syscalls::start(*a->hooks, m, a->spec.rewrite_sites, g_enabled, [](const std::string& t) { report_text(AgentMessage::Kind::Note, t); });
}

bool agent_active() { return g_agent != nullptr; }

// Detaching from a process the agent was loaded into (bpfvm trace -p): every probe removed (the
// original bytes back), semaphores decremented, the session's object and maps released; the library
// stays loaded and idle, and agent_start may run again.
Result<bool> agent_stop() {
  Agent* a = g_agent;
  if (!a) return false;
  // A thread inside a handler cannot wait for the others to leave theirs, and one inside the
  // agent's own work holds its lock: the caller tries again at another moment.
  if (uprobe::in_hook()) return make_error(ErrorCode::Unsupported, "the thread runs a probe handler");
  uprobe::QuietScope quiet;
  std::unique_lock<std::mutex> lock(a->mu, std::try_to_lock);
  if (!lock.owns_lock()) return make_error(ErrorCode::Unsupported, "the agent is attaching probes");
  bool all = true;
  for (Probe* p : a->probes)
    if (Status st = uprobe::detach(p->hook); !st) {
      all = false;
      report_text(AgentMessage::Kind::Error, fmt::format("program {}: detach: {}", p->prog->name, st.error().message));
    }
  if (a->dlopen_hook) (void)uprobe::detach(*a->dlopen_hook);
  for (uint16_t* sem : a->semaphores) __atomic_sub_fetch(sem, 1, __ATOMIC_SEQ_CST);
  a->semaphores.clear();
  all &= agent_syscalls::detach();  // the hooks' programs go with the session
  g_agent = nullptr;
  set_printk_sink(nullptr);
  g_socket.clear();
  lock.unlock();
  // Detached hooks run no handler any more: the probes and the session can go. When a hook stayed
  // (its bytes could not be restored) everything it points to stays too.
  if (all) {
    for (Probe* p : a->probes) delete p;
    delete a;
    g_enabled = nullptr;  // the session's control page (left mapped: one page)
  }
  return true;
}

}  // namespace bpfvm
