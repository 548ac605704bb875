// Probes in user code and the in-process agent: the spec syntax (uprobe, uretprobe, usdt), where
// probes go (library search, symbols with their sizes, stapsdt notes, USDT argument specs), the agent
// library's exports, `bpfvm trace --mode agent` on the test target (tests/agent_target.c), and the
// kernel as the oracle: the same objects attached with libbpf's uprobes and USDT to the same binaries.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <csignal>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "agent/usdt.hpp"
#include "bpfvm/agent.hpp"
#include "bpfvm/probe_target.hpp"
#include "bpfvm/trace.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

std::string progs(const char* name) { return std::string(BPFVM_PROGS_DIR) + "/" + name; }

// ---- the spec syntax -----------------------------------------------------------------------------

TEST(ProbeSpec, UprobeForms) {
  auto p = parse_attach_spec("uprobe//usr/lib/x86_64-linux-gnu/libc.so.6:malloc");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->event, TraceEvent::FunctionEntry);
  EXPECT_EQ(p->prog_type, kProgKprobe);
  EXPECT_EQ(p->layout, TraceLayout::PtRegs);
  EXPECT_EQ(p->ctx_size, sizeof(PtRegsNative));
  EXPECT_EQ(p->binary, "/usr/lib/x86_64-linux-gnu/libc.so.6");
  EXPECT_EQ(p->function, "malloc");
  EXPECT_EQ(p->offset, 0u);
  EXPECT_TRUE(p->in_user_code());
  EXPECT_FALSE(p->sleepable);

  p = parse_attach_spec("uprobe/libc.so.6:malloc+0x10");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->binary, "libc.so.6");
  EXPECT_EQ(p->offset, 16u);
  EXPECT_EQ(p->canonical, "uprobe/libc.so.6:malloc+0x10");

  p = parse_attach_spec("uretprobe.s/./prog:main");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->event, TraceEvent::FunctionReturn);
  EXPECT_TRUE(p->sleepable);
  EXPECT_EQ(p->binary, "./prog");

  p = parse_attach_spec("usdt/libc.so.6:libc:setjmp");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->event, TraceEvent::UsdtProbe);
  EXPECT_EQ(p->provider, "libc");
  EXPECT_EQ(p->function, "setjmp");

  p = parse_attach_spec("uprobe//usr/bin/x:0x1234");  // a file offset (libbpf's PATH:OFFSET)
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->function, "");
  EXPECT_EQ(p->offset, 0x1234u);
  EXPECT_EQ(p->canonical, "uprobe//usr/bin/x:0x1234");
}

TEST(ProbeSpec, Refusals) {
  auto why = [](const char* spec) {
    auto p = parse_attach_spec(spec);
    return p.ok() ? std::string("accepted") : p.error().message;
  };
  EXPECT_NE(why("uretprobe/libc.so.6:malloc+4").find("uretprobes do not support offset"), std::string::npos);
  EXPECT_NE(why("uprobe/libc.so.6").find("missing ':FUNC'"), std::string::npos);
  EXPECT_NE(why("uprobe").find("names no target"), std::string::npos);
  EXPECT_NE(why("uprobe/libc.so.6:malloc+x1").find("not a symbol name"), std::string::npos);
  EXPECT_NE(why("uprobe/libc.so.6:mal loc").find("not a symbol name"), std::string::npos);
  EXPECT_NE(why("usdt/libc.so.6:setjmp").find("usdt/PATH:PROVIDER:NAME"), std::string::npos);
  EXPECT_NE(why("uprobe.multi/libc.so.6:m*").find("multi-uprobes"), std::string::npos);
}

// ---- where probes go -------------------------------------------------------------------------------

TEST(ProbeTarget, LibrariesAreFoundAsTheLoaderFindsThem) {
  auto libc = resolve_probe_binary("libc.so.6");
  ASSERT_TRUE(libc.ok()) << libc.error().message;
  EXPECT_EQ(fs::path(*libc).filename(), "libc.so.6");
  if (fs::exists("/etc/ld.so.cache")) EXPECT_FALSE(ld_so_cache_lookup("libc.so.6").empty());
  // The target's loaded libraries come first.
  auto own = resolve_probe_binary("libagent_lib.so", {BPFVM_AGENT_LIB});
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(*own, BPFVM_AGENT_LIB);
  auto missing = resolve_probe_binary("libno_such_lib.so.9");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("no such library"), std::string::npos);
  EXPECT_FALSE(resolve_probe_binary("/no/such/file").ok());
  auto sh = resolve_probe_binary("sh");
  ASSERT_TRUE(sh.ok()) << sh.error().message;
}

