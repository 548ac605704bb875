// bpfvm trace --mode agent (trace_agent.hpp).
#include "trace_agent.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "bpfvm/map.hpp"
#include "bpfvm/probe_target.hpp"
#include "inject.hpp"

#ifndef BPFVM_INSTALL_LIBDIR
#define BPFVM_INSTALL_LIBDIR "lib"
#endif

namespace bpfvm::cli {

namespace {

namespace fs = std::filesystem;

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The program file of a command as execvp would find it ("" when not found).
std::string command_path(const std::string& argv0) {
  if (argv0.find('/') != std::string::npos) return argv0;
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t next = p.find(':', pos);
    if (next == std::string::npos) next = p.size();
    std::string c = (next > pos ? p.substr(pos, next - pos) : ".") + "/" + argv0;
    if (access(c.c_str(), X_OK) == 0) return c;
    pos = next + 1;
  }
  return "";
}

}  // namespace

// Whether an ELF program has an interpreter (PT_INTERP): the dynamic loader that reads LD_PRELOAD.
// A script (#!) runs its interpreter, which is judged instead.
std::string interp_check(const std::string& file, int depth) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";  // exec will report it
  char head[256] = {};
  ssize_t n = pread(fd, head, sizeof head - 1, 0);
  if (n >= 2 && head[0] == '#' && head[1] == '!' && depth < 4) {
    close(fd);
    std::string line(head + 2, strnlen(head + 2, sizeof head - 3));
    line = line.substr(0, line.find('\n'));
    auto b = line.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    line = line.substr(b);
    return interp_check(line.substr(0, line.find_first_of(" \t")), depth + 1);
  }
  elf_version(EV_CURRENT);
  Elf* e = elf_begin(fd, ELF_C_READ, nullptr);
  std::string why;
  if (e && elf_kind(e) == ELF_K_ELF) {
    size_t ph = 0;
    bool interp = false, dyn = false;
    if (elf_getphdrnum(e, &ph) == 0)
      for (size_t i = 0; i < ph; ++i) {
        GElf_Phdr p;
        if (!gelf_getphdr(e, static_cast<int>(i), &p)) continue;
        interp |= p.p_type == PT_INTERP;
        dyn |= p.p_type == PT_DYNAMIC;
      }
    if (!interp)
      why = fmt::format("{} is statically linked{}: no dynamic loader runs in it to load the agent", file,
                        dyn ? " (static PIE)" : "");
  }
  if (e) elf_end(e);
  close(fd);
  return why;
}

namespace {

Diagnostic io_error(const std::string& what) {
  return make_error(ErrorCode::Io, fmt::format("{}: {}", what, std::strerror(errno)));
}

// The private directory: the maps, the spec, the control page, the report socket.
struct PrivateDir {
  std::string path;
  ~PrivateDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

volatile sig_atomic_t g_forward = 0;  // a SIGTERM/SIGHUP for the command
void on_forward(int sig) { g_forward = sig; }

}  // namespace

std::string find_agent_library(std::string& why) {
  if (const char* e = std::getenv("BPFVM_AGENT_LIB"); e && *e) {
    if (access(e, R_OK) == 0) return e;
    why = fmt::format("BPFVM_AGENT_LIB={}: {}", e, std::strerror(errno));
    return "";
  }
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    fs::path self(std::string(buf, static_cast<size_t>(n)));
    for (fs::path c : {self.parent_path() / "libbpfvm-agent.so",
                       self.parent_path().parent_path() / BPFVM_INSTALL_LIBDIR / "libbpfvm-agent.so"})
      if (access(c.c_str(), R_OK) == 0) return fs::absolute(c).lexically_normal().string();
  }
  why = "libbpfvm-agent.so not found beside bpfvm nor in its library directory (set BPFVM_AGENT_LIB)";
  return "";
}

std::string agent_unusable_reason(const std::string& argv0) {
#ifndef PR_GET_MDWE
#define PR_GET_MDWE 66
#endif
  int mdwe = prctl(PR_GET_MDWE, 0, 0, 0, 0);
  if (mdwe > 0)
    return "this process forbids writable+executable memory (PR_SET_MDWE), and the command inherits it: the "
           "agent cannot create its code there";
  std::string file = command_path(argv0);
  if (file.empty()) return "";  // exec reports it
  struct stat st;
  if (stat(file.c_str(), &st) == 0) {
    if ((st.st_mode & S_ISUID) && st.st_uid != geteuid())
      return fmt::format("{} is set-user-ID: the dynamic loader ignores LD_PRELOAD there", file);
    if ((st.st_mode & S_ISGID) && st.st_gid != getegid())
      return fmt::format("{} is set-group-ID: the dynamic loader ignores LD_PRELOAD there", file);
  }
  return interp_check(file);
}

