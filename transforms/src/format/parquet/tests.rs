//! Encoding whole batches and reading the files back with arrow-rs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, StructArray, TimestampMillisecondArray};
use bytes::Bytes;
use chrono::TimeZone;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::record::{Offset, Position, SequenceNumber, SourceId};

fn record(data: &str, sequence: &str, subsequence: u64) -> Record {
    Record {
        data: Bytes::from(data.to_owned()),
        position: Position {
            source: SourceId::new("shardId-000000000001"),
            offset: Offset::new(SequenceNumber::parse(sequence).unwrap(), subsequence),
        },
        partition_key: Some(Arc::from("pk-1")),
        arrival: chrono::Utc.timestamp_millis_opt(1_793_491_200_123).unwrap(),
    }
}

/// The statuses of the shared `twitter.json`, one JSON text each.
pub(super) fn twitter_statuses() -> Vec<String> {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/twitter.json")).unwrap();
    let twitter: serde_json::Value = serde_json::from_slice(&text).unwrap();
    twitter["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn read(body: &[u8]) -> (RecordBatch, parquet::file::metadata::ParquetMetaData) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(body.to_vec())).unwrap();
    let metadata = builder.metadata().as_ref().clone();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (arrow_select_concat(&schema, &batches), metadata)
}

/// Concatenates batches column by column (no arrow-select dependency).
fn arrow_select_concat(schema: &arrow_schema::SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "tests read small files: one batch");
    // The file's key-value entries are the schema's metadata, not a batch's.
    assert_eq!(batches[0].schema().fields(), schema.fields());
    batches[0].clone()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).unwrap();
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    column.iter().map(|v| v.map(str::to_owned)).collect()
}

fn given(schema: &str) -> ParquetFormat {
    ParquetFormat {
        schema: Some(Schema::parse(schema).unwrap()),
        ..ParquetFormat::default()
    }
}

