// Loading a program of a bpfvm Object into the real kernel as libbpf would (tests and benchmarks only):
// the object's maps created with bpf() (inner maps, initial global data, .rodata frozen, map BTF),
// the object's BTF loaded (BPF_BTF_LOAD) and given with the program's func_info and line_info, the
// pseudo lddw forms turned into the kernel's fd forms. Programs the running kernel does not offer
// (bpfvm/kernel_probe.hpp) are not loaded: `load.not_offered` says why.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "bpfvm/object.hpp"
#include "kernel/oracle.hpp"

namespace bpfvm::kernel {

struct ObjectLoadOptions {
  int log_level = 1;
  uint32_t type = 0;  // 0: the program's own type
  // Called for each map right after it is created (to fill it before the program runs).
  std::function<void(const ObjectMap& map, int fd)> fill;
  bool with_btf = true;  // give the object's BTF, func_info and line_info
  // Refuse (not_offered) a program the probe says the kernel cannot fully offer. Off: load it anyway
  // (for callers that decide themselves which refusals are the kernel's build and which its rules).
  bool check_offered = true;
  // BTF-typed programs (fentry, tp_btf, lsm, iter): the target's id in the kernel's vmlinux BTF.
  uint32_t attach_btf_id = 0;
};

struct ObjectLoad {
  std::string skip;             // non-empty: nothing was loaded (a map the kernel refused, ...)
  LoadResult load;              // the program's verdict (fd, err, log, not_offered)
  std::vector<Fd> maps;         // by Object::maps index
  std::vector<Fd> inner_maps;   // templates of map-in-map
  Fd btf;
  bool btf_given = false;       // the object's BTF was accepted by the kernel and given
  bool line_info_given = false;
  std::string btf_note;         // why BTF (or line info) was not given
  bool ran() const { return skip.empty() && load.not_offered.empty(); }
  bool accepted() const { return static_cast<bool>(load.fd); }
};

ObjectLoad load_object_program(const Object& obj, const ObjectProgram& prog, const ObjectLoadOptions& options = {});

}  // namespace bpfvm::kernel
