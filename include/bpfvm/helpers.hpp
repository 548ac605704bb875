// bpfvm: helper functions. One prototype table for every helper the kernel defines (ids 1..211:
// Linux 6.1's __BPF_FUNC_MAPPER plus 6.2's cgrp_storage_get/delete), read by the verifier (argument
// and return types), the loader (which helpers a program type may call) and the runtime
// (implementations). Embedders add their own helpers to a HelperSet.
//
// Run-time conventions (shared with the loader and the engines):
//  - a map argument (ARG_CONST_MAP_PTR) holds a `bpfvm::Map*` (the loader relocates map lddw's so);
//  - the context argument (ARG_PTR_TO_CTX) is the program type's *native* context (progtype.hpp);
//  - a BPF_PSEUDO_FUNC ld_imm64 (callback) holds the callback's instruction index, which the helper
//    hands to RunContext::call_function;
//  - bpf_tail_call returns the `const Executable*` to continue in (HelperDef::tail_call), 0 to fall
//    through; ProgArrayMap stores `const Executable*` handles.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// ---- prototypes: the kernel's enum bpf_arg_type / bpf_return_type --------------------------------

enum class ArgType : uint8_t {
  None,                 // ARG_DONTCARE: unused (or unchecked varargs, as bpf_trace_printk's r3..r5)
  Anything,             // ARG_ANYTHING: any initialised value
  ConstMapPtr,          // ARG_CONST_MAP_PTR
  MapKey,               // ARG_PTR_TO_MAP_KEY: key_size readable bytes
  MapValue,             // ARG_PTR_TO_MAP_VALUE: value_size bytes (kUninit: writable, may be uninit)
  Mem,                  // ARG_PTR_TO_MEM: size in the next argument (or `size` when kFixedSize)
  ConstSize,            // ARG_CONST_SIZE: > 0
  ConstSizeOrZero,      // ARG_CONST_SIZE_OR_ZERO
  Ctx,                  // ARG_PTR_TO_CTX
  SpinLock,             // ARG_PTR_TO_SPIN_LOCK
  SockCommon,           // ARG_PTR_TO_SOCK_COMMON
  Int,                  // ARG_PTR_TO_INT (4 writable bytes)
  Long,                 // ARG_PTR_TO_LONG (8 writable bytes)
  Socket,               // ARG_PTR_TO_SOCKET
  BtfId,                // ARG_PTR_TO_BTF_ID (a kernel object)
  RingbufMem,           // ARG_PTR_TO_RINGBUF_MEM (ARG_PTR_TO_ALLOC_MEM | MEM_RINGBUF): a reserved record
  ConstAllocSizeOrZero, // ARG_CONST_ALLOC_SIZE_OR_ZERO: size of memory the helper returns
  BtfIdSockCommon,      // ARG_PTR_TO_BTF_ID_SOCK_COMMON
  PercpuBtfId,          // ARG_PTR_TO_PERCPU_BTF_ID
  Func,                 // ARG_PTR_TO_FUNC: a callback (BPF_PSEUDO_FUNC ld_imm64)
  Stack,                // ARG_PTR_TO_STACK
  ConstStr,             // ARG_PTR_TO_CONST_STR: NUL-terminated string in read-only map memory
  Timer,                // ARG_PTR_TO_TIMER
  Kptr,                 // ARG_PTR_TO_KPTR
  Dynptr,               // ARG_PTR_TO_DYNPTR
};

// Type modifiers (the kernel's bpf_type_flag bits that prototypes use).
enum ArgFlag : uint8_t {
  kArgMaybeNull = 1,   // PTR_MAYBE_NULL: NULL (scalar 0) also accepted
  kArgReadOnly = 2,    // MEM_RDONLY: the helper only reads the memory
  kArgUninit = 4,      // MEM_UNINIT: the helper writes the memory; it need not be initialised
  kArgFixedSize = 8,   // MEM_FIXED_SIZE: size is HelperArg::size, no size argument follows
  kArgRelease = 16,    // OBJ_RELEASE: the helper releases a reference (ringbuf record, socket)
};

