// Reading a program given on the command line: an ELF object, assembly text (either syntax) or raw
// bytecode, detected from the content unless --format says otherwise.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "bpfvm/insn.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm::cli {

enum class InputFormat { Auto, Elf, Asm, Raw };

struct InputSpec {
  std::string path;
  InputFormat format = InputFormat::Auto;
  std::string section;   // ELF only
  std::string function;  // ELF only
  std::string type;      // program type override (ELF)
};

// Registers --format on a subcommand; the value is parsed into `spec.format`.
void add_format_option(CLI::App* cmd, InputSpec& spec);
// Registers --engine interp|jit.
void add_engine_option(CLI::App* cmd, EngineKind& engine);
// A string option restricted to `choices`; an unknown value gives "--name: 'x' is not one of a, b".
CLI::Option* add_choice_option(CLI::App* cmd, const std::string& name, std::string& value,
                               const std::vector<std::string>& choices, const std::string& help);

// What the command operates on.
struct InputProgram {
  InputFormat format = InputFormat::Raw;
  Program program;
  std::string bytes;  // the file contents
};

// Errors: I/O problems give ErrorCode::Io (exit 2); malformed content gives other codes (exit 1).
Result<InputProgram> read_input(const InputSpec& spec);
InputFormat detect_format(const std::string& bytes);

}  // namespace bpfvm::cli
