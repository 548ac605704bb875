#include "parse.hpp"

#include <cstring>

namespace bpfvm::cli {

namespace {

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quoted(std::string_view text) {
  // Long or unprintable input is shown shortened and escaped, so a message stays one short line.
  std::string s = "'";
  for (size_t i = 0; i < text.size() && i < 40; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      s += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    }
  }
  if (text.size() > 40) s += "...";
  return s + "'";
}

bool is_sep(char c) { return c == ' ' || c == '\t' || c == ','; }

}  // namespace

bool parse_number(std::string_view text, uint64_t max, uint64_t& out, std::string& err) {
  if (text.empty()) {
    err = "empty number";
    return false;
  }
  unsigned base = 10;
  size_t i = 0;
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    i = 2;
    if (i == text.size()) {
      err = quoted(text) + " has no digits after 0x";
      return false;
    }
  } else if (text.size() >= 2 && text[0] == '0') {
    base = 8;
    i = 1;
  }
  uint64_t v = 0;
  for (; i < text.size(); ++i) {
    int d = digit_value(text[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) {
      const char* kind = base == 16 ? "hex" : base == 8 ? "octal" : "decimal";
      err = quoted(text) + " is not a number (" + kind + " digits expected, '" +
            (static_cast<unsigned char>(text[i]) >= 0x20 && static_cast<unsigned char>(text[i]) < 0x7f
                 ? std::string(1, text[i])
                 : std::string("\\x") + "0123456789abcdef"[static_cast<unsigned char>(text[i]) >> 4] +
                       "0123456789abcdef"[static_cast<unsigned char>(text[i]) & 15]) +
            "' at offset " + std::to_string(i) + ")";
      return false;
    }
    if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / base) {
      err = quoted(text) + " is above " + std::to_string(max);
      return false;
    }
    v = v * base + static_cast<uint64_t>(d);
  }
  if (v > max) {
    err = quoted(text) + " is above " + std::to_string(max);
    return false;
  }
  out = v;
  return true;
}

bool parse_map_bytes(std::string_view text, size_t size, std::vector<uint8_t>& out, std::string& err) {
  out.clear();
  if (text.size() >= 4 && text.substr(0, 4) == "hex ") {
    std::string_view rest = text.substr(4);
    int hi = -1;
    for (size_t i = 0; i < rest.size(); ++i) {
      char c = rest[i];
      if (c == ' ' || c == '\t') {
        if (hi >= 0) {
          err = "hex bytes: " + quoted(text) + " has an odd digit before offset " + std::to_string(i + 4);
          return false;
        }
        continue;
      }
      int d = digit_value(c);
      if (d < 0) {
        err = "hex bytes: " + quoted(text) + " has a non-hex character at offset " + std::to_string(i + 4);
        return false;
      }
      if (hi < 0) {
        hi = d;
      } else {
        out.push_back(static_cast<uint8_t>(hi << 4 | d));
        hi = -1;
      }
    }
    if (hi >= 0) {
      err = "hex bytes: " + quoted(text) + " has an odd number of hex digits";
      return false;
    }
  } else {
    bool list = false;
    for (char c : text) list = list || is_sep(c);
    if (!list) {
      if (size != 1 && size != 2 && size != 4 && size != 8) {
        err = "a " + std::to_string(size) + "-byte key or value takes a byte list (`1 0 0 ...`) or `hex 01 00 ...`, "
              "not a number";
        return false;
      }
      uint64_t v;
      uint64_t max = size == 8 ? UINT64_MAX : (uint64_t{1} << (8 * size)) - 1;
      if (!parse_number(text, max, v, err)) return false;
      out.resize(size);
      // Host byte order, as the program reads it (bpftool does the same with a byte list).
      uint8_t bytes[8];
      std::memcpy(bytes, &v, 8);
      std::memcpy(out.data(), bytes, size);  // little-endian host: the low bytes come first
      return true;
    }
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && is_sep(text[i])) ++i;
      if (i == text.size()) break;
      size_t j = i;
      while (j < text.size() && !is_sep(text[j])) ++j;
      uint64_t v;
      std::string e;
      if (!parse_number(text.substr(i, j - i), 0xff, v, e)) {
        err = "byte " + std::to_string(out.size()) + ": " + e;
        return false;
      }
      out.push_back(static_cast<uint8_t>(v));
      i = j;
    }
  }
  if (out.size() != size) {
    err = quoted(text) + " has " + std::to_string(out.size()) + " bytes; " + std::to_string(size) + " are needed";
    return false;
  }
  return true;
}

bool parse_hex_bytes(std::string_view text, std::vector<uint8_t>& out, std::string& err) {
  int hi = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
      if (hi >= 0) {
        err = "odd number of hex digits before offset " + std::to_string(i);
        return false;
      }
      continue;
    }
    if (c == '0' && hi < 0 && i + 1 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
      ++i;
      continue;
    }
    int v = digit_value(c);
    if (v < 0) {
      err = quoted(text.substr(i, 1)) + " at offset " + std::to_string(i) + " is not a hex digit";
      return false;
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) {
    err = "odd number of hex digits";
    return false;
  }
  return true;
}

bool split_map_set(std::string_view spec, std::string& map, std::string& key, std::string& value) {
  size_t colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  size_t eq = spec.find('=', colon + 1);
  if (eq == std::string_view::npos || eq == colon + 1 || eq + 1 == spec.size()) return false;
  map = std::string(spec.substr(0, colon));
  key = std::string(spec.substr(colon + 1, eq - colon - 1));
  value = std::string(spec.substr(eq + 1));
  return map.find('=') == std::string::npos;
}

}  // namespace bpfvm::cli
