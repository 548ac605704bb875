// `bpfvm trace --mode agent -p PID`: the agent loaded into a running process by ptrace (the C
// library's dlopen called on one of its threads), probes counted exactly, detaching that removes the
// probes (the code bytes equal the file's again) and leaves the process running, re-attaching, a
// multithreaded target hammering the probed function, threads blocked in read() and nanosleep()
// during the injection (their calls resume with correct results), a process that ends during the
// attach, refusals (no such process, a statically linked program), and --pinmaps in agent mode.
// The target is tests/agent_inject_target.c (commands on stdin).
#include <elf.h>
#include <gelf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bpfvm/probe_target.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

std::string progs(const char* name) { return std::string(BPFVM_PROGS_DIR) + "/" + name; }

std::string bpfvm_bin() {
  const char* b = std::getenv("BPFVM_BIN");
  return b ? b : std::string(BPFVM_BINARY_DIR) + "/bpfvm";
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
  nanosleep(&ts, nullptr);
}

// The running target: commands on its stdin, one answer line each on its stdout.
class Target {
 public:
  // as_user: run as that user (setpriv), a process bpfvm (root) traces across users.
  explicit Target(const char* as_user = nullptr) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      if (as_user)
        execlp("setpriv", "setpriv", (std::string("--reuid=") + as_user).c_str(),
               (std::string("--regid=") + as_user).c_str(), "--clear-groups", BPFVM_AGENT_INJECT_TARGET,
               static_cast<char*>(nullptr));
      else
        execl(BPFVM_AGENT_INJECT_TARGET, BPFVM_AGENT_INJECT_TARGET, static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
    std::string r = line();
    int p = 0;
    ready_ = std::sscanf(r.c_str(), "ready %d", &p) == 1;
    target_ = p;
  }
  // The command after `prefix`: bpfvm ... -- TARGET (the target then is not our child).
  explicit Target(const std::vector<std::string>& prefix) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<char*> argv;
      for (const auto& a : prefix) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(const_cast<char*>(BPFVM_AGENT_INJECT_TARGET));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
    std::string r = line();
    int p = 0;
    ready_ = std::sscanf(r.c_str(), "ready %d", &p) == 1;
    target_ = p;
  }
  ~Target() {
    if (target_ > 0 && target_ != pid_) kill(target_, SIGKILL);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (to_ >= 0) close(to_);
    if (from_ >= 0) close(from_);
  }
  bool ready() const { return ready_; }
  pid_t pid() const { return target_; }
  void send(const std::string& cmd) {
    std::string l = cmd + "\n";
    (void)!write(to_, l.data(), l.size());
  }
  // The next answer line ("" after 30 s or at the end of its output).
  std::string line() {
    const double deadline = now_s() + 30;
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      pollfd p{from_, POLLIN, 0};
      int left = static_cast<int>((deadline - now_s()) * 1000);
      if (left <= 0 || poll(&p, 1, left) <= 0) return "";
      char b[4096];
      ssize_t n = read(from_, b, sizeof b);
      if (n <= 0) return "";
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  std::string ask(const std::string& cmd) {
    send(cmd);
    return line();
  }
  // Ends it with `quit`: its exit status (-1 when it did not end).
  int quit() {
    send("quit");
    for (int i = 0; i < 3000; ++i) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      sleep_ms(10);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1, target_ = -1;  // the child; the target process (the child itself, or its child)
  int to_ = -1, from_ = -1;
  bool ready_ = false;
  std::string buf_;
};

// `bpfvm trace -j ARGS` in the background: stdout and stderr to files.
class Trace {
 public:
  explicit Trace(const std::string& args) {
    char d[] = "/tmp/bpfvm-inject-test-XXXXXX";
    dir_ = mkdtemp(d);
    pid_ = fork();
    if (pid_ == 0) {
      std::string cmd = "exec " + bpfvm_bin() + " trace -j " + args + " >" + dir_ + "/out 2>" + dir_ + "/err";
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Trace() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string err() const { return slurp(dir_ + "/err"); }
  std::string out() const { return slurp(dir_ + "/out"); }
  // Waits until stderr holds `what` (false after 30 s or when bpfvm ended first).
  bool wait_err(const std::string& what) {
    const double deadline = now_s() + 30;
    while (now_s() < deadline) {
      if (err().find(what) != std::string::npos) return true;
      int st = 0;
      if (pid_ > 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return err().find(what) != std::string::npos;
      }
      sleep_ms(10);
    }
    return false;
  }
  // Sends `sig` (0: none) and waits for the end: the exit status (-1 after 30 s).
  int finish(int sig = SIGINT) {
    if (pid_ > 0 && sig) kill(pid_, sig);
    const double deadline = now_s() + 30;
    while (pid_ > 0 && now_s() < deadline) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      sleep_ms(10);
    }
    return pid_ > 0 ? -1 : code_;
  }
  // The array map `name` (u32 -> u64) of the final output.
  std::map<uint64_t, uint64_t> map(const std::string& name) const {
    std::map<uint64_t, uint64_t> m;
    std::istringstream in(out());
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("entries") || j["map"] != name) continue;
      for (const auto& en : j["entries"]) {
        auto k = en["key"].get<std::vector<uint8_t>>(), v = en["value"].get<std::vector<uint8_t>>();
        uint32_t key = 0;
        uint64_t val = 0;
        std::memcpy(&key, k.data(), std::min<size_t>(4, k.size()));
        std::memcpy(&val, v.data(), std::min<size_t>(8, v.size()));
        m[key] = val;
      }
    }
    return m;
  }
  size_t records() const {
    size_t n = 0;
    std::istringstream in(out());
    std::string line;
    while (std::getline(in, line)) n += line.find("\"data\":") != std::string::npos;
    return n;
  }

 private:
  static std::string slurp(const std::string& f) {
    std::ifstream in(f);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string dir_;
  pid_t pid_ = -1;
  int code_ = -1;
};

// A sanitizer build instruments libbpfvm-agent.so, which then needs its sanitizer runtime: that
// runtime must be the first library of a process (LD_PRELOAD works with verify_asan_link_order=0)
// and cannot be dlopen'ed into a running one (its static TLS alone is larger than any surplus).
// The name of such a runtime the agent needs, "" when none.
std::string agent_sanitizer_runtime() {
  int fd = open(BPFVM_AGENT_SO, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  elf_version(EV_CURRENT);
  Elf* e = elf_begin(fd, ELF_C_READ, nullptr);
  std::string found;
  Elf_Scn* scn = nullptr;
  while (e && found.empty() && (scn = elf_nextscn(e, scn)) != nullptr) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC) continue;
    Elf_Data* d = elf_getdata(scn, nullptr);
    for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; ++i) {
      GElf_Dyn dyn;
      if (!gelf_getdyn(d, static_cast<int>(i), &dyn) || dyn.d_tag != DT_NEEDED) continue;
      std::string name = elf_strptr(e, sh.sh_link, dyn.d_un.d_val);
      for (const char* rt : {"libasan", "libtsan", "libubsan", "liblsan"})
        if (name.rfind(rt, 0) == 0) found = name;
    }
  }
  if (e) elf_end(e);
  close(fd);
  return found;
}

