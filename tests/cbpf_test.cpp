// Classic BPF: checks, text parsing, and the translation to eBPF compared with libpcap's own
// interpreter (bpf_filter via pcap_offline_filter) on every packet of the shared captures, for every
// expression below, through the unchecked and checked interpreter and the JIT.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bpfvm/cbpf.hpp"
#include "test_util.hpp"

namespace bpfvm {
namespace {

struct Capture {
  std::string name;
  int linktype = 0;
  int snaplen = 0;
  std::vector<pcap_pkthdr> hdrs;
  std::vector<std::vector<uint8_t>> data;
};

// Reads the packets libpcap can read (up to damage).
Capture read_capture(const std::filesystem::path& path) {
  Capture c;
  c.name = path.filename().string();
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) return c;
  c.linktype = pcap_datalink(p);
  c.snaplen = pcap_snapshot(p);
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(p, &h, &d) == 1) {
    c.hdrs.push_back(*h);
    c.data.emplace_back(d, d + h->caplen);
  }
  pcap_close(p);
  return c;
}

const std::vector<Capture>& captures() {
  static std::vector<Capture> all = [] {
    std::vector<Capture> v;
    auto dir = test::shared_dir() / "pcaps";
    if (!std::filesystem::exists(dir)) return v;
    std::vector<std::filesystem::path> files;
    for (auto& e : std::filesystem::directory_iterator(dir)) {
      auto ext = e.path().extension();
      if (ext == ".pcap" || ext == ".pcapng") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      Capture c = read_capture(f);
      if (!c.hdrs.empty()) v.push_back(std::move(c));
    }
    return v;
  }();
  return all;
}

// Expressions: hosts, nets, ports, protocols, vlan, ip6, tcp flags, byte offsets, length...
const std::vector<std::string> kExpressions = {
    "ip",
    "ip6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "tcp port 80",
    "tcp port 10050",
    "udp port 53",
    "port 53",
    "src port 80",
    "dst port 80 or dst port 443",
    "portrange 1000-2000",
    "tcp dst portrange 1-1023",
    "host 192.168.43.9",
    "src host 10.64.88.105",
    "dst host 10.151.119.2",
    "host 145.254.160.237 and host 65.208.228.223",
    "net 10.0.0.0/8",
    "src net 192.168.0.0/16",
    "dst net 172.16.0.0/12",
    "not net 10.0.0.0/8",
    "ether host 00:0b:82:01:fc:42",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x86dd",
    "ether[0] & 1 != 0",
    "broadcast",
    "vlan",
    "vlan and ip",
    "vlan 100",
    "ip6 and tcp",
    "ip6 host 2a00:1450:4009:810::200e",
    "ip6 net 2001:630::/32",
    "ip6 and udp port 53",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0 or tcp[tcpflags] & tcp-rst != 0",
    "tcp[tcpflags] & tcp-push != 0",
    "tcp[13] & 0x40 != 0",
    "tcp[13] & 0xc0 != 0",
    "ip[1] & 0x3 = 3",
    "ip[8] < 5",
    "ip[6:2] & 0x1fff != 0",
    "ip[2:2] > 576",
    "tcp[0:2] > 1024 and tcp[2:2] < 1024",
    "udp[8:2] = 0x0001",
    "icmp[icmptype] = icmp-echo or icmp[icmptype] = icmp-echoreply",
    "icmp[icmptype] = icmp-timxceed",
    "greater 1000",
    "less 64",
    "len > 100 and len < 1400",
    "len = 60",
    "ip proto 17",
    "ip proto \\tcp",
    "ip multicast",
    "ip broadcast",
    "tcp and (tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420)",
    "tcp port 80 and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",
    "ip[0] & 0xf != 5",
    "udp and ip[6:2] & 0x3fff = 0",
    "pppoes",
    "pppoes and ip",
    "tcp src port 3372 or udp dst port 5000",
    "not tcp and not udp",
    "ip and not icmp and len <= 128",
    "ip6 proto 6",
    "ip6[6] = 17 or ip6[6] = 6",
    "ip[9] = 17 and ip[6:2] & 0x1fff = 0",
    "tcp[tcpflags] = tcp-ack",
    "ip[1] != 0",
    "ether src 00:00:00:00:00:00 or ether dst ff:ff:ff:ff:ff:ff",
    "(tcp or udp) and len % 7 = 3",
    "ip[2:2] / 4 > 100",
    "ip[2:2] * 3 - 100 > 1000",
    "ip[8] ^ 0x40 = 0",
    "ip[8] | 1 = 65",
    "ip[8] << 2 > 200",
    "ip[2:2] >> 4 > 20",
    "tcp[4:4] - tcp[8:4] > 0",
    "ip[2:2] % ip[8] = 0",
    "ip[2:2] / (ip[1] & 0) = 0",
};

