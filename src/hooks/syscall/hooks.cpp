// SyscallHooks: an object's programs attached to syscall events, run for the events a source reports.
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "bpfvm/map.hpp"
#include "bpfvm/trace.hpp"
#include "hooks/syscall/contexts.hpp"
#include "hooks/syscall/task_struct.hpp"
#include "loader/core.hpp"

namespace bpfvm {

namespace {

// Bytes of context the program reads at most (the kernel's prog->aux->max_ctx_offset), from the
// accesses whose base is the context pointer.
Result<uint32_t> max_ctx_offset(const ObjectProgram& prog, const ProgTypeInfo& type) {
  auto facts = ctx_base_facts(prog.insns, type);
  if (!facts) return facts.error();
  uint32_t hi = 0;
  for (size_t pc = 0; pc < prog.insns.size(); ++pc) {
    const Insn& in = prog.insns[pc];
    const OpInfo& oi = in.info();
    if (oi.kind != OpKind::Load && oi.kind != OpKind::Store && oi.kind != OpKind::StoreReg) continue;
    if (pc >= facts->size() || (*facts)[pc] != BaseFact::Ctx) continue;
    int64_t end = static_cast<int64_t>(in.off) + oi.size;
    if (end > hi) hi = static_cast<uint32_t>(end);
  }
  return hi;
}

bool calls_helper(const ObjectProgram& prog, int32_t id) {
  for (const Insn& in : prog.insns)
    if (in.op == Op::CALL_HELPER && in.imm == id) return true;
  return false;
}

constexpr int32_t kOverrideReturn = BPF_FUNC_override_return;

// The task as programs of one event see it: the source's task, plus the event's kernel data and
// the override decision of the program running.
// This thread's stack (the engines run programs on it: their stack buffers are there).
bool on_thread_stack(uint64_t addr) {
  thread_local uint64_t lo = 0, hi = 0;
  if (hi == 0) {
    pthread_attr_t attr;
    void* base = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      pthread_attr_getstack(&attr, &base, &size);
      pthread_attr_destroy(&attr);
    }
    lo = reinterpret_cast<uint64_t>(base);
    hi = lo + size;
  }
  return addr >= lo && addr < hi;
}

class EventTask final : public TracedTask {
 public:
  EventTask(TracedTask& t, const PtRegsNative* kregs, const std::vector<MemRegion>& data,
            syscall_hooks::TaskStructs* tasks)
      : t_(t), kregs_(kregs), data_(data), tasks_(tasks) {}
  uint32_t tid() const override { return t_.tid(); }
  uint32_t tgid() const override { return t_.tgid(); }
  // Asked once per event however many programs ask (a source may read them from /proc).
  uint64_t uid_gid() override {
    if (!uid_gid_) uid_gid_ = t_.uid_gid();
    return *uid_gid_;
  }
  void comm(char out[16]) override {
    if (!have_comm_) {
      t_.comm(comm_);
      have_comm_ = true;
    }
    std::memcpy(out, comm_, 16);
  }
  long read_user(void* dst, uint64_t addr, size_t len) override { return t_.read_user(dst, addr, len); }
  long read_user_str(char* dst, uint64_t addr, size_t size) override { return t_.read_user_str(dst, addr, size); }
  long send_signal(int sig, bool thread_only) override { return t_.send_signal(sig, thread_only); }
  // Memory that is kernel memory for the program in the kernel: the event's registers, and bpfvm's
  // memory the program itself holds (its stack, its object's global data).
  bool is_kernel(uint64_t addr) const override {
    auto base = reinterpret_cast<uint64_t>(kregs_);
    if (addr >= base && addr < base + sizeof(PtRegsNative)) return true;
    for (const MemRegion& r : data_)
      if (addr >= r.start && addr < r.start + r.size) return true;
    if (tasks_ && tasks_->contains(addr)) return true;
    return on_thread_stack(addr);
  }
  // Built at the first call of the event, for every program of the event.
  uint64_t current_task() override {
    if (!tasks_) return 0;
    if (!task_) task_ = tasks_->current(*this);
    return task_;
  }
  long override_return(uint64_t rc) override {
    if (!current || !current->point.can_override) return -22;
    override_value = static_cast<int64_t>(rc);
    return 0;
  }
  AttachedProgram* current = nullptr;
  std::optional<int64_t> override_value;

 private:
  TracedTask& t_;
  const PtRegsNative* kregs_;
  const std::vector<MemRegion>& data_;
  syscall_hooks::TaskStructs* tasks_;
  uint64_t task_ = 0;
  std::optional<uint64_t> uid_gid_;
  char comm_[16] = {};
  bool have_comm_ = false;
};

}  // namespace

