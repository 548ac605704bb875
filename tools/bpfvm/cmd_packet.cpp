// Packet commands:
//   bpfvm filter 'EXPRESSION' -r IN [-w OUT] [--count] [--engine interp|jit] [-d]
//   bpfvm xdp|socket|tc OBJ [--section S] (-r IN | -i IFACE) [-w OUT] [--out-if IFACE] [--tx OUT]
//                           [--redirect N=FILE.pcap|N=dev:IFACE]... [--engine interp|jit] [--stats]
//                           [--duration SEC] [--max-packets N]
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "bpfvm/asm.hpp"
#include "bpfvm/cbpf.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/jit.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/object.hpp"
#include "bpfvm/packet.hpp"
#include "cli.hpp"
#include "input.hpp"
#include "parse.hpp"

namespace bpfvm::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---- bpfvm filter --------------------------------------------------------------------------------

struct FilterOpts {
  std::string expression;
  std::string in, out;
  bool count = false;
  bool dump = false;
  bool dump_ebpf = false;
  bool dump_jited = false;
  std::optional<EngineKind> engine;
};

int filter_command(const FilterOpts& o) {
  auto reader = PcapReader::open(o.in);
  if (!reader) return fail(kUsage, reader.error());
  auto& r = **reader;
  ExecOptions eo;
  // Translated classic filters are verified (PacketFilter::create): the JIT unless asked otherwise.
  eo.engine = o.engine.value_or(EngineKind::Jit);
  // Compiled on the capture itself, exactly as `tcpdump -r IN EXPRESSION` compiles it.
  auto prog = compile_pcap_expression_for_file(o.expression, o.in);
  if (!prog) return fail(prog.error().code == ErrorCode::Io ? kUsage : kFailed, prog.error().message);
  CbpfTranslateOptions topts;
  topts.net_offset = link_net_offset(r.linktype());
  auto filter = PacketFilter::create(*prog, eo, topts);
  if (!filter) {
    if (filter.error().code == ErrorCode::InvalidArgument) return fail(kFailed, filter.error().message);
    return fail(kFailed, filter.error(), "filter");
  }
  if (o.dump) {
    std::fputs(cbpf_disassemble((*filter)->classic()).c_str(), stdout);
    return kOk;
  }
  if (o.dump_ebpf) {
    DisasmOptions d;
    d.helper_name = [](int32_t id) { return HelperSet::kernel().name_of(id); };
    std::fputs(disassemble((*filter)->ebpf().insns, d).c_str(), stdout);
    return kOk;
  }
  if (o.dump_jited) {
    auto listing = jit_disassemble((*filter)->executable());
    if (!listing) return fail(kFailed, listing.error(), "filter");
    std::fputs(listing->c_str(), stdout);
    return kOk;
  }
  std::unique_ptr<PcapWriter> writer;
  if (!o.out.empty()) {
    auto w = PcapWriter::open(o.out, r.linktype(), r.snaplen(), r.nanosecond());
    if (!w) return fail(kUsage, w.error());
    writer = std::move(*w);
  }
  uint64_t matched = 0, index = 0;
  PacketView v;
  std::string damage;
  while (true) {
    auto n = r.next(v);
    if (!n) {
      damage = n.error().message;
      break;
    }
    if (!*n) break;
    ++index;
    uint32_t keep = (*filter)->match(v.data, v.caplen, v.wirelen);
    if (!keep) continue;
    ++matched;
    if (!writer && !o.count) {
      // Like `tcpdump -r IN EXPR` (without decoding): the packet's number in the capture, its
      // timestamp and lengths.
      std::printf("%llu: %lld.%09u %u bytes", static_cast<unsigned long long>(index),
                  static_cast<long long>(v.ts_sec), v.ts_nsec, v.wirelen);
      if (v.caplen != v.wirelen || keep < v.caplen) std::printf(" (%u captured)", std::min(keep, v.caplen));
      std::printf("\n");
    }
    if (writer) {
      // Like a capture with this filter: the filter's result is the snapshot length.
      PacketView out = v;
      if (keep < out.caplen) out.caplen = keep;
      if (auto st = writer->write(out); !st) return fail(kUsage, st.error());
    }
  }
  if (writer) {
    if (auto st = writer->flush(); !st) return fail(kUsage, st.error());
  }
  // -w writes the packets; --count prints only their number; neither lists them (above) and adds
  // the number.
  if (o.count || !writer) std::printf("%llu packets\n", static_cast<unsigned long long>(matched));
  std::fflush(stdout);
  if (!damage.empty()) return fail(kFailed, damage);
  return kOk;
}

