"""One comparison run: NDJSON to Parquet (snappy) with pyarrow, DuckDB or
polars, timed like spillway's bench (reading included), peak RSS from
getrusage. Prints one JSON line.

Usage: compare_tools.py TOOL INPUT OUTPUT_DIR
"""
import json
import os
import resource
import sys
import time

tool, path, out_dir = sys.argv[1:4]
out = os.path.join(out_dir, f"{tool}-{os.path.basename(path)}.parquet")
start = time.perf_counter()
if tool == "pyarrow":
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    table = pj.read_json(path)
    pq.write_table(table, out, compression="snappy")
    rows = table.num_rows
elif tool == "duckdb":
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_ndjson('{path}')) TO '{out}' (FORMAT parquet, COMPRESSION snappy)"
    )
    rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
elif tool == "polars":
    import polars as pl

    frame = pl.read_ndjson(path)
    frame.write_parquet(out, compression="snappy")
    rows = frame.height
else:
    sys.exit(f"unknown tool {tool}")
seconds = time.perf_counter() - start
size = os.path.getsize(path)
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "tool": tool, "input": path, "input_bytes": size, "output_bytes": os.path.getsize(out),
    "seconds": round(seconds, 3), "mb_per_s": round(size / 1e6 / seconds, 1),
    "peak_rss_mib": round(peak_mib), "rows": rows,
}))
os.remove(out)
