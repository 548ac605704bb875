// The interpreter: the IR is decoded once into an array of pre-resolved instructions (handler address,
// operands, jump target pointer, helper pointer) and run with threaded dispatch (computed goto).
// Template parameters select checked memory access and instruction counting, so the fast path
// carries neither.
#include <array>
#include <iterator>
#include <cstring>
#include <fmt/format.h>

#include "exec/engine.hpp"

namespace bpfvm::detail {
namespace {

struct DInsn {
  const void* handler;
  int64_t imm;
  union {
    const DInsn* target;   // jumps, local calls
    const HelperDef* helper;
  };
  uint8_t dst, src;
  int16_t off;
  uint32_t pc;  // slot index, for messages
};
static_assert(sizeof(DInsn) == 32);

struct Frame {
  const DInsn* ret;
  uint64_t saved[4];  // r6..r9
  uint64_t r10;
};

constexpr size_t kStackBytes = static_cast<size_t>(kStackSize) * kMaxCallDepth;
constexpr int32_t kSkfNetOff = -0x100000;
constexpr int32_t kSkfLlOff = -0x200000;

class Interpreter;

// Per-run state.
// Members are initialised one by one (no value-initialisation of the whole block: `State st{}`
// compiled to a rep stos, a measurable part of a short run).
struct State {
  const RunArgs* args = nullptr;
  RunContext* ctx = nullptr;
  uint64_t stack_lo = 0;  // lowest stack address of this run
  uint64_t stack_hi = 0;
  uint64_t budget = 0;
  uint64_t count = 0;
  const State* parent = nullptr;  // run that called back into the program (bpf_loop), whose stack stays valid
  const Interpreter* engine = nullptr;
  uint64_t* cur_r10 = nullptr;
  Diagnostic error;
  bool failed = false;
};

template <bool Checked, bool Counted>
struct Exec {
  // With code == nullptr, returns the handler table (index = Op) instead of running.
  static uint64_t run(const DInsn* code, const DInsn* start, uint64_t* regs, State* st,
                      const void*** table_out);
};

inline bool in_region(uint64_t addr, uint64_t size, uint64_t start, uint64_t len) {
  return addr >= start && size <= len && addr - start <= len - size;
}

// Checked mode's stack rule, per call frame (each frame is kStackSize bytes below its caller's):
// an access based on r10 must lie in the current frame [fp-512, fp); an access through any other
// register may reach every frame of the live call chain, from the current frame up to the top of
// this run's stack (a caller may pass a pointer to its own stack), and the live frames of the run
// that called back into the program (bpf_loop); nothing below the deepest live frame.
template <bool Checked>
inline bool mem_ok(State* st, bool fp_based, uint64_t fp, uint64_t addr, uint64_t size, bool write) {
  if constexpr (!Checked) {
    return true;
  } else {
    if (fp_based) return in_region(addr, size, fp - kStackSize, kStackSize);
    for (const State* s = st; s; s = s->parent) {
      uint64_t lo = *s->cur_r10 - kStackSize;
      if (in_region(addr, size, lo, s->stack_hi - lo)) return true;
    }
    for (const MemRegion& r : st->args->regions)
      if (in_region(addr, size, r.start, r.size)) return !write || r.writable;
    for (const MemRegion& r : st->ctx->dynamic_regions)
      if (in_region(addr, size, r.start, r.size)) return !write || r.writable;
    return false;
  }
}

// Describes a faulting access relative to the nearest region ("4 bytes at mem+6, mem is 8 bytes"),
// so messages are stable across runs and say what the program got wrong. Stack addresses are given
// relative to the current frame pointer (fp = r10).
std::string describe_fault(State* st, bool fp_based, uint64_t fp, uint64_t addr, uint64_t size, bool write) {
  const char* what = write ? "write" : "read";
  const int64_t fp_rel = static_cast<int64_t>(addr - fp);
  if (fp_based)
    return fmt::format("memory fault: {} of {} bytes at fp{:+} is outside the current stack frame [fp-{}, fp)", what,
                       size, fp_rel, kStackSize);
  struct Near {
    std::string_view name;
    uint64_t start, len;
    bool writable;
  };
  std::vector<Near> all;
  all.push_back({"stack", st->stack_lo, st->stack_hi - st->stack_lo, true});
  for (const MemRegion& r : st->args->regions) all.push_back({r.name.empty() ? "region" : r.name, r.start, r.size, r.writable});
  for (const MemRegion& r : st->ctx->dynamic_regions) all.push_back({r.name.empty() ? "region" : r.name, r.start, r.size, r.writable});
  const Near* best = nullptr;
  uint64_t best_dist = UINT64_MAX;
  for (const Near& n : all) {
    if (write && !n.writable && in_region(addr, size, n.start, n.len))
      return fmt::format("memory fault: {} of {} bytes at {}+{}: {} is read-only", what, size, n.name,
                         addr - n.start, n.name);
    uint64_t dist = addr < n.start ? n.start - addr : (addr >= n.start + n.len ? addr - (n.start + n.len) : 0);
    if (dist < best_dist) {
      best_dist = dist;
      best = &n;
    }
  }
  if (best && best_dist <= 65536) {
    if (best->name == "stack") {
      if (addr < fp - kStackSize && addr >= st->stack_lo)
        return fmt::format("memory fault: {} of {} bytes at fp{:+} is below the deepest live stack frame [fp-{}, fp)",
                           what, size, fp_rel, kStackSize);
      return fmt::format("memory fault: {} of {} bytes at fp{:+} is outside the live stack frames [fp-{}, fp+{})",
                         what, size, fp_rel, kStackSize, st->stack_hi - fp);
    }
    int64_t rel = static_cast<int64_t>(addr - best->start);
    return fmt::format("memory fault: {} of {} bytes at {}{:+} is outside {} ({} bytes)", what, size, best->name, rel,
                       best->name, best->len);
  }
  return fmt::format("memory fault: {} of {} bytes at 0x{:x} is outside every allowed region", what, size, addr);
}

template <class T>
inline T load(uint64_t addr) {
  T v;
  std::memcpy(&v, reinterpret_cast<const void*>(addr), sizeof(T));
  return v;
}
template <class T>
inline void store(uint64_t addr, T v) {
  std::memcpy(reinterpret_cast<void*>(addr), &v, sizeof(T));
}

// Legacy packet load: offset relative to the packet (or to its link-layer start for SKF_LL_OFF).
inline bool packet_load(const RunArgs* a, int32_t off, uint32_t size, uint64_t& out) {
  int64_t o = off;
  if (o < 0 && o >= kSkfLlOff && o < kSkfNetOff) o -= kSkfLlOff;
  if (o < 0 || !a->packet || static_cast<uint64_t>(o) + size > a->packet_len) return false;
  const uint8_t* p = a->packet + o;
  switch (size) {
    case 1: out = p[0]; break;
    case 2: out = (uint64_t(p[0]) << 8) | p[1]; break;
    default: out = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | p[3]; break;
  }
  return true;
}

template <bool Checked, bool Counted>
uint64_t Exec<Checked, Counted>::run(const DInsn* code, const DInsn* start, uint64_t* r, State* st,
                                     const void*** table_out) {
  static const void* table[kOpCount] = {
#define BPFVM_OP(NAME, CODE, SEL, SELVAL, FIELDS, VERSION, MNEMONIC) &&L_##NAME,
#include "bpfvm/opcodes.def"
      &&L_LDDW_HI,
  };
#define ACC_ALU(NAME) &&A_##NAME##64_IMM, &&A_##NAME##64_REG, &&A_##NAME##32_IMM, &&A_##NAME##32_REG,
#define ACC_JMP(NAME) &&A_##NAME##_IMM, &&A_##NAME##_REG, &&A_##NAME##32_IMM, &&A_##NAME##32_REG,
  // Same order as kAccOps below.
  static const void* acc_table[] = {
      ACC_ALU(ADD) ACC_ALU(SUB) ACC_ALU(MUL) ACC_ALU(DIV) ACC_ALU(OR) ACC_ALU(AND) ACC_ALU(LSH) ACC_ALU(RSH)
      ACC_ALU(MOD) ACC_ALU(XOR) ACC_ALU(MOV) ACC_ALU(ARSH) ACC_ALU(SDIV) ACC_ALU(SMOD)
      ACC_JMP(JEQ) ACC_JMP(JNE) ACC_JMP(JGT) ACC_JMP(JGE) ACC_JMP(JLT) ACC_JMP(JLE) ACC_JMP(JSET)
      ACC_JMP(JSGT) ACC_JMP(JSGE) ACC_JMP(JSLT) ACC_JMP(JSLE)};
#undef ACC_ALU
#undef ACC_JMP
  if (!code) {
    table_out[0] = table;
    table_out[1] = acc_table;
    return 0;
  }
  uint64_t acc = 0;
  (void)code;
  const DInsn* pc = start;
  Frame frames[kMaxCallDepth];
  int depth = 0;
  uint64_t m;  // scratch address
  const HelperDef* h;
  st->cur_r10 = &r[10];

#define DISPATCH()                                                         \
  do {                                                                     \
    if constexpr (Counted) {                                               \
      if (++st->count > st->budget) goto budget_exceeded;                  \
    }                                                                      \
    goto* pc->handler;                                                     \
  } while (0)
#define NEXT() \
  do {         \
    ++pc;      \
    DISPATCH(); \
  } while (0)
#define JUMP_IF(cond)      \
  do {                     \
    if (cond) {            \
      pc = pc->target;     \
      DISPATCH();          \
    }                      \
    NEXT();                \
  } while (0)
#define D r[pc->dst]
#define S r[pc->src]
#define IMM pc->imm
#define U32(x) static_cast<uint32_t>(x)
// `base` is the register the address was computed from (r10: the current frame only).
#define CHECK(base, addr, size, write)                                                   \
  do {                                                                                   \
    if constexpr (Checked) {                                                             \
      if (!mem_ok<Checked>(st, (base) == 10, r[10], (addr), (size), (write))) {          \
        st->error = make_error(ErrorCode::MemoryFault,                                   \
                               describe_fault(st, (base) == 10, r[10], (addr), (size), (write)), pc->pc); \
        goto fail;                                                                       \
      }                                                                                  \
    }                                                                                    \
  } while (0)

  DISPATCH();

  // ---- ALU ----------------------------------------------------------------------------------
// Each ALU handler leaves its result in `acc` too. When the next instruction's destination is the
// same register and it can only be reached by falling through, its *_ACC variant reads the
// destination from `acc` instead of memory: no store-to-load round trip on dependency chains.
#define ALU_OPS(NAME, EXPR64, EXPR32)                              \
  L_##NAME##64_IMM : { uint64_t b = static_cast<uint64_t>(IMM); uint64_t a = D; D = acc = (EXPR64); NEXT(); } \
  L_##NAME##64_REG : { uint64_t b = S; uint64_t a = D; D = acc = (EXPR64); NEXT(); }                         \
  L_##NAME##32_IMM : { uint32_t b = U32(IMM); uint32_t a = U32(D); D = acc = U32(EXPR32); NEXT(); }          \
  L_##NAME##32_REG : { uint32_t b = U32(S); uint32_t a = U32(D); D = acc = U32(EXPR32); NEXT(); }            \
  A_##NAME##64_IMM : { uint64_t b = static_cast<uint64_t>(IMM); uint64_t a = acc; D = acc = (EXPR64); NEXT(); } \
  A_##NAME##64_REG : { uint64_t b = S; uint64_t a = acc; D = acc = (EXPR64); NEXT(); }                         \
  A_##NAME##32_IMM : { uint32_t b = U32(IMM); uint32_t a = U32(acc); D = acc = U32(EXPR32); NEXT(); }          \
  A_##NAME##32_REG : { uint32_t b = U32(S); uint32_t a = U32(acc); D = acc = U32(EXPR32); NEXT(); }
  ALU_OPS(ADD, a + b, a + b)
  ALU_OPS(SUB, a - b, a - b)
  ALU_OPS(MUL, a * b, a * b)
  ALU_OPS(DIV, b ? a / b : 0, b ? a / b : 0)
  ALU_OPS(OR, a | b, a | b)
  ALU_OPS(AND, a & b, a & b)
  ALU_OPS(LSH, a << (b & 63), a << (b & 31))
  ALU_OPS(RSH, a >> (b & 63), a >> (b & 31))
  ALU_OPS(MOD, b ? a % b : a, b ? a % b : a)
  ALU_OPS(XOR, a ^ b, a ^ b)
  ALU_OPS(MOV, ((void)a, b), ((void)a, b))
  ALU_OPS(ARSH, static_cast<uint64_t>(static_cast<int64_t>(a) >> (b & 63)),
          static_cast<uint32_t>(static_cast<int32_t>(a) >> (b & 31)))
#define SDIV64(a, b)                                                                                \
  (b == 0 ? 0                                                                                       \
   : (static_cast<int64_t>(b) == -1) ? static_cast<uint64_t>(0) - a                                \
                                     : static_cast<uint64_t>(static_cast<int64_t>(a) / static_cast<int64_t>(b)))
#define SDIV32(a, b)                                                                                \
  (b == 0 ? 0u                                                                                      \
   : (static_cast<int32_t>(b) == -1) ? 0u - a                                                       \
                                     : static_cast<uint32_t>(static_cast<int32_t>(a) / static_cast<int32_t>(b)))
#define SMOD64(a, b)                                                                                \
  (b == 0 ? a                                                                                       \
   : (static_cast<int64_t>(b) == -1) ? 0                                                            \
                                     : static_cast<uint64_t>(static_cast<int64_t>(a) % static_cast<int64_t>(b)))
#define SMOD32(a, b)                                                                                \
  (b == 0 ? a                                                                                       \
   : (static_cast<int32_t>(b) == -1) ? 0u                                                           \
                                     : static_cast<uint32_t>(static_cast<int32_t>(a) % static_cast<int32_t>(b)))
  ALU_OPS(SDIV, SDIV64(a, b), SDIV32(a, b))
  ALU_OPS(SMOD, SMOD64(a, b), SMOD32(a, b))
#undef ALU_OPS
  L_NEG64 : D = 0 - D; NEXT();
  L_NEG32 : D = U32(0u - U32(D)); NEXT();
  L_MOVSX64_8 : D = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int8_t>(S))); NEXT();
  L_MOVSX64_16 : D = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(S))); NEXT();
  L_MOVSX64_32 : D = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(S))); NEXT();
  L_MOVSX32_8 : D = U32(static_cast<int32_t>(static_cast<int8_t>(S))); NEXT();
  L_MOVSX32_16 : D = U32(static_cast<int32_t>(static_cast<int16_t>(S))); NEXT();
  L_LE16 : D = static_cast<uint16_t>(D); NEXT();
  L_LE32 : D = U32(D); NEXT();
  L_LE64 : NEXT();
  L_BE16 :
  L_BSWAP16 : D = __builtin_bswap16(static_cast<uint16_t>(D)); NEXT();
  L_BE32 :
  L_BSWAP32 : D = __builtin_bswap32(U32(D)); NEXT();
  L_BE64 :
  L_BSWAP64 : D = __builtin_bswap64(D); NEXT();

  // ---- jumps ---------------------------------------------------------------------------------
  L_JA : L_JA32 : pc = pc->target; DISPATCH();
