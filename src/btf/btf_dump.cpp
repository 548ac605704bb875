// btf_dump_file(): bpftool's `btf dump file` (raw form printed here, C form through libbpf's
// btf_dump).
#include "bpfvm/btf.hpp"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <linux/btf.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <nlohmann/json.hpp>

namespace bpfvm {
namespace {

using json = nlohmann::ordered_json;

const char* kind_name(int kind) {
  static const char* const names[] = {"UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD",
                                      "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO",
                                      "VAR", "DATASEC", "FLOAT", "DECL_TAG", "TYPE_TAG", "ENUM64"};
  return kind >= 0 && kind < int(sizeof names / sizeof *names) ? names[kind] : "UNKN";
}

std::string name_of(const struct btf* btf, uint32_t off) {
  const char* s = btf__name_by_offset(btf, off);
  return s && *s ? s : "(anon)";
}

const char* linkage_name(int l) {
  switch (l) {
    case 0: return "static";
    case 1: return "global";
    case 2: return "extern";
    default: return "(unknown)";
  }
}

// One type as bpftool's dump_btf_type prints it (plain) and its JSON object.
void dump_type(const struct btf* btf, uint32_t id, std::string& out, json* j) {
  const struct btf_type* t = btf__type_by_id(btf, id);
  const int kind = btf_kind(t);
  const uint16_t vlen = btf_vlen(t);
  const std::string name = name_of(btf, t->name_off);
  out += fmt::format("[{}] {} '{}'", id, kind_name(kind), name);
  json o;
  if (j) {
    o["id"] = id;
    o["kind"] = kind_name(kind);
    o["name"] = name;
  }
  switch (kind) {
    case BTF_KIND_INT: {
      uint32_t v = *reinterpret_cast<const uint32_t*>(t + 1);
      const char* enc = (BTF_INT_ENCODING(v) & BTF_INT_SIGNED) ? "SIGNED"
                        : (BTF_INT_ENCODING(v) & BTF_INT_CHAR) ? "CHAR"
                        : (BTF_INT_ENCODING(v) & BTF_INT_BOOL) ? "BOOL"
                                                               : "(none)";
      out += fmt::format(" size={} bits_offset={} nr_bits={} encoding={}", t->size, BTF_INT_OFFSET(v), BTF_INT_BITS(v), enc);
      if (j) {
        o["size"] = t->size;
        o["bits_offset"] = BTF_INT_OFFSET(v);
        o["nr_bits"] = BTF_INT_BITS(v);
        o["encoding"] = enc;
      }
      break;
    }
    case BTF_KIND_PTR: case BTF_KIND_CONST: case BTF_KIND_VOLATILE: case BTF_KIND_RESTRICT:
    case BTF_KIND_TYPEDEF: case BTF_KIND_TYPE_TAG:
      out += fmt::format(" type_id={}", t->type);
      if (j) o["type_id"] = t->type;
      break;
    case BTF_KIND_ARRAY: {
      const auto* a = reinterpret_cast<const struct btf_array*>(t + 1);
      out += fmt::format(" type_id={} index_type_id={} nr_elems={}", a->type, a->index_type, a->nelems);
      if (j) {
        o["type_id"] = a->type;
        o["index_type_id"] = a->index_type;
        o["nr_elems"] = a->nelems;
      }
      break;
    }
    case BTF_KIND_STRUCT: case BTF_KIND_UNION: {
      out += fmt::format(" size={} vlen={}", t->size, vlen);
      const auto* m = reinterpret_cast<const struct btf_member*>(t + 1);
      json members = json::array();
      for (uint16_t i = 0; i < vlen; ++i) {
        uint32_t bit_off = btf_kflag(t) ? BTF_MEMBER_BIT_OFFSET(m[i].offset) : m[i].offset;
        uint32_t bit_size = btf_kflag(t) ? BTF_MEMBER_BITFIELD_SIZE(m[i].offset) : 0;
        out += fmt::format("\n\t'{}' type_id={} bits_offset={}", name_of(btf, m[i].name_off), m[i].type, bit_off);
        if (bit_size) out += fmt::format(" bitfield_size={}", bit_size);
        if (j) {
          json mm = {{"name", name_of(btf, m[i].name_off)}, {"type_id", m[i].type}, {"bits_offset", bit_off}};
          if (bit_size) mm["bitfield_size"] = bit_size;
          members.push_back(mm);
        }
      }
      if (j) {
        o["size"] = t->size;
        o["vlen"] = vlen;
        o["members"] = members;
      }
      break;
    }
    case BTF_KIND_ENUM: case BTF_KIND_ENUM64: {
      const char* enc = btf_kflag(t) ? "SIGNED" : "UNSIGNED";
      out += fmt::format(" encoding={} size={} vlen={}", enc, t->size, vlen);
      json values = json::array();
      for (uint16_t i = 0; i < vlen; ++i) {
        std::string vn;
        long long sv;
        unsigned long long uv;
        if (kind == BTF_KIND_ENUM) {
          const auto* e = reinterpret_cast<const struct btf_enum*>(t + 1) + i;
          vn = name_of(btf, e->name_off);
          sv = e->val;
          uv = uint32_t(e->val);
        } else {
          const auto* e = reinterpret_cast<const struct btf_enum64*>(t + 1) + i;
          vn = name_of(btf, e->name_off);
          uv = (uint64_t(e->val_hi32) << 32) | e->val_lo32;
          sv = (long long)uv;
        }
        const char* suffix = kind == BTF_KIND_ENUM64 ? (btf_kflag(t) ? "LL" : "ULL") : "";
        if (btf_kflag(t)) out += fmt::format("\n\t'{}' val={}{}", vn, sv, suffix);
        else out += fmt::format("\n\t'{}' val={}{}", vn, uv, suffix);
        // bpftool's JSON widens a 32-bit enum's value as signed, also for unsigned enums
        unsigned long long juv = kind == BTF_KIND_ENUM ? (unsigned long long)(long long)sv : uv;
        if (j) values.push_back(btf_kflag(t) ? json{{"name", vn}, {"val", sv}} : json{{"name", vn}, {"val", juv}});
      }
      if (j) {
        o["encoding"] = enc;
        o["size"] = t->size;
        o["vlen"] = vlen;
        o["values"] = values;
      }
      break;
    }
    case BTF_KIND_FWD: {
      const char* fk = btf_kflag(t) ? "union" : "struct";
      out += fmt::format(" fwd_kind={}", fk);
      if (j) o["fwd_kind"] = fk;
      break;
    }
    case BTF_KIND_FUNC: {
      out += fmt::format(" type_id={} linkage={}", t->type, linkage_name(vlen));
      if (j) {
        o["type_id"] = t->type;
        o["linkage"] = linkage_name(vlen);
      }
      break;
    }
    case BTF_KIND_FUNC_PROTO: {
      out += fmt::format(" ret_type_id={} vlen={}", t->type, vlen);
      const auto* p = reinterpret_cast<const struct btf_param*>(t + 1);
      json params = json::array();
      for (uint16_t i = 0; i < vlen; ++i) {
        out += fmt::format("\n\t'{}' type_id={}", name_of(btf, p[i].name_off), p[i].type);
        if (j) params.push_back({{"name", name_of(btf, p[i].name_off)}, {"type_id", p[i].type}});
      }
      if (j) {
        o["ret_type_id"] = t->type;
        o["vlen"] = vlen;
        o["params"] = params;
      }
      break;
    }
    case BTF_KIND_VAR: {
      const auto* v = reinterpret_cast<const struct btf_var*>(t + 1);
      out += fmt::format(" type_id={}, linkage={}", t->type, linkage_name(int(v->linkage)));
      if (j) {
        o["type_id"] = t->type;
        o["linkage"] = linkage_name(int(v->linkage));
      }
      break;
    }
    case BTF_KIND_DATASEC: {
      out += fmt::format(" size={} vlen={}", t->size, vlen);
      const auto* v = reinterpret_cast<const struct btf_var_secinfo*>(t + 1);
      json vars = json::array();
      for (uint16_t i = 0; i < vlen; ++i) {
        const struct btf_type* vt = btf__type_by_id(btf, v[i].type);
        std::string vk = vt ? kind_name(btf_kind(vt)) : "UNKN";
        std::string vn = vt ? name_of(btf, vt->name_off) : "(anon)";
        out += fmt::format("\n\ttype_id={} offset={} size={} ({} '{}')", v[i].type, v[i].offset, v[i].size, vk, vn);
        if (j) vars.push_back({{"type_id", v[i].type}, {"offset", v[i].offset}, {"size", v[i].size}});
      }
      if (j) {
        o["size"] = t->size;
        o["vlen"] = vlen;
        o["vars"] = vars;
      }
      break;
    }
    case BTF_KIND_FLOAT:
      out += fmt::format(" size={}", t->size);
      if (j) o["size"] = t->size;
      break;
    case BTF_KIND_DECL_TAG: {
      int comp = reinterpret_cast<const struct btf_decl_tag*>(t + 1)->component_idx;
      out += fmt::format(" type_id={} component_idx={}", t->type, comp);
      if (j) {
        o["type_id"] = t->type;
        o["component_idx"] = comp;
      }
      break;
    }
    default:
      break;
  }
  out += '\n';
  if (j) j->push_back(o);
}

void print_to_string(void* ctx, const char* fmt_str, va_list args) {
  auto* out = static_cast<std::string*>(ctx);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt_str, copy);
  va_end(copy);
  if (n <= 0) return;
  size_t old = out->size();
  out->resize(old + size_t(n) + 1);
  std::vsnprintf(out->data() + old, size_t(n) + 1, fmt_str, args);
  out->resize(old + size_t(n));
}

}  // namespace