TEST(ProbeTarget, FunctionsWithTheirSizes) {
  auto f = find_elf_function(BPFVM_AGENT_TARGET, "local_mul");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->relocatable) << "the target is a PIE";
  EXPECT_GT(f->size, 0u);
  EXPECT_EQ(f->file_offset, f->vaddr) << "text of a PIE: offsets equal addresses in the first segment";
  // FUNC+OFFSET: the second instruction of lib_add (offsets inside the first are refused).
  auto g0 = find_elf_function(BPFVM_AGENT_LIB, "lib_add");
  ASSERT_TRUE(g0.ok()) << g0.error().message;
  ASSERT_GT(g0->size, 1u);
  uint64_t second = 0;
  for (uint64_t k = 1; k < g0->size && !second; ++k)
    if (find_elf_function(BPFVM_AGENT_LIB, "lib_add", k).ok()) second = k;
  ASSERT_NE(second, 0u);
  EXPECT_EQ(find_elf_function(BPFVM_AGENT_LIB, "lib_add", second)->vaddr, g0->vaddr + second);
  // Dynamic symbols of a stripped library, versioned (malloc has one default version).
  auto libc = resolve_probe_binary("libc.so.6");
  ASSERT_TRUE(libc.ok());
  auto m = find_elf_function(*libc, "malloc");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_GT(m->size, 0u);

  auto at = find_elf_function(BPFVM_AGENT_TARGET, "", f->file_offset);
  ASSERT_TRUE(at.ok()) << at.error().message;
  EXPECT_EQ(at->vaddr, f->vaddr);
  EXPECT_FALSE(find_elf_function(BPFVM_AGENT_TARGET, "", 1u << 30).ok());

  auto why = [](const std::string& path, const char* fn, uint64_t off = 0) {
    auto r = find_elf_function(path, fn, off);
    return r.ok() ? std::string("found") : r.error().message;
  };
  EXPECT_NE(why(BPFVM_AGENT_TARGET, "no_such_function").find("no function 'no_such_function'"), std::string::npos);
  EXPECT_NE(why(BPFVM_AGENT_TARGET, "lib_add").find("not defined there"), std::string::npos);
  EXPECT_NE(why(BPFVM_AGENT_TARGET, "agt_tick_semaphore").find("not a function"), std::string::npos);
  EXPECT_NE(why(BPFVM_AGENT_TARGET, "local_mul", 100000).find("beyond the end"), std::string::npos);
  // An offset inside an instruction is refused (the target's local_mul starts with a 3-byte
  // mov or longer: +1 is inside it).
  EXPECT_NE(why(BPFVM_AGENT_TARGET, "local_mul", 1).find("inside an instruction"), std::string::npos);
  EXPECT_NE(why(progs("ag_probes.bpf.o"), "on_lib_add").find("not an x86-64"), std::string::npos);
}

TEST(ProbeTarget, UsdtNotesAndArgumentSpecs) {
  auto notes = find_usdt_notes(BPFVM_AGENT_TARGET, "agt", "tick");
  ASSERT_TRUE(notes.ok()) << notes.error().message;
  ASSERT_GE(notes->size(), 1u);
  const UsdtNote& n = notes->front();
  EXPECT_NE(n.semaphore, 0u);
  EXPECT_TRUE(n.relocatable);
  auto spec = usdt::parse_args(n.args);
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  EXPECT_EQ(spec->arg_cnt, 3);
  EXPECT_TRUE(spec->args[0].arg_signed);
  EXPECT_EQ(spec->args[0].arg_bitshift, 32);  // -4@...
  auto lib = find_usdt_notes(BPFVM_AGENT_LIB, "agt_lib", "mark");
  ASSERT_TRUE(lib.ok()) << lib.error().message;
  EXPECT_EQ(lib->front().semaphore, 0u);
  EXPECT_FALSE(find_usdt_notes(BPFVM_AGENT_TARGET, "agt", "nope").ok());

  auto s = usdt::parse_args("-4@%edi 8@-8(%rbp) 4@$5 1@(%rax) 2@%r10w");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->arg_cnt, 5);
  EXPECT_EQ(s->args[0].arg_type, usdt::kArgReg);
  EXPECT_EQ(s->args[0].reg_off, static_cast<int16_t>(offsetof(PtRegsNative, di)));
  EXPECT_EQ(s->args[1].arg_type, usdt::kArgRegDeref);
  EXPECT_EQ(static_cast<int64_t>(s->args[1].val_off), -8);
  EXPECT_EQ(s->args[1].reg_off, static_cast<int16_t>(offsetof(PtRegsNative, bp)));
  EXPECT_FALSE(s->args[1].arg_signed);
  EXPECT_EQ(s->args[1].arg_bitshift, 0);
  EXPECT_EQ(s->args[2].arg_type, usdt::kArgConst);
  EXPECT_EQ(s->args[2].val_off, 5u);
  EXPECT_EQ(s->args[3].arg_bitshift, 56);
  EXPECT_EQ(s->args[4].reg_off, static_cast<int16_t>(offsetof(PtRegsNative, r10)));
  EXPECT_FALSE(usdt::parse_args("4@%xmm0").ok());
  EXPECT_FALSE(usdt::parse_args("3@%eax").ok());
  EXPECT_FALSE(usdt::parse_args("8@-8(%rbp,%rax,8)").ok());
}

