// bpfvm: program types. One description per type (src/progtypes/), read by the loader, the verifier,
// the engines and the hooks: the uapi context layout (every field's offset, size, access rights and
// pointer kind), bpfvm's native context for the type, how context accesses are rewritten, the helpers
// the type may call and what its return value means.
//
// Native contexts. The uapi structs (struct xdp_md, struct __sk_buff, ...) declare packet pointers as
// __u32; at run time they are real pointers. bpfvm's native context keeps every uapi field at its uapi
// offset (so scalar accesses, including narrow ones, need no change) and gives the __u32 pointer fields
// 8-byte slots after the uapi part: every rewritten access stays ONE instruction (`r2 = *(u32 *)(r1 +0)`
// on xdp_md.data becomes `r2 = *(u64 *)(r1 +24)`), so jump offsets never move. Fields that the uapi
// already declares as 64-bit pointers (__bpf_md_ptr: __sk_buff.sk, flow_keys, sk_msg_md.data, ...)
// hold real pointers in place. Only struct xdp_md and struct __sk_buff have __u32 pointer fields; every
// other type's native context is its uapi struct (plus hidden state after it, see below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/insn.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// Program type numbers: the kernel's enum bpf_prog_type, plus bpfvm's plain-memory type.
enum ProgTypeId : uint32_t {
  kProgUnspec = 0, kProgSocketFilter = 1, kProgKprobe = 2, kProgSchedCls = 3, kProgSchedAct = 4,
  kProgTracepoint = 5, kProgXdp = 6, kProgPerfEvent = 7, kProgCgroupSkb = 8, kProgCgroupSock = 9,
  kProgLwtIn = 10, kProgLwtOut = 11, kProgLwtXmit = 12, kProgSockOps = 13, kProgSkSkb = 14,
  kProgCgroupDevice = 15, kProgSkMsg = 16, kProgRawTracepoint = 17, kProgCgroupSockAddr = 18,
  kProgLwtSeg6local = 19, kProgLircMode2 = 20, kProgSkReuseport = 21, kProgFlowDissector = 22,
  kProgCgroupSysctl = 23, kProgRawTracepointWritable = 24, kProgCgroupSockopt = 25, kProgTracing = 26,
  kProgStructOps = 27, kProgExt = 28, kProgLsm = 29, kProgSkLookup = 30, kProgSyscall = 31,
  // bpfvm's own: r1 = memory, r2 = its length (the conformance suite's environment, `bpfvm run --mem`).
  kProgMem = 0x10000,
};

// What a context load gives the program (the verifier's register type for the loaded value).
enum class CtxPtr : uint8_t {
  None,              // a scalar
  Packet,            // PTR_TO_PACKET (data)
  PacketMeta,        // PTR_TO_PACKET_META (data_meta)
  PacketEnd,         // PTR_TO_PACKET_END (data_end)
  SockCommonOrNull,  // PTR_TO_SOCK_COMMON_OR_NULL (__sk_buff.sk)
  SocketOrNull,      // PTR_TO_SOCKET_OR_NULL (bpf_sock_ops.sk, sk_reuseport_md.sk, sk_lookup.sk ...)
  Socket,            // PTR_TO_SOCKET (bpf_sock_addr.sk, bpf_sockopt.sk)
  FlowKeys,          // PTR_TO_FLOW_KEYS (__sk_buff.flow_keys in flow dissectors)
  Mem,               // PTR_TO_PACKET-like start of a buffer (bpf_sockopt.optval)
  MemEnd,            // its end (bpf_sockopt.optval_end)
};
const char* ctx_ptr_name(CtxPtr p);

// Access rights of one field for one program type.
enum CtxAccessFlag : uint8_t {
  kCtxRead = 1,
  kCtxWrite = 2,       // stores of exactly the field's size (unless kCtxAnySize)
  kCtxNarrowRead = 4,  // reads of 1, 2 or 4 bytes inside the field are allowed (the kernel's
                       // bpf_ctx_narrow_access_ok); otherwise reads must be the field's full size
  kCtxAnySize = 8,     // any aligned access of 1..8 bytes inside the field (cb[], pt_regs, args[])
};

struct CtxField {
  std::string_view name;  // "data", "cb", "remote_ip6"
  uint32_t off = 0;       // uapi offset
  uint32_t size = 0;      // uapi size (whole array for arrays: cb = 20 bytes)
  uint8_t access = 0;     // CtxAccessFlag for this program type
  CtxPtr ptr = CtxPtr::None;
  uint32_t native_off = 0;   // where the value lives in the native context
  uint8_t native_size = 0;   // 8 for pointers, else = the uapi access size (identity)
  uint8_t elem_size = 0;     // arrays: element size (4 for cb[]); 0 for plain fields
};

