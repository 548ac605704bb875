// Cost of a probe on a function call: a loop of calls to a small function, timed inside the looping
// process, natively and probed, in one run:
//   native                     no probe
//   kernel uprobe / uretprobe  the counting program (bench/progs/uprobe_count.bpf.c) attached with libbpf
//                              (root; a trap per hit)
//   bpfvm uprobe / uretprobe   the same program in bpfvm's agent (bpfvm trace --mode agent): a jump
//                              into the process's own trampoline, the JIT-compiled program
// Each row: the best of 3 runs, ns per call; the last column is the kernel's cost over bpfvm's.
//   build/bench_uprobes [--calls N]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/wait.h>
#include <unistd.h>

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

#include "child_loop.hpp"

extern "C" __attribute__((noinline)) long bench_probed(long x) {
  __asm__ volatile("" ::: "memory");
  return x + 1;
}

namespace {

std::string g_self;

int loop_main(long n, const char* out) {
  long s = 0;
  for (int i = 0; i < 1000; ++i) s += bench_probed(i);
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) s += bench_probed(i);
  double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / n;
  if (!child_loop::write_result(out, ns)) return 1;
  return s == 42 ? 2 : 0;  // keeps the calls
}

using child_loop::best;
std::string tmp_file() { return child_loop::tmp_file("bench_uprobes"); }

std::optional<double> run_cmd(std::vector<std::string> argv, long n) {
  std::string out = tmp_file();
  argv.push_back(g_self);
  argv.push_back("--loop");
  argv.push_back(std::to_string(n));
  argv.push_back(out);
  // bpfvm trace's notes and map dump are not the bench's output.
  return child_loop::run_and_read(std::move(argv), out, true);
}

std::string objpath() { return std::string(BPFVM_PROGS_DIR) + "/uprobe_count.bpf.o"; }

std::optional<double> kernel_probe(long n, bool ret, std::string* why) {
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
    bpf_program* p = bpf_object__find_program_by_name(o, "count_hits");
    LIBBPF_OPTS(bpf_uprobe_opts, uo);
    uo.func_name = "bench_probed";
    uo.retprobe = ret;
    link = p ? bpf_program__attach_uprobe_opts(p, -1, g_self.c_str(), 0, &uo) : nullptr;
    if (!link || libbpf_get_error(link)) {
      link = nullptr;
      *why = "the kernel cannot attach a uprobe (root? /sys/bus/event_source/devices/uprobe?)";
    } else {
      r = best(3, [&] { return run_cmd({}, n); });
    }
  }
  if (link) bpf_link__destroy(link);
  bpf_object__close(o);
  return r;
}

std::optional<double> bpfvm_probe(long n, bool ret) {
  std::string bpfvm = std::filesystem::path(BPFVM_PROGS_DIR).parent_path() / "bpfvm";
  std::string spec = std::string(ret ? "uretprobe/" : "uprobe/") + g_self + ":bench_probed";
  return best(3, [&] { return run_cmd({bpfvm, "trace", "--mode", "agent", objpath(), "--attach", "count_hits=" + spec, "--"}, n); });
}

}  // namespace

int main(int argc, char** argv) {
  g_self = std::filesystem::canonical("/proc/self/exe").string();
  if (argc == 4 && !std::strcmp(argv[1], "--loop")) return loop_main(std::atol(argv[2]), argv[3]);
  long n = 2'000'000;
  if (argc == 3 && !std::strcmp(argv[1], "--calls")) n = std::atol(argv[2]);
  long kn = n / 20 > 1000 ? n / 20 : 1000;  // the kernel's rows trap at every call

  struct Row {
    std::string name;
    long calls;
    std::optional<double> ns;
    std::string note;
  };
  std::vector<Row> rows;
  std::string why;
  rows.push_back({"native call", n, best(3, [&] { return run_cmd({}, n); }), ""});
  auto ku = kernel_probe(kn, false, &why);
  rows.push_back({"kernel uprobe + counting program", kn, ku, ku ? "" : why});
  auto kr = kernel_probe(kn, true, &why);
  rows.push_back({"kernel uretprobe + counting program", kn, kr, kr ? "" : why});
  auto bu = bpfvm_probe(n, false);
  rows.push_back({"bpfvm agent uprobe + counting program", n, bu, bu ? "" : "failed"});
  auto br = bpfvm_probe(n, true);
  rows.push_back({"bpfvm agent uretprobe + counting program", n, br, br ? "" : "failed"});

  double native = rows[0].ns.value_or(0);
  std::printf("a probed function call, ns per call (best of 3 runs, measured inside the calling process)\n");
  std::printf("%-42s %10s %10s %12s\n", "", "calls", "ns/call", "vs native");
  for (const auto& r : rows) {
    if (r.ns)
      std::printf("%-42s %10ld %10.1f %+11.1f\n", r.name.c_str(), r.calls, *r.ns, *r.ns - native);
    else
      std::printf("%-42s %10s %10s   %s\n", r.name.c_str(), "-", "-", r.note.c_str());
  }
  auto ratio = [&](const std::optional<double>& k, const std::optional<double>& b, const char* what) {
    if (k && b && *b - native > 0)
      std::printf("kernel %s overhead / bpfvm's: %.0fx\n", what, (*k - native) / (*b - native));
  };
  ratio(ku, bu, "uprobe");
  ratio(kr, br, "uretprobe");
  return 0;
}
