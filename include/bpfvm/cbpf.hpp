// bpfvm: classic BPF. Programs as `struct sock_filter` arrays (or `tcpdump -dd` / `-ddd` text) are
// checked as the kernel's bpf_check_classic does and translated to eBPF socket filters that the
// engines (interpreter, JIT) run; tcpdump expressions are compiled with libpcap's own compiler
// (pcap_compile on pcap_open_dead for the capture's link type) and then translated the same way.
//
// Translation (as the kernel's bpf_convert_filter): A = r0, X = r7, r6 = the context (__sk_buff),
// r8/r9 scratch, M[0..15] = 4-byte stack slots at r10-64 .. r10-4. Arithmetic is 32-bit (ALU32 /
// JMP32), packet loads are the legacy LD_ABS / LD_IND instructions (out of bounds ends the program
// with 0, which is classic BPF's rule too), `len` reads __sk_buff.len, ancillary loads (SKF_AD_*) read
// the matching __sk_buff fields. Division or modulo by X == 0 returns 0, as classic BPF does.
// The result is safe by construction: forward jumps only, every packet byte read by a bounds-checked
// LD_ABS/LD_IND, the stack only through fixed slots, the context only at fixed readable fields. It may
// therefore run in the unchecked interpreter or the JIT (see docs/packets.md).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpfvm/progtype.hpp"
#include "bpfvm/result.hpp"
#include "bpfvm/vm.hpp"

namespace bpfvm {

// struct sock_filter / struct bpf_insn (libpcap): same layout.
struct CbpfInsn {
  uint16_t code = 0;
  uint8_t jt = 0;
  uint8_t jf = 0;
  uint32_t k = 0;
};
static_assert(sizeof(CbpfInsn) == 8);

constexpr size_t kCbpfMaxInsns = 4096;  // BPF_MAXINSNS
constexpr uint32_t kCbpfMemWords = 16;  // BPF_MEMWORDS

// The kernel's bpf_check_classic rules: 1..4096 instructions, known opcodes, jumps inside the
// program, M[] indices < 16, no division by a constant 0, the last instruction a return.
// Errors name the instruction ("cbpf insn 3: jump out of range (target 9, program has 5)").
Status cbpf_check(std::span<const CbpfInsn> prog);

// One instruction as tcpdump -d prints it ("ldh      [12]", "jeq      #0x800           jt 2\tjf 5").
std::string cbpf_format(const CbpfInsn& insn, size_t pc);
std::string cbpf_disassemble(std::span<const CbpfInsn> prog);

// Reads `tcpdump -dd` (C array: "{ 0x28, 0, 0, 0x0000000c },") or `tcpdump -ddd` (decimal: a count
// line, then "code jt jf k" per line) text. Errors name the line.
Result<std::vector<CbpfInsn>> parse_cbpf_text(std::string_view text);

struct CbpfTranslateOptions {
  // Offset of the network header in the frame, for SKF_NET_OFF loads (14 for Ethernet). -1: unknown,
  // such loads are refused.
  int net_offset = -1;
};

// What a translated program needs from its context (so a hook fills only those fields).
struct CbpfNeeds {
  bool len = false;        // __sk_buff.len (LD LEN)
  bool skb_meta = false;   // ancillary loads: protocol, pkt_type, ifindex, mark, vlan, hash...
};

struct TranslatedFilter {
  Program program;          // eBPF, program type socket_filter, uapi context accesses
  CbpfNeeds needs;
};

// Checks (cbpf_check) and translates. Ancillary loads bpfvm cannot provide (SKF_AD_NLATTR,
// SKF_AD_NLATTR_NEST, SKF_AD_PAY_OFFSET, SKF_AD_HATYPE) are refused with a message naming the insn.
Result<TranslatedFilter> cbpf_translate(std::span<const CbpfInsn> prog, const CbpfTranslateOptions& options = {});

// ---- libpcap's compiler ----------------------------------------------------------------------------

// Compiles a tcpdump expression for a link type (DLT_*, e.g. 1 = Ethernet) with libpcap's
// pcap_compile (optimizer on, netmask unknown). A bad expression gives libpcap's own message.
Result<std::vector<CbpfInsn>> compile_pcap_expression(std::string_view expression, int linktype,
                                                      int snaplen = 262144);

// Compiles as `tcpdump -r PATH EXPRESSION` does: on the opened capture itself. This differs from the
// link-type form for captures from other systems (e.g. BSD loopback files, where libpcap then accepts
// every OS's AF_INET6 value).
Result<std::vector<CbpfInsn>> compile_pcap_expression_for_file(std::string_view expression, const std::string& path);

// Network-header offset for a link type (Ethernet 14, raw IP 0, BSD loopback 4, Linux cooked 16...),
// -1 when unknown.
int link_net_offset(int linktype);

// ---- a runnable filter ---------------------------------------------------------------------------

// A classic filter translated and prepared for one engine, with its context. Not thread-safe (one
// context per filter); make one per thread.
class PacketFilter {
 public:
  // The translated program is verified (socket_filter rules) before it runs; `options.checked` is
  // honoured for the interpreter, but verified filters are safe unchecked.
  static Result<std::unique_ptr<PacketFilter>> create(std::span<const CbpfInsn> prog, ExecOptions options,
                                                      const CbpfTranslateOptions& topts = {});
  // compile_pcap_expression + create.
  static Result<std::unique_ptr<PacketFilter>> from_expression(std::string_view expression, int linktype,
                                                               int snaplen, ExecOptions options);

