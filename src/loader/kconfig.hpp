// .kconfig externs (`extern int LINUX_KERNEL_VERSION __kconfig;`): their values, laid out in the
// object's .kconfig internal map.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bpfvm/result.hpp"

struct btf;

namespace bpfvm::kconfig {

struct Extern {
  std::string name;
  uint32_t type_id = 0;  // the variable's type in the object's BTF
  bool weak = false;     // __weak: 0 when the value is unknown
};

struct Values {
  std::vector<uint8_t> data;       // the map value (multiple of 8 bytes)
  std::vector<uint32_t> offsets;   // per extern, in order
  std::string config_file;         // the kernel config read ("" when none was needed or found)
};

// Lays the externs out (each at its type's alignment, in order) and fills their values. Errors name
// the extern: unknown LINUX_* names, unsupported types, values that do not fit, strong CONFIG_*
// externs the config does not have.
Result<Values> resolve(const struct btf* b, const std::vector<Extern>& externs, const std::string& config_file,
                       const std::map<std::string, std::string, std::less<>>& overrides);

}  // namespace bpfvm::kconfig
