// VerifyOptions for a program of a loaded object.
#include <unistd.h>

#include "bpfvm/helpers.hpp"
#include "bpfvm/verifier.hpp"
#include "verifier/btf_types.hpp"

namespace bpfvm {

VerifyOptions verify_options_for(const Object& object, const ObjectProgram& program, RuleSet rules) {
  VerifyOptions o;
  o.type = find_prog_type(program.type);
  o.rules = rules;
  for (const ObjectMap& m : object.maps) {
    o.maps.push_back(m.spec);
    o.map_readonly.push_back(m.frozen || m.origin == MapOrigin::Rodata);
  }
  o.gpl = license_is_gpl_compatible(object.license);
  // BTF-typed programs: the section's target in the kernel's BTF (or the object's CO-RE target BTF
  // when that is a file).
  if (needs_attach_btf(program.type, program.expected_attach)) {
    std::string target = program.attach.name.empty() ? program.attach.target : program.attach.name;
    if (!target.empty()) {
      std::string file;
      if (!object.target_btf.empty() && access(object.target_btf.c_str(), R_OK) == 0) file = object.target_btf;
      auto a = resolve_attach_btf(program.type, program.expected_attach, target, file);
      if (a && program.attach.sleepable) {
        // A sleepable program (".s" section, BPF_F_SLEEPABLE) runs outside an RCU read section,
        // which changes the trust of the pointers it reads from kernel objects.
        auto p = std::make_shared<verifier::AttachProto>(
            *std::static_pointer_cast<const verifier::AttachProto>((*a)->impl));
        p->sleepable = true;
        auto s = std::make_shared<AttachBtf>(**a);
        s->impl = std::move(p);
        o.attach_btf = std::move(s);
      } else if (a) {
        o.attach_btf = *a;
      } else {
        o.attach_error = a.error().message;
      }
    }
  }
  // Copy the lines so the options do not depend on the object's lifetime.
  auto lines = std::make_shared<std::vector<std::pair<uint32_t, std::string>>>();
  for (size_t i = 0; i < program.lines.size(); ++i) {
    const SourceLine& l = program.lines[i];
    std::string text = l.file;
    auto slash = text.rfind('/');
    if (slash != std::string::npos) text = text.substr(slash + 1);
    lines->emplace_back(l.insn, text + ":" + std::to_string(l.line) + ": " + l.text);
  }
  if (!lines->empty()) {
    o.source_line = [lines](size_t pc) -> std::string {
      std::string best;
      for (const auto& [insn, text] : *lines) {
        if (insn > pc) break;
        best = text;
      }
      return best;
    };
  }
  std::vector<std::pair<uint32_t, std::string>> poisoned;
  for (const CoreReloResult& r : program.core_relos)
    if (r.poisoned) poisoned.emplace_back(r.insn, r.description + ": " + r.reason);
  if (!poisoned.empty()) {
    auto list = std::make_shared<const std::vector<std::pair<uint32_t, std::string>>>(std::move(poisoned));
    o.core_relocation = [list](size_t pc) -> std::string {
      for (const auto& [insn, what] : *list)
        if (insn == pc) return what;
      for (const auto& [insn, what] : *list)  // the second slot of a poisoned lddw
        if (insn + 1 == pc) return what;
      return {};
    };
  }
  return o;
}

}  // namespace bpfvm
