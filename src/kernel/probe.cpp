#include "bpfvm/kernel_probe.hpp"

#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include <bpf/btf.h>

#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/progtype.hpp"
#include "kernel/oracle.hpp"

namespace bpfvm::kernel {
namespace {

std::mutex g_mu;
std::map<std::pair<uint32_t, uint32_t>, ProbeAnswer> g_types;                  // (type, attach)
std::map<uint32_t, ProbeAnswer> g_maps;                                         // map type
std::map<std::tuple<uint32_t, uint32_t, int32_t>, ProbeAnswer> g_helpers;       // (type, attach, id)
std::set<std::pair<uint32_t, int32_t>> g_hidden;                                // (type or 0, helper)
bool g_env_read = false;
constexpr int kEnotsupp = 524;  // the kernel's internal ENOTSUPP, which bpf() can return

// Parses "TYPE:HELPER,HELPER,..." into (type or 0, helper id) pairs; false with *why on a bad item.
bool parse_hide(const std::string& spec, std::vector<std::pair<uint32_t, int32_t>>& items, std::string* why) {
  size_t s = 0;
  while (s <= spec.size()) {
    size_t e = spec.find(',', s);
    if (e == std::string::npos) e = spec.size();
    std::string item = spec.substr(s, e - s);
    s = e + 1;
    if (item.empty()) continue;
    uint32_t type = 0;
    std::string helper = item;
    if (auto colon = item.find(':'); colon != std::string::npos) {
      const ProgTypeInfo* t = find_prog_type(std::string_view(item).substr(0, colon));
      if (!t) {
        if (why) *why = "unknown program type in '" + item + "'";
        return false;
      }
      type = t->type;
      helper = item.substr(colon + 1);
    }
    int32_t id = kernel_helper_id(helper);
    if (id < 0) {
      char* end = nullptr;
      long v = std::strtol(helper.c_str(), &end, 0);
      if (!helper.empty() && end && *end == 0 && v > 0 && v <= kMaxKernelHelperId) id = static_cast<int32_t>(v);
    }
    if (id <= 0) {
      if (why) *why = "unknown helper in '" + item + "'";
      return false;
    }
    items.emplace_back(type, id);
  }
  return true;
}

void read_env_locked() {
  if (g_env_read) return;
  g_env_read = true;
  const char* env = std::getenv("BPFVM_KERNEL_HIDE");
  if (!env || !*env) return;
  std::vector<std::pair<uint32_t, int32_t>> items;
  std::string why;
  if (!parse_hide(env, items, &why)) {
    // A test switch given wrongly must not silently compare everything.
    std::fprintf(stderr, "bpfvm: BPFVM_KERNEL_HIDE: %s\n", why.c_str());
    std::abort();
  }
  for (auto& it : items) g_hidden.insert(it);
}

bool hidden_locked(uint32_t type, int32_t id) {
  read_env_locked();
  return g_hidden.count({0, id}) || g_hidden.count({type, id});
}

// The attach type a program type needs at load time when the caller gives none.
uint32_t default_attach(uint32_t type) {
  switch (type) {
    case BPF_PROG_TYPE_CGROUP_SOCK_ADDR: return BPF_CGROUP_INET4_CONNECT;
    case BPF_PROG_TYPE_CGROUP_SOCKOPT: return BPF_CGROUP_GETSOCKOPT;
    case BPF_PROG_TYPE_SK_LOOKUP: return BPF_SK_LOOKUP;
    default: return 0;
  }
}

// Types that the kernel loads only with a BTF attach target (a kernel function or struct_ops member).
bool needs_btf_target(uint32_t type) {
  return type == BPF_PROG_TYPE_TRACING || type == BPF_PROG_TYPE_EXT || type == BPF_PROG_TYPE_LSM ||
         type == BPF_PROG_TYPE_STRUCT_OPS;
}

std::string last_log_line(const std::string& log) {
  size_t end = log.size();
  while (end > 0) {
    size_t start = log.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = log.substr(start, end - start);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (!line.empty() && line.rfind("processed ", 0) != 0 && line.rfind("verification time", 0) != 0 &&
        line.rfind("stack depth", 0) != 0)
      return line;
    end = start == 0 ? 0 : start - 1;
  }
  return "";
}

LoadResult load_small(std::span<const RawInsn> insns, uint32_t type, uint32_t attach) {
  LoadRequest req;
  req.insns = insns;
  req.prog_type = type;
  req.expected_attach_type = attach;
  req.log_level = 1;
  req.log_size = 1u << 14;
  if (type == BPF_PROG_TYPE_SYSCALL) req.prog_flags = BPF_F_SLEEPABLE;  // syscall programs must be
  return load(req);
}

ProbeAnswer do_probe_type(uint32_t type, uint32_t attach) {
  ProbeAnswer a;
  if (!available()) {
    a.detail = unavailable_reason();
    return a;
  }
  if (needs_btf_target(type)) {
    a.detail = "loads only with a BTF attach target (not probed)";
    return a;
  }
  RawInsn prog[2];
  prog[0].code = 0xb7;  // r0 = 0
  prog[1].code = 0x95;  // exit
  LoadResult r = load_small(prog, type, attach);
  if (r.fd) {
    a.offer = Offer::Yes;
    return a;
  }
  std::string line = last_log_line(r.log);
  if (r.err == EINVAL && line.empty()) {
    // The kernel refuses an unknown or compiled-out program type before verification, with no log.
    a.offer = Offer::No;
    a.detail = "the kernel does not know this program type (EINVAL)";
  } else if (r.err == EPERM) {
    a.detail = std::string("not allowed to ask: ") + std::strerror(r.err);
  } else {
    a.detail = line.empty() ? std::strerror(r.err) : line;
  }
  return a;
}

ProbeAnswer do_probe_helper(uint32_t type, int32_t id, uint32_t attach) {
  ProbeAnswer a;
  ProbeAnswer t = probe_prog_type(type, attach);
  if (t.offer != Offer::Yes) {
    a.offer = t.offer == Offer::No ? Offer::No : Offer::Unknown;
    a.detail = "program type: " + t.detail;
    return a;
  }
  // call id; r0 = 0; exit. The kernel looks the helper up for the type before it checks the
  // arguments, so any later complaint (an uninitialised argument register) means it is offered.
  RawInsn prog[3];
  prog[0].code = 0x85;
  prog[0].imm = id;
  prog[1].code = 0xb7;
  prog[2].code = 0x95;
  LoadResult r = load_small(prog, type, attach);
  if (r.fd) {
    a.offer = Offer::Yes;
    return a;
  }
  std::string line = last_log_line(r.log);
  if (line.find("cannot use helper") != std::string::npos || line.find("invalid func ") != std::string::npos ||
      line.find("unknown func ") != std::string::npos) {
    a.offer = Offer::No;
    a.detail = line;
  } else if (r.err == EPERM || line.empty()) {
    // No privilege, or a refusal before verification: the answer says nothing about the helper.
    a.detail = std::string("the kernel did not verify the probe: ") + std::strerror(r.err);
  } else {
    // A later complaint of the verifier (EACCES/EINVAL with a log): the helper itself was accepted.
    a.offer = Offer::Yes;
  }
  return a;
}

// A BTF blob with `int` (id 1) and `struct probe_val { int v; }` (id 2), for local-storage maps.
Fd storage_btf() {
  struct btf* b = btf__new_empty();
  if (!b) return Fd();
  int int_id = btf__add_int(b, "int", 4, BTF_INT_SIGNED);
  int sid = btf__add_struct(b, "probe_val", 4);
  btf__add_field(b, "v", int_id, 0, 0);
  (void)sid;
  uint32_t size = 0;
  const void* raw = btf__raw_data(b, &size);
  Fd fd = raw ? load_btf(raw, size) : Fd();
  btf__free(b);
  return fd;
}

ProbeAnswer do_probe_map(uint32_t type) {
  ProbeAnswer a;
  if (!available()) {
    a.detail = unavailable_reason();
    return a;
  }
  uint32_t key = 4, value = 4, entries = 1, flags = 0;
  uint64_t extra = 0;
  Fd inner, btf;
  MapBtf mb;
  switch (type) {
    case BPF_MAP_TYPE_LPM_TRIE: key = 8; value = 8; flags = BPF_F_NO_PREALLOC; break;
    case BPF_MAP_TYPE_STACK_TRACE: value = 8; break;
    case BPF_MAP_TYPE_QUEUE: case BPF_MAP_TYPE_STACK: case BPF_MAP_TYPE_BLOOM_FILTER: key = 0; break;
    case BPF_MAP_TYPE_RINGBUF: case BPF_MAP_TYPE_USER_RINGBUF:
      key = 0; value = 0; entries = static_cast<uint32_t>(sysconf(_SC_PAGESIZE)); break;
    case BPF_MAP_TYPE_CGROUP_STORAGE: case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
      key = sizeof(struct bpf_cgroup_storage_key); entries = 0; break;
    case BPF_MAP_TYPE_ARRAY_OF_MAPS: case BPF_MAP_TYPE_HASH_OF_MAPS:
      inner = create_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1);
      if (!inner) {
        a.detail = "could not create the inner array map";
        return a;
      }
      break;
    case BPF_MAP_TYPE_SK_STORAGE: case BPF_MAP_TYPE_INODE_STORAGE: case BPF_MAP_TYPE_TASK_STORAGE:
    case 32:  // BPF_MAP_TYPE_CGRP_STORAGE (not in Debian 12's uapi header)
      btf = storage_btf();
      if (!btf) {
        a.detail = "could not load the BTF these maps need";
        return a;
      }
      mb = MapBtf{btf.get(), 1, 2};
      entries = 0;
      flags = BPF_F_NO_PREALLOC;
      break;
    case BPF_MAP_TYPE_STRUCT_OPS:
      a.detail = "needs a kernel struct_ops type (not probed)";
      return a;
    case 33:  // BPF_MAP_TYPE_ARENA (not in Debian 12's uapi header)
      key = 0; value = 0; entries = 1; flags = 1u << 10;  // BPF_F_MMAPABLE
      break;
    default: break;
  }
  int err = 0;
  Fd fd = create_map(type, key, value, entries, flags, &err, extra, inner ? inner.get() : -1, mb);
  if (fd) {
    a.offer = Offer::Yes;
  } else if (err == EINVAL || err == EOPNOTSUPP || err == kEnotsupp) {
    a.offer = Offer::No;
    a.detail = std::string("map creation refused: ") + std::strerror(err);
  } else {
    a.detail = std::string("map creation failed: ") + std::strerror(err);
  }
  return a;
}

}  // namespace

