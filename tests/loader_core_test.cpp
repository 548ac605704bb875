// The loader's CO-RE relocations, .kconfig externs, globals set from text, legacy iproute2 maps,
// per-program load failures and attach targets. Where the kernel can load the same object with
// libbpf (which relocates against the same target BTF), its results are the oracle.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/verifier.hpp"
#include "kernel/oracle.hpp"
#include "loader/core.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace bpfvm;

namespace {

fs::path prog_path(const std::string& name) { return fs::path(BPFVM_PROGS_DIR) / name; }

Object load_ok(const fs::path& p, const LoadOptions& o = {}) {
  auto r = load_object_file(p.string(), o);
  EXPECT_TRUE(r.ok()) << p << ": " << (r.ok() ? "" : r.error().to_string());
  if (!r.ok()) return Object{};
  return std::move(*r);
}

bool have_vmlinux() { return access("/sys/kernel/btf/vmlinux", R_OK) == 0; }

// Runs an XDP program of the object in bpfvm and returns the u64 array global `name`.
std::vector<uint64_t> run_and_read(const Object& o, const std::string& prog, const std::string& name, size_t n) {
  auto live = instantiate(o);
  EXPECT_TRUE(live.ok()) << live.error().to_string();
  if (!live.ok()) return {};
  const ObjectProgram* p = o.find_program(prog);
  EXPECT_TRUE(p);
  if (!p) return {};
  EXPECT_TRUE(p->ok()) << p->error;
  auto prepared = prepare_program(*p, *live);
  EXPECT_TRUE(prepared.ok()) << prepared.error().to_string();
  if (!prepared.ok()) return {};
  std::vector<uint8_t> pkt(64, 0);
  auto r = test_run(*prepared, pkt);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  auto g = live->global(name);
  EXPECT_TRUE(g.ok());
  if (!g.ok()) return {};
  std::vector<uint64_t> v(n);
  std::memcpy(v.data(), g->data(), std::min(g->size(), n * 8));
  return v;
}

// The same object loaded by libbpf into the kernel (CO-RE against `btf`, "" = the kernel's own),
// program `prog` test-run once, the .bss read back. Empty with `why` set when the kernel cannot.
struct LibbpfRun {
  std::vector<uint64_t> bss;
  std::vector<std::vector<bpf_insn>> insns;  // final instructions of each loaded program, by name order
  std::string why;
};

LibbpfRun libbpf_run(const fs::path& obj, const std::string& btf, const std::string& prog,
                     const std::vector<std::string>& skip = {}) {
  LibbpfRun out;
  if (!kernel::available()) {
    out.why = kernel::unavailable_reason();
    return out;
  }
  libbpf_print_fn_t old = libbpf_set_print(nullptr);
  LIBBPF_OPTS(bpf_object_open_opts, oo, .btf_custom_path = btf.empty() ? nullptr : btf.c_str());
  struct bpf_object* o = bpf_object__open_file(obj.c_str(), &oo);
  if (!o) {
    libbpf_set_print(old);
    out.why = "libbpf cannot open the object";
    return out;
  }
  struct bpf_program* p;
  bpf_object__for_each_program(p, o) {
    for (const auto& s : skip)
      if (s == bpf_program__name(p)) bpf_program__set_autoload(p, false);
  }
  if (bpf_object__load(o) != 0) {
    libbpf_set_print(old);
    bpf_object__close(o);
    out.why = "libbpf cannot load the object into this kernel";
    return out;
  }
  libbpf_set_print(old);
  bpf_object__for_each_program(p, o) {
    if (!bpf_program__autoload(p)) continue;
    const bpf_insn* ins = bpf_program__insns(p);
    out.insns.emplace_back(ins, ins + bpf_program__insn_cnt(p));
  }
  if (!prog.empty()) {
    struct bpf_program* run = bpf_object__find_program_by_name(o, prog.c_str());
    std::vector<uint8_t> pkt(64, 0);
    LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = pkt.data(), .data_size_in = static_cast<uint32_t>(pkt.size()), .repeat = 1);
    if (!run || bpf_prog_test_run_opts(bpf_program__fd(run), &t) != 0) {
      out.why = "test run failed";
    } else {
      struct bpf_map* m;
      bpf_object__for_each_map(m, o) {
        if (!std::string(bpf_map__name(m)).ends_with(".bss")) continue;
        std::vector<uint8_t> v(bpf_map__value_size(m));
        uint32_t k = 0;
        if (bpf_map__lookup_elem(m, &k, 4, v.data(), v.size(), 0) == 0) {
          out.bss.resize(v.size() / 8);
          std::memcpy(out.bss.data(), v.data(), out.bss.size() * 8);
        }
      }
    }
  }
  bpf_object__close(o);
  return out;
}

}  // namespace

