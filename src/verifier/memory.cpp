// Memory accesses: loads, stores, atomics, legacy packet loads; the stack model (spills and fills);
// region checks for the context, packet, map values and other memory.
#include <fmt/format.h>

#include "verifier/impl.hpp"

namespace bpfvm::verifier {

namespace {

Scalar loaded_value(int size, bool sign_ext) {
  if (size >= 8) return Scalar::unknown();
  if (sign_ext) {
    int64_t lo = -(int64_t{1} << (size * 8 - 1));
    return Scalar::srange(lo, -lo - 1);
  }
  return Scalar::urange(0, (uint64_t{1} << (size * 8)) - 1);
}

Scalar truncate(const Scalar& v, int size) {
  if (size >= 8) return v;
  uint64_t max = (uint64_t{1} << (size * 8)) - 1;
  if (v.umax <= max) return v;
  Scalar r;
  r.t = tnum_cast(v.t, size);
  r.umin = 0;
  r.umax = max;
  r.sync();
  return r;
}

bool packet_writable(uint32_t t) {
  switch (t) {
    case kProgXdp: case kProgSchedCls: case kProgSchedAct: case kProgLwtXmit: case kProgSkSkb: case kProgSkMsg:
    case kProgMem:
      return true;
    default:
      return false;
  }
}

bool is_write(Access a) { return a == Access::Write || a == Access::HelperWrite || a == Access::HelperReadWrite; }
bool is_read(Access a) { return a == Access::Read || a == Access::HelperRead || a == Access::HelperReadWrite; }

}  // namespace

// Checks [off + var, off + var + size) against a region of `region` bytes.
bool Verifier::check_region(int regno, const Reg& base, int64_t off, int size, uint64_t region, const char* what) {
  int64_t lo = off + base.v.smin;
  if (base.v.smin < -(int64_t{1} << 29))
    return reject(fmt::format("R{} min value is negative, either use unsigned index or do a if (index >=0) check.",
                              regno),
                  regno);
  if (base.v.umax > (uint64_t{1} << 29))
    return reject(fmt::format("R{} unbounded memory access, make sure to bounds check any such access", regno), regno);
  int64_t hi = off + static_cast<int64_t>(base.v.umax) + size;
  if (lo < 0 || hi > static_cast<int64_t>(region)) {
    if (!base.v.is_const())
      return reject(fmt::format("invalid access to {}, size={} off={} size={} (the variable offset allows "
                                "[{}, {}))",
                                what, region, off, size, lo, hi),
                    regno);
    return reject(fmt::format("invalid access to {}, {}_size={} off={} size={}", what,
                              std::string(what) == "map value" ? "value" : "mem", region, off + base.v.smin, size),
                  regno);
  }
  return true;
}

Reg Verifier::stack_read(Frame& fr, int32_t abs, int size, bool* ok, int regno) {
  *ok = true;
  int i = (-abs - 1) / 8;
  int b = abs + 8 * (i + 1);
  Slot* s = fr.slot(i);
  static const Slot empty{};
  const Slot& sl = s ? *s : empty;
  if (sl.bytes[b] == kStackSpill || (sl.bytes[0] == kStackSpill && b < sl.spill_size)) {
    if (b == 0 && size == sl.spill_size) return sl.spill;
    // A narrower fill from the start of a spilled scalar: its low bytes (little-endian), zero-extended
    // -- the kernel's narrow fill (copy the register, coerce it to the size).
    if (b == 0 && size < sl.spill_size && sl.spill.kind == Kind::Scalar)
      return Reg::scalar(truncate(sl.spill.v, size));
    // Any other part of a spilled constant zero reads 0 (the kernel keeps that zero too).
    if (sl.spill.kind == Kind::Scalar && sl.spill.v.is_const() && sl.spill.v.value() == 0 && b + size <= sl.spill_size)
      return Reg::scalar(Scalar::constant(0));
    if (sl.spill.kind != Kind::Scalar) {
      *ok = reject(fmt::format("invalid size of register fill (off {} size {}, {} bytes spilled)", abs, size,
                               sl.spill_size),
                   regno,
                   "A pointer was saved to the stack and is read back with a different size; only a full "
                   "8-byte read gives the pointer back.");
      return Reg{};
    }
  }
  bool zero = true;
  for (int k = b; k < b + size; ++k) {
    uint8_t t = sl.bytes[k];
    if (t != kStackZero) zero = false;
    if (t == kStackInvalid && strict()) {
      *ok = reject(fmt::format("invalid read from stack off {}+{} size {}", abs - b + b, 0, size), regno,
                   "These stack bytes were never written on this path. Initialise the variable (for structs, "
                   "memset or `= {}`) before reading it.");
      return Reg{};
    }
  }
  if (zero) return Reg::scalar(Scalar::constant(0));
  return Reg::scalar(loaded_value(size, false));
}

void Verifier::stack_write(Frame& fr, int32_t abs, int size, const Reg* value) {
  int i = (-abs - 1) / 8;
  int b = abs + 8 * (i + 1);
  Slot& sl = fr.slot_grow(i);
  {
    const bool known = value && value->kind == Kind::Scalar && value->v.is_const();
    for (int k = b; k < b + size && k < 8; ++k) {
      if (known) {
        sl.cmask = static_cast<uint8_t>(sl.cmask | (1u << k));
        sl.cval[k] = static_cast<uint8_t>(value->v.value() >> (8 * (k - b)));
      } else {
        sl.cmask = static_cast<uint8_t>(sl.cmask & ~(1u << k));
        sl.cval[k] = 0;
      }
    }
  }
  if (value && b == 0 && (size == 8 || (value->kind == Kind::Scalar && size >= 1))) {
    Reg v = *value;
    if (size < 8) {
      v.v = truncate(v.v, size);
      v.id = v.v == value->v ? v.id : 0;
    }
    // Keep the bytes of a partially overwritten slot that are not covered.
    if (sl.bytes[0] == kStackSpill && size < 8)
      for (int k = 0; k < 8; ++k)
        if (sl.bytes[k] == kStackSpill) sl.bytes[k] = kStackMisc;
    sl.spill = v;
    sl.spill_size = static_cast<uint8_t>(size);
    for (int k = 0; k < size; ++k) sl.bytes[k] = kStackSpill;
    if (v.kind == Kind::Scalar && v.is_null() && size == 8) {
      // Keep it as a spill (exact value), the zero bytes are implied.
    }
    return;
  }
  if (sl.bytes[0] == kStackSpill || sl.spill_size) {
    for (int k = 0; k < 8; ++k)
      if (sl.bytes[k] == kStackSpill) sl.bytes[k] = kStackMisc;
    sl.spill = Reg{};
    sl.spill_size = 0;
  }
  uint8_t t = value && value->is_null() ? kStackZero : kStackMisc;
  for (int k = b; k < b + size; ++k) sl.bytes[k] = t;
}

bool Verifier::stack_access(int regno, const Reg& base, int32_t off, int size, Access acc, const Reg* value, Reg* out) {
  if (!base.v.is_const()) {
    // Variable offset: every byte the range allows must be inside the frame; reads need initialised bytes.
    if (strict()) return reject(fmt::format("R{} variable stack access prohibited for !root", regno), regno);
    if (acc == Access::Read) stack_load_[pc_] = 1;
    int64_t lo = base.off + off + base.v.smin;
    int64_t hi = base.off + off + static_cast<int64_t>(base.v.umax) + size;
    if (base.v.smin < -kStackSize || base.v.umax > kStackSize || lo < -kStackSize || hi > 0)
      return reject(fmt::format("invalid variable-offset stack access R{} var_off={} off={} size={}", regno,
                                base.v.str(), off, size),
                    regno);
    Frame& fr = cur_.frames[base.frame];
    if (base.frame == 0 && is_read(acc)) {
      uint64_t m = 0;
      for (int64_t a = lo; a < hi; ++a) m |= uint64_t{1} << ((-a - 1) / 8);
      mark_stack_read(m);
    }
    for (int64_t a = lo; a < hi; ++a) {
      int i = static_cast<int>((-a - 1) / 8);
      int b = static_cast<int>(a + 8 * (i + 1));
      Slot& sl = fr.slot_grow(i);
      if (is_write(acc)) {
        if (sl.bytes[0] == kStackSpill) {
          for (auto& t : sl.bytes)
            if (t == kStackSpill) t = kStackMisc;
          sl.spill = Reg{};
          sl.spill_size = 0;
        }
        if (acc == Access::Write || acc == Access::HelperWrite) sl.bytes[b] = kStackMisc;
        sl.cmask = static_cast<uint8_t>(sl.cmask & ~(1u << b));
        sl.cval[b] = 0;
      }
      if (is_read(acc) && acc != Access::Read && sl.bytes[b] == kStackInvalid && strict())
        return reject(fmt::format("invalid variable-offset indirect read from stack R{} var_off={} off={} size={}",
                                  regno, base.v.str(), off, size),
                      regno);
    }
    int f = cfg_.func_of[cur_.frames[base.frame].subprog];
    stack_depth_[f] = std::max<int32_t>(stack_depth_[f], static_cast<int32_t>(-lo));
    if (out) *out = Reg::scalar(loaded_value(size, false));
    return true;
  }
  if (acc == Access::Read) stack_load_[pc_] = 1;
  int64_t abs = static_cast<int64_t>(base.off) + off + static_cast<int64_t>(base.v.value());
  if (abs < -kStackSize || abs + size > 0 || size <= 0)
    return reject(fmt::format("invalid stack off={} size={}", abs, size), regno,
                  "The access is outside the 512-byte stack frame (offsets -512..-1 from r10).");
  Frame& fr = cur_.frames[base.frame];
  int f = cfg_.func_of[fr.subprog];
  stack_depth_[f] = std::max<int32_t>(stack_depth_[f], static_cast<int32_t>(-abs));
  if (acc == Access::Read || acc == Access::Write) {
    if (abs % size != 0)
      return reject(fmt::format("misaligned stack access off {} size {}", abs, size), regno,
                    "Stack accesses must be aligned to their size.");
    const int slot = static_cast<int>((-abs - 1) / 8);
    const int b = static_cast<int>(abs + 8 * (slot + 1));
    if (acc == Access::Write) {
      const bool whole = size == 8 && b == 0;
      note_stack_slot(slot, whole ? HistEntry::kFullWrite : 0, base.frame);
      if (base.frame == 0 && whole) cur_.swritten |= uint64_t{1} << slot;
      stack_write(fr, static_cast<int32_t>(abs), size, value);
      return true;
    }
    {
      // Does the value come from what the slot holds (a spilled register, zero bytes)?
      uint8_t from = 0;
      if (const Slot* sl = fr.slot(slot)) {
        if (sl->bytes[0] == kStackSpill) from = HistEntry::kValueFromSlot;
        for (int k = b; k < b + size && k < 8; ++k)
          if (sl->bytes[k] == kStackSpill || sl->bytes[k] == kStackZero) from = HistEntry::kValueFromSlot;
      }
      note_stack_slot(slot, from, base.frame);
      if (base.frame == 0) mark_stack_read(uint64_t{1} << slot);
    }
    bool ok;
    Reg r = stack_read(fr, static_cast<int32_t>(abs), size, &ok, regno);
    if (!ok) return false;
    if (out) *out = r;
    return true;
  }
  if (base.frame == 0 && is_read(acc)) {
    uint64_t m = 0;
    for (int64_t a = abs; a < abs + size; ++a) m |= uint64_t{1} << ((-a - 1) / 8);
    mark_stack_read(m);
  }
  // Helper access to a range of bytes.
  for (int64_t a = abs; a < abs + size; ++a) {
    int i = static_cast<int>((-a - 1) / 8);
    int b = static_cast<int>(a + 8 * (i + 1));
    Slot* sl = fr.slot(i);
    uint8_t t = sl ? sl->bytes[b] : kStackInvalid;
    if (is_read(acc)) {
      if (t == kStackInvalid && strict())  // root may pass uninitialised stack (allow_uninit_stack)
        return reject(fmt::format("invalid indirect read from stack R{} off {}+{} size {}", regno, abs, a - abs, size),
                      regno,
                      "The helper reads this stack memory but some of its bytes were never written on this path. "
                      "Initialise the whole buffer (e.g. `struct key k = {};` or memset) before passing it.");
      if (t == kStackSpill && sl->spill.kind != Kind::Scalar && strict())
        return reject(fmt::format("R{} leaks addr into helper memory (spilled pointer at off {})", regno, a), regno);
    }
  }
  if (acc == Access::HelperWrite || acc == Access::HelperReadWrite) {
    for (int64_t a = abs; a < abs + size; ++a) {
      int i = static_cast<int>((-a - 1) / 8);
      int b = static_cast<int>(a + 8 * (i + 1));
      Slot& sl = fr.slot_grow(i);
      if (sl.bytes[0] == kStackSpill || sl.spill_size) {
        for (auto& t : sl.bytes)
          if (t == kStackSpill) t = kStackMisc;
        sl.spill = Reg{};
        sl.spill_size = 0;
      }
      sl.bytes[b] = kStackMisc;
      sl.cmask = static_cast<uint8_t>(sl.cmask & ~(1u << b));
      sl.cval[b] = 0;
    }
  }
  return true;
}

bool Verifier::stack_key_const(const Reg& ptr, int size, uint64_t* out, uint64_t* slots) {
  *slots = 0;
  if (ptr.kind != Kind::Stack || ptr.frame >= cur_.frames.size() || !ptr.v.is_const() || size <= 0 ||
      size > 8)
    return false;
  const Frame& fr = cur_.frames[ptr.frame];
  const int64_t abs = static_cast<int64_t>(ptr.off) + static_cast<int64_t>(ptr.v.value());
  uint64_t v = 0;
  for (int j = 0; j < size; ++j) {
    const int64_t a = abs + j;
    if (a >= 0 || a < -kStackSize) return false;
    const int i = static_cast<int>((-a - 1) / 8);
    const int b = static_cast<int>(a + 8 * (i + 1));
    const Slot* sl = i < static_cast<int>(fr.stack.size()) ? &fr.stack[i] : nullptr;
    if (!sl) return false;
    uint8_t byte;
    if (sl->bytes[b] == kStackZero) {
      byte = 0;
    } else if (sl->bytes[0] == kStackSpill && b < sl->spill_size && sl->spill.kind == Kind::Scalar &&
               sl->spill.v.is_const()) {
      byte = static_cast<uint8_t>(sl->spill.v.value() >> (8 * b));
    } else {
      return false;  // unknown bytes (a constant stored there is not compared when pruning)
    }
    v |= static_cast<uint64_t>(byte) << (8 * j);
    *slots |= uint64_t{1} << i;
  }
  *out = v;
  return true;
}

bool Verifier::stack_const(const Reg& ptr, int size, uint64_t* out) {
  if (ptr.kind != Kind::Stack || !ptr.v.is_const() || ptr.frame >= cur_.frames.size() || size > 8) return false;
  Frame& fr = cur_.frames[ptr.frame];
  int64_t abs = static_cast<int64_t>(ptr.off) + static_cast<int64_t>(ptr.v.value());
  uint64_t v = 0;
  for (int j = 0; j < size; ++j) {
    int64_t a = abs + j;
    if (a >= 0 || a < -kStackSize) return false;
    int i = static_cast<int>((-a - 1) / 8);
    int b = static_cast<int>(a + 8 * (i + 1));
    Slot* sl = fr.slot(i);
    if (!sl || !(sl->cmask & (1u << b))) return false;
    v |= static_cast<uint64_t>(sl->cval[b]) << (8 * j);
  }
  *out = v;
  return true;
}

bool Verifier::check_mem(int regno, const Reg& base, int32_t off, int size, Access acc, const Reg* value, Reg* out,
                         bool sign_ext) {
  const bool write = is_write(acc);
  const bool direct = acc == Access::Read || acc == Access::Write;
  if (value && value->kind != Kind::Scalar && strict() && base.kind != Kind::Stack)
    return reject(fmt::format("R{} leaks addr into {}", in_value_reg_, kind_name(base.kind)), -1,
                  "Storing a pointer anywhere but the stack would let user space see a kernel address. Store a "
                  "number instead.");
  switch (base.kind) {
    case Kind::Stack:
      return stack_access(regno, base, off, size, acc, value, out);
    case Kind::Ctx: {
      if (!direct)
        return reject(fmt::format("R{} type=ctx expected=fp, pkt, map_value, mem", regno), regno);
      if (base.off != 0 || !base.v.is_const() || base.v.value() != 0)
        return reject(fmt::format("dereference of modified ctx ptr R{} off={} disallowed", regno, base.off), regno,
                      "Context fields must be accessed as `ctx->field` with a constant offset from the unmodified "
                      "context pointer; the kernel rewrites these accesses. Do not add offsets to the context "
                      "pointer or index into it with a variable.");
      if (attach_) return btf_ctx_load(regno, off, size, write, out);
      auto a = check_ctx_access(type_, off, size, write);
      if (!a) return reject(a.error().message, regno);
      if (out) {
        switch (a->ptr) {
          case CtxPtr::None: *out = Reg::scalar(loaded_value(size, sign_ext)); break;
          case CtxPtr::Packet: *out = Reg::ptr(Kind::Packet); break;
          case CtxPtr::PacketMeta: *out = Reg::ptr(Kind::PacketMeta); break;
          case CtxPtr::PacketEnd: *out = Reg::ptr(Kind::PacketEnd); break;
          case CtxPtr::SockCommonOrNull:
          case CtxPtr::SocketOrNull:
            *out = Reg::ptr(Kind::SockOrNull);
            out->id = new_id();
            break;
          case CtxPtr::Socket: *out = Reg::ptr(Kind::Sock); break;
          case CtxPtr::FlowKeys: *out = Reg::ptr(Kind::FlowKeys); break;
          case CtxPtr::Mem: *out = Reg::ptr(Kind::Packet); break;
          case CtxPtr::MemEnd: *out = Reg::ptr(Kind::PacketEnd); break;
        }
      }
      return true;
    }
    case Kind::Packet:
    case Kind::PacketMeta: {
      if (write && !packet_writable(type_.type))
        return reject(fmt::format("cannot write into packet (R{}): {} programs may only read it", regno, type_.name),
                      regno);
      if (base.v.smin < 0)
        return reject(fmt::format("R{} min value is negative, either use unsigned index or do a if (index >=0) check.",
                                  regno),
                      regno);
      int64_t lo = static_cast<int64_t>(base.off) + off;
      int64_t hi = lo + size;
      bool okay = lo >= 0 && hi <= base.range;
      if (!okay && mem_unknown_ && lo + static_cast<int64_t>(base.v.smin) >= 0 &&
          static_cast<uint64_t>(hi) + base.v.umax <= cur_.mem_len.umin && base.v.umax < (1u << 29))
        okay = true;
      if (!okay) {
        if (mem_unknown_)
          return reject(fmt::format("invalid access to memory, off={} size={}: not proven below r1 + r2 (length >= {})",
                                    lo, size, cur_.mem_len.umin),
                        regno,
                        "The memory's size is known only at run time (r2). Compare the length, or a pointer "
                        "derived from r1, against r1 + r2 before reading.");
        return reject(fmt::format("invalid access to packet, off={} size={}, R{}(id={},off={},r={})", lo, size, regno,
                                  base.id, base.off, base.range),
                      regno,
                      "The packet is only known to be long enough after a comparison with data_end. Check "
                      "`if (data + offset + size > data_end) return ...;` before the access, with the same "
                      "pointer you then use.");
      }
      if (base.v.umax > (1u << 16))
        return reject(fmt::format("R{} unbounded packet access", regno), regno);
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    }
    case Kind::PacketEnd:
      return reject(fmt::format("R{} invalid mem access 'pkt_end'", regno), regno,
                    "data_end marks the end of the packet; it may only be compared against, never dereferenced.");
    case Kind::MapValue: {
      const MapSpec* m = map_of(base);
      if (!m) return reject("map value without a map");
      if (write && base.rdonly)
        return reject(fmt::format("write into map forbidden, value_size={} off={} size={}", m->value_size,
                                  base.off + off, size),
                      regno, "This map (e.g. .rodata) is read-only for programs.");
      if (!check_region(regno, base, static_cast<int64_t>(base.off) + off, size, m->value_size, "map value"))
        return false;
      if (m->spin_lock_off >= 0 && direct) {
        int64_t lo = base.off + off + base.v.smin, hi = base.off + off + static_cast<int64_t>(base.v.umax) + size;
        if (lo < m->spin_lock_off + 4 && hi > m->spin_lock_off)
          return reject("bpf_spin_lock cannot be accessed directly by load/store", regno);
      }
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    }
    case Kind::Mem: {
      if (write && base.rdonly)
        return reject(fmt::format("cannot write into rdonly_mem (R{})", regno), regno);
      if (base.bflags & kBtfUntrusted) {
        // Kernel memory reached through a pointer to a non-struct: read with faulting loads, so its
        // bounds are not checked (the kernel's rdonly_untrusted_mem).
        if (!direct) return reject(fmt::format("R{} type=rdonly_untrusted_mem expected=fp, pkt, map_value, mem", regno), regno);
        btf_note_unchecked();
        if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
        return true;
      }
      if (!check_region(regno, base, static_cast<int64_t>(base.off) + off, size, base.mem_size, "memory"))
        return false;
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    }
    case Kind::FlowKeys:
      if (!check_region(regno, base, static_cast<int64_t>(base.off) + off, size, 56, "flow keys")) return false;
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    case Kind::Sock:
      if (write) return reject(fmt::format("cannot write into sock (R{})", regno), regno);
      if (!direct) return reject(fmt::format("R{} type=sock expected=fp, pkt, map_value, mem", regno), regno);
      if (!check_region(regno, base, static_cast<int64_t>(base.off) + off, size, 80, "sock")) return false;
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    case Kind::BtfId:
      if (base.btf_id && attach_) return btf_ptr_access(regno, base, off, size, write, direct, out);
      if (write || !direct) return reject(fmt::format("R{} cannot write or pass kernel object memory", regno), regno);
      if (strict())  // the kernel's check_ptr_to_btf_access without allow_ptr_leaks
        return reject(fmt::format("R{} kernel object (btf_id) access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN",
                                  regno),
                      regno,
                      "Reading a kernel object through a BTF pointer is not bounds-checked memory the program "
                      "owns; strict rules (for untrusted code) refuse it.");
      if (out) *out = Reg::scalar(loaded_value(size, sign_ext));
      return true;
    case Kind::NotInit:
      return reject(fmt::format("R{} !read_ok", regno));
    case Kind::Scalar:
      return reject(fmt::format("R{} invalid mem access 'scalar'", regno), regno);
    default:
      return reject(fmt::format("R{} invalid mem access '{}'", regno, type_str(base)), regno);
  }
}

bool Verifier::do_load(const Insn& in) {
  if (!check_reg_init(in.src)) return false;
  const Reg base = cur_.cur().regs[in.src];
  int size = in.info().size;
  bool sx = in.op == Op::LDXSW || in.op == Op::LDXSH || in.op == Op::LDXSB;
  InsnFacts& f = rep_.facts[pc_];
  BaseFact bf = base.kind == Kind::Ctx ? (base.off == 0 && base.v.is_const() && base.v.value() == 0 ? BaseFact::Ctx
                                                                                                      : BaseFact::CtxMoved)
                                       : BaseFact::NotCtx;
  f.base = f.in_bounds ? (f.base == bf ? bf : BaseFact::Unknown) : bf;
  in_value_reg_ = -1;
  Reg out;
  unchecked_load_ = false;
  if (!check_mem(in.src, base, in.off, size, Access::Read, nullptr, &out, sx)) return false;
  if (!unchecked_load_) f.in_bounds = true;
  if (sx && out.kind == Kind::Scalar) out.v = scalar_sext(out.v, size * 8, false);
  cur_.cur().regs[in.dst] = out;
  return true;
}

bool Verifier::do_store(const Insn& in) {
  if (!check_reg_init(in.dst)) return false;
  const Reg base = cur_.cur().regs[in.dst];
  int size = in.info().size;
  Reg value;
  if (in.info().kind == OpKind::StoreReg) {
    if (!check_reg_init(in.src)) return false;
    value = cur_.cur().regs[in.src];
    in_value_reg_ = in.src;
  } else {
    value = Reg::scalar(Scalar::constant(static_cast<uint64_t>(in.imm)));
    in_value_reg_ = -1;
  }
  if (size < 8 && value.kind != Kind::Scalar) {
    if (base.kind == Kind::Stack)
      return reject(fmt::format("invalid size of register spill ({} bytes of a pointer)", size), in.src);
    if (strict()) return reject(fmt::format("R{} partial copy of pointer", in.src), in.src);
    value = Reg::unknown();
  }
  InsnFacts& f = rep_.facts[pc_];
  BaseFact bf = base.kind == Kind::Ctx ? (base.off == 0 && base.v.is_const() && base.v.value() == 0 ? BaseFact::Ctx
                                                                                                      : BaseFact::CtxMoved)
                                       : BaseFact::NotCtx;
  f.base = f.in_bounds ? (f.base == bf ? bf : BaseFact::Unknown) : bf;
  if (!check_mem(in.dst, base, in.off, size, Access::Write, &value, nullptr)) return false;
  f.in_bounds = true;
  return true;
}

bool Verifier::do_atomic(const Insn& in) {
  if (!check_reg_init(in.dst) || !check_reg_init(in.src)) return false;
  const Reg base = cur_.cur().regs[in.dst];
  const Reg src = cur_.cur().regs[in.src];
  int size = in.info().size;
  bool cmpxchg = in.op == Op::ATOMIC_CMPXCHG32 || in.op == Op::ATOMIC_CMPXCHG64;
  bool fetch = (in.imm & 1) != 0;
  if (cmpxchg && !check_reg_init(0)) return false;
  switch (base.kind) {
    case Kind::Stack: case Kind::MapValue: case Kind::Mem: break;
    default:
      return reject(fmt::format("BPF_ATOMIC stores into R{} {} is not allowed", in.dst, kind_name(base.kind)), in.dst,
                    "Atomic operations work on the stack and on map values only.");
  }
  if (src.kind != Kind::Scalar) {
    if (strict()) return reject(fmt::format("R{} leaks addr into mem", in.src), in.src);
  }
  if (cmpxchg && cur_.cur().regs[0].kind != Kind::Scalar && strict())
    return reject("R0 leaks addr into mem", 0);
  rep_.facts[pc_].base = BaseFact::NotCtx;
  in_value_reg_ = -1;
  Reg old;
  if (!check_mem(in.dst, base, in.off, size, Access::Read, nullptr, &old)) return false;
  if (base.kind == Kind::Stack && old.kind != Kind::Scalar)
    return reject(fmt::format("atomic operation on a spilled pointer at R{}", in.dst), in.dst);
  Reg unk = Reg::unknown();
  if (!check_mem(in.dst, base, in.off, size, Access::Write, &unk, nullptr)) return false;
  rep_.facts[pc_].in_bounds = true;
  Reg result = Reg::scalar(size == 4 ? Scalar::urange(0, UINT32_MAX) : Scalar::unknown());
  if (cmpxchg) cur_.cur().regs[0] = result;
  else if (fetch) cur_.cur().regs[in.src] = result;
  return true;
}

bool Verifier::do_ld_abs(const Insn& in) {
  if (!type_.ld_abs)
    return reject(fmt::format("BPF_LD_[ABS|IND] instructions not allowed for this program type ({})", type_.name), -1,
                  "Legacy packet loads exist only for socket filters and tc programs. Read the packet through "
                  "ctx->data / ctx->data_end instead.");
  if (cur_.frames.size() > 1 && false) return reject("BPF_LD_[ABS|IND] in a subprogram");
  if (!check_reg_init(6)) return false;
  if (cur_.cur().regs[6].kind != Kind::Ctx)
    return reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb", 6,
                  "LD_ABS and LD_IND read the packet of the context held in r6; keep the context pointer in r6.");
  if (!cur_.refs.empty()) return reject("BPF_LD_[ABS|IND] cannot be mixed with socket references");
  if (cur_.lock_map) return reject("BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region");
  bool ind = in.op == Op::LDIND_W || in.op == Op::LDIND_H || in.op == Op::LDIND_B;
  if (ind) {
    if (!check_reg_init(in.src)) return false;
    // (The offset is not a verifier decision: the load checks it at run time, as in the kernel.)
    if (cur_.cur().regs[in.src].kind != Kind::Scalar && strict())
      return reject(fmt::format("R{} leaks addr into packet offset", in.src), in.src);
  }
  Frame& fr = cur_.cur();
  for (int r = 1; r <= 5; ++r) fr.regs[r] = Reg{};
  int size = in.info().size;
  fr.regs[0] = Reg::scalar(Scalar::urange(0, size >= 4 ? UINT32_MAX : (1u << (size * 8)) - 1));
  return true;
}