#define JMP_OPS(NAME, CMP64, CMP32)                                                          \
  L_##NAME##_IMM : { uint64_t a = D, b = static_cast<uint64_t>(IMM); JUMP_IF(CMP64); }       \
  L_##NAME##_REG : { uint64_t a = D, b = S; JUMP_IF(CMP64); }                                 \
  L_##NAME##32_IMM : { uint32_t a = U32(D), b = U32(IMM); JUMP_IF(CMP32); }                  \
  L_##NAME##32_REG : { uint32_t a = U32(D), b = U32(S); JUMP_IF(CMP32); }                    \
  A_##NAME##_IMM : { uint64_t a = acc, b = static_cast<uint64_t>(IMM); JUMP_IF(CMP64); }     \
  A_##NAME##_REG : { uint64_t a = acc, b = S; JUMP_IF(CMP64); }                               \
  A_##NAME##32_IMM : { uint32_t a = U32(acc), b = U32(IMM); JUMP_IF(CMP32); }                \
  A_##NAME##32_REG : { uint32_t a = U32(acc), b = U32(S); JUMP_IF(CMP32); }
#define S64(x) static_cast<int64_t>(x)
#define S32(x) static_cast<int32_t>(x)
  JMP_OPS(JEQ, a == b, a == b)
  JMP_OPS(JNE, a != b, a != b)
  JMP_OPS(JGT, a > b, a > b)
  JMP_OPS(JGE, a >= b, a >= b)
  JMP_OPS(JLT, a < b, a < b)
  JMP_OPS(JLE, a <= b, a <= b)
  JMP_OPS(JSET, (a & b) != 0, (a & b) != 0)
  JMP_OPS(JSGT, S64(a) > S64(b), S32(a) > S32(b))
  JMP_OPS(JSGE, S64(a) >= S64(b), S32(a) >= S32(b))
  JMP_OPS(JSLT, S64(a) < S64(b), S32(a) < S32(b))
  JMP_OPS(JSLE, S64(a) <= S64(b), S32(a) <= S32(b))
