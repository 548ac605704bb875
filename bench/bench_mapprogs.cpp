// Map programs benchmark: BPF C programs that do map operations in a loop — hash map
// lookups, hash map updates of present keys, hash map inserts of new keys + deletes, array lookups,
// ring buffer reserve+submit, ring buffer output, lookups through maps of maps — run in bpfvm
// (interpreter and JIT, through the runtime API: load_object_file → instantiate → prepare_program
// → test_run with repeat) and in the kernel (the same object's maps created with bpf(), the
// program loaded with BPF_PROG_LOAD, timed by BPF_PROG_TEST_RUN with repeat). Prints ns per map
// operation side by side and the ratio to the kernel; the target is bpfvm's JIT faster than the kernel (ratio < 1).
//
//   ninja -C build bench_mapprogs && build/bench_mapprogs [--trials N] [--ms M] [--only NAME] [--no-verify]
// (--no-verify: prepare without bpfvm's verifier — the interpreter column then is the checked
// interpreter, under the default instruction budget; the JIT refuses unverified code, so its column
// stays empty with a note.)
//
// Programs: bench/progs/map_{hash,array,ringbuf,mim}.bpf.c (XDP, 256 operations per run, see
// bench/progs/map_bench.h), compiled by the build into build/progs. Both sides start from the same
// map contents (keys 0..1023, value key * 3 + 1) and must return the same value (checked before
// timing; the programs that sum what they looked up are checked against the expected sum too).
// Maps of maps (map_mim.bpf.c): the outer maps' slots come from the object's `values` initialiser,
// filled by bpfvm's loader (private, and pinned: the inner maps pinned too) and here for the
// kernel (its maps of maps created with an inner template fd, slots set to the inner maps' fds). ns/op = (average ns per run) / (operations per run): both the kernel's and bpfvm's
// per-run harness cost is included, spread over the run's operations. Each trial is one test_run
// with `repeat` calibrated to last about --ms milliseconds; the interpreter, JIT and kernel trials
// are interleaved (one of each per round, in alternating order) so that load changes hit all columns alike; the table
// shows the minimum over --trials trials during which the thread was not preempted (bpfvm's
// test_run measures wall time, which preemption inflates; the kernel's timer stops while it
// reschedules).
// Ring buffers: user space consumes every record (reading its header and first word) between
// trials, in bpfvm with RingbufMap::consume, in the kernel through the ring's mmap()ed pages, and
// a trial writes at most 1 MiB of records in every column (see repeat_cap: the same cache
// footprint for every engine, and the 16 MiB ring never fills).
// The kernel column is skipped (n/a, with the reason) when bpf() is unusable here.
// "jit pinned" runs the same program in the JIT on the object's maps created pinned (in the store,
// shared memory under /dev/shm) instead of private: target at most 1.2x the private maps' JIT.
#include <linux/bpf.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <filesystem>

#include "bpfvm/object.hpp"
#include "bpfvm/runtime.hpp"
#include "kernel/oracle.hpp"
#include "progs/map_bench.h"

using namespace bpfvm;

namespace {

int g_trials = 11;
bool g_verify = true;
double g_trial_ms = 5;

struct Case {
  const char* name;
  const char* object;
  const char* function;
  uint32_t ops_per_run;
  const char* what;
  bool sums_values = false;  // returns the sum of the values of keys MAP_BENCH_KEY(0..ops-1) (checked)
};

const Case kCases[] = {
    {"hash_lookup", "map_hash.bpf.o", "map_hash_lookup", MAP_BENCH_OPS, "bpf_map_lookup_elem, hash, present keys", true},
    {"hash_update", "map_hash.bpf.o", "map_hash_update", MAP_BENCH_OPS, "bpf_map_update_elem BPF_ANY, hash, present keys"},
    {"hash_insert_delete", "map_hash.bpf.o", "map_hash_insert_delete", 2 * MAP_BENCH_OPS,
     "update BPF_ANY of a new key + delete, hash (per op)"},
    {"array_lookup", "map_array.bpf.o", "map_array_lookup", MAP_BENCH_OPS, "bpf_map_lookup_elem, array", true},
    {"ringbuf_reserve_submit", "map_ringbuf.bpf.o", "map_ringbuf_reserve_submit", MAP_BENCH_OPS,
     "bpf_ringbuf_reserve + submit, 16-byte record"},
    {"ringbuf_output", "map_ringbuf.bpf.o", "map_ringbuf_output", MAP_BENCH_OPS, "bpf_ringbuf_output, 16-byte record"},
    {"array_of_maps_lookup", "map_mim.bpf.o", "map_array_of_maps_lookup", MAP_BENCH_OPS,
     "array_of_maps lookup (4 slots) + array lookup in the inner map (per op: both)", true},
    {"hash_of_maps_lookup", "map_mim.bpf.o", "map_hash_of_maps_lookup", MAP_BENCH_OPS,
     "hash_of_maps lookup (4 keys) + array lookup in the inner map (per op: both)", true},
};

constexpr uint64_t kRecordBytes = 24;  // 8-byte header + 16-byte event

std::vector<uint8_t> packet() {
  std::vector<uint8_t> p(64, 0);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i);
  return p;
}

