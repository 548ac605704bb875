// bpfvm-conformance-plugin: the plugin interface of the public bpf_conformance runner.
//   plugin [MEMHEX] [--interpret | --jit] [--elf] [--checked]
// The program comes as hex on stdin; MEMHEX (bytes as two hex digits each, separated by spaces) is
// present only when the test has memory. Prints r0 in hex and exits 0; on error prints one line
// and exits 1.
#include <cctype>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/vm.hpp"

namespace {

bool parse_hex(const std::string& text, std::vector<uint8_t>& out, std::string& err) {
  int nib = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    if (c == '0' && i + 1 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X') && nib < 0) {
      ++i;  // tolerate 0x prefixes
      continue;
    }
    int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
            : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                        : -1;
    if (v < 0) {
      err = "invalid hex character '" + std::string(1, c) + "' at offset " + std::to_string(i);
      return false;
    }
    if (nib < 0) {
      nib = v;
    } else {
      out.push_back(static_cast<uint8_t>(nib << 4 | v));
      nib = -1;
    }
  }
  if (nib >= 0) {
    err = "odd number of hex digits";
    return false;
  }
  return true;
}

int fail(const std::string& msg) {
  std::printf("%s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string memhex;
  bool jit = false, checked = false;
  // Older runners pass memory as argv[1] even when empty and all options as one argv[2]; newer ones
  // omit empty memory and split the options. Accept both: argv[1] is memory unless it is an option,
  // and every argument is split on spaces.
  int first_opt = 1;
  if (argc > 1 && !std::string(argv[1]).starts_with("--")) {
    memhex = argv[1];
    first_opt = 2;
  }
  for (int i = first_opt; i < argc; ++i) {
    std::istringstream words(argv[i]);
    std::string a;
    while (words >> a) {
      if (a == "--interpret") jit = false;
      else if (a == "--jit") jit = true;
      else if (a == "--checked") checked = true;
      else if (a == "--elf") return fail("bpfvm-conformance-plugin: --elf input is not supported; pass raw bytecode");
      else return fail("bpfvm-conformance-plugin: unknown option " + a);
    }
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> code, mem;
  std::string err;
  if (!parse_hex(input, code, err)) return fail("program: " + err);
  if (!parse_hex(memhex, mem, err)) return fail("memory: " + err);
  auto insns = bpfvm::decode_bytes(code);
  if (!insns) return fail(insns.error().to_string());
  bpfvm::ExecOptions opts;
  opts.engine = jit ? bpfvm::EngineKind::Jit : bpfvm::EngineKind::Interpreter;
  opts.checked = checked;
  auto exe = bpfvm::Executable::create(bpfvm::Program{"conformance", std::move(*insns)},
                                       bpfvm::HelperTable::conformance(), opts);
  if (!exe) return fail(exe.error().to_string());
  auto r = (*exe)->run_on_memory(mem.empty() ? nullptr : mem.data(), mem.size());
  if (!r) return fail(r.error().to_string());
  std::printf("%llx\n", static_cast<unsigned long long>(*r));
  return 0;
}
