// Where a plain array map (BPF_MAP_TYPE_ARRAY, not per-CPU; private and pinned use the same class)
// keeps what a lookup needs, as offsets from its Map*: for engines that inline a lookup on a map
// known only when the program runs (an inner map returned by a map-in-map lookup).
#pragma once

#include <cstdint>

namespace bpfvm::maps {

struct ArrayLayout {
  int32_t lookup_fn_off;     // Map::lookup_fn_ (a LookupFn)
  const void* plain_lookup;  // its value exactly when the map is a plain array
  int32_t data_off;          // uint8_t*: the values
  int32_t stride_off;        // uint64_t: bytes per value (round_up(value_size, 8))
  int32_t max_entries_off;   // uint32_t: the map's own max_entries
};
const ArrayLayout& array_layout();

}  // namespace bpfvm::maps
