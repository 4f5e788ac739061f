#!/usr/bin/env bash
# Peak memory of the real binary on tiny records: 10 million 2-byte JSON
# records (`{}`) archived as gzip'd JSON lines to a local directory, at
# buffer.size_mb = 1 and 16. Memory must follow size_mb, not the record
# count (issue #16: 980 MB of RSS at size_mb = 1 before buffers counted
# each record's bookkeeping).
#
#   benches/tiny_records.sh        # from the repository root
#
# Prints the peak RSS (VmHWM, from /usr/bin/time -v) and the wall time of
# each run. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
work="$target/bench-tiny"
count="${COUNT:-10000000}"
cargo build --release --locked -q
mkdir -p "$work"
if [ ! -s "$work/tiny.ndjson" ] || [ "$(wc -l < "$work/tiny.ndjson")" != "$count" ]; then
  awk -v n="$count" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' > "$work/tiny.ndjson"
fi
printf '%-8s %-12s %-10s %s\n' size_mb records peak_MiB seconds
for size_mb in 1 16; do
  run="$work/run-$size_mb"
  rm -rf "$run" && mkdir -p "$run"
  cat > "$run/spillway.toml" <<TOML
name = "tiny"
[source]
type = "file"
path = "$work/tiny.ndjson"
[buffer]
size_mb = $size_mb
[destination]
type = "local"
path = "archive"
compression = "gzip"
[checkpoint]
path = "state"
TOML
  start=$(date +%s.%N)
  ( cd "$run" && /usr/bin/time -v "$target/release/spillway" run --config spillway.toml ) 2> "$run/stderr"
  end=$(date +%s.%N)
  peak_kib=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$run/stderr")
  printf '%-8s %-12s %-10s %.1f\n' "$size_mb" "$count" "$((peak_kib / 1024))" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
done
