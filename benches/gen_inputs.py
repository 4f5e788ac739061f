"""Benchmark inputs: NDJSON files of a given size, generated from the real
samples in tests/data, every record different.

Why not tile the samples: a tiled file repeats a few hundred records, so
dictionaries, compression and any rebuild-from-row shortcut see far less
variety than a real stream, and the benchmark flatters whichever tool
profits most from repetition. Here every record is a sample record with its
ids, numbers, timestamps and free text varied by a seeded generator: the
shape (keys, types, nesting, nulls) is the sample's, the values are not.
The same arguments always give the same bytes.

Shapes:
- products: amazon_cellphones.ndjson (a header row of column names, then
  rows as arrays) zipped into flat objects, about 450 bytes a record;
- tweets: the statuses of twitter.json, deeply nested, about 4 KB;
- events: user activity events built from the tweets' users and entities
  (a nested user object, lists of hashtags, mentions and URLs, an ISO 8601
  timestamp), about 2 KB.

Usage: gen_inputs.py DATA_DIR OUT_DIR SIZE_MB [SHAPE...]
Writes OUT_DIR/SHAPE-SIZEmb.ndjson and a sidecar .json with the record
count, unless both exist from this same generator. Prints one JSON line per
file. Standard library only.
"""
import datetime
import hashlib
import json
import os
import random
import re
import sys

SHAPES = ("products", "tweets", "events")
# Strings under these keys are categories in real data (languages, colours,
# clients, enums): repeated values are their nature, so they stay as they are.
KEEP_STRINGS = {
    "lang", "iso_language_code", "result_type", "source", "time_zone", "resize",
    "type", "brand", "event_type", "client",
}
# Integers under these keys are positions and offsets, not measures.
KEEP_INTS = {"indices", "utc_offset", "w", "h"}
BASE_TIME = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class Varier:
    """Varies the values of one sample record, keeping its shape."""

    def __init__(self, rng, vocabulary):
        self.rng = rng
        self.vocabulary = vocabulary

    def value(self, key, v):
        if isinstance(v, dict):
            return self.object(v)
        if isinstance(v, list):
            return [self.value(key, x) for x in v]
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, int):
            return self.integer(key, v)
        if isinstance(v, float):
            return round(v * self.rng.uniform(0.9, 1.1), 2)
        return self.string(key, v)

    def object(self, obj):
        out = {k: self.value(k, v) for k, v in obj.items()}
        # Keep `id_str` equal to `id` (and the like), as real producers do.
        for k, v in out.items():
            if k.endswith("_str") and isinstance(out.get(k[:-4]), int) and isinstance(v, str):
                out[k] = str(out[k[:-4]])
        return out

    def integer(self, key, v):
        if key in KEEP_INTS:
            return v
        if key == "id" or key.endswith("_id"):
            digits = max(len(str(abs(v))), 1)
            return self.rng.randrange(10 ** (digits - 1), 10**digits)
        if v == 0:
            return 0 if self.rng.random() < 0.6 else self.rng.randint(1, 9)
        return self.rng.randint(v // 2, v + v // 2 + 1)

    def string(self, key, s):
        rng = self.rng
        if key in KEEP_STRINGS or key.endswith("_color") or not s:
            return s
        if key == "created_at":
            return self.time().strftime("%a %b %d %H:%M:%S +0000 %Y")
        if s.isdigit():
            return "".join(rng.choice("0123456789") for _ in s)
        words = s.split(" ")
        if len(words) >= 3:
            return " ".join(rng.choice(self.vocabulary) if rng.random() < 0.3 else w for w in words)
        # Names, URLs, codes: change a few characters of the second half,
        # drawn from the string's own characters (scripts stay as they are).
        chars = list(s)
        pool = s + ALNUM if s.isascii() else s
        changes = max(1, min(6, len(s) // 4)) if len(s) > 8 else (1 if rng.random() < 0.5 else 0)
        for _ in range(changes):
            i = rng.randrange(len(s) // 2, len(s))
            chars[i] = rng.choice(pool)
        return "".join(chars)

    def time(self):
        return BASE_TIME + datetime.timedelta(seconds=self.rng.uniform(0, 30 * 86400))


def load_products(data):
    with open(os.path.join(data, "amazon_cellphones.ndjson"), encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    header = json.loads(lines[0])
    return [dict(zip(header, json.loads(l))) for l in lines[1:]]


def load_statuses(data):
    with open(os.path.join(data, "twitter.json"), encoding="utf-8") as f:
        return json.load(f)["statuses"]


def vocabulary_of(records):
    words = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and " " in v:
            words.update(w for w in v.split(" ") if w)

    for r in records:
        walk(r)
    return sorted(words)


def event_of(status, varier, rng):
    """A user activity event built from a tweet's user and entities."""
    entities = status.get("entities", {})
    event = {
        "event_id": "",
        "event_time": "",
        "event_type": rng.choice(["view", "like", "reply", "retweet", "follow", "share"]),
        "tweet_id": status["id"],
        "lang": status.get("lang"),
        "client": re.sub(r"<[^>]*>", "", status.get("source", "")),
        "user": status["user"],
        "hashtags": [h["text"] for h in entities.get("hashtags", [])],
        "mentions": [
            {"id": m["id"], "screen_name": m["screen_name"]} for m in entities.get("user_mentions", [])
        ],
        "urls": [u["expanded_url"] for u in entities.get("urls", [])],
        "metrics": {
            "retweets": status.get("retweet_count", 0),
            "favorites": status.get("favorite_count", 0),
            "text_chars": len(status.get("text", "")),
        },
    }
    event = varier.object(event)
    event["event_id"] = "%032x" % rng.getrandbits(128)
    event["event_time"] = varier.time().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


def generate(shape, data, path, size_bytes):
    # One seed per shape: the files do not depend on which others are made.
    rng = random.Random(SHAPES.index(shape) + 17)
    statuses = load_statuses(data)
    samples = load_products(data) if shape == "products" else statuses
    varier = Varier(rng, vocabulary_of(samples))
    records = written = 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        while written < size_bytes:
            sample = rng.choice(samples)
            record = event_of(sample, varier, rng) if shape == "events" else varier.object(sample)
            line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            out.write(line)
            written += len(line)
            records += 1
    os.replace(tmp, path)
    return records, written


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    # Absolute paths: spillway runs in a directory of its own.
    data, out_dir, size_mb = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
    shapes = sys.argv[4:] or list(SHAPES)
    with open(__file__, "rb") as f:
        generator = hashlib.sha256(f.read()).hexdigest()[:16]
    os.makedirs(out_dir, exist_ok=True)
    for shape in shapes:
        if shape not in SHAPES:
            sys.exit(f"gen_inputs: unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        path = os.path.join(out_dir, f"{shape}-{size_mb}mb.ndjson")
        meta_path = path + ".json"
        meta = None
        if os.path.exists(path) and os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get("generator") != generator or meta.get("bytes") != os.path.getsize(path):
                meta = None
        if meta is None:
            print(f"gen_inputs: generating {path}", file=sys.stderr)
            records, written = generate(shape, data, path, size_mb * 10**6)
            meta = {"shape": shape, "path": path, "records": records, "bytes": written, "generator": generator}
            with open(meta_path, "w") as f:
                json.dump(meta, f)
        print(json.dumps(meta))


if __name__ == "__main__":
    main()
