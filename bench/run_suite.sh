#!/bin/sh
# Builds and runs the benchmark suite (docs/jit.md): one table of ns per run for bpfvm's interpreter,
# bpfvm's JIT, the kernel's JIT (BPF_PROG_TEST_RUN, when bpf() is usable) and native code.
#   bench/run_suite.sh [build-dir] [bench_suite options: --trials N --ms M --only NAME --dump]
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
[ $# -gt 0 ] && shift
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" --target bench_suite bpf_progs -j2
exec "$build/bench_suite" "$@"
