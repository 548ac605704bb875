// bpfvm: where probes in user code go — the binary a uprobe/usdt spec names (resolved as the dynamic
// loader would), the function's place in it (.symtab / .dynsym, with its size) and the USDT probe
// points of its stapsdt notes. Addresses here are the ELF file's virtual addresses; a process adds
// the module's load bias (dl_iterate_phdr's dlpi_addr: 0 for a non-PIE executable).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/result.hpp"

namespace bpfvm {

// The file a spec's PATH names. A PATH with a '/' is taken as it is (relative to the working
// directory). A bare name is found as ld.so finds a library: `loaded` first (paths of the libraries
// the target has loaded, matched by file name), then LD_LIBRARY_PATH, /etc/ld.so.cache and the
// default directories; a bare name that is not a library (no ".so") is searched in PATH like a
// command. The answer is an existing regular file (not resolved through symlinks).
Result<std::string> resolve_probe_binary(std::string_view path, const std::vector<std::string>& loaded = {});

// The directories of the system's library search (LD_LIBRARY_PATH aside): what /etc/ld.so.conf lists
// and the defaults, in ld.so's order. And the libraries of /etc/ld.so.cache (name -> path).
std::vector<std::string> library_search_dirs();
std::string ld_so_cache_lookup(std::string_view name);

struct ElfFunction {
  std::string name;
  uint64_t vaddr = 0;        // st_value of the symbol
  uint64_t size = 0;         // st_size (0 when the symbol does not say)
  uint64_t file_offset = 0;  // where its code is in the file (what the kernel's uprobe takes)
  bool relocatable = false;  // ET_DYN (PIE or shared library): add the load bias
};

// The function FUNC of the ELF file (STT_FUNC or STT_GNU_IFUNC, defined, in .symtab or .dynsym),
// at `offset` bytes in (refused when the offset is beyond the symbol's size). Several symbols of
// that name at different addresses: the default version (.gnu.version without the hidden bit);
// still several: refused as ambiguous. An empty FUNC takes `offset` as a file offset in an
// executable segment (libbpf's PATH:OFFSET form); the size is then unknown (0).
Result<ElfFunction> find_elf_function(const std::string& path, std::string_view func, uint64_t offset = 0);

// The function (STT_FUNC with a size) whose body holds `vaddr` (a USDT site): its start and size, so
// that a hook there can be placed knowing the function's bounds. An error when no symbol covers it.
Result<ElfFunction> find_enclosing_function(const std::string& path, uint64_t vaddr);

// One USDT probe point (a .note.stapsdt note, as `readelf -n` shows it).
struct UsdtNote {
  std::string provider, name;
  uint64_t pc = 0;          // the probe's address (ELF virtual address, adjusted for prelink)
  uint64_t semaphore = 0;   // the semaphore's address (0: none)
  uint64_t base = 0;        // .stapsdt.base address (the note's), for the adjustment
  std::string args;         // the argument string ("-4@%edi 8@-8(%rbp)")
  bool relocatable = false;
};
// Every probe point PROVIDER:NAME of the file (one probe may be inlined at several places); with both
// empty, every probe point of the file.
Result<std::vector<UsdtNote>> find_usdt_notes(const std::string& path, std::string_view provider,
                                              std::string_view name);

// The file offset of a virtual address (through the PT_LOAD segments); semaphores are found that way
// by the kernel. 0 and an error when no segment holds it.
Result<uint64_t> elf_vaddr_to_offset(const std::string& path, uint64_t vaddr);

}  // namespace bpfvm
