// bpfvm: tracing processes at the system-call boundary with the programs written for the kernel.
//
//   attach layer   a target spec in libbpf's section syntax ("tracepoint/syscalls/sys_enter_openat",
//                  "ksyscall/unlinkat", "raw_tp/sys_enter", ...) -> one AttachPoint: which event fires
//                  the program, the context layout it gets (a row of the program-type table) and what
//                  the program may do there (bpf_override_return).
//   SyscallHooks   the programs of an object attached to their points, with their maps; an event source
//                  reports each system call of a task (entry and exit) and SyscallHooks builds the
//                  contexts, runs the programs and drains ring buffers / perf buffers to a sink.
//   event sources  ptrace (run_ptrace: a command and everything it starts, or a running process), and
//                  the agent inside the process (src/agent/syscalls.cpp: SIGSYS or rewritten syscall
//                  sites): both call the same SyscallHooks::enter/exit with a TracedTask that answers
//                  the current-task helpers for the task.
//
// Everything is x86-64: the syscall numbers, the tracepoint records and struct pt_regs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/runtime.hpp"

namespace bpfvm {

// ---- native contexts of tracing hooks (x86-64; filled by the syscall event sources) ------------

// The common header of every tracepoint record (the kernel's struct trace_entry). Programs cannot
// read it (the first 8 bytes are refused, as in the kernel).
struct TraceEntryNative {
  uint16_t common_type = 0;  // the event's id in tracefs (bpfvm: 0)
  uint8_t common_flags = 0;
  uint8_t common_preempt_count = 0;
  int32_t common_pid = 0;
};
// syscalls/sys_enter_NAME: args at 16 as 8-byte fields (the event has as many as the syscall).
struct SyscallEnterNative {
  TraceEntryNative ent;
  int32_t syscall_nr = 0;  // __syscall_nr
  int32_t pad_ = 0;
  uint64_t args[6] = {};
};
// syscalls/sys_exit_NAME.
struct SyscallExitNative {
  TraceEntryNative ent;
  int32_t syscall_nr = 0;
  int32_t pad_ = 0;
  int64_t ret = 0;
};
// raw_syscalls/sys_enter and sys_exit.
struct RawSyscallsEnterNative {
  TraceEntryNative ent;
  int64_t id = 0;
  uint64_t args[6] = {};
};
struct RawSyscallsExitNative {
  TraceEntryNative ent;
  int64_t id = 0;
  int64_t ret = 0;
};
// struct pt_regs (x86-64).
struct PtRegsNative {
  uint64_t r15 = 0, r14 = 0, r13 = 0, r12 = 0, bp = 0, bx = 0, r11 = 0, r10 = 0, r9 = 0, r8 = 0, ax = 0, cx = 0,
           dx = 0, si = 0, di = 0, orig_ax = 0, ip = 0, cs = 0, flags = 0, sp = 0, ss = 0;
};
static_assert(offsetof(SyscallEnterNative, args) == 16 && sizeof(SyscallEnterNative) == 64);
static_assert(offsetof(SyscallExitNative, ret) == 16 && sizeof(RawSyscallsExitNative) == 24);
static_assert(offsetof(PtRegsNative, di) == 112 && sizeof(PtRegsNative) == 168);

// The context layouts of tracing hooks: rows of the program-type table (src/progtypes/registry.cpp),
// one per layout. `type` is
// the program type's row narrowed to the layout (ctx_size = the layout's largest size; an event
// may give less: sys_enter records have 16 + 8 bytes per argument of the syscall).
enum class TraceLayout : uint8_t {
  SyscallEnterRecord,      // tracepoint syscalls/sys_enter_NAME (SyscallEnterNative)
  SyscallExitRecord,       // tracepoint syscalls/sys_exit_NAME (SyscallExitNative)
  RawSyscallsEnterRecord,  // tracepoint raw_syscalls/sys_enter (RawSyscallsEnterNative)
  RawSyscallsExitRecord,   // tracepoint raw_syscalls/sys_exit (RawSyscallsExitNative)
  RawTracepointArgs,       // raw_tracepoint sys_enter/sys_exit: struct bpf_raw_tracepoint_args,
                           // args[0] = struct pt_regs * of the user's registers, args[1] = the
                           // syscall number (sys_enter) or the return value (sys_exit)
  PtRegs,                  // kprobe: struct pt_regs (PtRegsNative)
};
struct TraceLayoutInfo {
  TraceLayout layout;
  std::string_view name;  // "syscalls/sys_enter_* record"
  ProgTypeInfo type;      // the program type's row, ctx_size / native_size / ctx_struct for the layout
};
const TraceLayoutInfo& trace_layout(TraceLayout layout);

// ---- the x86-64 system-call table ----------------------------------------------------------------

struct SyscallInfo {
  int32_t nr = -1;
  std::string_view name;   // the table's (libc's) name: "stat", "uname", "umount2"
  std::string_view event;  // the kernel's: "newstat", "newuname", "umount" (sys_enter_EVENT,
                           // __x64_sys_EVENT, ksyscall/EVENT); "" when not implemented on x86-64
  int32_t nargs = -1;      // arguments of the entry point; -1 when not implemented
  bool implemented() const { return !event.empty(); }
};
std::span<const SyscallInfo> syscall_table();
const SyscallInfo* syscall_by_nr(int64_t nr);
const SyscallInfo* syscall_by_event(std::string_view event);  // the kernel's name
const SyscallInfo* syscall_by_name(std::string_view name);    // the table's name

// ---- the attach layer ----------------------------------------------------------------------------

enum class TraceEvent : uint8_t {
  SyscallEnter,    // a task enters a system call (before it runs)
  SyscallExit,     // a task returns from one
  FunctionEntry,   // uprobe: a thread reaches an instruction of user code (a function's entry + offset)
  FunctionReturn,  // uretprobe: a function of user code returns
  UsdtProbe,       // usdt: a thread passes a statically defined probe point (stapsdt note)
};

struct AttachPoint {
  std::string spec;         // as written ("tp/syscalls/sys_enter_openat")
  std::string canonical;    // the kernel's full name ("tracepoint/syscalls/sys_enter_openat")
  uint32_t prog_type = 0;   // the program type attached there (kProgTracepoint, kProgRawTracepoint,
                            // kProgKprobe)
  TraceEvent event = TraceEvent::SyscallEnter;
  int32_t syscall = -1;     // the syscall number; -1: every syscall (raw_syscalls, raw_tp)
  TraceLayout layout = TraceLayout::SyscallEnterRecord;
  uint32_t ctx_size = 0;    // bytes of context the kernel gives programs there (accesses beyond
                            // are refused at attach, as the kernel's max_ctx_offset check does)
  bool can_override = false;  // bpf_override_return works here (kprobes/ksyscall at syscall entry)
  // PtRegs layout: false = the kernel's __x64_sys_NAME wrapper (di points to the user's registers,
  // as PT_REGS_SYSCALL_REGS / BPF_KSYSCALL expect); true = kprobe/sys_NAME of the kernel's older
  // samples, the arguments in the registers of a plain call (di si dx cx r8 r9).
  bool direct_args = false;
  // Probes in user code (uprobe/PATH:FUNC[+OFFSET], uretprobe/PATH:FUNC, usdt/PATH:PROVIDER:NAME):
  // the context is struct pt_regs of the probed thread. They run in the in-process agent only.
  std::string binary;       // PATH as written: a path, or a bare name resolved as the dynamic loader would
  std::string function;     // FUNC (uprobes; "" for PATH:OFFSET) or the probe's NAME (usdt)
  uint64_t offset = 0;      // +OFFSET: bytes after FUNC's first instruction; without FUNC: a file offset
  std::string provider;     // usdt PROVIDER
  bool sleepable = false;   // uprobe.s / uretprobe.s (may fault in user memory; same helpers here)
  bool in_user_code() const {
    return event == TraceEvent::FunctionEntry || event == TraceEvent::FunctionReturn || event == TraceEvent::UsdtProbe;
  }
};

// Parses a target spec. Errors name the spec and say why it cannot be attached (unknown syscall,
// the kernel's name when libc's was used, a kernel function other than a syscall entry, ...). The
// section syntax itself is read by the loader's parse_attach_target (object.hpp), the one parser of
// section names; this maps its result to an event.
Result<AttachPoint> parse_attach_spec(std::string_view spec);
// The same from a target already parsed; `spec` is the text it came from, for messages.
Result<AttachPoint> attach_point(const AttachTarget& target, std::string_view spec);
// Where a program's section attaches it: the loader's recorded target (ObjectProgram::attach).
Result<AttachPoint> program_attach_point(const ObjectProgram& prog);

// ---- the task a program runs for -----------------------------------------------------------------

// What the current-task helpers see while a program runs for a traced task
// (bpf_get_current_pid_tgid, _uid_gid, _comm, bpf_probe_read_user/_str, bpf_send_signal,
// bpf_override_return). An event source implements it for its tasks.
class TracedTask {
 public:
  virtual ~TracedTask() = default;
  virtual uint32_t tid() const = 0;
  virtual uint32_t tgid() const = 0;
  virtual uint64_t uid_gid() = 0;                     // gid << 32 | uid
  virtual void comm(char out[16]) = 0;                // NUL-terminated task name
  // The task's memory: 0 or -EFAULT (never faults).
  virtual long read_user(void* dst, uint64_t addr, size_t len) = 0;
  // As strncpy_from_user_nofault: bytes copied including the NUL, or -EFAULT.
  virtual long read_user_str(char* dst, uint64_t addr, size_t size) = 0;
  // kill(tgid, sig) or tgkill(tgid, tid, sig): 0 or -errno.
  virtual long send_signal(int sig, bool thread_only) = 0;
  // Answered by SyscallHooks for the event in progress (sources need not implement them):
  // memory of bpfvm that stands for kernel memory of the event (the syscall's pt_regs), which
  // bpf_probe_read reads from bpfvm instead of the task;
  virtual bool is_kernel(uint64_t addr) const { return false; }
  // bpf_override_return(rc): the syscall does not run and returns rc; -EINVAL where the running
  // program's attach point does not allow it.
  virtual long override_return(uint64_t rc) { return -22; }
  // Probes in user code: bpf_get_func_ip (the probed address) and bpf_get_attach_cookie (the
  // cookie given at attach; for USDT, the probe point's spec id as libbpf sets it). 0 elsewhere.
  virtual uint64_t func_ip() const { return 0; }
  virtual uint64_t attach_cookie() const { return 0; }
  // bpf_get_current_task / _btf: the address of a synthetic struct task_struct of the task (laid
  // out by the CO-RE BTF, in memory that is_kernel() counts as kernel memory); 0 when none.
  virtual uint64_t current_task() { return 0; }
};

// The task programs on this thread run for (nullptr outside a traced event: helpers then answer
// for the bpfvm process itself). Set by SyscallHooks around each program run.
TracedTask* current_traced_task();
void set_current_traced_task(TracedTask* task);

// ---- programs attached to syscall events --------------------------------------------------------

// One x86-64 system call as a source reports it.
struct SyscallRegs {
  // struct pt_regs order (the first 21 words of the kernel's user_regs_struct): r15 r14 r13 r12 bp
  // bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss.
  uint64_t words[21] = {};
  int64_t nr() const { return static_cast<int64_t>(words[15]); }
  uint64_t arg(int i) const;  // di si dx r10 r8 r9
  void set_arg(int i, uint64_t v);
};
static_assert(sizeof(SyscallRegs) == sizeof(PtRegsNative));

// A ring-buffer or perf-buffer record, as it is consumed.
struct TraceRecord {
  std::string_view map;     // the map's name
  bool perf = false;        // perf event array (else ring buffer)
  int cpu = 0;
  uint32_t index = 0;       // perf array index (ring buffer: 0)
  uint64_t timestamp = 0;   // CLOCK_MONOTONIC ns: perf, when written; ring buffer, when consumed
  std::span<const uint8_t> data;
  uint64_t lost = 0;        // perf: a lost-records notice (data empty)
};

struct AttachRequest {
  std::string program;  // function or section name
  std::string spec;     // "" = the program's section
};

struct SyscallHooksOptions {
  // Programs to attach: empty = every program of the object, each at its section's target.
  std::vector<AttachRequest> attach;
  // Verification and engine; the rules default to the privileged ones (tracing helpers), as the
  // kernel's for the root user who attaches tracing programs.
  PrepareOptions prepare = [] {
    PrepareOptions p;
    p.rules = RuleSet::Privileged;
    return p;
  }();
  // Pages of each perf event array ring (perf_buffer__new's page_cnt).
  uint32_t perf_pages = 64;
  // The BTF that lays out bpf_get_current_task's synthetic task_struct (a file, as LoadOptions::
  // target_btf): empty = the object's CO-RE target, else /sys/kernel/btf/vmlinux.
  std::string btf;
  // When set, the object's maps (those of types the map store holds: not perf event arrays, nor
  // global data) are created pinned at DIR/NAME, or reused when a matching map is pinned there, so
  // they outlive the trace (`bpfvm map dump pinned DIR/NAME`). DIR must be on tmpfs.
  std::string pin_maps_dir;
};

struct AttachedProgram {
  std::string name;
  AttachPoint point;
  PreparedProgram prog;
  bool overrides = false;  // calls bpf_override_return
  uint64_t runs = 0, errors = 0;
};

namespace syscall_hooks {
class TaskStructs;
}

class SyscallHooks {
 public:
  // Instantiates the object's maps, resolves every attach request, verifies and prepares each
  // program and checks it against its point (program type, context size, override_return). Every
  // refusal names the program and the reason; nothing is attached when one fails.
  static Result<std::unique_ptr<SyscallHooks>> create(const Object& object, const SyscallHooksOptions& options = {});
  ~SyscallHooks();

