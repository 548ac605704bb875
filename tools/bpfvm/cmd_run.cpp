// bpfvm run FILE [--mem HEX | --data-in PATH] [--engine interp|jit] [--section S] [--function F]
//                [--format elf|asm|raw] [--repeat N] [--budget N] [--no-verify] [--strict] [-j]
#include <chrono>
#include <cctype>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "input.hpp"
#include "parse.hpp"
#include "bpfvm/runtime.hpp"

namespace bpfvm::cli {
namespace {

struct RunOpts {
  InputSpec input;
  std::string mem_hex;
  std::string data_in;
  std::string ctx_in;
  std::optional<EngineKind> engine;
  VerifyFlags verify;
  uint64_t repeat = 0;
  std::string budget_text;
  uint64_t budget = 0;
  bool json = false;
};

int run_command(RunOpts& o) {
  if (!o.budget_text.empty()) {
    std::string err;
    if (!parse_number(o.budget_text, UINT64_MAX, o.budget, err)) return fail(kUsage, "--budget: " + err);
    // 0 would mean "no budget", which unverified code may not have and verified code does not need.
    if (o.budget == 0)
      return fail(kUsage, "--budget: 0 is not a budget; give at least 1 instruction (without --budget, "
                          "verified programs run without one, unverified ones with " +
                              std::to_string(kUnverifiedInsnBudget) + ")");
  }
  auto in = read_input(o.input);
  if (!in) return fail(in.error().code == ErrorCode::Io || in.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                       in.error(), o.input.path);
  std::vector<uint8_t> mem;
  std::string err;
  if (!o.mem_hex.empty() && !parse_hex_bytes(o.mem_hex, mem, err)) return fail(kUsage, "--mem: " + err);
  if (!o.data_in.empty()) {
    std::string data;
    if (!read_file(o.data_in, data, err, kMaxDataFile, "--data-in")) return fail(kUsage, "--data-in: " + err);
    mem.assign(data.begin(), data.end());
  }
  // Verified programs run in the JIT (the interpreter with --budget); --no-verify runs the program
  // in the checked interpreter under an instruction budget (--budget, default kUnverifiedInsnBudget).
  PrepareOptions po = prepare_options(o.engine, o.verify);
  if (o.budget && po.engine == EngineChoice::Jit)
    return fail(kUsage, "--budget needs the interpreter (the JIT does not count instructions)");
  if (o.verify.no_verify && po.engine == EngineChoice::Jit)
    return fail(kUsage, "--no-verify runs in the checked interpreter only: the JIT counts no instructions, so "
                        "nothing would stop unverified code that never ends");
  po.exec.insn_budget = o.budget;
  if (!o.mem_hex.empty() || !o.data_in.empty()) po.mem_size = static_cast<int64_t>(mem.size());
  std::string rejection;
  po.rejection = &rejection;
  std::shared_ptr<LoadedObject> live;
  auto prog = prepare_input(o.input, *in, po, live);
  if (!prog) {
    if (prog.error().code == ErrorCode::Verify && !rejection.empty()) return fail_rejection(rejection);
    return fail(prog.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed, prog.error(), o.input.path);
  }
  std::vector<uint8_t> ctx_in;
  if (!o.ctx_in.empty()) {
    std::string data;
    if (!read_file(o.ctx_in, data, err, kMaxCtxFile, "--ctx-in")) return fail(kUsage, "--ctx-in: " + err);
    ctx_in.assign(data.begin(), data.end());
  }
  auto r = test_run(*prog, mem, ctx_in, o.repeat);
  if (!r) {
    if (r.error().code == ErrorCode::Budget && o.budget_text.empty())
      return fail(kFailed, "run failed: " + r.error().to_string() +
                               " (the default budget of unverified code; --budget N changes it)");
    return fail(kFailed, r.error(), "run failed");
  }
  uint64_t duration = r->duration_ns;
  uint64_t retval = r->retval;
  if (o.json) {
    nlohmann::ordered_json j;
    j["retval"] = retval;
    if (o.repeat > 0) j["duration"] = duration;
    std::printf("%s\n", j.dump().c_str());
  } else if (o.repeat > 0) {
    std::printf("Return value: %llu, duration (average): %lluns\n", static_cast<unsigned long long>(retval),
                static_cast<unsigned long long>(duration));
  } else {
    std::printf("Return value: %llu\n", static_cast<unsigned long long>(retval));
  }
  return kOk;
}

RegisterCommand reg("run", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<RunOpts>();
  auto* cmd = app.add_subcommand("run", "Run a program once (or --repeat N times) and print its return value");
  cmd->add_option("file", o->input.path, "Program: ELF object, assembly text or raw bytecode")->required();
  auto* mem = cmd->add_option("--mem", o->mem_hex, "Input memory as hex bytes (r1 = memory, r2 = length)");
  cmd->add_option("--data-in", o->data_in, "Input memory from a file")->excludes(mem);
  add_engine_option(cmd, o->engine);
  add_verify_options(cmd, o->verify);
  cmd->add_option("--ctx-in", o->ctx_in, "Context (the uapi struct of the program type) from a file");
  add_load_options(cmd, o->input, "Program type (bpftool name: xdp, socket_filter, sched_cls, ...)");
  cmd->add_option("--section", o->input.section, "ELF section of the program");
  cmd->add_option("--function", o->input.function, "ELF function (program or subprogram) to run");
  add_format_option(cmd, o->input);
  cmd->add_option("--repeat", o->repeat, "Run N times and report the average duration")->check(CLI::Range(1ull, 1ull << 40));
  cmd->add_option("--budget", o->budget_text,
                  "Stop with an error after N executed instructions (unverified programs: default " +
                      std::to_string(kUnverifiedInsnBudget) + ")");
  cmd->add_flag("-j,--json", o->json, "JSON output");
  cmd->callback([o, &run] { run = [o] { return run_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
