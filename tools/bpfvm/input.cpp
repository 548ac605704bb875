#include <CLI/CLI.hpp>
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

void add_engine_option(CLI::App* cmd, EngineKind& engine) {
  static std::vector<std::shared_ptr<std::string>> keep;
  auto value = std::make_shared<std::string>();
  keep.push_back(value);
  add_choice_option(cmd, "--engine", *value, {"interp", "jit"}, "Execution engine")
      ->each([&engine](const std::string& v) { engine = v == "jit" ? EngineKind::Jit : EngineKind::Interpreter; });
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
    default:
      return make_error(ErrorCode::Unsupported, "ELF objects are not supported by this command yet");
  }
  if (!spec.section.empty() || !spec.function.empty())
    if (in.format != InputFormat::Elf)
      return make_error(ErrorCode::InvalidArgument, "--section and --function apply to ELF objects only");
  return in;
}

}  // namespace bpfvm::cli
