// Register and stack state: pointer kinds, spilled registers, frames, references, and the state
// equivalence used for pruning.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bpfvm/map.hpp"
#include "verifier/scalar.hpp"

namespace bpfvm::verifier {

enum class Kind : uint8_t {
  NotInit,
  Scalar,
  Ctx,
  Stack,
  Packet,         // packet data (or plain memory of unknown size, proved against r1 + r2)
  PacketMeta,
  PacketEnd,
  MapValue,
  MapValueOrNull,
  MapPtr,         // CONST_PTR_TO_MAP
  MapPtrOrNull,   // inner map from a map-in-map lookup
  Mem,            // memory of a known size (ringbuf record, plain memory of known size, sockopt...)
  MemOrNull,
  Sock,           // a kernel socket object (read-only fields)
  SockOrNull,
  FlowKeys,
  Func,           // address of a BPF function (callback)
  BtfId,          // a kernel object (PTR_TO_BTF_ID): typed by btf_id (loads checked against the struct's
                  // layout), or opaque when btf_id is 0 (loads give scalars)
  BtfIdOrNull,
};
const char* kind_name(Kind k);
inline bool is_pointer(Kind k) { return k != Kind::NotInit && k != Kind::Scalar; }
inline bool is_or_null(Kind k) {
  return k == Kind::MapValueOrNull || k == Kind::MapPtrOrNull || k == Kind::MemOrNull || k == Kind::SockOrNull ||
         k == Kind::BtfIdOrNull;
}
Kind non_null(Kind k);

struct Reg {
  Kind kind = Kind::NotInit;
  bool rdonly = false;     // Mem/MapValue: read-only memory
  uint8_t frame = 0;       // Stack: the frame it points into
  uint8_t bflags = 0;      // BtfId: kBtfTrusted / kBtfUntrusted / kBtfRcu; Mem: kBtfUntrusted (read-only kernel memory of
                           // unknown size, read through faulting loads)
  int32_t off = 0;         // pointers: fixed offset
  Scalar v = Scalar::constant(0);  // scalars: the value; pointers: the variable part of the offset
  int32_t map = -1;        // MapValue/MapPtr: map index
  uint32_t id = 0;         // or-null pointers: all copies share it; packet pointers: same variable part;
                           // scalars: copies that hold the same value
  uint32_t ref = 0;        // acquired reference (ringbuf record, socket) it belongs to
  int32_t range = 0;       // packet: bytes proved accessible from the start of this id's base
  uint32_t mem_size = 0;   // Mem: bytes
  int32_t func = -1;       // Func: target instruction
  uint32_t btf_id = 0;     // BtfId: the struct (in the attach target's BTF) it points to; 0 unknown

  static Reg scalar(const Scalar& s) {
    Reg r;
    r.kind = Kind::Scalar;
    r.v = s;
    return r;
  }
  static Reg unknown() { return scalar(Scalar::unknown()); }
  static Reg ptr(Kind k, int32_t off = 0) {
    Reg r;
    r.kind = k;
    r.off = off;
    return r;
  }
  bool is_scalar() const { return kind == Kind::Scalar; }
  bool is_const() const { return kind == Kind::Scalar && v.is_const(); }
  bool is_null() const { return kind == Kind::Scalar && v.is_const() && v.value() == 0; }
  bool operator==(const Reg&) const = default;
};

// Reg::bflags: kBtfRcu is the kernel's MEM_RCU, a kernel object protected by the RCU read section
// (every non-sleepable program runs inside one): usable as a plain kernel object, not known non-NULL.
enum : uint8_t { kBtfTrusted = 1, kBtfUntrusted = 2, kBtfRcu = 4 };

// Byte types of a stack slot.
enum : uint8_t { kStackInvalid = 0, kStackMisc = 1, kStackZero = 2, kStackSpill = 3 };

struct Slot {
  std::array<uint8_t, 8> bytes{};  // index 0 = lowest address
  Reg spill;                        // valid when bytes[0] == kStackSpill
  uint8_t spill_size = 0;
  // Bytes whose value is a known constant (bit k: cval[k] is byte k), whatever their type; used to
  // read constant map keys (the strict rule on array map indices).
  uint8_t cmask = 0;
  std::array<uint8_t, 8> cval{};
  bool operator==(const Slot&) const = default;
};

struct Frame {
  std::array<Reg, 11> regs;
  std::vector<Slot> stack;  // slot i covers fp-8*(i+1) .. fp-8*i-1
  int32_t callsite = -1;    // instruction of the call that created this frame (-1 for the main one)
  int32_t subprog = 0;      // first instruction of the function
  bool callback = false;    // a callback invoked by a helper (bpf_loop...)
  int32_t cb_ret_max = 1;   // callbacks: allowed r0 range [0, cb_ret_max]
  std::vector<Reg> cb_args; // callbacks: r1..r5 at entry (for the next invocation)
  // Callbacks: this invocation's number (1 for the first) and how many the helper makes at most
  // (bpf_loop: nr_loops' upper bound, as the kernel unrolls at most that many).
  uint32_t cb_iters = 0;
  uint64_t cb_max = UINT64_MAX;