bool fillable(uint32_t type) { return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_ARRAY; }

// ---- the kernel side --------------------------------------------------------------------------

// A kernel ring buffer's pages mapped into this process (the layout libbpf's ring_buffer uses:
// consumer page read-write at offset 0, producer page and the data area twice, read-only, after it).
struct KernelRing {
  uint8_t* cons_page = nullptr;
  uint8_t* prod_area = nullptr;
  size_t size = 0;
  size_t page = 0;
  bool map(int fd, size_t ring_size) {
    page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size = ring_size;
    void* c = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c == MAP_FAILED) return false;
    void* p = mmap(nullptr, page + 2 * size, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(page));
    if (p == MAP_FAILED) {
      munmap(c, page);
      return false;
    }
    cons_page = static_cast<uint8_t*>(c);
    prod_area = static_cast<uint8_t*>(p);
    return true;
  }
  ~KernelRing() {
    if (cons_page) munmap(cons_page, page);
    if (prod_area) munmap(prod_area, page + 2 * size);
  }
  // Consumes every committed record (reads its length and first word); returns how many.
  uint64_t consume(uint64_t* checksum) {
    std::atomic_ref<uint64_t> cons(*reinterpret_cast<uint64_t*>(cons_page));
    std::atomic_ref<uint64_t> prod(*reinterpret_cast<uint64_t*>(prod_area));
    const uint8_t* data = prod_area + page;
    uint64_t c = cons.load(std::memory_order_acquire), n = 0;
    uint64_t p = prod.load(std::memory_order_acquire);
    while (c < p) {
      std::atomic_ref<uint32_t> hdr(*reinterpret_cast<uint32_t*>(const_cast<uint8_t*>(data + (c & (size - 1)))));
      uint32_t len = hdr.load(std::memory_order_acquire);
      if (len & (1u << 31)) break;  // still busy
      uint32_t dlen = len & ~(3u << 30);
      if (!(len & (1u << 30))) {
        uint64_t first;
        std::memcpy(&first, data + (c & (size - 1)) + 8, 8);
        *checksum += first;
        ++n;
      }
      c += (uint64_t(dlen) + 8 + 7) & ~7ull;
      cons.store(c, std::memory_order_release);
    }
    return n;
  }
};

struct KernelSide {
  std::vector<kernel::Fd> maps;  // same indices as Object::maps
  std::vector<std::unique_ptr<KernelRing>> rings;
  std::string error;
};

bool map_in_map(uint32_t type) { return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS; }

