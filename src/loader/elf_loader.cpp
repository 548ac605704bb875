// The ELF loader: sections, symbols, maps (BTF-defined and legacy), global data, relocations,
// .BTF / .BTF.ext, bpf-to-bpf linking. Every size and offset read from the file is checked before
// use; every error names the section, symbol or instruction.
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>

#include "bpfvm/object.hpp"
#include "loader/btf_util.hpp"
#include "loader/core.hpp"
#include "loader/kconfig.hpp"
#include "loader/internal.hpp"

#ifndef EM_BPF
#define EM_BPF 247
#endif

namespace bpfvm {

void BtfDeleter::operator()(struct btf* b) const { btf__free(b); }

namespace {

constexpr uint64_t kMaxProgramSlots = 1'000'000;     // the kernel's BPF_COMPLEXITY_LIMIT_INSNS
constexpr uint64_t kMaxObjectSlots = 4'000'000;      // all linked programs of one object together
constexpr uint64_t kMaxGlobalDataSize = 4u << 20;    // the kernel's limit on an array value (KMALLOC_MAX_SIZE)
constexpr uint32_t kMaxMapType = 33;                 // BPF_MAP_TYPE_ARENA in current kernels

// Loader messages say where themselves (section, symbol, instruction), so no pc prefix.
Diagnostic load_error(std::string message, int64_t /*pc*/ = -1) {
  return make_error(ErrorCode::Load, std::move(message));
}

// Helper ids by name, from the one prototype table (src/helpers/protos.def).
int32_t helper_id_by_name(std::string_view name) {
  static const std::unordered_map<std::string_view, int32_t> table = [] {
    std::unordered_map<std::string_view, int32_t> t;
#define H(ID, NAME, ...) t.emplace(#NAME, ID);
#include "helpers/protos.def"
#undef H
    return t;
  }();
  if (name.starts_with("bpf_")) name.remove_prefix(4);
  auto it = table.find(name);
  return it == table.end() ? -1 : it->second;
}

std::string quoted(std::string_view s) { return fmt::format("'{}'", s); }

// ---- libbpf messages: captured so that a BTF error can say why --------------------------------
thread_local std::string* tl_libbpf_msg = nullptr;
int capture_libbpf(enum libbpf_print_level level, const char* fmtstr, va_list ap) {
  if (!tl_libbpf_msg || level == LIBBPF_DEBUG) return 0;
  char buf[512];
  int n = vsnprintf(buf, sizeof buf, fmtstr, ap);
  if (n > 0) {
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (s.starts_with("libbpf: ")) s.erase(0, 8);
    *tl_libbpf_msg = s;  // keep the last message: it is usually the most specific
  }
  return 0;
}
struct LibbpfCapture {
  std::string msg;
  libbpf_print_fn_t old;
  LibbpfCapture() {
    tl_libbpf_msg = &msg;
    old = libbpf_set_print(capture_libbpf);
  }
  ~LibbpfCapture() {
    libbpf_set_print(old);
    tl_libbpf_msg = nullptr;
  }
};
std::mutex g_libbpf_mu;  // libbpf's print hook is global

// ---- ELF view ---------------------------------------------------------------------------------
struct Sec {
  size_t index = 0;
  std::string name;
  GElf_Shdr sh{};
  const uint8_t* data = nullptr;  // nullptr for SHT_NOBITS or empty
  uint64_t size = 0;
};

struct Sym {
  std::string name;
  uint64_t value = 0;
  uint64_t size = 0;
  uint8_t type = 0;
  uint8_t bind = 0;
  uint16_t shndx = 0;
};

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};

bool is_data_section(std::string_view n) {
  return n == ".data" || n.starts_with(".data.") || n == ".rodata" || n.starts_with(".rodata.");
}
bool is_bss_section(std::string_view n) { return n == ".bss" || n.starts_with(".bss."); }

// libbpf's internal map naming: "<up to 8 chars of object name><section>", at most 15 chars;
// sections with a second dot (".rodata.str1.1", ".data.counters") keep only the section name.
std::string internal_map_name(std::string_view obj, std::string_view sec) {
  size_t sfx_len = std::max<size_t>(7, sec.size());
  if (sfx_len >= 16) sfx_len = 15;
  size_t pfx_len = sec.find('.', 1) != std::string_view::npos ? 0 : std::min<size_t>(16 - sfx_len - 1, obj.size());
  std::string n = std::string(obj.substr(0, pfx_len)) + std::string(sec.substr(0, std::min(sfx_len, sec.size())));
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.') c = '_';
  return n;
}

template <class T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

// ---- the loader ---------------------------------------------------------------------------------
struct ObjectLoader {
  const LoadOptions& opts;
  std::string what;
  std::vector<uint8_t> image;  // libelf reads from here
  std::unique_ptr<Elf, ElfCloser> elf;
  std::vector<Sec> secs;       // by section index
  std::vector<Sym> syms;
  std::vector<std::vector<uint32_t>> syms_of_sec;  // symbol indices by section index
  std::unordered_map<std::string, uint32_t> datasec_ids;  // BTF DATASEC name -> type id
  size_t symtab_index = 0;
  std::shared_ptr<ObjectImpl> impl = std::make_shared<ObjectImpl>();
  Object obj;

  // section index -> code section index / map kind
  std::unordered_map<size_t, uint32_t> code_of_sec;
  std::unordered_map<std::string, uint32_t> code_by_name;
  std::unordered_map<size_t, uint32_t> data_map_of_sec;  // global data section -> map index
  std::set<size_t> legacy_secs;
  size_t btf_maps_sec = 0;
  std::map<std::pair<size_t, uint64_t>, uint32_t> map_at;  // (section, offset) -> map index
  std::unordered_map<std::string, uint32_t> btf_map_by_name;
  std::unordered_map<uint32_t, uint32_t> btf_values_off;  // map index -> offset of its `values` member

  ObjectLoader(const LoadOptions& o, std::string w) : opts(o), what(std::move(w)) {}

  std::string sec_name(size_t idx) const {
    if (idx < secs.size()) return quoted(secs[idx].name);
    return fmt::format("#{}", idx);
  }
  std::string sym_desc(const Sym& s) const {
    if (!s.name.empty()) return quoted(s.name);
    if (s.type == STT_SECTION && s.shndx < secs.size()) return quoted(secs[s.shndx].name);
    return "(unnamed symbol)";
  }

  Status read_elf(std::span<const uint8_t> bytes);
  Status read_symbols();
  Status collect_code();
  Status collect_legacy_maps();
  // iproute2's marks on an object: tail-call sections named "ID/KEY", or code sections whose names
  // give no program type (tc takes any section name).
  bool iproute2_marks() const;
  bool has_tail_call_sections() const;
  Status collect_btf();
  Status collect_btf_maps();
  Status collect_global_data();
  Status collect_kconfig();
  Status collect_license_version();
  Status collect_relocations();
  Result<CodeReloc> classify_reloc(const Sym& y, const RawInsn& in, bool call, const std::function<std::string()>& at);
  // .kconfig externs: the internal map holding their values, and each extern's offset in it.
  int32_t kconfig_map = -1;
  std::unordered_map<std::string, int64_t> kconfig_offset;
  Status collect_btf_ext(const Sec& s);
  Status collect_map_slot_relocs();
  Status apply_core_relocations();
  Status build_programs();
  Status collect_globals_from_btf();
  uint64_t symbol_offset(size_t sec, const std::string& name, uint64_t fallback) const;
  const struct btf_type* datasec(std::string_view name, uint32_t* id = nullptr) const {
    auto it = datasec_ids.find(std::string(name));
    if (it == datasec_ids.end() || !impl->btf) return nullptr;
    if (id) *id = it->second;
    return btf__type_by_id(impl->btf.get(), it->second);
  }

  Result<Object> run(std::span<const uint8_t> bytes);
};

Status ObjectLoader::read_elf(std::span<const uint8_t> bytes) {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
  if (bytes.size() < sizeof(Elf64_Ehdr)) return load_error(fmt::format("not an ELF object: only {} bytes", bytes.size()));
  if (std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) return load_error("not an ELF object (bad magic)");
  image.assign(bytes.begin(), bytes.end());
  elf.reset(elf_memory(reinterpret_cast<char*>(image.data()), image.size()));
  if (!elf) return load_error(fmt::format("not a readable ELF object: {}", elf_errmsg(-1)));
  if (elf_kind(elf.get()) != ELF_K_ELF) return load_error("not an ELF object");
  if (gelf_getclass(elf.get()) != ELFCLASS64) return load_error("not a 64-bit ELF object (BPF objects are ELFCLASS64)");
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf.get(), &eh)) return load_error(fmt::format("bad ELF header: {}", elf_errmsg(-1)));
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return load_error("big-endian BPF objects are not supported (built with -target bpfeb?)");
  // EM_NONE: older LLVM wrote no machine; libbpf accepts it too.
  if (eh.e_machine != EM_BPF && eh.e_machine != EM_NONE)
    return load_error(fmt::format("not a BPF object (ELF machine {}, BPF is 247)", eh.e_machine));
  if (eh.e_type != ET_REL) return load_error(fmt::format("not a relocatable object (ELF type {})", eh.e_type));

  size_t nsec = 0, shstrndx = 0;
  if (elf_getshdrnum(elf.get(), &nsec) != 0) return load_error(fmt::format("bad section count: {}", elf_errmsg(-1)));
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0)
    return load_error(fmt::format("bad section name table index: {}", elf_errmsg(-1)));
  // Each section header takes 64 bytes of the file: a count beyond that is a lie.
  if (nsec > bytes.size() / sizeof(Elf64_Shdr) + 1)
    return load_error(fmt::format("ELF header claims {} sections in a {}-byte file", nsec, bytes.size()));
  secs.resize(nsec);
  for (size_t i = 1; i < nsec; ++i) {
    Elf_Scn* scn = elf_getscn(elf.get(), i);
    Sec& s = secs[i];
    s.index = i;
    if (!scn || !gelf_getshdr(scn, &s.sh)) return load_error(fmt::format("section #{}: bad header: {}", i, elf_errmsg(-1)));
    const char* n = elf_strptr(elf.get(), shstrndx, s.sh.sh_name);
    if (!n) return load_error(fmt::format("section #{}: name offset {} is outside the section name table", i, s.sh.sh_name));
    s.name = n;
    s.size = s.sh.sh_size;
    if (s.sh.sh_type == SHT_NOBITS || s.sh.sh_size == 0 || s.sh.sh_type == SHT_NULL) continue;
    if (s.sh.sh_offset > bytes.size() || bytes.size() - s.sh.sh_offset < s.sh.sh_size)
      return load_error(fmt::format("section {}: {} bytes at offset {} run past the end of the file ({} bytes)",
                                    quoted(s.name), s.sh.sh_size, s.sh.sh_offset, bytes.size()));
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (!d || (d->d_size > 0 && !d->d_buf))
      return load_error(fmt::format("section {}: contents not readable: {}", quoted(s.name), elf_errmsg(-1)));
    s.data = static_cast<const uint8_t*>(d->d_buf);
    s.size = d->d_size;
  }
  // A relocation section names the section it patches twice: in sh_info and, by the universal
  // convention of every ELF producer, in its own name (".rel" + target). When they disagree the
  // object was damaged (a renamed section); patching the wrong section would be silently wrong.
  for (const Sec& s : secs) {
    if (s.sh.sh_type != SHT_REL && s.sh.sh_type != SHT_RELA) continue;
    if (s.sh.sh_info == 0 || s.sh.sh_info >= secs.size())
      return load_error(fmt::format("section {}: relocations for section #{}, which does not exist", quoted(s.name),
                                    s.sh.sh_info));
    const std::string prefix = s.sh.sh_type == SHT_RELA ? ".rela" : ".rel";
    const std::string& target = secs[s.sh.sh_info].name;
    if (s.name.rfind(prefix, 0) == 0 && s.name.substr(prefix.size()) != target)
      return load_error(fmt::format("section {} holds the relocations of section #{} {}, not of {} as its name "
                                    "says (damaged object?)",
                                    quoted(s.name), s.sh.sh_info, quoted(target), quoted(s.name.substr(prefix.size()))));
  }
  return {};
}

