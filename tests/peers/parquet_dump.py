"""Dumps Parquet files as JSON, for spillway's end-to-end tests.

Usage: parquet_dump.py FILE...
Prints one JSON object: {"files": [{"path", "schema": {column: pyarrow type},
"created_by", "compression": [...], "rows": [{column: value}]}]}.
Timestamps are given as integers in their unit (top level) so tests can
compare them exactly; decimals and dates as strings.
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def plain(value):
    return str(value)


def dump(path):
    parquet = pq.ParquetFile(path)
    table = parquet.read()
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns[name] = column.to_pylist()
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())] if columns else []
    metadata = parquet.metadata
    compression = sorted(
        {metadata.row_group(g).column(c).compression for g in range(metadata.num_row_groups)
         for c in range(metadata.num_columns)})
    physical = {metadata.schema.column(c).path: metadata.schema.column(c).physical_type
                for c in range(metadata.num_columns)}
    return {
        "path": path,
        "schema": {field.name: str(field.type) for field in table.schema},
        "physical_types": physical,
        "created_by": metadata.created_by,
        "num_row_groups": metadata.num_row_groups,
        "compression": compression,
        "rows": rows,
    }


print(json.dumps({"files": [dump(p) for p in sys.argv[1:]]}, default=plain))
