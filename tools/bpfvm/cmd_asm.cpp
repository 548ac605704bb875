// bpfvm asm FILE.s -o FILE.bin [--syntax auto|kernel|conformance]
// bpfvm disasm FILE [--syntax kernel|conformance] [--format elf|asm|raw] [--section S] [--function F] [--raw]
#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/jit.hpp"
#include "cli.hpp"
#include "input.hpp"

namespace bpfvm::cli {
namespace {

enum class SyntaxChoice { Auto, Kernel, Conformance };
const std::map<std::string, SyntaxChoice> kSyntaxes = {
    {"auto", SyntaxChoice::Auto}, {"kernel", SyntaxChoice::Kernel}, {"conformance", SyntaxChoice::Conformance}};

struct AsmOpts {
  std::string in, out;
  SyntaxChoice syntax = SyntaxChoice::Auto;
  std::string syntax_name;
};

int asm_command(const AsmOpts& o) {
  std::string text, err;
  if (!read_file(o.in, text, err)) return fail(kUsage, err);
  auto insns = o.syntax == SyntaxChoice::Auto ? assemble_auto(text)
                                               : assemble(text, o.syntax == SyntaxChoice::Kernel ? Syntax::Kernel
                                                                                                  : Syntax::Conformance);
  if (!insns) return fail(kFailed, insns.error(), o.in);
  if (auto st = check_structure(*insns); !st) return fail(kFailed, st.error(), o.in);
  auto bytes = to_bytes(encode(*insns));
  if (!write_file(o.out, bytes.data(), bytes.size(), err)) return fail(kUsage, err);
  return kOk;
}

struct DisasmOpts {
  InputSpec input;
  SyntaxChoice syntax = SyntaxChoice::Kernel;
  std::string syntax_name;
  bool raw = false;
  bool jited = false;
};

int disasm_command(const DisasmOpts& o) {
  auto in = read_input(o.input);
  if (!in) return fail(in.error().code == ErrorCode::Io || in.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                       in.error(), o.input.path);
  DisasmOptions d;
  d.syntax = o.syntax == SyntaxChoice::Conformance ? Syntax::Conformance : Syntax::Kernel;
  d.show_raw = o.raw;
  d.helper_name = [](int32_t id) { return HelperSet::kernel().name_of(id); };
  if (o.jited) {
    // The generated x86-64 code, interleaved with the BPF instruction each piece came from.
    // The listing is of the code as compiled; it does not need the program to be verified.
    PrepareOptions po;
    po.engine = EngineChoice::Jit;
    po.verify = false;
    std::shared_ptr<LoadedObject> live;
    auto prog = prepare_input(o.input, *in, po, live);
    if (!prog) return fail(kFailed, prog.error(), o.input.path);
    auto listing = jit_disassemble(*prog->exe, d);
    if (!listing) return fail(kFailed, listing.error(), o.input.path);
    std::fputs(listing->c_str(), stdout);
    return kOk;
  }
  const auto& insns = in->program.insns;
  if (!in->objprog || in->objprog->lines.empty() || d.syntax != Syntax::Kernel) {
    std::fputs(disassemble(insns, d).c_str(), stdout);
    return kOk;
  }
  // ELF with line info: the C source line before the instructions it produced, as bpftool prints.
  const auto& lines = in->objprog->lines;
  size_t li = 0;
  std::string out, last;
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    if (insns[pc].op == Op::LDDW_HI) continue;
    while (li < lines.size() && lines[li].insn < pc) ++li;
    if (li < lines.size() && lines[li].insn == pc && !lines[li].text.empty() && lines[li].text != last) {
      last = lines[li].text;
      out += "; " + last + "\n";
    }
    char idx[32];
    std::snprintf(idx, sizeof idx, "%4zu: ", pc);
    out += idx;
    out += format_insn(insns[pc], static_cast<int64_t>(pc), d) + "\n";
  }
  std::fputs(out.c_str(), stdout);
  return kOk;
}

RegisterCommand reg_asm("asm", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<AsmOpts>();
  auto* cmd = app.add_subcommand("asm", "Assemble text (kernel or conformance syntax) into raw bytecode");
  cmd->add_option("file", o->in, "Assembly source")->required();
  cmd->add_option("-o,--output", o->out, "Output file (raw bytecode)")->required();
  add_choice_option(cmd, "--syntax", o->syntax_name, {"auto", "kernel", "conformance"}, "Source syntax")
      ->each([o](const std::string& v) { o->syntax = kSyntaxes.at(v); });
  cmd->callback([o, &run] { run = [o] { return asm_command(*o); }; });
});

RegisterCommand reg_disasm("disasm", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<DisasmOpts>();
  auto* cmd = app.add_subcommand("disasm", "Print a program's instructions");
  cmd->add_option("file", o->input.path, "Program: ELF object, assembly text or raw bytecode")->required();
  add_choice_option(cmd, "--syntax", o->syntax_name, {"kernel", "conformance"}, "Output syntax")
      ->each([o](const std::string& v) { o->syntax = kSyntaxes.at(v); });
  cmd->add_option("--section", o->input.section, "ELF section of the program");
  cmd->add_option("--function", o->input.function, "ELF function to print");
  add_format_option(cmd, o->input);
  cmd->add_flag("--raw", o->raw, "Show the raw bytes of each instruction");
  cmd->add_flag("--jited", o->jited, "Show the x86-64 code the JIT generates, with the BPF instruction of each piece");
  cmd->add_option("--type", o->input.type, "Program type (with --jited: decides context rewriting and helpers)");
  cmd->callback([o, &run] { run = [o] { return disasm_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
