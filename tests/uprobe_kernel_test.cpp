// Function hooks running BPF programs, compared with the kernel: the same object's uprobe and
// uretprobe programs attached to the same function, by libbpf (bpf_program__attach_uprobe_opts) and
// by bpfvm's in-process hooks; counts, argument sums and return-value sums must match (and match
// what the workload computes). The kernel side is skipped with a message where it cannot attach.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "hooks/uprobe/patch.hpp"
#include "uprobe_targets.hpp"

namespace {

using namespace bpfvm;

const std::string kObject = std::string(BPFVM_PROGS_DIR) + "/uprobe_sum.bpf.o";
constexpr int kThreads = 2;
constexpr uint64_t kCalls = 2000;

// What the programs must count: kThreads threads, each calling ut_frame(i, i + 7) (returns the product).
std::array<uint64_t, 4> workload() {
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([] {
      uint64_t (*volatile f)(uint64_t, uint64_t) = ut_frame;
      for (uint64_t i = 0; i < kCalls; ++i)
        if (f(i, i + 7) != i * (i + 7)) ADD_FAILURE() << "ut_frame's result changed";
    });
  for (auto& t : ts) t.join();
  std::array<uint64_t, 4> e{};
  for (uint64_t i = 0; i < kCalls; ++i) {
    e[0] += kThreads;
    e[1] += kThreads * (i * 3 + i + 7);
    e[2] += kThreads;
    e[3] += kThreads * (i * (i + 7));
  }
  return e;
}

void run_prog(void* c, uprobe::PtRegs* regs) {
  RunArgs a;
  a.r1 = reinterpret_cast<uint64_t>(regs);
  (void)static_cast<const Executable*>(c)->run(a);
}

std::array<uint64_t, 4> bpfvm_run(bool breakpoint) {
  std::array<uint64_t, 4> out{};
  auto obj = load_object_file(kObject);
  EXPECT_TRUE(obj.ok()) << (obj.ok() ? "" : obj.error().to_string());
  if (!obj) return out;
  auto live = instantiate(*obj);
  EXPECT_TRUE(live.ok());
  if (!live) return out;
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  po.engine = EngineChoice::Jit;
  auto entry = prepare_program(*obj->find_program("sum_entry"), *live, nullptr, po);
  auto ret = prepare_program(*obj->find_program("sum_return"), *live, nullptr, po);
  EXPECT_TRUE(entry.ok() && ret.ok()) << (entry.ok() ? "" : entry.error().to_string())
                                      << (ret.ok() ? "" : ret.error().to_string());
  if (!entry || !ret) return out;
  uprobe::AttachOptions o;
  o.func_size = ut_size(reinterpret_cast<const void*>(&ut_frame), ut_frame_end);
  o.force_breakpoint = breakpoint;
  const uintptr_t addr = ut_addr(reinterpret_cast<const void*>(&ut_frame));
  auto he = uprobe::attach(addr, uprobe::HookKind::Entry, run_prog, entry->exe.get(), o);
  auto hr = uprobe::attach(addr, uprobe::HookKind::Return, run_prog, ret->exe.get(), o);
  EXPECT_TRUE(he.ok() && hr.ok());
  if (!he || !hr) return out;
  workload();
  EXPECT_TRUE(uprobe::detach(*he).ok());
  EXPECT_TRUE(uprobe::detach(*hr).ok());
  for (uint32_t k = 0; k < 4; ++k)
    if (auto* v = static_cast<const uint64_t*>(live->maps[0]->lookup(&k))) out[k] = *v;
  return out;
}

// The kernel's counts, or nullopt (with the reason) where it cannot attach uprobes.
std::optional<std::array<uint64_t, 4>> kernel_run(std::string* why) {
  libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
  bpf_object* obj = bpf_object__open_file(kObject.c_str(), nullptr);
  if (!obj || bpf_object__load(obj) != 0) {
    if (obj) bpf_object__close(obj);
    *why = "the kernel does not load the programs (needs root / CAP_BPF)";
    return std::nullopt;
  }
  char self[PATH_MAX] = {};
  if (!realpath("/proc/self/exe", self)) {
    bpf_object__close(obj);
    *why = "no /proc/self/exe";
    return std::nullopt;
  }
  std::vector<bpf_link*> links;
  for (auto [name, retprobe] : {std::pair{"sum_entry", false}, std::pair{"sum_return", true}}) {
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = retprobe, .func_name = "ut_frame");
    bpf_link* l = bpf_program__attach_uprobe_opts(bpf_object__find_program_by_name(obj, name), 0, self, 0, &uo);
    if (!l) {
      *why = std::string("the kernel cannot attach a uprobe here: ") + std::strerror(errno);
      for (auto* x : links) bpf_link__destroy(x);
      bpf_object__close(obj);
      return std::nullopt;
    }
    links.push_back(l);
  }
  workload();
  for (auto* x : links) bpf_link__destroy(x);
  std::array<uint64_t, 4> out{};
  const int fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "sums"));
  for (uint32_t k = 0; k < 4; ++k) bpf_map_lookup_elem(fd, &k, &out[k]);
  bpf_object__close(obj);
  return out;
}

TEST(UprobeKernel, SameCountsArgumentsAndReturnValuesAsTheKernel) {
  const std::array<uint64_t, 4> expect = workload();
  for (bool bp : {false, true}) {
    SCOPED_TRACE(bp ? "breakpoint" : "jump");
    EXPECT_EQ(bpfvm_run(bp), expect);
  }
  std::string why;
  auto k = kernel_run(&why);
  if (!k) GTEST_SKIP() << "bpfvm checked against the workload only: " << why;
  EXPECT_EQ(*k, expect) << "the kernel's counts";
  EXPECT_EQ(bpfvm_run(false), *k);
}

}  // namespace
