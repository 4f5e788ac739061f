#!/usr/bin/env bash
# Replay speed against archiving speed, with the release binary (issue #19:
# replay at least as fast as archiving the same data).
#
#   benches/replay.sh            # from the repository root
#
# - Input: 200 MB of generated tweets (benches/gen_inputs.py: the records of
#   tests/data/twitter.json with their values varied, every record
#   different, not tiled), in $CARGO_TARGET_DIR/bench-data.
# - Archive: `spillway run` with a file source into a local destination,
#   once as Parquet (the defaults: keep_original, metadata columns) and once
#   as gzip'd JSON lines with `envelope = true`; 64 MB buffers.
# - Replay: `spillway replay --from DIR --to file:OUT` of each archive; the
#   output is checked byte for byte against the input.
# - Prints one JSON line per step: seconds, input MB/s (MB = 10^6 bytes of
#   NDJSON), and the archive's size; the best of ROUNDS (default 1) runs.
# Environment: SPILLWAY_SHARED_DIR (default tests/, which holds data/),
# MEGABYTES (default 200), ROUNDS (default 1), SHAPE (default tweets),
# SKIP_BUILD (set: no cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
data="${SPILLWAY_SHARED_DIR:-$PWD/tests}/data"
megabytes="${MEGABYTES:-200}"
shape="${SHAPE:-tweets}"
rounds="${ROUNDS:-1}"
input="$target/bench-data/$shape-${megabytes}mb.ndjson"

python3 benches/gen_inputs.py "$data" "$target/bench-data" "$megabytes" "$shape" >&2
# SKIP_BUILD=1: use target/release/spillway as it is.
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release --bin spillway >&2
spillway="$target/release/spillway"
work="$(mktemp -d "$target/bench-replay.XXXXXX")"
trap 'rm -rf "$work"' EXIT
bytes=$(stat -c %s "$input")

config() { # NAME FORMAT COMPRESSION
  cat <<EOF
name = "$1"
[source]
type = "file"
path = "$input"
[buffer]
size_mb = 64
interval_seconds = 900
[format]
$2
[destination]
type = "local"
path = "$work/archive"
prefix = "$1/!{timestamp:yyyy/MM/dd/HH}/"
compression = "$3"
[checkpoint]
path = "$work/state-$1"
EOF
}

# `timed` COMMAND...: the seconds COMMAND takes.
timed() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

report() { # STEP NAME SECONDS EXTRA
  python3 -c 'import json,sys; s=float(sys.argv[3]); print(json.dumps({"step": sys.argv[1], "archive": sys.argv[2], "seconds": round(s, 2), "input_mb_per_s": round(int(sys.argv[4]) / 1e6 / s, 1), **json.loads(sys.argv[5])}))' "$@"
}

for spec in "parquet|type = \"parquet\"|none" "jsonl-gz|type = \"json_lines\"
envelope = true|gzip"; do
  name="${spec%%|*}"; rest="${spec#*|}"; format="${rest%|*}"; compression="${rest##*|}"
  config "$name" "$format" "$compression" > "$work/$name.toml"
  best_archive="" best_replay=""
  for _ in $(seq "$rounds"); do
    rm -rf "$work/archive/$name" "$work/state-$name" "$work/out.ndjson"
    s=$(timed "$spillway" run --once --config "$work/$name.toml")
    [ -z "$best_archive" ] || (( $(echo "$s < $best_archive" | bc -l) )) && best_archive=$s
    s=$(timed "$spillway" replay --from "$work/archive" --prefix "$name/!{timestamp:yyyy/MM/dd/HH}/" --to "file:$work/out.ndjson")
    [ -z "$best_replay" ] || (( $(echo "$s < $best_replay" | bc -l) )) && best_replay=$s
    cmp -s "$input" "$work/out.ndjson" || { echo "$name: the replay is not the input" >&2; exit 1; }
  done
  size=$(du -sb "$work/archive/$name" | cut -f1)
  objects=$(find "$work/archive/$name" -type f | wc -l)
  report archive "$name" "$best_archive" "$bytes" "{\"archive_mb\": $((size / 1000000)), \"objects\": $objects}"
  report replay "$name" "$best_replay" "$bytes" "{\"identical\": true}"
done
