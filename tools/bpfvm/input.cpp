#include <CLI/CLI.hpp>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "cli.hpp"
#include "input.hpp"

namespace bpfvm::cli {

void add_format_option(CLI::App* cmd, InputSpec& spec) {
  static const std::map<std::string, InputFormat> kFormats = {
      {"elf", InputFormat::Elf}, {"asm", InputFormat::Asm}, {"raw", InputFormat::Raw}};
  cmd->add_option("--format", spec.format, "Input format (default: detected from the content)")
      ->transform(CLI::CheckedTransformer(kFormats, CLI::ignore_case));
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
