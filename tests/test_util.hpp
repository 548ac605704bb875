// Small helpers shared by the test files.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace bpfvm::test {

// ../shared beside the checkout, or $BPFVM_SHARED. Empty path when absent.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("BPFVM_SHARED"); env && *env) return env;
  std::filesystem::path p = std::filesystem::path(BPFVM_SOURCE_DIR) / ".." / "shared";
  if (std::filesystem::exists(p)) return std::filesystem::canonical(p);
  return {};
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Permissions ("r-xp"...) of the mapping of this process holding addr (/proc/self/maps), "" if none.
inline std::string perms_at(const void* addr) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto a = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &lo, &hi, perms) == 3 && a >= lo && a < hi) return perms;
  }
  return "";
}

}  // namespace bpfvm::test