// ---- the agent library ---------------------------------------------------------------------------

std::string run_capture(const std::string& cmd, int* code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (code) *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

TEST(AgentLibrary, ExportsOnlyItsEntryPoints) {
  int code = 0;
  std::string out = run_capture(std::string("nm -D --defined-only ") + BPFVM_AGENT_SO + " 2>&1", &code);
  if (code != 0) GTEST_SKIP() << "nm is not available: " << out;
  std::istringstream in(out);
  std::string line;
  std::vector<std::string> names;
  while (std::getline(in, line)) {
    auto sp = line.rfind(' ');
    names.push_back(line.substr(sp + 1));
  }
  ASSERT_FALSE(names.empty());
  for (const auto& n : names)
    EXPECT_TRUE(n.starts_with("bpfvm_agent_") || n == "dlopen") << "exported: " << n;
}

// ---- bpfvm trace --mode agent --------------------------------------------------------------------

std::string bpfvm_bin() {
  const char* b = std::getenv("BPFVM_BIN");
  return b ? b : std::string(BPFVM_BINARY_DIR) + "/bpfvm";
}

struct CliRun {
  int code = -1;
  std::string out, err;
  std::map<std::string, std::map<uint64_t, uint64_t>> maps;  // array maps of u32 -> u64
  std::vector<Bytes> records;
  std::vector<std::string> printk;
};

CliRun run_trace(const std::string& args) {
  CliRun r;
  char errf[] = "/tmp/bpfvm-agent-test-XXXXXX";
  int fd = mkstemp(errf);
  close(fd);
  r.out = run_capture(bpfvm_bin() + " trace -j " + args + " 2>" + errf, &r.code);
  std::ifstream e(errf);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  unlink(errf);
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("printk")) {
      r.printk.push_back(j["printk"].get<std::string>());
    } else if (j.contains("data")) {
      r.records.push_back(j["data"].get<Bytes>());
    } else if (j.contains("entries")) {
      auto& m = r.maps[j["map"].get<std::string>()];
      for (const auto& en : j["entries"]) {
        Bytes k = en["key"].get<Bytes>(), v = en["value"].get<Bytes>();
        uint32_t key = 0;
        uint64_t val = 0;
        std::memcpy(&key, k.data(), std::min<size_t>(4, k.size()));
        std::memcpy(&val, v.data(), std::min<size_t>(8, v.size()));
        m[key] = val;
      }
    }
  }
  return r;
}

// What the target computes for N iterations, from its source.
struct Expected {
  uint64_t add_count, add_sum, mul_count, mul_sum;
};
Expected expected(int n) {
  Expected e{};
  for (int i = 0; i < n; ++i) {
    e.add_count++;
    e.add_sum += static_cast<uint64_t>(3 * i);
    e.mul_count++;
    e.mul_sum += static_cast<uint64_t>(3 * i);
  }
  return e;
}

std::string uprobe_attach() {
  return std::string(" --attach on_lib_add=uprobe/") + BPFVM_AGENT_LIB + ":lib_add" +
         " --attach on_lib_add_ret=uretprobe/libagent_lib.so:lib_add" + " --attach on_local_mul=uprobe/" +
         BPFVM_AGENT_TARGET + ":local_mul" + " --attach on_local_mul_ret=uretprobe/" + BPFVM_AGENT_TARGET +
         ":local_mul";
}

