// Building contexts for BPF_PROG_TEST_RUN-like runs, following the kernel's net/bpf/test_run.c.
#include <linux/bpf.h>
#include <net/if.h>

#include <fmt/format.h>

#include <cstring>

#include "bpfvm/progtype.hpp"
#include "progtypes/packet_ctx.hpp"

namespace bpfvm {

namespace {

// Frame layout (headroom, tailroom): progtypes/packet_ctx.hpp, shared with the packet hook.
constexpr size_t kEthHlen = detail::kEthHeaderLen;
constexpr uint32_t kLoopbackIfindex = 1;

Diagnostic einval(const std::string& msg) { return make_error(ErrorCode::InvalidArgument, msg); }

bool is_skb_type(uint32_t t) {
  switch (t) {
    case kProgSocketFilter:
    case kProgSchedCls:
    case kProgSchedAct:
    case kProgCgroupSkb:
    case kProgLwtIn:
    case kProgLwtOut:
    case kProgLwtXmit:
    case kProgLwtSeg6local:
    case kProgSkSkb:
      return true;
    default:
      return false;
  }
}

bool range_is_zero(std::span<const uint8_t> b, size_t from, size_t to) {
  for (size_t i = from; i < to && i < b.size(); ++i)
    if (b[i]) return false;
  return true;
}

// The uapi struct from ctx_in: at most `size` bytes (larger is an error unless the excess is zero,
// as the kernel's bpf_ctx_init), zero-padded.
Result<std::vector<uint8_t>> ctx_from_user(std::span<const uint8_t> ctx_in, size_t size, std::string_view what) {
  std::vector<uint8_t> out(size, 0);
  if (ctx_in.size() > size && !range_is_zero(ctx_in, size, ctx_in.size()))
    return einval(fmt::format("ctx_in is {} bytes; {} is {} bytes and the excess is not zero", ctx_in.size(), what,
                              size));
  std::memcpy(out.data(), ctx_in.data(), std::min(size, ctx_in.size()));
  return out;
}

template <class T>
T load(std::span<const uint8_t> b, size_t off) {
  T v{};
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

}  // namespace

std::vector<uint8_t> TestRunContext::data_out() const {
  switch (type_->type) {
    case kProgXdp: {
      auto* x = reinterpret_cast<const XdpNative*>(ctx_.data());
      return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(x->data_meta),
                                  reinterpret_cast<const uint8_t*>(x->data_end));
    }
    case kProgFlowDissector: {
      auto* s = reinterpret_cast<const SkbNative*>(ctx_.data());
      auto* k = reinterpret_cast<const uint8_t*>(s->flow_keys);
      return std::vector<uint8_t>(k, k + sizeof(bpf_flow_keys));
    }
    case kProgMem: return buf_;
    default: break;
  }
  if (is_skb_type(type_->type)) {
    auto* s = reinterpret_cast<const SkbNative*>(ctx_.data());
    std::vector<uint8_t> out(l2_pulled_, 0);  // the kernel re-pushes a zeroed Ethernet header
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(s->data), reinterpret_cast<const uint8_t*>(s->data_end));
    return out;
  }
  return {};
}

std::vector<uint8_t> TestRunContext::ctx_out() const {
  if (!type_->has_ctx) return {};
  if (type_->type == kProgXdp) {
    auto* x = reinterpret_cast<const XdpNative*>(ctx_.data());
    xdp_md md{};
    md.data = static_cast<uint32_t>(x->data - x->data_meta);
    md.data_end = static_cast<uint32_t>(x->data_end - x->data_meta);
    md.ingress_ifindex = x->ingress_ifindex;
    md.rx_queue_index = x->rx_queue_index;
    std::vector<uint8_t> out(sizeof md);
    std::memcpy(out.data(), &md, sizeof md);
    return out;
  }
  if (type_->type == kProgFlowDissector) return {};
  if (is_skb_type(type_->type)) {
    auto* s = reinterpret_cast<const SkbNative*>(ctx_.data());
    __sk_buff u{};
    u.mark = s->mark;
    u.priority = s->priority;
    u.ingress_ifindex = s->ingress_ifindex;
    u.ifindex = s->ifindex;
    std::memcpy(u.cb, s->cb, sizeof u.cb);
    u.tstamp = s->tstamp;
    u.wire_len = s->wire_len;
    u.gso_segs = s->gso_segs;
    u.gso_size = s->gso_size;
    u.hwtstamp = s->hwtstamp;
    std::vector<uint8_t> out(sizeof u);
    std::memcpy(out.data(), &u, sizeof u);
    return out;
  }
  // Identity layouts: the uapi struct is the native context; pointers are not reported.
  std::vector<uint8_t> out(ctx_.begin(), ctx_.begin() + std::min<size_t>(type_->ctx_size, ctx_.size()));
  for (const auto& f : type_->fields)
    if (f.ptr != CtxPtr::None && f.off + f.size <= out.size()) std::memset(out.data() + f.off, 0, f.size);
  return out;
}

