"""Reads an archived prefix as one table, the way analytics users do, for
spillway's end-to-end tests.

Usage: read_table.py DIR
Prints one JSON object with a key per reader:
- "pyarrow": pyarrow.dataset.dataset(DIR).to_table() (the schema of the
  dataset's first file, files with other columns matched by name);
- "pyarrow_union": the same with the files' schemas unified (every column);
- "duckdb": read_parquet('DIR/**/*.parquet') as it is, union_by_name false;
- "duckdb_union": the same with union_by_name = true (every column).
Each is {"columns": {name: type}, "rows": [{column: value}]} or
{"error": message}. Values are JSON: nested values as objects and lists.
"""
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds


def plain(value):
    return str(value)


def read_pyarrow(root):
    table = ds.dataset(root).to_table()
    columns = {field.name: str(field.type) for field in table.schema}
    return {"columns": columns, "rows": table.to_pylist()}


def read_pyarrow_union(root):
    files = ds.dataset(root)
    schema = pa.unify_schemas([f.physical_schema for f in files.get_fragments()])
    table = ds.dataset(root, schema=schema).to_table()
    columns = {field.name: str(field.type) for field in table.schema}
    return {"columns": columns, "rows": table.to_pylist()}


def read_duckdb(root, union_by_name):
    flag = "true" if union_by_name else "false"
    relation = duckdb.sql(
        f"SELECT * FROM read_parquet('{root}/**/*.parquet', union_by_name = {flag})"
    )
    columns = dict(zip(relation.columns, (str(t) for t in relation.types)))
    rows = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
    return {"columns": columns, "rows": rows}


def attempt(read, *args):
    try:
        return read(*args)
    except Exception as err:  # the test shows the reader's message
        return {"error": f"{type(err).__name__}: {err}"}


def main():
    root = sys.argv[1]
    result = {
        "pyarrow": attempt(read_pyarrow, root),
        "pyarrow_union": attempt(read_pyarrow_union, root),
        "duckdb": attempt(read_duckdb, root, False),
        "duckdb_union": attempt(read_duckdb, root, True),
    }
    json.dump(result, sys.stdout, default=plain)


if __name__ == "__main__":
    main()
