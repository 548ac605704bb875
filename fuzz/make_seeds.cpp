// Writes seed corpora for the ISA fuzzers from the conformance suite:
//   make_seeds CONFORMANCE_DIR OUT_DIR  ->  OUT_DIR/asm/*.s (assembly text), OUT_DIR/decode/*.bin
// (one ISA-version byte, 3 = v4, then the program bytes). Built by fuzz/build.sh.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "bpfvm/asm.hpp"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds CONFORMANCE_DIR OUT_DIR\n");
    return 2;
  }
  fs::path in = argv[1], out = argv[2];
  fs::create_directories(out / "asm");
  fs::create_directories(out / "decode");
  int n = 0;
  for (const auto& e : fs::directory_iterator(in)) {
    if (e.path().extension() != ".data") continue;
    std::ifstream f(e.path());
    std::string line, text;
    bool in_asm = false;
    while (std::getline(f, line)) {
      if (line.rfind("--", 0) == 0) {
        in_asm = line.find("asm") != std::string::npos;
        continue;
      }
      if (in_asm) text += line + "\n";
    }
    auto r = bpfvm::assemble(text, bpfvm::Syntax::Conformance);
    if (!r) {
      std::fprintf(stderr, "%s: %s\n", e.path().c_str(), r.error().to_string().c_str());
      continue;
    }
    std::string stem = e.path().stem().string();
    std::ofstream(out / "asm" / (stem + ".s")) << text;
    bpfvm::DisasmOptions k;
    std::ofstream(out / "asm" / (stem + ".kernel.s")) << bpfvm::disassemble(*r, k);
    auto bytes = bpfvm::to_bytes(bpfvm::encode(*r));
    std::ofstream bin(out / "decode" / (stem + ".bin"), std::ios::binary);
    bin.put(3);
    bin.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    ++n;
  }
  std::printf("wrote seeds for %d programs under %s\n", n, out.c_str());
  return 0;
}
