// libFuzzer target: soundness of the verifier. The input chooses the memory mode (size known or
// proved against r1 + r2), the rule set and the program: either raw bytecode (decoded) or a
// mostly-valid program from the template generator of tests/verifier_gen.hpp seeded by the input and
// then mutated by the input's remaining bytes. Whenever verify() accepts, the program runs in the
// checked interpreter on inputs derived from the fuzzer's bytes; a memory fault aborts (a verifier
// soundness bug). Build with -DBPFVM_FUZZ=ON (clang), see docs/fuzzing.md:
//   build-fuzz/fuzz_verifier -runs=1000000
//
// Input layout: byte 0 = flags (bit 0: memory size known, bit 1: strict rules, bit 2: raw bytecode),
// then for raw bytecode the instructions (8 bytes each); for generated programs 8 bytes of seed, then
// mutations of 4 bytes each (instruction index, field, value).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "../tests/verifier_gen.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/verifier.hpp"
#include "bpfvm/vm.hpp"

using namespace bpfvm;

namespace {

uint64_t fnv(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

void mutate(std::vector<Insn>& p, const uint8_t* m) {
  if (p.empty()) return;
  Insn& in = p[m[0] % p.size()];
  int8_t v = static_cast<int8_t>(m[2]);
  switch (m[1] % 5) {
    case 0: in.off = static_cast<int16_t>(in.off + v); break;
    case 1: in.imm += v; break;
    case 2: in.dst = static_cast<uint8_t>(m[2] % 11); break;
    case 3: in.src = static_cast<uint8_t>(m[2] % 11); break;
    default: {  // another operation of the same kind (e.g. a different load size or ALU op)
      const OpInfo& info = in.info();
      for (int k = 0; k < 256; ++k) {
        Op op = static_cast<Op>((static_cast<int>(in.op) + m[2] + k) % static_cast<int>(kOpCount));
        const OpInfo& o = op_info(op);
        if (o.kind == info.kind && o.uses_reg_src == info.uses_reg_src && !in.is_wide() &&
            op != Op::LDDW_HI && o.kind != OpKind::LoadImm64 && o.kind != OpKind::Pseudo) {
          in.op = op;
          break;
        }
      }
      break;
    }
  }
  (void)m[3];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const bool known = flags & 1;
  std::vector<Insn> prog;
  if (flags & 4) {
    auto d = decode_bytes(std::span<const uint8_t>(data + 1, (size - 1) / 8 * 8));
    if (!d || d->empty()) return 0;
    prog = std::move(*d);
  } else {
    if (size < 9) return 0;
    uint64_t seed;
    std::memcpy(&seed, data + 1, 8);
    vgen::Generator g(seed, known);
    prog = g.generate();
    for (size_t i = 9; i + 4 <= size && i < 9 + 4 * 16; i += 4) mutate(prog, data + i);
    // Normalise through the encoder and decoder: the program is then exactly what a loader produces.
    auto d = decode(encode(prog));
    if (!d) return 0;
    prog = std::move(*d);
  }
  if (!check_structure(prog).ok()) return 0;
  VerifyOptions o;
  o.type = find_prog_type(static_cast<uint32_t>(kProgMem));
  o.mem_size = known ? vgen::kMemSize : -1;
  o.rules = flags & 2 ? RuleSet::Strict : RuleSet::Privileged;
  o.limits.insn_budget = 100000;
  auto r = verify(prog, o);
  if (!r) {
    std::fprintf(stderr, "verify() refused to judge: %s\n", r.error().to_string().c_str());
    std::abort();
  }
  if (!r->accepted) return 0;
  ExecOptions eo;
  eo.checked = true;
  eo.insn_budget = 2'000'000;
  auto exe = Executable::create(Program{"fuzz", prog}, HelperTable::conformance(), eo);
  if (!exe) return 0;  // e.g. an instruction the executable does not take; not a soundness question
  std::mt19937_64 rng(fnv(data, size));
  std::vector<uint8_t> buf(vgen::kMemSize);
  for (int k = 0; k < 4; ++k) {
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    size_t len = known ? vgen::kMemSize : static_cast<size_t>(rng() % (vgen::kMemSize + 1));
    auto res = (*exe)->run_on_memory(buf.data(), len);
    if (!res && res.error().code == ErrorCode::MemoryFault) {
      std::fprintf(stderr, "verifier accepted a program that faults (memory %s, len %zu, %s rules): %s\n%s\n",
                   known ? "known" : "unknown", len, rule_set_name(o.rules), res.error().to_string().c_str(),
                   disassemble(prog).c_str());
      std::abort();
    }
  }
  return 0;
}
