// The verifier's engine (internal): one object per verify() call.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <unordered_map>
#include <span>
#include <string>
#include <vector>

#include "bpfvm/helpers.hpp"
#include "bpfvm/verifier.hpp"
#include "verifier/btf_types.hpp"
#include "verifier/cfg.hpp"
#include "verifier/state.hpp"

namespace bpfvm::verifier {

// Memory access kinds for the checks shared by loads/stores and helper arguments.
enum class Access : uint8_t { Read, Write, HelperRead, HelperWrite, HelperReadWrite };

class Verifier {
 public:
  Verifier(std::span<const Insn> insns, const VerifyOptions& opts, const Cfg& cfg, VerifyReport& report);
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;
  bool run();
 private:
  friend struct CallChecker;
  // ---- exploration ----
  void init_state();
  bool step();              // executes insns_[pc_]; false on rejection
  bool is_state_visited(bool& pruned);
  void push_branch(State st, int64_t pc);
  void finish_path();
  void live_for(const State& st, int64_t pc, std::vector<LiveSet>& out) const;
  std::vector<LiveSet> live_buf_, precise_buf_;  // reused by is_state_visited (no allocation per visit)
  // Registers and stack slots needed precisely, per frame (0: the main function), while backtracking.
  struct Need {
    std::array<LiveSet, kMaxFrames> regs{};
    std::array<uint64_t, kMaxFrames> slots{};
    bool none(int upto = kMaxFrames - 1) const {  // frames 0..upto (the deeper ones are empty)
      for (int f = 0; f <= upto; ++f)
        if (regs[f] || slots[f]) return false;
      return true;
    }
  };
  int depth() const { return static_cast<int>(cur_.frames.size()) - 1; }
  void seed(int regno) {
    if (!cur_.hist.empty()) {
      Need n;
      n.regs[depth()] = static_cast<LiveSet>(1u << regno);
      backtrack(n, cur_.hist.size() - 1);
    }
  }
  // Path precision: what `need` names is needed precisely before cur_.hist[end] (or at the current
  // instruction when end == hist.size()); marks it, as its sources, in the stored states of the
  // current path, across calls and returns (the kernel's mark_chain_precision).
  void backtrack(Need need, size_t end) { backtrack_path(need, cur_.hist, end, cur_.parent, depth(), pc_); }
  // The same along any path: `hist` executed since `parent` was stored, at call depth `depth` and
  // instruction `pc` after it.
  void backtrack_path(Need need, std::vector<HistEntry>& hist, size_t end, Node* parent, int depth, int64_t pc);
  uint64_t marks_added_ = 0;  // precision marks added to stored states (backedge resolution)
  // The current state is pruned against `target`, a callback invocation in progress: keeps the path
  // for its final marks (see Backedge).
  void add_backedge(Node* target, const std::vector<LiveSet>& live);
  // `a` completed: backtracks its backedges' targets' marks until nothing changes (or hands them to
  // the invocation around it).
  void resolve_backedges(Node* a);
  // Everything the current state's pruning compares (live scalars, exact stack contents) is needed:
  // the state was pruned against one whose marks may still grow (Node::exact).
  void backtrack_all_live(const std::vector<LiveSet>& live);
  // Stack liveness: main-frame slots `mask` are read here; marks them read in the stored states
  // above, up to where the path wrote them whole.
  void mark_stack_read(uint64_t mask);
  // A stack access at a constant offset by the current instruction (for backtracking): the slot of
  // the stack of frame `frame`.
  void note_stack_slot(int slot, uint8_t flags, int frame) {
    if (!cur_.hist.empty() && cur_.hist.back().pc == pc_ && slot >= 0 && slot < 64) {
      cur_.hist.back().slot = static_cast<int8_t>(slot);
      cur_.hist.back().sflags = flags;
      cur_.hist.back().sframe = static_cast<uint8_t>(frame);
    }
  }
  void free_node(Node* n);
  // Crosses from the position after `h` (call depth `bf`, instruction `next_pc`) to `h` when they
  // are in different frames: a call (r1-r5 needed in the callee were the caller's; a callback's are
  // set by the helper), a return (the caller's r0 is the callee's; a callback's is the helper's), a
  // callback invoked again (a fresh frame). False: the history is not understood (then everything
  // above is needed).
  bool cross_frames(const HistEntry& h, int64_t next_pc, int& bf, Need& need) const;
  // Backtracks one instruction (executed in frame h.frame): what `need` names after it becomes what
  // is needed before it. False: a needed value came from the stack in a way not tracked per slot
  // (an atomic operation on the stack): everything above is then needed.
  bool back_insn(const HistEntry& h, Need& n) const {
    const int32_t pc = h.pc;
    const BackXfer& x = xfer_[pc];
    LiveSet& need = n.regs[h.frame];
    uint64_t& sneed = n.slots[h.sframe];
    // A comparison of two registers refines each by the other, and every copy (shared id) with them.
    if (x.join && (need & (x.join | h.linked))) need |= x.join;
    const bool slot_needed = h.slot >= 0 && ((sneed >> h.slot) & 1);
    if (x.atomic) {
      if (slot_needed || ((need & x.def) && stack_load_[pc])) return false;
    } else if (x.store && slot_needed) {
      // The needed slot holds what this store wrote (a spill of src, or an immediate); a store of
      // part of the slot leaves the rest as it was.
      if (h.sflags & HistEntry::kFullWrite) sneed &= ~(uint64_t{1} << h.slot);
      need |= x.srcs;
    }
    if (!(need & x.def)) return true;
    need = static_cast<LiveSet>((need & ~x.def) | x.srcs);
    // A fill: the value is the slot's (a spilled register, zero bytes); unknown bytes need nothing.
    if (x.may_fill && !x.atomic && h.slot >= 0 && (h.sflags & HistEntry::kValueFromSlot))
      sneed |= uint64_t{1} << h.slot;
    return true;
  }
  // Per instruction, for backtracking: registers it defines, the registers those are computed from,
  // registers a comparison links (one needed: both needed), and whether a defined value may come
  // from the stack (a load or atomic fetch).
  struct BackXfer {
    LiveSet def = 0, srcs = 0, join = 0;
    bool may_fill = false;
    bool store = false;   // a store (srcs: the stored register, if any)
    bool atomic = false;
  };
  std::vector<BackXfer> xfer_;
  void init_xfer();
  void mark_all_from(Node* n);

