"""One peer conversion, as its own process: NDJSON to Parquet (snappy) with
pyarrow, DuckDB or polars, each in the way its documentation shows first.

benches/compare.py times this whole process (interpreter start and imports
included, as spillway's process start is included) and reads the output
back to count its rows, so this script only converts.

Usage: compare_tools.py TOOL INPUT OUTPUT
"""
import sys

tool, path, out = sys.argv[1:4]
if tool == "pyarrow":
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    pq.write_table(pj.read_json(path), out, compression="snappy")
elif tool == "duckdb":
    import duckdb

    duckdb.connect().execute(
        "COPY (SELECT * FROM read_ndjson(?)) TO '" + out.replace("'", "''") + "' (FORMAT parquet, COMPRESSION snappy)",
        [path],
    )
elif tool == "polars":
    import polars as pl

    pl.read_ndjson(path).write_parquet(out, compression="snappy")
else:
    sys.exit(f"compare_tools: unknown tool {tool}")