const char* offer_name(Offer o) {
  switch (o) {
    case Offer::Yes: return "yes";
    case Offer::No: return "no";
    default: return "unknown";
  }
}

ProbeAnswer probe_prog_type(uint32_t prog_type, uint32_t expected_attach) {
  uint32_t attach = expected_attach ? expected_attach : default_attach(prog_type);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_types.find({prog_type, attach});
    if (it != g_types.end()) return it->second;
  }
  ProbeAnswer a = do_probe_type(prog_type, attach);
  std::lock_guard<std::mutex> lk(g_mu);
  return g_types.emplace(std::make_pair(prog_type, attach), a).first->second;
}

ProbeAnswer probe_map_type(uint32_t map_type) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_maps.find(map_type);
    if (it != g_maps.end()) return it->second;
  }
  ProbeAnswer a = do_probe_map(map_type);
  std::lock_guard<std::mutex> lk(g_mu);
  return g_maps.emplace(map_type, a).first->second;
}

ProbeAnswer probe_helper(uint32_t prog_type, int32_t helper_id, uint32_t expected_attach) {
  uint32_t attach = expected_attach ? expected_attach : default_attach(prog_type);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (hidden_locked(prog_type, helper_id)) {
      const HelperProto* p = kernel_helper_proto(helper_id);
      return ProbeAnswer{Offer::No, std::string("hidden from the probe (BPFVM_KERNEL_HIDE): ") +
                                        (p ? std::string(p->name) : "helper #" + std::to_string(helper_id))};
    }
    auto it = g_helpers.find({prog_type, attach, helper_id});
    if (it != g_helpers.end()) return it->second;
  }
  ProbeAnswer a = do_probe_helper(prog_type, helper_id, attach);
  std::lock_guard<std::mutex> lk(g_mu);
  return g_helpers.emplace(std::make_tuple(prog_type, attach, helper_id), a).first->second;
}

