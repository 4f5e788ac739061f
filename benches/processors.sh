#!/usr/bin/env bash
# Throughput of processors and dynamic partitioning (issue #18): MB of
# product records (amazon_cellphones.ndjson's rows, varied by
# benches/gen_inputs.py) through a jq filter plus metadata_extraction over
# 20 partitions (10 brands x 2 rating tiers), against the same pipeline
# without processors (one prefix). Target: at least half the throughput
# without processors.
#
#   benches/processors.sh                       # from the repository root
#   MB=50 ROUNDS=1 PROFILE=debug benches/processors.sh   # quick, indicative only
#
# The whole release binary, end to end (`spillway run --config`, fresh
# archive and checkpoint each run), both pipelines in the same run, taking
# turns for ROUNDS rounds (default 3) on the same page-cached input. Prints
# each run's wall time and MB/s, then the medians and their ratio. Checks
# that each run wrote its records (a count of archived lines) and no error
# object. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
profile="${PROFILE:-release}"
mb="${MB:-200}"
rounds="${ROUNDS:-3}"
shared="${SPILLWAY_SHARED_DIR:-$PWD/tests}"
work="$target/bench-processors"
if [ "$profile" = release ]; then
  cargo build --release --locked -q
else
  cargo build --locked -q
fi
binary="$target/$profile/spillway"
mkdir -p "$work"
python3 benches/gen_inputs.py "$shared/data" "$work" "$mb" products > /dev/null
input="$work/products-${mb}mb.ndjson"
bytes=$(stat -c %s "$input")
records=$(wc -l < "$input")
# What the jq filter keeps, for the check.
kept=$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    n += json.loads(line)["totalReviews"] > 0
print(n)' "$input")

config() {
  local dir="$1" processors="$2" prefix="$3" partitioning="$4"
  cat > "$dir/spillway.toml" <<TOML
name = "bench"
[source]
type = "file"
path = "$input"
[buffer]
size_mb = 64
$processors
$partitioning
[destination]
type = "local"
path = "archive"
prefix = "$prefix"
error_prefix = "errors/"
compression = "gzip"
[checkpoint]
path = "state"
TOML
}

run() {
  local name="$1" expected="$2"
  local dir="$work/run-$name"
  rm -rf "$dir/archive" "$dir/state"
  local start end
  start=$(date +%s.%N)
  # CPU seconds of the run and its jq workers (children), from bash's
  # `times` in the subshell: what the run costs, whatever the load.
  echo "0m0s 0m0s" > "$dir/cpu"
  ( cd "$dir" && "$binary" run --config spillway.toml 2> "$dir/stderr"; times > "$dir/cpu" )
  end=$(date +%s.%N)
  local cpu
  cpu=$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$dir/cpu")
  local lines
  lines=$(find "$dir/archive" -name '*.gz' -not -path '*/errors/*' -exec zcat {} + | wc -l)
  local status=ok
  [ "$lines" = "$expected" ] || status="FAILED: $lines lines archived, $expected expected"
  [ -z "$(find "$dir/archive" -path '*/errors/*' -type f)" ] || status="FAILED: error objects written"
  awk -v n="$name" -v a="$start" -v b="$end" -v bytes="$bytes" -v s="$status" \
    -v cpu="$cpu" 'BEGIN { printf "%-28s %6.2f s %7.1f MB/s %6.2f CPU s  %s\n", n, b - a, bytes / 1e6 / (b - a), cpu, s }'
  echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" >> "$work/times"
}

mkdir -p "$work/run-without-processors" "$work/run-jq-metadata-20-partitions"
config "$work/run-without-processors" "" "products/" ""
config "$work/run-jq-metadata-20-partitions" "[[processors]]
type = \"jq\"
query = 'select(.totalReviews > 0) | del(.image)'
[[processors]]
type = \"metadata_extraction\"
query = '{brand: .brand, tier: (if .rating >= 3.5 then \"high\" else \"low\" end)}'" \
  'brand=!{partitionKeyFromQuery:brand}/tier=!{partitionKeyFromQuery:tier}/' "[dynamic_partitioning]
enabled = true"

printf '%s, commit %s, %s cores, load %s\n' "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src transforms destinations || echo +changes)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'input: %s MB, %s records (%s kept by the filter), profile %s, %s rounds\n' "$((bytes / 1000000))" "$records" "$kept" "$profile" "$rounds"
rm -f "$work/times"
for round in $(seq "$rounds"); do
  cat "$input" > /dev/null
  if [ $((round % 2)) = 1 ]; then
    run without-processors "$records"
    run jq-metadata-20-partitions "$kept"
  else
    run jq-metadata-20-partitions "$kept"
    run without-processors "$records"
  fi
done
python3 - "$work/times" "$bytes" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, seconds = line.split()
    times.setdefault(name, []).append(float(seconds))
mb = int(sys.argv[2]) / 1e6
median = {name: mb / statistics.median(t) for name, t in times.items()}
for name, rate in median.items():
    print(f"median {name:<28} {rate:7.1f} MB/s")
ratio = median["jq-metadata-20-partitions"] / median["without-processors"]
print(f"processors / none: {ratio:.2f} (target: at least 0.50) load {open('/proc/loadavg').read().split()[0]}")
PY
