#!/usr/bin/env bash
# Builds the test program with ThreadSanitizer (-O1) into build-tsan/ and runs the concurrency tests
# there: map stress (concurrent updates, lookups, reclamation), executable memory (concurrent
# install/release of JIT code), live capture (the AF_PACKET ring and its worker thread) and the
# function hooks' thread tests (threads running a hooked function while hooks are attached and
# detached, detach waiting for running handlers; docs/sanitizers.md says what TSan sees of them).
#   scripts/test-tsan.sh [gtest filter]      (default: the suites and tests above)
# Reports that are understood and not bugs are suppressed in tests/tsan.supp, each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFVM_SANITIZE=thread \
  -DBPFVM_BENCH=OFF >/dev/null
ninja -C build-tsan -j"$(nproc)" bpfvm_tests
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
filter=${1:-'MapsStress.*:ExecMemory.*:Live.*:UprobePatch.ThreadsRunThroughAttachAndDetach:UprobePatch.DetachWaitsForRunningHandlers'}
BPFVM_BIN=$PWD/build-tsan/bpfvm build-tsan/bpfvm_tests --gtest_filter="$filter"
