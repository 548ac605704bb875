// JIT compile time alone (issue 3: "compiles fast"), and a fixed workload for profiling the compiler
// with callgrind (instruction counts do not depend on the machine's load).
//
//   build/bench_jit_compile [--set suite|gen|big|all] [--reps N] [--gen-count N] [--each] [--only FUNCTION]
//   valgrind --tool=callgrind build/bench_jit_compile --set gen --reps 2
//
// Sets: `suite` = the 8 programs of bench_suite (bench/progs/*.bpf.o, loaded and prepared once),
// `gen` = the differential tester's generated programs (seeds 1..--gen-count, default 300),
// `big` = the 20,001-instruction program of bench_suite. Each program is compiled --reps times
// (Executable::create with the JIT, the engine destroyed after each compile, as bench_suite does);
// printed: the median of the JIT's own compile_ns per program, summed, per 1,000 instructions
// (--each: also every program's median and minimum).
// The programs are built before the first compile, so under callgrind the compiles dominate.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../tests/diff_gen.hpp"
#include "jit_programs.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;

namespace {

struct Subject {
  Program program;
  HelperTable helpers;
  std::string name;
};

bool g_each = false;  // --each: one line per program
std::string g_only;   // --only NAME: only the suite program NAME (its function name, e.g. xdp_strcmp)

struct SuiteProg {
  const char* object;
  const char* function;
};
const SuiteProg kSuite[] = {
    {"suite.bpf.o", "xdp_empty"},  {"suite.bpf.o", "xdp_arith"}, {"suite.bpf.o", "xdp_primes"},
    {"suite.bpf.o", "xdp_copy"},   {"suite.bpf.o", "xdp_switch"}, {"suite.bpf.o", "xdp_log2"},
    {"suite.bpf.o", "xdp_strcmp"}, {"maplookup.bpf.o", "xdp_maplookup"},
};

// Loaded objects stay alive: prepared programs refer to their maps.
struct Keep {
  std::vector<Object> objects;
  std::vector<LoadedObject> live;
  std::vector<PreparedProgram> prepared;
};

bool add_suite(std::vector<Subject>& out, Keep& keep) {
  keep.objects.reserve(16);
  keep.live.reserve(16);
  for (const SuiteProg& s : kSuite) {
    if (!g_only.empty() && g_only != s.function) continue;
    std::string path = std::string(BPFVM_PROGS_DIR) + "/" + s.object;
    auto obj = load_object_file(path);
    if (!obj) {
      std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(), obj.error().to_string().c_str());
      return false;
    }
    keep.objects.push_back(std::move(*obj));
    const ObjectProgram* op = keep.objects.back().find_program(s.function);
    if (!op) {
      std::fprintf(stderr, "no program %s in %s\n", s.function, path.c_str());
      return false;
    }
    auto live = instantiate(keep.objects.back());
    if (!live) {
      std::fprintf(stderr, "instantiate %s: %s\n", path.c_str(), live.error().to_string().c_str());
      return false;
    }
    keep.live.push_back(std::move(*live));
    PrepareOptions po;
    po.rules = RuleSet::Privileged;  // our own benchmark programs (loops)
    po.exec.engine = EngineKind::Jit;
    po.engine = engine_choice(EngineKind::Jit);
    auto pp = prepare_program(*op, keep.live.back(), nullptr, po);
    if (!pp) {
      std::fprintf(stderr, "prepare %s: %s\n", s.function, pp.error().to_string().c_str());
      return false;
    }
    keep.prepared.push_back(std::move(*pp));
    const Executable& exe = *keep.prepared.back().exe;
    out.push_back({exe.program(), exe.helpers(), s.function});
  }
  return true;
}

void add_generated(std::vector<Subject>& out, uint64_t count) {
  HelperTable helpers = diffgen::helpers();
  for (uint64_t seed = 1; seed <= count; ++seed) {
    diffgen::Generator gen(seed);
    auto g = gen.generate();
    out.push_back({Program{"c", g.vm}, helpers, "seed " + std::to_string(seed)});
  }
}

// The 20,001-instruction program of bench_suite (ALU, loads, stores, conditional jumps).
void add_big(std::vector<Subject>& out) {
  std::vector<Insn> big = bench::big_compile_program();
  out.push_back({Program{"big", big}, HelperTable{}, "big"});
}

// Sum over the programs of the median compile_ns, and the instruction count.
void run(const char* name, const std::vector<Subject>& subjects, int reps) {
  uint64_t ns = 0;
  size_t insns = 0, failed = 0;
  for (const Subject& s : subjects) {
    std::vector<uint64_t> v;
    for (int r = 0; r < reps; ++r) {
      ExecOptions o;
      o.engine = EngineKind::Jit;
      auto exe = Executable::create(s.program, s.helpers, o);
      if (!exe) break;
      v.push_back(jit_code_info(**exe).value().compile_ns);
    }
    if (v.empty()) {
      ++failed;
      continue;
    }
    std::sort(v.begin(), v.end());
    ns += v[v.size() / 2];
    if (g_each)
      std::printf("  %-16s %6zu insns %8.2f us (min %.2f)\n", s.name.c_str(), s.program.insns.size(),
                  static_cast<double>(v[v.size() / 2]) / 1e3, static_cast<double>(v.front()) / 1e3);
    insns += s.program.insns.size();
  }
  std::printf("%-6s %4zu programs %7zu insns: %8.1f us per 1,000 instructions (%zu did not compile)\n", name,
              subjects.size(), insns, insns ? static_cast<double>(ns) / static_cast<double>(insns) : 0.0, failed);
}

}  // namespace

int main(int argc, char** argv) {
  std::string set = "all";
  int reps = 5;
  uint64_t gen_count = 300;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--set" && i + 1 < argc) set = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--each") g_each = true;
    else if (a == "--only" && i + 1 < argc) g_only = argv[++i];
    else if (a == "--gen-count" && i + 1 < argc) gen_count = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: bench_jit_compile [--set suite|gen|big|all] [--reps N] [--gen-count N] [--each] [--only FUNCTION]\n");
      return 2;
    }
  }
  if (set != "all" && set != "suite" && set != "gen" && set != "big") {
    std::fprintf(stderr, "unknown set %s\n", set.c_str());
    return 2;
  }
  Keep keep;
  std::vector<Subject> suite, gen, big;
  if ((set == "all" || set == "suite") && !add_suite(suite, keep)) return 1;
  if (set == "all" || set == "gen") add_generated(gen, gen_count);
  if (set == "all" || set == "big") add_big(big);
  if (!suite.empty()) run("suite", suite, reps);
  if (!gen.empty()) run("gen", gen, reps);
  if (!big.empty()) run("big", big, reps);
  return 0;
}
