// Packet helpers (XDP and socket-buffer programs). The context argument is the native context
// (XdpNative / SkbNative, progtype.hpp), which carries real data pointers and the buffer bounds.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/progtype.hpp"
#include "helpers/impl.hpp"
#include "progtypes/packet_ctx.hpp"

namespace bpfvm {

RedirectInfo& redirect_info() {
  thread_local RedirectInfo info;
  return info;
}

namespace helpers {
namespace {

template <class T>
T* ptr(uint64_t v) {
  return reinterpret_cast<T*>(v);
}

constexpr uint64_t kEthHlen = 14;
constexpr uint32_t kXdpMetaMax = 32;

// ---- checksums ---------------------------------------------------------------------------------

uint32_t fold64(uint64_t s) {
  while (s >> 32) s = (s & 0xffffffffull) + (s >> 32);
  return static_cast<uint32_t>(s);
}
uint16_t fold16(uint32_t s) {
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}
// csum_fold: the 16-bit complement of the folded sum.
uint16_t csum_fold(uint32_t s) { return static_cast<uint16_t>(~fold16(s)); }
uint32_t csum_add(uint32_t a, uint32_t b) { return fold64(static_cast<uint64_t>(a) + b); }

uint64_t csum_diff(uint64_t from, uint64_t from_size, uint64_t to, uint64_t to_size, uint64_t seed) {
  uint64_t diff_size = from_size + to_size;
  if (((from_size | to_size) & 3) || diff_size > 512 || from_size > 512 || to_size > 512) return neg(kEINVAL);
  uint64_t s = static_cast<uint32_t>(seed);
  const uint32_t* f = ptr<const uint32_t>(from);
  const uint32_t* t = ptr<const uint32_t>(to);
  for (uint64_t i = 0; i < from_size / 4; ++i) s += static_cast<uint32_t>(~f[i]);
  for (uint64_t i = 0; i < to_size / 4; ++i) s += t[i];
  // x86-64's csum_partial in current kernels returns the sum folded to 16 bits (checked against the
  // kernel here, 6.18); older kernels returned the 32-bit fold. Both are the same ones'-complement sum.
  return fold16(fold64(s));
}

// ---- XDP ---------------------------------------------------------------------------------------

uint64_t xdp_adjust_head(uint64_t ctx, uint64_t offset_u, uint64_t, uint64_t, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  int64_t offset = static_cast<int32_t>(offset_u);
  uint64_t frame_end = x->bounds.buf_start + x->bounds.headroom_reserve;
  uint64_t metalen = x->bounds.meta_valid ? x->data - x->data_meta : 0;
  uint64_t data_start = frame_end + metalen;
  uint64_t data = x->data + static_cast<uint64_t>(offset);
  if (static_cast<int64_t>(data - data_start) < 0 || data > x->data_end - kEthHlen) return neg(kEINVAL);
  if (metalen) std::memmove(ptr<void>(x->data_meta + static_cast<uint64_t>(offset)), ptr<void>(x->data_meta), metalen);
  x->data_meta += static_cast<uint64_t>(offset);
  x->data = data;
  if (!x->bounds.meta_valid) x->data_meta = x->data + 1;
  return 0;
}

uint64_t xdp_adjust_meta(uint64_t ctx, uint64_t offset_u, uint64_t, uint64_t, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  int64_t offset = static_cast<int32_t>(offset_u);
  if (!x->bounds.meta_valid) return neg(kENOTSUPP);
  uint64_t frame_end = x->bounds.buf_start + x->bounds.headroom_reserve;
  uint64_t meta = x->data_meta + static_cast<uint64_t>(offset);
  if (static_cast<int64_t>(meta - frame_end) < 0 || meta > x->data) return neg(kEINVAL);
  uint64_t metalen = x->data - meta;
  if ((metalen & 3) || metalen > kXdpMetaMax) return neg(kEACCES);
  x->data_meta = meta;
  return 0;
}

uint64_t xdp_adjust_tail(uint64_t ctx, uint64_t offset_u, uint64_t, uint64_t, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  int64_t offset = static_cast<int32_t>(offset_u);
  uint64_t data_end = x->data_end + static_cast<uint64_t>(offset);
  if (data_end > x->bounds.buf_end) return neg(kEINVAL);
  if (static_cast<int64_t>(data_end - (x->data + kEthHlen)) < 0) return neg(kEINVAL);
  if (offset > 0) std::memset(ptr<void>(x->data_end), 0, static_cast<size_t>(offset));
  x->data_end = data_end;
  return 0;
}

uint64_t xdp_get_buff_len(uint64_t ctx, uint64_t, uint64_t, uint64_t, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  return x->data_end - x->data;
}

uint64_t xdp_load_bytes(uint64_t ctx, uint64_t offset, uint64_t buf, uint64_t len, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  uint64_t size = x->data_end - x->data;
  uint32_t off = static_cast<uint32_t>(offset);
  if (off > size || len > size - off) return neg(kEINVAL);
  std::memcpy(ptr<void>(buf), ptr<const void>(x->data + off), len);
  return 0;
}

uint64_t xdp_store_bytes(uint64_t ctx, uint64_t offset, uint64_t buf, uint64_t len, uint64_t) {
  auto* x = ptr<XdpNative>(ctx);
  uint64_t size = x->data_end - x->data;
  uint32_t off = static_cast<uint32_t>(offset);
  if (off > size || len > size - off) return neg(kEINVAL);
  std::memcpy(ptr<void>(x->data + off), ptr<const void>(buf), len);
  return 0;
}

constexpr uint64_t kXdpAborted = 0, kXdpRedirect = 4;
constexpr uint64_t kFBroadcast = 1 << 3, kFExcludeIngress = 1 << 4;

uint64_t xdp_redirect(uint64_t ifindex, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  if (flags) return kXdpAborted;
  RedirectInfo& r = redirect_info();
  r = RedirectInfo{true, static_cast<uint32_t>(ifindex), flags, nullptr};
  return kXdpRedirect;
}

uint64_t xdp_redirect_map(uint64_t map, uint64_t key, uint64_t flags, uint64_t, uint64_t) {
  const uint64_t action_mask = 3;  // XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX
  if (flags & ~(action_mask | kFBroadcast | kFExcludeIngress)) return kXdpAborted;
  Map* m = reinterpret_cast<Map*>(map);
  uint32_t k = static_cast<uint32_t>(key);
  bool broadcast = flags & kFBroadcast;
  if (!broadcast && !m->lookup(&k)) return flags & action_mask;
  RedirectInfo& r = redirect_info();
  r = RedirectInfo{true, k, flags, m};
  return kXdpRedirect;
}

// ---- socket buffers ----------------------------------------------------------------------------

constexpr uint64_t kTcActShot = 2, kTcActRedirect = 7, kFIngress = 1;

uint64_t tc_redirect(uint64_t ifindex, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  if (flags & ~kFIngress) return kTcActShot;
  RedirectInfo& r = redirect_info();
  r = RedirectInfo{true, static_cast<uint32_t>(ifindex), flags, nullptr};
  return kTcActRedirect;
}

uint64_t skb_len(const SkbNative* s) { return s->data_end - s->data; }

uint64_t skb_load_bytes(uint64_t ctx, uint64_t offset, uint64_t to, uint64_t len, uint64_t) {
  auto* s = ptr<SkbNative>(ctx);
  uint32_t off = static_cast<uint32_t>(offset);
  if (off > 0x7fffffffu || off > skb_len(s) || len > skb_len(s) - off) {
    std::memset(ptr<void>(to), 0, len);
    return neg(kEFAULT);
  }
  std::memcpy(ptr<void>(to), ptr<const void>(s->data + off), len);
  return 0;
}

uint64_t skb_load_bytes_relative(uint64_t ctx, uint64_t offset, uint64_t to, uint64_t len, uint64_t start_header) {
  auto* s = ptr<SkbNative>(ctx);
  uint64_t start = 0;
  if (offset <= 0xffff) {
    if (start_header == 0) start = s->bounds.mac_header;           // BPF_HDR_START_MAC
    else if (start_header == 1) start = s->bounds.network_header;  // BPF_HDR_START_NET
  }
  if (start && start + offset + len <= s->data_end) {
    std::memcpy(ptr<void>(to), ptr<const void>(start + offset), len);
    return 0;
  }
  std::memset(ptr<void>(to), 0, len);
  return neg(kEFAULT);
}

constexpr uint64_t kFRecomputeCsum = 1, kFInvalidateHash = 2;

uint64_t skb_store_bytes(uint64_t ctx, uint64_t offset, uint64_t from, uint64_t len, uint64_t flags) {
  auto* s = ptr<SkbNative>(ctx);
  if (flags & ~(kFRecomputeCsum | kFInvalidateHash)) return neg(kEINVAL);
  uint32_t off = static_cast<uint32_t>(offset);
  if (off > 0x7fffffffu || off > skb_len(s) || len > skb_len(s) - off) return neg(kEFAULT);
  std::memcpy(ptr<void>(s->data + off), ptr<const void>(from), len);
  if (flags & kFInvalidateHash) s->hash = 0;
  return 0;
}

// ---- helpers that move the packet's ends (the buffer grows through PacketBounds::grow) ----------------

int64_t skb_make_room(SkbNative* s, uint64_t head, uint64_t tail) {
  if (!s->bounds.grow) return -kENOMEM;
  return s->bounds.grow(s->bounds.grow_owner, s, head, tail);
}

// LD_ABS / LD_IND read the packet the run started with (RunArgs::packet), not one that
// bpf_skb_change_head/_tail moved or resized: a program that has both cannot get the kernel's
// results, so its run stops with this fault instead of reading stale bytes.
bool refuse_with_legacy_packet_loads(const char* helper) {
  RunContext* rc = current_run();
  if (!rc || !rc->exe) return false;
  for (const Insn& i : rc->exe->program().insns) {
    if (i.info().kind != OpKind::LoadPacket) continue;
    set_helper_fault(make_error(ErrorCode::Unsupported,
                                fmt::format("{}: the program also reads the packet with LD_ABS/LD_IND, which bpfvm "
                                            "does not move with the packet; use direct packet access or "
                                            "bpf_skb_load_bytes",
                                            helper)));
    return true;
  }
  return false;
}

// bpf_skb_change_head: pushes `head_room` zeroed bytes before the packet, which then starts with a
// new link-layer header there (mac header reset), as __bpf_skb_change_head.
uint64_t skb_change_head(uint64_t ctx, uint64_t head_room_u, uint64_t flags, uint64_t, uint64_t) {
  auto* s = ptr<SkbNative>(ctx);
  const uint32_t head_room = static_cast<uint32_t>(head_room_u);
  const uint32_t new_len = s->len + head_room;
  if (flags || new_len > detail::kBpfSkbMaxLen || new_len < s->len) return neg(kEINVAL);
  if (refuse_with_legacy_packet_loads("bpf_skb_change_head")) return neg(kENOTSUPP);
  if (int64_t e = skb_make_room(s, head_room, 0)) return static_cast<uint64_t>(e);
  s->data -= head_room;
  std::memset(ptr<void>(s->data), 0, head_room);
  s->data_meta = s->data;
  s->bounds.mac_header = s->data;
  s->len = new_len;
  return 0;
}

// The shortest packet bpf_skb_change_tail leaves: up to the network header (__bpf_skb_min_len; the
// transport header is never set in bpfvm's buffers).
uint64_t skb_min_len(const SkbNative* s) {
  if (!s->bounds.network_header || s->bounds.network_header < s->data) return 0;
  return s->bounds.network_header - s->data;
}

// bpf_skb_change_tail: trims the packet to `new_len` bytes or appends zeroed bytes up to it.
uint64_t skb_change_tail(uint64_t ctx, uint64_t new_len_u, uint64_t flags, uint64_t, uint64_t) {
  auto* s = ptr<SkbNative>(ctx);
  const uint32_t new_len = static_cast<uint32_t>(new_len_u);
  if (flags || new_len > detail::kBpfSkbMaxLen || new_len < skb_min_len(s)) return neg(kEINVAL);
  if (refuse_with_legacy_packet_loads("bpf_skb_change_tail")) return neg(kENOTSUPP);
  // s->len may exceed the linear bytes (a packet hook's truncated capture): the change applies to both.
  const uint64_t linear = skb_len(s);
  const int64_t delta = static_cast<int64_t>(new_len) - static_cast<int64_t>(s->len);
  if (delta > 0) {
    if (int64_t e = skb_make_room(s, 0, static_cast<uint64_t>(delta))) return static_cast<uint64_t>(e);
    std::memset(ptr<void>(s->data_end), 0, static_cast<size_t>(delta));
    s->data_end += static_cast<uint64_t>(delta);
  } else if (delta < 0) {
    const uint64_t cut = std::min<uint64_t>(linear, static_cast<uint64_t>(-delta));
    s->data_end -= cut;
  }
  s->len = new_len;
  return 0;
}

// bpf_skb_pull_data: bpfvm's packets are linear; the kernel fails only when more bytes are asked for
// than the packet has (skb_ensure_writable).
uint64_t skb_pull_data(uint64_t ctx, uint64_t len, uint64_t, uint64_t, uint64_t) {
  auto* s = ptr<SkbNative>(ctx);
  if (static_cast<uint32_t>(len) > s->len) return neg(kENOMEM);
  return 0;
}

constexpr uint64_t kFHdrFieldMask = 0xf, kFPseudoHdr = 1 << 4, kFMarkMangled0 = 1 << 5, kFMarkEnforce = 1 << 6;

// Pointer to the 16-bit checksum at `offset`, or nullptr.
uint16_t* csum_field(SkbNative* s, uint64_t offset) {
  uint32_t off = static_cast<uint32_t>(offset);
  if (offset > 0xffff || (off & 1) || off + 2 > skb_len(s)) return nullptr;
  return ptr<uint16_t>(s->data + off);
}

void replace4(uint16_t* sum, uint32_t from, uint32_t to) {
  uint32_t tmp = csum_add(static_cast<uint16_t>(~*sum), ~from);
  *sum = csum_fold(csum_add(tmp, to));
}
void replace2(uint16_t* sum, uint16_t from, uint16_t to) {
  uint32_t s = static_cast<uint16_t>(~*sum);
  s += static_cast<uint16_t>(~from);
  s += to;
  *sum = static_cast<uint16_t>(~fold16(s));
}
void replace_by_diff(uint16_t* sum, uint32_t diff) {
  *sum = csum_fold(csum_add(diff, static_cast<uint16_t>(~*sum)));
}

uint64_t l3_csum_replace(uint64_t ctx, uint64_t offset, uint64_t from, uint64_t to, uint64_t flags) {
  auto* s = ptr<SkbNative>(ctx);
  if (flags & ~kFHdrFieldMask) return neg(kEINVAL);
  uint16_t* sum = csum_field(s, offset);
  if (!sum) return neg(kEFAULT);
  switch (flags & kFHdrFieldMask) {
    case 0:
      if (from != 0) return neg(kEINVAL);
      replace_by_diff(sum, static_cast<uint32_t>(to));
      break;
    case 2: replace2(sum, static_cast<uint16_t>(from), static_cast<uint16_t>(to)); break;
    case 4: replace4(sum, static_cast<uint32_t>(from), static_cast<uint32_t>(to)); break;
    default: return neg(kEINVAL);
  }
  return 0;
}

uint64_t l4_csum_replace(uint64_t ctx, uint64_t offset, uint64_t from, uint64_t to, uint64_t flags) {
  auto* s = ptr<SkbNative>(ctx);
  if (flags & ~(kFMarkMangled0 | kFMarkEnforce | kFPseudoHdr | kFHdrFieldMask)) return neg(kEINVAL);
  uint16_t* sum = csum_field(s, offset);
  if (!sum) return neg(kEFAULT);
  bool mmzero = flags & kFMarkMangled0;
  if (mmzero && !(flags & kFMarkEnforce) && !*sum) return 0;
  switch (flags & kFHdrFieldMask) {
    case 0:
      if (from != 0) return neg(kEINVAL);
      replace_by_diff(sum, static_cast<uint32_t>(to));
      break;
    case 2: replace2(sum, static_cast<uint16_t>(from), static_cast<uint16_t>(to)); break;
    case 4: replace4(sum, static_cast<uint32_t>(from), static_cast<uint32_t>(to)); break;
    default: return neg(kEINVAL);
  }
  if (mmzero && !*sum) *sum = 0xffff;  // CSUM_MANGLED_0
  return 0;
}

// ---- perf event output with packet bytes (BPF_F_CTXLEN_MASK) ----------------------------------------

constexpr uint64_t kIndexMask = 0xffffffffull, kCtxlenMask = 0xfffffull << 32;

uint64_t pkt_perf_output(uint64_t map, uint64_t flags, uint64_t data, uint64_t size, uint64_t pkt, uint64_t pkt_len) {
  if (flags & ~(kIndexMask | kCtxlenMask)) return neg(kEINVAL);
  auto* pe = as_perf_event_array(reinterpret_cast<Map*>(map));
  if (!pe) return neg(kEINVAL);
  uint64_t ctxlen = (flags & kCtxlenMask) >> 32;
  if (ctxlen > pkt_len) return neg(kEFAULT);
  if (!ctxlen) return static_cast<uint64_t>(pe->output(flags & kIndexMask, ptr<const void>(data), size));
  std::vector<uint8_t> buf(size + ctxlen);
  if (size) std::memcpy(buf.data(), ptr<const void>(data), size);
  std::memcpy(buf.data() + size, ptr<const void>(pkt), ctxlen);
  return static_cast<uint64_t>(pe->output(flags & kIndexMask, buf.data(), buf.size()));
}

uint64_t skb_perf_event_output(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t data, uint64_t size) {
  auto* s = ptr<SkbNative>(ctx);
  return pkt_perf_output(map, flags, data, size, s->data, skb_len(s));
}

uint64_t xdp_perf_event_output(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t data, uint64_t size) {
  auto* x = ptr<XdpNative>(ctx);
  return pkt_perf_output(map, flags, data, size, x->data, x->data_end - x->data);
}

}  // namespace

void net_helper_rows(void (*add)(int32_t, HelperFn), void (*add_typed)(int32_t, uint32_t, HelperFn)) {
  add(28, &csum_diff);
  // Socket-buffer helpers: every skb-based type (the program type's allowed list decides who may call).
  add(9, &skb_store_bytes);
  add(10, &l3_csum_replace);
  add(11, &l4_csum_replace);
  add(26, &skb_load_bytes);
  add(68, &skb_load_bytes_relative);
  add(38, &skb_change_tail);
  add(39, &skb_pull_data);
  add(43, &skb_change_head);
  add(44, &xdp_adjust_head);
  add(54, &xdp_adjust_meta);
  add(65, &xdp_adjust_tail);
  add(188, &xdp_get_buff_len);
  add(189, &xdp_load_bytes);
  add(190, &xdp_store_bytes);
  // Per-type flavours, as the kernel's <type>_func_proto return different functions for one id.
  add_typed(23, kProgXdp, &xdp_redirect);
  add_typed(51, kProgXdp, &xdp_redirect_map);
  add_typed(25, kProgXdp, &xdp_perf_event_output);
  for (uint32_t t : {kProgSchedCls, kProgSchedAct, kProgLwtXmit}) add_typed(23, t, &tc_redirect);
  for (uint32_t t : {kProgSocketFilter, kProgSchedCls, kProgSchedAct, kProgCgroupSkb, kProgLwtIn, kProgLwtOut,
                     kProgLwtXmit, kProgLwtSeg6local, kProgSkSkb})
    add_typed(25, t, &skb_perf_event_output);
}

}  // namespace helpers
}  // namespace bpfvm
