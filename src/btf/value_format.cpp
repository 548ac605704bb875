// format_btf_value(): BTF-described data in bpftool's JSON shapes (include/bpfvm/btf_format.hpp).
// The rules follow bpftool's btf_dumper.c: what is printed for each kind, and how.
#include "bpfvm/btf_format.hpp"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <linux/btf.h>

#include <cctype>
#include <cerrno>
#include <cstring>

namespace bpfvm {

// ---- the writer ---------------------------------------------------------------------------------

void BtfJsonWriter::eor() {
  if (sep_ != '\0') out_ += sep_;
  sep_ = ',';
}
void BtfJsonWriter::eol() {
  if (!pretty_) return;
  out_ += '\n';
  out_.append(size_t(depth_) * 4, ' ');
}
void BtfJsonWriter::begin(char c) {
  eor();
  out_ += c;
  ++depth_;
  sep_ = '\0';
}
void BtfJsonWriter::end(char c) {
  if (depth_ > 0) --depth_;
  if (sep_ != '\0') eol();
  out_ += c;
  sep_ = ',';
}
void BtfJsonWriter::name(const std::string& n) {
  eor();
  eol();
  sep_ = '\0';
  string(n);
  sep_ = '\0';
  out_ += pretty_ ? ": " : ":";
}
void BtfJsonWriter::raw(const std::string& value) {
  eor();
  out_ += value;
}
void BtfJsonWriter::string(const std::string& value) {
  eor();
  out_ += '"';
  for (unsigned char ch : value) {
    switch (ch) {
      case '\t': out_ += "\\t"; break;
      case '\n': out_ += "\\n"; break;
      case '\r': out_ += "\\r"; break;
      case '\f': out_ += "\\f"; break;
      case '\b': out_ += "\\b"; break;
      case '\\': out_ += "\\\\"; break;
      case '"': out_ += "\\\""; break;
      default:
        if (ch < 0x20) out_ += fmt::format("\\u{:04x}", ch);
        else out_ += char(ch);
    }
  }
  out_ += '"';
}

// ---- the formatter --------------------------------------------------------------------------------

namespace {

constexpr int kMaxDepth = 32;

struct Dumper {
  BtfJsonWriter& w;
  const struct btf* btf;
  bool plain;
  const uint8_t* end;  // one past the last byte of the data

  Status fail(uint32_t id, const std::string& why) const {
    return make_error(ErrorCode::InvalidArgument, fmt::format("BTF type [{}]: {}", id, why));
  }
  bool have(const uint8_t* p, uint64_t n) const { return p <= end && uint64_t(end - p) >= n; }

  // A bitfield or 128-bit number (lo, hi) as bpftool's btf_int128_print: hex, quoted under JSON.
  void int128(uint64_t lo, uint64_t hi) {
    std::string h = hi ? fmt::format("0x{:x}{:016x}", hi, lo) : fmt::format("0x{:x}", lo);
    w.raw(plain ? h : "\"" + h + "\"");
  }

  // nr_bits bits starting bit_offset bits into data (little endian), unsigned, as btf_dumper_bitfield.
  Status bitfield(uint32_t id, uint32_t nr_bits, uint32_t bit_offset, const uint8_t* data) {
    uint32_t total = bit_offset + nr_bits;
    if (nr_bits == 0 || nr_bits > 128 || total > 128) return fail(id, fmt::format("bitfield of {} bits at bit {}", nr_bits, bit_offset));
    uint32_t bytes = (total + 7) / 8;
    if (!have(data, bytes)) return fail(id, "the data ends inside a bitfield");
    unsigned __int128 v = 0;
    std::memcpy(&v, data, bytes);
    v >>= bit_offset;
    if (nr_bits < 128) v &= (static_cast<unsigned __int128>(1) << nr_bits) - 1;
    int128(uint64_t(v), uint64_t(v >> 64));
    return {};
  }

