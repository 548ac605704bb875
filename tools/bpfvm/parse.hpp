// Parsers for the numbers and byte strings given on the command line. Self-contained (standard
// library only) so that fuzz/fuzz_cliparse.cpp can reach them without the rest of the CLI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bpfvm::cli {

// An unsigned number as bpftool reads one (strtoul with base 0), but the whole text must be the
// number: `0x`/`0X` then hex digits, a leading `0` then octal digits, otherwise decimal digits.
// No sign, no whitespace, nothing after the digits, no overflow beyond `max`. On error `err` says
// why ("'7abc' is not a number", "4294967296 is above 4294967295").
bool parse_number(std::string_view text, uint64_t max, uint64_t& out, std::string& err);

// A map key or value of exactly `size` bytes, as `bpfvm xdp --map-set` takes it:
//  - a number (parse_number), for sizes 1, 2, 4 and 8: stored in host byte order, and it must fit;
//  - a byte list: bytes separated by spaces or commas, each a parse_number of at most 0xff
//    (`1 0 0 0`, `0x01,0x00,0x00,0x00`), as bpftool's `key 1 0 0 0`;
//  - `hex ` then two-digit hex bytes, as bpftool's `key hex 01 00 00 00` (`hex 01000000` too).
// A byte list or hex string must have exactly `size` bytes.
bool parse_map_bytes(std::string_view text, size_t size, std::vector<uint8_t>& out, std::string& err);

// Hex bytes for `bpfvm run --mem`: pairs of hex digits; whitespace and commas separate bytes, and a
// `0x` prefix before a byte group is tolerated. On error `err` names the offending character.
bool parse_hex_bytes(std::string_view text, std::vector<uint8_t>& out, std::string& err);

// `MAP:KEY=VALUE` split at the last ':' before the first '=' after it (map names hold no ':' or '=';
// a byte list may hold neither). Returns false when the shape is wrong.
bool split_map_set(std::string_view spec, std::string& map, std::string& key, std::string& value);

}  // namespace bpfvm::cli
