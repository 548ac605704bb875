// CO-RE relocations: matching a local access path against a target BTF (libbpf's documented
// rules: names without their ___flavour, compatible kinds, fields found by name through anonymous
// members, array indices kept), computing the relocated value, and patching the instruction.
#include "loader/core.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "loader/btf_util.hpp"

namespace bpfvm::core {
namespace {

constexpr int kMaxDepth = 32;          // recursion through pointers, arrays, anonymous members
constexpr size_t kMaxAccessors = 64;   // access string components (libbpf's BPF_CORE_SPEC_MAX_LEN)

Diagnostic err(std::string m) { return make_error(ErrorCode::Load, std::move(m)); }

bool is_composite(const struct btf_type* t) { return t && (btf_is_struct(t) || btf_is_union(t)); }
bool is_any_enum(const struct btf_type* t) { return t && (btf_is_enum(t) || btf_is_enum64(t)); }

// Kinds CO-RE treats as the same: equal kinds, or enum and enum64.
bool kinds_compatible(const struct btf_type* a, const struct btf_type* b) {
  return btf_kind(a) == btf_kind(b) || (is_any_enum(a) && is_any_enum(b));
}

std::string name_of(const struct btf* b, uint32_t name_off) { return btfu::name(b, name_off); }

// Names match when their essential parts are equal; an anonymous side matches anything.
bool names_match(const struct btf* lb, uint32_t loff, const struct btf* tb, uint32_t toff) {
  std::string l = name_of(lb, loff), t = name_of(tb, toff);
  if (l.empty() || t.empty()) return true;
  return essential_name(l) == essential_name(t);
}

const char* kind_word(const struct btf_type* t) {
  switch (btf_kind(t)) {
    case BTF_KIND_STRUCT: return "struct ";
    case BTF_KIND_UNION: return "union ";
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64: return "enum ";
    case BTF_KIND_TYPEDEF: return "typedef ";
    case BTF_KIND_FWD: return "fwd ";
    default: return "";
  }
}

// One step of an access path: the root (as an array index), a named member, or an array element.
struct Step {
  uint32_t type_id = 0;   // the composite / array stepped into (root: the root type)
  uint32_t idx = 0;       // member index, or array / root index
  std::string name;       // member name ("" for array elements and the root)
  bool member = false;
};

// A resolved access path in one BTF.
struct Spec {
  const struct btf* b = nullptr;
  uint32_t root_id = 0;
  std::vector<Step> steps;      // root step, then named members and array elements
  std::vector<uint32_t> raw;    // the raw access indices (anonymous members included)
  uint64_t bit_offset = 0;
  // Enum relocations: the enumerator.
  std::string enumerator;
  uint64_t enum_value = 0;
};

bool fields_compatible(const struct btf* lb, uint32_t lid, const struct btf* tb, uint32_t tid, int depth = 0) {
  if (depth > kMaxDepth) return false;
  const struct btf_type* l = btfu::skip_mods(lb, lid);
  const struct btf_type* t = btfu::skip_mods(tb, tid);
  if (!l || !t) return false;
  if (is_composite(l) && is_composite(t)) return true;
  if (!kinds_compatible(l, t)) return false;
  switch (btf_kind(l)) {
    case BTF_KIND_PTR:
    case BTF_KIND_FLOAT: return true;
    case BTF_KIND_FWD:
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64: return names_match(lb, l->name_off, tb, t->name_off);
    case BTF_KIND_INT:  // any integers, except the old bitfield-style ones with an offset
      return btf_int_offset(l) == 0 && btf_int_offset(t) == 0;
    case BTF_KIND_ARRAY:
      return fields_compatible(lb, btf_array(l)->type, tb, btf_array(t)->type, depth + 1);
    default: return false;
  }
}

// Type compatibility for type-based relocations (exists, size, target id).
bool types_compatible(const struct btf* lb, uint32_t lid, const struct btf* tb, uint32_t tid, int depth = 0) {
  if (depth > kMaxDepth) return false;
  const struct btf_type* l0 = btfu::type(lb, lid);
  const struct btf_type* t0 = btfu::type(tb, tid);
  if (!l0 || !t0 || !kinds_compatible(l0, t0)) return false;
  const struct btf_type* l = btfu::skip_mods(lb, lid, &lid);
  const struct btf_type* t = btfu::skip_mods(tb, tid, &tid);
  if (!l || !t || !kinds_compatible(l, t)) return false;
  switch (btf_kind(l)) {
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64:
    case BTF_KIND_FWD: return true;
    case BTF_KIND_INT: return btf_int_offset(l) == 0 && btf_int_offset(t) == 0;
    case BTF_KIND_PTR: return l->type == 0 ? t->type == 0 : types_compatible(lb, l->type, tb, t->type, depth + 1);
    case BTF_KIND_ARRAY: return types_compatible(lb, btf_array(l)->type, tb, btf_array(t)->type, depth + 1);
    case BTF_KIND_FUNC_PROTO: {
      if (btf_vlen(l) != btf_vlen(t)) return false;
      for (uint16_t i = 0; i < btf_vlen(l); ++i)
        if (!types_compatible(lb, btf_params(l)[i].type, tb, btf_params(t)[i].type, depth + 1)) return false;
      if (l->type == 0 || t->type == 0) return l->type == t->type;
      return types_compatible(lb, l->type, tb, t->type, depth + 1);
    }
    default: return false;
  }
}

// The stricter "matches" relation (bpf_core_type_matches): same shape, member by member by name.
bool types_match(const struct btf* lb, uint32_t lid, const struct btf* tb, uint32_t tid, bool behind_ptr, int depth);

// Enumerator and member names in the matches relation: equal without their ___flavour suffixes; an
// anonymous target member matches only an anonymous local one (libbpf's rule).
bool essential_names_equal(const std::string& local, const std::string& target) {
  if (target.empty()) return local.empty();
  return essential_name(local) == essential_name(target);
}

bool enums_match(const struct btf* lb, const struct btf_type* l, const struct btf* tb, const struct btf_type* t) {
  if (l->size != t->size) return false;
  auto enumerator = [](const struct btf_type* e, uint16_t i) {
    return btf_is_enum(e) ? btf_enum(e)[i].name_off : btf_enum64(e)[i].name_off;
  };
  for (uint16_t i = 0; i < btf_vlen(l); ++i) {
    std::string ln = name_of(lb, enumerator(l, i));
    bool found = false;
    for (uint16_t j = 0; j < btf_vlen(t) && !found; ++j) {
      found = essential_names_equal(ln, name_of(tb, enumerator(t, j)));
    }
    if (!found) return false;
  }
  return true;
}

bool composites_match(const struct btf* lb, const struct btf_type* l, const struct btf* tb, const struct btf_type* t,
                      bool behind_ptr, int depth) {
  if (btf_vlen(l) > btf_vlen(t)) return false;
  for (uint16_t i = 0; i < btf_vlen(l); ++i) {
    const struct btf_member& lm = btf_members(l)[i];
    std::string ln = name_of(lb, lm.name_off);
    bool found = false;
    for (uint16_t j = 0; j < btf_vlen(t) && !found; ++j) {
      const struct btf_member& tm = btf_members(t)[j];
      if (!essential_names_equal(ln, name_of(tb, tm.name_off))) continue;
      found = types_match(lb, lm.type, tb, tm.type, behind_ptr, depth + 1);
    }
    if (!found) return false;
  }
  return true;
}

bool types_match(const struct btf* lb, uint32_t lid, const struct btf* tb, uint32_t tid, bool behind_ptr, int depth) {
  if (depth > kMaxDepth) return false;
  const struct btf_type* l = btfu::skip_mods(lb, lid, &lid);
  const struct btf_type* t = btfu::skip_mods(tb, tid, &tid);
  if (!l || !t) return lid == 0 && tid == 0;  // void matches void
  if (!names_match(lb, l->name_off, tb, t->name_off)) return false;
  const uint32_t lk = btf_kind(l), tk = btf_kind(t);
  switch (lk) {
    case BTF_KIND_FWD: {
      const bool lunion = btf_kflag(l);
      if (behind_ptr && lk != tk) return (tk == BTF_KIND_STRUCT && !lunion) || (tk == BTF_KIND_UNION && lunion);
      return lk == tk && lunion == btf_kflag(t);
    }
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64: return is_any_enum(t) && enums_match(lb, l, tb, t);
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
      if (behind_ptr) {
        if (lk == tk) return true;
        return tk == BTF_KIND_FWD && (lk == BTF_KIND_UNION) == btf_kflag(t);
      }
      return lk == tk && composites_match(lb, l, tb, t, behind_ptr, depth);
    case BTF_KIND_INT:
      return lk == tk && l->size == t->size &&
             (btf_int_encoding(l) & BTF_INT_SIGNED) == (btf_int_encoding(t) & BTF_INT_SIGNED);
    case BTF_KIND_PTR: return lk == tk && types_match(lb, l->type, tb, t->type, true, depth + 1);
    case BTF_KIND_ARRAY:
      return lk == tk && btf_array(l)->nelems == btf_array(t)->nelems &&
             types_match(lb, btf_array(l)->type, tb, btf_array(t)->type, behind_ptr, depth + 1);
    case BTF_KIND_FUNC_PROTO: {
      if (lk != tk || btf_vlen(l) != btf_vlen(t)) return false;
      for (uint16_t i = 0; i < btf_vlen(l); ++i)
        if (!types_match(lb, btf_params(l)[i].type, tb, btf_params(t)[i].type, behind_ptr, depth + 1)) return false;
      return types_match(lb, l->type, tb, t->type, behind_ptr, depth + 1);
    }
    default: return false;
  }
}

bool field_based(uint32_t k) { return k <= FieldRshiftU64; }
bool type_based(uint32_t k) { return (k >= TypeIdLocal && k <= TypeSize) || k == TypeMatches; }
bool enum_based(uint32_t k) { return k == EnumvalExists || k == EnumvalValue; }
bool existence(uint32_t k) { return k == FieldExists || k == TypeExists || k == EnumvalExists || k == TypeMatches; }

// Parses the access string "0:1:2" and walks it through the local BTF.
Result<Spec> parse_local(const struct btf* b, uint32_t type_id, const std::string& access, uint32_t kind) {
  Spec s;
  s.b = b;
  s.root_id = type_id;
  if (access.empty()) return err("empty access string");
  size_t pos = 0;
  while (pos <= access.size()) {
    size_t colon = access.find(':', pos);
    std::string part = access.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (part.empty() || part.size() > 9 || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return err(fmt::format("access string '{}' is not a list of numbers", access));
    s.raw.push_back(static_cast<uint32_t>(std::stoul(part)));
    if (s.raw.size() > kMaxAccessors) return err(fmt::format("access string '{}' is too long", access));
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  const struct btf_type* root = btfu::type(b, type_id);
  if (!root) return err(fmt::format("type id {} is not in the program's BTF", type_id));
  if (type_based(kind)) {
    if (s.raw.size() != 1 || s.raw[0] != 0) return err(fmt::format("type relocation with access string '{}' (must be '0')", access));
    return s;
  }
  uint32_t id = type_id;
  const struct btf_type* t = btfu::skip_mods(b, id, &id);
  if (!t) return err(fmt::format("type id {} does not resolve to a type", type_id));
  if (enum_based(kind)) {
    if (!is_any_enum(t)) return err(fmt::format("enum relocation against type [{}], which is not an enum", type_id));
    if (s.raw.size() != 1 || s.raw[0] >= btf_vlen(t))
      return err(fmt::format("enum relocation access '{}' is not an enumerator of [{}] ({} values)", access, type_id, btf_vlen(t)));
    const uint32_t i = s.raw[0];
    s.enumerator = name_of(b, btf_is_enum(t) ? btf_enum(t)[i].name_off : btf_enum64(t)[i].name_off);
    s.enum_value = btf_is_enum(t) ? static_cast<uint64_t>(static_cast<int64_t>(btf_enum(t)[i].val)) : btf_enum64_value(&btf_enum64(t)[i]);
    if (btf_is_enum(t) && !btf_kflag(t)) s.enum_value = static_cast<uint32_t>(btf_enum(t)[i].val);
    return s;
  }
  if (!field_based(kind)) return err(fmt::format("unknown CO-RE relocation kind {}", kind));
  long long root_size = btf__resolve_size(b, id);
  if (root_size < 0) return err(fmt::format("size of type [{}] cannot be resolved", type_id));
  s.steps.push_back(Step{id, s.raw[0], "", false});
  s.bit_offset = static_cast<uint64_t>(s.raw[0]) * static_cast<uint64_t>(root_size) * 8;
  for (size_t i = 1; i < s.raw.size(); ++i) {
    t = btfu::skip_mods(b, id, &id);
    if (!t) return err(fmt::format("access '{}' step {} reaches no type", access, i));
    const uint32_t idx = s.raw[i];
    if (is_composite(t)) {
      if (idx >= btf_vlen(t)) return err(fmt::format("access '{}': member {} of [{}] does not exist ({} members)", access, idx, id, btf_vlen(t)));
      const struct btf_member& m = btf_members(t)[idx];
      s.bit_offset += btf_member_bit_offset(t, idx);
      std::string n = name_of(b, m.name_off);
      if (!n.empty()) s.steps.push_back(Step{id, idx, n, true});
      id = m.type;
    } else if (btf_is_array(t)) {
      const struct btf_array* a = btf_array(t);
      if (a->nelems != 0 && idx >= a->nelems)
        return err(fmt::format("access '{}': index {} is past the array [{}] of {} elements", access, idx, id, a->nelems));
      long long es = btf__resolve_size(b, a->type);
      if (es < 0) return err(fmt::format("access '{}': element size of array [{}] cannot be resolved", access, id));
      s.steps.push_back(Step{id, idx, "", false});
      s.bit_offset += static_cast<uint64_t>(idx) * static_cast<uint64_t>(es) * 8;
      id = a->type;
    } else {
      return err(fmt::format("access '{}' step {} goes into [{}], which is neither a struct, a union nor an array", access, i, id));
    }
  }
  return s;
}

// Finds member `name` in composite `tid` of the target, through anonymous members. Appends the
// raw path and adds bit offsets; returns the member's type id and sets step, or 0 when absent.
bool find_member(const struct btf* tb, uint32_t tid, const std::string& name, Spec& out, uint32_t& member_type,
                 Step& step, int depth = 0) {
  if (depth > kMaxDepth) return false;
  const struct btf_type* t = btfu::skip_mods(tb, tid, &tid);
  if (!is_composite(t)) return false;
  for (uint16_t i = 0; i < btf_vlen(t); ++i) {
    const struct btf_member& m = btf_members(t)[i];
    std::string n = name_of(tb, m.name_off);
    const uint64_t off = btf_member_bit_offset(t, i);
    if (n.empty()) {
      out.raw.push_back(i);
      out.bit_offset += off;
      if (find_member(tb, m.type, name, out, member_type, step, depth + 1)) return true;
      out.raw.pop_back();
      out.bit_offset -= off;
    } else if (n == name) {
      out.raw.push_back(i);
      out.bit_offset += off;
      step = Step{tid, i, n, true};
      member_type = m.type;
      return true;
    }
  }
  return false;
}

// Matches a local field access path against candidate `cand` of the target; nullopt when it
// does not match.
std::optional<Spec> match_field(const Spec& local, const struct btf* tb, uint32_t cand) {
  Spec s;
  s.b = tb;
  s.root_id = cand;
  uint32_t id = cand;
  const struct btf_type* root = btfu::skip_mods(tb, id, &id);
  if (!root) return std::nullopt;
  long long root_size = btf__resolve_size(tb, id);
  if (root_size < 0) return std::nullopt;
  s.steps.push_back(Step{id, local.steps[0].idx, "", false});
  s.raw.push_back(local.steps[0].idx);
  s.bit_offset = static_cast<uint64_t>(local.steps[0].idx) * static_cast<uint64_t>(root_size) * 8;
  for (size_t i = 1; i < local.steps.size(); ++i) {
    const Step& ls = local.steps[i];
    const struct btf_type* t = btfu::skip_mods(tb, id, &id);
    if (!t) return std::nullopt;
    if (ls.member) {
      if (!is_composite(t)) return std::nullopt;
      uint32_t mtype = 0;
      Step st;
      if (!find_member(tb, id, ls.name, s, mtype, st)) return std::nullopt;
      const struct btf_type* lc = btfu::type(local.b, ls.type_id);
      if (!lc || !fields_compatible(local.b, btf_members(lc)[ls.idx].type, tb, mtype)) return std::nullopt;
      s.steps.push_back(st);
      id = mtype;
    } else {
      if (!btf_is_array(t)) return std::nullopt;
      const struct btf_array* a = btf_array(t);
      if (a->nelems != 0 && ls.idx >= a->nelems) return std::nullopt;
      long long es = btf__resolve_size(tb, a->type);
      if (es < 0) return std::nullopt;
      s.steps.push_back(Step{id, ls.idx, "", false});
      s.raw.push_back(ls.idx);
      s.bit_offset += static_cast<uint64_t>(ls.idx) * static_cast<uint64_t>(es) * 8;
      id = a->type;
    }
  }
  return s;
}

// The value a field relocation of `kind` takes for a resolved path, plus the field's size and
// type (for load resizing).
struct FieldValue {
  uint64_t value = 0;
  uint32_t size = 0;
  uint32_t type_id = 0;  // modifiers skipped
  bool bitfield = false;
};

Result<FieldValue> field_value(const Spec& s, uint32_t kind) {
  const Step& last = s.steps.back();
  uint32_t field_type = 0;
  uint32_t bit_size = 0;
  if (last.member) {
    const struct btf_type* c = btfu::type(s.b, last.type_id);
    field_type = btf_members(c)[last.idx].type;
    bit_size = btf_member_bitfield_size(c, last.idx);
  } else if (s.steps.size() == 1) {
    field_type = s.root_id;
  } else {
    field_type = btf_array(btfu::type(s.b, last.type_id))->type;
  }
  FieldValue v;
  const struct btf_type* ft = btfu::skip_mods(s.b, field_type, &v.type_id);
  if (!ft) return err(fmt::format("field type [{}] does not resolve", field_type));
  long long sz = btf__resolve_size(s.b, field_type);
  if (sz < 0 || sz > UINT32_MAX) return err(fmt::format("size of field type [{}] cannot be resolved", field_type));
  uint64_t bit_off = s.bit_offset;
  uint32_t byte_sz = static_cast<uint32_t>(sz);
  uint64_t byte_off;
  v.bitfield = bit_size > 0;
  if (v.bitfield) {
    // The smallest naturally aligned load of the field's integer size (or larger) that covers it.
    byte_off = bit_off / 8 / byte_sz * byte_sz;
    while (bit_off + bit_size - byte_off * 8 > byte_sz * 8) {
      if (byte_sz >= 8) return err("bitfield cannot be read with one load of at most 8 bytes");
      byte_sz *= 2;
      byte_off = bit_off / 8 / byte_sz * byte_sz;
    }
  } else {
    if (bit_off % 8) return err("field is not at a byte offset");
    byte_off = bit_off / 8;
    bit_size = byte_sz * 8;
  }
  v.size = byte_sz;
  switch (kind) {
    case FieldByteOffset: v.value = byte_off; break;
    case FieldByteSize: v.value = byte_sz; break;
    case FieldExists: v.value = 1; break;
    case FieldSigned:
      v.value = (is_any_enum(ft) && btf_kflag(ft)) || (btf_is_int(ft) && (btf_int_encoding(ft) & BTF_INT_SIGNED));
      break;
    case FieldLshiftU64: v.value = 64 - (bit_off + bit_size - byte_off * 8); break;
    case FieldRshiftU64: v.value = 64 - bit_size; break;
    default: return err("not a field relocation");
  }
  return v;
}

std::string describe(const struct btf* b, uint32_t type_id, uint32_t kind, const std::string& access, const Spec* s) {
  const struct btf_type* t = btfu::type(b, type_id);
  std::string what = t ? std::string(kind_word(t)) + name_of(b, t->name_off) : fmt::format("type {}", type_id);
  if (s && enum_based(kind)) what += "::" + s->enumerator;
  if (s && field_based(kind))
    for (size_t i = 1; i < s->steps.size(); ++i)
      what += s->steps[i].member ? "." + s->steps[i].name : fmt::format("[{}]", s->steps[i].idx);
  return fmt::format("{} [{}] {} ({})", kind_name(kind), type_id, what, access);
}

}  // namespace

const char* kind_name(uint32_t kind) {
  static const char* const names[] = {"byte_off",      "byte_sz",       "field_exists", "signed",
                                      "lshift_u64",    "rshift_u64",    "local_type_id", "target_type_id",
                                      "type_exists",   "type_size",     "enumval_exists", "enumval_value",
                                      "type_matches"};
  return kind < std::size(names) ? names[kind] : "unknown";
}

std::string essential_name(const std::string& n) {
  if (n.size() >= 5)
    for (size_t i = n.size() - 5 + 1; i-- > 0;)
      if (n[i] != '_' && n[i + 1] == '_' && n[i + 2] == '_' && n[i + 3] == '_' && n[i + 4] != '_') return n.substr(0, i + 1);
  return n;
}

TargetBtf::TargetBtf(BtfPtr b, std::string origin) : btf_(std::move(b)), origin_(std::move(origin)) {
  const uint32_t n = btf__type_cnt(btf_.get());
  for (uint32_t id = 1; id < n; ++id) {
    const struct btf_type* t = btf__type_by_id(btf_.get(), id);
    if (!t || !t->name_off) continue;
    std::string name = name_of(btf_.get(), t->name_off);
    if (!name.empty()) index_[essential_name(name)].push_back(id);
  }
}

const std::vector<uint32_t>& TargetBtf::by_essential_name(const std::string& name) const {
  static const std::vector<uint32_t> none;
  auto it = index_.find(name);
  return it == index_.end() ? none : it->second;
}

std::shared_ptr<const TargetBtf> synthetic_target() {
  static std::shared_ptr<const TargetBtf> cached = [] {
    struct btf* b = btf__new_empty();
    const int ulong = btf__add_int(b, "long unsigned int", 8, 0);
    const int slong = btf__add_int(b, "long int", 8, BTF_INT_SIGNED);
    const int u16 = btf__add_int(b, "short unsigned int", 2, 0);
    const int u8 = btf__add_int(b, "unsigned char", 1, 0);
    const int s32 = btf__add_int(b, "int", 4, BTF_INT_SIGNED);
    const int u64 = btf__add_int(b, "long long unsigned int", 8, 0);
    const int chr = btf__add_int(b, "char", 1, BTF_INT_CHAR);
    // struct pt_regs, x86-64 (what bpfvm's kprobe/uprobe contexts hold).
    static const char* const regs[] = {"r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax",
                                       "cx",  "dx",  "si",  "di",  "orig_ax", "ip", "cs", "flags", "sp", "ss"};
    btf__add_struct(b, "pt_regs", 21 * 8);
    for (size_t i = 0; i < std::size(regs); ++i) btf__add_field(b, regs[i], ulong, static_cast<uint32_t>(i * 64), 0);
    // Tracepoint records: the common header and the raw syscall events.
    const int entry = btf__add_struct(b, "trace_entry", 8);
    btf__add_field(b, "type", u16, 0, 0);
    btf__add_field(b, "flags", u8, 16, 0);
    btf__add_field(b, "preempt_count", u8, 24, 0);
    btf__add_field(b, "pid", s32, 32, 0);
    const int idx = btf__add_int(b, "__ARRAY_SIZE_TYPE__", 4, 0);
    const int args6 = btf__add_array(b, idx, ulong, 6);
    const int data0 = btf__add_array(b, idx, chr, 0);
    btf__add_struct(b, "trace_event_raw_sys_enter", 64);
    btf__add_field(b, "ent", entry, 0, 0);
    btf__add_field(b, "id", slong, 64, 0);
    btf__add_field(b, "args", args6, 128, 0);
    btf__add_field(b, "__data", data0, 512, 0);
    btf__add_struct(b, "trace_event_raw_sys_exit", 24);
    btf__add_field(b, "ent", entry, 0, 0);
    btf__add_field(b, "id", slong, 64, 0);
    btf__add_field(b, "ret", slong, 128, 0);
    btf__add_field(b, "__data", data0, 192, 0);
    const int args0 = btf__add_array(b, idx, u64, 0);
    btf__add_struct(b, "bpf_raw_tracepoint_args", 0);
    btf__add_field(b, "args", args0, 0, 0);
    // The members of struct task_struct and struct cred that bpf_get_current_task's synthetic task
    // fills (src/hooks/syscall/task_struct.hpp), for hosts without the kernel's BTF.
    const int u32 = btf__add_int(b, "unsigned int", 4, 0);
    const int kuid = btf__add_struct(b, nullptr, 4);
    btf__add_field(b, "val", u32, 0, 0);
    const int kuid_t = btf__add_typedef(b, "kuid_t", kuid);
    const int kgid = btf__add_struct(b, nullptr, 4);
    btf__add_field(b, "val", u32, 0, 0);
    const int kgid_t = btf__add_typedef(b, "kgid_t", kgid);
    const int cred = btf__add_struct(b, "cred", 40);
    btf__add_field(b, "usage", slong, 0, 0);
    static const char* const ids[] = {"uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid"};
    for (size_t i = 0; i < std::size(ids); ++i)
      btf__add_field(b, ids[i], i % 2 ? kgid_t : kuid_t, static_cast<uint32_t>(64 + 32 * i), 0);
    const int pid_t_ = btf__add_typedef(b, "pid_t", s32);
    const int comm16 = btf__add_array(b, idx, chr, 16);
    const int task_fwd = btf__add_fwd(b, "task_struct", BTF_FWD_STRUCT);
    const int task_ptr = btf__add_ptr(b, task_fwd);
    const int cred_const = btf__add_const(b, cred);
    const int cred_ptr = btf__add_ptr(b, cred_const);
    btf__add_struct(b, "task_struct", 96);
    btf__add_field(b, "pid", pid_t_, 0, 0);
    btf__add_field(b, "tgid", pid_t_, 32, 0);
    btf__add_field(b, "real_parent", task_ptr, 64, 0);
    btf__add_field(b, "parent", task_ptr, 128, 0);
    btf__add_field(b, "group_leader", task_ptr, 192, 0);
    btf__add_field(b, "start_time", u64, 256, 0);
    btf__add_field(b, "start_boottime", u64, 320, 0);
    btf__add_field(b, "real_cred", cred_ptr, 384, 0);
    btf__add_field(b, "cred", cred_ptr, 448, 0);
    btf__add_field(b, "comm", comm16, 512, 0);
    return std::make_shared<const TargetBtf>(BtfPtr(b), "bpfvm's synthetic contexts");
  }();
  return cached;
}

Result<std::shared_ptr<const TargetBtf>> target_for(const std::string& path) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<const TargetBtf>> cache;
  std::string file = path;
  if (file.empty()) {
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) return synthetic_target();
    file = "/sys/kernel/btf/vmlinux";
  }
  std::lock_guard<std::mutex> lk(mu);
  if (auto it = cache.find(file); it != cache.end()) return it->second;
  if (access(file.c_str(), R_OK) != 0)
    return make_error(ErrorCode::Io, fmt::format("target BTF {}: {}", file, std::strerror(errno)));
  libbpf_print_fn_t old = libbpf_set_print(nullptr);
  struct btf* b = btf__parse(file.c_str(), nullptr);
  libbpf_set_print(old);
  if (!b || libbpf_get_error(b)) {
    int e = b ? static_cast<int>(-libbpf_get_error(b)) : errno;
    return err(fmt::format("target BTF {}: not valid BTF (raw, or an ELF file with a .BTF section): {}", file,
                           std::strerror(e)));
  }
  auto t = std::make_shared<const TargetBtf>(BtfPtr(b), file);
  cache[file] = t;
  return t;
}

Result<Outcome> resolve(const struct btf* local, const TargetBtf& target, const Relo& r) {
  const std::string access = btfu::name(local, r.access_str_off);
  if (r.kind > TypeMatches) return err(fmt::format("CO-RE relocation of unknown kind {}", r.kind));
  auto ls = parse_local(local, r.type_id, access, r.kind);
  if (!ls) {
    Diagnostic d = ls.error();
    d.message = fmt::format("CO-RE relocation {} [{}] ({}): {}", kind_name(r.kind), r.type_id, access, d.message);
    return d;
  }
  Outcome o;
  o.description = describe(local, r.type_id, r.kind, access, &*ls);
  // Local value: what the compiler assumed.
  if (field_based(r.kind)) {
    auto v = field_value(*ls, r.kind);
    if (!v) return err(o.description + ": " + v.error().message);
    o.local_value = v->value;
    o.local_size = v->size;
  } else if (enum_based(r.kind)) {
    o.local_value = r.kind == EnumvalExists ? 1 : ls->enum_value;
  } else if (r.kind == TypeSize) {
    long long sz = btf__resolve_size(local, r.type_id);
    if (sz < 0) return err(o.description + ": local type size cannot be resolved");
    o.local_value = static_cast<uint64_t>(sz);
  } else if (r.kind == TypeIdLocal || r.kind == TypeIdTarget) {
    o.local_value = r.type_id;
  } else {
    o.local_value = 1;
  }
  if (r.kind == TypeIdLocal) {
    o.target_value = o.local_value;
    return o;
  }
  // Candidates: target types whose essential name and kind agree with the local root type.
  const struct btf_type* lt = btfu::type(local, r.type_id);
  std::string lname = name_of(local, lt->name_off);
  if (lname.empty()) return err(o.description + ": relocation against an anonymous type");
  const struct btf* tb = target.btf();
  bool matched = false;
  FieldValue first{};
  uint64_t value = 0;
  uint32_t matched_id = 0;
  size_t candidates = 0;
  for (uint32_t cand : target.by_essential_name(essential_name(lname))) {
    const struct btf_type* ct = btfu::type(tb, cand);
    if (!ct || !kinds_compatible(lt, ct)) continue;
    ++candidates;
    uint64_t v = 0;
    FieldValue fv{};
    if (field_based(r.kind)) {
      auto ts = match_field(*ls, tb, cand);
      if (!ts) continue;
      auto f = field_value(*ts, r.kind);
      if (!f) return err(o.description + ": target [" + std::to_string(cand) + "]: " + f.error().message);
      fv = *f;
      v = f->value;
    } else if (enum_based(r.kind)) {
      const struct btf_type* et = btfu::skip_mods(tb, cand);
      if (!is_any_enum(et)) continue;
      bool found = false;
      for (uint16_t i = 0; i < btf_vlen(et) && !found; ++i) {
        std::string en = name_of(tb, btf_is_enum(et) ? btf_enum(et)[i].name_off : btf_enum64(et)[i].name_off);
        if (en.empty() || essential_name(en) != essential_name(ls->enumerator)) continue;
        found = true;
        if (btf_is_enum(et))
          v = btf_kflag(et) ? static_cast<uint64_t>(static_cast<int64_t>(btf_enum(et)[i].val))
                            : static_cast<uint32_t>(btf_enum(et)[i].val);
        else
          v = btf_enum64_value(&btf_enum64(et)[i]);
      }
      if (!found) continue;
      if (r.kind == EnumvalExists) v = 1;
    } else {
      const bool ok = r.kind == TypeMatches ? types_match(local, r.type_id, tb, cand, false, 0)
                                            : types_compatible(local, r.type_id, tb, cand);
      if (!ok) continue;
      if (r.kind == TypeSize) {
        long long sz = btf__resolve_size(tb, cand);
        if (sz < 0) continue;
        v = static_cast<uint64_t>(sz);
      } else if (r.kind == TypeIdTarget) {
        v = cand;
      } else {
        v = 1;
      }
    }
    if (matched && (v != value || (r.kind == FieldByteOffset && fv.size != first.size)) && r.kind != TypeIdTarget)
      return err(fmt::format("{}: ambiguous: target types [{}] and [{}] both match with different results ({} and {})",
                             o.description, matched_id, cand, value, v));
    if (!matched) {
      matched = true;
      value = v;
      first = fv;
      matched_id = cand;
    }
  }
  if (!matched) {
    if (existence(r.kind)) {
      o.target_value = 0;
      return o;
    }
    o.poison = true;
    const std::string what = std::string(kind_word(lt)) + essential_name(lname);
    if (candidates == 0)
      o.reason = fmt::format("the target BTF ({}) has no {}", target.origin(), what);
    else if (field_based(r.kind))
      o.reason = fmt::format("no {} of the target BTF ({}) has this field with a compatible type", what, target.origin());
    else if (enum_based(r.kind))
      o.reason = fmt::format("no {} of the target BTF ({}) has this enumerator", what, target.origin());
    else
      o.reason = fmt::format("no {} of the target BTF ({}) has a compatible shape", what, target.origin());
    return o;
  }
  o.target_value = value;
  if (r.kind == FieldByteOffset) {
    o.target_size = first.size;
    if (o.local_size != o.target_size) {
      // Resizing a load is safe only for pointers and unsigned integers (no sign to extend).
      auto lv = field_value(*ls, r.kind);
      const struct btf_type* lft = lv ? btfu::type(local, lv->type_id) : nullptr;
      const struct btf_type* tft = btfu::type(tb, first.type_id);
      o.resize_ok = lft && tft &&
                    ((btf_is_ptr(lft) && btf_is_ptr(tft)) ||
                     (btf_is_int(lft) && btf_is_int(tft) && !(btf_int_encoding(lft) & BTF_INT_SIGNED) &&
                      !(btf_int_encoding(tft) & BTF_INT_SIGNED)));
    }
  }
  return o;
}

namespace {
int size_bytes(uint8_t code) {
  switch (code & 0x18) {
    case 0x00: return 4;   // BPF_W
    case 0x08: return 2;   // BPF_H
    case 0x10: return 1;   // BPF_B
    default: return 8;     // BPF_DW
  }
}
uint8_t size_code(uint32_t bytes) {
  switch (bytes) {
    case 1: return 0x10;
    case 2: return 0x08;
    case 4: return 0x00;
    case 8: return 0x18;
    default: return 0xff;
  }
}
void poison_one(RawInsn& in) {
  in = RawInsn{};
  in.code = 0x85;  // call
  in.imm = kCorePoisonHelper;
}
}  // namespace

Result<bool> patch(std::vector<RawInsn>& code, uint64_t slot, const Relo& r, const Outcome& o) {
  RawInsn& in = code[slot];
  const uint8_t cls = in.code & 0x07;
  auto bad = [&](const std::string& m) { return err(fmt::format("{}: insn {}: {}", o.description, slot, m)); };
  const bool lddw = in.code == 0x18;
  if (lddw && slot + 1 >= code.size()) return bad("lddw is truncated");
  if (o.poison || (!o.resize_ok && (cls == 1 || cls == 2 || cls == 3))) {
    if (lddw) poison_one(code[slot + 1]);
    poison_one(in);
    return true;
  }
  (void)r;
  if (cls == 4 || cls == 7) {  // ALU, ALU64
    if (in.code & 0x08) return bad("ALU instruction with a register source cannot be relocated");
    if (static_cast<uint32_t>(in.imm) != static_cast<uint32_t>(o.local_value))
      return bad(fmt::format("the instruction holds {}, not the local value {}", in.imm, o.local_value));
    in.imm = static_cast<int32_t>(o.target_value);
    return false;
  }
  if (cls == 1 || cls == 2 || cls == 3) {  // LDX, ST, STX
    const uint8_t mode = in.code & 0xe0;
    if (mode != 0x60 && mode != 0x80) return bad("only plain loads and stores can be relocated");
    if (static_cast<uint64_t>(static_cast<int64_t>(in.off)) != o.local_value)
      return bad(fmt::format("the instruction's offset is {}, not the local value {}", in.off, o.local_value));
    if (o.target_value > 32767) return bad(fmt::format("offset {} does not fit the instruction's 16 bits", o.target_value));
    in.off = static_cast<int16_t>(o.target_value);
    if (r.kind == FieldByteOffset && o.target_size && o.local_size != o.target_size) {
      if (size_bytes(in.code) != static_cast<int>(o.local_size))
        return bad(fmt::format("the access is {} bytes, the local field {}", size_bytes(in.code), o.local_size));
      uint8_t sc = size_code(o.target_size);
      if (sc == 0xff) return bad(fmt::format("the target field is {} bytes, no load has that size", o.target_size));
      in.code = static_cast<uint8_t>((in.code & ~0x18) | sc);
    }
    return false;
  }
  if (lddw) {
    const uint64_t cur = static_cast<uint32_t>(in.imm) | (static_cast<uint64_t>(static_cast<uint32_t>(code[slot + 1].imm)) << 32);
    if (cur != o.local_value) return bad(fmt::format("lddw holds {}, not the local value {}", cur, o.local_value));
    in.imm = static_cast<int32_t>(static_cast<uint32_t>(o.target_value));
    code[slot + 1].imm = static_cast<int32_t>(static_cast<uint32_t>(o.target_value >> 32));
    return false;
  }
  return bad(fmt::format("instruction 0x{:02x} cannot carry a CO-RE relocation", in.code));
}

}  // namespace bpfvm::core