struct HelperArg {
  ArgType type = ArgType::None;
  uint8_t flags = 0;
  uint16_t size = 0;  // kArgFixedSize: bytes
  // BtfId: the kernel struct the pointer must point to ("task_struct"; the kernel's arg_btf_id),
  // checked where the program's kernel objects are typed (BTF-typed contexts); nullptr: any.
  const char* btf_struct = nullptr;
  constexpr bool is(ArgType t) const { return type == t; }
};

enum class RetType : uint8_t {
  Integer,     // RET_INTEGER
  Void,        // RET_VOID
  MapValue,    // RET_PTR_TO_MAP_VALUE (value_size bytes of the map in argument 1)
  Socket,      // RET_PTR_TO_SOCKET
  TcpSock,     // RET_PTR_TO_TCP_SOCK
  SockCommon,  // RET_PTR_TO_SOCK_COMMON
  AllocMem,    // RET_PTR_TO_ALLOC_MEM (with kRetRingbuf: RET_PTR_TO_RINGBUF_MEM; size = the
               // ARG_CONST_ALLOC_SIZE_OR_ZERO argument)
  MemOrBtfId,  // RET_PTR_TO_MEM_OR_BTF_ID
  BtfId,       // RET_PTR_TO_BTF_ID
  DynptrMem,   // RET_PTR_TO_DYNPTR_MEM
};
enum RetFlag : uint8_t {
  kRetMaybeNull = 1,  // PTR_MAYBE_NULL: the program must test for NULL before use
  kRetReadOnly = 2,   // MEM_RDONLY
  kRetRingbuf = 4,    // MEM_RINGBUF: a ringbuf record that must be submitted or discarded
  kRetAcquire = 8,    // the result is a reference that must be released (sockets, ringbuf records)
  kRetTrusted = 16,   // BtfId: PTR_TRUSTED (a valid object for the whole program: the current task)
};

// Properties of the helper as a whole.
enum HelperFlag : uint16_t {
  kHelperGplOnly = 1,          // gpl_only: refused for programs whose license is not GPL-compatible
  kHelperChangesPktData = 2,   // bpf_helper_changes_pkt_data(): invalidates packet pointers
  kHelperCallsBack = 4,        // calls a BPF function of the program (loop, for_each_map_elem, ...)
  kHelperSleepable = 8,        // might sleep (sleepable programs only in the kernel)
  kHelperTailCall = 16,        // bpf_tail_call
  kHelperPktAccess = 32,       // pkt_access: packet pointers accepted for memory arguments
};

// Who the kernel gives a helper to (bpf_base_func_proto and the program types' func_proto). The
// strict rule set (verifier.hpp) allows Unprivileged and ProgType helpers only: the others read or
// act on memory and state outside the program's context and maps (in bpfvm: the host process's).
enum class HelperPriv : uint8_t {
  Unprivileged,  // any program, no capability (bpf_base_func_proto's first tier: maps, ringbuf, ...)
  ProgType,      // a program type's own helper (packet, socket, cgroup): given to whoever may load
                 // the type, unprivileged socket_filter / cgroup_skb included
  CapBpf,        // bpf_base_func_proto's CAP_BPF tier (spin locks, timers, per-CPU pointers, dynptrs)
  CapPerfmon,    // bpf_base_func_proto's CAP_PERFMON tier (probe_read_kernel/user, trace_printk, ...)
  Tracing,       // offered only to tracing program types, which need CAP_PERFMON / CAP_SYS_ADMIN
};
// "CAP_BPF" or "CAP_PERFMON": the capability the kernel asks for (for Tracing, the one its program
// types need; "" for the first two tiers).
const char* helper_priv_capability(HelperPriv p);
constexpr bool helper_priv_unprivileged(HelperPriv p) {
  return p == HelperPriv::Unprivileged || p == HelperPriv::ProgType;
}

