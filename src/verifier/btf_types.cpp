// BTF-typed contexts and kernel-object pointers (see btf_types.hpp): the kernel's btf_ctx_access and
// btf_struct_walk rules over libbpf's BTF API.
#include "verifier/btf_types.hpp"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <linux/bpf.h>

#include <cstring>

#include "bpfvm/verifier.hpp"
#include "loader/btf_util.hpp"
#include "loader/core.hpp"

namespace bpfvm {

namespace {

constexpr int kMaxFuncArgs = 12;  // MAX_BPF_FUNC_ARGS: the context is 12 u64 slots

// The attach types whose context is a BTF prototype's arguments.
bool btf_attach(uint32_t prog_type, uint32_t attach) {
  if (prog_type == BPF_PROG_TYPE_TRACING)
    return attach == BPF_TRACE_RAW_TP || attach == BPF_TRACE_FENTRY || attach == BPF_TRACE_FEXIT ||
           attach == BPF_MODIFY_RETURN || attach == BPF_TRACE_ITER;
  if (prog_type == BPF_PROG_TYPE_LSM) return attach == BPF_LSM_MAC || attach == BPF_LSM_CGROUP;
  return false;
}

}  // namespace

bool needs_attach_btf(uint32_t prog_type, uint32_t expected_attach) { return btf_attach(prog_type, expected_attach); }

Result<std::shared_ptr<const AttachBtf>> resolve_attach_btf(uint32_t prog_type, uint32_t expected_attach,
                                                            const std::string& target, const std::string& btf_file) {
  auto err = [](std::string m) { return make_error(ErrorCode::Verify, std::move(m)); };
  if (!btf_attach(prog_type, expected_attach))
    return err(fmt::format("program type {} with attach type {} has no BTF attach target", prog_type,
                           expected_attach));
  if (target.empty()) return err("no attach target named (the section gives none)");
  auto tb = core::target_for(btf_file);
  if (!tb) return tb.error();
  const struct btf* b = (*tb)->btf();
  auto p = std::make_shared<verifier::AttachProto>();
  p->holder = *tb;
  p->btf = b;
  p->expected_attach = expected_attach;
  p->prog_type = prog_type;
  p->name = target;
  auto out = std::make_shared<AttachBtf>();
  out->target = target;
  out->origin = (*tb)->origin();
  std::string what;
  int id = -1;
  uint32_t proto = 0;
  if (expected_attach == BPF_TRACE_RAW_TP) {
    // tp_btf/NAME: typedef btf_trace_NAME = void (*)(void *__data, args...).
    out->type_name = "btf_trace_" + target;
    what = "typedef";
    id = btf__find_by_name_kind(b, out->type_name.c_str(), BTF_KIND_TYPEDEF);
    if (id > 0) {
      const struct btf_type* t = btfu::type(b, btfu::type(b, id)->type);
      if (t && btf_is_ptr(t)) {
        const struct btf_type* f = btfu::type(b, t->type);
        if (f && btf_is_func_proto(f) && btf_vlen(f) >= 1) proto = t->type;
      }
      if (!proto)
        return err(fmt::format("attach target {}: {} is not a pointer to a function with a __data argument",
                               target, out->type_name));
    }
    p->skip_first = true;
    p->args_trusted = true;
  } else {
    if (prog_type == BPF_PROG_TYPE_LSM) out->type_name = "bpf_lsm_" + target;
    else if (expected_attach == BPF_TRACE_ITER) out->type_name = "bpf_iter_" + target;
    else out->type_name = target;
    what = "function";
    id = btf__find_by_name_kind(b, out->type_name.c_str(), BTF_KIND_FUNC);
    if (id > 0) {
      const struct btf_type* f = btfu::type(b, btfu::type(b, id)->type);
      if (!f || !btf_is_func_proto(f)) return err(fmt::format("attach target {}: no prototype in BTF", target));
      proto = btfu::type(b, id)->type;
    }
    if (expected_attach == BPF_TRACE_ITER) {
      p->iter = true;
      p->args_trusted = true;
    }
    // The kernel's bpf_lsm_is_trusted: every LSM hook's arguments but those of the socket
    // allocation and free hooks (their socket is not fully set up) are trusted.
    if (prog_type == BPF_PROG_TYPE_LSM)
      p->args_trusted = target != "sk_alloc_security" && target != "sk_free_security";
  }
  if (id <= 0)
    return err(fmt::format("attach target '{}': no {} {} in the BTF of {}", target, what, out->type_name,
                           out->origin));
  p->proto = proto;
  out->btf_id = static_cast<uint32_t>(id);
  out->impl = p;
  return std::shared_ptr<const AttachBtf>(std::move(out));
}

namespace verifier {

namespace {

const struct btf_type* skip_mods(const struct btf* b, uint32_t id, uint32_t* out = nullptr) {
  return btfu::skip_mods(b, id, out);
}

bool is_struct(const struct btf_type* t) { return t && (btf_is_struct(t) || btf_is_union(t)); }

const char* kind_str(const struct btf_type* t) {
  if (!t) return "VOID";
  switch (btf_kind(t)) {
    case BTF_KIND_INT: return "INT";
    case BTF_KIND_PTR: return "PTR";
    case BTF_KIND_ARRAY: return "ARRAY";
    case BTF_KIND_STRUCT: return "STRUCT";
    case BTF_KIND_UNION: return "UNION";
    case BTF_KIND_ENUM: return "ENUM";
    case BTF_KIND_FWD: return "FWD";
    case BTF_KIND_TYPEDEF: return "TYPEDEF";
    case BTF_KIND_FUNC_PROTO: return "FUNC_PROTO";
    case BTF_KIND_FLOAT: return "FLOAT";
    case BTF_KIND_ENUM64: return "ENUM64";
    default: return "UNKNOWN";
  }
}

// Bytes an argument or return value takes in the context (the kernel's get_ctx_arg_idx).
uint32_t slot_bytes(const struct btf* b, uint32_t type_id) {
  const struct btf_type* t = skip_mods(b, type_id);
  if (!t) return 0;  // void
  if (btf_is_ptr(t)) return 8;
  long long sz = btf__resolve_size(b, type_id);
  return sz > 0 ? static_cast<uint32_t>((sz + 7) / 8 * 8) : 0;
}

}  // namespace

CtxArg ctx_arg_access(const AttachProto& p, int64_t off, int size, bool write) {
  CtxArg r;
  const struct btf* b = p.btf;
  const std::string access = fmt::format("invalid bpf_context access off={} size={}", off, size);
  // tracing_prog_is_valid_access (LSM programs go to btf_ctx_access directly).
  if (p.prog_type == BPF_PROG_TYPE_TRACING &&
      (off < 0 || off >= 8 * kMaxFuncArgs || write || size <= 0 || off % size != 0)) {
    r.error = write ? access + " (the arguments are read-only)" : access;
    return r;
  }
  if (write) {
    r.error = access + " (the arguments are read-only)";
    return r;
  }
  if (off % 8) {
    r.error = fmt::format("func '{}' offset {} is not multiple of 8; {}", p.name, off, access);
    return r;
  }
  const struct btf_type* proto = btfu::type(b, p.proto);
  const struct btf_param* params = btf_params(proto);
  uint32_t nr = btf_vlen(proto);
  // The argument at `off` (arguments larger than 8 bytes take several slots).
  uint32_t arg = nr + 1;
  if (off >= 0) {
    uint64_t end = 0;
    for (uint32_t i = 0; i < nr && arg > nr; ++i) {
      end += slot_bytes(b, params[i].type);
      if (static_cast<uint64_t>(off) < end) arg = i;
    }
    if (arg > nr) {
      end += slot_bytes(b, proto->type);
      if (static_cast<uint64_t>(off) < end) arg = nr;
    }
  }
  if (p.skip_first) {
    ++params;
    --nr;
  }
  uint32_t type_id = 0;
  if (arg > nr) {
    r.error = fmt::format("func '{}' doesn't have {}-th argument; {}", p.name, arg + 1, access);
    return r;
  }
  if (arg == nr) {
    const bool ret_ok = p.expected_attach == BPF_TRACE_FEXIT || p.expected_attach == BPF_MODIFY_RETURN ||
                        p.expected_attach == BPF_LSM_MAC || p.expected_attach == BPF_LSM_CGROUP;
    if (!ret_ok) {
      r.error = fmt::format("func '{}' doesn't have {}-th argument; {}", p.name, arg + 1, access);
      return r;
    }
    type_id = proto->type;
    r.lsm_retval = p.prog_type == BPF_PROG_TYPE_LSM;
  } else {
    type_id = params[arg].type;
  }
  uint32_t rid = 0;
  const struct btf_type* t = skip_mods(b, type_id, &rid);
  if (t && ((btf_is_int(t) && t->size <= 8) || btf_is_any_enum(t) || is_struct(t))) return r;  // a scalar
  if (t && btf_is_ptr(t)) {
    const struct btf_type* pointee = skip_mods(b, t->type);
    if (pointee && btf_is_int(pointee)) return r;  // int *, char *: read as a number (is_int_ptr)
  }
  if (!t || !btf_is_ptr(t)) {
    r.error = fmt::format("func '{}' arg{} '{}' has type {}. Only pointer access is allowed; {}", p.name, arg,
                          t ? btfu::name(b, t->name_off) : "", kind_str(t), access);
    return r;
  }
  if (size != 8) {
    r.error = fmt::format("func '{}' size {} must be 8; {}", p.name, size, access);
    return r;
  }
  r.pointer = true;
  r.trusted = p.args_trusted;
  // Iterator programs are called once more at the end with NULL objects.
  if (p.iter && arg > 0) r.nullable = true;
  {
    std::string pname = btfu::name(b, params && arg < nr ? params[arg].name_off : 0);
    const std::string suffix = "__nullable";
    if (arg < nr && pname.size() > suffix.size() && pname.compare(pname.size() - suffix.size(), suffix.size(), suffix) == 0)
      r.nullable = true;
  }
  // A __user or __percpu tagged pointer is not kernel memory the program may read directly.
  const struct btf_type* tag = btfu::type(b, t->type);
  if (tag && btf_is_type_tag(tag)) {
    std::string v = btfu::name(b, tag->name_off);
    if (v == "user" || v == "percpu") {
      r.error = fmt::format("func '{}' arg{} is a __{} pointer; {}", p.name, arg, v, access);
      return r;
    }
  }
  uint32_t sid = 0;
  const struct btf_type* st = skip_mods(b, t->type, &sid);
  if (!is_struct(st)) {
    r.error = fmt::format("func '{}' arg{} type {} is not a struct; {}", p.name, arg, kind_str(st), access);
    return r;
  }
  r.btf_id = sid;
  return r;
}

namespace {

enum Walk { WalkError, WalkScalar, WalkPtr, WalkPtrUntrusted, WalkStruct };

// The kernel's __btf_resolve_size: the member's type through modifiers and arrays (multi-dimensional
// arrays linearised): its total size, the element type and id, the element count.
struct Resolved {
  const struct btf_type* type = nullptr;  // the array type for arrays, else the resolved type
  const struct btf_type* elem = nullptr;
  uint32_t elem_id = 0;
  uint32_t size = 0;
  uint32_t nelems = 1;
  bool ok = false;
};

Resolved resolve_size(const struct btf* b, uint32_t id) {
  Resolved r;
  const struct btf_type* array = nullptr;
  uint64_t nelems = 1;
  for (int depth = 0; depth < 32; ++depth) {
    const struct btf_type* t = btfu::type(b, id);
    if (!t) return r;
    switch (btf_kind(t)) {
      case BTF_KIND_INT: case BTF_KIND_STRUCT: case BTF_KIND_UNION: case BTF_KIND_ENUM: case BTF_KIND_FLOAT:
      case BTF_KIND_ENUM64: case BTF_KIND_PTR: {
        uint64_t sz = btf_is_ptr(t) ? 8 : t->size;
        if (nelems * sz > UINT32_MAX) return r;
        r.size = static_cast<uint32_t>(nelems * sz);
        r.nelems = static_cast<uint32_t>(nelems);
        r.elem = t;
        r.elem_id = id;
        r.type = array ? array : t;
        r.ok = true;
        return r;
      }
      case BTF_KIND_TYPEDEF: case BTF_KIND_VOLATILE: case BTF_KIND_CONST: case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG:
        id = t->type;
        break;
      case BTF_KIND_ARRAY: {
        if (!array) array = t;
        const struct btf_array* a = btf_array(t);
        nelems *= a->nelems;
        if (nelems > UINT32_MAX) return r;
        id = a->type;
        break;
      }
      default:
        return r;
    }
  }
  return r;
}

struct WalkOut {
  Walk w = WalkError;
  std::string error;
  uint32_t next = 0;
  bool untrusted = false;
  std::string field;  // WalkPtr: the member's name
};

WalkOut struct_walk(const struct btf* b, const struct btf_type* t, uint32_t off, uint32_t size, bool untrusted_in) {
  WalkOut o;
  o.untrusted = untrusted_in;
  for (int depth = 0; depth < 64; ++depth) {  // `again` in the kernel's btf_struct_walk
    if (t && (btf_is_mod(t) || btf_is_typedef(t))) t = skip_mods(b, t->type);
    const std::string tname = t ? btfu::name(b, t->name_off) : "";
    if (!is_struct(t)) {
      o.error = fmt::format("Type '{}' is not a struct", tname);
      return o;
    }
    const uint32_t vlen = btf_vlen(t);
    if (btf_is_union(t) && vlen != 1) o.untrusted = true;  // which member is live is unknown
    if (static_cast<uint64_t>(off) + size > t->size) {
      // A flexible array of structs at the end may be accessed past the struct's size.
      bool flex = false;
      if (vlen > 0) {
        const struct btf_member* m = btf_members(t) + vlen - 1;
        const struct btf_type* mt = skip_mods(b, m->type);
        uint32_t moff = btf_member_bit_offset(t, vlen - 1) / 8;
        if (mt && btf_is_array(mt) && btf_array(mt)->nelems == 0 && off >= moff) {
          const struct btf_type* et = skip_mods(b, btf_array(mt)->type);
          if (is_struct(et) && et->size > 0) {
            off = (off - moff) % et->size;
            t = et;
            flex = true;
          }
        }
      }
      if (flex) continue;
      o.error = fmt::format("access beyond struct {} at off {} size {}", tname, off, size);
      return o;
    }
    const struct btf_member* members = btf_members(t);
    bool descended = false;
    for (uint32_t i = 0; i < vlen; ++i) {
      const struct btf_member* m = &members[i];
      uint32_t moff = btf_member_bit_offset(t, i) / 8;
      if (off + size <= moff) break;  // past the access
      uint32_t bits = btf_member_bitfield_size(t, i);
      if (bits) {
        uint32_t end_bit = btf_member_bit_offset(t, i) + bits;
        if (off <= moff && (end_bit + 7) / 8 <= off + size) {
          o.w = WalkScalar;
          return o;
        }
        continue;
      }
      if (off < moff) break;  // a hole
      const std::string mname = btfu::name(b, m->name_off);
      Resolved rs = resolve_size(b, m->type);
      if (!rs.ok) {
        o.error = fmt::format("field {} doesn't have size", mname);
        return o;
      }
      uint32_t msize = rs.size;
      const uint32_t mtrue_end = moff + msize;
      if (off >= mtrue_end) continue;
      const struct btf_type* mtype = rs.type;
      uint32_t mid = rs.elem_id;
      if (btf_is_array(mtype)) {
        if (moff == mtrue_end) continue;  // an empty array
        msize /= rs.nelems;
        moff += (off - moff) / msize * msize;
        mtype = rs.elem;
      } else {
        mtype = rs.elem;
      }
      if (is_struct(mtype)) {
        if (off == moff) {
          o.w = WalkStruct;
          o.next = mid;
          return o;
        }
        off -= moff;
        t = mtype;
        descended = true;
        break;
      }
      if (btf_is_ptr(mtype)) {
        if (msize != size || off != moff) {
          o.error = fmt::format("cannot access ptr member {} with moff {} in struct {} with off {} size {}", mname,
                                moff, tname, off, size);
          return o;
        }
        uint32_t sid = 0;
        const struct btf_type* st = skip_mods(b, mtype->type, &sid);
        if (is_struct(st)) {
          o.w = WalkPtr;
          o.next = sid;
          o.field = mname;
          return o;
        }
        o.w = WalkPtrUntrusted;
        return o;
      }
      if (off + size > mtrue_end && !o.untrusted) {
        o.error = fmt::format("access beyond the end of member {} (mend:{}) in struct {} with off {} size {}", mname,
                              mtrue_end, tname, off, size);
        return o;
      }
      o.w = WalkScalar;
      return o;
    }
    if (descended) continue;
    o.error = fmt::format("struct {} doesn't have field at offset {}", tname, off);
    return o;
  }
  o.error = "BTF struct nesting too deep";
  return o;
}

}  // namespace

BtfLoad btf_struct_access(const struct btf* b, uint32_t struct_id, int64_t off, int size) {
  BtfLoad r;
  const struct btf_type* t = btfu::type(b, struct_id);
  bool untrusted = false;
  for (int depth = 0; depth < 64; ++depth) {
    WalkOut w = struct_walk(b, t, static_cast<uint32_t>(off), static_cast<uint32_t>(size), untrusted);
    untrusted = w.untrusted;
    switch (w.w) {
      case WalkError: r.error = w.error; return r;
      case WalkScalar: r.what = BtfLoad::Scalar; return r;
      case WalkPtr:
        r.what = BtfLoad::Ptr;
        r.btf_id = w.next;
        r.untrusted = untrusted;
        r.field = std::move(w.field);
        return r;
      case WalkPtrUntrusted: r.what = BtfLoad::UntrustedMem; return r;
      case WalkStruct:
        t = btfu::type(b, w.next);
        off = 0;
        break;
    }
  }
  r.error = "BTF struct nesting too deep";
  return r;
}

namespace {

bool listed(const struct btf* b, const struct btf_type* parent, const std::string& field, uint32_t ptr_struct,
            const char* suffix) {
  const std::string list = btfu::name(b, parent->name_off) + suffix;
  if (list.size() >= 64) return false;  // the kernel builds the name in a 64-byte buffer
  int id = btf__find_by_name_kind(b, list.c_str(), btf_kind(parent));
  if (id <= 0) return false;
  const struct btf_type* lt = btfu::type(b, id);
  if (!is_struct(lt)) return false;
  const struct btf_member* m = btf_members(lt);
  for (uint32_t i = 0; i < btf_vlen(lt); ++i) {
    const struct btf_type* mt = btfu::type(b, m[i].type);
    if (!mt || !btf_is_ptr(mt)) continue;
    uint32_t pointee = 0;
    skip_mods(b, mt->type, &pointee);
    if (pointee == ptr_struct && btfu::name(b, m[i].name_off) == field) return true;
  }
  return false;
}

}  // namespace

FieldTrust btf_field_trust(const struct btf* b, uint32_t parent_struct, const std::string& field, uint32_t ptr_struct) {
  const struct btf_type* parent = btfu::type(b, parent_struct);
  if (!is_struct(parent) || field.empty()) return FieldTrust::None;
  // The kernel's order (check_ptr_to_btf_access): trusted, trusted or NULL, then the RCU lists.
  if (listed(b, parent, field, ptr_struct, "__safe_trusted")) return FieldTrust::Trusted;
  if (listed(b, parent, field, ptr_struct, "__safe_trusted_or_null")) return FieldTrust::TrustedOrNull;
  if (listed(b, parent, field, ptr_struct, "__safe_rcu")) return FieldTrust::Rcu;
  if (listed(b, parent, field, ptr_struct, "__safe_rcu_or_null")) return FieldTrust::RcuOrNull;
  return FieldTrust::None;
}

std::string btf_struct_name(const struct btf* b, uint32_t id) {
  const struct btf_type* t = btfu::type(b, id);
  std::string n = t ? btfu::name(b, t->name_off) : "";
  return n.empty() ? "(anon)" : n;
}

bool btf_struct_is(const struct btf* b, uint32_t have, const char* want_name) {
  for (int depth = 0; depth < 16; ++depth) {
    const struct btf_type* t = skip_mods(b, have, &have);
    if (!is_struct(t)) return false;
    if (btfu::name(b, t->name_off) == want_name) return true;
    if (btf_vlen(t) == 0 || btf_member_bit_offset(t, 0) != 0) return false;
    have = btf_members(t)[0].type;
  }
  return false;
}

uint32_t btf_struct_id(const struct btf* b, const char* name) {
  int id = btf__find_by_name_kind(b, name, BTF_KIND_STRUCT);
  return id > 0 ? static_cast<uint32_t>(id) : 0;
}

}  // namespace verifier
}  // namespace bpfvm
