#!/bin/sh
# Installs bpfvm into a fresh temporary prefix and builds programs against that installation only:
#   examples/c_api_example.c with pkg-config against the shared library (bpfvm) and the static one
#   (bpfvm-static), and tests/install/consumer (find_package(bpfvm): C against bpfvm::bpfvm, C++ against
#   bpfvm::bpfvm_static). Each program is run; those linked with the shared library must need
#   libbpfvm.so.0, the static ones must not; libbpfvm.so must have its SONAME and export exactly the
#   functions bpfvm.h declares.
#   FLAGS: added to every compile and link of the consumers (a sanitizer build: -fsanitize=...). Exit 77
#   (a skip) when the library is instrumented with a sanitizer and FLAGS are empty: programs built
#   without its runtime could not load it.
#   run_install_test.sh BUILD_DIR SOURCE_DIR PROGS_DIR [FLAGS]
set -eu
build=$1
src=$2
progs=$3
flags=${4:-}
if [ -z "$flags" ] && nm -D "$build/libbpfvm.so" 2>/dev/null | grep -q '__\(a\|ub\|t\|m\)san_'; then
  echo "install test: skipped: libbpfvm.so is built with a sanitizer runtime and no FLAGS were given;" \
       "programs compiled without it cannot load that library" >&2
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bpfvm-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install failed"; }
for f in bin/bpfvm include/bpfvm/bpfvm.h include/bpfvm/runtime.hpp; do
  [ -e "$prefix/$f" ] || fail "$f is not installed"
done
pc=$(find "$prefix" -name bpfvm.pc)
[ -n "$pc" ] || fail "bpfvm.pc is not installed"
libdir=$(dirname "$(dirname "$pc")")
for f in libbpfvm.so libbpfvm.so.0 libbpfvm.a cmake/bpfvm/bpfvmConfig.cmake; do
  [ -e "$libdir/$f" ] || fail "$libdir/$f is not installed"
done
"$prefix/bin/bpfvm" --help >/dev/null || fail "the installed CLI does not run"

# The shared library: its SONAME, and only bpfvm_* functions exported.
soname=$(readelf -d "$libdir/libbpfvm.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libbpfvm.so.0 ] || fail "SONAME is '$soname', expected libbpfvm.so.0"
others=$(nm -D --defined-only "$libdir/libbpfvm.so" | awk '{print $3}' | grep -v '^bpfvm_' | grep -v '^BPFVM_' || true)
[ -z "$others" ] || fail "libbpfvm.so exports more than the C API: $(echo "$others" | head -5)"
api=$(nm -D --defined-only "$libdir/libbpfvm.so" | grep -c ' T bpfvm_')
declared=$(grep -o 'bpfvm_[a-z_]*(' "$prefix/include/bpfvm/bpfvm.h" | sort -u | wc -l)
[ "$api" -eq "$declared" ] || fail "libbpfvm.so exports $api functions, bpfvm.h declares $declared"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc=${CC:-cc}
needs() { readelf -d "$1" | grep -q "NEEDED.*\[libbpfvm\.so"; }

# pkg-config, shared: the line the README shows.
# shellcheck disable=SC2046
$cc $flags -Wall -Werror -o "$tmp/c_shared" "$src/examples/c_api_example.c" $(pkg-config --cflags --libs bpfvm) \
  || fail "cc with pkg-config bpfvm failed"
needs "$tmp/c_shared" || fail "c_shared does not link libbpfvm.so"
LD_LIBRARY_PATH=$libdir "$tmp/c_shared" "$progs" || fail "c_shared failed"

# pkg-config, static.
# shellcheck disable=SC2046
$cc $flags -Wall -Werror -o "$tmp/c_static" "$src/examples/c_api_example.c" $(pkg-config --cflags --libs bpfvm-static) \
  || fail "cc with pkg-config bpfvm-static failed"
needs "$tmp/c_static" && fail "c_static links libbpfvm.so"
"$tmp/c_static" "$progs" || fail "c_static failed"

# CMake: find_package(bpfvm).
gen=
command -v ninja >/dev/null && gen="-G Ninja"
# shellcheck disable=SC2086
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" $gen -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  -DBPFVM_EXAMPLE="$src/examples/c_api_example.c" >"$tmp/consumer.log" 2>&1 \
  || { cat "$tmp/consumer.log"; fail "configuring the find_package consumer failed"; }
cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 || { cat "$tmp/consumer.log"; fail "building the consumer failed"; }
needs "$tmp/consumer/c_api_shared" || fail "the CMake consumer's C program does not link libbpfvm.so"
"$tmp/consumer/c_api_shared" "$progs" || fail "the CMake consumer's C program failed"
needs "$tmp/consumer/cxx_static" && fail "the CMake consumer's C++ program links libbpfvm.so"
"$tmp/consumer/cxx_static" || fail "the CMake consumer's C++ program failed"
echo "install test: shared and static, pkg-config and find_package: ok"