  Status integer(uint32_t id, const struct btf_type* t, uint32_t bit_offset, const uint8_t* data) {
    uint32_t info = *reinterpret_cast<const uint32_t*>(t + 1);
    uint32_t nr_bits = BTF_INT_BITS(info), enc = BTF_INT_ENCODING(info);
    if (bit_offset || BTF_INT_OFFSET(info) || (nr_bits % 8) != 0)
      return bitfield(id, nr_bits, bit_offset + BTF_INT_OFFSET(info), data);
    if (!have(data, nr_bits / 8)) return fail(id, "the data is shorter than the integer");
    if (nr_bits == 128) {
      uint64_t lo, hi;
      std::memcpy(&lo, data, 8);
      std::memcpy(&hi, data + 8, 8);
      int128(lo, hi);
      return {};
    }
    auto get = [&](auto x) {
      std::memcpy(&x, data, sizeof x);
      return x;
    };
    if (enc & BTF_INT_BOOL) {
      w.raw(data[0] ? "true" : "false");
      return {};
    }
    if (enc & BTF_INT_CHAR) {
      char c = char(data[0]);
      if (std::isprint(static_cast<unsigned char>(c))) w.string(std::string(1, c));
      else if (plain) w.raw(fmt::format("0x{:x}", static_cast<unsigned char>(c)));
      else w.raw(fmt::format("\"\\u00{:02x}\"", static_cast<unsigned char>(c)));
      return {};
    }
    bool sign = enc & BTF_INT_SIGNED;
    switch (nr_bits) {
      case 64: w.raw(sign ? fmt::format("{}", get(int64_t())) : fmt::format("{}", get(uint64_t()))); break;
      case 32: w.raw(sign ? fmt::format("{}", get(int32_t())) : fmt::format("{}", get(uint32_t()))); break;
      case 16: w.raw(sign ? fmt::format("{}", get(int16_t())) : fmt::format("{}", get(uint16_t()))); break;
      case 8: w.raw(sign ? fmt::format("{}", get(int8_t())) : fmt::format("{}", get(uint8_t()))); break;
      default: return bitfield(id, nr_bits, 0, data);
    }
    return {};
  }

  // bpftool's is_str_array: a char array (int of size 1, encoded char or named "char"; typedefs do
  // not count) whose bytes up to a NUL are printable.
  bool str_array(const struct btf_array* arr, const uint8_t* data) {
    if (!arr->nelems) return false;
    const struct btf_type* e = btf__type_by_id(btf, arr->type);
    for (int i = 0; e && btf_is_mod(e) && i < kMaxDepth; ++i) e = btf__type_by_id(btf, e->type);
    if (!e || !btf_is_int(e) || e->size != 1) return false;
    const char* n = btf__name_by_offset(btf, e->name_off);
    if (!(btf_int_encoding(e) & BTF_INT_CHAR) && !(n && std::strcmp(n, "char") == 0)) return false;
    for (uint32_t i = 0; i < arr->nelems && have(data + i, 1); ++i) {
      char c = char(data[i]);
      if (!c) return true;
      if (c <= 0x1f || c >= 0x7f) return false;
    }
    return false;
  }

