// Calls made inside a running process through ptrace (inject.hpp).
//
// One thread is seized (PTRACE_SEIZE) and stopped (PTRACE_INTERRUPT); its registers, extended state
// and signal mask are saved. A call sets the argument registers, rip = the function, and a return
// address of 0 on the stack (a 16-byte aligned frame, orig_rax = -1 so that the kernel restarts no
// system call into the function): the function's `ret` faults at address 0, the fault stops the
// thread before the signal is delivered, and rax is the result (the signal is discarded). Other
// signals the call meets are delivered as they come (the agent's own breakpoints, a real crash);
// asynchronous ones stay blocked (PTRACE_SETSIGMASK) and pending until the thread is put back.
// Putting back: the saved state is set again at a stop inside the kernel's signal handling, so that
// a system call the interruption stopped (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND,
// -ERESTART_RESTARTBLOCK in rax, its number in orig_rax) is restarted by the kernel as it would have
// been without bpfvm; then PTRACE_DETACH.
#include "inject.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "bpfvm/probe_target.hpp"
#include "trace_agent.hpp"

namespace bpfvm::cli {

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Diagnostic ended(pid_t pid) {
  return make_error(ErrorCode::InvalidArgument, fmt::format("process {} ended while bpfvm was loading the agent", pid));
}

// ---- the process's mappings ---------------------------------------------------------------------

// The /proc directory that shows the process's memory: /proc/PID, or a living thread's when the
// main thread has ended alone (its own entry then shows no mappings).
std::string proc_of(pid_t pid);

struct Mapping {
  uint64_t start = 0, end = 0, offset = 0;
  std::string perms, path;
  unsigned major = 0, minor = 0;
  uint64_t inode = 0;
};

std::vector<Mapping> read_maps(pid_t pid) {
  std::vector<Mapping> out;
  std::ifstream in(proc_of(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    Mapping m;
    char perms[8] = {}, path[4096] = {};
    unsigned long long s = 0, e = 0, off = 0, ino = 0;
    int n = std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %4095[^\n]", &s, &e, perms, &off, &m.major,
                        &m.minor, &ino, path);
    if (n < 7) continue;
    m.start = s;
    m.end = e;
    m.offset = off;
    m.inode = ino;
    m.perms = perms;
    std::string p = path;
    auto b = p.find_first_not_of(' ');
    m.path = b == std::string::npos ? "" : p.substr(b);
    out.push_back(std::move(m));
  }
  return out;
}

std::string base_name(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// The address in `pid` of the function `name` of the mapped file `path` (as the maps name it):
// its file offset, found in the file's symbol tables, mapped through the executable mapping that
// holds it.
Result<uint64_t> remote_function(pid_t pid, const std::vector<Mapping>& maps, const std::string& path,
                                 const std::string& name) {
  auto fn = find_elf_function(proc_of(pid) + "/root" + path, name);
  if (!fn) return fn.error();
  for (const Mapping& m : maps)
    if (m.path == path && m.perms.size() > 2 && m.perms[2] == 'x' && fn->file_offset >= m.offset &&
        fn->file_offset < m.offset + (m.end - m.start))
      return m.start + (fn->file_offset - m.offset);
  return make_error(ErrorCode::InvalidArgument,
                    fmt::format("{} of {} is not in an executable mapping of process {}", name, path, pid));
}

// The C library's file in the maps, and its dlopen: glibc 2.34 and later have dlopen in libc.so.6;
// before, libdl.so.2 (when the program loaded it) or the C library's private __libc_dlopen_mode.
struct Dlopen {
  std::string libc;  // the C library (mmap, munmap, mprotect, prctl, dlerror when it has one)
  std::string dl;    // the file holding dlopen/dlerror
  std::string func;  // dlopen or __libc_dlopen_mode
};

std::optional<Dlopen> find_dlopen(pid_t pid, const std::vector<Mapping>& maps) {
  std::string libc, libdl;
  for (const Mapping& m : maps) {
    std::string b = base_name(m.path);
    if (libc.empty() && (b.starts_with("libc.so") || b.starts_with("libc-2."))) libc = m.path;
    if (libdl.empty() && (b.starts_with("libdl.so") || b.starts_with("libdl-2."))) libdl = m.path;
  }
  if (libc.empty()) return std::nullopt;
  auto has = [&](const std::string& f, const char* n) {
    return find_elf_function(proc_of(pid) + "/root" + f, n).ok();
  };
  if (has(libc, "dlopen")) return Dlopen{libc, libc, "dlopen"};
  if (!libdl.empty() && has(libdl, "dlopen")) return Dlopen{libc, libdl, "dlopen"};
  if (has(libc, "__libc_dlopen_mode")) return Dlopen{libc, libc, "__libc_dlopen_mode"};
  return std::nullopt;
}

std::string proc_status_field(pid_t pid, pid_t tid, const char* field) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/status", pid, tid));
  std::string line, want = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.starts_with(want)) {
      auto v = line.substr(want.size());
      auto b = v.find_first_not_of(" \t");
      return b == std::string::npos ? "" : v.substr(b);
    }
  return "";
}

