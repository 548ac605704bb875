// Context accesses: the kernel's is_valid_access / convert_ctx_access per program type, the small
// dataflow pass that finds which memory instructions use the context as base, and the rewrite.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "bpfvm/progtype.hpp"

namespace bpfvm {

namespace {

std::string where(const ProgTypeInfo& t, int64_t off, int size, bool write) {
  return fmt::format("invalid {} of {} byte{} at offset {} of {}", write ? "write" : "read", size,
                     size == 1 ? "" : "s", off, t.ctx_struct);
}

Diagnostic ctx_error(const ProgTypeInfo& t, int64_t off, int size, bool write, const std::string& why) {
  return make_error(ErrorCode::Verify, fmt::format("{}: {}", where(t, off, size, write), why));
}

bool pow2_size(int s) { return s == 1 || s == 2 || s == 4 || s == 8; }

}  // namespace

Result<CtxAccess> check_ctx_access(const ProgTypeInfo& t, int64_t off, int size, bool write) {
  if (!t.has_ctx)
    return make_error(ErrorCode::Verify, fmt::format("{} programs have no context (r1 is plain memory)", t.name));
  if (!pow2_size(size)) return ctx_error(t, off, size, write, "bad access size");
  if (off < 0 || off + size > static_cast<int64_t>(t.ctx_size))
    return ctx_error(t, off, size, write, fmt::format("outside the context ({} bytes)", t.ctx_size));
  if (off % size != 0) return ctx_error(t, off, size, write, "misaligned access");
  CtxAccess a;
  if (t.generic) {
    if (off < t.generic_min)
      return ctx_error(t, off, size, write, fmt::format("the first {} bytes are not accessible", t.generic_min));
    if (write && !t.writable_generic) return ctx_error(t, off, size, write, "the context is read-only");
    if (t.generic_dw_only && size != 8) return ctx_error(t, off, size, write, "only 8-byte accesses are allowed");
    a.native_off = static_cast<int32_t>(off);
    a.native_size = static_cast<uint8_t>(size);
    return a;
  }
  const CtxField* f = t.field_at(off);
  if (!f) return ctx_error(t, off, size, write, "no field there (padding or a field this kernel does not define)");
  int64_t rel = off - f->off;
  const std::string fname = fmt::format("{}.{}", t.ctx_struct.substr(t.ctx_struct.rfind(' ') + 1), f->name);
  if (!(f->access & (kCtxRead | kCtxWrite)))
    return ctx_error(t, off, size, write, fmt::format("{} is not accessible to {} {}", fname, t.name, t.pointee ? "pointers" : "programs"));
  if (off + size > static_cast<int64_t>(f->off + f->size)) {
    if (f->access & kCtxAnySize)
      return ctx_error(t, off, size, write, fmt::format("the access runs past the end of {}", fname));
    return ctx_error(t, off, size, write,
                     fmt::format("accesses to {} must be {} bytes", fname, f->elem_size ? f->elem_size : f->size));
  }
  if (write) {
    if (!(f->access & kCtxWrite))
      return ctx_error(t, off, size, write, fmt::format("{} is read-only for {} {}", fname, t.name, t.pointee ? "pointers" : "programs"));
    if (!(f->access & kCtxAnySize)) {
      int need = f->elem_size ? f->elem_size : static_cast<int>(f->size);
      if (size != need)
        return ctx_error(t, off, size, write, fmt::format("writes to {} must be {} bytes", fname, need));
    }
  } else {
    if (!(f->access & kCtxRead))
      return ctx_error(t, off, size, write, fmt::format("{} is not readable by {} {}", fname, t.name, t.pointee ? "pointers" : "programs"));
    if (!(f->access & kCtxAnySize)) {
      int full = f->elem_size ? f->elem_size : static_cast<int>(f->size);
      bool narrow_ok = (f->access & kCtxNarrowRead) && f->ptr == CtxPtr::None && size <= full;
      if (size != full && !narrow_ok)
        return ctx_error(t, off, size, write, fmt::format("reads of {} must be {} bytes", fname, full));
    }
  }
  a.field = f;
  a.ptr = f->ptr;
  if (f->native_size == 8 && f->size == 4) {  // a __u32 uapi pointer with an 8-byte native slot
    a.native_off = static_cast<int32_t>(f->native_off);
    a.native_size = 8;
  } else {
    a.native_off = static_cast<int32_t>(f->native_off + rel);
    a.native_size = static_cast<uint8_t>(size);
  }
  return a;
}

// ---- dataflow: which registers / stack slots hold the context ------------------------------------

namespace {

enum K : uint8_t { Bot, NotCtx, Ctx, CtxMoved, Stack, StackAny, MaybeStack, ForeignStack, Unk };
struct V {
  K k = Bot;
  int32_t off = 0;
  bool operator==(const V& o) const { return k == o.k && (k != Stack || off == o.off); }
};
bool ctxish(K k) { return k == Ctx || k == CtxMoved || k == Unk; }
bool stackish(K k) { return k == Stack || k == StackAny || k == MaybeStack || k == ForeignStack; }

V join(V a, V b) {
  if (a == b) return a;
  if (a.k == Bot) return b;
  if (b.k == Bot) return a;
  if (ctxish(a.k) || ctxish(b.k)) {
    if ((a.k == Ctx || a.k == CtxMoved) && (b.k == Ctx || b.k == CtxMoved)) return {CtxMoved};
    return {Unk};
  }
  if ((a.k == Stack || a.k == StackAny) && (b.k == Stack || b.k == StackAny)) return {StackAny};
  if (stackish(a.k) || stackish(b.k)) return {MaybeStack};
  return {NotCtx};
}

constexpr int kSlots = kStackSize / 8;

struct State {
  bool reached = false;
  std::array<V, kNumRegs> r{};
  std::array<V, kSlots> slot{};  // slot i covers [fp - 512 + 8i, fp - 512 + 8i + 8)
  bool join_from(const State& o) {
    if (!o.reached) return false;
    if (!reached) {
      *this = o;
      return true;
    }
    bool ch = false;
    for (int i = 0; i < kNumRegs; ++i) {
      V j = join(r[i], o.r[i]);
      if (!(j == r[i])) r[i] = j, ch = true;
    }
    for (int i = 0; i < kSlots; ++i) {
      V j = join(slot[i], o.slot[i]);
      if (!(j == slot[i])) slot[i] = j, ch = true;
    }
    return ch;
  }
};

int slot_of(int64_t fp_off) {  // fp_off < 0
  int64_t idx = (fp_off + kStackSize);
  if (idx < 0 || idx >= kStackSize) return -1;
  return static_cast<int>(idx / 8);
}

struct Analysis {
  std::span<const Insn> insns;
  std::vector<State> in;
  std::vector<int> func_of;          // function entry index of each insn
  std::map<int64_t, State> entry;    // per function entry
  std::map<int64_t, V> ret;          // r0 summary per function
  bool ctx_spilled = false;          // some ctx value is stored in some stack slot
  std::optional<Diagnostic> escape;  // a ctx value stored where bpfvm cannot follow it

