#!/usr/bin/env bash
# Set up, build, and run every test (CTest); then the same suite built with AddressSanitizer and
# UndefinedBehaviorSanitizer (scripts/test-sanitize.sh, build-asan/) and the concurrency tests built
# with ThreadSanitizer (scripts/test-tsan.sh, build-tsan/). This is what .ci/run calls.
# BPFVM_NO_SANITIZE=1 skips the sanitizer builds and runs (a quicker local check). docs/sanitizers.md
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 600)
if [ "${BPFVM_NO_SANITIZE:-0}" != 1 ]; then
  scripts/test-sanitize.sh
  scripts/test-tsan.sh
fi