Status ObjectLoader::read_symbols() {
  for (const Sec& s : secs) {
    if (s.sh.sh_type != SHT_SYMTAB) continue;
    if (symtab_index) return load_error(fmt::format("more than one symbol table ({} and {})", sec_name(symtab_index), quoted(s.name)));
    symtab_index = s.index;
  }
  if (!symtab_index) return load_error("no symbol table (.symtab): cannot find programs or maps");
  const Sec& st = secs[symtab_index];
  if (st.sh.sh_link == 0 || st.sh.sh_link >= secs.size() || secs[st.sh.sh_link].sh.sh_type != SHT_STRTAB)
    return load_error(fmt::format("symbol table {}: string table index {} is not a string table", quoted(st.name), st.sh.sh_link));
  Elf_Scn* scn = elf_getscn(elf.get(), symtab_index);
  Elf_Data* d = scn ? elf_getdata(scn, nullptr) : nullptr;
  if (!d) return load_error(fmt::format("symbol table {}: not readable: {}", quoted(st.name), elf_errmsg(-1)));
  size_t n = d->d_size / sizeof(Elf64_Sym);
  syms.resize(n);
  for (size_t i = 0; i < n; ++i) {
    GElf_Sym gs;
    if (!gelf_getsym(d, static_cast<int>(i), &gs)) return load_error(fmt::format("symbol #{}: not readable: {}", i, elf_errmsg(-1)));
    Sym& s = syms[i];
    if (gs.st_name) {
      const char* nm = elf_strptr(elf.get(), st.sh.sh_link, gs.st_name);
      if (!nm) return load_error(fmt::format("symbol #{}: name offset {} is outside the string table", i, gs.st_name));
      s.name = nm;
    }
    s.value = gs.st_value;
    s.size = gs.st_size;
    s.type = GELF_ST_TYPE(gs.st_info);
    s.bind = GELF_ST_BIND(gs.st_info);
    s.shndx = gs.st_shndx;
    if (s.type == STT_SECTION && s.shndx < secs.size() && s.name.empty()) s.name = secs[s.shndx].name;
  }
  syms_of_sec.assign(secs.size(), {});
  for (uint32_t i = 0; i < syms.size(); ++i)
    if (syms[i].shndx < secs.size()) syms_of_sec[syms[i].shndx].push_back(i);
  return {};
}

// Offset of the symbol `name` in section `sec` (not a section symbol), or `fallback`.
uint64_t ObjectLoader::symbol_offset(size_t sec, const std::string& name, uint64_t fallback) const {
  for (uint32_t i : syms_of_sec[sec])
    if (syms[i].name == name && syms[i].type != STT_SECTION) fallback = syms[i].value;
  return fallback;
}

Status ObjectLoader::collect_code() {
  for (const Sec& s : secs) {
    if (s.sh.sh_type != SHT_PROGBITS || !(s.sh.sh_flags & SHF_EXECINSTR) || s.size == 0) continue;
    if (s.size % sizeof(RawInsn) != 0)
      return load_error(fmt::format("section {}: size {} is not a multiple of 8 (instructions are 8 bytes)", quoted(s.name), s.size));
    if (s.size / sizeof(RawInsn) > kMaxProgramSlots)
      return load_error(fmt::format("section {}: {} instructions, more than the limit of {}", quoted(s.name),
                                    s.size / sizeof(RawInsn), kMaxProgramSlots));
    CodeSection cs;
    cs.name = s.name;
    cs.is_text = s.name == ".text";
    cs.raw.resize(s.size / sizeof(RawInsn));
    std::memcpy(cs.raw.data(), s.data, s.size);
    const uint64_t nslots = cs.raw.size();
    // Functions: STT_FUNC symbols with a size (what clang emits) ...
    for (uint32_t si : syms_of_sec[s.index]) {
      const Sym& y = syms[si];
      if (y.type != STT_FUNC || y.size == 0) continue;
      if (y.value % 8 || y.size % 8)
        return load_error(fmt::format("function {} in section {}: offset {} / size {} not a multiple of 8", quoted(y.name),
                                      quoted(s.name), y.value, y.size));
      if (y.value > s.size || s.size - y.value < y.size)
        return load_error(fmt::format("function {} in section {}: offset {} + size {} is past the section end ({} bytes)",
                                      quoted(y.name), quoted(s.name), y.value, y.size, s.size));
      cs.functions.push_back(CodeFunction{y.name, y.value / 8, y.size / 8, y.bind != STB_LOCAL});
    }
    if (cs.functions.empty()) {
      // ... or, in old objects, global symbols with no type or size: each one runs to the next.
      std::vector<const Sym*> g;
      for (uint32_t si : syms_of_sec[s.index]) {
        const Sym& y = syms[si];
        if (y.type != STT_SECTION && y.type != STT_FILE && y.bind != STB_LOCAL && !y.name.empty()) g.push_back(&y);
      }
      std::sort(g.begin(), g.end(), [](const Sym* a, const Sym* b) { return a->value < b->value; });
      for (size_t k = 0; k < g.size(); ++k) {
        if (g[k]->value % 8 || g[k]->value >= s.size)
          return load_error(fmt::format("symbol {} in section {}: offset {} is not an instruction of the section ({} bytes)",
                                        quoted(g[k]->name), quoted(s.name), g[k]->value, s.size));
        if (k + 1 < g.size() && g[k + 1]->value == g[k]->value) continue;  // aliases: keep the last
        uint64_t end = k + 1 < g.size() ? g[k + 1]->value : s.size;
        cs.functions.push_back(CodeFunction{g[k]->name, g[k]->value / 8, (end - g[k]->value) / 8, true});
      }
      if (cs.functions.empty()) cs.functions.push_back(CodeFunction{s.name, 0, nslots, true});
    }
    std::sort(cs.functions.begin(), cs.functions.end(), [](const CodeFunction& a, const CodeFunction& b) {
      return a.start < b.start;
    });
    for (size_t k = 1; k < cs.functions.size(); ++k) {
      const auto& a = cs.functions[k - 1];
      const auto& b = cs.functions[k];
      if (a.start + a.slots > b.start)
        return load_error(fmt::format("section {}: functions {} and {} overlap", quoted(s.name), quoted(a.name), quoted(b.name)));
    }
    code_of_sec[s.index] = static_cast<uint32_t>(impl->code.size());
    code_by_name.emplace(s.name, static_cast<uint32_t>(impl->code.size()));
    impl->code.push_back(std::move(cs));
  }
  return {};
}

namespace {
bool is_tail_call_section(std::string_view n) {
  size_t slash = n.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == n.size()) return false;
  auto digits = [](std::string_view d) { return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }); };
  return digits(n.substr(0, slash)) && digits(n.substr(slash + 1));
}
}  // namespace

bool ObjectLoader::has_tail_call_sections() const {
  for (const auto& cs : impl->code)
    if (is_tail_call_section(cs.name)) return true;
  return false;
}

bool ObjectLoader::iproute2_marks() const {
  for (const auto& cs : impl->code)
    if (!cs.is_text && (is_tail_call_section(cs.name) || !section_prog_type(cs.name).known)) return true;
  return false;
}

