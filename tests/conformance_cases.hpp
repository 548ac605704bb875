// Parsing the bpf_conformance .data files (format: ../shared/GUIDE.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace bpfvm::test {
namespace fs = std::filesystem;

struct ConformanceCase {
  std::string name;
  std::string asm_text;
  std::vector<uint64_t> raw;
  std::vector<uint8_t> mem;
  bool has_result = false;
  uint64_t result = 0;
  std::string error;
};

inline uint64_t parse_number(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 0); }

inline ConformanceCase parse_case(const fs::path& path) {
  ConformanceCase c;
  c.name = path.stem().string();
  std::istringstream in(read_text(path));
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.rfind("--", 0) == 0) {
      section = line.substr(2);
      section.erase(0, section.find_first_not_of(' '));
      continue;
    }
    std::string body = line;
    if (section != "asm") {
      if (auto h = body.find('#'); h != std::string::npos) body.erase(h);
    }
    if (section == "asm") {
      c.asm_text += line + "\n";
    } else if (section == "raw") {
      std::istringstream ws(body);
      std::string w;
      while (ws >> w) c.raw.push_back(parse_number(w));
    } else if (section == "mem") {
      std::istringstream ws(body);
      std::string w;
      while (ws >> w) c.mem.push_back(static_cast<uint8_t>(std::strtoul(w.c_str(), nullptr, 16)));
    } else if (section == "result") {
      std::istringstream ws(body);
      std::string w;
      if (ws >> w) {
        c.has_result = true;
        c.result = parse_number(w);
      }
    } else if (section == "error") {
      c.error += body;
    }
  }
  return c;
}

inline std::vector<fs::path> conformance_files() {
  std::vector<fs::path> files;
  fs::path dir = shared_dir() / "conformance";
  if (shared_dir().empty() || !fs::exists(dir)) return files;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".data") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace bpfvm::test
