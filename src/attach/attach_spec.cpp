// The attach layer: a target in libbpf's section syntax, as the loader's parse_attach_target reads
// it (the one parser of section names) -> an AttachPoint (event, syscall, context layout):
// system-call events and probes in user code (uprobes, USDT); every other target is refused with why.
#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "bpfvm/object.hpp"
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

// uprobe/PATH:FUNC[+OFFSET], uprobe/PATH:OFFSET, uretprobe/PATH:FUNC (and the sleepable .s forms),
// usdt/PATH:PROVIDER:NAME. The loader's section parser splits them (parse_attach_target); this
// checks what libbpf would refuse and says why.
Result<AttachPoint> user_probe(std::string_view spec, std::string_view kind, std::string_view target) {
  const bool usdt = kind == "usdt";
  const bool ret = kind == "uretprobe" || kind == "uretprobe.s";
  AttachTarget a = parse_attach_target(spec);
  auto colon = target.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == target.size() || a.path.empty())
    return refuse(spec, usdt ? "a USDT probe is written usdt/PATH:PROVIDER:NAME"
                             : fmt::format("a function probe is written {}/PATH:FUNC{} (missing ':FUNC')", kind,
                                           ret ? "" : "[+OFFSET]"));
  AttachPoint p;
  p.spec = std::string(spec);
  p.prog_type = kProgKprobe;
  p.layout = TraceLayout::PtRegs;
  p.ctx_size = sizeof(PtRegsNative);
  p.binary = a.path;
  p.sleepable = a.sleepable;
  if (usdt) {
    if (a.provider.empty() || a.name.empty() || a.name.find(':') != std::string::npos)
      return refuse(spec, "a USDT probe is written usdt/PATH:PROVIDER:NAME");
    p.provider = a.provider;
    p.function = a.name;
    p.event = TraceEvent::UsdtProbe;
    p.canonical = fmt::format("usdt/{}:{}:{}", p.binary, p.provider, p.function);
    return p;
  }
  // FUNC[+OFFSET]: a symbol name (versioned names with '@' too); a bare number is a file offset.
  if (a.name.empty() && a.offset == 0 && target.substr(target.rfind(':') + 1) != "0" &&
      target.substr(target.rfind(':') + 1) != "0x0")
    return refuse(spec, fmt::format("'{}' is not FUNC[+OFFSET] nor a file offset", target.substr(target.rfind(':') + 1)));
  for (char c : a.name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '@' || c == '$'))
      return refuse(spec, fmt::format("'{}' is not a symbol name (FUNC[+OFFSET], OFFSET a number: 16, 0x10)", a.name));
  if (ret && !a.name.empty() && a.offset != 0) return refuse(spec, "uretprobes do not support offset specification");
  p.function = a.name;
  p.offset = a.offset;
  p.event = ret ? TraceEvent::FunctionReturn : TraceEvent::FunctionEntry;
  if (p.function.empty())
    p.canonical = fmt::format("{}/{}:0x{:x}", ret ? "uretprobe" : "uprobe", p.binary, p.offset);
  else
    p.canonical = fmt::format("{}/{}:{}{}", ret ? "uretprobe" : "uprobe", p.binary, p.function,
                              p.offset ? fmt::format("+0x{:x}", p.offset) : "");
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
  if (spec.starts_with("uprobe.multi") || spec.starts_with("uretprobe.multi"))
    return refuse(spec, "multi-uprobes are not provided (attach each function with uprobe/PATH:FUNC)");
  if (kind == "uprobe" || kind == "uretprobe" || kind == "usdt") {
    std::string_view form = spec.substr(0, spec.find('/'));
    if (t.multi) return refuse(spec, "multi-uprobes are not provided (attach each function with uprobe/PATH:FUNC)");
    if (t.target.empty())
      return refuse(spec, fmt::format("'{}' names no target (write {}/PATH:{}, or give one with --attach PROG=SPEC)",
                                      form, form, kind == "usdt" ? "PROVIDER:NAME" : "FUNC"));
    return user_probe(spec, form, t.target);
  }
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