RegisterCommand reg_filter("filter", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<FilterOpts>();
  auto* cmd = app.add_subcommand("filter", "Select packets of a capture with a tcpdump expression (libpcap's "
                                           "compiler, run as eBPF by bpfvm)");
  cmd->add_option("expression", o->expression, "tcpdump filter expression")->required();
  cmd->add_option("-r", o->in, "Capture to read (pcap or pcapng)")->required();
  auto* w = cmd->add_option("-w", o->out, "Write the matching packets to this pcap file");
  auto* c = cmd->add_flag("--count", o->count,
                          "Print only the number of matching packets (default: one line per matching packet, then "
                          "the number; with -w: nothing)");
  auto* d = cmd->add_flag("-d", o->dump, "Print the classic BPF program (as tcpdump -d) and exit");
  auto* e = cmd->add_flag("--ebpf", o->dump_ebpf, "Print the eBPF translation (as it runs, context rewritten) and exit");
  auto* jd = cmd->add_flag("--jited", o->dump_jited, "Print the JIT's x86-64 code for the filter and exit (JIT engine)");
  d->excludes(e)->excludes(jd);
  e->excludes(jd);
  // The dumps print the program and read no packet: writing or counting packets with them is a mistake.
  for (auto* dump : {d, e, jd}) dump->excludes(w)->excludes(c);
  add_engine_option(cmd, o->engine);
  cmd->callback([o, &run] { run = [o] { return filter_command(*o); }; });
});

// ---- bpfvm xdp / socket / tc -----------------------------------------------------------------------

struct HookOpts {
  std::string kind;  // xdp, socket, tc
  std::string object, section;
  std::string in, iface, out, out_if, tx_out;
  std::vector<std::string> redirects;
  std::vector<std::string> map_sets;
  std::optional<EngineKind> engine;
  VerifyFlags verify;
  std::string budget_text;
  bool stats = false;
  double duration = 0;
  uint64_t max_packets = 0;
  uint32_t ifindex = 1;
};

struct Runner {
  const HookOpts& o;
  PacketHook& hook;
  std::shared_ptr<PacketSink> pass_sink, tx_sink;
  LiveCapture* live = nullptr;
  uint64_t errors_shown = 0;
  uint64_t send_errors = 0;
  std::string first_error;
  Clock::duration run_time{};

  void handle(const PacketView& v) {
    auto t0 = Clock::now();
    PacketResult r = hook.process(v);
    run_time += Clock::now() - t0;
    switch (r.action) {
      case PacketAction::Pass:
        if (pass_sink) note(pass_sink->send(r.out));
        break;
      case PacketAction::Tx:
        if (live) note(live->send(r.out.data, r.out.caplen));
        else if (tx_sink) note(tx_sink->send(r.out));
        break;
      case PacketAction::Redirect:
        if (r.sink) note(r.sink->send(r.out));
        break;
      case PacketAction::Error:
        if (first_error.empty()) first_error = r.error;
        if (errors_shown++ < 3) std::fprintf(stderr, "bpfvm: packet %llu: %s\n",
                                             static_cast<unsigned long long>(hook.counters().packets), r.error.c_str());
        break;
      default: break;
    }
  }
  void note(const Status& st) {
    if (!st) {
      if (send_errors++ == 0) std::fprintf(stderr, "bpfvm: %s\n", st.error().message.c_str());
    }
  }
};

std::string action_line(const PacketHook& hook) {
  const auto& c = hook.counters();
  std::string s;
  for (size_t a = 0; a < c.actions.size(); ++a) {
    if (!c.actions[a] && a >= static_cast<size_t>(PacketAction::Aborted)) continue;
    s += fmt::format("{}{} {}", s.empty() ? "" : ", ", packet_action_name(static_cast<PacketAction>(a)), c.actions[a]);
  }
  return s;
}

