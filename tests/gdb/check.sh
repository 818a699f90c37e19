#!/bin/sh
# Runs tests/gdb/parked_program under gdb -batch with tools/weft-gdb.py and
# checks that `weft fibers` lists the fibers and that `weft bt` shows the
# functions they parked in: first on the live process (which also writes a
# core file with gcore), then on that core file.
set -eu
prog=$1
script=$2
core=$(mktemp -u /tmp/weft-gdb-core.XXXXXX)
trap 'rm -f "$core"' EXIT
fail() { echo "FAILED ($2): $1"; exit 1; }
check() {
  out=$1 what=$2
  if echo "$out" | grep -q "enum tables out of step"; then
    fail "tools/weft-gdb.py's enum names differ from the program's" "$what"
  fi
  echo "$out" | grep -Eq "^weft: 3 fibers" || fail "weft fibers did not list 3 fibers" "$what"
  echo "$out" | grep -Eq "^fiber 1 \[running\]: started at .*parked_program.cpp:[0-9]+ \(main\)" ||
    fail "main not listed as running" "$what"
  echo "$out" | grep -Eq "^fiber 2 \[condition_variable 0x[0-9a-f]+\]" || fail "fiber 2 state" "$what"
  echo "$out" | grep -Eq "^fiber 3 \[sleep\]" || fail "fiber 3 state" "$what"
  echo "$out" | grep -q " in parked_in_alpha at " || fail "bt 2 lacks parked_in_alpha" "$what"
  echo "$out" | grep -q " in parked_in_beta at " || fail "bt 3 lacks parked_in_beta" "$what"
  echo "$out" | grep -q " in weft::condition_variable::wait" || fail "bt 2 lacks the wait frame" "$what"
}
live=$(gdb -batch -nx -ex "source $script" -ex "break reach_breakpoint" -ex run \
  -ex "weft fibers" -ex "weft bt 2" -ex "weft bt 3" -ex "gcore $core" -ex "kill" "$prog" 2>&1)
echo "$live"
check "$live" "live process"
post=$(gdb -batch -nx -ex "source $script" -ex "weft fibers" -ex "weft bt 2" -ex "weft bt 3" \
  "$prog" "$core" 2>&1)
echo "$post"
check "$post" "core file"
echo "gdb extension: ok"
