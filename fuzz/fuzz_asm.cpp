// libFuzzer target: text -> assemble (kernel, conformance, auto). Must never crash; every error
// is an assembly diagnostic with a line; every success decodes, and disassembling it and
// assembling again gives the same bytes. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"

using namespace bpfvm;

namespace {

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_asm: %s\n%s\n", what, detail.c_str());
  std::abort();
}

int32_t fake_helper_id(std::string_view name) { return name == "bpf_trace_printk" ? 6 : -1; }

void check(const Result<std::vector<Insn>>& r, std::string_view text) {
  if (!r) {
    const Diagnostic& d = r.error();
    if (d.code != ErrorCode::Assemble || d.message.empty() || d.line < 1)
      die("bad assembler diagnostic", d.to_string() + "\n--- input ---\n" + std::string(text));
    return;
  }
  auto raw = encode(*r);
  auto dec = decode(raw);
  if (!dec) die("assembled program does not decode", dec.error().to_string());
  const auto want = to_bytes(raw);
  for (Syntax syn : {Syntax::Kernel, Syntax::Conformance}) {
    DisasmOptions opt;
    opt.syntax = syn;
    std::string out = disassemble(*dec, opt);
    auto again = assemble(out, syn);
    if (!again) die("disassembly does not re-assemble", again.error().to_string() + "\n" + out);
    if (to_bytes(encode(*again)) != want) die("disassembly re-assembles to other bytes", out);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check(assemble(text, Syntax::Kernel, fake_helper_id), text);
  check(assemble(text, Syntax::Conformance), text);
  (void)detect_syntax(text);
  check(assemble_auto(text, fake_helper_id), text);
  return 0;
}
