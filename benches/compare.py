"""The end-to-end benchmark's driver: whole `spillway run` processes against
whole peer processes, on the same page-cached inputs, interleaved.

Why whole processes: a user meets the product, not its encoder. A harness
that converts one buffer in memory leaves out the source, the router, the
checkpoint, the files, process start and the buffers alive at once, and it
measured spillway at 1.5 times polars where the binary ran at 0.9 times
(issue #17). So each measurement here is one process, timed from the
outside: wall seconds, user + system CPU seconds and peak RSS (from
`/usr/bin/time -v`, or from wait4(2) where that is not installed). Every
output is read back: a run whose row count differs from the input's record
count is reported as failed, whatever its speed.

Run by benches/compare.sh (which builds the binary, installs the peers and
generates the inputs); see docs/benchmarks.md for how to read the table.
"""
import argparse
import datetime
import glob
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import pyarrow.parquet as pq

TIME = "/usr/bin/time"
PEERS = ("pyarrow", "duckdb", "polars")
PARQUET_TARGET = 2.0  # times the fastest peer, best and median
GZIP_TARGET, ZSTD_TARGET = 1.5, 0.8  # times `gzip -6`, `zstd -3 -T2`


def measure(argv, cwd, stdout_path, stderr_path):
    """Runs one process to its end; its wall, CPU and peak RSS."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        if os.access(TIME, os.X_OK):
            stats = stderr_path + ".time"
            start = time.perf_counter()
            code = subprocess.run([TIME, "-v", "-o", stats, *argv], cwd=cwd, stdout=out, stderr=err).returncode
            wall = time.perf_counter() - start
            fields = {}
            with open(stats) as f:
                for line in f:
                    key, _, value = line.strip().rpartition(": ")
                    fields[key] = value
            cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
            peak_kib = int(fields["Maximum resident set size (kbytes)"])
        else:
            # wait4 gives this one child's usage; RUSAGE_CHILDREN's peak
            # would be the largest of every child so far.
            start = time.perf_counter()
            child = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            child.returncode = code = os.waitstatus_to_exitcode(status)
            cpu, peak_kib = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak_kib / 1024), "exit": code}


def last_line(path):
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def spillway_config(input_path, buffer_mb, format_type, compression):
    return f"""name = "bench"
[source]
type = "file"
path = {json.dumps(input_path)}
[buffer]
size_mb = {buffer_mb}
[format]
type = "{format_type}"
[destination]
type = "local"
path = "archive"
compression = "{compression}"
[checkpoint]
path = "state"
"""


def count_lines(paths, opener):
    lines = size = 0
    for p in paths:
        with opener(p) as f:
            while chunk := f.read(1 << 22):
                lines += chunk.count(b"\n")
                size += len(chunk)
    return lines, size


def zstd_reader(path):
    return subprocess.Popen(["zstd", "-dcq", path], stdout=subprocess.PIPE).stdout


def run_spillway(args, work, inp, buffer_mb, format_type, compression):
    """One `spillway run` in fresh archive and checkpoint directories."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(work, "spillway.toml"), "w") as f:
        f.write(spillway_config(inp["path"], buffer_mb, format_type, compression))
    log = os.path.join(work, "spillway.log")
    m = measure([args.bin, "run", "--config", "spillway.toml"], work, os.devnull, log)
    archive = os.path.join(work, "archive")
    files = [p for p in glob.glob(os.path.join(archive, "**", "*"), recursive=True) if os.path.isfile(p)]
    errors = [p for p in files if os.path.relpath(p, archive).startswith("errors" + os.sep)]
    # The table schema's objects (`_spillway/schemas/`, Parquet with an
    # inferred schema) are not data.
    own = [p for p in files if os.path.relpath(p, archive).startswith("_spillway" + os.sep)]
    data = sorted(set(files) - set(errors) - set(own))
    m["output_bytes"] = sum(os.path.getsize(p) for p in data)
    problems = []
    if m["exit"] != 0:
        problems.append(f"exit {m['exit']}: {last_line(log)}")
    if errors:
        problems.append(f"{len(errors)} error objects")
    if format_type == "parquet":
        m["rows"] = sum(pq.ParquetFile(p).metadata.num_rows for p in data)
    elif compression == "gzip":
        m["rows"], decompressed = count_lines(data, gzip.open)
        if decompressed != inp["bytes"]:
            problems.append(f"{decompressed} bytes decompressed, input {inp['bytes']}")
    elif shutil.which("zstd"):
        m["rows"], decompressed = count_lines(data, zstd_reader)
        if decompressed != inp["bytes"]:
            problems.append(f"{decompressed} bytes decompressed, input {inp['bytes']}")
    if "rows" in m and m["rows"] != inp["records"]:
        problems.append(f"{m['rows']} rows, input {inp['records']} records")
    m["problems"] = problems
    return m


