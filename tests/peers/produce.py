"""Puts test records into a Kinesis stream and prints what it put.

Used by spillway's Kinesis tests (kinesalite or moto). Each user record's
data is the JSON {"id": ID, "key": KEY, "n": N, "pad": "..."}: ID unique,
KEY = key-(ID mod K), N = ID div K, so N grows with each record of a key. Some records are packed
into real KPL aggregated records by aws-kinesis-agg (all user records of an
aggregate share one partition key, as the KPL's per-shard aggregation
guarantees they land in one shard).

For every user record, one JSON line is printed: id, key, n, and the shard
and sequence number Kinesis assigned, plus the subsequence number (its
index inside its aggregate, 0 otherwise). Sequence numbers are the stream's
own order, which per key is the order the records were put.

With --one-aggregate-ehk HASH_KEY every batch becomes one aggregated record,
whatever its keys, put with that explicit hash key: as a KPL with a stale
shard map does, it can hold user records whose keys belong to another shard.

usage: produce.py ENDPOINT STREAM --count N [--first-id I] [--keys K]
       [--aggregate-every M] [--batch B] [--rate R] [--one-aggregate-ehk H]
"""
import argparse
import json
import sys
import time

import boto3
from botocore.config import Config
from aws_kinesis_agg.aggregator import RecordAggregator


def main():
    p = argparse.ArgumentParser()
    p.add_argument("endpoint")
    p.add_argument("stream")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first-id", type=int, default=0)
    p.add_argument("--keys", type=int, default=40)
    p.add_argument("--aggregate-every", type=int, default=0,
                   help="every M-th batch is put as KPL aggregated records (0: never)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--rate", type=float, default=0, help="records per second (0: as fast as possible)")
    p.add_argument("--one-aggregate-ehk", default=None,
                   help="put each batch as one aggregated record with this explicit hash key")
    args = p.parse_args()

    client = boto3.client("kinesis", endpoint_url=args.endpoint, region_name="us-east-1",
                          config=Config(retries={"max_attempts": 10, "mode": "standard"}))
    started = time.monotonic()
    produced = 0
    batch_no = 0
    ids = iter(range(args.first_id, args.first_id + args.count))
    while produced < args.count:
        users = []
        for _ in range(min(args.batch, args.count - produced)):
            i = next(ids)
            key = f"key-{i % args.keys}"
            # Monotonic per key across producer runs of one stream.
            n = i // args.keys
            data = json.dumps({"id": i, "key": key, "n": n, "pad": "x" * (40 + i % 120)}, separators=(",", ":"))
            users.append((i, key, n, data))
        aggregate = args.aggregate_every and batch_no % args.aggregate_every == 0
        batch_no += 1
        if args.one_aggregate_ehk is not None:
            put_one_aggregate(client, args.stream, users, args.one_aggregate_ehk)
        else:
            put_batch(client, args.stream, users, aggregate)
        produced += len(users)
        if args.rate:
            ahead = produced / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def put_batch(client, stream, users, aggregate):
    # Entries to put, each with the user records it carries.
    entries = []
    if aggregate:
        by_key = {}
        for u in users:
            by_key.setdefault(u[1], []).append(u)
        for key, group in by_key.items():
            agg = RecordAggregator()
            carried = []
            for u in group:
                full = agg.add_user_record(key, u[3].encode())
                if full is not None:
                    entries.append((full.get_contents()[2], key, carried))
                    carried = []
                carried.append(u)
            if agg.get_num_user_records() > 0:
                entries.append((agg.clear_and_get().get_contents()[2], key, carried))
    else:
        entries = [(u[3].encode(), u[1], [u]) for u in users]
    pending = entries
    while pending:
        response = client.put_records(StreamName=stream, Records=[
            {"Data": data, "PartitionKey": key} for data, key, _ in pending])
        retry = []
        for (data, key, carried), result in zip(pending, response["Records"]):
            if "ErrorCode" in result:
                retry.append((data, key, carried))
                continue
            for sub, (i, k, n, _) in enumerate(carried):
                print(json.dumps({"id": i, "key": k, "n": n, "shard": result["ShardId"],
                                  "seq": result["SequenceNumber"], "sub": sub if len(carried) > 1 or aggregate else 0}))
        if retry:
            time.sleep(0.2)
        pending = retry
    sys.stdout.flush()


def put_one_aggregate(client, stream, users, explicit_hash_key):
    agg = RecordAggregator()
    for u in users:
        # Each user record keeps its own partition key (and so its own hash
        # key inside the aggregate); the aggregate goes where the explicit
        # hash key says.
        if agg.add_user_record(u[1], u[3].encode()) is not None:
            raise SystemExit("batch too large for one aggregated record")
    data = agg.clear_and_get().get_contents()[2]
    while True:
        response = client.put_records(StreamName=stream, Records=[
            {"Data": data, "PartitionKey": users[0][1], "ExplicitHashKey": explicit_hash_key}])
        result = response["Records"][0]
        if "ErrorCode" not in result:
            break
        time.sleep(0.2)
    for sub, (i, k, n, _) in enumerate(users):
        print(json.dumps({"id": i, "key": k, "n": n, "shard": result["ShardId"],
                          "seq": result["SequenceNumber"], "sub": sub}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
