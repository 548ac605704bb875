#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "cli.hpp"
#include "input.hpp"

namespace bpfvm::cli {

CLI::Option* add_choice_option(CLI::App* cmd, const std::string& name, std::string& value,
                               const std::vector<std::string>& choices, const std::string& help) {
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  return cmd->add_option(name, value, help + " (" + list + ")")
      ->check(CLI::Validator(
          [choices, list](std::string& v) -> std::string {
            for (const auto& c : choices)
              if (c == v) return "";
            return "'" + v + "' is not one of " + list;
          },
          "", ""));
}

void add_format_option(CLI::App* cmd, InputSpec& spec) {
  auto value = std::make_shared<std::string>();
  add_choice_option(cmd, "--format", *value, {"elf", "asm", "raw"}, "Input format (default: detected)")
      ->each([&spec](const std::string& v) {
        spec.format = v == "elf" ? InputFormat::Elf : v == "asm" ? InputFormat::Asm : InputFormat::Raw;
      });
  static std::vector<std::shared_ptr<std::string>> keep;  // the option writes here before `each` runs
  keep.push_back(value);
}

void add_engine_option(CLI::App* cmd, std::optional<EngineKind>& engine) {
  static std::vector<std::shared_ptr<std::string>> keep;
  auto value = std::make_shared<std::string>();
  keep.push_back(value);
  add_choice_option(cmd, "--engine", *value, {"interp", "jit"}, "Execution engine")
      ->each([&engine](const std::string& v) { engine = v == "jit" ? EngineKind::Jit : EngineKind::Interpreter; });
}

EngineChoice engine_choice(const std::optional<EngineKind>& engine) {
  return engine ? bpfvm::engine_choice(*engine) : EngineChoice::Auto;
}

void add_load_options(CLI::App* cmd, InputSpec& spec, const std::string& type_help) {
  cmd->add_option_function<std::vector<std::string>>(
         "--type",
         [&spec](const std::vector<std::string>& values) {
           for (const auto& v : values) {
             if (auto eq = v.find('='); eq != std::string::npos)
               spec.section_types.emplace_back(v.substr(0, eq), v.substr(eq + 1));
             else
               spec.type = v;
           }
         },
         type_help + "; SECTION=TYPE sets one section's type (repeatable)")
      ->type_name("TYPE|SECTION=TYPE");
  cmd->add_option("--btf", spec.btf, "Target BTF for CO-RE relocations (default: /sys/kernel/btf/vmlinux, else bpfvm's own)");
  cmd->add_option("--set", spec.sets, "Set a global variable before load: NAME=VALUE (number, string, true/false; repeatable)")
      ->type_name("NAME=VALUE");
}

Result<LoadOptions> load_options(const InputSpec& spec) {
  LoadOptions lo;
  if (!spec.type.empty()) {
    auto t = prog_type_from_name(spec.type);
    if (!t) return make_error(ErrorCode::InvalidArgument, unknown_type_message("--type", spec.type));
    lo.prog_type = *t;
  }
  for (const auto& [sec, type] : spec.section_types) {
    auto t = prog_type_from_name(type);
    if (sec.empty()) return make_error(ErrorCode::InvalidArgument, "--type =" + type + ": no section named");
    if (!t) return make_error(ErrorCode::InvalidArgument, unknown_type_message("--type " + sec + "=" + type, type));
    lo.section_types[sec] = *t;
  }
  // A BTF file that cannot be read is an error even when the object has no CO-RE relocation to use
  // it for (the loader reads it only then): a mistyped path never goes unnoticed.
  if (!spec.btf.empty() && access(spec.btf.c_str(), R_OK) != 0)
    return make_error(ErrorCode::Io, "--btf " + spec.btf + ": " + std::strerror(errno));
  lo.target_btf = spec.btf;
  return lo;
}

Status apply_sets(const InputSpec& spec, Object& object) {
  for (const auto& s : spec.sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error(ErrorCode::InvalidArgument, "--set " + s + ": expected NAME=VALUE");
    if (Status st = object.set_global_text(s.substr(0, eq), s.substr(eq + 1)); !st) {
      Diagnostic d = st.error();
      d.message = "--set " + s + ": " + d.message;
      return d;
    }
  }
  return {};
}

std::string unknown_type_message(const std::string& option, const std::string& name) {
  std::string list;
  for (const ProgTypeInfo* t : all_prog_types()) list += (list.empty() ? "" : ", ") + std::string(t->name);
  return option + ": unknown program type '" + name + "'; the types are: " + list;
}

InputFormat detect_format(const std::string& bytes) {
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), "\x7f" "ELF", 4) == 0) return InputFormat::Elf;
  // Bytecode nearly always contains NUL bytes (zero registers and offsets); text never does.
  if (bytes.find('\0') != std::string::npos) return InputFormat::Raw;
  return bytes.empty() ? InputFormat::Raw : InputFormat::Asm;
}