TEST(AgentTrace, UprobesCountArgumentsAndReturnValues) {
  const int n = 500;
  CliRun r = run_trace("--mode agent " + progs("ag_probes.bpf.o") + uprobe_attach() + " -- " + BPFVM_AGENT_TARGET +
                       " " + std::to_string(n));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto& c = r.maps["counts"];
  Expected e = expected(n);
  EXPECT_EQ(c[0], e.add_count) << r.err;
  EXPECT_EQ(c[1], e.add_sum);
  EXPECT_EQ(c[2], e.add_count) << "uretprobe on lib_add";
  EXPECT_EQ(c[3], e.add_sum);
  EXPECT_EQ(c[4], e.mul_count);
  EXPECT_EQ(c[5], e.mul_sum);
  EXPECT_EQ(c[6], e.mul_count);
  EXPECT_EQ(c[7], e.mul_sum);
  auto f = find_elf_function(BPFVM_AGENT_TARGET, "local_mul");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(c[8], f->vaddr & 0xfff) << "bpf_get_func_ip is the probed address";
  EXPECT_EQ(r.records.size(), 2u * n);
  EXPECT_NE(r.out.find("sum "), std::string::npos) << "the command's own output";
}

// The agent's own work in the process (reports, attaching) calls getpid as well; only the
// command's calls reach the program. Records go through a pinned perf event array.
TEST(AgentTrace, TheAgentsOwnCallsHitNoProbe) {
  CliRun none = run_trace("--mode agent " + progs("ag_getpid.bpf.o") + " -- /bin/true");
  ASSERT_EQ(none.code, 0) << none.err << none.out;
  EXPECT_EQ(none.records.size(), 0u) << "true itself never calls getpid\n" << none.out;
}

TEST(AgentTrace, ProbeReadUserAndPrintk) {
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_bad_read=uprobe/" + BPFVM_AGENT_TARGET +
                       ":local_mul -- " + BPFVM_AGENT_TARGET + " 7");
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.err.find("mode: agent"), std::string::npos) << "auto mode says which: " << r.err;
  auto& c = r.maps["counts"];
  EXPECT_EQ(c[9], 7u) << "bpf_probe_read_user of address 16 gives -EFAULT";
  EXPECT_EQ(c[10], 7u) << "and of the stack the bytes";
  ASSERT_EQ(r.printk.size(), 7u) << r.out;
  EXPECT_EQ(r.printk[3], "local_mul 3");
}

TEST(AgentTrace, LibrariesLoadedLater) {
  // libagent_dl.so is a copy of the library, loaded by dlopen after the loop: its lib_add runs n
  // times, each add(i, 1).
  const int n = 50;
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/libagent_dl.so:lib_add -- " +
                       BPFVM_AGENT_TARGET + " " + std::to_string(n) + " " + BPFVM_AGENT_DL);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto& c = r.maps["counts"];
  uint64_t sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<uint64_t>(i + 1);
  EXPECT_EQ(c[0], static_cast<uint64_t>(n)) << r.err;
  EXPECT_EQ(c[1], sum);
}

TEST(AgentTrace, ThreadsRunTheProgramsAtOnce) {
  // 8 threads call local_mul 500 times each after the main loop: every hit counted, sums exact (the
  // records fit in the ring buffer without being consumed).
  const int n = 500, threads = 8;
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + BPFVM_AGENT_TARGET +
                       ":local_mul --attach on_local_mul_ret=uretprobe/" + BPFVM_AGENT_TARGET + ":local_mul -- " +
                       BPFVM_AGENT_TARGET + " " + std::to_string(n) + " - " + std::to_string(threads));
  ASSERT_EQ(r.code, 0) << r.err;
  uint64_t calls = static_cast<uint64_t>(n) * (threads + 1), sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<uint64_t>(3 * i) + static_cast<uint64_t>(threads) * i;
  EXPECT_EQ(r.maps["counts"][4], calls) << r.err;
  EXPECT_EQ(r.maps["counts"][5], sum);
  EXPECT_EQ(r.maps["counts"][6], calls);
  EXPECT_EQ(r.maps["counts"][7], sum);
  EXPECT_EQ(r.records.size(), calls);
}

