// Programs the JIT compile-time benchmarks share (bench_suite, bench_jit_compile).
#pragma once

#include <vector>

#include "bpfvm/insn.hpp"

namespace bpfvm::bench {

// One large program: 20,001 instructions of ALU, loads, stores and conditional jumps.
inline std::vector<Insn> big_compile_program() {
  std::vector<Insn> big;
  for (int i = 0; i < 20000; ++i) {
    Insn in;
    switch (i % 4) {
      case 0: in.op = Op::ADD64_IMM; in.dst = 0; in.imm = i; break;
      case 1: in.op = Op::LDXDW; in.dst = static_cast<uint8_t>(i % 5 + 1); in.src = 10; in.off = -8; break;
      case 2: in.op = Op::STXW; in.dst = 10; in.src = 0; in.off = -16; break;
      default: in.op = Op::JEQ_IMM; in.dst = 0; in.off = static_cast<int16_t>(i + 4 < 20000 ? 3 : 0); in.imm = 7; break;
    }
    big.push_back(in);
  }
  Insn ex;
  ex.op = Op::EXIT;
  big.push_back(ex);
  return big;
}

}  // namespace bpfvm::bench