Status ObjectLoader::collect_legacy_maps() {
  // Legacy map sections: "maps" (samples/bpf, libbpf < 1.0, iproute2) and "maps/<name>" (one
  // section per map, as some loaders emit). Maps are numbered in section order, then offset order:
  // that is what inner_map_idx counts.
  const uint32_t first = static_cast<uint32_t>(obj.maps.size());
  std::vector<uint32_t> inner_ref;
  std::vector<bool> is_elf;
  for (const Sec& s : secs) {
    if (!(s.name == "maps" || s.name.starts_with("maps/")) || s.sh.sh_type == SHT_NULL) continue;
    const std::string sn = quoted(s.name);
    legacy_secs.insert(s.index);
    std::vector<const Sym*> ms;
    for (uint32_t si : syms_of_sec[s.index]) {
      const Sym& y = syms[si];
      if (y.type != STT_SECTION && y.type != STT_FILE && !y.name.empty()) ms.push_back(&y);
    }
    if (ms.empty()) {
      if (s.size == 0) continue;
      return load_error(fmt::format("section {}: {} bytes but no map symbols", sn, s.size));
    }
    if (!s.data) return load_error(fmt::format("section {}: has no contents (SHT_NOBITS)", sn));
    if (s.size % ms.size() != 0)
      return load_error(fmt::format("section {}: size {} is not a multiple of its {} map symbols", sn, s.size, ms.size()));
    const uint64_t def = s.size / ms.size();
    if (def < 20)
      return load_error(fmt::format("section {}: {} bytes per map ({} bytes, {} symbols), less than the 20 of "
                                    "struct bpf_map_def", sn, def, s.size, ms.size()));
    // 36 bytes: iproute2's struct bpf_elf_map (type, size_key, size_value, max_elem, flags, id,
    // pinning, inner_id, inner_idx). 28 bytes: iproute2's older bpf_elf_map (without inner_id,
    // inner_idx) when the object has iproute2's marks, else samples/bpf's struct bpf_map_def (type,
    // key_size, value_size, max_entries, map_flags, inner_map_idx, numa_node). Other sizes:
    // bpf_map_def, whose bytes beyond 28 must be zero. LoadOptions::legacy_maps overrides.
    bool elf_map = false;
    switch (opts.legacy_maps) {
      case LegacyMapFormat::Auto: elf_map = def == 36 || (def == 28 && iproute2_marks()); break;
      case LegacyMapFormat::BpfElfMap: elf_map = true; break;
      case LegacyMapFormat::BpfMapDef: elf_map = false; break;
    }
    if (elf_map && def < 28)
      return load_error(fmt::format("section {}: {} bytes per map, less than the 28 of iproute2's struct bpf_elf_map", sn, def));
    std::sort(ms.begin(), ms.end(), [](const Sym* a, const Sym* b) { return a->value < b->value; });
    for (size_t k = 0; k < ms.size(); ++k) {
      const Sym& y = *ms[k];
      if (y.value > s.size || s.size - y.value < def)
        return load_error(fmt::format("map {}: offset {} + {} bytes is past the end of section {} ({} bytes)",
                                      quoted(y.name), y.value, def, sn, s.size));
      if (map_at.count({s.index, y.value}))
        return load_error(fmt::format("map {}: shares offset {} of section {} with another map", quoted(y.name), y.value, sn));
      const uint8_t* p = s.data + y.value;
      auto field = [&](size_t i) -> uint32_t { return (i + 1) * 4 <= def ? read_le<uint32_t>(p + i * 4) : 0; };
      ObjectMap m;
      m.section = s.name;
      m.spec.name = y.name;
      m.spec.type = field(0);
      m.spec.key_size = field(1);
      m.spec.value_size = field(2);
      m.spec.max_entries = field(3);
      m.spec.flags = field(4);
      const uint64_t known_bytes = elf_map ? 36 : 28;
      for (uint64_t b = known_bytes; b < def; ++b)
        if (p[b] != 0)
          return load_error(fmt::format("map {}: {}-byte definition has unknown non-zero fields after byte {} (read as {})",
                                        quoted(y.name), def, known_bytes, elf_map ? "struct bpf_elf_map" : "struct bpf_map_def"));
      if (elf_map) {
        m.origin = MapOrigin::LegacyElf;
        m.elf_id = field(5);
        m.pinning_raw = field(6);
        m.spec.pinning = m.pinning_raw;
        m.elf_inner_id = field(7);
        m.elf_inner_idx = field(8);
        // iproute2: PIN_NONE 0, PIN_OBJECT_NS 1, PIN_GLOBAL_NS 2; larger values name custom
        // directories through /etc/iproute2/bpf_pinning, which bpfvm does not read.
        switch (m.pinning_raw) {
          case 0: m.pinning = MapPinning::None; break;
          case 1: m.pinning = MapPinning::ObjectNs; break;
          case 2: m.pinning = MapPinning::GlobalNs; break;
          default:
            obj.warnings.push_back(fmt::format("map {}: pinning {} is an iproute2 custom pinning namespace "
                                               "(/etc/iproute2/bpf_pinning), not supported: the map is not pinned",
                                               quoted(y.name), m.pinning_raw));
            m.spec.pinning = 0;
        }
        inner_ref.push_back(m.elf_inner_id);  // inner_id: the id of the template inner map
      } else {
        m.origin = MapOrigin::Legacy;
        inner_ref.push_back(field(5));  // inner_map_idx
        m.spec.numa_node = field(6);
      }
      is_elf.push_back(elf_map);
      if (m.spec.type == 0 || m.spec.type > kMaxMapType)
        return load_error(fmt::format("map {} (section {}): unknown map type {}", quoted(y.name), sn, m.spec.type));
      map_at[{s.index, y.value}] = static_cast<uint32_t>(obj.maps.size());
      obj.maps.push_back(std::move(m));
    }
  }
  for (size_t k = 0; k < is_elf.size(); ++k)
    if (is_elf[k]) obj.iproute2 = true;
  if (has_tail_call_sections()) obj.iproute2 = true;
  // Inner maps of legacy map-in-map: bpf_map_def.inner_map_idx is the index of the template map
  // among the legacy maps; bpf_elf_map.inner_id is the template's id.
  const size_t count = obj.maps.size() - first;
  for (size_t k = 0; k < count; ++k) {
    ObjectMap& m = obj.maps[first + k];
    bool mim = m.spec.type == BPF_MAP_TYPE_ARRAY_OF_MAPS || m.spec.type == BPF_MAP_TYPE_HASH_OF_MAPS;
    if (!mim) continue;
    int32_t inner = -1;
    if (is_elf[k]) {
      for (size_t j = 0; j < count; ++j)
        if (j != k && inner_ref[k] != 0 && obj.maps[first + j].elf_id == inner_ref[k]) inner = static_cast<int32_t>(first + j);
      if (inner < 0)
        return load_error(fmt::format("map {}: map-in-map with inner_id {} but no map has that id", quoted(m.spec.name), inner_ref[k]));
    } else {
      if (inner_ref[k] >= count || inner_ref[k] == k)
        return load_error(fmt::format("map {}: inner_map_idx {} does not name another legacy map ({} maps)",
                                      quoted(m.spec.name), inner_ref[k], count));
      inner = static_cast<int32_t>(first + inner_ref[k]);
    }
    m.inner_map = inner;
    m.spec.inner = std::make_shared<MapSpec>(obj.maps[inner].spec);
    m.spec.inner->inner.reset();
  }
  return {};
}

Status ObjectLoader::collect_btf() {
  for (const Sec& s : secs) {
    if (s.name != ".BTF" || s.size == 0) continue;
    if (!s.data) return load_error("section '.BTF': has no contents");
    if (s.size > UINT32_MAX) return load_error("section '.BTF': too large");
    std::string why;
    struct btf* b = nullptr;
    {
      std::lock_guard<std::mutex> lk(g_libbpf_mu);
      LibbpfCapture cap;
      b = btf__new(s.data, static_cast<uint32_t>(s.size));
      why = cap.msg;
    }
    if (!b || libbpf_get_error(b)) {
      int err = b ? static_cast<int>(-libbpf_get_error(b)) : errno;
      return load_error(fmt::format("section '.BTF': invalid BTF ({})", why.empty() ? std::strerror(err) : why));
    }
    impl->btf.reset(b);
    obj.has_btf = true;
    const uint32_t n = btf__type_cnt(b);
    for (uint32_t id = 1; id < n; ++id) {
      const struct btf_type* t = btf__type_by_id(b, id);
      if (t && btf_is_datasec(t)) datasec_ids.emplace(btfu::name(b, t->name_off), id);
    }
  }
  for (const Sec& s : secs)
    if (s.name == ".BTF.ext" && s.size > 0) {
      if (!impl->btf) return load_error("section '.BTF.ext' present without '.BTF'");
      if (Status st = collect_btf_ext(s); !st) return st;
      obj.has_btf_ext = true;
    }
  return {};
}

// .BTF.ext (kernel Documentation/bpf/btf.rst): header {u16 magic 0xeB9F, u8 version, u8 flags,
// u32 hdr_len, u32 func_info_off, u32 func_info_len, u32 line_info_off, u32 line_info_len, ...};
// offsets are from the end of the header. Each info block: u32 rec_size, then per section
// {u32 sec_name_off, u32 num_info, rec[num_info]}. In ELF files insn_off is in bytes.
Status ObjectLoader::collect_btf_ext(const Sec& s) {
  if (!s.data) return load_error("section '.BTF.ext': has no contents");
  const uint8_t* p = s.data;
  const uint64_t n = s.size;
  if (n < 8) return load_error(fmt::format("section '.BTF.ext': {} bytes, too short for its header", n));
  if (read_le<uint16_t>(p) != 0xeB9F) return load_error(fmt::format("section '.BTF.ext': bad magic 0x{:04x}", read_le<uint16_t>(p)));
  if (p[2] != 1) return load_error(fmt::format("section '.BTF.ext': unsupported version {}", p[2]));
  const uint32_t hdr_len = read_le<uint32_t>(p + 4);
  if (hdr_len < 24 || hdr_len > n)
    return load_error(fmt::format("section '.BTF.ext': header length {} is invalid (section has {} bytes)", hdr_len, n));
  const uint32_t fi_off = read_le<uint32_t>(p + 8), fi_len = read_le<uint32_t>(p + 12);
  const uint32_t li_off = read_le<uint32_t>(p + 16), li_len = read_le<uint32_t>(p + 20);
  const uint64_t body = n - hdr_len;
  auto parse = [&](const char* what, uint32_t off, uint32_t len, uint32_t min_rec, auto&& add) -> Status {
    if (len == 0) return {};
    if (static_cast<uint64_t>(off) + len > body)
      return load_error(fmt::format("section '.BTF.ext': {} ({} bytes at {}) runs past the section end", what, len, off));
    const uint8_t* q = p + hdr_len + off;
    const uint8_t* end = q + len;
    if (len < 4) return load_error(fmt::format("section '.BTF.ext': {} too short", what));
    const uint32_t rec = read_le<uint32_t>(q);
    q += 4;
    if (rec < min_rec || rec % 4 != 0 || rec > 1024)
      return load_error(fmt::format("section '.BTF.ext': {} record size {} is invalid", what, rec));
    while (q < end) {
      if (end - q < 8) return load_error(fmt::format("section '.BTF.ext': {} truncated section header", what));
      const uint32_t name_off = read_le<uint32_t>(q), num = read_le<uint32_t>(q + 4);
      q += 8;
      if (num == 0) return load_error(fmt::format("section '.BTF.ext': {} block with zero records", what));
      if (static_cast<uint64_t>(num) * rec > static_cast<uint64_t>(end - q))
        return load_error(fmt::format("section '.BTF.ext': {} block claims {} records of {} bytes, more than remain", what, num, rec));
      std::string secname = btfu::name(impl->btf.get(), name_off);
      CodeSection* cs = nullptr;
      if (auto ci = code_by_name.find(secname); ci != code_by_name.end()) cs = &impl->code[ci->second];
      if (!cs) {
        // Info for a section with no code (e.g. an empty .text): it must not describe instructions.
        return load_error(fmt::format("section '.BTF.ext': {} for section {}, which has no code", what,
                                      secname.empty() ? fmt::format("with name offset {}", name_off) : quoted(secname)));
      }
      for (uint32_t i = 0; i < num; ++i, q += rec) {
        const uint32_t insn_off = read_le<uint32_t>(q);
        if (insn_off % 8 || insn_off / 8 >= cs->raw.size())
          return load_error(fmt::format("section '.BTF.ext': {} record {} for section {}: instruction offset {} is outside "
                                        "the section ({} instructions)", what, i, quoted(cs->name), insn_off, cs->raw.size()));
        if (Status st = add(*cs, insn_off / 8, q); !st) return st;
      }
    }
    return {};
  };
  Status st = parse("func_info", fi_off, fi_len, 8, [&](CodeSection& cs, uint32_t insn, const uint8_t* r) -> Status {
    cs.funcs.push_back(RawFunc{insn, read_le<uint32_t>(r + 4)});
    return {};
  });
  if (!st) return st;
  st = parse("line_info", li_off, li_len, 16, [&](CodeSection& cs, uint32_t insn, const uint8_t* r) -> Status {
    cs.lines.push_back(RawLine{insn, read_le<uint32_t>(r + 4), read_le<uint32_t>(r + 8), read_le<uint32_t>(r + 12)});
    return {};
  });
  if (!st) return st;
  // CO-RE records (header fields core_relo_off / core_relo_len, when the header has them):
  // {insn_off, type_id, access_str_off, kind}.
  if (hdr_len >= 32) {
    const uint32_t cr_off = read_le<uint32_t>(p + 24), cr_len = read_le<uint32_t>(p + 28);
    st = parse("core_relo", cr_off, cr_len, 16, [&](CodeSection& cs, uint32_t insn, const uint8_t* r) -> Status {
      const uint32_t type_id = read_le<uint32_t>(r + 4), access = read_le<uint32_t>(r + 8), kind = read_le<uint32_t>(r + 12);
      if (kind > 12)
        return load_error(fmt::format("section '.BTF.ext': core_relo for section {} insn {}: unknown relocation kind {}",
                                      quoted(cs.name), insn, kind));
      if (type_id == 0 || type_id >= btf__type_cnt(impl->btf.get()))
        return load_error(fmt::format("section '.BTF.ext': core_relo for section {} insn {}: type id {} is not in the BTF "
                                      "({} types)", quoted(cs.name), insn, type_id, btf__type_cnt(impl->btf.get())));
      if (!btf__name_by_offset(impl->btf.get(), access))
        return load_error(fmt::format("section '.BTF.ext': core_relo for section {} insn {}: access string offset {} is "
                                      "outside the BTF strings", quoted(cs.name), insn, access));
      cs.core.push_back(RawCoreRelo{insn, type_id, access, kind});
      return {};
    });
    if (!st) return st;
  }
  for (auto& cs : impl->code) {
    std::stable_sort(cs.lines.begin(), cs.lines.end(), [](const RawLine& a, const RawLine& b) { return a.insn < b.insn; });
    std::stable_sort(cs.funcs.begin(), cs.funcs.end(), [](const RawFunc& a, const RawFunc& b) { return a.insn < b.insn; });
  }
  return {};
}