TEST(AgentTrace, ProgramsTheCommandExecutesAreProbedToo) {
  // The agent is inherited through LD_PRELOAD: each process of the command that runs the probed
  // file attaches its probes (the shell itself has none to attach).
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + BPFVM_AGENT_TARGET +
                       ":local_mul -- sh -c '" + BPFVM_AGENT_TARGET + " 5; " + BPFVM_AGENT_TARGET + " 7; exit 3'");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.maps["counts"][4], 12u) << r.err;
  EXPECT_EQ(r.records.size(), 12u);
}

TEST(AgentTrace, HooksThatCannotAttachLeaveTheProcessUntouched) {
  // libagent_lib.so is found by the target's rpath, not in the library path: bpfvm trace cannot
  // check it before the start; the agent finds no such function there, reports it and attaches
  // nothing (the valid probe on local_mul neither): the command runs as without bpfvm.
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + BPFVM_AGENT_TARGET +
                       ":local_mul --attach on_lib_add=uprobe/libagent_lib.so:no_such_fn -- " + BPFVM_AGENT_TARGET +
                       " 10");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("no function 'no_such_fn'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("runs without these probes"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("sum 270 enabled 0"), std::string::npos) << r.out;
  EXPECT_EQ(r.maps["counts"][4], 0u);
  // A library loaded later that lacks the function: reported when it is loaded, the rest stays.
  r = run_trace(progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + BPFVM_AGENT_TARGET +
                ":local_mul --attach on_lib_add=uprobe/libagent_dl.so:no_such_fn -- " + BPFVM_AGENT_TARGET + " 10 " +
                BPFVM_AGENT_DL);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("no function 'no_such_fn'"), std::string::npos) << r.err;
  EXPECT_EQ(r.maps["counts"][4], 10u) << r.err;
}

TEST(AgentTrace, ForkedChildrenKeepTheProbes) {
  // The target forks before its loop: the child has the patched code and writes the same maps.
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" + BPFVM_AGENT_TARGET +
                       ":local_mul -- " + BPFVM_AGENT_TARGET + " 5 fork");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.maps["counts"][4], 10u) << r.err;
  EXPECT_EQ(r.records.size(), 10u);
  EXPECT_NE(r.out.find("sum 60 enabled 0 (child)"), std::string::npos) << r.out;
}

TEST(AgentTrace, DurationDetachesAndTheCommandGoesOn) {
  // The first run of the target is traced; bpfvm detaches after a second and exits 0 with the maps;
  // the command goes on (its second run, after bpfvm is gone, is untouched).
  CliRun r = run_trace("--duration 1 " + progs("ag_probes.bpf.o") + " --attach on_local_mul=uprobe/" +
                       BPFVM_AGENT_TARGET + ":local_mul -- sh -c '" + BPFVM_AGENT_TARGET + " 5; sleep 2; " +
                       BPFVM_AGENT_TARGET + " 5'");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.maps["counts"][4], 5u) << r.err;
  size_t first = r.out.find("sum 60 enabled 0");
  ASSERT_NE(first, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sum 60 enabled 0", first + 1), std::string::npos) << "the command went on: " << r.out;
}

TEST(AgentTrace, RefusalsBeforeTheCommandStarts) {
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/" + BPFVM_AGENT_TARGET +
                       ":no_such_fn -- " + BPFVM_AGENT_TARGET + " 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no function 'no_such_fn'"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("sum "), std::string::npos) << "the command did not run";
  r = run_trace("--mode ptrace " + progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/" + BPFVM_AGENT_TARGET +
                ":local_mul -- true");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not in ptrace mode"), std::string::npos) << r.err;
  // System-call programs run in the agent as well (--mode agent; auto keeps ptrace mode for them):
  // not in a sanitizer build, whose runtime's own syscalls the hooks would trap (trace_ptrace_test.cpp).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  r = run_trace("--mode agent " + progs("tr_count.bpf.o") + " -- true");
  EXPECT_EQ(r.code, 0) << r.err;
#endif
}