TEST(Cbpf, ExpressionListIsLargeEnough) { EXPECT_GE(kExpressions.size(), 50u); }

TEST(Cbpf, TranslationMatchesLibpcapOnEveryPacket) {
  const auto& caps = captures();
  if (caps.empty()) GTEST_SKIP() << "no shared captures (../shared/pcaps)";
  size_t compared = 0, matched_total = 0, expressions_run = 0;
  size_t batches = 0, native_batches = 0;
  std::map<std::string, size_t> compiled_on;
  for (const auto& expr : kExpressions) {
    for (const auto& cap : caps) {
      auto prog = compile_pcap_expression(expr, cap.linktype, cap.snaplen);
      if (!prog) continue;  // e.g. "ether host" on a raw IP capture
      ++compiled_on[expr];
      struct bpf_program fp;
      fp.bf_len = static_cast<u_int>(prog->size());
      fp.bf_insns = reinterpret_cast<struct bpf_insn*>(prog->data());
      CbpfTranslateOptions t;
      t.net_offset = link_net_offset(cap.linktype);
      std::vector<std::pair<std::string, ExecOptions>> engines;
      ExecOptions unchecked;
      ExecOptions checked;
      checked.checked = true;
      ExecOptions jit;
      jit.engine = EngineKind::Jit;
      engines = {{"interp", unchecked}, {"checked", checked}, {"jit", jit}};
      for (auto& [ename, eo] : engines) {
        auto f = PacketFilter::create(*prog, eo, t);
        ASSERT_TRUE(f) << expr << " (" << ename << "): " << f.error().to_string();
        size_t matches = 0;
        for (size_t i = 0; i < cap.hdrs.size(); ++i) {
          int want = pcap_offline_filter(&fp, &cap.hdrs[i], cap.data[i].data());
          auto got = (*f)->run(cap.data[i].data(), cap.hdrs[i].caplen, cap.hdrs[i].len);
          ASSERT_TRUE(got) << expr << " on " << cap.name << " packet " << i << " (" << ename
                           << "): " << got.error().to_string();
          ASSERT_EQ(static_cast<uint32_t>(want), *got)
              << "'" << expr << "' on " << cap.name << " packet " << i + 1 << " (" << ename << ")\n"
              << cbpf_disassemble(*prog);
          matches += want != 0;
          ++compared;
        }
        if (ename == "interp") matched_total += matches;
        if (ename == "jit") {
          // The same capture through the native batch loop (match_batch), item by item against libpcap.
          std::vector<BatchItem> items;
          for (size_t i = 0; i < cap.hdrs.size(); ++i)
            items.push_back(BatchItem{cap.data[i].data(), cap.hdrs[i].caplen, cap.hdrs[i].len});
          std::vector<uint32_t> verdicts(items.size(), 0xdeadbeef);
          size_t m = (*f)->match_batch(items, verdicts.data());
          EXPECT_EQ(m, matches) << expr << " on " << cap.name;
          for (size_t i = 0; i < cap.hdrs.size(); ++i)
            ASSERT_EQ(verdicts[i], static_cast<uint32_t>(pcap_offline_filter(&fp, &cap.hdrs[i], cap.data[i].data())))
                << "'" << expr << "' on " << cap.name << " packet " << i + 1 << " (jit batch)";
          batches += 1;
          native_batches += (*f)->has_native_batch();
        }
      }
    }
    if (compiled_on[expr]) ++expressions_run;
  }
  EXPECT_GE(expressions_run, 50u);
  EXPECT_GT(matched_total, 0u);
  // Filters that read skb metadata (vlan, ancillary loads) have no native batch loop; all others do.
  EXPECT_GT(native_batches, batches * 3 / 4) << native_batches << " of " << batches;
  std::printf("batch: %zu of %zu filter runs had a native loop\n", native_batches, batches);
  RecordProperty("packet_verdicts_compared", static_cast<int>(compared));
}

