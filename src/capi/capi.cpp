// The C embedding API (include/bpfvm/bpfvm.h) over the C++ pipeline (runtime.hpp).
#include "bpfvm/bpfvm.h"

#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "bpfvm/map.hpp"
#include "bpfvm/runtime.hpp"

struct bpfvm_map {
  std::shared_ptr<bpfvm::Map> map;
  std::string name;
};

struct bpfvm_object {
  std::shared_ptr<const bpfvm::Object> object;
  std::shared_ptr<bpfvm::LoadedObject> live;
  std::vector<bpfvm_map> maps;  // same indices as Object::maps
};

struct bpfvm_program {
  std::shared_ptr<bpfvm::LoadedObject> live;  // keeps the maps alive while the program exists
  bpfvm::PreparedProgram prepared;
};

namespace {

void set_err(char* err, size_t len, const std::string& msg) {
  if (!err || len == 0) return;
  size_t n = std::min(len - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

bpfvm::PrepareOptions prepare_options(const bpfvm_load_opts* o, std::string* rejection) {
  bpfvm::PrepareOptions po;
  if (o) {
    po.verify = !o->no_verify;
    po.rules = o->trusted ? bpfvm::RuleSet::Privileged : bpfvm::RuleSet::Strict;
    po.engine = o->engine == BPFVM_ENGINE_JIT      ? bpfvm::EngineChoice::Jit
                : o->engine == BPFVM_ENGINE_INTERP ? bpfvm::EngineChoice::Interpreter
                                                   : bpfvm::EngineChoice::Auto;
    po.mem_size = o->mem_size;
  }
  po.rejection = rejection;
  return po;
}

// The error of a failed prepare: the full rejection text for a verifier rejection.
std::string prepare_error(const bpfvm::Diagnostic& d, const std::string& rejection) {
  if (d.code == bpfvm::ErrorCode::Verify && !rejection.empty()) {
    std::string r = rejection;
    while (!r.empty() && r.back() == '\n') r.pop_back();
    return r;
  }
  return d.to_string();
}

bpfvm_object* open_object(bpfvm::Result<bpfvm::Object> loaded, char* err, size_t err_len) {
  if (!loaded) {
    set_err(err, err_len, loaded.error().to_string());
    return nullptr;
  }
  auto live = bpfvm::instantiate(*loaded);
  if (!live) {
    set_err(err, err_len, live.error().to_string());
    return nullptr;
  }
  auto* o = new (std::nothrow) bpfvm_object;
  if (!o) {
    set_err(err, err_len, "out of memory");
    return nullptr;
  }
  o->live = std::make_shared<bpfvm::LoadedObject>(std::move(*live));
  o->object = o->live->object;
  for (size_t i = 0; i < o->live->maps.size(); ++i)
    o->maps.push_back(bpfvm_map{o->live->maps[i], o->object->maps[i].spec.name});
  return o;
}

// A prepared program as a C handle, or NULL with the error (the full text of a rejection).
bpfvm_program* wrap_program(bpfvm::Result<bpfvm::PreparedProgram> p, const std::string& rejection,
                            std::shared_ptr<bpfvm::LoadedObject> live, char* err, size_t err_len) {
  if (!p) {
    set_err(err, err_len, prepare_error(p.error(), rejection));
    return nullptr;
  }
  auto* out = new (std::nothrow) bpfvm_program;
  if (!out) {
    set_err(err, err_len, "out of memory");
    return nullptr;
  }
  out->live = std::move(live);
  out->prepared = std::move(*p);
  return out;
}

}  // namespace

extern "C" {

void bpfvm_load_opts_init(struct bpfvm_load_opts* opts) {
  if (!opts) return;
  *opts = bpfvm_load_opts{};
  opts->engine = BPFVM_ENGINE_AUTO;
  opts->mem_size = -1;
}

bpfvm_object* bpfvm_object_open(const char* path, char* err, size_t err_len) {
  if (!path) {
    set_err(err, err_len, "bpfvm_object_open: path is NULL");
    return nullptr;
  }
  return open_object(bpfvm::load_object_file(path), err, err_len);
}

bpfvm_object* bpfvm_object_open_mem(const void* elf, size_t size, char* err, size_t err_len) {
  if (!elf && size) {
    set_err(err, err_len, "bpfvm_object_open_mem: data is NULL");
    return nullptr;
  }
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(elf), size);
  return open_object(bpfvm::load_object(bytes), err, err_len);
}

void bpfvm_object_close(bpfvm_object* obj) { delete obj; }

size_t bpfvm_object_program_count(const bpfvm_object* obj) { return obj ? obj->object->programs.size() : 0; }

const char* bpfvm_object_program_name(const bpfvm_object* obj, size_t i) {
  if (!obj || i >= obj->object->programs.size()) return nullptr;
  return obj->object->programs[i].name.c_str();
}

const char* bpfvm_object_program_section(const bpfvm_object* obj, size_t i) {
  if (!obj || i >= obj->object->programs.size()) return nullptr;
  return obj->object->programs[i].section.c_str();
}

size_t bpfvm_object_map_count(const bpfvm_object* obj) { return obj ? obj->maps.size() : 0; }

bpfvm_map* bpfvm_object_map(bpfvm_object* obj, size_t i) {
  if (!obj || i >= obj->maps.size()) return nullptr;
  return &obj->maps[i];
}

bpfvm_map* bpfvm_object_find_map(bpfvm_object* obj, const char* name) {
  if (!obj || !name) return nullptr;
  for (auto& m : obj->maps)
    if (m.name == name) return &m;
  return nullptr;
}

bpfvm_program* bpfvm_object_load_program(bpfvm_object* obj, const char* name, const struct bpfvm_load_opts* opts,
                                         char* err, size_t err_len) {
  if (!obj) {
    set_err(err, err_len, "bpfvm_object_load_program: object is NULL");
    return nullptr;
  }
  const bpfvm::Object& o = *obj->object;
  const bpfvm::ObjectProgram* prog = nullptr;
  if (name) {
    prog = o.find_program(name);
    if (!prog) {
      std::string names;
      for (const auto& p : o.programs) names += (names.empty() ? "" : ", ") + p.name;
      set_err(err, err_len, fmt::format("no program '{}' in the object (it has: {})", name, names.empty() ? "none" : names));
      return nullptr;
    }
  } else if (o.programs.size() == 1) {
    prog = &o.programs[0];
  } else {
    set_err(err, err_len, fmt::format("the object has {} programs: name one", o.programs.size()));
    return nullptr;
  }
  const bpfvm::ProgTypeInfo* type = nullptr;
  if (opts && opts->prog_type) {
    type = bpfvm::find_prog_type(opts->prog_type);
    if (!type) {
      set_err(err, err_len, fmt::format("unknown program type '{}'", opts->prog_type));
      return nullptr;
    }
  }
  std::string rejection;
  auto p = bpfvm::prepare_program(*prog, *obj->live, type, prepare_options(opts, &rejection));
  return wrap_program(std::move(p), rejection, obj->live, err, err_len);
}

bpfvm_program* bpfvm_program_from_bytecode(const void* insns, size_t size, const struct bpfvm_load_opts* opts,
                                           char* err, size_t err_len) {
  if (!insns || size == 0 || size % 8 != 0) {
    set_err(err, err_len, fmt::format("bytecode of {} bytes: must be a non-empty multiple of 8", size));
    return nullptr;
  }
  std::vector<bpfvm::RawInsn> raw(size / 8);
  std::memcpy(raw.data(), insns, size);
  auto decoded = bpfvm::decode(raw);
  if (!decoded) {
    set_err(err, err_len, decoded.error().to_string());
    return nullptr;
  }
  const bpfvm::ProgTypeInfo* type = bpfvm::find_prog_type(opts && opts->prog_type ? opts->prog_type : "mem");
  if (!type) {
    set_err(err, err_len, fmt::format("unknown program type '{}'", opts->prog_type));
    return nullptr;
  }
  std::string rejection;
  auto p = bpfvm::prepare_program(bpfvm::Program{"bytecode", std::move(*decoded)}, *type,
                                  prepare_options(opts, &rejection));
  return wrap_program(std::move(p), rejection, nullptr, err, err_len);
}

void bpfvm_program_free(bpfvm_program* prog) { delete prog; }

int bpfvm_program_verified(const bpfvm_program* prog) { return prog && prog->prepared.verified ? 1 : 0; }

int bpfvm_program_jited(const bpfvm_program* prog) {
  return prog && prog->prepared.exe->options().engine == bpfvm::EngineKind::Jit ? 1 : 0;
}

int bpfvm_program_test_run(const bpfvm_program* prog, const void* data, size_t data_len, const void* ctx,
                           size_t ctx_len, uint64_t* retval, void* data_out, size_t* data_out_len, char* err,
                           size_t err_len) {
  if (!prog) {
    set_err(err, err_len, "bpfvm_program_test_run: program is NULL");
    return -1;
  }
  if ((!data && data_len) || (!ctx && ctx_len)) {
    set_err(err, err_len, "bpfvm_program_test_run: NULL buffer with a non-zero length");
    return -1;
  }
  std::span<const uint8_t> d(static_cast<const uint8_t*>(data), data_len);
  std::span<const uint8_t> c(static_cast<const uint8_t*>(ctx), ctx_len);
  auto r = bpfvm::test_run(prog->prepared, d, c);
  if (!r) {
    set_err(err, err_len, r.error().to_string());
    return -1;
  }
  if (retval) *retval = r->retval;
  if (data_out_len) {
    size_t n = std::min(*data_out_len, r->data_out.size());
    if (data_out && n) std::memcpy(data_out, r->data_out.data(), n);
    *data_out_len = data_out ? n : r->data_out.size();
  }
  return 0;
}

const char* bpfvm_map_name(const bpfvm_map* map) { return map ? map->name.c_str() : nullptr; }
uint32_t bpfvm_map_type(const bpfvm_map* map) { return map ? map->map->spec().type : 0; }
uint32_t bpfvm_map_key_size(const bpfvm_map* map) { return map ? map->map->spec().key_size : 0; }
uint32_t bpfvm_map_value_size(const bpfvm_map* map) { return map ? map->map->spec().value_size : 0; }
uint32_t bpfvm_map_max_entries(const bpfvm_map* map) { return map ? map->map->spec().max_entries : 0; }
size_t bpfvm_map_lookup_size(const bpfvm_map* map) { return map ? map->map->user_value_size() : 0; }

// The C++ maps return 0 or a negative errno already, as these functions do.
int bpfvm_map_lookup(bpfvm_map* map, const void* key, void* value) {
  if (!map || !value) return -22;  // -EINVAL
  return static_cast<int>(map->map->lookup_copy(key, value, 0));
}

int bpfvm_map_update(bpfvm_map* map, const void* key, const void* value, uint64_t flags) {
  if (!map || !value) return -22;
  return static_cast<int>(map->map->update_user(key, value, flags));
}

int bpfvm_map_delete(bpfvm_map* map, const void* key) {
  if (!map) return -22;
  return static_cast<int>(map->map->delete_user(key));
}

int bpfvm_map_freeze(bpfvm_map* map) {
  if (!map) return -22;
  map->map->freeze();
  return 0;
}

int bpfvm_map_frozen(const bpfvm_map* map) { return map && map->map->frozen() ? 1 : 0; }

int bpfvm_map_get_next_key(bpfvm_map* map, const void* key, void* next_key) {
  if (!map || !next_key) return -22;
  return static_cast<int>(map->map->get_next_key(key, next_key));
}


bpfvm_map* bpfvm_map_open_pinned(const char* path, char* err, size_t err_len) {
  if (!path) {
    set_err(err, err_len, "no path");
    return nullptr;
  }
  auto m = bpfvm::open_pinned_map(path);
  if (!m) {
    set_err(err, err_len, m.error().message);
    return nullptr;
  }
  return new (std::nothrow) bpfvm_map{*m, (*m)->spec().name};
}

bpfvm_map* bpfvm_map_create_pinned(const char* path, const char* name, uint32_t type, uint32_t key_size,
                                   uint32_t value_size, uint32_t max_entries, uint32_t flags, char* err,
                                   size_t err_len) {
  if (!path) {
    set_err(err, err_len, "no path");
    return nullptr;
  }
  bpfvm::MapSpec s;
  s.name = name ? name : "";
  s.type = type;
  s.key_size = key_size;
  s.value_size = value_size;
  s.max_entries = max_entries;
  s.flags = flags;
  auto m = bpfvm::create_pinned_map(s, path);
  if (!m) {
    set_err(err, err_len, m.error().message);
    return nullptr;
  }
  return new (std::nothrow) bpfvm_map{*m, s.name};
}

int bpfvm_map_pin(const bpfvm_map* map, const char* path, char* err, size_t err_len) {
  if (!map || !path) {
    set_err(err, err_len, "no map or path");
    return -1;
  }
  auto r = bpfvm::pin_map(*map->map, path);
  if (!r) {
    set_err(err, err_len, r.error().message);
    return -1;
  }
  return 0;
}

void bpfvm_map_close(bpfvm_map* map) { delete map; }

}  // extern "C"
