#!/usr/bin/env python3
"""Builds an NDJSON input for benches/compress.sh from the shared samples.

Usage: compress_input.py DATA_DIR OUT_FILE [MEGABYTES]

Products (amazon_cellphones.ndjson) and tweets (twitter.json) interleaved,
each record recombined from fields of several source records, with fresh
ids, counts and timestamps (seeded: the same file every time). Not tiled
copies: a tiled file repeats whole records every few hundred KB, which
zstd's 2 MiB window turns into an unrealistically small output.
"""
import json
import random
import sys

data, out, megabytes = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 150
rng = random.Random(17)

with open(f"{data}/amazon_cellphones.ndjson") as f:
    rows = [json.loads(l) for l in f if l.strip()]
header, rows = rows[0], rows[1:]
products = [dict(zip(header, r)) for r in rows]
tweets = json.load(open(f"{data}/twitter.json"))["statuses"]
users = [t["user"] for t in tweets]


def product(n):
    p = dict(rng.choice(products))
    p["title"] = rng.choice(products)["title"]
    p["asin"] = "B%09d" % rng.randrange(10**9)
    p["rating"] = round(rng.uniform(1, 5), 1)
    p["totalReviews"] = rng.randrange(5000)
    p["prices"] = "$%d.%02d" % (rng.randrange(20, 900), rng.randrange(100))
    return {"id": n, "kind": "product", **p}


def tweet(n):
    t = dict(rng.choice(tweets))
    t["text"] = rng.choice(tweets)["text"]
    t["entities"] = rng.choice(tweets)["entities"]
    user = dict(rng.choice(users))
    user["id"] = rng.randrange(10**10)
    user["id_str"] = str(user["id"])
    user["followers_count"] = rng.randrange(100000)
    user["statuses_count"] = rng.randrange(100000)
    t["user"] = user
    t["id"] = 505874924095815681 + n * 7919 + rng.randrange(7919)
    t["id_str"] = str(t["id"])
    t["retweet_count"] = rng.randrange(1000)
    t["favorite_count"] = rng.randrange(1000)
    t["created_at"] = "Sun Aug 31 %02d:%02d:%02d +0000 2014" % (rng.randrange(24), rng.randrange(60), rng.randrange(60))
    return t


target = megabytes * 1_000_000
written, n = 0, 0
with open(out, "w", encoding="utf-8") as f:
    while written < target:
        record = product(n) if rng.random() < 0.6 else tweet(n)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        f.write(line)
        written += len(line.encode("utf-8"))
        n += 1
print(f"compress_input: {n} records, {written} bytes in {out}", file=sys.stderr)
