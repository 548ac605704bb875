// Shared by the verifier tests and bench/bench_verify.cpp: the sample corpus, and loading a program
// into the real kernel verifier (maps created in the kernel, their fds patched into lddw).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <bpf/btf.h>

#include "bpfvm/helpers.hpp"
#include "bpfvm/kernel_probe.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/verifier.hpp"
#include "kernel/object_load.hpp"
#include "kernel/oracle.hpp"

namespace bpfvm::vtest {

// A program of the corpus, with the type it is verified as.
struct CorpusProgram {
  std::string file;  // path relative to the corpus root (e.g. "samples/build/nullmapref.o")
  std::shared_ptr<Object> object;
  ObjectProgram program;
};

// Programs whose section gives no type are verified as this one (.text-only and "test" samples).
inline constexpr uint32_t kFallbackType = kProgKprobe;

// Every program of every object under `dirs` (recursively, *.o) that loads.
inline std::vector<CorpusProgram> load_corpus(const std::vector<std::filesystem::path>& dirs,
                                              const std::filesystem::path& base) {
  std::vector<CorpusProgram> out;
  for (const auto& d : dirs) {
    if (!std::filesystem::exists(d)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(d))
      if (e.is_regular_file() && e.path().extension() == ".o") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      LoadOptions lo;
      lo.default_type = kFallbackType;
      auto obj = load_object_file(f.string(), lo);
      if (!obj) continue;
      auto shared = std::make_shared<Object>(std::move(*obj));
      for (const auto& p : shared->programs) {
        if (!p.ok()) continue;  // failed to load (its error is the loader's business)
        CorpusProgram cp;
        cp.file = std::filesystem::relative(f, base).string();
        cp.object = shared;
        cp.program = p;
        // An assumed type (iproute2 objects: sched_cls) is a guess about how the object is attached;
        // the corpus keeps judging such programs as before, under the fallback type.
        if (cp.program.type == 0 || cp.program.type_assumed) cp.program.type = kFallbackType;
        out.push_back(std::move(cp));
      }
    }
  }
  return out;
}

struct KernelVerdict {
  bool ran = false;        // false: could not be judged (kernel unavailable, map creation refused)
  std::string skip;        // why not
  bool accepted = false;
  int err = 0;
  std::string log;
  uint64_t time_ns = 0;    // BPF_LOG_STATS verification time
};

// A kernel load's result (kernel::load or kernel::load_program) as the verdict v.
template <class LoadResult>
KernelVerdict verdict_of(KernelVerdict& v, LoadResult& r) {
  v.ran = true;
  v.accepted = static_cast<bool>(r.fd);
  v.err = r.err;
  v.log = std::move(r.log);
  v.time_ns = r.verification_time_ns;
  return v;
}

inline bool create_kernel_map(const MapSpec& s, kernel::Fd& out, std::string& why, std::vector<kernel::Fd>& keep) {
  int inner_fd = -1;
  if (s.inner) {
    kernel::Fd inner;
    if (!create_kernel_map(*s.inner, inner, why, keep)) return false;
    inner_fd = inner.get();
    keep.push_back(std::move(inner));
  }
  uint32_t max_entries = s.max_entries;
  if (s.type == kMapPerfEventArray && max_entries == 0) max_entries = 64;
  if (s.type == kMapRingbuf && max_entries == 0) max_entries = 4096;
  uint32_t flags = s.flags & ~(kMapFNumaNode);
  int err = 0;
  kernel::Fd fd = kernel::create_map(s.type, s.key_size, s.value_size, max_entries, flags, &err, s.map_extra, inner_fd);
  if (!fd) {
    why = "kernel refused map '" + s.name + "' (type " + std::to_string(s.type) + "): errno " + std::to_string(err);
    return false;
  }
  out = std::move(fd);
  return true;
}