  V load_through(const State& s, V base, int64_t off, int size) {
    switch (base.k) {
      case Stack: {
        int64_t fo = base.off + off;
        int sl = slot_of(fo);
        if (sl < 0 || size != 8 || (fo & 7)) return {NotCtx};
        V v = s.slot[sl];
        return v.k == Bot ? V{NotCtx} : v;
      }
      case StackAny: {
        V v{NotCtx};
        for (const V& sv : s.slot) v = join(v, sv.k == Bot ? V{NotCtx} : sv);
        return v;
      }
      case MaybeStack:
      case ForeignStack: {
        bool own = false;
        for (const V& sv : s.slot) own |= ctxish(sv.k);
        return (own || ctx_spilled) ? V{Unk} : V{NotCtx};
      }
      default: return {NotCtx};
    }
  }

  void store_through(State& s, V base, int64_t off, int size, V val, size_t pc) {
    bool is_ctx = ctxish(val.k);
    switch (base.k) {
      case Stack: {
        int64_t fo = base.off + off;
        if (size == 8 && !(fo & 7)) {
          int sl = slot_of(fo);
          if (sl >= 0) s.slot[sl] = stackish(val.k) ? V{NotCtx} : val;  // stack pointers are not tracked in slots
          if (is_ctx) ctx_spilled = true;
          return;
        }
        for (int64_t b = fo; b < fo + size; ++b) {
          int sl = slot_of(b);
          if (sl >= 0) s.slot[sl] = is_ctx ? V{Unk} : V{NotCtx};
        }
        if (is_ctx) ctx_spilled = true;
        return;
      }
      case StackAny:
        for (V& sv : s.slot) sv = join(sv, is_ctx ? val : V{NotCtx});
        if (is_ctx) ctx_spilled = true;
        return;
      default:
        if (is_ctx && !escape)
          escape = make_error(ErrorCode::Verify,
                              "the context pointer is stored to memory other than the program's own stack; "
                              "bpfvm cannot follow it there to rewrite later context accesses",
                              static_cast<int64_t>(pc));
        return;
    }
  }