  // ---- instruction kinds ----
  bool do_alu(const Insn& in);
  bool do_ptr_arith(const Insn& in, Reg& dst, const Reg& src, int op);
  bool do_cond_jump(const Insn& in);
  bool do_load_imm64(const Insn& in);
  bool do_load(const Insn& in);
  bool do_store(const Insn& in);
  bool do_atomic(const Insn& in);
  bool do_ld_abs(const Insn& in);
  bool do_exit(const Insn& in);
  // Before a callback's next invocation (starting at `entry`): the callers' scalars (registers and
  // spilled) that differ from the state the finished invocation started in and that are not precise
  // there (so far) become unknown, as the kernel's widen_imprecise_scalars does, so that a counter no
  // decision needs converges.
  void widen_imprecise(State& next, int32_t entry);
  bool do_call_local(const Insn& in);
  bool do_call_helper(const Insn& in);

  // ---- memory ----
  // Checks an access of `size` bytes at base+off. For reads into a register, *out gets the value.
  bool check_mem(int regno, const Reg& base, int32_t off, int size, Access acc, const Reg* value, Reg* out,
                 bool sign_ext = false);
  bool stack_access(int regno, const Reg& base, int32_t off, int size, Access acc, const Reg* value, Reg* out);
  bool check_region(int regno, const Reg& base, int64_t off, int size, uint64_t region, const char* what);
  // Context and kernel-object loads of BTF-typed programs.
  bool btf_ctx_load(int regno, int32_t off, int size, bool write, Reg* out);
  bool btf_ptr_access(int regno, const Reg& base, int32_t off, int size, bool write, bool direct, Reg* out);
  uint8_t walked_ptr_flags(const Reg& base, const BtfLoad& l, Reg* out);
  void btf_note_unchecked() { unchecked_load_ = true; }
  bool unchecked_load_ = false;  // the access reads kernel memory through a faulting load (no in_bounds fact)
  Reg stack_read(Frame& fr, int32_t abs, int size, bool* ok, int regno);
  void stack_write(Frame& fr, int32_t abs, int size, const Reg* value);
  // The constant stored in `size` stack bytes at `ptr` (a stack pointer with a constant offset), when
  // every byte is known.
  bool stack_const(const Reg& ptr, int size, uint64_t* out);
  // The same from what pruning compares (zero bytes, spilled constant scalars); `slots`: the slots of
  // frame ptr.frame's stack it read (to be made precise).
  bool stack_key_const(const Reg& ptr, int size, uint64_t* out, uint64_t* slots);

