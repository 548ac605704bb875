// The one helper prototype table (protos.def) and the HelperSet built on it.
#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "bpfvm/helpers.hpp"
#include "bpfvm/progtype.hpp"
#include "helpers/impl.hpp"

namespace bpfvm {

namespace {

constexpr HelperArg A(ArgType t, uint8_t f = 0, uint16_t size = 0, const char* btf_struct = nullptr) {
  return HelperArg{t, f, size, btf_struct};
}

// Argument tokens of protos.def.
constexpr HelperArg N = A(ArgType::None), ANY = A(ArgType::Anything), MAP = A(ArgType::ConstMapPtr),
                    KEY = A(ArgType::MapKey), VAL = A(ArgType::MapValue),
                    VAL_U = A(ArgType::MapValue, kArgUninit), VAL_N = A(ArgType::MapValue, kArgMaybeNull),
                    MEM_R = A(ArgType::Mem, kArgReadOnly), MEM_RN = A(ArgType::Mem, kArgReadOnly | kArgMaybeNull),
                    MEM = A(ArgType::Mem), MEM_N = A(ArgType::Mem, kArgMaybeNull), UMEM = A(ArgType::Mem, kArgUninit),
                    SZ = A(ArgType::ConstSize), SZ0 = A(ArgType::ConstSizeOrZero), CTX = A(ArgType::Ctx),
                    CTX_N = A(ArgType::Ctx, kArgMaybeNull), LOCK = A(ArgType::SpinLock), SKC = A(ArgType::SockCommon),
                    INTP = A(ArgType::Int), LONGP = A(ArgType::Long), BTF = A(ArgType::BtfId),
                    BTF_N = A(ArgType::BtfId, kArgMaybeNull), BTF_NR = A(ArgType::BtfId, kArgMaybeNull | kArgRelease),
                    RB = A(ArgType::RingbufMem, kArgRelease), ASZ0 = A(ArgType::ConstAllocSizeOrZero),
                    BSKC = A(ArgType::BtfIdSockCommon), BSKC_R = A(ArgType::BtfIdSockCommon, kArgRelease),
                    PCPU = A(ArgType::PercpuBtfId), FUNC = A(ArgType::Func), STK_N = A(ArgType::Stack, kArgMaybeNull),
                    CSTR = A(ArgType::ConstStr), TIMER = A(ArgType::Timer), KPTR = A(ArgType::Kptr),
                    DYN_L = A(ArgType::Dynptr, kArgUninit), DYN_RB = A(ArgType::Dynptr, kArgUninit),
                    DYN_RBR = A(ArgType::Dynptr, kArgRelease), DYN_RO = A(ArgType::Dynptr, kArgReadOnly),
                    IPHDR4 = A(ArgType::Mem, kArgReadOnly | kArgFixedSize, 20),
                    IPHDR6 = A(ArgType::Mem, kArgReadOnly | kArgFixedSize, 40),
                    TCPHDR = A(ArgType::Mem, kArgReadOnly | kArgFixedSize, 20),
                    // Kernel objects of a given struct (the kernel's arg_btf_id).
                    BTASK = A(ArgType::BtfId, 0, 0, "task_struct"), BFILE = A(ArgType::BtfId, 0, 0, "file"),
                    BPATH = A(ArgType::BtfId, 0, 0, "path"), BBPRM = A(ArgType::BtfId, 0, 0, "linux_binprm"),
                    BINODE_N = A(ArgType::BtfId, kArgMaybeNull, 0, "inode"),
                    BINODE = A(ArgType::BtfId, 0, 0, "inode"), BSEQ = A(ArgType::BtfId, 0, 0, "seq_file"),
                    BSKB = A(ArgType::BtfId, 0, 0, "sk_buff"), BXDP = A(ArgType::BtfId, 0, 0, "xdp_buff"),
                    BCGRP = A(ArgType::BtfId, 0, 0, "cgroup");

struct RetTok {
  RetType t;
  uint8_t f;
  const char* s = nullptr;  // RetType::BtfId: the struct pointed to
};
constexpr RetTok INT{RetType::Integer, 0}, VOID{RetType::Void, 0}, MV{RetType::MapValue, 0},
    MV_N{RetType::MapValue, kRetMaybeNull}, SOCK_N{RetType::Socket, kRetMaybeNull | kRetAcquire},
    TCP_N{RetType::TcpSock, kRetMaybeNull}, SKC_N{RetType::SockCommon, kRetMaybeNull | kRetAcquire},
    RB_N{RetType::AllocMem, kRetMaybeNull | kRetRingbuf | kRetAcquire},
    MBTF_RN{RetType::MemOrBtfId, kRetMaybeNull | kRetReadOnly}, MBTF_R{RetType::MemOrBtfId, kRetReadOnly},
    BTFR{RetType::BtfId, 0}, BTFR_N{RetType::BtfId, kRetMaybeNull}, DYNM_N{RetType::DynptrMem, kRetMaybeNull},
    RTASK{RetType::BtfId, kRetTrusted, "task_struct"}, RREGS{RetType::BtfId, kRetTrusted, "pt_regs"},
    RSOCKET_N{RetType::BtfId, kRetMaybeNull, "socket"}, RTCP6_N{RetType::BtfId, kRetMaybeNull, "tcp6_sock"},
    RTCP_N{RetType::BtfId, kRetMaybeNull, "tcp_sock"}, RTCPTW_N{RetType::BtfId, kRetMaybeNull, "tcp_timewait_sock"},
    RTCPREQ_N{RetType::BtfId, kRetMaybeNull, "tcp_request_sock"}, RUDP6_N{RetType::BtfId, kRetMaybeNull, "udp6_sock"},
    RUNIX_N{RetType::BtfId, kRetMaybeNull, "unix_sock"}, RMPTCP_N{RetType::BtfId, kRetMaybeNull, "mptcp_sock"};

constexpr uint16_t GPL = kHelperGplOnly, PKT = kHelperChangesPktData, CB = kHelperCallsBack, SLP = kHelperSleepable,
                   TAIL = kHelperTailCall, PKTA = kHelperPktAccess;

// Privilege tiers of protos.def.
constexpr HelperPriv UNPRIV = HelperPriv::Unprivileged, TYPE = HelperPriv::ProgType, CAPBPF = HelperPriv::CapBpf,
                     PERFMON = HelperPriv::CapPerfmon, TRACING = HelperPriv::Tracing;

constexpr std::array<HelperProto, kMaxKernelHelperId + 1> make_table() {
  std::array<HelperProto, kMaxKernelHelperId + 1> t{};
  t[0] = HelperProto{0, "bpf_unspec", RetType::Integer, 0, {}, 0, HelperPriv::Tracing};
#define H(ID, NAME, RET, FLAGS, PRIV, A1, A2, A3, A4, A5)                                                \
  t[ID] = HelperProto{ID, "bpf_" #NAME, RET.t, RET.f, {A1, A2, A3, A4, A5}, static_cast<uint16_t>(FLAGS), \
                      PRIV, RET.s};
#include "helpers/protos.def"
#undef H
  return t;
}

constexpr auto kTable = make_table();

}  // namespace

const char* helper_priv_capability(HelperPriv p) {
  switch (p) {
    case HelperPriv::Unprivileged:
    case HelperPriv::ProgType: return "";
    case HelperPriv::CapBpf: return "CAP_BPF";
    case HelperPriv::CapPerfmon: return "CAP_PERFMON";
    case HelperPriv::Tracing: return "CAP_PERFMON";  // through the tracing program types it needs
  }
  return "";
}

int HelperProto::nargs() const {
  int n = 5;
  while (n > 0 && args[n - 1].type == ArgType::None) --n;
  return n;
}

std::string arg_type_name(const HelperArg& a) {
  static const char* const names[] = {
      "ARG_DONTCARE",          "ARG_ANYTHING",         "ARG_CONST_MAP_PTR",       "ARG_PTR_TO_MAP_KEY",
      "ARG_PTR_TO_MAP_VALUE",  "ARG_PTR_TO_MEM",       "ARG_CONST_SIZE",          "ARG_CONST_SIZE_OR_ZERO",
      "ARG_PTR_TO_CTX",        "ARG_PTR_TO_SPIN_LOCK", "ARG_PTR_TO_SOCK_COMMON",  "ARG_PTR_TO_INT",
      "ARG_PTR_TO_LONG",       "ARG_PTR_TO_SOCKET",    "ARG_PTR_TO_BTF_ID",       "ARG_PTR_TO_RINGBUF_MEM",
      "ARG_CONST_ALLOC_SIZE_OR_ZERO", "ARG_PTR_TO_BTF_ID_SOCK_COMMON", "ARG_PTR_TO_PERCPU_BTF_ID",
      "ARG_PTR_TO_FUNC",       "ARG_PTR_TO_STACK",     "ARG_PTR_TO_CONST_STR",    "ARG_PTR_TO_TIMER",
      "ARG_PTR_TO_KPTR",       "ARG_PTR_TO_DYNPTR"};
  std::string s = names[static_cast<int>(a.type)];
  if (a.flags & kArgMaybeNull) s += " | PTR_MAYBE_NULL";
  if (a.flags & kArgReadOnly) s += " | MEM_RDONLY";
  if (a.flags & kArgUninit) s += " | MEM_UNINIT";
  if (a.flags & kArgFixedSize) s += fmt::format(" | MEM_FIXED_SIZE({})", a.size);
  if (a.flags & kArgRelease) s += " | OBJ_RELEASE";
  return s;
}

std::string ret_type_name(RetType r, uint8_t f) {
  static const char* const names[] = {"RET_INTEGER",       "RET_VOID",           "RET_PTR_TO_MAP_VALUE",
                                      "RET_PTR_TO_SOCKET", "RET_PTR_TO_TCP_SOCK", "RET_PTR_TO_SOCK_COMMON",
                                      "RET_PTR_TO_ALLOC_MEM", "RET_PTR_TO_MEM_OR_BTF_ID", "RET_PTR_TO_BTF_ID",
                                      "RET_PTR_TO_DYNPTR_MEM"};
  std::string s = names[static_cast<int>(r)];
  if (r == RetType::AllocMem && (f & kRetRingbuf)) s = "RET_PTR_TO_RINGBUF_MEM";
  if (f & kRetMaybeNull) s += "_OR_NULL";
  if (f & kRetReadOnly) s += " | MEM_RDONLY";
  return s;
}

std::string format_proto(const HelperProto& p) {
  std::string s = fmt::format("{} {}(", ret_type_name(p.ret, p.ret_flags), p.name);
  for (int i = 0; i < p.nargs(); ++i) s += (i ? ", " : "") + arg_type_name(p.args[i]);
  return s + ")";
}

std::span<const HelperProto> kernel_helper_protos() { return kTable; }

const HelperProto* kernel_helper_proto(int32_t id) {
  if (id <= 0 || id > kMaxKernelHelperId) return nullptr;
  return &kTable[id];
}

static std::string_view strip_bpf(std::string_view n) {
  if (n.substr(0, 4) == "bpf_") n.remove_prefix(4);
  return n;
}

int32_t kernel_helper_id(std::string_view name) {
  name = strip_bpf(name);
  for (int32_t i = 1; i <= kMaxKernelHelperId; ++i)
    if (strip_bpf(kTable[i].name) == name) return i;
  return -1;
}

// ---- HelperSet -----------------------------------------------------------------------------------

HelperSet::HelperSet() {
  descs_.reserve(kMaxKernelHelperId);
  for (int32_t id = 1; id <= kMaxKernelHelperId; ++id) {
    HelperDesc d;
    d.proto = kTable[id];
    d.fn = builtin_helper_impl(id);
    descs_.push_back(std::move(d));
  }
}

const HelperSet& HelperSet::kernel() {
  static const HelperSet set;
  return set;
}

HelperDesc* HelperSet::find_mut(int32_t id) {
  auto it = std::lower_bound(descs_.begin(), descs_.end(), id,
                             [](const HelperDesc& d, int32_t v) { return d.proto.id < v; });
  return it != descs_.end() && it->proto.id == id ? &*it : nullptr;
}

const HelperDesc* HelperSet::find(int32_t id) const { return const_cast<HelperSet*>(this)->find_mut(id); }

const HelperDesc* HelperSet::find(std::string_view name) const {
  name = strip_bpf(name);
  for (const auto& d : descs_)
    if (strip_bpf(d.proto.name) == name) return &d;
  return nullptr;
}

std::string_view HelperSet::name_of(int32_t id) const {
  const HelperDesc* d = find(id);
  return d ? d->proto.name : std::string_view();
}

Status HelperSet::add(int32_t id, std::string name, HelperProto proto, HelperFn fn, std::vector<uint32_t> prog_types) {
  if (id <= 0) return make_error(ErrorCode::InvalidArgument, fmt::format("helper id {} for '{}' must be > 0", id, name));
  if (name.empty()) return make_error(ErrorCode::InvalidArgument, fmt::format("helper id {} has no name", id));
  if (!fn) return make_error(ErrorCode::InvalidArgument, fmt::format("helper '{}' (id {}) has no function", name, id));
  if (const HelperDesc* other = find(name); other && other->proto.id != id)
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("helper name '{}' is already used by id {}", name, other->proto.id));
  HelperDesc d;
  d.name_storage = std::make_shared<const std::string>(std::move(name));
  d.proto = proto;
  d.proto.id = id;
  d.proto.name = *d.name_storage;
  d.fn = fn;
  d.prog_types = std::move(prog_types);
  d.embedder = true;
  if (HelperDesc* existing = find_mut(id)) {
    *existing = std::move(d);
  } else {
    auto it = std::lower_bound(descs_.begin(), descs_.end(), id,
                               [](const HelperDesc& x, int32_t v) { return x.proto.id < v; });
    descs_.insert(it, std::move(d));
  }
  return {};
}

