// The packet hook: one program run per packet with the program type's native context, the verdict
// turned into an action (pass / drop / tx / redirect), counters.
#include <fmt/format.h>

#include <cstring>

#include "bpfvm/map.hpp"
#include "bpfvm/packet.hpp"
#include "bpfvm/runtime.hpp"
#include "progtypes/packet_ctx.hpp"

namespace bpfvm {

// Weak until the loader's instantiate() is in the library everywhere (the hook reports its absence).
Result<LoadedObject> instantiate(const Object& object) __attribute__((weak));

namespace {
// The frame layout is progtypes/packet_ctx.hpp's, the same as the test run's.
constexpr size_t kMaxPacket = 262144;
const size_t kBufSize = detail::xdp_frame_size(kMaxPacket);
// Socket-buffer packets: the smallest buffer kept from packet to packet.
constexpr size_t kSkbBufReuse = 65536;
}  // namespace

const char* packet_action_name(PacketAction a) {
  switch (a) {
    case PacketAction::Pass: return "pass";
    case PacketAction::Drop: return "drop";
    case PacketAction::Tx: return "tx";
    case PacketAction::Redirect: return "redirect";
    case PacketAction::Aborted: return "aborted";
    case PacketAction::Error: return "error";
  }
  return "?";
}

bool PacketHook::supports(uint32_t t) {
  return t == kProgXdp || t == kProgSocketFilter || t == kProgSchedCls || t == kProgSchedAct;
}

Result<std::unique_ptr<PacketHook>> PacketHook::create(const ProgTypeInfo& type, Program program,
                                                       const HookOptions& options) {
  if (!supports(type.type))
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("the packet hook runs xdp, socket_filter, sched_cls and sched_act programs, not {}",
                                  type.name));
  auto p = prepare_program(std::move(program), type, options.prepare);
  if (!p) return p.error();
  std::unique_ptr<PacketHook> h(new PacketHook());
  h->type_ = &type;
  h->exe_ = std::move(p->exe);
  h->options_ = options;
  h->name_ = h->exe_->program().name;
  h->init();
  return h;
}

Result<std::unique_ptr<PacketHook>> PacketHook::from_object(const Object& object, std::string_view which,
                                                            const HookOptions& options, std::string_view type_name) {
  const ProgTypeInfo* type = nullptr;
  if (!type_name.empty()) {
    type = find_prog_type(type_name);
    if (!type || !supports(type->type))
      return make_error(ErrorCode::InvalidArgument, fmt::format("'{}' is not a packet program type (xdp, socket, tc)", type_name));
  }
  const ObjectProgram* prog = nullptr;
  if (!which.empty()) {
    prog = object.find_program(which);
    if (!prog) {
      std::string names;
      for (const auto& p : object.programs) names += (names.empty() ? "" : ", ") + p.section + " (" + p.name + ")";
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("no program '{}' in the object; it has: {}", which, names.empty() ? "none" : names));
    }
  } else {
    for (const auto& p : object.programs)
      if (p.type_known && type && (p.type == type->type || (type->type == kProgSchedCls && p.type == kProgSchedAct))) {
        prog = &p;
        break;
      }
    if (!prog) {
      std::vector<const ObjectProgram*> packet;
      for (const auto& p : object.programs)
        if (p.type_known && supports(p.type)) packet.push_back(&p);
      if (packet.size() == 1) prog = packet[0];
      else if (object.programs.size() == 1) prog = &object.programs[0];
      else {
        std::string names;
        for (const auto& p : object.programs) names += (names.empty() ? "" : ", ") + p.section;
        return make_error(ErrorCode::InvalidArgument,
                          fmt::format("the object has {} programs ({}): choose one by its section or function name", object.programs.size(), names));
      }
    }
  }
  if (type && prog->type_known && supports(prog->type) && prog->type != type->type &&
      !(type->type == kProgSchedCls && prog->type == kProgSchedAct)) {
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("program {} (section {}) is a {} program, not {}", prog->name, prog->section,
                                  prog_type_name(prog->type), type->name));
  }
  if (!type) {
    type = find_prog_type(prog->type);
    if (!prog->type_known || !type || !supports(type->type))
      return make_error(ErrorCode::InvalidArgument,
                        fmt::format("program {} (section {}) is of type {}, not a packet program type", prog->name,
                                    prog->section, prog_type_name(prog->type)));
  }
  if (!&instantiate) return make_error(ErrorCode::Unsupported, "this build of bpfvm has no object instantiation");
  auto live = instantiate(object);
  if (!live) return live.error();
  auto loaded = std::make_shared<LoadedObject>(std::move(*live));
  auto p = prepare_program(*prog, *loaded, type, options.prepare);
  if (!p) return p.error();
  std::unique_ptr<PacketHook> h(new PacketHook());
  h->type_ = type;
  h->exe_ = std::move(p->exe);
  h->options_ = options;
  h->name_ = prog->name;
  h->object_ = loaded->object;
  h->loaded_ = std::move(loaded);
  h->data_regions_ = p->regions;
  h->init();
  return h;
}

