#include "kernel/object_load.hpp"

#include <bpf/btf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bpfvm/kernel_probe.hpp"

namespace bpfvm::kernel {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

std::string last_line(const std::string& log) {
  size_t end = log.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  size_t start = log.rfind('\n', end);
  return log.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
}

// The map as the kernel wants it: the numa flag only with a node, a size for the per-CPU rings of a
// perf event array and for a ring buffer when the object leaves them 0 (libbpf does the same).
Fd create_one(const MapSpec& s, int inner_fd, const MapBtf& btf, int* err) {
  uint32_t max_entries = s.max_entries;
  if (s.type == kMapPerfEventArray && max_entries == 0) max_entries = 64;
  if (s.type == kMapRingbuf && max_entries == 0) max_entries = 4096;
  uint32_t flags = s.flags & ~kMapFNumaNode;
  // A map-in-map's value is an inner map fd (4 bytes) whatever the object declares, as libbpf sets it.
  uint32_t value_size = (s.type == kMapArrayOfMaps || s.type == kMapHashOfMaps) ? 4 : s.value_size;
  return create_map(s.type, s.key_size, value_size, max_entries, flags, err, s.map_extra, inner_fd, btf);
}

// The object's BTF with the strings line_info refers to (file names and source lines), loaded.
struct BtfCopy {
  struct btf* btf = nullptr;
  ~BtfCopy() { btf__free(btf); }
};

// What libbpf fixes in an object's BTF before loading it: clang leaves the size of each DATASEC 0 (the
// ELF section's size is known only after assembly). A global data section gets its map's size; any
// other (".maps", "license") the end of its last variable.
void fix_datasecs(struct btf* b, const Object& obj) {
  uint32_t n = btf__type_cnt(b);
  for (uint32_t id = 1; id < n; ++id) {
    auto* t = const_cast<struct btf_type*>(btf__type_by_id(b, id));
    if (!t || !btf_is_datasec(t) || t->size != 0) continue;
    std::string name = btf__name_by_offset(b, t->name_off);
    uint32_t size = 0;
    for (const ObjectMap& m : obj.maps)
      if (m.is_global_data() && m.section == name) size = m.spec.value_size;
    struct btf_var_secinfo* vs = btf_var_secinfos(t);
    for (uint16_t i = 0; i < btf_vlen(t); ++i) {
      const struct btf_type* var = btf__type_by_id(b, vs[i].type);
      if (var && btf_is_var(var)) {
        if (const GlobalVar* g = obj.find_global(btf__name_by_offset(b, var->name_off)); g && g->size) {
          vs[i].offset = g->offset;
          vs[i].size = g->size;
        }
      }
    }
    // Variables whose offsets clang left 0 (BTF-defined maps in ".maps"; libbpf takes them from the
    // ELF symbols) are laid out one after another, 8-byte aligned: nothing refers to these offsets.
    bool overlap = false;
    for (uint16_t i = 1; i < btf_vlen(t); ++i) overlap = overlap || vs[i].offset < vs[i - 1].offset + vs[i - 1].size;
    uint32_t next = 0;
    for (uint16_t i = 0; i < btf_vlen(t); ++i) {
      if (overlap) {
        vs[i].offset = next;
        next = (vs[i].offset + vs[i].size + 7) & ~7u;
      }
      size = std::max(size, vs[i].offset + vs[i].size);
    }
    t->size = size;
  }
}

}  // namespace

