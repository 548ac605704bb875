// Cost of tracing a system call: a loop of getppid() calls measured inside the looping process,
// natively and under each tracer, in one run:
//   native                        no tracer
//   seccomp filter alone          bpfvm's filter shape (ALLOW for getppid), no tracer
//   kernel tracepoint             sys_enter_getppid with a counting program (libbpf; root, tracefs)
//   strace (traced)               strace -f -e trace=getppid
//   strace --seccomp-bpf traced   strace -f --seccomp-bpf -e trace=getppid
//   strace --seccomp-bpf untraced strace -f --seccomp-bpf -e trace=openat (getppid not stopped)
//   bpfvm trace (traced)          the counting program at sys_enter_getppid (seccomp filter + ptrace)
//   bpfvm trace (untraced)        the same program attached to openat: getppid passes the filter
//   bpfvm trace, no filter        the program at sys_enter_openat with --no-seccomp: every syscall stops
//   bpfvm agent, rewritten site   bpfvm trace --mode agent: the program runs in the process, entered
//                                 by a jump from the C library's getppid (its `mov $110,%eax; syscall`
//                                 rewritten)
//   bpfvm agent, SUD (traced)     --trap-only: entered by the SIGSYS of Syscall User Dispatch
//   bpfvm agent, SUD (untraced)   the program on openat: getppid still traps (SUD stops every syscall)
//   bpfvm agent, seccomp (traced) --trap-only: entered by the SIGSYS of a seccomp filter's SECCOMP_RET_TRAP
//   bpfvm agent, seccomp (untr.)  the program on openat: getppid passes the agent's filter
// Each row: the best of 3 runs of N calls (N smaller for the traced rows), ns per call.
//   build/bench_syscalls [--calls N]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bpfvm/trace.hpp"
#include "child_loop.hpp"

namespace {

std::string g_self;

// The looping child: N getppid calls, ns per call written to OUT.
int loop_main(long n, const char* out, bool filter) {
  if (filter) {
    // The shape of bpfvm's filter with one traced syscall (openat), getppid allowed.
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p) != 0)
      return 1;
  }
  // The C library's getppid (`mov $110,%eax; syscall`: the site shape the agent rewrites).
  for (int i = 0; i < 1000; ++i) (void)getppid();
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) (void)getppid();
  double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / n;
  return child_loop::write_result(out, ns) ? 0 : 1;
}

using child_loop::best;
using child_loop::read_result;
std::string tmp_file() { return child_loop::tmp_file("bench_syscalls"); }

std::vector<std::string> loop_argv(long n, const std::string& out, bool filter = false) {
  return {g_self, filter ? "--loop-filtered" : "--loop", std::to_string(n), out};
}

// Runs argv (prefix + the loop) and returns the loop's ns per call.
std::optional<double> run_cmd(std::vector<std::string> prefix, long n, bool filter = false) {
  std::string out = tmp_file();
  auto argv = prefix;
  for (auto& a : loop_argv(n, out, filter)) argv.push_back(a);
  return child_loop::run_and_read(std::move(argv), out, false);
}

std::string objpath() { return std::string(BPFVM_PROGS_DIR) + "/sys_count.bpf.o"; }

// bpfvm trace through the library (what `bpfvm trace OBJ [--attach ...] -- CMD` does).
std::optional<double> bpfvm_traced(long n, const std::string& spec, bool seccomp) {
  auto obj = bpfvm::load_object_file(objpath());
  if (!obj) return std::nullopt;
  bpfvm::SyscallHooksOptions ho;
  ho.attach = {{"count_getppid", spec}};
  auto hooks = bpfvm::SyscallHooks::create(*obj, ho);
  if (!hooks) {
    std::fprintf(stderr, "bench_syscalls: %s\n", hooks.error().message.c_str());
    return std::nullopt;
  }
  std::string out = tmp_file();
  bpfvm::PtraceOptions po;
  po.argv = loop_argv(n, out);
  po.seccomp = seccomp;
  auto r = bpfvm::run_ptrace(**hooks, po);
  if (!r || r->exit_code != 0) return std::nullopt;
  return read_result(out);
}

// The kernel's tracepoint with the same program (root, tracefs); nullopt when it cannot attach.
std::optional<double> kernel_traced(long n, std::string* why) {
  libbpf_set_print(nullptr);
  bpf_object* o = bpf_object__open_file(objpath().c_str(), nullptr);
  if (!o || libbpf_get_error(o)) {
    *why = "libbpf cannot open the object";
    return std::nullopt;
  }
  std::optional<double> r;
  bpf_link* link = nullptr;
  if (bpf_object__load(o) != 0) {
    *why = "the kernel does not load the program";
  } else {
    bpf_program* p = bpf_object__find_program_by_name(o, "count_getppid");
    link = p ? bpf_program__attach(p) : nullptr;
    if (!link || libbpf_get_error(link)) {
      link = nullptr;
      *why = "the kernel cannot attach to sys_enter_getppid (tracefs mounted? root?)";
    } else {
      r = best(3, [&] { return run_cmd({}, n); });
    }
  }
  if (link) bpf_link__destroy(link);
  bpf_object__close(o);
  return r;
}

