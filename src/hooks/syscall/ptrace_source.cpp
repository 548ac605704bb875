// The ptrace event source: a command and everything it starts (or a running process), stopped at
// the system calls that have programs, reported to SyscallHooks.
//
// Stops. With a seccomp filter (the command, no duration): the filter returns SECCOMP_RET_TRACE for
// the syscalls with programs and lets every other run without a stop; the tracer sees a
// PTRACE_EVENT_SECCOMP stop at their entry and asks for the exit stop (PTRACE_SYSCALL) only when
// exit programs or an override need it. Without a filter (-p, --duration, every syscall traced):
// PTRACE_SYSCALL, an entry and an exit stop per syscall, told apart by PTRACE_GET_SYSCALL_INFO.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <utility>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "bpfvm/trace.hpp"

namespace bpfvm {

namespace {

constexpr uint64_t kX32Bit = 0x40000000;

// ---- a traced thread --------------------------------------------------------------------------------

class Tracee final : public TracedTask {
 public:
  explicit Tracee(pid_t tid) : tid_(tid) {}
  uint32_t tid() const override { return static_cast<uint32_t>(tid_); }
  uint32_t tgid() const override {
    if (!tgid_) tgid_ = static_cast<pid_t>(status_field("Tgid:", 0));
    return static_cast<uint32_t>(tgid_ ? tgid_ : tid_);
  }
  uint64_t uid_gid() override {
    // Real uid and gid (the kernel's current_uid/current_gid), read at each event: set*id may change them.
    uint64_t uid = status_field("Uid:", 0), gid = status_field("Gid:", 0);
    return (gid << 32) | (uid & 0xffffffffu);
  }
  void comm(char out[16]) override {
    std::memset(out, 0, 16);
    std::string path = fmt::format("/proc/{}/task/{}/comm", tgid(), tid_);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, out, 16);
    close(fd);
    if (n <= 0) return;
    for (ssize_t i = 0; i < n && i < 16; ++i)
      if (out[i] == '\n') out[i] = 0;
    out[15] = 0;
  }
  long read_user(void* dst, uint64_t addr, size_t len) override {
    if (len == 0) return 0;
    struct iovec local{dst, len};
    struct iovec remote{reinterpret_cast<void*>(addr), len};
    ssize_t n = process_vm_readv(tid_, &local, 1, &remote, 1, 0);
    return n == static_cast<ssize_t>(len) ? 0 : -14;
  }
  long read_user_str(char* dst, uint64_t addr, size_t size) override {
    if (size == 0) return 0;
    size_t done = 0;
    while (done < size) {
      // Up to the end of the page: a string ending just before unmapped memory still reads.
      uint64_t cur = addr + done;
      size_t chunk = 4096 - (cur & 4095);
      if (chunk > size - done) chunk = size - done;
      // Through a page buffer: like the kernel's strncpy_from_user, nothing after the NUL is written.
      char page[4096];
      if (read_user(page, cur, chunk) != 0) return -14;
      if (void* nul = std::memchr(page, 0, chunk)) {
        size_t n = static_cast<size_t>(static_cast<char*>(nul) - page) + 1;
        std::memcpy(dst + done, page, n);
        return static_cast<long>(done + n);
      }
      std::memcpy(dst + done, page, chunk);
      done += chunk;
    }
    dst[size - 1] = 0;
    return static_cast<long>(size);
  }
  long send_signal(int sig, bool thread_only) override {
    long r = thread_only ? syscall(SYS_tgkill, tgid(), tid_, sig) : kill(static_cast<pid_t>(tgid()), sig);
    return r == 0 ? 0 : -errno;
  }

  void set_tid(pid_t tid) { tid_ = tid; }

  // A task the command made (clone, fork, vfork) whose first stop has not been seen yet.
  bool new_task = true;
  // Syscall state.
  bool in_syscall = false;         // between entry and exit
  int64_t entered_nr = -1;         // the number it entered with
  bool want_exit = false;          // stop at the exit (filter mode)
  std::optional<int64_t> overridden;

 private:
  uint64_t status_field(const char* key, int index) const {
    std::ifstream in(fmt::format("/proc/{}/status", tid_));
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(key, 0) != 0) continue;
      std::istringstream ss(line.substr(std::strlen(key)));
      uint64_t v = 0;
      for (int i = 0; i <= index; ++i) ss >> v;
      return v;
    }
    return 0;
  }
  pid_t tid_;
  mutable pid_t tgid_ = 0;
};

// ---- the seccomp filter ------------------------------------------------------------------------------