#undef JMP_OPS

  // ---- calls -----------------------------------------------------------------------------------
  L_CALL_HELPER : h = pc->helper;
  call_helper : {
    uint64_t res = h->fn(r[1], r[2], r[3], r[4], r[5]);
    if (h->tail_call) {
      if (res) {
        auto target = reinterpret_cast<const Executable*>(res);
        auto out = target->engine().run_tail(r[1], nullptr);
        if (!out) {
          st->error = out.error();
          goto fail;
        }
        return *out;
      }
      res = static_cast<uint64_t>(-2);  // -ENOENT: the call falls through
    }
    r[0] = res;
    NEXT();
  }
  L_CALLX : {
    uint64_t id = D;
    const auto* tbl = reinterpret_cast<const std::vector<const HelperDef*>*>(pc->imm);
    h = id < tbl->size() ? (*tbl)[id] : nullptr;
    if (!h) {
      st->error = make_error(ErrorCode::Runtime, fmt::format("callx: no helper with id {}", id), pc->pc);
      goto fail;
    }
    goto call_helper;
  }
  L_CALL_KFUNC : {
    st->error = make_error(ErrorCode::Link, "kfunc call", pc->pc);
    goto fail;
  }
  L_CALL_LOCAL : {
    if (depth + 1 >= kMaxCallDepth) {
      st->error = make_error(ErrorCode::CallDepth,
                             fmt::format("call depth exceeds {} frames", kMaxCallDepth), pc->pc);
      goto fail;
    }
    Frame& f = frames[depth++];
    f.ret = pc + 1;
    f.saved[0] = r[6];
    f.saved[1] = r[7];
    f.saved[2] = r[8];
    f.saved[3] = r[9];
    f.r10 = r[10];
    r[10] -= kStackSize;
    pc = pc->target;
    DISPATCH();
  }
  L_EXIT : {
    if (depth == 0) return r[0];
    Frame& f = frames[--depth];
    r[6] = f.saved[0];
    r[7] = f.saved[1];
    r[8] = f.saved[2];
    r[9] = f.saved[3];
    r[10] = f.r10;
    pc = f.ret;
    DISPATCH();
  }

  // ---- 64-bit immediates (already resolved) -----------------------------------------------------
  L_LDDW : L_LDDW_MAP_FD : L_LDDW_MAP_VALUE_FD : L_LDDW_VAR_ADDR : L_LDDW_CODE_ADDR : L_LDDW_MAP_IDX :
  L_LDDW_MAP_VALUE_IDX : D = static_cast<uint64_t>(IMM);
  pc += 2;
  DISPATCH();
  L_LDDW_HI : {
    st->error = make_error(ErrorCode::Runtime, "executed the second half of lddw", pc->pc);
    goto fail;
  }

  // ---- legacy packet loads ----------------------------------------------------------------------