namespace {

// BTF-defined map definition (libbpf's rules: every member is `type *name` where the pointee is an
// array whose element count is the value, or `key`/`value` pointing at the type, or `values`
// for map-in-map / prog_array).
struct BtfMapDef {
  MapSpec spec;
  uint64_t map_extra = 0;
  uint32_t key_type = 0, value_type = 0;
  bool has_values = false;
  uint32_t values_offset = 0;  // byte offset of the `values` member in the definition
  bool key_size_set = false, value_size_set = false;
  uint32_t pinning_raw = 0;
};

int32_t find_spin_lock(const struct btf* b, uint32_t value_type);

Status parse_btf_map_def(const struct btf* b, const std::string& map_name, uint32_t def_type_id, bool inner,
                         BtfMapDef& out, int depth = 0) {
  auto err = [&](const std::string& m) { return load_error(fmt::format("map {} (section '.maps'): {}", quoted(map_name), m)); };
  uint32_t sid = 0;
  const struct btf_type* st = btfu::skip_mods(b, def_type_id, &sid);
  if (!st || !btf_is_struct(st)) return err(fmt::format("definition (BTF type {}) is not a struct", def_type_id));
  const struct btf_member* m = btf_members(st);
  const uint16_t vlen = btf_vlen(st);
  for (uint16_t i = 0; i < vlen; ++i, ++m) {
    std::string name = btfu::name(b, m->name_off);
    if (name.empty()) return err(fmt::format("member #{} has no name", i));
    auto int_field = [&](uint32_t& v) -> Status {
      const struct btf_type* t = btfu::skip_mods(b, m->type);
      if (!t || !btf_is_ptr(t)) return err(fmt::format("field '{}' is not a pointer to an array (use __uint())", name));
      const struct btf_type* a = btfu::type(b, t->type);
      if (!a || !btf_is_array(a)) return err(fmt::format("field '{}' is not a pointer to an array (use __uint())", name));
      v = btf_array(a)->nelems;
      return {};
    };
    auto type_field = [&](uint32_t& size, uint32_t& type_id, bool& size_set) -> Status {
      const struct btf_type* t = btfu::skip_mods(b, m->type);
      if (!t || !btf_is_ptr(t)) return err(fmt::format("field '{}' is not a pointer to a type (use __type())", name));
      long long sz = btf__resolve_size(b, t->type);
      if (sz < 0) return err(fmt::format("field '{}': size of BTF type {} cannot be resolved", name, t->type));
      if (sz > UINT32_MAX) return err(fmt::format("field '{}': type size {} is too large", name, sz));
      if (size_set && size != sz) return err(fmt::format("field '{}': type size {} conflicts with {}_size {}", name, sz, name, size));
      size = static_cast<uint32_t>(sz);
      size_set = true;
      type_id = t->type;
      return {};
    };
    Status s;
    uint32_t v = 0;
    if (name == "type") {
      s = int_field(out.spec.type);
    } else if (name == "max_entries") {
      s = int_field(out.spec.max_entries);
    } else if (name == "map_flags") {
      s = int_field(out.spec.flags);
    } else if (name == "numa_node") {
      s = int_field(out.spec.numa_node);
    } else if (name == "pinning") {
      s = int_field(out.pinning_raw);
      out.spec.pinning = out.pinning_raw <= 1 ? out.pinning_raw : 0;
    } else if (name == "map_extra") {
      s = int_field(v);
      out.map_extra = v;
    } else if (name == "key_size" || name == "value_size") {
      bool is_key = name == "key_size";
      s = int_field(v);
      if (!s) return s;
      uint32_t& size = is_key ? out.spec.key_size : out.spec.value_size;
      bool& set = is_key ? out.key_size_set : out.value_size_set;
      if (set && size != v) return err(fmt::format("{} {} conflicts with the size {} of its type", name, v, size));
      size = v;
      set = true;
    } else if (name == "key") {
      s = type_field(out.spec.key_size, out.key_type, out.key_size_set);
    } else if (name == "value") {
      s = type_field(out.spec.value_size, out.value_type, out.value_size_set);
    } else if (name == "values") {
      const uint32_t t = out.spec.type;
      bool mim = t == BPF_MAP_TYPE_ARRAY_OF_MAPS || t == BPF_MAP_TYPE_HASH_OF_MAPS;
      if (inner) return err("an inner map definition cannot have 'values'");
      if (!mim && t != BPF_MAP_TYPE_PROG_ARRAY)
        return err(fmt::format("'values' is only for map-in-map and prog_array maps (type is {}; put 'type' first)", t));
      const struct btf_type* a = btfu::skip_mods(b, m->type);
      if (!a || !btf_is_array(a) || btf_array(a)->nelems != 0) return err("'values' must be a zero-sized array (use __array())");
      const struct btf_type* pt = btfu::skip_mods(b, btf_array(a)->type);
      if (!pt || !btf_is_ptr(pt)) return err("'values' must be an array of pointers");
      uint32_t target_id = 0;
      const struct btf_type* target = btfu::skip_mods(b, pt->type, &target_id);
      if (!mim) {
        if (!target || !btf_is_func_proto(target)) return err("prog_array 'values' must point to a function prototype");
      } else {
        if (!target || !btf_is_struct(target)) return err("map-in-map 'values' must point to a map definition struct");
        if (depth > 0) return err("nested map-in-map definitions");
        BtfMapDef in;
        if (Status is = parse_btf_map_def(b, map_name + ".inner", target_id, true, in, depth + 1); !is) return is;
        out.spec.inner = std::make_shared<MapSpec>(in.spec);
      }
      if (out.value_size_set && out.spec.value_size != 4)
        return err(fmt::format("value_size {} but map-in-map and prog_array values are 4 bytes", out.spec.value_size));
      out.spec.value_size = 4;
      out.value_size_set = true;
      out.has_values = true;
      out.values_offset = btf_member_bit_offset(st, i) / 8;
    } else {
      return err(fmt::format("unknown field '{}'", name));
    }
    if (!s) return s;
  }
  if (out.spec.type == 0 || out.spec.type > kMaxMapType)
    return err(out.spec.type == 0 ? std::string("no map type given") : fmt::format("unknown map type {}", out.spec.type));
  out.spec.map_extra = out.map_extra;
  out.spec.spin_lock_off = find_spin_lock(b, out.value_type);
  return {};
}

// Offset of a struct bpf_spin_lock among the value struct's members, -1 when none.
int32_t find_spin_lock(const struct btf* b, uint32_t value_type) {
  const struct btf_type* t = btfu::skip_mods(b, value_type);
  if (!t || !btf_is_struct(t)) return -1;
  const struct btf_member* m = btf_members(t);
  for (uint16_t i = 0; i < btf_vlen(t); ++i, ++m) {
    const struct btf_type* mt = btfu::skip_mods(b, m->type);
    if (mt && btf_is_struct(mt) && btfu::name(b, mt->name_off) == "bpf_spin_lock")
      return static_cast<int32_t>(btf_member_bit_offset(t, i) / 8);
  }
  return -1;
}

}  // namespace

Status ObjectLoader::collect_btf_maps() {
  const Sec* ms = nullptr;
  for (const Sec& s : secs)
    if (s.name == ".maps" && s.sh.sh_type != SHT_NULL) ms = &s;
  if (!ms) return {};
  btf_maps_sec = ms->index;
  const struct btf* b = impl->btf.get();
  if (!b) return load_error("section '.maps' holds BTF-defined maps but the object has no '.BTF'");
  const struct btf_type* ds = datasec(".maps");
  if (!ds) {
    if (ms->size == 0) return {};
    return load_error("section '.maps': no DATASEC '.maps' in the BTF describes it");
  }
  const struct btf_var_secinfo* vi = btf_var_secinfos(ds);
  for (uint16_t i = 0; i < btf_vlen(ds); ++i, ++vi) {
    const struct btf_type* var = btfu::type(b, vi->type);
    if (!var || !btf_is_var(var)) return load_error(fmt::format("section '.maps': DATASEC entry #{} (BTF type {}) is not a variable", i, vi->type));
    std::string name = btfu::name(b, var->name_off);
    if (name.empty()) return load_error(fmt::format("section '.maps': DATASEC entry #{} has no name", i));
    uint64_t off = symbol_offset(ms->index, name, vi->offset);
    if (off > ms->size || ms->size - off < vi->size)
      return load_error(fmt::format("map {}: BTF places it at offset {} (size {}), outside section '.maps' ({} bytes)",
                                    quoted(name), off, vi->size, ms->size));
    BtfMapDef def;
    if (Status st = parse_btf_map_def(b, name, var->type, false, def); !st) return st;
    ObjectMap m;
    m.origin = MapOrigin::BtfDefined;
    m.section = ".maps";
    m.spec = def.spec;
    m.spec.name = name;
    m.spec.map_extra = def.map_extra;
    m.btf_key_type_id = def.key_type;
    m.btf_value_type_id = def.value_type;
    m.spec.spin_lock_off = find_spin_lock(b, def.value_type);
    // libbpf knows LIBBPF_PIN_NONE 0 and LIBBPF_PIN_BY_NAME 1 and refuses other values; objects
    // built for other loaders (Cilium's uses 16...) load here with the map not pinned.
    m.pinning_raw = def.pinning_raw;
    m.pinning = def.pinning_raw == 1 ? MapPinning::ByName : MapPinning::None;
    if (def.pinning_raw > 1)
      obj.warnings.push_back(fmt::format("map {}: pinning value {} is not understood (libbpf knows 0 none and 1 "
                                         "by name): the map is not pinned", quoted(name), def.pinning_raw));
    if (def.has_values) btf_values_off[static_cast<uint32_t>(obj.maps.size())] = def.values_offset;
    if (map_at.count({ms->index, off}))
      return load_error(fmt::format("map {}: shares offset {} of section '.maps' with another map", quoted(name), off));
    map_at[{ms->index, off}] = static_cast<uint32_t>(obj.maps.size());
    btf_map_by_name[name] = static_cast<uint32_t>(obj.maps.size());
    obj.maps.push_back(std::move(m));
  }
  return {};
}

