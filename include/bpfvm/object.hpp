// bpfvm: loading BPF ELF objects (what `clang -O2 -g -target bpf -c prog.bpf.c` produces).
//
//   auto obj = bpfvm::load_object_file("prog.bpf.o");      // programs, maps, global data, BTF, line info
//   obj->set_global("threshold", &v, sizeof v);              // .rodata/.data/.bss before instantiation
//   auto live = bpfvm::instantiate(*obj);                    // creates the maps (map.hpp)
//   auto prog = live->program(obj->programs[0]);             // lddw map forms resolved to addresses
//
// The loader never talks to the kernel. Programs keep the pseudo lddw forms (src=5 map index,
// src=6 map index + value offset, src=4 code address) so the verifier can see which map an
// instruction refers to; instantiate() turns them into plain 64-bit addresses for the engines.
// See docs/loader.md for the rules (section names, legacy map layouts, global data, line info).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// ---- program types (enum bpf_prog_type of <linux/bpf.h>) --------------------------------------

// What a section name says about a program, following libbpf's section names (exact names and
// "name/..." forms) and the prefix forms older loaders accepted (socket1, xdp_prog, kprobe/x).
// Where a program attaches, as its libbpf section name says (the attach layer reads this, never the
// name). `kind` is the section form ("kprobe", "uprobe", "tracepoint", "xdp", ...; "" when the name
// says nothing); the other fields are filled as the form has them.
struct AttachTarget {
  std::string kind;        // the section form without its ".s"/".multi" suffixes: "kprobe", "kretprobe",
                           // "ksyscall", "kretsyscall", "uprobe", "uretprobe", "usdt", "tracepoint",
                           // "raw_tracepoint", "tp_btf", "fentry", "fexit", "fmod_ret", "lsm", "iter",
                           // "freplace", "struct_ops", "xdp", "tc", "socket", "cgroup", ...
  std::string target;      // everything after "kind/" ("syscalls/sys_enter_openat", "/bin/bash:readline+4")
  std::string category;    // tracepoint: "syscalls"
  std::string name;        // tracepoint / raw_tracepoint / tp_btf event, kprobe / fentry / lsm function,
                           // ksyscall syscall name, uprobe / usdt function or probe name
  std::string path;        // uprobe / usdt: the binary or library ("" or "*" when any)
  std::string provider;    // usdt: the provider ("usdt/PATH:PROVIDER:NAME")
  uint64_t offset = 0;     // kprobe "func+0x10", uprobe "FUNC+OFF" or a bare address/offset
  bool retprobe = false;   // kretprobe, kretsyscall, uretprobe, fexit
  bool sleepable = false;  // ".s" forms (uprobe.s, fentry.s, lsm.s ...)
  bool multi = false;      // kprobe.multi / kretprobe.multi: `name` is a glob
};
// Parses a section name's attach target (kind "" when the name is not a libbpf attach form).
AttachTarget parse_attach_target(std::string_view section);

struct SectionType {
  uint32_t prog_type = 0;          // BPF_PROG_TYPE_*; 0 (unspec) when the name says nothing
  uint32_t expected_attach = 0;    // BPF_* attach type (enum bpf_attach_type), 0 when none
  bool known = false;              // the name matched a rule
  std::string attach_target;       // "sys_write" for kprobe/sys_write, "syscalls/sys_enter_open" ...
};
SectionType section_prog_type(std::string_view section);

// The name bpftool prints for a program type ("xdp", "sched_cls", ...); "unspec" for 0 and
// "type_<n>" for a number this table does not know.
std::string prog_type_name(uint32_t type);
// Inverse of prog_type_name, also accepting section-style spellings ("socket", "tc", "classifier",
// "tracepoint", "raw_tp", "cgroup/skb"...). nullopt when unknown.
std::optional<uint32_t> prog_type_from_name(std::string_view name);

// ---- what an object holds -----------------------------------------------------------------------

// A source position from .BTF.ext line_info. Applies to instruction `insn` and the following ones
// up to the next entry (as in the kernel's bpf_line_info).
struct SourceLine {
  uint32_t insn = 0;       // slot index in the linked program
  std::string file;
  uint32_t line = 0;
  uint32_t column = 0;
  std::string text;        // the C source line as the compiler recorded it
};

// A function from .BTF.ext func_info (one per function in the linked program).
struct FuncInfo {
  uint32_t insn = 0;          // slot index of its first instruction in the linked program
  uint32_t btf_type_id = 0;   // BTF_KIND_FUNC id
  std::string name;
};

// A function placed in a linked program: the program's own function first, then the
// subprograms it calls (transitively), in the order they were appended.
struct LinkedFunction {
  std::string name;
  std::string section;
  uint32_t start = 0;   // slot index in the linked program
  uint32_t slots = 0;
};

