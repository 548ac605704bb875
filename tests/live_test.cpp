// Live traffic for real: in a child process with its own network namespace (nothing outside it is
// touched), two veth pairs pk0<->pk1 and pk2<->pk3. bpfvm captures pk1 with a TPACKET_V3 ring and runs
// tests/progs/pk_xdp.bpf.c's xdp_main on each frame: XDP_PASS goes out of pk2 (arrives on pk3),
// XDP_TX goes back out of pk1 (arrives on pk0), XDP_DROP is counted. Frames are injected on pk0.
// Skipped without CAP_NET_ADMIN / CAP_SYS_ADMIN (unshare) or without the `ip` tool. Takes < 3 s.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bpfvm/object.hpp"
#include "bpfvm/packet.hpp"

namespace bpfvm {
namespace {

constexpr int kEach = 10;
const char kMarker[] = "bpfvm-live-test";

std::vector<uint8_t> frame(uint8_t proto, uint16_t dport_or_icmp, int seq) {
  std::vector<uint8_t> f(14 + 20 + 8 + 24, 0);
  const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01}, src[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x08;
  f[13] = 0x00;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  uint16_t tot = static_cast<uint16_t>(f.size() - 14);
  ip[2] = tot >> 8;
  ip[3] = tot & 0xff;
  ip[8] = 64;
  ip[9] = proto;
  const uint8_t sa[4] = {192, 0, 2, 1}, da[4] = {192, 0, 2, 2};  // TEST-NET-1, never routed here
  std::memcpy(ip + 12, sa, 4);
  std::memcpy(ip + 16, da, 4);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += ip[i] << 8 | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = static_cast<uint8_t>(~sum >> 8);
  ip[11] = static_cast<uint8_t>(~sum);
  uint8_t* l4 = ip + 20;
  if (proto == 1) {
    l4[0] = 8;  // echo request
  } else {
    l4[0] = 0x30;
    l4[1] = 0x39;
    l4[2] = static_cast<uint8_t>(dport_or_icmp >> 8);
    l4[3] = static_cast<uint8_t>(dport_or_icmp);
    l4[5] = 8 + 24;
  }
  std::snprintf(reinterpret_cast<char*>(l4 + 8), 24, "%s-%02d", kMarker, seq);
  return f;
}

int raw_socket(const char* ifname) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) return -1;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname));
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Counts our frames arriving (not sent) on fd; `check` validates each.
int drain(int fd, const std::function<bool(const uint8_t*, size_t)>& check, std::string& bad) {
  int n = 0;
  uint8_t buf[2048];
  while (true) {
    sockaddr_ll from{};
    socklen_t fl = sizeof from;
    ssize_t len = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (len <= 0) break;
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    if (!memmem(buf, static_cast<size_t>(len), kMarker, sizeof kMarker - 1)) continue;
    if (check(buf, static_cast<size_t>(len))) ++n;
    else bad = "unexpected frame content";
  }
  return n;
}

// Runs in the child; returns "OK ...", "SKIP ..." or "FAIL ...".
std::string child_main() {
  if (unshare(CLONE_NEWNET) != 0) return std::string("SKIP unshare(CLONE_NEWNET): ") + std::strerror(errno);
  if (std::system("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 ;"
                  "ip link add pk0 type veth peer name pk1 && ip link add pk2 type veth peer name pk3 && "
                  "ip link set pk0 up && ip link set pk1 up && ip link set pk2 up && ip link set pk3 up") != 0)
    return "SKIP cannot create veth pairs (ip link add ... type veth)";
  auto obj = load_object_file(std::string(BPFVM_PROGS_DIR) + "/pk_xdp.bpf.o");
  if (!obj) return "FAIL " + obj.error().to_string();
  HookOptions ho;
  ho.prepare.rules = RuleSet::Privileged;  // the test's own program: trusted
  auto hook = PacketHook::from_object(*obj, "xdp_main", ho, "xdp");
  if (!hook) return "FAIL " + hook.error().to_string();
  LiveCapture::Options lo;
  lo.block_size = 1 << 16;
  lo.blocks = 4;
  lo.block_timeout_ms = 10;
  auto cap = LiveCapture::open("pk1", lo);
  if (!cap) return "SKIP " + cap.error().message;
  auto out = make_device_sink("pk2");
  if (!out) return "FAIL " + out.error().message;
  int inj = raw_socket("pk0"), rx3 = raw_socket("pk3");
  if (inj < 0 || rx3 < 0) return std::string("FAIL raw sockets: ") + std::strerror(errno);
  // Give the links a moment to come up (veth carrier).
  usleep(200000);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex("pk0"));
  to.sll_halen = 6;
  std::vector<std::vector<uint8_t>> udp_pass;
  for (int i = 0; i < kEach; ++i) {
    for (auto f : {frame(1, 0, i), frame(17, 53, i), frame(17, 9999, i)}) {
      if (f[23] == 17 && f[36] == 0x27) udp_pass.push_back(f);
      if (sendto(inj, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
        return std::string("FAIL inject: ") + std::strerror(errno);
    }
  }
  int replies = 0, passed = 0;
  std::string bad;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
    auto r = (*cap)->poll(50, [&](const PacketView& v) {
      auto res = (*hook)->process(v);
      if (res.action == PacketAction::Pass) (void)(*out)->send(res.out);
      if (res.action == PacketAction::Tx) (void)(*cap)->send(res.out.data, res.out.caplen);
    });
    if (!r) return "FAIL poll: " + r.error().message;
    replies += drain(inj, [](const uint8_t* b, size_t n) {
      // echo reply: MACs swapped, type 0
      const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x02};
      return n >= 42 && std::memcmp(b, dst, 6) == 0 && b[34] == 0;
    }, bad);
    passed += drain(rx3, [&](const uint8_t* b, size_t n) {
      for (auto& f : udp_pass)
        if (n >= f.size() && std::memcmp(b, f.data(), f.size()) == 0) return true;
      return false;
    }, bad);
    if (replies >= kEach && passed >= kEach && (*hook)->counters().actions[1] >= static_cast<uint64_t>(kEach)) break;
  }
  const auto& c = (*hook)->counters();
  std::string counts = "replies " + std::to_string(replies) + ", passed " + std::to_string(passed) + ", dropped " +
                       std::to_string(c.actions[static_cast<size_t>(PacketAction::Drop)]) + ", tx " +
                       std::to_string(c.actions[static_cast<size_t>(PacketAction::Tx)]) + ", hook packets " +
                       std::to_string(c.packets);
  if (!bad.empty()) return "FAIL " + bad + " (" + counts + ")";
  if (replies != kEach || passed != kEach || c.actions[static_cast<size_t>(PacketAction::Drop)] != kEach)
    return "FAIL " + counts;
  return "OK " + counts;
}