// Creates the object's maps in the kernel with the same contents as bpfvm's: fillable maps filled
// as bpfvm's, maps of maps created last (BPF_MAP_CREATE takes an inner map template's fd: one made
// from the definition's inner spec) with the slots of the object's `values` initialiser set to the
// inner maps' fds, as libbpf does.
KernelSide kernel_maps(const Object& obj) {
  KernelSide k;
  k.maps.resize(obj.maps.size());
  k.rings.resize(obj.maps.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < obj.maps.size(); ++i) {
      const ObjectMap& m = obj.maps[i];
      if (map_in_map(m.spec.type) != (pass == 1)) continue;
      int err = 0;
      kernel::Fd inner_tmpl;
      if (pass == 1) {
        if (!m.spec.inner) {
          k.error = "map-in-map " + m.spec.name + " has no inner map definition";
          return k;
        }
        const MapSpec& in = *m.spec.inner;
        inner_tmpl = kernel::create_map(in.type, in.key_size, in.value_size, in.max_entries, in.flags, &err);
        if (!inner_tmpl) {
          k.error = "bpf(BPF_MAP_CREATE) of " + m.spec.name + "'s inner map template: errno " + std::to_string(err);
          return k;
        }
      }
      kernel::Fd fd = kernel::create_map(m.spec.type, m.spec.key_size, m.spec.value_size, m.spec.max_entries,
                                         m.spec.flags, &err, 0, pass == 1 ? inner_tmpl.get() : -1);
      if (!fd) {
        k.error = "bpf(BPF_MAP_CREATE) of " + m.spec.name + ": errno " + std::to_string(err);
        return k;
      }
      if (m.spec.type == BPF_MAP_TYPE_RINGBUF) {
        k.rings[i] = std::make_unique<KernelRing>();
        if (!k.rings[i]->map(fd.get(), m.spec.max_entries)) {
          k.error = "mmap of ring buffer " + m.spec.name + " failed";
          return k;
        }
      }
      if (fillable(m.spec.type)) {
        for (uint32_t key = 0; key < MAP_BENCH_ENTRIES; ++key) {
          uint64_t v = uint64_t(key) * 3 + 1;
          if (int e = kernel::map_update(fd.get(), &key, &v, 0); e) {
            k.error = "bpf(BPF_MAP_UPDATE_ELEM): " + std::to_string(e);
            return k;
          }
        }
      }
      for (const MapSlotInit& s : m.slots) {
        if (s.map < 0) continue;  // prog_array slots: none in these objects
        const kernel::Fd& inner = k.maps.at(static_cast<size_t>(s.map));
        int inner_fd = inner.get();
        if (int e = kernel::map_update(fd.get(), &s.index, &inner_fd, 0); e) {
          k.error = "bpf(BPF_MAP_UPDATE_ELEM) of " + m.spec.name + " slot " + std::to_string(s.index) + ": " +
                    std::to_string(e);
          return k;
        }
      }
      k.maps[i] = std::move(fd);
    }
  }
  return k;
}

kernel::Fd kernel_load(const ObjectProgram& op, const KernelSide& k, std::string* error) {
  std::vector<Insn> insns = op.insns;
  for (auto& in : insns) {
    if (in.op != Op::LDDW_MAP_IDX) continue;
    in.op = Op::LDDW_MAP_FD;
    in.imm = k.maps.at(static_cast<size_t>(in.imm)).get();
  }
  auto raw = encode(insns);
  auto lr = kernel::load_program(raw, BPF_PROG_TYPE_XDP, 0);
  if (!lr.fd) {
    auto lr2 = kernel::load_program(raw, BPF_PROG_TYPE_XDP, 1);
    std::string tail = lr2.log.size() > 300 ? lr2.log.substr(lr2.log.size() - 300) : lr2.log;
    for (auto& c : tail)
      if (c == '\n') c = ' ';
    *error = "verifier rejected (errno " + std::to_string(lr.err) + "): ..." + tail;
  }
  return std::move(lr.fd);
}

// ---- bpfvm side -------------------------------------------------------------------------------

Result<PreparedProgram> prepare(const ObjectProgram& op, const LoadedObject& live, EngineKind engine) {
  PrepareOptions po;  // verified first (the default); the engine asked for explicitly
  po.rules = RuleSet::Privileged;  // our own benchmark programs: trusted (loops)
  po.engine = engine_choice(engine);
  po.verify = g_verify;
  return prepare_program(op, live, nullptr, po);
}

uint64_t consume_vm(const LoadedObject& live, uint64_t* checksum) {
  uint64_t n = 0;
  for (auto& m : live.maps) {
    auto* rb = dynamic_cast<RingbufMap*>(m.get());
    if (!rb) continue;
    rb->consume([&](const void* data, uint32_t) {
      uint64_t first;
      std::memcpy(&first, data, 8);
      *checksum += first;
      ++n;
      return 0;
    });
  }
  return n;
}

// Largest repeat a trial may use (ringbuf programs), else unlimited. A trial writes at most
// kRingTrialBytes of records, the same for every column: calibrated to ~5 ms alone, a faster engine
// would write more per trial (the JIT ~8 MiB, the interpreter ~2 MiB), and once a trial's records
// no longer fit in the caches the records' writes miss, so the faster engine measured slower
// (the JIT alone on the private ring: 14.5-14.7 ns per record up to 6 MiB per trial, 22-30 ns at
// 12 MiB; docs/maps.md, "Speed"). A consumer drains the ring between trials, so it never fills.
constexpr uint64_t kRingTrialBytes = uint64_t(1) << 20;
uint64_t repeat_cap(const Object& obj, const Case& c) {
  for (const ObjectMap& m : obj.maps)
    if (m.spec.type == BPF_MAP_TYPE_RINGBUF)
      return std::max<uint64_t>(1, std::min<uint64_t>(m.spec.max_entries, kRingTrialBytes) / (c.ops_per_run * kRecordBytes) - 2);
  return ~0ull;
}

