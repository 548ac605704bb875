// The x86-64 system-call table (syscalls_x86_64.def) and its lookups.
#include <algorithm>
#include <vector>

#include "bpfvm/trace.hpp"

namespace bpfvm {

namespace {

constexpr SyscallInfo kTable[] = {
#define SYSCALL(NR, NAME, EVENT, NARGS) SyscallInfo{NR, #NAME, EVENT, NARGS},
#include "hooks/syscall/syscalls_x86_64.def"
#undef SYSCALL
};

// Index by number (the numbers are dense from 0 to 335, then 424 on).
const std::vector<const SyscallInfo*>& by_nr() {
  static const std::vector<const SyscallInfo*> v = [] {
    int32_t hi = 0;
    for (const auto& s : kTable) hi = std::max(hi, s.nr);
    std::vector<const SyscallInfo*> out(static_cast<size_t>(hi) + 1, nullptr);
    for (const auto& s : kTable) out[static_cast<size_t>(s.nr)] = &s;
    return out;
  }();
  return v;
}

}  // namespace

std::span<const SyscallInfo> syscall_table() { return kTable; }

const SyscallInfo* syscall_by_nr(int64_t nr) {
  const auto& v = by_nr();
  if (nr < 0 || nr >= static_cast<int64_t>(v.size())) return nullptr;
  return v[static_cast<size_t>(nr)];
}

const SyscallInfo* syscall_by_event(std::string_view event) {
  if (event.empty()) return nullptr;
  for (const auto& s : kTable)
    if (s.event == event) return &s;
  return nullptr;
}

const SyscallInfo* syscall_by_name(std::string_view name) {
  for (const auto& s : kTable)
    if (s.name == name) return &s;
  return nullptr;
}

namespace {
// di si dx r10 r8 r9 in struct pt_regs order.
constexpr int kArgWord[6] = {14, 13, 12, 7, 9, 8};
}  // namespace

uint64_t SyscallRegs::arg(int i) const { return i >= 0 && i < 6 ? words[kArgWord[i]] : 0; }
void SyscallRegs::set_arg(int i, uint64_t v) {
  if (i >= 0 && i < 6) words[kArgWord[i]] = v;
}

}  // namespace bpfvm