TEST(AgentTrace, StaticProgramsCannotHostTheAgent) {
  // A statically linked program: find one, or build one when a static libc is installed.
  std::string stat_bin;
  for (const char* c : {"/usr/bin/busybox", "/bin/busybox", "/usr/lib/klibc/bin/sh"})
    if (fs::exists(c) && run_capture(std::string("file -L ") + c + " 2>&1", nullptr).find("statically") != std::string::npos)
      stat_bin = c;
  if (stat_bin.empty()) {
    std::string src = "/tmp/bpfvm-agent-static.c", bin = "/tmp/bpfvm-agent-static";
    FILE* f = fopen(src.c_str(), "w");
    fputs("int main(void){return 0;}\n", f);
    fclose(f);
    int code = 0;
    run_capture("cc -static -o " + bin + " " + src + " 2>&1", &code);
    if (code == 0) stat_bin = bin;
  }
  if (stat_bin.empty()) GTEST_SKIP() << "no statically linked program and no static libc to build one";
  CliRun r = run_trace(progs("ag_probes.bpf.o") + " --attach on_lib_add=uprobe/" + stat_bin + ":main -- " + stat_bin);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("statically linked"), std::string::npos) << r.err;
}

// ---- the kernel as the oracle ---------------------------------------------------------------------

int on_ringbuf(void* ctx, void* data, size_t size) {
  auto* recs = static_cast<std::vector<Bytes>*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  recs->emplace_back(p, p + size);
  return 0;
}

struct KernelRun {
  std::map<uint64_t, uint64_t> counts;
  std::vector<Bytes> records;
  std::string output;  // the target's stdout
};

struct KernelAttach {
  const char* prog;
  enum { Uprobe, Uretprobe, Usdt } kind;
  std::string binary, func, provider;
};