class AgentInject : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string rt = agent_sanitizer_runtime();
    if (!rt.empty())
      GTEST_SKIP() << "libbpfvm-agent.so needs " << rt << " (a sanitizer build): a sanitizer runtime cannot be "
                   << "dlopen'ed into a running process";
  }
};

std::string probes_args(pid_t pid, const std::string& mode = "agent") {
  return "--mode " + mode + " " + progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/" + BPFVM_AGENT_LIB +
         ":lib_add --attach on_lib_add_ret=uretprobe/libagent_lib.so:lib_add --attach on_local_mul=uprobe/" +
         BPFVM_AGENT_INJECT_TARGET + ":local_mul --attach on_local_mul_ret=uretprobe/" + BPFVM_AGENT_INJECT_TARGET +
         ":local_mul -p " + std::to_string(pid);
}

const char* kAttached = "probes attached";

// `run N` of the target: sum of (i + 2i) + 3i.
uint64_t run_sum(int n) {
  uint64_t s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<uint64_t>(6 * i);
  return s;
}

// Whether the code of FUNC in the process equals the file's bytes (no patch or breakpoint left);
// why says what differs or could not be read.
bool code_as_in_file(pid_t pid, const std::string& file, const char* func, std::string* why) {
  auto fn = find_elf_function(file, func);
  if (!fn.ok() || fn->size == 0) {
    *why = std::string(func) + ": " + (fn.ok() ? "no size" : fn.error().message);
    return false;
  }
  std::vector<uint8_t> want(fn->size), got(fn->size);
  {
    std::ifstream in(file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(fn->file_offset));
    in.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size()));
  }
  // The mapping of that file offset in the process.
  struct stat st;
  if (stat(file.c_str(), &st) != 0) {
    *why = "cannot stat " + file;
    return false;
  }
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  uint64_t addr = 0;
  while (std::getline(maps, line)) {
    unsigned long long s, e, off, ino;
    char perms[8];
    unsigned maj, min;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu", &s, &e, perms, &off, &maj, &min, &ino) != 7) continue;
    if (ino != st.st_ino || perms[2] != 'x') continue;
    if (fn->file_offset >= off && fn->file_offset < off + (e - s)) addr = s + (fn->file_offset - off);
  }
  if (addr == 0) {
    *why = std::string(func) + " is not mapped in " + std::to_string(pid);
    return false;
  }
  int mem = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY);
  const bool read = mem >= 0 && pread(mem, got.data(), got.size(), static_cast<off_t>(addr)) == static_cast<ssize_t>(got.size());
  if (mem >= 0) close(mem);
  if (!read || got != want) {
    *why = std::string(func) + " in process " + std::to_string(pid) + (read ? " differs from " : " cannot be read, ") + file;
    return false;
  }
  return true;
}