struct HelperProto {
  int32_t id = 0;
  std::string_view name;  // "bpf_map_lookup_elem"
  RetType ret = RetType::Integer;
  uint8_t ret_flags = 0;
  std::array<HelperArg, 5> args{};
  uint16_t flags = 0;
  // Embedder helpers: Unprivileged unless the embedder says otherwise (it decides what it exposes).
  HelperPriv priv = HelperPriv::Unprivileged;
  // RetType::BtfId: the kernel struct the result points to (typed where the program's kernel objects
  // are: BTF-typed contexts); nullptr: an opaque kernel object.
  const char* ret_btf_struct = nullptr;

  // Number of arguments the prototype declares (trailing ArgType::None excluded).
  int nargs() const;
  bool gpl_only() const { return flags & kHelperGplOnly; }
  bool changes_pkt_data() const { return flags & kHelperChangesPktData; }
};

// The kernel's names for types, for messages: "ARG_PTR_TO_MEM | MEM_RDONLY", "RET_PTR_TO_MAP_VALUE_OR_NULL".
std::string arg_type_name(const HelperArg& arg);
std::string ret_type_name(RetType ret, uint8_t ret_flags);
// "long bpf_map_update_elem(ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY, ARG_PTR_TO_MAP_VALUE, ARG_ANYTHING)"
std::string format_proto(const HelperProto& proto);

constexpr int32_t kMaxKernelHelperId = 211;
// The kernel's table: ids 1..211 (index = id; entry 0 is bpf_unspec, invalid).
std::span<const HelperProto> kernel_helper_protos();
// nullptr for ids outside 1..211.
const HelperProto* kernel_helper_proto(int32_t id);
// Accepts "bpf_map_lookup_elem" or "map_lookup_elem"; -1 if unknown.
int32_t kernel_helper_id(std::string_view name);
// bpfvm's implementation of a kernel helper, nullptr when bpfvm does not implement it.
HelperFn builtin_helper_impl(int32_t id);
// The implementation of kernel helper `id` for programs of `prog_type` (some helpers behave per
// type, as in the kernel: bpf_redirect for XDP returns XDP_REDIRECT, for tc TC_ACT_REDIRECT).
// nullptr when bpfvm does not implement it for that type.
HelperFn helper_impl_for(int32_t id, uint32_t prog_type);

// ---- a set of helpers: the kernel table plus embedder helpers ------------------------------------

struct HelperDesc {
  HelperProto proto;         // proto.name: the static kernel name, or a view of `name_storage`
  std::shared_ptr<const std::string> name_storage;  // embedder helpers' names
  HelperFn fn = nullptr;     // nullptr: known (verifier can check calls) but not provided at run time
  // Program types (uapi numbers, progtype.hpp) that may call it. Empty: decided by the program
  // type's own allowed-helper list (kernel helpers); for embedder helpers empty means "every type".
  std::vector<uint32_t> prog_types;
  bool embedder = false;
};

class HelperSet {
 public:
  // The kernel's helpers with bpfvm's implementations.
  HelperSet();
  static const HelperSet& kernel();  // shared default instance (immutable)

  // Registers an embedder helper (or replaces the implementation of a kernel helper with the same
  // id). Ids must be > 0; embedder helpers should use ids outside 1..211 (e.g. >= 10000) unless they
  // deliberately override a kernel helper. `proto.id`/`proto.name` are set from id/name.
  Status add(int32_t id, std::string name, HelperProto proto, HelperFn fn,
             std::vector<uint32_t> prog_types = {});

  const HelperDesc* find(int32_t id) const;
  const HelperDesc* find(std::string_view name) const;  // with or without "bpf_" prefix
  std::string_view name_of(int32_t id) const;