def run_peer(args, work, inp, tool):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log = os.path.join(work, "tool.log")
    if tool in PEERS:
        out = os.path.join(work, "out.parquet")
        argv = [sys.executable, args.tools, tool, inp["path"], out]
        m = measure(argv, work, os.devnull, log)
    else:
        out = os.path.join(work, "out")
        argv = ["gzip", "-6", "-c", inp["path"]] if tool == "gzip -6" else ["zstd", "-3", "-T2", "-q", "-c", inp["path"]]
        m = measure(argv, work, out, log)
    m["problems"] = [] if m["exit"] == 0 else [f"exit {m['exit']}: {last_line(log)}"]
    if m["exit"] == 0:
        m["output_bytes"] = os.path.getsize(out)
        if tool in PEERS:
            m["rows"] = pq.ParquetFile(out).metadata.num_rows
            if m["rows"] != inp["records"]:
                m["problems"].append(f"{m['rows']} rows, input {inp['records']} records")
    return m


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def busy():
    """What else runs: the load average and compilers (figures are noisy then)."""
    compilers = subprocess.run(["pgrep", "-c", "-x", "rustc|cargo"], capture_output=True, text=True).stdout.strip()
    return {"load_1m": os.getloadavg()[0], "compilers": int(compilers or 0)}


def summarise(runs, args):
    rows = {}
    for r in runs:
        rows.setdefault((r["input"], r["part"], r["tool"]), []).append(r)
    out = []
    for (name, part, tool), rs in rows.items():
        ok = [r for r in rs if not r["problems"]]
        speeds = [r["mb_per_s"] for r in ok]
        out.append({
            "kind": "row", "input": name, "part": part, "tool": tool, "buffer_mb": rs[0].get("buffer_mb"),
            "runs": len(rs), "failed": len(rs) - len(ok), "problems": sorted({p for r in rs for p in r["problems"]}),
            "best_mb_per_s": max(speeds, default=None), "median_mb_per_s": statistics.median(speeds) if speeds else None,
            "median_cpu_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
            "peak_rss_mib": max((r["peak_rss_mib"] for r in ok), default=None),
            "output_mb": round(statistics.median(r["output_bytes"] for r in ok) / 1e6, 1) if ok else None,
        })
    return out


