//! Hostile records in whole batches: too deep, at the depth limit, values
//! readers disagree on. Each is refused alone, and every file written reads
//! back.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::record::{Offset, Position, SequenceNumber, SourceId};
use crate::strict::MAX_DEPTH;

fn record(data: &str, offset: u64) -> Record {
    Record {
        data: Bytes::from(data.to_owned()),
        position: Position {
            source: SourceId::new("shardId-000000000001"),
            offset: Offset::new(SequenceNumber::from_u64(offset), 0),
        },
        partition_key: Some(Arc::from("pk")),
        arrival: chrono::DateTime::from_timestamp_millis(1_793_491_200_123).unwrap(),
    }
}

/// `{"a":...}` nesting `depth` deep in all (the record counts one), with
/// arrays, objects, or both in turn.
pub(super) fn nested(depth: usize, kind: Nesting) -> String {
    let mut text = String::from("{\"a\":");
    for level in 1..depth {
        match kind {
            Nesting::Arrays => text.push('['),
            Nesting::Objects => text.push_str("{\"k\":"),
            Nesting::Mixed if level % 2 == 0 => text.push('['),
            Nesting::Mixed => text.push_str("{\"k\":"),
        }
    }
    text.push_str("\"deep\"");
    for level in (1..depth).rev() {
        match kind {
            Nesting::Arrays => text.push(']'),
            Nesting::Objects => text.push('}'),
            Nesting::Mixed if level % 2 == 0 => text.push(']'),
            Nesting::Mixed => text.push('}'),
        }
    }
    text.push('}');
    text
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Nesting {
    Arrays,
    Objects,
    Mixed,
}

/// Every record of a file, as [`read_archive`] gives it back.
fn read_back(body: &[u8]) -> Vec<String> {
    let mut records = Vec::new();
    read_archive(Bytes::from(body.to_vec()), |r| {
        records.push(String::from_utf8(r.data.to_vec()).unwrap())
    })
    .unwrap();
    records
}

fn codes(encoded: &Encoded) -> Vec<(usize, &'static str)> {
    encoded.rejected.iter().map(|(i, r)| (*i, r.code)).collect()
}

fn formats() -> Vec<(&'static str, ParquetFormat)> {
    let given = ParquetFormat {
        schema: Some(
            Schema::parse(r#"{"columns":[{"name":"a","type":"string"},{"name":"b","type":"int64"}]}"#).unwrap(),
        ),
        ..ParquetFormat::default()
    };
    vec![("inferred", ParquetFormat::default()), ("given", given)]
}

/// The issue's records: 1,000 deep overflowed the stack in inferred mode,
/// 100,000 in every mode (skipping a value recursed once per level).
#[test]
fn records_nested_too_deep_are_refused_alone_in_every_mode() {
    for (mode, format) in formats() {
        for depth in [MAX_DEPTH + 1, 1_000, 100_000] {
            for kind in [Nesting::Arrays, Nesting::Objects, Nesting::Mixed] {
                let deep = nested(depth, kind);
                // Deep under a key no column takes, and as a whole record.
                let unknown = deep.replacen("{\"a\":", "{\"b\":1,\"zz\":", 1);
                let wrapped = nested(depth + 1, kind);
                let top = wrapped["{\"a\":".len()..wrapped.len() - 1].to_owned();
                let good = [r#"{"a":"x","b":1}"#, r#"{"b":2,"a":"y"}"#];
                let records: Vec<Record> = [good[0], &deep, &unknown, &top, good[1]]
                    .iter()
                    .enumerate()
                    .map(|(i, text)| record(text, i as u64))
                    .collect();
                // Twice: a first batch is inferred then converted, a second
                // is converted under the first's schema as it is inferred.
                for pass in ["first", "second"] {
                    let encoded = format.encode(&records);
                    let why = format!("{mode}, {depth} deep, {kind:?}, {pass} batch");
                    assert_eq!(
                        codes(&encoded),
                        [(1, "Record.TooDeep"), (2, "Record.TooDeep"), (3, "Record.TooDeep")],
                        "{why}"
                    );
                    assert_eq!(
                        encoded.rejected[0].1.output_type,
                        ErrorOutputType::FormatConversionFailed
                    );
                    assert_eq!(
                        encoded.rejected[0].1.message,
                        "record nests arrays and objects more than 32 levels deep"
                    );
                    assert_eq!(encoded.records, 2, "{why}");
                    assert_eq!(read_back(&encoded.body), good, "{why}");
                }
            }
        }
    }
}

/// Values each larger than a whole dictionary (`DICTIONARY_PAGE_BYTES`),
/// up to the largest record accepted, among small ones in one column: the
/// column leaves its dictionary, and every record is written and reads back
/// byte for byte, in every mode.
#[test]
fn values_larger_than_a_dictionary_are_written_and_read_back() {
    let large = |n: usize, fill: char| {
        let text: String = std::iter::repeat_n(fill, n).collect();
        format!(r#"{{"a":"{text}","b":1}}"#)
    };
    let texts = vec![
        r#"{"a":"x","b":1}"#.to_owned(),
        large(options::DICTIONARY_PAGE_BYTES + 1, 'y'),
        r#"{"a":"x","b":2}"#.to_owned(),
        large(crate::check::MAX_RECORD_BYTES - 16, 'z'),
        large(options::DICTIONARY_PAGE_BYTES * 2, 'y'),
        r#"{"a":"w","b":3}"#.to_owned(),
    ];
    let records: Vec<Record> = texts.iter().enumerate().map(|(i, t)| record(t, i as u64)).collect();
    for (mode, format) in formats() {
        for pass in ["first", "second"] {
            let encoded = format.encode(&records);
            let why = format!("{mode}, {pass} batch");
            assert_eq!(codes(&encoded), [], "{why}");
            assert_eq!(encoded.records, records.len(), "{why}");
            assert_eq!(read_back(&encoded.body), texts, "{why}");
        }
    }
}

/// Just below the limit, in inferred mode (the file's schema nests as deep
/// as the records), the file reads back whole. (The end-to-end test reads
/// such a file with pyarrow too.)
#[test]
fn records_nested_to_the_limit_are_written_and_read_back() {
    let records: Vec<String> = vec![
        r#"{"id":1,"name":"good"}"#.to_owned(),
        nested(MAX_DEPTH, Nesting::Arrays),
        nested(MAX_DEPTH, Nesting::Objects).replacen("\"a\"", "\"o\"", 1),
        nested(MAX_DEPTH, Nesting::Mixed).replacen("\"a\"", "\"m\"", 1),
        r#"{"id":2,"name":"also good"}"#.to_owned(),
    ];
    let batch: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, text)| record(text, i as u64))
        .collect();
    for (mode, format) in formats() {
        let encoded = format.encode(&batch);
        if mode == "inferred" {
            assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected);
        }
        assert_eq!(read_back(&encoded.body).len(), encoded.records, "{mode}");
        let written: Vec<&String> = (0..records.len())
            .filter(|i| !encoded.rejected.iter().any(|(r, _)| r == i))
            .map(|i| &records[i])
            .collect();
        assert_eq!(read_back(&encoded.body).iter().collect::<Vec<_>>(), written, "{mode}");
    }
}

/// `1e400` and a lone surrogate are malformed wherever they are in a
/// record: in a column, under a key no column takes, as a key (the router's
/// rule for `json_lines` is the same, see `check.rs`).
#[test]
fn numbers_out_of_range_and_lone_surrogates_are_malformed_everywhere() {
    let bad = [
        r#"{"a":1e400}"#,
        r#"{"b":1,"zz":1e400}"#,
        r#"{"b":1,"zz":[{"x":-1e400}]}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"b":1,"zz":"\udc00"}"#,
        r#"{"b":1,"\ud800":1}"#,
        r#"{"b":"x","zz":1e400}"#,
    ];
    let good = [r#"{"a":"x","b":1}"#, r#"{"a":"\ud83d\ude00","b":1e-400}"#];
    let records: Vec<Record> = good
        .iter()
        .chain(&bad)
        .enumerate()
        .map(|(i, text)| record(text, i as u64))
        .collect();
    for (mode, format) in formats() {
        for pass in ["first", "second"] {
            let encoded = format.encode(&records);
            let refused: Vec<(usize, &str)> = (2..2 + bad.len()).map(|i| (i, "Record.MalformedJson")).collect();
            assert_eq!(codes(&encoded), refused, "{mode}, {pass} batch");
            assert_eq!(read_back(&encoded.body), good, "{mode}, {pass} batch");
        }
    }
}

/// A file written before the nesting limit, with a column 100 arrays deep
/// (its embedded Arrow schema is deeper than arrow-rs reads): its records
/// still read back, from the Parquet schema alone.
#[test]
fn files_nested_deeper_than_arrow_rs_reads_still_give_their_records() {
    use arrow_array::{ArrayRef, ListArray, RecordBatch, StringArray};
    use arrow_buffer::OffsetBuffer;
    use arrow_schema::{DataType, Field};

    let mut deep: ArrayRef = Arc::new(StringArray::from(vec!["bottom"]));
    for _ in 0..100 {
        let item = Arc::new(Field::new("element", deep.data_type().clone(), true));
        deep = Arc::new(ListArray::new(item, OffsetBuffer::from_lengths([1]), deep, None));
    }
    let original = nested(101, Nesting::Arrays);
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        Field::new("a", deep.data_type().clone(), true),
        Field::new("_spillway_data", DataType::Utf8, true),
    ]));
    let data: ArrayRef = Arc::new(StringArray::from(vec![original.as_str()]));
    let batch = RecordBatch::try_new(schema.clone(), vec![deep, data]).unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    let body = writer.into_inner().unwrap();
    assert!(
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(body.clone())).is_err(),
        "arrow-rs refuses the embedded schema"
    );
    assert_eq!(read_back(&body), [original]);
    // Not Parquet at all: the error of the first attempt.
    let err = read_archive(Bytes::from_static(b"PAR1 not parquet"), |_| {}).unwrap_err();
    assert!(err.to_string().starts_with("not a readable Parquet file"), "{err}");
}