Result<AgentTraceResult> run_agent_trace(const Object& object, SyscallHooksOptions ho, AgentTraceOptions o,
                                         std::unique_ptr<SyscallHooks>& hooks) {
  auto note = [&](const std::string& m) {
    if (o.note) o.note(m);
  };
  std::string why;
  std::string lib = find_agent_library(why);
  if (lib.empty()) return make_error(ErrorCode::Io, why);
  if (o.pid != 0) {
    if (Status st = agent_injectable(o.pid); !st) return st.error();
  } else if (std::string r = agent_unusable_reason(o.command.at(0)); !r.empty()) {
    return make_error(ErrorCode::InvalidArgument, fmt::format("the agent cannot run in {}: {}", o.command[0], r));
  }

  // Pinned maps live on tmpfs; the directory is private to this run.
  PrivateDir dir;
  std::string base = "/dev/shm";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x && geteuid() != 0) base = x;
  std::string tmpl = base + "/bpfvm-agent-XXXXXX";
  if (!mkdtemp(tmpl.data())) return io_error("cannot create a directory in " + base);
  dir.path = tmpl;
  if (o.spec.pin_dir.empty()) {  // else --pinmaps DIR: the maps are pinned there, for everyone to see
    o.spec.pin_dir = dir.path + "/maps";
    if (mkdir(o.spec.pin_dir.c_str(), 0700) != 0) return io_error("cannot create " + o.spec.pin_dir);
  }
  // The command and bpfvm trace share the maps through the store: every map must be pinnable.
  for (const ObjectMap& m : object.maps)
    if (!m.is_global_data() && !map_type_pinnable(m.spec.type))
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("map '{}': agent mode shares the maps with the command as pinned maps, and maps "
                                    "of type {} cannot be pinned yet{}", m.spec.name, map_type_name(m.spec.type),
                                    m.spec.type == kMapPerfEventArray ? " (use a ring buffer)" : ""));
  ho.pin_maps_dir = o.spec.pin_dir;
  auto h = SyscallHooks::create(object, ho);
  if (!h) return h.error();
  hooks = std::move(*h);
  hooks->set_record_sink(o.record);

  // Every probe's binary and function are checked now: an error before the command starts. A bare
  // library name is looked up first among the libraries a running process (-p) has loaded.
  const std::vector<std::string> loaded = o.pid ? process_files(o.pid) : std::vector<std::string>{};
  for (const auto& p : hooks->programs()) {
    const AttachPoint& pt = p->point;
    std::string who = fmt::format("program {} ({})", p->name, pt.canonical);
    if (!pt.in_user_code()) continue;  // system-call programs: the agent's SIGSYS handler runs them
    auto file = resolve_probe_binary(pt.binary, loaded);
    if (!file) {
      if (pt.binary.find('/') != std::string::npos)
        return make_error(ErrorCode::InvalidArgument, fmt::format("{}: {}", who, file.error().message));
      note(fmt::format("{}: {} is not installed in the library path; the probe is attached when the {} "
                       "loads a library of that name", who, pt.binary, o.pid ? "process" : "command"));
      continue;
    }
    if (pt.event == TraceEvent::UsdtProbe) {
      auto notes = find_usdt_notes(*file, pt.provider, pt.function);
      if (!notes) return make_error(ErrorCode::InvalidArgument, fmt::format("{}: {}", who, notes.error().message));
    } else {
      auto fn = find_elf_function(*file, pt.function, pt.offset);
      if (!fn) return make_error(ErrorCode::InvalidArgument, fmt::format("{}: {}", who, fn.error().message));
    }
  }

  // The control page (1: programs run) and the report socket.
  o.spec.control = dir.path + "/control";
  int cfd = open(o.spec.control.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (cfd < 0) return io_error("cannot create " + o.spec.control);
  if (ftruncate(cfd, 4096) != 0) {
    close(cfd);
    return io_error("cannot size " + o.spec.control);
  }
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
  close(cfd);
  if (page == MAP_FAILED) return io_error("cannot map " + o.spec.control);
  auto* enabled = static_cast<std::atomic<uint32_t>*>(page);
  enabled->store(1);

  o.spec.socket = dir.path + "/report.sock";
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return io_error("cannot create the report socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (o.spec.socket.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::Io, fmt::format("socket path {} is too long", o.spec.socket));
  std::strncpy(addr.sun_path, o.spec.socket.c_str(), sizeof addr.sun_path - 1);
  if (bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(sock);
    return io_error("cannot bind " + o.spec.socket);
  }
  int rcvbuf = 4 << 20;
  setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

  std::string spec_path = dir.path + "/agent.json";
  {
    std::string text = agent_spec_to_json(o.spec);
    std::string err;
    int fd = open(spec_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      if (fd >= 0) close(fd);
      close(sock);
      return io_error("cannot write " + spec_path);
    }
    close(fd);
  }

  if (o.pid != 0) {  // a running process: the agent is loaded into it (trace_agent_pid.cpp)
    AgentChannel ch{sock, enabled, spec_path, lib, dir.path};
    auto r = serve_process_agent(ch, o, *hooks);
    close(sock);
    munmap(page, 4096);
    return r;
  }

  // The command: LD_PRELOAD (the agent first) and the spec; exec errors come back through a pipe.
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) preload += std::string(":") + old;
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) {
    close(sock);
    return io_error("pipe");
  }
  struct sigaction fwd{}, old_term{}, old_hup{}, old_int{}, old_quit{};
  fwd.sa_handler = on_forward;
  sigaction(SIGTERM, &fwd, &old_term);
  sigaction(SIGHUP, &fwd, &old_hup);
  struct sigaction ign{};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);  // the command shares the terminal: ^C is its to handle
  sigaction(SIGQUIT, &ign, &old_quit);
  const pid_t parent = getpid();
  const bool die_with_us = o.duration <= 0;
  pid_t child = fork();
  if (child < 0) {
    close(sock);
    return io_error("fork");
  }
  if (child == 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    // As ptrace mode's PTRACE_O_EXITKILL: the command dies with bpfvm (not when it must outlive it).
    if (die_with_us) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
    }
    setenv("LD_PRELOAD", preload.c_str(), 1);
    setenv(kAgentSpecEnv, spec_path.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    int e = errno;
    (void)!write(errpipe[1], &e, sizeof e);
    _exit(127);
  }
  close(errpipe[1]);
  AgentTraceResult res;
  int exec_errno = 0;
  ssize_t got = read(errpipe[0], &exec_errno, sizeof exec_errno);
  close(errpipe[0]);
  auto restore = [&] {
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
  };
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    waitpid(child, nullptr, 0);
    close(sock);
    restore();
    res.exit_code = 127;
    res.start_error = fmt::format("cannot run {}: {}", o.command[0], std::strerror(exec_errno));
    return res;
  }
  res.started = true;

  // Serve the agent(s): reports, ring buffers; until the command ends or the duration is over.
  bool ready_seen = false;
  auto handle = [&](const char* buf, size_t n) {
    auto m = agent_message_from_json(std::string_view(buf, n));
    if (!m) return;
    switch (m->kind) {
      case AgentMessage::Kind::Printk:
        if (o.printk) o.printk(*m);
        break;
      case AgentMessage::Kind::Ready:
        if (!ready_seen && m->pid == child) {
          ready_seen = true;
          if (!m->text.empty()) note(fmt::format("agent in {}: {}", m->pid, m->text));
        } else if (m->pid != child && m->attached > 0) {  // (system-call programs alone: nothing to say)
          note(fmt::format("agent in {} (started by the command): {} probes attached", m->pid, m->attached));
        }
        break;
      case AgentMessage::Kind::Attach:
        note(fmt::format("agent in {}: {} probes attached to a library loaded later", m->pid, m->attached));
        break;
      case AgentMessage::Kind::Error:
        if (m->pid == child) res.agent_failed = true;
        note(fmt::format("agent in {}: {}; the process runs without these probes", m->pid, m->text));
        break;
      case AgentMessage::Kind::Note:
        note(fmt::format("agent in {}: {}", m->pid, m->text));
        break;
      case AgentMessage::Kind::Fault:
        note(fmt::format("agent in {}: {}", m->pid, m->text));
        break;
    }
  };
  auto pump = [&](int timeout_ms) {
    pollfd pfd{sock, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) > 0) {
      char buf[65536];
      for (;;) {
        ssize_t n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        handle(buf, static_cast<size_t>(n));
      }
    }
    hooks->drain();
  };
  const double deadline = o.duration > 0 ? now_s() + o.duration : 0;
  int status = 0;
  for (;;) {
    if (g_forward) {
      kill(child, g_forward);
      g_forward = 0;
    }
    pid_t w = waitpid(child, &status, WNOHANG);
    if (w == child) break;
    if (deadline > 0 && now_s() >= deadline) {
      enabled->store(0);  // programs stop; the command runs on with the idle agent
      res.detached = true;
      break;
    }
    pump(10);
  }
  pump(0);
  restore();
  close(sock);
  munmap(page, 4096);
  if (!res.detached) res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (!ready_seen && !res.agent_failed && res.started && !res.detached)
    note(fmt::format("the agent did not start in {} (it ended before, or does not load LD_PRELOAD libraries)",
                     o.command[0]));
  return res;
}

}  // namespace bpfvm::cli