Result<std::string> btf_dump_file(const std::string& path, BtfDumpFormat format, bool as_json) {
  struct btf* btf = btf__parse(path.c_str(), nullptr);
  if (!btf) {
    int e = errno;
    return make_error(ErrorCode::Load, fmt::format("{}: no BTF could be read ({})", path,
                                                   e == ENOENT ? "no such file, or no .BTF section" : std::strerror(e)));
  }
  const uint32_t n = btf__type_cnt(btf);
  std::string out;
  if (format == BtfDumpFormat::Raw) {
    json types = json::array();
    for (uint32_t id = 1; id < n; ++id) dump_type(btf, id, out, as_json ? &types : nullptr);
    btf__free(btf);
    if (as_json) return json{{"types", types}}.dump();
    return out;
  }
  struct btf_dump* d = btf_dump__new(btf, print_to_string, &out, nullptr);
  if (!d) {
    btf__free(btf);
    return make_error(ErrorCode::Load, fmt::format("{}: libbpf's btf_dump failed", path));
  }
  out += "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n";
  out += "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
         "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n";
  int err = 0;
  for (uint32_t id = 1; id < n && !err; ++id) err = btf_dump__dump_type(d, id);
  out += "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n";
  btf_dump__free(d);
  btf__free(btf);
  if (err) return make_error(ErrorCode::Load, fmt::format("{}: dumping type failed ({})", path, std::strerror(-err)));
  return out;
}

}  // namespace bpfvm
