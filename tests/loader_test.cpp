// ELF loader: real objects (../shared/samples), purpose-built objects (tests/progs/ld_*.bpf.c),
// hostile input (truncations, patched headers, byte flips), instantiation and running.
#include <elf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "bpfvm/object.hpp"
#include "bpfvm/vm.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace bpfvm;

namespace {

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::string s = test::read_text(p);
  return std::vector<uint8_t>(s.begin(), s.end());
}

fs::path prog_path(const std::string& name) { return fs::path(BPFVM_PROGS_DIR) / name; }

Object load_ok(const fs::path& p, const LoadOptions& o = {}) {
  auto r = load_object_file(p.string(), o);
  EXPECT_TRUE(r.ok()) << p << ": " << (r.ok() ? "" : r.error().to_string());
  if (!r.ok()) return Object{};
  return std::move(*r);
}

const ObjectMap* map_named(const Object& o, std::string_view n) {
  int i = o.find_map(n);
  return i < 0 ? nullptr : &o.maps[i];
}

// Slot of the first function named `fn` in a linked program, or -1.
int64_t func_start(const ObjectProgram& p, std::string_view fn) {
  for (const auto& f : p.functions)
    if (f.name == fn) return f.start;
  return -1;
}

// ---- ELF patching for hostile-input tests ------------------------------------------------------
struct ElfEdit {
  std::vector<uint8_t> b;
  Elf64_Ehdr* eh() { return reinterpret_cast<Elf64_Ehdr*>(b.data()); }
  Elf64_Shdr* sh(size_t i) { return reinterpret_cast<Elf64_Shdr*>(b.data() + eh()->e_shoff + i * sizeof(Elf64_Shdr)); }
  std::string name(size_t i) {
    Elf64_Shdr* st = sh(eh()->e_shstrndx);
    return reinterpret_cast<const char*>(b.data() + st->sh_offset + sh(i)->sh_name);
  }
  Elf64_Shdr* find(std::string_view n) {
    for (size_t i = 1; i < eh()->e_shnum; ++i)
      if (name(i) == n) return sh(i);
    return nullptr;
  }
  template <class T>
  T* at(Elf64_Shdr* s, size_t off) { return reinterpret_cast<T*>(b.data() + s->sh_offset + off); }
};

// The error of loading `bytes`: the object's, or (damage confined to instructions) the errors of
// the programs that failed. "" when everything loaded.
std::string load_error_of(const std::vector<uint8_t>& bytes) {
  auto r = load_object(bytes, {}, "patched.o");
  if (r.ok()) {
    std::string all;
    for (const auto& p : r->programs)
      if (!p.ok()) all += p.error + "\n";
    return all;
  }
  EXPECT_EQ(r.error().code, ErrorCode::Load);
  return r.error().message;
}

}  // namespace

// ---- section names -------------------------------------------------------------------------------
TEST(LoaderSections, LibbpfAndLegacyNames) {
  struct Case {
    const char* sec;
    uint32_t type;
    const char* name;
  } cases[] = {
      {"xdp", BPF_PROG_TYPE_XDP, "xdp"},
      {"xdp1", BPF_PROG_TYPE_XDP, "xdp"},
      {"xdp_prog", BPF_PROG_TYPE_XDP, "xdp"},
      {"xdp/devmap", BPF_PROG_TYPE_XDP, "xdp"},
      {"socket", BPF_PROG_TYPE_SOCKET_FILTER, "socket_filter"},
      {"socket1", BPF_PROG_TYPE_SOCKET_FILTER, "socket_filter"},
      {"filter", BPF_PROG_TYPE_SOCKET_FILTER, "socket_filter"},
      {"tc", BPF_PROG_TYPE_SCHED_CLS, "sched_cls"},
      {"classifier", BPF_PROG_TYPE_SCHED_CLS, "sched_cls"},
      {"action", BPF_PROG_TYPE_SCHED_ACT, "sched_act"},
      {"kprobe/sys_write", BPF_PROG_TYPE_KPROBE, "kprobe"},
      {"kretprobe/do_exit", BPF_PROG_TYPE_KPROBE, "kprobe"},
      {"uprobe/bin:main", BPF_PROG_TYPE_KPROBE, "kprobe"},
      {"tracepoint/syscalls/sys_enter_open", BPF_PROG_TYPE_TRACEPOINT, "tracepoint"},
      {"tp/sched/sched_switch", BPF_PROG_TYPE_TRACEPOINT, "tracepoint"},
      {"raw_tp/sys_enter", BPF_PROG_TYPE_RAW_TRACEPOINT, "raw_tracepoint"},
      {"raw_tracepoint/task_rename", BPF_PROG_TYPE_RAW_TRACEPOINT, "raw_tracepoint"},
      {"perf_event", BPF_PROG_TYPE_PERF_EVENT, "perf_event"},
      {"cgroup_skb/ingress", BPF_PROG_TYPE_CGROUP_SKB, "cgroup_skb"},
      {"cgroup/skb", BPF_PROG_TYPE_CGROUP_SKB, "cgroup_skb"},
      {"cgroup/sock", BPF_PROG_TYPE_CGROUP_SOCK, "cgroup_sock"},
      {"cgroup/sock1", BPF_PROG_TYPE_CGROUP_SOCK, "cgroup_sock"},
      {"cgroup/connect4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr"},
      {"sockops", BPF_PROG_TYPE_SOCK_OPS, "sock_ops"},
      {"sk_skb/stream_parser", BPF_PROG_TYPE_SK_SKB, "sk_skb"},
      {"sk_msg", BPF_PROG_TYPE_SK_MSG, "sk_msg"},
      {"lwt_in", BPF_PROG_TYPE_LWT_IN, "lwt_in"},
      {"lwt_xmit", BPF_PROG_TYPE_LWT_XMIT, "lwt_xmit"},
      {"lwt_seg6local", BPF_PROG_TYPE_LWT_SEG6LOCAL, "lwt_seg6local"},
      {"fentry/do_unlinkat", BPF_PROG_TYPE_TRACING, "tracing"},
      {"fexit/do_unlinkat", BPF_PROG_TYPE_TRACING, "tracing"},
  };
  for (const auto& c : cases) {
    SectionType st = section_prog_type(c.sec);
    EXPECT_TRUE(st.known) << c.sec;
    EXPECT_EQ(st.prog_type, c.type) << c.sec;
    EXPECT_EQ(prog_type_name(st.prog_type), c.name) << c.sec;
  }
  EXPECT_EQ(section_prog_type("kprobe/sys_write").attach_target, "sys_write");
  EXPECT_FALSE(section_prog_type("len_hist").known);
  EXPECT_FALSE(section_prog_type(".text").known);
  EXPECT_FALSE(section_prog_type("kprobex").known);  // "kprobe+" needs '/' or the exact name
  EXPECT_EQ(prog_type_from_name("sched_cls"), BPF_PROG_TYPE_SCHED_CLS);
  EXPECT_EQ(prog_type_from_name("tc"), BPF_PROG_TYPE_SCHED_CLS);
  EXPECT_EQ(prog_type_from_name("type_99"), 99u);
  EXPECT_EQ(prog_type_from_name("nonsense"), std::nullopt);
}

