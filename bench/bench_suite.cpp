// The benchmark suite (issue 3): one table comparing, per program, bpfvm's interpreter, bpfvm's JIT,
// the Linux kernel's JIT (BPF_PROG_TEST_RUN with repeat) and the same C compiled natively.
//
//   bench/run_suite.sh            (builds, then runs build/bench_suite)
//   build/bench_suite [--trials N] [--ms M] [--placements N] [--only NAME]
//
// Programs: bench/progs/suite.bpf.c and maplookup.bpf.c (XDP, compiled with clang -target bpf into
// build/progs), whose algorithms live in bench/progs/bench_algos.h, which this file also includes so
// the host compiler (-O2) builds the native versions. Every engine runs the program on the same
// 1024-byte packet and must return the same value (checked before timing).
// ns/run (thread CPU time): each trial runs the program R times (R calibrated so a trial lasts about --ms milliseconds)
// and divides; the table shows the median and the minimum over --trials trials. The kernel reports
// its own average per repetition (BPF_PROG_TEST_RUN duration), which includes its per-run harness
// cost: the `empty` row measures that cost, and the `kern-net` column subtracts it.
#include <linux/bpf.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../tests/diff_gen.hpp"
#include "jit_programs.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/vm.hpp"
#include "kernel/oracle.hpp"
#include "progs/bench_algos.h"

using namespace bpfvm;
using Clock = std::chrono::steady_clock;

// Run times are measured in thread CPU time: on a loaded machine wall time counts the time the
// thread was preempted, while the kernel's BPF_PROG_TEST_RUN pauses its timer when it reschedules.
struct CpuClock {
  static uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
};

namespace {

#define NATIVE(name) \
  __attribute__((noinline)) uint32_t native_##name(bu8* p) { return bench_##name(p); }
NATIVE(empty)
NATIVE(arith)
NATIVE(primes)
NATIVE(copy)
NATIVE(switch)
NATIVE(log2)
NATIVE(strcmp)
#undef NATIVE

struct Bench {
  const char* name;
  const char* object;
  const char* function;
  uint32_t (*native)(bu8*);
};

const Bench kBenches[] = {
    {"empty", "suite.bpf.o", "xdp_empty", native_empty},
    {"arith loop", "suite.bpf.o", "xdp_arith", native_arith},
    {"primes<1000", "suite.bpf.o", "xdp_primes", native_primes},
    {"byte copy 512", "suite.bpf.o", "xdp_copy", native_copy},
    {"switch64 x256", "suite.bpf.o", "xdp_switch", native_switch},
    {"log2 x256", "suite.bpf.o", "xdp_log2", native_log2},
    {"strcmp 256", "suite.bpf.o", "xdp_strcmp", native_strcmp},
    {"hashmap lookup x256", "maplookup.bpf.o", "xdp_maplookup", nullptr},
};

struct Stats {
  bool valid = false;
  double median = 0, min = 0;
};

int g_trials = 9;
bool g_dump = false;  // print the JIT's code for each program
double g_trial_ms = 20;

// Code placement matters on this machine: the same loop runs in one of two speeds (up to 2x apart)
// depending on where it sits in memory (branch-predictor aliasing; the native column moves with
// ASLR from one process to the next). The JIT and the kernel's JIT are therefore measured at
// several placements -- the program compiled / loaded that many times -- and their trials pooled.
int g_placements = 5;

// `batch(R)` runs R times and returns the elapsed nanoseconds (or < 0 on failure). Appends the
// per-run times of the trials to `per`; false on failure.
bool measure_into(const std::function<double(uint64_t)>& batch, std::vector<double>& per) {
  double t = batch(1);
  if (t < 0) return false;
  uint64_t reps = 1;
  while (t < g_trial_ms * 1e6 / 8 && reps < (1ull << 30)) {
    reps *= 4;
    t = batch(reps);
    if (t < 0) return false;
  }
  reps = std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(reps) * g_trial_ms * 1e6 / t));
  for (int k = 0; k < g_trials; ++k) {
    double ns = batch(reps);
    if (ns < 0) return false;
    per.push_back(ns / static_cast<double>(reps));
  }
  return true;
}

Stats stats_of(std::vector<double> per) {
  Stats s;
  if (per.empty()) return s;
  std::sort(per.begin(), per.end());
  s.valid = true;
  s.median = per[per.size() / 2];
  s.min = per.front();
  return s;
}

Stats measure(const std::function<double(uint64_t)>& batch) {
  std::vector<double> per;
  if (!measure_into(batch, per)) return {};
  return stats_of(std::move(per));
}