// SECCOMP_RET_TRACE for the listed syscalls, for other architectures' calls (i386, x32: reported and
// not traced) and ALLOW for the rest. nullopt when the list is too long for classic BPF's 8-bit jumps.
std::optional<std::vector<sock_filter>> seccomp_program(const std::vector<int32_t>& nrs) {
  if (nrs.size() > 250) return std::nullopt;
  std::vector<sock_filter> f;
  auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(sock_filter{code, 0, 0, k}); };
  auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(sock_filter{code, jt, jf, k}); };
  const auto n = static_cast<uint8_t>(nrs.size());
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
  stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, static_cast<uint8_t>(n + 1), 0);
  for (size_t i = 0; i < nrs.size(); ++i)
    jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nrs[i]), static_cast<uint8_t>(n - i), 0);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  stmt(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
  return f;
}

// ---- the tracer ---------------------------------------------------------------------------------------

struct StartReport {  // written by the child through a close-on-exec pipe
  int stage;          // 1: the seccomp filter could not be installed; 2: exec failed
  int err;
};

// The file execvp would run for `cmd` ("" when none is found).
std::string resolve_command(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return cmd;
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    std::string full = (dir.empty() ? "." : dir) + "/" + cmd;
    if (access(full.c_str(), X_OK) == 0) return full;
    start = end + 1;
  }
  return "";
}

class Tracer {
 public:
  Tracer(SyscallHooks& hooks, const PtraceOptions& o) : hooks_(hooks), o_(o) {}
  Result<PtraceResult> run();

 private:
  void note(const std::string& m) {
    if (o_.note) o_.note(m);
  }
  Result<pid_t> start_command();
  Status attach_process();
  void handle(pid_t tid, int status);
  void syscall_stop(Tracee& t, bool seccomp_stop);
  void restart(Tracee& t, int sig);
  void new_task_exit(Tracee& t);
  Tracee& task(pid_t tid) {
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) it = tasks_.emplace(tid, std::make_unique<Tracee>(tid)).first;
    return *it->second;
  }
  void detach_all();
  void read_start_reports();

  SyscallHooks& hooks_;
  const PtraceOptions& o_;
  PtraceResult res_;
  std::unordered_map<pid_t, std::unique_ptr<Tracee>> tasks_;
  pid_t leader_ = 0;        // the command's first process (its exit status is ours)
  bool started_ = false;    // events flow (after the command's exec; at once with -p)
  bool filtered_ = false;   // the seccomp filter is (to be) installed
  int report_fd_ = -1;      // read end of the child's start-report pipe
  std::set<pid_t> warned_arch_;
};

Result<pid_t> Tracer::start_command() {
  std::vector<char*> argv;
  for (const auto& a : o_.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<sock_filter> filter;
  if (filtered_) {
    auto f = seccomp_program(hooks_.traced_syscalls());
    if (f) filter = std::move(*f);
    else filtered_ = false;
  }
  struct sock_fprog fprog{static_cast<unsigned short>(filter.size()), filter.data()};
  const bool need_nnp = geteuid() != 0;

  int sync[2], report[2];
  if (pipe2(sync, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0)
    return make_error(ErrorCode::Io, fmt::format("pipe: {}", std::strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return make_error(ErrorCode::Io, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    // The child: wait until the tracer holds it, install the filter, run the command.
    close(sync[1]);
    close(report[0]);
    char c;
    while (read(sync[0], &c, 1) < 0 && errno == EINTR) {
    }
    close(sync[0]);
    if (!filter.empty()) {
      bool ok = (!need_nnp || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) &&
                syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) == 0;
      if (!ok) {
        StartReport r{1, errno};
        (void)!write(report[1], &r, sizeof r);
      }
    }
    execvp(argv[0], argv.data());
    StartReport r{2, errno};
    (void)!write(report[1], &r, sizeof r);
    _exit(127);
  }
  close(sync[0]);
  close(report[1]);
  report_fd_ = report[0];
  long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
              PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL;
  if (ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(opts)) != 0) {
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(sync[1]);
    return make_error(ErrorCode::Io, fmt::format("cannot trace the command (ptrace: {})", std::strerror(e)));
  }
  task(pid).new_task = false;
  (void)!write(sync[1], "x", 1);
  close(sync[1]);
  return pid;
}

// Every thread of the process, seized and interrupted (re-listed until no new thread appears).
Status Tracer::attach_process() {
  long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
              PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP;
  bool added = true;
  while (added) {
    added = false;
    std::string dir = fmt::format("/proc/{}/task", o_.pid);
    DIR* d = opendir(dir.c_str());
    if (!d) return make_error(ErrorCode::InvalidArgument, fmt::format("no process {}", o_.pid));
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
      if (tasks_.count(tid)) continue;
      if (ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(opts)) != 0) {
        if (errno == ESRCH) continue;
        int err = errno;
        closedir(d);
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("cannot attach to process {} (thread {}): {}", o_.pid, tid, std::strerror(err)));
      }
      ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
      task(tid).new_task = false;
      added = true;
    }
    closedir(d);
  }
  if (tasks_.empty()) return make_error(ErrorCode::InvalidArgument, fmt::format("no process {}", o_.pid));
  return Status{};
}