struct SyscallHooks::Buffers {
  struct Ring {
    RingbufMap* map;
    std::string name;
  };
  struct Perf {
    PerfEventArrayMap* map;
    std::string name;
  };
  std::vector<Ring> rings;
  std::vector<Perf> perfs;
};

SyscallHooks::~SyscallHooks() = default;

Result<std::unique_ptr<SyscallHooks>> SyscallHooks::create(const Object& object, const SyscallHooksOptions& options) {
  std::unique_ptr<SyscallHooks> h(new SyscallHooks());
  // --pinmaps DIR: every map the store can hold is created (or reused) pinned at DIR/NAME, as if the
  // object declared it pinned by name with DIR as the pin root; maps of types the store does not
  // hold (perf event arrays) and global data stay private.
  Object pinned;
  InstantiateOptions io;
  const Object* source = &object;
  if (!options.pin_maps_dir.empty()) {
    pinned = object;
    for (ObjectMap& m : pinned.maps) {
      if (m.is_global_data()) continue;
      m.spec.pinning = map_type_pinnable(m.spec.type) ? 1 : 0;
      if (m.origin == MapOrigin::LegacyElf) m.origin = MapOrigin::Legacy;  // by name, not iproute2's tc/ tree
    }
    io.pin_root = options.pin_maps_dir;
    source = &pinned;
  }
  auto live = instantiate_with(*source, io);
  if (!live) return live.error();
  h->live_ = std::make_shared<LoadedObject>(std::move(*live));

  std::vector<AttachRequest> requests = options.attach;
  if (requests.empty()) {
    for (const auto& p : object.programs) requests.push_back(AttachRequest{p.name, ""});
    if (requests.empty()) return make_error(ErrorCode::InvalidArgument, "the object has no programs");
  }
  for (const AttachRequest& req : requests) {
    const ObjectProgram* prog = object.find_program(req.program);
    if (!prog) return make_error(ErrorCode::InvalidArgument, fmt::format("the object has no program '{}'", req.program));
    std::string who = fmt::format("program {} (section {})", prog->name, prog->section);
    if (req.spec.empty() && prog->attach.target.empty())
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("{}: the section names nothing to attach to (give a target with --attach {}=SPEC)",
                                    who, prog->name));
    auto point = req.spec.empty() ? program_attach_point(*prog) : parse_attach_spec(req.spec);
    if (!point) return make_error(point.error().code, fmt::format("{}: {}", who, point.error().message));
    if (prog->type_known && prog->type != point->prog_type)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("{}: a {} program cannot attach to {}, which runs {} programs", who,
                                    prog_type_name(prog->type), point->canonical, prog_type_name(point->prog_type)));
    const TraceLayoutInfo& layout = trace_layout(point->layout);
    auto hi = max_ctx_offset(*prog, layout.type);
    if (!hi) return make_error(hi.error().code, fmt::format("{}: {}", who, hi.error().message));
    if (*hi > point->ctx_size)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("{}: reads {} bytes of context, but {} gives {} bytes ({})", who, *hi,
                                    point->canonical, point->ctx_size, layout.name));
    bool overrides = calls_helper(*prog, kOverrideReturn);
    if (overrides && !point->can_override)
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("{}: calls bpf_override_return, which works only at a system call's entry "
                                    "(kprobe/__x64_sys_NAME, ksyscall/NAME), not at {}", who, point->canonical));
    auto prepared = prepare_program(*prog, *h->live_, &layout.type, options.prepare);
    if (!prepared) return make_error(prepared.error().code, fmt::format("{}: {}", who, prepared.error().message));
    auto ap = std::make_unique<AttachedProgram>();
    ap->name = prog->name;
    ap->point = std::move(*point);
    ap->prog = std::move(*prepared);
    ap->overrides = overrides;
    h->progs_.push_back(std::move(ap));
  }

  // bpf_get_current_task's tasks, laid out by the BTF CO-RE relocated against (or --btf).
  std::string task_user;
  for (const AttachRequest& req : requests)
    if (const ObjectProgram* prog = object.find_program(req.program))
      if (calls_helper(*prog, BPF_FUNC_get_current_task) || calls_helper(*prog, BPF_FUNC_get_current_task_btf))
        task_user = prog->name;
  if (!task_user.empty()) {
    std::string path = options.btf.empty() ? object.target_btf : options.btf;
    auto synthetic = core::synthetic_target();
    auto target = path == synthetic->origin() ? Result<std::shared_ptr<const core::TargetBtf>>(synthetic)
                                              : core::target_for(path);
    if (!target) return make_error(target.error().code, fmt::format("program {}: {}", task_user, target.error().message));
    auto layout = syscall_hooks::task_layout((*target)->btf(), (*target)->origin());
    if (!layout) return make_error(layout.error().code, fmt::format("program {}: {}", task_user, layout.error().message));
    h->tasks_ = std::make_unique<syscall_hooks::TaskStructs>(std::move(*layout));
  }

  // Event tables: tracepoints before kprobes at entry (the kernel's sys_enter tracepoint fires before
  // the syscall's function is called), kretprobes before tracepoints at exit.
  int32_t hi_nr = 0;
  for (const auto& s : syscall_table()) hi_nr = std::max(hi_nr, s.nr);
  h->enter_.resize(static_cast<size_t>(hi_nr) + 1);
  h->exit_.resize(static_cast<size_t>(hi_nr) + 1);
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& p : h->progs_) {
      if (p->point.in_user_code()) continue;  // probes in user code: the agent attaches them
      bool kprobe = p->point.prog_type == kProgKprobe;
      bool enter = p->point.event == TraceEvent::SyscallEnter;
      // entry: pass 0 tracepoints, pass 1 kprobes; exit: pass 0 kretprobes, pass 1 tracepoints.
      if ((pass == 0) != (enter ? !kprobe : kprobe)) continue;
      if (p->point.syscall < 0) {
        (enter ? h->enter_all_ : h->exit_all_).push_back(p.get());
      } else {
        auto& table = enter ? h->enter_ : h->exit_;
        table[static_cast<size_t>(p->point.syscall)].push_back(p.get());
      }
    }
  }
  h->all_enter_ = !h->enter_all_.empty();
  h->all_exit_ = !h->exit_all_.empty();

  h->buffers_ = std::make_unique<Buffers>();
  for (const auto& m : h->live_->maps) {
    if (auto* rb = as_ringbuf(m.get())) h->buffers_->rings.push_back({rb, m->spec().name});
    if (auto* pe = as_perf_event_array(m.get())) {
      if (long rc = pe->open_all(options.perf_pages); rc < 0)
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("perf event array {}: cannot open its rings ({})", m->spec().name, rc));
      h->buffers_->perfs.push_back({pe, m->spec().name});
    }
  }
  return h;
}

