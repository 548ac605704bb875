// Cost of a function hook per call of a small function, in one run, side by side:
//   native                      the call alone
//   bpfvm entry hook            jump patch -> trampoline -> handler running the program (JIT)
//   bpfvm return hook           the same at return (uretprobe: return address replaced)
//   bpfvm entry + return        both on the function
//   bpfvm ... no program        the hook alone (an empty handler): the patch's own cost
//   bpfvm entry (breakpoint)    the int3 fallback (a SIGTRAP per call)
//   kernel uprobe / uretprobe   the same program attached by libbpf (bpf_program__attach_uprobe_opts
//                               on this binary's own function); skipped with a message where the
//                               kernel cannot attach (no root, no uprobes)
// The program is bench/progs/uprobe_count.bpf.c: one array update per hit. Each row checks that the
// program counted every call (counter "hits/call" = 1).
//   build/bench_uprobe_hooks [--benchmark_min_time=0.5]
// (the whole agent, `bpfvm trace --mode agent`, is measured by bench_uprobes)
#include <benchmark/benchmark.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "hooks/uprobe/patch.hpp"

// The probed function: a frame prologue (the shape most compiled functions start with), returns a+1.
extern "C" uint64_t bench_uprobe_target(uint64_t a);
asm(".pushsection .text\n .intel_syntax noprefix\n .p2align 4\n"
    ".globl bench_uprobe_target\n .type bench_uprobe_target,@function\n"
    "bench_uprobe_target:\n push rbp\n mov rbp, rsp\n lea rax, [rdi+1]\n pop rbp\n ret\n"
    "bench_uprobe_target_end:\n .size bench_uprobe_target, .-bench_uprobe_target\n"
    ".att_syntax prefix\n .popsection\n");
extern "C" const uint8_t bench_uprobe_target_end[];

