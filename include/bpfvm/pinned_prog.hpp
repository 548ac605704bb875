// bpfvm: programs pinned as files (bpftool's prog loadall / prog pin), docs/maps.md "Pinned programs".
// A pinned program file holds the whole ELF object it came from (so its BTF and line info), the
// program's function name and type, and where its maps are pinned; it is verified again whenever it
// is opened, and its maps are the pinned maps (shared with every other opener).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"

namespace bpfvm {

struct PinnedProgramSpec {
  std::string function;              // the program's function in the object
  std::optional<uint32_t> type;      // type override (bpftool's `type TYPE`), else the section's
  std::string pin_maps_dir;          // maps pinned there (pinmaps); "" = maps follow their own pinning
  std::string btf;                   // target BTF for CO-RE (`btf FILE`); "" = the default source
  std::vector<std::pair<std::string, std::string>> sets;  // globals set before load (`set NAME=VALUE`)
};
// Loads the object as the spec says (type, target BTF) and applies its `sets`.
Result<Object> load_for_pinning(std::span<const uint8_t> object_bytes, const PinnedProgramSpec& spec,
                                std::string_view what);

// Writes a pinned program file at `path` (refused when the path exists).
Status pin_program(std::span<const uint8_t> object_bytes, const PinnedProgramSpec& spec, const std::string& path);

struct OpenedProgram {
  std::string path;
  PinnedProgramSpec spec;
  std::shared_ptr<const Object> object;
  const ObjectProgram* program = nullptr;   // in *object
  std::shared_ptr<LoadedObject> live;       // its maps (pinned ones shared)
  PreparedProgram prepared;                 // verified, ready to run
};

// Opens a pinned program: checks the file, loads the object, opens its pinned maps (a map that is
// no longer pinned is an error naming it), verifies the program (privileged rules unless
// options.rules says otherwise) and prepares it.
Result<OpenedProgram> open_pinned_program(const std::string& path, const PrepareOptions& options = {});

// The kernel's program tag (bpf_prog_calc_tag): the first 8 bytes of the SHA-256 of the
// instructions as loaded (map references as BPF_PSEUDO_MAP_FD / _VALUE lddw with their immediates
// zeroed), as 16 hex digits. Current kernels (6.18 here) hash with SHA-256; older ones used SHA-1.
// tests/maps_cli_test.cpp compares it with the running kernel's.
std::string program_tag(const ObjectProgram& program);

}  // namespace bpfvm
