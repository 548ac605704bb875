// bpfvm: preparing and running programs (interpreter and JIT behind one interface).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"

namespace bpfvm {

// Helpers use the kernel's convention: five 64-bit arguments in r1..r5, result in r0.
// A helper that needs the running program's state calls current_run().
using HelperFn = uint64_t (*)(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5);

struct HelperDef {
  int32_t id = 0;
  std::string name;
  HelperFn fn = nullptr;
  // A tail-call helper (bpf_tail_call) returns the `const Executable*` to continue in, or 0 when
  // the call falls through (no program at that index, or the chain limit of 33 reached).
  // The engine then runs that program with the same context and exits with its result.
  bool tail_call = false;
};

// The helpers a program may call, by id. Different environments have different tables: programs
// with a kernel program type get kernel-numbered helpers; the conformance suite has its own.
class HelperTable {
 public:
  void add(int32_t id, std::string name, HelperFn fn, bool tail_call = false);
  void add(HelperDef def);
  const HelperDef* find(int32_t id) const;
  std::string_view name_of(int32_t id) const;  // "" when unknown
  const std::unordered_map<int32_t, HelperDef>& all() const { return by_id_; }

  // The bpf_conformance environment: helper 5 returns its first argument (and 0..4 are absent).
  static HelperTable conformance();

 private:
  std::unordered_map<int32_t, HelperDef> by_id_;
};

// A program ready to be prepared: the IR (see insn.hpp) and a name for messages.
struct Program {
  std::string name;
  std::vector<Insn> insns;
  // Slots (ascending) of LDDW instructions whose value is the address of a live bpfvm::Map (set by
  // LoadedObject::program). Engines may then treat a map helper's argument as that map (the JIT
  // inlines array lookups and calls a map's own lookup directly, as the kernel does).
  std::vector<uint32_t> map_refs;
};

enum class EngineKind { Interpreter, Jit };
const char* engine_name(EngineKind kind);

struct ExecOptions {
  EngineKind engine = EngineKind::Interpreter;
  // Interpreter: validate every memory access against the regions the program may touch
  // (its stack, RunArgs::regions, memory returned by helpers) and stop with a MemoryFault.
  bool checked = false;
  // Stop with ErrorCode::Budget after this many executed instructions (0 = no limit).
  uint64_t insn_budget = 0;
  // JIT: blind immediates (as the kernel's bpf_jit_harden).
  bool jit_harden = false;
  // JIT: also compile a batch entry (Engine::batch_entry) for programs without calls: one native loop
  // runs the program once per BatchItem (packet filters over a capture: PacketFilter::match_many).
  bool jit_batch = false;
};

// One run of a batch (Engine::BatchFn): the LD_ABS/LD_IND packet, and a 32-bit value stored where the
// batch's `store` points before the run (a packet filter's __sk_buff.len: the length on the wire).
struct BatchItem {
  const uint8_t* packet = nullptr;
  uint32_t packet_len = 0;
  uint32_t value = 0;
};
static_assert(sizeof(BatchItem) == 16);

// A span of memory a program may access in checked mode.
struct MemRegion {
  uint64_t start = 0;
  uint64_t size = 0;
  bool writable = false;
  std::string_view name;  // "mem", "ctx", "packet", "map value"... used in fault messages
};

// Inputs of one run.
struct RunArgs {
  uint64_t r1 = 0;  // usually the context pointer
  uint64_t r2 = 0;  // for plain-memory programs: the memory length
  std::vector<MemRegion> regions;
  // Packet for the legacy LD_ABS / LD_IND instructions (socket filters).
  const uint8_t* packet = nullptr;
  size_t packet_len = 0;
  void* user = nullptr;  // embedder data, visible to helpers via current_run()->args->user
};

struct RunStats {
  uint64_t insns_executed = 0;  // counted only when ExecOptions::insn_budget is set
};

class Executable;

// How a helper calls back into the running program (bpf_loop, for_each_map_elem): a plain function
// and the engine's closure, so installing it costs two stores per run (no std::function).
struct CallFunction {
  using Fn = Result<uint64_t> (*)(const void* self, int64_t insn, uint64_t r1, uint64_t r2, uint64_t r3,
                                  uint64_t r4, uint64_t r5);
  Fn fn = nullptr;
  const void* self = nullptr;
  explicit operator bool() const { return fn != nullptr; }
  Result<uint64_t> operator()(int64_t insn, uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5) const {
    return fn(self, insn, r1, r2, r3, r4, r5);
  }
};

// State of the run in progress on this thread, for helpers.
// Runs of programs that call no helper (no call, callx or tail call) may have none: current_run() is
// then the caller's (usually nullptr) — nothing in such a program can ask for it.
struct RunContext {
  const RunArgs* args = nullptr;
  const Executable* exe = nullptr;
  // True when the run is checked (ExecOptions::checked, interpreter): only then is memory a helper
  // hands out recorded, so allow_region costs one test in unchecked runs (JIT, plain interpreter).
  // A checked program entered by a tail call sets it for the rest of the run.
  bool checked = false;
  // Memory a helper handed to the program (e.g. a map value); checked mode allows access to it.
  std::vector<MemRegion> dynamic_regions;
  void allow_region(uint64_t start, uint64_t size, bool writable, std::string_view name) {
    if (!checked) return;
    for (const MemRegion& r : dynamic_regions)
      if (r.start == start && r.size == size && r.writable == writable) return;
    dynamic_regions.push_back(MemRegion{start, size, writable, name});
  }
  // Number of tail calls taken so far in this run (the kernel allows 33).
  int tail_calls = 0;
  // Set by the engine for helpers that call back into the program (bpf_loop, for_each_map_elem):
  // calls the BPF function starting at instruction `insn` of the running program with r1..r5 and
  // returns its r0 (or an error).
  CallFunction call_function;
};
constexpr int kMaxTailCalls = 33;
RunContext* current_run();

// Internal engine interface (interpreter, JIT per architecture).
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Result<uint64_t> run(const RunArgs& args, RunStats* stats) const = 0;
  // Runs as the target of a tail call from another program (same thread, RunContext kept).
  virtual Result<uint64_t> run_tail(uint64_t ctx, RunStats* stats) const = 0;
  virtual EngineKind kind() const = 0;
  // Native code that can be entered directly, without a RunContext and without a way to fail: the
  // JIT's code of programs with no call of any kind. nullptr otherwise.
  using DirectFn = uint64_t (*)(uint64_t r1, uint64_t r2, const RunArgs* args);
  virtual DirectFn direct_entry() const { return nullptr; }
  // With ExecOptions::jit_batch, the JIT's code of programs with no call of any kind also has this
  // entry: for each of the n items, r1 = `r1`, r2 = 0, *store = item.value (when the program reads
  // r1; `store` must then point to 4 writable bytes), the packet = item.packet / packet_len (an item
  // with a null packet has none: length 0); verdicts[i] = (u32) r0. nullptr otherwise.
  using BatchFn = void (*)(const BatchItem* items, size_t n, uint32_t* verdicts, uint64_t r1, uint32_t* store);
  virtual BatchFn batch_entry() const { return nullptr; }
};

