// Internal: the one place that lays out a packet for the packet program types -- the XDP frame and
// the socket-buffer head -- and fills the native context's pointers and bounds. Used by the
// BPF_PROG_TEST_RUN-like runs (testrun.cpp) and by the packet hook (hooks/packet_hook.cpp), so both
// give a program the same room and the same context.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "bpfvm/progtype.hpp"

namespace bpfvm::detail {

constexpr size_t kEthHeaderLen = 14;
constexpr size_t kXdpPacketHeadroom = 256;  // XDP_PACKET_HEADROOM: room for bpf_xdp_adjust_head / _meta
constexpr size_t kXdpFramePage = 4096;      // one page per frame (more for larger packets: see xdp_frame_size)
constexpr size_t kXdpFrameHeader = 40;      // sizeof(struct xdp_frame), kept free at the frame's start
constexpr size_t kSharedInfoSize = 320;     // SKB_DATA_ALIGN(sizeof(struct skb_shared_info)), x86-64
// The kernel's BPF_PROG_TEST_RUN reserves NET_SKB_PAD (64) + NET_IP_ALIGN (0 on x86) before an skb's
// data. Helpers that push or append bytes (bpf_skb_change_head, bpf_skb_change_tail) grow the buffer
// when they need more (SkbBuffer, progtype.hpp), as the kernel's pskb_expand_head.
constexpr size_t kSkbHeadroom = 64;
// The longest packet the skb helpers make: BPF_SKB_MAX_LEN = SKB_MAX_ALLOC, four pages less the
// shared info.
constexpr uint64_t kBpfSkbMaxLen = 4 * 4096 - kSharedInfoSize;

// XDP: the frame for a packet of `len` bytes: a page, or more when the packet does not fit one
// (the packet hook's large captured frames; the test run refuses those, as the kernel without frags).
inline size_t xdp_frame_size(size_t len) { return std::max(kXdpFramePage, kXdpPacketHeadroom + len + kSharedInfoSize); }
// The largest packet of a one-page frame with `metalen` bytes of metadata.
inline size_t xdp_max_single_page(size_t metalen) {
  return kXdpFramePage - (kXdpPacketHeadroom - metalen) - kSharedInfoSize;
}

// Copies the packet into `frame` (xdp_frame_size(len) bytes, zeroed by the caller where it matters)
// at XDP_PACKET_HEADROOM - metalen, and points `x` at it: data_meta, data (metalen bytes later),
// data_end, and the bounds bpf_xdp_adjust_head / _meta / _tail keep to. Returns the bytes of `frame`
// the program may access (the frame without its skb_shared_info tail).
inline size_t build_xdp(XdpNative& x, uint8_t* frame, const uint8_t* pkt, size_t len, size_t metalen = 0) {
  const size_t size = xdp_frame_size(len);
  uint8_t* meta = frame + kXdpPacketHeadroom - metalen;
  std::memcpy(meta, pkt, len);
  x.data_meta = reinterpret_cast<uint64_t>(meta);
  x.data = x.data_meta + metalen;
  x.data_end = x.data_meta + len;
  x.bounds.buf_start = reinterpret_cast<uint64_t>(frame);
  x.bounds.buf_end = reinterpret_cast<uint64_t>(frame + size - kSharedInfoSize);
  x.bounds.headroom_reserve = kXdpFrameHeader;
  x.bounds.meta_valid = 1;
  return size - kSharedInfoSize;
}

// Socket buffers: the buffer for a frame of `len` bytes: the headroom, the frame, the shared-info tail.
inline size_t skb_buffer_size(size_t len) { return kSkbHeadroom + len + kSharedInfoSize; }

// Copies the frame (from layer 2) into `buf` (skb_buffer_size(len) bytes) after the headroom and
// fills what eth_type_trans gives: pkt_type (against `dev_addr`; nullptr: a unicast frame is for the
// host), protocol (network order; 802.3 raw and 802.2 for lengths), and the header marks. `l2_pulled`
// bytes of the Ethernet header are pulled (14: the program sees the frame from layer 3, as socket
// filters under BPF_PROG_TEST_RUN; 0: from layer 2). Returns the frame's first byte in `buf`.
inline uint8_t* build_skb(SkbNative& s, uint8_t* buf, const uint8_t* pkt, size_t len, size_t l2_pulled,
                          const uint8_t* dev_addr = nullptr) {
  uint8_t* frame = buf + kSkbHeadroom;
  std::memcpy(frame, pkt, len);
  s.bounds.buf_start = reinterpret_cast<uint64_t>(buf);
  s.bounds.buf_end = reinterpret_cast<uint64_t>(frame + len);
  s.bounds.mac_header = reinterpret_cast<uint64_t>(frame);
  s.bounds.network_header = reinterpret_cast<uint64_t>(frame + kEthHeaderLen);
  if (len >= kEthHeaderLen) {
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (frame[0] & 1) s.pkt_type = std::memcmp(frame, bcast, 6) == 0 ? 1 : 2;  // BROADCAST / MULTICAST
    else s.pkt_type = dev_addr && std::memcmp(frame, dev_addr, 6) != 0 ? 3 : 0;  // OTHERHOST / HOST
    uint16_t proto = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
    if (proto < 0x600) proto = (len >= 16 && frame[14] == 0xff && frame[15] == 0xff) ? 0x0001 : 0x0004;  // 802.3 / 802.2
    s.protocol = static_cast<uint16_t>((proto >> 8) | (proto << 8));  // __be16 as stored
  }
  s.data = reinterpret_cast<uint64_t>(frame + l2_pulled);
  s.data_end = reinterpret_cast<uint64_t>(frame + len);
  s.data_meta = s.data;
  s.len = static_cast<uint32_t>(len - l2_pulled);
  return frame;
}

}  // namespace bpfvm::detail
