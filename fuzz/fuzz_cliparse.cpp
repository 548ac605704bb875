// Fuzz target for the CLI's number and byte parsers (tools/bpfvm/parse.cpp): parse_number,
// parse_map_bytes, parse_hex_bytes, split_map_set. Input: the first byte picks a size (0..15) for
// parse_map_bytes, the rest is the text. Properties: no crash; parse_number agrees with strtoull
// base 0 on every text strtoull takes whole (no sign, no whitespace, no overflow) and refuses the
// rest; a successful parse_map_bytes has exactly `size` bytes; a number accepted for a map key
// reads back as the same value; parse_hex_bytes never gives more bytes than digit pairs.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "parse.hpp"

using namespace bpfvm::cli;

namespace {
[[noreturn]] void broken(const char* what, const std::string& text) {
  std::fprintf(stderr, "property broken: %s (input '%s')\n", what, text.c_str());
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t msize = data[0] % 16;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string err;

  uint64_t v = 0;
  bool ok = parse_number(text, UINT64_MAX, v, err);
  if (!ok && err.empty()) broken("parse_number failed without a message", text);
  if (text.find('\0') == std::string::npos) {
    // strtoull takes leading whitespace and a sign; parse_number takes neither.
    bool plain = !text.empty() && text[0] != '+' && text[0] != '-' && text[0] != ' ' &&
                 !(text[0] >= '\t' && text[0] <= '\r');
    errno = 0;
    char* end = nullptr;
    unsigned long long s = std::strtoull(text.c_str(), &end, 0);
    bool whole = plain && !text.empty() && *end == '\0' && errno == 0;
    if (whole != ok) broken(ok ? "parse_number took what strtoull refuses" : "parse_number refused what strtoull takes", text);
    if (ok && s != v) broken("parse_number and strtoull differ", text);
  }
  if (ok) {
    uint64_t w = 0;
    if (v > 0 && parse_number(text, v - 1, w, err)) broken("parse_number ignored its maximum", text);
  }

  std::vector<uint8_t> bytes;
  if (parse_map_bytes(text, msize, bytes, err)) {
    if (bytes.size() != msize) broken("parse_map_bytes gave the wrong size", text);
    uint64_t n = 0;
    if ((msize == 1 || msize == 2 || msize == 4 || msize == 8) && parse_number(text, UINT64_MAX, n, err)) {
      uint64_t back = 0;
      std::memcpy(&back, bytes.data(), msize);
      if (back != n) broken("a number stored as a key does not read back", text);
    }
  } else if (err.empty()) {
    broken("parse_map_bytes failed without a message", text);
  }

  bytes.clear();
  if (parse_hex_bytes(text, bytes, err)) {
    if (bytes.size() * 2 > text.size()) broken("parse_hex_bytes made bytes out of nothing", text);
  } else if (err.empty()) {
    broken("parse_hex_bytes failed without a message", text);
  }

  std::string m, k, val;
  if (split_map_set(text, m, k, val)) {
    if (m.empty() || k.empty() || val.empty()) broken("split_map_set gave an empty part", text);
    if (m + ":" + k + "=" + val != text) broken("split_map_set lost characters", text);
  }
  return 0;
}
