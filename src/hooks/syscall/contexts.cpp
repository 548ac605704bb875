// The context builders: the kernel's records and registers for one x86-64 system call.
#include "hooks/syscall/contexts.hpp"

#include <cstring>

namespace bpfvm::syscall_hooks {

namespace {

TraceEntryNative entry_header(const SyscallEventData& ev) {
  TraceEntryNative e;
  e.common_pid = static_cast<int32_t>(ev.tid);
  return e;
}

int64_t ret_of(const SyscallEventData& ev) { return static_cast<int64_t>(ev.regs->words[10]); }  // ax

// syscalls/sys_enter_NAME: the syscall's arguments (as many as it has; the rest of the buffer is 0).
size_t syscall_enter(const SyscallEventData& ev, void* out) {
  auto* r = static_cast<SyscallEnterNative*>(out);
  *r = SyscallEnterNative{};
  r->ent = entry_header(ev);
  r->syscall_nr = static_cast<int32_t>(ev.nr);
  const SyscallInfo* s = syscall_by_nr(ev.nr);
  int n = s && s->nargs > 0 ? s->nargs : 0;
  for (int i = 0; i < n; ++i) r->args[i] = ev.regs->arg(i);
  return 16 + 8 * static_cast<size_t>(n);
}

size_t syscall_exit(const SyscallEventData& ev, void* out) {
  auto* r = static_cast<SyscallExitNative*>(out);
  *r = SyscallExitNative{};
  r->ent = entry_header(ev);
  r->syscall_nr = static_cast<int32_t>(ev.nr);
  r->ret = ret_of(ev);
  return sizeof *r;
}

size_t raw_syscalls_enter(const SyscallEventData& ev, void* out) {
  auto* r = static_cast<RawSyscallsEnterNative*>(out);
  *r = RawSyscallsEnterNative{};
  r->ent = entry_header(ev);
  r->id = ev.nr;
  for (int i = 0; i < 6; ++i) r->args[i] = ev.regs->arg(i);
  return sizeof *r;
}

size_t raw_syscalls_exit(const SyscallEventData& ev, void* out) {
  auto* r = static_cast<RawSyscallsExitNative*>(out);
  *r = RawSyscallsExitNative{};
  r->ent = entry_header(ev);
  r->id = ev.nr;
  r->ret = ret_of(ev);
  return sizeof *r;
}

// struct bpf_raw_tracepoint_args of sys_enter(regs, id) / sys_exit(regs, ret).
size_t raw_tp_args(const SyscallEventData& ev, void* out) {
  auto* a = static_cast<uint64_t*>(out);
  a[0] = reinterpret_cast<uint64_t>(ev.kernel_regs);
  a[1] = ev.exit ? static_cast<uint64_t>(ret_of(ev)) : static_cast<uint64_t>(ev.nr);
  return 16;
}

// struct pt_regs of a kprobe. At the entry of the kernel's __x64_sys_NAME wrapper its argument (di)
// is the user's struct pt_regs; at its return ax holds the return value. Registers the kernel
// would hold at that point and bpfvm cannot know are 0. kprobe/sys_NAME (before syscall wrappers):
// the arguments in a plain call's registers (the fourth in cx).
size_t pt_regs(const AttachPoint& point, const SyscallEventData& ev, void* out) {
  auto* r = static_cast<PtRegsNative*>(out);
  *r = PtRegsNative{};
  if (point.direct_args) {
    std::memcpy(static_cast<void*>(r), ev.regs->words, sizeof *r);
    r->cx = ev.regs->arg(3);
  } else {
    r->di = reinterpret_cast<uint64_t>(ev.kernel_regs);
  }
  if (ev.exit) r->ax = static_cast<uint64_t>(ret_of(ev));
  return sizeof *r;
}

}  // namespace

size_t build_context(const AttachPoint& point, const SyscallEventData& ev, void* out) {
  switch (point.layout) {
    case TraceLayout::SyscallEnterRecord: return syscall_enter(ev, out);
    case TraceLayout::SyscallExitRecord: return syscall_exit(ev, out);
    case TraceLayout::RawSyscallsEnterRecord: return raw_syscalls_enter(ev, out);
    case TraceLayout::RawSyscallsExitRecord: return raw_syscalls_exit(ev, out);
    case TraceLayout::RawTracepointArgs: return raw_tp_args(ev, out);
    case TraceLayout::PtRegs: return pt_regs(point, ev, out);
  }
  return 0;
}

}  // namespace bpfvm::syscall_hooks
