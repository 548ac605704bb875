// libFuzzer target: differential interpreter vs JIT on generated programs. The fuzzer's bytes choose
// the generator seed and the JIT options; any difference aborts. Build with -DBPFVM_FUZZ=ON (clang):
//   build-fuzz/fuzz_diff -runs=1000000
// (Without libFuzzer, the same check at scale: BPFVM_DIFF_COUNT=1000000 build/bpfvm_tests --gtest_filter=Diff.InterpreterVsJit)
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../tests/diff_gen.hpp"
#include "bpfvm/jit.hpp"

using namespace bpfvm;

namespace {
struct Out {
  bool ok;
  ErrorCode code;
  uint64_t r0;
  std::vector<uint8_t> mem;
};
Out run(const std::vector<Insn>& p, const std::vector<uint8_t>& mem0, const ExecOptions& o) {
  Out out{false, ErrorCode::Ok, 0, mem0};
  auto exe = Executable::create(Program{"fuzz", p}, diffgen::helpers(), o);
  if (!exe) {
    std::fprintf(stderr, "create failed: %s\n", exe.error().to_string().c_str());
    std::abort();
  }
  auto r = (*exe)->run_on_memory(out.mem.data(), out.mem.size());
  out.ok = r.ok();
  if (r) out.r0 = *r;
  else out.code = r.error().code;
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  uint64_t seed;
  std::memcpy(&seed, data, 8);
  uint8_t flags = data[8];
  diffgen::Generator gen(seed, flags & 1);
  auto g = gen.generate();
  ExecOptions ref;
  ref.checked = true;
  Out a = run(g.vm, g.mem, ref);
  if (!a.ok && a.code == ErrorCode::MemoryFault) {
    std::fprintf(stderr, "generator bug (memory fault), seed %llu\n", static_cast<unsigned long long>(seed));
    std::abort();
  }
  ExecOptions jo;
  jo.engine = EngineKind::Jit;
  jo.jit_harden = flags & 2;
  bool prev = jit_set_use_bmi2(!(flags & 4));
  Out b = run(g.vm, g.mem, jo);
  jit_set_use_bmi2(prev);
  if (a.ok != b.ok || (a.ok && (a.r0 != b.r0 || a.mem != b.mem)) || (!a.ok && a.code != b.code)) {
    std::fprintf(stderr, "interpreter/JIT mismatch: seed %llu flags %u\n%s\n", static_cast<unsigned long long>(seed),
                 flags, disassemble(g.vm).c_str());
    std::abort();
  }
  return 0;
}