  const LoadedObject& loaded() const { return *live_; }
  const std::vector<std::unique_ptr<AttachedProgram>>& programs() const { return progs_; }

  // Which syscalls sources must stop at (entry / exit). all_*: every syscall.
  bool all_enter() const { return all_enter_; }
  bool all_exit() const { return all_exit_; }
  bool wants_enter(int64_t nr) const;
  bool wants_exit(int64_t nr) const;
  // Whether programs at that event read registers beyond the number, the arguments and the result
  // (pt_regs contexts, raw tracepoints): a source may then skip reading all registers.
  bool needs_regs(int64_t nr, bool exit) const;
  // The syscall numbers with any program (entry or exit), ascending (the seccomp filter's list).
  std::vector<int32_t> traced_syscalls() const;

  // Syscall entry of `task` with registers `regs`: runs the entry programs. Returns the value the
  // syscall must return instead of running when a program called bpf_override_return.
  std::optional<int64_t> enter(TracedTask& task, const SyscallRegs& regs);
  // Syscall exit (`nr`: the number it entered with, regs.ax the return value).
  void exit(TracedTask& task, int64_t nr, const SyscallRegs& regs);

  // Ring buffers and perf buffers: each record consumed goes to the sink (drain() after events).
  using RecordSink = std::function<void(const TraceRecord&)>;
  void set_record_sink(RecordSink sink) { sink_ = std::move(sink); }
  void drain();
  // The first run errors (fault, budget), for the report: "program NAME: message".
  const std::vector<std::string>& run_errors() const { return run_errors_; }
  // Called with a program's first run error when it happens (a source inside the traced process
  // reports it at once; ptrace mode prints run_errors() at the end).
  void set_fault_sink(std::function<void(const std::string&)> sink) { fault_sink_ = std::move(sink); }