// A few expressions that select known packet counts (the count is tcpdump's).
TEST(Cbpf, KnownCountsOnRealCapture) {
  auto path = test::shared_dir() / "pcaps" / "real.pcap";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no real.pcap";
  Capture c = read_capture(path);
  ASSERT_EQ(c.hdrs.size(), 62781u);
  auto f = PacketFilter::from_expression("tcp port 10050", c.linktype, c.snaplen, ExecOptions{});
  ASSERT_TRUE(f) << f.error().to_string();
  size_t n = 0;
  for (size_t i = 0; i < c.hdrs.size(); ++i) n += (*f)->match(c.data[i].data(), c.hdrs[i].caplen, c.hdrs[i].len) != 0;
  EXPECT_EQ(n, 56094u);
  // The JIT (entered directly) and match_many give the same verdicts, packet by packet.
  ExecOptions jit;
  jit.engine = EngineKind::Jit;
  auto j = PacketFilter::from_expression("tcp port 10050", c.linktype, c.snaplen, jit);
  ASSERT_TRUE(j) << j.error().to_string();
  std::vector<const uint8_t*> frames;
  std::vector<uint32_t> caplens, wirelens, verdicts(c.hdrs.size(), 7);
  for (size_t i = 0; i < c.hdrs.size(); ++i) {
    frames.push_back(c.data[i].data());
    caplens.push_back(c.hdrs[i].caplen);
    wirelens.push_back(c.hdrs[i].len);
  }
  EXPECT_EQ((*j)->match_many(frames.data(), caplens.data(), wirelens.data(), frames.size(), verdicts.data()), 56094u);
  for (size_t i = 0; i < c.hdrs.size(); ++i) {
    uint32_t want = (*f)->match(frames[i], caplens[i], wirelens[i]);
    ASSERT_EQ(verdicts[i], want) << "packet " << i;
    ASSERT_EQ((*j)->match(frames[i], caplens[i], wirelens[i]), want) << "packet " << i;
  }
}

TEST(Cbpf, BadExpressionGivesLibpcapMessage) {
  auto r = compile_pcap_expression("tcp port", 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("syntax error"), std::string::npos) << r.error().message;
  auto r2 = compile_pcap_expression("host nosuchhost.invalid.", 1);
  ASSERT_FALSE(r2);
  EXPECT_FALSE(r2.error().message.empty());
}

TEST(Cbpf, CheckRejectsMalformedPrograms) {
  auto msg = [](std::vector<CbpfInsn> p) {
    auto s = cbpf_check(p);
    return s ? std::string("ok") : s.error().message;
  };
  EXPECT_EQ(msg({}), "cbpf: empty program");
  EXPECT_EQ(msg({{0x06, 0, 0, 0}}), "ok");
  EXPECT_EQ(msg({{0xff, 0, 0, 0}, {0x06, 0, 0, 0}}), "cbpf insn 0: unknown opcode 0xff");
  EXPECT_EQ(msg({{0x0600, 0, 0, 0}, {0x06, 0, 0, 0}}), "cbpf insn 0: unknown opcode 0x600");
  EXPECT_EQ(msg({{0x15, 0, 3, 1}, {0x06, 0, 0, 0}}),
            "cbpf insn 0: jump out of range (target 4, program has 2 instructions)");
  EXPECT_EQ(msg({{0x05, 0, 0, 1}, {0x06, 0, 0, 0}}),
            "cbpf insn 0: jump out of range (ja +1, program has 2 instructions)");
  EXPECT_EQ(msg({{0x60, 0, 0, 16}, {0x06, 0, 0, 0}}), "cbpf insn 0: scratch memory index 16 out of range (M[0..15])");
  EXPECT_EQ(msg({{0x02, 0, 0, 20}, {0x06, 0, 0, 0}}), "cbpf insn 0: scratch memory index 20 out of range (M[0..15])");
  EXPECT_EQ(msg({{0x34, 0, 0, 0}, {0x06, 0, 0, 0}}), "cbpf insn 0: division by constant 0");
  EXPECT_EQ(msg({{0x00, 0, 0, 1}}), "cbpf insn 0: last instruction is not a return");
  std::vector<CbpfInsn> big(4097, CbpfInsn{0x06, 0, 0, 0});
  EXPECT_EQ(msg(big), "cbpf: 4097 instructions (at most 4096)");
}