// A CO-RE relocation (.BTF.ext core_relo) as applied to a linked program.
struct CoreReloResult {
  uint32_t insn = 0;         // slot in the linked program
  uint32_t kind = 0;         // enum bpf_core_relo_kind
  std::string description;   // "byte_off [12] struct task_struct.pid (0:17)"
  bool poisoned = false;     // no target matched: the instruction is kCorePoisonHelper
  std::string reason;        // why it was poisoned
  uint64_t local_value = 0, target_value = 0;
};
// The helper id libbpf (and bpfvm) writes into an instruction whose CO-RE relocation failed
// (0xbad2310); the verifier reports reaching it with the relocation named.
inline constexpr int32_t kCorePoisonHelper = 0xbad2310;

struct ObjectProgram {
  std::string section;
  std::string name;              // function symbol (or the section name for symbol-less old objects)
  uint32_t type = 0;             // BPF_PROG_TYPE_*
  uint32_t expected_attach = 0;  // BPF_* attach type, when the section name implies one
  bool type_known = false;       // false when the section name gave no type and nothing overrode it
  bool type_assumed = false;     // the type was inferred (iproute2 object: sched_cls), not named
  std::string attach_target;     // what follows the section form ("sys_write" of "kprobe/sys_write")
  AttachTarget attach;           // the attach target, parsed (parse_attach_target)
  // Non-empty when this program cannot be loaded (an unresolvable relocation, a call to an unknown
  // function, an invalid instruction, a failed CO-RE relocation that cannot be poisoned): the other
  // programs of the object are unaffected. `insns` is empty then.
  std::string error;
  // CO-RE relocations applied to this program (linked slot, what, result); `poisoned` ones made
  // their instruction a call to kCorePoisonHelper, which the verifier reports when reached.
  std::vector<struct CoreReloResult> core_relos;
  // Linked code: own code followed by subprograms; calls and code addresses fixed up; lddw of maps
  // and global data in the pseudo forms LDDW_MAP_IDX (imm = map index) and LDDW_MAP_VALUE_IDX
  // (imm low 32 bits = map index, high 32 bits = byte offset in the value).
  std::vector<Insn> insns;
  uint32_t own_slots = 0;        // slots of the function itself (before subprograms)
  std::vector<LinkedFunction> functions;
  std::vector<SourceLine> lines;     // sorted by insn; empty without .BTF.ext
  std::vector<FuncInfo> func_info;   // sorted by insn; empty without .BTF.ext
  std::vector<uint32_t> maps_used;   // indices into Object::maps referenced by lddw

  size_t slots() const { return insns.size(); }
  bool ok() const { return error.empty(); }
  // The failed CO-RE relocation whose poisoned instruction is at slot `pc`, or nullptr.
  const struct CoreReloResult* poisoned_at(size_t pc) const;
  std::string type_name() const { return prog_type_name(type); }
  // The source line covering slot `pc`, or nullptr.
  const SourceLine* line_at(size_t pc) const;
  // "file:line: text" for slot `pc`, or "" when unknown.
  std::string source_at(size_t pc) const;
  // As a bpfvm::Program (pseudo lddw forms left as they are; see LoadedObject::program).
  Program to_program() const { return Program{name, insns}; }
};

// How a map is pinned: libbpf's LIBBPF_PIN_BY_NAME, iproute2's PIN_OBJECT_NS / PIN_GLOBAL_NS.
// Placing the pins is the map store's business; the loader only records what the object asks.
enum class MapPinning : uint8_t { None, ByName, ObjectNs, GlobalNs };
const char* map_pinning_name(MapPinning p);  // "none", "by_name", "object_ns", "global_ns"

// How a legacy `maps` section's 28-byte (and shorter) definitions are read.
enum class LegacyMapFormat : uint8_t {
  Auto,       // 36 bytes: bpf_elf_map; 28 bytes: bpf_elf_map when the object has iproute2's marks
              // (tail-call sections named "ID/KEY", code sections whose names give no program type),
              // else bpf_map_def
  BpfMapDef,  // samples/bpf's struct bpf_map_def {type, key_size, value_size, max_entries, map_flags,
              // inner_map_idx, numa_node}
  BpfElfMap,  // iproute2's struct bpf_elf_map {type, size_key, size_value, max_elem, flags, id,
              // pinning[, inner_id, inner_idx]}
};

enum class MapOrigin : uint8_t {
  BtfDefined,   // .maps (struct with __uint/__type/__array members)
  Legacy,       // maps: struct bpf_map_def
  LegacyElf,    // maps: iproute2's struct bpf_elf_map
  Data,         // .data, .data.*
  Rodata,       // .rodata, .rodata.*  (frozen: programs may not write it)
  Bss,          // .bss, .bss.*
  Kconfig,      // .kconfig: the values of `extern ... __kconfig` variables (frozen)
};
const char* map_origin_name(MapOrigin origin);