Status ObjectLoader::collect_global_data() {
  for (const Sec& s : secs) {
    const bool bss = is_bss_section(s.name) && s.sh.sh_type == SHT_NOBITS;
    const bool data = is_data_section(s.name) && s.sh.sh_type == SHT_PROGBITS && !(s.sh.sh_flags & SHF_EXECINSTR);
    if (!bss && !data) continue;
    if (s.size == 0) continue;
    if (s.size > kMaxGlobalDataSize)
      return load_error(fmt::format("section {}: {} bytes of global data, more than an array map value may hold ({})",
                                    quoted(s.name), s.size, kMaxGlobalDataSize));
    if (data && !s.data) return load_error(fmt::format("section {}: has no contents", quoted(s.name)));
    ObjectMap m;
    m.section = s.name;
    m.origin = bss ? MapOrigin::Bss : s.name.starts_with(".rodata") ? MapOrigin::Rodata : MapOrigin::Data;
    m.spec.name = internal_map_name(obj.name, s.name);
    m.spec.type = BPF_MAP_TYPE_ARRAY;
    m.spec.key_size = 4;
    m.spec.value_size = static_cast<uint32_t>(s.size);
    m.spec.max_entries = 1;
    // As libbpf: .rodata is read-only for programs; all internal maps are mmapable.
    m.spec.flags = BPF_F_MMAPABLE | (m.origin == MapOrigin::Rodata ? BPF_F_RDONLY_PROG : 0);
    m.frozen = m.origin == MapOrigin::Rodata;
    m.data.assign(s.size, 0);
    if (data) std::memcpy(m.data.data(), s.data, s.size);
    datasec(s.name, &m.btf_value_type_id);
    data_map_of_sec[s.index] = static_cast<uint32_t>(obj.maps.size());
    obj.maps.push_back(std::move(m));
  }
  return collect_globals_from_btf();
}

// .kconfig externs: the BTF DATASEC ".kconfig" lists them (clang emits it for `__kconfig`); their
// ELF symbols are undefined (weak for __weak). They become one frozen array map, as in libbpf, and
// lddw of them become map-value references into it.
Status ObjectLoader::collect_kconfig() {
  const struct btf* b = impl->btf.get();
  const struct btf_type* ds = datasec(".kconfig");
  if (!ds || btf_vlen(ds) == 0) return {};
  std::vector<kconfig::Extern> externs;
  const struct btf_var_secinfo* vi = btf_var_secinfos(ds);
  for (uint16_t i = 0; i < btf_vlen(ds); ++i, ++vi) {
    const struct btf_type* var = btfu::type(b, vi->type);
    if (!var || !btf_is_var(var))
      return load_error(fmt::format("section '.kconfig': BTF DATASEC entry #{} (type {}) is not a variable", i, vi->type));
    kconfig::Extern e;
    e.name = btfu::name(b, var->name_off);
    e.type_id = var->type;
    bool found = false;
    for (const Sym& y : syms)
      if (y.name == e.name && y.shndx == SHN_UNDEF) {
        found = true;
        e.weak = y.bind == STB_WEAK;
      }
    if (!found) return load_error(fmt::format(".kconfig extern {}: no undefined ELF symbol of that name", quoted(e.name)));
    externs.push_back(std::move(e));
  }
  auto v = kconfig::resolve(b, externs, opts.kconfig_file, opts.kconfig);
  if (!v) return v.error();
  ObjectMap m;
  m.section = ".kconfig";
  m.origin = MapOrigin::Kconfig;
  m.spec.name = internal_map_name(obj.name, ".kconfig");
  m.spec.type = BPF_MAP_TYPE_ARRAY;
  m.spec.key_size = 4;
  m.spec.value_size = static_cast<uint32_t>(v->data.size());
  m.spec.max_entries = 1;
  m.spec.flags = BPF_F_MMAPABLE | BPF_F_RDONLY_PROG;
  m.frozen = true;
  m.data = std::move(v->data);
  kconfig_map = static_cast<int32_t>(obj.maps.size());
  for (size_t i = 0; i < externs.size(); ++i) kconfig_offset[externs[i].name] = v->offsets[i];
  obj.maps.push_back(std::move(m));
  return {};
}

Status ObjectLoader::collect_globals_from_btf() {
  const struct btf* b = impl->btf.get();
  for (const auto& [sec_index, map_index] : data_map_of_sec) {
    const Sec& s = secs[sec_index];
    const ObjectMap& m = obj.maps[map_index];
    const struct btf_type* ds = datasec(s.name);
    if (ds) {
      const struct btf_var_secinfo* vi = btf_var_secinfos(ds);
      for (uint16_t i = 0; i < btf_vlen(ds); ++i, ++vi) {
        const struct btf_type* var = btfu::type(b, vi->type);
        if (!var || !btf_is_var(var))
          return load_error(fmt::format("section {}: BTF DATASEC entry #{} (type {}) is not a variable", quoted(s.name), i, vi->type));
        std::string name = btfu::name(b, var->name_off);
        uint64_t off = symbol_offset(sec_index, name, vi->offset);
        if (off > m.spec.value_size || m.spec.value_size - off < vi->size)
          return load_error(fmt::format("variable {}: BTF places it at offset {} (size {}), outside section {} ({} bytes)",
                                        quoted(name), off, vi->size, quoted(s.name), m.spec.value_size));
        obj.globals.push_back(GlobalVar{name, map_index, static_cast<uint32_t>(off), vi->size, var->type});
      }
    } else {
      for (uint32_t si : syms_of_sec[sec_index]) {
        const Sym& y = syms[si];
        if (y.type != STT_OBJECT || y.name.empty()) continue;
        if (y.value > m.spec.value_size || m.spec.value_size - y.value < y.size)
          return load_error(fmt::format("variable {}: offset {} size {} outside section {} ({} bytes)", quoted(y.name),
                                        y.value, y.size, quoted(s.name), m.spec.value_size));
        obj.globals.push_back(GlobalVar{y.name, map_index, static_cast<uint32_t>(y.value), static_cast<uint32_t>(y.size), 0});
      }
    }
  }
  std::sort(obj.globals.begin(), obj.globals.end(), [](const GlobalVar& a, const GlobalVar& b) {
    return a.map != b.map ? a.map < b.map : a.offset < b.offset;
  });
  return {};
}

Status ObjectLoader::collect_license_version() {
  for (const Sec& s : secs) {
    if (s.name == "license" && s.data) {
      size_t n = 0;
      while (n < s.size && n < 256 && s.data[n]) ++n;
      obj.license.assign(reinterpret_cast<const char*>(s.data), n);
    } else if (s.name == "version" && s.sh.sh_type != SHT_NULL) {
      if (s.size != 4 || !s.data) return load_error(fmt::format("section 'version': {} bytes, must be 4 (a u32)", s.size));
      obj.kernel_version = read_le<uint32_t>(s.data);
    }
  }
  return {};
}

Status ObjectLoader::collect_relocations() {
  for (const Sec& rs : secs) {
    if (rs.sh.sh_type != SHT_REL && rs.sh.sh_type != SHT_RELA) continue;
    auto cit = code_of_sec.find(rs.sh.sh_info);
    if (cit == code_of_sec.end()) continue;  // debug info, .eh_frame, .maps (handled apart), ...
    CodeSection& cs = impl->code[cit->second];
    if (rs.sh.sh_type == SHT_RELA) return load_error(fmt::format("section {}: RELA relocations are not used by BPF objects", quoted(rs.name)));
    if (rs.sh.sh_link != symtab_index)
      return load_error(fmt::format("section {}: relocations refer to section #{}, not the symbol table", quoted(rs.name), rs.sh.sh_link));
    Elf_Data* d = elf_getdata(elf_getscn(elf.get(), rs.index), nullptr);
    if (!d) return load_error(fmt::format("section {}: not readable: {}", quoted(rs.name), elf_errmsg(-1)));
    const size_t n = d->d_size / sizeof(Elf64_Rel);
    for (size_t i = 0; i < n; ++i) {
      GElf_Rel r;
      if (!gelf_getrel(d, static_cast<int>(i), &r)) return load_error(fmt::format("section {}: relocation #{} not readable", quoted(rs.name), i));
      const uint64_t symi = GELF_R_SYM(r.r_info);
      auto where = [&] { return fmt::format("section {}: relocation #{} at offset {}", quoted(cs.name), i, r.r_offset); };
      if (symi >= syms.size()) return load_error(fmt::format("{}: symbol index {} out of range ({} symbols)", where(), symi, syms.size()));
      const Sym& y = syms[symi];
      if (r.r_offset % 8 || r.r_offset / 8 >= cs.raw.size())
        return load_error(fmt::format("{} against {}: offset is not an instruction of the section ({} instructions)", where(),
                                      sym_desc(y), cs.raw.size()));
      const uint64_t slot = r.r_offset / 8;
      const RawInsn& in = cs.raw[slot];
      const bool lddw = in.code == 0x18;
      const bool call = in.code == 0x85 && in.src == 1;
      auto at = [&] { return fmt::format("{} (insn {}) against {}", where(), slot, sym_desc(y)); };
      // From here on a problem belongs to the instruction: the programs that contain it fail, the
      // others load (libbpf fails the whole object; the kernel would judge each program alone).
      auto invalid = [&](std::string msg) {
        CodeReloc bad;
        bad.kind = CodeReloc::Invalid;
        bad.error = std::move(msg);
        cs.relocs[slot] = std::move(bad);
      };
      if (cs.relocs.count(slot)) {
        invalid(fmt::format("{}: a second relocation for the same instruction", at()));
        continue;
      }
      if (!lddw && !call) {
        invalid(fmt::format("{}: instruction 0x{:02x} is neither lddw nor a bpf-to-bpf call", at(), in.code));
        continue;
      }
      if (lddw && slot + 1 >= cs.raw.size()) {
        invalid(fmt::format("{}: lddw is truncated", at()));
        continue;
      }
      auto cr = classify_reloc(y, in, call, at);
      if (!cr) {
        invalid(cr.error().message);
        continue;
      }
      cs.relocs[slot] = std::move(*cr);
    }
  }
  return {};
}

