// Live traffic: an AF_PACKET socket with a TPACKET_V3 receive ring (blocks of packets handed over by
// the kernel, no copy per packet), transmission on the same socket (XDP_TX), and network devices as
// bpfvm interfaces (redirect / forwarding targets).
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bpfvm/packet.hpp"

namespace bpfvm {

namespace {

Diagnostic sys_error(const std::string& what) {
  return make_error(ErrorCode::Io, what + ": " + std::strerror(errno));
}

Result<uint32_t> ifindex_of(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (!idx) return make_error(ErrorCode::Io, "no network interface '" + name + "': " + std::strerror(errno));
  return idx;
}

}  // namespace

Result<std::unique_ptr<LiveCapture>> LiveCapture::open(const std::string& ifname, const Options& o) {
  auto idx = ifindex_of(ifname);
  if (!idx) return idx.error();
  int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) return sys_error("AF_PACKET socket on " + ifname + " (needs CAP_NET_RAW)");
  std::unique_ptr<LiveCapture> c(new LiveCapture());
  c->fd_ = fd;
  c->ifindex_ = *idx;
  c->name_ = ifname;
  int v3 = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v3, sizeof v3) < 0) return sys_error("PACKET_VERSION TPACKET_V3");
  if (o.ignore_outgoing) {
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);  // best effort (Linux >= 4.20)
  }
  tpacket_req3 req{};
  req.tp_block_size = o.block_size;
  req.tp_block_nr = o.blocks;
  req.tp_frame_size = 2048;
  req.tp_frame_nr = o.block_size / 2048 * o.blocks;
  req.tp_retire_blk_tov = o.block_timeout_ms;
  req.tp_feature_req_word = 0;
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) return sys_error("PACKET_RX_RING");
  c->ring_size_ = static_cast<size_t>(o.block_size) * o.blocks;
  void* ring = mmap(nullptr, c->ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
  if (ring == MAP_FAILED) ring = mmap(nullptr, c->ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (ring == MAP_FAILED) return sys_error("mmap of the packet ring");
  c->ring_ = static_cast<uint8_t*>(ring);
  c->block_size_ = o.block_size;
  c->blocks_ = o.blocks;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(*idx);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) return sys_error("bind to " + ifname);
  if (o.promiscuous) {
    packet_mreq mr{};
    mr.mr_ifindex = static_cast<int>(*idx);
    mr.mr_type = PACKET_MR_PROMISC;
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
  }
  return c;
}

LiveCapture::~LiveCapture() {
  if (ring_) munmap(ring_, ring_size_);
  if (fd_ >= 0) close(fd_);
}

Result<size_t> LiveCapture::poll(int timeout_ms, const std::function<void(const PacketView&)>& fn) {
  auto* bd = reinterpret_cast<tpacket_block_desc*>(ring_ + static_cast<size_t>(current_) * block_size_);
  if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
    pollfd p{fd_, POLLIN | POLLERR, 0};
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) return size_t{0};
      return sys_error("poll on " + name_);
    }
    if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return size_t{0};
  }
  size_t delivered = 0;
  uint8_t scratch[65536 + 4];
  // Every ready block, in ring order.
  while (__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) {
    uint32_t n = bd->hdr.bh1.num_pkts;
    auto* h = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<uint8_t*>(bd) + bd->hdr.bh1.offset_to_first_pkt);
    for (uint32_t i = 0; i < n; ++i) {
      PacketView v;
      v.ts_sec = h->tp_sec;
      v.ts_nsec = h->tp_nsec;
      v.caplen = h->tp_snaplen;
      v.wirelen = h->tp_len;
      v.data = reinterpret_cast<const uint8_t*>(h) + h->tp_mac;
      v.ifindex = ifindex_;
      // A VLAN tag the device took out of the frame goes back in, as libpcap does.
      if ((h->tp_status & TP_STATUS_VLAN_VALID) && v.caplen >= 12 && v.caplen + 4 <= sizeof scratch) {
        uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ? h->hv1.tp_vlan_tpid : ETH_P_8021Q;
        std::memcpy(scratch, v.data, 12);
        scratch[12] = static_cast<uint8_t>(tpid >> 8);
        scratch[13] = static_cast<uint8_t>(tpid);
        scratch[14] = static_cast<uint8_t>(h->hv1.tp_vlan_tci >> 8);
        scratch[15] = static_cast<uint8_t>(h->hv1.tp_vlan_tci);
        std::memcpy(scratch + 16, v.data + 12, v.caplen - 12);
        v.data = scratch;
        v.caplen += 4;
        v.wirelen += 4;
      }
      fn(v);
      ++delivered;
      h = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<uint8_t*>(h) + h->tp_next_offset);
    }
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    current_ = (current_ + 1) % blocks_;
    bd = reinterpret_cast<tpacket_block_desc*>(ring_ + static_cast<size_t>(current_) * block_size_);
  }
  return delivered;
}

Status LiveCapture::send(const uint8_t* data, size_t len) {
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(ifindex_);
  sll.sll_halen = ETH_ALEN;
  if (len >= 6) std::memcpy(sll.sll_addr, data, 6);
  if (sendto(fd_, data, len, 0, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) return sys_error("send on " + name_);
  return {};
}

uint64_t LiveCapture::kernel_drops() {
  tpacket_stats_v3 st{};
  socklen_t l = sizeof st;
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0) drops_ += st.tp_drops;  // reading resets
  return drops_;
}

namespace {
class DeviceSink : public PacketSink {
 public:
  DeviceSink(int fd, uint32_t ifindex, std::string name) : fd_(fd), ifindex_(ifindex), name_(std::move(name)) {}
  ~DeviceSink() override { close(fd_); }
  Status send(const PacketView& pkt) override {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = static_cast<int>(ifindex_);
    sll.sll_halen = ETH_ALEN;
    if (pkt.caplen >= 6) std::memcpy(sll.sll_addr, pkt.data, 6);
    if (sendto(fd_, pkt.data, pkt.caplen, 0, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0)
      return sys_error("send on " + name_);
    ++sent;
    return {};
  }
  std::string describe() const override { return name_; }

 private:
  int fd_;
  uint32_t ifindex_;
  std::string name_;
};
}  // namespace

Result<std::shared_ptr<PacketSink>> make_device_sink(const std::string& ifname) {
  auto idx = ifindex_of(ifname);
  if (!idx) return idx.error();
  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: transmit only
  if (fd < 0) return sys_error("AF_PACKET socket for " + ifname + " (needs CAP_NET_RAW)");
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = static_cast<int>(*idx);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    auto e = sys_error("bind to " + ifname);
    close(fd);
    return e;
  }
  return std::shared_ptr<PacketSink>(std::make_shared<DeviceSink>(fd, *idx, ifname));
}

}  // namespace bpfvm