PacketHook::~PacketHook() = default;

const HookCounters& PacketHook::counters() const {
  for (size_t v = 0; v < small_verdicts_.size(); ++v) {
    if (!small_verdicts_[v]) continue;
    counters_.verdicts[static_cast<int64_t>(v)] += small_verdicts_[v];
    small_verdicts_[v] = 0;
  }
  return counters_;
}

void PacketHook::init() {
  buf_.assign(kBufSize, 0);
  size_t ctx_bytes = type_->type == kProgXdp ? sizeof(XdpNative) : sizeof(SkbNative);
  ctx_storage_.assign((ctx_bytes + 7) / 8, 0);
  args_.r1 = reinterpret_cast<uint64_t>(ctx_storage_.data());
  args_.regions.clear();
  args_.regions.push_back(MemRegion{args_.r1, ctx_bytes, true, "ctx"});
  args_.regions.push_back(MemRegion{reinterpret_cast<uint64_t>(buf_.data()), buf_.size(), true, "packet"});
  args_.regions.insert(args_.regions.end(), data_regions_.begin(), data_regions_.end());
  fixed_regions_ = args_.regions.size();
}

std::string PacketHook::verdict_name(int64_t v) const {
  if (type_->type == kProgXdp) {
    static const char* names[] = {"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"};
    if (v >= 0 && v <= 4) return names[v];
    return fmt::format("invalid XDP action {}", v);
  }
  if (type_->type == kProgSocketFilter) return v == 0 ? "drop" : fmt::format("keep {}", v);
  static const char* tc[] = {"TC_ACT_OK", "TC_ACT_RECLASSIFY", "TC_ACT_SHOT", "TC_ACT_PIPE", "TC_ACT_STOLEN",
                             "TC_ACT_QUEUED", "TC_ACT_REPEAT", "TC_ACT_REDIRECT", "TC_ACT_TRAP"};
  if (v == -1) return "TC_ACT_UNSPEC";
  if (v >= 0 && v <= 8) return tc[v];
  return fmt::format("TC verdict {}", v);
}