char proc_state(pid_t pid, pid_t tid) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/stat", pid, tid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto p = text.rfind(')');
  return p == std::string::npos || p + 2 >= text.size() ? '?' : text[p + 2];
}

std::vector<pid_t> threads(pid_t pid) {
  std::vector<pid_t> out;
  DIR* d = opendir(fmt::format("/proc/{}/task", pid).c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  closedir(d);
  // The main thread first.
  std::sort(out.begin(), out.end(), [pid](pid_t a, pid_t b) { return (a == pid) != (b == pid) ? a == pid : a < b; });
  return out;
}

// The thread to borrow: one blocked in a system call (it holds no lock of the C library mid-way,
// as far as a thread can tell), the main thread first; else the first living thread.
pid_t pick_thread(pid_t pid) {
  std::vector<pid_t> ts = threads(pid);
  pid_t any = 0;
  for (pid_t t : ts) {
    char st = proc_state(pid, t);
    if (st == 'Z' || st == 'X' || st == '?') continue;
    if (!any) any = t;
    std::ifstream in(fmt::format("/proc/{}/task/{}/syscall", pid, t));
    std::string first;
    in >> first;
    if (!first.empty() && first != "running" && first[0] != '-') return t;
  }
  return any;
}

std::string proc_of(pid_t pid) {
  char st = proc_state(pid, pid);
  if (st != 'Z' && st != 'X')
    return fmt::format("/proc/{}", pid);
  pid_t t = pick_thread(pid);
  return t ? fmt::format("/proc/{}/task/{}", pid, t) : fmt::format("/proc/{}", pid);
}

// ---- one borrowed thread ------------------------------------------------------------------------

constexpr uint64_t kScratch = 1 << 20;  // the calls' stack and strings (dlopen and the agent's start)

class RemoteThread {
 public:
  RemoteThread(pid_t pid, double timeout_s) : pid_(pid), timeout_(timeout_s) {}
  ~RemoteThread() { (void)restore(); }

  Status seize() {
    tid_ = pick_thread(pid_);
    if (!tid_) return ended(pid_);
    if (ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0) {
      int e = errno;
      if (e == ESRCH) return ended(pid_);
      return make_error(ErrorCode::Io, fmt::format("cannot trace process {} (ptrace: {}{})", pid_, std::strerror(e),
                                                   e == EPERM ? ptrace_permission_hint() : ""));
    }
    seized_ = true;
    if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0) return ended(pid_);
    // The interrupt's stop; a signal that comes first is delivered (the stop follows it).
    for (;;) {
      int st = 0;
      if (Status s = wait(&st); !s) return s;
      if ((st >> 16) == PTRACE_EVENT_STOP) break;
      ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(st))));
    }
    if (ptrace(PTRACE_GETREGS, tid_, nullptr, &regs_) != 0) return ended(pid_);
    xstate_.resize(16384);
    iovec iov{xstate_.data(), xstate_.size()};
    if (ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) == 0) {
      xstate_.resize(iov.iov_len);
    } else {
      xstate_.clear();
      user_fpregs_struct fp;
      if (ptrace(PTRACE_GETFPREGS, tid_, nullptr, &fp) != 0) return ended(pid_);
      fpregs_ = fp;
    }
    if (ptrace(PTRACE_GETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask_), &mask_) != 0) return ended(pid_);
    // Asynchronous signals wait until the thread is back; the synchronous ones stay deliverable
    // (blocking them would make the kernel reset their handlers when one is raised).
    uint64_t block = ~0ull;
    for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS}) block &= ~(1ull << (s - 1));
    if (ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof block), &block) != 0) return ended(pid_);
    saved_ = true;
    std::string mem = fmt::format("/proc/{}/task/{}/mem", pid_, tid_);
    mem_ = open(mem.c_str(), O_RDWR | O_CLOEXEC);
    if (mem_ < 0) {
      const int e = errno;
      const char st = proc_state(pid_, tid_);
      if (st == 'Z' || st == 'X' || st == '?') return ended(pid_);
      return make_error(ErrorCode::Io, fmt::format("cannot open {}: {}", mem, std::strerror(e)));
    }
    return {};
  }

  pid_t tid() const { return tid_; }

  // Calls fn(args...) on the borrowed thread; rax when it returns.
  Result<uint64_t> call(uint64_t fn, std::initializer_list<uint64_t> args) {
    if (running_) return make_error(ErrorCode::Io, fmt::format("thread {} of process {} is still in a call", tid_, pid_));
    user_regs_struct r = regs_;
    uint64_t sp = stack_top_ ? stack_top_ : regs_.rsp - 256;  // below the red zone
    sp &= ~uint64_t{15};
    sp -= 8;  // the return address: at the function's entry, sp + 8 is 16-byte aligned
    uint64_t zero = 0;
    if (Status s = write(sp, &zero, sizeof zero); !s) return s.error();
    const uint64_t* a = args.begin();
    unsigned long long* slots[] = {&r.rdi, &r.rsi, &r.rdx, &r.rcx, &r.r8, &r.r9};
    for (size_t i = 0; i < args.size() && i < 6; ++i) *slots[i] = a[i];
    r.rip = fn;
    r.rsp = sp;
    r.rax = 0;
    r.orig_rax = ~0ull;   // no system call to restart into the function
    r.eflags &= ~0x400ull;  // the ABI's clear direction flag
    if (ptrace(PTRACE_SETREGS, tid_, nullptr, &r) != 0) return ended(pid_);
    int sig = 0;
    for (;;) {
      if (ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) return ended(pid_);
      running_ = true;
      sig = 0;
      int st = 0;
      if (Status s = wait(&st); !s) return s.error();
      running_ = false;
      if ((st >> 16) == PTRACE_EVENT_STOP) continue;  // a group stop: the call goes on
      int got = WSTOPSIG(st);
      if (got == SIGSEGV) {
        user_regs_struct now;
        if (ptrace(PTRACE_GETREGS, tid_, nullptr, &now) != 0) return ended(pid_);
        if (now.rip == 0) return static_cast<uint64_t>(now.rax);
      }
      sig = got;  // the process's own (a breakpoint of the agent, a crash): delivered
    }
  }

  Status write(uint64_t addr, const void* data, size_t n) {
    errno = 0;
    if (pwrite(mem_, data, n, static_cast<off_t>(addr)) != static_cast<ssize_t>(n)) {
      const int e = errno;
      const char st = proc_state(pid_, tid_);
      if (st == 'Z' || st == 'X' || st == '?') return ended(pid_);  // killed meanwhile: its memory is gone
      return make_error(ErrorCode::Io, fmt::format("cannot write the memory of process {} at {:#x}: {}", pid_, addr,
                                                   e ? std::strerror(e) : "short write"));
    }
    return {};
  }

  std::string read_string(uint64_t addr, size_t max = 1024) {
    std::string s(max, '\0');
    ssize_t n = pread(mem_, s.data(), max, static_cast<off_t>(addr));
    if (n <= 0) return "";
    s.resize(strnlen(s.data(), static_cast<size_t>(n)));
    return s;
  }

  void use_stack(uint64_t top) { stack_top_ = top; }

  // The thread as it was, then detached.
  Status restore() {
    if (!seized_) return {};
    seized_ = false;
    if (mem_ >= 0) close(mem_);
    mem_ = -1;
    bool ok = true;
    if (running_) {
      // A call that did not return in time (it waits, say, for a lock the thread itself held when it
      // was borrowed): it is abandoned, and the thread goes back to where it was, lock and all.
      int st = 0;
      const double t = timeout_;
      timeout_ = 2;
      ok = ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) == 0 && wait(&st).ok();
      timeout_ = t;
      if (!ok) return ended(pid_);
      running_ = false;
    }
    if (saved_) {
      ok &= ptrace(PTRACE_SETREGS, tid_, nullptr, &regs_) == 0;
      if (!xstate_.empty()) {
        iovec iov{xstate_.data(), xstate_.size()};
        ok &= ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) == 0;
      } else if (fpregs_) {
        ok &= ptrace(PTRACE_SETFPREGS, tid_, nullptr, &*fpregs_) == 0;
      }
      ok &= ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask_), &mask_) == 0;
    }
    ok &= ptrace(PTRACE_DETACH, tid_, nullptr, nullptr) == 0;
    if (!ok && kill(pid_, 0) != 0) return ended(pid_);
    if (!ok) return make_error(ErrorCode::Io, fmt::format("cannot put thread {} of process {} back: {}", tid_, pid_,
                                                          std::strerror(errno)));
    return {};
  }

 private:
  static std::string ptrace_permission_hint() {
    std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
    int scope = -1;
    if (in >> scope && scope >= 1)
      return fmt::format("; kernel.yama.ptrace_scope is {}: {}", scope,
                         scope >= 3 ? "no process may be traced" : "tracing another process needs CAP_SYS_PTRACE");
    return "";
  }

  // The next stop of the thread, within the timeout; an error when it ended.
  Status wait(int* st) {
    const double deadline = now_s() + timeout_;
    for (int spin = 0;; ++spin) {
      pid_t w = waitpid(tid_, st, __WALL | WNOHANG);
      if (w == tid_) {
        if (WIFSTOPPED(*st)) return {};
        seized_ = false;  // it ended: nothing to put back
        return ended(pid_);
      }
      if (w < 0) {
        seized_ = false;
        return ended(pid_);
      }
      if (now_s() > deadline) {
        return make_error(ErrorCode::Io, fmt::format("thread {} of process {} did not stop or return within {} s "
                                                     "(state {})", tid_, pid_, timeout_, proc_state(pid_, tid_)));
      }
      timespec ts{0, spin < 100 ? 50'000 : 1'000'000};
      nanosleep(&ts, nullptr);
    }
  }

  pid_t pid_, tid_ = 0;
  double timeout_;
  bool seized_ = false, saved_ = false, running_ = false;
  user_regs_struct regs_{};
  std::vector<uint8_t> xstate_;
  std::optional<user_fpregs_struct> fpregs_;
  uint64_t mask_ = 0;
  uint64_t stack_top_ = 0;
  int mem_ = -1;
};

