// libbpfvm-agent.so: the agent's entry points. Loaded with LD_PRELOAD by `bpfvm trace --mode agent`
// (or dlopen'ed into a running process), it starts when $BPFVM_AGENT_SPEC names a spec file and
// does nothing otherwise. It exports only these entry points (cmake/bpfvm-agent.map): the C
// functions below and dlopen, which it interposes to attach probes to libraries loaded later.
#include <dlfcn.h>

#include <cstdlib>

#include "bpfvm/agent.hpp"

extern "C" {

// Starts the agent with a spec file (what the constructor does with $BPFVM_AGENT_SPEC). 0, or -1
// when it did not start (the reason went to the spec's report socket).
__attribute__((visibility("default"))) int bpfvm_agent_start(const char* spec_path) {
  if (!spec_path || !*spec_path) return -1;
  return bpfvm::agent_start(spec_path) ? 0 : -1;
}

// Ends the agent's session (probes removed, original bytes back; the library stays, idle): 1 when a
// session ended, 0 when none ran, -2 when this thread cannot do it now (inside a probe handler or
// the agent's own attach: call again later), -1 on an error (reported on the session's socket).
__attribute__((visibility("default"))) int bpfvm_agent_stop(void) {
  auto r = bpfvm::agent_stop();
  if (!r) return r.error().code == bpfvm::ErrorCode::Unsupported ? -2 : -1;
  return *r ? 1 : 0;
}

// 1 while the agent runs in this process.
__attribute__((visibility("default"))) int bpfvm_agent_active(void) { return bpfvm::agent_active() ? 1 : 0; }

// dlopen as the C library's, then the probes waiting for that library are attached before the
// caller can reach its functions.
__attribute__((visibility("default"))) void* dlopen(const char* file, int mode) {
  using DlopenFn = void* (*)(const char*, int);
  static DlopenFn real = reinterpret_cast<DlopenFn>(dlsym(RTLD_NEXT, "dlopen"));
  if (!real) return nullptr;
  void* h = real(file, mode);
  if (h) bpfvm::agent_rescan_modules();
  return h;
}

}  // extern "C"

namespace {

__attribute__((constructor)) void bpfvm_agent_init() {
  const char* spec = std::getenv(bpfvm::kAgentSpecEnv);
  if (spec && *spec) (void)bpfvm::agent_start(spec);
}

}  // namespace