void print_summary(const HookOpts& o, PacketHook& hook, const Runner& run, double wall) {
  const auto& c = hook.counters();
  const ExecOptions& eo = hook.executable().options();
  std::printf("program %s (%s), engine %s%s\n", hook.program_name().c_str(), std::string(hook.type().name).c_str(),
              engine_name(eo.engine), o.verify.no_verify ? (eo.checked ? " (unverified, checked)" : " (unverified)") : "");
  std::printf("packets: %llu (%llu bytes)\n", static_cast<unsigned long long>(c.packets),
              static_cast<unsigned long long>(c.bytes));
  std::printf("verdicts:\n");
  for (const auto& [v, n] : c.verdicts) {
    std::string name = hook.type().type == kProgSocketFilter ? (v == 0 ? "drop (0)" : "keep (> 0)") : hook.verdict_name(v);
    std::printf("  %-16s %llu\n", name.c_str(), static_cast<unsigned long long>(n));
  }
  std::printf("actions: %s\n", action_line(hook).c_str());
  if (c.truncated) std::printf("truncated: %llu\n", static_cast<unsigned long long>(c.truncated));
  if (eo.insn_budget)
    std::printf("instruction budget: %llu per packet, exhausted on %llu packets\n",
                static_cast<unsigned long long>(eo.insn_budget), static_cast<unsigned long long>(c.budget_exhausted));
  if (c.redirect_no_target)
    std::printf("redirects to an ifindex with no bpfvm interface (dropped): %llu\n",
                static_cast<unsigned long long>(c.redirect_no_target));
  if (auto* ifs = hook.interfaces())
    for (const auto& e : ifs->all())
      std::printf("interface %u (%s): %llu packets\n", e.ifindex, e.sink->describe().c_str(),
                  static_cast<unsigned long long>(e.sink->sent));
  double prog_s = secs(run.run_time);
  double per = c.packets ? prog_s * 1e9 / static_cast<double>(c.packets) : 0;
  std::printf("rate: %.0f packets/s, %.0f ns/packet (program), %.0f packets/s overall\n",
              per > 0 ? 1e9 / per : 0.0, per, wall > 0 ? static_cast<double>(c.packets) / wall : 0.0);
  if (const LoadedObject* live = hook.loaded()) {
    const Object* obj = hook.object();
    bool any = false;
    for (size_t i = 0; i < live->maps.size(); ++i) {
      if (obj->maps[i].is_global_data()) continue;
      if (!any) std::printf("maps:\n");
      any = true;
      std::string text = format_map_contents(*live->maps[i]);
      for (size_t p = text.find("\n  "); p != std::string::npos; p = text.find("\n  ", p + 3)) text.insert(p + 1, "  ");
      std::printf("  %s", text.c_str());
      // indent continuation lines
    }
  }
}