// Return-value meaning.
struct RetInfo {
  bool checked = false;   // the kernel itself refuses programs whose r0 may be outside [min, max]
  int64_t min = INT64_MIN, max = INT64_MAX;  // the meaningful range (strict mode enforces it)
  std::string_view meaning;                  // "XDP action: XDP_ABORTED 0, XDP_DROP 1, ..."
};

struct ProgTypeInfo {
  uint32_t type = 0;
  std::string_view name;        // bpftool's name: "xdp", "sched_cls", "socket_filter", "mem"
  std::string_view ctx_struct;  // "struct xdp_md", "struct __sk_buff", "struct pt_regs", ...
  uint32_t ctx_size = 0;        // uapi size of the context (accesses beyond are refused)
  uint32_t native_size = 0;     // size of the native context (hooks allocate this many bytes, 8-aligned)
  std::vector<CtxField> fields;  // sorted by off; empty for the generic layouts below
  // Generic layouts (kprobe pt_regs, tracepoint records, raw_tp / tracing u64 args): any aligned read
  // of 1..8 bytes (8 only when `generic_dw_only`) in [generic_min, ctx_size), read-only, identity.
  bool generic = false;
  uint32_t generic_min = 0;
  bool generic_dw_only = false;
  bool writable_generic = false;  // raw_tracepoint_writable: writes allowed too
  bool has_ctx = true;            // false for kProgMem (r1 is memory, no context accesses)
  bool ld_abs = false;            // legacy LD_ABS / LD_IND allowed (socket_filter, sched_cls/act)
  bool direct_packet = false;     // direct packet access through data/data_end
  bool pointee = false;           // describes an object a context pointer leads to (pointee_layout)
  RetInfo ret;
  std::vector<int32_t> helpers;   // kernel helper ids the kernel allows for this type (sorted)

  bool allows_helper(int32_t id) const;
  // Field covering [off, off+size), or nullptr.
  const CtxField* field_at(int64_t off) const;
  const CtxField* field(std::string_view name) const;
};

// Every description (kernel types 1..31 and kProgMem).
std::span<const ProgTypeInfo* const> all_prog_types();
const ProgTypeInfo* find_prog_type(uint32_t type);
// By bpftool name ("xdp", "sched_cls", ...); also accepts libbpf's section-ish aliases
// "socket", "tc", "classifier", "action", "tp", "raw_tp", "kprobe", "perf_event", "cgroup/skb" ... ; nullptr if unknown.
const ProgTypeInfo* find_prog_type(std::string_view name);
// (bpftool's name of a type number: find_prog_type(type)->name; object.hpp's prog_type_name() too.)

// ---- context access ------------------------------------------------------------------------------

struct CtxAccess {
  const CtxField* field = nullptr;  // nullptr for generic layouts
  CtxPtr ptr = CtxPtr::None;        // type of a loaded value
  int32_t native_off = 0;           // rewritten offset
  uint8_t native_size = 0;          // rewritten size in bytes (1, 2, 4, 8)
};
// Checks one access of `size` bytes at uapi offset `off` (the base register is the context with
// offset 0) as the kernel's is_valid_access + convert_ctx_access for the type do. The error message
// names the field and says what is wrong ("write to xdp_md.data is not allowed", "invalid access to
// __sk_buff at offset 77 size 4"...).
Result<CtxAccess> check_ctx_access(const ProgTypeInfo& type, int64_t off, int size, bool write);

// Objects that pointers loaded from a context lead to, described like contexts (fields, rights; the
// native layout is the uapi one): SockCommonOrNull -> struct bpf_sock as PTR_TO_SOCK_COMMON (type,
// protocol, mark, priority not readable), Socket/SocketOrNull -> struct bpf_sock (read-only),
// FlowKeys -> struct bpf_flow_keys (read/write, any size), and struct bpf_tcp_sock (the result of
// bpf_tcp_sock, read-only; name "tcp_sock"). nullptr for kinds that lead to packet memory.
const ProgTypeInfo* pointee_layout(CtxPtr kind);
const ProgTypeInfo& tcp_sock_layout();
// check_ctx_access for such an object (the base register holds the pointer with offset 0).
Result<CtxAccess> check_pointee_access(CtxPtr kind, int64_t off, int size, bool write);

