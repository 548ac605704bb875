// Where probes in user code go: the binary (resolved as ld.so would), functions from the symbol
// tables, USDT probe points from the stapsdt notes.
#include "bpfvm/probe_target.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Zydis/Zydis.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <glob.h>
#include <memory>
#include <mutex>

namespace bpfvm {

namespace {

Diagnostic fail(std::string_view what, const std::string& why) {
  return make_error(ErrorCode::InvalidArgument, fmt::format("{}: {}", what, why));
}

bool regular_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string base_name(std::string_view p) {
  auto s = p.rfind('/');
  return std::string(s == std::string_view::npos ? p : p.substr(s + 1));
}

std::vector<std::string> split_path_list(const char* v) {
  std::vector<std::string> out;
  if (!v) return out;
  std::string s(v);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t next = s.find_first_of(":;", pos);
    if (next == std::string::npos) next = s.size();
    if (next > pos) out.push_back(s.substr(pos, next - pos));
    pos = next + 1;
  }
  return out;
}

void read_ld_conf(const std::string& file, std::vector<std::string>& dirs, int depth) {
  if (depth > 8) return;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    auto b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    line = line.substr(b, line.find_last_not_of(" \t") + 1 - b);
    if (line.starts_with("include")) {
      std::string pat = line.substr(7);
      pat = pat.substr(std::min(pat.size(), pat.find_first_not_of(" \t")));
      if (!pat.starts_with("/")) pat = file.substr(0, file.rfind('/') + 1) + pat;
      glob_t g{};
      if (glob(pat.c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) read_ld_conf(g.gl_pathv[i], dirs, depth + 1);
      globfree(&g);
      continue;
    }
    dirs.push_back(line);
  }
}

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};

// An ELF file opened for reading (fd kept for the Elf's lifetime).
struct ElfFile {
  int fd = -1;
  std::unique_ptr<Elf, ElfCloser> elf;
  GElf_Ehdr eh{};
  ~ElfFile() {
    elf.reset();
    if (fd >= 0) close(fd);
  }
};

Result<std::unique_ptr<ElfFile>> open_elf(const std::string& path) {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
  auto f = std::make_unique<ElfFile>();
  f->fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) return fail(path, std::strerror(errno));
  f->elf.reset(elf_begin(f->fd, ELF_C_READ_MMAP, nullptr));
  if (!f->elf || elf_kind(f->elf.get()) != ELF_K_ELF) return fail(path, "not an ELF file");
  if (!gelf_getehdr(f->elf.get(), &f->eh)) return fail(path, fmt::format("bad ELF header: {}", elf_errmsg(-1)));
  if (f->eh.e_ident[EI_CLASS] != ELFCLASS64 || f->eh.e_machine != EM_X86_64)
    return fail(path, "not an x86-64 ELF file (probes in user code are x86-64 only)");
  if (f->eh.e_type != ET_EXEC && f->eh.e_type != ET_DYN)
    return fail(path, fmt::format("not an executable or a shared library (ELF type {})", f->eh.e_type));
  return f;
}

Result<uint64_t> vaddr_to_offset(ElfFile& f, const std::string& path, uint64_t vaddr) {
  size_t n = 0;
  if (elf_getphdrnum(f.elf.get(), &n) != 0) return fail(path, "no program headers");
  for (size_t i = 0; i < n; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(f.elf.get(), static_cast<int>(i), &ph) || ph.p_type != PT_LOAD) continue;
    if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_memsz) return vaddr - ph.p_vaddr + ph.p_offset;
  }
  return fail(path, fmt::format("no loadable segment holds address 0x{:x}", vaddr));
}

}  // namespace

