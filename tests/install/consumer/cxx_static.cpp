// The C++ API from the static library of an installation: assemble, JIT-compile and run a program.
#include <bpfvm/asm.hpp>
#include <bpfvm/vm.hpp>

#include <cstdio>

int main() {
  auto insns = bpfvm::assemble("r0 = 6\nr1 = 7\nr0 *= r1\nexit\n", bpfvm::Syntax::Kernel);
  if (!insns) {
    std::fprintf(stderr, "assemble: %s\n", insns.error().message.c_str());
    return 1;
  }
  bpfvm::Program prog;
  prog.name = "answer";
  prog.insns = *insns;
  bpfvm::ExecOptions opts;
  opts.engine = bpfvm::EngineKind::Jit;
  auto exe = bpfvm::Executable::create(prog, bpfvm::HelperTable{}, opts);
  if (!exe) {
    std::fprintf(stderr, "create: %s\n", exe.error().message.c_str());
    return 1;
  }
  auto r0 = (*exe)->run(bpfvm::RunArgs{});
  if (!r0 || *r0 != 42) {
    std::fprintf(stderr, "run: %s\n", r0 ? "wrong result" : r0.error().message.c_str());
    return 1;
  }
  std::printf("cxx_static: r0 = %llu\n", static_cast<unsigned long long>(*r0));
  return 0;
}