// Facts about the base register of memory instructions, per instruction slot. The verifier, which
// knows exact register types, can supply them; otherwise ctx_base_facts() computes them with a small
// dataflow pass (registers and r10-relative 8-byte stack slots holding ctx, through the CFG, spills,
// bpf-to-bpf calls and callbacks).
enum class BaseFact : uint8_t {
  NotCtx,    // the base is certainly not the context
  Ctx,       // the base is certainly the context pointer, unmodified
  CtxMoved,  // the context pointer plus an offset (the kernel refuses these accesses)
  Unknown,   // ambiguous: context on some paths, something else on others
};
using CtxBaseFacts = std::vector<BaseFact>;  // one per instruction slot (only memory insns matter)
Result<CtxBaseFacts> ctx_base_facts(std::span<const Insn> insns, const ProgTypeInfo& type);

// Rewrites every context load/store (base = Ctx) into an access of the native context, checking
// rights and sizes. Refuses accesses through CtxMoved/Unknown bases and atomics on the context.
// Instruction count and jump offsets never change. `facts` == nullptr: computed by ctx_base_facts.
Result<std::vector<Insn>> rewrite_ctx_accesses(std::span<const Insn> insns, const ProgTypeInfo& type,
                                               const CtxBaseFacts* facts = nullptr);

// ---- native contexts filled by the hooks ---------------------------------------------------------

struct SkbNative;

// Hidden state shared by packet contexts (after the uapi part and pointer slots; programs cannot
// reach it, helpers such as bpf_xdp_adjust_head/tail and bpf_skb_load_bytes use it).
struct PacketBounds {
  uint64_t buf_start = 0;  // first byte of the buffer (XDP: data_hard_start); data may move down to
                           // buf_start + headroom_reserve
  uint64_t buf_end = 0;    // end of the usable buffer (XDP: data_hard_end, i.e. frame end - tailroom)
  uint32_t headroom_reserve = 0;  // XDP: sizeof(struct xdp_frame) = 40 kept free at the start
  uint32_t meta_valid = 1;        // XDP: data_meta supported (0: bpf_xdp_adjust_meta -> -ENOTSUPP)
  // Socket buffers: where the link-layer and network headers start (0 = not set), for
  // bpf_skb_load_bytes_relative.
  uint64_t mac_header = 0;
  uint64_t network_header = 0;
  // Socket buffers: makes room for helpers that push or append bytes (bpf_skb_change_head/_tail):
  // afterwards at least `head` bytes precede data and `tail` bytes follow data_end. The buffer may
  // move; every pointer of the context is updated. Returns 0 or a negative errno; nullptr: the
  // buffer cannot grow (-ENOMEM), as for a classic filter's context.
  int (*grow)(void* owner, SkbNative* skb, uint64_t head, uint64_t tail) = nullptr;
  void* grow_owner = nullptr;
};

// struct xdp_md (24 bytes) + pointer slots.
struct XdpNative {
  uint32_t data32 = 0, data_end32 = 0, data_meta32 = 0;  // uapi slots (never read after the rewrite)
  uint32_t ingress_ifindex = 0, rx_queue_index = 0, egress_ifindex = 0;
  uint64_t data = 0, data_end = 0, data_meta = 0;  // real pointers
  PacketBounds bounds;
};
static_assert(offsetof(XdpNative, data) == 24);

// struct __sk_buff (192 bytes, Linux 6.1) + pointer slots.
struct SkbNative {
  uint32_t len = 0, pkt_type = 0, mark = 0, queue_mapping = 0, protocol = 0, vlan_present = 0,
           vlan_tci = 0, vlan_proto = 0, priority = 0, ingress_ifindex = 0, ifindex = 0, tc_index = 0;
  uint32_t cb[5] = {};
  uint32_t hash = 0, tc_classid = 0, data32 = 0, data_end32 = 0, napi_id = 0, family = 0,
           remote_ip4 = 0, local_ip4 = 0;
  uint32_t remote_ip6[4] = {}, local_ip6[4] = {};
  uint32_t remote_port = 0, local_port = 0, data_meta32 = 0;
  uint64_t flow_keys = 0;  // struct bpf_flow_keys * (flow dissector)
  uint64_t tstamp = 0;
  uint32_t wire_len = 0, gso_segs = 0;
  uint64_t sk = 0;  // struct bpf_sock * or 0
  uint32_t gso_size = 0;
  uint8_t tstamp_type = 0;
  uint8_t pad_[3] = {};
  uint64_t hwtstamp = 0;
  // ---- after the uapi struct (offset 192) ----
  uint64_t data = 0, data_end = 0, data_meta = 0;  // real pointers
  PacketBounds bounds;
};
static_assert(offsetof(SkbNative, hwtstamp) == 184);
static_assert(offsetof(SkbNative, data) == 192);