// ---- purpose-built objects -------------------------------------------------------------------------
TEST(LoaderObjects, MultiProgramsSubprogramsMapsGlobals) {
  Object o = load_ok(prog_path("ld_multi.bpf.o"));
  ASSERT_EQ(o.programs.size(), 5u);
  EXPECT_EQ(o.license, "GPL");
  ASSERT_TRUE(o.kernel_version.has_value());
  EXPECT_EQ(*o.kernel_version, 0x050a00u);
  EXPECT_TRUE(o.has_btf);
  EXPECT_TRUE(o.has_btf_ext);

  const ObjectProgram* xm = o.find_program("xdp_main");
  const ObjectProgram* xs = o.find_program("xdp_second");
  ASSERT_TRUE(xm && xs);
  EXPECT_EQ(xm->section, "xdp");
  EXPECT_EQ(xs->section, "xdp");  // two programs in one section
  EXPECT_EQ(xm->type, BPF_PROG_TYPE_XDP);
  EXPECT_EQ(xm->type_name(), "xdp");
  EXPECT_EQ(o.find_program("sock_prog")->type_name(), "socket_filter");
  EXPECT_EQ(o.find_program("tp_prog")->type_name(), "tracepoint");
  EXPECT_EQ(o.find_program("tp_prog")->attach_target, "syscalls/sys_enter_openat");
  EXPECT_EQ(o.find_program("kp_prog")->type_name(), "kprobe");
  // .text functions are subprograms here (all are called), not programs.
  for (const auto& p : o.programs) EXPECT_NE(p.section, ".text") << p.name;

  // xdp_main calls add_global (global, by relocation), which calls add_static (static, resolved by
  // the compiler inside .text): both are appended, and every call lands on its function's start.
  ASSERT_EQ(xm->functions.size(), 3u);
  EXPECT_EQ(xm->functions[0].name, "xdp_main");
  EXPECT_EQ(xm->own_slots, xm->functions[0].slots);
  int64_t ag = func_start(*xm, "add_global"), as = func_start(*xm, "add_static");
  ASSERT_GE(ag, 0);
  ASSERT_GE(as, 0);
  std::set<int64_t> call_targets;
  for (size_t pc = 0; pc < xm->insns.size(); ++pc)
    if (xm->insns[pc].op == Op::CALL_LOCAL) call_targets.insert(jump_target(xm->insns[pc], pc));
  EXPECT_EQ(call_targets, (std::set<int64_t>{ag, as}));
  EXPECT_TRUE(check_structure(xm->insns).ok());
  EXPECT_EQ(xm->slots(), xm->insns.size());

  // xdp_second passes loop_cb to bpf_loop: lddw src=4 (code address) pointing at loop_cb.
  int64_t cb = func_start(*xs, "loop_cb");
  ASSERT_GE(cb, 0);
  bool found_code_addr = false;
  for (size_t pc = 0; pc < xs->insns.size(); ++pc)
    if (xs->insns[pc].op == Op::LDDW_CODE_ADDR) {
      found_code_addr = true;
      EXPECT_EQ(static_cast<int64_t>(pc) + 1 + static_cast<int32_t>(xs->insns[pc].imm), cb);
    }
  EXPECT_TRUE(found_code_addr);
  EXPECT_TRUE(check_structure(xs->insns).ok());

  // Maps: BTF-defined first (DATASEC order), then global data.
  const ObjectMap* counts = map_named(o, "counts");
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_HASH));
  EXPECT_EQ(counts->spec.key_size, 4u);
  EXPECT_EQ(counts->spec.value_size, 16u);
  EXPECT_EQ(counts->spec.max_entries, 128u);
  EXPECT_EQ(counts->spec.flags, static_cast<uint32_t>(BPF_F_NO_PREALLOC));
  EXPECT_EQ(counts->spec.spin_lock_off, 8);
  EXPECT_EQ(o.btf_type_name(counts->btf_value_type_id), "struct locked_val");
  const ObjectMap* outer = map_named(o, "outer");
  ASSERT_TRUE(outer && outer->spec.inner);
  EXPECT_EQ(outer->spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_ARRAY_OF_MAPS));
  EXPECT_EQ(outer->spec.value_size, 4u);
  EXPECT_EQ(outer->spec.inner->type, static_cast<uint32_t>(BPF_MAP_TYPE_ARRAY));
  EXPECT_EQ(outer->spec.inner->max_entries, 4u);
  EXPECT_EQ(outer->spec.inner->value_size, 8u);
  ASSERT_EQ(outer->slots.size(), 1u);
  EXPECT_EQ(outer->slots[0].index, 1u);
  EXPECT_EQ(outer->slots[0].map, o.find_map("inner0"));
  const ObjectMap* jumps = map_named(o, "jumps");
  ASSERT_TRUE(jumps);
  ASSERT_EQ(jumps->slots.size(), 1u);
  EXPECT_EQ(jumps->slots[0].index, 2u);
  EXPECT_EQ(jumps->slots[0].program, "xdp_main");
  const ObjectMap* events = map_named(o, "events");
  ASSERT_TRUE(events);
  EXPECT_EQ(events->spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_RINGBUF));
  EXPECT_EQ(events->spec.max_entries, 4096u);

  // Global data maps named as libbpf names them.
  const ObjectMap* data = map_named(o, "ld_multi.data");
  const ObjectMap* rodata = map_named(o, "ld_multi.rodata");
  const ObjectMap* bss = map_named(o, "ld_multi.bss");
  const ObjectMap* custom = map_named(o, ".data.counters");
  ASSERT_TRUE(data && rodata && bss && custom);
  EXPECT_TRUE(rodata->frozen);
  EXPECT_FALSE(data->frozen);
  EXPECT_EQ(rodata->spec.flags & BPF_F_RDONLY_PROG, static_cast<uint32_t>(BPF_F_RDONLY_PROG));
  EXPECT_EQ(bss->origin, MapOrigin::Bss);
  EXPECT_EQ(bss->data, std::vector<uint8_t>(8, 0));

  // Map relocations: lddw src=5 with the map index; global data src=6 with index and offset.
  const int counts_idx = o.find_map("counts");
  bool map_ref = false;
  for (const auto& in : xm->insns)
    if (in.op == Op::LDDW_MAP_IDX && in.imm == counts_idx) map_ref = true;
  EXPECT_TRUE(map_ref);
  const GlobalVar* hist = o.find_global("hist");
  ASSERT_TRUE(hist);
  EXPECT_EQ(hist->map, static_cast<uint32_t>(o.find_map(".data.counters")));
  bool hist_ref = false;
  for (const auto& in : xs->insns)
    if (in.op == Op::LDDW_MAP_VALUE_IDX && (in.imm & 0xffffffff) == hist->map) hist_ref = true;
  EXPECT_TRUE(hist_ref);
  // maps_used lists what lddw's reference.
  EXPECT_TRUE(std::count(xm->maps_used.begin(), xm->maps_used.end(), static_cast<uint32_t>(counts_idx)));

  // Globals: initial values readable, settable before instantiation (size checked).
  auto cnt = o.global_bytes("counter");
  ASSERT_TRUE(cnt.ok());
  uint32_t v = 0;
  std::memcpy(&v, cnt->data(), 4);
  EXPECT_EQ(v, 7u);
  auto th = o.global_bytes("threshold");
  ASSERT_TRUE(th.ok());
  std::memcpy(&v, th->data(), 4);
  EXPECT_EQ(v, 100u);
  uint32_t nv = 55;
  EXPECT_TRUE(o.set_global("threshold", &nv, 4).ok());
  std::memcpy(&v, o.global_bytes("threshold")->data(), 4);
  EXPECT_EQ(v, 55u);
  EXPECT_FALSE(o.set_global("threshold", &nv, 2).ok());
  EXPECT_FALSE(o.set_global("no_such_var", &nv, 4).ok());
  auto hb = o.global_bytes("hist");
  ASSERT_TRUE(hb.ok());
  ASSERT_EQ(hb->size(), 16u);
  std::memcpy(&v, hb->data() + 8, 4);
  EXPECT_EQ(v, 3u);

  // Line and function info, in linked positions.
  ASSERT_FALSE(xm->lines.empty());
  bool saw_counter = false;
  for (size_t pc = 0; pc < xm->insns.size(); ++pc) {
    const SourceLine* l = xm->line_at(pc);
    if (l && l->text.find("counter++") != std::string::npos) saw_counter = true;
  }
  EXPECT_TRUE(saw_counter);
  EXPECT_NE(xm->source_at(0).find("ld_multi.bpf.c:"), std::string::npos) << xm->source_at(0);
  std::vector<std::string> fnames;
  for (const auto& f : xm->func_info) fnames.push_back(f.name);
  EXPECT_EQ(fnames, (std::vector<std::string>{"xdp_main", "add_global", "add_static"}));
  EXPECT_EQ(xm->func_info[1].insn, static_cast<uint32_t>(ag));
  // The subprogram's lines start at its linked position.
  const SourceLine* sub = xm->line_at(static_cast<size_t>(as));
  ASSERT_TRUE(sub);
  EXPECT_NE(sub->text.find("add_static"), std::string::npos) << sub->text;
}

