// bpfvm trace --mode agent -p PID: the agent loaded into a running process (trace_agent.hpp).
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "bpfvm/map.hpp"
#include "inject.hpp"
#include "trace_agent.hpp"

namespace bpfvm::cli {

namespace {

namespace fs = std::filesystem;

volatile sig_atomic_t g_stop = 0;  // SIGINT, SIGTERM, SIGHUP, the duration's SIGALRM: detach
std::atomic<uint32_t>* g_control = nullptr;
// The programs stop at once (the control word), even while bpfvm is busy draining a ring buffer
// that the probes fill as fast as it is read.
void on_stop(int sig) {
  g_stop = sig;
  if (g_control) g_control->store(0);
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The process's effective user and group (/proc/PID/status), to hand it the files it opens.
bool process_ids(pid_t pid, uid_t* uid, gid_t* gid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  bool u = false, g = false;
  while (std::getline(in, line)) {
    unsigned long real = 0, eff = 0;
    if (std::sscanf(line.c_str(), "Uid: %lu %lu", &real, &eff) == 2) {
      *uid = static_cast<uid_t>(eff);
      u = true;
    } else if (std::sscanf(line.c_str(), "Gid: %lu %lu", &real, &eff) == 2) {
      *gid = static_cast<gid_t>(eff);
      g = true;
    }
  }
  return u && g;
}

// The agent opens the spec, the control page, the report socket and the pinned maps as the process's
// user: a process of another user gets them as its own (the private directory stays closed to
// everyone else). Under --pinmaps DIR the object's map files there too.
void hand_over(const AgentChannel& ch, const AgentTraceOptions& o, SyscallHooks& hooks) {
  uid_t uid = 0;
  gid_t gid = 0;
  if (!process_ids(o.pid, &uid, &gid) || (uid == geteuid() && gid == getegid())) return;
  std::error_code ec;
  (void)!chown(ch.dir.c_str(), uid, gid);
  for (auto it = fs::recursive_directory_iterator(ch.dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    (void)!lchown(it->path().c_str(), uid, gid);
  if (o.spec.pin_dir.rfind(ch.dir, 0) == 0) return;
  for (const auto& m : hooks.loaded().maps) {
    std::string base = o.spec.pin_dir + "/" + m->spec().name;
    for (auto it = fs::directory_iterator(o.spec.pin_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      if (it->path().string().rfind(base, 0) == 0) (void)!chown(it->path().c_str(), uid, gid);
  }
}

}  // namespace

Result<AgentTraceResult> serve_process_agent(const AgentChannel& ch, const AgentTraceOptions& o,
                                             SyscallHooks& hooks) {
  auto note = [&](const std::string& m) {
    if (o.note) o.note(m);
  };
  const pid_t pid = o.pid;
  AgentTraceResult res;
  hand_over(ch, o, hooks);

  // The process's end is seen through a pidfd (it is not bpfvm's child).
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));

  bool ready = false;
  std::string agent_error;
  auto handle = [&](const char* buf, size_t n) {
    auto m = agent_message_from_json(std::string_view(buf, n));
    if (!m) return;
    switch (m->kind) {
      case AgentMessage::Kind::Printk:
        if (o.printk) o.printk(*m);
        break;
      case AgentMessage::Kind::Ready:
        ready = true;
        note(fmt::format("agent in {}: {} probes attached{}", m->pid, m->attached,
                         m->text.empty() ? "" : "; " + m->text));
        break;
      case AgentMessage::Kind::Attach:
        note(fmt::format("agent in {}: {} probes attached to a library loaded later", m->pid, m->attached));
        break;
      case AgentMessage::Kind::Error:
        if (!ready) agent_error = m->text;
        else note(fmt::format("agent in {}: {}", m->pid, m->text));
        break;
      case AgentMessage::Kind::Note:
      case AgentMessage::Kind::Fault:
        note(fmt::format("agent in {}: {}", m->pid, m->text));
        break;
    }
  };
  auto pump = [&](int timeout_ms) {
    pollfd pfd[2] = {{ch.sock, POLLIN, 0}, {pidfd, POLLIN, 0}};
    if (poll(pfd, pidfd >= 0 ? 2 : 1, timeout_ms) > 0) {
      char buf[65536];
      for (;;) {
        ssize_t n = recv(ch.sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        handle(buf, static_cast<size_t>(n));
      }
    }
    hooks.drain();
  };

  struct sigaction act{}, old_int{}, old_term{}, old_hup{}, old_alrm{};
  act.sa_handler = on_stop;
  g_stop = 0;
  g_control = ch.enabled;
  sigaction(SIGINT, &act, &old_int);
  sigaction(SIGTERM, &act, &old_term);
  sigaction(SIGHUP, &act, &old_hup);
  sigaction(SIGALRM, &act, &old_alrm);
  auto restore = [&] {
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    sigaction(SIGALRM, &old_alrm, nullptr);
    g_control = nullptr;
    if (pidfd >= 0) close(pidfd);
  };

  auto in = inject_agent(pid, ch.lib, ch.spec_path);
  if (in && in->start_result == 0)
    note(in->loaded_now ? fmt::format("loaded the agent into process {}", pid)
                        : fmt::format("the agent is already loaded in process {}: started again there", pid));
  pump(0);
  if (!in) {
    restore();
    return in.error();
  }
  if (in->start_result != 0) {
    restore();
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("the agent in process {} did not start: {}", pid,
                                  agent_error.empty() ? "no reason reported" : agent_error));
  }
  res.started = true;

  const double deadline = o.duration > 0 ? now_s() + o.duration : 0;
  if (o.duration > 0) {
    itimerval at{};
    at.it_value.tv_sec = static_cast<time_t>(o.duration);
    at.it_value.tv_usec = static_cast<suseconds_t>((o.duration - static_cast<double>(at.it_value.tv_sec)) * 1e6);
    if (at.it_value.tv_sec == 0 && at.it_value.tv_usec == 0) at.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &at, nullptr);
  }
  bool gone = false;
  while (!g_stop) {
    if (deadline > 0 && now_s() >= deadline) break;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      if (poll(&p, 1, 0) > 0) gone = true;
    } else if (kill(pid, 0) != 0) {
      gone = true;
    }
    if (gone) break;
    pump(10);
  }
  if (gone) {
    pump(0);
    note(fmt::format("process {} ended", pid));
    restore();
    return res;
  }
  // Detach: programs stop at once (the control word); then the probes go, original bytes back.
  ch.enabled->store(0);
  auto st = stop_agent(pid, ch.lib);
  pump(0);
  restore();
  if (!st) {
    if (kill(pid, 0) != 0) {
      note(fmt::format("process {} ended", pid));
      return res;
    }
    note(fmt::format("agent in {}: the probes could not be removed ({}); they stay, running no program", pid,
                     st.error().message));
  }
  res.detached = true;
  return res;
}

}  // namespace bpfvm::cli
