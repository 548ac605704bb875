// Calls: bpf-to-bpf calls (frames), helper calls checked against the prototype table, callbacks,
// references (ringbuf records, sockets) and spin locks.
#include <fmt/format.h>

#include <algorithm>

#include "bpfvm/object.hpp"
#include "verifier/impl.hpp"

namespace bpfvm::verifier {

bool Verifier::do_call_local(const Insn& in) {
  int64_t target = jump_target(in, pc_);
  if (cur_.lock_map)
    return reject("function calls are not allowed while holding a lock", -1,
                  "Between bpf_spin_lock and bpf_spin_unlock only plain loads, stores and arithmetic are allowed.");
  if (cur_.frames.size() >= static_cast<size_t>(kMaxCallDepth))
    return reject(fmt::format("the call stack of {} frames is too deep", cur_.frames.size() + 1), -1,
                  "bpf-to-bpf calls may nest at most 8 deep. Inline some of the functions (static __always_inline).");
  for (const Frame& f : cur_.frames)
    if (f.subprog == target)
      return reject(fmt::format("recursive call from insn {} to {}", pc_, target), -1,
                    "Recursion is not allowed: the verifier must bound the call depth. Rewrite it as a loop.");
  Frame callee;
  callee.callsite = static_cast<int32_t>(pc_);
  callee.subprog = static_cast<int32_t>(target);
  Frame& caller = cur_.cur();
  for (int r = 1; r <= 5; ++r) callee.regs[r] = caller.regs[r];
  callee.regs[10] = Reg::ptr(Kind::Stack, 0);
  callee.regs[10].frame = static_cast<uint8_t>(cur_.frames.size());
  cur_.frames.push_back(std::move(callee));
  pc_ = target;
  return true;
}

namespace {

struct Meta {
  int32_t map = -1;
  int mem_regno = -1;
  HelperArg mem_arg;
  int64_t alloc_size = -1;
  int32_t func = -1;
  int cb_ctx_regno = -1;
  uint32_t release_ref = 0;
  int release_regno = -1;
  bool const_key_in_range = false;  // a lookup's key is a constant index inside an array map
};

bool map_allows_helper(uint32_t type, int32_t id) {
  switch (type) {
    case kMapProgArray: return id == 12;
    case kMapPerfEventArray: return id == 22 || id == 25 || id == 55 || id == 111 || id == 121;
    case kMapRingbuf: return id == 130 || id == 131 || id == 134 || id == 198;
    case kMapStackTrace: return id == 27;
    case kMapCgroupArray: return id == 33 || id == 37;
    default: return true;
  }
}
bool helper_allows_map(int32_t id, uint32_t type) {
  switch (id) {
    case 12: return type == kMapProgArray;
    case 22: case 25: case 55: case 111: case 121: return type == kMapPerfEventArray;
    case 130: case 131: case 134: case 198: return type == kMapRingbuf;
    case 27: return type == kMapStackTrace;
    case 51: return type == kMapDevmap || type == kMapDevmapHash || type == kMapCpumap || type == kMapXskmap;
    case 33: case 37: return type == kMapCgroupArray;
    default: return true;
  }
}

}  // namespace

bool Verifier::do_call_helper(const Insn& in) {
  const int32_t id = static_cast<int32_t>(in.imm);
  const HelperProto* p = nullptr;
  bool allowed = false;
  if (opts_.helpers) {  // an embedder's set: its own helpers next to the kernel's
    const HelperDesc* d = opts_.helpers->find(id);
    p = d ? &d->proto : nullptr;
    allowed = p && opts_.helpers->allowed(type_.type, id);
  } else {
    p = kernel_helper_proto(id);
    allowed = p && type_.allows_helper(id);
  }
  if (!p && id == kCorePoisonHelper && opts_.core_relocation) {
    if (std::string what = opts_.core_relocation(static_cast<size_t>(pc_)); !what.empty())
      return reject(fmt::format("invalid CO-RE relocation: failed to resolve CO-RE relocation {}", what), -1,
                    "The program reaches an instruction whose CO-RE relocation matched nothing in the target BTF. "
                    "Guard the access with bpf_core_field_exists() / bpf_core_type_exists(), or load with the BTF "
                    "of the kernel the program is meant for (--btf).");
  }
  if (!p)
    return reject(fmt::format("invalid func unknown#{}", id), -1,
                  "There is no helper with this number. Check the helper id (the kernel's enum bpf_func_id).");
  if (!allowed)
    return reject(fmt::format("program of type {} is not allowed to call {}#{}", type_.name, p->name, id), -1,
                  fmt::format("{} is not available to {} programs. Use a helper this program type may call, or "
                              "change the program type (section name).",
                              p->name, type_.name));
  if (strict() && !helper_priv_unprivileged(p->priv)) {
    // The kernel's get_func_proto returns NULL for an unprivileged loader (bpf_base_func_proto's
    // capability tiers; tracing helpers exist only for tracing types, which need capabilities).
    const char* cap = helper_priv_capability(p->priv);
    return reject(
        fmt::format("program of this type cannot use helper {}#{} under strict rules (the kernel gives it {})",
                    p->name, id,
                    p->priv == HelperPriv::Tracing ? "only to tracing programs, which need CAP_PERFMON"
                                                   : fmt::format("to {} holders only", cap)),
        -1,
        fmt::format("{} is a privileged helper: the kernel offers it only with {}{}. Under strict rules (for "
                    "untrusted code) it is refused, because it {}. Verify with privileged rules "
                    "if the code is trusted, or do without it.",
                    p->name, cap,
                    p->priv == HelperPriv::Tracing ? ", to tracing programs" : "",
                    p->priv == HelperPriv::CapBpf
                        ? "reaches state shared outside the program's maps (locks, timers, per-CPU and kernel "
                          "object pointers, dynptrs)"
                        : "reads or acts on memory and state outside the program's context and maps (in bpfvm: "
                          "the host process's memory, tasks and stacks)"));
  }
  if (p->gpl_only() && !opts_.gpl)
    return reject(fmt::format("cannot call GPL-restricted function {} from non-GPL compatible program", p->name), -1,
                  "Declare a GPL-compatible license: char _license[] SEC(\"license\") = \"GPL\";");
  if (cur_.lock_map && id != 94)
    return reject("function calls are not allowed while holding a lock", -1,
                  "Between bpf_spin_lock and bpf_spin_unlock only plain loads, stores and arithmetic are allowed.");
  Frame& fr = cur_.cur();
  Meta meta;
  const int nargs = p->nargs();
  for (int i = 0; i < 5; ++i) {
    const HelperArg& a = p->args[i];
    const int regno = i + 1;
    if (a.type == ArgType::None) continue;
    if (!check_reg_init(regno)) return false;
    Reg& r = fr.regs[regno];
    const bool maybe_null = a.flags & kArgMaybeNull;
    auto bad_type = [&](const char* expected) {
      return reject(fmt::format("R{} type={} expected={}", regno, kind_name(r.kind), expected), regno,
                    fmt::format("Argument {} of {} must be {}; this register holds {}.", regno, p->name, expected,
                                kind_name(r.kind)));
    };
    // A scalar argument is a decision (its exact value mattered) unless the helper takes anything
    // there (ARG_ANYTHING: the kernel does not mark it precise either) and calls no callback with it.
    if (r.kind == Kind::Scalar && (a.type != ArgType::Anything || (p->flags & kHelperCallsBack))) seed(regno);
    if (maybe_null && r.is_null() && a.type != ArgType::ConstSize && a.type != ArgType::ConstSizeOrZero) {
      if (a.type == ArgType::Mem) {
        meta.mem_regno = -2;  // NULL buffer: the size must be 0 (checked below)
      }
      continue;
    }
    switch (a.type) {
      case ArgType::None:
        break;
      case ArgType::Anything:
        if (r.kind != Kind::Scalar && strict())
          return reject(fmt::format("R{} leaks addr into helper function", regno), regno);
        break;
      case ArgType::ConstMapPtr:
        if (r.kind != Kind::MapPtr) return bad_type("map_ptr");
        meta.map = r.map;
        if (const MapSpec* m = map_of(r)) {
          if (!map_allows_helper(m->type, id) || !helper_allows_map(id, m->type))
            return reject(fmt::format("cannot pass map_type {} into func {}#{}", m->type, p->name, id), regno,
                          fmt::format("{} does not work on maps of type {}.", p->name, m->type));
        }
        break;
      case ArgType::MapKey:
      case ArgType::MapValue: {
        const MapSpec* m = meta.map >= 0 ? &maps_[meta.map] : nullptr;
        if (!m) return reject(fmt::format("invalid map_ptr to access map->{}", a.type == ArgType::MapKey ? "key" : "value"));
        uint32_t size = a.type == ArgType::MapKey ? m->key_size : m->value_size;
        if (r.kind == Kind::Scalar || r.kind == Kind::Ctx || r.kind == Kind::PacketEnd || is_or_null(r.kind) ||
            r.kind == Kind::MapPtr || r.kind == Kind::Func)
          return bad_type("fp, pkt, map_value, mem");
        if ((r.kind == Kind::Packet || r.kind == Kind::PacketMeta) && !(p->flags & kHelperPktAccess))
          return bad_type("fp, map_value, mem");
        Access acc = a.flags & kArgUninit ? Access::HelperWrite : Access::HelperRead;
        if (size > 0 && !check_mem(regno, r, 0, static_cast<int>(size), acc, nullptr, nullptr)) return false;
        // Root (the kernel's can_elide_value_nullness): a lookup in an array map with a constant key
        // below max_entries cannot return NULL. The key's stack bytes become precise (pruning compares
        // them exactly), so a path with another key is never pruned against this one.
        if (!strict() && id == 1 && a.type == ArgType::MapKey && (m->type == kMapArray || m->type == kMapPercpuArray)) {
          uint64_t k = 0, slots = 0;
          if (stack_key_const(r, static_cast<int>(m->key_size), &k, &slots) && k < m->max_entries) {
            meta.const_key_in_range = true;
            if (slots && !cur_.hist.empty()) {
              Need need;
              need.slots[r.frame] = slots;
              backtrack(need, cur_.hist.size() - 1);
            }
          }
        }
        // Strict: an update (or any helper but a lookup) with a constant index outside an array map
        // can only fail at run time. (A lookup returns NULL, which the program must check anyway; the
        // value path after it is still verified.)
        uint64_t key = 0;
        if (strict() && a.type == ArgType::MapKey && id != 1 && m->key_size == 4 &&
            (m->type == kMapArray || m->type == kMapPercpuArray || m->type == kMapArrayOfMaps ||
             m->type == kMapCgroupArray) &&
            stack_const(r, 4, &key) && static_cast<uint32_t>(key) >= m->max_entries)
          return reject(fmt::format("map key {} is out of range of array map '{}' (max_entries {})",
                                    static_cast<uint32_t>(key), m->name, m->max_entries),
                        regno,
                        fmt::format("An array map has indices 0 to {}; this constant key is outside them, so {} "
                                    "can only fail. Use an index below max_entries.",
                                    m->max_entries ? m->max_entries - 1 : 0, p->name));
        break;
      }
      case ArgType::Mem:
      case ArgType::Int:
      case ArgType::Long: {
        if (r.kind == Kind::Scalar || r.kind == Kind::Ctx || r.kind == Kind::PacketEnd || is_or_null(r.kind) ||
            r.kind == Kind::MapPtr || r.kind == Kind::Func || r.kind == Kind::Sock || r.kind == Kind::BtfId)
          return bad_type("fp, pkt, map_value, mem");
        if ((r.kind == Kind::Packet || r.kind == Kind::PacketMeta) && !(p->flags & kHelperPktAccess) &&
            !(a.flags & kArgReadOnly) && false)
          return bad_type("fp, map_value, mem");
        Access acc = a.flags & kArgUninit ? Access::HelperWrite
                                          : (a.flags & kArgReadOnly ? Access::HelperRead : Access::HelperReadWrite);
        if (a.type == ArgType::Int || a.type == ArgType::Long) acc = Access::HelperWrite;
        if ((acc != Access::HelperRead) && r.rdonly)
          return reject(fmt::format("R{} points to read-only memory but {} writes it", regno, p->name), regno);
        int fixed = a.type == ArgType::Int ? 4 : a.type == ArgType::Long ? 8 : (a.flags & kArgFixedSize ? a.size : -1);
        if (fixed >= 0) {
          if (!check_mem(regno, r, 0, fixed, acc, nullptr, nullptr)) return false;
        } else {
          meta.mem_regno = regno;
          meta.mem_arg = a;
        }
        break;
      }
      case ArgType::ConstSize:
      case ArgType::ConstSizeOrZero: {
        if (r.kind != Kind::Scalar) return bad_type("scalar");
        const Scalar& v = r.v;
        if (v.smin < 0)
          return reject(fmt::format("R{} min value is negative, either use unsigned or 'var &= const'", regno), regno,
                        "The size passed to the helper might be negative. Bound it with `if (size > MAX) ...` on an "
                        "unsigned variable or mask it.");
        if (v.umin == 0 && a.type == ArgType::ConstSize && meta.mem_regno != -2)
          return reject(fmt::format("R{} invalid zero-sized read", regno), regno,
                        "The size may be 0 here, which this helper does not accept. Check `if (size == 0)` first.");
        if (v.umax >= (1u << 29))
          return reject(fmt::format("R{} unbounded memory access, use 'var &= const' or 'if (var < const)'", regno),
                        regno,
                        "The verifier needs an upper bound on the size to check the buffer. Add a check like "
                        "`if (len > sizeof(buf)) return 0;` right before the call.");
        if (meta.mem_regno == -2) {
          if (v.umax != 0) return reject(fmt::format("R{} must be 0 when the buffer is NULL", regno), regno);
        } else if (meta.mem_regno > 0 && v.umax > 0) {
          Access acc = meta.mem_arg.flags & kArgUninit
                           ? Access::HelperWrite
                           : (meta.mem_arg.flags & kArgReadOnly ? Access::HelperRead : Access::HelperReadWrite);
          if (!check_mem(meta.mem_regno, fr.regs[meta.mem_regno], 0, static_cast<int>(v.umax), acc, nullptr, nullptr))
            return false;
        }
        meta.mem_regno = -1;
        break;
      }
      case ArgType::Ctx:
        if (r.kind != Kind::Ctx) return bad_type("ctx");
        if (r.off != 0) return reject(fmt::format("dereference of modified ctx ptr R{} off={} disallowed", regno, r.off), regno);
        break;
      case ArgType::SpinLock: {
        if (r.kind != Kind::MapValue) return bad_type("map_value");
        const MapSpec* m = map_of(r);
        if (!m || m->spin_lock_off < 0)
          return reject(fmt::format("map '{}' has no valid bpf_spin_lock", m ? m->name : ""), regno);
        if (!r.v.is_const() || r.off + static_cast<int64_t>(r.v.value()) != m->spin_lock_off)
          return reject(fmt::format("off {} doesn't point to 'struct bpf_spin_lock' that is at {}", r.off,
                                    m->spin_lock_off),
                        regno);
        if (id == 93) {
          if (cur_.lock_map) return reject("Locking two bpf_spin_locks are not allowed");
          cur_.lock_map = static_cast<uint32_t>(r.map) + 1;
          cur_.lock_id = r.id;
        } else {
          if (!cur_.lock_map) return reject("bpf_spin_unlock without taking a lock");
          if (cur_.lock_map != static_cast<uint32_t>(r.map) + 1 || cur_.lock_id != r.id)
            return reject("bpf_spin_unlock of different lock");
          cur_.lock_map = 0;
          cur_.lock_id = 0;
        }
        break;
      }
      case ArgType::SockCommon:
      case ArgType::Socket:
      case ArgType::BtfIdSockCommon:
      case ArgType::BtfId:
      case ArgType::PercpuBtfId:
        // A kernel object the helper may take: plain, trusted or (but for the socket casts) RCU-protected;
        // not one walked through a union (untrusted), nor one maybe NULL the program has not checked
        // (the kernel's btf_ptr_types and btf_id_sock_common_types).
        if ((r.kind == Kind::BtfId || (r.kind == Kind::BtfIdOrNull && !maybe_null)) &&
            (a.type == ArgType::BtfId || a.type == ArgType::BtfIdSockCommon)) {
          const bool sock = a.type == ArgType::BtfIdSockCommon;
          if (r.kind == Kind::BtfIdOrNull || (r.bflags & kBtfUntrusted) || (sock && (r.bflags & kBtfRcu)))
            return reject(fmt::format("R{} type={} expected={}", regno, type_str(r),
                                      sock ? "sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_"
                                           : "ptr_, trusted_ptr_, rcu_ptr_"),
                          regno,
                          r.kind == Kind::BtfIdOrNull
                              ? "This kernel object may be NULL: compare it with 0 before passing it."
                              : "");
        }
        if (r.kind == Kind::BtfIdOrNull && maybe_null) {
          // The helper takes NULL too (ARG_PTR_TO_BTF_ID_OR_NULL).
        } else if (r.kind != Kind::Sock && r.kind != Kind::BtfId) {
          return bad_type("sock");
        }
        if (r.kind == Kind::BtfId && (r.bflags & kBtfUntrusted))
          return reject(fmt::format("R{} type={} expected=ptr_, trusted_ptr_, rcu_ptr_", regno, type_str(r)), regno);
        // The struct the helper takes (a struct whose first member is it passes too).
        if (a.btf_struct && attach_ && (r.kind == Kind::BtfId || r.kind == Kind::BtfIdOrNull) && r.btf_id &&
            !btf_struct_is(attach_->btf, r.btf_id, a.btf_struct))
          return reject(fmt::format("R{} is of type {} but {} is expected", regno, btf_struct_name(attach_->btf, r.btf_id),
                                    a.btf_struct),
                        regno);
        if (a.flags & kArgRelease) {
          if (!r.ref) return reject(fmt::format("R{} must be referenced when passed to release function", regno), regno);
          meta.release_ref = r.ref;
        }
        break;
      case ArgType::RingbufMem:
        if (r.kind != Kind::Mem || !r.ref)
          return reject(fmt::format("R{} type={} expected=ringbuf_mem (a record from bpf_ringbuf_reserve, "
                                    "null-checked)",
                                    regno, kind_name(r.kind)),
                        regno,
                        "bpf_ringbuf_submit/discard take the pointer bpf_ringbuf_reserve returned, after checking it "
                        "is not NULL, without any offset.");
        if (r.off != 0 || !r.v.is_const() || r.v.value() != 0)
          return reject(fmt::format("R{} must have zero offset when passed to release func", regno), regno);
        meta.release_ref = r.ref;
        break;
      case ArgType::ConstAllocSizeOrZero:
        if (r.kind != Kind::Scalar || !r.v.is_const())
          return reject(fmt::format("R{} is not a known constant", regno), regno,
                        "The size of a ring buffer reservation must be a constant known at load time.");
        meta.alloc_size = static_cast<int64_t>(r.v.value());
        break;
      case ArgType::Func:
        if (r.kind != Kind::Func) return bad_type("func");
        meta.func = r.func;
        break;
      case ArgType::Stack:
        if (r.kind != Kind::Stack) return bad_type("fp");
        meta.cb_ctx_regno = regno;
        break;
      case ArgType::ConstStr:
        if (r.kind != Kind::MapValue || !r.rdonly) return reject(fmt::format("R{} does not point to a readonly map'", regno), regno);
        break;
      case ArgType::Timer:
        if (r.kind != Kind::MapValue) return bad_type("map_value");
        break;
      case ArgType::Kptr:
      case ArgType::Dynptr:
        return reject(fmt::format("{} takes a {}: not supported by bpfvm's verifier", p->name,
                                  a.type == ArgType::Kptr ? "kptr" : "dynptr"));
    }
  }
  (void)nargs;
  if (meta.release_ref) release_ref(cur_, meta.release_ref);

  // Result and clobbers.
  Frame& f = cur_.cur();
  Reg r0 = Reg::unknown();
  switch (p->ret) {
    case RetType::Integer:
      break;
    case RetType::Void:
      r0 = Reg{};
      break;
    case RetType::MapValue: {
      if (meta.map < 0) return reject("map lookup without a map argument");
      const MapSpec& m = maps_[meta.map];
      if (m.type == kMapArrayOfMaps || m.type == kMapHashOfMaps) {
        int32_t inner = inner_of_[meta.map];
        if (inner < 0)
          return reject(fmt::format("map-in-map '{}' has no inner map description", m.name));
        r0 = Reg::ptr(Kind::MapPtrOrNull);
        r0.map = inner;
      } else {
        const bool maybe_null = (p->ret_flags & kRetMaybeNull) && !meta.const_key_in_range;
        r0 = Reg::ptr(maybe_null ? Kind::MapValueOrNull : Kind::MapValue);
        r0.map = meta.map;
        r0.rdonly = map_rdonly_[meta.map];
      }
      r0.id = new_id();
      if (r0.kind == Kind::MapValue) r0.id = 0;
      break;
    }
    case RetType::AllocMem:
    case RetType::DynptrMem:
      if (meta.alloc_size < 0) return reject(fmt::format("{} needs a constant size argument", p->name));
      r0 = Reg::ptr(Kind::MemOrNull);
      r0.mem_size = static_cast<uint32_t>(meta.alloc_size);
      r0.id = new_id();
      r0.rdonly = p->ret_flags & kRetReadOnly;
      break;
    case RetType::Socket:
    case RetType::TcpSock:
    case RetType::SockCommon:
      r0 = Reg::ptr(p->ret_flags & kRetMaybeNull ? Kind::SockOrNull : Kind::Sock);
      r0.id = new_id();
      break;
    case RetType::MemOrBtfId:
    case RetType::BtfId:
      r0 = Reg::ptr(p->ret_flags & kRetMaybeNull ? Kind::BtfIdOrNull : Kind::BtfId);
      r0.id = new_id();
      // Typed where the program's kernel objects are (BTF-typed contexts): loads checked against the
      // struct's layout.
      if (p->ret == RetType::BtfId && p->ret_btf_struct && attach_) {
        r0.btf_id = btf_struct_id(attach_->btf, p->ret_btf_struct);
        if (p->ret_flags & kRetTrusted) r0.bflags = kBtfTrusted;
      }
      break;
  }
  if (p->ret_flags & kRetAcquire || p->ret_flags & kRetRingbuf) {
    uint32_t ref = new_id();
    r0.ref = ref;
    cur_.refs.push_back(RefState{ref, static_cast<int32_t>(pc_)});
  }
  // Callbacks: verify the callback as a function called from here (and the path where it is not called).
  if ((p->flags & kHelperCallsBack) && meta.func >= 0) {
    if (cfg_.func_index(meta.func) < 0) return reject("callback is not the start of a function");
    if (cur_.frames.size() >= static_cast<size_t>(kMaxCallDepth))
      return reject(fmt::format("the call stack of {} frames is too deep", cur_.frames.size() + 1));
    Frame cb;
    cb.callsite = static_cast<int32_t>(pc_);
    cb.subprog = meta.func;
    cb.callback = true;
    cb.cb_ret_max = 1;
    cb.regs[10] = Reg::ptr(Kind::Stack, 0);
    cb.regs[10].frame = static_cast<uint8_t>(cur_.frames.size());
    cb.cb_iters = 1;
    if (id == 181) {  // bpf_loop(nr, cb, ctx, flags): cb(u32 index, void *ctx)
      cb.regs[1] = Reg::scalar(Scalar::urange(0, UINT32_MAX));
      cb.regs[2] = f.regs[3];
      // At most nr_loops invocations (r1 is precise: a scalar argument of a helper with a callback).
      cb.cb_max = f.regs[1].kind == Kind::Scalar ? f.regs[1].v.umax : UINT64_MAX;
    } else if (id == 164) {  // for_each_map_elem(map, cb, ctx, flags): cb(map, key, value, ctx)
      const MapSpec& m = maps_[meta.map];
      cb.regs[1] = Reg::ptr(Kind::MapPtr);
      cb.regs[1].map = meta.map;
      cb.regs[2] = Reg::ptr(Kind::Mem);
      cb.regs[2].mem_size = m.key_size;
      cb.regs[2].rdonly = true;
      cb.regs[3] = Reg::ptr(Kind::MapValue);
      cb.regs[3].map = meta.map;
      cb.regs[4] = f.regs[3];
    } else {
      return reject(fmt::format("callbacks of {} are not supported", p->name));
    }
    // Path 1: the callback is never called.
    State skip = cur_;
    for (int r = 1; r <= 5; ++r) skip.cur().regs[r] = Reg{};
    skip.cur().regs[0] = Reg::unknown();
    if (cb.cb_max == 0) {  // bpf_loop with nr_loops 0: the only path
      cur_ = std::move(skip);
      pc_++;
      return true;
    }
    push_branch(std::move(skip), pc_ + 1);
    // Path 2: it is called (once; see docs/verifier-differences.md).
    cur_.frames.push_back(std::move(cb));
    pc_ = meta.func;
    return true;
  }
  for (int r = 1; r <= 5; ++r) f.regs[r] = Reg{};
  f.regs[0] = r0;
  if (p->changes_pkt_data()) clobber_packet_pointers(cur_);
  pc_++;
  return true;
}

}  // namespace bpfvm::verifier