TEST(LoaderObjects, TextFunctionLinkedOnItsOwn) {
  Object o = load_ok(prog_path("ld_multi.bpf.o"));
  auto p = o.link_function("add_global");
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(p->section, ".text");
  EXPECT_EQ(p->functions.size(), 2u);  // add_global + add_static
  EXPECT_TRUE(check_structure(p->insns).ok());
  auto typed = o.link_function("add_global", BPF_PROG_TYPE_SOCKET_FILTER);
  ASSERT_TRUE(typed.ok());
  EXPECT_EQ(typed->type_name(), "socket_filter");
  EXPECT_FALSE(o.link_function("nope").ok());
  auto names = o.function_names();
  EXPECT_TRUE(std::count(names.begin(), names.end(), "loop_cb"));
}

TEST(LoaderObjects, TypeOverride) {
  LoadOptions lo;
  lo.prog_type = BPF_PROG_TYPE_SCHED_CLS;
  Object o = load_ok(prog_path("ld_multi.bpf.o"), lo);
  for (const auto& p : o.programs) EXPECT_EQ(p.type_name(), "sched_cls") << p.name;
}

TEST(LoaderObjects, LegacyMapsSection) {
  Object o = load_ok(prog_path("ld_legacy.bpf.o"));
  EXPECT_EQ(o.license, "Dual BSD/GPL");
  EXPECT_EQ(o.kernel_version, 0x40f00u);
  ASSERT_EQ(o.maps.size(), 3u);
  EXPECT_EQ(o.maps[0].spec.name, "my_hash");
  EXPECT_EQ(o.maps[0].origin, MapOrigin::Legacy);
  EXPECT_EQ(o.maps[0].spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_HASH));
  EXPECT_EQ(o.maps[0].spec.value_size, 8u);
  EXPECT_EQ(o.maps[0].spec.max_entries, 1024u);
  EXPECT_EQ(o.maps[0].spec.flags, 1u);
  EXPECT_EQ(o.maps[1].spec.value_size, 16u);
  ASSERT_TRUE(o.maps[2].spec.inner);
  EXPECT_EQ(o.maps[2].inner_map, 1);
  EXPECT_EQ(o.maps[2].spec.inner->value_size, 16u);
  EXPECT_EQ(o.find_program("prog1")->type_name(), "socket_filter");
  EXPECT_EQ(o.find_program("prog2")->type_name(), "kprobe");
  EXPECT_EQ(o.find_program("prog3")->type_name(), "xdp");
  bool ref = false;
  for (const auto& in : o.find_program("prog2")->insns)
    if (in.op == Op::LDDW_MAP_IDX && in.imm == 1) ref = true;
  EXPECT_TRUE(ref);
}

