#!/bin/sh
# Builds the ISA fuzzers (fuzz_decode, fuzz_asm), the capture-file reader's (fuzz_pcap) and the CLI
# parser fuzzer (fuzz_cliparse) directly with clang-14, from src/isa, src/hooks/pcap_io.cpp and
# tools/bpfvm/parse.cpp only, so they build in a minute and do not depend on the rest of the library
# compiling with clang.
#   fuzz/build.sh [OUTDIR]      (default: build-fuzz-isa next to the sources)
# The CMake way (-DBPFVM_FUZZ=ON, see docs/fuzzing.md) builds the same targets against the whole library.
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/build-fuzz-isa}
CXX=${CXX:-clang++-14}
FLAGS="-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -I$SRC/include -I$SRC/src"
mkdir -p "$OUT/obj"
objs=""
for f in "$SRC"/src/isa/*.cpp; do
  o="$OUT/obj/$(basename "$f" .cpp).o"
  if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ -n "$(find "$SRC/include/bpfvm" "$SRC/src/isa" -name '*.h*' -newer "$o")" ]; then
    $CXX $FLAGS -c "$f" -o "$o"
  fi
  objs="$objs $o"
done
for t in fuzz_decode fuzz_asm; do
  $CXX $FLAGS -fsanitize=fuzzer "$SRC/fuzz/$t.cpp" $objs -lfmt -o "$OUT/$t"
  echo "built $OUT/$t"
done
# The CLI's number and byte parsers: one self-contained file.
$CXX $FLAGS -fsanitize=fuzzer -I"$SRC/tools/bpfvm" "$SRC/fuzz/fuzz_cliparse.cpp" "$SRC/tools/bpfvm/parse.cpp" \
  -o "$OUT/fuzz_cliparse"
echo "built $OUT/fuzz_cliparse"
$CXX $FLAGS -fsanitize=fuzzer "$SRC/fuzz/fuzz_pcap.cpp" "$SRC/src/hooks/pcap_io.cpp" -lpcap -lfmt -o "$OUT/fuzz_pcap"
echo "built $OUT/fuzz_pcap"
$CXX $FLAGS -fsanitize=fuzzer-no-link "$SRC/fuzz/make_seeds.cpp" $objs -lfmt -o "$OUT/make_seeds"
SHARED=${BPFVM_SHARED:-$SRC/../shared}
if [ -d "$SHARED/conformance" ]; then "$OUT/make_seeds" "$SHARED/conformance" "$OUT/seeds"; fi
# Capture-file seeds: the small sample captures (pcap and pcapng, intact and damaged).
if [ -d "$SHARED/pcaps" ]; then
  mkdir -p "$OUT/seeds/pcap"
  find "$SHARED/pcaps" -name '*.pcap*' -size -20k -exec cp {} "$OUT/seeds/pcap/" \;
fi