bool is_error_ptr(uint64_t v) { return v == ~0ull || v == 0; }

// A scratch area in the process (mmap through its C library), unmapped when done.
class Scratch {
 public:
  Scratch(RemoteThread& t, uint64_t munmap_fn) : t_(t), munmap_(munmap_fn) {}
  ~Scratch() {
    if (!addr_) return;
    t_.use_stack(0);  // munmap runs on the thread's own stack, below its red zone
    (void)t_.call(munmap_, {addr_, kScratch});
  }
  Status map(uint64_t mmap_fn) {
    auto a = t_.call(mmap_fn, {0, kScratch, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                               ~0ull, 0});
    if (!a) return a.error();
    if (is_error_ptr(*a)) return make_error(ErrorCode::Io, "mmap in the process failed");
    addr_ = *a;
    t_.use_stack(addr_ + kScratch);
    return {};
  }
  // Puts a string at the start of the area (below the stack); its address.
  Result<uint64_t> put(const std::string& s) {
    if (used_ + s.size() + 1 > 64 * 1024) return make_error(ErrorCode::InvalidArgument, "strings too long");
    uint64_t at = addr_ + used_;
    if (Status st = t_.write(at, s.c_str(), s.size() + 1); !st) return st.error();
    used_ += (s.size() + 16) & ~size_t{15};
    return at;
  }