Result<InputProgram> read_input(const InputSpec& spec) {
  InputProgram in;
  std::string err;
  if (!read_file(spec.path, in.bytes, err)) return make_error(ErrorCode::Io, err);
  if (in.bytes.empty()) return make_error(ErrorCode::Decode, "the file is empty: no program");
  in.format = spec.format == InputFormat::Auto ? detect_format(in.bytes) : spec.format;
  switch (in.format) {
    case InputFormat::Asm: {
      auto insns = assemble_auto(in.bytes);
      if (!insns) return insns.error();
      in.program = Program{spec.path, std::move(*insns)};
      break;
    }
    case InputFormat::Raw: {
      auto insns = decode_bytes(std::span(reinterpret_cast<const uint8_t*>(in.bytes.data()), in.bytes.size()));
      if (!insns) return insns.error();
      in.program = Program{spec.path, std::move(*insns)};
      break;
    }
    case InputFormat::Elf: {
      auto lo_r = load_options(spec);
      if (!lo_r) return lo_r.error();
      LoadOptions& lo = *lo_r;
      auto obj = load_object(std::span(reinterpret_cast<const uint8_t*>(in.bytes.data()), in.bytes.size()), lo,
                             spec.path);
      if (!obj) return obj.error();
      if (Status st = apply_sets(spec, *obj); !st) return st.error();
      for (const auto& n : obj->notes) std::fprintf(stderr, "bpfvm: note: %s\n", n.c_str());
      for (const auto& w : obj->warnings) std::fprintf(stderr, "bpfvm: warning: %s\n", w.c_str());
      in.object = std::make_shared<Object>(std::move(*obj));
      const Object& o = *in.object;
      const ObjectProgram* chosen = nullptr;
      if (!spec.function.empty()) {
        chosen = o.find_program(spec.function);
        if (chosen && !spec.section.empty() && chosen->section != spec.section) chosen = nullptr;
        if (!chosen && spec.section.empty()) {
          // A .text subprogram run on its own.
          auto linked = o.link_function(spec.function, lo.prog_type);
          if (!linked) return linked.error();
          in.objprog = std::move(*linked);
        } else if (!chosen) {
          return make_error(ErrorCode::InvalidArgument,
                            "no function '" + spec.function + "' in section '" + spec.section + "'");
        }
      } else {
        std::vector<const ObjectProgram*> cands;
        for (const auto& p : o.programs)
          if (spec.section.empty() || p.section == spec.section) cands.push_back(&p);
        if (cands.empty())
          return make_error(ErrorCode::InvalidArgument,
                            spec.section.empty() ? std::string("the object has no programs")
                                                 : "no program in section '" + spec.section + "'");
        if (cands.size() > 1) {
          std::string list;
          for (auto* p : cands) list += (list.empty() ? "" : ", ") + p->section + "/" + p->name;
          return make_error(ErrorCode::InvalidArgument,
                            "the object has " + std::to_string(cands.size()) +
                                " programs; choose one with --section or --function (" + list + ")");
        }
        chosen = cands[0];
      }
      if (chosen) in.objprog = *chosen;
      if (!in.objprog->ok())
        return make_error(ErrorCode::Load, in.objprog->section + "/" + in.objprog->name + ": " + in.objprog->error);
      in.program = in.objprog->to_program();
      break;
    }
    default:
      break;
  }
  if (!spec.section.empty() || !spec.function.empty())
    if (in.format != InputFormat::Elf)
      return make_error(ErrorCode::InvalidArgument, "--section and --function apply to ELF objects only");
  return in;
}

Result<const ProgTypeInfo*> input_prog_type(const InputSpec& spec, const InputProgram& in) {
  const ProgTypeInfo* t = nullptr;
  if (!spec.type.empty()) {
    auto id = prog_type_from_name(spec.type);
    if (!id) return make_error(ErrorCode::InvalidArgument, unknown_type_message("--type", spec.type));
    t = find_prog_type(*id);
  } else if (in.objprog && in.objprog->type_known && in.objprog->type) {
    t = find_prog_type(in.objprog->type);
  } else {
    t = find_prog_type(static_cast<uint32_t>(kProgMem));
  }
  if (!t) return make_error(ErrorCode::Unsupported, "program type not supported by bpfvm");
  return t;
}

Result<PreparedProgram> prepare_input(const InputSpec& spec, const InputProgram& in, const PrepareOptions& po,
                                      std::shared_ptr<LoadedObject>& live) {
  auto type = input_prog_type(spec, in);
  if (!type) return type.error();
  if (in.object) {
    auto l = instantiate(*in.object);
    if (!l) return l.error();
    live = std::make_shared<LoadedObject>(std::move(*l));
    return prepare_program(*in.objprog, *live, *type, po);
  }
  return prepare_program(in.program, **type, po);
}

void add_verify_options(CLI::App* cmd, VerifyFlags& flags) {
  auto* nv = cmd->add_flag("--no-verify", flags.no_verify,
                           "Run without verification (unsafe code: the interpreter then checks every memory access)");
  cmd->add_flag("--strict", flags.strict, "Verify with the unprivileged rules (no loops, calls or privileged helpers, no pointer leaks, ...)")->excludes(nv);
}

PrepareOptions prepare_options(const std::optional<EngineKind>& engine, const VerifyFlags& flags) {
  PrepareOptions po;
  po.engine = engine_choice(engine);
  po.verify = !flags.no_verify;
  po.rules = flags.strict ? RuleSet::Strict : RuleSet::Privileged;
  return po;
}

int fail_rejection(const std::string& rejection) {
  std::fprintf(stderr, "bpfvm: %s", rejection.c_str());
  if (rejection.find("privileged rules") != std::string::npos)
    std::fprintf(stderr, "bpfvm: the privileged rules apply without --strict\n");
  std::fprintf(stderr, "bpfvm: the verifier rejected the program (--no-verify runs it unverified, in the checked interpreter)\n");
  return kFailed;
}

}  // namespace bpfvm::cli
