// The ptrace event source with real programs (tests/progs/tr_*.bpf.c) on the test workload
// (tests/trace_workload.c): counts, records, a deny policy, exit statuses, signals, detaching, and
// the kernel as the oracle (the same objects attached with libbpf, the same workload).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "bpfvm/helpers.hpp"
#include "agent/syscalls.hpp"
#include "bpfvm/trace.hpp"
#include "test_util.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using MapDump = std::map<Bytes, Bytes>;

std::string progs(const char* name) { return std::string(BPFVM_PROGS_DIR) + "/" + name; }
// The kernel runs the comparison programs system-wide, filtered by the workload's name: a workload
// that another test process runs at the same time would show up in the kernel's counts. Every test
// process that starts the workload holds a shared lock on this file from then on; the kernel
// comparison holds it exclusively while its programs are attached.
int workload_lock_fd() {
  static int fd = [] {
    int f = open("/tmp/bpfvm-tests-tr_workload.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f >= 0) flock(f, LOCK_SH);
    return f;
  }();
  return fd;
}
const char* workload() {
  workload_lock_fd();
  return BPFVM_TR_WORKLOAD;
}
struct ExclusiveWorkload {
  ExclusiveWorkload() { flock(workload_lock_fd(), LOCK_EX); }
  ~ExclusiveWorkload() { flock(workload_lock_fd(), LOCK_SH); }
};

// A scratch directory per test.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/bpfvm-trace-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct TraceRun {
  PtraceResult res;
  std::vector<Bytes> records;
  std::vector<std::string> printk;
  std::map<std::string, MapDump> maps;
};

MapDump dump_map(Map& m) {
  MapDump out;
  const MapSpec& s = m.spec();
  Bytes key(s.key_size), next(s.key_size), value(m.user_value_size());
  bool first = true;
  while (m.get_next_key(first ? nullptr : key.data(), next.data()) == 0) {
    first = false;
    key = next;
    if (m.lookup_copy(key.data(), value.data(), 0) == 0) out[key] = value;
  }
  return out;
}

// The object under bpfvm trace (ptrace), with the workload's argv.
TraceRun bpfvm_run(const std::string& object, std::vector<std::string> argv, PtraceOptions popt = {},
                   SyscallHooksOptions ho = {}) {
  TraceRun run;
  auto obj = load_object_file(object);
  EXPECT_TRUE(obj) << (obj ? "" : obj.error().message);
  if (!obj) return run;
  auto hooks = SyscallHooks::create(*obj, ho);
  EXPECT_TRUE(hooks) << (hooks ? "" : hooks.error().message);
  if (!hooks) return run;
  auto& h = **hooks;
  h.set_record_sink([&](const TraceRecord& r) { run.records.emplace_back(r.data.begin(), r.data.end()); });
  set_printk_sink([&](std::string_view m) { run.printk.emplace_back(m); });
  popt.argv = std::move(argv);
  auto res = run_ptrace(h, popt);
  set_printk_sink(nullptr);
  EXPECT_TRUE(res) << (res ? "" : res.error().message);
  if (res) run.res = *res;
  for (const auto& e : h.run_errors()) ADD_FAILURE() << e;
  for (size_t i = 0; i < h.loaded().maps.size(); ++i) {
    if (h.loaded().object->maps[i].is_global_data()) continue;
    Map& m = *h.loaded().maps[i];
    if (m.spec().type == kMapHash || m.spec().type == kMapArray) run.maps[m.spec().name] = dump_map(m);
  }
  return run;
}

uint64_t u64_at(const MapDump& m, uint32_t key) {
  Bytes k(4);
  std::memcpy(k.data(), &key, 4);
  auto it = m.find(k);
  if (it == m.end() || it->second.size() < 8) return 0;
  uint64_t v;
  std::memcpy(&v, it->second.data(), 8);
  return v;
}

// The opensnoop record (tr_opensnoop.bpf.c: struct event) without its ids.
struct OpenEvent {
  uint32_t uid;
  int ret;
  long flags;
  std::string comm, fname;
  auto key() const { return std::tie(fname, ret, flags, comm, uid); }
  bool operator<(const OpenEvent& o) const { return key() < o.key(); }
  bool operator==(const OpenEvent& o) const { return key() == o.key(); }
};
std::vector<OpenEvent> open_events(const std::vector<Bytes>& recs) {
  std::vector<OpenEvent> out;
  for (const Bytes& r : recs) {
    if (r.size() < 4 * 4 + 8 + 16 + 128) continue;
    OpenEvent e;
    std::memcpy(&e.uid, r.data() + 8, 4);
    std::memcpy(&e.ret, r.data() + 12, 4);
    std::memcpy(&e.flags, r.data() + 16, 8);
    e.comm = std::string(reinterpret_cast<const char*>(r.data() + 24), strnlen(reinterpret_cast<const char*>(r.data() + 24), 16));
    e.fname = std::string(reinterpret_cast<const char*>(r.data() + 40), strnlen(reinterpret_cast<const char*>(r.data() + 40), 128));
    out.push_back(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(PtraceTrace, CountsEverySyscallOfTheWorkload) {
  TempDir dir;
  auto run = bpfvm_run(progs("tr_count.bpf.o"), {workload(), dir.path, "basic"});
  EXPECT_TRUE(run.res.started);
  EXPECT_EQ(run.res.exit_code, 0);
  EXPECT_FALSE(run.res.filtered);  // raw_syscalls: every syscall stops
  const MapDump& counts = run.maps["counts"];
  EXPECT_EQ(u64_at(counts, 110), 5u + 2 * 3 + 2) << "getppid: main, two threads, the child";
  EXPECT_GE(u64_at(counts, 257), 6u) << "openat";
  EXPECT_GE(u64_at(run.maps["errors"], 257), 1u) << "the failed openat";
  EXPECT_EQ(u64_at(counts, 231), 2u) << "exit_group: the workload and its child";
}

TEST(PtraceTrace, OpenSnoopRecordsWithAndWithoutTheFilter) {
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  auto run = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv);
  EXPECT_TRUE(run.res.filtered);
  EXPECT_EQ(run.res.exit_code, 0);
  auto ev = open_events(run.records);
  auto count = [&](const std::string& f, int ret) {
    return std::count_if(ev.begin(), ev.end(), [&](const OpenEvent& e) { return e.fname == f && e.ret == ret; });
  };
  auto count_ok = [&](const std::string& f) {
    return std::count_if(ev.begin(), ev.end(), [&](const OpenEvent& e) { return e.fname == f && e.ret >= 0; });
  };
  EXPECT_EQ(count("/nonexistent/bpfvm-trace-test", -2), 1);
  EXPECT_EQ(count_ok("/dev/zero"), 2);
  EXPECT_EQ(count_ok("/dev/null"), 2);
  EXPECT_EQ(count_ok((dir.path / "created.txt").string()), 1);
  for (const auto& e : ev) {
    EXPECT_EQ(e.comm, "tr_workload");
    EXPECT_EQ(e.uid, getuid());
  }
  // Without the seccomp filter (every syscall stops) the programs see exactly the same.
  PtraceOptions all;
  all.seccomp = false;
  auto run2 = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv, all);
  EXPECT_FALSE(run2.res.filtered);
  EXPECT_EQ(open_events(run2.records), ev);
  EXPECT_GT(run2.res.stops, run.res.stops);
}

TEST(PtraceTrace, RawTracepointsSeeTheRegisters) {
  TempDir dir;
  auto run = bpfvm_run(progs("tr_rawtp.bpf.o"), {workload(), dir.path, "basic"});
  EXPECT_EQ(run.res.exit_code, 0);
  const Bytes& t = run.maps["totals"].begin()->second;
  ASSERT_EQ(t.size(), 32u);
  uint64_t v[4];
  std::memcpy(v, t.data(), 32);
  EXPECT_EQ(v[0], 13u);  // getppid
  EXPECT_GE(v[1], static_cast<uint64_t>(O_WRONLY | O_CREAT | O_TRUNC) + O_WRONLY);  // flags of the opens
  EXPECT_GE(v[2], 1u);   // failed openat
  EXPECT_GE(v[3], 6u);   // openat exits
  bool printed = std::any_of(run.printk.begin(), run.printk.end(),
                             [](const std::string& s) { return s.find("openat failed: -2") != std::string::npos; });
  EXPECT_TRUE(printed);
}

TEST(PtraceTrace, DenyPolicyOverridesUnlinkat) {
  TempDir dir;
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  // The workload prints the errno of each unlinkat: capture its stdout.
  int saved = dup(1);
  dup2(out[1], 1);
  auto run = bpfvm_run(progs("tr_deny.bpf.o"), {workload(), dir.path, "unlink"});
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  close(out[1]);
  char buf[256] = {};
  ssize_t n = read(out[0], buf, sizeof buf - 1);
  close(out[0]);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf).find("protected: 1\n"), std::string::npos) << buf;  // EPERM
  EXPECT_NE(std::string(buf).find("scratch: 0\n"), std::string::npos) << buf;
  EXPECT_TRUE(fs::exists(dir.path / "protected.txt"));
  EXPECT_FALSE(fs::exists(dir.path / "scratch.txt"));
  EXPECT_EQ(u64_at(run.maps["stats"], 0), 2u);
  EXPECT_EQ(u64_at(run.maps["stats"], 1), 1u);
  ASSERT_EQ(run.printk.size(), 1u);
  EXPECT_NE(run.printk[0].find("denied unlinkat of protected.txt"), std::string::npos);
}