TEST(LoaderObjects, Iproute2ElfMaps) {
  Object o = load_ok(prog_path("ld_elfmap.bpf.o"));
  ASSERT_EQ(o.maps.size(), 2u);
  EXPECT_EQ(o.maps[0].origin, MapOrigin::LegacyElf);
  EXPECT_EQ(o.maps[0].spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_PERCPU_ARRAY));
  EXPECT_EQ(o.maps[0].spec.max_entries, 256u);
  EXPECT_EQ(o.maps[0].spec.pinning, 2u);
  EXPECT_EQ(o.maps[1].elf_id, 3u);
  EXPECT_EQ(o.maps[1].spec.key_size, 8u);
  ASSERT_EQ(o.programs.size(), 1u);
  EXPECT_EQ(o.programs[0].type_name(), "sched_cls");
}

TEST(LoaderObjects, Clang19CpuV4) {
  fs::path p = prog_path("ld_globals.v4.bpf.o");
  if (!fs::exists(p)) GTEST_SKIP() << "clang-19 not available: " << p << " was not built";
  Object o = load_ok(p);
  ASSERT_EQ(o.programs.size(), 1u);
  const auto& pr = o.programs[0];
  EXPECT_EQ(pr.functions.size(), 2u);
  bool v4 = false;
  for (const auto& in : pr.insns)
    if (in.info().version >= 4) v4 = true;
  EXPECT_TRUE(v4) << "expected at least one ISA v4 instruction";
  EXPECT_TRUE(check_structure(pr.insns).ok());
  ASSERT_TRUE(o.find_global("divisor"));
  int32_t d = 0;
  std::memcpy(&d, o.global_bytes("divisor")->data(), 4);
  EXPECT_EQ(d, -3);
  EXPECT_NE(o.find_map("ld_globa.rodata"), -1);
}

