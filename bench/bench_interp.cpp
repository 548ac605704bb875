// Interpreter speed: nanoseconds per executed instruction.
//   build/bench_interp [--trials N]
// For each program: bpfvm's interpreter (threaded, pre-decoded; unchecked and checked modes), a
// baseline interpreter written here the way uBPF's works (a switch over the raw instruction, decoded
// again at every step). The kernel comparison is in bench_suite (JIT issue): the kernel's verifier
// rejects these 1M-iteration loops.
// Executed instructions are counted once with the counting interpreter.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;
using Clock = std::chrono::steady_clock;

namespace {

struct Case {
  const char* name;
  const char* text;  // conformance syntax; r1 = 64-byte memory, r2 = its length
};

const Case kCases[] = {
    {"alu loop: sum of i*i ^ i (1M)",
     "mov %r0, 0\n"
     "mov %r3, 1000000\n"
     "loop:\n"
     "mov %r4, %r3\n"
     "mul %r4, %r3\n"
     "mov %r5, %r3\n"
     "lsh %r5, 3\n"
     "xor %r4, %r5\n"
     "add %r0, %r4\n"
     "sub %r3, 1\n"
     "jne %r3, 0, loop\n"
     "exit\n"},
    {"alu chain: one register (1M)",
     "mov %r0, 0\n"
     "mov %r3, 1000000\n"
     "loop:\n"
     "add %r0, %r3\n"
     "xor %r0, 0x5a\n"
     "lsh %r0, 1\n"
     "rsh %r0, 1\n"
     "mul %r0, 3\n"
     "sub %r3, 1\n"
     "jne %r3, 0, loop\n"
     "exit\n"},
    {"memory loop (1M iterations)",
     "mov %r0, 0\n"
     "mov %r3, 1000000\n"
     "loop:\n"
     "ldxdw %r4, [%r1+8]\n"
     "add %r4, %r3\n"
     "stxdw [%r1+8], %r4\n"
     "ldxw %r5, [%r1+16]\n"
     "add %r0, %r5\n"
     "sub %r3, 1\n"
     "jne %r3, 0, loop\n"
     "exit\n"},
    {"branchy loop (1M iterations)",
     "mov %r0, 0\n"
     "mov %r3, 1000000\n"
     "loop:\n"
     "mov %r4, %r3\n"
     "and %r4, 3\n"
     "jeq %r4, 0, a\n"
     "jeq %r4, 1, b\n"
     "add %r0, 2\n"
     "ja next\n"
     "a:\n"
     "add %r0, 5\n"
     "ja next\n"
     "b:\n"
     "sub %r0, 1\n"
     "next:\n"
     "sub %r3, 1\n"
     "jne %r3, 0, loop\n"
     "exit\n"},
};

// ---- baseline: re-decode every step (only the opcodes the cases use) -----------------------------
uint64_t baseline_run(const std::vector<RawInsn>& code, uint8_t* mem, uint64_t len) {
  uint64_t r[11] = {};
  alignas(16) uint8_t stack[512];
  r[1] = reinterpret_cast<uint64_t>(mem);
  r[2] = len;
  r[10] = reinterpret_cast<uint64_t>(stack + sizeof stack);
  for (size_t pc = 0;;) {
    const RawInsn in = code[pc++];
    const uint64_t imm = static_cast<uint64_t>(static_cast<int64_t>(in.imm));
    switch (in.code) {
      case 0xb7: r[in.dst] = imm; break;
      case 0xbf: r[in.dst] = r[in.src]; break;
      case 0x07: r[in.dst] += imm; break;
      case 0x0f: r[in.dst] += r[in.src]; break;
      case 0x17: r[in.dst] -= imm; break;
      case 0x27: r[in.dst] *= imm; break;
      case 0x2f: r[in.dst] *= r[in.src]; break;
      case 0xaf: r[in.dst] ^= r[in.src]; break;
      case 0x1f: r[in.dst] -= r[in.src]; break;
      case 0x57: r[in.dst] &= imm; break;
      case 0x67: r[in.dst] <<= (imm & 63); break;
      case 0x77: r[in.dst] >>= (imm & 63); break;
      case 0xa7: r[in.dst] ^= imm; break;
      case 0x79: std::memcpy(&r[in.dst], reinterpret_cast<void*>(r[in.src] + in.off), 8); break;
      case 0x61: { uint32_t v; std::memcpy(&v, reinterpret_cast<void*>(r[in.src] + in.off), 4); r[in.dst] = v; break; }
      case 0x7b: std::memcpy(reinterpret_cast<void*>(r[in.dst] + in.off), &r[in.src], 8); break;
      case 0x05: pc += in.off; break;
      case 0x15: if (r[in.dst] == imm) pc += in.off; break;
      case 0x55: if (r[in.dst] != imm) pc += in.off; break;
      case 0x95: return r[0];
      default: std::fprintf(stderr, "baseline: opcode 0x%02x not handled\n", in.code); std::abort();
    }
  }
}

template <class F>
double median_ns(int trials, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < trials; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int trials = 15;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--trials" && i + 1 < argc) trials = std::max(1, std::atoi(argv[++i]));
  std::printf("Interpreter speed, ns per executed instruction (median of %d trials)\n", trials);
  std::printf("%-32s %10s %10s %14s %12s\n", "program", "insns", "bpfvm", "bpfvm-checked", "baseline(*)");
  for (const Case& c : kCases) {
    auto insns = assemble(c.text, Syntax::Conformance);
    if (!insns) {
      std::fprintf(stderr, "%s: %s\n", c.name, insns.error().to_string().c_str());
      return 2;
    }
    std::vector<uint8_t> mem(64, 1);
    ExecOptions counted;
    counted.insn_budget = UINT64_MAX;
    auto ce = Executable::create(Program{c.name, *insns}, HelperTable::conformance(), counted);
    RunStats stats;
    auto cr = (*ce)->run_on_memory(mem.data(), mem.size(), &stats);
    uint64_t n = stats.insns_executed;
    auto fast = Executable::create(Program{c.name, *insns}, HelperTable::conformance(), {});
    ExecOptions chk;
    chk.checked = true;
    auto checked = Executable::create(Program{c.name, *insns}, HelperTable::conformance(), chk);
    uint64_t expect = *cr, got = 0;
    double t_fast = median_ns(trials, [&] { got = *(*fast)->run_on_memory(mem.data(), mem.size()); });
    if (got != expect && std::string(c.name).find("memory") == std::string::npos) {
      std::fprintf(stderr, "%s: result mismatch\n", c.name);
      return 1;
    }
    double t_chk = median_ns(trials, [&] { (void)(*checked)->run_on_memory(mem.data(), mem.size()); });
    auto raw = encode(*insns);
    double t_base = median_ns(trials, [&] { baseline_run(raw, mem.data(), mem.size()); });
    std::printf("%-32s %10llu %10.3f %14.3f %12.3f\n", c.name, static_cast<unsigned long long>(n), t_fast / n,
                t_chk / n, t_base / n);
  }
  std::printf("(*) baseline: an interpreter that decodes the raw instruction at every step with a switch, as uBPF's\n"
              "    does, written in this benchmark for comparison in the same run.\n");
  return 0;
}
