#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer (-O1, no benchmarks) into
# build-asan/ and runs the whole test suite there. Any sanitizer report fails the test it occurs in.
#   scripts/test-sanitize.sh [ctest arguments...]     (e.g. -R Maps to run a part)
# scripts/test.sh runs it after the normal suite (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFVM_SANITIZE=address,undefined \
  -DBPFVM_BENCH=OFF >/dev/null
ninja -C build-asan -j"$(nproc)"
# halt_on_error/abort: a report ends the process (and fails its test) instead of being printed and
# passed over. detect_leaks: LeakSanitizer runs at every test process's exit. Options already in
# the environment come after these, so they win.
# verify_asan_link_order=0: the agent library (libbpfvm-agent.so, instrumented in this build) is
# preloaded into commands that are not (the agent tests' targets, /bin/true); its ASan runtime then
# is not first in the process, which ASan refuses by default. Its code is still checked against the
# shadow memory there; allocations in those processes come from the C library's malloc.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
cd build-asan
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"
