#!/usr/bin/env bash
# consumer-check.sh: install weft into a scratch prefix and build a tiny
# project against it with find_package(weft CONFIG REQUIRED), then run it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$ROOT" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_PERF=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$work/build" >/dev/null
cmake --install "$work/build" --prefix "$work/prefix" >/dev/null
cmake -S "$ROOT/tests/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
out=$("$work/consumer/consumer")
[ "$out" = "consumer ok 42" ] || { echo "consumer printed: $out"; exit 1; }
echo "consumer-check: find_package(weft) works"
