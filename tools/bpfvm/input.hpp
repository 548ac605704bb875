// Reading a program given on the command line: an ELF object, assembly text (either syntax) or raw
// bytecode, detected from the content unless --format says otherwise.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "bpfvm/insn.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm::cli {

enum class InputFormat { Auto, Elf, Asm, Raw };

struct InputSpec {
  std::string path;
  InputFormat format = InputFormat::Auto;
  std::string section;   // ELF only
  std::string function;  // ELF only
  std::string type;      // program type override (ELF): --type TYPE
  std::vector<std::pair<std::string, std::string>> section_types;  // --type SECTION=TYPE
  std::string btf;       // --btf FILE: target BTF for CO-RE relocations
  std::vector<std::string> sets;  // --set NAME=VALUE: global variables before load
};

// Registers the options of every verb that loads an object: --type TYPE | SECTION=TYPE (repeatable),
// --btf FILE, --set NAME=VALUE (repeatable).
void add_load_options(CLI::App* cmd, InputSpec& spec, const std::string& type_help);
// LoadOptions from them (types checked; InvalidArgument errors name the bad value).
Result<LoadOptions> load_options(const InputSpec& spec);
// Applies --set to a loaded object (errors name the variable and why the value does not fit).
Status apply_sets(const InputSpec& spec, Object& object);

// Registers --format on a subcommand; the value is parsed into `spec.format`.
void add_format_option(CLI::App* cmd, InputSpec& spec);
// Registers --engine interp|jit (unset: the default, see EngineChoice::Auto).
void add_engine_option(CLI::App* cmd, std::optional<EngineKind>& engine);
EngineChoice engine_choice(const std::optional<EngineKind>& engine);
// A string option restricted to `choices`; an unknown value gives "--name: 'x' is not one of a, b".
CLI::Option* add_choice_option(CLI::App* cmd, const std::string& name, std::string& value,
                               const std::vector<std::string>& choices, const std::string& help);

// What the command operates on.
struct InputProgram {
  InputFormat format = InputFormat::Raw;
  Program program;    // raw/asm: the program; ELF: the chosen program's linked code
  std::string bytes;  // the file contents
  std::shared_ptr<Object> object;  // ELF only
  std::optional<ObjectProgram> objprog;  // ELF only: the chosen program
};

// The program type: --type, else the object program's own, else bpfvm's plain-memory type.
Result<const ProgTypeInfo*> input_prog_type(const InputSpec& spec, const InputProgram& in);

// Everything up to a runnable program: maps created, verified (unless options.verify is false),
// helpers checked, context accesses rewritten. `live` keeps the object's maps alive as long as the
// program runs.
Result<PreparedProgram> prepare_input(const InputSpec& spec, const InputProgram& in, const PrepareOptions& options,
                                      std::shared_ptr<LoadedObject>& live);

// Registers --no-verify and --strict (the verifier's rule set) on a subcommand.
struct VerifyFlags {
  bool no_verify = false;
  bool strict = false;
};
void add_verify_options(CLI::App* cmd, VerifyFlags& flags);
// What --engine, --no-verify and --strict ask for.
PrepareOptions prepare_options(const std::optional<EngineKind>& engine, const VerifyFlags& flags);
// Prints a verifier rejection (PrepareOptions::rejection: message, instruction, source line,
// explanation) with a hint about --no-verify, and returns kFailed.
int fail_rejection(const std::string& rejection);

// Errors: I/O problems give ErrorCode::Io (exit 2); malformed content gives other codes (exit 1).
Result<InputProgram> read_input(const InputSpec& spec);
InputFormat detect_format(const std::string& bytes);

}  // namespace bpfvm::cli
