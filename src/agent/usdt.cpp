// USDT argument specs (libbpf's usdt.bpf.h protocol).
#include "agent/usdt.hpp"

#include <fmt/format.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bpfvm/map.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm::usdt {

namespace {

Diagnostic bad(std::string_view arg, const std::string& why) {
  return make_error(ErrorCode::InvalidArgument, fmt::format("USDT argument '{}': {}", arg, why));
}

// x86-64 register names (every width) -> offset in struct pt_regs.
int reg_offset(std::string_view r) {
  struct Row {
    const char* names[4];
    size_t off;
  };
  static const Row rows[] = {
      {{"rip", "eip", "", ""}, offsetof(PtRegsNative, ip)},
      {{"rax", "eax", "ax", "al"}, offsetof(PtRegsNative, ax)},
      {{"rbx", "ebx", "bx", "bl"}, offsetof(PtRegsNative, bx)},
      {{"rcx", "ecx", "cx", "cl"}, offsetof(PtRegsNative, cx)},
      {{"rdx", "edx", "dx", "dl"}, offsetof(PtRegsNative, dx)},
      {{"rsi", "esi", "si", "sil"}, offsetof(PtRegsNative, si)},
      {{"rdi", "edi", "di", "dil"}, offsetof(PtRegsNative, di)},
      {{"rbp", "ebp", "bp", "bpl"}, offsetof(PtRegsNative, bp)},
      {{"rsp", "esp", "sp", "spl"}, offsetof(PtRegsNative, sp)},
      {{"r8", "r8d", "r8w", "r8b"}, offsetof(PtRegsNative, r8)},
      {{"r9", "r9d", "r9w", "r9b"}, offsetof(PtRegsNative, r9)},
      {{"r10", "r10d", "r10w", "r10b"}, offsetof(PtRegsNative, r10)},
      {{"r11", "r11d", "r11w", "r11b"}, offsetof(PtRegsNative, r11)},
      {{"r12", "r12d", "r12w", "r12b"}, offsetof(PtRegsNative, r12)},
      {{"r13", "r13d", "r13w", "r13b"}, offsetof(PtRegsNative, r13)},
      {{"r14", "r14d", "r14w", "r14b"}, offsetof(PtRegsNative, r14)},
      {{"r15", "r15d", "r15w", "r15b"}, offsetof(PtRegsNative, r15)},
  };
  for (const Row& row : rows)
    for (const char* n : row.names)
      if (*n && r == n) return static_cast<int>(row.off);
  return -1;
}

bool parse_long(std::string_view s, long long& out) {
  std::string t(s);
  if (t.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(t.c_str(), &end, 0);
  return errno == 0 && *end == 0;
}

Result<ArgSpec> parse_arg(std::string_view a) {
  ArgSpec s;
  auto at = a.find('@');
  long long size = 0;
  if (at == std::string_view::npos || !parse_long(a.substr(0, at), size))
    return bad(a, "expected SIZE@LOCATION");
  std::string_view loc = a.substr(at + 1);
  if (loc.starts_with("$")) {
    long long v;
    if (!parse_long(loc.substr(1), v)) return bad(a, "a constant that is not a number");
    s.arg_type = kArgConst;
    s.val_off = static_cast<uint64_t>(v);
  } else if (loc.starts_with("%")) {
    int off = reg_offset(loc.substr(1));
    if (off < 0) return bad(a, fmt::format("unknown register '{}'", loc.substr(1)));
    s.arg_type = kArgReg;
    s.reg_off = static_cast<int16_t>(off);
  } else {
    auto open = loc.find('(');
    if (open == std::string_view::npos || !loc.ends_with(")") || loc[open + 1] != '%')
      return bad(a, "unsupported location (libbpf reads size@%reg, size@off(%reg), size@(%reg), size@$const)");
    long long off = 0;
    if (open > 0 && !parse_long(loc.substr(0, open), off)) return bad(a, "an offset that is not a number");
    std::string_view reg = loc.substr(open + 2, loc.size() - open - 3);
    int ro = reg_offset(reg);
    if (ro < 0) return bad(a, fmt::format("unknown register '{}'", reg));
    s.arg_type = kArgRegDeref;
    s.val_off = static_cast<uint64_t>(off);
    s.reg_off = static_cast<int16_t>(ro);
  }
  s.arg_signed = size < 0;
  long long bytes = size < 0 ? -size : size;
  if (bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) return bad(a, fmt::format("size {} is not 1, 2, 4 or 8", size));
  s.arg_bitshift = static_cast<int8_t>(64 - bytes * 8);
  return s;
}

}  // namespace

Result<Spec> parse_args(std::string_view args) {
  Spec spec;
  size_t pos = 0;
  while (pos < args.size()) {
    while (pos < args.size() && args[pos] == ' ') ++pos;
    if (pos >= args.size()) break;
    size_t end = args.find(' ', pos);
    if (end == std::string_view::npos) end = args.size();
    if (spec.arg_cnt >= kMaxArgs)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("USDT probe with more than {} arguments ('{}')", kMaxArgs, args));
    auto a = parse_arg(args.substr(pos, end - pos));
    if (!a) return a.error();
    spec.args[spec.arg_cnt++] = *a;
    pos = end;
  }
  return spec;
}

