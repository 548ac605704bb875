// The attach layer: a target in libbpf's section syntax, as the loader's parse_attach_target reads
// it (the one parser of section names) -> an AttachPoint (event, syscall, context layout). Only
// system-call events exist for now; every other target is refused with why.
#include <fmt/format.h>

#include "bpfvm/trace.hpp"

namespace bpfvm {

namespace {

Diagnostic refuse(std::string_view spec, const std::string& why) {
  return make_error(ErrorCode::InvalidArgument, fmt::format("cannot attach to '{}': {}", spec, why));
}

// The syscall of a kernel event name, or an error that says what is wrong with the name.
Result<const SyscallInfo*> syscall_named(std::string_view spec, std::string_view event) {
  if (event.empty()) return refuse(spec, "no system call named");
  if (const SyscallInfo* s = syscall_by_event(event)) return s;
  if (const SyscallInfo* s = syscall_by_name(event)) {
    if (!s->implemented())
      return refuse(spec, fmt::format("the kernel does not implement {} on x86-64 (syscall {} has no entry point "
                                      "and no events)", event, s->nr));
    return refuse(spec, fmt::format("the kernel's name of system call {} ({}) is {}", s->nr, event, s->event));
  }
  return refuse(spec, fmt::format("no system call '{}' in the x86-64 table", event));
}

AttachPoint point(std::string_view spec, std::string canonical, uint32_t type, TraceEvent ev, int32_t nr,
                  TraceLayout layout, uint32_t ctx_size) {
  AttachPoint p;
  p.spec = std::string(spec);
  p.canonical = std::move(canonical);
  p.prog_type = type;
  p.event = ev;
  p.syscall = nr;
  p.layout = layout;
  p.ctx_size = ctx_size;
  return p;
}

Result<AttachPoint> tracepoint(std::string_view spec, const AttachTarget& t) {
  if (t.category.empty() || t.name.empty())
    return refuse(spec, "a tracepoint is written CATEGORY/NAME (tracepoint/syscalls/sys_enter_openat)");
  std::string_view cat = t.category, name = t.name;
  if (cat == "raw_syscalls") {
    if (name == "sys_enter")
      return point(spec, "tracepoint/raw_syscalls/sys_enter", kProgTracepoint, TraceEvent::SyscallEnter, -1,
                   TraceLayout::RawSyscallsEnterRecord, sizeof(RawSyscallsEnterNative));
    if (name == "sys_exit")
      return point(spec, "tracepoint/raw_syscalls/sys_exit", kProgTracepoint, TraceEvent::SyscallExit, -1,
                   TraceLayout::RawSyscallsExitRecord, sizeof(RawSyscallsExitNative));
    return refuse(spec, "raw_syscalls has the events sys_enter and sys_exit");
  }
  if (cat != "syscalls")
    return refuse(spec, fmt::format("tracepoint category '{}' is not provided: bpfvm observes processes at the "
                                    "system-call boundary (syscalls/* and raw_syscalls/* events)", cat));
  bool enter = name.starts_with("sys_enter_");
  if (!enter && !name.starts_with("sys_exit_"))
    return refuse(spec, "syscalls events are sys_enter_NAME and sys_exit_NAME");
  auto s = syscall_named(spec, name.substr(enter ? 10 : 9));
  if (!s) return s.error();
  const SyscallInfo& sc = **s;
  std::string canonical = fmt::format("tracepoint/syscalls/sys_{}_{}", enter ? "enter" : "exit", sc.event);
  if (enter)
    return point(spec, canonical, kProgTracepoint, TraceEvent::SyscallEnter, sc.nr, TraceLayout::SyscallEnterRecord,
                 16 + 8 * static_cast<uint32_t>(sc.nargs));
  return point(spec, canonical, kProgTracepoint, TraceEvent::SyscallExit, sc.nr, TraceLayout::SyscallExitRecord,
               sizeof(SyscallExitNative));
}

Result<AttachPoint> raw_tracepoint(std::string_view spec, std::string_view target) {
  if (target == "sys_enter" || target == "sys_exit") {
    bool enter = target == "sys_enter";
    return point(spec, fmt::format("raw_tracepoint/{}", target), kProgRawTracepoint,
                 enter ? TraceEvent::SyscallEnter : TraceEvent::SyscallExit, -1, TraceLayout::RawTracepointArgs,
                 2 * 8);
  }
  return refuse(spec, fmt::format("raw tracepoint '{}' is not provided: bpfvm observes processes at the system-call "
                                  "boundary (sys_enter and sys_exit)", target));
}

// kprobe/kretprobe FUNC, ksyscall/kretsyscall NAME.
Result<AttachPoint> kprobe(std::string_view spec, const AttachTarget& t, bool ret, bool ksyscall) {
  std::string_view func = t.name;
  if (t.offset != 0 || func.empty() || func.find_first_of("+:") != std::string_view::npos)
    return refuse(spec, "only the entry of a system call can be probed (no offsets)");
  std::string_view event;
  bool direct = false;
  if (ksyscall) {
    event = func;
  } else if (func.starts_with("__x64_sys_")) {
    event = func.substr(10);
  } else if (func.starts_with("sys_")) {
    event = func.substr(4);
    direct = true;
  } else {
    return refuse(spec, fmt::format("'{}' is a kernel function, not a system call entry: bpfvm observes processes at "
                                    "the system-call boundary and does not run inside the kernel (kprobes work on "
                                    "__x64_sys_NAME and sys_NAME, or use ksyscall/NAME)", func));
  }
  auto s = syscall_named(spec, event);
  if (!s) return s.error();
  const SyscallInfo& sc = **s;
  AttachPoint p = point(spec, fmt::format("{}/{}{}", ret ? "kretprobe" : "kprobe", direct ? "sys_" : "__x64_sys_",
                                          sc.event),
                        kProgKprobe, ret ? TraceEvent::SyscallExit : TraceEvent::SyscallEnter, sc.nr, TraceLayout::PtRegs,
                        sizeof(PtRegsNative));
  p.can_override = !ret;
  p.direct_args = direct;
  return p;
}

}  // namespace

Result<AttachPoint> attach_point(const AttachTarget& t, std::string_view spec) {
  const std::string& kind = t.kind;
  bool tracing_kind = kind == "tracepoint" || kind == "raw_tracepoint" || kind == "kprobe" || kind == "kretprobe" ||
                      kind == "ksyscall" || kind == "kretsyscall";
  if (tracing_kind && t.multi)
    return refuse(spec, "multi-kprobes are not provided (attach each syscall with ksyscall/NAME)");
  if (tracing_kind && t.target.empty()) {
    std::string_view form = spec.substr(0, spec.find('/'));
    return refuse(spec, fmt::format("'{}' names no target (write {}/TARGET, or give one with --attach PROG=SPEC)",
                                    form, form));
  }
  if (kind == "raw_tracepoint" && (spec.starts_with("raw_tp.w") || spec.starts_with("raw_tracepoint.w")))
    return refuse(spec, "writable raw tracepoints are not provided");
  if (kind == "tracepoint") return tracepoint(spec, t);
  if (kind == "raw_tracepoint") return raw_tracepoint(spec, t.name);
  if (kind == "kprobe" || kind == "kretprobe") return kprobe(spec, t, t.retprobe, false);
  if (kind == "ksyscall" || kind == "kretsyscall") return kprobe(spec, t, t.retprobe, true);
  if (kind == "uprobe" || kind == "uretprobe" || kind == "usdt")
    return refuse(spec, "function probes in user code are not provided by the ptrace event source");
  return refuse(spec, "not a system-call hook (bpfvm trace attaches tracepoint/syscalls/*, tracepoint/raw_syscalls/*, "
                      "raw_tp/sys_enter|sys_exit, ksyscall/NAME, kretsyscall/NAME, kprobe/__x64_sys_NAME, "
                      "kretprobe/__x64_sys_NAME and kprobe/sys_NAME)");
}

Result<AttachPoint> parse_attach_spec(std::string_view spec) { return attach_point(parse_attach_target(spec), spec); }

Result<AttachPoint> program_attach_point(const ObjectProgram& prog) {
  // The loader's reading of the section name (libbpf's auto-attach); a bare kind ("kprobe",
  // "tracepoint") names nothing.
  return attach_point(prog.attach, prog.section);
}

}  // namespace bpfvm
