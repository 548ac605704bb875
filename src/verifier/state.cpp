#include "verifier/state.hpp"

#include <fmt/format.h>

#include <cstring>
#include <utility>

namespace bpfvm::verifier {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::NotInit: return "not initialised";
    case Kind::Scalar: return "scalar";
    case Kind::Ctx: return "ctx";
    case Kind::Stack: return "fp";
    case Kind::Packet: return "pkt";
    case Kind::PacketMeta: return "pkt_meta";
    case Kind::PacketEnd: return "pkt_end";
    case Kind::MapValue: return "map_value";
    case Kind::MapValueOrNull: return "map_value_or_null";
    case Kind::MapPtr: return "map_ptr";
    case Kind::MapPtrOrNull: return "map_ptr_or_null";
    case Kind::Mem: return "mem";
    case Kind::MemOrNull: return "mem_or_null";
    case Kind::Sock: return "sock";
    case Kind::SockOrNull: return "sock_or_null";
    case Kind::FlowKeys: return "flow_keys";
    case Kind::Func: return "func";
    case Kind::BtfId: return "ptr_";
    case Kind::BtfIdOrNull: return "ptr_or_null_";
  }
  return "?";
}

Kind non_null(Kind k) {
  switch (k) {
    case Kind::MapValueOrNull: return Kind::MapValue;
    case Kind::MapPtrOrNull: return Kind::MapPtr;
    case Kind::MemOrNull: return Kind::Mem;
    case Kind::SockOrNull: return Kind::Sock;
    case Kind::BtfIdOrNull: return Kind::BtfId;
    default: return k;
  }
}

size_t State::approx_bytes() const {
  size_t n = sizeof(State) + refs.size() * sizeof(RefState);
  for (const Frame& f : frames) n += sizeof(Frame) + f.stack.size() * sizeof(Slot);
  return n;
}

namespace {

struct IdMap {
  std::vector<std::pair<uint32_t, uint32_t>> m;
  uint32_t fresh_ = 0x40000000u;
  uint32_t fresh() { return ++fresh_; }  // an id no register has (a scalar of `cur` without id is unique)
  bool check(uint32_t a, uint32_t b) {
    for (auto& [x, y] : m) {
      if (x == a) return y == b;
      if (y == b) return false;
    }
    m.emplace_back(a, b);
    return true;
  }
};

bool reg_covered(const Reg& o, const Reg& c, IdMap& ids, bool precise = true) {
  if (o.kind == Kind::NotInit) return true;
  if (o.kind != c.kind) return false;
  if (o.kind == Kind::Scalar) {
    if ((o.id == kMemLenId) != (c.id == kMemLenId)) return false;  // linked to the memory length
    if (!precise) return true;
    if (!o.v.contains(c.v)) return false;
    if (o.id != 0 && !o.v.is_const()) {
      // An unlinked scalar of `cur` is linked with nothing: it maps to a fresh id, so only another
      // register of `old` with the same id (linked there) makes it fail.
      if (!ids.check(o.id, c.id != 0 ? c.id : ids.fresh())) return false;
    }
    return true;
  }
  if (o.off != c.off || o.map != c.map || o.frame != c.frame || o.rdonly != c.rdonly || o.mem_size != c.mem_size ||
      o.func != c.func || o.btf_id != c.btf_id || o.bflags != c.bflags)
    return false;
  if (!o.v.contains(c.v)) return false;
  if (o.kind == Kind::Packet || o.kind == Kind::PacketMeta) {
    if (c.range < o.range) return false;
    if (!ids.check(o.id, c.id)) return false;
  } else if (is_or_null(o.kind) || o.id != 0 || c.id != 0) {
    if (!ids.check(o.id, c.id)) return false;
  }
  if (o.ref != 0 || c.ref != 0) {
    if (!ids.check(o.ref | 0x80000000u, c.ref | 0x80000000u)) return false;
  }
  return true;
}

bool byte_covered(uint8_t o, uint8_t c, const Slot& os, const Slot& cs, bool precise, bool uninit_ok) {
  if (o == kStackInvalid) return true;
  // Under root rules an uninitialised byte reads as an unknown one (the kernel's allow_uninit_stack).
  bool c_init = c == kStackMisc || c == kStackZero || (c == kStackSpill && cs.spill.kind == Kind::Scalar) ||
                (uninit_ok && c == kStackInvalid);
  if (o == kStackMisc) return c_init;
  if (!precise && (o == kStackZero || (o == kStackSpill && os.spill.kind == Kind::Scalar))) return c_init;
  return o == c;
}

bool slot_covered(const Slot& o, const Slot& c, IdMap& ids, bool precise, bool uninit_ok) {
  bool spill = false;
  for (int i = 0; i < 8; ++i) {
    if (!byte_covered(o.bytes[i], c.bytes[i], o, c, precise, uninit_ok)) return false;
    if (o.bytes[i] == kStackSpill) spill = true;
  }
  if (spill && !precise && o.spill.kind == Kind::Scalar) return true;
  if (spill) {
    if (o.spill_size != c.spill_size) return false;
    if (!reg_covered(o.spill, c.spill, ids)) return false;
  }
  return true;
}

}  // namespace