#define LD_PKT(NAME, SIZE, OFFSET)                                       \
  L_##NAME : {                                                           \
    uint64_t v;                                                          \
    if (!packet_load(st->args, (OFFSET), SIZE, v)) return 0;             \
    r[0] = v;                                                            \
    NEXT();                                                              \
  }
  LD_PKT(LDABS_W, 4, S32(IMM))
  LD_PKT(LDABS_H, 2, S32(IMM))
  LD_PKT(LDABS_B, 1, S32(IMM))
  LD_PKT(LDIND_W, 4, S32(U32(S) + U32(IMM)))
  LD_PKT(LDIND_H, 2, S32(U32(S) + U32(IMM)))
  LD_PKT(LDIND_B, 1, S32(U32(S) + U32(IMM)))
#undef LD_PKT

  // ---- loads and stores -------------------------------------------------------------------------
#define LDX(NAME, T, EXT)                 \
  L_##NAME : {                            \
    m = S + pc->off;                      \
    CHECK(pc->src, m, sizeof(T), false);           \
    D = acc = static_cast<uint64_t>(static_cast<EXT>(load<T>(m))); \
    NEXT();                               \
  }
  LDX(LDXB, uint8_t, uint64_t)
  LDX(LDXH, uint16_t, uint64_t)
  LDX(LDXW, uint32_t, uint64_t)
  LDX(LDXDW, uint64_t, uint64_t)
  LDX(LDXSB, int8_t, int64_t)
  LDX(LDXSH, int16_t, int64_t)
  LDX(LDXSW, int32_t, int64_t)
