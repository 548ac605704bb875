// bpftool's BYTES arguments: one number per byte, each read as strtoul(base 0) does ("1", "0x01",
// "010"); after the word "hex", every following token is hexadecimal ("hex 01 ff 0a"), and a token
// may then hold several bytes ("hex 0100ff00").
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace bpfvm::cli {

// Reads BYTES from args[*i] onwards, stopping at the first token that is a keyword in `stop`
// (or the end). Exactly `want` bytes are required. Returns "" or an error naming the token.
inline std::string parse_bytes(const std::vector<std::string>& args, size_t* i, const char* what, size_t want,
                               const std::vector<std::string>& stop, std::vector<uint8_t>* out) {
  out->clear();
  bool hex = false;
  if (*i < args.size() && args[*i] == "hex") {
    hex = true;
    ++*i;
  }
  for (; *i < args.size(); ++*i) {
    const std::string& t = args[*i];
    bool is_stop = false;
    for (const auto& s : stop) is_stop = is_stop || t == s;
    if (is_stop) break;
    if (hex) {
      std::string h = t;
      if (h.size() > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) h = h.substr(2);
      if (h.empty() || h.size() % 2 != 0 && h.size() != 1)
        return std::string("error parsing byte: ") + t + " (hex bytes come in pairs of digits)";
      if (h.size() == 1) h = "0" + h;
      for (size_t k = 0; k < h.size(); k += 2) {
        char buf[3] = {h[k], h[k + 1], 0};
        char* end = nullptr;
        unsigned long v = std::strtoul(buf, &end, 16);
        if (*end) return std::string("error parsing byte: ") + t;
        out->push_back(uint8_t(v));
      }
      continue;
    }
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(t.c_str(), &end, 0);
    if (t.empty() || *end || errno || t[0] == '-') return std::string("error parsing byte: ") + t;
    if (v > 0xff) return std::string("error parsing byte: ") + t + " (larger than 255)";
    out->push_back(uint8_t(v));
  }
  if (out->size() != want)
    return std::string(what) + " expected " + std::to_string(want) + " bytes got " + std::to_string(out->size());
  return "";
}

}  // namespace bpfvm::cli