// Involuntary context switches of this thread so far (a trial during which the thread was
// preempted has an inflated wall time: bpfvm's test_run measures wall time).
long preemptions() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

// One timed column: run(repeat) returns the average ns per run (< 0 on error); between() runs
// after each call (ring consumption). Columns are calibrated one by one (repeat chosen so a trial
// lasts about g_trial_ms), then timed in interleaved rounds (one trial of each column per round),
// so that a change in machine load affects every column alike. A column's figure is the minimum
// over its trials during which the thread was not preempted (if none was clean, over all trials).
struct Column {
  std::function<double(uint64_t)> run;
  std::function<void()> between;
  uint64_t cap = ~0ull;
  uint64_t repeat = 16;
  std::vector<double> clean, all;
  bool failed = false;

  void calibrate() {
    for (;;) {
      repeat = std::min(repeat, cap);
      double ns = run(repeat);
      between();
      if (ns < 0) {
        failed = true;
        return;
      }
      if (ns * double(repeat) >= g_trial_ms * 1e6 / 4 || repeat >= cap) {
        repeat = std::min<uint64_t>(cap, std::max<uint64_t>(1, uint64_t(g_trial_ms * 1e6 / std::max(ns, 1.0))));
        return;
      }
      repeat *= 4;
    }
  }
  void trial() {
    if (failed) return;
    long p0 = preemptions();
    double ns = run(repeat);
    long p1 = preemptions();
    between();
    if (ns < 0) {
      failed = true;
      return;
    }
    all.push_back(ns);
    if (p1 == p0) clean.push_back(ns);
  }
  double result() const {
    if (failed || all.empty()) return -1;
    const auto& v = clean.empty() ? all : clean;
    return *std::min_element(v.begin(), v.end());
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--trials" && i + 1 < argc) g_trials = std::max(1, std::atoi(argv[++i]));
    else if (a == "--ms" && i + 1 < argc) g_trial_ms = std::max(1.0, std::atof(argv[++i]));
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--no-verify") g_verify = false;
    else {
      std::fprintf(stderr, "usage: bench_mapprogs [--trials N] [--ms M] [--only NAME] [--no-verify]\n");
      return 2;
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  bool have_kernel = kernel::available();
  std::printf("bpfvm map programs: ns per map operation (best of %d trials, ~%.0f ms each; %d ops per run)\n",
              g_trials, g_trial_ms, MAP_BENCH_OPS);
  if (!have_kernel) std::printf("kernel: unavailable (%s): kernel column is n/a\n", kernel::unavailable_reason().c_str());
  std::printf("\n%-24s %10s %10s %10s %10s  %-8s %11s %9s  %s\n", "program", "interp", "jit", "kernel", "jit/kern",
              "target", "jit pinned", "pin/jit", "target <= 1.2x");
  const std::string pin_dir = "/dev/shm/bpfvm-bench-mapprogs-" + std::to_string(getpid());
  std::vector<std::string> notes;
  auto pkt = packet();
  for (const Case& c : kCases) {
    if (!only.empty() && only != c.name) continue;
    std::string path = std::string(BPFVM_PROGS_DIR) + "/" + c.object;
    auto obj = load_object_file(path);
    if (!obj) {
      std::printf("%-24s cannot load %s: %s\n", c.name, path.c_str(), obj.error().to_string().c_str());
      continue;
    }
    const ObjectProgram* op = obj->find_program(c.function);
    if (!op) {
      std::printf("%-24s no program %s in %s\n", c.name, c.function, path.c_str());
      continue;
    }
    auto live = instantiate(*obj);
    if (!live) {
      std::printf("%-24s instantiate: %s\n", c.name, live.error().to_string().c_str());
      continue;
    }
    for (size_t i = 0; i < live->maps.size(); ++i) {
      if (!fillable(obj->maps[i].spec.type)) continue;
      for (uint32_t key = 0; key < MAP_BENCH_ENTRIES; ++key) {
        uint64_t v = uint64_t(key) * 3 + 1;
        live->maps[i]->update_user(&key, &v, 0);
      }
    }
    uint64_t cap = repeat_cap(*obj, c);
    uint64_t vm_sum = 0;
    auto vm_between = [&] { consume_vm(*live, &vm_sum); };

    // bpfvm: interpreter and JIT, the same maps.
    std::vector<std::unique_ptr<PreparedProgram>> progs;
    std::vector<std::unique_ptr<Column>> cols(3);  // interp, jit, kernel
    std::vector<std::string> errs(3);
    int64_t vm_ret = -1;
    const EngineKind engines[2] = {EngineKind::Interpreter, EngineKind::Jit};
    for (int e = 0; e < 2; ++e) {
      auto pp = prepare(*op, *live, engines[e]);
      if (!pp) {
        notes.push_back(std::string(c.name) + " (" + engine_name(engines[e]) + "): " + pp.error().to_string());
        continue;
      }
      auto first = test_run(*pp, pkt);
      vm_between();
      if (!first) {
        notes.push_back(std::string(c.name) + " (" + engine_name(engines[e]) + "): " + first.error().to_string());
        continue;
      }
      if (vm_ret >= 0 && int64_t(first->retval) != vm_ret)
        notes.push_back(std::string(c.name) + ": interpreter and JIT disagree");
      vm_ret = int64_t(first->retval);
      progs.push_back(std::make_unique<PreparedProgram>(std::move(*pp)));
      PreparedProgram* prog = progs.back().get();
      auto col = std::make_unique<Column>();
      std::string* err = &errs[static_cast<size_t>(e)];
      col->run = [prog, &pkt, err](uint64_t repeat) -> double {
        auto r = test_run(*prog, pkt, {}, repeat);
        if (!r) {
          *err = r.error().to_string();
          return -1;
        }
        return double(r->duration_ns);
      };
      col->between = vm_between;
      col->cap = cap;
      cols[static_cast<size_t>(e)] = std::move(col);
    }

    // Programs that sum the values they looked up must find every key (the maps, inner maps of
    // maps of maps included, filled as above): else the columns could agree on an empty map.
    if (c.sums_values && vm_ret >= 0) {
      uint64_t want = 0;
      for (uint32_t i = 0; i < c.ops_per_run; ++i) want += uint64_t(MAP_BENCH_KEY(i)) * 3 + 1;
      if (uint32_t(vm_ret) != uint32_t(want))
        notes.push_back(std::string(c.name) + ": bpfvm returned " + std::to_string(vm_ret) + ", the sum of the values is " +
                        std::to_string(uint32_t(want)) + " (a map not filled?)");
    }

    // The JIT on the same object instantiated with every map pinned (shared memory).
    InstantiateOptions pin_opts;
    pin_opts.pin_all_dir = pin_dir + "/" + c.name;
    std::filesystem::create_directories(pin_opts.pin_all_dir);
    auto live_pinned = instantiate_with(*obj, pin_opts);
    std::unique_ptr<Column> pinned_col;
    std::string pinned_err;
    uint64_t pin_sum = 0;
    if (!live_pinned) {
      notes.push_back(std::string(c.name) + " (pinned): " + live_pinned.error().to_string());
    } else {
      for (size_t i = 0; i < live_pinned->maps.size(); ++i) {
        if (!fillable(obj->maps[i].spec.type)) continue;
        for (uint32_t key = 0; key < MAP_BENCH_ENTRIES; ++key) {
          uint64_t v = uint64_t(key) * 3 + 1;
          live_pinned->maps[i]->update_user(&key, &v, 0);
        }
      }
      auto pp = prepare(*op, *live_pinned, EngineKind::Jit);
      if (!pp) {
        notes.push_back(std::string(c.name) + " (pinned): " + pp.error().to_string());
      } else {
        auto first = test_run(*pp, pkt);
        consume_vm(*live_pinned, &pin_sum);
        if (!first || (vm_ret >= 0 && int64_t(first->retval) != vm_ret)) {
          notes.push_back(std::string(c.name) + " (pinned): first run failed or differs from the private maps' run");
        } else {
          progs.push_back(std::make_unique<PreparedProgram>(std::move(*pp)));
          PreparedProgram* prog = progs.back().get();
          pinned_col = std::make_unique<Column>();
          std::string* err = &pinned_err;
          pinned_col->run = [prog, &pkt, err](uint64_t repeat) -> double {
            auto r = test_run(*prog, pkt, {}, repeat);
            if (!r) {
              *err = r.error().to_string();
              return -1;
            }
            return double(r->duration_ns);
          };
          const LoadedObject* lp = &*live_pinned;
          pinned_col->between = [lp, &pin_sum] { consume_vm(*lp, &pin_sum); };
          pinned_col->cap = cap;
        }
      }
    }

    // The kernel: same maps, same contents, same program.
    KernelSide ks;
    kernel::Fd fd;
    uint64_t ksum = 0;
    if (have_kernel) {
      ks = kernel_maps(*obj);
      std::string err = ks.error;
      if (err.empty()) fd = kernel_load(*op, ks, &err);
      auto k_between = [&ks, &ksum] {
        for (auto& r : ks.rings)
          if (r) r->consume(&ksum);
      };
      if (fd) {
        auto tr = kernel::test_run(fd.get(), pkt, {}, 1, pkt.size() + 256);
        k_between();
        if (tr.err) {
          err = "BPF_PROG_TEST_RUN errno " + std::to_string(tr.err);
        } else if (vm_ret >= 0 && tr.retval != uint32_t(vm_ret)) {
          err = "kernel returned " + std::to_string(tr.retval) + ", bpfvm " + std::to_string(vm_ret);
        } else {
          auto col = std::make_unique<Column>();
          int kfd = fd.get();
          col->run = [kfd, &pkt](uint64_t repeat) -> double {
            auto t = kernel::test_run(kfd, pkt, {}, static_cast<uint32_t>(repeat), pkt.size() + 256);
            return t.err ? -1.0 : double(t.duration_ns);
          };
          col->between = k_between;
          col->cap = std::min<uint64_t>(cap, 0xffffffffu);
          cols[2] = std::move(col);
          errs[2] = "BPF_PROG_TEST_RUN failed while timing";
        }
      }
      if (!err.empty()) notes.push_back(std::string(c.name) + " (kernel): " + err);
    }

    cols.push_back(std::move(pinned_col));  // index 3
    errs.push_back(pinned_err);
    for (auto& col : cols)
      if (col) col->calibrate();
    for (int t = 0; t < 10 * g_trials; ++t) {
      bool done = true;
      for (auto& col : cols)
        if (col && !col->failed && int(col->clean.size()) < g_trials) done = false;
      if (done) break;
      // Alternate the order of the columns from round to round (forward, then backward), so that
      // no column always runs right after the same other one.
      for (size_t j = 0; j < cols.size(); ++j) {
        auto& col = cols[(t & 1) ? cols.size() - 1 - j : j];
        if (col && int(col->clean.size()) < g_trials) col->trial();
      }
    }
    double col[2] = {-1, -1}, kcol = -1, pcol = -1;
    for (int e = 0; e < 4; ++e) {
      double r = cols[static_cast<size_t>(e)] ? cols[static_cast<size_t>(e)]->result() : -1;
      if (cols[static_cast<size_t>(e)] && r < 0)
        notes.push_back(std::string(c.name) + " (" + (e < 2 ? engine_name(engines[e]) : e == 2 ? "kernel" : "pinned") +
                        "): " + (e == 3 ? pinned_err : errs[static_cast<size_t>(e)]));
      if (e < 2) col[e] = r;
      else if (e == 2) kcol = r;
      else pcol = r;
    }

    auto cell = [](double ns, uint32_t ops) {
      char b[32];
      if (ns < 0) std::snprintf(b, sizeof b, "n/a");
      else std::snprintf(b, sizeof b, "%.2f", ns / ops);
      return std::string(b);
    };
    std::string ratio = "n/a", verdict = "n/a";
    if (col[1] >= 0 && kcol > 0) {
      char b[32];
      std::snprintf(b, sizeof b, "%.2fx", col[1] / kcol);
      ratio = b;
      verdict = col[1] < kcol ? "met" : "NOT met";
    }
    std::string pratio = "n/a", pverdict = "n/a";
    if (col[1] > 0 && pcol > 0) {
      char b[32];
      std::snprintf(b, sizeof b, "%.2fx", pcol / col[1]);
      pratio = b;
      pverdict = pcol <= 1.2 * col[1] ? "met" : "NOT met";
    }
    std::printf("%-24s %10s %10s %10s %10s  %-8s %11s %9s  %s\n", c.name, cell(col[0], c.ops_per_run).c_str(),
                cell(col[1], c.ops_per_run).c_str(), cell(kcol, c.ops_per_run).c_str(), ratio.c_str(), verdict.c_str(),
                cell(pcol, c.ops_per_run).c_str(), pratio.c_str(), pverdict.c_str());
  }
  std::filesystem::remove_all(pin_dir);
  std::printf("\nns per map operation = average ns per run / operations per run (harness cost included on both sides).\n");
  for (const Case& c : kCases)
    if (only.empty() || only == c.name) std::printf("  %-24s %s\n", c.name, c.what);
  for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
  return 0;
}