// What one relocation of an instruction refers to (an error names the instruction and symbol).
Result<CodeReloc> ObjectLoader::classify_reloc(const Sym& y, const RawInsn& in, bool call,
                                               const std::function<std::string()>& at) {
  CodeReloc cr;
  if (y.shndx == SHN_UNDEF && call) {
    // `extern void *bpf_map_lookup_elem(...)` called directly: a helper call by name.
    int32_t id = helper_id_by_name(y.name);
    if (id < 0)
      return load_error(fmt::format("{}: calls undefined function {}, which is neither in the object nor a helper", at(),
                                    sym_desc(y)));
    cr.kind = CodeReloc::Helper;
    cr.map = static_cast<uint32_t>(id);
    return cr;
  }
  if (y.shndx == SHN_UNDEF) {
    if (auto k = kconfig_offset.find(y.name); k != kconfig_offset.end() && kconfig_map >= 0) {
      cr.kind = CodeReloc::MapValue;
      cr.map = static_cast<uint32_t>(kconfig_map);
      cr.value_off = static_cast<uint32_t>(k->second + static_cast<int64_t>(in.imm));
      if (static_cast<int64_t>(cr.value_off) != k->second + static_cast<int64_t>(in.imm) ||
          cr.value_off >= obj.maps[kconfig_map].spec.value_size)
        return load_error(fmt::format("{}: offset {} is outside the .kconfig externs", at(), in.imm));
      return cr;
    }
    return load_error(fmt::format("{}: symbol is undefined (an extern that is not a .kconfig variable: "
                                  "__ksym variables and kfuncs are not supported)", at()));
  }
  if (y.shndx >= SHN_LORESERVE || y.shndx >= secs.size())
    return load_error(fmt::format("{}: symbol has special section index 0x{:x}", at(), y.shndx));
  if (auto tc = code_of_sec.find(y.shndx); tc != code_of_sec.end()) {
    const CodeSection& target = impl->code[tc->second];
    int64_t tslot;
    if (call) {
      if (y.value % 8) return load_error(fmt::format("{}: call target offset {} is not a multiple of 8", at(), y.value));
      tslot = static_cast<int64_t>(y.value / 8) + in.imm + 1;
    } else {
      int64_t b = static_cast<int64_t>(y.value) + in.imm;
      if (b % 8) return load_error(fmt::format("{}: code address {} is not a multiple of 8", at(), b));
      tslot = b / 8;
    }
    if (tslot < 0 || static_cast<uint64_t>(tslot) >= target.raw.size())
      return load_error(fmt::format("{}: target instruction {} is outside section {} ({} instructions)", at(), tslot,
                                    quoted(target.name), target.raw.size()));
    cr.kind = call ? CodeReloc::Call : CodeReloc::Code;
    cr.target_sec = tc->second;
    cr.target_insn = static_cast<uint64_t>(tslot);
  } else if (call) {
    return load_error(fmt::format("{}: call target is in section {}, which holds no code", at(), sec_name(y.shndx)));
  } else if (legacy_secs.count(y.shndx) || (btf_maps_sec && y.shndx == btf_maps_sec)) {
    uint64_t off = y.value + (y.type == STT_SECTION ? static_cast<uint64_t>(static_cast<int64_t>(in.imm)) : 0);
    auto m = map_at.find({y.shndx, off});
    if (m == map_at.end())
      return load_error(fmt::format("{}: no map starts at offset {} of section {}", at(), off, sec_name(y.shndx)));
    cr.kind = CodeReloc::Map;
    cr.map = m->second;
  } else if (auto dm = data_map_of_sec.find(y.shndx); dm != data_map_of_sec.end()) {
    int64_t off = static_cast<int64_t>(y.value) + in.imm;
    const uint32_t size = obj.maps[dm->second].spec.value_size;
    if (off < 0 || static_cast<uint64_t>(off) >= size)
      return load_error(fmt::format("{}: offset {} is outside section {} ({} bytes)", at(), off, sec_name(y.shndx), size));
    cr.kind = CodeReloc::MapValue;
    cr.map = dm->second;
    cr.value_off = static_cast<uint32_t>(off);
  } else {
    return load_error(fmt::format("{}: symbol is in section {}, which is not code, a map section or global data", at(),
                                  sec_name(y.shndx)));
  }
  return cr;
}

// .rel.maps: `values = { [i] = &map_or_prog }` of BTF-defined map-in-map and prog_array maps.
Status ObjectLoader::collect_map_slot_relocs() {
  const auto& values_off = btf_values_off;
  if (!btf_maps_sec) return {};
  // Map start offsets in .maps, to find which map a relocation falls into.
  std::vector<std::pair<uint64_t, uint32_t>> starts;
  for (const auto& [k, v] : map_at)
    if (k.first == btf_maps_sec) starts.push_back({k.second, v});
  std::sort(starts.begin(), starts.end());
  for (const Sec& rs : secs) {
    if (rs.sh.sh_type != SHT_REL || rs.sh.sh_info != btf_maps_sec) continue;
    Elf_Data* d = elf_getdata(elf_getscn(elf.get(), rs.index), nullptr);
    if (!d) return load_error(fmt::format("section {}: not readable", quoted(rs.name)));
    const size_t n = d->d_size / sizeof(Elf64_Rel);
    for (size_t i = 0; i < n; ++i) {
      GElf_Rel r;
      if (!gelf_getrel(d, static_cast<int>(i), &r)) return load_error(fmt::format("section {}: relocation #{} not readable", quoted(rs.name), i));
      const uint64_t symi = GELF_R_SYM(r.r_info);
      if (symi >= syms.size())
        return load_error(fmt::format("section '.maps': relocation #{}: symbol index {} out of range", i, symi));
      const Sym& y = syms[symi];
      auto it = std::upper_bound(starts.begin(), starts.end(), std::make_pair(r.r_offset, UINT32_MAX));
      if (it == starts.begin())
        return load_error(fmt::format("section '.maps': relocation #{} at offset {} against {} is not inside any map", i, r.r_offset, sym_desc(y)));
      --it;
      const uint32_t mi = it->second;
      ObjectMap& m = obj.maps[mi];
      auto vo = values_off.find(mi);
      if (vo == values_off.end())
        return load_error(fmt::format("map {}: relocation against {} but the map has no 'values'", quoted(m.spec.name), sym_desc(y)));
      uint64_t rel = r.r_offset - it->first;
      if (rel < vo->second || (rel - vo->second) % 8)
        return load_error(fmt::format("map {}: relocation against {} at offset {} is not a 'values' slot", quoted(m.spec.name), sym_desc(y), rel));
      uint64_t idx = (rel - vo->second) / 8;
      if (idx >= m.spec.max_entries)
        return load_error(fmt::format("map {}: 'values' slot {} is beyond max_entries {}", quoted(m.spec.name), idx, m.spec.max_entries));
      MapSlotInit slot;
      slot.index = static_cast<uint32_t>(idx);
      if (m.spec.type == BPF_MAP_TYPE_PROG_ARRAY) {
        if (!code_of_sec.count(y.shndx) || y.type != STT_FUNC)
          return load_error(fmt::format("map {}: slot {} refers to {}, which is not a program", quoted(m.spec.name), idx, sym_desc(y)));
        slot.program = y.name;
      } else {
        auto bm = btf_map_by_name.find(y.name);
        if (y.shndx != btf_maps_sec || bm == btf_map_by_name.end())
          return load_error(fmt::format("map {}: slot {} refers to {}, which is not a map", quoted(m.spec.name), idx, sym_desc(y)));
        slot.map = static_cast<int32_t>(bm->second);
      }
      m.slots.push_back(std::move(slot));
    }
  }
  return {};
}

// CO-RE: every record is resolved against the target BTF and patched into the section's code.
// A record that matches nothing poisons its instruction (as libbpf does; the verifier reports it if
// the instruction is reachable); one that cannot be applied at all fails the programs that hold it.
Status ObjectLoader::apply_core_relocations() {
  size_t count = 0;
  for (const auto& cs : impl->code) count += cs.core.size();
  if (count == 0) return {};
  auto target = core::target_for(opts.target_btf);
  if (!target) return target.error();
  obj.target_btf = (*target)->origin();
  for (auto& cs : impl->code) {
    for (const RawCoreRelo& rr : cs.core) {
      core::Relo r{rr.insn * 8, rr.type_id, rr.access_str_off, rr.kind};
      CoreApplied a;
      a.kind = rr.kind;
      auto o = core::resolve(impl->btf.get(), **target, r);
      if (!o) {
        a.error = fmt::format("section {}: insn {}: {}", quoted(cs.name), rr.insn, o.error().message);
      } else {
        a.description = o->description;
        a.reason = o->poison ? o->reason : "the field's size differs and a signed or non-integer load cannot be resized";
        a.local_value = o->local_value;
        a.target_value = o->target_value;
        if (cs.core_applied.count(rr.insn)) {
          a.error = fmt::format("section {}: insn {}: a second CO-RE relocation for the same instruction", quoted(cs.name), rr.insn);
        } else if (cs.relocs.count(rr.insn)) {
          a.error = fmt::format("section {}: insn {}: the instruction has both a CO-RE and an ELF relocation", quoted(cs.name), rr.insn);
        } else if (auto ps = core::patch(cs.raw, rr.insn, r, *o); !ps) {
          a.error = fmt::format("section {}: {}", quoted(cs.name), ps.error().message);
        } else {
          a.poisoned = *ps;
          if (!a.poisoned) a.reason.clear();
        }
      }
      cs.core_applied[rr.insn] = std::move(a);
    }
  }
  return {};
}

// ---- linking ------------------------------------------------------------------------------------
namespace {

const CodeFunction* function_at(const CodeSection& cs, uint64_t slot, size_t* index) {
  auto it = std::upper_bound(cs.functions.begin(), cs.functions.end(), slot,
                             [](uint64_t s, const CodeFunction& f) { return s < f.start; });
  if (it == cs.functions.begin()) return nullptr;
  --it;
  if (slot >= it->start + it->slots) return nullptr;
  if (index) *index = static_cast<size_t>(it - cs.functions.begin());
  return &*it;
}

}  // namespace