bool Verifier::btf_ctx_load(int regno, int32_t off, int size, bool write, Reg* out) {
  CtxArg a = ctx_arg_access(*attach_, off, size, write);
  if (!a.error.empty())
    return reject(a.error, regno,
                  "The context of this program is the u64 arguments of the function it attaches to, typed by "
                  "the function's BTF prototype: read an argument (or, in fexit / fmod_ret / lsm programs, the "
                  "return value after them) as a whole 8-byte slot; pointer arguments only with 8-byte loads; "
                  "they cannot be written.");
  if (!out) return true;
  if (!a.pointer) {
    *out = Reg::scalar(loaded_value(size, false));
    // An LSM hook's return value so far lies in the range its programs may return (the kernel's
    // bpf_lsm_get_retval_range).
    if (a.lsm_retval)
      *out = Reg::scalar(Scalar::srange(type_.ret.min, type_.ret.max));
    return true;
  }
  *out = Reg::ptr(a.nullable ? Kind::BtfIdOrNull : Kind::BtfId);
  out->btf_id = a.btf_id;
  out->bflags = a.trusted ? kBtfTrusted : 0;
  if (a.nullable) out->id = new_id();
  return true;
}

// The trust of a pointer read from a kernel object (the kernel's check_ptr_to_btf_access, as Linux
// 6.18 applies it). From an untrusted object: untrusted. From a trusted or RCU-protected one: what the
// BTF's per-field lists (`task_struct__safe_trusted`...) say of the member: trusted, RCU-protected, or,
// for the `_or_null` lists, the same but maybe NULL (the program must check it before using it); the
// RCU lists only in an RCU read section, which a non-sleepable program always is in and a sleepable
// one never is here (bpf_rcu_read_lock is a kfunc); any other member gives an untrusted object
// (readable, refused by helpers). From a plain object (fentry arguments, the socket casts' results):
// plain, untrusted when walked through a union.
uint8_t Verifier::walked_ptr_flags(const Reg& base, const BtfLoad& l, Reg* out) {
  if (base.bflags & kBtfUntrusted) return kBtfUntrusted;
  const uint8_t plain = l.untrusted ? kBtfUntrusted : 0;
  if (!(base.bflags & (kBtfTrusted | kBtfRcu)) && !base.ref) return plain;  // is_trusted_reg, is_rcu_reg
  const FieldTrust t = btf_field_trust(attach_->btf, base.btf_id, l.field, l.btf_id);
  if (attach_->sleepable && t != FieldTrust::Trusted && t != FieldTrust::TrustedOrNull) return kBtfUntrusted;
  switch (t) {
    case FieldTrust::Trusted: return l.untrusted ? kBtfUntrusted : kBtfTrusted;
    case FieldTrust::TrustedOrNull:
      out->kind = Kind::BtfIdOrNull;
      out->id = new_id();
      return l.untrusted ? kBtfUntrusted : kBtfTrusted;
    case FieldTrust::Rcu: return l.untrusted ? kBtfUntrusted : kBtfRcu;
    case FieldTrust::RcuOrNull:  // trusted even when walked through a union (the kernel's "always trust")
      out->kind = Kind::BtfIdOrNull;
      out->id = new_id();
      return kBtfRcu;
    case FieldTrust::None: break;
  }
  return kBtfUntrusted;
}