  static V add_off(V v, int64_t imm) {
    switch (v.k) {
      case Ctx: return imm == 0 ? v : V{CtxMoved};
      case Stack: return V{Stack, static_cast<int32_t>(v.off + imm)};
      default: return v;
    }
  }
  static V add_unknown(V v) {
    switch (v.k) {
      case Ctx: return {CtxMoved};
      case Stack: return {StackAny};
      default: return v;
    }
  }

  // Transfer function of one instruction; returns false for instructions that end the path.
  void step(size_t pc, State& s) {
    const Insn& in = insns[pc];
    const OpInfo& oi = in.info();
    auto& r = s.r;
    switch (oi.kind) {
      case OpKind::Alu: {
        if (in.op == Op::MOV64_REG) {
          r[in.dst] = r[in.src];
        } else if (in.op == Op::ADD64_IMM) {
          r[in.dst] = add_off(r[in.dst], in.imm);
        } else if (in.op == Op::SUB64_IMM) {
          r[in.dst] = add_off(r[in.dst], -in.imm);
        } else if (in.op == Op::ADD64_REG) {
          V d = r[in.dst], sv = r[in.src];
          if (d.k != NotCtx && d.k != Bot) r[in.dst] = add_unknown(d);
          else if (sv.k != NotCtx && sv.k != Bot) r[in.dst] = add_unknown(sv);
          else r[in.dst] = {NotCtx};
        } else if (in.op == Op::SUB64_REG) {
          V d = r[in.dst];
          r[in.dst] = (d.k != NotCtx && d.k != Bot && !stackish(r[in.src].k) && !ctxish(r[in.src].k)) ? add_unknown(d)
                                                                                                        : V{NotCtx};
        } else {
          r[in.dst] = {NotCtx};
        }
        break;
      }
      case OpKind::LoadImm64: r[in.dst] = {NotCtx}; break;
      case OpKind::LoadPacket:
        for (int i = 0; i <= 5; ++i) r[i] = {NotCtx};
        break;
      case OpKind::Load: r[in.dst] = load_through(s, r[in.src], in.off, oi.size); break;
      case OpKind::Store: store_through(s, r[in.dst], in.off, oi.size, V{NotCtx}, pc); break;
      case OpKind::StoreReg: store_through(s, r[in.dst], in.off, oi.size, r[in.src], pc); break;
      case OpKind::Atomic: {
        V old = load_through(s, r[in.dst], in.off, oi.size);
        store_through(s, r[in.dst], in.off, oi.size, ctxish(r[in.src].k) ? r[in.src] : V{NotCtx}, pc);
        bool fetch = in.op != Op::ATOMIC_ADD32 && in.op != Op::ATOMIC_ADD64 && in.op != Op::ATOMIC_OR32 &&
                     in.op != Op::ATOMIC_OR64 && in.op != Op::ATOMIC_AND32 && in.op != Op::ATOMIC_AND64 &&
                     in.op != Op::ATOMIC_XOR32 && in.op != Op::ATOMIC_XOR64;
        if (fetch) {
          int dst = (in.op == Op::ATOMIC_CMPXCHG32 || in.op == Op::ATOMIC_CMPXCHG64) ? 0 : in.src;
          r[dst] = ctxish(old.k) ? V{Unk} : V{NotCtx};
        }
        break;
      }
      case OpKind::Call: {
        if (in.op == Op::CALL_LOCAL) {
          int64_t target = jump_target(in, static_cast<int64_t>(pc));
          State e;
          e.reached = true;
          for (int i = 1; i <= 5; ++i) e.r[i] = stackish(r[i].k) ? V{ForeignStack} : r[i];
          for (int i = 6; i <= 9; ++i) e.r[i] = {NotCtx};
          e.r[0] = {NotCtx};
          e.r[10] = {Stack, 0};
          for (V& sv : e.slot) sv = {NotCtx};
          entry[target].join_from(e);
          auto it = ret.find(target);
          V rv = it == ret.end() ? V{Bot} : it->second;
          if (stackish(rv.k)) rv = {Unk};
          r[0] = rv.k == Bot ? V{NotCtx} : rv;
        } else {
          r[0] = {NotCtx};
        }
        for (int i = 1; i <= 5; ++i) r[i] = {NotCtx};
        break;
      }
      default: break;
    }
  }

