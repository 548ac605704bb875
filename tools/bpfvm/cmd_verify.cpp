// bpfvm verify OBJ|FILE [--section S] [--function F] [--type T] [--strict] [--mem-size N]
//                       [--log-level 0|1|2] [-j]
#include <nlohmann/json.hpp>

#include "bpfvm/asm.hpp"
#include "bpfvm/verifier.hpp"
#include "cli.hpp"
#include "input.hpp"

namespace bpfvm::cli {
namespace {

struct VerifyOpts {
  InputSpec input;
  bool strict = false;
  int log_level = 0;
  bool json = false;
  int64_t mem_size = -1;
};

struct Item {
  std::string section, name;
  std::vector<Insn> insns;
  VerifyOptions options;
  std::string error;  // the program could not be loaded or typed: reported, not verified
};

std::string plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

int verify_command(const VerifyOpts& o) {
  std::string bytes, err;
  if (!read_file(o.input.path, bytes, err)) return fail(kUsage, err);
  if (bytes.empty()) return fail(kFailed, o.input.path + ": the file is empty: no program");
  InputFormat fmt = o.input.format == InputFormat::Auto ? detect_format(bytes) : o.input.format;
  const ProgTypeInfo* forced = nullptr;
  auto lo_r = load_options(o.input);
  if (!lo_r) return fail(kUsage, lo_r.error());
  if (lo_r->prog_type) {
    forced = find_prog_type(*lo_r->prog_type);
    if (!forced) return fail(kUsage, "--type: program type '" + o.input.type + "' is not supported by bpfvm");
  }
  const RuleSet rules = o.strict ? RuleSet::Strict : RuleSet::Privileged;
  std::vector<Item> items;
  std::shared_ptr<Object> object;
  if (fmt == InputFormat::Elf) {
    LoadOptions& lo = *lo_r;
    auto obj = load_object(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), lo, o.input.path);
    // A malformed object is a rejected input (exit 1), as for `object show`.
    if (!obj) return fail(obj.error().code == ErrorCode::Io ? kUsage : kFailed, obj.error(), o.input.path);
    if (Status st = apply_sets(o.input, *obj); !st) return fail(kUsage, st.error(), o.input.path);
    for (const auto& n : obj->notes) std::fprintf(stderr, "bpfvm: note: %s\n", n.c_str());
    for (const auto& w : obj->warnings) std::fprintf(stderr, "bpfvm: warning: %s\n", w.c_str());
    object = std::make_shared<Object>(std::move(*obj));
    std::vector<ObjectProgram> progs;
    if (!o.input.function.empty()) {
      const ObjectProgram* p = object->find_program(o.input.function);
      if (p && (o.input.section.empty() || p->section == o.input.section)) {
        progs.push_back(*p);
      } else if (o.input.section.empty()) {
        auto linked = object->link_function(o.input.function, lo.prog_type);
        if (!linked)
          return fail(linked.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed, linked.error(),
                      o.input.path);
        progs.push_back(std::move(*linked));
      } else {
        return fail(kUsage, "no function '" + o.input.function + "' in section '" + o.input.section + "'");
      }
    } else {
      for (const auto& p : object->programs)
        if (o.input.section.empty() || p.section == o.input.section) progs.push_back(p);
      if (progs.empty())
        return fail(kUsage, o.input.section.empty() ? std::string("the object has no programs")
                                                    : "no program in section '" + o.input.section + "'");
    }
    for (auto& p : progs) {
      Item it;
      it.section = p.section;
      it.name = p.name;
      it.options = verify_options_for(*object, p, rules);
      if (!p.ok())
        it.error = p.error;
      else if (!p.type_known)
        it.error = "section '" + p.section + "' gives no program type: name one with --type TYPE or --type " +
                   p.section + "=TYPE";
      else if (!it.options.type)
        it.error = "program type " + p.type_name() + " is not supported by bpfvm (use --type)";
      it.insns = p.insns;
      items.push_back(std::move(it));
    }
  } else {
    if (!o.input.section.empty() || !o.input.function.empty())
      return fail(kUsage, "--section and --function apply to ELF objects only");
    auto in = read_input(o.input);
    if (!in) return fail(in.error().code == ErrorCode::Io || in.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                         in.error(), o.input.path);
    Item it;
    it.insns = std::move(in->program.insns);
    it.options.type = forced ? forced : find_prog_type(static_cast<uint32_t>(kProgMem));
    it.options.rules = rules;
    items.push_back(std::move(it));
  }
  if (o.mem_size >= 0)
    for (const Item& it : items)
      if (it.options.type->type != static_cast<uint32_t>(kProgMem))
        return fail(kUsage, "--mem-size applies to plain-memory programs (type mem) only; " +
                                (it.section.empty() ? std::string("this program") : it.section + "/" + it.name) +
                                " is " + std::string(it.options.type->name));
  bool any_rejected = false;
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (Item& it : items) {
    std::string prefix = it.section.empty() ? "" : it.section + "/" + it.name + ": ";
    if (!it.error.empty()) {
      // This program alone failed to load; the others are still verified.
      any_rejected = true;
      if (o.json) {
        nlohmann::ordered_json j;
        j["section"] = it.section;
        j["name"] = it.name;
        j["verdict"] = "error";
        j["error"] = it.error;
        arr.push_back(j);
      } else {
        std::printf("%serror: %s\n", prefix.c_str(), it.error.c_str());
      }
      continue;
    }
    it.options.log_level = o.log_level;
    it.options.mem_size = o.mem_size;
    auto r = verify(it.insns, it.options);
    if (!r) return fail(kUsage, r.error(), o.input.path);
    const VerifyReport& rep = *r;
    any_rejected |= !rep.accepted;
    if (o.json) {
      nlohmann::ordered_json j;
      j["section"] = it.section.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(it.section);
      j["name"] = it.name.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(it.name);
      j["verdict"] = rep.accepted ? "accepted" : "rejected";
      j["insns_processed"] = rep.insns_processed;
      j["states"] = rep.states;
      j["peak_states"] = rep.peak_states;
      j["peak_memory"] = rep.peak_memory;
      j["time_us"] = rep.time_us;
      j["error"] = rep.accepted ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(rep.error.to_string());
      if (!rep.accepted && !rep.error.source_line.empty()) j["source"] = rep.error.source_line;
      if (o.log_level > 0) j["log"] = rep.log;
      arr.push_back(j);
      continue;
    }
    if (o.log_level > 0) std::fputs(rep.log.c_str(), stdout);
    if (rep.accepted) {
      std::printf("%saccepted: %s processed, %s (peak %llu), %.1f MiB peak, %llu µs\n", prefix.c_str(),
                  plural(rep.insns_processed, "instruction", "instructions").c_str(),
                  plural(rep.states, "state", "states").c_str(), static_cast<unsigned long long>(rep.peak_states),
                  static_cast<double>(rep.peak_memory) / (1 << 20), static_cast<unsigned long long>(rep.time_us));
    } else {
      std::printf("%s%s", prefix.c_str(), format_rejection(rep, it.insns).c_str());
    }
  }
  if (o.json) std::printf("%s\n", arr.dump().c_str());
  return any_rejected ? kFailed : kOk;
}

RegisterCommand reg("verify", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<VerifyOpts>();
  auto* cmd = app.add_subcommand("verify", "Verify programs: accept what is provably safe, explain rejections");
  cmd->add_option("file", o->input.path, "ELF object, assembly text or raw bytecode")->required();
  cmd->add_option("--section", o->input.section, "Verify only the programs of this ELF section");
  cmd->add_option("--function", o->input.function, "Verify only this function (program or .text subprogram)");
  add_load_options(cmd, o->input, "Program type (bpftool name, e.g. xdp); default: from the section, or mem");
  cmd->add_flag("--strict", o->strict, "Unprivileged rules: no loops, calls or privileged helpers, no pointer leaks, no uninitialised stack reads, return range");
  cmd->add_option("--log-level", o->log_level, "0 none, 1 path to the error, 2 state at every instruction")
      ->check(CLI::Range(0, 2));
  cmd->add_option("--mem-size", o->mem_size, "Plain-memory programs: r1 points to exactly N bytes")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  add_format_option(cmd, o->input);
  cmd->add_flag("-j,--json", o->json, "JSON output (an array, one object per program)");
  cmd->callback([o, &run] { run = [o] { return verify_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
