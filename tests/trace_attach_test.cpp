// The attach layer: the x86-64 syscall table (checked against the system's <asm/unistd_64.h> and,
// where tracefs is mounted, the running kernel's syscall events), the target-spec parser, the
// context layouts and their builders, and SyscallHooks' refusals.
#include <asm/unistd_64.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "bpfvm/object.hpp"
#include "bpfvm/trace.hpp"
#include "hooks/syscall/contexts.hpp"
#include "hooks/syscall/task_struct.hpp"
#include "loader/core.hpp"

#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

TEST(TraceTable, NumbersAgreeWithTheSystemHeader) {
  // Every syscall the installed uapi header (Linux 6.1) knows has that number in the table.
  struct Known {
    const char* name;
    int nr;
  };
  const Known known[] = {
#define K(n) {#n, __NR_##n}
      K(read), K(write), K(open), K(close), K(stat), K(fstat), K(lstat), K(mmap), K(getppid), K(openat),
      K(unlinkat), K(execve), K(clone), K(clone3), K(uname), K(sendfile), K(umount2), K(newfstatat),
      K(exit_group), K(futex_waitv), K(set_mempolicy_home_node), K(pidfd_open), K(io_uring_setup),
      K(rt_sigreturn), K(prlimit64), K(pread64), K(getdents64), K(tuxcall), K(get_thread_area),
#undef K
  };
  for (const auto& k : known) {
    const SyscallInfo* s = syscall_by_name(k.name);
    ASSERT_NE(s, nullptr) << k.name;
    EXPECT_EQ(s->nr, k.nr) << k.name;
    EXPECT_EQ(syscall_by_nr(k.nr), s) << k.name;
  }
}

TEST(TraceTable, KernelEventNames) {
  const std::pair<const char*, const char*> renamed[] = {{"stat", "newstat"},     {"fstat", "newfstat"},
                                                         {"lstat", "newlstat"},   {"uname", "newuname"},
                                                         {"sendfile", "sendfile64"}, {"umount2", "umount"}};
  for (auto [name, event] : renamed) {
    const SyscallInfo* s = syscall_by_name(name);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->event, event);
    EXPECT_EQ(syscall_by_event(event), s);
  }
  EXPECT_EQ(syscall_by_event("openat")->nargs, 4);
  EXPECT_EQ(syscall_by_event("getppid")->nargs, 0);
  EXPECT_EQ(syscall_by_event("mmap")->nargs, 6);
  EXPECT_FALSE(syscall_by_name("tuxcall")->implemented());
  EXPECT_EQ(syscall_by_event("stat"), nullptr);
  // Numbers are unique and the table is sorted.
  int prev = -1;
  for (const auto& s : syscall_table()) {
    EXPECT_GT(s.nr, prev);
    prev = s.nr;
  }
}

// The running kernel's syscall events (tracefs, root only): each exists in the table with as many
// arguments as its format file has fields after __syscall_nr.
TEST(TraceTable, AgreesWithTheKernelsEvents) {
  fs::path dir = "/sys/kernel/tracing/events/syscalls";
  if (!fs::exists(dir)) dir = "/sys/kernel/debug/tracing/events/syscalls";
  if (!fs::exists(dir)) GTEST_SKIP() << "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)";
  int checked = 0;
  std::regex field(R"(field:[^;]*;\s*offset:(\d+);)");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("sys_enter_", 0) != 0) continue;
    std::string event = name.substr(10);
    const SyscallInfo* s = syscall_by_event(event);
    ASSERT_NE(s, nullptr) << "the kernel has sys_enter_" << event << ", the table does not";
    std::ifstream in(e.path() / "format");
    std::string line;
    int args = 0;
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_search(line, m, field) && std::stoi(m[1]) >= 16) ++args;
    }
    EXPECT_EQ(s->nargs, args) << event;
    EXPECT_TRUE(fs::exists(dir / ("sys_exit_" + event))) << event;
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

TEST(AttachSpec, SyscallTracepoints) {
  auto p = parse_attach_spec("tracepoint/syscalls/sys_enter_openat");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->prog_type, kProgTracepoint);
  EXPECT_EQ(p->event, TraceEvent::SyscallEnter);
  EXPECT_EQ(p->syscall, 257);
  EXPECT_EQ(p->layout, TraceLayout::SyscallEnterRecord);
  EXPECT_EQ(p->ctx_size, 16u + 4 * 8);
  auto x = parse_attach_spec("tp/syscalls/sys_exit_newstat");
  ASSERT_TRUE(x) << x.error().message;
  EXPECT_EQ(x->event, TraceEvent::SyscallExit);
  EXPECT_EQ(x->syscall, 4);
  EXPECT_EQ(x->canonical, "tracepoint/syscalls/sys_exit_newstat");
  EXPECT_EQ(x->ctx_size, 24u);
  auto r = parse_attach_spec("tracepoint/raw_syscalls/sys_enter");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->syscall, -1);
  EXPECT_EQ(r->ctx_size, 64u);
  auto rt = parse_attach_spec("raw_tp/sys_exit");
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->prog_type, kProgRawTracepoint);
  EXPECT_EQ(rt->event, TraceEvent::SyscallExit);
  EXPECT_EQ(rt->ctx_size, 16u);
  EXPECT_TRUE(parse_attach_spec("raw_tracepoint/sys_enter"));
}

