// Cost of a probe on a function call: a loop of calls to a small function, timed inside the looping
// process, natively and probed, in one run:
//   native                     no probe
//   kernel uprobe / uretprobe  the counting program (bench/progs/uprobe_count.bpf.c) attached with libbpf
//                              (root; a trap per hit)
//   bpfvm uprobe / uretprobe   the same program in bpfvm's agent (bpfvm trace --mode agent): a jump
//                              into the process's own trampoline, the JIT-compiled program
//   ... + helper call          the same with a bpf_get_current_pid_tgid call first
//                              (bench/progs/uprobe_count_pid.bpf.c): the engine's full run path, where
//                              the array update alone runs as direct JIT code
//   ... at a USDT site         the same on a function holding a USDT probe point (sys/sdt.h): the
//                              kernel's is a uprobe at the site (what libbpf's USDT attach makes);
//                              bpfvm's takes a jump patch where the function's body allows it
// Each row: the best of --runs (default 5) runs, ns per call of the loop thread's CPU time (the trap's
// kernel time included; time the thread waits for a CPU is not, so other load on the machine does
// not count); the last lines give the kernel's overhead over bpfvm's.
//   build/bench_uprobes [--calls N] [--runs N]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/sdt.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bpfvm/probe_target.hpp"
#include "child_loop.hpp"

extern "C" __attribute__((noinline)) long bench_probed(long x) {
  __asm__ volatile("" ::: "memory");
  return x + 1;
}

// A USDT probe point (a nop) inside a function.
extern "C" __attribute__((noinline)) long bench_usdt(long x) {
  x *= 3;
  DTRACE_PROBE1(bpfvm_bench, hit, x);
  __asm__ volatile("" ::: "memory");
  return x + 1;
}

namespace {

std::string g_self;
int g_runs = 5;

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

int loop_main(long n, bool usdt, const char* out) {
  long (*const f)(long) = usdt ? bench_usdt : bench_probed;
  long s = 0;
  for (int i = 0; i < 1000; ++i) s += f(i);
  const double t0 = thread_cpu_ns();
  for (long i = 0; i < n; ++i) s += f(i);
  const double ns = (thread_cpu_ns() - t0) / static_cast<double>(n);
  if (!child_loop::write_result(out, ns)) return 1;
  return s == 42 ? 2 : 0;  // keeps the calls
}

std::optional<double> best(const std::function<std::optional<double>()>& run) { return child_loop::best(g_runs, run); }
std::string tmp_file() { return child_loop::tmp_file("bench_uprobes"); }

std::optional<double> run_cmd(std::vector<std::string> argv, long n, bool usdt = false) {
  std::string out = tmp_file();
  argv.push_back(g_self);
  argv.push_back(usdt ? "--loop-usdt" : "--loop");
  argv.push_back(std::to_string(n));
  argv.push_back(out);
  // bpfvm trace's notes and map dump are not the bench's output.
  return child_loop::run_and_read(std::move(argv), out, true);
}

std::string objpath(bool helper = false) {
  return std::string(BPFVM_PROGS_DIR) + (helper ? "/uprobe_count_pid.bpf.o" : "/uprobe_count.bpf.o");
}

// The USDT site's file offset (the kernel's uprobe at it), 0 when not found.
uint64_t usdt_site_offset(std::string* why) {
  auto notes = bpfvm::find_usdt_notes(g_self, "bpfvm_bench", "hit");
  if (!notes || notes->size() != 1) {
    *why = "no single USDT probe point bpfvm_bench:hit in the binary";
    return 0;
  }
  auto off = bpfvm::elf_vaddr_to_offset(g_self, (*notes)[0].pc);
  if (!off) {
    *why = off.error().message;
    return 0;
  }
  return *off;
}

std::optional<double> kernel_probe(long n, bool ret, bool usdt, std::string* why, bool helper = false) {
  libbpf_set_print(nullptr);
  bpf_object* o = bpf_object__open_file(objpath(helper).c_str(), nullptr);
  if (!o || libbpf_get_error(o)) {
    *why = "libbpf cannot open the object";
    return std::nullopt;
  }
  std::optional<double> r;
  bpf_link* link = nullptr;
  if (bpf_object__load(o) != 0) {
    *why = "the kernel does not load the program";
  } else {
    bpf_program* p = bpf_object__find_program_by_name(o, "count_hits");
    LIBBPF_OPTS(bpf_uprobe_opts, uo);
    uo.func_name = usdt ? nullptr : "bench_probed";
    uo.retprobe = ret;
    const uint64_t off = usdt ? usdt_site_offset(why) : 0;
    if (!usdt || off)
      link = p ? bpf_program__attach_uprobe_opts(p, -1, g_self.c_str(), off, &uo) : nullptr;
    if (!link || libbpf_get_error(link)) {
      link = nullptr;
      if (!usdt || off) *why = "the kernel cannot attach a uprobe (root? /sys/bus/event_source/devices/uprobe?)";
    } else {
      r = best([&] { return run_cmd({}, n, usdt); });
    }
  }
  if (link) bpf_link__destroy(link);
  bpf_object__close(o);
  return r;
}

std::optional<double> bpfvm_probe(long n, bool ret, bool usdt, bool helper = false) {
  std::string bpfvm = std::filesystem::path(BPFVM_PROGS_DIR).parent_path() / "bpfvm";
  std::string spec = usdt ? "usdt/" + g_self + ":bpfvm_bench:hit"
                          : std::string(ret ? "uretprobe/" : "uprobe/") + g_self + ":bench_probed";
  return best([&] {
    return run_cmd({bpfvm, "trace", "--mode", "agent", objpath(helper), "--attach", "count_hits=" + spec, "--"}, n, usdt);
  });
}

}  // namespace

