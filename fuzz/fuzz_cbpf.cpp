// libFuzzer target: classic BPF programs (raw struct sock_filter bytes, or the same bytes read as
// `tcpdump -dd` text) -> cbpf_check -> cbpf_translate -> run on a packet taken from the input, in the
// checked interpreter; when libpcap's own validator also accepts the program, bpfvm's result must
// equal libpcap's bpf_filter. Input layout: [1 byte packet length n][n packet bytes][program bytes].
#include <pcap/pcap.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "bpfvm/cbpf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bpfvm;
  if (size < 1) return 0;
  size_t n = data[0];
  if (1 + n > size) return 0;
  std::vector<uint8_t> pkt(data + 1, data + 1 + n);
  const uint8_t* p = data + 1 + n;
  size_t rest = size - 1 - n;
  // The text parser must never crash on any bytes.
  (void)parse_cbpf_text(std::string_view(reinterpret_cast<const char*>(p), rest));
  std::vector<CbpfInsn> prog(rest / sizeof(CbpfInsn));
  for (size_t i = 0; i < prog.size(); ++i) {
    const uint8_t* q = p + i * 8;
    prog[i] = CbpfInsn{static_cast<uint16_t>(q[0] | q[1] << 8), q[2], q[3],
                       static_cast<uint32_t>(q[4] | q[5] << 8 | q[6] << 16 | static_cast<uint32_t>(q[7]) << 24)};
  }
  if (prog.empty()) return 0;
  ExecOptions eo;
  eo.checked = true;
  eo.insn_budget = 100000;
  CbpfTranslateOptions t;
  t.net_offset = 14;
  auto f = PacketFilter::create(prog, eo, t);
  if (!f) {
    if (f.error().code == ErrorCode::Verify) {  // every translation must verify
      std::fprintf(stderr, "%s\n%s", f.error().to_string().c_str(), cbpf_disassemble(prog).c_str());
      std::abort();
    }
    return 0;
  }
  auto r = (*f)->run(pkt.data(), static_cast<uint32_t>(pkt.size()), static_cast<uint32_t>(pkt.size()));
  if (!r) {
    std::fprintf(stderr, "translated filter failed: %s\n", r.error().to_string().c_str());
    std::abort();  // a translated filter can never fault or loop
  }
  // The JIT's native batch loop (match_batch) over the packet and its prefixes must give, item by
  // item, what the checked interpreter gives for each (a mismatch is a JIT or batch-loop bug).
  ExecOptions jo;
  jo.engine = EngineKind::Jit;
  if (auto jf = PacketFilter::create(prog, jo, t)) {
    std::vector<BatchItem> items;
    for (size_t len : {pkt.size(), pkt.size() / 2, size_t{0}, pkt.size()})
      items.push_back(BatchItem{pkt.data(), static_cast<uint32_t>(len), static_cast<uint32_t>(len + 1)});
    std::vector<uint32_t> verdicts(items.size());
    (*jf)->match_batch(items, verdicts.data());
    for (size_t i = 0; i < items.size(); ++i) {
      auto one = (*f)->run(items[i].packet, items[i].packet_len, items[i].value);
      if (!one || *one != verdicts[i]) {
        std::fprintf(stderr, "batch item %zu: JIT batch %u, interpreter %u\n%s", i, verdicts[i], one ? *one : 0u,
                     cbpf_disassemble(prog).c_str());
        std::abort();
      }
    }
  }
  // libpcap's interpreter: only for programs its validator accepts and without instructions it
  // does not implement (ret x, ancillary loads) and that do not read scratch memory.
  bool pcap_knows = true;
  for (const auto& in : prog) {
    if (in.code == 0x0e || in.code > 0xff) pcap_knows = false;
    // libpcap's bpf_filter leaves M[] uninitialised (bpfvm, like the kernel, starts it at 0).
    if ((in.code & 0x07) <= 0x01 && (in.code & 0xe0) == 0x60) pcap_knows = false;
    if ((in.code & 0x07) <= 0x01 && (in.code & 0xe0) == 0x20 && static_cast<int32_t>(in.k) < 0) pcap_knows = false;
    if ((in.code & 0x07) <= 0x01 && (in.code & 0xe0) == 0x40) pcap_knows = false;  // LD_IND with SKF offsets
  }
  if (pcap_knows && bpf_validate(reinterpret_cast<const bpf_insn*>(prog.data()), static_cast<int>(prog.size()))) {
    u_int want = bpf_filter(reinterpret_cast<const bpf_insn*>(prog.data()), pkt.data(),
                            static_cast<u_int>(pkt.size()), static_cast<u_int>(pkt.size()));
    if (want != *r) {
      std::fprintf(stderr, "mismatch: libpcap %u, bpfvm %u\n%s", want, *r, cbpf_disassemble(prog).c_str());
      std::abort();
    }
  }
  return 0;
}