// Several engines, each with batches (placements): every batch calibrated alone, then g_trials
// rounds, each running one trial of every batch of every engine in turn; an engine's stats pool the
// trials of its batches. An engine with no batch (or a failing one) gets invalid stats.
std::vector<Stats> measure_interleaved(const std::vector<std::vector<std::function<double(uint64_t)>>>& engines) {
  std::vector<std::vector<uint64_t>> reps(engines.size());
  std::vector<bool> ok(engines.size(), true);
  for (size_t e = 0; e < engines.size(); ++e) {
    for (const auto& b : engines[e]) {
      double t = b(1);
      uint64_t r = 1;
      while (t >= 0 && t < g_trial_ms * 1e6 / 8 && r < (1ull << 30)) {
        r *= 4;
        t = b(r);
      }
      if (t < 0) {
        ok[e] = false;
        break;
      }
      reps[e].push_back(std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(r) * g_trial_ms * 1e6 / t)));
    }
    if (engines[e].empty()) ok[e] = false;
  }
  std::vector<std::vector<double>> per(engines.size());
  for (int k = 0; k < g_trials; ++k)
    for (size_t e = 0; e < engines.size(); ++e) {
      if (!ok[e]) continue;
      for (size_t j = 0; j < engines[e].size(); ++j) {
        double ns = engines[e][j](reps[e][j]);
        if (ns < 0) {
          ok[e] = false;
          break;
        }
        per[e].push_back(ns / static_cast<double>(reps[e][j]));
      }
    }
  std::vector<Stats> out(engines.size());
  for (size_t e = 0; e < engines.size(); ++e)
    if (ok[e]) out[e] = stats_of(std::move(per[e]));
  return out;
}

// The trials of every batch (one per placement), pooled: median and min over all of them.
Stats measure_pooled(const std::vector<std::function<double(uint64_t)>>& batches) {
  std::vector<double> per;
  for (const auto& b : batches)
    if (!measure_into(b, per)) return {};
  return stats_of(std::move(per));
}

std::string fmt_ns(const Stats& s) {
  if (!s.valid) return "n/a";
  char buf[64];
  if (s.median < 100) std::snprintf(buf, sizeof buf, "%.1f/%.1f", s.median, s.min);
  else std::snprintf(buf, sizeof buf, "%.0f/%.0f", s.median, s.min);
  return buf;
}