static Result<ObjectProgram> link_program(const ObjectImpl& impl, uint32_t sec_index, size_t fn_index) {
  const CodeSection& root_sec = impl.code[sec_index];
  const CodeFunction& root = root_sec.functions[fn_index];
  ObjectProgram p;
  p.section = root_sec.name;
  p.name = root.name;
  struct Placed {
    uint32_t sec;
    size_t fn;
    uint64_t start;
  };
  std::vector<Placed> placed;
  std::map<std::pair<uint32_t, size_t>, uint64_t> start_of;
  std::vector<RawInsn> out;
  std::set<uint32_t> maps_used;
  auto place = [&](uint32_t sec, size_t fn) -> Result<uint64_t> {
    auto key = std::make_pair(sec, fn);
    if (auto it = start_of.find(key); it != start_of.end()) return it->second;
    const CodeSection& cs = impl.code[sec];
    const CodeFunction& f = cs.functions[fn];
    if (out.size() + f.slots > kMaxProgramSlots)
      return load_error(fmt::format("program {}: linked size exceeds {} instructions", quoted(root.name), kMaxProgramSlots));
    uint64_t start = out.size();
    out.insert(out.end(), cs.raw.begin() + static_cast<std::ptrdiff_t>(f.start),
               cs.raw.begin() + static_cast<std::ptrdiff_t>(f.start + f.slots));
    start_of[key] = start;
    placed.push_back(Placed{sec, fn, start});
    p.functions.push_back(LinkedFunction{f.name, cs.name, static_cast<uint32_t>(start), static_cast<uint32_t>(f.slots)});
    return start;
  };
  if (auto r = place(sec_index, fn_index); !r) return r.error();
  p.own_slots = static_cast<uint32_t>(root.slots);
  // Resolves a code target (section, slot) to its slot in the linked program, placing its function.
  auto resolve = [&](uint32_t tsec, uint64_t tslot, const std::string& from, uint64_t pc) -> Result<uint64_t> {
    size_t fi = 0;
    const CodeFunction* g = function_at(impl.code[tsec], tslot, &fi);
    if (!g)
      return load_error(fmt::format("function {}: call or code address targets instruction {} of section {}, which is "
                                    "not inside any function", quoted(from), tslot, quoted(impl.code[tsec].name)),
                        static_cast<int64_t>(pc));
    auto s = place(tsec, fi);
    if (!s) return s.error();
    return *s + (tslot - g->start);
  };
  for (size_t k = 0; k < placed.size(); ++k) {
    const Placed pl = placed[k];
    const CodeSection& cs = impl.code[pl.sec];
    const CodeFunction& f = cs.functions[pl.fn];
    for (auto it = cs.core_applied.lower_bound(f.start); it != cs.core_applied.end() && it->first < f.start + f.slots; ++it) {
      const CoreApplied& a = it->second;
      if (!a.error.empty()) return load_error(a.error);
      CoreReloResult res;
      res.insn = static_cast<uint32_t>(pl.start + (it->first - f.start));
      res.kind = a.kind;
      res.description = a.description;
      res.poisoned = a.poisoned;
      res.reason = a.reason;
      res.local_value = a.local_value;
      res.target_value = a.target_value;
      p.core_relos.push_back(std::move(res));
    }
    for (uint64_t i = 0; i < f.slots; ++i) {
      const uint64_t slot = f.start + i;
      const uint64_t pc = pl.start + i;
      RawInsn in = out[pc];
      const bool lddw = in.code == 0x18;
      auto rel = cs.relocs.find(slot);
      if (rel != cs.relocs.end()) {
        const CodeReloc& cr = rel->second;
        if (cr.kind == CodeReloc::Invalid) return load_error(cr.error, static_cast<int64_t>(pc));
        if (lddw && i + 1 >= f.slots)
          return load_error(fmt::format("function {}: lddw at its last instruction is truncated", quoted(f.name)), static_cast<int64_t>(pc));
        switch (cr.kind) {
          case CodeReloc::Map:
            out[pc].src = BPF_PSEUDO_MAP_IDX;
            out[pc].imm = static_cast<int32_t>(cr.map);
            out[pc + 1].imm = 0;
            maps_used.insert(cr.map);
            break;
          case CodeReloc::MapValue:
            out[pc].src = BPF_PSEUDO_MAP_IDX_VALUE;
            out[pc].imm = static_cast<int32_t>(cr.map);
            out[pc + 1].imm = static_cast<int32_t>(cr.value_off);
            maps_used.insert(cr.map);
            break;
          case CodeReloc::Invalid:
            break;
          case CodeReloc::Helper:
            out[pc].src = 0;
            out[pc].imm = static_cast<int32_t>(cr.map);
            break;
          case CodeReloc::Code:
          case CodeReloc::Call: {
            auto t = resolve(cr.target_sec, cr.target_insn, f.name, pc);
            if (!t) return t.error();
            out[pc].imm = static_cast<int32_t>(static_cast<int64_t>(*t) - static_cast<int64_t>(pc + 1));
            if (cr.kind == CodeReloc::Code) {
              out[pc].src = BPF_PSEUDO_FUNC;
              out[pc + 1].imm = 0;
            }
            break;
          }
        }
        if (lddw) ++i;
        continue;
      }
      const bool local_call = in.code == 0x85 && in.src == BPF_PSEUDO_CALL;
      const bool code_addr = lddw && in.src == BPF_PSEUDO_FUNC;
      if (local_call || code_addr) {
        // Already resolved by the compiler within the section.
        int64_t t = static_cast<int64_t>(slot) + 1 + in.imm;
        if (t < 0 || static_cast<uint64_t>(t) >= cs.raw.size())
          return load_error(fmt::format("function {}: call target {} is outside section {} ({} instructions)", quoted(f.name), t,
                                        quoted(cs.name), cs.raw.size()), static_cast<int64_t>(pc));
        auto nt = resolve(pl.sec, static_cast<uint64_t>(t), f.name, pc);
        if (!nt) return nt.error();
        out[pc].imm = static_cast<int32_t>(static_cast<int64_t>(*nt) - static_cast<int64_t>(pc + 1));
      }
      if (lddw) {
        if (in.src == BPF_PSEUDO_MAP_FD || in.src == BPF_PSEUDO_MAP_VALUE || in.src == BPF_PSEUDO_MAP_IDX ||
            in.src == BPF_PSEUDO_MAP_IDX_VALUE)
          return load_error(fmt::format("function {}: lddw with src={} (a map reference) has no relocation", quoted(f.name), static_cast<int>(in.src)),
                            static_cast<int64_t>(pc));
        ++i;
      }
    }
  }
  // Decode into the IR.
  auto dec = decode(out);
  if (!dec) {
    Diagnostic d = dec.error();
    d.code = ErrorCode::Load;
    std::string fn = p.name, sec = p.section;
    int64_t local = d.pc;
    for (const auto& lf : p.functions)
      if (d.pc >= lf.start && d.pc < static_cast<int64_t>(lf.start) + lf.slots) fn = lf.name, sec = lf.section, local = d.pc - lf.start;
    d.message = fmt::format("section {}, function {}, insn {}: {}", quoted(sec), quoted(fn), local, d.message);
    d.pc = -1;
    return d;
  }
  p.insns = std::move(*dec);
  p.maps_used.assign(maps_used.begin(), maps_used.end());
  // Line and function info, moved to linked positions.
  const struct btf* b = impl.btf.get();
  for (const Placed& pl : placed) {
    const CodeSection& cs = impl.code[pl.sec];
    const CodeFunction& f = cs.functions[pl.fn];
    auto lo = std::lower_bound(cs.lines.begin(), cs.lines.end(), f.start, [](const RawLine& l, uint64_t s) { return l.insn < s; });
    for (; lo != cs.lines.end() && lo->insn < f.start + f.slots; ++lo) {
      SourceLine sl;
      sl.insn = static_cast<uint32_t>(pl.start + (lo->insn - f.start));
      sl.file = btfu::name(b, lo->file_off);
      sl.text = btfu::name(b, lo->line_off);
      sl.line = lo->line_col >> 10;
      sl.column = lo->line_col & 0x3ff;
      p.lines.push_back(std::move(sl));
    }
    auto fo = std::lower_bound(cs.funcs.begin(), cs.funcs.end(), f.start, [](const RawFunc& l, uint64_t s) { return l.insn < s; });
    for (; fo != cs.funcs.end() && fo->insn < f.start + f.slots; ++fo) {
      FuncInfo fi;
      fi.insn = static_cast<uint32_t>(pl.start + (fo->insn - f.start));
      fi.btf_type_id = fo->type_id;
      const struct btf_type* t = btfu::type(b, fo->type_id);
      fi.name = t ? btfu::name(b, t->name_off) : std::string();
      p.func_info.push_back(std::move(fi));
    }
  }
  std::stable_sort(p.lines.begin(), p.lines.end(), [](const SourceLine& a, const SourceLine& b) { return a.insn < b.insn; });
  std::stable_sort(p.func_info.begin(), p.func_info.end(), [](const FuncInfo& a, const FuncInfo& b) { return a.insn < b.insn; });
  return p;
}

static void apply_type(ObjectProgram& p, const LoadOptions& opts, std::optional<uint32_t> override_type,
                       bool iproute2 = false) {
  SectionType st = section_prog_type(p.section);
  p.attach_target = st.attach_target;
  p.attach = parse_attach_target(p.section);
  if (override_type) {
    p.type = *override_type;
    p.type_known = true;
  } else if (auto it = opts.section_types.find(p.section); it != opts.section_types.end()) {
    p.type = it->second;
    p.type_known = true;
    if (st.known && st.prog_type == it->second) p.expected_attach = st.expected_attach;
  } else if (opts.prog_type) {
    p.type = *opts.prog_type;
    p.type_known = true;
  } else if (st.known) {
    p.type = st.prog_type;
    p.expected_attach = st.expected_attach;
    p.type_known = true;
  } else if (iproute2 && p.section != ".text") {
    // tc loads every section of an iproute2 object as sched_cls (`tc filter ... bpf obj O sec S`).
    p.type = BPF_PROG_TYPE_SCHED_CLS;
    p.type_known = true;
    p.type_assumed = true;
  } else {
    p.type = opts.default_type;
    p.type_known = opts.default_type != 0;
  }
}

