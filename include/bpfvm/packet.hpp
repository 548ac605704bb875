// bpfvm: packet hooks. XDP, socket filter and tc (sched_cls / sched_act) programs driven one packet at a
// time from capture files (pcap / pcapng through libpcap) or live interfaces (AF_PACKET with a
// TPACKET_V3 ring), with the program type's native context (progtype.hpp), the verdict turned into an
// action, per-verdict counters, and redirect targets that are bpfvm "interfaces": capture files or
// live network devices, addressed by an ifindex (bpf_redirect) or through a devmap (bpf_redirect_map).
//
//   auto obj = load_object_file("prog.o");
//   auto hook = PacketHook::from_object(*obj, "xdp", {});            // program type from the section
//   auto in = PcapReader::open("in.pcap");
//   PacketView pkt;
//   while (in->next(pkt).value_or_false) { auto r = hook->process(pkt); ... }
//
// Semantics (docs/packets.md):
//  - xdp: the frame from layer 2 in a 4 KiB frame with 256 bytes of headroom (bpf_xdp_adjust_head /
//    _meta / _tail move within it); verdicts XDP_ABORTED 0, DROP 1, PASS 2, TX 3, REDIRECT 4; any
//    other value is treated as ABORTED (as the kernel's bpf_warn_invalid_xdp_action).
//  - socket_filter: the frame from layer 2 as an AF_PACKET socket presents it (LD_ABS [12] is the
//    EtherType); r0 = bytes to keep (the packet is truncated to it), 0 = drop.
//  - sched_cls / sched_act: the frame from layer 2 in an sk_buff; TC_ACT_OK 0 / UNSPEC -1 / PIPE 3 /
//    RECLASSIFY 1 pass, SHOT 2 / STOLEN 4 / QUEUED 5 / TRAP 8 drop, REDIRECT 7 goes to the target.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/runtime.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// One packet: a view of its bytes (valid until the next call on whatever produced it).
struct PacketView {
  int64_t ts_sec = 0;
  uint32_t ts_nsec = 0;
  uint32_t caplen = 0;   // bytes present
  uint32_t wirelen = 0;  // length on the wire (>= caplen)
  const uint8_t* data = nullptr;
  uint32_t ifindex = 0;  // live capture: the interface it arrived on
};

// ---- capture files -------------------------------------------------------------------------------

class PcapReader {
 public:
  // Opens a pcap or pcapng file. A file that is neither gets an error naming offset 0 and what the
  // first bytes are.
  static Result<std::unique_ptr<PcapReader>> open(const std::string& path);
  ~PcapReader();

  int linktype() const { return linktype_; }
  int snaplen() const { return snaplen_; }
  bool nanosecond() const { return nano_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t packets() const { return packets_; }
  // Byte offset in the file where the next record starts.
  uint64_t offset() const;

  // Next packet: true, or false at the end of the file. Damage (a truncated record, a corrupt length,
  // a bad block) gives an error "<path>: offset N: <what>" after every good packet before it.
  Result<bool> next(PacketView& out);

 private:
  PcapReader() = default;
  void* pcap_ = nullptr;  // pcap_t*
  std::string path_;
  int linktype_ = 0, snaplen_ = 0;
  bool nano_ = false;
  uint64_t file_size_ = 0, packets_ = 0;
};

class PcapWriter {
 public:
  // Writes a pcap file (microsecond or nanosecond magic) for `linktype`.
  static Result<std::unique_ptr<PcapWriter>> open(const std::string& path, int linktype, int snaplen,
                                                  bool nanosecond = false);
  ~PcapWriter();
  Status write(const PacketView& pkt);
  Status flush();
  uint64_t packets() const { return packets_; }
  const std::string& path() const { return path_; }

 private:
  PcapWriter() = default;
  void* pcap_ = nullptr;    // pcap_t* (dead)
  void* dumper_ = nullptr;  // pcap_dumper_t*
  std::string path_;
  bool nano_ = false;
  uint64_t packets_ = 0;
};

// ---- interfaces: where forwarded / redirected / transmitted packets go ---------------------------

class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual Status send(const PacketView& pkt) = 0;
  virtual std::string describe() const = 0;
  uint64_t sent = 0;
};

// A capture file as a sink.
std::shared_ptr<PacketSink> make_file_sink(std::unique_ptr<PcapWriter> writer);
// A live network device (AF_PACKET SOCK_RAW bound to it; send() transmits the frame).
Result<std::shared_ptr<PacketSink>> make_device_sink(const std::string& ifname);