// ---- CO-RE ----------------------------------------------------------------------------------------

// Relocated against a crafted target (tests/progs/core_target.bpf.c), the values are the ones its
// layout gives by hand: reordered fields, ___flavour types, missing fields and enumerators.
TEST(LoaderCore, ValuesAgainstACraftedTarget) {
  LoadOptions lo;
  lo.target_btf = prog_path("core_target.bpf.o").string();
  Object o = load_ok(prog_path("core_values.bpf.o"), lo);
  ASSERT_EQ(o.target_btf, lo.target_btf);
  auto v = run_and_read(o, "core_values", "out", 22);
  ASSERT_EQ(v.size(), 22u);
  const std::vector<uint64_t> expect = {
      32, 28, 12, 16, 1,   // task_struct: pid, tgid, comm offsets, comm size, real_parent exists
      32, 12,              // ___reordered: pid, comm at the target's offsets
      0, 1,                // ___missing: no_such_field absent, pid present
      1, 0,                // type exists: task_struct yes, bpfvm_no_such_type no
      8,                   // sizeof(struct pt_regs) in the target
      1, 7,                // enum pid_type: PIDTYPE_TGID exists, PIDTYPE_SID = 7
      0, 7,                // pid_type___local: NO_SUCH absent, SID___local = the target's SID
      1,                   // task_struct has a target type id
      1, 0,                // pid signed, flags unsigned
      8,                   // pointer size
      8 + 2 * 8, 56};      // trace_event_raw_sys_enter: args[2], size
  EXPECT_EQ(v, expect);
  // Every relocation is recorded with what it did.
  const ObjectProgram* p = o.find_program("core_values");
  ASSERT_TRUE(p);
  EXPECT_GE(p->core_relos.size(), 20u);
  for (const auto& r : p->core_relos) EXPECT_FALSE(r.poisoned) << r.description;
}

// The kernel (libbpf, same target BTF) computes the same values: against the crafted target and
// against the running kernel's own BTF.
TEST(LoaderCore, ValuesMatchLibbpfAndTheKernel) {
  for (std::string target : {prog_path("core_target.bpf.o").string(), std::string()}) {
    if (target.empty() && !have_vmlinux()) continue;
    LibbpfRun k = libbpf_run(prog_path("core_values.bpf.o"), target, "core_values");
    if (!k.why.empty()) GTEST_SKIP() << k.why;
    LoadOptions lo;
    lo.target_btf = target;
    Object o = load_ok(prog_path("core_values.bpf.o"), lo);
    auto v = run_and_read(o, "core_values", "out", 24);
    ASSERT_EQ(k.bss.size(), 24u);
    EXPECT_EQ(v, k.bss) << "target " << (target.empty() ? "/sys/kernel/btf/vmlinux" : target);
  }
}

