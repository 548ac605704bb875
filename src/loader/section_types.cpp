// Section name -> program type, following libbpf 1.x's section names, plus the prefix forms the
// kernel's old samples/bpf loader (bpf_load.c), iproute2 and Suricata objects use.
#include <linux/bpf.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "bpfvm/object.hpp"
#include "bpfvm/progtype.hpp"

namespace bpfvm {
namespace {

// How a rule matches a section name.
enum class Match : uint8_t {
  Exact,     // the whole name
  Slash,     // the name, or the name followed by '/' and anything (libbpf's "kprobe+")
  Prefix,    // any name starting with it (older loaders: "socket1", "xdp_prog", "cgroup/sock1")
};

struct Rule {
  const char* name;
  Match match;
  uint32_t type;
  uint32_t attach;
};

// Order matters: the first matching rule wins, so longer names come before their prefixes.
constexpr Rule kRules[] = {
    // libbpf's names, exact or "name/...".
    {"socket", Match::Exact, BPF_PROG_TYPE_SOCKET_FILTER, 0},
    {"sk_reuseport/migrate", Match::Exact, BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE},
    {"sk_reuseport", Match::Exact, BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT},
    {"kprobe.multi", Match::Slash, BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI},
    {"kretprobe.multi", Match::Slash, BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI},
    {"kprobe", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"kretprobe", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"uprobe", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"uprobe.s", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"uretprobe", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"uretprobe.s", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"ksyscall", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"kretsyscall", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"usdt", Match::Slash, BPF_PROG_TYPE_KPROBE, 0},
    {"tc", Match::Exact, BPF_PROG_TYPE_SCHED_CLS, 0},
    {"classifier", Match::Slash, BPF_PROG_TYPE_SCHED_CLS, 0},
    {"action", Match::Slash, BPF_PROG_TYPE_SCHED_ACT, 0},
    {"tracepoint", Match::Slash, BPF_PROG_TYPE_TRACEPOINT, 0},
    {"tp", Match::Slash, BPF_PROG_TYPE_TRACEPOINT, 0},
    {"raw_tracepoint.w", Match::Slash, BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0},
    {"raw_tp.w", Match::Slash, BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0},
    {"raw_tracepoint", Match::Slash, BPF_PROG_TYPE_RAW_TRACEPOINT, 0},
    {"raw_tp", Match::Slash, BPF_PROG_TYPE_RAW_TRACEPOINT, 0},
    {"tp_btf", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP},
    {"fentry", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY},
    {"fentry.s", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY},
    {"fmod_ret", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN},
    {"fmod_ret.s", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN},
    {"fexit", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT},
    {"fexit.s", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT},
    {"iter", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER},
    {"iter.s", Match::Slash, BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER},
    {"freplace", Match::Slash, BPF_PROG_TYPE_EXT, 0},
    {"lsm", Match::Slash, BPF_PROG_TYPE_LSM, BPF_LSM_MAC},
    {"lsm.s", Match::Slash, BPF_PROG_TYPE_LSM, BPF_LSM_MAC},
    {"lsm_cgroup", Match::Slash, BPF_PROG_TYPE_LSM, BPF_LSM_CGROUP},
    {"syscall", Match::Exact, BPF_PROG_TYPE_SYSCALL, 0},
    {"xdp.frags/devmap", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP},
    {"xdp/devmap", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP},
    {"xdp.frags/cpumap", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP},
    {"xdp/cpumap", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP},
    {"xdp.frags", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP},
    {"xdp", Match::Exact, BPF_PROG_TYPE_XDP, BPF_XDP},
    {"perf_event", Match::Exact, BPF_PROG_TYPE_PERF_EVENT, 0},
    {"lwt_in", Match::Exact, BPF_PROG_TYPE_LWT_IN, 0},
    {"lwt_out", Match::Exact, BPF_PROG_TYPE_LWT_OUT, 0},
    {"lwt_xmit", Match::Exact, BPF_PROG_TYPE_LWT_XMIT, 0},
    {"lwt_seg6local", Match::Exact, BPF_PROG_TYPE_LWT_SEG6LOCAL, 0},
    {"sockops", Match::Exact, BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS},
    {"sk_skb/stream_parser", Match::Exact, BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_PARSER},
    {"sk_skb/stream_verdict", Match::Exact, BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_VERDICT},
    {"sk_skb", Match::Slash, BPF_PROG_TYPE_SK_SKB, 0},
    {"sk_msg", Match::Exact, BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT},
    {"lirc_mode2", Match::Exact, BPF_PROG_TYPE_LIRC_MODE2, BPF_LIRC_MODE2},
    {"flow_dissector", Match::Exact, BPF_PROG_TYPE_FLOW_DISSECTOR, BPF_FLOW_DISSECTOR},
    {"cgroup_skb/ingress", Match::Exact, BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS},
    {"cgroup_skb/egress", Match::Exact, BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS},
    {"cgroup/skb", Match::Exact, BPF_PROG_TYPE_CGROUP_SKB, 0},
    {"cgroup/sock_create", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE},
    {"cgroup/sock_release", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_RELEASE},
    {"cgroup/sock", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE},
    {"cgroup/post_bind4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET4_POST_BIND},
    {"cgroup/post_bind6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET6_POST_BIND},
    {"cgroup/dev", Match::Exact, BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE},
    {"struct_ops", Match::Slash, BPF_PROG_TYPE_STRUCT_OPS, 0},
    {"cgroup/bind4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND},
    {"cgroup/bind6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_BIND},
    {"cgroup/connect4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT},
    {"cgroup/connect6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT},
    {"cgroup/sendmsg4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG},
    {"cgroup/sendmsg6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG},
    {"cgroup/recvmsg4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG},
    {"cgroup/recvmsg6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_RECVMSG},
    {"cgroup/getpeername4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME},
    {"cgroup/getpeername6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETPEERNAME},
    {"cgroup/getsockname4", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETSOCKNAME},
    {"cgroup/getsockname6", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETSOCKNAME},
    {"cgroup/sysctl", Match::Exact, BPF_PROG_TYPE_CGROUP_SYSCTL, BPF_CGROUP_SYSCTL},
    {"cgroup/getsockopt", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT},
    {"cgroup/setsockopt", Match::Exact, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT},
    {"sk_lookup", Match::Exact, BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP},
    // Older loaders matched prefixes (samples/bpf bpf_load.c, iproute2, Suricata):
    // "socket1", "socket/0", "socket_filter", "xdp1", "xdp_prog", "cgroup/sock1", "sk_skb1" ...
    {"socket", Match::Prefix, BPF_PROG_TYPE_SOCKET_FILTER, 0},
    {"filter", Match::Exact, BPF_PROG_TYPE_SOCKET_FILTER, 0},           // Suricata socket filters
    {"loadbalancer", Match::Exact, BPF_PROG_TYPE_SOCKET_FILTER, 0},     // Suricata cluster_ebpf
    {"xdp", Match::Prefix, BPF_PROG_TYPE_XDP, 0},
    {"cgroup/skb", Match::Prefix, BPF_PROG_TYPE_CGROUP_SKB, 0},
    {"cgroup/sock", Match::Prefix, BPF_PROG_TYPE_CGROUP_SOCK, 0},
    {"sockops", Match::Prefix, BPF_PROG_TYPE_SOCK_OPS, 0},
    {"sk_skb", Match::Prefix, BPF_PROG_TYPE_SK_SKB, 0},
    {"sk_msg", Match::Prefix, BPF_PROG_TYPE_SK_MSG, 0},
    {"perf_event", Match::Prefix, BPF_PROG_TYPE_PERF_EVENT, 0},
};

bool matches(const Rule& r, std::string_view s) {
  std::string_view n = r.name;
  switch (r.match) {
    case Match::Exact: return s == n;
    case Match::Slash: return s == n || (s.size() > n.size() && s.starts_with(n) && s[n.size()] == '/');
    case Match::Prefix: return s.starts_with(n);
  }
  return false;
}

}  // namespace

SectionType section_prog_type(std::string_view section) {
  SectionType st;
  for (const Rule& r : kRules) {
    if (!matches(r, section)) continue;
    st.prog_type = r.type;
    st.expected_attach = r.attach;
    st.known = true;
    std::string_view n = r.name;
    if (r.match == Match::Slash && section.size() > n.size()) st.attach_target = std::string(section.substr(n.size() + 1));
    return st;
  }
  return st;
}

// Names come from the program-type registry (progtype.hpp): one table for the whole project.
std::string prog_type_name(uint32_t type) {
  if (type == 0) return "unspec";
  if (const ProgTypeInfo* t = find_prog_type(type)) return std::string(t->name);
  return "type_" + std::to_string(type);
}

std::optional<uint32_t> prog_type_from_name(std::string_view name) {
  if (name == "unspec") return 0u;
  if (const ProgTypeInfo* t = find_prog_type(name)) return t->type;
  if (name.starts_with("type_")) {
    uint32_t v = 0;
    std::string_view d = name.substr(5);
    if (d.empty() || d.size() > 4) return std::nullopt;
    for (char c : d) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    return v;
  }
  SectionType st = section_prog_type(name);
  if (st.known) return st.prog_type;
  return std::nullopt;
}

}  // namespace bpfvm

namespace bpfvm {
namespace {

// "name+off" -> (name, off); off parsed as C does (0x.., 0.., decimal). false when off is not a number.
bool split_offset(std::string_view s, std::string& name, uint64_t& off) {
  size_t plus = s.find('+');
  name = std::string(s.substr(0, plus));
  off = 0;
  if (plus == std::string_view::npos) return true;
  std::string o(s.substr(plus + 1));
  if (o.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(o.c_str(), &end, 0);
  if (errno || *end) return false;
  off = v;
  return true;
}

bool is_number(std::string_view s) {
  if (s.empty()) return false;
  std::string t(s);
  char* end = nullptr;
  errno = 0;
  std::strtoull(t.c_str(), &end, 0);
  return !errno && *end == 0;
}

}  // namespace

AttachTarget parse_attach_target(std::string_view section) {
  AttachTarget a;
  size_t slash = section.find('/');
  std::string_view form = section.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? std::string_view() : section.substr(slash + 1);
  SectionType st = section_prog_type(section);
  if (!st.known) return a;
  std::string kind(form);
  if (kind.ends_with(".s")) {
    a.sleepable = true;
    kind.resize(kind.size() - 2);
  }
  if (kind.ends_with(".multi")) {
    a.multi = true;
    kind.resize(kind.size() - 6);
  }
  if (kind.ends_with(".w")) kind.resize(kind.size() - 2);  // raw_tp.w: writable raw tracepoint
  if (kind == "tp") kind = "tracepoint";
  if (kind == "raw_tp") kind = "raw_tracepoint";
  if (kind == "classifier") kind = "tc";
  // Older loaders' prefix names (socket1, xdp_prog, ...) attach like their family.
  for (const char* family : {"socket", "xdp", "sockops", "sk_skb", "sk_msg", "perf_event"})
    if (kind.starts_with(family) && kind != family && slash == std::string_view::npos && section_prog_type(family).known)
      kind = family;
  a.kind = kind;
  a.target = std::string(rest);
  a.retprobe = kind == "kretprobe" || kind == "kretsyscall" || kind == "uretprobe" || kind == "fexit";
  if (rest.empty()) return a;
  if (kind == "tracepoint") {
    size_t s2 = rest.find('/');
    if (s2 != std::string_view::npos) {
      a.category = std::string(rest.substr(0, s2));
      a.name = std::string(rest.substr(s2 + 1));
    } else {
      a.name = std::string(rest);
    }
  } else if (kind == "kprobe" || kind == "kretprobe") {
    if (!split_offset(rest, a.name, a.offset)) a.name = std::string(rest);
  } else if (kind == "uprobe" || kind == "uretprobe") {
    // PATH:FUNC[+OFF] or PATH:OFFSET (libbpf); the path itself contains no ':'.
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      a.path = std::string(rest);
    } else {
      a.path = std::string(rest.substr(0, colon));
      std::string_view fn = rest.substr(colon + 1);
      if (is_number(fn)) {
        std::string t(fn);
        a.offset = std::strtoull(t.c_str(), nullptr, 0);
      } else if (!split_offset(fn, a.name, a.offset)) {
        a.name = std::string(fn);
      }
    }
  } else if (kind == "usdt") {
    // usdt/PATH:PROVIDER:NAME
    size_t c2 = rest.rfind(':');
    size_t c1 = c2 == std::string_view::npos || c2 == 0 ? std::string_view::npos : rest.rfind(':', c2 - 1);
    if (c1 != std::string_view::npos) {
      a.path = std::string(rest.substr(0, c1));
      a.provider = std::string(rest.substr(c1 + 1, c2 - c1 - 1));
      a.name = std::string(rest.substr(c2 + 1));
    } else {
      a.name = std::string(rest);
    }
  } else {
    // ksyscall/NAME, raw_tracepoint/NAME, tp_btf/NAME, fentry/FUNC, lsm/HOOK, iter/NAME,
    // freplace/FUNC, struct_ops/NAME, kprobe.multi/GLOB, cgroup/... (the attach point).
    a.name = std::string(rest);
  }
  return a;
}

}  // namespace bpfvm