  Slot* slot(int i) { return i < static_cast<int>(stack.size()) ? &stack[i] : nullptr; }
  Slot& slot_grow(int i) {
    if (i >= static_cast<int>(stack.size())) stack.resize(i + 1);
    return stack[i];
  }
};

struct RefState {
  uint32_t id = 0;
  int32_t insn = 0;  // where it was acquired
  bool operator==(const RefState&) const = default;
};

// Register liveness per instruction (live-in set, bit i = r_i).
using LiveSet = uint16_t;

struct Node;
struct State;
constexpr int kMaxFrames = 8;  // call depth (kMaxCallDepth)
// One executed instruction of a path segment (path precision), with the registers already
// backtracked from just before it (a later backtrack needing no more stops there).
struct HistEntry {
  int32_t pc;
  uint16_t marked;  // registers of the frame executing it
  uint16_t linked = 0;  // a comparison of scalars: registers sharing an id with an operand (refined with it)
  // A load or store of a frame's stack at a constant offset: the slot (fp-8*(slot+1)), and
  // for a store whether it wrote the whole slot; for a load whether its value came from the slot's
  // contents (a spilled register or zero bytes) rather than unknown bytes. kNoSlot otherwise.
  int8_t slot = kNoSlot;
  uint8_t sflags = 0;
  uint8_t frame = 0;   // the call depth executing it (0: the main function)
  uint8_t sframe = 0;  // the frame whose stack `slot` is in
  uint64_t smarked = 0;  // stack slots of `frame` already backtracked from just before it
  static constexpr int8_t kNoSlot = -1;
  static constexpr uint8_t kFullWrite = 1, kValueFromSlot = 2;
};
uint64_t state_hash(const State& s);  // equal states hash equal

struct State {
  std::vector<Frame> frames;
  std::vector<RefState> refs;
  uint32_t lock_map = 0;  // 1 + map index of the held spin lock, 0 none
  uint32_t lock_id = 0;
  Scalar mem_len = Scalar::unknown();  // kProgMem with unknown size: the length in r2 (id kMemLenId)
  Node* parent = nullptr;
  uint32_t jmps = 0;  // conditional jumps on this path (heuristics)
  // Stack liveness (single-function programs): main-frame slots written whole since `parent` was
  // stored (reads of them below do not reach `parent`).
  uint64_t swritten = 0;
  // Path precision: the instructions executed since `parent` was stored, in order.
  std::vector<HistEntry> hist;