// Type-matches relocations (clang 17+): the same answers as libbpf with the kernel, against the
// crafted target and the running kernel's BTF, and the expected ones against the kernel's.
TEST(LoaderCore, TypeMatchesAgreesWithLibbpf) {
  if (!std::filesystem::exists(prog_path("core_matches.v4.bpf.o"))) GTEST_SKIP() << "needs clang-19";
  for (std::string target : {prog_path("core_target.bpf.o").string(), std::string()}) {
    if (target.empty() && !have_vmlinux()) continue;
    LoadOptions lo;
    lo.target_btf = target;
    Object o = load_ok(prog_path("core_matches.v4.bpf.o"), lo);
    auto v = run_and_read(o, "core_matches", "out", 8);
    ASSERT_EQ(v.size(), 8u);
    EXPECT_EQ(v[7], 1u);
    if (target.empty()) {
      // Against the kernel's task_struct: a subset of its members matches; an extra member or a
      // member of another kind does not (nor does vmlinux.h's trimmed task_struct, whose members'
      // types are not all the kernel's); an enum with an enumerator the kernel lacks does not.
      EXPECT_EQ(v[1], 1u);
      EXPECT_EQ(v[2], 0u);
      EXPECT_EQ(v[3], 0u);
      EXPECT_EQ(v[4], 1u);
      EXPECT_EQ(v[5], 0u);
    }
    LibbpfRun k = libbpf_run(prog_path("core_matches.v4.bpf.o"), target, "core_matches");
    if (!k.why.empty()) {
      std::printf("  libbpf comparison skipped: %s\n", k.why.c_str());
      continue;
    }
    ASSERT_EQ(k.bss.size(), 8u);
    EXPECT_EQ(v, k.bss) << "target " << (target.empty() ? "/sys/kernel/btf/vmlinux" : target);
  }
}

// Loads and BPF_CORE_READ offsets: bpfvm's relocated instructions are libbpf's, slot for slot.
TEST(LoaderCore, InstructionsMatchLibbpf) {
  if (!have_vmlinux()) GTEST_SKIP() << "no /sys/kernel/btf/vmlinux";
  LibbpfRun k = libbpf_run(prog_path("core_access.bpf.o"), "", "", {"core_unguarded"});
  if (!k.why.empty()) GTEST_SKIP() << k.why;
  Object o = load_ok(prog_path("core_access.bpf.o"));
  std::vector<const ObjectProgram*> progs;
  for (const char* n : {"core_ctx", "core_read", "core_guarded"}) progs.push_back(o.find_program(n));
  ASSERT_EQ(k.insns.size(), 3u);
  for (size_t i = 0; i < progs.size(); ++i) {
    ASSERT_TRUE(progs[i] && progs[i]->ok());
    std::vector<RawInsn> ours = encode(progs[i]->insns);
    const auto& theirs = k.insns[i];
    ASSERT_EQ(ours.size(), theirs.size()) << progs[i]->name;
    for (size_t pc = 0; pc < ours.size(); ++pc) {
      EXPECT_EQ(ours[pc].code, theirs[pc].code) << progs[i]->name << " insn " << pc;
      EXPECT_EQ(ours[pc].off, theirs[pc].off) << progs[i]->name << " insn " << pc;
      EXPECT_EQ(ours[pc].imm, theirs[pc].imm) << progs[i]->name << " insn " << pc;
    }
    EXPECT_FALSE(progs[i]->core_relos.empty()) << progs[i]->name;
  }
}

// A field the target lacks: the guarded read is dead code and verifies; the unguarded one poisons
// its instruction, and the verifier names the relocation when it reaches it.
TEST(LoaderCore, FailedRelocationPoisonsAndTheVerifierNamesIt) {
  LoadOptions lo;
  lo.target_btf = prog_path("core_target.bpf.o").string();
  Object o = load_ok(prog_path("core_access.bpf.o"), lo);
  for (const char* name : {"core_guarded", "core_unguarded"}) {
    const ObjectProgram* p = o.find_program(name);
    ASSERT_TRUE(p && p->ok()) << name;
    bool poisoned = false;
    for (const auto& r : p->core_relos) {
      if (!r.poisoned) continue;
      poisoned = true;
      EXPECT_NE(r.description.find("no_such_field"), std::string::npos) << r.description;
      EXPECT_EQ(p->insns[r.insn].op, Op::CALL_HELPER);
      EXPECT_EQ(p->insns[r.insn].imm, kCorePoisonHelper);
      EXPECT_EQ(p->poisoned_at(r.insn), &r);
    }
    EXPECT_TRUE(poisoned) << name;
    auto rep = verify(p->insns, verify_options_for(o, *p, RuleSet::Privileged));
    ASSERT_TRUE(rep.ok());
    if (std::string(name) == "core_guarded") {
      EXPECT_TRUE(rep->accepted) << rep->error.to_string();
    } else {
      ASSERT_FALSE(rep->accepted);
      EXPECT_NE(rep->error.message.find("invalid CO-RE relocation"), std::string::npos) << rep->error.message;
      EXPECT_NE(rep->error.message.find("task_struct___missing.no_such_field"), std::string::npos) << rep->error.message;
    }
  }
}

