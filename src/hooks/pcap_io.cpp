// Capture files through libpcap: reading (pcap and pcapng, any link type) with damage reported at its
// byte offset, writing pcap files, and capture files as bpfvm interfaces.
#include <pcap/pcap.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "bpfvm/packet.hpp"

namespace bpfvm {

namespace {

Diagnostic io_error(const std::string& msg) { return make_error(ErrorCode::Io, msg); }

std::string hex4(const uint8_t* b, size_t n) {
  std::string s;
  char t[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(t, sizeof t, "%02x", b[i]);
    s += t;
  }
  return s;
}

}  // namespace

Result<std::unique_ptr<PcapReader>> PcapReader::open(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return io_error("cannot read " + path + ": " + std::strerror(errno));
  struct stat st {};
  fstat(fileno(f), &st);
  uint8_t magic[4] = {};
  size_t got = std::fread(magic, 1, 4, f);
  std::rewind(f);
  uint32_t m = static_cast<uint32_t>(magic[0]) | magic[1] << 8 | magic[2] << 16 | static_cast<uint32_t>(magic[3]) << 24;
  bool nano = m == 0xa1b23c4d || m == 0x4d3cb2a1;
  char err[PCAP_ERRBUF_SIZE] = {};
  // libpcap takes the FILE* and closes it.
  pcap_t* p = pcap_fopen_offline_with_tstamp_precision(f, nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO, err);
  if (!p) {
    std::fclose(f);
    std::string what = err;
    if (got < 4) return io_error(path + ": offset 0: file too short for a capture header (" + std::to_string(st.st_size) + " bytes)");
    return io_error(path + ": offset 0: not a pcap or pcapng file (" + what + "; first bytes " + hex4(magic, got) + ")");
  }
  std::unique_ptr<PcapReader> r(new PcapReader());
  r->pcap_ = p;
  r->path_ = path;
  r->linktype_ = pcap_datalink(p);
  r->snaplen_ = pcap_snapshot(p);
  r->nano_ = nano;
  r->file_size_ = static_cast<uint64_t>(st.st_size);
  return r;
}

PcapReader::~PcapReader() {
  if (pcap_) pcap_close(static_cast<pcap_t*>(pcap_));
}

uint64_t PcapReader::offset() const {
  FILE* f = pcap_file(static_cast<pcap_t*>(pcap_));
  if (!f) return 0;
  long o = std::ftell(f);
  return o < 0 ? 0 : static_cast<uint64_t>(o);
}

Result<bool> PcapReader::next(PacketView& out) {
  pcap_t* p = static_cast<pcap_t*>(pcap_);
  uint64_t at = offset();
  pcap_pkthdr* h = nullptr;
  const u_char* d = nullptr;
  int rc = pcap_next_ex(p, &h, &d);
  if (rc == 1) {
    out.ts_sec = h->ts.tv_sec;
    out.ts_nsec = static_cast<uint32_t>(nano_ ? h->ts.tv_usec : h->ts.tv_usec * 1000);
    out.caplen = h->caplen;
    out.wirelen = h->len;
    out.data = d;
    out.ifindex = 0;
    ++packets_;
    return true;
  }
  if (rc == PCAP_ERROR_BREAK) return false;  // end of file
  std::string msg = pcap_geterr(p);
  return io_error(path_ + ": offset " + std::to_string(at) + ": damaged record after packet " +
                  std::to_string(packets_) + " (" + msg + ")");
}

Result<std::unique_ptr<PcapWriter>> PcapWriter::open(const std::string& path, int linktype, int snaplen, bool nanosecond) {
  pcap_t* p = pcap_open_dead_with_tstamp_precision(linktype, snaplen,
                                                   nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  if (!p) return io_error("cannot create a capture for link type " + std::to_string(linktype));
  pcap_dumper_t* d = pcap_dump_open(p, path.c_str());
  if (!d) {
    std::string msg = pcap_geterr(p);
    pcap_close(p);
    return io_error("cannot write " + path + ": " + msg);
  }
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->pcap_ = p;
  w->dumper_ = d;
  w->path_ = path;
  w->nano_ = nanosecond;
  return w;
}

PcapWriter::~PcapWriter() {
  if (dumper_) pcap_dump_close(static_cast<pcap_dumper_t*>(dumper_));
  if (pcap_) pcap_close(static_cast<pcap_t*>(pcap_));
}

Status PcapWriter::write(const PacketView& pkt) {
  pcap_pkthdr h{};
  h.ts.tv_sec = pkt.ts_sec;
  h.ts.tv_usec = nano_ ? pkt.ts_nsec : pkt.ts_nsec / 1000;
  h.caplen = pkt.caplen;
  h.len = pkt.wirelen < pkt.caplen ? pkt.caplen : pkt.wirelen;
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &h, pkt.data);
  ++packets_;
  return {};
}

Status PcapWriter::flush() {
  if (pcap_dump_flush(static_cast<pcap_dumper_t*>(dumper_)) != 0)
    return io_error("cannot write " + path_ + ": " + std::strerror(errno));
  return {};
}

namespace {
class FileSink : public PacketSink {
 public:
  explicit FileSink(std::unique_ptr<PcapWriter> w) : w_(std::move(w)) {}
  Status send(const PacketView& pkt) override {
    ++sent;
    return w_->write(pkt);
  }
  std::string describe() const override { return w_->path(); }

 private:
  std::unique_ptr<PcapWriter> w_;
};
}  // namespace

std::shared_ptr<PacketSink> make_file_sink(std::unique_ptr<PcapWriter> writer) {
  return std::make_shared<FileSink>(std::move(writer));
}

void Interfaces::add(uint32_t ifindex, std::string name, std::shared_ptr<PacketSink> sink) {
  for (auto& e : entries_)
    if (e.ifindex == ifindex) {
      e.name = std::move(name);
      e.sink = std::move(sink);
      return;
    }
  entries_.push_back(Entry{ifindex, std::move(name), std::move(sink)});
}

PacketSink* Interfaces::find(uint32_t ifindex) const {
  for (const auto& e : entries_)
    if (e.ifindex == ifindex) return e.sink.get();
  return nullptr;
}

std::string Interfaces::name_of(uint32_t ifindex) const {
  for (const auto& e : entries_)
    if (e.ifindex == ifindex) return e.name;
  return "";
}

}  // namespace bpfvm