TEST(AttachSpec, Kprobes) {
  for (const char* s : {"ksyscall/unlinkat", "kprobe/__x64_sys_unlinkat"}) {
    auto p = parse_attach_spec(s);
    ASSERT_TRUE(p) << s << ": " << p.error().message;
    EXPECT_EQ(p->prog_type, kProgKprobe);
    EXPECT_EQ(p->syscall, 263);
    EXPECT_TRUE(p->can_override);
    EXPECT_FALSE(p->direct_args);
    EXPECT_EQ(p->canonical, "kprobe/__x64_sys_unlinkat");
  }
  for (const char* s : {"kretsyscall/unlinkat", "kretprobe/__x64_sys_unlinkat"}) {
    auto p = parse_attach_spec(s);
    ASSERT_TRUE(p) << s;
    EXPECT_EQ(p->event, TraceEvent::SyscallExit);
    EXPECT_FALSE(p->can_override);
  }
  auto old = parse_attach_spec("kprobe/sys_write");
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->direct_args);
  EXPECT_EQ(old->syscall, 1);
}

TEST(AttachSpec, RefusalsSayWhy) {
  auto msg = [](const char* spec) {
    auto p = parse_attach_spec(spec);
    EXPECT_FALSE(p) << spec;
    return p ? std::string() : p.error().message;
  };
  EXPECT_NE(msg("tracepoint/syscalls/sys_enter_stat").find("is newstat"), std::string::npos);
  EXPECT_NE(msg("ksyscall/uname").find("is newuname"), std::string::npos);
  EXPECT_NE(msg("tracepoint/syscalls/sys_enter_nosuchcall").find("no system call 'nosuchcall'"), std::string::npos);
  EXPECT_NE(msg("tracepoint/syscalls/sys_enter_tuxcall").find("does not implement"), std::string::npos);
  EXPECT_NE(msg("kprobe/do_sys_openat2").find("not a system call entry"), std::string::npos);
  EXPECT_NE(msg("kprobe/__x64_sys_openat+4").find("no offsets"), std::string::npos);
  EXPECT_NE(msg("tracepoint/sched/sched_switch").find("category 'sched'"), std::string::npos);
  EXPECT_NE(msg("raw_tp/sched_switch").find("not provided"), std::string::npos);
  EXPECT_NE(msg("tracepoint").find("names no target"), std::string::npos);
  EXPECT_NE(msg("kprobe").find("names no target"), std::string::npos);
  EXPECT_NE(msg("xdp").find("not a system-call hook"), std::string::npos);
  EXPECT_NE(msg("uprobe/bin").find("missing ':FUNC'"), std::string::npos);
}

TEST(TraceLayouts, RowsOfTheProgramTypeTable) {
  EXPECT_EQ(trace_layout(TraceLayout::SyscallEnterRecord).type.type, kProgTracepoint);
  EXPECT_EQ(trace_layout(TraceLayout::SyscallEnterRecord).type.ctx_size, 64u);
  EXPECT_EQ(trace_layout(TraceLayout::RawTracepointArgs).type.type, kProgRawTracepoint);
  EXPECT_EQ(trace_layout(TraceLayout::RawTracepointArgs).type.ctx_size, 16u);
  EXPECT_EQ(trace_layout(TraceLayout::PtRegs).type.ctx_size, 168u);
  // The tracepoint header stays unreadable, as in the kernel.
  EXPECT_FALSE(check_ctx_access(trace_layout(TraceLayout::SyscallExitRecord).type, 4, 4, false));
  EXPECT_TRUE(check_ctx_access(trace_layout(TraceLayout::SyscallExitRecord).type, 16, 8, false));
  EXPECT_FALSE(check_ctx_access(trace_layout(TraceLayout::SyscallExitRecord).type, 24, 8, false));
}