// Runs a classic program on `pkt` through every engine; all must agree, the value is returned.
uint32_t run_all(const std::vector<CbpfInsn>& prog, std::vector<uint8_t> pkt, uint32_t wirelen = 0,
                 bool libpcap_knows = true) {
  if (!wirelen) wirelen = static_cast<uint32_t>(pkt.size());
  uint32_t result = 0;
  bool first = true;
  ExecOptions c;
  c.checked = true;
  ExecOptions j;
  j.engine = EngineKind::Jit;
  for (ExecOptions eo : {ExecOptions{}, c, j}) {
    auto f = PacketFilter::create(prog, eo);
    EXPECT_TRUE(f) << f.error().to_string();
    if (!f) return 0;
    auto r = (*f)->run(pkt.data(), static_cast<uint32_t>(pkt.size()), wirelen);
    EXPECT_TRUE(r) << r.error().to_string();
    if (!r) return 0;
    if (first) result = *r;
    EXPECT_EQ(result, *r) << "engines disagree";
    first = false;
    if (eo.engine == EngineKind::Jit) {
      // The batch loop: the packet among others (none, a truncated copy, a different wire length),
      // each verdict as a single run gives it; the loop's state does not leak from one item to the next.
      std::vector<BatchItem> items = {{pkt.data(), static_cast<uint32_t>(pkt.size()), wirelen},
                                      {nullptr, 0, 0},
                                      {pkt.data(), static_cast<uint32_t>(std::min<size_t>(pkt.size(), 3)), 3},
                                      {pkt.data(), static_cast<uint32_t>(pkt.size()), wirelen + 1},
                                      {pkt.data(), static_cast<uint32_t>(pkt.size()), wirelen}};
      std::vector<uint32_t> verdicts(items.size(), 0xdeadbeef);
      size_t matches = (*f)->match_batch(items, verdicts.data());
      size_t want_matches = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        auto one = (*f)->run(items[i].packet, items[i].packet_len, items[i].value);
        EXPECT_TRUE(one);
        if (!one) return 0;
        EXPECT_EQ(verdicts[i], *one) << "batch item " << i;
        want_matches += *one != 0;
      }
      EXPECT_EQ(matches, want_matches);
      EXPECT_EQ(verdicts[0], result);
    }
  }
  // And libpcap's interpreter (which aborts on `ret x`, a kernel-only instruction).
  if (libpcap_knows)
    EXPECT_EQ(result, bpf_filter(reinterpret_cast<const bpf_insn*>(prog.data()), pkt.data(), wirelen,
                               static_cast<u_int>(pkt.size())));
  return result;
}

// Dead code, in the classic program or produced by the translation (a load that is always out of
// bounds becomes an unconditional `return 0`), is dropped so that the translation verifies (found by
// fuzz_cbpf once PacketFilter verified its translations).
TEST(Cbpf, DeadCodeIsDroppedSoTranslationsVerify) {
  std::vector<uint8_t> pkt(64, 0xab);
  const std::vector<std::vector<CbpfInsn>> progs = {
      {{0x20, 0, 0, static_cast<uint32_t>(-2147478497)}, {0x06, 0, 0, 4278190176u}},   // ld [huge negative]
      {{0x05, 0, 0, 1}, {0x06, 0, 0, 1}, {0x06, 0, 0, 2}},                               // ja over a ret
      {{0x28, 0, 0, 12}, {0x15, 0, 2, 0xabab}, {0x20, 0, 0, static_cast<uint32_t>(-2147478497)},
       {0x06, 0, 0, 7}, {0x06, 0, 0, 9}},
  };
  const uint32_t want[] = {0, 2, 0};
  for (size_t i = 0; i < progs.size(); ++i) {
    for (bool jit : {false, true}) {
      ExecOptions eo;
      if (jit) eo.engine = EngineKind::Jit;
      auto f = PacketFilter::create(progs[i], eo);
      ASSERT_TRUE(f) << i << ": " << f.error().to_string();
      EXPECT_EQ((*f)->match(pkt.data(), 64, 64), want[i]) << "program " << i << (jit ? " jit" : " interp");
    }
  }
}

