// Global variables as text: --set NAME=VALUE checked against the variable's BTF type, and back.
#include <bpf/btf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "bpfvm/object.hpp"
#include "loader/btf_util.hpp"

namespace bpfvm {
namespace {

Diagnostic bad(std::string_view name, const std::string& why) {
  return make_error(ErrorCode::InvalidArgument, fmt::format("global variable '{}': {}", name, why));
}

// Parses an integer as C does (sign, 0x, 0); false when it is not one.
bool parse_int(std::string_view text, bool& negative, uint64_t& magnitude) {
  std::string t(text);
  size_t i = 0;
  negative = false;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) negative = t[i++] == '-';
  if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return false;
  char* end = nullptr;
  errno = 0;
  magnitude = std::strtoull(t.c_str() + i, &end, 0);
  return errno == 0 && end && *end == 0;
}

// Encodes a number into `size` bytes (little-endian), checking the range.
Status put_int(std::string_view name, std::string_view text, uint8_t* out, uint32_t size, bool is_signed) {
  bool neg = false;
  uint64_t mag = 0;
  if (!parse_int(text, neg, mag)) return bad(name, fmt::format("'{}' is not a number", text));
  if (size == 0 || size > 8) return bad(name, fmt::format("{}-byte integers cannot be set", size));
  const unsigned bits = size * 8;
  uint64_t v;
  if (is_signed) {
    const uint64_t max_pos = bits == 64 ? INT64_MAX : (uint64_t{1} << (bits - 1)) - 1;
    const uint64_t max_neg = max_pos + 1;
    if ((!neg && mag > max_pos) || (neg && mag > max_neg))
      return bad(name, fmt::format("{} does not fit a signed {}-byte integer", text, size));
    v = neg ? ~mag + 1 : mag;
  } else {
    const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
    if (neg && mag != 0) return bad(name, fmt::format("{} is negative, the variable is unsigned", text));
    if (mag > max) return bad(name, fmt::format("{} does not fit an unsigned {}-byte integer", text, size));
    v = mag;
  }
  for (uint32_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  return {};
}

uint64_t get_uint(const uint8_t* p, uint32_t size) {
  uint64_t v = 0;
  for (uint32_t i = 0; i < size && i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

int64_t sign_extend(uint64_t v, uint32_t size) {
  if (size >= 8) return static_cast<int64_t>(v);
  const unsigned shift = 64 - size * 8;
  return static_cast<int64_t>(v << shift) >> shift;
}

}  // namespace

Status Object::set_global_text(std::string_view n, std::string_view value) {
  const GlobalVar* g = find_global(n);
  if (!g) return make_error(ErrorCode::InvalidArgument, fmt::format("no global variable '{}'", n));
  std::vector<uint8_t> bytes(g->size, 0);
  const struct btf* b = static_cast<const struct btf*>(btf_handle());
  const struct btf_type* t = g->btf_type_id ? btfu::skip_mods(b, g->btf_type_id) : nullptr;
  if (!t) {
    if (g->size != 1 && g->size != 2 && g->size != 4 && g->size != 8)
      return bad(n, fmt::format("{} bytes without BTF: only 1-, 2-, 4- and 8-byte numbers can be set", g->size));
    bool neg = false;
    uint64_t mag = 0;
    if (parse_int(value, neg, mag) && neg) {
      if (Status st = put_int(n, value, bytes.data(), g->size, true); !st) return st;
    } else if (Status st = put_int(n, value, bytes.data(), g->size, false); !st) {
      return st;
    }
    return set_global(n, bytes.data(), bytes.size());
  }
  const std::string tname = btf_type_name(g->btf_type_id);
  if (btf_is_int(t)) {
    const uint8_t enc = btf_int_encoding(t);
    if (t->size != g->size) return bad(n, fmt::format("BTF type {} is {} bytes, the variable {}", tname, t->size, g->size));
    if (enc & BTF_INT_BOOL) {
      uint8_t v;
      if (value == "true" || value == "1") v = 1;
      else if (value == "false" || value == "0") v = 0;
      else return bad(n, fmt::format("'{}' is not a boolean (true, false, 1, 0)", value));
      bytes.assign(g->size, 0);
      bytes[0] = v;
    } else if (Status st = put_int(n, value, bytes.data(), g->size, (enc & BTF_INT_SIGNED) != 0); !st) {
      return st;
    }
  } else if (btf_is_any_enum(t)) {
    if (t->size != g->size) return bad(n, fmt::format("BTF type {} is {} bytes, the variable {}", tname, t->size, g->size));
    const bool is_signed = BTF_INFO_KFLAG(t->info);
    bool found = false;
    for (uint16_t i = 0; i < btf_vlen(t) && !found; ++i) {
      const uint32_t name_off = btf_is_enum(t) ? btf_enum(t)[i].name_off : btf_enum64(t)[i].name_off;
      if (btfu::name(b, name_off) != value) continue;
      uint64_t v = btf_is_enum(t) ? static_cast<uint64_t>(static_cast<int64_t>(btf_enum(t)[i].val))
                                  : btf_enum64_value(&btf_enum64(t)[i]);
      for (uint32_t k = 0; k < g->size && k < 8; ++k) bytes[k] = static_cast<uint8_t>(v >> (8 * k));
      found = true;
    }
    if (!found) {
      if (Status st = put_int(n, value, bytes.data(), g->size, is_signed); !st)
        return bad(n, fmt::format("'{}' is neither an enumerator of {} nor a number that fits it", value, tname));
    }
  } else if (btf_is_array(t)) {
    const struct btf_type* elem = btfu::skip_mods(b, btf_array(t)->type);
    if (!elem || !btf_is_int(elem) || elem->size != 1)
      return bad(n, fmt::format("arrays of {} cannot be set from text (char arrays take strings)", tname));
    const uint32_t cap = btf_array(t)->nelems;
    if (cap != g->size) return bad(n, fmt::format("BTF type {} does not match its {} bytes", tname, g->size));
    if (value.size() >= cap)
      return bad(n, fmt::format("the string is {} bytes, the variable holds {} with its NUL", value.size(), cap - 1));
    std::memcpy(bytes.data(), value.data(), value.size());
  } else if (btf_is_ptr(t)) {
    if (Status st = put_int(n, value, bytes.data(), g->size, false); !st) return st;
  } else {
    return bad(n, fmt::format("type {} cannot be set from text (numbers, booleans, enums and strings can)", tname));
  }
  return set_global(n, bytes.data(), bytes.size());
}

Result<std::string> Object::global_text(std::string_view n) const {
  auto v = global_bytes(n);
  if (!v) return v.error();
  const GlobalVar* g = find_global(n);
  const struct btf* b = static_cast<const struct btf*>(btf_handle());
  const struct btf_type* t = g->btf_type_id ? btfu::skip_mods(b, g->btf_type_id) : nullptr;
  const uint8_t* p = v->data();
  if (t && btf_is_int(t) && t->size == g->size && g->size <= 8) {
    const uint8_t enc = btf_int_encoding(t);
    uint64_t u = get_uint(p, g->size);
    if (enc & BTF_INT_BOOL) return std::string(u ? "true" : "false");
    if (enc & BTF_INT_SIGNED) return std::to_string(sign_extend(u, g->size));
    return std::to_string(u);
  }
  if (t && btf_is_any_enum(t) && t->size == g->size && g->size <= 8) {
    uint64_t u = get_uint(p, g->size);
    for (uint16_t i = 0; i < btf_vlen(t); ++i) {
      uint64_t ev = btf_is_enum(t) ? static_cast<uint64_t>(static_cast<uint32_t>(btf_enum(t)[i].val))
                                   : btf_enum64_value(&btf_enum64(t)[i]);
      if ((ev & (g->size == 8 ? UINT64_MAX : (uint64_t{1} << (8 * g->size)) - 1)) == u)
        return btfu::name(b, btf_is_enum(t) ? btf_enum(t)[i].name_off : btf_enum64(t)[i].name_off);
    }
    return std::to_string(u);
  }
  if (t && btf_is_array(t)) {
    const struct btf_type* elem = btfu::skip_mods(b, btf_array(t)->type);
    if (elem && btf_is_int(elem) && elem->size == 1) {
      size_t len = strnlen(reinterpret_cast<const char*>(p), g->size);
      return std::string(reinterpret_cast<const char*>(p), len);
    }
  }
  if (!t && (g->size == 1 || g->size == 2 || g->size == 4 || g->size == 8)) return std::to_string(get_uint(p, g->size));
  std::string hex;
  for (uint32_t i = 0; i < g->size; ++i) hex += fmt::format("{}{:02x}", i ? " " : "", p[i]);
  return hex;
}

Result<std::span<uint8_t>> LoadedObject::global(std::string_view n) const {
  if (!object) return make_error(ErrorCode::InvalidArgument, "the LoadedObject has no object");
  const GlobalVar* g = object->find_global(n);
  if (!g) return make_error(ErrorCode::InvalidArgument, fmt::format("no global variable '{}'", n));
  uint8_t* base = data(g->map);
  if (!base || static_cast<uint64_t>(g->offset) + g->size > maps[g->map]->spec().value_size)
    return make_error(ErrorCode::InvalidArgument, fmt::format("global variable '{}' is outside its map", n));
  return std::span<uint8_t>(base + g->offset, g->size);
}

}  // namespace bpfvm