int hook_command(const HookOpts& o) {
  LoadOptions lo;
  std::string bytes, err;
  if (!read_file(o.object, bytes, err)) return fail(kUsage, err);
  auto obj = load_object(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), lo, o.object);
  if (!obj) {
    if (obj.error().code == ErrorCode::Io) return fail(kUsage, obj.error());
    return fail(kFailed, obj.error(), o.object);
  }
  HookOptions ho;
  ho.prepare = prepare_options(o.engine, o.verify);
  if (!o.budget_text.empty()) {
    std::string err;
    if (!parse_number(o.budget_text, UINT64_MAX, ho.prepare.exec.insn_budget, err))
      return fail(kUsage, "--budget: " + err);
    if (ho.prepare.exec.insn_budget == 0)
      return fail(kUsage, "--budget: 0 is not a budget; give at least 1 instruction per packet");
    if (ho.prepare.engine == EngineChoice::Jit)
      return fail(kUsage, "--budget needs the interpreter (the JIT does not count instructions)");
  }
  if (o.verify.no_verify && ho.prepare.engine == EngineChoice::Jit)
    return fail(kUsage, "--no-verify runs in the checked interpreter only: the JIT counts no instructions, so "
                        "nothing would stop unverified code that never ends");
  std::string rejection;
  ho.prepare.rejection = &rejection;
  ho.ingress_ifindex = o.ifindex;
  auto hook = PacketHook::from_object(*obj, o.section, ho, o.kind);
  if (!hook) {
    if (hook.error().code == ErrorCode::Verify && !rejection.empty()) return fail_rejection(rejection);
    return fail(kFailed, hook.error(), o.object);
  }
  auto& h = **hook;

  // Interfaces for redirects: N=FILE.pcap or N=dev:IFACE.
  std::unique_ptr<PcapReader> reader;
  std::unique_ptr<LiveCapture> live;
  int linktype = 1, snaplen = 262144;
  bool nano = false;
  if (!o.in.empty()) {
    auto r = PcapReader::open(o.in);
    if (!r) return fail(kUsage, r.error());
    reader = std::move(*r);
    linktype = reader->linktype();
    snaplen = reader->snaplen();
    nano = reader->nanosecond();
    if (linktype != 1)
      return fail(kUsage, fmt::format("{}: link type {} is not Ethernet; the packet hooks take Ethernet frames "
                                      "(use `bpfvm filter` for other link types)", o.in, linktype));
  } else {
    auto l = LiveCapture::open(o.iface);
    if (!l) return fail(kUsage, l.error());
    live = std::move(*l);
  }
  auto file_sink = [&](const std::string& path) -> Result<std::shared_ptr<PacketSink>> {
    auto w = PcapWriter::open(path, linktype, snaplen, nano);
    if (!w) return w.error();
    return make_file_sink(std::move(*w));
  };
  auto ifs = std::make_shared<Interfaces>();
  for (const auto& spec : o.redirects) {
    auto eq = spec.find('=');
    uint64_t idx = 0;
    std::string err;
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      return fail(kUsage, "--redirect: '" + spec + "' is not IFINDEX=FILE.pcap or IFINDEX=dev:IFACE");
    if (!parse_number(spec.substr(0, eq), UINT32_MAX, idx, err))
      return fail(kUsage, "--redirect: '" + spec + "': ifindex " + err);
    std::string target = spec.substr(eq + 1);
    Result<std::shared_ptr<PacketSink>> sink =
        target.rfind("dev:", 0) == 0 ? make_device_sink(target.substr(4)) : file_sink(target);
    if (!sink) return fail(kUsage, sink.error());
    ifs->add(static_cast<uint32_t>(idx), target, *sink);
  }
  h.set_interfaces(ifs);
  // --map-set MAP:KEY=VALUE: a number or a byte list each (parse_map_bytes), e.g. a devmap slot.
  for (const auto& spec : o.map_sets) {
    std::string name, key_text, value_text, err;
    if (!split_map_set(spec, name, key_text, value_text))
      return fail(kUsage, "--map-set: '" + spec + "' is not MAP:KEY=VALUE");
    int mi = obj->find_map(name);
    if (mi < 0) return fail(kUsage, "--map-set: the object has no map '" + name + "'");
    auto& m = *h.loaded()->maps[static_cast<size_t>(mi)];
    const MapSpec& ms = m.spec();
    std::vector<uint8_t> key, value;
    auto bytes_of = [](size_t n) { return fmt::format("{} byte{}", n, n == 1 ? "" : "s"); };
    if (!parse_map_bytes(key_text, ms.key_size, key, err))
      return fail(kUsage, fmt::format("--map-set {}: key of map '{}' ({}): {}", spec, name, bytes_of(ms.key_size), err));
    const size_t value_size = m.user_value_size();  // per-CPU maps: one value per CPU
    if (!parse_map_bytes(value_text, value_size, value, err))
      return fail(kUsage, fmt::format("--map-set {}: value of map '{}' ({}): {}", spec, name, bytes_of(value_size), err));
    if (long rc = m.update_user(key.data(), value.data(), 0); rc != 0)
      return fail(kUsage, fmt::format("--map-set {}: update failed ({})", spec, std::strerror(static_cast<int>(-rc))));
  }
  Runner run{o, h};
  run.live = live.get();
  if (!o.out.empty()) {
    auto s = file_sink(o.out);
    if (!s) return fail(kUsage, s.error());
    run.pass_sink = *s;
  } else if (!o.out_if.empty()) {
    auto s = make_device_sink(o.out_if);
    if (!s) return fail(kUsage, s.error());
    run.pass_sink = *s;
  }
  if (!o.tx_out.empty()) {
    auto s = file_sink(o.tx_out);
    if (!s) return fail(kUsage, s.error());
    run.tx_sink = *s;
  }

  auto start = Clock::now();
  auto last = start;
  bool tty = isatty(2);
  std::string damage;
  auto tick = [&](bool final_tick) {
    auto now = Clock::now();
    if (!final_tick && now - last < std::chrono::seconds(1)) return;
    last = now;
    if (o.stats) {
      std::fprintf(stderr, "[%.0fs] packets %llu: %s\n", secs(now - start),
                   static_cast<unsigned long long>(h.counters().packets), action_line(h).c_str());
    } else if (reader && tty && reader->file_size() > 0) {
      double frac = static_cast<double>(reader->offset()) / static_cast<double>(reader->file_size());
      std::fprintf(stderr, "\rreading %s: %llu packets, %.0f%%%s", o.in.c_str(),
                   static_cast<unsigned long long>(h.counters().packets), frac * 100, final_tick ? "\n" : "");
    }
  };
  if (reader) {
    PacketView v;
    uint64_t n = 0;
    while (!o.max_packets || n < o.max_packets) {
      auto r = reader->next(v);
      if (!r) {
        damage = r.error().message;
        break;
      }
      if (!*r) break;
      run.handle(v);
      ++n;
      if ((n & 1023) == 0) tick(false);
    }
    if (!o.stats && tty && secs(Clock::now() - start) >= 1) tick(true);
  } else {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    while (!g_stop) {
      if (o.duration > 0 && secs(Clock::now() - start) >= o.duration) break;
      if (o.max_packets && h.counters().packets >= o.max_packets) break;
      auto r = live->poll(100, [&](const PacketView& v) { run.handle(v); });
      if (!r) return fail(kUsage, r.error());
      tick(false);
    }
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
  double wall = secs(Clock::now() - start);
  print_summary(o, h, run, wall);
  if (live) std::printf("kernel ring drops: %llu\n", static_cast<unsigned long long>(live->kernel_drops()));
  std::fflush(stdout);
  if (!damage.empty()) return fail(kFailed, damage);
  return kOk;
}

