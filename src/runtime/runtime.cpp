#include "bpfvm/runtime.hpp"

#include "bpfvm/map.hpp"

#include <atomic>
#include <chrono>
#include <fmt/format.h>

namespace bpfvm {

namespace {

// The engine and checking mode a program runs with. Unverified code runs only in the checked
// interpreter, under an instruction budget (kUnverifiedInsnBudget unless exec sets one): nothing
// proved that it ends. The JIT counts no instructions, so it is refused unverified code.
Result<ExecOptions> choose_engine(const PrepareOptions& o, bool verified) {
  ExecOptions e = o.exec;
  EngineChoice want = o.engine;
  if (want == EngineChoice::Auto && o.exec.engine == EngineKind::Jit) want = EngineChoice::Jit;
  if (verified) {
    // A budget (instruction counting) or checked accesses need the interpreter; otherwise the JIT
    // unless asked not to.
    const bool needs_interp = e.insn_budget > 0 || e.checked;
    e.engine = want == EngineChoice::Interpreter || (want == EngineChoice::Auto && needs_interp)
                   ? EngineKind::Interpreter
                   : EngineKind::Jit;
  } else {
    if (want == EngineChoice::Jit)
      return make_error(ErrorCode::InvalidArgument,
                        "unverified code does not run in the JIT: the JIT counts no instructions, so nothing would "
                        "stop a program that never ends (verify it, or run it in the checked interpreter)");
    e.engine = EngineKind::Interpreter;
    e.checked = true;
    if (e.insn_budget == 0) e.insn_budget = kUnverifiedInsnBudget;
  }
  return e;
}

// Verification, helper check, context rewrite, executable. `verify_insns` are the instructions in
// the form the verifier takes (pseudo map references), `program` the runnable form (same slots);
// empty: the program's own instructions.
Result<PreparedProgram> prepare_common(Program program, std::span<const Insn> verify_insns, VerifyOptions vo,
                                       const ProgTypeInfo& type, const PrepareOptions& options, bool gpl = true) {
  const HelperSet& helpers = options.helpers ? *options.helpers : HelperSet::kernel();
  if (auto st = check_structure(program.insns); !st) return st.error();
  if (verify_insns.empty()) verify_insns = program.insns;  // read before the context rewrite below
  std::optional<CtxBaseFacts> facts;
  bool verified = false;
  if (options.verify) {
    vo.type = &type;
    vo.rules = options.rules;
    if (options.helpers) vo.helpers = options.helpers;
    if (type.type == kProgMem) vo.mem_size = options.mem_size;
    auto rep = verify(verify_insns, vo);
    if (!rep) return rep.error();
    if (options.report) *options.report = *rep;
    if (!rep->accepted && options.rejection) *options.rejection = format_rejection(*rep, verify_insns);
    if (!rep->accepted) {
      Diagnostic d = rep->error;
      d.code = ErrorCode::Verify;  // also for the verifier's budget: the program is rejected
      return d;
    }
    facts = rep->ctx_base_facts();
    verified = true;
    // An instruction the verifier never reached may be a failed CO-RE relocation's poison (code
    // guarded by bpf_core_field_exists() and the like): the kernel removes such dead code; here it
    // becomes a jump to itself, which nothing executes.
    for (size_t pc = 0; pc < program.insns.size() && pc < rep->facts.size(); ++pc) {
      Insn& in = program.insns[pc];
      if (in.op == Op::CALL_HELPER && in.imm == kCorePoisonHelper && !rep->facts[pc].visited) in = Insn{Op::JA, 0, 0, -1, 0};
    }
  }
  if (auto st = helpers.check_program(program.insns, type.type, gpl); !st) return st.error();
  if (type.has_ctx) {
    auto rewritten = rewrite_ctx_accesses(program.insns, type, facts ? &*facts : nullptr);
    if (!rewritten) return rewritten.error();
    program.insns = std::move(*rewritten);
  }
  auto eo = choose_engine(options, verified);
  if (!eo) return eo.error();
  auto exe = Executable::create(std::move(program), helpers.table_for(type.type), *eo);
  if (!exe) return exe.error();
  PreparedProgram p;
  p.type = &type;
  p.exe = std::move(*exe);
  p.verified = verified;
  return p;
}

std::atomic<uint32_t> g_next_prog_id{1};

const ProgTypeInfo* object_prog_type(const ObjectProgram& prog) {
  return find_prog_type(prog.type_known && prog.type ? prog.type : static_cast<uint32_t>(kProgMem));
}

Result<PreparedProgram> prepare_object_program(const ObjectProgram& prog, const LoadedObject& live,
                                               const ProgTypeInfo* type, const PrepareOptions& options) {
  if (!prog.ok()) return make_error(ErrorCode::Load, fmt::format("program {}/{}: {}", prog.section, prog.name, prog.error));
  if (!options.verify)
    for (const CoreReloResult& r : prog.core_relos)
      if (r.poisoned)
        return make_error(ErrorCode::Load,
                          fmt::format("program {}/{}: insn {}: CO-RE relocation {} failed ({}); only the verifier can "
                                      "show the instruction is unreachable, so it cannot run unverified",
                                      prog.section, prog.name, r.insn, r.description, r.reason));
  if (!type) type = object_prog_type(prog);
  if (!type)
    return make_error(ErrorCode::Load, fmt::format("program {}: unknown program type {}", prog.name, prog.type));
  auto program = live.program(prog);
  if (!program) return program.error();
  VerifyOptions vo;
  if (options.verify) {
    if (!live.object)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("program {}: cannot verify it, the LoadedObject does not know its object "
                                    "(create it with instantiate())", prog.name));
    vo = verify_options_for(*live.object, prog, options.rules);
  }
  const bool gpl = !live.object || license_is_gpl_compatible(live.object->license);
  auto p = prepare_common(std::move(*program), prog.insns, std::move(vo), *type, options, gpl);
  if (!p) {
    Diagnostic d = p.error();
    if (d.code == ErrorCode::Verify && options.rejection && !options.rejection->empty())
      *options.rejection = prog.section + "/" + prog.name + ": " + *options.rejection;
    if (d.pc >= 0 && d.source_line.empty()) d.source_line = prog.source_at(static_cast<size_t>(d.pc));
    return d;
  }
  p->regions = live.data_regions;
  return p;
}

// Static tail-call targets: prog_array maps whose BTF `values` name programs get those programs,
// prepared like the main one (libbpf does the same at load). Slots already filled are kept.
Status fill_prog_arrays(const LoadedObject& live, const ProgTypeInfo& main_type, const PrepareOptions& options) {
  if (!live.object) return {};
  const Object& obj = *live.object;
  for (size_t mi = 0; mi < obj.maps.size() && mi < live.maps.size(); ++mi) {
    const ObjectMap& om = obj.maps[mi];
    if (om.spec.type != kMapProgArray) continue;
    auto* pa = dynamic_cast<ProgArrayMap*>(live.maps[mi].get());
    if (!pa) continue;
    for (const MapSlotInit& s : om.slots) {
      if (s.program.empty() || s.index >= om.spec.max_entries || pa->prog_at(s.index)) continue;
      const ObjectProgram* target = obj.find_program(s.program);
      if (!target)
        return make_error(ErrorCode::Load, fmt::format("prog_array '{}' slot {} names program '{}', which the object "
                                                       "does not have", om.spec.name, s.index, s.program));
      const ProgTypeInfo* t = target->type_known && target->type ? object_prog_type(*target) : &main_type;
      PrepareOptions to = options;
      to.report = nullptr;  // the report and rejection text describe the target
      std::string target_rejection;
      if (options.rejection) to.rejection = &target_rejection;
      auto p = prepare_object_program(*target, live, t, to);
      if (!p) {
        Diagnostic d = p.error();
        d.message = fmt::format("tail-call target {} (prog_array '{}' slot {}): {}", target->name, om.spec.name,
                                s.index, d.message);
        if (options.rejection) *options.rejection = target_rejection;
        return d;
      }
      std::shared_ptr<const Executable> exe(std::move(p->exe));
      if (long err = pa->set_prog(s.index, std::shared_ptr<const void>(exe, exe.get()), g_next_prog_id++); err != 0)
        return make_error(ErrorCode::Load, fmt::format("prog_array '{}': cannot store program {} in slot {} ({})",
                                                       om.spec.name, target->name, s.index, err));
    }
  }
  return {};
}

}  // namespace