  void run_function(int64_t f) {
    std::vector<int64_t> work{f};
    in[static_cast<size_t>(f)].join_from(entry[f]);
    std::set<int64_t> queued{f};
    while (!work.empty()) {
      int64_t pc = work.back();
      work.pop_back();
      queued.erase(pc);
      State s = in[static_cast<size_t>(pc)];
      const Insn& insn = insns[static_cast<size_t>(pc)];
      if (insn.op == Op::EXIT) {
        V r0 = s.r[0].k == Bot ? V{NotCtx} : s.r[0];
        auto it = ret.find(f);
        V j = it == ret.end() ? r0 : join(it->second, r0);
        ret[f] = j;
        continue;
      }
      step(static_cast<size_t>(pc), s);
      std::vector<int64_t> succ;
      OpKind k = insn.info().kind;
      if (k == OpKind::Jump) {
        succ.push_back(jump_target(insn, pc));
      } else if (k == OpKind::CondJump) {
        succ.push_back(pc + 1);
        succ.push_back(jump_target(insn, pc));
      } else {
        succ.push_back(pc + (insn.is_wide() ? 2 : 1));
      }
      for (int64_t n : succ) {
        if (n < 0 || n >= static_cast<int64_t>(insns.size())) continue;
        if (in[static_cast<size_t>(n)].join_from(s) && !queued.count(n)) {
          work.push_back(n);
          queued.insert(n);
        }
      }
    }
  }
};

bool is_mem_insn(const Insn& in) {
  OpKind k = in.info().kind;
  return k == OpKind::Load || k == OpKind::Store || k == OpKind::StoreReg || k == OpKind::Atomic;
}
int base_reg(const Insn& in) { return in.info().kind == OpKind::Load ? in.src : in.dst; }

}  // namespace

Result<CtxBaseFacts> ctx_base_facts(std::span<const Insn> insns, const ProgTypeInfo& type) {
  CtxBaseFacts facts(insns.size(), BaseFact::NotCtx);
  if (!type.has_ctx || insns.empty()) return facts;
  Analysis a;
  a.insns = insns;
  a.in.assign(insns.size(), State{});
  // Function entries: the program start, local call targets, callbacks (BPF_PSEUDO_FUNC).
  State main;
  main.reached = true;
  for (auto& v : main.r) v = {NotCtx};
  main.r[1] = {Ctx};
  main.r[10] = {Stack, 0};
  for (auto& v : main.slot) v = {NotCtx};
  a.entry[0] = main;
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    if (insns[pc].op == Op::LDDW_CODE_ADDR) {
      int64_t t = static_cast<int64_t>(pc) + 1 + static_cast<int32_t>(insns[pc].imm);
      if (t < 0 || t >= static_cast<int64_t>(insns.size()))
        return make_error(ErrorCode::Structure, fmt::format("callback target {} is outside the program", t),
                          static_cast<int64_t>(pc));
      State cb;
      cb.reached = true;
      for (auto& v : cb.r) v = {NotCtx};
      for (int i = 1; i <= 5; ++i) cb.r[i] = {ForeignStack};
      cb.r[10] = {Stack, 0};
      for (auto& v : cb.slot) v = {NotCtx};
      a.entry[t].join_from(cb);
    }
  }
  // Iterate all functions until entry states, return summaries and the spill flag are stable.
  for (int round = 0; round < 64; ++round) {
    auto before_entry_count = a.entry.size();
    std::map<int64_t, V> before_ret = a.ret;
    bool before_spilled = a.ctx_spilled;
    std::vector<State> before_in = a.in;
    std::vector<int64_t> fs;
    for (auto& [f, st] : a.entry) fs.push_back(f);
    for (int64_t f : fs) a.run_function(f);
    bool same = a.entry.size() == before_entry_count && before_spilled == a.ctx_spilled;
    if (same) {
      for (auto& [f, v] : a.ret) {
        auto it = before_ret.find(f);
        if (it == before_ret.end() || !(it->second == v)) same = false;
      }
    }
    if (same) {
      for (size_t i = 0; i < a.in.size() && same; ++i) {
        const State &x = a.in[i], &y = before_in[i];
        if (x.reached != y.reached || x.r != y.r || x.slot != y.slot) same = false;
      }
    }
    if (same) break;
    if (round == 63) return make_error(ErrorCode::Verify, "context dataflow did not converge");
  }
  if (a.escape) return *a.escape;
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    if (!is_mem_insn(insns[pc]) || !a.in[pc].reached) continue;
    switch (a.in[pc].r[base_reg(insns[pc])].k) {
      case Ctx: facts[pc] = BaseFact::Ctx; break;
      case CtxMoved: facts[pc] = BaseFact::CtxMoved; break;
      case Unk: facts[pc] = BaseFact::Unknown; break;
      default: break;
    }
  }
  return facts;
}

