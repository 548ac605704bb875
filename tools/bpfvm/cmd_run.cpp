// bpfvm run FILE [--mem HEX | --data-in PATH] [--engine interp|jit] [--section S] [--function F]
//                [--format elf|asm|raw] [--repeat N] [--budget N] [--no-verify] [--strict] [-j]
#include <chrono>
#include <cctype>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "input.hpp"
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
  uint64_t budget = 0;
  bool json = false;
};

bool parse_hex_bytes(const std::string& text, std::vector<uint8_t>& out, std::string& err) {
  int hi = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isspace(c) || c == ',') {
      if (hi >= 0) {
        err = "--mem: odd number of hex digits before offset " + std::to_string(i);
        return false;
      }
      continue;
    }
    if (c == '0' && hi < 0 && i + 1 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
      ++i;
      continue;
    }
    if (!std::isxdigit(c)) {
      err = "--mem: '" + std::string(1, static_cast<char>(c)) + "' at offset " + std::to_string(i) +
            " is not a hex digit";
      return false;
    }
    int v = std::isdigit(c) ? c - '0' : std::tolower(c) - 'a' + 10;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) {
    err = "--mem: odd number of hex digits";
    return false;
  }
  return true;
}

int run_command(const RunOpts& o) {
  auto in = read_input(o.input);
  if (!in) return fail(in.error().code == ErrorCode::Io || in.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                       in.error(), o.input.path);
  std::vector<uint8_t> mem;
  std::string err;
  if (!o.mem_hex.empty() && !parse_hex_bytes(o.mem_hex, mem, err)) return fail(kUsage, err);
  if (!o.data_in.empty()) {
    std::string data;
    if (!read_file(o.data_in, data, err)) return fail(kUsage, err);
    mem.assign(data.begin(), data.end());
  }
  // Verified programs run in the JIT (the interpreter with --budget); --no-verify runs the program
  // in the checked interpreter, or in the JIT when --engine jit asks for it (trusted code).
  PrepareOptions po = prepare_options(o.engine, o.verify);
  if (o.budget && po.engine == EngineChoice::Jit)
    return fail(kUsage, "--budget needs the interpreter (the JIT does not count instructions)");
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
    if (!read_file(o.ctx_in, data, err)) return fail(kUsage, err);
    ctx_in.assign(data.begin(), data.end());
  }
  auto r = test_run(*prog, mem, ctx_in, o.repeat);
  if (!r) return fail(kFailed, r.error(), "run failed");
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
  cmd->add_option("--budget", o->budget, "Stop with an error after N executed instructions")->check(CLI::PositiveNumber);
  cmd->add_flag("-j,--json", o->json, "JSON output");
  cmd->callback([o, &run] { run = [o] { return run_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
