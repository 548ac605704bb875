// The exploration loop (depth-first over paths with pruning), ALU and jump transfer functions,
// exits, and the public entry point.
#include <fmt/format.h>

#include <algorithm>

#include "bpfvm/asm.hpp"
#include "verifier/impl.hpp"

namespace bpfvm {

const char* rule_set_name(RuleSet r) { return r == RuleSet::Strict ? "strict" : "privileged"; }

CtxBaseFacts VerifyReport::ctx_base_facts() const {
  CtxBaseFacts out(facts.size(), BaseFact::NotCtx);
  for (size_t i = 0; i < facts.size(); ++i) out[i] = facts[i].base;
  return out;
}

namespace verifier {

Verifier::Verifier(std::span<const Insn> insns, const VerifyOptions& opts, const Cfg& cfg, VerifyReport& report)
    : insns_(insns), opts_(opts), type_(*opts.type), cfg_(cfg), rep_(report) {
  maps_ = opts.maps;
  if (opts.attach_btf && opts.attach_btf->impl) attach_ = static_cast<const AttachProto*>(opts.attach_btf->impl.get());
  map_rdonly_.assign(maps_.size(), false);
  for (size_t i = 0; i < maps_.size(); ++i) {
    if (i < opts.map_readonly.size() && opts.map_readonly[i]) map_rdonly_[i] = true;
    if (maps_[i].flags & kMapFRdonlyProg) map_rdonly_[i] = true;
  }
  inner_of_.assign(maps_.size(), -1);
  for (size_t i = 0; i < opts.maps.size(); ++i) {
    if (opts.maps[i].inner) {
      inner_of_[i] = static_cast<int32_t>(maps_.size());
      maps_.push_back(*opts.maps[i].inner);
      map_rdonly_.push_back(false);
      inner_of_.push_back(-1);
    }
  }
  visited_.resize(insns.size());
  in_progress_.resize(insns.size());
  in_progress_unhashed_.resize(insns.size());
  in_progress_count_.assign(insns.size(), 0);
  stack_load_.assign(insns.size(), 0);
  stack_depth_.assign(cfg.func_starts.size(), 0);
  rep_.facts.assign(insns.size(), InsnFacts{});
  mem_unknown_ = type_.type == kProgMem && opts.mem_size < 0;
  init_xfer();
}

void Verifier::init_state() {
  cur_ = State{};
  Frame f;
  f.subprog = 0;
  f.regs[10] = Reg::ptr(Kind::Stack, 0);
  if (type_.type == kProgMem) {
    if (mem_unknown_) {
      f.regs[1] = Reg::ptr(Kind::Packet);
      f.regs[2] = Reg::scalar(Scalar::urange(0, UINT32_MAX));
      f.regs[2].id = kMemLenId;
      cur_.mem_len = f.regs[2].v;
    } else {
      f.regs[1] = Reg::ptr(Kind::Mem);
      f.regs[1].mem_size = static_cast<uint32_t>(opts_.mem_size);
      f.regs[2] = Reg::scalar(Scalar::constant(static_cast<uint64_t>(opts_.mem_size)));
    }
  } else {
    f.regs[1] = Reg::ptr(Kind::Ctx);
  }
  cur_.frames.push_back(std::move(f));
}

bool Verifier::reject(std::string msg, int regno, std::string explanation) {
  rep_.insns_processed = std::min(processed_, opts_.limits.insn_budget);
  Diagnostic& d = rep_.error;
  d.code = ErrorCode::Verify;
  d.pc = pc_;
  d.message = std::move(msg);
  if (regno >= 0 && regno <= 10 && !cur_.frames.empty()) {
    const Reg& r = cur_.cur().regs[regno];
    d.message += fmt::format(" (R{}={})", regno, regno == 10 ? std::string("fp0") : rstr(r));
  }
  if (opts_.source_line && pc_ >= 0) d.source_line = opts_.source_line(static_cast<size_t>(pc_));
  rep_.explanation = explanation.empty() ? explain(d.message) : std::move(explanation);
  if (opts_.log_level >= 1 && !log_full_) {
    if (!d.source_line.empty()) rep_.log += "; " + d.source_line + "\n";
    rep_.log += d.message + "\n";
  }
  return false;
}

void Verifier::log_insn(bool with_state) {
  if (log_full_) return;
  if (rep_.log.size() > (64u << 20)) {
    rep_.log += "... (log truncated at 64 MiB)\n";
    log_full_ = true;
    return;
  }
  if (with_state) rep_.log += fmt::format("{}: {}\n", pc_, state_str(cur_, &maps_));
  DisasmOptions o;
  o.show_index = false;
  o.helper_name = [](int32_t id) -> std::string_view {
    const HelperProto* p = kernel_helper_proto(id);
    return p ? p->name : std::string_view();
  };
  rep_.log += fmt::format("{}: {}\n", pc_, format_insn(insns_[pc_], pc_, o));
}

void Verifier::live_for(const State& st, int64_t pc, std::vector<LiveSet>& live) const {
  live.assign(st.frames.size(), 0);
  for (size_t f = 0; f + 1 < st.frames.size(); ++f) {
    int64_t ret = st.frames[f + 1].callsite + 1;
    live[f] = ret < static_cast<int64_t>(cfg_.live_in.size()) ? cfg_.live_in[ret] : 0x7ff;
    live[f] |= 0x3c0;  // r6..r9 of callers survive the call
  }
  live.back() = cfg_.live_in[pc];
}

bool Verifier::is_state_visited(bool& pruned) {
  pruned = false;
  auto& list = visited_[pc_];
  const bool looping = in_progress_count_[pc_] > 0;
  uint64_t cur_hash = 0;
  bool hashed = false;
  const int cb_func = cfg_.func_of[pc_];
  const bool cb_entry = cfg_.is_callback[cb_func] && cfg_.func_starts[cb_func] == pc_;
  if (looping && cb_entry) {
    // Another invocation of a callback (bpf_loop...): the helper bounds the iterations, so coming back
    // in a state covered by an invocation being explored adds nothing: the states converged.
    live_for(cur_, pc_, live_buf_);
    // The invocation in progress has not finished marking what its descendants need, so the
    // comparison is exact (every live scalar's range, the whole stack; the kernel's RANGE_WITHIN);
    // its marks are backtracked along this path now and again when they are final (add_backedge).
    precise_buf_.assign(cur_.frames.size(), LiveSet{0x7ff});
    auto covers = [&](Node* ip) {
      return ip->branches > 0 && state_covered(ip->st, cur_, live_buf_, precise_buf_, true);
    };
    Node* hit = nullptr;
    for (Node* ip : in_progress_unhashed_[pc_])
      if (!hit && covers(ip)) hit = ip;
    for (auto& [h, ip] : in_progress_[pc_])
      if (!hit && covers(ip)) hit = ip;
    if (hit) {
      const std::vector<LiveSet> live = live_buf_;
      add_backedge(hit, live);
      hit->hits++;
      pruned = true;
      return true;
    }
  } else if (looping) {
    cur_hash = state_hash(cur_);
    hashed = true;
    auto& unhashed = in_progress_unhashed_[pc_];
    for (Node* ip : unhashed) in_progress_[pc_].emplace(ip->get_hash(), ip);
    unhashed.clear();
    auto range = in_progress_[pc_].equal_range(cur_hash);
    for (auto it = range.first; it != range.second; ++it) {
      Node* ip = it->second;
      if (ip->branches > 0 && state_same(ip->st, cur_))
        return reject(fmt::format("infinite loop detected at insn {}", pc_), -1,
                      "The program comes back to this instruction in exactly the same state, so nothing "
                      "changes between iterations and the loop can never end. Make sure the loop variable "
                      "changes on every iteration and is compared against a bound.");
    }
  }
  // The kernel's heuristic: store a new state only after at least 2 jumps and 8 instructions since
  // the last one (pruning is still tried at every prune point); inside a loop (a state at this
  // instruction is in progress) only after 20 jumps or 100 instructions, as different iterations
  // rarely prune each other. A callback's entry gets one at every invocation, whatever the distance
  // (its invocations converge there, each against the ones before; the kernel forces a checkpoint at
  // the helper call for the same reason).
  bool add_new = cb_entry ||
                 (jmps_processed_ - last_ckpt_jmps_ >= 2 && processed_ - last_ckpt_processed_ >= 8);
  if (looping && !cb_entry && processed_ - last_ckpt_processed_ < 100 && jmps_processed_ - last_ckpt_jmps_ < 20)
    add_new = false;
  if (!list.empty()) {
    std::vector<LiveSet>& live = live_buf_;
    std::vector<LiveSet>& precise = precise_buf_;
    live_for(cur_, pc_, live);
    const bool uninit_ok = !strict();
    size_t keep = 0;
    for (size_t idx = 0; idx < list.size(); ++idx) {
      Node* n = list[idx];
      list[keep++] = n;
      // The node's own precision and stack liveness.
      precise.resize(cur_.frames.size());
      const bool all = n->pall || n->exact;
      for (size_t f = 0; f < precise.size(); ++f) precise[f] = all ? LiveSet{0x7ff} : n->pprec[f];
      const bool stack_precise = all;
      const uint64_t slots_live = n->exact ? ~uint64_t{0} : n->sread;
      const uint64_t* slots_precise = n->pstack.data();
      if (state_covered(n->st, cur_, live, precise, stack_precise, slots_live, slots_precise, uninit_ok)) {
        if (n->exact) {
          // Its marks may still grow: everything compared is needed here.
          mark_stack_read(~uint64_t{0});
          backtrack_all_live(live);
        } else {
          // This path continues as the node's did: what the node's descendants read and needed
          // precisely is read and needed on this path too.
          mark_stack_read(n->sread);
          if (n->pall) {
            mark_all_from(cur_.parent);
          } else {
            Need need;
            for (size_t f = 0; f < cur_.frames.size() && f < live.size(); ++f) {
              need.regs[f] = static_cast<LiveSet>(n->pprec[f] & live[f]);
              need.slots[f] = n->pstack[f];
            }
            if (!need.none()) backtrack(need, cur_.hist.size());
          }
        }
        n->hits++;
        pruned = true;
        for (size_t j = idx + 1; j < list.size(); ++j) list[keep++] = list[j];
        list.resize(keep);
        return true;
      }
      // Misses count only where a new state is stored (otherwise the iterations of a loop would
      // evict the states stored at its start).
      if (add_new) n->misses++;
      // Evict states that keep failing to prune (the kernel's heuristic). A complete state is no
      // one's ancestor on a path still being explored, so it is freed.
      if (n->misses > n->hits * 3 + 3 && !n->pin_owner) {
        keep--;
        free_node(n);
      }
    }
    list.resize(keep);
  }
  if (!add_new) return true;
  if (rep_.states >= opts_.limits.max_states) return true;  // stop storing; exploration continues
  auto node = std::make_unique<Node>();
  node->seg = std::move(cur_.hist);
  cur_.hist.clear();
  mem_bytes_ += node->seg.capacity() * sizeof(HistEntry);
  node->st = cur_;
  node->st.parent = cur_.parent;
  node->pc = static_cast<int32_t>(pc_);
  node->level = cur_.parent ? cur_.parent->level + 1 : 0;
  node->branches = 1;
  node->hash = cur_hash;
  node->hashed = hashed;
  cur_.parent = node.get();
  cur_.swritten = 0;
  mem_bytes_ += node->st.approx_bytes() + sizeof(Node);
  rep_.peak_memory = std::max(rep_.peak_memory, mem_bytes_);
  if (hashed)
    in_progress_[pc_].emplace(cur_hash, node.get());
  else
    in_progress_unhashed_[pc_].push_back(node.get());
  in_progress_count_[pc_]++;
  node.release();
  rep_.states++;
  live_nodes_++;
  rep_.peak_states = std::max(rep_.peak_states, live_nodes_);
  last_ckpt_processed_ = processed_;
  last_ckpt_jmps_ = jmps_processed_;
  if (mem_bytes_ > opts_.limits.max_memory)
    return reject(fmt::format("verifier state exceeds the memory cap of {} MiB ({} states stored)",
                              opts_.limits.max_memory >> 20, rep_.states),
                  -1,
                  "The program has too many distinct paths for the verifier to keep track of. Reduce the "
                  "number of branches whose outcome depends on earlier branches, or split the program.");
  return true;
}

void Verifier::free_node(Node* n) {
  mem_bytes_ -= std::min<uint64_t>(mem_bytes_, n->st.approx_bytes() + sizeof(Node) + n->seg.capacity() * sizeof(HistEntry));
  live_nodes_--;
  delete n;
}

Verifier::~Verifier() {
  for (auto& l : visited_)
    for (Node* n : l) delete n;
  for (auto& l : in_progress_unhashed_)
    for (Node* n : l) delete n;
  for (auto& m : in_progress_)
    for (auto& [h, n] : m) delete n;
}

// ---- path precision ------------------------------------------------------------------------------

void Verifier::mark_all_from(Node* n) {
  for (; n && !n->pall; n = n->st.parent) {
    n->pall = true;
    marks_added_++;
  }
}

void Verifier::add_backedge(Node* target, const std::vector<LiveSet>& live) {
  // The states between the target and here: their precision waits for the target's.
  for (Node* n = cur_.parent; n && n != target; n = n->st.parent) {
    n->exact = true;
    if (!n->pin_owner || target->level < n->pin_owner->level) {
      n->pin_owner = target;
      if (!target->loop) target->loop = std::make_unique<LoopInfo>();
      target->loop->members.push_back(n);
    }
  }
  mark_stack_read(~uint64_t{0});
  if (target->pall) {
    mark_all_from(cur_.parent);
    return;
  }
  Need need;
  for (size_t f = 0; f < cur_.frames.size() && f < live.size(); ++f) {
    need.regs[f] = static_cast<LiveSet>(target->pprec[f] & live[f]);
    need.slots[f] = target->pstack[f];
  }
  if (!need.none()) backtrack(need, cur_.hist.size());
  if (!target->loop) target->loop = std::make_unique<LoopInfo>();
  Backedge e;
  e.target = target;
  e.parent = cur_.parent;
  e.hist = cur_.hist;
  e.live = live;
  e.depth = depth();
  e.pc = pc_;
  target->loop->edges.push_back(std::move(e));
}

void Verifier::resolve_backedges(Node* a) {
  LoopInfo& li = *a->loop;
  if (a->pin_owner) {
    // Inside another invocation in progress: a's marks may grow until that one completes.
    Node* outer = a->pin_owner;
    if (!outer->loop) outer->loop = std::make_unique<LoopInfo>();
    for (auto& e : li.edges) outer->loop->edges.push_back(std::move(e));
    for (Node* m : li.members)
      if (m->pin_owner == a) {
        m->pin_owner = outer;
        outer->loop->members.push_back(m);
      }
    a->loop.reset();
    return;
  }
  for (int round = 0;; ++round) {
    const uint64_t before = marks_added_;
    for (Backedge& e : li.edges) {
      Node* t = e.target;
      if (t->pall || round >= 64) {  // (64 rounds: not expected; be conservative)
        mark_all_from(e.parent);
        continue;
      }
      Need need;
      for (size_t f = 0; f < e.live.size() && f < static_cast<size_t>(kMaxFrames); ++f) {
        need.regs[f] = static_cast<LiveSet>(t->pprec[f] & e.live[f]);
        need.slots[f] = t->pstack[f];
      }
      if (!need.none()) backtrack_path(need, e.hist, e.hist.size(), e.parent, e.depth, e.pc);
    }
    if (marks_added_ == before) break;
  }
  for (Node* m : li.members) {
    if (m->pin_owner != a) continue;
    m->pin_owner = nullptr;
    if (m->branches == 0) {
      mem_bytes_ -= std::min<uint64_t>(mem_bytes_, m->seg.capacity() * sizeof(HistEntry));
      std::vector<HistEntry>().swap(m->seg);
    }
  }
  a->loop.reset();
}

// Before each instruction: which registers the needed ones (after it) were computed from.
void Verifier::init_xfer() {
  xfer_.assign(insns_.size(), BackXfer{});
  auto bit = [](int r) { return static_cast<LiveSet>(1u << r); };
  for (size_t pc = 0; pc < insns_.size(); ++pc) {
    const Insn& in = insns_[pc];
    if (in.op == Op::LDDW_HI) continue;
    const OpInfo& info = in.info();
    BackXfer& x = xfer_[pc];
    switch (info.kind) {
      case OpKind::Alu:
        x.def = bit(in.dst);
        if (in.op == Op::MOV64_IMM || in.op == Op::MOV32_IMM) break;
        if (in.op == Op::MOV64_REG || in.op == Op::MOV32_REG || (in.op >= Op::MOVSX64_8 && in.op <= Op::MOVSX32_16))
          x.srcs = bit(in.src);
        else
          x.srcs = static_cast<LiveSet>(bit(in.dst) | (info.uses_reg_src ? bit(in.src) : 0));
        break;
      case OpKind::CondJump:  // a comparison of two registers refines each by the other
        if (info.uses_reg_src) x.join = static_cast<LiveSet>(bit(in.dst) | bit(in.src));
        break;
      case OpKind::Call:
        // A bpf-to-bpf call passes r1-r5 on (crossing into the callee's frame is cross_frames').
        if (in.op == Op::CALL_LOCAL) break;
        x.def = 0x3f;  // r0 is the helper's result; r1-r5 are cleared
        break;
      case OpKind::LoadPacket:
        x.def = 0x3f;  // r0 is the helper's (or the load's) result; r1-r5 are cleared
        break;
      case OpKind::LoadImm64:
        x.def = bit(in.dst);
        break;
      case OpKind::Load:
        x.def = bit(in.dst);
        x.may_fill = true;
        break;
      case OpKind::Store:
        x.store = true;
        break;
      case OpKind::StoreReg:
        x.store = true;
        x.srcs = bit(in.src);
        break;
      case OpKind::Atomic:
        if (in.op == Op::ATOMIC_CMPXCHG32 || in.op == Op::ATOMIC_CMPXCHG64) x.def = bit(0);
        else if (in.imm & 1) x.def = bit(in.src);
        x.may_fill = true;
        x.atomic = true;
        break;
      default:
        break;
    }
  }
}

bool Verifier::cross_frames(const HistEntry& h, int64_t next_pc, int& bf, Need& need) const {
  const int d = h.frame;
  if (d == bf) {
    // An exit followed by an instruction of the same depth: the helper invoked the callback again,
    // in a fresh frame whose r1-r5 it set; nothing of the finished invocation's frame flows into it.
    if (insns_[h.pc].op == Op::EXIT) {
      need.regs[bf] = 0;
      need.slots[bf] = 0;
    }
    return true;
  }
  if (d == bf - 1) {
    // `h` called the function whose first instruction follows: its r1-r5 were the caller's (a
    // bpf-to-bpf call) or set by the helper (a callback); its other registers and its stack were
    // empty.
    const Op op = insns_[h.pc].op;
    if (op != Op::CALL_LOCAL && op != Op::CALL_HELPER) return false;
    if (op == Op::CALL_LOCAL) need.regs[d] |= static_cast<LiveSet>(need.regs[bf] & 0x3e);
    need.regs[bf] = 0;
    need.slots[bf] = 0;
    bf = d;
    return true;
  }
  if (d == bf + 1 && d < kMaxFrames && insns_[h.pc].op == Op::EXIT) {
    // `h` returned to next_pc: from a bpf-to-bpf call the caller's r0 is the callee's; after a
    // callback the helper sets r0. r1-r5 are cleared by the return.
    const bool r0 = (need.regs[bf] & 1) && next_pc >= 1 && insns_[next_pc - 1].op == Op::CALL_LOCAL;
    need.regs[bf] = static_cast<LiveSet>(need.regs[bf] & ~0x3f);
    bf = d;
    need.regs[bf] = r0 ? 1 : 0;
    need.slots[bf] = 0;
    return true;
  }
  return false;
}

void Verifier::backtrack_path(Need need, std::vector<HistEntry>& hist, size_t end, Node* parent, int depth,
                              int64_t pc) {
  std::vector<HistEntry>* seg = &hist;
  Node* node = parent;
  // The call depth and instruction of the position after the entries still to walk back.
  int bf = end < seg->size() ? (*seg)[end].frame : depth;
  int64_t next_pc = end < seg->size() ? (*seg)[end].pc : pc;
  for (;;) {
    for (size_t i = std::min(end, seg->size()); i-- > 0;) {
      HistEntry& h = (*seg)[i];
      if (!cross_frames(h, next_pc, bf, need) || !back_insn(h, need)) {
        mark_all_from(node);
        return;
      }
      next_pc = h.pc;
      // What was already backtracked from here on (in this frame) was marked above (the marks
      // distribute over unions), so only the rest goes on.
      LiveSet& r = need.regs[bf];
      uint64_t& sl = need.slots[bf];
      r = static_cast<LiveSet>(r & ~h.marked & 0x3ff);
      sl &= ~h.smarked;
      if (need.none(bf)) return;
      h.marked |= r;
      h.smarked |= sl;
    }
    if (need.none(bf) || !node || node->pall) return;
    if (static_cast<int>(node->st.frames.size()) - 1 != bf) {  // not expected: be conservative
      mark_all_from(node);
      return;
    }
    bool fresh = false;
    for (int f = 0; f <= bf; ++f) {
      need.regs[f] = static_cast<LiveSet>(need.regs[f] & 0x3ff & ~node->pprec[f]);
      need.slots[f] &= ~node->pstack[f];
      node->pprec[f] |= need.regs[f];
      node->pstack[f] |= need.slots[f];
      fresh |= need.regs[f] || need.slots[f];
    }
    if (fresh) marks_added_++;
    if (!fresh) return;  // already marked there, and (so) above
    seg = &node->seg;
    end = seg->size();
    node = node->st.parent;
  }
}

void Verifier::backtrack_all_live(const std::vector<LiveSet>& live) {
  Need need;
  for (size_t f = 0; f < cur_.frames.size() && f < static_cast<size_t>(kMaxFrames); ++f) {
    const Frame& fr = cur_.frames[f];
    for (int r = 0; r < 10; ++r)
      if (f < live.size() && ((live[f] >> r) & 1) && fr.regs[r].kind == Kind::Scalar)
        need.regs[f] |= static_cast<LiveSet>(1u << r);
    for (size_t i = 0; i < fr.stack.size() && i < 64; ++i) {
      const Slot& sl = fr.stack[i];
      bool exact = sl.bytes[0] == kStackSpill && sl.spill.kind == Kind::Scalar;
      for (uint8_t b : sl.bytes) exact |= b == kStackZero;
      if (exact) need.slots[f] |= uint64_t{1} << i;
    }
  }
  if (!need.none()) backtrack(need, cur_.hist.size());
}

void Verifier::mark_stack_read(uint64_t mask) {
  mask &= ~cur_.swritten;
  for (Node* n = cur_.parent; n && mask; n = n->st.parent) {
    uint64_t fresh = mask & ~n->sread;
    if (!fresh) return;  // marked before, and from there on up as far as it reaches
    n->sread |= fresh;
    mask = fresh & ~n->st.swritten;
  }
}

void Verifier::push_branch(State st, int64_t pc) {
  if (st.parent) st.parent->branches++;
  mem_bytes_ += st.approx_bytes();
  rep_.peak_memory = std::max(rep_.peak_memory, mem_bytes_);
  pending_.emplace_back(std::move(st), pc);
}

void Verifier::finish_path() {
  for (Node* n = cur_.parent; n; n = n->st.parent) {
    if (n->branches > 0) n->branches--;
    if (n->branches > 0) break;
    // Complete: everything below it was explored; it may now prune.
    if (n->hashed) {
      auto range = in_progress_[n->pc].equal_range(n->hash);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second == n) {
          in_progress_[n->pc].erase(it);
          break;
        }
    } else {
      auto& ip = in_progress_unhashed_[n->pc];
      for (size_t i = ip.size(); i-- > 0;)
        if (ip[i] == n) {
          ip[i] = ip.back();
          ip.pop_back();
          break;
        }
    }
    in_progress_count_[n->pc]--;
    if (n->loop) resolve_backedges(n);
    // Only paths below a state in progress backtrack through its path segment (and backedges not
    // resolved yet through their pinned states').
    if (!n->pin_owner) {
      mem_bytes_ -= std::min<uint64_t>(mem_bytes_, n->seg.capacity() * sizeof(HistEntry));
      std::vector<HistEntry>().swap(n->seg);
    }
    visited_[n->pc].push_back(n);
  }
}

template <class F>
void Verifier::for_each_reg(State& st, F&& f) {
  for (Frame& fr : st.frames) {
    for (Reg& r : fr.regs) f(r);
    for (Slot& s : fr.stack)
      if (s.bytes[0] == kStackSpill) f(s.spill);
  }
}

void Verifier::propagate_scalar_id(State& st, const Reg& r) {
  if (r.kind != Kind::Scalar || r.id == 0) return;
  for_each_reg(st, [&](Reg& x) {
    if (x.kind == Kind::Scalar && x.id == r.id) x.v = r.v;
  });
  if (r.id == kMemLenId) st.mem_len = r.v;
}

void Verifier::mark_ptr_or_null(State& st, uint32_t id, bool is_null) {
  uint32_t ref = 0;
  for_each_reg(st, [&](Reg& x) {
    if (!is_or_null(x.kind) || x.id != id) return;
    if (is_null) {
      ref = x.ref ? x.ref : ref;
      x = Reg::scalar(Scalar::constant(0));
    } else {
      x.kind = non_null(x.kind);
      if (x.kind != Kind::Sock && x.kind != Kind::Mem) x.id = 0;
    }
  });
  if (is_null && ref) release_ref(st, ref);
}

void Verifier::release_ref(State& st, uint32_t ref) {
  st.refs.erase(std::remove_if(st.refs.begin(), st.refs.end(), [&](const RefState& r) { return r.id == ref; }),
                st.refs.end());
  for_each_reg(st, [&](Reg& x) {
    if (x.ref == ref && is_pointer(x.kind)) x = Reg::unknown();
  });
}

void Verifier::clobber_packet_pointers(State& st) {
  for_each_reg(st, [&](Reg& x) {
    if (x.kind == Kind::Packet || x.kind == Kind::PacketMeta || x.kind == Kind::PacketEnd) x = Reg::unknown();
  });
}

bool Verifier::check_reg_init(int regno) {
  if (cur_.cur().regs[regno].kind == Kind::NotInit)
    return reject(fmt::format("R{} !read_ok", regno), -1,
                  fmt::format("Register r{} is read here but no value was written to it on this path (registers "
                              "r1-r5 are also cleared by every call). Initialise it before use, or re-load it "
                              "after the call.",
                              regno));
  return true;
}

// ---- the loop -----------------------------------------------------------------------------------

bool Verifier::run() {
  t0_ = std::chrono::steady_clock::now();
  init_state();
  pc_ = 0;
  if (!opts_.attach_error.empty())
    return reject("attach target: " + opts_.attach_error, -1,
                  "fentry/fexit/fmod_ret, tp_btf, lsm and iter programs are typed by the prototype of what they "
                  "attach to, looked up in the kernel's BTF; the target the section names was not found there.");
  for (;;) {
    if (path_done_) {
      finish_path();
      if (pending_.empty()) break;
      mem_bytes_ -= std::min(mem_bytes_, pending_.back().first.approx_bytes());
      cur_ = std::move(pending_.back().first);
      pc_ = pending_.back().second;
      pending_.pop_back();
      path_done_ = false;
      if (opts_.log_level >= 2 && !log_full_) rep_.log += fmt::format("from branch to {}:\n", pc_);
    }
    if (++processed_ > opts_.limits.insn_budget) {
      rep_.insns_processed = processed_ - 1;
      reject(fmt::format("BPF program is too large. Processed {} insn", opts_.limits.insn_budget), -1,
             "The verifier walks every path through the program, and every iteration of a loop; this program "
             "needs more than the budget of 1,000,000 instruction visits. Reduce loop bounds, use bpf_loop() "
             "for long loops, or split the work with tail calls.");
      rep_.error.code = ErrorCode::Budget;
      return false;
    }
    if (cfg_.prune_point[pc_]) {
      bool pruned = false;
      if (!is_state_visited(pruned)) return false;
      if (pruned) {
        if (opts_.log_level >= 2 && !log_full_) rep_.log += fmt::format("{}: safe\n", pc_);
        path_done_ = true;
        continue;
      }
    }
    rep_.facts[pc_].visited = true;
    {
      HistEntry h{static_cast<int32_t>(pc_), 0};
      h.frame = static_cast<uint8_t>(depth());
      cur_.hist.push_back(h);
    }
    if (Frame& cf = cur_.cur(); cf.callback && cf.cb_args.empty() && pc_ == cf.subprog)
      cf.cb_args.assign(cf.regs.begin() + 1, cf.regs.begin() + 6);
    if (opts_.log_level >= 1) log_insn(opts_.log_level >= 2);
    if (!step()) return false;
  }
  rep_.insns_processed = processed_;

  // Combined stack depth per call chain.
  const size_t nf = cfg_.func_starts.size();
  std::vector<int32_t> memo(nf, -1);
  std::vector<uint8_t> on(nf, 0);
  std::function<int32_t(int)> depth = [&](int f) -> int32_t {
    if (memo[f] >= 0) return memo[f];
    if (on[f]) return 0;
    on[f] = 1;
    int32_t own = std::max(stack_depth_[f], 1);
    own = (own + 31) / 32 * 32;
    int32_t best = 0;
    for (int c : cfg_.callees[f])
      if (c >= 0) best = std::max(best, depth(c));
    on[f] = 0;
    return memo[f] = own + best;
  };
  int32_t total = depth(0);
  if (stack_depth_[0] == 0 && cfg_.callees[0].empty()) total = 0;
  rep_.max_stack_depth = static_cast<uint32_t>(total);
  if (total > kStackSize) {
    pc_ = 0;
    return reject(fmt::format("combined stack size of the call chain is {}. Too large (limit {})", total, kStackSize),
                  -1,
                  "Every function's stack frame (rounded up to 32 bytes) counts towards a limit of 512 bytes for "
                  "the deepest chain of bpf-to-bpf calls. Move large buffers into a per-CPU array map, or inline "
                  "the functions that need them.");
  }
  return true;
}

bool Verifier::step() {
  const Insn& in = insns_[pc_];
  const OpKind kind = in.info().kind;
  if (kind == OpKind::Jump || kind == OpKind::CondJump || kind == OpKind::Call || kind == OpKind::Exit)
    jmps_processed_++;
  switch (kind) {
    case OpKind::Alu:
      if (!do_alu(in)) return false;
      pc_++;
      return true;
    case OpKind::Jump:
      pc_ = jump_target(in, pc_);
      return true;
    case OpKind::CondJump:
      return do_cond_jump(in);
    case OpKind::Call:
      if (in.op == Op::CALL_LOCAL) return do_call_local(in);
      if (in.op == Op::CALL_HELPER) return do_call_helper(in);
      if (in.op == Op::CALLX)
        return reject("callx (indirect call through a register) is not supported", -1,
                      "The kernel does not accept indirect calls in BPF programs. Call the function directly.");
      return reject(fmt::format("kernel function calls (kfunc, btf id {}) are not supported", in.imm), -1,
                    "kfuncs are kernel functions identified by BTF ids of one particular kernel build; bpfvm has no "
                    "kernel to bind them to. Use a helper with the same purpose.");
    case OpKind::Exit:
      return do_exit(in);
    case OpKind::LoadImm64:
      if (!do_load_imm64(in)) return false;
      pc_ += 2;
      return true;
    case OpKind::LoadPacket:
      if (!do_ld_abs(in)) return false;
      pc_++;
      return true;
    case OpKind::Load:
      if (!do_load(in)) return false;
      pc_++;
      return true;
    case OpKind::Store:
    case OpKind::StoreReg:
      if (!do_store(in)) return false;
      pc_++;
      return true;
    case OpKind::Atomic:
      if (!do_atomic(in)) return false;
      pc_++;
      return true;
    case OpKind::Pseudo:
      return reject("jump into the middle of an lddw");
  }
  return reject("unknown instruction");
}

// ---- ALU ----------------------------------------------------------------------------------------

namespace {
int alu_op(Op op) {
  const OpInfo& i = op_info(op);
  int code = i.code & 0xf0;
  if (i.sel == Sel::OFF && i.selval == 1) return code == 0x30 ? kSdiv : kSmod;
  return code;
}
const char* alu_name(int op) {
  switch (op) {
    case kAdd: return "+=";
    case kSub: return "-=";
    case kMul: return "*=";
    case kDiv: return "/=";
    case kOr: return "|=";
    case kAnd: return "&=";
    case kLsh: return "<<=";
    case kRsh: return ">>=";
    case kMod: return "%=";
    case kXor: return "^=";
    case kArsh: return "s>>=";
    case kNeg: return "neg";
    case kSdiv: return "s/=";
    case kSmod: return "s%=";
  }
  return "?";
}
}  // namespace

bool Verifier::do_alu(const Insn& in) {
  const OpInfo& info = in.info();
  Frame& fr = cur_.cur();
  Reg& dst = fr.regs[in.dst];
  const bool is32 = !info.alu64;
  // Moves, sign-extending moves.
  if (in.op == Op::MOV64_IMM || in.op == Op::MOV32_IMM) {
    uint64_t v = is32 ? static_cast<uint32_t>(in.imm) : static_cast<uint64_t>(in.imm);
    dst = Reg::scalar(Scalar::constant(v));
    return true;
  }
  if (in.op == Op::MOV64_REG || in.op == Op::MOV32_REG) {
    if (!check_reg_init(in.src)) return false;
    Reg& src = fr.regs[in.src];
    if (!is32) {
      if (src.kind == Kind::Scalar && !src.v.is_const() && src.id == 0) src.id = new_id();
      dst = src;
      return true;
    }
    if (src.kind != Kind::Scalar) {
      if (strict()) return reject(fmt::format("R{} partial copy of pointer", in.src), in.src);
      dst = Reg::scalar(Scalar::urange(0, UINT32_MAX));
      return true;
    }
    Reg r = Reg::scalar(src.v.low32());
    if (src.v.umax <= UINT32_MAX && !src.v.is_const()) {
      // A 32-bit move of a value that fits keeps the link with the source (same value).
      if (src.id == 0) src.id = new_id();
      r.id = src.id;
    }
    dst = r;
    return true;
  }
  if (in.op >= Op::MOVSX64_8 && in.op <= Op::MOVSX32_16) {
    if (!check_reg_init(in.src)) return false;
    const Reg& src = fr.regs[in.src];
    int bits = op_info(in.op).selval;  // 8, 16 or 32 (the op, not the raw off field)
    if (src.kind != Kind::Scalar) {
      if (strict()) return reject(fmt::format("R{} sign-extension of a pointer", in.src), in.src);
      dst = Reg::unknown();
      return true;
    }
    dst = Reg::scalar(scalar_sext(src.v, bits, is32));
    return true;
  }
  if (!check_reg_init(in.dst)) return false;
  // Byte swaps and negation.
  if (info.code == 0xd4 || info.code == 0xdc || info.code == 0xd7 || in.op == Op::NEG64 || in.op == Op::NEG32) {
    if (dst.kind != Kind::Scalar) {
      if (strict()) return reject(fmt::format("R{} pointer arithmetic prohibited", in.dst), in.dst);
      dst = Reg::unknown();
      return true;
    }
    Scalar v;
    if (in.op == Op::NEG64 || in.op == Op::NEG32) v = scalar_alu(kNeg, dst.v, dst.v, is32);
    else v = scalar_bswap(dst.v, static_cast<int>(in.imm), info.code != 0xd4);
    dst = Reg::scalar(v);
    return true;
  }
  int op = alu_op(in.op);
  Reg src;
  if (info.uses_reg_src) {
    if (!check_reg_init(in.src)) return false;
    src = fr.regs[in.src];
  } else {
    src = Reg::scalar(Scalar::constant(is32 ? static_cast<uint32_t>(in.imm) : static_cast<uint64_t>(in.imm)));
    if ((op == kDiv || op == kMod || op == kSdiv || op == kSmod) && in.imm == 0)
      return reject("division by zero", -1,
                    "The divisor is the constant 0. Division by zero is refused at load time when it is a "
                    "constant; use a non-zero divisor.");
    if ((op == kLsh || op == kRsh || op == kArsh) && (in.imm < 0 || in.imm >= (is32 ? 32 : 64)))
      return reject(fmt::format("invalid shift {}", in.imm), -1,
                    fmt::format("A shift by {} is outside 0..{}; the result would depend on the CPU. Use a shift "
                                "count inside the register width.",
                                in.imm, is32 ? 31 : 63));
  }
  if (dst.kind == Kind::Scalar && src.kind == Kind::Scalar) {
    // A scalar known to be 0 or -1 (the sign mask of `x s>>= 63`) AND- or OR-ed with a constant:
    // compilers select between two values this way. As the kernel does (maybe_fork_scalars), the
    // two cases are explored separately, each with an exact result, rather than one imprecise
    // union of them.
    if ((op == kAnd || op == kOr) && src.v.is_const() &&
        ((!is32 && dst.v.smin == -1 && dst.v.smax == 0) || (is32 && dst.v.s32min == -1 && dst.v.s32max == 0))) {
      State zero = cur_;
      zero.cur().regs[in.dst] = Reg::scalar(scalar_alu(op, Scalar::constant(0), src.v, is32));
      dst = Reg::scalar(scalar_alu(op, Scalar::constant(is32 ? 0xffffffffull : ~0ull), src.v, is32));
      push_branch(std::move(zero), pc_ + 1);
      return true;
    }
    Scalar v = scalar_alu(op, dst.v, src.v, is32);
    dst = Reg::scalar(v);
    return true;
  }
  return do_ptr_arith(in, dst, src, op);
}

bool Verifier::do_ptr_arith(const Insn& in, Reg& dst, const Reg& src, int op) {
  const bool is32 = !in.info().alu64;
  const bool dptr = dst.kind != Kind::Scalar, sptr = src.kind != Kind::Scalar;
  int ptrreg = dptr ? in.dst : in.src;
  const Reg& ptr = dptr ? dst : src;
  if (dptr && sptr) {
    if (op == kSub && !strict()) {  // root: the difference of two pointers is an unknown number
      dst = Reg::unknown();
      return true;
    }
    return reject(fmt::format("R{} pointer {} pointer prohibited", in.dst, alu_name(op)), in.dst);
  }
  if (is32) {
    // Root (the kernel's allow_ptr_leaks): a 32-bit subtraction with a pointer operand is an unknown
    // number, as for two pointers; every other 32-bit operation on a pointer is refused.
    if (op == kSub && !strict()) {
      dst = Reg::unknown();
      return true;
    }
    return reject(fmt::format("R{} 32-bit pointer arithmetic prohibited", ptrreg), ptrreg,
                  "Pointers are 64-bit; 32-bit arithmetic would cut them. Use 64-bit operations on pointers.");
  }
  if (op != kAdd && op != kSub) {
    if (op == kAnd || op == kOr || op == kXor || op == kLsh || op == kRsh || op == kArsh)
      return reject(fmt::format("R{} bitwise operator {} on pointer prohibited", ptrreg, alu_name(op)), ptrreg);
    return reject(fmt::format("R{} pointer arithmetic with {} operator prohibited", ptrreg, alu_name(op)), ptrreg);
  }
  if (!dptr && op == kSub)
    return reject(fmt::format("R{} tried to subtract pointer from scalar", in.dst), in.dst);
  switch (ptr.kind) {
    case Kind::MapValueOrNull:
    case Kind::MapPtrOrNull:
    case Kind::MemOrNull:
    case Kind::SockOrNull:
    case Kind::BtfIdOrNull:
      return reject(fmt::format("R{} pointer arithmetic on {} prohibited, null-check it first", ptrreg,
                                type_str(ptr)),
                    ptrreg);
    case Kind::PacketEnd:
    case Kind::MapPtr:
    case Kind::Sock:
    case Kind::Func:
      return reject(fmt::format("R{} pointer arithmetic on {} prohibited", ptrreg, kind_name(ptr.kind)), ptrreg);
    default:
      break;
  }
  const Reg& sc = dptr ? src : dst;
  seed(dptr ? (in.info().uses_reg_src ? in.src : in.dst) : in.dst);
  Reg r = ptr;
  // Plain memory of unknown size: r1 + r2 is the end of the memory.
  if (mem_unknown_ && op == kAdd && ptr.kind == Kind::Packet && ptr.off == 0 && ptr.id == 0 && ptr.v.is_const() &&
      ptr.v.value() == 0 && sc.id == kMemLenId) {
    dst = Reg::ptr(Kind::PacketEnd);
    return true;
  }
  if (sc.v.is_const()) {
    int64_t k = static_cast<int64_t>(sc.v.value());
    int64_t off = op == kAdd ? static_cast<int64_t>(r.off) + k : static_cast<int64_t>(r.off) - k;
    if (off < -(1 << 29) || off > (1 << 29))
      return reject(fmt::format("value {} makes {} pointer be out of bounds", k, kind_name(ptr.kind)), ptrreg);
    r.off = static_cast<int32_t>(off);
  } else {
    if (strict() && ptr.kind == Kind::Stack)
      return reject(fmt::format("R{} variable stack access prohibited for !root", ptrreg), ptrreg);
    // A fully unknown offset is allowed here; any access through the pointer is then refused as unbounded.
    r.v = scalar_alu(op, r.v, sc.v, false);
    if (r.kind == Kind::Packet || r.kind == Kind::PacketMeta) {
      r.id = new_id();
      r.range = 0;
    }
  }
  dst = r;
  return true;
}

// ---- conditional jumps --------------------------------------------------------------------------

namespace {
int cond_of(Op op) { return op_info(op).code & 0xf0; }
}  // namespace

bool Verifier::do_cond_jump(const Insn& in) {
  const OpInfo& info = in.info();
  const bool is32 = (info.code & 0x07) == 0x06;
  const int64_t target = jump_target(in, pc_);
  const int64_t next = pc_ + 1;
  if (!check_reg_init(in.dst)) return false;
  Frame& fr = cur_.cur();
  Reg a = fr.regs[in.dst];
  Reg b;
  if (info.uses_reg_src) {
    if (!check_reg_init(in.src)) return false;
    b = fr.regs[in.src];
  } else {
    b = Reg::scalar(Scalar::constant(is32 ? static_cast<uint32_t>(in.imm) : static_cast<uint64_t>(in.imm)));
  }
  const int cond = cond_of(in.op);
  cur_.jmps++;
  // Strict: a pointer as the second operand only between packet pointers (the kernel's first check
  // in check_cond_jmp_op without allow_ptr_leaks; NULL checks have the pointer first).
  auto pkt_any = [](const Reg& r) {
    return r.kind == Kind::Packet || r.kind == Kind::PacketMeta || r.kind == Kind::PacketEnd;
  };
  if (strict() && info.uses_reg_src && b.kind != Kind::Scalar && !(pkt_any(a) && pkt_any(b)))
    return reject(fmt::format("R{} pointer comparison prohibited", in.src), in.src,
                  "Unprivileged programs may compare pointers only against NULL (the pointer in the first "
                  "operand) and packet pointers only against each other; other comparisons could leak "
                  "addresses.");

  // Scalars on both sides.
  if (a.kind == Kind::Scalar && b.kind == Kind::Scalar) {
    if (info.uses_reg_src) {
      // Registers the refinement reaches through shared ids: one needed later needs both operands.
      LiveSet linked = 0;
      for (int r = 0; r < 10; ++r) {
        const Reg& x = fr.regs[r];
        if (x.kind == Kind::Scalar && x.id != 0 && ((a.id != 0 && x.id == a.id) || (b.id != 0 && x.id == b.id)))
          linked |= static_cast<LiveSet>(1u << r);
      }
      if (!cur_.hist.empty()) cur_.hist.back().linked = linked;
      // Plain memory of unknown size: the comparison bounds the length (a state fact pruning compares
      // exactly, not a register), so the other operand's value is a decision.
      if (a.id == kMemLenId || b.id == kMemLenId) {
        seed(in.dst);
        seed(in.src);
      }
    }
    State taken = cur_;
    Reg ta = a, tb = b, fa = a, fb = b;
    bool t_ok, f_ok;
    if (cond == kJset) {
      t_ok = refine_cond(ta.v, tb.v, kJset, is32);
      f_ok = refine_cond(fa.v, fb.v, -kJset, is32);
    } else {
      t_ok = refine_cond(ta.v, tb.v, cond, is32);
      f_ok = refine_cond(fa.v, fb.v, negate_cond(cond), is32);
    }
    auto apply = [&](State& st, const Reg& na, const Reg& nb) {
      Frame& f = st.cur();
      f.regs[in.dst].v = na.v;
      propagate_scalar_id(st, f.regs[in.dst]);
      if (info.uses_reg_src) {
        f.regs[in.src].v = nb.v;
        propagate_scalar_id(st, f.regs[in.src]);
      }
    };
    if (t_ok && f_ok) {
      apply(taken, ta, tb);
      apply(cur_, fa, fb);
      push_branch(std::move(taken), target);
      pc_ = next;
    } else if (t_ok) {
      seed(in.dst);
      if (info.uses_reg_src) seed(in.src);
      apply(cur_, ta, tb);
      pc_ = target;
    } else if (f_ok) {
      seed(in.dst);
      if (info.uses_reg_src) seed(in.src);
      apply(cur_, fa, fb);
      pc_ = next;
    } else {
      path_done_ = true;  // contradictory state: this path cannot happen
    }
    return true;
  }

  // NULL checks: an or-null pointer against 0.
  auto null_check = [&](const Reg& p, const Reg& z) { return is_or_null(p.kind) && z.is_null(); };
  if (!is32 && (cond == kJeq || cond == kJne) && (null_check(a, b) || null_check(b, a))) {
    const Reg& p = is_or_null(a.kind) ? a : b;
    seed(in.dst);
    if (info.uses_reg_src) seed(in.src);
    State taken = cur_;
    // In the branch where p == 0 the pointer is NULL.
    mark_ptr_or_null(taken, p.id, cond == kJeq);
    mark_ptr_or_null(cur_, p.id, cond != kJeq);
    push_branch(std::move(taken), target);
    pc_ = next;
    return true;
  }
  // A pointer the kernel knows to be non-NULL (reg_not_null: sockets, map values, map pointers,
  // memory of a known size, kernel objects) against 0: the outcome is known. Any other pointer (the
  // context, the stack, packet pointers, functions) explores both branches, as the kernel does.
  auto nonnull_ptr = [&](const Reg& p) {
    switch (p.kind) {
      case Kind::Sock: case Kind::MapValue: case Kind::MapPtr: case Kind::Mem:
        return !(p.bflags & kBtfUntrusted);
      case Kind::BtfId:  // only a trusted kernel object is known to be non-NULL (is_trusted_reg)
        return p.btf_id == 0 || (p.bflags & kBtfTrusted);
      default:
        return false;
    }
  };
  if (!is32 && (cond == kJeq || cond == kJne) && ((nonnull_ptr(a) && b.is_null()) || (nonnull_ptr(b) && a.is_null()))) {
    seed(in.dst);
    if (info.uses_reg_src) seed(in.src);
    pc_ = cond == kJeq ? next : target;
    return true;
  }

  // Packet pointers against the end of the packet (or data_meta against data).
  auto is_start = [&](const Reg& r) { return r.kind == Kind::Packet || r.kind == Kind::PacketMeta; };
  auto end_for = [&](const Reg& s, const Reg& e) {
    if (s.kind == Kind::Packet) return e.kind == Kind::PacketEnd;
    return e.kind == Kind::Packet && e.off == 0 && e.id == 0 && e.v.is_const() && e.v.value() == 0;
  };
  if (!is32 && ((is_start(a) && end_for(a, b)) || (is_start(b) && end_for(b, a))) && cond != kJset &&
      cond != kJeq && cond != kJne) {
    // Normalise to "s OP e".
    bool swapped = !(is_start(a) && end_for(a, b));
    const Reg& s = swapped ? b : a;
    int c = swapped ? swap_cond(cond) : cond;
    // Which branch knows s <= e (range off) or s < e (range off+1)?
    State taken = cur_;
    auto learn = [&](State& st, int rel) {  // rel: kJle or kJlt holds for s vs e
      if (s.off < 0) return;
      int32_t range = s.off + (rel == kJlt ? 1 : 0);
      if (s.v.umax > (1u << 16)) return;
      Kind k = s.kind;
      uint32_t id = s.id;
      for_each_reg(st, [&](Reg& x) {
        if (x.kind == k && x.id == id && x.v == s.v && x.range < range) x.range = range;
        else if (x.kind == k && x.id == id && x.range < range) x.range = range;
      });
    };
    switch (c) {
      case kJgt: case kJsgt: learn(cur_, kJle); break;   // fall-through: s <= e
      case kJge: case kJsge: learn(cur_, kJlt); break;   // fall-through: s < e
      case kJlt: case kJslt: learn(taken, kJlt); break;  // taken: s < e
      case kJle: case kJsle: learn(taken, kJle); break;  // taken: s <= e
      default: break;
    }
    push_branch(std::move(taken), target);
    pc_ = next;
    return true;
  }

  // Any other comparison involving a pointer: no information.
  if (strict()) {
    int r = a.kind != Kind::Scalar ? in.dst : in.src;
    return reject(fmt::format("R{} pointer comparison prohibited", r), r,
                  "Unprivileged programs may compare pointers only against NULL and packet pointers only "
                  "against the end of the packet; other comparisons could leak addresses.");
  }
  State taken = cur_;
  push_branch(std::move(taken), target);
  pc_ = next;
  return true;
}

// ---- lddw ---------------------------------------------------------------------------------------

bool Verifier::do_load_imm64(const Insn& in) {
  Reg& dst = cur_.cur().regs[in.dst];
  switch (in.op) {
    case Op::LDDW:
      dst = Reg::scalar(Scalar::constant(static_cast<uint64_t>(in.imm)));
      return true;
    case Op::LDDW_MAP_IDX:
    case Op::LDDW_MAP_FD:
    case Op::LDDW_MAP_VALUE_IDX:
    case Op::LDDW_MAP_VALUE_FD: {
      bool value = in.op == Op::LDDW_MAP_VALUE_IDX || in.op == Op::LDDW_MAP_VALUE_FD;
      int32_t lo = static_cast<int32_t>(static_cast<uint32_t>(in.imm));
      uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(in.imm) >> 32);
      int32_t idx = lo;
      if (in.op == Op::LDDW_MAP_FD || in.op == Op::LDDW_MAP_VALUE_FD) {
        idx = opts_.map_index_of_fd ? opts_.map_index_of_fd(lo) : -1;
        if (idx < 0) return reject(fmt::format("fd {} is not pointing to valid bpf_map", lo));
      }
      if (idx < 0 || idx >= static_cast<int32_t>(opts_.maps.size()))
        return reject(fmt::format("map index {} is out of range (the program has {} maps)", idx, opts_.maps.size()));
      const MapSpec& m = maps_[idx];
      if (!value) {
        if (hi != 0 && in.op == Op::LDDW_MAP_IDX) return reject("reserved field of lddw map is not zero");
        dst = Reg::ptr(Kind::MapPtr);
        dst.map = idx;
        return true;
      }
      if (m.type != kMapArray || m.max_entries < 1)
        return reject(fmt::format("map '{}' (type {}) does not support direct value access", m.name, m.type));
      if (hi >= m.value_size && !(hi == 0 && m.value_size == 0))
        return reject(fmt::format("invalid access to map value pointer, value_size={} off={}", m.value_size, hi));
      dst = Reg::ptr(Kind::MapValue, static_cast<int32_t>(hi));
      dst.map = idx;
      dst.rdonly = map_rdonly_[idx];
      return true;
    }
    case Op::LDDW_CODE_ADDR:
      dst = Reg::ptr(Kind::Func);
      dst.func = static_cast<int32_t>(pc_ + 1 + static_cast<int32_t>(in.imm));
      return true;
    case Op::LDDW_VAR_ADDR:
      dst = Reg::ptr(Kind::BtfId);
      return true;
    default:
      return reject("unknown lddw form");
  }
}

