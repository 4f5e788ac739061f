#!/usr/bin/env bash
# The conversion micro-benchmark: transforms/benches/parquet.rs converts the
# inputs one buffer at a time, in memory (no source, router, checkpoint,
# files or process start). It is for finding where the conversion's time
# goes (run it under perf); it is not the product's speed, which
# benches/compare.sh measures end to end.
#
#   benches/micro_parquet.sh      # from the repository root
#
# Runs each input with the default reserved columns, with every record's
# bytes stored (--store-all-originals) and with none (--bare), ROUNDS times
# (default 1), and prints the harness's JSON lines (input MB/s, peak RSS).
# Inputs are compare.sh's (benches/gen_inputs.py, SIZE_MB each).
# Environment: SIZE_MB (200), ROUNDS (1), BUFFER_MB (64), INPUTS,
# SPILLWAY_SHARED_DIR (default tests/).
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute: cargo runs the benchmark from the package directory.
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
shared="${SPILLWAY_SHARED_DIR:-$PWD/tests}"
echo "micro_parquet: building the benchmark (release)" >&2
cargo bench -p spillway-transforms --bench parquet --no-run >&2
# shellcheck disable=SC2086 # INPUTS is a list of words
paths="$(python3 benches/gen_inputs.py "$shared/data" "$target/bench-data" "${SIZE_MB:-200}" ${INPUTS:-products tweets events} |
  python3 -c 'import json, sys; print("\n".join(json.loads(l)["path"] for l in sys.stdin))')"
for round in $(seq "${ROUNDS:-1}"); do
  for file in $paths; do
    cat "$file" > /dev/null
    for variant in "" --store-all-originals --bare; do
      echo "micro_parquet: round $round: $(basename "$file") ${variant:-default}" >&2
      # shellcheck disable=SC2086 # an empty variant is no argument
      cargo bench -q -p spillway-transforms --bench parquet -- run "$file" --buffer-mb "${BUFFER_MB:-64}" $variant 2>/dev/null
    done
  done
done