TEST(PtraceTrace, ExitStatusesAndSignals) {
  auto obj = progs("tr_rawtp.bpf.o");
  EXPECT_EQ(bpfvm_run(obj, {workload(), "-", "exit", "3"}).res.exit_code, 3);
  EXPECT_EQ(bpfvm_run(obj, {workload(), "-", "signal", "15"}).res.exit_code, 128 + 15);
  EXPECT_EQ(bpfvm_run(obj, {workload(), "-", "signals"}).res.exit_code, 0) << "SIGUSR1 x3 reach the handler";
  // A shell that forks and execs the workload, then exits with its own status: the workload's
  // opens are seen after its exec, in a grandchild of bpfvm.
  TempDir dir;
  auto sh = bpfvm_run(progs("tr_opensnoop.bpf.o"),
                      {"/bin/sh", "-c", std::string(workload()) + " " + dir.path.string() + " basic; exit 4"});
  EXPECT_EQ(sh.res.exit_code, 4);
  auto ev = open_events(sh.records);
  EXPECT_EQ(std::count_if(ev.begin(), ev.end(), [](const OpenEvent& e) { return e.fname == "/dev/zero"; }), 2);
  auto bad = bpfvm_run(obj, {"/nonexistent/bpfvm-no-such-command"});
  EXPECT_FALSE(bad.res.started);
  EXPECT_EQ(bad.res.exit_code, 127);
  EXPECT_NE(bad.res.start_error.find("No such file or directory"), std::string::npos) << bad.res.start_error;
}

TEST(PtraceTrace, TaskHelpersPerfOutputAndSignals) {
  // getppid: from main (5), two threads (3 each) and the child (2); each record carries the ids of
  // the calling thread.
  TempDir dir;
  auto obj = load_object_file(progs("tr_misc.bpf.o"));
  ASSERT_TRUE(obj) << obj.error().message;
  auto hooks = SyscallHooks::create(*obj);
  ASSERT_TRUE(hooks) << hooks.error().message;
  std::vector<std::pair<uint64_t, uint64_t>> recs;
  (*hooks)->set_record_sink([&](const TraceRecord& r) {
    EXPECT_TRUE(r.perf);
    EXPECT_EQ(r.map, "perf");
    // The 16 bytes, padded as the kernel pads PERF_SAMPLE_RAW (u32 size + data to a multiple of 8).
    ASSERT_EQ(r.data.size(), 20u);
    uint64_t v[2];
    std::memcpy(v, r.data.data(), 16);
    recs.emplace_back(v[0], v[1]);
  });
  PtraceOptions o;
  o.argv = {workload(), dir.path.string(), "basic"};
  auto res = run_ptrace(**hooks, o);
  ASSERT_TRUE(res);
  (*hooks)->drain();
  EXPECT_EQ(res->exit_code, 0);
  ASSERT_EQ(recs.size(), 13u);
  std::map<uint32_t, int> per_tgid;
  std::set<uint32_t> tids;
  for (auto [pid_tgid, uid_gid] : recs) {
    per_tgid[static_cast<uint32_t>(pid_tgid >> 32)]++;
    tids.insert(static_cast<uint32_t>(pid_tgid));
    EXPECT_EQ(uid_gid, (static_cast<uint64_t>(getgid()) << 32) | getuid());
  }
  ASSERT_EQ(per_tgid.size(), 2u);  // the workload and its child
  EXPECT_EQ(per_tgid.begin()->second + std::next(per_tgid.begin())->second, 13);
  EXPECT_EQ(tids.size(), 4u);      // main, two threads, the child
  // A bad user pointer: -EFAULT, as the kernel's bpf_probe_read_user.
  const LoadedObject& live = (*hooks)->loaded();
  const GlobalVar* g = obj->find_global("bad_read");
  ASSERT_NE(g, nullptr);
  int64_t v;
  std::memcpy(&v, live.data(g->map) + g->offset, 8);
  EXPECT_EQ(v, -14);

  // bpf_send_signal: the workload's handler runs once.
  auto hooks2 = SyscallHooks::create(*obj);
  ASSERT_TRUE(hooks2);
  o.argv = {workload(), "-", "sendsig"};
  auto res2 = run_ptrace(**hooks2, o);
  ASSERT_TRUE(res2);
  EXPECT_EQ(res2->exit_code, 0) << "SIGUSR2 from bpf_send_signal reached the handler";
  const GlobalVar* s = obj->find_global("signal_ret");
  ASSERT_NE(s, nullptr);
  int64_t sr;
  std::memcpy(&sr, (*hooks2)->loaded().data(s->map) + s->offset, 8);
  EXPECT_EQ(sr, 0);
}

TEST(PtraceTrace, VforkAndJobControl) {
  auto totals = [](const TraceRun& r) {
    uint64_t v = 0;
    auto it = r.maps.find("totals");
    if (it != r.maps.end() && !it->second.empty()) std::memcpy(&v, it->second.begin()->second.data(), 8);
    return v;
  };
  auto v = bpfvm_run(progs("tr_rawtp.bpf.o"), {workload(), "-", "vfork"});
  EXPECT_EQ(v.res.exit_code, 0);
  EXPECT_EQ(totals(v), 2u) << "getppid in the vfork child and in the parent";
  // A tracee stopped by SIGSTOP stays stopped (its parent sees it) until SIGCONT.
  auto s = bpfvm_run(progs("tr_rawtp.bpf.o"), {workload(), "-", "stopcont"});
  EXPECT_EQ(s.res.exit_code, 0) << "1: the stop was not seen, 2: the exit was not, 142: it hung";
  EXPECT_EQ(totals(s), 1u);
}

