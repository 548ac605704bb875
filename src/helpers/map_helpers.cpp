// Map helpers, ring buffers, perf event output, callbacks (loop, for_each_map_elem) and tail calls.
// A map argument is a bpfvm::Map* (the loader relocates map lddw's to the Map object).
#include <fmt/format.h>

#include <vector>

#include "bpfvm/map.hpp"
#include "helpers/impl.hpp"

namespace bpfvm::helpers {

namespace {

Map* as_map(uint64_t v) { return reinterpret_cast<Map*>(v); }
template <class T>
T* ptr(uint64_t v) {
  return reinterpret_cast<T*>(v);
}

bool is_map_in_map(const Map* m) {
  uint32_t t = m->spec().type;
  return t == kMapArrayOfMaps || t == kMapHashOfMaps;
}

uint64_t map_lookup_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t) {
  Map* m = as_map(map);
  void* v = m->lookup_fn()(m, ptr<const void>(key));
  if (v && !is_map_in_map(m))
    allow(v, m->spec().value_size, !(m->spec().flags & kMapFRdonlyProg), "map value");
  return reinterpret_cast<uint64_t>(v);
}

uint64_t map_update_elem(uint64_t map, uint64_t key, uint64_t value, uint64_t flags, uint64_t) {
  return static_cast<uint64_t>(as_map(map)->update(ptr<const void>(key), ptr<const void>(value), flags));
}

uint64_t map_delete_elem(uint64_t map, uint64_t key, uint64_t, uint64_t, uint64_t) {
  return static_cast<uint64_t>(as_map(map)->remove(ptr<const void>(key)));
}

uint64_t map_push_elem(uint64_t map, uint64_t value, uint64_t flags, uint64_t, uint64_t) {
  return static_cast<uint64_t>(as_map(map)->push(ptr<const void>(value), flags));
}

uint64_t map_pop_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return static_cast<uint64_t>(as_map(map)->pop(ptr<void>(value)));
}

uint64_t map_peek_elem(uint64_t map, uint64_t value, uint64_t, uint64_t, uint64_t) {
  return static_cast<uint64_t>(as_map(map)->peek(ptr<void>(value)));
}

uint64_t map_lookup_percpu_elem(uint64_t map, uint64_t key, uint64_t cpu, uint64_t, uint64_t) {
  Map* m = as_map(map);
  if (cpu >= 0xffffffffull) return 0;
  void* v = m->lookup_percpu(ptr<const void>(key), static_cast<uint32_t>(cpu));
  if (v) allow(v, m->spec().value_size, true, "map value");
  return reinterpret_cast<uint64_t>(v);
}

// ---- callbacks -------------------------------------------------------------------------------------

// Calls the program's function at instruction `insn`; on failure records the fault (the engine
// reports it) and returns nullopt.
std::optional<uint64_t> call_back(int64_t insn, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                  const char* helper) {
  RunContext* ctx = current_run();
  if (!ctx || !ctx->call_function) {
    set_helper_fault(make_error(ErrorCode::Runtime,
                                fmt::format("{}: the engine provides no way to call back into the program", helper)));
    return std::nullopt;
  }
  auto r = ctx->call_function(insn, a1, a2, a3, a4, a5);
  if (!r) {
    Diagnostic d = r.error();
    d.message = fmt::format("in the callback of {}: {}", helper, d.message);
    set_helper_fault(std::move(d));
    return std::nullopt;
  }
  return *r;
}

constexpr uint64_t kBpfMaxLoops = 1ull << 23;  // BPF_MAX_LOOPS

uint64_t loop(uint64_t nr_loops, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags, uint64_t) {
  if (flags) return neg(kEINVAL);
  if (nr_loops > kBpfMaxLoops) return neg(kE2BIG);
  uint64_t i = 0;
  for (; i < nr_loops; ++i) {
    auto r = call_back(static_cast<int64_t>(callback_fn), i, callback_ctx, 0, 0, 0, "bpf_loop");
    if (!r) return neg(kEFAULT);
    if (*r) return i + 1;
  }
  return i;
}

struct ForEachState {
  Map* map;
  int64_t insn;
  uint64_t cb_ctx;
  bool failed = false;
};

long for_each_cb(void* state, const void* key, void* value) {
  auto* s = static_cast<ForEachState*>(state);
  allow(key, s->map->spec().key_size, false, "map key");
  allow(value, s->map->spec().value_size, true, "map value");
  auto r = call_back(s->insn, reinterpret_cast<uint64_t>(s->map), reinterpret_cast<uint64_t>(key),
                     reinterpret_cast<uint64_t>(value), s->cb_ctx, 0, "bpf_for_each_map_elem");
  if (!r) {
    s->failed = true;
    return 1;
  }
  return *r ? 1 : 0;
}

uint64_t for_each_map_elem(uint64_t map, uint64_t callback_fn, uint64_t callback_ctx, uint64_t flags, uint64_t) {
  if (flags) return neg(kEINVAL);
  ForEachState s{as_map(map), static_cast<int64_t>(callback_fn), callback_ctx};
  long n = s.map->for_each(&for_each_cb, &s);
  if (s.failed) return neg(kEFAULT);
  return static_cast<uint64_t>(n);
}

// ---- tail calls --------------------------------------------------------------------------------------

uint64_t tail_call(uint64_t ctx, uint64_t map, uint64_t index, uint64_t, uint64_t) {
  auto* pa = as_prog_array(as_map(map));
  if (!pa) return 0;
  uint32_t idx = static_cast<uint32_t>(index);  // the kernel compares the u32 index
  if (idx >= pa->spec().max_entries) return 0;
  RunContext* rc = current_run();
  if (!rc || rc->tail_calls >= kMaxTailCalls) return 0;
  const void* prog = pa->prog_at(idx);
  if (!prog) return 0;
  ++rc->tail_calls;
  return reinterpret_cast<uint64_t>(prog);
}

