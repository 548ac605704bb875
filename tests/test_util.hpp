// Small helpers shared by the test files.
#pragma once

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

}  // namespace bpfvm::test
