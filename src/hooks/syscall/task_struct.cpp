// Synthetic task_structs for bpf_get_current_task (task_struct.hpp).
#include "hooks/syscall/task_struct.hpp"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "loader/btf_util.hpp"

namespace bpfvm::syscall_hooks {

namespace {

struct Member {
  int64_t off = -1;  // bytes
  uint32_t size = 0;
};

// A member by name, looked for through anonymous struct / union members as C does.
Member find_member(const struct btf* b, uint32_t type_id, const char* name, int depth = 0) {
  const struct btf_type* t = btfu::skip_mods(b, type_id);
  if (!t || depth > 8 || !(btf_is_struct(t) || btf_is_union(t))) return {};
  const struct btf_member* m = btf_members(t);
  for (uint16_t i = 0; i < btf_vlen(t); ++i, ++m) {
    uint32_t bits = btf_member_bit_offset(t, i);
    if (bits % 8 || btf_member_bitfield_size(t, i)) continue;
    const char* mn = btf__name_by_offset(b, m->name_off);
    if (mn && *mn) {
      if (std::strcmp(mn, name) != 0) continue;
      __s64 sz = btf__resolve_size(b, m->type);
      if (sz <= 0) return {};
      return Member{bits / 8, static_cast<uint32_t>(sz)};
    }
    Member inner = find_member(b, m->type, name, depth + 1);
    if (inner.off >= 0) return Member{bits / 8 + inner.off, inner.size};
  }
  return {};
}

int64_t at(const struct btf* b, uint32_t id, const char* name, uint32_t size) {
  Member m = find_member(b, id, name);
  return m.off >= 0 && m.size == size ? m.off : -1;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// /proc/TID/status: the parent's tgid and the four uids / gids (real, effective, saved, fs).
struct ProcStatus {
  bool ok = false;
  uint32_t ppid = 0;
  uint32_t uid[4] = {}, gid[4] = {};
};
ProcStatus read_status(uint32_t tid) {
  ProcStatus s;
  std::istringstream in(read_text(fmt::format("/proc/{}/status", tid)));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "PPid:") {
      ls >> s.ppid;
      s.ok = true;
    } else if (key == "Uid:") {
      ls >> s.uid[0] >> s.uid[1] >> s.uid[2] >> s.uid[3];
    } else if (key == "Gid:") {
      ls >> s.gid[0] >> s.gid[1] >> s.gid[2] >> s.gid[3];
    }
  }
  return s;
}

// /proc/TID/stat's starttime (clock ticks after boot) in ns: the kernel's start_boottime at the
// tick's precision. 0 when unknown.
uint64_t start_boottime_ns(uint32_t tid) {
  std::string st = read_text(fmt::format("/proc/{}/stat", tid));
  size_t close = st.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(st.substr(close + 2));
  std::string field;
  // Fields after the name start at 3 (state); starttime is field 22.
  for (int i = 3; i < 22 && in >> field;) ++i;
  unsigned long long ticks = 0;
  if (!(in >> ticks)) return 0;
  long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? ticks * (1'000'000'000ull / static_cast<uint64_t>(hz)) : 0;
}

uint64_t clock_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<TaskLayout> task_layout(const struct btf* b, const std::string& origin) {
  TaskLayout l;
  l.origin = origin;
  int task = b ? btf__find_by_name_kind(b, "task_struct", BTF_KIND_STRUCT) : -1;
  if (task <= 0)
    return make_error(ErrorCode::Unsupported,
                      fmt::format("bpf_get_current_task lays out its task by the BTF {}, which has no struct "
                                  "task_struct (give the kernel's with --btf FILE)", origin));
  const auto id = static_cast<uint32_t>(task);
  l.task_size = static_cast<size_t>(btf__resolve_size(b, id));
  l.pid = at(b, id, "pid", 4);
  l.tgid = at(b, id, "tgid", 4);
  l.comm = at(b, id, "comm", 16);
  if (l.pid < 0 || l.tgid < 0 || l.comm < 0)
    return make_error(ErrorCode::Unsupported, fmt::format("the struct task_struct of the BTF {} has no 4-byte pid "
                                                          "and tgid or no 16-byte comm", origin));
  l.real_parent = at(b, id, "real_parent", 8);
  l.parent = at(b, id, "parent", 8);
  l.group_leader = at(b, id, "group_leader", 8);
  l.real_cred = at(b, id, "real_cred", 8);
  l.cred = at(b, id, "cred", 8);
  l.start_time = at(b, id, "start_time", 8);
  l.start_boottime = at(b, id, "start_boottime", 8);
  int cred = btf__find_by_name_kind(b, "cred", BTF_KIND_STRUCT);
  if (cred > 0) {
    l.cred_size = static_cast<size_t>(btf__resolve_size(b, static_cast<uint32_t>(cred)));
    const char* names[8] = {"uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid"};
    for (int i = 0; i < 8; ++i) l.ids[i] = at(b, static_cast<uint32_t>(cred), names[i], 4);
  }
  return l;
}

TaskStructs::Task& TaskStructs::slot(uint32_t tid) {
  auto& p = tasks_[tid];
  if (!p) {
    p = std::make_unique<Task>();
    p->mem.assign((layout_.task_size + 7) / 8, 0);
    p->cred.assign((std::max<size_t>(layout_.cred_size, 8) + 7) / 8, 0);
    auto a = reinterpret_cast<uint64_t>(p->mem.data()), c = reinterpret_cast<uint64_t>(p->cred.data());
    ranges_[a] = a + p->mem.size() * 8;
    ranges_[c] = c + p->cred.size() * 8;
  } else {
    std::fill(p->mem.begin(), p->mem.end(), 0);
    std::fill(p->cred.begin(), p->cred.end(), 0);
  }
  return *p;
}

void TaskStructs::put(Task& t, int64_t off, const void* v, size_t n) {
  if (off < 0 || static_cast<size_t>(off) + n > t.mem.size() * 8) return;
  std::memcpy(reinterpret_cast<uint8_t*>(t.mem.data()) + off, v, n);
}

bool TaskStructs::contains(uint64_t addr) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return false;
  --it;
  return addr < it->second;
}

namespace {

void fill_cred(const TaskLayout& l, std::vector<uint64_t>& cred, const ProcStatus& s) {
  auto* c = reinterpret_cast<uint8_t*>(cred.data());
  const uint32_t v[8] = {s.uid[0], s.gid[0], s.uid[2], s.gid[2], s.uid[1], s.gid[1], s.uid[3], s.gid[3]};
  for (int i = 0; i < 8; ++i)
    if (l.ids[i] >= 0 && static_cast<size_t>(l.ids[i]) + 4 <= cred.size() * 8) std::memcpy(c + l.ids[i], &v[i], 4);
}

}  // namespace

uint64_t TaskStructs::fill_other(uint32_t tid, int depth) {
  ProcStatus s = read_status(tid);
  if (!s.ok) return 0;  // gone, or not visible: a NULL pointer, which reads give -EFAULT
  Task& t = slot(tid);
  const auto self = reinterpret_cast<uint64_t>(t.mem.data());
  int32_t id = static_cast<int32_t>(tid);
  put(t, layout_.pid, &id, 4);
  put(t, layout_.tgid, &id, 4);
  char comm[16] = {};
  std::string name = read_text(fmt::format("/proc/{}/comm", tid));
  if (!name.empty() && name.back() == '\n') name.pop_back();
  std::memcpy(comm, name.data(), std::min<size_t>(name.size(), 15));
  put(t, layout_.comm, comm, 16);
  put(t, layout_.group_leader, &self, 8);
  fill_cred(layout_, t.cred, s);
  const auto cred = reinterpret_cast<uint64_t>(t.cred.data());
  put(t, layout_.real_cred, &cred, 8);
  put(t, layout_.cred, &cred, 8);
  uint64_t boot = start_boottime_ns(tid);
  // CLOCK_MONOTONIC leaves out the time suspended, CLOCK_BOOTTIME does not.
  const uint64_t now_mono = clock_ns(CLOCK_MONOTONIC), now_boot = clock_ns(CLOCK_BOOTTIME);
  const uint64_t suspended = now_boot > now_mono ? now_boot - now_mono : 0;
  uint64_t mono = boot > suspended ? boot - suspended : 0;
  put(t, layout_.start_boottime, &boot, 8);
  put(t, layout_.start_time, &mono, 8);
  // Its parent too, two generations up (BPF_CORE_READ(task, real_parent, real_parent, tgid)).
  if (depth < 2 && s.ppid != 0 && s.ppid != tid) {
    uint64_t parent = fill_other(s.ppid, depth + 1);
    put(t, layout_.real_parent, &parent, 8);
    put(t, layout_.parent, &parent, 8);
  }
  return self;
}

uint64_t TaskStructs::current(TracedTask& task, bool from_proc) {
  const uint32_t tid = task.tid(), tgid = task.tgid();
  // A bound on the memory kept for threads that have come and gone: start over (the addresses of
  // tasks then change).
  if (tasks_.size() > 4096) {
    tasks_.clear();
    ranges_.clear();
  }
  // The thread itself from /proc (ids, parent, start), then what the source knows better.
  uint64_t self = from_proc ? fill_other(tid, 0) : 0;
  if (!self) {
    Task& t = slot(tid);
    self = reinterpret_cast<uint64_t>(t.mem.data());
    if (!from_proc) {
      ProcStatus s;
      const uint64_t ug = task.uid_gid();
      for (int i = 0; i < 4; ++i) {
        s.uid[i] = static_cast<uint32_t>(ug);
        s.gid[i] = static_cast<uint32_t>(ug >> 32);
      }
      fill_cred(layout_, t.cred, s);
      const auto cred = reinterpret_cast<uint64_t>(t.cred.data());
      put(t, layout_.real_cred, &cred, 8);
      put(t, layout_.cred, &cred, 8);
    }
  }
  Task& t = *tasks_[tid];
  int32_t pid = static_cast<int32_t>(tid), tg = static_cast<int32_t>(tgid);
  put(t, layout_.pid, &pid, 4);
  put(t, layout_.tgid, &tg, 4);
  char comm[16] = {};
  task.comm(comm);
  comm[15] = 0;
  put(t, layout_.comm, comm, 16);
  uint64_t leader = tid == tgid ? self : from_proc ? fill_other(tgid, 1) : 0;
  put(t, layout_.group_leader, &leader, 8);
  return self;
}

}  // namespace bpfvm::syscall_hooks