  Status value(uint32_t id, uint32_t bit_offset, const uint8_t* data, int depth) {
    if (depth > kMaxDepth) return fail(id, "nested more than 32 levels deep");
    const struct btf_type* t = btf__type_by_id(btf, id);
    if (!t) return fail(id, "no such type");
    switch (btf_kind(t)) {
      case BTF_KIND_INT:
        return integer(id, t, bit_offset, data);
      case BTF_KIND_STRUCT:
      case BTF_KIND_UNION: {
        if (!have(data, t->size)) return fail(id, "the data is shorter than the struct");
        w.start_object();
        const struct btf_member* m = btf_members(t);
        for (uint32_t i = 0; i < btf_vlen(t); ++i) {
          uint32_t off = btf_member_bit_offset(t, i), bits = btf_member_bitfield_size(t, i);
          const char* n = btf__name_by_offset(btf, m[i].name_off);
          w.name(n ? n : "");
          Status s = bits ? bitfield(m[i].type, bits, off % 8, data + off / 8)
                          : value(m[i].type, off % 8, data + off / 8, depth + 1);
          if (!s) return s;
        }
        w.end_object();
        return {};
      }
      case BTF_KIND_ARRAY: {
        const struct btf_array* arr = btf_array(t);
        if (str_array(arr, data)) {
          w.string(reinterpret_cast<const char*>(data));
          return {};
        }
        __s64 esz = btf__resolve_size(btf, arr->type);
        if (esz < 0) return fail(arr->type, "the array's element size is not known");
        if (!have(data, uint64_t(esz) * arr->nelems)) return fail(id, "the data is shorter than the array");
        w.start_array();
        for (uint32_t i = 0; i < arr->nelems; ++i)
          if (Status s = value(arr->type, 0, data + uint64_t(i) * uint64_t(esz), depth + 1); !s) return s;
        w.end_array();
        return {};
      }
      case BTF_KIND_ENUM:
      case BTF_KIND_ENUM64: {
        if (t->size != 1 && t->size != 2 && t->size != 4 && t->size != 8) return fail(id, fmt::format("enum of {} bytes", t->size));
        if (!have(data, t->size)) return fail(id, "the data is shorter than the enum");
        int64_t v = 0;
        switch (t->size) {
          case 1: v = int8_t(data[0]); break;
          case 2: { int16_t x; std::memcpy(&x, data, 2); v = x; break; }
          case 4: { int32_t x; std::memcpy(&x, data, 4); v = x; break; }
          case 8: std::memcpy(&v, data, 8); break;
        }
        if (btf_is_enum(t)) {
          const struct btf_enum* e = btf_enum(t);
          for (uint32_t i = 0; i < btf_vlen(t); ++i)
            if (v == e[i].val) {
              w.string(btf__name_by_offset(btf, e[i].name_off));
              return {};
            }
          w.raw(fmt::format("{}", v));
        } else {
          const struct btf_enum64* e = btf_enum64(t);
          for (uint32_t i = 0; i < btf_vlen(t); ++i)
            if (uint64_t(v) == btf_enum64_value(e + i)) {
              w.string(btf__name_by_offset(btf, e[i].name_off));
              return {};
            }
          w.raw(btf_kflag(t) ? fmt::format("{}", v) : fmt::format("{}", uint64_t(v)));
        }
        return {};
      }
      case BTF_KIND_PTR: {
        if (!have(data, 8)) return fail(id, "the data is shorter than a pointer");
        uint64_t p;
        std::memcpy(&p, data, 8);
        w.raw(plain ? (p ? fmt::format("0x{:x}", p) : std::string("(nil)")) : fmt::format("{}", p));
        return {};
      }
      case BTF_KIND_FLOAT: {
        if (!have(data, t->size)) return fail(id, "the data is shorter than the float");
        if (t->size == 4) {
          float f;
          std::memcpy(&f, data, 4);
          w.raw(fmt::format("{:g}", f));
        } else if (t->size == 8) {
          double d;
          std::memcpy(&d, data, 8);
          w.raw(fmt::format("{:g}", d));
        } else if (t->size == 16) {
          long double d;
          std::memcpy(&d, data, 16);
          w.raw(fmt::format("{:f}", d));
        } else {
          return fail(id, fmt::format("float of {} bytes", t->size));
        }
        return {};
      }
      case BTF_KIND_TYPEDEF:
      case BTF_KIND_VOLATILE:
      case BTF_KIND_CONST:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG:
        return value(t->type, bit_offset, data, depth + 1);
      case BTF_KIND_VAR: {
        w.start_object();
        w.name(btf__name_by_offset(btf, t->name_off));
        if (Status s = value(t->type, 0, data, depth + 1); !s) return s;
        w.end_object();
        return {};
      }
      case BTF_KIND_DATASEC: {
        w.start_object();
        w.name(btf__name_by_offset(btf, t->name_off));
        w.start_array();
        const struct btf_var_secinfo* v = btf_var_secinfos(t);
        for (uint32_t i = 0; i < btf_vlen(t); ++i) {
          if (!have(data, uint64_t(v[i].offset) + v[i].size)) return fail(id, "the data is shorter than the section");
          if (Status s = value(v[i].type, 0, data + v[i].offset, depth + 1); !s) return s;
        }
        w.end_array();
        w.end_object();
        return {};
      }
      case BTF_KIND_FWD:
        return fail(id, "a forward declaration has no layout");
      default:
        return fail(id, fmt::format("kind {} describes no data", btf_kind(t)));
    }
  }
};

}  // namespace

Result<std::shared_ptr<const ParsedBtf>> ParsedBtf::parse(std::span<const uint8_t> raw) {
  struct btf* b = btf__new(raw.data(), uint32_t(raw.size()));
  if (!b) return make_error(ErrorCode::InvalidArgument, fmt::format("BTF of {} bytes: {}", raw.size(), std::strerror(errno)));
  return std::shared_ptr<const ParsedBtf>(new ParsedBtf(b));
}

ParsedBtf::~ParsedBtf() { btf__free(btf_); }

Status format_btf_value(BtfJsonWriter& w, const struct btf* btf, uint32_t type_id, std::span<const uint8_t> data,
                        bool plain_text) {
  if (!btf) return make_error(ErrorCode::InvalidArgument, "no BTF");
  __s64 size = btf__resolve_size(btf, type_id);
  if (size < 0) return make_error(ErrorCode::InvalidArgument, fmt::format("BTF type [{}]: its size is not known", type_id));
  if (uint64_t(size) > data.size())
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("BTF type [{}] is {} bytes, the data {}", type_id, size, data.size()));
  Dumper d{w, btf, plain_text, data.data() + data.size()};
  return d.value(type_id, 0, data.data(), 0);
}

Result<std::string> format_btf_value_json(const struct btf* btf, uint32_t type_id, std::span<const uint8_t> data,
                                          bool plain_text) {
  BtfJsonWriter w(false);
  if (Status s = format_btf_value(w, btf, type_id, data, plain_text); !s) return s.error();
  return w.str();
}

}  // namespace bpfvm
