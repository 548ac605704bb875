// Map operations: bpfvm's map API (what helpers call: lookup returns a pointer; and the user-space
// copy-out API) next to the kernel's bpf() map syscalls on the same map shapes.
//   build/bench_maps [--ops N]
// The kernel column is the BPF_MAP_*_ELEM syscall (user space); a program's in-kernel helper call
// is not measurable from here. Times are thread CPU time, best of 3.
// Programs doing map operations, next to the kernel's: bench/bench_mapprogs.cpp.
#include <chrono>
#include <ctime>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bpfvm/map.hpp"
#include "kernel/oracle.hpp"

using namespace bpfvm;
using Clock = std::chrono::steady_clock;

namespace {

// Thread CPU time (user + system), so that a busy machine does not inflate the figures.
double cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

double ns_per_op(uint64_t n, const std::function<void(uint64_t)>& body) {
  double best = 1e30;
  for (int trial = 0; trial < 3; ++trial) {
    double t0 = cpu_ns();
    for (uint64_t i = 0; i < n;) {  // one read-side section per 256 ops, like short program runs
      MapReadSection rs;
      for (uint64_t e = std::min(n, i + 256); i < e; ++i) body(i);
    }
    double ns = (cpu_ns() - t0) / double(n);
    best = std::min(best, ns);
  }
  return best;
}

volatile uint64_t sink;

std::shared_ptr<Map> mk(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags = 0) {
  MapSpec s;
  s.name = "bench";
  s.type = type;
  s.key_size = ks;
  s.value_size = vs;
  s.max_entries = max;
  s.flags = flags;
  return *create_map(s);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t ops = 2000000;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--ops") ops = std::stoull(argv[i + 1]);
  const uint32_t kEntries = 10000;
  bool have_kernel = kernel::available();
  std::printf("%-44s %12s %14s\n", "operation (10,000 entries, 4-byte key, 8-byte value)", "bpfvm ns/op",
              have_kernel ? "kernel ns/op" : "kernel (n/a)");
  auto row = [&](const char* name, double vm, double k) {
    if (k > 0)
      std::printf("%-44s %12.1f %14.1f\n", name, vm, k);
    else
      std::printf("%-44s %12.1f %14s\n", name, vm, "-");
  };
  std::vector<uint32_t> keys(1 << 16);
  std::mt19937 rng(1);
  for (auto& k : keys) k = rng() % kEntries;
  const uint64_t kops = ops / 50;  // syscalls are slower: fewer iterations

  for (uint32_t type : {uint32_t(kMapHash), uint32_t(kMapArray), uint32_t(kMapLruHash), uint32_t(kMapPercpuHash)}) {
    auto m = mk(type, 4, 8, kEntries);
    kernel::Fd kfd;
    if (have_kernel) kfd = kernel::create_map(type, 4, 8, kEntries);
    std::vector<uint8_t> val(m->user_value_size(), 1);
    for (uint32_t k = 0; k < kEntries; ++k) {
      m->update_user(&k, val.data(), 0);
      if (kfd) kernel::map_update(kfd.get(), &k, val.data(), 0);
    }
    std::string tn = map_type_name(type);
    double vm = ns_per_op(ops, [&](uint64_t i) { sink = uint64_t(m->lookup(&keys[i & 0xffff])); });
    row((tn + ": lookup (helper, hit)").c_str(), vm, 0);
    vm = ns_per_op(ops, [&](uint64_t i) { sink = uint64_t(m->lookup(&keys[i & 63])); });
    row((tn + ": lookup (helper, 64 hot keys)").c_str(), vm, 0);
    if (type == kMapHash) {
      uint32_t miss = kEntries + 5;
      vm = ns_per_op(ops, [&](uint64_t i) {
        uint32_t k = miss + uint32_t(i & 0xffff);
        sink = uint64_t(m->lookup(&k));
      });
      row((tn + ": lookup (helper, miss)").c_str(), vm, 0);
    }
    std::vector<uint8_t> out(m->user_value_size());
    vm = ns_per_op(ops, [&](uint64_t i) { sink = m->lookup_copy(&keys[i & 0xffff], out.data(), 0); });
    double kn = kfd ? ns_per_op(kops, [&](uint64_t i) { sink = kernel::map_lookup(kfd.get(), &keys[i & 0xffff], out.data()); }) : 0;
    row((tn + ": lookup (copy out / syscall)").c_str(), vm, kn);
    vm = ns_per_op(ops, [&](uint64_t i) { sink = m->update(&keys[i & 0xffff], val.data(), 0); });
    kn = kfd ? ns_per_op(kops, [&](uint64_t i) { sink = kernel::map_update(kfd.get(), &keys[i & 0xffff], val.data(), 0); }) : 0;
    row((tn + ": update existing (helper / syscall)").c_str(), vm, kn);
  }
  {
    auto m = mk(kMapRingbuf, 0, 0, 1 << 20);
    auto* rb = dynamic_cast<RingbufMap*>(m.get());
    uint64_t rec[2] = {1, 2};
    uint64_t n = 0;
    double vm = ns_per_op(ops, [&](uint64_t i) {
      if (rb->output(rec, sizeof rec, 1) != 0) rb->consume([&](const void*, uint32_t) { ++n; return 0; });
    });
    row("ringbuf: output 16 bytes (+ consume)", vm, 0);
  }
  return 0;
}
