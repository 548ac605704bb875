// libFuzzer target: bytes -> decode -> check_structure -> disassemble (both syntaxes, several
// layouts) -> assemble. Must never crash, and every decoded program must re-assemble to exactly
// the bytes of its IR. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"

using namespace bpfvm;

namespace {

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_decode: %s\n%s\n", what, detail.c_str());
  std::abort();
}

std::string_view fake_helper_name(int32_t id) {
  // Exercise the named form (`call name#N`) for some ids; the number must win on reassembly.
  if (id >= 0 && id % 3 == 0) return "helper_three";
  return "";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte picks the ISA version (1..4); the rest is the program, cut to whole slots.
  int isa = 1 + data[0] % 4;
  std::span<const uint8_t> body(data + 1, (size - 1) / 8 * 8);
  auto dec = decode_bytes(body, isa);
  if (!dec) {
    if (dec.error().message.empty() || dec.error().code != ErrorCode::Decode) die("bad decode diagnostic", dec.error().to_string());
    return 0;
  }
  Status st = check_structure(*dec);
  if (!st && st.error().message.empty()) die("empty structure diagnostic", "");
  const std::vector<uint8_t> want = to_bytes(encode(*dec));
  for (Syntax syn : {Syntax::Kernel, Syntax::Conformance}) {
    for (int layout = 0; layout < 3; ++layout) {
      DisasmOptions opt;
      opt.syntax = syn;
      opt.show_index = layout != 0;
      opt.show_raw = layout == 2;
      if (layout == 1) opt.helper_name = fake_helper_name;
      std::string text = disassemble(*dec, opt);
      auto r = assemble(text, syn);
      if (!r) die("reassembly failed", r.error().to_string() + "\n" + text);
      if (to_bytes(encode(*r)) != want) die("reassembly changed the bytes", text);
      if (layout == 0) {
        auto a = assemble_auto(text);
        if (!a || to_bytes(encode(*a)) != want) die("assemble_auto differs", text);
      }
    }
  }
  for (size_t pc = 0; pc < dec->size(); ++pc) (void)format_insn((*dec)[pc], static_cast<int64_t>(pc));
  return 0;
}