// The memory of a socket buffer's packet, which the helpers that push or append bytes move when they
// need more room (PacketBounds::grow), as the kernel's pskb_expand_head. Owned by whoever builds the
// context (the test run, the packet hook).
class SkbBuffer {
 public:
  // A buffer of at least `size` bytes for the next packet (zeroed when newly allocated; a buffer
  // reused from an earlier packet keeps its bytes); buffers retired by growth are released.
  uint8_t* reset(size_t size);
  // Connects a context laid out in the current buffer to this object (bounds.grow).
  void connect(SkbNative& skb) {
    skb.bounds.grow = &SkbBuffer::grow;
    skb.bounds.grow_owner = this;
  }
  uint8_t* data() { return buf_.data(); }
  size_t size() const { return buf_.size(); }

 private:
  static int grow(void* owner, SkbNative* skb, uint64_t head, uint64_t tail);
  std::vector<uint8_t> buf_;
  // Buffers left by growth during the current packet: kept until the next reset so that a stale
  // packet pointer (unverified code, or the caller's view of the input) never reaches freed memory.
  std::vector<std::vector<uint8_t>> retired_;
};

// Redirect requests recorded by bpf_redirect / bpf_redirect_map for the hook (per thread, reset by
// the hook before a run).
struct RedirectInfo {
  bool set = false;
  uint32_t ifindex = 0;  // bpf_redirect target, or the key of bpf_redirect_map
  uint64_t flags = 0;
  const void* map = nullptr;  // bpfvm::Map* for redirect_map
};
RedirectInfo& redirect_info();

// ---- BPF_PROG_TEST_RUN-like runs -----------------------------------------------------------------

struct TestRunOptions {
  // Socket filters: the kernel's BPF_PROG_TEST_RUN pulls the Ethernet header (the program and LD_ABS
  // see the frame from layer 3, __sk_buff.len = size - 14). Set true for AF_PACKET semantics instead
  // (the frame from layer 2, as tcpdump/libpcap filters expect and bpfvm's packet hook gives).
  bool socket_filter_l2 = false;
};

// Owns the memory of one run: the packet buffer (with the kernel's headroom/tailroom) and the native
// context; `args` points into them. Keep it alive while the program runs; read results afterwards.
class TestRunContext {
 public:
  const ProgTypeInfo& type() const { return *type_; }
  RunArgs& args() { return args_; }
  // After the run: the packet as the kernel's test run returns it in data_out (XDP: from data_meta
  // to data_end; skb types: from data, the Ethernet header re-pushed - zeroed for types that saw the
  // frame from layer 3, as the kernel does), and ctx_out (the uapi struct rebuilt from the native
  // context; empty when the type has none).
  std::vector<uint8_t> data_out() const;
  std::vector<uint8_t> ctx_out() const;
  void* native_ctx() { return ctx_.data(); }

 private:
  friend Result<std::unique_ptr<TestRunContext>> make_test_run(const ProgTypeInfo&, std::span<const uint8_t>,
                                                               std::span<const uint8_t>, const TestRunOptions&);
  const ProgTypeInfo* type_ = nullptr;
  std::vector<uint8_t> buf_;   // packet buffer of XDP (or plain memory)
  SkbBuffer skb_;              // packet buffer of socket-buffer types
  std::vector<uint64_t> ctx_storage_;  // 8-aligned native context
  std::span<uint8_t> ctx_;
  size_t l2_pulled_ = 0;       // bytes of Ethernet header pulled (socket filter / cgroup_skb / lwt)
  RunArgs args_;
};

// Builds the context for a run with data_in / ctx_in (the uapi struct, as bpftool's ctx_in), following
// the kernel's BPF_PROG_TEST_RUN rules where it has them: xdp, socket_filter, sched_cls, sched_act,
// cgroup_skb, lwt_*, flow_dissector, raw_tracepoint, and mem; plus kprobe (ctx_in = struct pt_regs),
// tracepoint (ctx_in = the record), perf_event (ctx_in = bpf_perf_event_data), tracing (u64 args).
// Errors (-EINVAL cases of the kernel) name the offending field.
Result<std::unique_ptr<TestRunContext>> make_test_run(const ProgTypeInfo& type, std::span<const uint8_t> data_in,
                                                      std::span<const uint8_t> ctx_in,
                                                      const TestRunOptions& options = {});

}  // namespace bpfvm