TEST(PtraceTrace, I386SystemCallsAreReportedNotTraced) {
  if (std::system((std::string(workload()) + " - int80").c_str()) != 0)
    GTEST_SKIP() << "this kernel runs no i386 system calls (no IA32 emulation)";
  for (bool every : {true, false}) {
    std::string notes;
    PtraceOptions o;
    o.note = [&](const std::string& m) { notes += m + "\n"; };
    // tr_rawtp stops at every syscall; tr_opensnoop behind the filter, which sends i386 calls to
    // the tracer too.
    auto run = bpfvm_run(progs(every ? "tr_rawtp.bpf.o" : "tr_opensnoop.bpf.o"), {workload(), "-", "int80"}, o);
    EXPECT_EQ(run.res.exit_code, 0);
    EXPECT_NE(notes.find("makes 32-bit (i386) system calls; they are not traced"), std::string::npos) << notes;
    if (every) {
      uint64_t v;
      std::memcpy(&v, run.maps["totals"].begin()->second.data(), 8);
      EXPECT_EQ(v, 1u) << "the 64-bit getppid counts; the i386 getpid (20) is not taken for another syscall";
    }
  }
}

bool wait_for_file(const fs::path& p, int ms) {
  for (int i = 0; i < ms / 10; ++i) {
    if (fs::exists(p) && fs::file_size(p) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(PtraceTrace, DurationDetachesAndTheCommandGoesOn) {
  TempDir dir;
  fs::path done = dir.path / "done";
  PtraceOptions o;
  o.duration = 0.2;
  auto run = bpfvm_run(progs("tr_rawtp.bpf.o"), {workload(), "-", "sleep", "600", done.string()}, o);
  EXPECT_TRUE(run.res.detached) << "tracing ended before the command did";
  EXPECT_EQ(run.res.exit_code, 0);
  uint64_t v;
  std::memcpy(&v, run.maps["totals"].begin()->second.data(), 8);
  EXPECT_GT(v, 5u) << "getppid calls during the first 0.3 s";
  // The detached command is still this process's child: wait until it has gone, so that its last
  // system calls can never reach another test's kernel comparison (which counts by name).
  int st = 0;
  if (waitpid(-1, &st, 0) > 0) EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_TRUE(wait_for_file(done, 5000)) << "the command finished after bpfvm detached";
}

TEST(PtraceTrace, AttachToARunningProcess) {
  TempDir dir;
  fs::path done = dir.path / "done";
  pid_t pid = fork();
  if (pid == 0) {
    execl(workload(), workload(), "-", "sleep", "600", done.c_str(), nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto obj = load_object_file(progs("tr_rawtp.bpf.o"));
  ASSERT_TRUE(obj);
  auto hooks = SyscallHooks::create(*obj);
  ASSERT_TRUE(hooks);
  PtraceOptions o;
  o.pid = pid;
  o.duration = 0.2;
  std::string notes;
  o.note = [&](const std::string& m) { notes += m; };
  auto res = run_ptrace(**hooks, o);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_TRUE(res->detached);
  EXPECT_NE(notes.find("no seccomp filter"), std::string::npos);
  uint64_t v;
  int mi = (*hooks)->loaded().object->find_map("totals");
  ASSERT_GE(mi, 0);
  std::memcpy(&v, dump_map(*(*hooks)->loaded().maps[static_cast<size_t>(mi)]).begin()->second.data(), 8);
  EXPECT_GT(v, 5u);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_TRUE(fs::exists(done));
}

// ---- the CLI -------------------------------------------------------------------------------------

std::string bpfvm_bin() {
  const char* b = std::getenv("BPFVM_BIN");
  return b ? b : std::string(BPFVM_BINARY_DIR) + "/bpfvm";
}

int run_cli(const std::string& args, std::string* out) {
  std::string cmd = bpfvm_bin() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(TraceCli, ExitCodesOutputAndRefusals) {
  std::string out;
  EXPECT_EQ(run_cli("trace " + progs("tr_rawtp.bpf.o") + " -- " + workload() + " - exit 7", &out), 7) << out;
  EXPECT_NE(out.find("maps:"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run_cli("trace " + progs("tr_rawtp.bpf.o") + " -- /nonexistent/cmd", &out), 127) << out;
  EXPECT_NE(out.find("cannot run /nonexistent/cmd: No such file or directory"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run_cli("trace " + progs("tr_rawtp.bpf.o") + " --attach rawtp_enter=kprobe/do_sys_openat2 -- true", &out),
            1) << out;
  EXPECT_NE(out.find("not a system call entry"), std::string::npos) << out;
  out.clear();
  TempDir dir;
  EXPECT_EQ(run_cli("trace -j " + progs("tr_opensnoop.bpf.o") + " -- " + workload() + " " + dir.path.string() +
                        " basic",
                    &out),
            0) << out;
  int records = 0;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains("data")) {
      EXPECT_EQ(j["map"], "events");
      EXPECT_EQ(j["type"], 9);
      EXPECT_EQ(j["data"].size(), 4u * 4 + 8 + 16 + 128);
      ++records;
    }
  }
  EXPECT_GE(records, 6);
}

// --event-type: records decoded by the object's BTF, under -j as bpftool's "formatted" member and in
// the text form as its plain dump (execsnoop's records are shorter than its struct: the rest reads as
// zeros); a type or map the object does not have is a usage error.
TEST(TraceCli, EventTypeDecodesRecords) {
  std::string out;
  const std::string cmd = " -- " + std::string(workload()) + " - exec";
  ASSERT_EQ(run_cli("trace -j --event-type event " + progs("tr_execsnoop.bpf.o") + cmd, &out), 0) << out;
  std::map<std::string, int> retval_by_file;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    if (!j.contains("data")) continue;
    ASSERT_TRUE(j.contains("formatted")) << line;
    const auto& f = j["formatted"];
    EXPECT_EQ(f["comm"], "tr_workload") << line;
    uint32_t pid = j["data"][0].get<uint32_t>() | j["data"][1].get<uint32_t>() << 8 |
                   j["data"][2].get<uint32_t>() << 16 | j["data"][3].get<uint32_t>() << 24;
    EXPECT_EQ(f["pid"].get<uint32_t>(), pid) << line;
    retval_by_file[f["args"].get<std::string>()] = f["retval"].get<int>();
  }
  // The failed execve (ENOENT) and the child's exec of the workload itself (args start with its path).
  EXPECT_EQ(retval_by_file["/nonexistent/bpfvm-no-such-binary"], -2) << out;
  EXPECT_EQ(retval_by_file[workload()], 0) << out;
  out.clear();
  ASSERT_EQ(run_cli("trace --event-type events=event " + progs("tr_execsnoop.bpf.o") + cmd, &out), 0) << out;
  EXPECT_NE(out.find("\"args\": \"/nonexistent/bpfvm-no-such-binary\""), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run_cli("trace --event-type no_such_type " + progs("tr_execsnoop.bpf.o") + " -- true", &out), 2) << out;
  EXPECT_NE(out.find("no type named 'no_such_type'"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run_cli("trace --event-type nomap=event " + progs("tr_execsnoop.bpf.o") + " -- true", &out), 2) << out;
  EXPECT_NE(out.find("no map 'nomap'"), std::string::npos) << out;
}

// As an unprivileged user (setpriv, when the tests run as root): the seccomp filter goes in with
// no_new_privs, and a set-user-ID command is traced without its identity, with a warning.
TEST(TraceCli, UnprivilegedUserAndSetuidCommand) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged user";
  if (std::system("command -v setpriv >/dev/null 2>&1") != 0) GTEST_SKIP() << "setpriv is not installed";
  struct stat st;
  if (stat("/bin/su", &st) != 0 || !(st.st_mode & S_ISUID)) GTEST_SKIP() << "no set-user-ID /bin/su";
  std::string out;
  int rc = run_cli("trace " + progs("tr_rawtp.bpf.o") + " -- /bin/su --version", &out);
  (void)rc;
  std::string cmd = "cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups " + bpfvm_bin() + " trace " +
                    progs("tr_rawtp.bpf.o") + " -- /bin/su --version 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int status = pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("/bin/su is set-user-ID: traced, it runs without that identity"), std::string::npos) << text;
  EXPECT_EQ(out.find("set-user-ID"), std::string::npos) << "as root the identity is kept: no warning\n" << out;
}

// ---- the kernel as the oracle ---------------------------------------------------------------------

struct KernelRun {
  std::vector<Bytes> records;
  std::map<std::string, MapDump> maps;
};

int on_ringbuf(void* ctx, void* data, size_t size) {
  auto* recs = static_cast<std::vector<Bytes>*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  recs->emplace_back(p, p + size);
  return 0;
}
void on_perf_sample(void* ctx, int, void* data, __u32 size) { on_ringbuf(ctx, data, size); }

// Loads and attaches the object in the kernel with libbpf and runs the workload; nullopt (and why)
// when the kernel cannot (no tracefs, no BPF, an attach it refuses).
std::optional<KernelRun> kernel_run(const std::string& object, const std::vector<std::string>& argv, std::string* why) {
  if (!fs::exists("/sys/kernel/tracing/events")) {
    fs::create_directories("/sys/kernel/tracing");
    mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr);
  }
  if (!fs::exists("/sys/kernel/tracing/events/syscalls")) {
    *why = "tracefs with syscall events is not available";
    return std::nullopt;
  }
  libbpf_set_print(nullptr);
  bpf_object* o = bpf_object__open_file(object.c_str(), nullptr);
  if (!o || libbpf_get_error(o)) {
    *why = "libbpf cannot open " + object;
    return std::nullopt;
  }
  ExclusiveWorkload only_this_workload;
  std::vector<bpf_link*> links;
  ring_buffer* rb = nullptr;
  perf_buffer* pb = nullptr;
  KernelRun kr;
  auto cleanup = [&] {
    if (rb) ring_buffer__free(rb);
    if (pb) perf_buffer__free(pb);
    for (auto* l : links) bpf_link__destroy(l);
    bpf_object__close(o);
  };
  if (int err = bpf_object__load(o); err) {
    *why = "the kernel does not load " + object + ": " + std::strerror(-err);
    cleanup();
    return std::nullopt;
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, o) {
    bpf_link* l = bpf_program__attach(prog);
    if (!l || libbpf_get_error(l)) {
      *why = std::string("the kernel cannot attach ") + bpf_program__name(prog) + " (" + bpf_program__section_name(prog) + ")";
      cleanup();
      return std::nullopt;
    }
    links.push_back(l);
  }
  bpf_map* map;
  bpf_object__for_each_map(map, o) {
    if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF) rb = ring_buffer__new(bpf_map__fd(map), on_ringbuf, &kr.records, nullptr);
    if (bpf_map__type(map) == BPF_MAP_TYPE_PERF_EVENT_ARRAY)
      pb = perf_buffer__new(bpf_map__fd(map), 64, on_perf_sample, nullptr, &kr.records, nullptr);
  }
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> av;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    execv(av[0], av.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (rb) ring_buffer__consume(rb);
  if (pb) perf_buffer__consume(pb);
  bpf_object__for_each_map(map, o) {
    auto type = bpf_map__type(map);
    if (type != BPF_MAP_TYPE_HASH && type != BPF_MAP_TYPE_ARRAY) continue;
    if (std::string(bpf_map__name(map)).find('.') != std::string::npos) continue;  // global data
    MapDump d;
    Bytes key(bpf_map__key_size(map)), next(key.size()), value(bpf_map__value_size(map));
    int fd = bpf_map__fd(map);
    bool first = true;
    while (bpf_map_get_next_key(fd, first ? nullptr : key.data(), next.data()) == 0) {
      first = false;
      key = next;
      if (bpf_map_lookup_elem(fd, key.data(), value.data()) == 0) d[key] = value;
    }
    kr.maps[bpf_map__name(map)] = d;
  }
  cleanup();
  return kr;
}

TEST(PtraceVsKernel, SyscallCountsMatch) {
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  std::string why;
  auto k = kernel_run(progs("tr_count.bpf.o"), argv, &why);
  if (!k) GTEST_SKIP() << why;
  auto b = bpfvm_run(progs("tr_count.bpf.o"), argv);
  // Every syscall the workload makes, counted by the kernel and by bpfvm.
  EXPECT_EQ(b.maps["counts"], k->maps["counts"]);
  EXPECT_EQ(b.maps["errors"], k->maps["errors"]);
  EXPECT_GT(k->maps["counts"].size(), 10u);
}

TEST(PtraceVsKernel, OpenSnoopRecordsMatch) {
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  std::string why;
  auto k = kernel_run(progs("tr_opensnoop.bpf.o"), argv, &why);
  if (!k) GTEST_SKIP() << why;
  auto b = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv);
  auto ke = open_events(k->records), be = open_events(b.records);
  EXPECT_GE(ke.size(), 6u);
  EXPECT_EQ(be, ke);
}

TEST(PtraceVsKernel, RawTracepointTotalsMatch) {
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  std::string why;
  auto k = kernel_run(progs("tr_rawtp.bpf.o"), argv, &why);
  if (!k) GTEST_SKIP() << why;
  auto b = bpfvm_run(progs("tr_rawtp.bpf.o"), argv);
  EXPECT_EQ(b.maps["totals"], k->maps["totals"]);
}


// ---- libbpf-tools style programs: CO-RE contexts, execsnoop, the syscall kprobe macros ----------

namespace {

bool has_core_relos(const std::string& object) {
  auto obj = load_object_file(object);
  if (!obj) return false;
  for (const auto& p : obj->programs)
    if (!p.core_relos.empty()) return true;
  return false;
}

// tr_execsnoop.bpf.c's struct event without the pid, and the parent as who it is ("test": this
// process; "workload": the process of another record): the rest is what the kernel gives.
struct ExecEvent {
  std::string parent;
  uint32_t uid;
  int retval, args_count;
  std::string comm;
  std::vector<std::string> args;
  auto key() const { return std::tie(args, retval, args_count, comm, uid, parent); }
  bool operator<(const ExecEvent& o) const { return key() < o.key(); }
  bool operator==(const ExecEvent& o) const { return key() == o.key(); }
};
std::vector<ExecEvent> exec_events(const std::vector<Bytes>& recs) {
  constexpr size_t kBase = 40;  // offsetof(struct event, args)
  std::vector<ExecEvent> out;
  std::set<uint32_t> pids;
  for (const Bytes& r : recs) {
    uint32_t pid;
    if (r.size() >= 4) std::memcpy(&pid, r.data(), 4), pids.insert(pid);
  }
  for (const Bytes& r : recs) {
    EXPECT_GE(r.size(), kBase);
    if (r.size() < kBase) continue;
    ExecEvent e;
    uint32_t ppid, args_size;
    std::memcpy(&ppid, r.data() + 4, 4);
    std::memcpy(&e.uid, r.data() + 8, 4);
    std::memcpy(&e.retval, r.data() + 12, 4);
    std::memcpy(&e.args_count, r.data() + 16, 4);
    std::memcpy(&args_size, r.data() + 20, 4);
    e.parent = ppid == static_cast<uint32_t>(getpid()) ? "test" : pids.count(ppid) ? "workload" : std::to_string(ppid);
    e.comm = std::string(reinterpret_cast<const char*>(r.data() + 24), strnlen(reinterpret_cast<const char*>(r.data() + 24), 16));
    // The record is cut to the arguments (perf pads it to 8 bytes with its 4-byte size).
    EXPECT_GE(r.size(), kBase + args_size);
    EXPECT_LT(r.size(), kBase + args_size + 8);
    for (size_t at = kBase; at < std::min<size_t>(r.size(), kBase + args_size);) {
      const char* s = reinterpret_cast<const char*>(r.data() + at);
      size_t n = strnlen(s, r.size() - at);
      e.args.emplace_back(s, n);
      at += n + 1;
    }
    out.push_back(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(PtraceVsKernel, OpenSnoopWithCoreRecordsMatch) {
  const std::string object = progs("tr_opensnoop_core.bpf.o");
  ASSERT_TRUE(has_core_relos(object)) << "the context's fields are relocated by CO-RE";
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  auto b = bpfvm_run(object, argv);
  EXPECT_EQ(b.res.exit_code, 0);
  auto be = open_events(b.records);
  // The same records as the opensnoop without CO-RE.
  auto plain = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv);
  EXPECT_EQ(be, open_events(plain.records));
  EXPECT_EQ(u64_at(b.maps["results"], 1), 1u) << "the failed openat";
  EXPECT_EQ(u64_at(b.maps["results"], 0) + 1, be.size());
  EXPECT_TRUE(b.maps["start"].empty());
  std::string why;
  auto k = kernel_run(object, argv, &why);
  if (!k) GTEST_SKIP() << why;
  EXPECT_EQ(be, open_events(k->records));
  EXPECT_EQ(b.maps["results"], k->maps["results"]);
  EXPECT_EQ(b.maps["start"], k->maps["start"]);
}

TEST(PtraceVsKernel, ExecSnoopRecordsMatch) {
  const std::string object = progs("tr_execsnoop.bpf.o");
  std::vector<std::string> argv = {workload(), "-", "exec"};
  auto b = bpfvm_run(object, argv);
  EXPECT_EQ(b.res.exit_code, 0);
  auto be = exec_events(b.records);
  // The failed execve, and the child's that runs the workload again (its first 5 arguments
  // copied, 7 counted); the initial exec of the command is not seen (events start after it).
  ASSERT_EQ(be.size(), 2u);
  const ExecEvent& bad = be[0].retval < 0 ? be[0] : be[1];
  const ExecEvent& good = be[0].retval < 0 ? be[1] : be[0];
  EXPECT_EQ(bad.retval, -2);
  EXPECT_EQ(bad.args, (std::vector<std::string>{"/nonexistent/bpfvm-no-such-binary", "x"}));
  EXPECT_EQ(bad.args_count, 2);
  EXPECT_EQ(bad.parent, "test") << "the workload's parent: this process";
  EXPECT_EQ(good.parent, "workload") << "the child's parent: the workload";
  EXPECT_EQ(good.retval, 0);
  EXPECT_EQ(good.args,
            (std::vector<std::string>{workload(), "-", "exit", "0", "an argument with spaces", "6th"}));
  EXPECT_EQ(good.args_count, 7);
  for (const auto& e : be) {
    EXPECT_EQ(e.comm, "tr_workload");
    EXPECT_EQ(e.uid, getuid());
  }
  EXPECT_TRUE(b.maps["execs"].empty());
  std::string why;
  auto k = kernel_run(object, argv, &why);
  if (!k) GTEST_SKIP() << why;
  EXPECT_EQ(be, exec_events(k->records));
  EXPECT_EQ(b.maps["execs"], k->maps["execs"]);
}

// The kernel here has no kprobes: the macros' programs are checked by what they see, against the
// tracepoints' view of the same workload (bpfvm's, and the kernel's where it can attach them).
TEST(PtraceTrace, SyscallKprobeMacrosSeeArgumentsAndResults) {
  const std::string object = progs("tr_ksyscall.bpf.o");
  ASSERT_TRUE(has_core_relos(object)) << "BPF_KSYSCALL reads the user's registers with CO-RE";
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  auto b = bpfvm_run(object, argv);
  EXPECT_EQ(b.res.exit_code, 0);
  EXPECT_TRUE(b.res.filtered) << "only getppid and openat stop the workload";
  auto ke = open_events(b.records);
  auto tp = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv);
  auto te = open_events(tp.records);
  EXPECT_GE(ke.size(), 6u);
  EXPECT_EQ(ke, te) << "file names, flags and results as the tracepoints see them";
  EXPECT_EQ(u64_at(b.maps["counts"], 0), 13u) << "getppid: main 5, threads 3 + 3, child 2";
  EXPECT_EQ(u64_at(b.maps["counts"], 1), ke.size()) << "every openat has dfd AT_FDCWD";
  EXPECT_EQ(u64_at(b.maps["counts"], 2), ke.size());
  EXPECT_TRUE(b.maps["start"].empty());
  std::string why;
  auto k = kernel_run(progs("tr_opensnoop.bpf.o"), argv, &why);
  if (!k) GTEST_SKIP() << why;
  EXPECT_EQ(ke, open_events(k->records));
}

// ---- bpf_get_current_task ------------------------------------------------------------------------

namespace {

// tr_task.bpf.c's struct view with the ids replaced by what they are to each other and to the test
// (so that the kernel's run and bpfvm's compare).
struct TaskView {
  bool main_thread, pid_is_tid, tgid_is_tgid, leader_is_tgid, btf_tgid_is_tgid, ppid_is_getppid;
  std::string parent;  // "test" (this process), "workload" (the workload's main thread), or the pid
  uint32_t uid, calls;
  std::string comm;
  auto key() const {
    return std::tie(main_thread, pid_is_tid, tgid_is_tgid, leader_is_tgid, btf_tgid_is_tgid, ppid_is_getppid, parent, uid, calls,
                    comm);
  }
  bool operator<(const TaskView& o) const { return key() < o.key(); }
  bool operator==(const TaskView& o) const { return key() == o.key(); }
};
std::ostream& operator<<(std::ostream& os, const TaskView& v) {
  return os << "{main " << v.main_thread << " pid=tid " << v.pid_is_tid << " tgid " << v.tgid_is_tgid << " leader " << v.leader_is_tgid
            << " btf_tgid " << v.btf_tgid_is_tgid << " ppid=getppid " << v.ppid_is_getppid << " parent " << v.parent
            << " uid " << v.uid << " calls " << v.calls << " comm " << v.comm << "}";
}

std::vector<TaskView> task_views(const MapDump& views, uint64_t started_ns, uint64_t ended_ns) {
  struct Raw {
    uint32_t tgid, tid;
    int32_t task_pid, task_tgid, ppid, leader_pid;
    uint32_t uid;
    int32_t getppid_ret;
    uint32_t calls;
    int32_t btf_tgid;
    uint64_t start_time;
    char comm[16];
  };
  static_assert(sizeof(Raw) == 64);
  std::vector<Raw> raws;
  std::set<int32_t> tgids;
  for (const auto& [k, v] : views) {
    EXPECT_EQ(v.size(), sizeof(Raw));
    if (v.size() != sizeof(Raw)) continue;
    Raw r;
    std::memcpy(&r, v.data(), sizeof r);
    raws.push_back(r);
    tgids.insert(static_cast<int32_t>(r.tgid));
  }
  std::vector<TaskView> out;
  for (const Raw& r : raws) {
    TaskView t;
    t.main_thread = r.tid == r.tgid;
    t.pid_is_tid = r.task_pid == static_cast<int32_t>(r.tid);
    t.tgid_is_tgid = r.task_tgid == static_cast<int32_t>(r.tgid);
    t.leader_is_tgid = r.leader_pid == static_cast<int32_t>(r.tgid);
    t.btf_tgid_is_tgid = r.btf_tgid == static_cast<int32_t>(r.tgid);
    t.ppid_is_getppid = r.ppid == r.getppid_ret;
    t.parent = r.ppid == getpid() ? "test" : tgids.count(r.ppid) && r.ppid != static_cast<int32_t>(r.tgid) ? "workload"
                                                                                   : std::to_string(r.ppid);
    t.uid = r.uid;
    t.calls = r.calls;
    t.comm = std::string(r.comm, strnlen(r.comm, 16));
    // The task started during the run (bpfvm: at the clock tick's precision).
    EXPECT_GE(r.start_time + 20'000'000, started_ns);
    EXPECT_LE(r.start_time, ended_ns);
    out.push_back(t);
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

TEST(PtraceVsKernel, CurrentTaskMatches) {
  const std::string object = progs("tr_task.bpf.o");
  ASSERT_TRUE(has_core_relos(object));
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  uint64_t t0 = monotonic_ns();
  auto b = bpfvm_run(object, argv);
  EXPECT_EQ(b.res.exit_code, 0);
  auto bv = task_views(b.maps["views"], t0, monotonic_ns());
  // The main thread and two threads (their parent is this process, bpfvm's tracer), the child
  // (its parent the workload); each thread's task as the kernel's for it.
  ASSERT_EQ(bv.size(), 4u);
  int threads = 0, children = 0;
  for (const TaskView& v : bv) {
    EXPECT_TRUE(v.pid_is_tid && v.tgid_is_tgid && v.leader_is_tgid && v.btf_tgid_is_tgid && v.ppid_is_getppid) << v;
    EXPECT_EQ(v.comm, "tr_workload");
    EXPECT_EQ(v.uid, getuid());
    threads += v.parent == "test" && !v.main_thread;
    children += v.parent == "workload" && v.main_thread;
  }
  EXPECT_EQ(threads, 2);
  EXPECT_EQ(children, 1);
  std::string why;
  uint64_t t1 = monotonic_ns();
  auto k = kernel_run(object, argv, &why);
  if (!k) GTEST_SKIP() << why;
  EXPECT_EQ(bv, task_views(k->maps["views"], t1, monotonic_ns()));
}

TEST(PtraceTrace, CurrentTaskNeedsATaskStructInTheBtf) {
  auto obj = load_object_file(progs("tr_task.bpf.o"));
  ASSERT_TRUE(obj);
  SyscallHooksOptions ho;
  ho.btf = progs("tr_count.bpf.o");  // BTF without a struct task_struct
  auto hooks = SyscallHooks::create(*obj, ho);
  ASSERT_FALSE(hooks);
  EXPECT_NE(hooks.error().message.find("program task_enter"), std::string::npos) << hooks.error().message;
  EXPECT_NE(hooks.error().message.find("has no struct task_struct"), std::string::npos) << hooks.error().message;
  ho.btf = "/nonexistent/bpfvm-btf";
  auto bad = SyscallHooks::create(*obj, ho);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("/nonexistent/bpfvm-btf"), std::string::npos) << bad.error().message;
}

// ---- --pinmaps -------------------------------------------------------------------------------------

TEST(TraceCli, PinmapsKeepTheMapsAfterTheTrace) {
  struct statfs st;
  if (statfs("/dev/shm", &st) != 0 || static_cast<unsigned long>(st.f_type) != TMPFS_MAGIC)
    GTEST_SKIP() << "/dev/shm is not tmpfs here (pinned maps live on tmpfs)";
  const fs::path pins = "/dev/shm/bpfvm-trace-pinmaps-" + std::to_string(getpid());
  fs::remove_all(pins);
  TempDir dir;
  std::string out;
  EXPECT_EQ(run_cli("trace " + progs("tr_opensnoop_core.bpf.o") + " --pinmaps " + pins.string() + " -- " + workload() +
                        " " + dir.path.string() + " basic",
                    &out),
            0) << out;
  EXPECT_TRUE(fs::exists(pins / "results"));
  EXPECT_TRUE(fs::exists(pins / "start"));
  // After the trace: the counts the records showed (one failed openat, the others succeeded).
  int records = 0;
  for (size_t at = out.find("map: events"); at != std::string::npos; at = out.find("map: events", at + 1)) ++records;
  std::string dump;
  ASSERT_EQ(run_cli("map dump -j pinned " + (pins / "results").string(), &dump), 0) << dump;
  auto j = nlohmann::json::parse(dump);
  ASSERT_TRUE(j.is_array()) << dump;
  ASSERT_EQ(j.size(), 2u) << dump;
  auto value = [&](size_t i) {
    uint64_t v = 0;
    for (size_t b = 0; b < 8; ++b) v |= static_cast<uint64_t>(std::stoul(j[i]["value"][b].get<std::string>(), nullptr, 16)) << (8 * b);
    return v;
  };
  EXPECT_EQ(value(1), 1u) << dump;
  EXPECT_EQ(value(0) + value(1), static_cast<uint64_t>(records)) << dump;
  // A second trace reuses the pinned maps: the counts add up.
  out.clear();
  EXPECT_EQ(run_cli("trace " + progs("tr_opensnoop_core.bpf.o") + " --pinmaps " + pins.string() + " -- " + workload() +
                        " " + dir.path.string() + " basic",
                    &out),
            0) << out;
  dump.clear();
  ASSERT_EQ(run_cli("map dump -j pinned " + (pins / "results").string(), &dump), 0) << dump;
  j = nlohmann::json::parse(dump);
  EXPECT_EQ(value(1), 2u) << dump;
  // A perf event array is pinned too (its records still reach the trace's output); a map of another
  // type under the same name in DIR is not reused, with the reason.
  out.clear();
  EXPECT_EQ(run_cli("trace " + progs("tr_execsnoop.bpf.o") + " --pinmaps " + pins.string() + " -- true", &out), 1) << out;
  EXPECT_NE(out.find("the pinned map is a ringbuf map, the definition asks for perf_event_array"), std::string::npos)
      << out;
  const fs::path pins2 = pins.string() + "-perf";
  fs::remove_all(pins2);
  out.clear();
  EXPECT_EQ(run_cli("trace " + progs("tr_execsnoop.bpf.o") + " --pinmaps " + pins2.string() + " -- " + workload() +
                        " - exec",
                    &out),
            0) << out;
  EXPECT_EQ(out.find("is not pinned"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(pins2 / "events"));
  EXPECT_TRUE(fs::exists(pins2 / "execs"));
  EXPECT_NE(out.find("map: events"), std::string::npos) << "records of the pinned perf event array\n" << out;
  fs::remove_all(pins2);
  // Not on tmpfs: refused before the command runs, with the reason.
  out.clear();
  struct statfs tmp;
  if (statfs(dir.path.c_str(), &tmp) == 0 && static_cast<unsigned long>(tmp.f_type) != TMPFS_MAGIC) {
    EXPECT_EQ(run_cli("trace " + progs("tr_opensnoop_core.bpf.o") + " --pinmaps " + dir.path.string() + "/pins -- true",
                      &out),
              1) << out;
    EXPECT_NE(out.find("tmpfs"), std::string::npos) << out;
  }
  fs::remove_all(pins);
}


// ---- system-call programs in the agent (bpfvm trace --mode agent) ----------------------------------
// The same objects and workload as above, run inside the process: entered by the SIGSYS of Syscall
// User Dispatch or of the agent's seccomp filter. The dynamic loader's syscalls before the agent
// starts are not seen there (ptrace and the kernel see them): comparisons take the workload's own
// events (getppid, the files it opens in main).

struct AgentRun {
  int rc = -1;
  std::string out;
  std::vector<Bytes> records;
  std::map<std::string, MapDump> maps;
  std::vector<std::string> printk;
};

Bytes json_bytes(const nlohmann::json& a) {
  Bytes b;
  for (const auto& v : a) b.push_back(v.get<uint8_t>());
  return b;
}

AgentRun agent_run(const std::string& object, const std::string& mechanism, const std::vector<std::string>& argv,
                   const std::string& flags = "") {
  AgentRun r;
  std::string cmd = "trace -j --mode agent " + flags + " --agent-syscalls " + mechanism + " " + object + " --";
  for (const auto& a : argv) cmd += " '" + a + "'";
  r.rc = run_cli(cmd, &r.out);
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("data")) r.records.push_back(json_bytes(j["data"]));
    if (j.contains("printk")) r.printk.push_back(j["printk"].get<std::string>());
    if (j.contains("map") && j.contains("entries")) {
      MapDump d;
      for (const auto& e : j["entries"]) d[json_bytes(e["key"])] = json_bytes(e["value"]);
      r.maps[j["map"].get<std::string>()] = d;
    }
  }
  return r;
}

// The files the workload opens itself (the loader's opens before main aside).
std::vector<OpenEvent> workload_opens(const std::vector<Bytes>& recs, const fs::path& dir) {
  std::vector<OpenEvent> out;
  for (const OpenEvent& e : open_events(recs))
    if (e.fname.rfind(dir.string(), 0) == 0 || e.fname.rfind("/dev/", 0) == 0 || e.fname.rfind("/nonexistent/", 0) == 0)
      out.push_back(e);
  return out;
}

// The agent's system-call hooks trap every syscall of the process, the sanitizer runtime's own raw
// ones included, into a handler that the sanitizer build instruments: that runtime is then re-entered
// in the middle of its own work. In such a build (the agent is built with the tests' flags) these
// tests do not run.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kAgentSanitized = true;
#else
constexpr bool kAgentSanitized = false;
#endif
#define SKIP_IF_AGENT_SANITIZED() \
  if (kAgentSanitized) GTEST_SKIP() << "a sanitizer build: the agent's system-call hooks would trap the sanitizer runtime's own syscalls"

class AgentSyscalls : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { SKIP_IF_AGENT_SANITIZED(); }
};

TEST_P(AgentSyscalls, CountsAndRecordsMatchPtraceMode) {
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};  // threads and a forked child
  auto p = bpfvm_run(progs("tr_count.bpf.o"), argv);
  auto a = agent_run(progs("tr_count.bpf.o"), GetParam(), argv);
  ASSERT_EQ(a.rc, 0) << a.out;
  // The seccomp mechanism says what it cannot do.
  EXPECT_EQ(a.out.find("--agent-syscalls seccomp: the filter stays across exec") != std::string::npos,
            GetParam() == "seccomp") << a.out;
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_getppid), 13u) << a.out;
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_getppid), u64_at(p.maps["counts"], SYS_getppid));
  EXPECT_EQ(u64_at(a.maps["errors"], SYS_openat), u64_at(p.maps["errors"], SYS_openat));
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_clone3) + u64_at(a.maps["counts"], SYS_clone),
            u64_at(p.maps["counts"], SYS_clone3) + u64_at(p.maps["counts"], SYS_clone));
  TempDir dir2;
  std::vector<std::string> argv2 = {workload(), dir2.path, "basic"};
  auto po = bpfvm_run(progs("tr_opensnoop.bpf.o"), argv2);
  auto ao = agent_run(progs("tr_opensnoop.bpf.o"), GetParam(), argv2);
  ASSERT_EQ(ao.rc, 0) << ao.out;
  auto pe = workload_opens(po.records, dir2.path), ae = workload_opens(ao.records, dir2.path);
  EXPECT_GE(ae.size(), 6u) << ao.out;
  EXPECT_EQ(ae, pe);
}

