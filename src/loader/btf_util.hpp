// Small helpers over libbpf's BTF API (btf__type_by_id & co): bounded walks, no trust in the input.
#pragma once

#include <bpf/btf.h>

#include <cstdint>
#include <string>

namespace bpfvm::btfu {

// The type with this id, or nullptr (id 0 is void: nullptr too).
inline const struct btf_type* type(const struct btf* b, uint32_t id) {
  if (!b || id == 0) return nullptr;
  return btf__type_by_id(b, id);
}

// Follows typedef / const / volatile / restrict / type_tag. Returns the resolved id (0 for void
// or a cycle / bad id) and the type.
inline const struct btf_type* skip_mods(const struct btf* b, uint32_t id, uint32_t* out_id = nullptr) {
  for (int depth = 0; depth < 64; ++depth) {
    const struct btf_type* t = type(b, id);
    if (!t) break;
    if (btf_is_mod(t) || btf_is_typedef(t)) {
      id = t->type;
      continue;
    }
    if (out_id) *out_id = id;
    return t;
  }
  if (out_id) *out_id = 0;
  return nullptr;
}

inline std::string name(const struct btf* b, uint32_t name_off) {
  if (!b) return {};
  const char* s = btf__name_by_offset(b, name_off);
  return s ? std::string(s) : std::string();
}

// "struct foo", "__u32", "int *" ... for messages and listings.
std::string type_name(const struct btf* b, uint32_t id, int depth = 0);

}  // namespace bpfvm::btfu
