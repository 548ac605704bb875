// trace_printk, trace_vprintk, snprintf, strncmp, strtol, strtoul.
#include <fmt/format.h>

#include <arpa/inet.h>

#include <cctype>
#include <cstdio>
#include <cstring>

#include "helpers/impl.hpp"

namespace bpfvm {

namespace {
constexpr size_t kMaxStrLen = 1024;  // longest %s argument read (the kernel's per-CPU buffer is similar)
}

// The kernel's bpf_bprintf_prepare accepts: %% ; flags [0 +-], a width; then %c, %s, %p[K|x|B|i4|I4|i6|I6|ks|us],
// and integers %d %i %u %x %X with optional l / ll. Anything else is -EINVAL, as is using more
// arguments than given.
std::string bpf_format(std::string_view fmtv, std::span<const uint64_t> args, long* err) {
  std::string out;
  size_t argi = 0;
  *err = 0;
  auto fail = [&]() {
    *err = -helpers::kEINVAL;
    return std::string();
  };
  for (size_t i = 0; i < fmtv.size(); ++i) {
    char c = fmtv[i];
    if (c == 0) break;
    if (c != '%') {
      if (!std::isprint(static_cast<unsigned char>(c)) && !std::isspace(static_cast<unsigned char>(c))) return fail();
      out += c;
      continue;
    }
    ++i;
    if (i >= fmtv.size()) return fail();
    if (fmtv[i] == '%') {
      out += '%';
      continue;
    }
    if (argi >= args.size()) return fail();
    std::string spec = "%";
    while (i < fmtv.size() && (fmtv[i] == '0' || fmtv[i] == '+' || fmtv[i] == '-' || fmtv[i] == ' '))
      spec += fmtv[i++];
    if (i < fmtv.size() && fmtv[i] >= '1' && fmtv[i] <= '9') {
      while (i < fmtv.size() && std::isdigit(static_cast<unsigned char>(fmtv[i]))) spec += fmtv[i++];
    }
    if (i >= fmtv.size()) return fail();
    uint64_t a = args[argi++];
    char conv = fmtv[i];
    char buf[256];
    if (conv == 'p') {
      char next = i + 1 < fmtv.size() ? fmtv[i + 1] : 0;
      if (next == 'i' || next == 'I') {
        char ver = i + 2 < fmtv.size() ? fmtv[i + 2] : 0;
        if (ver != '4' && ver != '6') return fail();
        uint8_t ip[16] = {};
        size_t n = ver == '4' ? 4 : 16;
        if (safe_read(ip, reinterpret_cast<const void*>(a), n) != 0) std::memset(ip, 0, n);
        char txt[64];
        if (ver == '4') {
          if (next == 'i') std::snprintf(txt, sizeof txt, "%03u.%03u.%03u.%03u", ip[0], ip[1], ip[2], ip[3]);
          else std::snprintf(txt, sizeof txt, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
        } else if (next == 'i') {
          std::string s;
          for (int k = 0; k < 16; ++k) s += fmt::format("{:02x}", ip[k]);
          std::snprintf(txt, sizeof txt, "%s", s.c_str());
        } else {
          std::string s;
          for (int k = 0; k < 16; k += 2) s += fmt::format("{}{:02x}{:02x}", k ? ":" : "", ip[k], ip[k + 1]);
          std::snprintf(txt, sizeof txt, "%s", s.c_str());
        }
        out += txt;
        i += 2;
        continue;
      }
      if (next == 'k' || next == 'u') {  // %pks / %pus: string through a kernel / user pointer
        if (i + 2 >= fmtv.size() || fmtv[i + 2] != 's') return fail();
        char s[kMaxStrLen];
        if (helpers::read_str_for_current(s, a, sizeof s, next == 'k' ? helpers::TaskMem::Kernel
                                                                       : helpers::TaskMem::User) < 0)
          s[0] = 0;
        out += s;
        i += 2;
        continue;
      }
      if (next == 'K' || next == 'x' || next == 'B') ++i;
      spec += "llx";
      std::snprintf(buf, sizeof buf, ("0x" + spec).c_str(), static_cast<unsigned long long>(a));
      out += buf;
      continue;
    }
    if (conv == 'c') {
      spec += 'c';
      std::snprintf(buf, sizeof buf, spec.c_str(), static_cast<int>(static_cast<unsigned char>(a)));
      out += buf;
      continue;
    }
    if (conv == 's') {
      char s[kMaxStrLen];
      if (!a || helpers::read_str_for_current(s, a, sizeof s, helpers::TaskMem::Either) < 0) s[0] = 0;
      spec += 's';
      std::string tmp(s);
      int n = std::snprintf(nullptr, 0, spec.c_str(), tmp.c_str());
      std::string o(static_cast<size_t>(n) + 1, '\0');
      std::snprintf(o.data(), o.size(), spec.c_str(), tmp.c_str());
      o.resize(static_cast<size_t>(n));
      out += o;
      continue;
    }
    int longs = 0;
    while (i < fmtv.size() && fmtv[i] == 'l' && longs < 2) {
      ++longs;
      ++i;
    }
    if (i >= fmtv.size()) return fail();
    conv = fmtv[i];
    if (conv != 'd' && conv != 'i' && conv != 'u' && conv != 'x' && conv != 'X') return fail();
    // %d without l is a 32-bit int in the kernel (the u64 argument is truncated).
    bool is_signed = conv == 'd' || conv == 'i';
    spec += "ll";
    spec += conv;
    long long sv;
    unsigned long long uv;
    if (longs == 0) {
      sv = static_cast<int32_t>(a);
      uv = static_cast<uint32_t>(a);
    } else {
      sv = static_cast<long long>(a);
      uv = a;
    }
    if (is_signed) std::snprintf(buf, sizeof buf, spec.c_str(), sv);
    else std::snprintf(buf, sizeof buf, spec.c_str(), uv);
    out += buf;
  }
  return out;
}

namespace helpers {
namespace {

template <class T>
T* ptr(uint64_t v) {
  return reinterpret_cast<T*>(v);
}

// The format string of trace_printk must be NUL-terminated within fmt_size.
bool fmt_ok(const char* fmtp, uint64_t fmt_size) { return fmt_size > 0 && fmtp[fmt_size - 1] == 0; }

uint64_t trace_printk(uint64_t fmtp, uint64_t fmt_size, uint64_t a1, uint64_t a2, uint64_t a3) {
  const char* f = ptr<const char>(fmtp);
  if (!fmt_ok(f, fmt_size)) return neg(kEINVAL);
  uint64_t args[3] = {a1, a2, a3};
  long err = 0;
  std::string s = bpf_format(std::string_view(f, std::strlen(f)), args, &err);
  if (err) return static_cast<uint64_t>(err);
  printk_emit(s);
  return s.size();
}

constexpr uint64_t kMaxVarargs = 12;  // MAX_BPRINTF_VARARGS

uint64_t trace_vprintk(uint64_t fmtp, uint64_t fmt_size, uint64_t data, uint64_t data_len, uint64_t) {
  const char* f = ptr<const char>(fmtp);
  if (data_len & 7 || data_len > kMaxVarargs * 8 || (data_len && !data)) return neg(kEINVAL);
  if (!fmt_ok(f, fmt_size)) return neg(kEINVAL);
  long err = 0;
  std::string s = bpf_format(std::string_view(f, std::strlen(f)),
                             std::span<const uint64_t>(ptr<const uint64_t>(data), data_len / 8), &err);
  if (err) return static_cast<uint64_t>(err);
  printk_emit(s);
  return s.size();
}

uint64_t snprintf_helper(uint64_t str, uint64_t str_size, uint64_t fmtp, uint64_t data, uint64_t data_len) {
  if (data_len & 7 || data_len > kMaxVarargs * 8 || (data_len && !data)) return neg(kEINVAL);
  const char* f = ptr<const char>(fmtp);
  long err = 0;
  std::string s = bpf_format(std::string_view(f, std::strlen(f)),
                             std::span<const uint64_t>(ptr<const uint64_t>(data), data_len / 8), &err);
  if (err) return static_cast<uint64_t>(err);
  if (str_size) {
    size_t n = s.size() < str_size - 1 ? s.size() : str_size - 1;
    std::memcpy(ptr<char>(str), s.data(), n);
    ptr<char>(str)[n] = 0;
  }
  return s.size() + 1;
}

uint64_t strncmp_helper(uint64_t s1, uint64_t s1_sz, uint64_t s2, uint64_t, uint64_t) {
  const unsigned char* a = ptr<const unsigned char>(s1);
  const unsigned char* b = ptr<const unsigned char>(s2);
  for (uint64_t i = 0; i < s1_sz; ++i) {
    if (a[i] != b[i]) return a[i] < b[i] ? static_cast<uint64_t>(-1) : 1;
    if (!a[i]) break;
  }
  return 0;
}

constexpr uint64_t kStrtoxBaseMask = 0x1f;
constexpr unsigned kOverflow = 1u << 31;

// The kernel's __bpf_strtoull: leading spaces, optional '-', radix fix-up, digits.
long strtoull_common(const char* buf, size_t buf_len, uint64_t flags, unsigned long long* res, bool* negative) {
  unsigned base = static_cast<unsigned>(flags & kStrtoxBaseMask);
  if (!buf || !buf_len) return -kEINVAL;
  if (base != 0 && base != 8 && base != 10 && base != 16) return -kEINVAL;
  if (flags & ~kStrtoxBaseMask) return -kEINVAL;
  const char* cur = buf;
  const char* end = buf + buf_len;
  while (cur < end && std::isspace(static_cast<unsigned char>(*cur))) ++cur;
  *negative = cur < end && *cur == '-';
  if (*negative) ++cur;
  size_t consumed = static_cast<size_t>(cur - buf);
  size_t cur_len = buf_len - consumed;
  if (!cur_len) return -kEINVAL;
  char str[64];
  if (cur_len > sizeof(str) - 1) cur_len = sizeof(str) - 1;
  std::memcpy(str, cur, cur_len);
  str[cur_len] = 0;
  const char* s = str;
  if (base == 0) {
    if (s[0] == '0') {
      if (std::tolower(static_cast<unsigned char>(s[1])) == 'x' && std::isxdigit(static_cast<unsigned char>(s[2])))
        base = 16;
      else
        base = 8;
    } else {
      base = 10;
    }
  }
  if (base == 16 && s[0] == '0' && std::tolower(static_cast<unsigned char>(s[1])) == 'x') s += 2;
  unsigned long long v = 0;
  unsigned rv = 0;
  const char* p = s;
  for (; *p; ++p) {
    unsigned c = static_cast<unsigned char>(*p), d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (std::tolower(c) >= 'a' && std::tolower(c) <= 'f') d = static_cast<unsigned>(std::tolower(c) - 'a' + 10);
    else break;
    if (d >= base) break;
    if (v & (~0ull << 60)) {
      if (v > (~0ull - d) / base) rv |= kOverflow;
    }
    v = v * base + d;
    ++rv;
  }
  *res = v;
  if (rv & kOverflow) return -kERANGE;
  if (rv == 0) return -kEINVAL;
  consumed += static_cast<size_t>(p - str);
  return static_cast<long>(consumed);
}

uint64_t strtol_helper(uint64_t buf, uint64_t buf_len, uint64_t flags, uint64_t res, uint64_t) {
  unsigned long long v;
  bool negative;
  long err = strtoull_common(ptr<const char>(buf), buf_len, flags, &v, &negative);
  if (err < 0) return static_cast<uint64_t>(err);
  if (negative) {
    if (static_cast<long long>(0 - v) > 0) return neg(kERANGE);
    *ptr<int64_t>(res) = static_cast<int64_t>(0 - v);
  } else {
    if (static_cast<long long>(v) < 0) return neg(kERANGE);
    *ptr<int64_t>(res) = static_cast<int64_t>(v);
  }
  return static_cast<uint64_t>(err);
}

uint64_t strtoul_helper(uint64_t buf, uint64_t buf_len, uint64_t flags, uint64_t res, uint64_t) {
  unsigned long long v;
  bool negative;
  long err = strtoull_common(ptr<const char>(buf), buf_len, flags, &v, &negative);
  if (err < 0) return static_cast<uint64_t>(err);
  if (negative) return neg(kEINVAL);
  *ptr<uint64_t>(res) = v;
  return static_cast<uint64_t>(err);
}

}  // namespace

void string_helper_rows(void (*add)(int32_t, HelperFn)) {
  add(6, &trace_printk);
  add(105, &strtol_helper);
  add(106, &strtoul_helper);
  add(165, &snprintf_helper);
  add(177, &trace_vprintk);
  add(182, &strncmp_helper);
}

}  // namespace helpers
}  // namespace bpfvm