#[test]
fn given_schema_writes_valid_records_and_refuses_the_others_alone() {
    let format = given(
        r#"{"columns":[{"name":"id","type":"int64"},{"name":"price","type":"int64"},
            {"name":"user","type":"struct<name:string>"},{"name":"ts","type":"timestamp(ms)"}]}"#,
    );
    let records = [
        record(
            r#"{"id":1,"price":10,"user":{"name":"a"},"ts":"2026-11-01T00:00:00Z","extra":true}"#,
            "100",
            0,
        ),
        record(r#"{"id":2,"price":"abc"}"#, "200", 0),
        record(r#"{"id":3,"price":30,"user":"flat"}"#, "300", 0),
        record(r#"{"id":4,"#, "400", 0),
        record(
            r#"{"id":5,"price":null,"ts":1793491200123}"#,
            "49590338271490256608559692538361571095921575989136588898",
            7,
        ),
    ];
    let encoded = format.encode(&records);
    let codes: Vec<(usize, &str)> = encoded.rejected.iter().map(|(i, r)| (*i, r.code)).collect();
    assert_eq!(
        codes,
        [
            (1, "Parquet.TypeMismatch"),
            (2, "Parquet.NestingMismatch"),
            (3, "Record.MalformedJson")
        ]
    );
    assert_eq!(
        encoded.rejected[0].1.message,
        "column \"price\": \"abc\" is not an int64"
    );
    assert!(encoded
        .rejected
        .iter()
        .all(|(_, r)| r.output_type == ErrorOutputType::FormatConversionFailed));
    assert_eq!(encoded.records, 2);

    let (batch, metadata) = read(&encoded.body);
    assert_eq!(batch.num_rows(), 2);
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(ids.values(), &[1, 5]);
    let ts = batch.column_by_name("ts").unwrap();
    let ts = ts.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
    assert_eq!(ts.value(0), 1_793_491_200_000);
    assert_eq!(ts.value(1), 1_793_491_200_123);
    assert_eq!(ts.timezone(), Some("UTC"));
    let user = batch
        .column_by_name("user")
        .unwrap()
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap()
        .clone();
    assert!(user.is_valid(0) && user.is_null(1));
    assert!(
        batch.column_by_name("extra").is_none(),
        "keys the schema does not name are ignored"
    );

    // Reserved columns: the position, and the original bytes.
    assert_eq!(
        strings(&batch, "_spillway_source"),
        [Some("shardId-000000000001".into()), Some("shardId-000000000001".into())]
    );
    assert_eq!(
        strings(&batch, "_spillway_sequence_number"),
        [
            Some("100".into()),
            Some("49590338271490256608559692538361571095921575989136588898".into())
        ]
    );
    let sub = batch.column_by_name("_spillway_subsequence_number").unwrap();
    assert_eq!(sub.as_any().downcast_ref::<Int64Array>().unwrap().values(), &[0, 7]);
    assert_eq!(
        strings(&batch, "_spillway_partition_key"),
        [Some("pk-1".into()), Some("pk-1".into())]
    );
    let arrival = batch.column_by_name("_spillway_arrival").unwrap();
    let arrival = arrival.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
    assert_eq!(arrival.values(), &[1_793_491_200_123, 1_793_491_200_123]);
    assert_eq!(
        strings(&batch, "_spillway_data"),
        [
            Some(String::from_utf8(records[0].data.to_vec()).unwrap()),
            Some(String::from_utf8(records[4].data.to_vec()).unwrap())
        ]
    );

    // Snappy, int64 timestamps (never int96), and created-by.
    let row_group = metadata.row_group(0);
    assert!(row_group
        .columns()
        .iter()
        .all(|c| c.compression() == parquet::basic::Compression::SNAPPY));
    let ts_column = row_group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "ts")
        .unwrap();
    assert_eq!(ts_column.column_type(), parquet::basic::Type::INT64);
    assert!(metadata.file_metadata().created_by().unwrap().starts_with("spillway"));
}

#[test]
fn options_turn_off_the_reserved_columns_and_choose_the_codec() {
    let format = ParquetFormat {
        metadata_columns: false,
        keep_original: false,
        codec: Codec::Zstd,
        writer_version_2: true,
        ..ParquetFormat::default()
    };
    let encoded = format.encode(&[record(r#"{"a":1}"#, "1", 0)]);
    let (batch, metadata) = read(&encoded.body);
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["a"]);
    assert!(matches!(
        metadata.row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert_eq!(metadata.file_metadata().version(), 2);
}

#[test]
fn the_codec_level_is_applied() {
    let records: Vec<Record> = (0..2000)
        .map(|i| {
            record(
                &format!(r#"{{"id":{i},"text":"the same words again and again {}"}}"#, i % 7),
                "1",
                0,
            )
        })
        .collect();
    let size = |codec, codec_level| {
        let encoded = ParquetFormat {
            codec,
            codec_level,
            dictionary: false,
            ..ParquetFormat::default()
        }
        .encode(&records);
        assert_eq!(encoded.records, records.len());
        read_back(&encoded.body);
        encoded.body.len()
    };
    // gzip 0 stores, 9 compresses; zstd 1 is its default.
    assert!(size(Codec::Gzip, Some(0)) > 2 * size(Codec::Gzip, Some(9)));
    assert_eq!(size(Codec::Gzip, None), size(Codec::Gzip, Some(6)));
    assert_eq!(size(Codec::Zstd, None), size(Codec::Zstd, Some(1)));
    // (On pages this small a higher zstd level is not always smaller, but
    // it is another encoding.)
    assert_ne!(size(Codec::Zstd, Some(19)), size(Codec::Zstd, Some(1)));
}

/// Whether a column of a file of one row group has a dictionary page, and
/// the encoding of each of its data pages (`name` as
/// `ColumnPath::string` spells it: `user.city`).
fn pages(body: &[u8], name: &str) -> (bool, Vec<parquet::basic::Encoding>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(Bytes::from(body.to_vec())).unwrap();
    assert_eq!(reader.num_row_groups(), 1);
    let row_group = reader.get_row_group(0).unwrap();
    let index = (0..row_group.num_columns())
        .find(|&i| row_group.metadata().column(i).column_path().string() == name)
        .unwrap();
    let mut dictionary = false;
    let mut data = Vec::new();
    for page in row_group.get_column_page_reader(index).unwrap() {
        let page = page.unwrap();
        match page.page_type() {
            parquet::basic::PageType::DICTIONARY_PAGE => dictionary = true,
            _ => data.push(page.encoding()),
        }
    }
    (dictionary, data)
}

#[test]
fn a_column_of_distinct_values_leaves_its_dictionary_at_the_limit_and_few_values_keep_theirs() {
    use parquet::basic::Encoding;
    // 12,000 distinct ids of 40 bytes (480 KB: past the 256 KiB limit, under
    // arrow-rs's 1 MiB) and a status of three values, in one part.
    let records: Vec<Record> = (0..12_000)
        .map(|i| {
            let status = ["new", "shipped", "returned"][i % 3];
            record(&format!(r#"{{"id":"{i:0>40}","status":"{status}"}}"#), "1", 0)
        })
        .collect();
    let encoded = ParquetFormat::default().encode(&records);
    assert_eq!(encoded.records, records.len());
    let pages = |name: &str| pages(&encoded.body, name);
    // The ids' data pages are dictionary indices, then plain values once
    // the dictionary passed 256 KiB.
    let (dictionary, ids) = pages("id");
    assert!(dictionary);
    assert_eq!(ids.first(), Some(&Encoding::RLE_DICTIONARY), "{ids:?}");
    assert_eq!(ids.last(), Some(&Encoding::PLAIN), "{ids:?}");
    // The statuses keep their dictionary throughout.
    let (dictionary, statuses) = pages("status");
    assert!(dictionary);
    assert!(statuses.iter().all(|e| *e == Encoding::RLE_DICTIONARY), "{statuses:?}");
    // And the records are what was written.
    assert_eq!(read_back(&encoded.body), texts(&records));
}

#[test]
fn a_column_whose_dictionary_did_not_pay_is_written_plain_in_the_next_files_then_judged_again() {
    use parquet::basic::Encoding;
    // Per batch, in one part: texts of 60 bytes, all distinct (past the 256
    // KiB limit: the dictionary is given up), ids of 12 bytes, all
    // distinct (under it: the dictionary holds every value once), a
    // status of three values and a nested city of four (their
    // dictionaries pay).
    let batch = |n: usize| -> Vec<Record> {
        (0..6_000)
            .map(|i| {
                let status = ["new", "shipped", "returned"][i % 3];
                let city = ["Lyon", "Oslo", "Lima", "Pune"][i % 4];
                record(
                    &format!(
                        r#"{{"text":"{n:0>10}-{i:0>49}","id":"{n:0>5}-{i:0>6}","status":"{status}","user":{{"city":"{city}"}}}}"#
                    ),
                    "1",
                    0,
                )
            })
            .collect()
    };
    let format = ParquetFormat::default();
    let dictionaries = |body: &[u8]| -> Vec<bool> {
        ["text", "id", "status", "user.city"]
            .iter()
            .map(|name| {
                let (dictionary, data) = pages(body, name);
                assert!(
                    data.iter().all(|e| *e
                        == if dictionary {
                            Encoding::RLE_DICTIONARY
                        } else {
                            Encoding::PLAIN
                        })
                        || (*name == "text" && dictionary),
                    "{name}: {data:?}"
                );
                dictionary
            })
            .collect()
    };
    let mut seen = Vec::new();
    for n in 0..(PLAIN_FILES as usize + 3) {
        let records = batch(n);
        let encoded = format.encode(&records);
        assert_eq!(encoded.records, records.len());
        assert!(encoded.rejected.is_empty());
        // Whatever the encodings, the records read back are those written.
        assert_eq!(read_back(&encoded.body), texts(&records));
        seen.push(dictionaries(&encoded.body));
    }
    // The first file tries every dictionary; the texts and ids are then
    // written plain for PLAIN_FILES files, and tried again after.
    let tried = vec![true, true, true, true];
    let plain = vec![false, false, true, true];
    let mut expected = vec![tried.clone()];
    expected.extend(std::iter::repeat_n(plain.clone(), PLAIN_FILES as usize));
    expected.push(tried);
    expected.push(plain);
    assert_eq!(seen, expected);
    // Nothing is learned with dictionaries off.
    let off = ParquetFormat {
        dictionary: false,
        ..ParquetFormat::default()
    };
    for n in 0..2 {
        assert_eq!(dictionaries(&off.encode(&batch(n)).body), vec![false; 4]);
    }
}

#[test]
fn a_first_large_batch_judges_its_dictionaries_on_its_first_records() {
    use parquet::basic::Encoding;
    // 40,000 records (over 4 MiB, one part): distinct texts and ids, a
    // status of three values and a nested city of four.
    let records: Vec<Record> = (0..40_000)
        .map(|i| {
            let status = ["new", "shipped", "returned"][i % 3];
            let city = ["Lyon", "Oslo", "Lima", "Pune"][i % 4];
            record(
                &format!(r#"{{"text":"{i:0>60}","id":"id-{i:0>9}","status":"{status}","user":{{"city":"{city}"}}}}"#),
                "1",
                0,
            )
        })
        .collect();
    assert!(records.iter().map(|r| r.data.len()).sum::<usize>() >= MIN_SAMPLED_BATCH_BYTES);
    let format = ParquetFormat::default();
    for file in ["the first", "the second"] {
        let encoded = format.encode(&records);
        assert_eq!(encoded.records, records.len());
        // Already the first file writes the distinct columns plain.
        for (name, dictionary) in [("text", false), ("id", false), ("status", true), ("user.city", true)] {
            let (has, data) = pages(&encoded.body, name);
            assert_eq!(has, dictionary, "{file} file: {name}");
            let encoding = if dictionary {
                Encoding::RLE_DICTIONARY
            } else {
                Encoding::PLAIN
            };
            assert!(data.iter().all(|e| *e == encoding), "{file} file: {name}: {data:?}");
        }
        assert_eq!(read_back(&encoded.body), texts(&records), "{file} file");
    }
}

#[test]
fn inferred_mode_merges_and_refuses_what_cannot_fit() {
    let format = ParquetFormat::default();
    let records = [
        record(r#"{"a":1,"o":{"x":1},"l":[]}"#, "1", 0),
        record(r#"{"a":2.5,"o":{"y":"s"},"e":{}}"#, "2", 0),
        record(r#"{"a":3,"o":"flat"}"#, "3", 0),
        record(r#"[1,2]"#, "4", 0),
    ];
    let encoded = format.encode(&records);
    let codes: Vec<(usize, &str)> = encoded.rejected.iter().map(|(i, r)| (*i, r.code)).collect();
    assert_eq!(codes, [(2, "Parquet.NestingMismatch"), (3, "Parquet.NotAnObject")]);
    let (batch, _) = read(&encoded.body);
    assert_eq!(batch.num_rows(), 2);
    let schema = batch.schema();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .take(4)
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(types[0], "a:Float64");
    assert!(types[1].starts_with("o:Struct"), "{types:?}");
    // `e` right after `o`, the key before it where it was first seen.
    assert_eq!(types[2], "e:Utf8");
    assert!(types[3].starts_with("l:List"), "{types:?}");
    assert_eq!(strings(&batch, "e"), [None, Some("{}".into())]);
}

#[test]
fn many_chunks_and_row_groups_keep_every_record_in_order() {
    let format = ParquetFormat {
        row_group_bytes: 64 * 1024,
        ..given(r#"{"columns":[{"name":"id","type":"int64"},{"name":"pad","type":"string"}]}"#)
    };
    let records: Vec<Record> = (0..30_000)
        .map(|i| {
            record(
                &format!(r#"{{"id":{i},"pad":"{}"}}"#, "x".repeat(i % 50)),
                &(i * 10).to_string(),
                0,
            )
        })
        .collect();
    let encoded = format.encode(&records);
    assert!(encoded.rejected.is_empty());
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(encoded.body)).unwrap();
    assert!(
        reader.metadata().num_row_groups() > 1,
        "the row group limit cuts row groups"
    );
    let mut next = 0i64;
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        for id in ids.values() {
            assert_eq!(*id, next);
            next += 1;
        }
    }
    assert_eq!(next, 30_000);
}

#[test]
fn mappings_apply_to_top_level_columns() {
    let format = ParquetFormat {
        column_to_json_key: HashMap::from([("event_time".to_owned(), "ts".to_owned())]),
        ..given(r#"{"columns":[{"name":"event_time","type":"timestamp(s)"}]}"#)
    };
    let encoded = format.encode(&[record(r#"{"ts":"2026-11-01 00:00:00"}"#, "1", 0)]);
    assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected);
    let (batch, _) = read(&encoded.body);
    let column = batch.column(0);
    let ts = column
        .as_any()
        .downcast_ref::<arrow_array::TimestampSecondArray>()
        .unwrap();
    assert_eq!(ts.value(0), 1_793_491_200);
}

#[test]
fn large_batches_are_split_into_parts_that_keep_order_and_indices() {
    let records: Vec<Record> = (0..40_000)
        .map(|i| {
            let data = if i % 9_999 == 5 {
                format!(r#"{{"id":"bad-{i}"}}"#)
            } else {
                format!(r#"{{"id":{i},"pad":"{}"}}"#, "x".repeat(300))
            };
            record(&data, &i.to_string(), 0)
        })
        .collect();
    let parts = split(&records, 2);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1].first, parts[0].records.len());
    assert_eq!(split(&records, 8).len(), 3, "parts hold at least MIN_PART_BYTES");
    assert_eq!(split(&records[..10], 8).len(), 1);

    let format = given(r#"{"columns":[{"name":"id","type":"int64"},{"name":"pad","type":"string"}]}"#);
    let encoded = format.encode(&records);
    let refused: Vec<usize> = encoded.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(refused, [5, 10_004, 20_003, 30_002]);
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(encoded.body)).unwrap();
    let mut ids = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let column = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
        let sequence = strings(&batch, "_spillway_sequence_number");
        for (id, seq) in column.values().iter().zip(sequence) {
            assert_eq!(seq.unwrap(), id.to_string());
            ids.push(*id as usize);
        }
    }
    let want: Vec<usize> = (0..40_000).filter(|i| !refused.contains(i)).collect();
    assert_eq!(ids, want);
}

/// Batches of one stream through one format (a single pass after the first
/// batch) give byte for byte the files and refusals that a fresh format
/// gives each batch alone: the previous schema only saves a parse.
/// Dictionaries are off here: with them, which columns have one depends on
/// the files before by design (`dictionary`), and is tested there.
#[test]
fn a_batch_encodes_the_same_whatever_the_batches_before_it() {
    let fresh = || ParquetFormat {
        dictionary: false,
        ..ParquetFormat::default()
    };
    let batch = |lines: &[&str], first: u64| -> Vec<Record> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| record(l, &(first + i as u64).to_string(), 0))
            .collect()
    };
    let same = [
        r#"{"id":1,"tags":["a"],"user":{"name":"x"}}"#,
        r#"{"id":2,"tags":[],"user":{"name":"y"}}"#,
        r#"{"id":3,"user":null}"#,
    ];
    let batches = [
        batch(&same, 0),
        batch(&same, 10),
        // A new key.
        batch(&[r#"{"id":3,"tags":["b"],"user":{"name":"z"},"extra":true}"#], 20),
        batch(&same, 30),
        // int widened to double; a record refused under both schemas.
        batch(
            &[
                r#"{"id":4.5,"tags":["c"],"user":{"name":"w"}}"#,
                r#"{"id":5,"tags":{"no":1},"user":{"name":"v"}}"#,
            ],
            40,
        ),
        batch(&same, 50),
        // A malformed record: inferred again, without it.
        batch(&[same[0], r#"{"id":6,"tags":["d"],"user":{"name""#, same[1]], 60),
        // Keys in another order.
        batch(&[r#"{"user":{"name":"u"},"id":7,"tags":["e"]}"#], 70),
        batch(&same, 80),
        // Everything refused, then nothing but an object for a list.
        batch(&["[1]", "2"], 90),
        batch(&[r#"{"tags":{"a":1}}"#], 100),
        batch(&same, 110),
    ];
    let shared = fresh();
    for (index, records) in batches.iter().enumerate() {
        let alone = fresh().encode(records);
        let after = shared.encode(records);
        assert_eq!(after.rejected, alone.rejected, "batch {index}: the refusals");
        assert_eq!(after.records, alone.records, "batch {index}: the rows");
        if index == 7 {
            // The previous batch's column order, the same columns. Which
            // records their row rebuilds depends on the column order, so
            // `_spillway_data` may differ, but not the records read back.
            assert_eq!(read_back(&after.body), read_back(&alone.body), "batch 7: the records");
            let (after, _) = read(&after.body);
            let (alone, _) = read(&alone.body);
            let names = |b: &RecordBatch| b.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
            assert_eq!(names(&after)[..3], ["id", "tags", "user"]);
            assert_eq!(names(&alone)[..3], ["user", "id", "tags"]);
            for field in alone.schema().fields().iter().filter(|f| f.name() != "_spillway_data") {
                let name = field.name();
                assert_eq!(
                    after.column_by_name(name),
                    alone.column_by_name(name),
                    "batch 7: {name}"
                );
            }
        } else {
            assert_eq!(after.body, alone.body, "batch {index}: the file");
        }
    }
    // Batches 1, 6 (the malformed record aside), 7 (another order) and 8
    // have the columns of the batch before them; the others do not.
    assert_eq!(shared.last_inferred.single_passes(), 4);
}

/// A large first batch is converted under the columns of its first records
/// while it is inferred; the file is the one two passes write, byte for
/// byte, whether the sample had every column or not.
#[test]
fn a_large_first_batch_is_encoded_in_one_pass_as_two_passes_would() {
    let statuses = twitter_statuses();
    let mut lines = Vec::new();
    let mut bytes = 0;
    while bytes < MIN_SAMPLED_BATCH_BYTES + 1024 * 1024 {
        let status = &statuses[lines.len() % statuses.len()];
        bytes += status.len();
        lines.push(status.clone());
    }
    let mut late = serde_json::from_str::<serde_json::Value>(&statuses[0]).unwrap();
    late["late_key"] = serde_json::json!({"only": "here"});
    let batches = [
        ("every column in the sample", lines.clone(), 1),
        (
            "a key in the last record only",
            [lines, vec![late.to_string()]].concat(),
            0,
        ),
    ];
    for (what, lines, single_passes) in batches {
        let records: Vec<Record> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| record(l, &(i + 1).to_string(), 0))
            .collect();
        let two_passes = {
            let format = ParquetFormat::default();
            let parts = split(&records, std::thread::available_parallelism().map_or(1, |n| n.get()));
            let columns = format.infer(&parts);
            match format.write(&parts, &columns, Speculation::None).unwrap() {
                Written::Encoded(encoded) => encoded,
                Written::Changed(_) => unreachable!(),
            }
        };
        let format = ParquetFormat::default();
        let one_pass = format.encode(&records);
        assert_eq!(
            format.last_inferred.single_passes(),
            single_passes,
            "{what}: single passes"
        );
        assert_eq!(one_pass.rejected, two_passes.rejected, "{what}");
        assert_eq!(one_pass.records, records.len(), "{what}: every record");
        assert!(one_pass.body == two_passes.body, "{what}: the same file");
        let file = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(one_pass.body)).unwrap();
        assert_eq!(
            file.metadata().file_metadata().num_rows(),
            records.len() as i64,
            "{what}"
        );
        assert_eq!(
            file.schema().field_with_name("late_key").is_ok(),
            single_passes == 0,
            "{what}"
        );
    }
}

/// Every record of `encoded`, as [`read_archive`] gives it back.
/// The records' bytes, as text.
fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect()
}

fn read_back(body: &[u8]) -> Vec<String> {
    let mut records = Vec::new();
    read_archive(Bytes::from(body.to_vec()), |r| {
        records.push(String::from_utf8(r.data.to_vec()).unwrap())
    })
    .unwrap();
    records
}

/// A record that is exactly the canonical JSON of its row is not stored a
/// second time, and is rebuilt byte for byte; any other keeps its bytes.
#[test]
fn every_record_reads_back_byte_for_byte_and_canonical_ones_are_not_stored_twice() {
    // (record, rebuilt from its row)
    let cases = [
        (
            r#"{"id":1,"name":"a","price":4.5,"tags":["x","y"],"user":{"id":7,"ok":true}}"#,
            true,
        ),
        (
            r#"{"id":2,"name":"q\" \\ / \n\u001f é 😀","price":3,"tags":[],"user":{"id":8}}"#,
            true,
        ),
        (r#"{"id":3,"tags":["z",null],"user":{}}"#, true),
        (r#"{"id":4,"price":1e300}"#, true),
        (r#"{"id":5,"price":0.1}"#, true),
        (r#"{"id":-6}"#, true),
        (r#"{"id":7, "name":"spaced"}"#, false),
        (r#"{"name":"order","id":8}"#, false),
        // Null members are kept as places (`_spillway_nulls`, below).
        (r#"{"id":9,"name":null}"#, true),
        (r#"{"id":10,"name":"\u00e9 escaped"}"#, false),
        (r#"{"id":11,"price":4.50}"#, false),
        (r#"{"id":12,"price":3.0}"#, false),
        (r#"{"id":13,"Name":"case"}"#, false),
        (r#"{"id":14,"name":"dup","name":"dup"}"#, false),
        (r#"{"id":15,"user":{"ok":false,"id":1}}"#, false),
        (r#"{"id":16,"price":1E+2}"#, false),
        ("{\"id\":17}\n", false),
        (r#"{"id":18,"name":"says \":null","tags":[]}"#, true),
        (r#"{"id":19,"name":"says \":nul","tags":[]}"#, true),
        (r#"{"id":null,"name":null,"user":{"id":null,"ok":null}}"#, true),
        (r#"{"id":21,"user":{"id":null}}"#, true),
        (r#"{"id":22,"name":null,"name":null}"#, false),
        (r#"{"id":23,"name":null,"price":null,"tags":null,"user":null}"#, true),
        (r#"{"id":24,"name":"null","user":{"ok":null}}"#, true),
        (r#"{"id":25,"name": null}"#, false),
        (r#"{"id":26,"price":null,"name":null}"#, false),
    ];
    let records: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (data, _))| record(data, &(i + 1).to_string(), 0))
        .collect();
    let encoded = ParquetFormat::default().encode(&records);
    assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected);
    let inputs: Vec<&str> = cases.iter().map(|(data, _)| *data).collect();
    assert_eq!(read_back(&encoded.body), inputs, "every record, byte for byte");
    let (batch, _) = read(&encoded.body);
    let stored: Vec<bool> = strings(&batch, "_spillway_data").iter().map(Option::is_some).collect();
    let want: Vec<bool> = cases.iter().map(|(_, rebuilt)| !rebuilt).collect();
    assert_eq!(stored, want, "bytes stored only where the row does not rebuild them");
    assert!(batch.schema().field_with_name("_spillway_data").unwrap().is_nullable());
    // The places of the null members of the records rebuilt: each member
    // of each object written counts, null or not (id, name, price, tags,
    // user: 0 to 4; user.id and user.ok: 5 and 6 where user is written).
    let nulls = strings(&batch, "_spillway_nulls");
    let places = |id: usize| nulls[id - 1].clone();
    assert_eq!(places(1), None, "no null member");
    assert_eq!(places(9).as_deref(), Some("1"));
    assert_eq!(places(18), None, "\":null inside a string is no member");
    assert_eq!(places(20).as_deref(), Some("0,1,5,6"));
    assert_eq!(places(21).as_deref(), Some("5"));
    assert_eq!(places(22), None, "kept bytes: no places");
    assert_eq!(places(23).as_deref(), Some("1,2,3,4"));
    assert_eq!(places(24).as_deref(), Some("6"));

    // Turned off: every record's bytes are stored, and the column is not
    // nullable, as before the option.
    let all = ParquetFormat {
        elide_rebuildable_original: false,
        ..ParquetFormat::default()
    }
    .encode(&records);
    let (batch, _) = read(&all.body);
    assert!(strings(&batch, "_spillway_data").iter().all(Option::is_some));
    assert!(batch.column_by_name("_spillway_nulls").is_none());
    assert!(!batch.schema().field_with_name("_spillway_data").unwrap().is_nullable());
    assert_eq!(read_back(&all.body), inputs);
}

/// Types with no canonical JSON (timestamps, decimals, dates, maps,
/// floats) keep the record's bytes; a null in them does not.
#[test]
fn types_without_canonical_json_keep_the_records_bytes() {
    let format = given(
        r#"{"columns":[{"name":"id","type":"int32"},{"name":"ts","type":"timestamp(ms)"},
            {"name":"amount","type":"decimal(10,2)"},{"name":"day","type":"date"},
            {"name":"attrs","type":"map<string,int64>"},{"name":"ratio","type":"float"}]}"#,
    );
    let cases = [
        (r#"{"id":1}"#, true),
        (r#"{"id":2,"ts":1793491200123}"#, false),
        (r#"{"id":3,"amount":1.25}"#, false),
        (r#"{"id":4,"day":"2026-11-01"}"#, false),
        (r#"{"id":5,"attrs":{"a":1}}"#, false),
        (r#"{"id":6,"ratio":0.5}"#, false),
        (r#"{"id":7,"unnamed":true}"#, false),
    ];
    let records: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (data, _))| record(data, &(i + 1).to_string(), 0))
        .collect();
    let encoded = format.encode(&records);
    assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected);
    let inputs: Vec<&str> = cases.iter().map(|(data, _)| *data).collect();
    assert_eq!(read_back(&encoded.body), inputs);
    let (batch, _) = read(&encoded.body);
    let stored: Vec<bool> = strings(&batch, "_spillway_data").iter().map(Option::is_some).collect();
    assert_eq!(stored, cases.iter().map(|(_, rebuilt)| !rebuilt).collect::<Vec<_>>());
}

/// Real records in several parts, chunks and row groups read back whole and
/// in order, with their positions; a file without `_spillway_data` says so.
#[test]
fn archived_statuses_and_products_read_back_whole_with_their_positions() {
    let products = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/amazon_cellphones.ndjson"
    ))
    .unwrap();
    let mut lines: Vec<String> = twitter_statuses();
    // Product rows as objects, keys in the header's order.
    let mut rows = products.lines();
    let header: Vec<String> = serde_json::from_str(rows.next().unwrap()).unwrap();
    for row in rows.filter(|l| !l.trim().is_empty()) {
        let values: Vec<serde_json::Value> = serde_json::from_str(row).unwrap();
        let fields: Vec<String> = header
            .iter()
            .zip(&values)
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
            .collect();
        lines.push(format!("{{{}}}", fields.join(",")));
    }
    // About 9 MB: two parts (on two cores) of several chunks each. Every
    // seventh record spaced, so not its row's canonical JSON.
    let lines: Vec<String> = lines
        .iter()
        .cycle()
        .take(10_000)
        .enumerate()
        .map(|(i, l)| {
            if i % 7 == 0 {
                l.replacen("\":", "\": ", 1)
            } else {
                l.clone()
            }
        })
        .collect();
    let records: Vec<Record> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| record(l, &(i * 3).to_string(), i as u64 % 5))
        .collect();
    let encoded = ParquetFormat::default().encode(&records);
    assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected.first());
    let mut seen = 0;
    read_archive(Bytes::from(encoded.body.clone()), |r| {
        assert_eq!(r.data, lines[seen].as_bytes(), "record {seen}");
        let position = r.position.unwrap();
        assert_eq!(position.sequence_number, (seen * 3).to_string());
        assert_eq!(position.subsequence_number, seen as i64 % 5);
        assert_eq!(position.source, "shardId-000000000001");
        assert_eq!(position.partition_key, Some("pk-1"));
        assert_eq!(position.arrival_ms, 1_793_491_200_123);
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, lines.len());
    let mut stored = Vec::new();
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(encoded.body)).unwrap();
    for batch in reader.build().unwrap() {
        let data = batch.unwrap().column_by_name("_spillway_data").unwrap().clone();
        stored.extend((0..data.len()).map(|row| data.is_valid(row)));
    }
    assert_eq!(stored.len(), lines.len());
    // The spaced records keep their bytes. The statuses (explicit nulls)
    // and the products are rebuilt, but for a few statuses whose keys are
    // in an order of their own (with serde_json's `preserve_order`, which
    // the workspace's build may turn on, the statuses' own order).
    let spaced = |i: usize| i.is_multiple_of(7);
    assert!((0..lines.len()).filter(|&i| spaced(i)).all(|i| stored[i]));
    let others = (0..lines.len()).filter(|&i| !spaced(i));
    let kept = others.clone().filter(|&i| stored[i]).count();
    assert!(kept * 100 <= others.count(), "{kept} others keep their bytes");

    let bare = ParquetFormat {
        keep_original: false,
        ..ParquetFormat::default()
    }
    .encode(&records[..10]);
    let err = read_archive(Bytes::from(bare.body), |_| {}).unwrap_err();
    assert!(matches!(err, ReadError::NoOriginals), "{err}");
    assert!(err.to_string().contains("keep_original = false"), "{err}");
}

/// A file whose `_spillway_nulls` does not fit its rows is refused with the
/// row, never read back as a record with members it did not have.
#[test]
fn null_members_that_do_not_fit_the_row_are_an_error() {
    let file = |nulls: &str| file_with(nulls, None);
    let records = |nulls: &str| {
        let mut records = Vec::new();
        read_archive(file(nulls), |r| {
            records.push(String::from_utf8(r.data.to_vec()).unwrap())
        })
        .map(|()| records)
    };
    assert_eq!(records("1").unwrap(), [r#"{"id":1,"name":null}"#, "{}"]);
    for bad in ["", "x", "1,", ",1", "01", "+1", "1,1", "2,1", "99999999999999999999999"] {
        let err = records(bad).unwrap_err();
        assert!(matches!(err, ReadError::BadNulls { row: 0, .. }), "{bad:?}: {err}");
    }
    // A place that is not a null member of the row: the id (place 0) is
    // 1, and the row has two places.
    for unfit in ["0", "2", "1,2", "0,1"] {
        let err = records(unfit).unwrap_err();
        assert!(matches!(err, ReadError::NotRebuildable { row: 0 }), "{unfit:?}: {err}");
    }
}

/// Files say by which rules their rows rebuild records; a reader refuses
/// rules newer than its own rather than rebuild records wrongly.
#[test]
fn a_file_with_newer_rebuild_rules_is_refused() {
    let (_, metadata) = read(&ParquetFormat::default().encode(&[record(r#"{"a":null}"#, "1", 0)]).body);
    let entries = metadata.file_metadata().key_value_metadata().unwrap();
    let rebuild = entries.iter().find(|e| e.key == "spillway.rebuild").unwrap();
    assert_eq!(rebuild.value.as_deref(), Some("2"));
    let read_with = |version: &str| read_archive(file_with("1", Some(version)), |_| {});
    for known in ["1", "2"] {
        read_with(known).unwrap();
    }
    for newer in ["3", "10", "", "two", "-1"] {
        let err = read_with(newer).unwrap_err();
        assert!(matches!(err, ReadError::NewerRules { .. }), "{newer:?}: {err}");
        assert!(err.to_string().contains("read it with a newer spillway"), "{err}");
    }
}

/// A file of `id` (1, then null) and `name` (null), both records rebuilt,
/// the first with null members `nulls`; with a `spillway.rebuild` entry.
fn file_with(nulls: &str, rebuild: Option<&str>) -> Bytes {
    {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Int64, true),
            arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("_spillway_data", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("_spillway_nulls", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
                Arc::new(StringArray::from(vec![Some(nulls), None])),
            ],
        )
        .unwrap();
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(rebuild.map(|version| {
                vec![parquet::file::metadata::KeyValue::new(
                    "spillway.rebuild".to_owned(),
                    version.to_owned(),
                )]
            }))
            .build();
        let mut body = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut body, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(body)
    }
}
