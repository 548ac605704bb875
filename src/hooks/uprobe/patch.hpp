// Function hooks inside the current process: a function's entry (or any instruction boundary) is
// patched so that the threads that reach it call a handler with their registers, in user space,
// without a trap (docs/tracing.md, "Function hooks").
//
//   jump patch    the instructions covering 5 bytes at the patch point are relocated into a trampoline
//                 mapped within +-2 GiB; the point gets a `jmp rel32` to it. The trampoline saves the
//                 registers as a struct pt_regs, calls the handlers, restores the registers, runs the
//                 relocated instructions and jumps back behind them.
//   breakpoint    where the displaced bytes could be a jump target, where the function is shorter than
//                 the patch, or where the size is unknown and the first instruction is shorter than 5
//                 bytes: an int3 at the point; the SIGTRAP handler runs the handlers and resumes the
//                 thread in the relocated copy of that one instruction.
//   return hooks  at entry the return address is replaced with a per-thread return stub and kept on a
//                 per-thread shadow stack; the stub runs the return handlers (ax = return value) and
//                 returns to the original address. The stubs have unwind info that recovers the
//                 original return address, so C++ exceptions and longjmp leave a probed function as
//                 if it were not probed (no return handler runs for them).
//
// Patching is safe while other threads run the patched bytes; detach restores the original bytes
// exactly. Trampolines and stubs are never unmapped (a thread may still be inside one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bpfvm/result.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm::uprobe {

using PtRegs = PtRegsNative;

enum class HookKind : uint8_t {
  Entry,   // the handler runs before the instruction at the address executes
  Return,  // the handler runs when the function entered at the address returns (a uretprobe)
};

// Called on the thread that hit the hook, with the registers at the probed point.
// Entry: every general-purpose register as the thread has it there; ip = the hooked address;
//        sp = the thread's sp there (at a function entry: the address of the return address).
// Return: ax/dx = the return value; ip = the hooked function's address; sp = the sp after the return.
// A handler may change the general-purpose registers and flags (the thread continues with them; for a
// return hook ax is the value returned to the caller); changes to ip, sp, cs, ss are ignored.
// A handler runs with the recursion guard set (in_hook()): hooks hit while it runs (on this
// thread) call no handler, so a handler may call hooked functions.
using Handler = void (*)(void* cookie, PtRegs* regs);

struct HookId {
  uint64_t value = 0;
  bool operator==(const HookId&) const = default;
};

enum class PatchMethod : uint8_t {
  Jump,        // jmp to a trampoline (no trap)
  Breakpoint,  // int3 (a SIGTRAP per hit)
};

struct AttachOptions {
  // The function `addr` lies in, from its ELF symbol: its size (st_size; 0 = unknown) and, for an
  // address inside it (FUNC+OFFSET, a USDT site), its start (0 = `addr` is the function's entry).
  // With the size the whole body is scanned for jumps into the bytes a jump patch would displace
  // (and `addr` must be an instruction boundary of it); without, only a first instruction of 5 bytes
  // or more is displaced (else an int3).
  size_t func_size = 0;
  uintptr_t func_start = 0;
  // Use an int3 even where a jump patch would do (tests, and targets that must not be relocated).
  bool force_breakpoint = false;
};

// Hooks `addr` (an instruction boundary; a function's entry for Return hooks). Several hooks may share
// an address (handlers run in attach order). Fails, leaving the process untouched, where the code
// cannot be decoded or relocated or the text cannot be written; the error names the address and why.
Result<HookId> attach(uintptr_t addr, HookKind kind, Handler handler, void* cookie, const AttachOptions& options = {});
inline Result<HookId> attach(uintptr_t addr, size_t func_size, HookKind kind, Handler handler, void* cookie) {
  AttachOptions o;
  o.func_size = func_size;
  return attach(addr, kind, handler, cookie, o);
}

// Removes a hook. When it returns, no thread runs (or will run) its handler any more, so the cookie
// may be freed — except when called from inside a handler (in_hook()), which does not wait. The
// original bytes are back when the address has no hook left.
Status detach(HookId id);

// The way the hook's address is patched (an error for an unknown id).
Result<PatchMethod> patch_method(HookId id);

// True while this thread runs a hook handler (the recursion guard): code the handler calls (helpers,
// the agent's syscall hooks) can check it to avoid running programs recursively.
bool in_hook();
// True while a QuietScope lives on this thread (the agent's own work).
bool in_quiet();

// While an object of this class lives, hooks this thread hits call no handler and arm no return hook,
// as inside a handler: the agent's own work (attaching, reports, rescans after dlopen) never runs the
// programs it installs, whatever functions it calls. Unlike in_hook(), detach still waits.
class QuietScope {
 public:
  QuietScope();
  ~QuietScope();
  QuietScope(const QuietScope&) = delete;
  QuietScope& operator=(const QuietScope&) = delete;
};

// What the hooks do, process-wide (tests, diagnostics).
struct Stats {
  uint64_t trap_hits = 0;        // breakpoint hits handled (SIGTRAP)
  uint64_t missed_returns = 0;   // return hooks not armed: the thread's shadow stack was full
  uint64_t sites = 0;            // addresses ever patched (trampolines kept)
};
Stats stats();

// The deepest nesting of return hooks per thread (a deeper call runs entry hooks but no return hook).
inline constexpr size_t kMaxReturnDepth = 64;

}  // namespace bpfvm::uprobe
