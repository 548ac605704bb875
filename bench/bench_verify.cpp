// bench_verify: for every program in tests/progs, bench/progs (built objects) and ../shared/samples,
// bpfvm's verification time and memory next to the kernel's own (BPF_LOG_STATS "verification time").
// Then a table for the Cilium datapath programs (../shared/samples/cilium, loaded as tc and ip-link
// load them: sched_cls, xdp for bpf_xdp*): bpfvm's processed instructions, states, peak states and
// peak memory next to the kernel's recorded figures (KERNEL.tsv) and, where the kernel is usable, its
// verification time measured in the same run.
// Usage: bench_verify [PROGS_DIR] [SHARED_DIR]
//   env BPFVM_BENCH_ONLY=SUBSTR   only programs whose "file:name" contains SUBSTR
//   env BPFVM_BENCH_REPEAT=N      verification runs per program (best is printed; default 3)
//   env BPFVM_BENCH_CILIUM=only   only the Cilium table; =no: without it
//   env BPFVM_BENCH_LOGS=DIR      Cilium table: write both verifiers' level-2 logs of each program there
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <filesystem>

#include "bpfvm/verifier.hpp"
#include "kernel/oracle.hpp"
#include "../tests/verifier_util.hpp"

using namespace bpfvm;

namespace {

struct KernelRow {
  std::string verdict, error;
  uint64_t insns = 0, states = 0;
};

// KERNEL.tsv: object, section, prog_type, kernel_verdict, kernel_insns_processed, kernel_total_states,
// kernel_error.
std::map<std::pair<std::string, std::string>, KernelRow> read_kernel_tsv(const std::filesystem::path& p) {
  std::map<std::pair<std::string, std::string>, KernelRow> out;
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, '\t')) f.push_back(x);
    if (f.size() < 6) continue;
    KernelRow r;
    r.verdict = f[3];
    r.insns = std::strtoull(f[4].c_str(), nullptr, 10);
    r.states = std::strtoull(f[5].c_str(), nullptr, 10);
    if (f.size() > 6) r.error = f[6];
    out[{f[0], f[1]}] = r;
  }
  return out;
}