std::string fmt_ratio(const Stats& a, const Stats& b) {
  if (!a.valid || !b.valid || b.median <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", a.median / b.median);
  return buf;
}

struct Loaded {
  Object obj;
  LoadedObject live;
};

std::vector<uint8_t> packet() {
  std::vector<uint8_t> p(BENCH_PKT_LEN);
  bench_fill_packet(p.data());
  return p;
}

// Map contents for the hash-map benchmark: even keys 0..1022 -> key * 3 + 1.
template <class F>
void for_each_entry(F&& f) {
  for (uint32_t k = 0; k < 1024; k += 2) f(k, static_cast<uint64_t>(k) * 3 + 1);
}

struct EngineRun {
  PreparedProgram prog;
  std::unique_ptr<TestRunContext> ctx;
  std::string error;
};

EngineRun prepare(Loaded& l, const ObjectProgram& op, ExecOptions eo) {
  EngineRun r;
  PrepareOptions po;
  po.rules = RuleSet::Privileged;  // our own benchmark programs: trusted (loops)
  po.exec = eo;
  // The engine asked for, not the runtime's default for verified programs (the JIT).
  po.engine = engine_choice(eo.engine);
  auto pp = prepare_program(op, l.live, nullptr, po);
  if (!pp) {
    r.error = pp.error().to_string();
    return r;
  }
  r.prog = std::move(*pp);
  auto pkt = packet();
  auto ctx = make_test_run(*r.prog.type, pkt, {});
  if (!ctx) {
    r.error = ctx.error().to_string();
    return r;
  }
  r.ctx = std::move(*ctx);
  return r;
}

struct KernelProg {
  kernel::Fd fd;
  kernel::Fd map;
  std::string error;
};

KernelProg kernel_load(const ObjectProgram& op, const Object& obj) {
  KernelProg k;
  std::vector<Insn> insns = op.insns;
  for (auto& in : insns) {
    if (in.op != Op::LDDW_MAP_IDX) continue;
    if (k.map) {
      in.op = Op::LDDW_MAP_FD;
      in.imm = k.map.get();
      continue;
    }
    const auto& spec = obj.maps[static_cast<size_t>(in.imm)].spec;
    int err = 0;
    k.map = kernel::create_map(BPF_MAP_TYPE_HASH, spec.key_size, spec.value_size, spec.max_entries, 0, &err);
    if (!k.map) {
      k.error = "map create failed: errno " + std::to_string(err);
      return k;
    }
    for_each_entry([&](uint32_t key, uint64_t v) { kernel::map_update(k.map.get(), &key, &v, 0); });
    in.op = Op::LDDW_MAP_FD;
    in.imm = k.map.get();
  }
  auto raw = encode(insns);
  auto lr = kernel::load_program(raw, BPF_PROG_TYPE_XDP, 0);
  if (!lr.fd) {
    auto lr2 = kernel::load_program(raw, BPF_PROG_TYPE_XDP, 1);
    std::string tail = lr2.log.size() > 300 ? lr2.log.substr(lr2.log.size() - 300) : lr2.log;
    for (auto& c : tail)
      if (c == '\n') c = ' ';
    k.error = "verifier rejected (errno " + std::to_string(lr.err) + "): ..." + tail;
    return k;
  }
  k.fd = std::move(lr.fd);
  return k;
}

constexpr double kCompileTargetUs = 100;  // issue 3: JIT compile time per 1,000 instructions

// Median JIT compile time in ns over `reps` compiles of the same program (the JIT's own figure:
// thread CPU time from analysis to the W^X mapping, JitCodeInfo::compile_ns). 0 if it does not compile.
uint64_t median_compile_ns(const Program& p, const HelperTable& helpers, int reps) {
  std::vector<uint64_t> v;
  for (int r = 0; r < reps; ++r) {
    ExecOptions o;
    o.engine = EngineKind::Jit;
    auto exe = Executable::create(p, helpers, o);
    if (!exe) return 0;
    v.push_back(jit_code_info(**exe).value().compile_ns);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string vs_target(double us_per_1k) {
  char b[64];
  std::snprintf(b, sizeof b, "(target <= %.0f: %s)", kCompileTargetUs, us_per_1k <= kCompileTargetUs ? "met" : "NOT met");
  return b;
}

// Compile speed: the suite's programs (measured in main), 300 generated programs (the diff tester's
// generator) and one large program; each program compiled several times, its median kept.
void compile_speed(uint64_t suite_ns, size_t suite_insns) {
  std::printf("\nJIT compile time per 1,000 instructions (median of repeated compiles per program, JitCodeInfo::compile_ns, CLOCK_MONOTONIC):\n");
  if (suite_insns)
    std::printf("  suite programs:       %7.1f us  over %zu instructions in the programs above %s\n",
                static_cast<double>(suite_ns) / static_cast<double>(suite_insns), suite_insns,
                vs_target(static_cast<double>(suite_ns) / static_cast<double>(suite_insns)).c_str());
  size_t insns = 0;
  uint64_t ns = 0;
  HelperTable helpers = diffgen::helpers();
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    diffgen::Generator gen(seed);
    auto g = gen.generate();
    uint64_t t = median_compile_ns(Program{"c", g.vm}, helpers, 5);
    if (!t) continue;
    insns += g.vm.size();
    ns += t;
  }
  double gen_us = static_cast<double>(ns) / static_cast<double>(insns);
  std::printf("  generated programs:   %7.1f us  over %zu instructions in 300 programs (all instruction classes) %s\n",
              gen_us, insns, vs_target(gen_us).c_str());
  // One large program (20,001 instructions: ALU, loads, stores, conditional jumps).
  std::vector<Insn> big = bench::big_compile_program();
  uint64_t t = median_compile_ns(Program{"big", big}, helpers, 9);
  double big_us = static_cast<double>(t) / static_cast<double>(big.size());
  std::printf("  one large program:    %7.1f us  (%zu instructions) %s\n", big_us, big.size(), vs_target(big_us).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trials" && i + 1 < argc) g_trials = std::max(1, std::atoi(argv[++i]));
    else if (a == "--ms" && i + 1 < argc) g_trial_ms = std::max(1.0, std::atof(argv[++i]));
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--placements" && i + 1 < argc) g_placements = std::max(1, std::atoi(argv[++i]));
    else if (a == "--dump") g_dump = true;
    else {
      std::fprintf(stderr, "usage: bench_suite [--trials N] [--ms M] [--placements N] [--only NAME] [--dump]\n");
      return 2;
    }
  }
  bool have_kernel = kernel::available();
  std::printf("bpfvm benchmark suite: ns per run as median/min of %d trials (~%.0f ms each); JIT and kernel: pooled "
              "over %d placements of the code\n",
              g_trials, g_trial_ms, g_placements);
  if (!have_kernel) std::printf("kernel: unavailable (%s): kernel columns are n/a\n", kernel::unavailable_reason().c_str());
  std::printf("\n%-20s %6s %8s %14s %12s %12s %9s %12s %9s %9s %10s\n", "program", "insns", "ran", "interp",
              "jit", "kernel", "kern-net", "native", "jit/kern", "jit/nat", "cmp us/1k");

  std::vector<std::string> notes;
  double kernel_empty = -1;
  uint64_t suite_compile_ns = 0;
  size_t suite_compile_insns = 0;
  std::vector<std::pair<std::string, std::string>> interp_per_insn;
  for (const Bench& b : kBenches) {
    if (!only.empty() && only != b.name) continue;
    std::string path = std::string(BPFVM_PROGS_DIR) + "/" + b.object;
    auto obj = load_object_file(path);
    if (!obj) {
      std::printf("%-20s cannot load %s: %s\n", b.name, path.c_str(), obj.error().to_string().c_str());
      continue;
    }
    const ObjectProgram* op = obj->find_program(b.function);
    if (!op) {
      std::printf("%-20s no program %s in %s\n", b.name, b.function, path.c_str());
      continue;
    }
    auto live = instantiate(*obj);
    if (!live) {
      std::printf("%-20s instantiate: %s\n", b.name, live.error().to_string().c_str());
      continue;
    }
    Loaded l{std::move(*obj), std::move(*live)};
    for (auto& m : l.live.maps)
      if (m) for_each_entry([&](uint32_t key, uint64_t v) { m->update(&key, &v, 0); });

    ExecOptions io;
    ExecOptions jo;
    jo.engine = EngineKind::Jit;
    ExecOptions co;
    co.insn_budget = 1ull << 40;
    EngineRun ir = prepare(l, *op, io), jr = prepare(l, *op, jo), cr = prepare(l, *op, co);
    if (!ir.error.empty() || !jr.error.empty() || !cr.error.empty()) {
      std::printf("%-20s prepare failed: %s%s%s\n", b.name, ir.error.c_str(), jr.error.c_str(), cr.error.c_str());
      continue;
    }
    if (g_dump) {
      auto text = jit_disassemble(*jr.prog.exe);
      if (text) std::printf("---- %s: JIT code\n%s----\n", b.name, text->c_str());
    }
    // results and executed instruction count
    RunStats st;
    auto rc = cr.prog.exe->run(cr.ctx->args(), &st);
    auto ri = ir.prog.exe->run(ir.ctx->args());
    auto rj = jr.prog.exe->run(jr.ctx->args());
    if (!rc || !ri || !rj) {
      std::printf("%-20s run failed: %s\n", b.name,
                  (!rc ? rc.error() : !ri ? ri.error() : rj.error()).to_string().c_str());
      continue;
    }
    uint32_t want = static_cast<uint32_t>(*ri);
    if (static_cast<uint32_t>(*rj) != want) notes.push_back(std::string(b.name) + ": JIT result differs from the interpreter!");
    auto pkt = packet();
    if (b.native && b.native(pkt.data()) != want)
      notes.push_back(std::string(b.name) + ": native result " + std::to_string(b.native(packet().data())) +
                      " differs from BPF " + std::to_string(want));

    auto time_exe = [](EngineRun& e) {
      return [&e](uint64_t reps) -> double {
        const Executable& exe = *e.prog.exe;
        RunArgs& args = e.ctx->args();
        uint64_t t0 = CpuClock::now_ns();
        for (uint64_t i = 0; i < reps; ++i) {
          auto r = exe.run(args);
          if (!r) return -1;
        }
        return static_cast<double>(CpuClock::now_ns() - t0);
      };
    };
    using Batch = std::function<double(uint64_t)>;
    // The JIT at several placements: `jr` and more compiles of the same program, all alive at once.
    std::vector<EngineRun> more_jit;
    for (int k = 1; k < g_placements; ++k) {
      more_jit.push_back(prepare(l, *op, jo));
      if (!more_jit.back().error.empty()) more_jit.pop_back();
    }
    std::vector<Batch> jit_batches = {time_exe(jr)};
    for (EngineRun& e : more_jit) jit_batches.push_back(time_exe(e));
    std::vector<Batch> native_batches;
    auto np = packet();
    uint32_t (*volatile fn)(bu8*) = b.native;
    if (b.native) {
      native_batches.push_back([&](uint64_t reps) -> double {
        uint64_t t0 = CpuClock::now_ns();
        uint32_t sink = 0;
        for (uint64_t i = 0; i < reps; ++i) sink += fn(np.data());
        asm volatile("" ::"r"(sink));
        return static_cast<double>(CpuClock::now_ns() - t0);
      });
    }
    // As many kernel loads of the program as JIT placements (each load is JIT-compiled to its own
    // address by the kernel), all kept loaded while they are measured.
    std::vector<KernelProg> kps;
    std::vector<Batch> kernel_batches;
    auto pk = packet();
    if (have_kernel) {
      for (int k = 0; k < g_placements; ++k) {
        KernelProg kp = kernel_load(*op, l.obj);
        if (!kp.fd) {
          notes.push_back(std::string(b.name) + ": kernel " + kp.error);
          break;
        }
        kps.push_back(std::move(kp));
      }
      for (KernelProg& kp : kps) {
        auto tr = kernel::test_run(kp.fd.get(), pk, {}, 1, pk.size() + 256);
        if (tr.err) {
          notes.push_back(std::string(b.name) + ": BPF_PROG_TEST_RUN errno " + std::to_string(tr.err));
          kernel_batches.clear();
          break;
        }
        if (tr.retval != want) {
          notes.push_back(std::string(b.name) + ": kernel result " + std::to_string(tr.retval) + " differs from bpfvm " +
                          std::to_string(want));
        }
        const int fd = kp.fd.get();
        kernel_batches.push_back([fd, &pk](uint64_t reps) -> double {
          uint32_t r = static_cast<uint32_t>(std::min<uint64_t>(reps, 1u << 30));
          auto t = kernel::test_run(fd, pk, {}, r, pk.size() + 256);
          if (t.err) return -1;
          return static_cast<double>(t.duration_ns) * r;
        });
      }
    }
    // Trials interleaved: one trial of every engine and placement per round, so that the machine's
    // slow and fast phases (this VM shares its cores) fall on every column alike.
    std::vector<Stats> st4 = measure_interleaved({{time_exe(ir)}, jit_batches, native_batches, kernel_batches});
    Stats s_interp = st4[0], s_jit = st4[1], s_native = st4[2], s_kernel = st4[3];
    if (std::string(b.name) == "empty" && s_kernel.valid) kernel_empty = s_kernel.median;
    Stats s_net = s_kernel;
    if (s_net.valid && kernel_empty >= 0) {
      s_net.median = std::max(0.0, s_net.median - kernel_empty);
      s_net.min = std::max(0.0, s_net.min - kernel_empty);
    } else {
      s_net.valid = false;
    }
    uint64_t cmp_ns = median_compile_ns(jr.prog.exe->program(), jr.prog.exe->helpers(), 15);
    double cmp = static_cast<double>(cmp_ns) / static_cast<double>(op->insns.size());
    if (cmp_ns) {
      suite_compile_ns += cmp_ns;
      suite_compile_insns += op->insns.size();
    }
    char net[32] = "n/a";
    if (s_net.valid) std::snprintf(net, sizeof net, "%.1f", s_net.median);
    std::printf("%-20s %6zu %8llu %14s %12s %12s %9s %12s %9s %9s %10.1f\n", b.name, op->insns.size(),
                static_cast<unsigned long long>(st.insns_executed), fmt_ns(s_interp).c_str(), fmt_ns(s_jit).c_str(),
                fmt_ns(s_kernel).c_str(), net, fmt_ns(s_native).c_str(), fmt_ratio(s_jit, s_kernel).c_str(),
                fmt_ratio(s_jit, s_native).c_str(), cmp);
    std::fflush(stdout);
    if (st.insns_executed > 1000 && s_interp.valid) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f", s_interp.median / static_cast<double>(st.insns_executed));
      interp_per_insn.push_back({b.name, buf});
    }
  }
  std::printf("\ncolumns: insns = program size (slots); ran = instructions executed per run (counting interpreter);\n"
              "  ns/run median/min for interp, jit, kernel (kernel JIT via BPF_PROG_TEST_RUN repeat), native (host "
              "compiler -O2);\n  kern-net = kernel minus its per-run harness cost (the empty row); jit/kern, jit/nat = "
              "ratios of medians;\n  cmp us/1k = JIT compile time per 1,000 instructions for this program (median of 15 compiles; "
              "includes ~1 us per program of fixed kernel cost: the write of the code through /proc/self/mem, which dominates small programs).\n");
  std::printf("interpreter ns per executed instruction:");
  for (auto& [n, v] : interp_per_insn) std::printf("  %s %s", n.c_str(), v.c_str());
  std::printf("\n");
  compile_speed(suite_compile_ns, suite_compile_insns);
  for (auto& n : notes) std::printf("note: %s\n", n.c_str());
  return 0;
}