TEST(LoaderObjects, InstantiateAndRunGlobals) {
  Object o = load_ok(prog_path("ld_run.bpf.o"));
  int32_t scale = 5;
  ASSERT_TRUE(o.set_global("scale", &scale, 4).ok());
  auto live = instantiate(o);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  ASSERT_EQ(live->maps.size(), o.maps.size());
  auto prog = live->program(*o.find_program("run_globals"));
  ASSERT_TRUE(prog.ok()) << prog.error().to_string();
  for (const auto& in : prog->insns) {
    EXPECT_NE(in.op, Op::LDDW_MAP_VALUE_IDX);
    EXPECT_NE(in.op, Op::LDDW_MAP_IDX);
  }
  HelperTable none;
  for (bool checked : {false, true}) {
    ExecOptions eo;
    eo.checked = checked;
    auto exe = Executable::create(*prog, none, eo);
    ASSERT_TRUE(exe.ok()) << exe.error().to_string();
    RunArgs args;
    args.regions = live->data_regions;
    auto r = (*exe)->run(args);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    // counter starts at 10 and grows by 2 * scale per run.
    EXPECT_EQ(*r, checked ? 30u : 20u);
  }
  // The program's writes are visible in the map values.
  const GlobalVar* seen = o.find_global("seen");
  ASSERT_TRUE(seen);
  int32_t s1 = 0;
  std::memcpy(&s1, live->data(seen->map) + seen->offset + 4, 4);
  EXPECT_EQ(s1, 30);
  auto second = live->program(*o.find_program("run_second"));
  ASSERT_TRUE(second.ok());
  auto exe2 = Executable::create(*second, none);
  ASSERT_TRUE(exe2.ok());
  auto r2 = (*exe2)->run(RunArgs{});
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, 35u);  // seen[1] + 1 * scale
  // .rodata is a read-only region for checked runs.
  int ro = o.find_map("ld_run.rodata");
  ASSERT_GE(ro, 0);
  bool found = false;
  for (const auto& reg : live->data_regions)
    if (reg.start == reinterpret_cast<uint64_t>(live->data(ro))) {
      found = true;
      EXPECT_FALSE(reg.writable);
    }
  EXPECT_TRUE(found);
}

TEST(LoaderObjects, InstantiateMapInMapSlots) {
  Object o = load_ok(prog_path("ld_multi.bpf.o"));
  auto live = instantiate(o);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  Map& outer = *live->maps[o.find_map("outer")];
  uint32_t key = 1;
  EXPECT_EQ(outer.lookup(&key), live->maps[o.find_map("inner0")].get());
  key = 0;
  EXPECT_EQ(outer.lookup(&key), nullptr);
  auto prog = live->program(*o.find_program("xdp_main"));
  ASSERT_TRUE(prog.ok());
  bool addr = false;
  for (const auto& in : prog->insns)
    if (in.op == Op::LDDW && static_cast<uint64_t>(in.imm) == reinterpret_cast<uint64_t>(live->maps[o.find_map("counts")].get()))
      addr = true;
  EXPECT_TRUE(addr);
}

// ---- the shared sample collection ------------------------------------------------------------------
namespace {
std::vector<fs::path> sample_files(const fs::path& dir) {
  std::vector<fs::path> v;
  if (!fs::exists(dir)) return v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && (e.path().extension() == ".o" || e.path().extension().empty())) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}
}  // namespace

TEST(LoaderSamples, RealObjectsLoad) {
  fs::path shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared (or $BPFVM_SHARED) not found";
  size_t n = 0, progs = 0;
  for (const char* sub : {"linux", "new_linux", "suricata", "build"}) {
    for (const auto& f : sample_files(shared / "samples" / sub)) {
      if (f.filename() == "badrelo.o") continue;
      auto r = load_object_file(f.string());
      ASSERT_TRUE(r.ok()) << f << ": " << r.error().to_string();
      EXPECT_FALSE(r->programs.empty()) << f;
      for (const auto& p : r->programs) {
        EXPECT_FALSE(p.insns.empty()) << f << " " << p.name;
        EXPECT_EQ(p.insns.back().op == Op::LDDW_HI, false) << f << " " << p.name;
      }
      progs += r->programs.size();
      ++n;
    }
  }
  EXPECT_GE(n, 100u);
  EXPECT_GE(progs, 150u);
}

