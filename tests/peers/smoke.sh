#!/usr/bin/env bash
# Smoke test of the test peers: installs them, starts them on loopback, checks
# kinesalite, moto (S3, Kinesis, DynamoDB) and aws_kinesis_agg with boto3, then
# stops them. Usage: tests/peers/smoke.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=scripts/peers.sh
source "$here/../../scripts/peers.sh"

t0=$SECONDS
peers_install
echo "smoke: peers_install took $((SECONDS - t0))s"

# --trap: peers_stop runs when this script exits, even on failure.
peers_start --trap

for v in SPILLWAY_TEST_KINESALITE SPILLWAY_TEST_MOTO SPILLWAY_TEST_PYTHON \
         AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION; do
    echo "smoke: $v=${!v}"
done
case "$SPILLWAY_TEST_KINESALITE$SPILLWAY_TEST_MOTO" in
    http://127.0.0.1:*http://127.0.0.1:*) ;;
    *) echo "smoke: FAIL: peers not on 127.0.0.1" >&2; exit 1 ;;
esac
if [ -n "${AWS_PROFILE:-}${AWS_SESSION_TOKEN:-}" ]; then
    echo "smoke: FAIL: AWS_PROFILE/AWS_SESSION_TOKEN still set" >&2; exit 1
fi
grep -q 'Listening at http://127.0.0.1:' "$PEERS_LOG_DIR/kinesalite.log" || {
    echo "smoke: FAIL: kinesalite is not bound to 127.0.0.1 only" >&2; exit 1; }

"$SPILLWAY_TEST_PYTHON" - <<'PY'
import os, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

K = os.environ["SPILLWAY_TEST_KINESALITE"]
M = os.environ["SPILLWAY_TEST_MOTO"]
cfg = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10,
             s3={"addressing_style": "path"})

def ok(msg):
    print("smoke: ok:", msg, flush=True)

def wait_active(kin, name, timeout=30):
    deadline = time.time() + timeout
    while True:
        d = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if d["StreamStatus"] == "ACTIVE":
            return
        if time.time() > deadline:
            sys.exit(f"smoke: FAIL: stream {name} not ACTIVE after {timeout}s: {d['StreamStatus']}")
        time.sleep(0.1)

# --- kinesalite: CreateStream (2 shards), wait ACTIVE, PutRecord, GetRecords
kin = boto3.client("kinesis", endpoint_url=K, config=cfg)
kin.create_stream(StreamName="smoke", ShardCount=2)
wait_active(kin, "smoke")
put = kin.put_record(StreamName="smoke", PartitionKey="pk-1", Data=b"hello spillway")
shards = kin.list_shards(StreamName="smoke")["Shards"]
assert len(shards) == 2, shards
it = kin.get_shard_iterator(StreamName="smoke", ShardId=put["ShardId"],
                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
recs = kin.get_records(ShardIterator=it, Limit=10)["Records"]
assert [r["Data"] for r in recs] == [b"hello spillway"], recs
assert recs[0]["SequenceNumber"] == put["SequenceNumber"]
ok(f"kinesalite CreateStream(2 shards)/ACTIVE/PutRecord/GetRecords ({put['ShardId']})")

# --- moto S3: bucket + conditional put (If-None-Match: *)
s3 = boto3.client("s3", endpoint_url=M, config=cfg)
s3.create_bucket(Bucket="spillway-test")
s3.put_object(Bucket="spillway-test", Key="a/b.bin", Body=b"first", IfNoneMatch="*")
try:
    s3.put_object(Bucket="spillway-test", Key="a/b.bin", Body=b"second", IfNoneMatch="*")
except ClientError as e:
    code = e.response["Error"]["Code"]
    status = e.response["ResponseMetadata"]["HTTPStatusCode"]
    assert (status, code) == (412, "PreconditionFailed"), (status, code)
else:
    sys.exit("smoke: FAIL: second put with IfNoneMatch='*' succeeded")
body = s3.get_object(Bucket="spillway-test", Key="a/b.bin")["Body"].read()
assert body == b"first", body
ok("moto S3 create_bucket + put_object IfNoneMatch='*' (second put -> 412 PreconditionFailed)")

# --- fail-safe: a client without endpoint_url goes to moto, not AWS
names = [b["Name"] for b in boto3.client("s3", config=cfg).list_buckets()["Buckets"]]
assert "spillway-test" in names, names
ok("client without endpoint_url reaches moto via AWS_ENDPOINT_URL")

# --- moto Kinesis: CreateStream + SplitShard
mk = boto3.client("kinesis", endpoint_url=M, config=cfg)
mk.create_stream(StreamName="smoke-split", ShardCount=1)
wait_active(mk, "smoke-split")
parent = mk.list_shards(StreamName="smoke-split")["Shards"][0]
mk.split_shard(StreamName="smoke-split", ShardToSplit=parent["ShardId"],
               NewStartingHashKey=str(2**127))
wait_active(mk, "smoke-split")
after = mk.list_shards(StreamName="smoke-split")["Shards"]
children = [s for s in after if s.get("ParentShardId") == parent["ShardId"]]
assert len(children) == 2, after
closed = [s for s in after if s["ShardId"] == parent["ShardId"]]
assert closed and "EndingSequenceNumber" in closed[0]["SequenceNumberRange"], after
ok(f"moto Kinesis CreateStream + SplitShard ({len(after)} shards, parent closed)")

# --- moto DynamoDB
ddb = boto3.client("dynamodb", endpoint_url=M, config=cfg)
ddb.create_table(TableName="smoke", BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
ddb.put_item(TableName="smoke", Item={"k": {"S": "x"}, "v": {"N": "1"}})
assert ddb.get_item(TableName="smoke", Key={"k": {"S": "x"}})["Item"]["v"] == {"N": "1"}
ok("moto DynamoDB create_table/put_item/get_item")

# --- aws_kinesis_agg: KPL aggregated record, round-trip through kinesalite
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
agg = RecordAggregator()
for i in range(3):
    assert agg.add_user_record(f"pk-{i}", f"user record {i}".encode()) is None
pk, ehk, data = agg.clear_and_get().get_contents()
magic = data[:4].hex(" ")
print("smoke: aggregated record first 4 bytes:", magic)
assert magic == "f3 89 9a c2", magic
extra = {"ExplicitHashKey": ehk} if ehk else {}
kin.put_record(StreamName="smoke", PartitionKey=pk, Data=data, **extra)
got = []
for s in shards:
    it = kin.get_shard_iterator(StreamName="smoke", ShardId=s["ShardId"],
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got += kin.get_records(ShardIterator=it, Limit=10)["Records"]
agg_recs = [r for r in got if r["Data"][:4] == b"\xf3\x89\x9a\xc2"]
assert len(agg_recs) == 1, got
# Quirk of aws-kinesis-agg 1.2.3: user records come back base64-encoded even
# with data_format="Boto3".
import base64
users = [base64.b64decode(r["kinesis"]["data"])
         for r in iter_deaggregate_records(agg_recs, data_format="Boto3")]
assert users == [f"user record {i}".encode() for i in range(3)], users
ok("aws_kinesis_agg aggregated record (3 user records) through kinesalite and back")

import pyarrow
ok(f"pyarrow {pyarrow.__version__} imports")
PY

peers_stop
peers_stop  # safe twice
if [ -f "$PEERS_PIDS_FILE" ] || [ -n "${SPILLWAY_TEST_MOTO:-}" ]; then
    echo "smoke: FAIL: peers_stop left state behind" >&2; exit 1
fi
echo "smoke: PASS"