void expect_code_as_in_file(pid_t pid, const std::string& file, const char* func) {
  std::string why;
  EXPECT_TRUE(code_as_in_file(pid, file, func, &why)) << why;
}

TEST_F(AgentInject, CountsExactlyDetachesAndReattaches) {
  Target t;
  ASSERT_TRUE(t.ready());
  for (int round = 0; round < 2; ++round) {
    const int n = round == 0 ? 500 : 200;
    // The second time in auto mode: the agent is picked for probes in user code.
    Trace tr(probes_args(t.pid(), round == 0 ? "agent" : "auto"));
    ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
    // The target was blocked in read() during the injection: the command reaches it intact.
    EXPECT_EQ(t.ask("run " + std::to_string(n)), "sum " + std::to_string(run_sum(n)));
    ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
    auto c = tr.map("counts");
    EXPECT_EQ(c[0], static_cast<uint64_t>(n)) << "round " << round << "\n" << tr.err();
    uint64_t args = 0;
    for (int i = 0; i < n; ++i) args += static_cast<uint64_t>(3 * i);
    EXPECT_EQ(c[1], args);
    EXPECT_EQ(c[2], static_cast<uint64_t>(n)) << "uretprobe on lib_add";
    EXPECT_EQ(c[3], args);
    EXPECT_EQ(c[4], static_cast<uint64_t>(n));
    EXPECT_EQ(c[5], args);
    EXPECT_EQ(c[6], static_cast<uint64_t>(n));
    EXPECT_EQ(c[7], args);
    EXPECT_EQ(tr.records(), 2u * n);
    if (round == 0) EXPECT_NE(tr.err().find("loaded the agent"), std::string::npos) << tr.err();
    else EXPECT_NE(tr.err().find("already loaded"), std::string::npos) << tr.err();
    if (round == 1) EXPECT_NE(tr.err().find("mode: agent"), std::string::npos) << tr.err();
    // Detached: the process runs on unprobed, its code as in the files.
    expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
    expect_code_as_in_file(t.pid(), BPFVM_AGENT_LIB, "lib_add");
    EXPECT_EQ(t.ask("run 100"), "sum " + std::to_string(run_sum(100)));
  }
  EXPECT_EQ(t.quit(), 0);
}

// System-call programs in a running process: Syscall User Dispatch switched on in every thread (the
// threads there at the attach and those created later), off again at the detach, with the signal
// state the process set back; a second session attaches the same way.
TEST_F(AgentInject, SyscallProgramsCountExactlyDetachAndReattach) {
  Target t;
  ASSERT_TRUE(t.ready());
  EXPECT_EQ(t.ask("sigstate"), "sigstate sys dfl usr1mask 0");
  for (int round = 0; round < 2; ++round) {
    const int n = round == 0 ? 300 : 120;
    // The second time with threads running (no syscalls of theirs) while the agent switches them.
    if (round == 1) t.send("hammer 3");
    Trace tr("--mode agent " + progs("tr_count.bpf.o") + " -p " + std::to_string(t.pid()));
    ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
    // The process gives SIGUSR1 an action that blocks SIGSYS while the agent keeps SIGSYS out of it.
    if (round == 0) EXPECT_EQ(t.ask("sigusr1 1"), "sigusr1 rc 0");
    EXPECT_EQ(t.ask("sys 0 " + std::to_string(n)), "sys ok " + std::to_string(n));
    EXPECT_EQ(t.ask("sys 4 " + std::to_string(n)), "sys ok " + std::to_string(4 * n));
    ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
    auto c = tr.map("counts");
    EXPECT_EQ(c[SYS_getppid], static_cast<uint64_t>(5 * n)) << "round " << round << "\n" << tr.err();
    EXPECT_NE(tr.err().find(round == 0 ? "loaded the agent" : "already loaded"), std::string::npos) << tr.err();
    // Detached: SIGSYS's action and SIGUSR1's mask are the process's own again, and its syscalls run
    // untrapped (a trap with the default SIGSYS action would kill it).
    EXPECT_EQ(t.ask("sigstate"), "sigstate sys dfl usr1mask 1") << "round " << round;
    EXPECT_EQ(t.ask("sys 2 100"), "sys ok 200");
    if (round == 1) {
      const std::string h = t.ask("stop");
      EXPECT_EQ(h.rfind("hammer calls ", 0), 0u) << h;
      EXPECT_NE(h.find(" bad 0"), std::string::npos) << h;
    }
  }
  EXPECT_EQ(t.quit(), 0);
}