#undef LDX
#define STORE(NAME, T, VAL)           \
  L_##NAME : {                        \
    m = D + pc->off;                  \
    CHECK(pc->dst, m, sizeof(T), true);        \
    store<T>(m, static_cast<T>(VAL)); \
    NEXT();                           \
  }
  STORE(STB, uint8_t, IMM)
  STORE(STH, uint16_t, IMM)
  STORE(STW, uint32_t, IMM)
  STORE(STDW, uint64_t, IMM)
  STORE(STXB, uint8_t, S)
  STORE(STXH, uint16_t, S)
  STORE(STXW, uint32_t, S)
  STORE(STXDW, uint64_t, S)
#undef STORE

  // ---- atomics ----------------------------------------------------------------------------------
#define ATOMIC_RMW(NAME, BUILTIN, FETCH)                                               \
  L_##NAME##32 : {                                                                     \
    m = D + pc->off;                                                                   \
    CHECK(pc->dst, m, 4, true);                                                                 \
    uint32_t old = BUILTIN(reinterpret_cast<uint32_t*>(m), U32(S), __ATOMIC_SEQ_CST);   \
    if (FETCH) S = old;                                                                \
    NEXT();                                                                            \
  }                                                                                    \
  L_##NAME##64 : {                                                                     \
    m = D + pc->off;                                                                   \
    CHECK(pc->dst, m, 8, true);                                                                 \
    uint64_t old = BUILTIN(reinterpret_cast<uint64_t*>(m), S, __ATOMIC_SEQ_CST);        \
    if (FETCH) S = old;                                                                \
    NEXT();                                                                            \
  }
  ATOMIC_RMW(ATOMIC_ADD, __atomic_fetch_add, false)
  ATOMIC_RMW(ATOMIC_OR, __atomic_fetch_or, false)
  ATOMIC_RMW(ATOMIC_AND, __atomic_fetch_and, false)
  ATOMIC_RMW(ATOMIC_XOR, __atomic_fetch_xor, false)
  ATOMIC_RMW(ATOMIC_FETCH_ADD, __atomic_fetch_add, true)
  ATOMIC_RMW(ATOMIC_FETCH_OR, __atomic_fetch_or, true)
  ATOMIC_RMW(ATOMIC_FETCH_AND, __atomic_fetch_and, true)
  ATOMIC_RMW(ATOMIC_FETCH_XOR, __atomic_fetch_xor, true)
  ATOMIC_RMW(ATOMIC_XCHG, __atomic_exchange_n, true)