// Loads `insns` (pseudo lddw forms with map indices) as `type` into the kernel.
inline KernelVerdict kernel_verify(std::span<const Insn> insns, uint32_t type, const std::vector<MapSpec>& maps,
                                   const std::vector<std::vector<uint8_t>>& map_data, const std::vector<bool>& freeze,
                                   int log_level = 0, uint32_t expected_attach = 0, const char* license = "GPL") {
  KernelVerdict v;
  if (!kernel::available()) {
    v.skip = kernel::unavailable_reason();
    return v;
  }
  std::vector<kernel::Fd> keep;
  std::vector<int> fds;
  for (size_t i = 0; i < maps.size(); ++i) {
    kernel::Fd fd;
    if (!create_kernel_map(maps[i], fd, v.skip, keep)) return v;
    if (i < map_data.size() && !map_data[i].empty()) {
      uint32_t key = 0;
      kernel::map_update(fd.get(), &key, map_data[i].data(), 0);
    }
    if (i < freeze.size() && freeze[i]) kernel::map_freeze(fd.get());
    fds.push_back(fd.get());
    keep.push_back(std::move(fd));
  }
  std::vector<Insn> patched(insns.begin(), insns.end());
  for (Insn& in : patched) {
    if (in.op == Op::LDDW_MAP_IDX) {
      uint32_t idx = static_cast<uint32_t>(in.imm);
      if (idx >= fds.size()) { v.skip = "map index out of range"; return v; }
      in.op = Op::LDDW_MAP_FD;
      in.src = 1;
      in.imm = fds[idx];
    } else if (in.op == Op::LDDW_MAP_VALUE_IDX) {
      uint32_t idx = static_cast<uint32_t>(in.imm);
      uint64_t off = static_cast<uint64_t>(in.imm) >> 32;
      if (idx >= fds.size()) { v.skip = "map index out of range"; return v; }
      in.op = Op::LDDW_MAP_VALUE_FD;
      in.src = 2;
      in.imm = static_cast<int64_t>((off << 32) | static_cast<uint32_t>(fds[idx]));
    }
  }
  auto raw = encode(patched);
  // With bpf-to-bpf calls or callbacks, the kernel wants BTF func_info for every function (callbacks
  // are refused without it: "missing btf func_info"): one static `int f(void)` per function.
  std::vector<int64_t> starts{0};
  for (size_t i = 0; i < insns.size(); ++i)
    if (insns[i].op == Op::CALL_LOCAL || insns[i].op == Op::LDDW_CODE_ADDR)
      starts.push_back(static_cast<int64_t>(i) + 1 + insns[i].imm);
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  if (starts.size() > 1 && starts.front() == 0) {
    if (std::string why = kernel::not_offered_reason(raw, type, expected_attach); !why.empty()) {
      v.skip = why;
      return v;
    }
    std::unique_ptr<struct btf, void (*)(struct btf*)> btf(btf__new_empty(), btf__free);
    const int int_id = btf__add_int(btf.get(), "int", 4, BTF_INT_SIGNED);
    const int proto = btf__add_func_proto(btf.get(), int_id);
    kernel::LoadRequest req;
    for (size_t f = 0; f < starts.size(); ++f) {
      const int id = btf__add_func(btf.get(), ("f" + std::to_string(f)).c_str(), BTF_FUNC_STATIC, proto);
      req.func_info.push_back(kernel::KFuncInfo{static_cast<uint32_t>(starts[f]), static_cast<uint32_t>(id)});
    }
    uint32_t size = 0;
    const void* data = btf__raw_data(btf.get(), &size);
    int err = 0;
    kernel::Fd btf_fd = kernel::load_btf(data, size, &err);
    if (!btf_fd) {
      v.skip = "the kernel refused a minimal BTF: errno " + std::to_string(err);
      return v;
    }
    req.insns = raw;
    req.prog_type = type;
    req.log_level = log_level;
    req.license = license;
    req.expected_attach_type = expected_attach;
    req.btf_fd = btf_fd.get();
    auto r = kernel::load(req);
    return verdict_of(v, r);
  }
  auto r = kernel::load_program(raw, type, log_level, license, expected_attach);
  if (!r.not_offered.empty()) {
    v.skip = r.not_offered;
    return v;
  }
  return verdict_of(v, r);
}