ObjectLoad load_object_program(const Object& obj, const ObjectProgram& prog, const ObjectLoadOptions& options) {
  ObjectLoad out;
  if (!available()) {
    out.skip = unavailable_reason();
    return out;
  }
  const uint32_t type = options.type ? options.type : prog.type;

  // BTF first: maps may refer to it.
  BtfCopy copy;
  std::vector<KLineInfo> lines;
  if (options.with_btf && obj.btf_handle()) {
    uint32_t size = 0;
    const void* raw = btf__raw_data(static_cast<const struct btf*>(obj.btf_handle()), &size);
    copy.btf = raw ? btf__new(raw, size) : nullptr;
    if (copy.btf) {
      for (const SourceLine& l : prog.lines) {
        int file = btf__add_str(copy.btf, l.file.c_str());
        int text = btf__add_str(copy.btf, l.text.c_str());
        if (file < 0 || text < 0) {
          lines.clear();
          break;
        }
        lines.push_back(KLineInfo{l.insn, static_cast<uint32_t>(file), static_cast<uint32_t>(text),
                                  (l.line << 10) | (l.column & 0x3ff)});
      }
      fix_datasecs(copy.btf, obj);
      const void* data = btf__raw_data(copy.btf, &size);
      int err = 0;
      std::string log;
      if (data) out.btf = load_btf(data, size, &err, &log);
      if (!out.btf)
        out.btf_note = "the kernel refused the object's BTF: " + errno_text(err) + (log.empty() ? "" : ": " + last_line(log));
    }
  }

  for (const ObjectMap& m : obj.maps) {
    int inner_fd = -1;
    if (m.spec.inner) {
      int err = 0;
      Fd inner = create_one(*m.spec.inner, -1, MapBtf{}, &err);
      if (!inner) {
        out.skip = "the kernel refused the inner map of '" + m.spec.name + "': " + errno_text(err);
        return out;
      }
      inner_fd = inner.get();
      out.inner_maps.push_back(std::move(inner));
    }
    int err = 0;
    Fd fd;
    if (out.btf && (m.btf_key_type_id || m.btf_value_type_id))
      fd = create_one(m.spec, inner_fd, MapBtf{out.btf.get(), m.btf_key_type_id, m.btf_value_type_id}, &err);
    if (!fd) fd = create_one(m.spec, inner_fd, MapBtf{}, &err);
    if (!fd) {
      ProbeAnswer a = probe_map_type(m.spec.type);
      out.skip = a.offer == Offer::No
                     ? "the kernel does not offer map type " + std::to_string(m.spec.type) + " (map '" + m.spec.name + "')"
                     : "the kernel refused map '" + m.spec.name + "' (type " + std::to_string(m.spec.type) +
                           "): " + errno_text(err);
      return out;
    }
    if (m.is_global_data() && !m.data.empty()) {
      uint32_t zero = 0;
      if (map_update(fd.get(), &zero, m.data.data(), 0) != 0) {
        out.skip = "could not write the initial contents of '" + m.spec.name + "'";
        return out;
      }
    }
    if (m.frozen || m.origin == MapOrigin::Rodata) map_freeze(fd.get());
    if (options.fill) options.fill(m, fd.get());
    out.maps.push_back(std::move(fd));
  }

  std::vector<Insn> patched = prog.insns;
  for (Insn& in : patched) {
    if (in.op == Op::LDDW_MAP_IDX || in.op == Op::LDDW_MAP_VALUE_IDX) {
      uint32_t idx = static_cast<uint32_t>(in.imm);
      if (idx >= out.maps.size()) {
        out.skip = "an instruction refers to map index " + std::to_string(idx) + ", past the object's maps";
        return out;
      }
      if (in.op == Op::LDDW_MAP_IDX) {
        in.op = Op::LDDW_MAP_FD;
        in.src = 1;
        in.imm = out.maps[idx].get();
      } else {
        uint64_t off = static_cast<uint64_t>(in.imm) >> 32;
        in.op = Op::LDDW_MAP_VALUE_FD;
        in.src = 2;
        in.imm = static_cast<int64_t>((off << 32) | static_cast<uint32_t>(out.maps[idx].get()));
      }
    }
  }
  std::vector<RawInsn> raw = encode(patched);
  std::string why = options.check_offered ? not_offered_reason(raw, type, prog.expected_attach) : "";
  if (!why.empty()) {
    out.load.err = EOPNOTSUPP;
    out.load.not_offered = std::move(why);
    return out;
  }

  const std::string license = obj.license.empty() ? "GPL" : obj.license;
  LoadRequest req;
  req.insns = raw;
  req.prog_type = type;
  req.log_level = options.log_level;
  req.license = license.c_str();
  req.expected_attach_type = prog.expected_attach;
  req.attach_btf_id = options.attach_btf_id;
  if (prog.attach.sleepable) req.prog_flags = BPF_F_SLEEPABLE;  // ".s" sections, as libbpf loads them
  if (out.btf) {
    req.btf_fd = out.btf.get();
    for (const FuncInfo& f : prog.func_info) req.func_info.push_back(KFuncInfo{f.insn, f.btf_type_id});
    req.line_info = lines;
  }
  out.load = load(req);
  out.btf_given = req.btf_fd >= 0;
  out.line_info_given = out.btf_given && !req.line_info.empty();
  // Line info the kernel finds fault with (it wants an entry at every function's first instruction)
  // is dropped, as is BTF it cannot use with this program: the verdict is then about the code.
  auto about_btf = [&](const std::string& log) {
    return log.find("line_info") != std::string::npos || log.find("func_info") != std::string::npos ||
           log.find("BTF") != std::string::npos || log.find("btf") != std::string::npos;
  };
  if (!out.load.fd && out.line_info_given && about_btf(out.load.log)) {
    out.btf_note = "line_info dropped: " + out.load.log.substr(0, 200);
    req.line_info.clear();
    out.load = load(req);
    out.line_info_given = false;
  }
  return out;
}

}  // namespace bpfvm::kernel