  // May a program of this type call helper `id`, and does bpfvm provide it?
  bool allowed(uint32_t prog_type, int32_t id) const;   // the kernel (or the embedder) allows it
  bool provided(uint32_t prog_type, int32_t id) const;  // allowed and implemented

  // The engine's table for a program type: every provided helper.
  HelperTable table_for(uint32_t prog_type) const;

  // Load-time check: every helper call in `insns` is known, allowed for the type and implemented.
  // The error names the instruction and the helper:
  // "program uses helper bpf_xyz (id N), which bpfvm does not provide for xdp programs".
  // gpl_compatible = false (the object's license is not GPL-compatible): gpl_only helpers are refused
  // as the kernel refuses them ("cannot call GPL-restricted function from non-GPL compatible program").
  Status check_program(std::span<const Insn> insns, uint32_t prog_type, bool gpl_compatible = true) const;

  const std::vector<HelperDesc>& all() const { return descs_; }

 private:
  std::vector<HelperDesc> descs_;  // sorted by id
  HelperDesc* find_mut(int32_t id);
};

// The kernel's license_is_gpl_compatible: "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
// "Dual MIT/GPL", "Dual MPL/GPL".
bool license_is_gpl_compatible(std::string_view license);

// ---- run-time configuration -----------------------------------------------------------------------

// Deterministic mode: reproducible runs for tests. Affects ktime_* / jiffies64 (a clock that starts
// at `clock_start_ns` and advances `clock_step_ns` on every read), get_prandom_u32 (a fixed-seed
// generator per thread, reset by set_deterministic), get_smp_processor_id / per-CPU maps (fixed CPU
// count via set_possible_cpus), get_current_pid_tgid / uid_gid / comm (fixed values).
struct DeterministicConfig {
  uint64_t seed = 1;
  uint64_t clock_start_ns = 1'000'000'000;
  uint64_t clock_step_ns = 1'000;
  int cpus = 1;
  uint32_t pid = 1000, tgid = 1000, uid = 0, gid = 0;
  std::string comm = "bpfvm";
};
void set_deterministic(const DeterministicConfig& config);
void clear_deterministic();
bool deterministic_mode();
// Resets this thread's random generator and the clock to the configured start (tests).
void reset_deterministic_state();

// bpf_trace_printk / bpf_trace_vprintk output. Default: each message to stderr, as the kernel's
// trace_pipe shows it ("<comm>-<pid> [cpu] bpf_trace_printk: <msg>" is not imitated: just the text).
using PrintkSink = std::function<void(std::string_view message)>;
void set_printk_sink(PrintkSink sink);  // empty function: back to stderr

// A helper that calls back into the program (bpf_loop, bpf_for_each_map_elem) may see the callback
// fail (memory fault in checked mode, budget). It stops, returns -EFAULT to the program and records
// the diagnostic here; the engine should check it after a helper call with kHelperCallsBack and fail
// the run with it. take_helper_fault() clears it.
std::optional<Diagnostic> take_helper_fault();
void set_helper_fault(Diagnostic d);

// Formats like bpf_snprintf / bpf_trace_printk (%d %i %u %x %X %ld %lu %lx %lld %llu %llx %p %pK %s %c
// %%, width/flags for numbers): args are the raw u64 values. %s reads strings with a safe copy.
// Returns the formatted text, or a negative errno (-EINVAL for a bad format) in *err.
std::string bpf_format(std::string_view fmt, std::span<const uint64_t> args, long* err);

// Safe copy of host memory that may be unmapped: returns 0 or -EFAULT (never faults).
long safe_read(void* dst, const void* src, size_t len);
// Safe NUL-terminated copy of at most size bytes (including the NUL). Returns the length copied
// including the NUL, or -EFAULT. Like the kernel's strncpy_from_*_nofault.
long safe_read_str(char* dst, const void* src, size_t size);

}  // namespace bpfvm