// An initial slot of a map-in-map or prog_array from a BTF-defined `values = { [i] = &x }`, or
// (legacy) nothing.
struct MapSlotInit {
  uint32_t index = 0;
  int32_t map = -1;          // index into Object::maps (map-in-map), or -1
  std::string program;       // function name (prog_array), or ""
};

struct ObjectMap {
  MapSpec spec;                 // incl. map_extra and spin_lock_off (from the value's BTF)
  MapOrigin origin = MapOrigin::BtfDefined;
  std::string section;          // ".maps", "maps", ".data", ".rodata.str1.1", ...
  uint32_t btf_key_type_id = 0;
  uint32_t btf_value_type_id = 0;
  int32_t inner_map = -1;         // legacy inner_map_idx resolved to an index into Object::maps
  uint32_t elf_id = 0;            // bpf_elf_map id (iproute2), 0 otherwise
  uint32_t elf_inner_id = 0;      // bpf_elf_map inner_id: the id of a map-in-map's template map
  uint32_t elf_inner_idx = 0;     // bpf_elf_map inner_idx: the slot iproute2 puts this map in
                                  // (in the map-in-map whose id is inner_id), 0 otherwise
  MapPinning pinning = MapPinning::None;
  uint32_t pinning_raw = 0;       // the value the object wrote (libbpf: 0/1; iproute2: 0/1/2/custom)
  std::vector<MapSlotInit> slots; // initial contents of map-in-map / prog_array
  // Global data maps: the initial contents (value_size bytes; .bss zeros); empty otherwise.
  std::vector<uint8_t> data;
  bool frozen = false;            // .rodata: read-only for programs once instantiated
  bool is_global_data() const {
    return origin == MapOrigin::Data || origin == MapOrigin::Rodata || origin == MapOrigin::Bss ||
           origin == MapOrigin::Kconfig;
  }
};

// A global variable (from the BTF DATASEC, or the ELF symbols when there is no BTF).
struct GlobalVar {
  std::string name;
  uint32_t map = 0;        // index into Object::maps
  uint32_t offset = 0;     // in the map's value
  uint32_t size = 0;
  uint32_t btf_type_id = 0;  // 0 when unknown
};

struct LoadOptions {
  // Object name for internal map names (libbpf's rule: "<first 8 chars of name>.data").
  // Default: the file's base name up to its first '.', or "obj" for bytes.
  std::string name;
  // When set, every program gets this type (bpfvm run --type).
  std::optional<uint32_t> prog_type;
  // Types by section name (bpfvm --type SECTION=TYPE); they win over prog_type.
  std::map<std::string, uint32_t, std::less<>> section_types;
  // How legacy `maps` definitions are read (28 bytes is both bpf_map_def and bpf_elf_map).
  LegacyMapFormat legacy_maps = LegacyMapFormat::Auto;
  // Target BTF for CO-RE relocations: a file (raw BTF as /sys/kernel/btf/vmlinux, or an ELF with
  // .BTF). Empty: the running kernel's /sys/kernel/btf/vmlinux when readable, else bpfvm's own BTF
  // for its synthetic contexts (core_btf.hpp). Read only when the object has CO-RE relocations.
  std::string target_btf;
  // .kconfig externs: the kernel config file to read (default: /proc/config.gz, else
  // /boot/config-$(uname -r)); `kconfig` values (NAME -> "y", "m", "n", "123", "\"str\"") win over it.
  std::string kconfig_file;
  std::map<std::string, std::string, std::less<>> kconfig;
  // Type of programs whose section name says nothing (unknown names, .text-only objects).
  uint32_t default_type = 0;
  // List root functions of .text (those nothing calls) as programs too. libbpf treats .text as
  // subprograms only; many older objects put their programs there.
  bool text_programs = true;
};

struct ObjectImpl;  // internal: keeps what is needed to link any function on demand

class Object {
 public:
  Object();
  ~Object();
  Object(Object&&) noexcept;
  Object& operator=(Object&&) noexcept;
  Object(const Object&);
  Object& operator=(const Object&);

  std::string name;             // object name used for internal map names
  std::vector<ObjectProgram> programs;
  std::vector<ObjectMap> maps;  // index order = the index in lddw src=5/6
  std::vector<GlobalVar> globals;
  std::string license;
  std::optional<uint32_t> kernel_version;
  bool has_btf = false;
  bool has_btf_ext = false;
  bool iproute2 = false;          // the object is in iproute2's style (bpf_elf_map maps, ID/KEY sections)
  std::string target_btf;         // where the CO-RE target BTF came from ("" when no CO-RE relocations)
  // Things the loader decided for the user that they may want to change ("type sched_cls assumed
  // for ..."), and input it accepted while ignoring part of it ("pinning 16 not understood").
  std::vector<std::string> notes;
  std::vector<std::string> warnings;