// bpfvm's interface table: ifindex -> sink. Keys of bpf_redirect and values of devmap entries are
// these ifindexes.
class Interfaces {
 public:
  void add(uint32_t ifindex, std::string name, std::shared_ptr<PacketSink> sink);
  PacketSink* find(uint32_t ifindex) const;
  std::string name_of(uint32_t ifindex) const;
  struct Entry {
    uint32_t ifindex;
    std::string name;
    std::shared_ptr<PacketSink> sink;
  };
  const std::vector<Entry>& all() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

// ---- the hook ------------------------------------------------------------------------------------

enum class PacketAction : uint8_t { Pass, Drop, Tx, Redirect, Aborted, Error };
const char* packet_action_name(PacketAction a);

struct HookOptions {
  // How the program is prepared (runtime.hpp): by default verified and run in the JIT; `verify =
  // false` runs it unverified (explicit request; the interpreter then checks every access).
  PrepareOptions prepare;
  uint32_t ingress_ifindex = 1;  // xdp_md.ingress_ifindex / __sk_buff.ifindex seen by the program
};

struct PacketResult {
  PacketAction action = PacketAction::Pass;
  uint64_t retval = 0;
  PacketView out;           // the packet after the program (modified, truncated...) - valid until next process()
  uint32_t target = 0;      // redirect: the target ifindex (after devmap lookup)
  PacketSink* sink = nullptr;  // redirect: the interface's sink, nullptr when there is none
  std::string error;        // action Error: the engine's message
};

struct HookCounters {
  uint64_t packets = 0, bytes = 0;
  std::array<uint64_t, 6> actions{};        // by PacketAction
  std::map<int64_t, uint64_t> verdicts;     // raw return values (xdp/tc: by value; socket: 0 / kept)
  uint64_t truncated = 0;                   // socket filters: packets cut to the returned length
  uint64_t redirect_no_target = 0;          // redirects to an ifindex bpfvm has no interface for
  uint64_t budget_exhausted = 0;            // runs stopped by the instruction budget (action Error)
};

class PacketHook {
 public:
  // A program for the xdp, socket_filter, sched_cls or sched_act type, already linked (map addresses
  // resolved: LoadedObject::program). Context accesses are rewritten here.
  static Result<std::unique_ptr<PacketHook>> create(const ProgTypeInfo& type, Program program,
                                                    const HookOptions& options);
  // Loads `section_or_name` (or the only packet program) of an object: instantiates its maps. `type`
  // overrides the type the section name gives (xdp, socket, tc).
  // `section_or_name` empty: the first program whose section type is `type` (or the only program).
  static Result<std::unique_ptr<PacketHook>> from_object(const Object& object, std::string_view section_or_name,
                                                         const HookOptions& options, std::string_view type = "");
  // Is this a type the packet hook runs (xdp, socket_filter, sched_cls, sched_act)?
  static bool supports(uint32_t prog_type);
  ~PacketHook();

  const ProgTypeInfo& type() const { return *type_; }
  const Executable& executable() const { return *exe_; }
  // The instantiated object (maps) when created by from_object.
  const LoadedObject* loaded() const { return loaded_.get(); }
  const Object* object() const { return object_.get(); }
  const std::string& program_name() const { return name_; }

  void set_interfaces(std::shared_ptr<Interfaces> ifs) { ifs_ = std::move(ifs); }
  Interfaces* interfaces() const { return ifs_.get(); }

  // Runs the program on one packet and classifies the result. Not thread-safe (one packet buffer).
  PacketResult process(const PacketView& in);

  const HookCounters& counters() const;
  // Name of a raw verdict for this type ("XDP_PASS", "TC_ACT_SHOT", "keep 64", "drop").
  std::string verdict_name(int64_t v) const;

 private:
  PacketHook() = default;
  void init();
  const ProgTypeInfo* type_ = nullptr;
  std::unique_ptr<Executable> exe_;
  std::shared_ptr<const Object> object_;
  std::shared_ptr<LoadedObject> loaded_;
  std::vector<MemRegion> data_regions_;
  std::shared_ptr<Interfaces> ifs_;
  std::string name_;
  HookOptions options_;
  std::vector<uint8_t> buf_;  // XDP frames
  SkbBuffer skb_buf_;         // socket-buffer packets
  std::vector<uint64_t> ctx_storage_;
  RunArgs args_;
  size_t fixed_regions_ = 0;
  mutable HookCounters counters_;
  // Verdicts 0..15 counted here per packet (no map lookup); folded into counters_ when read.
  mutable std::array<uint64_t, 16> small_verdicts_{};
  void count_verdict(int64_t v) {
    if (v >= 0 && v < 16) ++small_verdicts_[static_cast<size_t>(v)];
    else ++counters_.verdicts[v];
  }
};

// ---- live capture --------------------------------------------------------------------------------

// An AF_PACKET socket with a TPACKET_V3 receive ring on one interface (all protocols). Needs
// CAP_NET_RAW.
class LiveCapture {
 public:
  struct Options {
    uint32_t block_size = 1 << 20;  // bytes per ring block
    uint32_t blocks = 8;
    uint32_t block_timeout_ms = 50;  // a partly filled block is handed over after this long
    bool promiscuous = true;
    bool ignore_outgoing = true;  // PACKET_IGNORE_OUTGOING: do not see what bpfvm itself sends
  };
  static Result<std::unique_ptr<LiveCapture>> open(const std::string& ifname, const Options& options);
  static Result<std::unique_ptr<LiveCapture>> open(const std::string& ifname) { return open(ifname, Options{}); }
  ~LiveCapture();

  // Waits up to timeout_ms for packets and calls `fn` for each one in the ready blocks. Returns the
  // number of packets delivered (0 on timeout).
  Result<size_t> poll(int timeout_ms, const std::function<void(const PacketView&)>& fn);
  // Transmits a frame on this interface (XDP_TX).
  Status send(const uint8_t* data, size_t len);
  uint32_t ifindex() const { return ifindex_; }
  const std::string& name() const { return name_; }
  // Kernel drop counters (PACKET_STATISTICS): packets the ring had no room for.
  uint64_t kernel_drops();

 private:
  LiveCapture() = default;
  int fd_ = -1;
  uint32_t ifindex_ = 0;
  std::string name_;
  uint8_t* ring_ = nullptr;
  size_t ring_size_ = 0;
  uint32_t block_size_ = 0, blocks_ = 0, current_ = 0;
  uint64_t drops_ = 0;
};

// Formats a map's contents for people: one line per entry "key: value" (hex bytes, or numbers for
// 4- and 8-byte keys and values), at most `max_entries` lines.
std::string format_map_contents(Map& map, size_t max_entries = 32);

}  // namespace bpfvm