TEST(LoaderSamples, KnownObjectsLookRight) {
  fs::path s = test::shared_dir();
  if (s.empty()) GTEST_SKIP() << "../shared (or $BPFVM_SHARED) not found";
  s /= "samples";
  {
    Object o = load_ok(s / "linux" / "sockex3_kern.o");
    EXPECT_NE(o.find_program("main_prog"), nullptr);
    ASSERT_GE(o.find_map("jmp_table"), 0);
    EXPECT_EQ(o.maps[o.find_map("jmp_table")].spec.type, static_cast<uint32_t>(BPF_MAP_TYPE_PROG_ARRAY));
    for (const auto& p : o.programs) EXPECT_EQ(p.type_name(), "socket_filter") << p.section;
  }
  {
    Object o = load_ok(s / "linux" / "xdp1_kern.o");
    ASSERT_EQ(o.programs.size(), 1u);
    EXPECT_EQ(o.programs[0].name, "xdp_prog1");
    EXPECT_EQ(o.programs[0].type_name(), "xdp");
    EXPECT_EQ(o.maps.size(), 1u);
    EXPECT_EQ(o.maps[0].spec.name, "rxcnt");
  }
  {
    Object o = load_ok(s / "build" / "map_in_map_legacy.o");  // "maps/<name>" sections
    ASSERT_EQ(o.maps.size(), 2u);
    EXPECT_EQ(o.maps[0].inner_map, 1);
  }
  {
    // `extern` call of a helper by name becomes a helper call.
    Object o = load_ok(s / "build" / "externalfunction.o");
    bool helper1 = false;
    for (const auto& in : o.programs.at(0).insns)
      if (in.op == Op::CALL_HELPER && in.imm == 1) helper1 = true;
    EXPECT_TRUE(helper1);
  }
  {
    Object o = load_ok(s / "suricata" / "lb.o");
    EXPECT_EQ(o.programs.at(0).type_name(), "socket_filter");
  }
}

TEST(LoaderSamples, InvalidObjectsGiveClearErrors) {
  fs::path shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared (or $BPFVM_SHARED) not found";
  std::vector<fs::path> files = sample_files(shared / "samples" / "invalid");
  files.push_back(shared / "samples" / "build" / "badrelo.o");
  // One file of invalid/ is a well-formed object as far as ELF and BTF go (libbpf 1.1 opens it too):
  // a verifier-timeout case whose 36 programs sit in sections no loader gives a type ("bind/0"...);
  // like libbpf ("missing BPF prog type") bpfvm refuses to verify or run them without --type.
  // ef2e42c... renames .debug_line to "info" while .rel.debug_line still patches it: refused.
  const std::set<std::string> well_formed = {"timeout-29db93548c671165313b314d4f83a3eefa24df37"};
  size_t failed = 0;
  for (const auto& f : files) {
    auto r = load_object_file(f.string());
    if (well_formed.count(f.filename().string())) {
      ASSERT_TRUE(r.ok()) << f << ": " << r.error().to_string();
      EXPECT_EQ(r->programs.size(), 36u);
      for (const auto& p : r->programs) EXPECT_FALSE(p.type_known) << p.section;
      continue;
    }
    if (r.ok()) {
      // Damage confined to one instruction (a bad relocation or opcode) fails that program alone,
      // with an error naming the section; nothing of this file loads.
      ASSERT_FALSE(r->programs.empty()) << f;
      for (const auto& p : r->programs) {
        EXPECT_FALSE(p.ok()) << f << " " << p.name << " loaded but should not";
        EXPECT_NE(p.error.find("section"), std::string::npos) << f << ": " << p.error;
      }
      ++failed;
      continue;
    }
    EXPECT_EQ(r.error().code, ErrorCode::Load) << f;
    const std::string& m = r.error().message;
    EXPECT_TRUE(m.find("section") != std::string::npos || m.find("symbol") != std::string::npos) << f << ": " << m;
    ++failed;
  }
  EXPECT_GE(failed, 11u);
}

// ---- hostile input -----------------------------------------------------------------------------------
TEST(LoaderBadInput, NotElf) {
  std::vector<uint8_t> empty;
  auto r = load_object(empty);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not an ELF"), std::string::npos);
  std::vector<uint8_t> junk(100, 'x');
  EXPECT_FALSE(load_object(junk).ok());
  auto io = load_object_file("/nonexistent/x.o");
  ASSERT_FALSE(io.ok());
  EXPECT_EQ(io.error().code, ErrorCode::Io);
  // An endless file is cut off, not read into memory without bound.
  if (fs::exists("/dev/zero")) {
    auto z = load_object_file("/dev/zero");
    ASSERT_FALSE(z.ok());
    EXPECT_EQ(z.error().code, ErrorCode::Io);
    EXPECT_NE(z.error().message.find("larger than"), std::string::npos) << z.error().message;
  }
  auto dir = load_object_file("/");
  EXPECT_FALSE(dir.ok());
}

