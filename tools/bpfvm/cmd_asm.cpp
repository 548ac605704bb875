// bpfvm asm FILE.s -o FILE.bin [--syntax auto|kernel|conformance]
// bpfvm disasm FILE [--syntax kernel|conformance] [--format elf|asm|raw] [--section S] [--function F] [--raw]
#include <fmt/format.h>

#include <cstring>

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

// One listed instruction: decoded, or a slot that does not decode (printed as `<unknown>`).
struct Listed {
  size_t pc = 0, slots = 1;
  bool ok = true;
  Insn insn;
  std::string raw;      // the slot bytes in hex (raw input), for --raw on undecodable slots
  std::string problem;  // why the entry is invalid (does not decode, jump out of range, ...)
};

std::string hex_bytes(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t k = 0; k < n; ++k) {
    char b[4];
    std::snprintf(b, sizeof b, "%s%02x", k ? " " : "", p[k]);
    s += b;
  }
  return s;
}

// The checks of check_structure, per instruction, so that every problem is named (not only the first).
void mark_structure(std::vector<Listed>& list, size_t slots) {
  std::vector<bool> boundary(slots + 1, false);
  for (const Listed& e : list) boundary[e.pc] = true;
  const int64_t n = static_cast<int64_t>(slots);
  for (Listed& e : list) {
    if (!e.ok || !e.problem.empty()) continue;
    if (auto st = check_fields(e.insn, static_cast<int64_t>(e.pc)); !st) {
      e.problem = st.error().message;
      continue;
    }
    const Insn& in = e.insn;
    OpKind k = in.info().kind;
    if (k == OpKind::Jump || k == OpKind::CondJump || in.op == Op::CALL_LOCAL || in.op == Op::LDDW_CODE_ADDR) {
      int64_t pc = static_cast<int64_t>(e.pc);
      int64_t t = in.op == Op::LDDW_CODE_ADDR ? pc + 1 + static_cast<int32_t>(in.imm) : jump_target(in, pc);
      const char* what = in.op == Op::CALL_LOCAL ? "call" : in.op == Op::LDDW_CODE_ADDR ? "code address" : "jump";
      if (t < 0 || t >= n)
        e.problem = fmt::format("{} out of range (target {}, program has {} instructions)", what, t, n);
      else if (!boundary[static_cast<size_t>(t)])
        e.problem = fmt::format("{} into the middle of an instruction (target {})", what, t);
    }
  }
  if (!list.empty() && list.back().ok && list.back().problem.empty()) {
    Op last = list.back().insn.op;
    if (last != Op::EXIT && last != Op::JA && last != Op::JA32)
      list.back().problem = fmt::format("last instruction must be exit or an unconditional jump, not {}",
                                        list.back().insn.is_wide() ? std::string_view("lddw") : op_name(last));
  }
}

