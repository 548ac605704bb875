// tcpdump expressions through libpcap's compiler, and PacketFilter: a translated classic filter bound
// to an engine and a reusable __sk_buff context.
#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>

#include "bpfvm/cbpf.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/verifier.hpp"

namespace bpfvm {

namespace {
Result<std::vector<CbpfInsn>> compile_on(pcap_t* p, std::string_view expression) {
  struct bpf_program fp {};
  std::string expr(expression);
  if (pcap_compile(p, &fp, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    std::string msg = pcap_geterr(p);
    pcap_close(p);
    return make_error(ErrorCode::InvalidArgument, msg);
  }
  std::vector<CbpfInsn> out(fp.bf_len);
  static_assert(sizeof(struct bpf_insn) == sizeof(CbpfInsn));
  for (u_int i = 0; i < fp.bf_len; ++i)
    out[i] = CbpfInsn{fp.bf_insns[i].code, fp.bf_insns[i].jt, fp.bf_insns[i].jf, fp.bf_insns[i].k};
  pcap_freecode(&fp);
  pcap_close(p);
  return out;
}
}  // namespace

Result<std::vector<CbpfInsn>> compile_pcap_expression(std::string_view expression, int linktype, int snaplen) {
  pcap_t* p = pcap_open_dead(linktype, snaplen);
  if (!p) return make_error(ErrorCode::InvalidArgument, "libpcap cannot open link type " + std::to_string(linktype));
  return compile_on(p, expression);
}

Result<std::vector<CbpfInsn>> compile_pcap_expression_for_file(std::string_view expression, const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) return make_error(ErrorCode::Io, path + ": " + err);
  return compile_on(p, expression);
}

int link_net_offset(int linktype) {
  switch (linktype) {
    case DLT_EN10MB: return 14;
    case DLT_RAW: case 101 /* LINKTYPE_RAW */: case DLT_IPV4: case DLT_IPV6: return 0;
    case DLT_NULL: case DLT_LOOP: return 4;
    case DLT_LINUX_SLL: return 16;
#ifdef DLT_LINUX_SLL2
    case DLT_LINUX_SLL2: return 20;
#endif
  }
  return -1;
}

Result<std::unique_ptr<PacketFilter>> PacketFilter::create(std::span<const CbpfInsn> prog, ExecOptions options,
                                                           const CbpfTranslateOptions& topts) {
  auto tf = cbpf_translate(prog, topts);
  if (!tf) return tf.error();
  const ProgTypeInfo* type = find_prog_type(kProgSocketFilter);
  // The translation is verified like any socket filter (it should always pass: a rejection is a
  // translator bug, reported as such rather than run).
  VerifyOptions vo;
  vo.type = type;
  auto rep = verify(tf->program.insns, vo);
  if (!rep) return rep.error();
  if (!rep->accepted) {
    Diagnostic d = rep->error;
    d.code = ErrorCode::Verify;
    d.message = "the translated filter does not verify (a bpfvm bug, please report it): " + d.message;
    return d;
  }
  CtxBaseFacts facts = rep->ctx_base_facts();
  // Context accesses of the translated program are uapi __sk_buff fields: rewrite them as for any
  // socket filter (identity for scalar fields, but it checks them).
  auto rewritten = rewrite_ctx_accesses(tf->program.insns, *type, &facts);
  if (!rewritten) return rewritten.error();
  tf->program.insns = std::move(*rewritten);
  std::unique_ptr<PacketFilter> f(new PacketFilter());
  f->classic_.assign(prog.begin(), prog.end());
  f->needs_ = tf->needs;
  // The JIT also compiles the batch loop (match_batch), unless the filter reads skb metadata that
  // set_packet derives per packet (the loop only stores the wire length).
  if (options.engine == EngineKind::Jit && !options.checked && !tf->needs.skb_meta) options.jit_batch = true;
  auto exe = Executable::create(std::move(tf->program), HelperSet::kernel().table_for(kProgSocketFilter), options);
  if (!exe) return exe.error();
  f->exe_ = std::move(*exe);
  // A direct entry skips the run context; checked runs keep the engine's path.
  if (!options.checked) {
    f->direct_ = f->exe_->engine().direct_entry();
    f->batch_ = f->exe_->engine().batch_entry();
  }
  f->args_.r1 = reinterpret_cast<uint64_t>(&f->ctx_);
  if (options.checked) {
    f->args_.regions.push_back(MemRegion{reinterpret_cast<uint64_t>(&f->ctx_), sizeof(SkbNative), false, "ctx"});
  }
  return f;
}

Result<std::unique_ptr<PacketFilter>> PacketFilter::from_expression(std::string_view expression, int linktype,
                                                                    int snaplen, ExecOptions options) {
  auto prog = compile_pcap_expression(expression, linktype, snaplen);
  if (!prog) return prog.error();
  CbpfTranslateOptions t;
  t.net_offset = link_net_offset(linktype);
  return create(*prog, options, t);
}

Result<uint32_t> PacketFilter::run(const uint8_t* frame, uint32_t caplen, uint32_t wirelen) {
  set_packet(frame, caplen, wirelen);
  auto r = exe_->run(args_);
  if (!r) return r.error();
  return static_cast<uint32_t>(*r);
}

size_t PacketFilter::match_many(const uint8_t* const* frames, const uint32_t* caplens, const uint32_t* wirelens,
                                size_t n, uint32_t* verdicts) {
  // Chunks of BatchItems on the stack for match_batch.
  constexpr size_t kChunk = 256;
  BatchItem items[kChunk];
  size_t matches = 0;
  for (size_t at = 0; at < n; at += kChunk) {
    size_t k = std::min(kChunk, n - at);
    for (size_t j = 0; j < k; ++j) items[j] = BatchItem{frames[at + j], caplens[at + j], wirelens[at + j]};
    matches += match_batch(std::span<const BatchItem>(items, k), verdicts + at);
  }
  return matches;
}

size_t PacketFilter::match_batch(std::span<const BatchItem> items, uint32_t* verdicts) {
  size_t matches = 0;
  if (batch_) {
    // The loop stores each item's wire length into the context's len (__sk_buff.len) before its run.
    batch_(items.data(), items.size(), verdicts, args_.r1, &ctx_.len);
    for (size_t i = 0; i < items.size(); ++i) matches += verdicts[i] != 0;
    return matches;
  }
  // Packet by packet, the next frames' headers prefetched while one is filtered.
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i + kAhead < items.size()) __builtin_prefetch(items[i + kAhead].packet);
    uint32_t v = match(items[i].packet, items[i].packet_len, items[i].value);
    verdicts[i] = v;
    matches += v != 0;
  }
  return matches;
}

}  // namespace bpfvm