std::vector<std::string> library_search_dirs() {
  std::vector<std::string> dirs;
  read_ld_conf("/etc/ld.so.conf", dirs, 0);
  for (const char* d : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"})
    dirs.emplace_back(d);
  return dirs;
}

std::string ld_so_cache_lookup(std::string_view name) {
  // glibc's cache, the format written since glibc 2.32 ("glibc-ld.so.cache1.1"): a header, then
  // entries {int32 flags; uint32 key, value (string offsets from the header); uint32 osversion;
  // uint64 hwcap}; x86-64 libraries have flags 0x0303 (ELF, x86-64 libc6).
  std::ifstream in("/etc/ld.so.cache", std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  static constexpr char kOld[] = "ld.so-1.7.0", kNew[] = "glibc-ld.so.cache1.1";
  size_t start = 0;
  if (data.compare(0, sizeof kOld - 1, kOld) == 0) {
    // Old-format header and entries first, the new format after them (8-byte aligned).
    if (data.size() < 16) return "";
    uint32_t nold;
    std::memcpy(&nold, data.data() + 12, 4);
    start = (16 + size_t(nold) * 12 + 7) & ~size_t(7);
  }
  if (data.size() < start + 48 || data.compare(start, sizeof kNew - 1, kNew) != 0) return "";
  uint32_t nlibs;
  std::memcpy(&nlibs, data.data() + start + 20, 4);
  const size_t entries = start + 48;
  auto str = [&](uint32_t off) -> std::string_view {
    size_t p = start + off;
    if (p >= data.size()) return {};
    size_t e = data.find('\0', p);
    return std::string_view(data).substr(p, (e == std::string::npos ? data.size() : e) - p);
  };
  for (uint32_t i = 0; i < nlibs; ++i) {
    size_t e = entries + size_t(i) * 24;
    if (e + 24 > data.size()) break;
    int32_t flags;
    uint32_t key, value;
    std::memcpy(&flags, data.data() + e, 4);
    std::memcpy(&key, data.data() + e + 4, 4);
    std::memcpy(&value, data.data() + e + 8, 4);
    if ((flags & 0xff00) != 0x0300 && (flags & 0xff00) != 0) continue;  // other architectures
    if (str(key) == name) {
      std::string v(str(value));
      if (regular_file(v)) return v;
    }
  }
  return "";
}

Result<std::string> resolve_probe_binary(std::string_view path, const std::vector<std::string>& loaded) {
  if (path.empty()) return fail("probe target", "no binary named");
  if (path.find('/') != std::string_view::npos) {
    std::string p(path);
    if (!regular_file(p)) return fail(p, errno == ENOENT ? "no such file" : "not a regular file");
    return p;
  }
  for (const std::string& l : loaded)
    if (base_name(l) == path && regular_file(l)) return l;
  const bool library = path.find(".so") != std::string_view::npos;
  if (library) {
    for (const std::string& d : split_path_list(std::getenv("LD_LIBRARY_PATH"))) {
      std::string c = d + "/" + std::string(path);
      if (regular_file(c)) return c;
    }
    if (std::string c = ld_so_cache_lookup(path); !c.empty()) return c;
    for (const std::string& d : library_search_dirs()) {
      std::string c = d + "/" + std::string(path);
      if (regular_file(c)) return c;
    }
    return fail(path, "no such library in the loaded libraries, LD_LIBRARY_PATH, /etc/ld.so.cache or the library "
                      "directories");
  }
  for (const std::string& d : split_path_list(std::getenv("PATH"))) {
    std::string c = d + "/" + std::string(path);
    if (regular_file(c)) return c;
  }
  return fail(path, "no such program in PATH (give a path, or a library name with .so)");
}

Result<uint64_t> elf_vaddr_to_offset(const std::string& path, uint64_t vaddr) {
  auto f = open_elf(path);
  if (!f) return f.error();
  return vaddr_to_offset(**f, path, vaddr);
}

Result<ElfFunction> find_elf_function(const std::string& path, std::string_view func, uint64_t offset) {
  auto fr = open_elf(path);
  if (!fr) return fr.error();
  ElfFile& f = **fr;
  if (func.empty()) {
    // PATH:OFFSET: a file offset, as the kernel's uprobe takes it; its address through PT_LOAD.
    size_t n = 0;
    if (elf_getphdrnum(f.elf.get(), &n) != 0) return fail(path, "no program headers");
    for (size_t i = 0; i < n; ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(f.elf.get(), static_cast<int>(i), &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
      if (offset >= ph.p_offset && offset < ph.p_offset + ph.p_filesz) {
        ElfFunction out;
        out.vaddr = offset - ph.p_offset + ph.p_vaddr;
        out.file_offset = offset;
        out.relocatable = f.eh.e_type == ET_DYN;
        return out;
      }
    }
    return fail(path, fmt::format("file offset 0x{:x} is not in an executable segment", offset));
  }
  // Versioned names: FUNC@VERSION / FUNC@@VERSION pick that version (by name only; the version
  // string is checked against .gnu.version_d when present).
  std::string_view want = func.substr(0, func.find('@'));
  struct Cand {
    uint64_t vaddr, size;
    bool hidden;
  };
  std::vector<Cand> cands;
  bool saw_undefined = false, saw_other = false;
  for (uint32_t table : {uint32_t(SHT_SYMTAB), uint32_t(SHT_DYNSYM)}) {
    Elf_Scn* scn = nullptr;
    while ((scn = elf_nextscn(f.elf.get(), scn)) != nullptr) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh) || sh.sh_type != table || sh.sh_entsize == 0) continue;
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (!d) continue;
      // The dynamic symbols' versions (hidden bit 0x8000: not the default version).
      Elf_Data* versym = nullptr;
      if (table == SHT_DYNSYM) {
        Elf_Scn* v = nullptr;
        while ((v = elf_nextscn(f.elf.get(), v)) != nullptr) {
          GElf_Shdr vh;
          if (gelf_getshdr(v, &vh) && vh.sh_type == SHT_GNU_versym) versym = elf_getdata(v, nullptr);
        }
      }
      size_t n = sh.sh_size / sh.sh_entsize;
      for (size_t i = 0; i < n; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(d, static_cast<int>(i), &sym)) continue;
        const char* nm = elf_strptr(f.elf.get(), sh.sh_link, sym.st_name);
        if (!nm || want != nm) continue;
        int type = GELF_ST_TYPE(sym.st_info);
        if (sym.st_shndx == SHN_UNDEF) {
          saw_undefined = true;
          continue;
        }
        if (type != STT_FUNC && type != STT_GNU_IFUNC) {
          saw_other = true;
          continue;
        }
        bool hidden = false;
        if (versym && (i + 1) * 2 <= versym->d_size) {
          uint16_t v;
          std::memcpy(&v, static_cast<const char*>(versym->d_buf) + i * 2, 2);
          hidden = (v & 0x8000) != 0;
        }
        cands.push_back({sym.st_value, sym.st_size, hidden});
      }
    }
  }
  if (cands.empty()) {
    if (saw_undefined)
      return fail(path, fmt::format("'{}' is not defined there (the file calls it from another library)", want));
    if (saw_other) return fail(path, fmt::format("'{}' is not a function", want));
    return fail(path, fmt::format("no function '{}' in its symbol tables (.symtab, .dynsym)", want));
  }
  // Same address in both tables: one function. Several addresses: prefer default versions.
  auto distinct = [](std::vector<Cand> v) {
    std::sort(v.begin(), v.end(), [](const Cand& a, const Cand& b) { return a.vaddr < b.vaddr; });
    v.erase(std::unique(v.begin(), v.end(), [](const Cand& a, const Cand& b) { return a.vaddr == b.vaddr; }), v.end());
    return v;
  };
  std::vector<Cand> all = distinct(cands);
  if (all.size() > 1) {
    std::vector<Cand> def;
    for (const Cand& c : cands)
      if (!c.hidden) def.push_back(c);
    def = distinct(def);
    if (def.size() == 1) all = def;
  }
  if (all.size() > 1)
    return fail(path, fmt::format("'{}' is ambiguous: {} functions of that name (at 0x{:x} and 0x{:x})", want, all.size(),
                                  all[0].vaddr, all[1].vaddr));
  // The largest size any table gives (a .dynsym entry may lack it).
  uint64_t size = 0;
  for (const Cand& c : cands)
    if (c.vaddr == all[0].vaddr) size = std::max(size, c.size);
  if (offset != 0 && size != 0 && offset >= size)
    return fail(path, fmt::format("offset {} is beyond the end of '{}' ({} bytes)", offset, want, size));
  if (offset != 0) {
    // FUNC+OFFSET must be where an instruction starts: decode the body from the symbol up to it.
    auto start = vaddr_to_offset(f, path, all[0].vaddr);
    if (!start) return start.error();
    std::vector<uint8_t> code(size ? size : offset + 15);
    ssize_t got = pread(f.fd, code.data(), code.size(), static_cast<off_t>(*start));
    if (got < 0 || static_cast<uint64_t>(got) < std::min<uint64_t>(offset, code.size()))
      return fail(path, fmt::format("cannot read the code of '{}'", want));
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    uint64_t pos = 0, last = 0;
    while (pos < offset) {
      ZydisDecodedInstruction insn;
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, nullptr, code.data() + pos,
                                                      static_cast<size_t>(got) - pos, &insn)))
        return fail(path, fmt::format("'{}' cannot be decoded at +{} (before offset {})", want, pos, offset));
      last = pos;
      pos += insn.length;
    }
    if (pos != offset)
      return fail(path, fmt::format("offset {} is inside an instruction of '{}' (the one at +{}, {} bytes)", offset,
                                    want, last, pos - last));
  }
  ElfFunction out;
  out.name = std::string(want);
  out.vaddr = all[0].vaddr + offset;
  out.size = size;
  out.relocatable = f.eh.e_type == ET_DYN;
  auto off = vaddr_to_offset(f, path, out.vaddr);
  if (!off) return off.error();
  out.file_offset = *off;
  return out;
}

