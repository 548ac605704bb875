// libFuzzer target: the capture-file reader (PcapReader, src/hooks/pcap_io.cpp) on any bytes, as pcap
// or pcapng. The bytes are written to a memfd that is opened by its /proc path, as the CLI opens a
// file. Checked: open and next() return packets, the end, or an error that names the file and a
// byte offset, never crash or hang; every packet byte is readable (AddressSanitizer sees a packet
// that claims more bytes than its buffer holds); the offset of the next record never goes back and
// stays within the file; packets() counts what was returned.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bpfvm/packet.hpp"

namespace {
int memfd() {
  static int fd = memfd_create("fuzz_pcap", 0);
  return fd;
}
[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_pcap: %s: %s\n", what, detail.c_str());
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bpfvm;
  int fd = memfd();
  if (fd < 0) fail("memfd_create", "failed");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) fail("write", "failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto r = PcapReader::open(path);
  if (!r) {
    const std::string& m = r.error().message;
    if (m.rfind(path + ": offset 0: ", 0) != 0) fail("open error without file and offset", m);
    return 0;
  }
  PcapReader& in = **r;
  if (in.file_size() != size) fail("file size", std::to_string(in.file_size()));
  uint64_t last = 0, count = 0, sum = 0;
  for (;;) {
    uint64_t at = in.offset();
    if (at < last || at > size) fail("offset out of order", std::to_string(at) + " after " + std::to_string(last));
    last = at;
    PacketView pkt;
    auto n = in.next(pkt);
    if (!n) {
      const std::string& m = n.error().message;
      if (m.rfind(path + ": offset ", 0) != 0 || m.find("after packet " + std::to_string(count)) == std::string::npos)
        fail("read error without file, offset and packet count", m);
      break;
    }
    if (!*n) break;
    ++count;
    if (in.packets() != count) fail("packet count", std::to_string(in.packets()));
    if (pkt.caplen > 0 && !pkt.data) fail("packet without data", std::to_string(pkt.caplen));
    for (uint32_t i = 0; i < pkt.caplen; ++i) sum += pkt.data[i];
    // A record cannot hold more bytes than the file has.
    if (pkt.caplen > size) fail("caplen beyond the file", std::to_string(pkt.caplen));
  }
  if (count > size) fail("more packets than bytes", std::to_string(count));
  static volatile uint64_t sink;
  sink = sum;  // the reads above must happen
  return 0;
}