bool Verifier::btf_ptr_access(int regno, const Reg& base, int32_t off, int size, bool write, bool direct, Reg* out) {
  const struct btf* b = attach_->btf;
  const std::string tname = btf_struct_name(b, base.btf_id);
  if (!direct)
    return reject(fmt::format("R{} type=ptr_{} expected=fp, pkt, map_value, mem (kernel objects are not memory a "
                              "helper may read or write)",
                              regno, tname),
                  regno);
  if (strict())  // the kernel's check_ptr_to_btf_access without allow_ptr_leaks
    return reject(fmt::format("'struct {}' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN", tname), regno,
                  "Reading a kernel object through a BTF pointer is not bounds-checked memory the program "
                  "owns; strict rules (for untrusted code) refuse it.");
  if (!opts_.gpl)
    return reject(fmt::format("Cannot access kernel 'struct {}' from non-GPL compatible program", tname), regno,
                  "Reading kernel objects through BTF pointers is offered to GPL-compatible programs only.");
  const int64_t o = static_cast<int64_t>(base.off) + off;
  if (o < 0)
    return reject(fmt::format("R{} is ptr_{} invalid negative access: off={}", regno, tname, o), regno);
  if (!base.v.is_const() || base.v.value() != 0)
    return reject(fmt::format("R{} is ptr_{} invalid variable offset: off={}, var_off={}", regno, tname, o,
                              base.v.str()),
                  regno,
                  "Fields of kernel objects are read at constant offsets; a variable index into one cannot be "
                  "checked against the struct's layout.");
  if (write)
    return reject("only read is supported", regno,
                  "Kernel objects reached through BTF pointers are read-only for this program type.");
  BtfLoad l = btf_struct_access(b, base.btf_id, o, size);
  if (!l.error.empty()) return reject(l.error, regno);
  btf_note_unchecked();
  if (!out) return true;
  switch (l.what) {
    case BtfLoad::Scalar: *out = Reg::scalar(loaded_value(size, false)); break;
    case BtfLoad::Ptr:
      *out = Reg::ptr(Kind::BtfId);
      out->btf_id = l.btf_id;
      out->bflags = walked_ptr_flags(base, l, out);
      break;
    case BtfLoad::UntrustedMem:
      *out = Reg::ptr(Kind::Mem);
      out->rdonly = true;
      out->bflags = kBtfUntrusted;
      out->mem_size = 0;
      break;
  }
  return true;
}

}  // namespace bpfvm::verifier