Specs::Specs(const LoadedObject& live) {
  // Map names are cut to the kernel's 15 characters ("__bpf_usdt_spec", "__bpf_usdt_ip_t").
  auto named = [](const std::string& have, std::string_view full) {
    return have == full || (have.size() == 15 && full.starts_with(have));
  };
  for (const auto& m : live.maps) {
    if (!m) continue;
    if (named(m->spec().name, "__bpf_usdt_specs")) specs_ = m.get();
    if (named(m->spec().name, "__bpf_usdt_ip_to_spec_id")) ip_to_id_ = m.get();
  }
}

Status Specs::check() const {
  if (specs_ && (specs_->spec().type != kMapArray || specs_->spec().key_size != 4 ||
                 specs_->spec().value_size != sizeof(Spec)))
    return make_error(ErrorCode::InvalidArgument, "map __bpf_usdt_specs is not usdt.bpf.h's (an array of "
                                                  "struct __bpf_usdt_spec, 208 bytes)");
  if (ip_to_id_ && (ip_to_id_->spec().type != kMapHash || ip_to_id_->spec().key_size != 8 ||
                    ip_to_id_->spec().value_size != 4))
    return make_error(ErrorCode::InvalidArgument, "map __bpf_usdt_ip_to_spec_id is not usdt.bpf.h's (a hash of "
                                                  "long -> u32)");
  return {};
}

Result<uint64_t> Specs::add(const UsdtNote& note, uint64_t bias) {
  auto spec = parse_args(note.args);
  if (!spec) return make_error(spec.error().code, fmt::format("probe {}:{}: {}", note.provider, note.name,
                                                              spec.error().message));
  if (!specs_) return uint64_t{0};  // the program reads no arguments through the maps
  // The maps are shared by every process the agent runs in (pinned): a spec already there with the
  // same contents is reused; otherwise the lowest id no probe point uses.
  const uint32_t n = specs_->spec().max_entries;
  std::vector<bool> used(n, false);
  if (ip_to_id_) {
    std::vector<uint8_t> key(8), next(8);
    bool first = true;
    while (ip_to_id_->get_next_key(first ? nullptr : key.data(), next.data()) == 0) {
      first = false;
      key = next;
      uint32_t id;
      if (ip_to_id_->lookup_copy(key.data(), &id, 0) == 0 && id < n) used[id] = true;
    }
  }
  int64_t chosen = -1;
  for (uint32_t i = 0; i < n && chosen < 0; ++i) {
    if (!used[i]) continue;
    Spec have;
    if (specs_->lookup_copy(&i, &have, 0) == 0 && std::memcmp(&have, &*spec, sizeof have) == 0) chosen = i;
  }
  for (uint32_t i = 0; i < n && chosen < 0; ++i)
    if (!used[i]) chosen = i;
  if (chosen < 0)
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("probe {}:{}: all {} USDT spec slots are in use", note.provider, note.name, n));
  uint32_t id = static_cast<uint32_t>(chosen);
  if (long e = specs_->update_user(&id, &*spec, 0); e != 0)
    return make_error(ErrorCode::InvalidArgument, fmt::format("__bpf_usdt_specs: update failed ({})", e));
  if (ip_to_id_) {
    long ip = static_cast<long>(note.pc + (note.relocatable ? bias : 0));
    if (long e = ip_to_id_->update_user(&ip, &id, 0); e != 0)
      return make_error(ErrorCode::InvalidArgument, fmt::format("__bpf_usdt_ip_to_spec_id: update failed ({})", e));
  }
  return uint64_t{id};
}

}  // namespace bpfvm::usdt
