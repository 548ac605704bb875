// Helpers for the assembler / ISA tests: finding and reading the shared conformance suite.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace bpfvm::testutil {

inline std::filesystem::path shared_dir() {
  if (const char* e = std::getenv("BPFVM_SHARED")) return e;
  return std::filesystem::path(BPFVM_SOURCE_DIR) / ".." / "shared";
}

struct ConformanceFile {
  std::string name;
  std::map<std::string, std::string> sections;  // "asm", "raw", "mem", "result", ...
};

inline std::vector<ConformanceFile> conformance_files() {
  std::vector<ConformanceFile> out;
  auto dir = shared_dir() / "conformance";
  if (!std::filesystem::is_directory(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".data") continue;
    ConformanceFile f;
    f.name = e.path().filename().string();
    std::ifstream in(e.path());
    std::string line, cur;
    while (std::getline(in, line)) {
      if (line.rfind("--", 0) == 0) {
        cur = line.substr(2);
        cur.erase(0, cur.find_first_not_of(' '));
        f.sections[cur];
        continue;
      }
      if (!cur.empty()) f.sections[cur] += line + "\n";
    }
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

// `-- raw` section: one 64-bit little-endian word per line (hex).
inline std::vector<uint8_t> raw_words(const std::string& text) {
  std::vector<uint8_t> bytes;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w[0] == '#') {
      std::getline(in, w);
      continue;
    }
    uint64_t v = std::stoull(w, nullptr, 16);
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  return bytes;
}

}  // namespace bpfvm::testutil
