#!/usr/bin/env bash
# Archiving throughput to S3 (moto) 100 ms away, max_concurrent_puts = 4
# against 1 (issue #21: a sink with 100 ms of latency per request must not
# cap a stream at one object per round trip).
#
#   benches/concurrent_puts.sh           # from the repository root
#   PROFILE=debug benches/concurrent_puts.sh   # the debug binary (no release build)
#
# Knobs: MB (input size, default 64), SIZE_MB (buffer.size_mb, default 1),
# DELAY_MS (per request, default 100), CONCURRENCY (default "1 4 16").
# Starts moto with scripts/peers.sh and benches/latency_proxy.py in front
# of it; prints the wall time and throughput of each run. A benchmark, not
# a test: tests/daemon.rs checks that each run archives exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
work="$target/bench-concurrent-puts"
mb="${MB:-64}"
size_mb="${SIZE_MB:-1}"
delay_ms="${DELAY_MS:-100}"
concurrency="${CONCURRENCY:-1 4 16}"
case "$profile" in
  release) cargo build --release --locked -q ;;
  *) cargo build --locked -q ;;
esac
binary="$target/$profile/spillway"
# shellcheck source=../scripts/peers.sh
source scripts/peers.sh
peers_start --trap
mkdir -p "$work"
input="$work/input-$mb.ndjson"
if [ ! -s "$input" ]; then
  python3 -c "
import sys
line = '{\"id\":%d,\"pad\":\"' + 'p' * 1000 + '\"}\n'
with open(sys.argv[1], 'w') as out:
    for i in range($mb * 1024):
        out.write(line % i)
" "$input"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 benches/latency_proxy.py "$port" "${SPILLWAY_TEST_MOTO#http://}" "$delay_ms" &
proxy=$!
trap 'kill $proxy 2>/dev/null; peers_stop' EXIT
sleep 1
printf '%-20s %-10s %-8s %-10s %s\n' max_concurrent_puts objects seconds MB/s records_ok
for n in $concurrency; do
  run="$work/run-$n"
  bucket="bench-puts-$n-$$"
  rm -rf "$run" && mkdir -p "$run"
  "$SPILLWAY_TEST_PYTHON" -c "
import boto3, sys
boto3.client('s3', region_name='us-east-1', endpoint_url=sys.argv[2]).create_bucket(Bucket=sys.argv[1])" \
    "$bucket" "$SPILLWAY_TEST_MOTO"
  cat > "$run/spillway.toml" <<TOML
name = "bench"
[source]
type = "file"
path = "$input"
[buffer]
size_mb = $size_mb
[destination]
type = "s3"
bucket = "$bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:$port"
force_path_style = true
checksum = "when_required"
max_concurrent_puts = $n
[checkpoint]
path = "state"
TOML
  start=$(date +%s.%N)
  ( cd "$run" && "$binary" --log-format json run --config spillway.toml ) 2> "$run/stderr"
  end=$(date +%s.%N)
  objects=$(grep -c '"flushed"' "$run/stderr" || true)
  records=$(grep '"run finished"' "$run/stderr" | sed -n 's/.*"records_delivered":\([0-9]*\).*/\1/p')
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  printf '%-20s %-10s %-8s %-10s %s\n' "$n" "$objects" "$seconds" "$(awk -v m="$mb" -v s="$seconds" 'BEGIN { printf "%.1f", m / s }')" "${records:-?}/$((mb * 1024))"
done
