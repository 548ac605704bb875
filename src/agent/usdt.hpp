// USDT probe points for programs written with libbpf's usdt.bpf.h: each probe point's argument
// string ("-4@%edi 8@-8(%rbp) 4@$5") becomes a struct __bpf_usdt_spec in the object's
// __bpf_usdt_specs array, and its address an entry of __bpf_usdt_ip_to_spec_id, as libbpf fills them;
// the spec's index is the attach cookie.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bpfvm/object.hpp"
#include "bpfvm/probe_target.hpp"
#include "bpfvm/result.hpp"

namespace bpfvm::usdt {

// struct __bpf_usdt_arg_spec / __bpf_usdt_spec of usdt.bpf.h (x86-64 layout).
enum ArgType : uint32_t { kArgConst = 0, kArgReg = 1, kArgRegDeref = 2 };
struct ArgSpec {
  uint64_t val_off = 0;
  uint32_t arg_type = 0;
  int16_t reg_off = 0;
  bool arg_signed = false;
  int8_t arg_bitshift = 0;
};
inline constexpr int kMaxArgs = 12;
struct Spec {
  ArgSpec args[kMaxArgs];
  uint64_t usdt_cookie = 0;
  int16_t arg_cnt = 0;
  int16_t pad_[3] = {};
};
static_assert(sizeof(ArgSpec) == 16 && sizeof(Spec) == 208);

// Parses a stapsdt argument string as libbpf does on x86-64 (size@%reg, size@off(%reg),
// size@(%reg), size@$const); errors name the argument.
Result<Spec> parse_args(std::string_view args);

// The object's USDT maps, filled as probe points are attached.
class Specs {
 public:
  explicit Specs(const LoadedObject& live);
  // Programs that use usdt.bpf.h have both maps; an object with usdt programs but no maps cannot
  // read arguments (fine: they may not), so this only checks the maps' shapes when present.
  Status check() const;
  // Registers a probe point at bias + pc: the spec's id (the attach cookie).
  Result<uint64_t> add(const UsdtNote& note, uint64_t bias);

 private:
  Map* specs_ = nullptr;
  Map* ip_to_id_ = nullptr;
};

}  // namespace bpfvm::usdt