bool state_covered(const State& old, const State& cur, const std::vector<LiveSet>& live,
                   const std::vector<LiveSet>& precise, bool stack_precise, uint64_t slots_live,
                   const uint64_t* slots_precise, bool uninit_ok) {
  if (old.frames.size() != cur.frames.size()) return false;
  if (old.lock_map != cur.lock_map) return false;
  if (old.refs.size() != cur.refs.size()) return false;
  if (!old.mem_len.contains(cur.mem_len)) return false;
  // A necessary condition first, cheap and where most comparisons fail: every live register covered
  // on its own (the full check below adds the links between registers and the stack).
  {
    IdMap ids0;
    for (size_t f = 0; f < old.frames.size(); ++f) {
      const LiveSet l = f < live.size() ? live[f] : 0x7ff;
      const LiveSet p = f < precise.size() ? precise[f] : 0x7ff;
      if (old.frames[f].callsite != cur.frames[f].callsite) return false;
      for (int r = 0; r < 10; ++r)
        if ((l >> r) & 1)
          if (!reg_covered(old.frames[f].regs[r], cur.frames[f].regs[r], ids0, (p >> r) & 1)) return false;
    }
  }
  IdMap ids;
  if (old.lock_map && !ids.check(old.lock_id, cur.lock_id)) return false;
  // Ids of precise scalars (copies share an id): a branch on an imprecise copy refines the precise
  // register too, so such a copy must be linked the same way in `cur` (its range need not match).
  uint32_t linked[8];
  int nlinked = 0;
  bool linked_overflow = false;
  auto scalar_linked = [](const Reg& r) {
    return r.kind == Kind::Scalar && r.id != 0 && r.id != kMemLenId && !r.v.is_const();
  };
  auto add_linked = [&](const Reg& o) {
    if (!scalar_linked(o)) return;
    for (int k = 0; k < nlinked; ++k)
      if (linked[k] == o.id) return;
    if (nlinked == 8) linked_overflow = true;
    else linked[nlinked++] = o.id;
  };
  for (size_t f = 0; f < old.frames.size(); ++f) {
    LiveSet l = f < live.size() ? live[f] : 0x7ff;
    LiveSet p = f < precise.size() ? precise[f] : 0x7ff;
    for (int r = 0; r < 10; ++r)
      if ((l & p) & (1u << r)) add_linked(old.frames[f].regs[r]);
    // Precise spilled scalars too: a branch on an imprecise copy refines them.
    const auto& st = old.frames[f].stack;
    uint64_t m = (f == 0 ? slots_live : ~uint64_t{0}) &
                 (stack_precise ? ~uint64_t{0} : (slots_precise ? slots_precise[f] : 0));
    for (; m; m &= m - 1) {
      const size_t i = static_cast<size_t>(__builtin_ctzll(m));
      if (i >= st.size()) break;
      if (st[i].bytes[0] == kStackSpill) add_linked(st[i].spill);
    }
  }
  auto must_link = [&](const Reg& o) {
    if (!scalar_linked(o)) return false;
    if (linked_overflow) return true;
    for (int k = 0; k < nlinked; ++k)
      if (linked[k] == o.id) return true;
    return false;
  };
  auto link_ok = [&](const Reg& o, const Reg& c) { return c.kind == Kind::Scalar && c.id != 0 && ids.check(o.id, c.id); };
  for (size_t f = 0; f < old.frames.size(); ++f) {
    const Frame& of = old.frames[f];
    const Frame& cf = cur.frames[f];
    if (of.callsite != cf.callsite || of.subprog != cf.subprog || of.callback != cf.callback) return false;
    // An invocation with more of the helper's invocations behind it has fewer ahead: it covers no
    // earlier one (the kernel's callback_depth).
    if (of.cb_iters > cf.cb_iters) return false;
    LiveSet l = f < live.size() ? live[f] : 0x7ff;
    LiveSet p = f < precise.size() ? precise[f] : 0x7ff;
    for (int r = 0; r < 10; ++r) {
      if (!(l & (1u << r))) continue;
      const bool prec = (p >> r) & 1;
      if (!reg_covered(of.regs[r], cf.regs[r], ids, prec)) return false;
      if (!prec && nlinked && must_link(of.regs[r]) && !link_ok(of.regs[r], cf.regs[r])) return false;
    }
    static const Slot empty{};
    size_t n = std::max(of.stack.size(), cf.stack.size());
    for (size_t i = 0; i < n; ++i) {
      if (f == 0 && i < 64 && !((slots_live >> i) & 1)) continue;  // dead: no path below reads it
      const bool sprec = stack_precise || (slots_precise && i < 64 && ((slots_precise[f] >> i) & 1));
      const Slot& os = i < of.stack.size() ? of.stack[i] : empty;
      const Slot& cs = i < cf.stack.size() ? cf.stack[i] : empty;
      // The same byte types without a spilled register cover each other.
      {
        uint64_t ob, cb;
        std::memcpy(&ob, os.bytes.data(), 8);
        std::memcpy(&cb, cs.bytes.data(), 8);
        if (ob == cb && os.bytes[0] != kStackSpill && os.spill_size == 0 && cs.spill_size == 0) continue;
      }
      if (!slot_covered(os, cs, ids, sprec, uninit_ok)) return false;
      if (!sprec && nlinked && os.bytes[0] == kStackSpill && must_link(os.spill) &&
          !(cs.bytes[0] == kStackSpill && link_ok(os.spill, cs.spill)))
        return false;
    }
  }
  for (size_t i = 0; i < old.refs.size(); ++i)
    if (!ids.check(old.refs[i].id | 0x80000000u, cur.refs[i].id | 0x80000000u)) return false;
  return true;
}

