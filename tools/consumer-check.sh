#!/usr/bin/env bash
# consumer-check.sh: what a user of an installed weft does, checked:
#   1. build weft alone (shared, as a distribution would) and install it
#      into a scratch prefix; the library carries a versioned SONAME, and
#      the test hook weft/detail/introspect.hpp is not installed;
#   2. a CMake project finds it with find_package(weft CONFIG REQUIRED);
#   3. a plain g++ command line builds README.md's server example with
#      `pkg-config --cflags --libs weft`, and it serves and stops on SIGTERM;
#   4. weft added with add_subdirectory() builds no tests, benchmarks or
#      examples by default.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "consumer-check: $*" >&2; exit 1; }

# 1. The library alone, shared, installed.
cmake -S "$ROOT" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_PERF=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$work/build" >/dev/null
cmake --install "$work/build" --prefix "$work/prefix" >/dev/null
lib=$(find "$work/prefix" -name 'libweft.so.*.*.*' | head -n1)
[ -n "$lib" ] || fail "no versioned libweft.so installed"
soname=$(readelf -d "$lib" | sed -nE 's/.*\(SONAME\).*\[(.*)\]/\1/p')
[[ "$soname" =~ ^libweft\.so\.[0-9]+\.[0-9]+$ ]] || fail "SONAME is '$soname'"
[ -f "$work/prefix/include/weft/weft.hpp" ] || fail "weft/weft.hpp is not installed"
[ ! -e "$work/prefix/include/weft/detail/introspect.hpp" ] || fail "the test hook introspect.hpp is installed"

# 2. find_package.
cmake -S "$ROOT/tests/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
out=$("$work/consumer/consumer")
[ "$out" = "consumer ok 42" ] || fail "the find_package consumer printed: $out"

# 3. pkg-config and a plain g++ command line.
pc_dir=$(dirname "$(find "$work/prefix" -name weft.pc | head -n1)")
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs weft)
for f in -fstack-clash-protection -Wl,-z,now -lweft; do
  [[ " $flags " == *" $f "* ]] || fail "pkg-config --cflags --libs weft lacks $f: $flags"
done
# shellcheck disable=SC2086
g++ -std=c++20 -O2 "$ROOT/examples/line_server.cpp" -o "$work/line_server" $flags
LD_LIBRARY_PATH="$(dirname "$lib")" "$work/line_server" 127.0.0.1:0 >"$work/server.out" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -nE 's/^listening on .*:([0-9]+)$/\1/p' "$work/server.out")
[ -n "$port" ] || fail "the pkg-config-built server did not start"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'hello\n' >&3
read -r -t 20 reply <&3 || fail "no answer from the pkg-config-built server"
exec 3<&-
[ "$reply" = "5" ] || fail "the pkg-config-built server answered '$reply'"
kill -TERM "$server"
wait "$server" || fail "the pkg-config-built server exited with status $? on SIGTERM"
server=

# 4. add_subdirectory: only the library by default.
cmake -S "$ROOT/tests/consumer" -B "$work/subdir" -G Ninja -DWEFT_SOURCE_DIR="$ROOT" >/dev/null
for opt in WEFT_BUILD_TESTS WEFT_BUILD_PERF WEFT_BUILD_EXAMPLES; do
  grep -q "^$opt:BOOL=OFF$" "$work/subdir/CMakeCache.txt" || fail "$opt is not OFF under add_subdirectory"
done
echo "consumer-check: find_package, pkg-config (SONAME $soname) and add_subdirectory work"
