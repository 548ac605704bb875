// A socket buffer's packet memory, moved by the helpers that need more room than it has.
#include <algorithm>
#include <cstring>

#include "bpfvm/progtype.hpp"
#include "bpfvm/vm.hpp"
#include "progtypes/packet_ctx.hpp"

namespace bpfvm {

uint8_t* SkbBuffer::reset(size_t size) {
  retired_.clear();
  if (buf_.size() < size) buf_.assign(size, 0);
  return buf_.data();
}

int SkbBuffer::grow(void* owner, SkbNative* skb, uint64_t head, uint64_t tail) {
  constexpr int kENOMEM = 12;
  auto* self = static_cast<SkbBuffer*>(owner);
  PacketBounds& b = skb->bounds;
  const uint64_t have_head = skb->data - b.buf_start;
  const uint64_t have_tail = b.buf_end - skb->data_end;
  if (have_head >= head && have_tail >= tail) {
    if (RunContext* rc = current_run()) rc->allow_region(b.buf_start, b.buf_end - b.buf_start, true, "packet");
    return 0;
  }
  // Room is added in steps of NET_SKB_PAD, as __skb_cow does for the head.
  auto step = [](uint64_t have, uint64_t want) {
    return want <= have ? have : have + (want - have + detail::kSkbHeadroom - 1) / detail::kSkbHeadroom * detail::kSkbHeadroom;
  };
  const uint64_t new_head = step(have_head, head);
  const uint64_t new_tail = step(have_tail, tail);
  const uint64_t pkt = skb->data_end - skb->data;
  // The helpers bound packets by BPF_SKB_MAX_LEN; anything far beyond is a caller's error.
  if (new_head > (1u << 20) || new_tail > (1u << 20) || pkt > (1u << 20)) return -kENOMEM;
  std::vector<uint8_t> nb(new_head + pkt + new_tail + detail::kSharedInfoSize, 0);
  // The whole old buffer (headroom included) moves, as pskb_expand_head copies the head.
  uint8_t* moved = nb.data() + (new_head - have_head);
  std::memcpy(moved, reinterpret_cast<const void*>(b.buf_start), b.buf_end - b.buf_start);
  const uint64_t delta = reinterpret_cast<uint64_t>(moved) - b.buf_start;
  skb->data += delta;
  skb->data_end += delta;
  skb->data_meta += delta;
  if (b.mac_header) b.mac_header += delta;
  if (b.network_header) b.network_header += delta;
  b.buf_start = reinterpret_cast<uint64_t>(nb.data());
  b.buf_end = skb->data_end + new_tail;
  self->retired_.push_back(std::move(self->buf_));
  self->buf_ = std::move(nb);
  // A checked run may access the new buffer; the old one stays allocated (retired_) until the next packet.
  if (RunContext* rc = current_run()) rc->allow_region(b.buf_start, b.buf_end - b.buf_start, true, "packet");
  return 0;
}

}  // namespace bpfvm
