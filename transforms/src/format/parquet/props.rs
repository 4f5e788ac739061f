//! Property tests of whole batches of arbitrary and hostile records (see
//! [`crate::test_json`]): encoding never panics, every record is written or
//! refused exactly once, what is written reads back byte for byte, a
//! record's JSON is judged as the router judges it for `json_lines`, and a
//! batch encodes the same whatever batch came before it (one parse or two).

use std::collections::HashMap;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::check::Check;
use crate::record::tests_support::record;
use crate::test_json::record_bytes;

fn records(texts: &[Vec<u8>]) -> Vec<Record> {
    texts
        .iter()
        .map(|bytes| Record {
            data: Bytes::from(bytes.clone()),
            ..record(b"")
        })
        .collect()
}

fn read_back(body: &[u8]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    read_archive(Bytes::from(body.to_vec()), |r| records.push(r.data.to_vec())).expect("every file reads back");
    records
}

/// A schema file whose columns the generated keys hit, with types that
/// refuse some values.
fn given() -> ParquetFormat {
    ParquetFormat {
        schema: Some(
            Schema::parse(
                r#"{"columns":[{"name":"a","type":"string"},{"name":"b","type":"int64"},
                {"name":"tags","type":"list<string>"},{"name":"user","type":"struct<name:string,id:int64,k:list<double>>"},
                {"name":"k","type":"map<string,double>"},{"name":"id","type":"double"}]}"#,
            )
            .unwrap(),
        ),
        ..ParquetFormat::default()
    }
}

/// Checks one encoded batch against its records; `Err` says what is wrong.
fn check_batch(batch: &[Record], encoded: &Encoded) -> Result<(), TestCaseError> {
    let refused: HashMap<usize, &str> = encoded.rejected.iter().map(|(i, r)| (*i, r.code)).collect();
    prop_assert_eq!(refused.len(), encoded.rejected.len(), "a record refused twice");
    prop_assert_eq!(
        encoded.records + refused.len(),
        batch.len(),
        "every record written or refused"
    );
    let written: Vec<Vec<u8>> = (0..batch.len())
        .filter(|i| !refused.contains_key(i))
        .map(|i| batch[i].data.to_vec())
        .collect();
    prop_assert_eq!(
        read_back(&encoded.body),
        written,
        "the written records read back, in order"
    );
    let router = Check::new(true);
    for (index, record) in batch.iter().enumerate() {
        let code = refused.get(&index).copied();
        prop_assert!(
            !matches!(
                code,
                Some("Parquet.WriteFailed" | "Parquet.SchemaChanged" | "Parquet.NoColumns")
            ),
            "{:?}",
            code
        );
        match router.check(record) {
            // The router refuses it before the encoder sees it.
            Err(rejection) if rejection.code == "Record.Empty" => {}
            Err(rejection) => prop_assert_eq!(code, Some(rejection.code), "{:?}", record.data),
            Ok(()) => prop_assert!(
                code.is_none_or(|c| c.starts_with("Parquet.")),
                "{:?} for {:?}",
                code,
                record.data
            ),
        }
    }
    Ok(())
}

/// A member of a generated record: left out, `null`, or a value.
fn member(value: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Option<Option<String>>> {
    prop_oneof![1 => Just(None), 1 => Just(Some(None)), 2 => value.prop_map(|v| Some(Some(v)))].boxed()
}

/// A compact object of `members` in this order: `None` left out, `Some(None)`
/// as `null`.
fn object(members: &[(&str, Option<Option<String>>)]) -> String {
    let written: Vec<String> = members
        .iter()
        .filter_map(|(key, value)| {
            let value = value.as_ref()?;
            Some(format!("\"{key}\":{}", value.as_deref().unwrap_or("null")))
        })
        .collect();
    format!("{{{}}}", written.join(","))
}

/// Compact records whose keys are in the columns' order, with null members
/// anywhere: in lists of objects, in objects, objects that are null.
fn records_with_null_members() -> impl Strategy<Value = Vec<String>> {
    let int = any::<i32>().prop_map(|n| n.to_string());
    let text = "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\""));
    // An object's first member is never left out: an object that is
    // always `{}` would be a string column.
    let first = || prop_oneof![1 => Just(Some(None)), 2 => any::<i32>().prop_map(|n| Some(Some(n.to_string())))];
    let inner = (first(), member(text.clone())).prop_map(|(x, y)| object(&[("x", x), ("y", y)]));
    let items = vec(
        (first(), member(int.clone())).prop_map(|(p, q)| object(&[("p", p), ("q", q)])),
        0..3,
    )
    .prop_map(|items| format!("[{}]", items.join(",")));
    let record = (
        member(int),
        member(text),
        member(inner),
        member(items),
        member(Just("true".to_owned())),
    )
        .prop_map(|(a, b, s, l, t)| object(&[("a", a), ("b", b), ("s", s), ("l", l), ("t", t)]));
    // The first record has every key, so the columns are in this order.
    let full = r#"{"a":1,"b":"","s":{"x":1,"y":""},"l":[{"p":1,"q":1}],"t":true}"#.to_owned();
    vec(record, 0..24).prop_map(move |records| std::iter::once(full.clone()).chain(records).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every such record is rebuilt from its row and its null members
    /// (none keeps its bytes), and reads back byte for byte.
    #[test]
    fn records_with_null_members_are_rebuilt_byte_for_byte(texts in records_with_null_members()) {
        let batch = records(&texts.iter().map(|t| t.clone().into_bytes()).collect::<Vec<_>>());
        let encoded = ParquetFormat::default().encode(&batch);
        prop_assert!(encoded.rejected.is_empty(), "{:?}", encoded.rejected);
        let expected: Vec<Vec<u8>> = texts.iter().map(|t| t.clone().into_bytes()).collect();
        prop_assert_eq!(read_back(&encoded.body), expected);
        let file = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(encoded.body))
            .unwrap()
            .build()
            .unwrap();
        for batch in file {
            let batch = batch.unwrap();
            let data = batch.column_by_name("_spillway_data").unwrap();
            prop_assert_eq!(data.null_count(), batch.num_rows(), "no record keeps its bytes");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hostile_batches_are_written_or_refused_record_by_record(
        batches in vec(vec(record_bytes(), 1..12), 1..4),
        with_schema in any::<bool>(),
    ) {
        let format = if with_schema { given() } else { ParquetFormat::default() };
        for texts in &batches {
            let batch = records(texts);
            let encoded = format.encode(&batch);
            check_batch(&batch, &encoded)?;
            if !with_schema {
                // After other batches (converted under their columns as it
                // is inferred) as alone (inferred, then converted).
                let alone = ParquetFormat::default().encode(&batch);
                prop_assert_eq!(&alone.rejected, &encoded.rejected);
                prop_assert_eq!(read_back(&alone.body), read_back(&encoded.body));
            }
        }
    }
}