// ---- exit ---------------------------------------------------------------------------------------

void Verifier::widen_imprecise(State& next, int32_t entry) {
  // The state this invocation started in: the latest one stored at the callback's entry, in progress,
  // with the same call chain.
  const size_t idx = next.frames.size() - 1;
  Node* prev = nullptr;
  auto consider = [&](Node* n) {
    if (n->branches == 0 || n->st.frames.size() != next.frames.size()) return;
    for (size_t f = 0; f <= idx; ++f)
      if (n->st.frames[f].callsite != next.frames[f].callsite) return;
    if (!prev || n->level > prev->level) prev = n;
  };
  for (Node* n : in_progress_unhashed_[entry]) consider(n);
  for (auto& [h, n] : in_progress_[entry]) consider(n);
  if (!prev || prev->pall) return;
  auto widen = [](const Reg& old, Reg& cur, bool precise) {
    if (precise || old.kind != Kind::Scalar || cur.kind != Kind::Scalar || old.v == cur.v) return;
    cur = Reg::unknown();
  };
  for (size_t f = 0; f < idx; ++f) {  // the callers' frames (the callback's is fresh)
    const Frame& of = prev->st.frames[f];
    Frame& cf = next.frames[f];
    for (int r = 0; r < 10; ++r) widen(of.regs[r], cf.regs[r], (prev->pprec[f] >> r) & 1);
    for (size_t i = 0; i < of.stack.size() && i < cf.stack.size() && i < 64; ++i) {
      const Slot& os = of.stack[i];
      Slot& cs = cf.stack[i];
      if (os.bytes[0] != kStackSpill || cs.bytes[0] != kStackSpill) continue;
      widen(os.spill, cs.spill, (prev->pstack[f] >> i) & 1);
    }
  }
}

