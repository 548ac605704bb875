// The program-type registry: one description per type. Offsets come from the uapi headers
// (<linux/bpf.h> of Linux 6.1) through offsetof, so they cannot drift; access rights follow the
// kernel's <type>_is_valid_access functions (net/core/filter.c, kernel/trace/bpf_trace.c).
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "bpfvm/progtype.hpp"
#include "bpfvm/trace.hpp"
#include "progtypes/helper_groups.hpp"

namespace bpfvm {

namespace {

constexpr uint8_t R = kCtxRead, W = kCtxWrite, NR = kCtxNarrowRead, ANYSZ = kCtxAnySize;

#define FLD(S, f) #f, static_cast<uint32_t>(offsetof(S, f)), static_cast<uint32_t>(sizeof(((S*)nullptr)->f))

// A field whose native location is its uapi location (identity rewrite).
CtxField plain(std::string_view name, uint32_t off, uint32_t size, uint8_t access, CtxPtr ptr = CtxPtr::None,
               uint8_t elem = 0) {
  CtxField f;
  f.name = name;
  f.off = off;
  f.size = size;
  f.access = access;
  f.ptr = ptr;
  f.native_off = off;
  f.native_size = static_cast<uint8_t>(size > 8 ? 0 : size);
  f.elem_size = elem;
  return f;
}
// A __u32 uapi pointer field with an 8-byte native slot.
CtxField moved_ptr(std::string_view name, uint32_t off, CtxPtr ptr, uint32_t native_off) {
  CtxField f = plain(name, off, 4, R, ptr);
  f.native_off = native_off;
  f.native_size = 8;
  return f;
}

void sort_fields(ProgTypeInfo& t) {
  std::sort(t.fields.begin(), t.fields.end(), [](const CtxField& a, const CtxField& b) { return a.off < b.off; });
}

// ---- struct __sk_buff: one row per field, rights per flavour (the kernel's per-type switch) -------
enum SkbFlavor : uint8_t { SF = 1, TC = 2, CG = 4, SK = 8, LWT = 16 };
constexpr uint8_t ALL = SF | TC | CG | SK | LWT;

struct SkbRow {
  const char* name;
  uint32_t off, size;
  uint8_t read, write;  // flavours
  uint8_t extra;        // NR / ANYSZ
  CtxPtr ptr;
  uint8_t elem;
};

std::vector<SkbRow> skb_rows() {
  using S = struct __sk_buff;
  auto row = [](const char* n, uint32_t off, uint32_t size, uint8_t r, uint8_t w, uint8_t extra,
                CtxPtr p = CtxPtr::None, uint8_t elem = 0) { return SkbRow{n, off, size, r, w, extra, p, elem}; };
  return {
      row("len", offsetof(S, len), 4, ALL, 0, NR),
      row("pkt_type", offsetof(S, pkt_type), 4, ALL, 0, NR),
      row("mark", offsetof(S, mark), 4, SF | TC | CG | LWT, TC | CG | LWT, NR),
      row("queue_mapping", offsetof(S, queue_mapping), 4, ALL, TC, NR),
      row("protocol", offsetof(S, protocol), 4, ALL, 0, NR),
      row("vlan_present", offsetof(S, vlan_present), 4, ALL, 0, NR),
      row("vlan_tci", offsetof(S, vlan_tci), 4, ALL, 0, NR),
      row("vlan_proto", offsetof(S, vlan_proto), 4, ALL, 0, NR),
      row("priority", offsetof(S, priority), 4, ALL, TC | CG | LWT | SK, NR),
      row("ingress_ifindex", offsetof(S, ingress_ifindex), 4, ALL, 0, NR),
      row("ifindex", offsetof(S, ifindex), 4, ALL, 0, NR),
      row("tc_index", offsetof(S, tc_index), 4, ALL, TC | SK, NR),
      row("cb", offsetof(S, cb), 20, ALL, SF | TC | CG | LWT, ANYSZ, CtxPtr::None, 4),
      row("hash", offsetof(S, hash), 4, ALL, 0, NR),
      row("tc_classid", offsetof(S, tc_classid), 4, TC, TC, NR),
      row("data", offsetof(S, data), 4, TC | CG | SK | LWT, 0, 0, CtxPtr::Packet),
      row("data_end", offsetof(S, data_end), 4, TC | CG | SK | LWT, 0, 0, CtxPtr::PacketEnd),
      row("napi_id", offsetof(S, napi_id), 4, ALL, 0, NR),
      row("family", offsetof(S, family), 4, CG | SK, 0, NR),
      row("remote_ip4", offsetof(S, remote_ip4), 4, CG | SK, 0, 0),
      row("local_ip4", offsetof(S, local_ip4), 4, CG | SK, 0, 0),
      row("remote_ip6", offsetof(S, remote_ip6), 16, CG | SK, 0, 0, CtxPtr::None, 4),
      row("local_ip6", offsetof(S, local_ip6), 16, CG | SK, 0, 0, CtxPtr::None, 4),
      row("remote_port", offsetof(S, remote_port), 4, CG | SK, 0, NR),
      row("local_port", offsetof(S, local_port), 4, CG | SK, 0, NR),
      row("data_meta", offsetof(S, data_meta), 4, TC, 0, 0, CtxPtr::PacketMeta),
      row("tstamp", offsetof(S, tstamp), 8, TC | CG, TC | CG, 0),
      row("wire_len", offsetof(S, wire_len), 4, TC, 0, NR),
      row("gso_segs", offsetof(S, gso_segs), 4, ALL, 0, NR),
      row("sk", offsetof(S, sk), 8, ALL, 0, 0, CtxPtr::SockCommonOrNull),
      row("gso_size", offsetof(S, gso_size), 4, ALL, 0, NR),
      row("tstamp_type", offsetof(S, tstamp_type), 1, TC, 0, 0),
      row("hwtstamp", offsetof(S, hwtstamp), 8, TC | CG, 0, 0),
  };
}

std::vector<CtxField> skb_fields(uint8_t flavor) {
  std::vector<CtxField> out;
  for (const SkbRow& r : skb_rows()) {
    uint8_t access = 0;
    if (r.read & flavor) access |= R | r.extra;
    if (r.write & flavor) access |= W;
    // Fields the flavour may not touch stay in the table with no rights (better messages).
    std::string_view n = r.name;
    if (n == "data")
      out.push_back(moved_ptr(r.name, r.off, r.ptr, offsetof(SkbNative, data)));
    else if (n == "data_end")
      out.push_back(moved_ptr(r.name, r.off, r.ptr, offsetof(SkbNative, data_end)));
    else if (n == "data_meta")
      out.push_back(moved_ptr(r.name, r.off, r.ptr, offsetof(SkbNative, data_meta)));
    else
      out.push_back(plain(r.name, r.off, r.size, access, r.ptr, r.elem));
    out.back().access = access;
  }
  return out;
}

std::vector<CtxField> flow_dissector_fields() {
  using S = struct __sk_buff;
  return {moved_ptr("data", offsetof(S, data), CtxPtr::Packet, offsetof(SkbNative, data)),
          moved_ptr("data_end", offsetof(S, data_end), CtxPtr::PacketEnd, offsetof(SkbNative, data_end)),
          plain("flow_keys", offsetof(S, flow_keys), 8, R, CtxPtr::FlowKeys)};
}

std::vector<CtxField> xdp_fields() {
  using S = struct xdp_md;
  return {moved_ptr("data", offsetof(S, data), CtxPtr::Packet, offsetof(XdpNative, data)),
          moved_ptr("data_end", offsetof(S, data_end), CtxPtr::PacketEnd, offsetof(XdpNative, data_end)),
          moved_ptr("data_meta", offsetof(S, data_meta), CtxPtr::PacketMeta, offsetof(XdpNative, data_meta)),
          plain(FLD(S, ingress_ifindex), R),
          plain(FLD(S, rx_queue_index), R),
          plain(FLD(S, egress_ifindex), R)};
}

std::vector<CtxField> bpf_sock_fields() {
  using S = struct bpf_sock;
  return {plain(FLD(S, bound_dev_if), R | W), plain(FLD(S, family), R | NR), plain(FLD(S, type), R | NR),
          plain(FLD(S, protocol), R | NR),   plain(FLD(S, mark), R | W),     plain(FLD(S, priority), R | W),
          plain(FLD(S, src_ip4), R | NR),    plain(FLD(S, src_ip6), R | NR, CtxPtr::None, 4),
          plain(FLD(S, src_port), R | NR),   plain(FLD(S, dst_port), R | NR),
          plain(FLD(S, dst_ip4), R | NR),    plain(FLD(S, dst_ip6), R | NR, CtxPtr::None, 4),
          plain(FLD(S, state), R | NR),      plain(FLD(S, rx_queue_mapping), R | NR)};
}

std::vector<CtxField> sock_ops_fields() {
  using S = struct bpf_sock_ops;
  std::vector<CtxField> f = {
      plain(FLD(S, op), R),
      plain("args", offsetof(S, args), 16, R | W, CtxPtr::None, 4),  // union args/reply/replylong
      plain(FLD(S, family), R), plain(FLD(S, remote_ip4), R), plain(FLD(S, local_ip4), R),
      plain(FLD(S, remote_ip6), R, CtxPtr::None, 4), plain(FLD(S, local_ip6), R, CtxPtr::None, 4),
      plain(FLD(S, remote_port), R), plain(FLD(S, local_port), R), plain(FLD(S, is_fullsock), R),
      plain(FLD(S, snd_cwnd), R), plain(FLD(S, srtt_us), R), plain(FLD(S, bpf_sock_ops_cb_flags), R),
      plain(FLD(S, state), R), plain(FLD(S, rtt_min), R), plain(FLD(S, snd_ssthresh), R),
      plain(FLD(S, rcv_nxt), R), plain(FLD(S, snd_nxt), R), plain(FLD(S, snd_una), R),
      plain(FLD(S, mss_cache), R), plain(FLD(S, ecn_flags), R), plain(FLD(S, rate_delivered), R),
      plain(FLD(S, rate_interval_us), R), plain(FLD(S, packets_out), R), plain(FLD(S, retrans_out), R),
      plain(FLD(S, total_retrans), R), plain(FLD(S, segs_in), R), plain(FLD(S, data_segs_in), R),
      plain(FLD(S, segs_out), R), plain(FLD(S, data_segs_out), R), plain(FLD(S, lost_out), R),
      plain(FLD(S, sacked_out), R), plain(FLD(S, sk_txhash), R | W), plain(FLD(S, bytes_received), R),
      plain(FLD(S, bytes_acked), R), plain(FLD(S, sk), R, CtxPtr::SocketOrNull),
      plain(FLD(S, skb_data), R, CtxPtr::Packet), plain(FLD(S, skb_data_end), R, CtxPtr::PacketEnd),
      plain(FLD(S, skb_len), R), plain(FLD(S, skb_tcp_flags), R | NR)};
  f[1].access = R | W;  // reply / replylong writable; reads of args[] 4 bytes each
  return f;
}

std::vector<CtxField> sk_msg_fields() {
  using S = struct sk_msg_md;
  return {plain(FLD(S, data), R, CtxPtr::Packet), plain(FLD(S, data_end), R, CtxPtr::PacketEnd),
          plain(FLD(S, family), R), plain(FLD(S, remote_ip4), R), plain(FLD(S, local_ip4), R),
          plain(FLD(S, remote_ip6), R, CtxPtr::None, 4), plain(FLD(S, local_ip6), R, CtxPtr::None, 4),
          plain(FLD(S, remote_port), R), plain(FLD(S, local_port), R), plain(FLD(S, size), R),
          plain(FLD(S, sk), R, CtxPtr::Socket)};
}

std::vector<CtxField> sk_reuseport_fields() {
  using S = struct sk_reuseport_md;
  return {plain(FLD(S, data), R, CtxPtr::Packet), plain(FLD(S, data_end), R, CtxPtr::PacketEnd),
          plain(FLD(S, len), R | NR), plain(FLD(S, eth_protocol), R | NR), plain(FLD(S, ip_protocol), R | NR),
          plain(FLD(S, bind_inany), R | NR), plain(FLD(S, hash), R),
          plain(FLD(S, sk), R, CtxPtr::Socket), plain(FLD(S, migrating_sk), R, CtxPtr::SockCommonOrNull)};
}

std::vector<CtxField> sock_addr_fields() {
  using S = struct bpf_sock_addr;
  return {plain(FLD(S, user_family), R), plain(FLD(S, user_ip4), R | NR | W),
          plain(FLD(S, user_ip6), R | NR | W, CtxPtr::None, 4), plain(FLD(S, user_port), R | NR | W),
          plain(FLD(S, family), R), plain(FLD(S, type), R), plain(FLD(S, protocol), R),
          plain(FLD(S, msg_src_ip4), R | NR | W), plain(FLD(S, msg_src_ip6), R | NR | W, CtxPtr::None, 4),
          plain(FLD(S, sk), R, CtxPtr::Socket)};
}

std::vector<CtxField> perf_event_fields() {
  using S = struct bpf_perf_event_data;
  return {plain("regs", offsetof(S, regs), sizeof(((S*)nullptr)->regs), R, CtxPtr::None, 8),
          plain(FLD(S, sample_period), R | NR), plain(FLD(S, addr), R | NR)};
}

std::vector<CtxField> sysctl_fields() {
  using S = struct bpf_sysctl;
  return {plain(FLD(S, write), R | NR), plain(FLD(S, file_pos), R | NR | W)};
}

std::vector<CtxField> cgroup_dev_fields() {
  using S = struct bpf_cgroup_dev_ctx;
  return {plain(FLD(S, access_type), R | NR), plain(FLD(S, major), R), plain(FLD(S, minor), R)};
}

std::vector<CtxField> sockopt_fields() {
  using S = struct bpf_sockopt;
  return {plain(FLD(S, sk), R, CtxPtr::Socket), plain(FLD(S, optval), R, CtxPtr::Mem),
          plain(FLD(S, optval_end), R, CtxPtr::MemEnd), plain(FLD(S, level), R | W),
          plain(FLD(S, optname), R | W), plain(FLD(S, optlen), R | W), plain(FLD(S, retval), R | W)};
}

std::vector<CtxField> sk_lookup_fields() {
  using S = struct bpf_sk_lookup;
  return {plain(FLD(S, sk), R, CtxPtr::SocketOrNull), plain(FLD(S, family), R | NR),
          plain(FLD(S, protocol), R | NR), plain(FLD(S, remote_ip4), R | NR),
          plain(FLD(S, remote_ip6), R | NR, CtxPtr::None, 4), plain(FLD(S, remote_port), R | NR),
          plain(FLD(S, local_ip4), R | NR), plain(FLD(S, local_ip6), R | NR, CtxPtr::None, 4),
          plain(FLD(S, local_port), R | NR), plain(FLD(S, ingress_ifindex), R | NR)};
}

constexpr uint32_t kPtRegsSize = 21 * 8;       // struct pt_regs, x86-64
constexpr uint32_t kPerfMaxTraceSize = 2048;   // PERF_MAX_TRACE_SIZE
constexpr uint32_t kMaxBpfFuncArgs = 12;       // MAX_BPF_FUNC_ARGS

// ---- return values -------------------------------------------------------------------------------
RetInfo any_ret(std::string_view meaning) { return RetInfo{false, INT64_MIN, INT64_MAX, meaning}; }
RetInfo range_ret(bool checked, int64_t lo, int64_t hi, std::string_view meaning) {
  return RetInfo{checked, lo, hi, meaning};
}

ProgTypeInfo make(uint32_t type, std::string_view name, std::string_view ctx_struct, uint32_t ctx_size,
                  uint32_t native_size, std::vector<CtxField> fields, RetInfo ret, std::vector<int32_t> helpers) {
  ProgTypeInfo t;
  t.type = type;
  t.name = name;
  t.ctx_struct = ctx_struct;
  t.ctx_size = ctx_size;
  t.native_size = (native_size + 7) & ~7u;
  t.fields = std::move(fields);
  t.ret = ret;
  t.helpers = std::move(helpers);
  std::sort(t.helpers.begin(), t.helpers.end());
  t.helpers.erase(std::unique(t.helpers.begin(), t.helpers.end()), t.helpers.end());
  sort_fields(t);
  return t;
}

ProgTypeInfo generic(uint32_t type, std::string_view name, std::string_view ctx_struct, uint32_t ctx_size,
                     uint32_t min_off, bool dw_only, bool writable, RetInfo ret, std::vector<int32_t> helpers) {
  ProgTypeInfo t = make(type, name, ctx_struct, ctx_size, ctx_size, {}, ret, std::move(helpers));
  t.generic = true;
  t.generic_min = min_off;
  t.generic_dw_only = dw_only;
  t.writable_generic = writable;
  return t;
}

std::vector<ProgTypeInfo> build_all() {
  using namespace helper_groups;
  const RetInfo tc_ret = range_ret(false, -1, 8,
                                   "TC action: TC_ACT_UNSPEC -1, TC_ACT_OK 0, TC_ACT_RECLASSIFY 1, TC_ACT_SHOT 2, "
                                   "TC_ACT_PIPE 3, TC_ACT_STOLEN 4, TC_ACT_QUEUED 5, TC_ACT_REPEAT 6, "
                                   "TC_ACT_REDIRECT 7, TC_ACT_TRAP 8");
  const RetInfo cg_ret = range_ret(true, 0, 1, "0 reject, 1 allow");
  const RetInfo trace_ret = any_ret("ignored by the hook (kprobe: 1 keeps the event for perf, 0 filters it out)");
  const RetInfo lwt_ret = range_ret(false, 0, 128, "BPF_OK 0, BPF_DROP 2, BPF_REDIRECT 7, BPF_LWT_REROUTE 128");
  const RetInfo sk_ret = range_ret(false, 0, 1, "SK_DROP 0, SK_PASS 1");
  const uint32_t skb_native = sizeof(SkbNative);

  std::vector<ProgTypeInfo> v;
  {
    ProgTypeInfo t = make(kProgSocketFilter, "socket_filter", "struct __sk_buff", sizeof(__sk_buff), skb_native,
                          skb_fields(SF),
                          any_ret("bytes of the packet to keep (0 drops it; larger than the packet keeps it whole)"),
                          join({base(), socket_filter()}));
    t.ld_abs = true;
    v.push_back(std::move(t));
  }
  v.push_back(generic(kProgKprobe, "kprobe", "struct pt_regs", kPtRegsSize, 0, false, false, trace_ret,
                      join({base(), tracing_common(), kprobe()})));
  for (auto [type, name] : {std::pair{kProgSchedCls, "sched_cls"}, std::pair{kProgSchedAct, "sched_act"}}) {
    ProgTypeInfo t = make(type, name, "struct __sk_buff", sizeof(__sk_buff), skb_native, skb_fields(TC), tc_ret,
                          join({base(), tc()}));
    t.ld_abs = true;
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(generic(kProgTracepoint, "tracepoint", "tracepoint record (see the event's format file)",
                      kPerfMaxTraceSize, 8, false, false, trace_ret, join({base(), tracing_common(), tracepoint()})));
  {
    ProgTypeInfo t = make(kProgXdp, "xdp", "struct xdp_md", sizeof(xdp_md), sizeof(XdpNative), xdp_fields(),
                          range_ret(false, 0, 4,
                                    "XDP action: XDP_ABORTED 0, XDP_DROP 1, XDP_PASS 2, XDP_TX 3, XDP_REDIRECT 4"),
                          join({base(), xdp()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(make(kProgPerfEvent, "perf_event", "struct bpf_perf_event_data", sizeof(bpf_perf_event_data),
                   sizeof(bpf_perf_event_data), perf_event_fields(), trace_ret,
                   join({base(), tracing_common(), perf_event()})));
  {
    ProgTypeInfo t = make(kProgCgroupSkb, "cgroup_skb", "struct __sk_buff", sizeof(__sk_buff), skb_native,
                          skb_fields(CG), range_ret(true, 0, 3, "bit 0: 1 allow, 0 drop; egress bit 1: congestion (cn)"),
                          join({base(), socket_filter(), cgroup_skb(), cgroup_common()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(make(kProgCgroupSock, "cgroup_sock", "struct bpf_sock", sizeof(bpf_sock), sizeof(bpf_sock),
                   bpf_sock_fields(), cg_ret, join({base(), cgroup_sock(), cgroup_common()})));
  for (auto [type, name] : {std::pair{kProgLwtIn, "lwt_in"}, std::pair{kProgLwtOut, "lwt_out"},
                            std::pair{kProgLwtXmit, "lwt_xmit"}, std::pair{kProgLwtSeg6local, "lwt_seg6local"}}) {
    std::vector<int32_t> h = join({base(), lwt_out()});
    if (type == kProgLwtIn) h = join({h, {kLwtPushEncap}});
    if (type == kProgLwtXmit) h = join({h, lwt_xmit()});
    if (type == kProgLwtSeg6local) h = join({h, lwt_seg6()});
    ProgTypeInfo t = make(type, name, "struct __sk_buff", sizeof(__sk_buff), skb_native, skb_fields(LWT), lwt_ret, h);
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(make(kProgSockOps, "sock_ops", "struct bpf_sock_ops", sizeof(bpf_sock_ops), sizeof(bpf_sock_ops),
                   sock_ops_fields(), range_ret(true, 0, 1, "1 success; reply fields carry the answer"),
                   join({base(), sock_ops()})));
  {
    ProgTypeInfo t = make(kProgSkSkb, "sk_skb", "struct __sk_buff", sizeof(__sk_buff), skb_native, skb_fields(SK),
                          sk_ret, join({base(), sk_skb()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(make(kProgCgroupDevice, "cgroup_device", "struct bpf_cgroup_dev_ctx", sizeof(bpf_cgroup_dev_ctx),
                   sizeof(bpf_cgroup_dev_ctx), cgroup_dev_fields(), cg_ret, join({base(), cgroup_common()})));
  {
    ProgTypeInfo t = make(kProgSkMsg, "sk_msg", "struct sk_msg_md", sizeof(sk_msg_md), sizeof(sk_msg_md),
                          sk_msg_fields(), sk_ret, join({base(), sk_msg()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(generic(kProgRawTracepoint, "raw_tracepoint", "struct bpf_raw_tracepoint_args (u64 args[])",
                      kMaxBpfFuncArgs * 8, 0, false, false, trace_ret,
                      join({base(), tracing_common(), raw_tracepoint()})));
  v.push_back(make(kProgCgroupSockAddr, "cgroup_sock_addr", "struct bpf_sock_addr", sizeof(bpf_sock_addr),
                   sizeof(bpf_sock_addr), sock_addr_fields(), cg_ret,
                   join({base(), cgroup_sock_addr(), cgroup_common()})));
  v.push_back(make(kProgLircMode2, "lirc_mode2", "u32 sample", 4, 8, {plain("sample", 0, 4, R)},
                   any_ret("ignored"), join({base(), {kRcRepeat, kRcKeydown, kRcPointerRel}})));
  {
    ProgTypeInfo t = make(kProgSkReuseport, "sk_reuseport", "struct sk_reuseport_md", sizeof(sk_reuseport_md),
                          sizeof(sk_reuseport_md), sk_reuseport_fields(), sk_ret, join({base(), sk_reuseport()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  {
    ProgTypeInfo t = make(kProgFlowDissector, "flow_dissector", "struct __sk_buff", sizeof(__sk_buff), skb_native,
                          flow_dissector_fields(),
                          range_ret(false, 0, 129, "BPF_OK 0 (flow_keys filled), BPF_DROP 2, "
                                                   "BPF_FLOW_DISSECTOR_CONTINUE 129"),
                          join({base(), {kSkbLoadBytes}}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(make(kProgCgroupSysctl, "cgroup_sysctl", "struct bpf_sysctl", sizeof(bpf_sysctl), sizeof(bpf_sysctl),
                   sysctl_fields(), cg_ret, join({base(), cgroup_sysctl(), cgroup_common()})));
  v.push_back(generic(kProgRawTracepointWritable, "raw_tracepoint_writable", "struct bpf_raw_tracepoint_args",
                      kMaxBpfFuncArgs * 8, 0, false, false, trace_ret,
                      join({base(), tracing_common(), raw_tracepoint()})));
  {
    ProgTypeInfo t = make(kProgCgroupSockopt, "cgroup_sockopt", "struct bpf_sockopt", sizeof(bpf_sockopt),
                          sizeof(bpf_sockopt), sockopt_fields(), cg_ret, join({base(), cgroup_sockopt(), cgroup_common()}));
    t.direct_packet = true;
    v.push_back(std::move(t));
  }
  v.push_back(generic(kProgTracing, "tracing", "u64 args[] (BTF-typed function arguments)", kMaxBpfFuncArgs * 8, 0,
                      false, false, any_ret("fentry/fexit: 0; fmod_ret: the replaced return value"),
                      join({base(), tracing_common(), tracing()})));
  v.push_back(generic(kProgStructOps, "struct_ops", "u64 args[] (BTF-typed)", kMaxBpfFuncArgs * 8, 0, false, false,
                      any_ret("the implemented operation's return value"), join({base(), tracing_common()})));
  v.push_back(generic(kProgExt, "ext", "the replaced function's context", kMaxBpfFuncArgs * 8, 0, false, false,
                      any_ret("the replaced function's return value"), join({base(), tracing_common()})));
  v.push_back(generic(kProgLsm, "lsm", "u64 args[] (BTF-typed LSM hook arguments)", kMaxBpfFuncArgs * 8, 0, false,
                      false, range_ret(false, -4095, 0, "0 allow, -errno deny"), join({base(), tracing_common()})));
  v.push_back(make(kProgSkLookup, "sk_lookup", "struct bpf_sk_lookup", sizeof(bpf_sk_lookup), sizeof(bpf_sk_lookup),
                   sk_lookup_fields(), range_ret(true, 0, 1, "SK_DROP 0, SK_PASS 1"), join({base(), sk_lookup()})));
  v.push_back(generic(kProgSyscall, "syscall", "user-defined context (ctx_in)", 65535, 0, false, true,
                      any_ret("returned to the bpf(BPF_PROG_TEST_RUN) caller"), join({base(), syscall()})));
  {
    ProgTypeInfo t = make(kProgMem, "mem", "plain memory (r1 = memory, r2 = length)", 0, 0, {},
                          any_ret("the program's result"), join({base(), mem()}));
    t.has_ctx = false;
    v.push_back(std::move(t));
  }
  return v;
}

struct Registry {
  std::vector<ProgTypeInfo> types;
  std::vector<const ProgTypeInfo*> ptrs;
  Registry() : types(build_all()) {
    for (const auto& t : types) ptrs.push_back(&t);
  }
};
const Registry& registry() {
  static const Registry r;
  return r;
}

// ---- objects reached through context pointers ---------------------------------------------------

ProgTypeInfo pointee(std::string_view name, std::string_view st, uint32_t size, std::vector<CtxField> fields,
                     bool any = false) {
  ProgTypeInfo t;
  t.name = name;
  t.ctx_struct = st;
  t.ctx_size = size;
  t.native_size = (size + 7) & ~7u;
  t.fields = std::move(fields);
  t.pointee = true;
  t.generic = any;
  t.writable_generic = any;
  sort_fields(t);
  return t;
}

struct Pointees {
  ProgTypeInfo sock_common, sock, flow_keys, tcp_sock;
  Pointees() {
    auto sk = bpf_sock_fields();
    for (auto& f : sk) f.access &= ~kCtxWrite;
    sock = pointee("sock", "struct bpf_sock", sizeof(bpf_sock), sk);
    auto skc = sk;
    for (auto& f : skc)
      if (f.name == "type" || f.name == "protocol" || f.name == "mark" || f.name == "priority") f.access = 0;
    sock_common = pointee("sock_common", "struct bpf_sock", sizeof(bpf_sock), skc);
    flow_keys = pointee("flow_keys", "struct bpf_flow_keys", sizeof(bpf_flow_keys), {}, true);
    using S = struct bpf_tcp_sock;
    std::vector<CtxField> tf;
#define TCPF(f) tf.push_back(plain(FLD(S, f), R));
    TCPF(snd_cwnd) TCPF(srtt_us) TCPF(rtt_min) TCPF(snd_ssthresh) TCPF(rcv_nxt) TCPF(snd_nxt) TCPF(snd_una)
    TCPF(mss_cache) TCPF(ecn_flags) TCPF(rate_delivered) TCPF(rate_interval_us) TCPF(packets_out)
    TCPF(retrans_out) TCPF(total_retrans) TCPF(segs_in) TCPF(data_segs_in) TCPF(segs_out) TCPF(data_segs_out)
    TCPF(lost_out) TCPF(sacked_out) TCPF(bytes_received) TCPF(bytes_acked) TCPF(dsack_dups) TCPF(delivered)
    TCPF(delivered_ce) TCPF(icsk_retransmits)
#undef TCPF
    tcp_sock = pointee("tcp_sock", "struct bpf_tcp_sock", sizeof(S), tf);
  }
};
const Pointees& pointees() {
  static const Pointees p;
  return p;
}

}  // namespace

const ProgTypeInfo* pointee_layout(CtxPtr kind) {
  switch (kind) {
    case CtxPtr::SockCommonOrNull: return &pointees().sock_common;
    case CtxPtr::Socket:
    case CtxPtr::SocketOrNull: return &pointees().sock;
    case CtxPtr::FlowKeys: return &pointees().flow_keys;
    default: return nullptr;
  }
}

const ProgTypeInfo& tcp_sock_layout() { return pointees().tcp_sock; }

Result<CtxAccess> check_pointee_access(CtxPtr kind, int64_t off, int size, bool write) {
  const ProgTypeInfo* t = pointee_layout(kind);
  if (!t)
    return make_error(ErrorCode::Verify,
                      fmt::format("a {} pointer does not lead to a described object", ctx_ptr_name(kind)));
  return check_ctx_access(*t, off, size, write);
}

// ---- context layouts of tracing hooks ------------------------------------------------------------

namespace {

struct TraceLayouts {
  std::vector<TraceLayoutInfo> rows;
  TraceLayouts() {
    auto row = [&](TraceLayout l, std::string_view name, uint32_t type, std::string_view st, uint32_t size) {
      ProgTypeInfo t = *find_prog_type(type);
      t.ctx_struct = st;
      t.ctx_size = size;
      t.native_size = (size + 7) & ~7u;
      rows.push_back(TraceLayoutInfo{l, name, std::move(t)});
    };
    row(TraceLayout::SyscallEnterRecord, "syscalls/sys_enter_* record", kProgTracepoint,
        "sys_enter record {trace_entry; int __syscall_nr @8; u64 args @16 (one per argument)}",
        sizeof(SyscallEnterNative));
    row(TraceLayout::SyscallExitRecord, "syscalls/sys_exit_* record", kProgTracepoint,
        "sys_exit record {trace_entry; int __syscall_nr @8; long ret @16}", sizeof(SyscallExitNative));
    row(TraceLayout::RawSyscallsEnterRecord, "raw_syscalls/sys_enter record", kProgTracepoint,
        "raw_syscalls/sys_enter record {trace_entry; long id @8; unsigned long args[6] @16}",
        sizeof(RawSyscallsEnterNative));
    row(TraceLayout::RawSyscallsExitRecord, "raw_syscalls/sys_exit record", kProgTracepoint,
        "raw_syscalls/sys_exit record {trace_entry; long id @8; long ret @16}", sizeof(RawSyscallsExitNative));
    row(TraceLayout::RawTracepointArgs, "bpf_raw_tracepoint_args of sys_enter/sys_exit", kProgRawTracepoint,
        "struct bpf_raw_tracepoint_args {u64 args[2]: struct pt_regs *, id or ret}", 2 * 8);
    row(TraceLayout::PtRegs, "struct pt_regs", kProgKprobe, "struct pt_regs", sizeof(PtRegsNative));
  }
};

}  // namespace

const TraceLayoutInfo& trace_layout(TraceLayout layout) {
  static const TraceLayouts t;
  for (const auto& r : t.rows)
    if (r.layout == layout) return r;
  return t.rows.front();
}

const char* ctx_ptr_name(CtxPtr p) {
  switch (p) {
    case CtxPtr::None: return "scalar";
    case CtxPtr::Packet: return "pkt";
    case CtxPtr::PacketMeta: return "pkt_meta";
    case CtxPtr::PacketEnd: return "pkt_end";
    case CtxPtr::SockCommonOrNull: return "sock_common_or_null";
    case CtxPtr::SocketOrNull: return "sock_or_null";
    case CtxPtr::Socket: return "sock";
    case CtxPtr::FlowKeys: return "flow_keys";
    case CtxPtr::Mem: return "mem";
    case CtxPtr::MemEnd: return "mem_end";
  }
  return "?";
}

bool ProgTypeInfo::allows_helper(int32_t id) const { return std::binary_search(helpers.begin(), helpers.end(), id); }

const CtxField* ProgTypeInfo::field_at(int64_t off) const {
  for (const auto& f : fields)
    if (off >= f.off && off < static_cast<int64_t>(f.off) + f.size) return &f;
  return nullptr;
}

const CtxField* ProgTypeInfo::field(std::string_view n) const {
  for (const auto& f : fields)
    if (f.name == n) return &f;
  return nullptr;
}

std::span<const ProgTypeInfo* const> all_prog_types() { return registry().ptrs; }

const ProgTypeInfo* find_prog_type(uint32_t type) {
  for (const auto* t : registry().ptrs)
    if (t->type == type) return t;
  return nullptr;
}

const ProgTypeInfo* find_prog_type(std::string_view name) {
  for (const auto* t : registry().ptrs)
    if (t->name == name) return t;
  static const std::pair<std::string_view, uint32_t> aliases[] = {
      {"socket", kProgSocketFilter},     {"socket_filter", kProgSocketFilter},
      {"tc", kProgSchedCls},             {"classifier", kProgSchedCls},
      {"action", kProgSchedAct},         {"tp", kProgTracepoint},
      {"raw_tp", kProgRawTracepoint},    {"raw_tracepoint", kProgRawTracepoint},
      {"raw_tp.w", kProgRawTracepointWritable}, {"tp_btf", kProgTracing},
      {"fentry", kProgTracing},          {"fexit", kProgTracing},
      {"kretprobe", kProgKprobe},        {"uprobe", kProgKprobe},
      {"uretprobe", kProgKprobe},        {"perf", kProgPerfEvent},
      {"cgroup/skb", kProgCgroupSkb},    {"cgroup_skb", kProgCgroupSkb},
      {"cgroup/sock", kProgCgroupSock},  {"sockops", kProgSockOps},
      {"cgroup/dev", kProgCgroupDevice}, {"cgroup/sysctl", kProgCgroupSysctl},
      {"sk_lookup", kProgSkLookup},      {"flow_dissector", kProgFlowDissector},
      {"plain", kProgMem},               {"memory", kProgMem},
  };
  for (const auto& [a, id] : aliases)
    if (a == name) return find_prog_type(id);
  return nullptr;
}

}  // namespace bpfvm
