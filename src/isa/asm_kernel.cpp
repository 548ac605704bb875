// bpfvm assembler: the kernel / llvm-objdump syntax front end.
#include "isa/asm_internal.hpp"

namespace bpfvm::asmi {

void parse_kernel(std::string_view text, Builder& b) {
  (void)text;
  (void)b;
  fail(1, 1, "the kernel-syntax assembler is not implemented yet");
}

}  // namespace bpfvm::asmi
