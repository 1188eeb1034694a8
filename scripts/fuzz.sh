#!/usr/bin/env bash
# fuzz.sh -- run every Go fuzz target in the module for FUZZTIME each
# (default 30s), one at a time (go test -fuzz takes one target per run).
# Targets are found, not listed, so a new Fuzz function is fuzzed without
# editing this script. Crashers land in the package's testdata/fuzz/ and
# become seeds that `make test` replays from then on.
#
#   scripts/fuzz.sh [FUZZTIME]
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${1:-30s}
GO=${GO:-go}

targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  dir=$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func |$dir |"
done)
[ -n "$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }

failed=0
while read -r pkg name; do
  echo "fuzz: $pkg $name for $FUZZTIME"
  if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
    echo "fuzz: $pkg $name FAILED (crasher saved under $pkg/testdata/fuzz/$name)" >&2
    failed=1
  fi
done <<<"$targets"
exit $failed
