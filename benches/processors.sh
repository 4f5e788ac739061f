#!/usr/bin/env bash
# Throughput of processors and dynamic partitioning (issue #18): 200 MB of
# JSON records through a jq filter plus metadata_extraction over 20
# partitions, against the same pipeline without processors (one prefix).
# Target: at least half the throughput without processors.
#
#   benches/processors.sh              # from the repository root
#   MB=50 PROFILE=debug benches/processors.sh   # quicker, indicative only
#
# Prints the wall time and MB/s of each run. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
profile="${PROFILE:-release}"
mb="${MB:-200}"
work="$target/bench-processors"
if [ "$profile" = release ]; then
  cargo build --release --locked -q
else
  cargo build --locked -q
fi
binary="$target/$profile/spillway"
mkdir -p "$work"
input="$work/orders-$mb.ndjson"
if [ ! -s "$input" ]; then
  python3 - "$input" "$mb" <<'PY'
import json, random, sys
path, mb = sys.argv[1], int(sys.argv[2])
random.seed(7)
venues = [f"V{n:02}" for n in range(20)]
with open(path, "w") as out:
    written, i = 0, 0
    while written < mb * 1_000_000:
        record = {"id": i, "venueCode": random.choice(venues), "ts": f"2026-11-{1 + i % 28:02}T10:00:00Z",
                  "price": None if i % 10 == 0 else round(random.random() * 100, 2),
                  "logo": "x" * 200, "items": [{"sku": f"s{j}", "qty": j} for j in range(5)]}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        out.write(line)
        written += len(line)
        i += 1
PY
fi
bytes=$(stat -c %s "$input")
run() {
  local name="$1" processors="$2" prefix="$3" partitioning="$4"
  local dir="$work/run-$name"
  rm -rf "$dir" && mkdir -p "$dir"
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
compression = "gzip"
[checkpoint]
path = "state"
TOML
  local start end
  start=$(date +%s.%N)
  ( cd "$dir" && "$binary" run --config spillway.toml ) 2> "$dir/stderr"
  end=$(date +%s.%N)
  awk -v n="$name" -v a="$start" -v b="$end" -v bytes="$bytes" \
    'BEGIN { printf "%-24s %6.1f s %7.1f MB/s\n", n, b - a, bytes / 1e6 / (b - a) }'
}
printf 'input: %s MB, profile %s\n' "$((bytes / 1000000))" "$profile"
run without-processors "" "orders/" ""
run jq-metadata-20-partitions "[[processors]]
type = \"jq\"
query = 'select(.price != null) | del(.logo)'
[[processors]]
type = \"metadata_extraction\"
query = '{venue: .venueCode, day: .ts[0:10]}'" 'venue=!{partitionKeyFromQuery:venue}/' "[dynamic_partitioning]
enabled = true"