// Loads one program of an object into the kernel as libbpf would (maps, BTF, func_info, line_info).
// check_offered false: load even what the probe says the kernel does not offer (the caller decided).
// BTF-typed programs (fentry, tp_btf, lsm, iter): the target's id in the kernel's vmlinux BTF, after a
// probe that the kernel loads a trivial program (r0 = 0; exit) of this type at this target. 0 and
// `why` set when it cannot (no kernel BTF, a target this kernel does not attach to).
inline uint32_t kernel_attach_btf_id(const Object& obj, const ObjectProgram& p, std::string* why) {
  VerifyOptions vo = verify_options_for(obj, p);
  if (!vo.attach_btf) {
    *why = "no BTF attach target: " + vo.attach_error;
    return 0;
  }
  if (vo.attach_btf->origin != "/sys/kernel/btf/vmlinux") {
    *why = "the attach target is not in the kernel's BTF (" + vo.attach_btf->origin + ")";
    return 0;
  }
  RawInsn trivial[2]{};
  trivial[0].code = 0xb7;  // r0 = 0
  trivial[1].code = 0x95;  // exit
  kernel::LoadRequest req;
  req.insns = trivial;
  req.prog_type = p.type;
  req.expected_attach_type = p.expected_attach;
  req.attach_btf_id = vo.attach_btf->btf_id;
  req.log_level = 1;
  req.log_size = 1u << 14;
  kernel::LoadResult r = kernel::load(req);
  if (!r.fd) {
    std::string log = r.log;
    while (!log.empty() && (log.back() == '\n' || log.back() == '\0')) log.pop_back();
    *why = "the kernel does not load " + p.section + " programs (" +
           (log.empty() ? std::string(std::strerror(r.err)) : log.substr(log.rfind('\n') == std::string::npos ? 0 : log.rfind('\n') + 1)) + ")";
    return 0;
  }
  return vo.attach_btf->btf_id;
}

inline KernelVerdict kernel_verify_object(const Object& obj, const ObjectProgram& p, int log_level = 0,
                                          bool check_offered = true) {
  KernelVerdict v;
  kernel::ObjectLoadOptions o;
  o.log_level = log_level;
  o.check_offered = check_offered;
  if (needs_attach_btf(p.type, p.expected_attach)) {
    if (!kernel::available()) {
      v.skip = kernel::unavailable_reason();
      return v;
    }
    o.attach_btf_id = kernel_attach_btf_id(obj, p, &v.skip);
    if (!o.attach_btf_id) return v;
    o.check_offered = false;  // the probe above asked the kernel
  }
  auto r = kernel::load_object_program(obj, p, o);
  if (!r.skip.empty()) {
    v.skip = r.skip;
    return v;
  }
  if (!r.load.not_offered.empty()) {
    v.skip = r.load.not_offered;
    return v;
  }
  v.ran = true;
  v.accepted = r.accepted();
  v.err = r.load.err;
  v.log = std::move(r.load.log);
  v.time_ns = r.load.verification_time_ns;
  return v;
}

// Why the kernel cannot judge `p` as bpfvm's rules would: the kernel's build does not offer the program
// type, or a helper that bpfvm's table allows to the type (a helper neither allows is a rule both
// apply, and the verdicts are compared). "" when the kernel can judge it.
inline std::string kernel_build_difference(const ObjectProgram& p, uint32_t type) {
  auto t = kernel::probe_prog_type(type, p.expected_attach);
  if (t.offer == kernel::Offer::No) return "the kernel does not offer program type " + prog_type_name(type);
  const ProgTypeInfo* info = find_prog_type(type);
  for (const Insn& in : p.insns) {
    if (in.op != Op::CALL_HELPER) continue;
    int32_t id = static_cast<int32_t>(in.imm);
    if (!info || !info->allows_helper(id)) continue;
    auto h = kernel::probe_helper(type, id, p.expected_attach);
    if (h.offer == kernel::Offer::No) {
      const HelperProto* proto = kernel_helper_proto(id);
      return "the kernel does not offer " + (proto ? std::string(proto->name) : "helper") + "#" + std::to_string(id) +
             " to " + prog_type_name(type) + " programs (" + h.detail + ")";
    }
  }
  return "";
}

// The last non-empty line of a kernel verifier log before the statistics: its error message.
inline std::string kernel_error_line(const std::string& log) {
  std::vector<std::string> lines;
  size_t s = 0;
  while (s < log.size()) {
    size_t e = log.find('\n', s);
    if (e == std::string::npos) e = log.size();
    std::string l = log.substr(s, e - s);
    if (!l.empty() && l.rfind("processed ", 0) != 0 && l.rfind("verification time", 0) != 0 &&
        l.rfind("stack depth", 0) != 0)
      lines.push_back(l);
    s = e + 1;
  }
  return lines.empty() ? "" : lines.back();
}

}  // namespace bpfvm::vtest