// ---- ring buffers ----------------------------------------------------------------------------------

// Reserved records of this thread and their ring (bpf_ringbuf_submit/discard get only the record).
// The first kInline live reservations sit in a trivially destructible thread-local array (no TLS
// wrapper call, no allocation: programs usually hold one record at a time); more go to `t_more`.
struct Reserved {
  void* rec;
  RingbufMap* map;
};
constexpr uint32_t kInline = 16;
struct ReservedInline {
  Reserved r[kInline];
  uint32_t n;
};
thread_local constinit ReservedInline t_res __attribute__((tls_model("initial-exec"))) = {};
thread_local std::vector<Reserved> t_more;

void push_reserved(void* rec, RingbufMap* m) {
  ReservedInline& t = t_res;
  if (t.n < kInline) t.r[t.n++] = Reserved{rec, m};
  else t_more.push_back(Reserved{rec, m});
}

RingbufMap* take_reserved(void* rec) {
  ReservedInline& t = t_res;
  if (t.n == kInline && !t_more.empty()) {
    auto& v = t_more;
    for (size_t i = v.size(); i-- > 0;) {
      if (v[i].rec == rec) {
        RingbufMap* m = v[i].map;
        v.erase(v.begin() + static_cast<long>(i));
        return m;
      }
    }
  }
  for (uint32_t i = t.n; i-- > 0;) {
    if (t.r[i].rec == rec) {
      RingbufMap* m = t.r[i].map;
      for (uint32_t j = i + 1; j < t.n; ++j) t.r[j - 1] = t.r[j];
      --t.n;
      if (t.n == kInline - 1 && !t_more.empty()) {  // refill the array from the overflow
        t.r[t.n++] = t_more.front();
        t_more.erase(t_more.begin());
      }
      return m;
    }
  }
  return nullptr;
}

RingbufMap* as_ringbuf(uint64_t map) { return bpfvm::as_ringbuf(as_map(map)); }

uint64_t ringbuf_output(uint64_t map, uint64_t data, uint64_t size, uint64_t flags, uint64_t) {
  RingbufMap* rb = as_ringbuf(map);
  if (!rb) return neg(kEINVAL);
  return static_cast<uint64_t>(rb->output(ptr<const void>(data), size, flags));
}

uint64_t ringbuf_reserve(uint64_t map, uint64_t size, uint64_t flags, uint64_t, uint64_t) {
  RingbufMap* rb = as_ringbuf(map);
  if (!rb) return 0;
  void* rec = rb->reserve(size, flags);
  if (rec) {
    push_reserved(rec, rb);
    allow(rec, size, true, "ringbuf record");
  }
  return reinterpret_cast<uint64_t>(rec);
}


uint64_t ringbuf_submit(uint64_t data, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  void* rec = ptr<void>(data);
  if (RingbufMap* m = take_reserved(rec)) m->submit(rec, flags);
  else set_helper_fault(make_error(ErrorCode::Runtime, "bpf_ringbuf_submit: pointer is not a reserved ringbuf record"));
  return 0;
}

uint64_t ringbuf_discard(uint64_t data, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  void* rec = ptr<void>(data);
  if (RingbufMap* m = take_reserved(rec)) m->discard(rec, flags);
  else set_helper_fault(make_error(ErrorCode::Runtime, "bpf_ringbuf_discard: pointer is not a reserved ringbuf record"));
  return 0;
}

uint64_t ringbuf_query(uint64_t map, uint64_t flags, uint64_t, uint64_t, uint64_t) {
  RingbufMap* rb = as_ringbuf(map);
  if (!rb) return 0;
  return rb->query(flags);
}

// ---- perf event output (tracing flavour; the packet flavours live in net_helpers.cpp) ----------------

constexpr uint64_t kIndexMask = 0xffffffffull;  // BPF_F_INDEX_MASK

uint64_t perf_event_output(uint64_t ctx, uint64_t map, uint64_t flags, uint64_t data, uint64_t size) {
  if (flags & ~kIndexMask) return neg(kEINVAL);
  auto* pe = as_perf_event_array(as_map(map));
  if (!pe) return neg(kEINVAL);
  return static_cast<uint64_t>(pe->output(flags, ptr<const void>(data), size));
}

// ---- spin locks -------------------------------------------------------------------------------------

uint64_t spin_lock(uint64_t lock, uint64_t, uint64_t, uint64_t, uint64_t) {
  map_spin_lock(ptr<void>(lock));
  return 0;
}
uint64_t spin_unlock(uint64_t lock, uint64_t, uint64_t, uint64_t, uint64_t) {
  map_spin_unlock(ptr<void>(lock));
  return 0;
}

}  // namespace

void map_helper_rows(void (*add)(int32_t, HelperFn)) {
  add(1, &map_lookup_elem);
  add(2, &map_update_elem);
  add(3, &map_delete_elem);
  add(12, &tail_call);
  add(25, &perf_event_output);
  add(87, &map_push_elem);
  add(88, &map_pop_elem);
  add(89, &map_peek_elem);
  add(93, &spin_lock);
  add(94, &spin_unlock);
  add(130, &ringbuf_output);
  add(131, &ringbuf_reserve);
  add(132, &ringbuf_submit);
  add(133, &ringbuf_discard);
  add(134, &ringbuf_query);
  add(164, &for_each_map_elem);
  add(181, &loop);
  add(195, &map_lookup_percpu_elem);
}

}  // namespace bpfvm::helpers
