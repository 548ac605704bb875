#include "kernel/oracle.hpp"

#include "bpfvm/kernel_probe.hpp"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace bpfvm::kernel {
namespace {

long sys_bpf(int cmd, union bpf_attr* attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

uint64_t ptr(const void* p) { return reinterpret_cast<uint64_t>(p); }

std::string g_reason;
bool g_available = false;
std::once_flag g_probe;

void probe() {
  RawInsn prog[2];
  prog[0].code = 0xb7;  // r0 = 0
  prog[1].code = 0x95;  // exit
  LoadRequest req;
  req.insns = prog;
  req.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  LoadResult r = load(req);
  if (r.fd) {
    g_available = true;
  } else {
    g_reason = std::string("the kernel's bpf() is not usable here: ") + std::strerror(r.err);
  }
}

}  // namespace

bool available() {
  std::call_once(g_probe, probe);
  return g_available;
}

const std::string& unavailable_reason() {
  std::call_once(g_probe, probe);
  return g_reason;
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) close(fd_);
}

LoadResult load(const LoadRequest& req) {
  LoadResult res;
  // The log buffer is allocated only when a log is asked for, and not cleared (the kernel writes a
  // NUL-terminated string): statistics alone (level 4) fit in 64 KiB, a level 1/2 log starts at
  // 1 MiB. When the log does not fit the kernel refuses the load with ENOSPC: retry with a larger
  // buffer (up to 256 MiB).
  size_t log_size = req.log_level == 0 ? 0 : req.log_size ? req.log_size : (req.log_level & 3) ? (1u << 20) : (64u << 10);
  for (;;) {
    std::unique_ptr<char[]> log;
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.prog_type = req.prog_type;
    attr.insns = ptr(req.insns.data());
    attr.insn_cnt = static_cast<uint32_t>(req.insns.size());
    attr.license = ptr(req.license);
    attr.expected_attach_type = req.expected_attach_type;
    attr.attach_btf_id = req.attach_btf_id;  // in vmlinux (attach_btf_obj_fd 0)
    attr.prog_flags = req.prog_flags;
    if (req.btf_fd >= 0) {
      attr.prog_btf_fd = static_cast<uint32_t>(req.btf_fd);
      if (!req.func_info.empty()) {
        attr.func_info_rec_size = sizeof(KFuncInfo);
        attr.func_info = ptr(req.func_info.data());
        attr.func_info_cnt = static_cast<uint32_t>(req.func_info.size());
      }
      if (!req.line_info.empty()) {
        attr.line_info_rec_size = sizeof(KLineInfo);
        attr.line_info = ptr(req.line_info.data());
        attr.line_info_cnt = static_cast<uint32_t>(req.line_info.size());
      }
    }
    if (log_size) {
      log.reset(new char[log_size]);
      log[0] = 0;
      attr.log_level = static_cast<uint32_t>(req.log_level);
      attr.log_buf = ptr(log.get());
      attr.log_size = static_cast<uint32_t>(log_size);
    }
    long fd = sys_bpf(BPF_PROG_LOAD, &attr);
    int err = fd < 0 ? errno : 0;
    if (fd < 0 && err == ENOSPC && log_size && log_size < (256u << 20)) {
      log_size *= 8;
      continue;
    }
    if (fd < 0) {
      res.err = err;
    } else {
      res.fd = Fd(static_cast<int>(fd));
    }
    if (log_size) {
      log[log_size - 1] = 0;
      res.log = log.get();
      auto pos = res.log.find("verification time ");
      if (pos != std::string::npos) {
        // "verification time 123 usec"
        res.verification_time_ns = std::strtoull(res.log.c_str() + pos + 18, nullptr, 10) * 1000;
      }
    }
    return res;
  }
}

LoadResult load_program(std::span<const RawInsn> insns, uint32_t prog_type, int log_level, const char* license,
                        uint32_t expected_attach_type) {
  std::string why = not_offered_reason(insns, prog_type, expected_attach_type);
  if (!why.empty()) {
    LoadResult res;
    res.err = EOPNOTSUPP;
    res.not_offered = std::move(why);
    return res;
  }
  LoadRequest req;
  req.insns = insns;
  req.prog_type = prog_type;
  req.log_level = log_level;
  req.license = license;
  req.expected_attach_type = expected_attach_type;
  return load(req);
}