void cilium_table(const std::filesystem::path& dir, const char* only, int repeat) {
  auto kernel_rows = read_kernel_tsv(dir / "KERNEL.tsv");
  auto corpus = vtest::load_corpus({dir}, dir);
  const bool kernel_ok = kernel::available();
  std::printf("\nCilium datapath (%s): bpfvm next to the kernel (KERNEL.tsv; k_us measured now)\n", dir.c_str());
  std::printf("%-34s %-6s %8s %8s %8s %6s %7s %6s %7s %6s %9s %9s %8s %s\n", "program", "type", "bpfvm", "kernel",
              "insns", "k_insns", "ratio", "states", "k_states", "peak", "mem_KiB", "bpfvm_us", "k_us", "note");
  std::vector<double> ratios;
  int missed = 0, both = 0, over2x = 0, faster = 0, timed = 0;
  uint64_t max_mem = 0, max_peak = 0;
  for (const auto& cp : corpus) {
    const std::string obj = std::filesystem::path(cp.file).filename().string();
    std::string name = obj + ":" + cp.program.section;
    if (only && name.find(only) == std::string::npos) continue;
    ObjectProgram p = cp.program;
    p.type = obj.rfind("bpf_xdp", 0) == 0 ? kProgXdp : kProgSchedCls;
    VerifyOptions o = verify_options_for(*cp.object, p, RuleSet::Privileged);
    if (!o.type) continue;
    uint64_t best = UINT64_MAX;
    VerifyReport rep;
    for (int i = 0; i < repeat; ++i) {
      auto r = verify(p.insns, o);
      if (!r) break;
      best = std::min(best, r->time_us);
      rep = std::move(*r);
    }
    auto it = kernel_rows.find({obj, cp.program.section});
    KernelRow k = it != kernel_rows.end() ? it->second : KernelRow{"?", "", 0, 0};
    std::string ratio = "-", note, kus = "-";
    if (k.verdict == "accept" && !rep.accepted) {
      ++missed;
      note = "bpfvm rejects: " + rep.error.message.substr(0, 60);
    }
    if (k.verdict == "reject") note = "kernel: " + k.error.substr(0, 50);
    if (k.verdict == "accept" && rep.accepted && k.insns) {
      double q = static_cast<double>(rep.insns_processed) / static_cast<double>(k.insns);
      ratios.push_back(q);
      ratio = fmt::format("{:.2f}", q);
      ++both;
      if (q > 2.0) ++over2x;
    }
    if (kernel_ok && rep.accepted) {
      auto kv = vtest::kernel_verify_object(*cp.object, p, 4);
      if (kv.ran && kv.accepted) {
        double kt = std::max<double>(1.0, kv.time_ns / 1000.0);
        kus = fmt::format("{:.0f}", kt);
        ++timed;
        if (static_cast<double>(best) <= kt) ++faster;
      }
    }
    // BPFVM_BENCH_LOGS=DIR: both verifiers' level-2 logs (every instruction visited) of each program,
    // to compare where each spends its instructions.
    if (const char* logs = std::getenv("BPFVM_BENCH_LOGS")) {
      std::string base = std::string(logs) + "/" + obj + "_" + cp.program.section;
      std::replace(base.begin() + static_cast<long>(std::strlen(logs)) + 1, base.end(), '/', '_');
      VerifyOptions lo = o;
      lo.log_level = 2;
      if (auto r = verify(p.insns, lo)) std::ofstream(base + ".bpfvm.log") << r->log;
      if (kernel_ok) std::ofstream(base + ".kernel.log") << vtest::kernel_verify_object(*cp.object, p, 2).log;
    }
    max_mem = std::max(max_mem, rep.peak_memory);
    max_peak = std::max(max_peak, rep.peak_states);
    std::printf("%-34s %-6s %8s %8s %8llu %6llu %7s %6llu %7llu %6llu %9llu %9llu %8s %s\n", name.c_str(),
                p.type == kProgXdp ? "xdp" : "tc", rep.accepted ? "accept" : "reject", k.verdict.c_str(),
                static_cast<unsigned long long>(rep.insns_processed), static_cast<unsigned long long>(k.insns),
                ratio.c_str(), static_cast<unsigned long long>(rep.states), static_cast<unsigned long long>(k.states),
                static_cast<unsigned long long>(rep.peak_states), static_cast<unsigned long long>(rep.peak_memory / 1024),
                static_cast<unsigned long long>(best), kus.c_str(), note.c_str());
  }
  std::sort(ratios.begin(), ratios.end());
  double median = ratios.empty() ? 0 : ratios[ratios.size() / 2];
  std::printf("cilium: %d programs the kernel accepts rejected by bpfvm; of %d both accept, instructions "
              "bpfvm/kernel median %.2f, max %.2f, %d over 2x; bpfvm faster on %d of %d timed against the kernel\n",
              missed, both, median, ratios.empty() ? 0.0 : ratios.back(), over2x, faster, timed);
  std::printf("cilium: peak states at most %llu, peak memory at most %.1f MiB (target < 256 MiB)\n",
              static_cast<unsigned long long>(max_peak), static_cast<double>(max_mem) / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path progs = argc > 1 ? argv[1] : BPFVM_PROGS_DIR;
  std::filesystem::path shared = argc > 2 ? argv[2] : std::filesystem::path(BPFVM_SOURCE_DIR) / ".." / "shared";
  const char* cil = std::getenv("BPFVM_BENCH_CILIUM");
  const std::string cilium_mode = cil ? cil : "";
  const char* only = std::getenv("BPFVM_BENCH_ONLY");
  int repeat = std::getenv("BPFVM_BENCH_REPEAT") ? std::max(1, std::atoi(std::getenv("BPFVM_BENCH_REPEAT"))) : 3;
  const std::filesystem::path cilium = shared / "samples" / "cilium";
  if (cilium_mode == "only") {
    if (std::filesystem::exists(cilium)) cilium_table(cilium, only, repeat);
    else std::printf("no %s\n", cilium.c_str());
    return 0;
  }
  std::vector<std::filesystem::path> dirs{progs};
  if (std::filesystem::exists(shared / "samples")) dirs.push_back(shared / "samples");
  auto corpus = vtest::load_corpus(dirs, std::filesystem::exists(shared) ? shared : progs);
  // The Cilium objects have their own table (their programs' types come from how they are loaded).
  std::erase_if(corpus, [](const vtest::CorpusProgram& cp) { return cp.file.find("cilium/") != std::string::npos; });
  bool kernel_ok = kernel::available();
  std::printf("%-60s %8s %10s %10s %8s %9s %9s %9s %7s %7s %3s %s\n", "program", "verdict", "bpfvm_us",
              "kernel_us", "ratio", "mem_KiB", "insns", "k_insns", "states", "k_st", "fn", "kernel");
  int faster = 0, compared = 0, over2x = 0;
  // Programs with bpf-to-bpf calls or callbacks (more than one function), where both accept.
  int multi = 0;
  uint64_t multi_insns = 0, multi_kinsns = 0, multi_states = 0, multi_kstates = 0;
  double max_ratio = 0;
  std::string max_ratio_name, max_mem_name;
  uint64_t max_mem = 0, total_us = 0, total_kernel_us = 0;
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
    std::string kus = "-", ratio = "-", kv = kernel_ok ? "n/a" : "unavailable", kinsns = "-", kstates = "-";
    // Functions: the main one plus every distinct target of a bpf-to-bpf call or function address.
    std::vector<int64_t> targets;
    for (size_t i = 0; i < p.insns.size(); ++i)
      if (p.insns[i].op == Op::CALL_LOCAL || p.insns[i].op == Op::LDDW_CODE_ADDR)
        targets.push_back(static_cast<int64_t>(i) + 1 + p.insns[i].imm);
    std::sort(targets.begin(), targets.end());
    const int funcs = 1 + static_cast<int>(std::unique(targets.begin(), targets.end()) - targets.begin());
    if (kernel_ok) {
      auto k = vtest::kernel_verify_object(*cp.object, p, 4);
      if (k.ran) {
        kv = k.accepted ? "accepted" : "rejected";
        auto pos = k.log.find("processed ");
        if (pos != std::string::npos) kinsns = std::to_string(std::strtoull(k.log.c_str() + pos + 10, nullptr, 10));
        if (auto sp = k.log.find("total_states "); sp != std::string::npos)
          kstates = std::to_string(std::strtoull(k.log.c_str() + sp + 13, nullptr, 10));
        if (k.accepted && rep.accepted && funcs > 1) {
          ++multi;
          multi_insns += rep.insns_processed;
          multi_kinsns += std::strtoull(kinsns.c_str(), nullptr, 10);
          multi_states += rep.states;
          multi_kstates += std::strtoull(kstates.c_str(), nullptr, 10);
        }
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
    std::printf("%-60s %8s %10llu %10s %8s %9llu %9llu %9s %7llu %7s %3d %s\n", name.c_str(),
                rep.accepted ? "accepted" : "rejected", static_cast<unsigned long long>(best), kus.c_str(),
                ratio.c_str(), static_cast<unsigned long long>(rep.peak_memory / 1024),
                static_cast<unsigned long long>(rep.insns_processed), kinsns.c_str(),
                static_cast<unsigned long long>(rep.states), kstates.c_str(), funcs, kv.c_str());
  }
  if (compared) {
    std::printf("\nbpfvm faster than the kernel on %d of %d programs both accept (%.0f%%); more than 2x slower on %d\n",
                faster, compared, 100.0 * faster / compared, over2x);
    std::printf("max ratio %.2f (%s); total %llu us vs kernel %llu us\n", max_ratio, max_ratio_name.c_str(),
                static_cast<unsigned long long>(total_us), static_cast<unsigned long long>(total_kernel_us));
    std::printf("with subprograms or callbacks (fn > 1), both accept: %d programs, insns %llu vs kernel %llu, "
                "states %llu vs kernel %llu\n",
                multi, static_cast<unsigned long long>(multi_insns), static_cast<unsigned long long>(multi_kinsns),
                static_cast<unsigned long long>(multi_states), static_cast<unsigned long long>(multi_kstates));
    bool met = faster * 10 >= compared * 9 && over2x == 0;
    std::printf("target (faster on >= 90%%, never more than 2x slower): %s\n", met ? "met" : "NOT met");
  }
  std::printf("memory: peak verifier state at most %llu KiB (%s); cap %llu MiB\n",
              static_cast<unsigned long long>(max_mem / 1024), max_mem_name.c_str(),
              static_cast<unsigned long long>(VerifyLimits{}.max_memory >> 20));
  if (cilium_mode != "no" && std::filesystem::exists(cilium)) cilium_table(cilium, only, repeat);
  return 0;
}