#undef ATOMIC_RMW
  L_ATOMIC_CMPXCHG32 : {
    m = D + pc->off;
    CHECK(pc->dst, m, 4, true);
    uint32_t expected = U32(r[0]);
    __atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(m), &expected, U32(S), false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    r[0] = expected;
    NEXT();
  }
  L_ATOMIC_CMPXCHG64 : {
    m = D + pc->off;
    CHECK(pc->dst, m, 8, true);
    uint64_t expected = r[0];
    __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(m), &expected, S, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    r[0] = expected;
    NEXT();
  }

budget_exceeded: __attribute__((unused));
  st->error = make_error(ErrorCode::Budget,
                         fmt::format("instruction budget of {} exhausted", st->budget), pc->pc);
fail:
  st->failed = true;
  return 0;
#undef DISPATCH
#undef NEXT
#undef JUMP_IF
#undef D
#undef S
#undef IMM
#undef U32
#undef S32
#undef S64
#undef CHECK
}

using RunFn = uint64_t (*)(const DInsn*, const DInsn*, uint64_t*, State*, const void***);

// Index of an op's *_ACC handler in acc_table (same order as there), or -1.
int acc_index(Op op) {
  static const Op kFamilies[] = {Op::ADD64_IMM, Op::SUB64_IMM, Op::MUL64_IMM, Op::DIV64_IMM, Op::OR64_IMM,
                                 Op::AND64_IMM, Op::LSH64_IMM, Op::RSH64_IMM, Op::MOD64_IMM, Op::XOR64_IMM,
                                 Op::MOV64_IMM, Op::ARSH64_IMM, Op::SDIV64_IMM, Op::SMOD64_IMM, Op::JEQ_IMM,
                                 Op::JNE_IMM, Op::JGT_IMM, Op::JGE_IMM, Op::JLT_IMM, Op::JLE_IMM, Op::JSET_IMM,
                                 Op::JSGT_IMM, Op::JSGE_IMM, Op::JSLT_IMM, Op::JSLE_IMM};
  // Each family is four consecutive enumerators (64 imm, 64 reg, 32 imm, 32 reg) in opcodes.def.
  for (size_t f = 0; f < std::size(kFamilies); ++f) {
    int base = static_cast<int>(kFamilies[f]);
    int o = static_cast<int>(op);
    if (o >= base && o < base + 4) return static_cast<int>(f * 4) + (o - base);
  }
  return -1;
}