TEST_P(AgentSyscalls, OverrideReturnDeniesUnlinkat) {
  TempDir dir;
  auto a = agent_run(progs("tr_deny.bpf.o"), GetParam(), {workload(), dir.path, "unlink"});
  ASSERT_EQ(a.rc, 0) << a.out;
  EXPECT_NE(a.out.find("protected: 1\n"), std::string::npos) << a.out;  // EPERM
  EXPECT_NE(a.out.find("scratch: 0\n"), std::string::npos) << a.out;
  EXPECT_TRUE(fs::exists(dir.path / "protected.txt"));
  EXPECT_FALSE(fs::exists(dir.path / "scratch.txt"));
  EXPECT_EQ(u64_at(a.maps["stats"], 0), 2u);
  EXPECT_EQ(u64_at(a.maps["stats"], 1), 1u);
  ASSERT_EQ(a.printk.size(), 1u) << a.out;
  EXPECT_NE(a.printk[0].find("denied unlinkat of protected.txt"), std::string::npos);
}

TEST_P(AgentSyscalls, ExitStatusesSignalsAndTheTargetsOwnSigsys) {
  auto obj = progs("tr_count.bpf.o");
  EXPECT_EQ(agent_run(obj, GetParam(), {workload(), "-", "exit", "3"}).rc, 3);
  EXPECT_EQ(agent_run(obj, GetParam(), {workload(), "-", "signal", "15"}).rc, 128 + 15);
  EXPECT_EQ(agent_run(obj, GetParam(), {workload(), "-", "signals"}).rc, 0) << "SIGUSR1 x3 reach the handler";
  EXPECT_EQ(agent_run(obj, GetParam(), {workload(), "-", "stopcont"}).rc, 0);
  // Its own SIGSYS handler and seccomp filter keep working (the agent keeps its handler and passes
  // the SIGSYS of the target's filter on); getppid with every signal blocked does not kill it.
  auto own = agent_run(obj, GetParam(), {workload(), "-", "ownsigsys"});
  EXPECT_EQ(own.rc, 0) << own.out;
  EXPECT_GE(u64_at(own.maps["counts"], SYS_getppid), 5u) << own.out;
  // The same with a program on openat only (the seccomp filter then traps few syscalls).
  auto own2 = agent_run(progs("tr_opensnoop.bpf.o"), GetParam(), {workload(), "-", "ownsigsys"});
  EXPECT_EQ(own2.rc, 0) << own2.out;
  auto vf = agent_run(obj, GetParam(), {workload(), "-", "vfork"});
  EXPECT_EQ(vf.rc, 0) << vf.out;
  EXPECT_GE(u64_at(vf.maps["counts"], SYS_getppid), 1u) << vf.out;
}