TEST(LoaderCore, SyntheticTargetWithoutKernelBtf) {
  // A target file that does not exist is an error naming it; bpfvm's own BTF has pt_regs.
  LoadOptions lo;
  lo.target_btf = "/nonexistent/vmlinux";
  auto r = load_object_file(prog_path("core_access.bpf.o").string(), lo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent/vmlinux"), std::string::npos);
  // A file that is not BTF.
  lo.target_btf = prog_path("ld_run.bpf.c").string();
  if (fs::exists(fs::path(BPFVM_SOURCE_DIR) / "tests/progs/ld_run.bpf.c")) {
    lo.target_btf = (fs::path(BPFVM_SOURCE_DIR) / "tests/progs/ld_run.bpf.c").string();
    r = load_object_file(prog_path("core_access.bpf.o").string(), lo);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("not valid BTF"), std::string::npos) << r.error().message;
  }
}

// Damaged CO-RE records: a clear error naming the record, never a crash.
TEST(LoaderCore, DamagedRecordsGiveClearErrors) {
  std::string s = test::read_text(prog_path("core_values.bpf.o"));
  std::vector<uint8_t> b(s.begin(), s.end());
  auto* eh = reinterpret_cast<Elf64_Ehdr*>(b.data());
  auto* sh = reinterpret_cast<Elf64_Shdr*>(b.data() + eh->e_shoff);
  const char* names = reinterpret_cast<const char*>(b.data() + sh[eh->e_shstrndx].sh_offset);
  Elf64_Shdr* ext = nullptr;
  for (size_t i = 0; i < eh->e_shnum; ++i)
    if (std::string(names + sh[i].sh_name) == ".BTF.ext") ext = &sh[i];
  ASSERT_TRUE(ext);
  uint8_t* p = b.data() + ext->sh_offset;
  uint32_t hdr_len, cr_off, cr_len;
  std::memcpy(&hdr_len, p + 4, 4);
  std::memcpy(&cr_off, p + 24, 4);
  std::memcpy(&cr_len, p + 28, 4);
  ASSERT_GT(cr_len, 16u);
  uint8_t* first = p + hdr_len + cr_off + 4 + 8;  // rec_size, then {sec_name_off, num_info}
  auto with = [&](size_t field, uint32_t value) {
    std::vector<uint8_t> c = b;
    std::memcpy(c.data() + (first - b.data()) + field * 4, &value, 4);
    auto r = load_object(c, {}, "patched.o");
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_NE(with(0, 1u << 20).find("outside the section"), std::string::npos);        // insn_off
  EXPECT_NE(with(1, 1u << 30).find("not in the BTF"), std::string::npos);             // type_id
  EXPECT_NE(with(2, 1u << 30).find("outside the BTF strings"), std::string::npos);    // access string
  EXPECT_NE(with(3, 99).find("unknown relocation kind 99"), std::string::npos);        // kind
}

// libbpf's flavour rule: the name up to the last "X___Y" (X, Y not underscores).
TEST(LoaderCore, EssentialNames) {
  EXPECT_EQ(core::essential_name("task_struct___v2"), "task_struct");
  EXPECT_EQ(core::essential_name("task_struct___a___b"), "task_struct___a");
  EXPECT_EQ(core::essential_name("a____b"), "a____b");       // X___Y needs Y != '_'... "a_" + "___b"
  EXPECT_EQ(core::essential_name("__u32"), "__u32");
  EXPECT_EQ(core::essential_name("x___"), "x___");
  EXPECT_EQ(core::essential_name("PIDTYPE_SID___local"), "PIDTYPE_SID");
}

// ---- .kconfig ----------------------------------------------------------------------------------------

TEST(LoaderKconfig, ValuesFromAConfigFile) {
  fs::path cfg = fs::temp_directory_path() / ("bpfvm_kconfig_" + std::to_string(getpid()));
  {
    std::ofstream f(cfg);
    f << "# comment\nCONFIG_HZ=300\nCONFIG_BPF_SYSCALL=y\nCONFIG_TEST_MODULE=m\n"
         "CONFIG_DEFAULT_HOSTNAME=\"bpfvm\"\n# CONFIG_BPFVM_NOT_SET is not set\n";
  }
  LoadOptions lo;
  lo.kconfig_file = cfg.string();
  Object o = load_ok(prog_path("core_kconfig.bpf.o"), lo);
  auto v = run_and_read(o, "kconfig_values", "out", 7);
  ASSERT_EQ(v.size(), 7u);
  EXPECT_GT(v[0], 0x30000u);  // LINUX_KERNEL_VERSION of the running kernel
  EXPECT_EQ(v[1], 1u);        // LINUX_HAS_SYSCALL_WRAPPER
  EXPECT_EQ(v[2], 300u);
  EXPECT_EQ(v[3], 1u);
  EXPECT_EQ(v[4], 2u);        // m
  EXPECT_EQ(v[5], static_cast<uint64_t>('b'));
  EXPECT_EQ(v[6], 0u);        // __weak, not set
  // Overrides win; a value of the wrong kind is an error naming the extern.
  lo.kconfig["CONFIG_HZ"] = "y";
  auto r = load_object_file(prog_path("core_kconfig.bpf.o").string(), lo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("CONFIG_HZ"), std::string::npos) << r.error().message;
  lo.kconfig["CONFIG_HZ"] = "1000";
  lo.kconfig["CONFIG_DEFAULT_HOSTNAME"] = "\"a-name-longer-than-16\"";
  r = load_object_file(prog_path("core_kconfig.bpf.o").string(), lo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("CONFIG_DEFAULT_HOSTNAME"), std::string::npos) << r.error().message;
  fs::remove(cfg);
}

TEST(LoaderKconfig, UnknownVirtualExternIsAnError) {
  auto r = load_object_file(prog_path("ld_badextern.bpf.o").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("LINUX_NO_SUCH_VALUE"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("unknown name"), std::string::npos) << r.error().message;
}

// Fuzzer finding: a .kconfig char array extern whose BTF claims 4 GB made the loader allocate it.
TEST(LoaderKconfig, HugeExternIsRefused) {
  auto r = load_object_file((fs::path(BPFVM_SOURCE_DIR) / "tests/loader_inputs/kconfig_huge_array.o").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("4 MiB"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(".kconfig extern"), std::string::npos) << r.error().message;
}

// With the running kernel's config, bpfvm's values are libbpf's.
TEST(LoaderKconfig, RunningKernelMatchesLibbpf) {
  LibbpfRun k = libbpf_run(prog_path("core_kconfig.bpf.o"), "", "kconfig_values");
  if (!k.why.empty()) GTEST_SKIP() << k.why;
  auto o = load_object_file(prog_path("core_kconfig.bpf.o").string());
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  auto v = run_and_read(*o, "kconfig_values", "out", 8);
  ASSERT_EQ(k.bss.size(), 8u);
  // LINUX_HAS_SYSCALL_WRAPPER is bpfvm's own (its hooks emulate the x86-64 wrappers); the kernel's
  // answer depends on its build. Everything else comes from the same kernel.
  EXPECT_EQ(v[1], 1u);
  v[1] = k.bss[1];
  EXPECT_EQ(v, k.bss);
}

// ---- globals from text --------------------------------------------------------------------------------

TEST(LoaderGlobals, SetFromTextCheckedAgainstBtf) {
  Object o = load_ok(prog_path("ld_rodata.bpf.o"));
  EXPECT_TRUE(o.set_global_text("targ_pid", "-42").ok());
  EXPECT_TRUE(o.set_global_text("min_duration", "0x10").ok());
  EXPECT_TRUE(o.set_global_text("verbose", "true").ok());
  EXPECT_TRUE(o.set_global_text("small", "255").ok());
  EXPECT_TRUE(o.set_global_text("delta", "-32768").ok());
  EXPECT_TRUE(o.set_global_text("mode", "MODE_DROP").ok());
  EXPECT_TRUE(o.set_global_text("comm", "bash").ok());
  EXPECT_EQ(*o.global_text("targ_pid"), "-42");
  EXPECT_EQ(*o.global_text("min_duration"), "16");
  EXPECT_EQ(*o.global_text("verbose"), "true");
  EXPECT_EQ(*o.global_text("mode"), "MODE_DROP");
  EXPECT_EQ(*o.global_text("comm"), "bash");
  // Bad values name the variable and say why.
  auto bad = [&](const char* n, const char* v, const char* why) {
    Status st = o.set_global_text(n, v);
    ASSERT_FALSE(st.ok()) << n << "=" << v;
    EXPECT_NE(st.error().message.find(why), std::string::npos) << st.error().message;
  };
  bad("small", "256", "does not fit");
  bad("small", "-1", "negative");
  bad("delta", "32768", "does not fit");
  bad("verbose", "maybe", "not a boolean");
  bad("mode", "MODE_NONE", "neither an enumerator");
  bad("comm", "12345678", "holds 7");
  bad("targ_pid", "12abc", "not a number");
  bad("no_such_var", "1", "no global variable 'no_such_var'");
  // Written values reach the program; .data / .bss are readable and writable before and after runs.
  auto live = instantiate(o);
  ASSERT_TRUE(live.ok());
  auto runs = live->global("runs");
  ASSERT_TRUE(runs.ok());
  uint64_t r0 = 0;
  std::memcpy(&r0, runs->data(), 8);
  EXPECT_EQ(r0, 5u);
  uint64_t hundred = 100;
  std::memcpy(runs->data(), &hundred, 8);
  auto prepared = prepare_program(*o.find_program("rodata_prog"), *live);
  ASSERT_TRUE(prepared.ok()) << prepared.error().to_string();
  std::vector<uint8_t> pkt(64, 0);
  ASSERT_TRUE(test_run(*prepared, pkt).ok());
  std::memcpy(&r0, runs->data(), 8);
  EXPECT_EQ(r0, 101u);
  uint64_t last = 0;
  std::memcpy(&last, live->global("last")->data(), 8);
  EXPECT_EQ(last, static_cast<uint64_t>(-42 + 16 + 1 + 255 - 32768 + 7 + 'b'));
}

// ---- objects that did not load before ---------------------------------------------------------------

TEST(LoaderObjects2, OneFailingProgramDoesNotFailTheObject) {
  Object o = load_ok(prog_path("ld_onebad.bpf.o"));
  ASSERT_EQ(o.programs.size(), 3u);
  const ObjectProgram* bad = o.find_program("calls_unknown");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->ok());
  EXPECT_NE(bad->error.find("not_a_helper"), std::string::npos) << bad->error;
  EXPECT_TRUE(bad->insns.empty());
  for (const char* n : {"good_first", "good_second"}) {
    const ObjectProgram* p = o.find_program(n);
    ASSERT_TRUE(p && p->ok()) << n;
    EXPECT_FALSE(p->insns.empty());
  }
  // Preparing the failed program gives its error; the others prepare.
  auto live = instantiate(o);
  ASSERT_TRUE(live.ok());
  auto pb = prepare_program(*bad, *live);
  ASSERT_FALSE(pb.ok());
  EXPECT_NE(pb.error().message.find("not_a_helper"), std::string::npos);
  EXPECT_TRUE(prepare_program(*o.find_program("good_first"), *live).ok());
}

TEST(LoaderObjects2, ElfMachineNoneAccepted) {
  std::string s = test::read_text(prog_path("ld_run.bpf.o"));
  std::vector<uint8_t> b(s.begin(), s.end());
  reinterpret_cast<Elf64_Ehdr*>(b.data())->e_machine = EM_NONE;
  auto r = load_object(b, {}, "em_none.o");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r->programs.empty());
  reinterpret_cast<Elf64_Ehdr*>(b.data())->e_machine = EM_X86_64;
  r = load_object(b, {}, "x86.o");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("ELF machine 62"), std::string::npos);
}