namespace {

Op resize_op(Op op, int native_size) {
  switch (op) {
    case Op::LDXW:
    case Op::LDXH:
    case Op::LDXB:
    case Op::LDXDW:
      return native_size == 8 ? Op::LDXDW : native_size == 4 ? Op::LDXW : native_size == 2 ? Op::LDXH : Op::LDXB;
    case Op::STXW:
    case Op::STXH:
    case Op::STXB:
    case Op::STXDW:
      return native_size == 8 ? Op::STXDW : native_size == 4 ? Op::STXW : native_size == 2 ? Op::STXH : Op::STXB;
    default: return op;
  }
}

}  // namespace

Result<std::vector<Insn>> rewrite_ctx_accesses(std::span<const Insn> insns, const ProgTypeInfo& type,
                                               const CtxBaseFacts* facts) {
  std::vector<Insn> out(insns.begin(), insns.end());
  if (!type.has_ctx) return out;
  CtxBaseFacts computed;
  if (!facts) {
    auto r = ctx_base_facts(insns, type);
    if (!r) return r.error();
    computed = std::move(*r);
    facts = &computed;
  }
  if (facts->size() != insns.size())
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("context facts cover {} instructions, the program has {}", facts->size(),
                                  insns.size()));
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    const Insn& in = insns[pc];
    if (!is_mem_insn(in)) continue;
    BaseFact f = (*facts)[pc];
    if (f == BaseFact::NotCtx) continue;
    int base = base_reg(in);
    const int64_t ipc = static_cast<int64_t>(pc);
    if (f == BaseFact::CtxMoved)
      return make_error(ErrorCode::Verify,
                        fmt::format("access through r{}, a modified context pointer (the context may only be "
                                    "accessed at constant offsets from its unmodified pointer; the kernel refuses "
                                    "this too)",
                                    base),
                        ipc);
    if (f == BaseFact::Unknown)
      return make_error(ErrorCode::Verify,
                        fmt::format("r{} holds the context pointer on some paths and something else on others; "
                                    "this access cannot be rewritten for {} programs",
                                    base, type.name),
                        ipc);
    OpKind k = in.info().kind;
    if (k == OpKind::Atomic)
      return make_error(ErrorCode::Verify, fmt::format("atomic operation on the context (r{}) is not allowed", base),
                        ipc);
    if (k == OpKind::Store)
      return make_error(ErrorCode::Verify,
                        fmt::format("BPF_ST stores into r{} (the context) are not allowed; use a register store",
                                    base),
                        ipc);
    bool write = k == OpKind::StoreReg;
    int size = in.info().size;
    auto acc = check_ctx_access(type, in.off, size, write);
    if (!acc) {
      Diagnostic d = acc.error();
      d.pc = ipc;
      return d;
    }
    bool sign_ext = in.op == Op::LDXSW || in.op == Op::LDXSH || in.op == Op::LDXSB;
    if (sign_ext && acc->native_size != size)
      return make_error(ErrorCode::Verify,
                        fmt::format("sign-extending load of the pointer field {} is not allowed",
                                    acc->field ? acc->field->name : "?"),
                        ipc);
    if (acc->native_off > INT16_MAX)
      return make_error(ErrorCode::Verify, "native context offset does not fit an instruction", ipc);
    out[pc].off = static_cast<int16_t>(acc->native_off);
    if (!sign_ext) out[pc].op = resize_op(in.op, acc->native_size);
  }
  return out;
}

}  // namespace bpfvm