Status ObjectLoader::build_programs() {
  // Functions something calls or takes the address of are subprograms.
  std::set<std::pair<uint32_t, size_t>> referenced;
  for (uint32_t si = 0; si < impl->code.size(); ++si) {
    const CodeSection& cs = impl->code[si];
    for (const auto& [slot, cr] : cs.relocs) {
      if (cr.kind != CodeReloc::Call && cr.kind != CodeReloc::Code) continue;
      size_t fi;
      const CodeFunction* g = function_at(impl->code[cr.target_sec], cr.target_insn, &fi);
      const CodeFunction* self = function_at(cs, slot, nullptr);
      if (g && g != self) referenced.insert({cr.target_sec, fi});
    }
    for (uint64_t slot = 0; slot < cs.raw.size(); ++slot) {
      const RawInsn& in = cs.raw[slot];
      if (cs.relocs.count(slot)) continue;
      if ((in.code == 0x85 && in.src == BPF_PSEUDO_CALL) || (in.code == 0x18 && in.src == BPF_PSEUDO_FUNC)) {
        int64_t t = static_cast<int64_t>(slot) + 1 + in.imm;
        size_t fi;
        if (t < 0 || static_cast<uint64_t>(t) >= cs.raw.size()) continue;  // reported when linking
        const CodeFunction* g = function_at(cs, static_cast<uint64_t>(t), &fi);
        const CodeFunction* self = function_at(cs, slot, nullptr);
        if (g && g != self) referenced.insert({si, fi});
      }
    }
  }
  uint64_t total = 0;
  for (uint32_t si = 0; si < impl->code.size(); ++si) {
    const CodeSection& cs = impl->code[si];
    for (size_t fi = 0; fi < cs.functions.size(); ++fi) {
      const bool called = referenced.count({si, fi}) > 0;
      if (cs.is_text ? (!opts.text_programs || called) : (called && !cs.functions[fi].global)) continue;
      auto p = link_program(*impl, si, fi);
      if (!p) {
        // This program alone fails: it is listed with its error, the others load.
        ObjectProgram bad;
        bad.section = cs.name;
        bad.name = cs.functions[fi].name;
        bad.error = p.error().message;
        bad.functions.push_back(LinkedFunction{bad.name, cs.name, 0, static_cast<uint32_t>(cs.functions[fi].slots)});
        p = std::move(bad);
      }
      apply_type(*p, opts, std::nullopt, obj.iproute2);
      total += p->insns.size();
      if (total > kMaxObjectSlots)
        return load_error(fmt::format("programs of the object link to more than {} instructions in total", kMaxObjectSlots));
      obj.programs.push_back(std::move(*p));
    }
  }
  return {};
}

Result<Object> ObjectLoader::run(std::span<const uint8_t> bytes) {
  obj.name = opts.name.empty() ? "obj" : opts.name;
  impl->what = what;
  Status st = read_elf(bytes);
  if (st) st = read_symbols();
  if (st) st = collect_code();
  if (st) st = collect_btf();
  if (st) st = collect_legacy_maps();
  if (st) st = collect_btf_maps();
  if (st) st = collect_global_data();
  if (st) st = collect_kconfig();
  if (st) st = collect_license_version();
  if (st) st = collect_relocations();
  if (st) st = collect_map_slot_relocs();
  if (st) st = apply_core_relocations();
  if (st) st = build_programs();
  if (!st) return st.error();
  std::vector<std::string> assumed;
  for (const auto& p : obj.programs)
    if (p.type_assumed && std::find(assumed.begin(), assumed.end(), p.section) == assumed.end()) assumed.push_back(p.section);
  if (!assumed.empty()) {
    std::string list;
    for (size_t i = 0; i < assumed.size() && i < 8; ++i) list += (i ? ", " : "") + quoted(assumed[i]);
    if (assumed.size() > 8) list += fmt::format(" and {} more", assumed.size() - 8);
    obj.notes.push_back(fmt::format("program type sched_cls assumed for section{} {} (an iproute2 object: tc loads every "
                                    "section as sched_cls); change it with --type TYPE or --type SECTION=TYPE",
                                    assumed.size() > 1 ? "s" : "", list));
  }
  elf.reset();
  obj.impl_ = impl;
  return std::move(obj);
}

// ---- public API -----------------------------------------------------------------------------------
Object::Object() = default;
Object::~Object() = default;
Object::Object(Object&&) noexcept = default;
Object& Object::operator=(Object&&) noexcept = default;
Object::Object(const Object&) = default;
Object& Object::operator=(const Object&) = default;

Result<Object> load_object(std::span<const uint8_t> bytes, const LoadOptions& options, std::string_view what) {
  ObjectLoader l(options, std::string(what));
  return l.run(bytes);
}

Result<Object> load_object_file(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::Io, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  // Read in chunks with a cap, so that /dev/zero or a huge file cannot exhaust memory.
  constexpr size_t kMaxObjectFile = 64u << 20;  // BPF objects are far smaller (code is capped at 8 MiB)
  std::vector<uint8_t> bytes;
  char buf[65536];
  while (in) {
    in.read(buf, sizeof buf);
    std::streamsize got = in.gcount();
    if (got <= 0) break;
    if (bytes.size() + static_cast<size_t>(got) > kMaxObjectFile)
      return make_error(ErrorCode::Io, fmt::format("cannot read {}: larger than {} MiB", path, kMaxObjectFile >> 20));
    bytes.insert(bytes.end(), buf, buf + got);
  }
  if (in.bad()) return make_error(ErrorCode::Io, fmt::format("cannot read {}: read error", path));
  LoadOptions o = options;
  if (o.name.empty()) {
    std::string base = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
    o.name = base.substr(0, base.find('.'));
    if (o.name.empty()) o.name = "obj";
  }
  return load_object(bytes, o, path);
}

const CoreReloResult* ObjectProgram::poisoned_at(size_t pc) const {
  for (const auto& r : core_relos)
    if (r.poisoned && r.insn == pc) return &r;
  // The second slot of a poisoned lddw.
  for (const auto& r : core_relos)
    if (r.poisoned && r.insn + 1 == pc && pc < insns.size() && r.insn < insns.size() &&
        insns[r.insn].op == Op::CALL_HELPER && insns[r.insn].imm == kCorePoisonHelper)
      return &r;
  return nullptr;
}

const SourceLine* ObjectProgram::line_at(size_t pc) const {
  auto it = std::upper_bound(lines.begin(), lines.end(), pc, [](size_t v, const SourceLine& l) { return v < l.insn; });
  if (it == lines.begin()) return nullptr;
  --it;
  // A line entry does not reach into the next function.
  for (const auto& f : functions)
    if (pc >= f.start && pc < f.start + f.slots && it->insn < f.start) return nullptr;
  return &*it;
}

std::string ObjectProgram::source_at(size_t pc) const {
  const SourceLine* l = line_at(pc);
  if (!l) return {};
  std::string file = l->file;
  if (auto s = file.find_last_of('/'); s != std::string::npos) file = file.substr(s + 1);
  std::string text = l->text;
  size_t b = text.find_first_not_of(" \t");
  text = b == std::string::npos ? std::string() : text.substr(b);
  return fmt::format("{}:{}: {}", file, l->line, text);
}

const char* map_pinning_name(MapPinning p) {
  switch (p) {
    case MapPinning::None: return "none";
    case MapPinning::ByName: return "by_name";
    case MapPinning::ObjectNs: return "object_ns";
    case MapPinning::GlobalNs: return "global_ns";
  }
  return "?";
}

const char* map_origin_name(MapOrigin origin) {
  switch (origin) {
    case MapOrigin::BtfDefined: return "btf";
    case MapOrigin::Legacy: return "legacy";
    case MapOrigin::LegacyElf: return "bpf_elf_map";
    case MapOrigin::Data: return "data";
    case MapOrigin::Rodata: return "rodata";
    case MapOrigin::Bss: return "bss";
    case MapOrigin::Kconfig: return "kconfig";
  }
  return "?";
}

const ObjectProgram* Object::find_program(std::string_view n) const {
  for (const auto& p : programs)
    if (p.name == n) return &p;
  for (const auto& p : programs)
    if (p.section == n) return &p;
  return nullptr;
}

Result<ObjectProgram> Object::link_function(std::string_view function, std::optional<uint32_t> type) const {
  if (!impl_) return make_error(ErrorCode::InvalidArgument, "object is empty");
  for (uint32_t si = 0; si < impl_->code.size(); ++si) {
    const auto& cs = impl_->code[si];
    for (size_t fi = 0; fi < cs.functions.size(); ++fi) {
      if (cs.functions[fi].name != function) continue;
      auto p = link_program(*impl_, si, fi);
      if (!p) return p.error();
      apply_type(*p, LoadOptions{}, type);
      return p;
    }
  }
  return make_error(ErrorCode::InvalidArgument, fmt::format("no function {} in the object", quoted(function)));
}

std::vector<std::string> Object::function_names() const {
  std::vector<std::string> v;
  if (!impl_) return v;
  for (const auto& cs : impl_->code)
    for (const auto& f : cs.functions) v.push_back(f.name);
  return v;
}

int Object::find_map(std::string_view n) const {
  for (size_t i = 0; i < maps.size(); ++i)
    if (maps[i].spec.name == n) return static_cast<int>(i);
  return -1;
}

const GlobalVar* Object::find_global(std::string_view n) const {
  for (const auto& g : globals)
    if (g.name == n) return &g;
  return nullptr;
}

Result<std::span<const uint8_t>> Object::global_bytes(std::string_view n) const {
  const GlobalVar* g = find_global(n);
  if (!g) return make_error(ErrorCode::InvalidArgument, fmt::format("no global variable {}", quoted(n)));
  const auto& d = maps[g->map].data;
  if (static_cast<uint64_t>(g->offset) + g->size > d.size())
    return make_error(ErrorCode::InvalidArgument, fmt::format("global variable {} is outside its map", quoted(n)));
  return std::span<const uint8_t>(d.data() + g->offset, g->size);
}

Status Object::set_global(std::string_view n, const void* data, size_t size) {
  const GlobalVar* g = find_global(n);
  if (!g) return make_error(ErrorCode::InvalidArgument, fmt::format("no global variable {}", quoted(n)));
  if (size != g->size)
    return make_error(ErrorCode::InvalidArgument, fmt::format("global variable {} is {} bytes, not {}", quoted(n), g->size, size));
  auto& d = maps[g->map].data;
  if (static_cast<uint64_t>(g->offset) + g->size > d.size())
    return make_error(ErrorCode::InvalidArgument, fmt::format("global variable {} is outside its map", quoted(n)));
  if (size) std::memcpy(d.data() + g->offset, data, size);
  return {};
}

std::string Object::btf_type_name(uint32_t id) const {
  if (!impl_ || !impl_->btf) return {};
  return btfu::type_name(impl_->btf.get(), id);
}

const void* Object::btf_handle() const { return impl_ ? impl_->btf.get() : nullptr; }

namespace btfu {
std::string type_name(const struct btf* b, uint32_t id, int depth) {
  if (id == 0) return "void";
  const struct btf_type* t = type(b, id);
  if (!t || depth > 16) return {};
  std::string n = name(b, t->name_off);
  switch (btf_kind(t)) {
    case BTF_KIND_STRUCT: return "struct " + (n.empty() ? "(anon)" : n);
    case BTF_KIND_UNION: return "union " + (n.empty() ? "(anon)" : n);
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64: return "enum " + (n.empty() ? "(anon)" : n);
    case BTF_KIND_PTR: return type_name(b, t->type, depth + 1) + " *";
    case BTF_KIND_CONST: return "const " + type_name(b, t->type, depth + 1);
    case BTF_KIND_VOLATILE: return "volatile " + type_name(b, t->type, depth + 1);
    case BTF_KIND_ARRAY: return type_name(b, btf_array(t)->type, depth + 1) + fmt::format("[{}]", btf_array(t)->nelems);
    case BTF_KIND_FUNC_PROTO: return "func_proto";
    default: return n;
  }
}
}  // namespace btfu

}  // namespace bpfvm