// Ops whose handler leaves the destination's new value in `acc`.
bool sets_acc(Op op) {
  if (op_info(op).kind == OpKind::Load) return true;
  int i = acc_index(op);
  return i >= 0 && i < 14 * 4;
}

class Interpreter final : public Engine {
 public:
  Interpreter(const LinkedProgram& linked, const ExecOptions& options)
      : exe_(linked.exe), by_id_(linked.by_id), budget_(options.insn_budget), checked_(options.checked) {
    for (const Insn& in : linked.program->insns)
      if (in.op == Op::CALL_HELPER || in.op == Op::CALLX) calls_helpers_ = true;
    bool checked = options.checked, counted = options.insn_budget != 0;
    run_fn_ = checked ? (counted ? &Exec<true, true>::run : &Exec<true, false>::run)
                      : (counted ? &Exec<false, true>::run : &Exec<false, false>::run);
    const void** tables[2] = {nullptr, nullptr};
    run_fn_(nullptr, nullptr, nullptr, nullptr, tables);
    const void** table = tables[0];
    const void** acc_table = tables[1];
    const auto& insns = linked.program->insns;
    code_.resize(insns.size());
    // Instructions that can be reached other than by falling through from the previous one.
    std::vector<bool> entry(insns.size(), false);
    if (!insns.empty()) entry[0] = true;
    for (size_t i = 0; i < insns.size(); ++i) {
      const Insn& in = insns[i];
      OpKind k = in.info().kind;
      if (k == OpKind::Jump || k == OpKind::CondJump || in.op == Op::CALL_LOCAL)
        entry[static_cast<size_t>(jump_target(in, static_cast<int64_t>(i)))] = true;
      if (in.op == Op::LDDW_CODE_ADDR) {
        int64_t t = static_cast<int64_t>(i) + 1 + static_cast<int32_t>(in.imm);
        if (t >= 0 && static_cast<size_t>(t) < insns.size()) entry[static_cast<size_t>(t)] = true;
      }
      if (in.op == Op::CALL_LOCAL && i + 1 < insns.size()) entry[i + 1] = true;  // return address
    }
    for (size_t i = 0; i < insns.size(); ++i) {
      const Insn& in = insns[i];
      DInsn& d = code_[i];
      d.handler = table[static_cast<size_t>(in.op)];
      if (i > 0 && !entry[i] && sets_acc(insns[i - 1].op) && insns[i - 1].dst == in.dst) {
        int a = acc_index(in.op);
        if (a >= 0) d.handler = acc_table[a];
      }
      d.imm = in.imm;
      d.dst = in.dst;
      d.src = in.src;
      d.off = in.off;
      d.pc = static_cast<uint32_t>(i);
      d.target = nullptr;
      OpKind k = in.info().kind;
      if (k == OpKind::Jump || k == OpKind::CondJump || in.op == Op::CALL_LOCAL)
        d.target = &code_[static_cast<size_t>(jump_target(in, static_cast<int64_t>(i)))];
      else if (in.op == Op::CALL_HELPER)
        d.helper = linked.helper_at[i];
      else if (in.op == Op::CALLX)
        d.imm = reinterpret_cast<int64_t>(&by_id_);
      else if (in.op == Op::LDDW_CODE_ADDR)
        d.imm = static_cast<int64_t>(i) + 1 + static_cast<int32_t>(in.imm);  // target insn index
    }
  }

