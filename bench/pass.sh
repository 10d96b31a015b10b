#!/usr/bin/env bash
# One pass of every bench whose figures the README's table shows, into one results directory.
#
#   bench/pass.sh [OUT_DIR]          # default bench/results
#
# Run it twice, into two directories, on a quiet machine, then compare the passes:
#   bench/pass.sh /tmp/pass-a && bench/pass.sh /tmp/pass-b
#   .venv/bin/python bench/readme_table.py --results /tmp/pass-b --compare /tmp/pass-a
# BENCHES="burst backup" bench/pass.sh DIR runs only those (in the order given).
# Every bench runs even when one before it failed; the exit status is 1 when any failed
# (a failed bench, or one that changed the server's database or role lists), and the log of
# each is OUT_DIR/NAME.log. scale_load (tens of minutes, 11,000 tenants) is not in a pass:
# run it on its own.
set -u
out="${1:-bench/results}"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"
failed=()
for bench in ${BENCHES:-provision burst webhooks fleet fleet_schemas backup import cli console}; do
  started=$(date +%s)
  echo "== $bench ($(date -u +%H:%M:%S))"
  if ! "$py" "bench/$bench.py" --out "$out" >"$out/$bench.log" 2>&1; then
    failed+=("$bench")
    echo "   failed: see $out/$bench.log"
  fi
  echo "   $(( $(date +%s) - started )) s"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "every bench passed; results in $out"
