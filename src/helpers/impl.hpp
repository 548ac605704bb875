// Internal declarations shared by the helper implementation files.
#pragma once

#include <cstdint>

#include "bpfvm/helpers.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm {

namespace helpers {

// Registration tables of the implementation files: {id, fn} rows; per-type variants separately.
struct ImplRow {
  int32_t id;
  HelperFn fn;
};
struct TypedImplRow {
  int32_t id;
  uint32_t prog_type;  // 0 = the default for every type without a specific row
  HelperFn fn;
};

// Each implementation file exposes its rows (static registration without globals' init order issues).
void map_helper_rows(void (*add)(int32_t, HelperFn));
void misc_helper_rows(void (*add)(int32_t, HelperFn));
void string_helper_rows(void (*add)(int32_t, HelperFn));
void net_helper_rows(void (*add)(int32_t, HelperFn), void (*add_typed)(int32_t, uint32_t, HelperFn));
void task_helper_rows(void (*add)(int32_t, HelperFn));

// Programs running for a traced task (trace.hpp, current_traced_task()): task_helpers.cpp.
// Which memory a read means: the task's (bpf_probe_read_user), bpfvm's (bpf_probe_read_kernel: the
// synthetic kernel data), or by address (bpf_probe_read, %s: bpfvm's for the event's kernel data).
enum class TaskMem : uint8_t { User, Kernel, Either };
uint64_t task_pid_tgid(TracedTask& t);
uint64_t task_comm(TracedTask& t, char* out, uint64_t size);
long task_read(TracedTask& t, void* dst, uint64_t src, uint64_t size, TaskMem where);
long task_read_str(TracedTask& t, char* dst, uint64_t src, uint64_t size, TaskMem where);
// A string for %s / %pus / %pks: from the current traced task when there is one, else bpfvm's memory.
long read_str_for_current(char* dst, uint64_t src, size_t size, TaskMem where);

// Deterministic-mode aware sources (runtime.cpp).
uint64_t clock_ns(int clock_id);  // CLOCK_MONOTONIC, CLOCK_BOOTTIME, ...
uint32_t next_random_u32();
bool deterministic();
const DeterministicConfig& deterministic_config();
void printk_emit(std::string_view msg);

// Tells checked-mode execution that the program may access [p, p+size) (a test and nothing
// else in unchecked runs: RunContext::allow_region is inline).
inline void allow(const void* p, uint64_t size, bool writable, std::string_view name) {
  RunContext* ctx = current_run();
  if (ctx && p && size) ctx->allow_region(reinterpret_cast<uint64_t>(p), size, writable, name);
}

constexpr long kEPERM = 1, kENOENT = 2, kE2BIG = 7, kEFAULT = 14, kEBUSY = 16, kEEXIST = 17, kEINVAL = 22, kEACCES = 13,
               kENOSPC = 28, kERANGE = 34, kENOMEM = 12, kENOTSUPP = 524, kEOPNOTSUPP = 95;
inline uint64_t neg(long e) { return static_cast<uint64_t>(-e); }

}  // namespace helpers
}  // namespace bpfvm