TEST(LoaderObjects2, Iproute2ShortElfMapsAndAssumedTypes) {
  Object o = load_ok(prog_path("ld_elfmap28.bpf.o"));
  EXPECT_TRUE(o.iproute2);
  ASSERT_EQ(o.maps.size(), 2u);
  EXPECT_EQ(o.maps[0].origin, MapOrigin::LegacyElf);
  EXPECT_EQ(o.maps[0].pinning, MapPinning::GlobalNs);
  EXPECT_EQ(o.maps[0].pinning_raw, 2u);
  EXPECT_EQ(o.maps[0].spec.numa_node, 0u);
  EXPECT_EQ(o.maps[0].elf_id, 1u);
  EXPECT_EQ(o.maps[1].pinning, MapPinning::ObjectNs);
  for (const auto& p : o.programs) {
    EXPECT_EQ(p.type_name(), "sched_cls") << p.section;
    EXPECT_TRUE(p.type_assumed) << p.section;
  }
  ASSERT_EQ(o.notes.size(), 1u);
  EXPECT_NE(o.notes[0].find("--type SECTION=TYPE"), std::string::npos) << o.notes[0];
  // --type SECTION=TYPE for one section; the explicit format option reads bpf_map_def.
  LoadOptions lo;
  lo.section_types["from-netdev"] = BPF_PROG_TYPE_XDP;
  lo.legacy_maps = LegacyMapFormat::BpfMapDef;
  Object o2 = load_ok(prog_path("ld_elfmap28.bpf.o"), lo);
  EXPECT_EQ(o2.find_program("from_netdev")->type_name(), "xdp");
  EXPECT_FALSE(o2.find_program("from_netdev")->type_assumed);
  EXPECT_EQ(o2.find_program("tail_one")->type_name(), "sched_cls");
  EXPECT_EQ(o2.maps[0].origin, MapOrigin::Legacy);
  EXPECT_EQ(o2.maps[0].spec.numa_node, 2u);
}

