#!/usr/bin/env bash
# The end-to-end benchmark: the whole `spillway run` process against the
# whole pyarrow, DuckDB and polars processes (NDJSON to Parquet, snappy),
# and spillway's gzip'd and zstd'd JSON lines against `gzip -6` and
# `zstd -3 -T2`, on the same page-cached inputs (issue #17).
#
#   benches/compare.sh            # from the repository root
#
# - Builds target/release/spillway (`cargo build --release --locked`: cargo
#   decides whether it is stale).
# - Installs pinned pyarrow, duckdb and polars into $CARGO_TARGET_DIR/bench-venv.
# - Generates three inputs of SIZE_MB each from tests/data (products, tweets,
#   events; every record varied by a seeded generator, benches/gen_inputs.py)
#   under $CARGO_TARGET_DIR/bench-data, once.
# - Runs every tool once a round, taking turns, ROUNDS rounds; spillway runs
#   as a user runs it: a config file, `spillway run --config`, fresh archive
#   and checkpoint directories each time. Checks every output's row count.
# - Prints MB/s (best and median), CPU seconds, peak RSS and output size per
#   input and tool, then spillway's ratios and issue #17's targets; writes
#   every run and the summary as JSON lines under $CARGO_TARGET_DIR/bench-e2e.
#
# Environment: SIZE_MB (default 200), ROUNDS (3), BUFFER_MB (64; a list such
# as "16 64 128" runs spillway at each), INPUTS (default "products tweets
# events"), JSON_LINES (1; 0 skips the gzip/zstd part), SPILLWAY_SHARED_DIR
# (default tests/, which holds data/).
# The conversion micro-benchmark (one buffer in memory, for finding where
# time goes) is benches/micro_parquet.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
venv="$target/bench-venv"
size_mb="${SIZE_MB:-200}"
shared="${SPILLWAY_SHARED_DIR:-$PWD/tests}"

echo "compare: cargo build --release --locked" >&2
cargo build --release --locked >&2

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyarrow, duckdb, polars" 2>/dev/null; then
  echo "compare: installing pyarrow, duckdb, polars into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "pyarrow==26.0.1" "duckdb==2.0.0" "polars==2.1.0"
fi

mkdir -p "$target/bench-e2e"
inputs="$target/bench-e2e/inputs-${size_mb}mb.jsonl"
# shellcheck disable=SC2086 # INPUTS is a list of words
python3 benches/gen_inputs.py "$shared/data" "$target/bench-data" "$size_mb" ${INPUTS:-products tweets events} > "$inputs"

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- src transforms destinations settings Cargo.lock 2>/dev/null; then
  commit="$commit+changes"
fi
exec "$venv/bin/python" benches/compare.py \
  --bin "$target/release/spillway" --tools benches/compare_tools.py --work "$target/bench-e2e" \
  --inputs "$inputs" --rounds "${ROUNDS:-3}" --buffers "${BUFFER_MB:-64}" --json-lines "${JSON_LINES:-1}" \
  --commit "$commit"