// getppid through the C library's wrapper: its `mov $110,%eax; syscall` is rewritten into a jump
// (threads and a forked child run it too); the trap path (--trap-only) counts the same.
TEST_P(AgentSyscalls, RewrittenSitesCountAsTheTrapPath) {
  auto obj = progs("tr_count.bpf.o");
  std::vector<std::string> argv = {workload(), "-", "wrappers"};
  auto p = bpfvm_run(obj, argv);
  EXPECT_EQ(u64_at(p.maps["counts"], SYS_getppid), 5u + 4 * 3 + 2);
  auto a = agent_run(obj, GetParam(), argv);
  EXPECT_EQ(a.rc, 0) << a.out;
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_getppid), u64_at(p.maps["counts"], SYS_getppid)) << a.out;
  auto t = agent_run(obj, GetParam(), argv, "--trap-only");
  EXPECT_EQ(t.rc, 0) << t.out;
  EXPECT_EQ(u64_at(t.maps["counts"], SYS_getppid), u64_at(p.maps["counts"], SYS_getppid)) << t.out;
}

// A program's failing run (unverified: the checked interpreter) is reported on stderr, as ptrace mode
// reports it, and the command goes on.
TEST_P(AgentSyscalls, RunFailuresAreReported) {
  auto a = agent_run(progs("tr_fault.bpf.o"), GetParam(), {workload(), "-", "loop", "3"}, "--no-verify");
  EXPECT_EQ(a.rc, 0) << a.out;
  EXPECT_NE(a.out.find("bpfvm: agent in "), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("program fault_getppid: memory fault"), std::string::npos) << a.out;
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, AgentSyscalls, ::testing::Values("sud", "seccomp"),
                         [](const auto& info) { return info.param; });