bool Verifier::do_exit(const Insn&) {
  Frame& fr = cur_.cur();
  // A bpf-to-bpf function may return without setting r0 (as in the kernel): the caller's r0 is then
  // uninitialised, and reading it there is the error. The program's and a callback's r0 must be set.
  if ((cur_.frames.size() == 1 || fr.callback) && !check_reg_init(0)) return false;
  const Reg r0 = fr.regs[0];
  if (cur_.frames.size() > 1) {
    if (fr.callback) {
      seed(0);
      if (r0.kind != Kind::Scalar)
        return reject("At callback return the register R0 is not a known value", 0);
      if (r0.v.smin < 0 || r0.v.smax > fr.cb_ret_max)
        return reject(fmt::format("At callback return the register R0 has value {} should have been in [0, {}]",
                                  r0.v.str(), fr.cb_ret_max),
                      0,
                      "Callbacks of bpf_loop and bpf_for_each_map_elem must return 0 (continue) or 1 (stop).");
    } else if (r0.kind == Kind::Stack && r0.frame == cur_.frames.size() - 1) {
      return reject("cannot return stack pointer to the caller frame", 0,
                    "The function's stack frame disappears when it returns. Let the caller pass a pointer to its "
                    "own stack instead.");
    }
    int32_t callsite = fr.callsite;
    bool cb = fr.callback;
    if (cb && !fr.cb_args.empty() && fr.cb_iters < fr.cb_max) {
      // The helper may invoke the callback again, with the caller's state as this invocation left it.
      State again = cur_;
      const size_t idx = again.frames.size() - 1;
      Frame& old = again.frames[idx];
      Frame fresh;
      fresh.callsite = old.callsite;
      fresh.subprog = old.subprog;
      fresh.callback = true;
      fresh.cb_ret_max = old.cb_ret_max;
      fresh.cb_args = old.cb_args;
      fresh.cb_iters = old.cb_iters + 1;
      fresh.cb_max = old.cb_max;
      fresh.regs[10] = old.regs[10];
      for (int r = 1; r <= 5; ++r) fresh.regs[r] = old.cb_args[r - 1];
      const int32_t target = old.subprog;
      old = std::move(fresh);
      // Pointers into the finished invocation's stack that it left in its caller are gone.
      for (size_t f = 0; f < idx; ++f) {
        Frame& fr2 = again.frames[f];
        for (Reg& x : fr2.regs)
          if (x.kind == Kind::Stack && x.frame >= idx) x = Reg::unknown();
        for (Slot& sl : fr2.stack)
          if (sl.bytes[0] == kStackSpill && sl.spill.kind == Kind::Stack && sl.spill.frame >= idx)
            sl.spill = Reg::unknown();
      }
      widen_imprecise(again, target);
      push_branch(std::move(again), target);
    }
    cur_.frames.pop_back();
    Frame& caller = cur_.cur();
    uint8_t depth = static_cast<uint8_t>(cur_.frames.size());
    for (int r = 1; r <= 5; ++r) caller.regs[r] = Reg{};
    caller.regs[0] = cb ? Reg::unknown() : r0;
    for_each_reg(cur_, [&](Reg& x) {
      if (x.kind == Kind::Stack && x.frame >= depth) x = Reg::unknown();
    });
    pc_ = callsite + 1;
    return true;
  }
  // The main function.
  if (r0.kind != Kind::Scalar && strict())
    return reject("R0 leaks addr as return value", 0,
                  "Returning a pointer would reveal a kernel address. Return a number.");
  if (type_.ret.checked || strict()) {
    seed(0);
    if (r0.kind != Kind::Scalar)
      return reject(fmt::format("At program exit the register R0 is not a known value ({})", kind_name(r0.kind)), 0);
    if (r0.v.smin < type_.ret.min || r0.v.smax > type_.ret.max)
      return reject(fmt::format("At program exit the register R0 has {} should have been in [{}, {}]",
                                r0.v.str().empty() ? std::string("unknown scalar value") : "value " + r0.v.str(),
                                type_.ret.min, type_.ret.max),
                    0,
                    fmt::format("{} programs must return a value in [{}, {}]{}{}. Return one of those values on "
                                "every path.",
                                type_.name, type_.ret.min, type_.ret.max, type_.ret.meaning.empty() ? "" : ": ",
                                type_.ret.meaning));
  }
  if (cur_.lock_map)
    return reject("bpf_spin_unlock is missing", -1,
                  "A bpf_spin_lock taken on this path is still held at exit. Call bpf_spin_unlock on every path.");
  if (!cur_.refs.empty())
    return reject(fmt::format("Unreleased reference id={} alloc_insn={}", cur_.refs[0].id, cur_.refs[0].insn), -1,
                  fmt::format("The object acquired at instruction {} (a reserved ring buffer record or a socket) "
                              "is not released on this path. Submit or discard a reserved record (bpf_ringbuf_submit "
                              "/ bpf_ringbuf_discard), release a socket with bpf_sk_release, on every path including "
                              "error paths.",
                              cur_.refs[0].insn));
  path_done_ = true;
  return true;
}

}  // namespace verifier