TEST(TraceLayouts, BuildersFillTheKernelsLayout) {
  SyscallRegs regs;
  // di si dx r10 r8 r9 = 1..6, orig_ax = openat
  regs.words[14] = 1, regs.words[13] = 2, regs.words[12] = 3, regs.words[7] = 4, regs.words[9] = 5, regs.words[8] = 6;
  regs.words[15] = 257;
  PtRegsNative kregs;
  std::memcpy(static_cast<void*>(&kregs), regs.words, sizeof kregs);
  syscall_hooks::SyscallEventData ev{&regs, 257, false, 42, &kregs};
  alignas(8) uint8_t buf[256];

  auto enter = parse_attach_spec("tracepoint/syscalls/sys_enter_openat");
  EXPECT_EQ(syscall_hooks::build_context(*enter, ev, buf), 48u);
  auto* rec = reinterpret_cast<SyscallEnterNative*>(buf);
  EXPECT_EQ(rec->syscall_nr, 257);
  EXPECT_EQ(rec->ent.common_pid, 42);
  EXPECT_EQ(rec->args[0], 1u);
  EXPECT_EQ(rec->args[3], 4u);  // the fourth argument is r10, not cx
  EXPECT_EQ(rec->args[4], 0u);  // openat has four

  auto raw = parse_attach_spec("raw_tp/sys_enter");
  EXPECT_EQ(syscall_hooks::build_context(*raw, ev, buf), 16u);
  auto* args = reinterpret_cast<uint64_t*>(buf);
  EXPECT_EQ(args[0], reinterpret_cast<uint64_t>(&kregs));
  EXPECT_EQ(args[1], 257u);

  auto kp = parse_attach_spec("ksyscall/openat");
  syscall_hooks::build_context(*kp, ev, buf);
  EXPECT_EQ(reinterpret_cast<PtRegsNative*>(buf)->di, reinterpret_cast<uint64_t>(&kregs));
  auto old = parse_attach_spec("kprobe/sys_openat");
  syscall_hooks::build_context(*old, ev, buf);
  EXPECT_EQ(reinterpret_cast<PtRegsNative*>(buf)->di, 1u);
  EXPECT_EQ(reinterpret_cast<PtRegsNative*>(buf)->cx, 4u);

  regs.words[10] = static_cast<uint64_t>(-2);  // ax: -ENOENT
  ev.exit = true;
  auto exit = parse_attach_spec("tracepoint/syscalls/sys_exit_openat");
  syscall_hooks::build_context(*exit, ev, buf);
  EXPECT_EQ(reinterpret_cast<SyscallExitNative*>(buf)->ret, -2);
  auto rawx = parse_attach_spec("raw_tp/sys_exit");
  syscall_hooks::build_context(*rawx, ev, buf);
  EXPECT_EQ(static_cast<int64_t>(args[1]), -2);
  auto kret = parse_attach_spec("kretsyscall/openat");
  syscall_hooks::build_context(*kret, ev, buf);
  EXPECT_EQ(static_cast<int64_t>(reinterpret_cast<PtRegsNative*>(buf)->ax), -2);
}

std::string progs(const char* name) { return std::string(BPFVM_PROGS_DIR) + "/" + name; }

TEST(SyscallHooks, AttachesByTheSectionNames) {
  auto obj = load_object_file(progs("tr_opensnoop.bpf.o"));
  ASSERT_TRUE(obj) << obj.error().message;
  auto h = SyscallHooks::create(*obj);
  ASSERT_TRUE(h) << h.error().message;
  ASSERT_EQ((*h)->programs().size(), 2u);
  EXPECT_TRUE((*h)->wants_enter(257));
  EXPECT_TRUE((*h)->wants_exit(257));
  EXPECT_FALSE((*h)->wants_enter(0));
  EXPECT_FALSE((*h)->all_enter());
  EXPECT_EQ((*h)->traced_syscalls(), std::vector<int32_t>{257});
}

TEST(SyscallHooks, RefusesWhatCannotAttach) {
  auto obj = load_object_file(progs("tr_opensnoop.bpf.o"));
  ASSERT_TRUE(obj);
  auto refused = [&](std::vector<AttachRequest> reqs) {
    SyscallHooksOptions o;
    o.attach = std::move(reqs);
    auto h = SyscallHooks::create(*obj, o);
    EXPECT_FALSE(h);
    return h ? std::string() : h.error().message;
  };
  // The openat program reads args[1] and args[2] (up to byte 32): getppid's record has 16 bytes.
  EXPECT_NE(refused({{"tracepoint__syscalls__sys_enter_openat", "tracepoint/syscalls/sys_enter_getppid"}})
                .find("bytes of context, but tracepoint/syscalls/sys_enter_getppid gives 16 bytes"),
            std::string::npos);
  EXPECT_NE(refused({{"tracepoint__syscalls__sys_enter_openat", "raw_tp/sys_enter"}}).find("a tracepoint program"),
            std::string::npos);
  EXPECT_NE(refused({{"nosuchprog", ""}}).find("no program 'nosuchprog'"), std::string::npos);
  // Another syscall with enough arguments is fine.
  SyscallHooksOptions ok;
  ok.attach = {{"tracepoint__syscalls__sys_enter_openat", "tracepoint/syscalls/sys_enter_read"}};
  EXPECT_TRUE(SyscallHooks::create(*obj, ok));

  auto deny = load_object_file(progs("tr_deny.bpf.o"));
  ASSERT_TRUE(deny);
  SyscallHooksOptions o;
  o.attach = {{"deny_unlinkat", "kretsyscall/unlinkat"}};
  auto h = SyscallHooks::create(*deny, o);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("bpf_override_return"), std::string::npos) << h.error().message;
}