 private:
  RemoteThread& t_;
  uint64_t munmap_;
  uint64_t addr_ = 0;
  size_t used_ = 0;
};

// The agent library's mapping in the process (by file identity), "" when it is not loaded.
std::string loaded_agent(const std::vector<Mapping>& maps, const std::string& lib) {
  struct stat st;
  if (stat(lib.c_str(), &st) != 0) return "";
  for (const Mapping& m : maps)
    if (m.inode == st.st_ino && makedev(m.major, m.minor) == st.st_dev) return m.path;
  return "";
}

}  // namespace

std::vector<std::string> process_files(pid_t pid) {
  std::vector<std::string> out;
  for (const Mapping& m : read_maps(pid))
    if (!m.path.empty() && m.path[0] == '/' && std::find(out.begin(), out.end(), m.path) == out.end())
      out.push_back(m.path);
  return out;
}

Status agent_injectable(pid_t pid) {
  if (pid <= 0) return make_error(ErrorCode::Io, fmt::format("no process {}", pid));
  if (pid == getpid()) return make_error(ErrorCode::Io, "bpfvm cannot trace itself");
  struct stat st;
  if (stat(fmt::format("/proc/{}", pid).c_str(), &st) != 0)
    return make_error(ErrorCode::Io, fmt::format("no process {}", pid));
  char state = proc_state(pid, pid);
  if ((state == 'Z' || state == 'X') && !pick_thread(pid))  // a leader that exited alone leaves the others
    return make_error(ErrorCode::Io, fmt::format("process {} has ended", pid));
  if (state == 'T' || state == 't')
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("process {} is stopped (or traced by another program): continue it first", pid));
  std::vector<Mapping> maps = read_maps(pid);
  if (maps.empty()) return make_error(ErrorCode::Io, fmt::format("cannot read the mappings of process {}", pid));
  if (!find_dlopen(pid, maps)) {
    char exe[4096];
    ssize_t n = readlink(fmt::format("/proc/{}/exe", pid).c_str(), exe, sizeof exe - 1);
    std::string file = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "its program";
    std::string why = interp_check(fmt::format("/proc/{}/exe", pid));
    if (!why.empty())
      return make_error(ErrorCode::InvalidArgument, fmt::format("the agent cannot be loaded into process {}: {} is "
                                                                "statically linked: it has no dlopen to load it with",
                                                                pid, file));
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("the agent cannot be loaded into process {} ({}): no C library with dlopen is "
                                  "loaded there", pid, file));
  }
  // A call made by ptrace returns through an address the shadow stack does not hold.
  for (pid_t t : threads(pid))
    if (proc_status_field(pid, t, "x86_Thread_features").find("shstk") != std::string::npos)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("the agent cannot be loaded into process {}: thread {} uses a shadow stack (CET)",
                                    pid, t));
  return {};
}