bool HelperSet::allowed(uint32_t prog_type, int32_t id) const {
  const HelperDesc* d = find(id);
  if (!d) return false;
  if (d->embedder) {
    if (d->prog_types.empty()) return true;
    return std::find(d->prog_types.begin(), d->prog_types.end(), prog_type) != d->prog_types.end();
  }
  const ProgTypeInfo* t = find_prog_type(prog_type);
  return t && t->allows_helper(id);
}

bool HelperSet::provided(uint32_t prog_type, int32_t id) const {
  const HelperDesc* d = find(id);
  return d && allowed(prog_type, id) && (d->embedder ? d->fn != nullptr : helper_impl_for(id, prog_type) != nullptr);
}

HelperTable HelperSet::table_for(uint32_t prog_type) const {
  HelperTable t;
  for (const auto& d : descs_) {
    if (!allowed(prog_type, d.proto.id)) continue;
    HelperFn fn = d.embedder ? d.fn : helper_impl_for(d.proto.id, prog_type);
    if (!fn) continue;
    HelperDef def;
    def.id = d.proto.id;
    def.name = std::string(d.proto.name);
    def.fn = fn;
    def.tail_call = (d.proto.flags & kHelperTailCall) != 0;
    t.add(std::move(def));
  }
  return t;
}