// The CLI's live mode in the same setup: `bpfvm xdp pk_xdp.bpf.o -i pk1 --out-if pk2 --duration 2`.
std::string child_cli() {
  if (unshare(CLONE_NEWNET) != 0) return std::string("SKIP unshare(CLONE_NEWNET): ") + std::strerror(errno);
  if (std::system("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 ;"
                  "ip link add pk0 type veth peer name pk1 && ip link add pk2 type veth peer name pk3 && "
                  "ip link set pk0 up && ip link set pk1 up && ip link set pk2 up && ip link set pk3 up") != 0)
    return "SKIP cannot create veth pairs (ip link add ... type veth)";
  std::string bpfvm = std::string(BPFVM_BINARY_DIR) + "/bpfvm";
  if (access(bpfvm.c_str(), X_OK) != 0) return "SKIP no bpfvm binary";
  std::string out = "/tmp/bpfvm_pk_live_cli_" + std::to_string(getpid()) + ".txt";
  std::string cmd = "'" + bpfvm + "' xdp '" + BPFVM_PROGS_DIR + "/pk_xdp.bpf.o' --section xdp_main -i pk1 --out-if pk2 "
                    "--duration 2.5 > " + out + " 2>&1 &";
  if (std::system(cmd.c_str()) != 0) return "FAIL cannot start " + cmd;
  usleep(1000000);  // the CLI opens its ring
  int inj = raw_socket("pk0"), rx3 = raw_socket("pk3");
  if (inj < 0 || rx3 < 0) return std::string("FAIL raw sockets: ") + std::strerror(errno);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex("pk0"));
  to.sll_halen = 6;
  for (int i = 0; i < kEach; ++i)
    for (auto f : {frame(1, 0, i), frame(17, 53, i), frame(17, 9999, i)})
      (void)sendto(inj, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  std::string bad;
  int replies = 0, passed = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(3500)) {
    replies += drain(inj, [](const uint8_t* b, size_t n) { return n >= 42 && b[34] == 0; }, bad);
    passed += drain(rx3, [](const uint8_t* b, size_t n) { return n >= 42 && b[36] == 0x27 && b[37] == 0x0f; }, bad);
    usleep(20000);
  }
  std::string text;
  if (FILE* f = std::fopen(out.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  std::remove(out.c_str());
  std::string counts = "replies " + std::to_string(replies) + ", passed " + std::to_string(passed);
  if (replies != kEach || passed != kEach) return "FAIL " + counts + "\n" + text;
  if (text.find("drop 10") == std::string::npos || text.find("tx 10") == std::string::npos)
    return "FAIL summary: " + text;
  return "OK " + counts;
}

std::string run_in_child(std::string (*fn)()) {
  int p[2];
  if (pipe(p) != 0) return "FAIL pipe";
  pid_t pid = fork();
  if (pid < 0) return "FAIL fork";
  if (pid == 0) {
    close(p[0]);
    std::string r = fn();
    (void)!write(p[1], r.data(), r.size());
    _exit(0);
  }
  close(p[1]);
  std::string result;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return result;
}

TEST(Live, XdpOnVethPairInOwnNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) for a network namespace";
  if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "no ip tool";
  std::string result = run_in_child(&child_main);
  if (result.rfind("SKIP", 0) == 0) GTEST_SKIP() << result;
  EXPECT_EQ(result.substr(0, 2), "OK") << result;
  RecordProperty("live", result);
  std::printf("%s\n", result.c_str());
}

TEST(Live, CliXdpOnVethPair) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) for a network namespace";
  if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "no ip tool";
  std::string result = run_in_child(&child_cli);
  if (result.rfind("SKIP", 0) == 0) GTEST_SKIP() << result;
  EXPECT_EQ(result.substr(0, 2), "OK") << result;
  std::printf("%s\n", result.c_str());
}

}  // namespace
}  // namespace bpfvm