Result<InjectOutcome> inject_agent(pid_t pid, const std::string& lib, const std::string& spec_path,
                                   double timeout_s) {
  if (Status s = agent_injectable(pid); !s) return s.error();
  std::vector<Mapping> maps = read_maps(pid);
  auto dl = find_dlopen(pid, maps);
  if (!dl) return make_error(ErrorCode::InvalidArgument, fmt::format("no dlopen in process {}", pid));
  auto fn = [&](const std::string& file, const char* name) { return remote_function(pid, maps, file, name); };
  auto mmap_fn = fn(dl->libc, "mmap"), munmap_fn = fn(dl->libc, "munmap"), mprotect_fn = fn(dl->libc, "mprotect"),
       prctl_fn = fn(dl->libc, "prctl"), dlopen_fn = fn(dl->dl, dl->func.c_str());
  for (const auto* r : {&mmap_fn, &munmap_fn, &mprotect_fn, &prctl_fn, &dlopen_fn})
    if (!*r) return make_error(ErrorCode::InvalidArgument, fmt::format("process {}: {}", pid, r->error().message));
  auto dlerror_fn = fn(dl->dl, "dlerror");

  RemoteThread t(pid, timeout_s);
  if (Status s = t.seize(); !s) return s.error();
  InjectOutcome out;
  {
    Scratch scratch(t, *munmap_fn);
    if (Status s = scratch.map(*mmap_fn); !s) return s.error();
    // The agent writes code: refused by PR_SET_MDWE, and by seccomp filters such as systemd's
    // MemoryDenyWriteExecute. Asked the process itself: a page made writable, then executable.
#ifndef PR_GET_MDWE
#define PR_GET_MDWE 66
#endif
    auto mdwe = t.call(*prctl_fn, {PR_GET_MDWE, 0, 0, 0, 0});
    if (!mdwe) return mdwe.error();
    if (static_cast<int64_t>(*mdwe) > 0 && (*mdwe & 1))
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("the agent cannot be loaded into process {}: it forbids writable+executable "
                                    "memory (PR_SET_MDWE), and the agent creates code", pid));
    auto page = t.call(*mmap_fn, {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, ~0ull, 0});
    if (!page) return page.error();
    if (is_error_ptr(*page)) return make_error(ErrorCode::Io, fmt::format("mmap in process {} failed", pid));
    auto prot = t.call(*mprotect_fn, {*page, 4096, PROT_READ | PROT_EXEC});
    (void)t.call(*munmap_fn, {*page, 4096});
    if (!prot) return prot.error();
    if (static_cast<int32_t>(*prot) != 0)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("the agent cannot be loaded into process {}: it may not make written memory "
                                    "executable (MemoryDenyWriteExecute or a seccomp filter), and the agent creates "
                                    "code", pid));

    std::string in_proc = loaded_agent(maps, lib);
    if (in_proc.empty()) {
      auto path = scratch.put(lib);
      if (!path) return path.error();
      auto h = t.call(*dlopen_fn, {*path, RTLD_NOW | RTLD_LOCAL});
      if (!h) return h.error();
      if (*h == 0) {
        std::string why = "unknown reason";
        if (dlerror_fn)
          if (auto e = t.call(*dlerror_fn, {}); e && *e) why = t.read_string(*e);
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("the agent cannot be loaded into process {}: dlopen: {}", pid, why));
      }
      out.loaded_now = true;
      maps = read_maps(pid);
      in_proc = loaded_agent(maps, lib);
      if (in_proc.empty())
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("process {}: dlopen of {} succeeded but the library is not mapped", pid, lib));
    }
    auto start = remote_function(pid, maps, in_proc, "bpfvm_agent_start");
    if (!start) return make_error(ErrorCode::InvalidArgument, fmt::format("process {}: {}", pid, start.error().message));
    auto spec = scratch.put(spec_path);
    if (!spec) return spec.error();
    auto r = t.call(*start, {*spec});
    if (!r) return r.error();
    out.start_result = static_cast<int32_t>(*r);
  }
  if (Status s = t.restore(); !s) return s.error();
  return out;
}