bool license_is_gpl_compatible(std::string_view l) {
  return l == "GPL" || l == "GPL v2" || l == "GPL and additional rights" || l == "Dual BSD/GPL" ||
         l == "Dual MIT/GPL" || l == "Dual MPL/GPL";
}

Status HelperSet::check_program(std::span<const Insn> insns, uint32_t prog_type, bool gpl_compatible) const {
  const ProgTypeInfo* pt = find_prog_type(prog_type);
  std::string tname = pt ? std::string(pt->name) : fmt::format("type {}", prog_type);
  for (size_t pc = 0; pc < insns.size(); ++pc) {
    const Insn& in = insns[pc];
    if (in.op != Op::CALL_HELPER) continue;
    int32_t id = static_cast<int32_t>(in.imm);
    const HelperDesc* d = find(id);
    if (!d)
      return make_error(ErrorCode::Link,
                        fmt::format("program calls unknown helper id {} (the kernel defines 1..{})", id,
                                    kMaxKernelHelperId),
                        static_cast<int64_t>(pc));
    if (!allowed(prog_type, id))
      return make_error(ErrorCode::Link,
                        fmt::format("program uses helper {} (id {}), which is not allowed for {} programs "
                                    "(the kernel refuses it too)",
                                    d->proto.name, id, tname),
                        static_cast<int64_t>(pc));
    if (!gpl_compatible && (d->proto.flags & kHelperGplOnly))
      return make_error(ErrorCode::Link,
                        fmt::format("program uses helper {} (id {}), which is GPL-only, but the program's license "
                                    "is not GPL-compatible (the kernel refuses it too)",
                                    d->proto.name, id),
                        static_cast<int64_t>(pc));
    if (!provided(prog_type, id))
      return make_error(ErrorCode::Link,
                        fmt::format("program uses helper {} (id {}), which bpfvm does not provide for {} programs",
                                    d->proto.name, id, tname),
                        static_cast<int64_t>(pc));
  }
  return {};
}

}  // namespace bpfvm