bool state_same(const State& a, const State& b) {
  if (a.frames.size() != b.frames.size() || a.refs != b.refs || a.lock_map != b.lock_map || !(a.mem_len == b.mem_len))
    return false;
  for (size_t f = 0; f < a.frames.size(); ++f) {
    const Frame& x = a.frames[f];
    const Frame& y = b.frames[f];
    if (x.callsite != y.callsite || x.cb_iters != y.cb_iters || x.regs != y.regs) return false;
    size_t n = std::max(x.stack.size(), y.stack.size());
    static const Slot empty{};
    for (size_t i = 0; i < n; ++i) {
      const Slot& s1 = i < x.stack.size() ? x.stack[i] : empty;
      const Slot& s2 = i < y.stack.size() ? y.stack[i] : empty;
      if (!(s1 == s2)) return false;
    }
  }
  return true;
}

namespace {
inline void mix(uint64_t& h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
}
void hash_reg(uint64_t& h, const Reg& r) {
  mix(h, static_cast<uint64_t>(r.kind) | (static_cast<uint64_t>(r.frame) << 8) | (static_cast<uint64_t>(r.rdonly) << 16));
  if (r.kind == Kind::NotInit) return;
  // A subset of the fields (equal registers still hash equal; a collision costs one comparison).
  mix(h, static_cast<uint32_t>(r.off) ^ (static_cast<uint64_t>(static_cast<uint32_t>(r.map)) << 32) ^
             (static_cast<uint64_t>(static_cast<uint32_t>(r.range)) << 16));
  mix(h, r.v.t.value ^ (r.v.t.mask * 0x9e3779b97f4a7c15ull));
  mix(h, r.v.umin ^ (r.v.umax << 7) ^ (r.v.umax >> 57));
}
}  // namespace

uint64_t state_hash(const State& s) {
  uint64_t h = s.frames.size();
  for (const Frame& f : s.frames) {
    mix(h, static_cast<uint32_t>(f.callsite));
    for (const Reg& r : f.regs) hash_reg(h, r);
    for (const Slot& sl : f.stack) {
      uint64_t b = 0;
      for (uint8_t x : sl.bytes) b = b << 8 | x;
      if (b == 0) continue;  // invalid slots and missing slots are the same
      mix(h, b);
      if (sl.bytes[0] == kStackSpill) hash_reg(h, sl.spill);
    }
  }
  for (const RefState& r : s.refs) mix(h, r.id);
  mix(h, s.lock_map);
  return h;
}