TEST(Cbpf, SemanticsOfEdgeCases) {
  std::vector<uint8_t> pkt = {1, 2, 3, 4, 5, 6, 7, 8};
  // ld [6] reads past the end: the filter returns 0.
  EXPECT_EQ(run_all({{0x20, 0, 0, 6}, {0x16, 0, 0, 0}}, pkt), 0u);
  // ld [4] = 0x05060708; ret a
  EXPECT_EQ(run_all({{0x20, 0, 0, 4}, {0x16, 0, 0, 0}}, pkt), 0x05060708u);
  // division by X = 0 returns 0 (classic rule), not A / 0 = 0 followed by the rest
  EXPECT_EQ(run_all({{0x00, 0, 0, 7}, {0x3c, 0, 0, 0}, {0x06, 0, 0, 99}}, pkt), 0u);
  // mod by X = 3
  EXPECT_EQ(run_all({{0x00, 0, 0, 7}, {0x01, 0, 0, 3}, {0x9c, 0, 0, 0}, {0x16, 0, 0, 0}}, pkt), 1u);
  // ldx 4*([0]&0xf) = 4; ld [x+0] (4 bytes from 4)
  EXPECT_EQ(run_all({{0xb1, 0, 0, 0}, {0x40, 0, 0, 0}, {0x16, 0, 0, 0}}, pkt), 0x05060708u);
  // ldxb msh keeps A: ld #9; ldx msh [0]; add x; ret a = 9 + 4
  EXPECT_EQ(run_all({{0x00, 0, 0, 9}, {0xb1, 0, 0, 0}, {0x0c, 0, 0, 0}, {0x16, 0, 0, 0}}, pkt), 13u);
  // X huge + k wraps in 32 bits: classic BPF refuses (no packet that long)
  EXPECT_EQ(run_all({{0x01, 0, 0, 0xfffffffe}, {0x50, 0, 0, 3}, {0x16, 0, 0, 0}}, pkt), 0u);
  // len is the wire length
  EXPECT_EQ(run_all({{0x80, 0, 0, 0}, {0x16, 0, 0, 0}}, pkt, 1500), 1500u);
  // scratch memory: st M[3]; ldx M[3]; txa; ret a; read of an unwritten slot is 0
  EXPECT_EQ(run_all({{0x00, 0, 0, 42}, {0x02, 0, 0, 3}, {0x00, 0, 0, 0}, {0x61, 0, 0, 3}, {0x87, 0, 0, 0},
                     {0x16, 0, 0, 0}},
                    pkt),
            42u);
  // (libpcap's bpf_filter leaves its M[] uninitialised: its answer is whatever its stack held, so it
  // is not asked; the kernel's classic checker refuses such a read.)
  EXPECT_EQ(run_all({{0x60, 0, 0, 5}, {0x16, 0, 0, 0}}, pkt, 0, false), 0u);
  // jumps with large constants are unsigned 32-bit: 0xffffffff > 1
  EXPECT_EQ(run_all({{0x00, 0, 0, 0xffffffff}, {0x25, 0, 1, 1}, {0x06, 0, 0, 1}, {0x06, 0, 0, 2}}, pkt), 1u);
  // jset with jt = 0: (A & 4) != 0 falls through
  EXPECT_EQ(run_all({{0x00, 0, 0, 5}, {0x45, 0, 1, 4}, {0x06, 0, 0, 1}, {0x06, 0, 0, 2}}, pkt), 1u);
  EXPECT_EQ(run_all({{0x00, 0, 0, 3}, {0x45, 0, 1, 4}, {0x06, 0, 0, 1}, {0x06, 0, 0, 2}}, pkt), 2u);
  // jeq x, neg, ret x
  EXPECT_EQ(run_all({{0x00, 0, 0, 5}, {0x01, 0, 0, 5}, {0x1d, 0, 1, 0}, {0x84, 0, 0, 0}, {0x16, 0, 0, 0}}, pkt),
            static_cast<uint32_t>(-5));
  EXPECT_EQ(run_all({{0x01, 0, 0, 77}, {0x0e, 0, 0, 0}}, pkt, 0, false), 77u);
  // ja over an instruction
  EXPECT_EQ(run_all({{0x05, 0, 0, 1}, {0x06, 0, 0, 1}, {0x06, 0, 0, 2}}, pkt), 2u);
}