PacketResult PacketHook::process(const PacketView& in) {
  PacketResult res;
  uint32_t caplen = std::min<uint32_t>(in.caplen, kMaxPacket);
  uint32_t wirelen = std::max(in.wirelen, caplen);
  ++counters_.packets;
  counters_.bytes += wirelen;
  uint8_t* buf = buf_.data();
  const uint32_t t = type_->type;
  redirect_info() = RedirectInfo{};
  if (args_.regions.size() > fixed_regions_) args_.regions.resize(fixed_regions_);
  uint8_t* data = nullptr;
  if (t == kProgXdp) {
    auto* x = reinterpret_cast<XdpNative*>(ctx_storage_.data());
    *x = XdpNative{};
    args_.regions[1].size = detail::build_xdp(*x, buf, in.data, caplen);
    x->ingress_ifindex = in.ifindex ? in.ifindex : options_.ingress_ifindex;
    x->rx_queue_index = 0;
    args_.packet = nullptr;
    args_.packet_len = 0;
  } else {
    auto* s = reinterpret_cast<SkbNative*>(ctx_storage_.data());
    *s = SkbNative{};
    // From layer 2, as tc and an AF_PACKET socket see it; the receiving device's address is unknown
    // (a unicast frame counts as for this host).
    // A buffer of its own, reused from packet to packet, which bpf_skb_change_head/_tail may move;
    // what follows the frame in it is tailroom.
    uint8_t* skb_buf = skb_buf_.reset(std::max(kSkbBufReuse, detail::skb_buffer_size(caplen)));
    data = detail::build_skb(*s, skb_buf, in.data, caplen, 0);
    s->bounds.buf_end = reinterpret_cast<uint64_t>(skb_buf + skb_buf_.size() - detail::kSharedInfoSize);
    skb_buf_.connect(*s);
    s->len = wirelen;
    s->wire_len = wirelen;
    uint32_t ifx = in.ifindex ? in.ifindex : options_.ingress_ifindex;
    s->ifindex = ifx;
    s->ingress_ifindex = ifx;
    args_.regions[1] = MemRegion{reinterpret_cast<uint64_t>(skb_buf), detail::kSkbHeadroom + caplen, true, "packet"};
    args_.packet = data;
    args_.packet_len = caplen;
  }
  // Executable::run holds a map read section for programs that call helpers, and fails the run with
  // a fault a helper's callback raised.
  Result<uint64_t> r = exe_->run(args_);
  res.out = in;
  if (!r) {
    res.action = PacketAction::Error;
    res.error = r.error().to_string();
    ++counters_.actions[static_cast<size_t>(PacketAction::Error)];
    if (r.error().code == ErrorCode::Budget) ++counters_.budget_exhausted;
    return res;
  }
  res.retval = *r;
  if (t == kProgXdp) {
    auto* x = reinterpret_cast<XdpNative*>(ctx_storage_.data());
    uint32_t v = static_cast<uint32_t>(*r);
    count_verdict(v);
    res.out.data = reinterpret_cast<const uint8_t*>(x->data);
    res.out.caplen = static_cast<uint32_t>(x->data_end - x->data);
    res.out.wirelen = static_cast<uint32_t>(int64_t(wirelen) + int64_t(res.out.caplen) - int64_t(caplen));
    switch (v) {
      case 1: res.action = PacketAction::Drop; break;
      case 2: res.action = PacketAction::Pass; break;
      case 3: res.action = PacketAction::Tx; break;
      case 4: res.action = PacketAction::Redirect; break;
      default: res.action = PacketAction::Aborted; break;
    }
  } else if (t == kProgSocketFilter) {
    uint32_t keep = static_cast<uint32_t>(*r);
    count_verdict(keep == 0 ? 0 : 1);
    res.out.data = data;
    if (keep == 0) {
      res.action = PacketAction::Drop;
    } else {
      res.action = PacketAction::Pass;
      if (keep < caplen) {
        res.out.caplen = keep;
        ++counters_.truncated;
      }
    }
  } else {
    auto* s = reinterpret_cast<SkbNative*>(ctx_storage_.data());
    int32_t v = static_cast<int32_t>(*r);
    count_verdict(v);
    res.out.data = reinterpret_cast<const uint8_t*>(s->data);
    res.out.caplen = static_cast<uint32_t>(s->data_end - s->data);
    res.out.wirelen = static_cast<uint32_t>(int64_t(wirelen) + int64_t(res.out.caplen) - int64_t(caplen));
    switch (v) {
      case 2: case 4: case 5: case 8: res.action = PacketAction::Drop; break;
      case 7: res.action = PacketAction::Redirect; break;
      default: res.action = PacketAction::Pass; break;
    }
  }
  if (res.action == PacketAction::Redirect) {
    const RedirectInfo& ri = redirect_info();
    if (!ri.set) {
      res.action = t == kProgXdp ? PacketAction::Aborted : PacketAction::Drop;
    } else {
      uint32_t target = ri.ifindex;
      if (ri.map) {
        auto* m = static_cast<Map*>(const_cast<void*>(ri.map));
        uint32_t key = ri.ifindex;
        MapReadSection section;
        if (const void* v = m->lookup(&key)) std::memcpy(&target, v, 4);
        else target = 0;
      }
      res.target = target;
      res.sink = ifs_ ? ifs_->find(target) : nullptr;
      if (!res.sink) ++counters_.redirect_no_target;
    }
  }
  ++counters_.actions[static_cast<size_t>(res.action)];
  return res;
}

}  // namespace bpfvm