// Syscall User Dispatch leaves nothing across exec: the new image loads the agent again.
TEST(AgentSyscallsSud, ExecAndI386Calls) {
  SKIP_IF_AGENT_SANITIZED();
  auto obj = progs("tr_count.bpf.o");
  auto p = bpfvm_run(obj, {workload(), "-", "exec"});
  auto a = agent_run(obj, "sud", {workload(), "-", "exec"});
  EXPECT_EQ(a.rc, 0) << a.out;
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_execve), 2u) << a.out;
  EXPECT_EQ(u64_at(a.maps["counts"], SYS_execve), u64_at(p.maps["counts"], SYS_execve));
  // An i386 system call (int $0x80) traps too: it is issued as it was, not counted (as in ptrace mode).
  auto i = agent_run(obj, "sud", {workload(), "-", "int80"});
  EXPECT_EQ(i.rc, 0) << i.out;
  EXPECT_EQ(u64_at(i.maps["counts"], SYS_getppid), 1u) << i.out;
}

// Syscall User Dispatch started in a process whose threads already run (as when the agent is loaded
// into a running process): each thread is signalled to switch it on, and off again with stop().
TEST(AgentSyscallsSud, ThreadsThatAlreadyRunAreSwitchedOnAndOff) {
  SKIP_IF_AGENT_SANITIZED();
  auto obj = load_object_file(progs("tr_count.bpf.o"));
  ASSERT_TRUE(obj) << obj.error().message;
  (void)workload();  // a process named as the workload: the kernel comparisons wait for it (the lock)
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NAME, "tr_workload");  // the programs count that command's calls; threads inherit it
    auto hooks = SyscallHooks::create(*obj);
    if (!hooks) _exit(10);
    Map* counts = nullptr;
    for (size_t i = 0; i < (*hooks)->loaded().maps.size(); ++i)
      if ((*hooks)->loaded().maps[i]->spec().name == "counts") counts = (*hooks)->loaded().maps[i].get();
    if (!counts) _exit(11);
    // The program adds atomically to an existing entry but creates a missing one with BPF_NOEXIST,
    // which loses a count when threads race to create it: the entry exists before the threads run.
    const uint32_t key = SYS_getppid;
    const uint64_t zero = 0;
    if (counts->update_user(&key, &zero, 0) != 0) _exit(14);
    std::atomic<int> phase{0}, ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
      threads.emplace_back([&] {
        ready++;
        while (phase.load() == 0) sched_yield();
        for (int k = 0; k < 10; ++k) (void)getppid();
        ready++;
        while (phase.load() == 1) sched_yield();
        for (int k = 0; k < 10; ++k) (void)getppid();  // after stop(): not hooked
      });
    while (ready.load() < 3) sched_yield();
    if (!agent_syscalls::start(**hooks, SyscallMechanism::Sud, false, nullptr, nullptr)) _exit(12);
    phase = 1;
    while (ready.load() < 6) sched_yield();
    const uint64_t during = u64_at(dump_map(*counts), SYS_getppid);
    if (!agent_syscalls::stop()) _exit(13);
    phase = 2;
    for (auto& t : threads) t.join();
    (void)getppid();
    const uint64_t after = u64_at(dump_map(*counts), SYS_getppid);
    _exit(during == 30 && after == 30 ? 0 : static_cast<int>(std::min<uint64_t>(during, 99) + (after == during ? 100 : 0)));
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << (WIFEXITED(st) ? "exit " + std::to_string(WEXITSTATUS(st)) : "signal " + std::to_string(WTERMSIG(st)));
}

