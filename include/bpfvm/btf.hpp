// bpfvm: BTF of objects and raw BTF files, printed as bpftool's `btf dump file FILE` prints it.
#pragma once

#include <string>

#include "bpfvm/result.hpp"

namespace bpfvm {

enum class BtfDumpFormat { Raw, C };

// Reads BTF from an ELF object (its .BTF section) or a raw BTF file (/sys/kernel/btf/vmlinux) and
// prints it: Raw = one line per type ("[1] INT 'int' size=4 bits_offset=0 nr_bits=32
// encoding=SIGNED", members indented by a tab), as bpftool; C = compilable C declarations through
// libbpf's btf_dump, inside bpftool's header guard (__VMLINUX_H__) and preserve_access_index pragma.
// json (Raw only): {"types":[{"id":1,"kind":"INT","name":"int",...}]} with bpftool's field names.
Result<std::string> btf_dump_file(const std::string& path, BtfDumpFormat format, bool json = false);

}  // namespace bpfvm