// Starts the target stopped before exec, attaches the object's programs to it in the kernel (libbpf),
// lets it run and collects the counts map and the ring buffer. nullopt (and why) where the kernel
// cannot: no uprobe PMU, no BPF, an attach it refuses.
std::optional<KernelRun> kernel_run(const std::string& object, const std::vector<KernelAttach>& attach,
                                    const std::vector<std::string>& argv, std::string* why) {
  if (!fs::exists("/sys/bus/event_source/devices/uprobe")) {
    *why = "the kernel has no uprobe PMU";
    return std::nullopt;
  }
  libbpf_set_print(nullptr);
  bpf_object* o = bpf_object__open_file(object.c_str(), nullptr);
  if (!o || libbpf_get_error(o)) {
    *why = "libbpf cannot open " + object;
    return std::nullopt;
  }
  std::vector<bpf_link*> links;
  ring_buffer* rb = nullptr;
  int gate[2] = {-1, -1}, outp[2] = {-1, -1};
  pid_t pid = -1;
  auto cleanup = [&] {
    if (rb) ring_buffer__free(rb);
    for (auto* l : links) bpf_link__destroy(l);
    bpf_object__close(o);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  if (int err = bpf_object__load(o); err) {
    *why = "the kernel does not load " + object + ": " + std::strerror(-err);
    cleanup();
    return std::nullopt;
  }
  KernelRun kr;
  if (pipe(gate) != 0 || pipe(outp) != 0) {
    *why = "pipe";
    cleanup();
    return std::nullopt;
  }
  pid = fork();
  if (pid == 0) {
    close(gate[1]);
    close(outp[0]);
    char c;
    if (read(gate[0], &c, 1) != 1) _exit(126);
    dup2(outp[1], 1);
    std::vector<char*> av;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    execv(av[0], av.data());
    _exit(127);
  }
  close(gate[0]);
  close(outp[1]);
  for (const KernelAttach& a : attach) {
    bpf_program* prog = bpf_object__find_program_by_name(o, a.prog);
    if (!prog) {
      *why = std::string("no program ") + a.prog;
      close(gate[1]);
      close(outp[0]);
      cleanup();
      return std::nullopt;
    }
    bpf_link* l = nullptr;
    if (a.kind == KernelAttach::Usdt) {
      l = bpf_program__attach_usdt(prog, pid, a.binary.c_str(), a.provider.c_str(), a.func.c_str(), nullptr);
    } else {
      LIBBPF_OPTS(bpf_uprobe_opts, uo);
      uo.func_name = a.func.c_str();
      uo.retprobe = a.kind == KernelAttach::Uretprobe;
      l = bpf_program__attach_uprobe_opts(prog, pid, a.binary.c_str(), 0, &uo);
    }
    if (!l || libbpf_get_error(l)) {
      *why = std::string("the kernel cannot attach ") + a.prog + " to " + a.binary + ":" + a.func;
      close(gate[1]);
      close(outp[0]);
      cleanup();
      return std::nullopt;
    }
    links.push_back(l);
  }
  bpf_map* map;
  bpf_object__for_each_map(map, o) {
    if (bpf_map__type(map) == BPF_MAP_TYPE_RINGBUF) rb = ring_buffer__new(bpf_map__fd(map), on_ringbuf, &kr.records, nullptr);
  }
  (void)!write(gate[1], "x", 1);
  close(gate[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(outp[0], buf, sizeof buf)) > 0) kr.output.append(buf, static_cast<size_t>(n));
  close(outp[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  pid = -1;
  if (rb) ring_buffer__consume(rb);
  bpf_map* counts = bpf_object__find_map_by_name(o, "counts");
  if (counts) {
    int fd = bpf_map__fd(counts);
    for (uint32_t k = 0; k < bpf_map__max_entries(counts); ++k) {
      uint64_t v = 0;
      if (bpf_map_lookup_elem(fd, &k, &v) == 0 && v) kr.counts[k] = v;
    }
  }
  cleanup();
  return kr;
}

std::multiset<Bytes> as_set(const std::vector<Bytes>& v) { return {v.begin(), v.end()}; }

std::map<uint64_t, uint64_t> nonzero(const std::map<uint64_t, uint64_t>& m) {
  std::map<uint64_t, uint64_t> out;
  for (auto [k, v] : m)
    if (v) out[k] = v;
  return out;
}

TEST(AgentVsKernel, UprobesAndUretprobesMatch) {
  const std::string n = "300";
  std::string why;
  auto k = kernel_run(progs("ag_probes.bpf.o"),
                      {{"on_lib_add", KernelAttach::Uprobe, BPFVM_AGENT_LIB, "lib_add", ""},
                       {"on_lib_add_ret", KernelAttach::Uretprobe, BPFVM_AGENT_LIB, "lib_add", ""},
                       {"on_local_mul", KernelAttach::Uprobe, BPFVM_AGENT_TARGET, "local_mul", ""},
                       {"on_local_mul_ret", KernelAttach::Uretprobe, BPFVM_AGENT_TARGET, "local_mul", ""}},
                      {BPFVM_AGENT_TARGET, n}, &why);
  if (!k) GTEST_SKIP() << why;
  CliRun r = run_trace("--mode agent " + progs("ag_probes.bpf.o") + uprobe_attach() + " -- " + BPFVM_AGENT_TARGET +
                       " " + n);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nonzero(r.maps["counts"]), k->counts);
  EXPECT_EQ(as_set(r.records), as_set(k->records));
  EXPECT_NE(r.out.find(k->output), std::string::npos) << "the target computed the same: " << k->output;
}

std::string usdt_attach() {
  return std::string(" --attach on_tick=usdt/") + BPFVM_AGENT_TARGET + ":agt:tick --attach on_pair=usdt/" +
         BPFVM_AGENT_TARGET + ":agt:pair --attach on_mark=usdt/" + BPFVM_AGENT_LIB + ":agt_lib:mark";
}

TEST(AgentVsKernel, UsdtArgumentsAndSemaphoresMatch) {
  const std::string n = "200";
  std::string why;
  auto k = kernel_run(progs("ag_usdt.bpf.o"),
                      {{"on_tick", KernelAttach::Usdt, BPFVM_AGENT_TARGET, "tick", "agt"},
                       {"on_pair", KernelAttach::Usdt, BPFVM_AGENT_TARGET, "pair", "agt"},
                       {"on_mark", KernelAttach::Usdt, BPFVM_AGENT_LIB, "mark", "agt_lib"}},
                      {BPFVM_AGENT_TARGET, n}, &why);
  CliRun r = run_trace(progs("ag_usdt.bpf.o") + usdt_attach() + " -- " + BPFVM_AGENT_TARGET + " " + n);
  ASSERT_EQ(r.code, 0) << r.err;
  auto& c = r.maps["counts"];
  EXPECT_EQ(c[0], 200u) << r.err;
  EXPECT_NE(r.out.find("enabled 200"), std::string::npos) << "the semaphore is set while attached: " << r.out;
  if (!k) GTEST_SKIP() << why;
  EXPECT_EQ(nonzero(c), k->counts);
  EXPECT_EQ(as_set(r.records), as_set(k->records));
  EXPECT_NE(r.out.find(k->output), std::string::npos) << k->output;
}

}  // namespace
}  // namespace bpfvm