Result<std::unique_ptr<TestRunContext>> make_test_run(const ProgTypeInfo& type, std::span<const uint8_t> data_in,
                                                      std::span<const uint8_t> ctx_in,
                                                      const TestRunOptions& options) {
  std::unique_ptr<TestRunContext> tr(new TestRunContext());
  tr->type_ = &type;
  auto alloc_ctx = [&](size_t bytes) {
    tr->ctx_storage_.assign((bytes + 7) / 8 + 1, 0);
    tr->ctx_ = std::span<uint8_t>(reinterpret_cast<uint8_t*>(tr->ctx_storage_.data()), bytes);
  };
  RunArgs& args = tr->args_;
  const uint32_t t = type.type;

  // ---- plain memory ----
  if (t == kProgMem) {
    if (!ctx_in.empty()) return einval("mem programs take no ctx_in (r1 is the data, r2 its length)");
    tr->buf_.assign(data_in.begin(), data_in.end());
    args.r1 = reinterpret_cast<uint64_t>(tr->buf_.data());
    args.r2 = tr->buf_.size();
    if (!tr->buf_.empty()) args.regions.push_back(MemRegion{args.r1, tr->buf_.size(), true, "mem"});
    return tr;
  }

  // ---- XDP ----
  if (t == kProgXdp) {
    if (data_in.size() < kEthHlen) return einval(fmt::format("data_in is {} bytes; XDP needs at least 14", data_in.size()));
    size_t metalen = 0;
    uint32_t ingress = kLoopbackIfindex, rxq = 0;
    if (!ctx_in.empty()) {
      auto c = ctx_from_user(ctx_in, sizeof(xdp_md), "struct xdp_md");
      if (!c) return c.error();
      xdp_md md;
      std::memcpy(&md, c->data(), sizeof md);
      if (md.data_meta) return einval("ctx_in: xdp_md.data_meta must be 0");
      if (md.data_end != data_in.size())
        return einval(fmt::format("ctx_in: xdp_md.data_end ({}) must equal the data_in size ({})", md.data_end,
                                  data_in.size()));
      if (md.data > md.data_end) return einval("ctx_in: xdp_md.data is beyond data_end");
      if ((md.data & 3) || md.data > 32)
        return einval(fmt::format("ctx_in: xdp_md.data ({}) is the metadata length: a multiple of 4, at most 32",
                                  md.data));
      if (md.egress_ifindex) return einval("ctx_in: xdp_md.egress_ifindex must be 0");
      if (!md.ingress_ifindex && md.rx_queue_index)
        return einval("ctx_in: xdp_md.rx_queue_index needs an ingress_ifindex");
      if (md.ingress_ifindex) {
        char name[IF_NAMESIZE];
        if (!if_indextoname(md.ingress_ifindex, name))
          return make_error(ErrorCode::InvalidArgument,
                            fmt::format("ctx_in: no network device with ifindex {} (ENODEV)", md.ingress_ifindex));
      }
      metalen = md.data;
      ingress = md.ingress_ifindex;
      rxq = md.rx_queue_index;
    }
    size_t max_data = detail::xdp_max_single_page(metalen);
    if (data_in.size() > max_data)
      return einval(fmt::format("data_in is {} bytes; bpfvm's XDP test run takes at most {} (no fragments)",
                                data_in.size(), max_data));
    tr->buf_.assign(detail::xdp_frame_size(data_in.size()), 0);
    alloc_ctx(sizeof(XdpNative));
    auto* x = new (tr->ctx_.data()) XdpNative();
    size_t usable = detail::build_xdp(*x, tr->buf_.data(), data_in.data(), data_in.size(), metalen);
    x->ingress_ifindex = ingress;
    x->rx_queue_index = rxq;
    args.r1 = reinterpret_cast<uint64_t>(x);
    args.regions.push_back(MemRegion{args.r1, sizeof(XdpNative), false, "ctx"});
    args.regions.push_back(MemRegion{x->bounds.buf_start, usable, true, "packet"});
    return tr;
  }

  // ---- socket buffers ----
  if (is_skb_type(t) || t == kProgFlowDissector) {
    if (t == kProgSkSkb) return einval("the kernel has no test run for sk_skb programs");
    if (data_in.size() < kEthHlen)
      return einval(fmt::format("data_in is {} bytes; a frame needs at least the 14-byte Ethernet header",
                                data_in.size()));
    uint8_t* skb_buf = tr->skb_.reset(detail::skb_buffer_size(data_in.size()));
    size_t ctx_bytes = sizeof(SkbNative) + (t == kProgFlowDissector ? sizeof(bpf_flow_keys) : 0);
    alloc_ctx(ctx_bytes);
    auto* s = new (tr->ctx_.data()) SkbNative();
    // The layer-2 header is pulled for the types that see the frame from layer 3.
    bool l2 = t == kProgSchedCls || t == kProgSchedAct || t == kProgFlowDissector ||
              (t == kProgSocketFilter && options.socket_filter_l2);
    tr->l2_pulled_ = l2 ? 0 : kEthHlen;
    // eth_type_trans on the loopback device (dev_addr 00:00:00:00:00:00).
    static const uint8_t loopback_addr[6] = {};
    uint8_t* frame = detail::build_skb(*s, skb_buf, data_in.data(), data_in.size(), tr->l2_pulled_,
                                       loopback_addr);
    tr->skb_.connect(*s);  // bpf_skb_change_head/_tail may move the packet
    uint16_t h_proto_be;
    std::memcpy(&h_proto_be, frame + 12, 2);

    if (t == kProgFlowDissector) {
      if (!ctx_in.empty()) {
        auto c = ctx_from_user(ctx_in, sizeof(bpf_flow_keys), "struct bpf_flow_keys");
        if (!c) return c.error();
        bpf_flow_keys k;
        std::memcpy(&k, c->data(), sizeof k);
        bpf_flow_keys only_flags{};
        only_flags.flags = k.flags;
        if (std::memcmp(&k, &only_flags, sizeof k) != 0)
          return einval("ctx_in: only bpf_flow_keys.flags may be set for a flow dissector test run");
      }
      auto* keys = reinterpret_cast<bpf_flow_keys*>(tr->ctx_.data() + sizeof(SkbNative));
      if (!ctx_in.empty()) keys->flags = load<uint32_t>(ctx_in, offsetof(bpf_flow_keys, flags));
      keys->nhoff = kEthHlen;
      keys->thoff = kEthHlen;
      keys->n_proto = h_proto_be;
      s->flow_keys = reinterpret_cast<uint64_t>(keys);
      args.r1 = reinterpret_cast<uint64_t>(s);
      args.regions.push_back(MemRegion{args.r1, sizeof(SkbNative), false, "ctx"});
      args.regions.push_back(MemRegion{reinterpret_cast<uint64_t>(keys), sizeof(bpf_flow_keys), true, "flow_keys"});
      args.regions.push_back(MemRegion{s->data, data_in.size(), false, "packet"});
      return tr;
    }

    // The socket the kernel's test run attaches: its family and addresses from the packet.
    const uint16_t proto = static_cast<uint16_t>((s->protocol >> 8) | (s->protocol << 8));
    const uint8_t* l3 = frame + kEthHlen;
    size_t l3len = data_in.size() - kEthHlen;
    if (proto == 0x0800) {
      s->family = 2;  // AF_INET
      if (l3len >= 20) {
        std::memcpy(&s->local_ip4, l3 + 12, 4);   // sk_rcv_saddr = saddr
        std::memcpy(&s->remote_ip4, l3 + 16, 4);  // sk_daddr = daddr
      }
    } else if (proto == 0x86DD) {
      s->family = 10;  // AF_INET6
      if (l3len >= 40) {
        std::memcpy(s->local_ip6, l3 + 8, 16);
        std::memcpy(s->remote_ip6, l3 + 24, 16);
      }
    }
    s->ifindex = kLoopbackIfindex;
    s->wire_len = s->len;

    if (!ctx_in.empty()) {
      auto c = ctx_from_user(ctx_in, sizeof(__sk_buff), "struct __sk_buff");
      if (!c) return c.error();
      std::span<const uint8_t> u(*c);
      using S = __sk_buff;
      auto end_of = [](size_t off, size_t size) { return off + size; };
      struct Allowed {
        size_t from, to;
      };
      // Fields the kernel's convert___skb_to_skb accepts; everything else must be zero.
      const Allowed allowed[] = {
          {offsetof(S, mark), end_of(offsetof(S, mark), 4)},
          {offsetof(S, priority), end_of(offsetof(S, ifindex), 4)},  // priority, ingress_ifindex, ifindex
          {offsetof(S, cb), end_of(offsetof(S, cb), sizeof(S::cb))},
          {offsetof(S, tstamp), end_of(offsetof(S, gso_segs), 4)},  // tstamp, wire_len, gso_segs
          {offsetof(S, gso_size), end_of(offsetof(S, gso_size), 4)},
          {offsetof(S, hwtstamp), sizeof(S)},
      };
      size_t pos = 0;
      for (const auto& a : allowed) {
        if (!range_is_zero(u, pos, a.from))
          return einval(fmt::format("ctx_in: __sk_buff bytes {}..{} must be zero (only mark, priority, "
                                    "ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs, gso_size and "
                                    "hwtstamp may be set)",
                                    pos, a.from - 1));
        pos = a.to;
      }
      s->mark = load<uint32_t>(u, offsetof(S, mark));
      s->priority = load<uint32_t>(u, offsetof(S, priority));
      s->ingress_ifindex = load<uint32_t>(u, offsetof(S, ingress_ifindex));
      uint32_t ifindex = load<uint32_t>(u, offsetof(S, ifindex));
      if (ifindex > 1) {
        char name[IF_NAMESIZE];
        if (!if_indextoname(ifindex, name))
          return einval(fmt::format("ctx_in: no network device with ifindex {} (ENODEV)", ifindex));
        s->ifindex = ifindex;
      }
      std::memcpy(s->cb, u.data() + offsetof(S, cb), sizeof s->cb);
      s->tstamp = load<uint64_t>(u, offsetof(S, tstamp));
      uint32_t wire_len = load<uint32_t>(u, offsetof(S, wire_len));
      if (wire_len) {
        if (wire_len < s->len || wire_len > 65536)
          return einval(fmt::format("ctx_in: wire_len {} must be between the packet length {} and 65536", wire_len,
                                    s->len));
        s->wire_len = wire_len;
      }
      uint32_t gso_segs = load<uint32_t>(u, offsetof(S, gso_segs));
      if (gso_segs > 65535) return einval("ctx_in: gso_segs above GSO_MAX_SEGS (65535)");
      s->gso_segs = gso_segs;
      s->gso_size = load<uint32_t>(u, offsetof(S, gso_size));
      s->hwtstamp = load<uint64_t>(u, offsetof(S, hwtstamp));
    }
    args.r1 = reinterpret_cast<uint64_t>(s);
    args.packet = reinterpret_cast<const uint8_t*>(s->data);
    args.packet_len = s->len;
    args.regions.push_back(MemRegion{args.r1, sizeof(SkbNative), true, "ctx"});
    args.regions.push_back(MemRegion{s->data, s->len, true, "packet"});
    return tr;
  }

  // ---- tracing types: ctx_in is the uapi context ----
  if (type.generic) {
    if (!data_in.empty())
      return einval(fmt::format("{} programs take no data_in; pass the context as ctx_in ({})", type.name,
                                type.ctx_struct));
    size_t size = type.ctx_size;
    if (t == kProgSyscall) size = ctx_in.size();
    if (t == kProgRawTracepoint || t == kProgRawTracepointWritable || t == kProgTracing) {
      if (ctx_in.size() % 8) return einval("ctx_in for raw tracepoints is an array of u64 arguments");
    }
    auto c = ctx_from_user(ctx_in, size, type.ctx_struct);
    if (!c) return c.error();
    alloc_ctx(size);
    if (size) std::memcpy(tr->ctx_.data(), c->data(), size);
    args.r1 = size ? reinterpret_cast<uint64_t>(tr->ctx_.data()) : 0;
    if (size) args.regions.push_back(MemRegion{args.r1, size, type.writable_generic, "ctx"});
    return tr;
  }

  // ---- every other type: ctx_in is the uapi struct (= the native context); packet-like pointer
  //      fields point into data_in, socket pointers are NULL ----
  auto c = ctx_from_user(ctx_in, type.ctx_size, type.ctx_struct);
  if (!c) return c.error();
  for (const auto& f : type.fields)
    if (f.ptr != CtxPtr::None && !range_is_zero(*c, f.off, f.off + f.size))
      return einval(fmt::format("ctx_in: {} is a pointer and must be 0 (bpfvm sets it)", f.name));
  tr->buf_.assign(data_in.begin(), data_in.end());
  alloc_ctx(type.native_size);
  std::memcpy(tr->ctx_.data(), c->data(), type.ctx_size);
  uint64_t start = reinterpret_cast<uint64_t>(tr->buf_.data()), end = start + tr->buf_.size();
  for (const auto& f : type.fields) {
    uint64_t v = 0;
    if (f.ptr == CtxPtr::Packet || f.ptr == CtxPtr::Mem) v = start;
    else if (f.ptr == CtxPtr::PacketEnd || f.ptr == CtxPtr::MemEnd) v = end;
    else continue;
    std::memcpy(tr->ctx_.data() + f.native_off, &v, 8);
  }
  args.r1 = reinterpret_cast<uint64_t>(tr->ctx_.data());
  args.regions.push_back(MemRegion{args.r1, type.native_size, true, "ctx"});
  if (!tr->buf_.empty()) args.regions.push_back(MemRegion{start, tr->buf_.size(), true, "packet"});
  return tr;
}

}  // namespace bpfvm
