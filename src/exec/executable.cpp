// Executable: links a program against a helper table and hands it to an engine.
#include <fmt/format.h>

#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "exec/engine.hpp"

namespace bpfvm {

namespace {
// initial-exec: set and restored by every run that calls helpers (see task_helpers.cpp's t_task).
thread_local constinit RunContext* t_current __attribute__((tls_model("initial-exec"))) = nullptr;

uint64_t conformance_helper_identity(uint64_t a, uint64_t, uint64_t, uint64_t, uint64_t) { return a; }
}  // namespace

RunContext* current_run() { return t_current; }

namespace detail {
ScopedRunContext::ScopedRunContext(RunContext* ctx) : prev_(t_current) { t_current = ctx; }
ScopedRunContext::~ScopedRunContext() { t_current = prev_; }
}  // namespace detail

const char* engine_name(EngineKind kind) { return kind == EngineKind::Jit ? "jit" : "interp"; }

void HelperTable::add(int32_t id, std::string name, HelperFn fn, bool tail_call) {
  add(HelperDef{id, std::move(name), fn, tail_call});
}

void HelperTable::add(HelperDef def) { by_id_[def.id] = std::move(def); }

const HelperDef* HelperTable::find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

std::string_view HelperTable::name_of(int32_t id) const {
  const HelperDef* h = find(id);
  return h ? std::string_view(h->name) : std::string_view();
}

HelperTable HelperTable::conformance() {
  HelperTable t;
  t.add(5, "identity", &conformance_helper_identity);
  return t;
}

Result<std::unique_ptr<Executable>> Executable::create(Program program, const HelperTable& helpers,
                                                       ExecOptions options) {
  if (auto st = check_structure(program.insns); !st) return st.error();
  std::unique_ptr<Executable> exe(new Executable());
  exe->program_ = std::move(program);
  exe->helpers_ = helpers;
  exe->options_ = options;

  detail::LinkedProgram linked;
  linked.program = &exe->program_;
  linked.exe = exe.get();
  const auto& insns = exe->program_.insns;
  linked.helper_at.assign(insns.size(), nullptr);
  int32_t max_id = -1;
  for (const auto& [id, def] : exe->helpers_.all())
    if (id >= 0 && id < 65536 && id > max_id) max_id = id;
  linked.by_id.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [id, def] : exe->helpers_.all())
    if (id >= 0 && id <= max_id) linked.by_id[id] = &def;
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    const Insn& in = insns[pc];
    if (in.op == Op::CALL_HELPER || in.op == Op::CALLX) exe->calls_helpers_ = true;
    if (in.op == Op::CALL_HELPER) {
      const HelperDef* h = exe->helpers_.find(static_cast<int32_t>(in.imm));
      if (!h || !h->fn)
        return make_error(ErrorCode::Link, fmt::format("call to unknown helper id {}", in.imm), pc);
      linked.helper_at[pc] = h;
    } else if (in.op == Op::CALL_KFUNC) {
      return make_error(ErrorCode::Link, fmt::format("kfunc calls (BTF id {}) are not supported", in.imm), pc);
    } else if (in.op == Op::LDDW_MAP_FD || in.op == Op::LDDW_MAP_VALUE_FD || in.op == Op::LDDW_MAP_IDX ||
               in.op == Op::LDDW_MAP_VALUE_IDX || in.op == Op::LDDW_VAR_ADDR) {
      return make_error(ErrorCode::Link,
                        fmt::format("unresolved {} (load the program from its object so maps are created)",
                                    op_info(in.op).mnemonic),
                        pc);
    }
  }
  auto engine = options.engine == EngineKind::Jit ? detail::make_jit(linked, options)
                                                  : detail::make_interpreter(linked, options);
  if (!engine) return engine.error();
  exe->engine_ = std::move(engine.value());
  exe->direct_ = exe->engine_->direct_entry();
  return exe;
}

Executable::~Executable() = default;

Result<uint64_t> Executable::run_engine(const RunArgs& args, RunStats* stats) const {
  if (calls_helpers_) {
    // Map elements a helper returned stay valid until the run ends (the kernel's rcu_read_lock).
    MapReadSection section;
    // A helper that calls back into the program (bpf_loop, for_each_map_elem) cannot fail the run
    // itself: it records the callback's fault and returns an error to the program. The run fails
    // with that fault here, so every caller (API, hooks, test runs, C API) sees it.
    (void)take_helper_fault();
    auto r = engine_->run(args, stats);
    if (auto fault = take_helper_fault()) return *fault;
    return r;
  }
  return engine_->run(args, stats);
}

Result<uint64_t> Executable::run_on_memory(uint8_t* mem, size_t len, RunStats* stats) const {
  RunArgs args;
  args.r1 = reinterpret_cast<uint64_t>(mem);
  args.r2 = len;
  if (mem && len) args.regions.push_back(MemRegion{reinterpret_cast<uint64_t>(mem), len, true, "mem"});
  args.packet = mem;
  args.packet_len = len;
  return run(args, stats);
}

}  // namespace bpfvm
