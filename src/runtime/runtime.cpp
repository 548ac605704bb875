#include "bpfvm/runtime.hpp"

#include <chrono>
#include <fmt/format.h>

namespace bpfvm {

Result<PreparedProgram> prepare_program(Program program, const ProgTypeInfo& type, const PrepareOptions& options) {
  const HelperSet& helpers = options.helpers ? *options.helpers : HelperSet::kernel();
  if (auto st = check_structure(program.insns); !st) return st.error();
  if (auto st = helpers.check_program(program.insns, type.type); !st) return st.error();
  if (type.has_ctx) {
    auto rewritten = rewrite_ctx_accesses(program.insns, type);
    if (!rewritten) return rewritten.error();
    program.insns = std::move(*rewritten);
  }
  auto exe = Executable::create(std::move(program), helpers.table_for(type.type), options.exec);
  if (!exe) return exe.error();
  PreparedProgram p;
  p.type = &type;
  p.exe = std::move(*exe);
  return p;
}

Result<PreparedProgram> prepare_program(const ObjectProgram& prog, const LoadedObject& live, const ProgTypeInfo* type,
                                        const PrepareOptions& options) {
  if (!type) type = find_prog_type(prog.type_known && prog.type ? prog.type : static_cast<uint32_t>(kProgMem));
  if (!type)
    return make_error(ErrorCode::Load, fmt::format("program {}: unknown program type {}", prog.name, prog.type));
  auto program = live.program(prog);
  if (!program) return program.error();
  auto p = prepare_program(std::move(*program), *type, options);
  if (!p) {
    Diagnostic d = p.error();
    if (d.pc >= 0 && d.source_line.empty()) d.source_line = prog.source_at(static_cast<size_t>(d.pc));
    return d;
  }
  p->regions = live.data_regions;
  return p;
}

Result<TestRunResult> test_run(const PreparedProgram& prog, std::span<const uint8_t> data_in,
                               std::span<const uint8_t> ctx_in, uint64_t repeat, const TestRunOptions& options) {
  auto once = [&](TestRunResult* out) -> Status {
    auto ctx = make_test_run(*prog.type, data_in, ctx_in, options);
    if (!ctx) return ctx.error();
    auto& regs = (*ctx)->args().regions;
    regs.insert(regs.end(), prog.regions.begin(), prog.regions.end());
    (void)take_helper_fault();
    auto r = prog.exe->run((*ctx)->args());
    if (auto fault = take_helper_fault()) return *fault;
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
