// .kconfig externs: values of `extern ... __kconfig` variables from the running kernel's version and
// configuration (libbpf's conventions: CONFIG_* from the kernel config, LINUX_* virtual values).
#include "loader/kconfig.hpp"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <sys/utsname.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bpfvm/helpers.hpp"
#include "loader/btf_util.hpp"

namespace bpfvm::kconfig {
namespace {

Diagnostic err(const std::string& name, const std::string& why) {
  return make_error(ErrorCode::Load, fmt::format(".kconfig extern '{}': {}", name, why));
}

// Reads "CONFIG_X=value" lines (comments and "is not set" lines are skipped, as libbpf does).
void parse_config_line(std::string line, std::map<std::string, std::string, std::less<>>& out) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (!line.starts_with("CONFIG_")) return;
  size_t eq = line.find('=');
  if (eq == std::string::npos) return;
  out.emplace(line.substr(0, eq), line.substr(eq + 1));
}

// The kernel's config: `file` if given, else /proc/config.gz, else /boot/config-$(uname -r).
// Returns the file read, "" when none could be.
std::string read_config(const std::string& file, std::map<std::string, std::string, std::less<>>& out) {
  std::vector<std::string> candidates;
  if (!file.empty()) {
    candidates.push_back(file);
  } else {
    candidates.push_back("/proc/config.gz");
    struct utsname u {};
    if (uname(&u) == 0) candidates.push_back(std::string("/boot/config-") + u.release);
  }
  for (const auto& path : candidates) {
    gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
    if (!f) continue;
    char buf[4096];
    while (gzgets(f, buf, sizeof buf)) parse_config_line(buf, out);
    gzclose(f);
    return path;
  }
  return "";
}

// KERNEL_VERSION(a, b, c) of the running kernel (c capped at 255, as the kernel's macro does).
uint32_t running_kernel_version() {
  struct utsname u {};
  if (uname(&u) != 0) return 0;
  unsigned a = 0, b = 0, c = 0;
  if (std::sscanf(u.release, "%u.%u.%u", &a, &b, &c) < 2) return 0;
  return (a << 16) + (b << 8) + (c > 255 ? 255 : c);
}

enum class KType { Bool, Tristate, Char, Int, CharArray, Unsupported };

KType classify(const struct btf* b, uint32_t type_id, uint32_t& size, bool& is_signed) {
  const struct btf_type* t = btfu::skip_mods(b, type_id);
  is_signed = false;
  if (!t) return KType::Unsupported;
  if (btf_is_int(t)) {
    size = t->size;
    const uint8_t enc = btf_int_encoding(t);
    if (enc & BTF_INT_BOOL) return size == 1 ? KType::Bool : KType::Unsupported;
    if (enc & BTF_INT_CHAR) return size == 1 ? KType::Char : KType::Unsupported;
    is_signed = enc & BTF_INT_SIGNED;
    return size == 1 || size == 2 || size == 4 || size == 8 ? KType::Int : KType::Unsupported;
  }
  if (btf_is_enum(t) && btfu::name(b, t->name_off) == "libbpf_tristate") {
    size = t->size;
    return KType::Tristate;
  }
  if (btf_is_array(t)) {
    const struct btf_type* e = btfu::skip_mods(b, btf_array(t)->type);
    if (e && btf_is_int(e) && e->size == 1) {
      size = btf_array(t)->nelems;
      return KType::CharArray;
    }
  }
  return KType::Unsupported;
}

void put(uint8_t* out, uint64_t v, uint32_t size) {
  for (uint32_t i = 0; i < size && i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Writes one value as its type wants it (libbpf's rules: y/n/m for bool, tristate and char; quoted
// strings for char arrays; numbers for integers).
Status set_value(const Extern& e, KType kt, uint32_t size, bool is_signed, const std::string& value, uint8_t* out) {
  const bool tri = value == "y" || value == "n" || value == "m";
  switch (kt) {
    case KType::Bool:
      if (value == "m") return err(e.name, "value 'm' (module) for a bool; declare it as enum libbpf_tristate");
      if (!tri) return err(e.name, fmt::format("value '{}' is not y or n, for a bool", value));
      out[0] = value == "y";
      return {};
    case KType::Tristate:
      if (!tri) return err(e.name, fmt::format("value '{}' is not y, n or m, for a tristate", value));
      put(out, value == "y" ? 1 : value == "m" ? 2 : 0, size);
      return {};
    case KType::Char:
      if (!tri) return err(e.name, fmt::format("value '{}' is not y, n or m, for a char", value));
      out[0] = static_cast<uint8_t>(value[0]);
      return {};
    case KType::CharArray: {
      if (value.size() < 2 || value.front() != '"' || value.back() != '"')
        return err(e.name, fmt::format("value {} is not a quoted string, for a char array", value));
      std::string s = value.substr(1, value.size() - 2);
      if (s.size() >= size)
        return err(e.name, fmt::format("string of {} bytes does not fit char[{}] with its NUL", s.size(), size));
      std::memcpy(out, s.data(), s.size());
      return {};
    }
    case KType::Int: {
      if (tri) return err(e.name, fmt::format("value '{}' for an integer", value));
      char* end = nullptr;
      errno = 0;
      const bool neg = !value.empty() && value[0] == '-';
      uint64_t v = neg ? static_cast<uint64_t>(std::strtoll(value.c_str(), &end, 0)) : std::strtoull(value.c_str(), &end, 0);
      if (value.empty() || errno || !end || *end) return err(e.name, fmt::format("value '{}' is not a number", value));
      if (size < 8) {
        const uint64_t bits = size * 8;
        const bool fits = is_signed ? (static_cast<int64_t>(v) >= -(int64_t{1} << (bits - 1)) &&
                                       static_cast<int64_t>(v) < (int64_t{1} << (bits - 1)))
                                    : (!neg && v < (uint64_t{1} << bits));
        if (!fits) return err(e.name, fmt::format("value {} does not fit its {}-byte {} integer", value, size,
                                                  is_signed ? "signed" : "unsigned"));
      } else if (neg && !is_signed) {
        return err(e.name, fmt::format("value {} is negative, the extern is unsigned", value));
      }
      put(out, v, size);
      return {};
    }
    case KType::Unsupported: break;
  }
  return err(e.name, "its type is not one .kconfig supports (bool, char, integers, enum libbpf_tristate, char arrays)");
}

}  // namespace

Result<Values> resolve(const struct btf* b, const std::vector<Extern>& externs, const std::string& config_file,
                       const std::map<std::string, std::string, std::less<>>& overrides) {
  Values r;
  uint32_t end = 0;
  std::vector<std::pair<KType, std::pair<uint32_t, bool>>> kinds;
  for (const Extern& e : externs) {
    uint32_t size = 0;
    bool is_signed = false;
    KType kt = classify(b, e.type_id, size, is_signed);
    if (kt == KType::Unsupported)
      return err(e.name, "its type is not one .kconfig supports (bool, char, integers, enum libbpf_tristate, char arrays)");
    if (!e.name.starts_with("CONFIG_") && e.name != "LINUX_KERNEL_VERSION" && e.name != "LINUX_HAS_SYSCALL_WRAPPER" &&
        e.name != "LINUX_HAS_BPF_COOKIE")
      return err(e.name, "unknown name (bpfvm provides LINUX_KERNEL_VERSION, LINUX_HAS_SYSCALL_WRAPPER, "
                         "LINUX_HAS_BPF_COOKIE and CONFIG_* from the kernel config)");
    int align = btf__align_of(b, e.type_id);
    if (align <= 0) align = 1;
    end = (end + static_cast<uint32_t>(align) - 1) / static_cast<uint32_t>(align) * static_cast<uint32_t>(align);
    r.offsets.push_back(end);
    // The externs live in one array map value (at most 4 MiB, as global data).
    if (size > (4u << 20) || end + size > (4u << 20))
      return err(e.name, fmt::format("{} bytes; the .kconfig externs would exceed the 4 MiB an array map value may hold", size));
    end += size;
    kinds.push_back({kt, {size, is_signed}});
  }
  r.data.assign((end + 7) / 8 * 8, 0);
  if (r.data.empty()) r.data.assign(8, 0);
  std::map<std::string, std::string, std::less<>> config;
  bool need_config = false;
  for (const Extern& e : externs) need_config |= e.name.starts_with("CONFIG_") && !overrides.count(e.name);
  if (need_config) r.config_file = read_config(config_file, config);
  if (!config_file.empty() && need_config && r.config_file.empty())
    return make_error(ErrorCode::Io, fmt::format("kernel config {}: cannot read it", config_file));
  for (size_t i = 0; i < externs.size(); ++i) {
    const Extern& e = externs[i];
    const auto [kt, sz] = kinds[i];
    uint8_t* out = r.data.data() + r.offsets[i];
    std::string value;
    if (auto o = overrides.find(e.name); o != overrides.end()) {
      value = o->second;
    } else if (e.name == "LINUX_KERNEL_VERSION") {
      value = std::to_string(running_kernel_version());
    } else if (e.name == "LINUX_HAS_SYSCALL_WRAPPER") {
      // bpfvm's syscall hooks emulate the x86-64 wrappers (arguments behind a struct pt_regs *).
      value = kt == KType::Int ? "1" : "y";
    } else if (e.name == "LINUX_HAS_BPF_COOKIE") {
      const bool cookie = builtin_helper_impl(174) != nullptr;  // bpf_get_attach_cookie
      value = kt == KType::Int ? (cookie ? "1" : "0") : (cookie ? "y" : "n");
    } else if (auto c = config.find(e.name); c != config.end()) {
      value = c->second;
    } else if (e.weak) {
      continue;  // __weak: 0 when the kernel config does not have it
    } else if (r.config_file.empty()) {
      return err(e.name, "no kernel config could be read (/proc/config.gz, /boot/config-$(uname -r)); declare the "
                         "extern __weak to default it to 0");
    } else {
      return err(e.name, fmt::format("not set in the kernel config {} (declare it __weak to default it to 0)", r.config_file));
    }
    if (Status st = set_value(e, kt, sz.first, sz.second, value, out); !st) return st.error();
  }
  return r;
}

}  // namespace bpfvm::kconfig