// ---- bpf_get_current_task's synthetic task ----------------------------------------------------------

// This very thread as a traced task.
class ThisThread final : public TracedTask {
 public:
  uint32_t tid() const override { return static_cast<uint32_t>(gettid()); }
  uint32_t tgid() const override { return static_cast<uint32_t>(getpid()); }
  uint64_t uid_gid() override { return (static_cast<uint64_t>(getgid()) << 32) | getuid(); }
  void comm(char out[16]) override {
    std::memset(out, 0, 16);
    prctl(PR_GET_NAME, out);
  }
  long read_user(void*, uint64_t, size_t) override { return -14; }
  long read_user_str(char*, uint64_t, size_t) override { return -14; }
  long send_signal(int, bool) override { return -1; }
};

template <typename T>
T field(uint64_t base, int64_t off) {
  T v;
  std::memcpy(&v, reinterpret_cast<const void*>(base + static_cast<uint64_t>(off)), sizeof v);
  return v;
}

// The task's members where the BTF puts them: bpfvm's synthetic BTF, and the kernel's when readable.
TEST(TaskStructs, MembersAtTheBtfOffsets) {
  std::vector<std::shared_ptr<const core::TargetBtf>> btfs = {core::synthetic_target()};
  if (auto k = core::target_for(""); k && (*k)->origin() == "/sys/kernel/btf/vmlinux") btfs.push_back(*k);
  for (const auto& b : btfs) {
    SCOPED_TRACE(b->origin());
    auto layout = syscall_hooks::task_layout(b->btf(), b->origin());
    ASSERT_TRUE(layout) << layout.error().message;
    const syscall_hooks::TaskLayout& l = *layout;
    for (int64_t off : {l.real_parent, l.group_leader, l.cred, l.real_cred, l.start_time, l.ids[0], l.ids[4]})
      EXPECT_GE(off, 0);
    syscall_hooks::TaskStructs tasks(l);
    ThisThread self;
    uint64_t t = tasks.current(self);
    ASSERT_NE(t, 0u);
    EXPECT_EQ(tasks.current(self), t) << "a task keeps its address";
    EXPECT_TRUE(tasks.contains(t));
    EXPECT_TRUE(tasks.contains(t + l.task_size - 1));
    EXPECT_FALSE(tasks.contains(reinterpret_cast<uint64_t>(&l)));
    EXPECT_EQ(field<int32_t>(t, l.pid), gettid());
    EXPECT_EQ(field<int32_t>(t, l.tgid), getpid());
    char comm[16];
    self.comm(comm);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t + static_cast<uint64_t>(l.comm))), std::string(comm));
    EXPECT_EQ(field<uint64_t>(t, l.group_leader), t) << "the main thread leads its group";
    uint64_t parent = field<uint64_t>(t, l.real_parent);
    ASSERT_NE(parent, 0u);
    EXPECT_TRUE(tasks.contains(parent));
    EXPECT_EQ(field<uint64_t>(t, l.parent), parent);
    EXPECT_EQ(field<int32_t>(parent, l.tgid), getppid());
    uint64_t cred = field<uint64_t>(t, l.cred);
    ASSERT_NE(cred, 0u);
    EXPECT_EQ(field<uint32_t>(cred, l.ids[0]), getuid());
    EXPECT_EQ(field<uint32_t>(cred, l.ids[4]), geteuid());
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t start = field<uint64_t>(t, l.start_time);
    EXPECT_GT(start, 0u);
    EXPECT_LE(start, static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(now.tv_nsec));
    // Without /proc (ids that are not the host's): only what the task says; the same address.
    EXPECT_EQ(tasks.current(self, false), t);
    EXPECT_EQ(field<int32_t>(t, l.pid), gettid());
    EXPECT_EQ(field<uint64_t>(t, l.real_parent), 0u);
    EXPECT_EQ(field<uint64_t>(t, l.start_time), 0u);
    EXPECT_EQ(field<uint32_t>(field<uint64_t>(t, l.cred), l.ids[0]), getuid());
  }
  // A BTF without struct task_struct (an object's own) is refused with the reason.
  auto none = core::target_for(std::string(BPFVM_PROGS_DIR) + "/tr_count.bpf.o");
  ASSERT_TRUE(none) << none.error().message;
  auto bad = syscall_hooks::task_layout((*none)->btf(), (*none)->origin());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("has no struct task_struct"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace bpfvm
