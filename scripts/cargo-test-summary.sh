#!/usr/bin/env bash
# The cargo part of `make test`: every library, binary, integration and doc
# test of the workspace, then each benchmark target once in test mode (so
# they keep working). Passes cargo's output through and ends with one line
# totalling every test binary's results, so the last line speaks for the
# whole run rather than for the last binary cargo happened to run.
set -uo pipefail
cargo=${CARGO:-cargo}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The end-to-end tests in tests/ run the xvsd binary: build it first.
"$cargo" build --workspace --bins 2>&1 | tee -a "$log" || status=1
"$cargo" test --workspace 2>&1 | tee -a "$log" || status=1
# `--bench '*'` selects bench targets only; `--benches` would also rerun
# the libraries' unit tests (lib targets have bench = true).
"$cargo" test --workspace --bench '*' 2>&1 | tee -a "$log" || status=1
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