// Exit programs of the syscalls that make tasks (clone3 for the threads, clone for fork): they fire
// in the parent and in the new thread or child (result 0), as the kernel's sys_exit does -- in the
// agent (from the stub it issues them from; a vfork's in the parent only) and in ptrace mode (at the
// new task's first stop).
TEST(AgentSyscallsVsKernel, ExitsOfCloneAndForkFireInBothTasks) {
  SKIP_IF_AGENT_SANITIZED();
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  std::string why;
  auto k = kernel_run(progs("tr_exits.bpf.o"), argv, &why);
  for (const char* mech : {"sud", "seccomp"}) {
    auto a = agent_run(progs("tr_exits.bpf.o"), mech, argv);
    ASSERT_EQ(a.rc, 0) << a.out;
    const MapDump& e = a.maps["exits"];
    EXPECT_EQ(u64_at(e, SYS_clone3 * 2) + u64_at(e, SYS_clone * 2), 3u) << mech << ": two threads and a fork";
    EXPECT_EQ(u64_at(e, SYS_clone3 * 2 + 1) + u64_at(e, SYS_clone * 2 + 1), 3u) << mech << ": in the new tasks";
    if (k) {
      for (uint32_t nr : {uint32_t(SYS_clone), uint32_t(SYS_clone3), uint32_t(SYS_fork)})
        for (uint32_t side : {0u, 1u})
          EXPECT_EQ(u64_at(e, nr * 2 + side), u64_at(k->maps["exits"], nr * 2 + side)) << mech << " nr " << nr << " side " << side;
    }
    auto v = agent_run(progs("tr_exits.bpf.o"), mech, {workload(), "-", "vfork"});
    ASSERT_EQ(v.rc, 0) << v.out;
    EXPECT_EQ(u64_at(v.maps["exits"], SYS_vfork * 2), 1u) << mech << ": the parent's vfork exit";
  }
  // ptrace mode sees the new task's exit at its first stop; a vfork child's too.
  auto p = bpfvm_run(progs("tr_exits.bpf.o"), argv);
  const MapDump& pe = p.maps["exits"];
  EXPECT_EQ(u64_at(pe, SYS_clone3 * 2) + u64_at(pe, SYS_clone * 2), 3u);
  EXPECT_EQ(u64_at(pe, SYS_clone3 * 2 + 1) + u64_at(pe, SYS_clone * 2 + 1), 3u);
  auto pv = bpfvm_run(progs("tr_exits.bpf.o"), {workload(), "-", "vfork"});
  EXPECT_EQ(u64_at(pv.maps["exits"], SYS_vfork * 2), 1u);
  EXPECT_EQ(u64_at(pv.maps["exits"], SYS_vfork * 2 + 1), 1u);
  if (!k) GTEST_SKIP() << "checked without the kernel's counts: " << why;
  for (uint32_t nr : {uint32_t(SYS_clone), uint32_t(SYS_clone3), uint32_t(SYS_fork)})
    for (uint32_t side : {0u, 1u}) EXPECT_EQ(u64_at(pe, nr * 2 + side), u64_at(k->maps["exits"], nr * 2 + side));
  auto kv = kernel_run(progs("tr_exits.bpf.o"), {workload(), "-", "vfork"}, &why);
  if (!kv) GTEST_SKIP() << why;
  for (uint32_t side : {0u, 1u})
    EXPECT_EQ(u64_at(pv.maps["exits"], SYS_vfork * 2 + side), u64_at(kv->maps["exits"], SYS_vfork * 2 + side));
}

TEST(AgentSyscallsVsKernel, OpenSnoopRecordsAndCountsMatch) {
  SKIP_IF_AGENT_SANITIZED();
  TempDir dir;
  std::vector<std::string> argv = {workload(), dir.path, "basic"};
  std::string why;
  auto k = kernel_run(progs("tr_opensnoop.bpf.o"), argv, &why);
  if (!k) GTEST_SKIP() << why;
  auto kc = kernel_run(progs("tr_count.bpf.o"), argv, &why);
  if (!kc) GTEST_SKIP() << why;
  for (const char* mech : {"sud", "seccomp"}) {
    auto a = agent_run(progs("tr_opensnoop.bpf.o"), mech, argv);
    ASSERT_EQ(a.rc, 0) << a.out;
    auto ke = workload_opens(k->records, dir.path), ae = workload_opens(a.records, dir.path);
    EXPECT_GE(ke.size(), 6u);
    EXPECT_EQ(ae, ke) << mech;
    auto ac = agent_run(progs("tr_count.bpf.o"), mech, argv);
    EXPECT_EQ(u64_at(ac.maps["counts"], SYS_getppid), u64_at(kc->maps["counts"], SYS_getppid)) << mech;
  }
}

}  // namespace
}  // namespace bpfvm