Result<ElfFunction> find_enclosing_function(const std::string& path, uint64_t vaddr) {
  auto fr = open_elf(path);
  if (!fr) return fr.error();
  ElfFile& f = **fr;
  for (uint32_t table : {uint32_t(SHT_SYMTAB), uint32_t(SHT_DYNSYM)}) {
    Elf_Scn* scn = nullptr;
    while ((scn = elf_nextscn(f.elf.get(), scn)) != nullptr) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh) || sh.sh_type != table || sh.sh_entsize == 0) continue;
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (!d) continue;
      size_t n = sh.sh_size / sh.sh_entsize;
      for (size_t i = 0; i < n; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(d, static_cast<int>(i), &sym) || sym.st_shndx == SHN_UNDEF || sym.st_size == 0) continue;
        if (GELF_ST_TYPE(sym.st_info) != STT_FUNC) continue;
        if (vaddr < sym.st_value || vaddr >= sym.st_value + sym.st_size) continue;
        ElfFunction out;
        const char* nm = elf_strptr(f.elf.get(), sh.sh_link, sym.st_name);
        out.name = nm ? nm : "";
        out.vaddr = sym.st_value;
        out.size = sym.st_size;
        out.relocatable = f.eh.e_type == ET_DYN;
        auto off = vaddr_to_offset(f, path, out.vaddr);
        if (!off) return off.error();
        out.file_offset = *off;
        return out;
      }
    }
  }
  return fail(path, fmt::format("no function symbol covers address 0x{:x}", vaddr));
}