int main(int argc, char** argv) {
  g_self = std::filesystem::canonical("/proc/self/exe").string();
  if (argc == 4 && !std::strcmp(argv[1], "--loop")) return loop_main(std::atol(argv[2]), false, argv[3]);
  if (argc == 4 && !std::strcmp(argv[1], "--loop-usdt")) return loop_main(std::atol(argv[2]), true, argv[3]);
  long n = 2'000'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--calls")) n = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs")) g_runs = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: bench_uprobes [--calls N] [--runs N]\n");
      return 2;
    }
  }
  long kn = n / 20 > 1000 ? n / 20 : 1000;  // the kernel's rows trap at every call

  struct Row {
    std::string name;
    long calls;
    std::optional<double> ns;
    std::string note;
  };
  std::vector<Row> rows;
  std::string why;
  auto native = best([&] { return run_cmd({}, n); });
  rows.push_back({"native call", n, native, ""});
  auto ku = kernel_probe(kn, false, false, &why);
  rows.push_back({"kernel uprobe + counting program", kn, ku, ku ? "" : why});
  auto kr = kernel_probe(kn, true, false, &why);
  rows.push_back({"kernel uretprobe + counting program", kn, kr, kr ? "" : why});
  auto bu = bpfvm_probe(n, false, false);
  rows.push_back({"bpfvm agent uprobe + counting program", n, bu, bu ? "" : "failed"});
  auto br = bpfvm_probe(n, true, false);
  rows.push_back({"bpfvm agent uretprobe + counting program", n, br, br ? "" : "failed"});
  auto kh = kernel_probe(kn, false, false, &why, true);
  rows.push_back({"kernel uprobe + helper call + counting", kn, kh, kh ? "" : why});
  auto bh = bpfvm_probe(n, false, false, true);
  rows.push_back({"bpfvm agent uprobe + helper call + counting", n, bh, bh ? "" : "failed"});
  const size_t usdt_rows = rows.size();
  auto native_usdt = best([&] { return run_cmd({}, n, true); });
  rows.push_back({"native call (function with a USDT site)", n, native_usdt, ""});
  auto kusdt = kernel_probe(kn, false, true, &why);
  rows.push_back({"kernel uprobe at the USDT site + counting", kn, kusdt, kusdt ? "" : why});
  auto busdt = bpfvm_probe(n, false, true);
  rows.push_back({"bpfvm agent usdt + counting program", n, busdt, busdt ? "" : "failed"});

  std::printf("a probed function call, ns per call (best of %d runs, the calling thread's CPU time)\n", g_runs);
  std::printf("%-42s %10s %10s %12s\n", "", "calls", "ns/call", "vs native");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double base = (i >= usdt_rows ? native_usdt : native).value_or(0);
    if (r.ns)
      std::printf("%-42s %10ld %10.1f %+11.1f\n", r.name.c_str(), r.calls, *r.ns, *r.ns - base);
    else
      std::printf("%-42s %10s %10s   %s\n", r.name.c_str(), "-", "-", r.note.c_str());
  }
  auto ratio = [&](const std::optional<double>& k, const std::optional<double>& b, const std::optional<double>& nat,
                   const char* what) {
    const double base = nat.value_or(0);
    if (k && b && *b - base > 0) std::printf("kernel %s overhead / bpfvm's: %.0fx\n", what, (*k - base) / (*b - base));
  };
  ratio(ku, bu, native, "uprobe");
  ratio(kr, br, native, "uretprobe");
  ratio(kh, bh, native, "uprobe (helper call)");
  ratio(kusdt, busdt, native_usdt, "USDT");
  return 0;
}