namespace {

using namespace bpfvm;

const std::string kObject = std::string(BPFVM_PROGS_DIR) + "/uprobe_count.bpf.o";

uint64_t call_loop(benchmark::State& state) {
  uint64_t (*volatile f)(uint64_t) = bench_uprobe_target;
  uint64_t x = 0;
  for (auto _ : state) {
    x = f(x);
    benchmark::DoNotOptimize(x);
  }
  return x;
}

// ---- bpfvm -----------------------------------------------------------------------------------------

struct Bpfvm {
  std::unique_ptr<Object> obj;
  LoadedObject live;
  PreparedProgram prog;
  std::string error;
  uint64_t count() {
    uint32_t key = 0;
    auto* v = live.maps.empty() ? nullptr : static_cast<std::atomic<uint64_t>*>(live.maps[0]->lookup(&key));
    return v ? v->load() : 0;
  }
  void reset() {
    uint32_t key = 0;
    if (auto* v = live.maps.empty() ? nullptr : static_cast<std::atomic<uint64_t>*>(live.maps[0]->lookup(&key))) v->store(0);
  }
};

Bpfvm* bpfvm_side() {
  static Bpfvm* b = [] {
    auto* s = new Bpfvm();
    auto obj = load_object_file(kObject);
    if (!obj) {
      s->error = obj.error().to_string();
      return s;
    }
    s->obj = std::make_unique<Object>(std::move(*obj));
    auto live = instantiate(*s->obj);
    if (!live) {
      s->error = live.error().to_string();
      return s;
    }
    s->live = std::move(*live);
    PrepareOptions po;
    po.rules = RuleSet::Privileged;
    po.engine = EngineChoice::Jit;
    auto pp = prepare_program(*s->obj->find_program("count_hits"), s->live, nullptr, po);
    if (!pp) {
      s->error = pp.error().to_string();
      return s;
    }
    s->prog = std::move(*pp);
    return s;
  }();
  return b;
}

void no_program(void*, uprobe::PtRegs*) {}

void run_program(void* cookie, uprobe::PtRegs* regs) {
  RunArgs a;
  a.r1 = reinterpret_cast<uint64_t>(regs);
  (void)static_cast<const Executable*>(cookie)->run(a);
}

void bpfvm_hooks(benchmark::State& state, bool entry, bool ret, bool breakpoint, bool program = true) {
  Bpfvm* b = bpfvm_side();
  if (!b->error.empty()) {
    state.SkipWithError(("bpfvm: " + b->error).c_str());
    return;
  }
  b->reset();
  uprobe::AttachOptions o;
  o.func_size = static_cast<size_t>(bench_uprobe_target_end - reinterpret_cast<const uint8_t*>(&bench_uprobe_target));
  o.force_breakpoint = breakpoint;
  const auto addr = reinterpret_cast<uintptr_t>(&bench_uprobe_target);
  std::vector<uprobe::HookId> ids;
  for (auto [want, kind] : {std::pair{entry, uprobe::HookKind::Entry}, std::pair{ret, uprobe::HookKind::Return}}) {
    if (!want) continue;
    auto h = uprobe::attach(addr, kind, program ? run_program : no_program, b->prog.exe.get(), o);
    if (!h) {
      state.SkipWithError(("attach: " + h.error().message).c_str());
      for (auto id : ids) (void)uprobe::detach(id);
      return;
    }
    ids.push_back(*h);
  }
  call_loop(state);
  for (auto id : ids) (void)uprobe::detach(id);
  if (!program) return;
  const double per_call = ids.size();
  state.counters["hits/call"] =
      static_cast<double>(b->count()) / (static_cast<double>(state.iterations()) * per_call);
}

// ---- the kernel ------------------------------------------------------------------------------------

void kernel_uprobe(benchmark::State& state, bool retprobe) {
  libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
  bpf_object* obj = bpf_object__open_file(kObject.c_str(), nullptr);
  if (!obj || bpf_object__load(obj) != 0) {
    if (obj) bpf_object__close(obj);
    state.SkipWithError("kernel: cannot load the program (needs root / CAP_BPF)");
    return;
  }
  bpf_program* prog = bpf_object__find_program_by_name(obj, "count_hits");
  char self[PATH_MAX] = {};
  if (!realpath("/proc/self/exe", self)) std::snprintf(self, sizeof self, "/proc/self/exe");
  LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = retprobe, .func_name = "bench_uprobe_target");
  bpf_link* link = bpf_program__attach_uprobe_opts(prog, 0, self, 0, &uo);
  if (!link) {
    bpf_object__close(obj);
    state.SkipWithError(("kernel: cannot attach a uprobe: " + std::string(std::strerror(errno))).c_str());
    return;
  }
  call_loop(state);
  uint32_t key = 0;
  uint64_t v = 0;
  bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "hits")), &key, &v);
  state.counters["hits/call"] = static_cast<double>(v) / static_cast<double>(state.iterations());
  bpf_link__destroy(link);
  bpf_object__close(obj);
}

void BM_native(benchmark::State& state) { call_loop(state); }
void BM_bpfvm_entry(benchmark::State& state) { bpfvm_hooks(state, true, false, false); }
void BM_bpfvm_return(benchmark::State& state) { bpfvm_hooks(state, false, true, false); }
void BM_bpfvm_entry_and_return(benchmark::State& state) { bpfvm_hooks(state, true, true, false); }
void BM_bpfvm_entry_no_program(benchmark::State& state) { bpfvm_hooks(state, true, false, false, false); }
void BM_bpfvm_return_no_program(benchmark::State& state) { bpfvm_hooks(state, false, true, false, false); }
void BM_bpfvm_entry_breakpoint(benchmark::State& state) { bpfvm_hooks(state, true, false, true); }
void BM_kernel_uprobe(benchmark::State& state) { kernel_uprobe(state, false); }
void BM_kernel_uretprobe(benchmark::State& state) { kernel_uprobe(state, true); }

BENCHMARK(BM_native);
BENCHMARK(BM_bpfvm_entry);
BENCHMARK(BM_bpfvm_return);
BENCHMARK(BM_bpfvm_entry_and_return);
BENCHMARK(BM_bpfvm_entry_no_program);
BENCHMARK(BM_bpfvm_return_no_program);
BENCHMARK(BM_bpfvm_entry_breakpoint);
BENCHMARK(BM_kernel_uprobe);
BENCHMARK(BM_kernel_uretprobe);

}  // namespace

BENCHMARK_MAIN();