Result<VerifyReport> verify(std::span<const Insn> insns, const VerifyOptions& options) {
  if (!options.type) return make_error(ErrorCode::InvalidArgument, "verify: no program type given");
  VerifyReport rep;
  auto t0 = std::chrono::steady_clock::now();
  // The kernel refuses an insn_cnt above BPF_MAXINSNS (4096) without CAP_BPF, above
  // BPF_COMPLEXITY_LIMIT_INSNS (1,000,000) with it, before its verifier starts (E2BIG).
  const size_t max_insns = options.rules == RuleSet::Strict ? 4096 : 1'000'000;
  auto cfg = insns.size() > max_insns
                 ? Result<verifier::Cfg>(make_error(
                       ErrorCode::Verify,
                       fmt::format("program is too large: {} instructions; {} rules allow at most {}{}", insns.size(),
                                   rule_set_name(options.rules), max_insns,
                                   options.rules == RuleSet::Strict ? " (BPF_MAXINSNS, the kernel's limit without CAP_BPF)"
                                                                    : " (BPF_COMPLEXITY_LIMIT_INSNS)")))
                 : verifier::build_cfg(insns, options.rules != RuleSet::Strict);
  if (!cfg) {
    rep.accepted = false;
    rep.error = cfg.error();
    if (options.source_line && rep.error.pc >= 0) rep.error.source_line = options.source_line(rep.error.pc);
    rep.explanation = verifier::explain(rep.error.message);
    rep.facts.assign(insns.size(), InsnFacts{});
    if (options.log_level >= 1) rep.log = rep.error.message + "\n";
  } else {
    verifier::Verifier v(insns, options, *cfg, rep);
    rep.accepted = v.run();
  }
  // Instructions built as IR (not decoded) get decode()'s field checks (reserved fields 0, registers
  // that exist) where a path reaches them, as the kernel checks them when it visits an instruction
  // ("BPF_ALU uses reserved fields"); code no path reaches is not judged.
  if (rep.accepted) {
    for (size_t pc = 0; pc < insns.size(); ++pc) {
      if (!rep.facts[pc].visited) continue;
      if (auto st = check_fields(insns[pc], static_cast<int64_t>(pc)); !st) {
        rep.accepted = false;
        rep.error = st.error();
        rep.error.code = ErrorCode::Verify;
        if (options.source_line) rep.error.source_line = options.source_line(rep.error.pc);
        rep.explanation = verifier::explain(rep.error.message);
        if (options.log_level >= 1) rep.log += rep.error.message + "\n";
        break;
      }
    }
  }
  rep.time_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  if (rep.accepted) {
    rep.error = Diagnostic{};
    for (size_t i = 0; i < insns.size(); ++i) {
      OpKind k = insns[i].info().kind;
      bool mem = k == OpKind::Load || k == OpKind::Store || k == OpKind::StoreReg || k == OpKind::Atomic;
      if (!mem || !rep.facts[i].visited) rep.facts[i].in_bounds = false;
    }
  } else {
    for (auto& f : rep.facts) f.in_bounds = false;
  }
  if (options.log_level >= 1)
    rep.log += fmt::format("processed {} insns (limit {}) max_states_per_insn 0 total_states {} peak_states {}\n",
                           rep.insns_processed, options.limits.insn_budget, rep.states, rep.peak_states);
  return rep;
}

std::string format_rejection(const VerifyReport& r, std::span<const Insn> insns) {
  std::string out = r.error.pc >= 0 ? fmt::format("rejected at insn {}: {}\n", r.error.pc, r.error.message)
                                    : fmt::format("rejected: {}\n", r.error.message);
  if (r.error.pc >= 0 && r.error.pc < static_cast<int64_t>(insns.size())) {
    DisasmOptions o;
    o.show_index = false;
    o.helper_name = [](int32_t id) -> std::string_view {
      const HelperProto* p = kernel_helper_proto(id);
      return p ? p->name : std::string_view();
    };
    out += fmt::format("  {}: {}\n", r.error.pc, format_insn(insns[r.error.pc], r.error.pc, o));
  }
  if (!r.error.source_line.empty()) out += "  source: " + r.error.source_line + "\n";
  if (!r.explanation.empty()) out += "  why: " + r.explanation + "\n";
  return out;
}

}  // namespace bpfvm