TEST(LoaderBadInput, TruncatedObjects) {
  auto full = read_bytes(prog_path("ld_multi.bpf.o"));
  ASSERT_GT(full.size(), 1000u);
  size_t ok = 0;
  for (size_t len = 0; len < full.size(); len += 61) {
    std::vector<uint8_t> t(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    auto r = load_object(t);
    if (r.ok()) ++ok;
    else EXPECT_FALSE(r.error().message.empty());
  }
  EXPECT_EQ(ok, 0u);  // the section headers are at the end: every truncation must fail
}

TEST(LoaderBadInput, PatchedHeadersNameTheCulprit) {
  const auto base = read_bytes(prog_path("ld_multi.bpf.o"));
  {  // relocation offset not on an instruction
    ElfEdit e{base};
    Elf64_Shdr* rel = e.find(".relxdp");
    ASSERT_TRUE(rel);
    e.at<Elf64_Rel>(rel, 0)->r_offset = 3;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("section 'xdp'"), std::string::npos) << m;
    EXPECT_NE(m.find("relocation #0"), std::string::npos) << m;
  }
  {  // relocation offset past the section
    ElfEdit e{base};
    e.at<Elf64_Rel>(e.find(".relxdp"), 0)->r_offset = 1 << 20;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("not an instruction of the section"), std::string::npos) << m;
  }
  {  // relocation on an instruction that is neither lddw nor call
    ElfEdit e{base};
    e.at<Elf64_Rel>(e.find(".relxdp"), 0)->r_offset = 0;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("neither lddw nor a bpf-to-bpf call"), std::string::npos) << m;
  }
  {  // symbol index out of range
    ElfEdit e{base};
    Elf64_Rel* r = e.at<Elf64_Rel>(e.find(".relxdp"), 0);
    r->r_info = ELF64_R_INFO(99999, ELF64_R_TYPE(r->r_info));
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("symbol index 99999 out of range"), std::string::npos) << m;
  }
  {  // a section claiming a huge size
    ElfEdit e{base};
    e.find(".BTF")->sh_size = 1ull << 40;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find(".BTF"), std::string::npos) << m;
  }
  {  // .bss claiming a huge size: refused before any allocation
    ElfEdit e{base};
    e.find(".bss")->sh_size = 1ull << 40;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("'.bss'"), std::string::npos) << m;
  }
  {  // code section size not a multiple of 8
    ElfEdit e{base};
    e.find("socket")->sh_size -= 4;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("section 'socket'"), std::string::npos) << m;
  }
  {  // .BTF.ext line info pointing past its code section
    ElfEdit e{base};
    Elf64_Shdr* ext = e.find(".BTF.ext");
    uint32_t hdr = *e.at<uint32_t>(ext, 4), li_off = *e.at<uint32_t>(ext, 16);
    // first line_info block: rec_size, sec_name_off, num_info, then the first record's insn_off
    *e.at<uint32_t>(ext, hdr + li_off + 12) = 1 << 24;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("line_info"), std::string::npos) << m;
  }
  {  // BTF that lies: bad magic
    ElfEdit e{base};
    *e.at<uint16_t>(e.find(".BTF"), 0) = 0x1234;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("section '.BTF': invalid BTF"), std::string::npos) << m;
  }
  {  // undefined map type in a legacy definition
    ElfEdit e{read_bytes(prog_path("ld_legacy.bpf.o"))};
    *e.at<uint32_t>(e.find("maps"), 0) = 999;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("map 'my_hash'"), std::string::npos) << m;
    EXPECT_NE(m.find("unknown map type 999"), std::string::npos) << m;
  }
  {  // legacy maps section whose size does not divide among its symbols
    ElfEdit e{read_bytes(prog_path("ld_legacy.bpf.o"))};
    e.find("maps")->sh_size -= 4;
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("section 'maps'"), std::string::npos) << m;
  }
  {  // a function symbol running past its section
    ElfEdit e{base};
    Elf64_Shdr* st = e.find(".symtab");
    size_t n = st->sh_size / sizeof(Elf64_Sym);
    bool patched = false;
    for (size_t i = 0; i < n; ++i) {
      Elf64_Sym* s = e.at<Elf64_Sym>(st, i * sizeof(Elf64_Sym));
      const char* nm = reinterpret_cast<const char*>(e.b.data() + e.sh(st->sh_link)->sh_offset + s->st_name);
      if (std::string_view(nm) == "kp_prog") s->st_size = 1 << 20, patched = true;
    }
    ASSERT_TRUE(patched);
    std::string m = load_error_of(e.b);
    EXPECT_NE(m.find("function 'kp_prog'"), std::string::npos) << m;
  }
}