 private:
  SyscallHooks() = default;
  void run(AttachedProgram& p, TracedTask& task, void* ctx, size_t ctx_size);
  std::shared_ptr<LoadedObject> live_;
  std::vector<std::unique_ptr<AttachedProgram>> progs_;
  // Per syscall number: programs at entry / exit (index = nr, up to the table's last number).
  std::vector<std::vector<AttachedProgram*>> enter_, exit_;
  std::vector<AttachedProgram*> enter_all_, exit_all_;
  bool all_enter_ = false, all_exit_ = false;
  RecordSink sink_;
  std::vector<std::string> run_errors_;
  std::function<void(const std::string&)> fault_sink_;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
  // Synthetic tasks for bpf_get_current_task (when a program calls it).
  std::unique_ptr<syscall_hooks::TaskStructs> tasks_;
};

// ---- the ptrace event source ----------------------------------------------------------------------

struct PtraceOptions {
  std::vector<std::string> argv;  // the command to run (with its arguments), or
  int pid = 0;                    // a running process to attach to (every thread)
  double duration = 0;            // > 0: stop tracing after that many seconds and detach
  // Install a seccomp filter in the command so that only syscalls with programs stop it. Never for
  // -p (a filter cannot be removed) nor with a duration (once bpfvm detaches, a filtered syscall
  // would fail with ENOSYS). Ignored when every syscall is traced.
  bool seccomp = true;
  // Messages for the user (warnings, "no filter" notes); default: none.
  std::function<void(const std::string&)> note;
};

struct PtraceResult {
  int exit_code = 0;        // the command's exit status, 128+N when killed by signal N; 127 when it
                            // could not start; 0 after detaching (duration, -p)
  bool started = false;     // the command was executed (its exec happened)
  std::string start_error;  // why it could not start
  bool detached = false;
  bool filtered = false;    // a seccomp filter was installed
  uint64_t stops = 0;       // syscall stops handled
};

// Traces the command (fork, seccomp filter, exec) or the process: every thread and every child,
// events from the command's exec on. Runs until every traced task has exited (or the duration
// ends). Signals reach the tracees as without bpfvm; SIGINT/SIGQUIT are left to the command (it
// shares the terminal), SIGTERM/SIGHUP sent to bpfvm are passed to it; with pid, SIGINT/SIGTERM
// end tracing and detach.
Result<PtraceResult> run_ptrace(SyscallHooks& hooks, const PtraceOptions& options);

}  // namespace bpfvm