  // ---- helpers for state updates ----
  bool check_reg_init(int regno);
  template <class F>
  void for_each_reg(State& st, F&& f);
  void propagate_scalar_id(State& st, const Reg& r);
  void mark_ptr_or_null(State& st, uint32_t id, bool is_null);
  void release_ref(State& st, uint32_t ref);
  void clobber_packet_pointers(State& st);
  uint32_t new_id() { return ++id_gen_; }
  const MapSpec* map_of(const Reg& r) const {
    return r.map >= 0 && r.map < static_cast<int32_t>(maps_.size()) ? &maps_[r.map] : nullptr;
  }
  bool strict() const { return opts_.rules == RuleSet::Strict; }

  // ---- errors and log ----
  bool reject(std::string msg, int regno = -1, std::string explanation = "");
  void log_insn(bool with_state);
  std::string rstr(const Reg& r) const { return reg_str(r, &maps_); }

  std::span<const Insn> insns_;
  const VerifyOptions& opts_;
  const ProgTypeInfo& type_;
  const AttachProto* attach_ = nullptr;  // BTF-typed context (fentry, tp_btf, lsm, iter ...)
  const Cfg& cfg_;
  VerifyReport& rep_;
  std::vector<MapSpec> maps_;       // options' maps plus inner maps of map-in-map
  std::vector<int32_t> inner_of_;   // per map: index of its inner map spec, or -1
  std::vector<bool> map_rdonly_;

  State cur_;
  int64_t pc_ = 0;
  bool path_done_ = false;
  std::vector<std::pair<State, int64_t>> pending_;
  std::vector<std::vector<Node*>> visited_;  // completed states per instruction (prune candidates)
  // In-progress states per instruction (for the infinite-loop check; their hashes are computed
  // only when a state comes back to their instruction), and their number.
  std::vector<std::unordered_multimap<uint64_t, Node*>> in_progress_;  // hashed
  std::vector<std::vector<Node*>> in_progress_unhashed_;               // not hashed yet
  std::vector<uint32_t> in_progress_count_;
  // Stored states are owned through in_progress_ / in_progress_unhashed_ (while in progress) and
  // visited_ (complete); a complete state evicted from visited_ can never be matched or reached
  // again and is freed.
  uint64_t live_nodes_ = 0;
  uint32_t id_gen_ = kMemLenId;
  uint64_t processed_ = 0;
  uint64_t last_ckpt_processed_ = 0;
  uint64_t jmps_processed_ = 0;       // jumps, calls and exits processed (the kernel's heuristic)
  uint64_t last_ckpt_jmps_ = 0;
  uint64_t mem_bytes_ = 0;
  std::vector<int32_t> stack_depth_;  // per function: deepest byte used
  bool log_full_ = false;
  bool mem_unknown_ = false;          // kProgMem with unknown size
  int in_value_reg_ = -1;             // register holding the value of the store being checked
  std::chrono::steady_clock::time_point t0_;
  std::vector<uint8_t> stack_load_;  // per instruction: a load that read the stack (atomics: see back_insn)
};

// Plain-words explanation of a rejection message: what would go wrong and how such code is fixed.
std::string explain(const std::string& message);

}  // namespace bpfvm::verifier