TEST(LoaderObjects2, BtfPinningLibbpfRefusesLoadsUnpinned) {
  Object o = load_ok(prog_path("ld_pin16.bpf.o"));
  ASSERT_EQ(o.maps.size(), 2u);
  EXPECT_EQ(o.maps[0].pinning, MapPinning::None);
  EXPECT_EQ(o.maps[0].pinning_raw, 16u);
  EXPECT_EQ(o.maps[1].pinning, MapPinning::ByName);
  ASSERT_EQ(o.warnings.size(), 1u);
  EXPECT_NE(o.warnings[0].find("odd_pin"), std::string::npos);
  EXPECT_NE(o.warnings[0].find("16"), std::string::npos);
}

TEST(LoaderObjects2, CiliumObjectsLoadWithTheirPinning) {
  fs::path s = test::shared_dir();
  if (s.empty()) GTEST_SKIP() << "../shared (or $BPFVM_SHARED) not found";
  size_t objects = 0;
  for (const auto& e : fs::directory_iterator(s / "samples" / "cilium")) {
    if (e.path().extension() != ".o") continue;
    Object o = load_ok(e.path());
    ++objects;
    EXPECT_TRUE(o.iproute2) << e.path();
    for (const auto& m : o.maps) {
      if (m.is_global_data()) continue;
      EXPECT_EQ(m.origin, MapOrigin::LegacyElf) << e.path() << " " << m.spec.name;
      EXPECT_EQ(m.spec.numa_node, 0u) << e.path() << " " << m.spec.name;
    }
    bool global = false;
    for (const auto& m : o.maps) global |= m.pinning == MapPinning::GlobalNs;
    EXPECT_TRUE(global) << e.path();
    for (const auto& p : o.programs) {
      EXPECT_TRUE(p.ok()) << e.path() << " " << p.name << ": " << p.error;
      EXPECT_EQ(p.type_name(), "sched_cls") << e.path() << " " << p.section;
      EXPECT_TRUE(p.type_assumed);
    }
  }
  EXPECT_EQ(objects, 10u);
}

