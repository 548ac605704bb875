// The real Linux kernel as an oracle (tests and benchmarks only): load a program with bpf(BPF_PROG_LOAD),
// run it with BPF_PROG_TEST_RUN, create maps. Everything reports "unavailable" cleanly when the
// kernel refuses (no CAP_BPF, no bpf() syscall), so callers can skip.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/kernel_probe.hpp"

namespace bpfvm::kernel {

// available() and unavailable_reason(): see bpfvm/kernel_probe.hpp.

// An fd that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct LoadResult {
  Fd fd;               // valid when the kernel accepted the program
  int err = 0;         // errno when it did not
  std::string log;     // verifier log (when requested)
  uint64_t verification_time_ns = 0;  // from the log's "verification time" line, when present
  // Set (and nothing loaded) when the probe (bpfvm/kernel_probe.hpp) says the running kernel does not offer the
  // program type or a helper the program calls: the kernel cannot judge this program here.
  std::string not_offered;
};

// bpf_func_info / bpf_line_info records (the kernel's uapi layout).
struct KFuncInfo {
  uint32_t insn_off = 0;
  uint32_t type_id = 0;
};
struct KLineInfo {
  uint32_t insn_off = 0;
  uint32_t file_name_off = 0;
  uint32_t line_off = 0;
  uint32_t line_col = 0;  // line << 10 | column
};

// Everything BPF_PROG_LOAD takes that the tests use.
struct LoadRequest {
  std::span<const RawInsn> insns;
  uint32_t prog_type = 0;
  int log_level = 0;
  size_t log_size = 0;  // 0: the default for the level (see load_program)
  const char* license = "GPL";
  uint32_t expected_attach_type = 0;
  uint32_t prog_flags = 0;
  uint32_t attach_btf_id = 0;  // BTF-typed programs: the target's type id in the kernel's vmlinux BTF
  int btf_fd = -1;  // with func_info / line_info
  std::vector<KFuncInfo> func_info;
  std::vector<KLineInfo> line_info;
};
// Loads exactly what is asked (no probe).
LoadResult load(const LoadRequest& req);
// Loads raw BTF (BPF_BTF_LOAD); on failure an invalid Fd, *err = errno and *log the kernel's log.
Fd load_btf(const void* data, size_t size, int* err = nullptr, std::string* log = nullptr);

// Loads raw instructions as `prog_type` (uapi number). log_level 0 = no log; 1/2 as the kernel's;
// 4 (BPF_LOG_STATS) adds statistics. `expected_attach_type` for types that need one. The log buffer is
// allocated only when a log is asked for (64 KiB for statistics, 1 MiB for a verifier log, grown when
// the kernel reports ENOSPC). Programs the running kernel does not offer are not loaded: the result
// has `not_offered` set (the probe of bpfvm/kernel_probe.hpp decides).
LoadResult load_program(std::span<const RawInsn> insns, uint32_t prog_type, int log_level = 0,
                        const char* license = "GPL", uint32_t expected_attach_type = 0);

struct TestRunResult {
  int err = 0;              // errno of BPF_PROG_TEST_RUN (0 = success)
  uint32_t retval = 0;
  uint32_t duration_ns = 0; // average per repetition, as the kernel reports it
  std::vector<uint8_t> data_out;
  std::vector<uint8_t> ctx_out;
};

TestRunResult test_run(int prog_fd, std::span<const uint8_t> data_in, std::span<const uint8_t> ctx_in = {},
                       uint32_t repeat = 1, size_t data_out_size = 0, size_t ctx_out_size = 0);

// Map commands. Return 0 or -errno.
Fd create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries, uint32_t flags = 0,
              int* err = nullptr, uint64_t map_extra = 0, int inner_map_fd = -1);
// With the map's BTF (spin locks, typed values), as libbpf creates BTF-defined maps.
struct MapBtf {
  int btf_fd = -1;
  uint32_t key_type_id = 0;
  uint32_t value_type_id = 0;
};
Fd create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries, uint32_t flags,
              int* err, uint64_t map_extra, int inner_map_fd, const MapBtf& btf);
int map_update(int fd, const void* key, const void* value, uint64_t flags);
int map_lookup(int fd, const void* key, void* value, uint64_t flags = 0);
int map_delete(int fd, const void* key);
int map_get_next_key(int fd, const void* key, void* next_key);
int map_lookup_and_delete(int fd, const void* key, void* value, uint64_t flags = 0);
int map_freeze(int fd);

}  // namespace bpfvm::kernel