int disasm_command(const DisasmOpts& o) {
  DisasmOptions d;
  d.syntax = o.syntax == SyntaxChoice::Conformance ? Syntax::Conformance : Syntax::Kernel;
  d.show_raw = o.raw;
  d.helper_name = [](int32_t id) { return HelperSet::kernel().name_of(id); };
  if (o.jited) {
    // The x86-64 code the JIT generates, interleaved with the BPF instruction each piece came from.
    // The JIT runs verified programs only, so the program is verified first (privileged rules, as
    // `bpfvm run` does).
    auto in = read_input(o.input);
    if (!in) return fail(in.error().code == ErrorCode::Io || in.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                         in.error(), o.input.path);
    PrepareOptions po;
    po.engine = EngineChoice::Jit;
    po.rules = RuleSet::Privileged;
    std::string rejection;
    po.rejection = &rejection;
    std::shared_ptr<LoadedObject> live;
    auto prog = prepare_input(o.input, *in, po, live);
    if (!prog) {
      if (prog.error().code == ErrorCode::Verify && !rejection.empty()) {
        std::fprintf(stderr, "bpfvm: %s", rejection.c_str());
        return fail(kFailed, "the verifier rejected the program; the JIT compiles verified programs only");
      }
      return fail(prog.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed, prog.error(), o.input.path);
    }
    auto listing = jit_disassemble(*prog->exe, d);
    if (!listing) return fail(kFailed, listing.error(), o.input.path);
    std::fputs(listing->c_str(), stdout);
    return kOk;
  }

  // Raw bytecode is decoded slot by slot so that a bad slot is listed (`<unknown>`), not fatal.
  std::string bytes, err;
  if (!read_file(o.input.path, bytes, err)) return fail(kUsage, o.input.path + ": " + err);
  InputFormat format = o.input.format == InputFormat::Auto ? detect_format(bytes) : o.input.format;
  std::vector<Listed> list;
  size_t slots = 0;
  std::optional<InputProgram> in;
  if (format == InputFormat::Raw) {
    if (!o.input.section.empty() || !o.input.function.empty())
      return fail(kUsage, "--section and --function apply to ELF objects only");
    if (bytes.empty()) return fail(kFailed, o.input.path + ": the file is empty: no program");
    if (bytes.size() % sizeof(RawInsn) != 0)
      return fail(kFailed, fmt::format("{}: program size {} is not a multiple of 8 bytes", o.input.path, bytes.size()));
    std::vector<RawInsn> raw(bytes.size() / sizeof(RawInsn));
    std::memcpy(raw.data(), bytes.data(), bytes.size());
    slots = raw.size();
    for (DecodedSlot& e : decode_each(raw)) {
      Listed l;
      l.pc = e.pc;
      l.slots = e.slots;
      l.ok = e.ok;
      l.insn = e.insn;
      l.raw = hex_bytes(reinterpret_cast<const uint8_t*>(bytes.data()) + e.pc * sizeof(RawInsn),
                        e.slots * sizeof(RawInsn));
      if (!e.ok) l.problem = e.error.message;
      list.push_back(std::move(l));
    }
  } else {
    InputSpec spec = o.input;
    spec.format = format;
    auto r = read_input(spec);
    if (!r) return fail(r.error().code == ErrorCode::Io || r.error().code == ErrorCode::InvalidArgument ? kUsage : kFailed,
                        r.error(), o.input.path);
    in = std::move(*r);
    const auto& insns = in->program.insns;
    slots = insns.size();
    for (size_t pc = 0; pc < insns.size(); ++pc) {
      if (insns[pc].op == Op::LDDW_HI) continue;
      Listed l;
      l.pc = pc;
      l.insn = insns[pc];
      l.slots = insns[pc].is_wide() ? 2 : 1;
      list.push_back(std::move(l));
    }
  }
  mark_structure(list, slots);
  size_t bad = 0;
  for (const Listed& e : list) bad += !e.problem.empty();

  if (bad) {
    // Every instruction that decodes, `<unknown>` for a slot that does not, `<invalid>` after one
    // that decodes but breaks a rule; the reasons on stderr; exit 1.
    std::string out;
    for (const Listed& e : list) {
      char idx[32];
      std::snprintf(idx, sizeof idx, "%4zu: ", e.pc);
      out += idx;
      if (o.raw) {
        std::vector<RawInsn> enc;
        if (e.ok) encode_one(e.insn, enc);
        auto b = to_bytes(enc);
        out += (e.ok ? hex_bytes(b.data(), b.size()) : e.raw) + "  ";
      }
      out += e.ok ? format_insn(e.insn, static_cast<int64_t>(e.pc), d) : std::string("<unknown>");
      if (e.ok && !e.problem.empty()) out += "  <invalid>";
      out += "\n";
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    for (const Listed& e : list)
      if (!e.problem.empty()) std::fprintf(stderr, "bpfvm: %s: insn %zu: %s\n", o.input.path.c_str(), e.pc, e.problem.c_str());
    return fail(kFailed, fmt::format("{}: {} of {} instructions invalid", o.input.path, bad, list.size()));
  }

  if (!in) {
    std::vector<Insn> insns;
    for (const Listed& e : list) {
      insns.push_back(e.insn);
      if (e.slots == 2) insns.push_back(Insn{Op::LDDW_HI, 0, 0, 0, e.insn.imm >> 32});
    }
    std::fputs(disassemble(insns, d).c_str(), stdout);
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
  auto* raw = cmd->add_flag("--raw", o->raw, "Show the raw bytes of each instruction");
  cmd->add_flag("--jited", o->jited, "Show the x86-64 code the JIT generates, with the BPF instruction of each piece")
      ->excludes(raw);
  cmd->add_option("--type", o->input.type, "Program type (with --jited: decides context rewriting and helpers)");
  cmd->callback([o, &run] { run = [o] { return disasm_command(*o); }; });
});

}  // namespace
}  // namespace bpfvm::cli