std::string reg_str(const Reg& r, const std::vector<MapSpec>* maps) {
  if (r.kind == Kind::NotInit) return "?";
  if (r.kind == Kind::Scalar) {
    std::string s = r.v.str();
    if (r.v.is_const()) return s;
    return "scalar" + (s.empty() ? std::string("()") : s) + (r.id ? fmt::format("#{}", r.id) : "");
  }
  if (r.kind == Kind::Stack) {
    std::string s = fmt::format("fp{}", r.off);
    if (!r.v.is_const() || r.v.value() != 0) s += r.v.str();
    if (r.frame) s = fmt::format("frame{}:", r.frame) + s;
    return s;
  }
  std::vector<std::string> parts;
  if (r.off) parts.push_back(fmt::format("off={}", r.off));
  if (r.kind == Kind::Packet || r.kind == Kind::PacketMeta) {
    if (r.id) parts.push_back(fmt::format("id={}", r.id));
    parts.push_back(fmt::format("r={}", r.range));
  } else if (r.id) {
    parts.push_back(fmt::format("id={}", r.id));
  }
  if (r.ref) parts.push_back(fmt::format("ref_obj_id={}", r.ref));
  if (r.map >= 0) {
    if (maps && r.map < static_cast<int32_t>(maps->size())) {
      const MapSpec& m = (*maps)[r.map];
      if (!m.name.empty()) parts.push_back("map=" + m.name);
      parts.push_back(fmt::format("ks={},vs={}", m.key_size, m.value_size));
    } else {
      parts.push_back(fmt::format("map={}", r.map));
    }
  }
  if (r.kind == Kind::Mem || r.kind == Kind::MemOrNull) parts.push_back(fmt::format("sz={}", r.mem_size));
  if (r.kind == Kind::Func) parts.push_back(fmt::format("insn={}", r.func));
  if (r.btf_id) parts.push_back(fmt::format("btf_id={}", r.btf_id));
  if (!r.v.is_const() || r.v.value() != 0) {
    std::string v = r.v.str();
    if (!v.empty()) parts.push_back("var=" + v);
  }
  std::string out = type_str(r) + "(";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "," : "") + parts[i];
  return out + ")";
}

std::string type_str(const Reg& r) {
  std::string out = kind_name(r.kind);
  if (r.bflags & kBtfRcu) out = "rcu_" + out;
  if (r.bflags & kBtfTrusted) out = "trusted_" + out;
  if (r.bflags & kBtfUntrusted) out = "untrusted_" + out;
  if (r.rdonly) out = "rdonly_" + out;
  return out;
}

std::string slot_str(const Slot& s) {
  std::string out;
  for (int i = 7; i >= 0; --i) {
    switch (s.bytes[i]) {
      case kStackInvalid: out += '?'; break;
      case kStackMisc: out += 'm'; break;
      case kStackZero: out += '0'; break;
      case kStackSpill: out += 'r'; break;
    }
  }
  return out;
}

std::string state_str(const State& s, const std::vector<MapSpec>* maps) {
  std::string out;
  for (size_t f = 0; f < s.frames.size(); ++f) {
    const Frame& fr = s.frames[f];
    if (s.frames.size() > 1) out += fmt::format("{}frame{}:", out.empty() ? "" : " ", f);
    for (int r = 0; r < 11; ++r) {
      if (fr.regs[r].kind == Kind::NotInit) continue;
      if (!out.empty() && out.back() != ':') out += ' ';
      out += r == 10 ? "R10=fp0" : fmt::format("R{}={}", r, reg_str(fr.regs[r], maps));
    }
    for (size_t i = 0; i < fr.stack.size(); ++i) {
      const Slot& sl = fr.stack[i];
      bool any = false;
      for (uint8_t b : sl.bytes) any |= b != kStackInvalid;
      if (!any) continue;
      int off = -8 * static_cast<int>(i + 1);
      if (sl.bytes[0] == kStackSpill && sl.spill_size == 8)
        out += fmt::format(" fp{}={}", off, reg_str(sl.spill, maps));
      else
        out += fmt::format(" fp{}={}", off, slot_str(sl));
    }
  }
  for (const RefState& r : s.refs) out += fmt::format(" refs={}", r.id);
  return out;
}

}  // namespace bpfvm::verifier