void Tracer::read_start_reports() {
  if (report_fd_ < 0) return;
  StartReport r;
  int fl = fcntl(report_fd_, F_GETFL);
  fcntl(report_fd_, F_SETFL, fl | O_NONBLOCK);
  while (read(report_fd_, &r, sizeof r) == static_cast<ssize_t>(sizeof r)) {
    if (r.stage == 1) {
      filtered_ = false;
      note(fmt::format("the seccomp filter could not be installed ({}): every system call stops",
                       std::strerror(r.err)));
    } else if (r.stage == 2) {
      res_.start_error = fmt::format("cannot run {}: {}", o_.argv[0], std::strerror(r.err));
    }
  }
  fcntl(report_fd_, F_SETFL, fl);
}

void Tracer::restart(Tracee& t, int sig) {
  auto req = filtered_ && !t.want_exit ? PTRACE_CONT : PTRACE_SYSCALL;
  ptrace(req, t.tid(), nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
}

void Tracer::syscall_stop(Tracee& t, bool seccomp_stop) {
  pid_t tid = static_cast<pid_t>(t.tid());
  struct __ptrace_syscall_info info;
  std::memset(&info, 0, sizeof info);
  long n = ptrace(PTRACE_GET_SYSCALL_INFO, tid, reinterpret_cast<void*>(sizeof info), &info);
  bool entry;
  if (n <= 0) {
    entry = seccomp_stop || !t.in_syscall;
  } else {
    if (info.op == PTRACE_SYSCALL_INFO_NONE) return restart(t, 0);
    entry = info.op == PTRACE_SYSCALL_INFO_ENTRY || info.op == PTRACE_SYSCALL_INFO_SECCOMP;
  }
  // Without a filter every syscall stops twice (and a tracee's own RET_TRACE filter adds a seccomp
  // stop after the entry stop): the entry stop is the one that counts.
  if (seccomp_stop && !filtered_) return restart(t, 0);
  ++res_.stops;
  // The registers: from the syscall info when the programs need only the number, the arguments and
  // the result (tracepoint records); all of them (PTRACE_GETREGS) for pt_regs contexts and overrides.
  struct user_regs_struct ur;
  bool have_ur = false;
  auto get_regs = [&] {
    if (!have_ur) have_ur = ptrace(PTRACE_GETREGS, tid, nullptr, &ur) == 0;
    return have_ur;
  };
  SyscallRegs regs;
  auto regs_from_ur = [&] { std::memcpy(regs.words, &ur, sizeof regs.words); };
  if (entry) {
    int64_t nr;
    if (n > 0) {
      nr = static_cast<int64_t>(info.entry.nr);
    } else {
      if (!get_regs()) return;  // gone (killed meanwhile)
      nr = static_cast<int64_t>(ur.orig_rax);
    }
    t.in_syscall = true;
    t.entered_nr = nr;
    t.overridden.reset();
    bool other_arch = n > 0 && info.arch != AUDIT_ARCH_X86_64;
    if (other_arch || (static_cast<uint64_t>(nr) & kX32Bit)) {
      if (warned_arch_.insert(static_cast<pid_t>(t.tgid())).second)
        note(fmt::format("process {} makes {} system calls; they are not traced (bpfvm's table is x86-64's)",
                         t.tgid(), other_arch ? "32-bit (i386)" : "x32"));
      t.want_exit = false;
      t.entered_nr = -1;  // its exit (without the filter it stops too) runs no program either
      return restart(t, 0);
    }
    std::optional<int64_t> ov;
    bool run = started_ && hooks_.wants_enter(nr);
    if (run) {
      if (n <= 0 || hooks_.needs_regs(nr, false)) {
        if (!get_regs()) return;
        regs_from_ur();
      } else {
        for (int i = 0; i < 6; ++i) regs.set_arg(i, info.entry.args[i]);
        regs.words[15] = static_cast<uint64_t>(nr);
        regs.words[10] = static_cast<uint64_t>(-38);  // ax at entry: -ENOSYS
        regs.words[16] = info.instruction_pointer;
        regs.words[19] = info.stack_pointer;
      }
      ov = hooks_.enter(t, regs);
    }
    if (ov && get_regs()) {
      // Skip the syscall; it returns the program's value.
      ur.orig_rax = static_cast<unsigned long long>(-1);
      ur.rax = static_cast<unsigned long long>(*ov);
      ptrace(PTRACE_SETREGS, tid, nullptr, &ur);
      t.overridden = ov;
    }
    t.want_exit = ov.has_value() || hooks_.wants_exit(nr);
    if (run) hooks_.drain();
    return restart(t, 0);
  }
  // Exit.
  int64_t nr;
  if (t.in_syscall) {
    nr = t.entered_nr;
  } else {
    if (!get_regs()) return;
    nr = static_cast<int64_t>(ur.orig_rax);
  }
  t.in_syscall = false;
  int64_t ret = n > 0 ? static_cast<int64_t>(info.exit.rval) : 0;
  if (n <= 0 && get_regs()) ret = static_cast<int64_t>(ur.rax);
  if (t.overridden && ret != *t.overridden && get_regs()) {
    ur.rax = static_cast<unsigned long long>(*t.overridden);
    ptrace(PTRACE_SETREGS, tid, nullptr, &ur);
    ret = *t.overridden;
  }
  t.overridden.reset();
  t.want_exit = false;
  if (started_ && nr >= 0 && hooks_.wants_exit(nr)) {
    if (hooks_.needs_regs(nr, true)) {
      if (!get_regs()) return;
      regs_from_ur();
    }
    regs.words[15] = static_cast<uint64_t>(nr);
    regs.words[10] = static_cast<uint64_t>(ret);
    hooks_.exit(t, nr, regs);
    hooks_.drain();
  }
  restart(t, 0);
}

// A new thread or child returns from its clone, clone3, fork or vfork with 0, and the kernel's
// sys_exit fires there too: at its first stop (before it runs), its registers hold that syscall's
// number and result.
void Tracer::new_task_exit(Tracee& t) {
  if (!started_) return;
  struct user_regs_struct ur;
  if (ptrace(PTRACE_GETREGS, static_cast<pid_t>(t.tid()), nullptr, &ur) != 0) return;
  const auto nr = static_cast<int64_t>(ur.orig_rax);
  if ((nr != SYS_clone && nr != SYS_clone3 && nr != SYS_fork && nr != SYS_vfork) || ur.rax != 0) return;
  if (!hooks_.wants_exit(nr)) return;
  SyscallRegs regs;
  std::memcpy(regs.words, &ur, sizeof regs.words);
  hooks_.exit(t, nr, regs);
  hooks_.drain();
}

void Tracer::handle(pid_t tid, int status) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    if (tid == leader_) {
      res_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (!started_) read_start_reports();
    }
    tasks_.erase(tid);
    return;
  }
  if (!WIFSTOPPED(status)) return;
  Tracee& t = task(tid);
  const bool first_stop = std::exchange(t.new_task, false);
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  if (sig == (SIGTRAP | 0x80)) return syscall_stop(t, false);
  switch (event) {
    case 0:
      // Signal-delivery-stop: the signal goes to the tracee as it would without bpfvm.
      return restart(t, sig);
    case PTRACE_EVENT_SECCOMP: return syscall_stop(t, true);
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK:
    case PTRACE_EVENT_CLONE: {
      unsigned long child = 0;
      ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child);
      if (child) task(static_cast<pid_t>(child));  // its first stop may come before or after this one
      return restart(t, 0);
    }
    case PTRACE_EVENT_EXEC: {
      unsigned long former = 0;
      ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &former);
      if (former && static_cast<pid_t>(former) != tid) {
        // A thread other than the leader exec'd: it now has the leader's id.
        auto it = tasks_.find(static_cast<pid_t>(former));
        if (it != tasks_.end()) {
          auto moved = std::move(it->second);
          tasks_.erase(it);
          moved->set_tid(tid);
          tasks_[tid] = std::move(moved);
        }
      }
      if (!started_) {
        read_start_reports();
        started_ = true;
        res_.started = true;
      }
      return restart(*tasks_[tid], 0);
    }
    case PTRACE_EVENT_STOP:
      if (first_stop && sig == SIGTRAP) new_task_exit(t);
      // A new tracee's first stop, an interrupt, or a group-stop (SIGSTOP, SIGTSTP, ...), which
      // must stay stopped until SIGCONT: PTRACE_LISTEN keeps it so while watching for events.
      if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
        ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
        return;
      }
      return restart(t, 0);
    default: return restart(t, 0);
  }
}

