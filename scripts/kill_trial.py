#!/usr/bin/env python3
"""Random kill -9 trial (not a CI test: a soak run by hand).

Usage: kill_trial.py BINARY WORKDIR KILLS [json|parquet]  (env N, SEED, MAXP)
Parquet needs pyarrow in the running python.

File source -> jq (filter + split) -> metadata_extraction
over 20 partitions (and hostile values) -> json_lines gzip or parquet, local store.
Kills the real binary at random moments, then finishes the input; checks every
expected output exactly once, every failed record once in errors, dropped nowhere."""
import base64, gzip, json, os, random, shutil, signal, subprocess, sys, time, collections

BIN = sys.argv[1]; WORK = sys.argv[2]; KILLS = int(sys.argv[3]); FMT = sys.argv[4] if len(sys.argv) > 4 else "json"
MAXP = int(os.environ.get("MAXP", "40")); N = int(os.environ.get("N", "60000")); SEED = int(os.environ.get("SEED", "1"))
rng = random.Random(SEED)
VERIFY = os.environ.get("VERIFY") == "1"  # only check an earlier run
if not VERIFY:
    shutil.rmtree(WORK, ignore_errors=True); os.makedirs(WORK)
hostile = ["acme", "../../etc", "/", "", "..", "x" * 300, "a\nb\u0001c", "café/é"]
expected = collections.Counter(); bad = collections.Counter()
with open(os.devnull if VERIFY else f"{WORK}/in.ndjson", "wb") as f:
    for i in range(N):
        if i % 997 == 5:
            line = ('{"id": %d, "broken": ' % i).encode(); bad[line] += 1
        else:
            cust = hostile[i % len(hostile)] if i % 13 == 0 else f"c{i % 20}"
            items = list(range(i % 4))  # 0..3 outputs
            rec = {"id": i, "keep": i % 7 != 0, "customer": cust, "items": items, "pad": "p" * rng.randint(10, 600)}
            line = json.dumps(rec).encode()
            if rec["keep"]:
                for it in items: expected[f"{i}-{it}"] += 1
        f.write(line + b"\n")
fmt = '[format]\ntype = "parquet"\n' if FMT == "parquet" else ''
comp = 'compression = "gzip"\n' if FMT != "parquet" else ''
open(f"{WORK}/c.toml", "w").write(f'''name = "trial"
[source]
type = "file"
path = "in.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[[processors]]
type = "jq"
query = 'select(.keep) | {{id: "\\(.id)-\\(.items[])", customer}}'
[[processors]]
type = "metadata_extraction"
query = '{{customer: .customer}}'
[dynamic_partitioning]
enabled = true
max_active_partitions = {MAXP}
{fmt}[destination]
type = "local"
path = "archive"
prefix = "c=!{{partitionKeyFromQuery:customer}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
{comp}[checkpoint]
path = "state"
''')
def run(once):
    args = [BIN, "run", "--config", "c.toml"] + (["--once"] if once else [])
    return subprocess.Popen(args, cwd=WORK, stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/log", "ab"))
for k in range(0 if VERIFY else KILLS):
    p = run(True); time.sleep(rng.uniform(0.2, 2.5))
    if p.poll() is not None: print("finished before kill", k, "rc", p.returncode); continue
    p.send_signal(signal.SIGKILL); p.wait()
if not VERIFY:
    p = run(True); rc = p.wait(); print("final rc", rc)
got = collections.Counter(); errs = collections.Counter(); part_bad = 0
for root, _, files in os.walk(f"{WORK}/archive"):
    for fn in files:
        path = os.path.join(root, fn); rel = os.path.relpath(path, f"{WORK}/archive")
        if rel.startswith("_spillway/"):
            continue  # the table schema spillway publishes beside the files
        if rel.startswith("errors/"):
            data = open(path, "rb").read()
            if fn.endswith(".gz") or data[:2] == b"\x1f\x8b": data = gzip.decompress(data)
            for l in data.splitlines():
                e = json.loads(l)
                errs[(e.get("errorCode"), base64.b64decode(e["rawData"]))] += 1
            continue
        if FMT == "parquet":
            import pyarrow.parquet as pq
            rows = pq.read_table(path).to_pylist(); recs = rows
        else:
            recs = [json.loads(l) for l in gzip.open(path).read().splitlines()]
        for r in recs:
            got[r["id"]] += 1
missing = [k for k in expected if got[k] == 0]; dup = [k for k, v in got.items() if v > 1]; extra = [k for k in got if k not in expected]
ebad = collections.Counter({raw: n for (code, raw), n in errs.items()})
print(f"kills={KILLS} expected={len(expected)} got={sum(got.values())} missing={len(missing)} dup={len(dup)} extra={len(extra)}")
print("error codes", collections.Counter(c for (c, _) in errs.elements()))
print("bad lines", len(bad), "in errors", sum(1 for b in bad if ebad[b] >= 1), "dup errors", sum(1 for b, n in ebad.items() if n > 1))
print("missing sample", missing[:5], "dup sample", dup[:5])
ok = not missing and not dup and not extra and all(ebad[b] == 1 for b in bad)
print("OK" if ok else "FAIL"); sys.exit(0 if ok else 1)