  EngineKind kind() const override { return EngineKind::Interpreter; }

  Result<uint64_t> run(const RunArgs& args, RunStats* stats) const override {
    RunContext ctx;
    ctx.args = &args;
    ctx.exe = exe_;
    ctx.checked = checked_;
    if (!calls_helpers_) return execute(args, ctx, args.r1, args.r2, stats);  // nothing can ask current_run()
    ScopedRunContext scope(&ctx);
    return execute(args, ctx, args.r1, args.r2, stats);
  }

  Result<uint64_t> run_tail(uint64_t r1, RunStats* stats) const override {
    RunContext* ctx = current_run();
    if (!ctx) return make_error(ErrorCode::Runtime, "tail call outside a run");
    // Memory handed out from here on must be recorded (the target starts with a fresh stack and r1 only,
    // so nothing handed out before the tail call is reachable).
    if (checked_) ctx->checked = true;
    return execute(*ctx->args, *ctx, r1, 0, stats);
  }

 private:
  Result<uint64_t> execute(const RunArgs& args, RunContext& ctx, uint64_t r1, uint64_t r2, RunStats* stats,
                           const State* parent = nullptr, size_t start = 0, const uint64_t* extra = nullptr) const {
    alignas(16) uint8_t stack[kStackBytes];
    static_assert(kNumRegs == 11);
    uint64_t regs[kNumRegs] = {0,
                               r1,
                               r2,
                               extra ? extra[0] : 0,
                               extra ? extra[1] : 0,
                               extra ? extra[2] : 0,
                               0,
                               0,
                               0,
                               0,
                               reinterpret_cast<uint64_t>(stack) + kStackBytes};
    State st;
    st.parent = parent;
    if (parent) st.count = parent->count;
    const CallFunction saved_call_function = ctx.call_function;
    st.engine = this;
    ctx.call_function = CallFunction{&Interpreter::callback, &st};
    st.args = &args;
    st.ctx = &ctx;
    st.stack_lo = reinterpret_cast<uint64_t>(stack);
    st.stack_hi = st.stack_lo + kStackBytes;
    st.budget = budget_;
    uint64_t r0 = run_fn_(code_.data(), code_.data() + start, regs, &st, nullptr);
    ctx.call_function = saved_call_function;
    if (stats) stats->insns_executed = st.count;
    if (st.failed) return st.error;
    return r0;
  }

  // RunContext::call_function of a run: calls back into the program from a helper.
  static Result<uint64_t> callback(const void* self, int64_t insn, uint64_t a1, uint64_t a2, uint64_t a3,
                                   uint64_t a4, uint64_t a5) {
    auto* st = static_cast<State*>(const_cast<void*>(self));
    const Interpreter* me = st->engine;
    if (insn < 0 || static_cast<size_t>(insn) >= me->code_.size())
      return make_error(ErrorCode::Runtime, fmt::format("callback target {} is outside the program", insn));
    uint64_t extra3[3] = {a3, a4, a5};
    RunStats sub;
    auto res = me->execute(*st->args, *st->ctx, a1, a2, &sub, st, static_cast<size_t>(insn), extra3);
    st->count = sub.insns_executed;
    return res;
  }

  const Executable* exe_;
  std::vector<DInsn> code_;
  std::vector<const HelperDef*> by_id_;
  uint64_t budget_;
  bool checked_;
  bool calls_helpers_ = false;  // helpers (incl. tail calls, callbacks) are the only users of current_run()
  RunFn run_fn_;
};

}  // namespace

Result<std::unique_ptr<Engine>> make_interpreter(const LinkedProgram& linked, const ExecOptions& options) {
  return std::unique_ptr<Engine>(new Interpreter(linked, options));
}

}  // namespace bpfvm::detail
