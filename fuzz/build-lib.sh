#!/bin/sh
# Builds the fuzzers that need the whole library (fuzz_cbpf, fuzz_loader, fuzz_verifier, fuzz_diff)
# with clang-14's libFuzzer, linked against the AddressSanitizer + UndefinedBehaviorSanitizer build
# of the library that scripts/test-sanitize.sh makes (build-asan/libbpfvm.a, GCC): the library's
# memory accesses and UB are checked, but libFuzzer's coverage feedback comes only from the target
# file and the headers it compiles (GCC does not emit libFuzzer's coverage counters). The CMake way
# (-DBPFVM_FUZZ=ON with clang, docs/fuzzing.md) instruments the library for coverage as well.
#   fuzz/build-lib.sh [OUTDIR] [TARGET...]     (default: build-fuzz-lib, all four)
# BPFVM_FUZZ_LIB=PATH links another build of the library instead (for example build/libbpfvm.a,
# uninstrumented: several times faster, with ASan+UBSan checking only the target's own code and
# the headers it compiles).
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/build-fuzz-lib}
[ $# -gt 0 ] && shift
TARGETS=${*:-fuzz_cbpf fuzz_loader fuzz_verifier fuzz_diff}
CXX=${CXX:-clang++-14}
LIB=${BPFVM_FUZZ_LIB:-$SRC/build-asan/libbpfvm.a}
if [ -z "$BPFVM_FUZZ_LIB" ] && [ ! -f "$LIB" ]; then
  cmake -S "$SRC" -B "$SRC/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBPFVM_SANITIZE=address,undefined -DBPFVM_BENCH=OFF >/dev/null
fi
[ -n "$BPFVM_FUZZ_LIB" ] || ninja -C "$SRC/build-asan" bpfvm_lib
LIBS="$(pkg-config --libs libelf libbpf libpcap capstone) -lfmt -lz -lcrypto"
if nm -u "$LIB" 2>/dev/null | grep -q asmjit; then LIBS="$LIBS -lasmjit"; fi
if nm -u "$LIB" 2>/dev/null | grep -q Zydis; then LIBS="$LIBS -lZydis"; fi
mkdir -p "$OUT"
for t in $TARGETS; do
  $CXX -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$SRC/include" -I"$SRC/src" -I"$SRC/tests" "$SRC/fuzz/$t.cpp" "$LIB" $LIBS -o "$OUT/$t"
  echo "built $OUT/$t"
done