Result<std::vector<UsdtNote>> find_usdt_notes(const std::string& path, std::string_view provider,
                                              std::string_view name) {
  auto fr = open_elf(path);
  if (!fr) return fr.error();
  ElfFile& f = **fr;
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(f.elf.get(), &shstrndx) != 0) return fail(path, "no section name table");
  uint64_t base_addr = 0;
  bool have_base = false;
  std::vector<Elf_Scn*> notes;
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(f.elf.get(), scn)) != nullptr) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    const char* nm = elf_strptr(f.elf.get(), shstrndx, sh.sh_name);
    if (!nm) continue;
    if (std::strcmp(nm, ".stapsdt.base") == 0) {
      base_addr = sh.sh_addr;
      have_base = true;
    }
    if (std::strcmp(nm, ".note.stapsdt") == 0 && sh.sh_type == SHT_NOTE) notes.push_back(scn);
  }
  if (notes.empty()) return fail(path, "no USDT probes (no .note.stapsdt section)");
  std::vector<UsdtNote> out;
  for (Elf_Scn* s : notes) {
    Elf_Data* d = elf_getdata(s, nullptr);
    if (!d) continue;
    size_t off = 0, name_off = 0, desc_off = 0;
    GElf_Nhdr nh;
    while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
      const char* buf = static_cast<const char*>(d->d_buf);
      if (nh.n_type != 3 || nh.n_namesz != 8 || std::strncmp(buf + name_off, "stapsdt", 8) != 0) continue;
      if (nh.n_descsz < 3 * 8 + 3) continue;
      const char* desc = buf + desc_off;
      UsdtNote n;
      std::memcpy(&n.pc, desc, 8);
      std::memcpy(&n.base, desc + 8, 8);
      std::memcpy(&n.semaphore, desc + 16, 8);
      const char* strs = desc + 24;
      const char* end = desc + nh.n_descsz;
      const char* p1 = static_cast<const char*>(std::memchr(strs, 0, end - strs));
      if (!p1) continue;
      const char* p2 = static_cast<const char*>(std::memchr(p1 + 1, 0, end - p1 - 1));
      if (!p2) continue;
      const char* p3 = static_cast<const char*>(std::memchr(p2 + 1, 0, end - p2 - 1));
      n.provider.assign(strs, p1);
      n.name.assign(p1 + 1, p2);
      n.args.assign(p2 + 1, p3 ? p3 : end);
      if (!(provider.empty() && name.empty()) && (n.provider != provider || n.name != name)) continue;
      // Prelink adjustment, as libbpf and systemtap do: the note records .stapsdt.base's address
      // at link time; the section's address now tells how far the file was moved.
      if (have_base && n.base) {
        n.pc += base_addr - n.base;
        if (n.semaphore) n.semaphore += base_addr - n.base;
      }
      n.relocatable = f.eh.e_type == ET_DYN;
      out.push_back(std::move(n));
    }
  }
  if (out.empty()) return fail(path, fmt::format("no USDT probe {}:{} in its .note.stapsdt notes", provider, name));
  return out;
}

}  // namespace bpfvm