TEST(Cbpf, AncillaryLoads) {
  std::vector<uint8_t> eth(60, 0);
  eth[12] = 0x86;
  eth[13] = 0xdd;
  // ld proto (SKF_AD_OFF + 0): ntohs(skb->protocol)
  auto f = PacketFilter::create(std::vector<CbpfInsn>{{0x20, 0, 0, 0xfffff000}, {0x16, 0, 0, 0}}, ExecOptions{});
  ASSERT_TRUE(f) << f.error().to_string();
  auto r = (*f)->run(eth.data(), 60, 60);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0x86ddu);
  auto bad = PacketFilter::create(std::vector<CbpfInsn>{{0x20, 0, 0, 0xfffff000 + 12}, {0x16, 0, 0, 0}}, ExecOptions{});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "cbpf insn 0: ancillary load SKF_AD_NLATTR is not supported by bpfvm");
  // SKF_NET_OFF needs the link type's network offset
  std::vector<CbpfInsn> net = {{0x30, 0, 0, static_cast<uint32_t>(-0x100000 + 9)}, {0x16, 0, 0, 0}};
  auto nf = PacketFilter::create(net, ExecOptions{});
  ASSERT_FALSE(nf);
  CbpfTranslateOptions t;
  t.net_offset = 14;
  auto nf2 = PacketFilter::create(net, ExecOptions{}, t);
  ASSERT_TRUE(nf2);
  eth[14 + 9] = 17;
  EXPECT_EQ(*(*nf2)->run(eth.data(), 60, 60), 17u);
  // SKF_LL_OFF + 12 = byte 12 of the frame
  auto ll = PacketFilter::create(std::vector<CbpfInsn>{{0x28, 0, 0, static_cast<uint32_t>(-0x200000 + 12)}, {0x16, 0, 0, 0}},
                                 ExecOptions{});
  ASSERT_TRUE(ll);
  EXPECT_EQ(*(*ll)->run(eth.data(), 60, 60), 0x86ddu);
}

TEST(Cbpf, ParsesTcpdumpDdAndDddText) {
  auto dd = parse_cbpf_text(
      "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n{ 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, "
      "0x00000000 },\n");
  ASSERT_TRUE(dd) << dd.error().to_string();
  ASSERT_EQ(dd->size(), 4u);
  EXPECT_EQ((*dd)[1].code, 0x15);
  EXPECT_EQ((*dd)[1].jf, 1);
  EXPECT_EQ((*dd)[2].k, 0x40000u);
  auto ddd = parse_cbpf_text("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n");
  ASSERT_TRUE(ddd) << ddd.error().to_string();
  ASSERT_EQ(ddd->size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*dd)[i].code, (*ddd)[i].code);
    EXPECT_EQ((*dd)[i].k, (*ddd)[i].k);
  }
  auto bad = parse_cbpf_text("{ 0x28, 0, 0 },\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "line 1: expected 4 numbers (code, jt, jf, k), found 3");
  auto bad2 = parse_cbpf_text("3\n40 0 0 12\n");
  ASSERT_FALSE(bad2);
  EXPECT_EQ(bad2.error().message, "line 1: count 3 but 1 instructions follow");
  auto bad3 = parse_cbpf_text("{ 0x28, 0, 0, zz },\n");
  ASSERT_FALSE(bad3);
  EXPECT_EQ(bad3.error().message, "line 1: unexpected 'z' at column 15");
}

// libpcap's protochain loops with a backward jump, which classic BPF in the kernel (and bpfvm) refuse.
TEST(Cbpf, BackwardJumpIsRefused) {
  auto prog = compile_pcap_expression("ip6 protochain 6", 1);
  ASSERT_TRUE(prog);
  auto f = PacketFilter::create(*prog, ExecOptions{});
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message.find("backward jump"), std::string::npos) << f.error().message;
}

TEST(Cbpf, DisassemblyLooksLikeTcpdump) {
  auto prog = compile_pcap_expression("ip", 1);
  ASSERT_TRUE(prog);
  std::string d = cbpf_disassemble(*prog);
  EXPECT_NE(d.find("(000) ldh      [12]"), std::string::npos) << d;
  EXPECT_NE(d.find("jeq      #0x800"), std::string::npos) << d;
}

}  // namespace
}  // namespace bpfvm