// A linked, runnable program. Create once, run many times (concurrently from several threads).
class Executable {
 public:
  static Result<std::unique_ptr<Executable>> create(Program program, const HelperTable& helpers,
                                                    ExecOptions options = {});
  ~Executable();

  // Programs the JIT compiled without any call go straight into the native code (a few ns per run);
  // everything else takes the engine's full path (RunContext, map read section, error reporting).
  Result<uint64_t> run(const RunArgs& args, RunStats* stats = nullptr) const {
    if (direct_) {
      if (stats) stats->insns_executed = 0;
      return direct_(args.r1, args.r2, &args);
    }
    return run_engine(args, stats);
  }
  // Convenience for plain-memory programs: r1 = mem, r2 = len; the memory is the only region.
  Result<uint64_t> run_on_memory(uint8_t* mem, size_t len, RunStats* stats = nullptr) const;

  const Program& program() const { return program_; }
  const HelperTable& helpers() const { return helpers_; }
  const ExecOptions& options() const { return options_; }
  const Engine& engine() const { return *engine_; }

 private:
  Executable() = default;
  Result<uint64_t> run_engine(const RunArgs& args, RunStats* stats) const;
  Engine::DirectFn direct_ = nullptr;
  Program program_;
  HelperTable helpers_;
  ExecOptions options_;
  std::unique_ptr<Engine> engine_;
  bool calls_helpers_ = false;  // runs are map read sections (map.hpp) only when helpers may hand out values
};

}  // namespace bpfvm