Result<int> stop_agent(pid_t pid, const std::string& lib_file, double timeout_s) {
  const double deadline = now_s() + timeout_s;
  for (;;) {
    if (kill(pid, 0) != 0) return ended(pid);
    std::vector<Mapping> maps = read_maps(pid);
    auto dl = find_dlopen(pid, maps);
    std::string lib = loaded_agent(maps, lib_file);
    if (!dl || lib.empty()) return 0;
    auto stop = remote_function(pid, maps, lib, "bpfvm_agent_stop");
    auto mmap_fn = remote_function(pid, maps, dl->libc, "mmap");
    auto munmap_fn = remote_function(pid, maps, dl->libc, "munmap");
    for (const auto* r : {&stop, &mmap_fn, &munmap_fn})
      if (!*r) return make_error(ErrorCode::InvalidArgument, fmt::format("process {}: {}", pid, r->error().message));
    int result = 0;
    {
      RemoteThread t(pid, timeout_s);
      if (Status s = t.seize(); !s) return s.error();
      {
        Scratch scratch(t, *munmap_fn);
        if (Status s = scratch.map(*mmap_fn); !s) return s.error();
        auto r = t.call(*stop, {});
        if (!r) return r.error();
        result = static_cast<int32_t>(*r);
      }
      if (Status s = t.restore(); !s) return s.error();
    }
    if (result != -2) return result;
    if (now_s() > deadline)
      return make_error(ErrorCode::Io, fmt::format("the agent in process {} could not stop within {} s", pid, timeout_s));
    timespec ts{0, 20'000'000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace bpfvm::cli