void register_hook(CLI::App& app, std::function<int()>& run, const char* kind, const char* help) {
  auto o = std::make_shared<HookOpts>();
  o->kind = kind;
  auto* cmd = app.add_subcommand(kind, help);
  cmd->add_option("object", o->object, "BPF ELF object")->required();
  cmd->add_option("--section", o->section, "Program (section or function name); default: the object's first " +
                                                std::string(kind) + " program");
  auto* r = cmd->add_option("-r", o->in, "Read packets from a capture (pcap or pcapng, Ethernet)");
  auto* i = cmd->add_option("-i", o->iface, "Read live traffic from a network interface (AF_PACKET)");
  r->excludes(i);
  auto* w = cmd->add_option("-w", o->out, "Write passed packets to this pcap file");
  cmd->add_option("--out-if", o->out_if, "Send passed packets out of this network interface")->excludes(w);
  cmd->add_option("--tx", o->tx_out, "Capture input: write XDP_TX packets to this pcap file");
  cmd->add_option("--redirect", o->redirects, "bpfvm interface for redirects: IFINDEX=FILE.pcap or IFINDEX=dev:IFACE");
  cmd->add_option("--map-set", o->map_sets, "Set a map entry before the run: MAP:KEY=VALUE (e.g. a devmap slot)");
  cmd->add_option("--ifindex", o->ifindex, "ingress ifindex the program sees for capture input (default 1)");
  add_engine_option(cmd, o->engine);
  add_verify_options(cmd, o->verify);
  cmd->add_option("--budget", o->budget_text,
                  "Stop the program on a packet after N executed instructions (unverified programs: default " +
                      std::to_string(kUnverifiedInsnBudget) + ")");
  cmd->add_flag("--stats", o->stats, "Print counters every second");
  cmd->add_option("--duration", o->duration, "Live capture: stop after this many seconds");
  cmd->add_option("--max-packets", o->max_packets, "Stop after this many packets");
  cmd->callback([o, &run, r, i] {
    if (!*r && !*i) throw CLI::RequiredError("-r or -i");
    run = [o] { return hook_command(*o); };
  });
}

RegisterCommand reg_xdp("xdp", [](CLI::App& app, std::function<int()>& run) {
  register_hook(app, run, "xdp", "Run an XDP program on every packet of a capture or an interface");
});
RegisterCommand reg_socket("socket", [](CLI::App& app, std::function<int()>& run) {
  register_hook(app, run, "socket", "Run a socket filter on every packet (frames from layer 2, as AF_PACKET)");
});
RegisterCommand reg_tc("tc", [](CLI::App& app, std::function<int()>& run) {
  register_hook(app, run, "tc", "Run a tc (sched_cls) program on every packet");
});

}  // namespace
}  // namespace bpfvm::cli