void Tracer::detach_all() {
  // Stop every running tracee, then detach each at its stop (passing on a pending signal).
  for (auto& [tid, t] : tasks_) ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
  while (!tasks_.empty()) {
    int status = 0;
    pid_t tid = waitpid(-1, &status, __WALL);
    if (tid < 0) break;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (tid == leader_) res_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      tasks_.erase(tid);
      continue;
    }
    int sig = 0;
    if (WIFSTOPPED(status) && (status >> 16) == 0 && WSTOPSIG(status) != (SIGTRAP | 0x80)) sig = WSTOPSIG(status);
    Tracee& t = task(tid);
    if (t.overridden && WIFSTOPPED(status) && WSTOPSIG(status) == (SIGTRAP | 0x80)) {
      // Detaching between an overridden entry and its exit: the syscall still returns the value.
      struct user_regs_struct ur;
      if (ptrace(PTRACE_GETREGS, tid, nullptr, &ur) == 0) {
        ur.rax = static_cast<unsigned long long>(*t.overridden);
        ptrace(PTRACE_SETREGS, tid, nullptr, &ur);
      }
    }
    ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
    tasks_.erase(tid);
  }
  res_.detached = true;
}

Result<PtraceResult> Tracer::run() {
  const bool command = o_.pid == 0;
  if (command && o_.argv.empty()) return make_error(ErrorCode::InvalidArgument, "no command to run");
  bool every = hooks_.all_enter() || hooks_.all_exit();
  filtered_ = command && o_.seccomp && o_.duration <= 0 && !every;
  if (!command) note("attached to a running process: no seccomp filter can be installed (it could never be "
                     "removed), so every system call of the process stops");
  else if (o_.seccomp && o_.duration > 0 && !every)
    note("--duration: no seccomp filter (once bpfvm detaches, filtered system calls would fail with ENOSYS), so "
         "every system call stops");

  if (command && geteuid() != 0) {
    // As under strace: a traced exec does not take the file's set-user-ID / set-group-ID identity.
    struct stat st;
    std::string file = resolve_command(o_.argv[0]);
    if (!file.empty() && stat(file.c_str(), &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)))
      note(fmt::format("{} is set-{}-ID: traced, it runs without that identity (run bpfvm as root to keep it)",
                       o_.argv[0], (st.st_mode & S_ISUID) ? "user" : "group"));
  }

  sigset_t block, old;
  sigemptyset(&block);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&block, s);
  if (command) {
    auto pid = start_command();
    if (!pid) return pid.error();
    leader_ = *pid;
    res_.filtered = filtered_;
  } else {
    if (auto st = attach_process(); !st) return st.error();
    started_ = true;
    res_.started = true;
  }
  sigprocmask(SIG_BLOCK, &block, &old);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  auto elapsed = [&] {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return static_cast<double>(t1.tv_sec - t0.tv_sec) + static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e9;
  };
  bool stop = false;
  while (!tasks_.empty() && !stop) {
    int status = 0;
    pid_t tid = waitpid(-1, &status, __WALL | WNOHANG);
    if (tid > 0) {
      handle(tid, status);
      continue;
    }
    if (tid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: nothing left
    }
    // Nothing to handle now: wait for a tracee, a signal to bpfvm or the end of the duration.
    struct timespec timeout{1, 0};
    if (o_.duration > 0) {
      double left = o_.duration - elapsed();
      if (left <= 0) {
        stop = true;
        break;
      }
      if (left < 1) timeout = {0, static_cast<long>(left * 1e9)};
    }
    siginfo_t si;
    int s = sigtimedwait(&block, &si, &timeout);
    if (s == SIGINT || s == SIGQUIT) {
      // The terminal sends these to the command's process group too: it decides. With -p, bpfvm stops.
      if (!command) stop = true;
    } else if (s == SIGTERM || s == SIGHUP) {
      if (command) kill(leader_, s);
      else stop = true;
    }
  }
  if (stop && !tasks_.empty()) detach_all();
  if (command && !res_.started && res_.start_error.empty()) read_start_reports();
  if (command && !res_.started) res_.exit_code = 127;
  if (res_.detached) res_.exit_code = 0;
  if (report_fd_ >= 0) close(report_fd_);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return res_;
}

}  // namespace

Result<PtraceResult> run_ptrace(SyscallHooks& hooks, const PtraceOptions& options) {
  Tracer t(hooks, options);
  return t.run();
}

}  // namespace bpfvm