/// The leaf columns of a Parquet file.
fn leaf_columns(body: &[u8]) -> usize {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(Bytes::from(body.to_vec())).unwrap();
    reader.metadata().file_metadata().schema_descr().num_columns()
}

/// Records whose keys are ids (`{"user_81723": ...}`, at the top level and
/// in a nested object) once made one column per key: a 6 MB file took
/// 21 GiB and six minutes, and wrote nothing. The schema stops at
/// [`MAX_COLUMNS`]; the keys past it stay in the records' bytes, and every
/// record reads back whole, with no error record.
#[test]
fn records_whose_keys_are_ids_make_at_most_max_columns_and_read_back_whole() {
    let mut texts = Vec::new();
    for i in 0..1_500 {
        let mut record = serde_json::Map::new();
        record.insert("id".into(), i.into());
        for j in 0..5 {
            record.insert(format!("k{i}_{j}"), j.into());
        }
        let scores: serde_json::Map<_, _> = (0..5)
            .map(|j| (format!("u{i}_{j}"), serde_json::Value::from(j)))
            .collect();
        record.insert("scores".into(), scores.into());
        texts.push(serde_json::Value::Object(record).to_string());
    }
    // One record alone with more keys than the limit.
    let wide: serde_json::Map<_, _> = (0..MAX_COLUMNS + 10)
        .map(|j| (format!("w{j}"), serde_json::Value::from(j)))
        .collect();
    texts.insert(700, serde_json::Value::Object(wide).to_string());
    let records: Vec<Record> = texts.iter().enumerate().map(|(i, t)| record(t, i as u64)).collect();
    // The reserved `_spillway_` columns come on top of the user's.
    let reserved = leaf_columns(&ParquetFormat::default().encode(&[record(r#"{"a":1}"#, 0)]).body) - 1;
    let format = ParquetFormat::default();
    for pass in ["first", "second"] {
        let encoded = format.encode(&records);
        assert!(encoded.rejected.is_empty(), "{pass}: {:?}", codes(&encoded));
        assert_eq!(encoded.records, records.len());
        let user_columns = leaf_columns(&encoded.body) - reserved;
        assert!(user_columns <= MAX_COLUMNS, "{pass}: {user_columns}");
        assert!(user_columns > MAX_COLUMNS / 2, "{pass}: the columns that fit are made");
        assert_eq!(read_back(&encoded.body), texts, "{pass}: every record whole");
    }
    // Under a table schema: the table grows to the limit and no further,
    // buffer after buffer.
    let first = format.encode_table(&records[..800], None);
    let table = first.grown.expect("a first version");
    assert!(count_columns(&table.columns) <= MAX_COLUMNS);
    let second = format.encode_table(&records[800..], Some(&table));
    let grown = second.grown.unwrap_or(table);
    assert!(count_columns(&grown.columns) <= MAX_COLUMNS);
    assert!(second.encoded.rejected.is_empty());
    let mut both = read_back(&first.encoded.body);
    both.extend(read_back(&second.encoded.body));
    assert_eq!(both, texts);
}

mod corrupt_files {
    use proptest::prelude::*;

    use super::*;

    /// A small archive file: nested and flat records, a few row groups.
    fn sample_file() -> Vec<u8> {
        let records: Vec<Record> = (0..40)
            .map(|n| match n % 3 {
                0 => record(&format!("{{\"n\":{n},\"s\":\"x{n}\"}}"), n),
                1 => record(&format!("{{\"n\":{n},\"l\":[1,2,{n}],\"o\":{{\"k\":\"v\"}}}}"), n),
                _ => record(&format!("{{\"n\": {n}, \"s\" : \"spaced\"}}"), n),
            })
            .collect();
        let format = ParquetFormat {
            page_size_bytes: 64,
            ..ParquetFormat::default()
        };
        let encoded = format.encode(&records);
        assert!(encoded.rejected.is_empty());
        encoded.body
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A damaged archive file (bytes changed, cut short, or a piece
        /// repeated) is read or refused with an error: never a panic, which
        /// would stop a replay on one bad object.
        #[test]
        fn a_damaged_file_is_read_or_refused_never_a_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            repeat in proptest::option::of((any::<prop::sample::Index>(), 1usize..64)),
        ) {
            let mut body = sample_file();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            if let Some((at, len)) = repeat {
                let i = at.index(body.len());
                let piece: Vec<u8> = body[i..(i + len).min(body.len())].to_vec();
                body.splice(i..i, piece);
            }
            if let Some(at) = cut {
                body.truncate(at.index(body.len()));
            }
            let read = std::panic::catch_unwind(|| read_archive(Bytes::from(body), |_| {}));
            prop_assert!(read.is_ok(), "reading a damaged file panicked");
        }
    }
}