Fd load_btf(const void* data, size_t size, int* err, std::string* log_out) {
  std::vector<char> log(log_out ? (1u << 16) : 0);
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.btf = ptr(data);
  attr.btf_size = static_cast<uint32_t>(size);
  if (log_out) {
    attr.btf_log_buf = ptr(log.data());
    attr.btf_log_size = static_cast<uint32_t>(log.size());
    attr.btf_log_level = 1;
  }
  long fd = sys_bpf(BPF_BTF_LOAD, &attr);
  if (fd < 0) {
    if (err) *err = errno;
    if (log_out) {
      log.back() = 0;
      *log_out = log.data();
    }
    return Fd();
  }
  if (err) *err = 0;
  return Fd(static_cast<int>(fd));
}

TestRunResult test_run(int prog_fd, std::span<const uint8_t> data_in, std::span<const uint8_t> ctx_in,
                       uint32_t repeat, size_t data_out_size, size_t ctx_out_size) {
  TestRunResult res;
  res.data_out.assign(data_out_size, 0);
  res.ctx_out.assign(ctx_out_size, 0);
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.test.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.test.data_in = ptr(data_in.data());
  attr.test.data_size_in = static_cast<uint32_t>(data_in.size());
  if (data_out_size) {
    attr.test.data_out = ptr(res.data_out.data());
    attr.test.data_size_out = static_cast<uint32_t>(data_out_size);
  }
  if (!ctx_in.empty()) {
    attr.test.ctx_in = ptr(ctx_in.data());
    attr.test.ctx_size_in = static_cast<uint32_t>(ctx_in.size());
  }
  if (ctx_out_size) {
    attr.test.ctx_out = ptr(res.ctx_out.data());
    attr.test.ctx_size_out = static_cast<uint32_t>(ctx_out_size);
  }
  attr.test.repeat = repeat;
  if (sys_bpf(BPF_PROG_TEST_RUN, &attr) < 0) {
    res.err = errno;
    return res;
  }
  res.retval = attr.test.retval;
  res.duration_ns = attr.test.duration;
  res.data_out.resize(std::min<size_t>(data_out_size, attr.test.data_size_out));
  if (ctx_out_size) res.ctx_out.resize(std::min<size_t>(ctx_out_size, attr.test.ctx_size_out));
  return res;
}

Fd create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries, uint32_t flags, int* err,
              uint64_t map_extra, int inner_map_fd) {
  return create_map(type, key_size, value_size, max_entries, flags, err, map_extra, inner_map_fd, MapBtf{});
}

Fd create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries, uint32_t flags, int* err,
              uint64_t map_extra, int inner_map_fd, const MapBtf& btf) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_type = type;
  attr.key_size = key_size;
  attr.value_size = value_size;
  attr.max_entries = max_entries;
  attr.map_flags = flags;
  attr.map_extra = map_extra;
  if (inner_map_fd >= 0) attr.inner_map_fd = static_cast<uint32_t>(inner_map_fd);
  if (btf.btf_fd >= 0) {
    attr.btf_fd = static_cast<uint32_t>(btf.btf_fd);
    attr.btf_key_type_id = btf.key_type_id;
    attr.btf_value_type_id = btf.value_type_id;
  }
  long fd = sys_bpf(BPF_MAP_CREATE, &attr);
  if (fd < 0) {
    if (err) *err = errno;
    return Fd();
  }
  if (err) *err = 0;
  return Fd(static_cast<int>(fd));
}

namespace {
int map_elem_cmd(int cmd, int fd, const void* key, const void* value_or_next, uint64_t flags, bool next = false) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_fd = static_cast<uint32_t>(fd);
  attr.key = ptr(key);
  if (next)
    attr.next_key = ptr(value_or_next);
  else
    attr.value = ptr(value_or_next);
  attr.flags = flags;
  return sys_bpf(cmd, &attr) < 0 ? -errno : 0;
}
}  // namespace

int map_update(int fd, const void* key, const void* value, uint64_t flags) {
  return map_elem_cmd(BPF_MAP_UPDATE_ELEM, fd, key, value, flags);
}
int map_lookup(int fd, const void* key, void* value, uint64_t flags) {
  return map_elem_cmd(BPF_MAP_LOOKUP_ELEM, fd, key, value, flags);
}
int map_delete(int fd, const void* key) { return map_elem_cmd(BPF_MAP_DELETE_ELEM, fd, key, nullptr, 0); }
int map_get_next_key(int fd, const void* key, void* next_key) {
  return map_elem_cmd(BPF_MAP_GET_NEXT_KEY, fd, key, next_key, 0, true);
}
int map_lookup_and_delete(int fd, const void* key, void* value, uint64_t flags) {
  return map_elem_cmd(BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value, flags);
}
int map_freeze(int fd) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_fd = static_cast<uint32_t>(fd);
  return sys_bpf(BPF_MAP_FREEZE, &attr) < 0 ? -errno : 0;
}

}  // namespace bpfvm::kernel