  // Runs on one frame (from layer 2): `caplen` bytes available, `wirelen` its length on the wire
  // (__sk_buff.len, classic BPF's `len`, as pcap_offline_filter uses). Returns the filter's verdict
  // (bytes to keep; 0 = reject), or an error from the engine.
  Result<uint32_t> run(const uint8_t* frame, uint32_t caplen, uint32_t wirelen);

  // Fast form for hot loops: errors (which a translated filter cannot produce) count as reject.
  // JIT-compiled filters are entered directly (no Result, no run context).
  uint32_t match(const uint8_t* frame, uint32_t caplen, uint32_t wirelen) {
    if (direct_) {
      set_packet(frame, caplen, wirelen);
      return static_cast<uint32_t>(direct_(args_.r1, 0, &args_));
    }
    auto r = run(frame, caplen, wirelen);
    return r ? *r : 0;
  }
  // Many frames at once (verdicts[i] for frames[i]): the next frames' headers are prefetched while
  // one is filtered. Returns the number of matches.
  size_t match_many(const uint8_t* const* frames, const uint32_t* caplens, const uint32_t* wirelens, size_t n,
                    uint32_t* verdicts);
  // The same over BatchItems (packet = frame, packet_len = caplen, value = wirelen): JIT-compiled
  // filters run the whole array in one native loop (Engine::batch_entry), the others packet by packet.
  // Returns the number of matches.
  size_t match_batch(std::span<const BatchItem> items, uint32_t* verdicts);
  // Whether match_batch runs in one native loop.
  bool has_native_batch() const { return batch_ != nullptr; }

  const std::vector<CbpfInsn>& classic() const { return classic_; }
  const Program& ebpf() const { return exe_->program(); }
  const Executable& executable() const { return *exe_; }

 private:
  PacketFilter() = default;
  std::vector<CbpfInsn> classic_;
  CbpfNeeds needs_;
  void set_packet(const uint8_t* frame, uint32_t caplen, uint32_t wirelen) {
    ctx_.len = wirelen;
    ctx_.data = reinterpret_cast<uint64_t>(frame);
    ctx_.data_end = reinterpret_cast<uint64_t>(frame) + caplen;
    if (needs_.skb_meta) {
      uint16_t proto = caplen >= 14 ? static_cast<uint16_t>(frame[12] | frame[13] << 8) : 0;
      ctx_.protocol = proto;  // network byte order, as skb->protocol
    }
    args_.packet = frame;
    args_.packet_len = caplen;
  }
  std::unique_ptr<Executable> exe_;
  Engine::DirectFn direct_ = nullptr;  // the JIT's direct entry, when it has one
  Engine::BatchFn batch_ = nullptr;    // the JIT's batch entry (filters that read no skb metadata)
  SkbNative ctx_{};
  RunArgs args_;
};

}  // namespace bpfvm