  // By function name, else by section name (first program in it).
  const ObjectProgram* find_program(std::string_view name_or_section) const;
  // Links any function of the object (a program or a .text subprogram) on its own, as a program
  // of type `type` (default: what its section says).
  Result<ObjectProgram> link_function(std::string_view function, std::optional<uint32_t> type = {}) const;
  // Names of every function in executable sections (programs and subprograms).
  std::vector<std::string> function_names() const;

  int find_map(std::string_view name) const;  // -1 when absent
  const GlobalVar* find_global(std::string_view name) const;
  // The current bytes of a global variable (initial contents, or what set_global wrote).
  Result<std::span<const uint8_t>> global_bytes(std::string_view name) const;
  // Overwrites a variable before instantiate(): size must equal the variable's size.
  Status set_global(std::string_view name, const void* data, size_t size);
  // Sets a variable from text, checked against its BTF type (bpfvm --set NAME=VALUE): integers
  // (decimal, 0x hex, 0 octal; range-checked for the size and signedness), `bool` (true/false/1/0),
  // enums (an enumerator's name or a number), char arrays (a string that fits with its NUL).
  // Without BTF, a number of the variable's size. Errors name the variable and say why.
  Status set_global_text(std::string_view name, std::string_view value);
  // The variable's value as text, by its BTF type (numbers, strings, enumerator names), or hex bytes.
  Result<std::string> global_text(std::string_view name) const;

  // BTF helpers (no libbpf types exposed): type name of a BTF id ("struct locked_val", "__u32"),
  // "" when unknown or when the object has no BTF.
  std::string btf_type_name(uint32_t type_id) const;
  // Opaque `const struct btf*` (libbpf) for code that includes <bpf/btf.h>; nullptr without BTF.
  const void* btf_handle() const;

 private:
  friend struct ObjectLoader;
  std::shared_ptr<const ObjectImpl> impl_;
};

// Loads an object. `what` names the input in messages ("prog.o"). Errors have ErrorCode::Load and
// say which section / symbol / instruction is wrong.
Result<Object> load_object(std::span<const uint8_t> bytes, const LoadOptions& options = {},
                           std::string_view what = "");
Result<Object> load_object_file(const std::string& path, const LoadOptions& options = {});

// ---- instantiation: maps created, pseudo lddw resolved ------------------------------------------

class LoadedObject {
 public:
  // The object this was instantiated from (a copy): its map specs, license and programs, which
  // verification and prog_array population need.
  std::shared_ptr<const Object> object;
  std::vector<std::shared_ptr<Map>> maps;  // same indices as Object::maps
  // The values of global data maps: memory programs reach through lddw src=6 without a helper
  // (pass them in RunArgs::regions for checked runs). .rodata regions are read-only.
  std::vector<MemRegion> data_regions;

  // The program ready for Executable::create: LDDW_MAP_IDX / LDDW_MAP_FD become LDDW with the
  // address of the bpfvm::Map object, LDDW_MAP_VALUE_IDX / LDDW_MAP_VALUE_FD the address of the
  // value byte (single-element array maps only). Other forms are kept.
  Result<Program> program(const ObjectProgram& prog) const;
  // Address of global data map `map` (its single value), or nullptr.
  uint8_t* data(size_t map) const;
  // A global variable's live bytes (.data/.bss/.rodata as programs see them, before and after runs):
  // read them, or write them (.rodata too: user space may, programs may not).
  Result<std::span<uint8_t>> global(std::string_view name) const;
};

// How instantiate() treats pinning (docs/maps.md, "Pinned maps").
struct InstantiateOptions {
  // Root for maps pinned by name; "" = pin_root() (map.hpp: $BPFVM_PIN_ROOT, /run/bpfvm, ...).
  std::string pin_root;
  // When set, every map of the object that is not global data is created (or reused) pinned in
  // this directory under its name (bpftool prog loadall ... pinmaps DIR).
  std::string pin_all_dir;
};

// Creates every map of the object with create_map (map.hpp), writes global data initial contents,
// fills map-in-map slots with the inner map objects. prog_array slots are left for the caller (it
// decides which programs to create). Maps declared with pinning are opened or created in the
// store: LIBBPF_PIN_BY_NAME at <root>/NAME; iproute2's bpf_elf_map 1 (object namespace) at
// <root>/tc/<object hash>/NAME and 2 (global namespace) at <root>/tc/globals/NAME. A pinned map
// that exists is reused when it matches the definition (else an error says what differs).
Result<LoadedObject> instantiate(const Object& object);
// The same with options (pin root, pin every map).
Result<LoadedObject> instantiate_with(const Object& object, const InstantiateOptions& options);

}  // namespace bpfvm