// Threads that block every signal never answer the switch signal: the attach goes on without them
// after a bounded wait (with a note), the other threads are hooked, and the detach leaves the
// process working (the agent's handler stays while such a thread may still get a switch signal).
TEST_F(AgentInject, SyscallProgramsWithThreadsBlockingSigsys) {
  Target t;
  ASSERT_TRUE(t.ready());
  t.send("hammer-masked 2");
  Trace tr("--mode agent " + progs("tr_count.bpf.o") + " -p " + std::to_string(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_NE(tr.err().find("2 threads did not switch on Syscall User Dispatch"), std::string::npos) << tr.err();
  EXPECT_EQ(t.ask("sys 0 50"), "sys ok 50");
  EXPECT_EQ(t.ask("sys 3 50"), "sys ok 150");
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[SYS_getppid], 200u) << tr.err();
  EXPECT_EQ(t.ask("sys 2 100"), "sys ok 200");
  const std::string h = t.ask("stop");
  EXPECT_NE(h.find(" bad 0"), std::string::npos) << h;
  EXPECT_EQ(t.ask("sys 1 10"), "sys ok 10");
  EXPECT_EQ(t.quit(), 0);
}

// The kernel as the oracle: its uprobes (libbpf, attached to this very process) and the agent
// loaded into it count the same calls, arguments and return values.
TEST_F(AgentInject, CountsMatchTheKernelsUprobes) {
  if (!fs::exists("/sys/bus/event_source/devices/uprobe")) GTEST_SKIP() << "the kernel has no uprobe PMU";
  Target t;
  ASSERT_TRUE(t.ready());
  const int n = 300;
  std::map<uint64_t, uint64_t> kernel;
  {
    libbpf_set_print(nullptr);
    bpf_object* o = bpf_object__open_file(progs("ag_probes.bpf.o").c_str(), nullptr);
    if (!o || libbpf_get_error(o)) GTEST_SKIP() << "libbpf cannot open ag_probes.bpf.o";
    if (int err = bpf_object__load(o); err) {
      bpf_object__close(o);
      GTEST_SKIP() << "the kernel does not load ag_probes.bpf.o: " << std::strerror(-err);
    }
    std::vector<bpf_link*> links;
    struct A {
      const char* prog;
      std::string binary;
      const char* func;
      bool ret;
    };
    for (const A& a : {A{"on_lib_add", BPFVM_AGENT_LIB, "lib_add", false}, A{"on_lib_add_ret", BPFVM_AGENT_LIB, "lib_add", true},
                       A{"on_local_mul", BPFVM_AGENT_INJECT_TARGET, "local_mul", false},
                       A{"on_local_mul_ret", BPFVM_AGENT_INJECT_TARGET, "local_mul", true}}) {
      LIBBPF_OPTS(bpf_uprobe_opts, uo);
      uo.func_name = a.func;
      uo.retprobe = a.ret;
      bpf_link* l = bpf_program__attach_uprobe_opts(bpf_object__find_program_by_name(o, a.prog), t.pid(),
                                                    a.binary.c_str(), 0, &uo);
      if (!l || libbpf_get_error(l)) {
        for (auto* x : links) bpf_link__destroy(x);
        bpf_object__close(o);
        GTEST_SKIP() << "the kernel cannot attach " << a.prog;
      }
      links.push_back(l);
    }
    EXPECT_EQ(t.ask("run " + std::to_string(n)), "sum " + std::to_string(run_sum(n)));
    for (auto* l : links) bpf_link__destroy(l);
    // The kernel may remove its breakpoints after the links are gone (a deferred release): the
    // agent must find the functions' own bytes, or its patch would be undone with them.
    std::string why;
    for (int i = 0; i < 500; ++i) {
      if (code_as_in_file(t.pid(), BPFVM_AGENT_LIB, "lib_add", &why) &&
          code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul", &why))
        break;
      usleep(10000);
    }
    expect_code_as_in_file(t.pid(), BPFVM_AGENT_LIB, "lib_add");
    expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
    int fd = bpf_object__find_map_fd_by_name(o, "counts");
    for (uint32_t k = 0; k < 8; ++k) {
      uint64_t v = 0;
      ASSERT_EQ(bpf_map_lookup_elem(fd, &k, &v), 0);
      kernel[k] = v;
    }
    bpf_object__close(o);
  }
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_EQ(t.ask("run " + std::to_string(n)), "sum " + std::to_string(run_sum(n)));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  auto agent = tr.map("counts");
  EXPECT_EQ(kernel[0], static_cast<uint64_t>(n)) << "the kernel counted every call";
  for (uint32_t k = 0; k < 8; ++k) EXPECT_EQ(agent[k], kernel[k]) << "counts[" << k << "]";
  EXPECT_EQ(t.quit(), 0);
}

// A process of another user: bpfvm (root) hands it the files the agent opens (the private
// directory's spec, control page, socket and maps), which stay closed to everyone else.
TEST_F(AgentInject, ProcessOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to trace another user's process";
  if (std::system("setpriv --reuid=65534 --regid=65534 --clear-groups " BPFVM_AGENT_INJECT_TARGET " </dev/null >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the target cannot run as user 65534 here (setpriv missing or the build tree is not readable)";
  Target t("65534");
  ASSERT_TRUE(t.ready());
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_EQ(t.ask("run 25"), "sum " + std::to_string(run_sum(25)));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[4], 25u) << tr.err();
  EXPECT_EQ(tr.map("counts")[7], run_sum(25) / 2);
  EXPECT_EQ(t.quit(), 0);
}

TEST_F(AgentInject, SleepingThreadsResumeTheirCalls) {
  Target t;
  ASSERT_TRUE(t.ready());
  // Attached while the only thread sleeps in nanosleep: the sleep goes on to its full length (the
  // kernel restarts it with the time left) and returns 0.
  t.send("sleep 1200");
  sleep_ms(100);
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  std::string slept = t.line();
  int rc = -9;
  double ms = 0;
  ASSERT_EQ(std::sscanf(slept.c_str(), "slept rc %d ms %lf", &rc, &ms), 2) << slept;
  EXPECT_EQ(rc, 0);
  EXPECT_GE(ms, 1200);
  EXPECT_LT(ms, 1200 + 1500) << "the sleep went on far too long";
  EXPECT_EQ(t.ask("run 50"), "sum " + std::to_string(run_sum(50)));
  // Detached while it sleeps again.
  t.send("sleep 700");
  sleep_ms(100);
  ASSERT_EQ(tr.finish(SIGTERM), 0) << tr.err();
  slept = t.line();
  ASSERT_EQ(std::sscanf(slept.c_str(), "slept rc %d ms %lf", &rc, &ms), 2) << slept;
  EXPECT_EQ(rc, 0);
  EXPECT_GE(ms, 700);
  EXPECT_EQ(tr.map("counts")[4], 50u) << tr.err();
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
  EXPECT_EQ(t.quit(), 0);
}

TEST_F(AgentInject, MultithreadedTargetHammeringTheProbedFunction) {
  Target t;
  ASSERT_TRUE(t.ready());
  // Four threads call local_mul without pause while the probes are placed and removed: every result
  // stays right, and the probes saw calls.
  t.send("hammer 4");
  sleep_ms(50);
  {
    // The return probe only counts (no record per hit): the entry is patched all the same.
    Trace tr("--mode agent " + progs("ag_probes.bpf.o") + " --attach on_local_mul_ret=uretprobe/" +
             BPFVM_AGENT_INJECT_TARGET + ":local_mul -p " + std::to_string(t.pid()));
    ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
    sleep_ms(300);
    ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
    EXPECT_GT(tr.map("counts")[6], 0u) << tr.err();
  }
  std::string h = t.ask("stop");
  long calls = 0, bad = -1;
  ASSERT_EQ(std::sscanf(h.c_str(), "hammer calls %ld bad %ld", &calls, &bad), 2) << h;
  EXPECT_GT(calls, 0);
  EXPECT_EQ(bad, 0);
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
  // Re-attached: eight threads at once, every call counted.
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  uint64_t sum = 0;
  for (int i = 0; i < 500; ++i) sum += static_cast<uint64_t>(8 * i);
  EXPECT_EQ(t.ask("threads 8 500"), "threads sum " + std::to_string(sum));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[4], 4000u) << tr.err();
  EXPECT_EQ(tr.map("counts")[5], sum);
  EXPECT_EQ(tr.map("counts")[6], 4000u);
  EXPECT_EQ(t.quit(), 0);
}

TEST_F(AgentInject, DurationDetachesAndTheProcessGoesOn) {
  Target t;
  ASSERT_TRUE(t.ready());
  Trace tr("--duration 1 " + probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_EQ(t.ask("run 20"), "sum " + std::to_string(run_sum(20)));
  EXPECT_EQ(tr.finish(0), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[4], 20u) << tr.err();
  EXPECT_EQ(t.ask("run 30"), "sum " + std::to_string(run_sum(30)));
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
  EXPECT_EQ(t.quit(), 0);
}

int tracer_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("TracerPid:", 0) == 0) return std::atoi(line.c_str() + 10);
  return 0;
}

TEST_F(AgentInject, ProcessEndingDuringTheAttach) {
  {
    // Killed while bpfvm holds one of its threads (the injection: dlopen, the agent's start): bpfvm
    // says so and ends promptly, never hangs.
    Target t;
    ASSERT_TRUE(t.ready());
    Trace tr(probes_args(t.pid()));
    const double deadline = now_s() + 20;
    while (tracer_of(t.pid()) == 0 && now_s() < deadline) {
      timespec ts{0, 100'000};
      nanosleep(&ts, nullptr);
    }
    ASSERT_NE(tracer_of(t.pid()), 0) << "bpfvm never seized the process: " << tr.err();
    kill(t.pid(), SIGKILL);
    int code = tr.finish(0);
    ASSERT_NE(code, -1) << "bpfvm hung: " << tr.err();
    // The kill may land just after the thread was put back: then it ended while traced (exit 0).
    if (code == 0) {
      EXPECT_NE(tr.err().find("process " + std::to_string(t.pid()) + " ended"), std::string::npos) << tr.err();
    } else {
      EXPECT_EQ(code, 1) << tr.err();
      EXPECT_NE(tr.err().find("ended while bpfvm was loading the agent"), std::string::npos) << tr.err();
    }
  }
  {
    // Killed while traced: bpfvm notices, prints the maps and exits 0, as after a detach.
    Target t;
    ASSERT_TRUE(t.ready());
    Trace tr(probes_args(t.pid()));
    ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
    EXPECT_EQ(t.ask("run 10"), "sum " + std::to_string(run_sum(10)));
    kill(t.pid(), SIGKILL);
    EXPECT_EQ(tr.finish(0), 0) << tr.err();
    EXPECT_NE(tr.err().find("process " + std::to_string(t.pid()) + " ended"), std::string::npos) << tr.err();
    EXPECT_EQ(tr.map("counts")[4], 10u);
  }
}

TEST_F(AgentInject, Refusals) {
  // No such process: a usage error (exit 2), as in ptrace mode.
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  Trace tr(probes_args(gone));
  EXPECT_EQ(tr.finish(0), 2) << tr.err();
  EXPECT_NE(tr.err().find("no process " + std::to_string(gone)), std::string::npos) << tr.err();

  // A stopped process: refused (continue it first); it is left as it was.
  {
    Target t;
    ASSERT_TRUE(t.ready());
    kill(t.pid(), SIGSTOP);
    for (int i = 0; i < 200; ++i) {
      std::ifstream in("/proc/" + std::to_string(t.pid()) + "/stat");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      auto p = text.rfind(')');
      if (p != std::string::npos && p + 2 < text.size() && text[p + 2] == 'T') break;
      sleep_ms(5);
    }
    Trace stopped(probes_args(t.pid()));
    EXPECT_EQ(stopped.finish(0), 1) << stopped.err();
    EXPECT_NE(stopped.err().find("is stopped"), std::string::npos) << stopped.err();
    kill(t.pid(), SIGCONT);
    EXPECT_EQ(t.ask("run 3"), "sum " + std::to_string(run_sum(3)));
    EXPECT_EQ(t.quit(), 0);
  }

  // A statically linked program has no dlopen: refused with that reason (exit 1), left untouched.
  std::string src = "/tmp/bpfvm-inject-static.c", bin = "/tmp/bpfvm-inject-static";
  {
    std::ofstream f(src);
    f << "#include <unistd.h>\nint main(void){for(;;)pause();}\n";
  }
  std::string cc = "cc -static -o " + bin + " " + src + " >/dev/null 2>&1";
  if (std::system(cc.c_str()) != 0) GTEST_SKIP() << "no static C library to build a static program with";
  pid_t p = fork();
  if (p == 0) {
    execl(bin.c_str(), bin.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  sleep_ms(100);
  Trace st("--mode agent " + progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + bin + ":main -p " +
           std::to_string(p));
  EXPECT_EQ(st.finish(0), 1) << st.err();
  EXPECT_NE(st.err().find("statically linked"), std::string::npos) << st.err();
  int status = 0;
  EXPECT_EQ(waitpid(p, &status, WNOHANG), 0) << "the static program still runs";
  kill(p, SIGKILL);
  waitpid(p, nullptr, 0);
}

// A library the process loads after the attach (dlopen): its probe waits and is attached when the
// library is loaded (a return hook on the C library's dlopen, the agent's own not being the
// process's), before the caller reaches its functions.
TEST_F(AgentInject, LibrariesLoadedLater) {
  Target t;
  ASSERT_TRUE(t.ready());
  Trace tr("--mode agent " + progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/libagent_dl.so:lib_add -p " +
           std::to_string(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  uint64_t sum = 0;
  for (int i = 0; i < 30; ++i) sum += static_cast<uint64_t>(i + 1);
  EXPECT_EQ(t.ask(std::string("dl ") + BPFVM_AGENT_DL + " 30"), "dl sum " + std::to_string(sum));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[0], 30u) << tr.err();
  EXPECT_EQ(tr.map("counts")[1], sum);
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_DL, "lib_add");
  EXPECT_EQ(t.quit(), 0);
}

// USDT in a running process: arguments read as libbpf's usdt.bpf.h reads them, the semaphore set
// while attached and cleared again at the detach, the probe sites' bytes restored.
TEST_F(AgentInject, UsdtProbesAndTheirSemaphores) {
  Target t;
  ASSERT_TRUE(t.ready());
  EXPECT_EQ(t.ask("usdt 5"), "usdt enabled 0 sum 10");
  Trace tr("--mode agent " + progs("ag_usdt.bpf.o") + " --attach on_tick=usdt/" + BPFVM_AGENT_INJECT_TARGET +
           ":agt:tick --attach on_mark=usdt/" + BPFVM_AGENT_LIB + ":agt_lib:mark -p " + std::to_string(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  const int n = 50;
  uint64_t sum = 0, sums = 0, running = 0;
  for (int i = 0; i < n; ++i) {
    running += static_cast<uint64_t>(i);
    sum += static_cast<uint64_t>(i);
    sums += running;
  }
  EXPECT_EQ(t.ask("usdt " + std::to_string(n)), "usdt enabled " + std::to_string(n) + " sum " + std::to_string(sum));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  auto c = tr.map("counts");
  EXPECT_EQ(c[0], static_cast<uint64_t>(n)) << tr.err();
  EXPECT_EQ(c[1], sum);
  EXPECT_EQ(c[2], sums);
  EXPECT_EQ(c[3], static_cast<uint64_t>(-static_cast<int64_t>(sum)));
  EXPECT_EQ(c[6], static_cast<uint64_t>(n));
  EXPECT_EQ(c[7], 7 * sum);
  EXPECT_EQ(tr.records(), static_cast<size_t>(n));
  // Detached: the semaphore is back to 0 and the sites are as in the files.
  EXPECT_EQ(t.ask("usdt 5"), "usdt enabled 0 sum 10");
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "usdt_loop");
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_LIB, "lib_mark");
  EXPECT_EQ(t.quit(), 0);
}

// A library dlopen'ed into a running process gets the static TLS its initial-exec thread-locals need
// from the small surplus the C library reserved at startup (about 1.5 KiB in a small glibc 2.36
// process; "cannot allocate memory in static TLS block" beyond): the agent's whole thread-local
// block must stay well under that (large per-thread state goes on the heap, behind a pointer).
TEST_F(AgentInject, TheAgentsThreadLocalBlockFitsTheStaticTlsSurplus) {
  std::ifstream in(BPFVM_AGENT_SO, std::ios::binary);
  std::vector<char> f((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(f.size(), sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  std::memcpy(&eh, f.data(), sizeof eh);
  uint64_t tls = 0;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    ASSERT_LE(eh.e_phoff + (i + 1) * sizeof ph, f.size());
    std::memcpy(&ph, f.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_TLS) tls = ph.p_memsz + ph.p_align;
  }
  EXPECT_LE(tls, 1024u) << "libbpfvm-agent.so's thread-local block (with its alignment) is " << tls
                        << " bytes: too large to be dlopen'ed into a running process (bpfvm trace -p)";
}

// A command started in agent mode and left running after --duration (its agent idle, its probes
// still patched): a later `-p` ends that finished session and starts its own.
TEST_F(AgentInject, AfterACommandsDurationEnded) {
  Target t({bpfvm_bin(), "trace", "-j", "--duration", "0.5", "--mode", "agent", progs("ag_probes.bpf.o"),
            "--attach", std::string("on_local_mul=uprobe/") + BPFVM_AGENT_INJECT_TARGET + ":local_mul", "--"});
  ASSERT_TRUE(t.ready());
  ASSERT_NE(t.pid(), 0);
  sleep_ms(1500);  // bpfvm trace has detached and ended (its maps went to the same pipe: skipped)
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_NE(tr.err().find("already loaded"), std::string::npos) << tr.err();
  t.send("run 30");
  std::string sum;
  for (int i = 0; i < 50 && sum.rfind("sum ", 0) != 0; ++i) sum = t.line();
  EXPECT_EQ(sum, "sum " + std::to_string(run_sum(30)));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[4], 30u) << tr.err();
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
}

// A second bpfvm trace -p while one serves the process: refused with the reason; the first goes on.
TEST_F(AgentInject, OneSessionAtATime) {
  Target t;
  ASSERT_TRUE(t.ready());
  Trace first(probes_args(t.pid()));
  ASSERT_TRUE(first.wait_err(kAttached)) << first.err();
  Trace second(probes_args(t.pid()));
  EXPECT_EQ(second.finish(0), 1) << second.err();
  EXPECT_NE(second.err().find("already running in this process"), std::string::npos) << second.err();
  EXPECT_EQ(t.ask("run 15"), "sum " + std::to_string(run_sum(15)));
  ASSERT_EQ(first.finish(SIGINT), 0) << first.err();
  EXPECT_EQ(first.map("counts")[4], 15u) << first.err();
  EXPECT_EQ(t.quit(), 0);
}

// A process whose main thread has ended alone (pthread_exit): another thread is borrowed.
TEST_F(AgentInject, ProcessWhoseMainThreadEnded) {
  Target t;
  ASSERT_TRUE(t.ready());
  EXPECT_EQ(t.ask("leader-exit"), "leader exits");
  sleep_ms(50);
  Trace tr(probes_args(t.pid()));
  ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
  EXPECT_EQ(t.ask("run 12"), "sum " + std::to_string(run_sum(12)));
  ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
  EXPECT_EQ(tr.map("counts")[4], 12u) << tr.err();
  EXPECT_EQ(t.quit(), 0);
}

// A process that forbids writable+executable memory (PR_SET_MDWE, asked inside it): refused with
// that reason, and it runs on untouched.
TEST_F(AgentInject, MdweProcessIsRefused) {
  Target t;
  ASSERT_TRUE(t.ready());
  std::string rc = t.ask("mdwe");
  if (rc != "mdwe rc 0") GTEST_SKIP() << "PR_SET_MDWE is not available here: " << rc;
  Trace md(probes_args(t.pid()));
  EXPECT_EQ(md.finish(0), 1) << md.err();
  EXPECT_NE(md.err().find("PR_SET_MDWE"), std::string::npos) << md.err();
  EXPECT_EQ(t.ask("run 20"), "sum " + std::to_string(run_sum(20)));
  expect_code_as_in_file(t.pid(), BPFVM_AGENT_INJECT_TARGET, "local_mul");
  EXPECT_EQ(t.quit(), 0);
}

// --pinmaps DIR in agent mode: the maps are pinned there, read by other processes while the trace
// runs (bpfvm map dump pinned) and after it.
TEST_F(AgentInject, PinmapsAreSharedWithOtherProcesses) {
  char d[] = "/dev/shm/bpfvm-inject-pin-XXXXXX";
  ASSERT_NE(mkdtemp(d), nullptr);
  std::string dir = d;
  auto dump_count = [&](uint32_t key) -> int64_t {
    std::string cmd = bpfvm_bin() + " map lookup pinned " + dir + "/counts key " + std::to_string(key) +
                      " 0 0 0 -j 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded() || !j.contains("value")) return -1;
    auto v = j["value"].get<std::vector<std::string>>();
    uint64_t val = 0;
    for (size_t i = 0; i < v.size() && i < 8; ++i) val |= std::stoull(v[i], nullptr, 16) << (8 * i);
    return static_cast<int64_t>(val);
  };
  Target t;
  ASSERT_TRUE(t.ready());
  {
    Trace tr("--pinmaps " + dir + " " + probes_args(t.pid()));
    ASSERT_TRUE(tr.wait_err(kAttached)) << tr.err();
    EXPECT_EQ(t.ask("run 40"), "sum " + std::to_string(run_sum(40)));
    EXPECT_EQ(dump_count(4), 40) << "seen by another process while the trace runs";
    ASSERT_EQ(tr.finish(SIGINT), 0) << tr.err();
    EXPECT_EQ(tr.map("counts")[4], 40u);
  }
  EXPECT_EQ(dump_count(4), 40) << "the pinned maps outlive the trace";
  // A command run in agent mode uses the same pinned maps (reused: the counts go on).
  Trace cmd("--mode agent --pinmaps " + dir + " " + progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" +
            BPFVM_AGENT_TARGET + ":local_mul -- " + BPFVM_AGENT_TARGET + " 10");
  ASSERT_EQ(cmd.finish(0), 0) << cmd.err();
  EXPECT_EQ(cmd.map("counts")[4], 50u) << cmd.err();
  EXPECT_EQ(dump_count(4), 50);
  EXPECT_EQ(t.quit(), 0);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace bpfvm
