// Human-readable map contents for the packet commands' summaries.
#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "bpfvm/map.hpp"
#include "bpfvm/packet.hpp"

namespace bpfvm {

namespace {
std::string bytes_str(const uint8_t* p, size_t n) {
  if (n == 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return std::to_string(v);
  }
  if (n == 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return std::to_string(v);
  }
  std::string s;
  for (size_t i = 0; i < n; ++i) s += fmt::format("{}{:02x}", i ? " " : "", p[i]);
  return s;
}

bool is_percpu(uint32_t t) {
  return t == kMapPercpuArray || t == kMapPercpuHash || t == kMapLruPercpuHash || t == kMapPercpuCgroupStorage;
}
}  // namespace

std::string format_map_contents(Map& map, size_t max_entries) {
  const MapSpec& s = map.spec();
  const char* tn = map_type_name(s.type);
  std::string out = fmt::format("{} ({}, key {} B, value {} B, max_entries {})\n", s.name, tn && *tn ? tn : "?",
                                s.key_size, s.value_size, s.max_entries);
  switch (s.type) {
    case kMapArray: case kMapPercpuArray: case kMapHash: case kMapPercpuHash: case kMapLruHash:
    case kMapLruPercpuHash: case kMapDevmap: case kMapDevmapHash: case kMapLpmTrie:
      break;
    default:
      return out + "  (contents not listed for this map type)\n";
  }
  bool array = s.type == kMapArray || s.type == kMapPercpuArray || s.type == kMapDevmap;
  bool percpu = is_percpu(s.type);
  size_t vsize = map.user_value_size();
  size_t stride = percpu ? (s.value_size + 7) / 8 * 8 : s.value_size;
  std::vector<uint8_t> key(s.key_size), next(s.key_size), value(std::max<size_t>(vsize, 8));
  size_t shown = 0, total = 0, zero = 0, keys = 0;
  bool first = true;
  while (true) {
    long rc = map.get_next_key(first ? nullptr : key.data(), next.data());
    if (rc != 0) break;
    first = false;
    key = next;
    ++keys;
    if (map.lookup_copy(key.data(), value.data(), 0) != 0) continue;
    ++total;
    bool all_zero = true;
    for (size_t i = 0; i < vsize; ++i) all_zero &= value[i] == 0;
    if (array && all_zero) {
      ++zero;
      continue;
    }
    if (shown >= max_entries) continue;
    std::string v;
    if (percpu) {
      size_t ncpu = vsize / stride;
      uint64_t sum = 0;
      bool summable = s.value_size == 8 || s.value_size == 4;
      std::string list;
      for (size_t c = 0; c < ncpu; ++c) {
        uint64_t x = 0;
        std::memcpy(&x, value.data() + c * stride, std::min<size_t>(s.value_size, 8));
        if (s.value_size == 4) x &= 0xffffffffu;
        sum += x;
        list += (c ? ", " : "") + bytes_str(value.data() + c * stride, s.value_size);
      }
      v = summable ? fmt::format("{} (per CPU: {})", sum, list) : "[" + list + "]";
    } else {
      v = bytes_str(value.data(), s.value_size);
    }
    out += fmt::format("  {}: {}\n", bytes_str(key.data(), s.key_size), v);
    ++shown;
  }
  size_t listed = array ? total - zero : total;
  if (listed > shown) out += fmt::format("  ... {} more\n", listed - shown);
  if (array && zero) out += fmt::format("  ({} zero entries not shown)\n", zero);
  if (keys == 0) out += "  (empty)\n";
  else if (total == 0) out += fmt::format("  ({} keys, values not readable from user space)\n", keys);
  return out;
}

}  // namespace bpfvm