Result<PreparedProgram> prepare_program(Program program, const ProgTypeInfo& type, const PrepareOptions& options) {
  return prepare_common(std::move(program), {}, VerifyOptions{}, type, options);
}

Result<PreparedProgram> prepare_program(const ObjectProgram& prog, const LoadedObject& live, const ProgTypeInfo* type,
                                        const PrepareOptions& options) {
  auto p = prepare_object_program(prog, live, type, options);
  if (!p) return p;
  if (auto st = fill_prog_arrays(live, *p->type, options); !st) return st.error();
  return p;
}

Result<TestRunResult> test_run(const PreparedProgram& prog, std::span<const uint8_t> data_in,
                               std::span<const uint8_t> ctx_in, uint64_t repeat, const TestRunOptions& options) {
  auto once = [&](TestRunResult* out) -> Status {
    auto ctx = make_test_run(*prog.type, data_in, ctx_in, options);
    if (!ctx) return ctx.error();
    auto& regs = (*ctx)->args().regions;
    regs.insert(regs.end(), prog.regions.begin(), prog.regions.end());
    auto r = prog.exe->run((*ctx)->args());  // a helper's callback fault fails the run (Executable::run)
    if (!r) return r.error();
    if (out) {
      out->retval = *r;
      out->data_out = (*ctx)->data_out();
      out->ctx_out = (*ctx)->ctx_out();
    }
    return {};
  };
  TestRunResult res;
  if (auto st = once(&res); !st) return st.error();
  if (repeat > 0) {
    // Contexts are built outside the timed region, as the kernel times only the program.
    std::vector<std::unique_ptr<TestRunContext>> ctxs;
    uint64_t total = 0;
    const uint64_t batch = 256;
    for (uint64_t done = 0; done < repeat;) {
      uint64_t n = std::min(batch, repeat - done);
      ctxs.clear();
      for (uint64_t i = 0; i < n; ++i) {
        auto ctx = make_test_run(*prog.type, data_in, ctx_in, options);
        if (!ctx) return ctx.error();
        ctxs.push_back(std::move(*ctx));
      }
      auto t0 = std::chrono::steady_clock::now();
      for (auto& c : ctxs) {
        auto r = prog.exe->run(c->args());
        if (!r) return r.error();
      }
      total += static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
      done += n;
    }
    res.duration_ns = total / repeat;
  }
  return res;
}

}  // namespace bpfvm