def verdicts(rows):
    """Spillway's ratios to the peers and the issue's targets, one line each."""
    lines = []
    by = {(r["input"], r["part"], r["tool"]): r for r in rows}
    for r in rows:
        if not r["tool"].startswith("spillway") or r["best_mb_per_s"] is None:
            continue
        name, part = r["input"], r["part"]
        rss_limit = 2 * r["buffer_mb"] + 64
        rss = f"peak {r['peak_rss_mib']} MiB (target {rss_limit}: {'met' if r['peak_rss_mib'] <= rss_limit else 'not met'})"
        if part == "parquet":
            peers = [by[k] for k in by if k[:2] == (name, part) and k[2] in PEERS and by[k]["best_mb_per_s"]]
            if not peers:
                lines.append(f"{name}: {r['tool']}: no peer finished; {rss}")
                continue
            best = max(peers, key=lambda p: p["best_mb_per_s"])
            median = max(peers, key=lambda p: p["median_mb_per_s"])
            rb, rm = r["best_mb_per_s"] / best["best_mb_per_s"], r["median_mb_per_s"] / median["median_mb_per_s"]
            met = rb >= PARQUET_TARGET and rm >= PARQUET_TARGET
            lines.append(
                f"{name}: {r['tool']}: {rb:.2f}x {best['tool']} (best), {rm:.2f}x {median['tool']} (median); "
                f"target {PARQUET_TARGET}x: {'met' if met else 'not met'}; {rss}")
        else:
            codec = r["tool"].split("-")[-1]
            peer = by.get((name, part, "gzip -6" if codec == "gzip" else "zstd -3 -T2"))
            target = GZIP_TARGET if codec == "gzip" else ZSTD_TARGET
            if not peer or peer["best_mb_per_s"] is None:
                lines.append(f"{name}: {r['tool']}: the {codec} CLI is not installed or failed; {rss}")
                continue
            rb, rm = r["best_mb_per_s"] / peer["best_mb_per_s"], r["median_mb_per_s"] / peer["median_mb_per_s"]
            size = r["output_mb"] / peer["output_mb"]
            met = rb >= target and rm >= target and size <= 1.10
            lines.append(
                f"{name}: {r['tool']}: {rb:.2f}x (best), {rm:.2f}x (median) {peer['tool']}, output {size:.2f}x its size; "
                f"target {target}x at most 1.10x the size: {'met' if met else 'not met'}; {rss}")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--tools", required=True, help="compare_tools.py")
    p.add_argument("--work", required=True)
    p.add_argument("--inputs", required=True, help="gen_inputs.py's JSON lines")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--buffers", default="64", help="buffer.size_mb values, space or comma separated")
    p.add_argument("--json-lines", type=int, default=1, help="0: skip the compressed JSON lines part")
    p.add_argument("--commit", default="")
    args = p.parse_args()
    args.bin, args.tools = os.path.abspath(args.bin), os.path.abspath(args.tools)
    buffers = [int(b) for b in args.buffers.replace(",", " ").split()]
    with open(args.inputs) as f:
        inputs = [json.loads(l) for l in f if l.strip()]
    size_mb = round(inputs[0]["bytes"] / 1e6)
    os.makedirs(args.work, exist_ok=True)
    results = os.path.join(args.work, f"results-{size_mb}mb.jsonl")
    summary = os.path.join(args.work, f"summary-{size_mb}mb.jsonl")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = busy()

    parquet = [("spillway", b) for b in buffers] + [(t, None) for t in PEERS]
    jsonl = [("spillway-gzip", buffers[0]), ("gzip -6", None), ("spillway-zstd", buffers[0]), ("zstd -3 -T2", None)]
    clis = {"gzip -6": shutil.which("gzip"), "zstd -3 -T2": shutil.which("zstd")}
    runs = []
    scratch = os.path.join(args.work, "run")
    with open(results, "w") as log:
        for round_ in range(args.rounds):
            for inp in inputs:
                warm(inp["path"])
                parts = [("parquet", parquet)] + ([("json_lines", jsonl)] if args.json_lines else [])
                for part, tools in parts:
                    # Tools take turns, and the first of a round changes
                    # from round to round, so none always runs first.
                    k = round_ % len(tools)
                    for tool, buffer_mb in tools[k:] + tools[:k]:
                        if tool in clis and not clis[tool]:
                            continue
                        label = tool if buffer_mb is None or len(buffers) == 1 or part != "parquet" else f"{tool}-{buffer_mb}"
                        print(f"compare: round {round_ + 1}: {inp['shape']}: {part}: {label}", file=sys.stderr)
                        if tool.startswith("spillway"):
                            compression = tool.split("-")[1] if "-" in tool else "none"
                            m = run_spillway(args, scratch, inp, buffer_mb, part, compression)
                        else:
                            m = run_peer(args, scratch, inp, tool)
                        m.update(input=inp["shape"], part=part, tool=label, buffer_mb=buffer_mb, round=round_ + 1,
                                 input_bytes=inp["bytes"], records=inp["records"],
                                 mb_per_s=round(inp["bytes"] / 1e6 / m["wall_s"], 1))
                        for problem in m["problems"]:
                            print(f"compare: {inp['shape']}: {label}: {problem}", file=sys.stderr)
                        log.write(json.dumps(m) + "\n")
                        log.flush()
                        runs.append(m)
    shutil.rmtree(scratch, ignore_errors=True)
    after = busy()

    rows = summarise(runs, args)
    meta = {
        "kind": "meta", "started": started, "commit": args.commit, "size_mb": size_mb, "rounds": args.rounds,
        "buffers_mb": buffers, "cores": os.cpu_count(), "cpu": cpu_model(), "busy_before": before, "busy_after": after,
        "inputs": [{k: i[k] for k in ("shape", "records", "bytes")} for i in inputs],
    }
    lines = verdicts(rows)
    with open(summary, "w") as f:
        for item in [meta, *rows, *({"kind": "verdict", "text": l} for l in lines)]:
            f.write(json.dumps(item) + "\n")

    print()
    print(f"{started}, commit {args.commit}, {os.cpu_count()} cores ({meta['cpu']}); {args.rounds} rounds; "
          f"inputs of {size_mb} MB: " + ", ".join(f"{i['shape']} {i['records']} records" for i in inputs))
    print(f"load before {before['load_1m']:.2f} ({before['compilers']} rustc/cargo), after {after['load_1m']:.2f} "
          f"({after['compilers']})" + ("; the machine was busy: figures are noisy" if max(before['load_1m'], after['load_1m']) > 0.5 or before['compilers'] or after['compilers'] else ""))
    print()
    header = f"{'input':<9} {'part':<10} {'tool':<14} {'MB/s best':>9} {'median':>7} {'CPU s':>6} {'peak MiB':>8} {'out MB':>7}  check"
    print(header)
    print("-" * len(header))
    for r in rows:
        check = "ok" if not r["failed"] else f"{r['failed']}/{r['runs']} failed: {'; '.join(r['problems'])}"
        cells = [r["best_mb_per_s"], r["median_mb_per_s"], r["median_cpu_s"], r["peak_rss_mib"], r["output_mb"]]
        shown = [("-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)) for v in cells]
        print(f"{r['input']:<9} {r['part']:<10} {r['tool']:<14} {shown[0]:>9} {shown[1]:>7} {shown[2]:>6} {shown[3]:>8} {shown[4]:>7}  {check}")
    print()
    for l in lines:
        print(l)
    for tool, path in clis.items():
        if args.json_lines and not path:
            print(f"{tool.split()[0]} is not installed: spillway's {tool.split()[0]} runs have no peer")
    flat(args.work, size_mb, rows)
    print(f"\nruns: {results}\nsummary: {summary}")
    return 1 if any(r["failed"] for r in rows if r["tool"].startswith("spillway")) else 0


def flat(work, size_mb, rows):
    """Median MB/s at this size beside an earlier run at another size: cost linear in input means flat."""
    for other in sorted(glob.glob(os.path.join(work, "summary-*mb.jsonl"))):
        with open(other) as f:
            items = [json.loads(l) for l in f]
        # Under 100 MB, process start and the first buffer dominate.
        if items[0].get("size_mb") == size_mb or min(size_mb, items[0].get("size_mb", 0)) < 100:
            continue
        # spillway's Parquet rows are named by buffer only when a run has
        # several (`spillway-64`): match them by their buffer size instead.
        def key(row):
            tool = "spillway" if row["part"] == "parquet" and row["tool"].startswith("spillway") else row["tool"]
            return row["input"], row["part"], tool, row.get("buffer_mb") if tool == "spillway" else None

        then = {key(i): i for i in items if i["kind"] == "row"}
        print(f"\nmedian MB/s at {size_mb} MB / at {items[0]['size_mb']} MB ({items[0]['started']}, {items[0]['commit']}):")
        for r in rows:
            o = then.get(key(r))
            if o and o["median_mb_per_s"] and r["median_mb_per_s"]:
                print(f"  {r['input']:<9} {r['part']:<10} {r['tool']:<14} {r['median_mb_per_s'] / o['median_mb_per_s']:.2f}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