bool SyscallHooks::wants_enter(int64_t nr) const {
  if (all_enter_) return true;
  return nr >= 0 && nr < static_cast<int64_t>(enter_.size()) && !enter_[static_cast<size_t>(nr)].empty();
}

bool SyscallHooks::wants_exit(int64_t nr) const {
  if (all_exit_) return true;
  return nr >= 0 && nr < static_cast<int64_t>(exit_.size()) && !exit_[static_cast<size_t>(nr)].empty();
}

bool SyscallHooks::needs_regs(int64_t nr, bool exit) const {
  auto full = [](const std::vector<AttachedProgram*>& v) {
    for (const AttachedProgram* p : v)
      if (p->point.layout == TraceLayout::PtRegs || p->point.layout == TraceLayout::RawTracepointArgs) return true;
    return false;
  };
  const auto& all = exit ? exit_all_ : enter_all_;
  const auto& table = exit ? exit_ : enter_;
  if (full(all)) return true;
  return nr >= 0 && nr < static_cast<int64_t>(table.size()) && full(table[static_cast<size_t>(nr)]);
}

std::vector<int32_t> SyscallHooks::traced_syscalls() const {
  std::vector<int32_t> out;
  for (size_t nr = 0; nr < enter_.size(); ++nr)
    if (!enter_[nr].empty() || !exit_[nr].empty()) out.push_back(static_cast<int32_t>(nr));
  return out;
}

void SyscallHooks::run(AttachedProgram& p, TracedTask& task, void* ctx, size_t ctx_size) {
  RunArgs args;
  args.r1 = reinterpret_cast<uint64_t>(ctx);
  if (p.prog.exe->options().checked) {
    args.regions.push_back(MemRegion{args.r1, ctx_size, false, "ctx"});
    args.regions.insert(args.regions.end(), p.prog.regions.begin(), p.prog.regions.end());
  }
  ++p.runs;
  (void)take_helper_fault();
  auto r = p.prog.exe->run(args);
  std::optional<Diagnostic> fault = take_helper_fault();
  if (!r && !fault) fault = r.error();
  if (fault) {
    std::string first;
    {
      // Sources in the traced process (the agent) run programs on several threads at once.
      static std::mutex mu;
      std::lock_guard<std::mutex> lock(mu);
      std::string text = fmt::format("program {}: {}", p.name, fault->message);
      if (++p.errors == 1) first = text;
      if (run_errors_.size() < 16) run_errors_.push_back(std::move(text));
    }
    if (!first.empty() && fault_sink_) fault_sink_(first);
  }
}