  Frame& cur() { return frames.back(); }
  const Frame& cur() const { return frames.back(); }
  size_t approx_bytes() const;
};

constexpr uint32_t kMemLenId = 1;  // scalar id linking r2 to the memory length (kProgMem)

// A state pruned against one whose precision was not final yet (a callback invocation in progress):
// that state's final marks are backtracked along the pruned path when they are final (the kernel's
// backedges, propagate_backedges).
struct Backedge {
  Node* target = nullptr;
  Node* parent = nullptr;        // the pruned path's last stored state
  std::vector<HistEntry> hist;   // the pruned path's instructions since then
  std::vector<LiveSet> live;     // per frame, at the pruned point
  int depth = 0;                 // its call depth
  int64_t pc = 0;
};
struct LoopInfo {
  std::vector<Backedge> edges;
  std::vector<Node*> members;    // states kept (pin_owner) until the edges are resolved
};

// A stored state for pruning: complete when branches == 0.
struct Node {
  State st;
  int32_t pc = 0;
  uint32_t branches = 0;
  uint32_t hits = 0, misses = 0;
  uint64_t hash = 0;
  bool hashed = false;  // `hash` computed
  // Path precision: the instructions from the parent node's state to this one (the path segment),
  // the registers whose exact values some decision below this state used (backtracked along the
  // paths that made the decisions), and whether everything (registers and stack) is needed.
  std::vector<HistEntry> seg;
  std::array<uint16_t, kMaxFrames> pprec{};  // per frame (0: the main function)
  bool pall = false;
  // Single-function programs: main-frame stack slots some descendant read before writing them whole
  // (the others are dead here and not compared), and slots whose exact contents (a spilled scalar,
  // zero bytes) some decision below used (compared precisely).
  uint64_t sread = 0;
  std::array<uint64_t, kMaxFrames> pstack{};  // per frame
  uint32_t level = 0;  // depth in the tree of stored states
  // On the path of a state pruned against a callback invocation in progress (between the two): its
  // precision depends on that invocation's final marks, so it is always compared exactly (and
  // what a state pruned against it compared is all needed), and it is kept, with its path segment,
  // until `pin_owner` (the outermost such invocation) completes and its backedges are resolved.
  bool exact = false;
  Node* pin_owner = nullptr;
  std::unique_ptr<LoopInfo> loop;  // a callback invocation: the states pruned against it in progress
  uint64_t get_hash() {
    if (!hashed) {
      hash = state_hash(st);
      hashed = true;
    }
    return hash;
  }
};


// Is every concrete state of `cur` covered by `old`? Registers outside `live` (per frame, innermost
// last) are ignored.
// Scalars outside `precise` (per frame) only need to be scalars on both sides (their values do not
// influence any decision the verifier made below this point); spilled scalars and zero bytes likewise
// unless `stack_precise` (or their slot is in `slots_precise[frame]`, when given). Main-frame stack
// slots outside `slots_live` are ignored. `uninit_ok` (root rules): uninitialised bytes read as
// unknown ones, so an unknown byte of `old` covers them.
bool state_covered(const State& old, const State& cur, const std::vector<LiveSet>& live_per_frame,
                   const std::vector<LiveSet>& precise_per_frame, bool stack_precise,
                   uint64_t slots_live = ~uint64_t{0}, const uint64_t* slots_precise = nullptr,
                   bool uninit_ok = false);
// Exactly the same (for the infinite-loop check).
bool state_same(const State& a, const State& b);
uint64_t state_hash(const State& s);  // equal states hash equal

// Kernel-style text of a register: "ctx()", "pkt(off=14,r=14)", "scalar(umax=255)", "fp-8".
std::string reg_str(const Reg& r, const std::vector<MapSpec>* maps = nullptr);
// The register's type as the kernel's logs name it: "trusted_ptr_or_null_", "rcu_ptr_", "map_value"...
std::string type_str(const Reg& r);
// "R1=ctx() R2=pkt(r=14) R10=fp0 fp-8=mmmmmmmm" for the innermost frame (callers prefixed).
std::string state_str(const State& s, const std::vector<MapSpec>* maps = nullptr);
// Stack bytes of one slot as the kernel prints them ("mmmmmmmm", "????mmmm", "0000", "r" for spills).
std::string slot_str(const Slot& s);

}  // namespace bpfvm::verifier