namespace {
std::string type_label(uint32_t type) {
  const ProgTypeInfo* t = find_prog_type(type);
  return t ? std::string(t->name) : "type " + std::to_string(type);
}

template <typename CallIds>
std::string reason_for(uint32_t prog_type, uint32_t attach, const CallIds& ids) {
  if (!available()) return "";
  ProbeAnswer t = probe_prog_type(prog_type, attach);
  if (t.offer == Offer::No) return "the kernel does not offer program type " + type_label(prog_type);
  for (int32_t id : ids) {
    ProbeAnswer h = probe_helper(prog_type, id, attach);
    if (h.offer == Offer::No) {
      const HelperProto* p = kernel_helper_proto(id);
      std::string name = p ? std::string(p->name) + "#" + std::to_string(id) : "helper #" + std::to_string(id);
      return "the kernel does not offer " + name + " to " + type_label(prog_type) + " programs (" + h.detail + ")";
    }
  }
  return "";
}
}  // namespace

std::string not_offered_reason(std::span<const RawInsn> insns, uint32_t prog_type, uint32_t expected_attach) {
  std::set<int32_t> ids;
  for (size_t i = 0; i < insns.size(); ++i) {
    const RawInsn& in = insns[i];
    if (in.code == 0x18) {  // lddw: skip its second slot
      ++i;
      continue;
    }
    if (in.code == 0x85 && in.src == 0) ids.insert(in.imm);
  }
  return reason_for(prog_type, expected_attach, ids);
}

std::string not_offered_reason(std::span<const Insn> insns, uint32_t prog_type, uint32_t expected_attach) {
  std::set<int32_t> ids;
  for (const Insn& in : insns)
    if (in.op == Op::CALL_HELPER) ids.insert(static_cast<int32_t>(in.imm));
  return reason_for(prog_type, expected_attach, ids);
}

void hide_helper(uint32_t prog_type, int32_t helper_id) {
  std::lock_guard<std::mutex> lk(g_mu);
  read_env_locked();
  g_hidden.insert({prog_type, helper_id});
}

void unhide_all() {
  std::lock_guard<std::mutex> lk(g_mu);
  g_env_read = true;
  g_hidden.clear();
}

bool hide_from_spec(const std::string& spec, std::string* why) {
  std::vector<std::pair<uint32_t, int32_t>> items;
  if (!parse_hide(spec, items, why)) return false;
  for (auto [t, id] : items) hide_helper(t, id);
  return true;
}

}  // namespace bpfvm::kernel
