#!/usr/bin/env bash
# Compression throughput and output size of spillway's gzip and zstd against
# `gzip -6` and `zstd -3 -T2` on the same ~150 MB NDJSON file.
#
#   benches/compress.sh          # from the repository root
#
# - Builds the input once (benches/compress_input.py: products and tweets
#   from tests/data, recombined, not tiled) as $CARGO_TARGET_DIR/bench-data/compress.ndjson.
# - Runs destinations/examples/compress.rs (the codec alone: the file is
#   read into memory first, written line by line into a sink that counts)
#   and the command-line tools (reading the page-cached file, writing to
#   /dev/null through `wc -c`), ROUNDS times (default 3), taking turns.
# - Prints the best MB/s of each, the output size, and spillway's ratios.
# The example is built in the dev profile, whose dependencies (zlib-rs,
# libzstd, where the time goes) are optimised (opt-level 2); PROFILE=release
# builds it in release instead (a long first build).
# Environment: SPILLWAY_SHARED_DIR (default tests/, which holds data/),
# ROUNDS (default 3), MEGABYTES (default 150).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
data="${SPILLWAY_SHARED_DIR:-$PWD/tests}/data"
input="$target/bench-data/compress.ndjson"
rounds="${ROUNDS:-3}"
profile_flag=()
[ "${PROFILE:-dev}" = release ] && profile_flag=(--release)

if [ ! -s "$input" ]; then
  mkdir -p "$(dirname "$input")"
  python3 benches/compress_input.py "$data" "$input" "${MEGABYTES:-150}"
fi
cargo build -q "${profile_flag[@]}" -p spillway-destinations --example compress >&2
example="$target/$([ "${PROFILE:-dev}" = release ] && echo release || echo debug)/examples/compress"

# `tool` NAME COMMAND...: times COMMAND reading $input, prints one JSON line.
tool() {
  local name="$1"; shift
  local start end bytes
  start=$(date +%s.%N)
  bytes=$("$@" < "$input" | wc -c)
  end=$(date +%s.%N)
  python3 -c "import sys; n,b,i,s=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4]); print('{\"tool\":\"%s\",\"input_bytes\":%d,\"output_bytes\":%d,\"seconds\":%.3f,\"mb_per_s\":%.1f}' % (n,i,b,s,i/1e6/s))" \
    "$name" "$bytes" "$(stat -c %s "$input")" "$(echo "$end - $start" | bc)"
}

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
cat "$input" > /dev/null
for round in $(seq "$rounds"); do
  echo "compress: round $round" >&2
  "$example" gzip "$input" | tee -a "$results"
  tool gzip-6 gzip -6 -c | tee -a "$results"
  "$example" zstd "$input" | tee -a "$results"
  tool zstd-3-T2 zstd -3 -T2 -q -c | tee -a "$results"
  [ -n "${SINGLE:-}" ] && "$example" gzip "$input" --single | tee -a "$results"
  [ -n "${SINGLE:-}" ] && "$example" zstd "$input" --single | tee -a "$results"
done

python3 - "$results" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["tool"] not in best or r["mb_per_s"] > best[r["tool"]]["mb_per_s"]:
        best[r["tool"]] = r
print(f"{'tool':<24} {'MB/s (best)':>12} {'output MB':>10} {'ratio':>7}")
for r in best.values():
    print(f"{r['tool']:<24} {r['mb_per_s']:>12.1f} {r['output_bytes']/1e6:>10.2f} {r['input_bytes']/r['output_bytes']:>7.2f}")
for ours, theirs in [("spillway-gzip", "gzip-6"), ("spillway-zstd", "zstd-3-T2")]:
    if ours in best and theirs in best:
        a, b = best[ours], best[theirs]
        print(f"{ours} / {theirs}: speed {a['mb_per_s']/b['mb_per_s']:.2f}x, size {a['output_bytes']/b['output_bytes']:.3f}x")
PY
