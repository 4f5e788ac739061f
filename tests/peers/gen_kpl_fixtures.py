#!/usr/bin/env python3
"""Generate golden KPL aggregated records for the Rust tests in src/source/kinesis/kpl.rs.

The aggregated records are produced by the reference Python library
aws-kinesis-agg==1.2.3 (RecordAggregator / AggRecord.get_contents()).
The expected user records are derived from the *inputs* we fed the
aggregator, not from aws-kinesis-agg's own deaggregator, because that
deaggregator mis-reports explicit hash keys (see check_python_deagg below).

Usage (from the crate root):

    # with the test venv (scripts/peers.sh installs aws-kinesis-agg and six):
    .peers/venv/bin/python tests/peers/gen_kpl_fixtures.py          # print the Rust block
    .peers/venv/bin/python tests/peers/gen_kpl_fixtures.py --write  # splice it into kpl.rs

The generated block sits between the `BEGIN GENERATED FIXTURES` and
`END GENERATED FIXTURES` marker lines in src/source/kinesis/kpl.rs.
"""

import base64
import hashlib
import sys
from pathlib import Path

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import deaggregate_records

BEGIN = "// BEGIN GENERATED FIXTURES (gen_fixtures.py)"
END = "// END GENERATED FIXTURES"

U128_MAX = (1 << 128) - 1
HALF = 1 << 127  # 170141183460469231731687303715884105728

# Each case: (name, [(partition_key, explicit_hash_key or None, data bytes)])
CASES = [
    (
        "several_partition_keys",
        [
            ("alpha", None, b"first record"),
            ("beta", None, b"second record"),
            ("gamma", None, b'{"json":true,"n":3}'),
            ("alpha", None, b"alpha again (shared table entry)"),
            ("delta", None, b"fifth"),
        ],
    ),
    (
        "explicit_hash_key",
        [
            ("pk-0", None, b"no ehk"),
            ("pk-1", str(HALF), b"ehk = 2^127"),
            ("pk-2", None, b"no ehk either"),
            ("pk-3", "0", b"ehk = 0"),
            ("pk-4", str(HALF), b"ehk = 2^127 again (shared table entry)"),
        ],
    ),
    (
        "binary_and_empty_data",
        [
            ("bin", None, bytes(range(256))),  # > 127 bytes: 2-byte varint length
            ("empty", None, b""),
            ("nul", None, b"\x00"),
            ("magic-inside", None, aws_kinesis_agg.MAGIC + b"\x00" * 20),
            ("empty", None, b""),
        ],
    ),
    (
        "unicode_partition_keys",
        [
            ("\u00fcnic\u00f8de-\u03b4", None, "h\u00e9llo".encode("utf-8")),
            ("\U0001F980 crab", None, b"crab"),
            ("plain", None, b"plain"),
        ],
    ),
    (
        "single_record",
        [("only", None, b"just one user record")],
    ),
]

# Hash ranges to test filtering against: (name, start, end)
RANGES = [
    ("lower_half", 0, HALF - 1),
    ("upper_half", HALF, U128_MAX),
]


def pk_hash(pk):
    return int.from_bytes(hashlib.md5(pk.encode("utf-8")).digest(), "big")


def effective_hash_key(pk, ehk):
    return int(ehk) if ehk is not None else pk_hash(pk)


def rust_str(s):
    out = []
    for ch in s:
        if ch in "\\\"":
            out.append("\\" + ch)
        elif 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    return '"' + "".join(out) + '"'


def build(records):
    agg = RecordAggregator()
    for pk, ehk, data in records:
        full = agg.add_user_record(pk, data, ehk)
        assert full is None, "fixture overflowed one aggregated record"
    rec = agg.clear_and_get()
    outer_pk, outer_ehk, blob = rec.get_contents()
    return outer_pk, outer_ehk, blob


def check_python_deagg(blob, records):
    """Cross-check against aws-kinesis-agg's own deaggregator.

    Data, partition keys and subsequence numbers must agree. Explicit hash
    keys are only compared when no record in the aggregate has one: the
    1.2.3 deaggregator does `ehks[mr.explicit_hash_key_index]` without
    checking HasField, so once the EHK table is non-empty every record
    without an EHK is reported with table entry 0.
    """
    got = deaggregate_records(
        [{"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": "1",
                      "approximateArrivalTimestamp": 0,
                      "data": base64.b64encode(blob)}}]
    )
    assert len(got) == len(records), (len(got), len(records))
    any_ehk = any(ehk is not None for _, ehk, _ in records)
    quirks = []
    for i, (g, (pk, ehk, data)) in enumerate(zip(got, records)):
        k = g["kinesis"]
        assert k["subSequenceNumber"] == i
        assert k["partitionKey"] == pk
        assert base64.b64decode(k["data"]) == data
        if not any_ehk:
            assert k["explicitHashKey"] is None
        elif k["explicitHashKey"] != ehk:
            quirks.append((i, ehk, k["explicitHashKey"]))
    return quirks


def generate():
    lines = [BEGIN, "// Do not edit by hand: regenerate with gen_fixtures.py."]
    lines.append("// Produced with aws-kinesis-agg==%s." % "1.2.3")
    lines.append("#[rustfmt::skip]")
    lines.append("const GOLDEN: &[Golden] = &[")
    for name, records in CASES:
        outer_pk, outer_ehk, blob = build(records)
        quirks = check_python_deagg(blob, records)
        lines.append("    Golden {")
        lines.append("        name: %s," % rust_str(name))
        lines.append("        outer_partition_key: %s," % rust_str(outer_pk))
        for q in quirks:
            lines.append(
                "        // aws-kinesis-agg's deaggregator reports sub-record %d with EHK %r (real: %r)"
                % (q[0], q[2], q[1])
            )
        hexblob = blob.hex()
        chunks = [hexblob[i:i + 80] for i in range(0, len(hexblob), 80)]
        lines.append("        aggregated_hex: concat!(")
        for c in chunks:
            lines.append('            "%s",' % c)
        lines.append("        ),")
        lines.append("        records: &[")
        for i, (pk, ehk, data) in enumerate(records):
            lines.append(
                "            GoldenRecord { sub_sequence_number: %d, partition_key: %s, "
                "explicit_hash_key: %s, data_hex: \"%s\", effective_hash_key: 0x%032x },"
                % (i, rust_str(pk), "None" if ehk is None else "Some(%s)" % rust_str(ehk),
                   data.hex(), effective_hash_key(pk, ehk))
            )
        lines.append("        ],")
        lines.append("        kept_by_range: &[")
        for rname, start, end in RANGES:
            kept = [i for i, (pk, ehk, _) in enumerate(records)
                    if start <= effective_hash_key(pk, ehk) <= end]
            lines.append(
                "            (%s, 0x%032x, 0x%032x, &%r)," % (rust_str(rname), start, end, kept)
            )
        lines.append("        ],")
        lines.append("    },")
    lines.append("];")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main():
    block = generate()
    if "--write" not in sys.argv:
        sys.stdout.write(block)
        return
    path = Path(__file__).resolve().parents[2] / "src" / "source" / "kinesis" / "kpl.rs"
    text = path.read_text()
    start = text.index(BEGIN)
    end = text.index(END) + len(END) + 1
    # keep the indentation of the marker line for every generated line
    indent = text[text.rindex("\n", 0, start) + 1:start]
    body = "".join(indent + l if l else l for l in block.splitlines(keepends=True))
    path.write_text(text[:start - len(indent)] + body + text[end:])
    print("updated", path)


if __name__ == "__main__":
    main()
