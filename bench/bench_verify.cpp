// bench_verify: for every program in tests/progs, bench/progs (built objects) and ../shared/samples,
// bpfvm's verification time and memory next to the kernel's own (BPF_LOG_STATS "verification time").
// Usage: bench_verify [PROGS_DIR] [SHARED_DIR]
//   env BPFVM_BENCH_ONLY=SUBSTR   only programs whose "file:name" contains SUBSTR
//   env BPFVM_BENCH_REPEAT=N      verification runs per program (best is printed; default 3)
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <filesystem>

#include "bpfvm/verifier.hpp"
#include "kernel/oracle.hpp"
#include "../tests/verifier_util.hpp"

using namespace bpfvm;

int main(int argc, char** argv) {
  std::filesystem::path progs = argc > 1 ? argv[1] : BPFVM_PROGS_DIR;
  std::filesystem::path shared = argc > 2 ? argv[2] : std::filesystem::path(BPFVM_SOURCE_DIR) / ".." / "shared";
  std::vector<std::filesystem::path> dirs{progs};
  if (std::filesystem::exists(shared / "samples")) dirs.push_back(shared / "samples");
  auto corpus = vtest::load_corpus(dirs, std::filesystem::exists(shared) ? shared : progs);
  bool kernel_ok = kernel::available();
  std::printf("%-60s %8s %10s %10s %8s %9s %9s %9s %6s %s\n", "program", "verdict", "bpfvm_us", "kernel_us", "ratio",
              "mem_KiB", "insns", "k_insns", "rounds", "kernel");
  int faster = 0, compared = 0, over2x = 0;
  double max_ratio = 0;
  std::string max_ratio_name, max_mem_name;
  uint64_t max_mem = 0, total_us = 0, total_kernel_us = 0;
  const char* only = std::getenv("BPFVM_BENCH_ONLY");
  int repeat = std::getenv("BPFVM_BENCH_REPEAT") ? std::max(1, std::atoi(std::getenv("BPFVM_BENCH_REPEAT"))) : 3;
  for (const auto& cp : corpus) {
    if (only && (cp.file + ":" + cp.program.name).find(only) == std::string::npos) continue;
    ObjectProgram p = cp.program;
    if (!section_prog_type(p.section).known && p.section.find("test") == std::string::npos && p.section != ".text")
      p.type = kProgSchedCls;
    VerifyOptions o = verify_options_for(*cp.object, p, RuleSet::Privileged);
    if (!o.type) continue;
    // Best of 3 runs (the machine is shared).
    uint64_t best = UINT64_MAX;
    VerifyReport rep;
    for (int i = 0; i < repeat; ++i) {
      auto r = verify(p.insns, o);
      if (!r) break;
      best = std::min(best, r->time_us);
      rep = std::move(*r);
    }
    std::string name = cp.file + ":" + p.name;
    if (name.size() > 60) name = "…" + name.substr(name.size() - 59);
    std::string kus = "-", ratio = "-", kv = kernel_ok ? "n/a" : "unavailable", kinsns = "-";
    if (kernel_ok) {
      auto k = vtest::kernel_verify_object(*cp.object, p, 4);
      if (k.ran) {
        kv = k.accepted ? "accepted" : "rejected";
        auto pos = k.log.find("processed ");
        if (pos != std::string::npos) kinsns = std::to_string(std::strtoull(k.log.c_str() + pos + 10, nullptr, 10));
        if (k.accepted && rep.accepted) {
          double kt = std::max<double>(1.0, k.time_ns / 1000.0);
          kus = fmt::format("{:.0f}", kt);
          double q = std::max<double>(1.0, static_cast<double>(best)) / kt;
          ratio = fmt::format("{:.2f}", q);
          ++compared;
          if (q <= 1.0) ++faster;
          if (q > 2.0) ++over2x;
          if (q > max_ratio) {
            max_ratio = q;
            max_ratio_name = name;
          }
          total_us += best;
          total_kernel_us += static_cast<uint64_t>(kt);
        }
      }
    }
    if (rep.peak_memory > max_mem) {
      max_mem = rep.peak_memory;
      max_mem_name = name;
    }
    std::printf("%-60s %8s %10llu %10s %8s %9llu %9llu %9s %6d %s\n", name.c_str(),
                rep.accepted ? "accepted" : "rejected", static_cast<unsigned long long>(best), kus.c_str(),
                ratio.c_str(), static_cast<unsigned long long>(rep.peak_memory / 1024),
                static_cast<unsigned long long>(rep.insns_total), kinsns.c_str(), rep.rounds, kv.c_str());
  }
  if (compared) {
    std::printf("\nbpfvm faster than the kernel on %d of %d programs both accept (%.0f%%); more than 2x slower on %d\n",
                faster, compared, 100.0 * faster / compared, over2x);
    std::printf("max ratio %.2f (%s); total %llu us vs kernel %llu us\n", max_ratio, max_ratio_name.c_str(),
                static_cast<unsigned long long>(total_us), static_cast<unsigned long long>(total_kernel_us));
    bool met = faster * 10 >= compared * 9 && over2x == 0;
    std::printf("target (faster on >= 90%%, never more than 2x slower): %s\n", met ? "met" : "NOT met");
  }
  std::printf("memory: peak verifier state at most %llu KiB (%s); cap %llu MiB\n",
              static_cast<unsigned long long>(max_mem / 1024), max_mem_name.c_str(),
              static_cast<unsigned long long>(VerifyLimits{}.max_memory >> 20));
  return 0;
}