TEST(LoaderBadInput, RandomByteFlipsNeverCrash) {
  const auto base = read_bytes(prog_path("ld_multi.bpf.o"));
  std::mt19937 rng(1234);
  size_t loaded = 0;
  for (int iter = 0; iter < 300; ++iter) {
    auto b = base;
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto r = load_object(b);
    if (r.ok()) {
      ++loaded;
      // A program either loaded (code) or failed alone (an error, no code).
      for (const auto& p : r->programs) EXPECT_NE(p.insns.empty(), p.ok()) << p.name << ": " << p.error;
    } else {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  SUCCEED() << loaded << " of 300 mutated objects still loaded";
}

// ---- the kernel as the judge of linking and relocation ---------------------------------------------
#include "kernel/oracle.hpp"

namespace {

// Creates the object's maps in the kernel (no BTF: only maps that need none), and returns the
// program's raw slots with the pseudo lddw forms turned into the kernel's fd forms.
struct KernelObject {
  std::vector<kernel::Fd> fds;
  std::string why;
  bool create(const Object& o) {
    for (const auto& m : o.maps) {
      int inner_fd = -1;
      kernel::Fd inner;
      if (m.spec.inner) {
        int e = 0;
        inner = kernel::create_map(m.spec.inner->type, m.spec.inner->key_size, m.spec.inner->value_size,
                                   m.spec.inner->max_entries, m.spec.inner->flags, &e);
        if (!inner) return why = "inner map of " + m.spec.name + ": errno " + std::to_string(e), false;
        inner_fd = inner.get();
      }
      int err = 0;
      kernel::Fd fd = kernel::create_map(m.spec.type, m.spec.key_size, m.spec.value_size, m.spec.max_entries, m.spec.flags,
                                         &err, m.spec.map_extra, inner_fd);
      if (!fd) return why = "map " + m.spec.name + ": errno " + std::to_string(err), false;
      if (m.is_global_data()) {
        uint32_t zero = 0;
        if (kernel::map_update(fd.get(), &zero, m.data.data(), 0) != 0) return why = "init " + m.spec.name, false;
        if (m.frozen) kernel::map_freeze(fd.get());
      }
      fds.push_back(std::move(fd));
    }
    return true;
  }
  std::vector<RawInsn> raw(const ObjectProgram& p) const {
    std::vector<RawInsn> r = encode(p.insns);
    for (size_t i = 0; i < r.size(); ++i) {
      if (r[i].code != 0x18) continue;
      if (r[i].src == BPF_PSEUDO_MAP_IDX) {
        r[i].src = BPF_PSEUDO_MAP_FD;
        r[i].imm = fds.at(static_cast<size_t>(r[i].imm)).get();
      } else if (r[i].src == BPF_PSEUDO_MAP_IDX_VALUE) {
        r[i].src = BPF_PSEUDO_MAP_VALUE;
        r[i].imm = fds.at(static_cast<size_t>(r[i].imm)).get();
      }
      ++i;
    }
    return r;
  }
};

}  // namespace

TEST(LoaderKernel, LinkedProgramsLoadAndRunLikeTheKernel) {
  if (!kernel::available()) GTEST_SKIP() << "kernel unavailable: " << kernel::unavailable_reason();
  Object o = load_ok(prog_path("ld_run.bpf.o"));
  KernelObject ko;
  ASSERT_TRUE(ko.create(o)) << ko.why;
  auto live = instantiate(o);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  std::vector<uint8_t> pkt(64, 0);
  HelperTable none;
  // Same programs, same order, same global state: same results.
  for (const char* name : {"run_globals", "run_second", "run_globals", "run_second"}) {
    const ObjectProgram* p = o.find_program(name);
    ASSERT_TRUE(p);
    auto raw = ko.raw(*p);
    EXPECT_EQ(raw.size(), p->slots());
    auto lr = kernel::load_program(raw, p->type, 1, "GPL");
    ASSERT_TRUE(lr.fd) << name << ": errno " << lr.err << "\n" << lr.log;
    auto tr = kernel::test_run(lr.fd.get(), pkt);
    ASSERT_EQ(tr.err, 0) << name;
    auto prog = live->program(*p);
    ASSERT_TRUE(prog.ok());
    auto exe = Executable::create(*prog, none);
    ASSERT_TRUE(exe.ok()) << exe.error().to_string();
    RunArgs args;
    auto r = (*exe)->run(args);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(static_cast<uint32_t>(*r), tr.retval) << name;
  }
}

TEST(LoaderKernel, LegacyAndSampleProgramsAccepted) {
  if (!kernel::available()) GTEST_SKIP() << "kernel unavailable: " << kernel::unavailable_reason();
  // Legacy maps (incl. a map-in-map by inner_map_idx), prefix section names.
  Object o = load_ok(prog_path("ld_legacy.bpf.o"));
  KernelObject ko;
  ASSERT_TRUE(ko.create(o)) << ko.why;
  for (const auto& p : o.programs) {
    auto lr = kernel::load_program(ko.raw(p), p.type, 1, "GPL");
    EXPECT_TRUE(lr.fd) << p.section << "/" << p.name << ": errno " << lr.err << "\n" << lr.log;
  }
}