// bpfvm trace --mode agent (the CLI beside the benchmark) with the program at `spec`.
std::optional<double> agent_traced(long n, const std::string& spec, const char* mechanism, bool trap_only) {
  std::string bpfvm = std::filesystem::path(BPFVM_PROGS_DIR).parent_path() / "bpfvm";
  std::vector<std::string> argv = {bpfvm, "trace", "--mode", "agent", "--agent-syscalls", mechanism};
  if (trap_only) argv.push_back("--trap-only");
  for (std::string a : {objpath(), std::string("--attach"), "count_getppid=" + spec, std::string("--")}) argv.push_back(a);
  return best(3, [&] { return run_cmd(argv, n); });
}

bool have(const char* prog) {
  std::string cmd = std::string("command -v ") + prog + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_self = std::filesystem::canonical("/proc/self/exe").string();
  if (argc == 4 && (!std::strcmp(argv[1], "--loop") || !std::strcmp(argv[1], "--loop-filtered")))
    return loop_main(std::atol(argv[2]), argv[3], !std::strcmp(argv[1], "--loop-filtered"));
  long n = 2'000'000;
  if (argc == 3 && !std::strcmp(argv[1], "--calls")) n = std::atol(argv[2]);
  long traced_n = n / 20 > 1000 ? n / 20 : 1000;  // the rows that stop at every call

  struct Row {
    std::string name;
    long calls;
    std::optional<double> ns;
    std::string note;
  };
  std::vector<Row> rows;
  auto add = [&](std::string name, long calls, std::optional<double> ns, std::string note = "") {
    rows.push_back({std::move(name), calls, ns, std::move(note)});
  };
  add("native", n, best(3, [&] { return run_cmd({}, n); }));
  add("seccomp filter alone (getppid allowed)", n, best(3, [&] { return run_cmd({}, n, true); }));
  std::string why;
  auto k = kernel_traced(n, &why);
  add("kernel tracepoint + counting program", n, k, k ? "" : why);
  if (have("strace")) {
    add("strace -f (traced)", traced_n,
        best(3, [&] { return run_cmd({"strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=getppid"}, traced_n); }));
    add("strace -f --seccomp-bpf (traced)", traced_n, best(3, [&] {
          return run_cmd({"strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=getppid"}, traced_n);
        }));
    add("strace -f --seccomp-bpf (untraced)", n, best(3, [&] {
          return run_cmd({"strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=openat"}, n);
        }));
  } else {
    add("strace", 0, std::nullopt, "strace is not installed");
  }
  add("bpfvm trace (traced: sys_enter_getppid)", traced_n,
      best(3, [&] { return bpfvm_traced(traced_n, "tracepoint/syscalls/sys_enter_getppid", true); }));
  add("bpfvm trace (untraced: program on openat)", n,
      best(3, [&] { return bpfvm_traced(n, "tracepoint/syscalls/sys_enter_openat", true); }));
  add("bpfvm trace --no-seccomp (every call stops)", traced_n,
      best(3, [&] { return bpfvm_traced(traced_n, "tracepoint/syscalls/sys_enter_openat", false); }));

  add("bpfvm agent, rewritten site (traced)", n,
      agent_traced(n, "tracepoint/syscalls/sys_enter_getppid", "sud", false));
  for (const char* mech : {"sud", "seccomp"}) {
    add(std::string("bpfvm agent, ") + mech + " SIGSYS (traced)", n,
        agent_traced(n, "tracepoint/syscalls/sys_enter_getppid", mech, true));
    add(std::string("bpfvm agent, ") + mech + " SIGSYS (untraced: openat)", n,
        agent_traced(n, "tracepoint/syscalls/sys_enter_openat", mech, true));
  }

  double native = rows[0].ns.value_or(0);
  std::printf("getppid() per call, ns (best of 3 runs, measured inside the looping process)\n");
  std::printf("%-46s %10s %10s %12s\n", "", "calls", "ns/call", "vs native");
  for (const auto& r : rows) {
    if (r.ns)
      std::printf("%-46s %10ld %10.1f %+11.1f\n", r.name.c_str(), r.calls, *r.ns, *r.ns - native);
    else
      std::printf("%-46s %10s %10s   %s\n", r.name.c_str(), "-", "-", r.note.empty() ? "failed" : r.note.c_str());
  }
  return 0;
}