namespace {

void set_event_cpu() {
  int cpu = sched_getcpu();
  int n = possible_cpus();
  set_current_cpu(cpu >= 0 && n > 0 ? cpu % n : 0);
}

}  // namespace

std::optional<int64_t> SyscallHooks::enter(TracedTask& task, const SyscallRegs& regs) {
  const int64_t nr = regs.nr();
  const std::vector<AttachedProgram*>* own =
      nr >= 0 && nr < static_cast<int64_t>(enter_.size()) ? &enter_[static_cast<size_t>(nr)] : nullptr;
  if (enter_all_.empty() && (!own || own->empty())) return std::nullopt;
  PtRegsNative kregs;
  std::memcpy(static_cast<void*>(&kregs), regs.words, sizeof kregs);
  EventTask et(task, &kregs, live_->data_regions, tasks_.get());
  syscall_hooks::SyscallEventData ev{&regs, nr, false, task.tid(), &kregs};
  alignas(8) uint8_t ctx[sizeof(PtRegsNative) + 8];
  set_event_cpu();
  MapReadSection section;
  set_current_traced_task(&et);
  auto fire = [&](AttachedProgram* p) {
    size_t n = syscall_hooks::build_context(p->point, ev, ctx);
    et.current = p;
    run(*p, et, ctx, n);
  };
  for (AttachedProgram* p : enter_all_) fire(p);
  if (own)
    for (AttachedProgram* p : *own) fire(p);
  set_current_traced_task(nullptr);
  return et.override_value;
}

void SyscallHooks::exit(TracedTask& task, int64_t nr, const SyscallRegs& regs) {
  const std::vector<AttachedProgram*>* own =
      nr >= 0 && nr < static_cast<int64_t>(exit_.size()) ? &exit_[static_cast<size_t>(nr)] : nullptr;
  if (exit_all_.empty() && (!own || own->empty())) return;
  PtRegsNative kregs;
  std::memcpy(static_cast<void*>(&kregs), regs.words, sizeof kregs);
  kregs.orig_ax = static_cast<uint64_t>(nr);
  EventTask et(task, &kregs, live_->data_regions, tasks_.get());
  syscall_hooks::SyscallEventData ev{&regs, nr, true, task.tid(), &kregs};
  alignas(8) uint8_t ctx[sizeof(PtRegsNative) + 8];
  set_event_cpu();
  MapReadSection section;
  set_current_traced_task(&et);
  auto fire = [&](AttachedProgram* p) {
    size_t n = syscall_hooks::build_context(p->point, ev, ctx);
    et.current = p;
    run(*p, et, ctx, n);
  };
  if (own)
    for (AttachedProgram* p : *own)
      if (p->point.prog_type == kProgKprobe) fire(p);
  for (AttachedProgram* p : exit_all_) fire(p);
  if (own)
    for (AttachedProgram* p : *own)
      if (p->point.prog_type != kProgKprobe) fire(p);
  set_current_traced_task(nullptr);
}

void SyscallHooks::drain() {
  if (!buffers_) return;
  auto now = [] {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  };
  for (auto& r : buffers_->rings) {
    r.map->consume([&](const void* data, uint32_t size) {
      if (sink_) {
        TraceRecord rec;
        rec.map = r.name;
        rec.cpu = current_cpu();
        rec.timestamp = now();
        rec.data = std::span<const uint8_t>(static_cast<const uint8_t*>(data), size);
        sink_(rec);
      }
      return 0;
    });
  }
  for (auto& p : buffers_->perfs) {
    p.map->consume_records(
        [&](int cpu, uint64_t time_ns, const void* data, uint32_t size) {
          if (!sink_) return;
          TraceRecord rec;
          rec.map = p.name;
          rec.perf = true;
          rec.cpu = cpu;
          rec.index = static_cast<uint32_t>(cpu);
          rec.timestamp = time_ns;
          rec.data = std::span<const uint8_t>(static_cast<const uint8_t*>(data), size);
          sink_(rec);
        },
        [&](int cpu, uint64_t lost) {
          if (!sink_) return;
          TraceRecord rec;
          rec.map = p.name;
          rec.perf = true;
          rec.cpu = cpu;
          rec.index = static_cast<uint32_t>(cpu);
          rec.timestamp = now();
          rec.lost = lost;
          sink_(rec);
        });
  }
}

}  // namespace bpfvm