// ---- attach targets ---------------------------------------------------------------------------------

TEST(LoaderAttach, EveryLibbpfSectionForm) {
  struct Case {
    const char* section;
    const char* kind;
    const char* name;
    const char* path;
    uint64_t offset;
    bool ret;
  };
  const Case cases[] = {
      {"tracepoint/syscalls/sys_enter_openat", "tracepoint", "sys_enter_openat", "", 0, false},
      {"tp/sched/sched_switch", "tracepoint", "sched_switch", "", 0, false},
      {"raw_tracepoint/sys_enter", "raw_tracepoint", "sys_enter", "", 0, false},
      {"raw_tp/sched_switch", "raw_tracepoint", "sched_switch", "", 0, false},
      {"tp_btf/sched_wakeup", "tp_btf", "sched_wakeup", "", 0, false},
      {"kprobe/do_sys_open", "kprobe", "do_sys_open", "", 0, false},
      {"kprobe/tcp_v4_connect+0x10", "kprobe", "tcp_v4_connect", "", 16, false},
      {"kretprobe/do_sys_open", "kretprobe", "do_sys_open", "", 0, true},
      {"ksyscall/openat", "ksyscall", "openat", "", 0, false},
      {"kretsyscall/openat", "kretsyscall", "openat", "", 0, true},
      {"uprobe//bin/bash:readline", "uprobe", "readline", "/bin/bash", 0, false},
      {"uretprobe/libc.so.6:malloc+8", "uretprobe", "malloc", "libc.so.6", 8, true},
      {"uprobe.s//usr/bin/x:0x1234", "uprobe", "", "/usr/bin/x", 0x1234, false},
      {"usdt//usr/lib/libc.so.6:libc:setjmp", "usdt", "setjmp", "/usr/lib/libc.so.6", 0, false},
      {"fentry/tcp_sendmsg", "fentry", "tcp_sendmsg", "", 0, false},
      {"fexit/tcp_sendmsg", "fexit", "tcp_sendmsg", "", 0, true},
      {"lsm/file_open", "lsm", "file_open", "", 0, false},
      {"lsm.s/bprm_committed_creds", "lsm", "bprm_committed_creds", "", 0, false},
      {"iter/task", "iter", "task", "", 0, false},
      {"xdp", "xdp", "", "", 0, false},
      {"tc", "tc", "", "", 0, false},
      {"socket1", "socket", "", "", 0, false},
  };
  for (const Case& c : cases) {
    AttachTarget a = parse_attach_target(c.section);
    EXPECT_EQ(a.kind, c.kind) << c.section;
    EXPECT_EQ(a.name, c.name) << c.section;
    EXPECT_EQ(a.path, c.path) << c.section;
    EXPECT_EQ(a.offset, c.offset) << c.section;
    EXPECT_EQ(a.retprobe, c.ret) << c.section;
  }
  EXPECT_EQ(parse_attach_target("tracepoint/syscalls/sys_enter_openat").category, "syscalls");
  EXPECT_EQ(parse_attach_target("usdt//usr/lib/libc.so.6:libc:setjmp").provider, "libc");
  EXPECT_TRUE(parse_attach_target("lsm.s/bprm_committed_creds").sleepable);
  EXPECT_TRUE(parse_attach_target("kprobe.multi/tcp_*").multi);
  EXPECT_EQ(parse_attach_target("from-netdev").kind, "");
  // The object model carries it.
  Object o = load_ok(prog_path("ld_multi.bpf.o"));
  const ObjectProgram* tp = o.find_program("tp_prog");
  ASSERT_TRUE(tp);
  EXPECT_EQ(tp->attach.kind, "tracepoint");
  EXPECT_EQ(tp->attach.category, "syscalls");
  EXPECT_EQ(tp->attach.name, "sys_enter_openat");
}
