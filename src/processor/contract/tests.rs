use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use spillway_transforms::{Offset, Position, Record, SequenceNumber, SourceId};

use super::*;
use crate::processor::PartitionKeys;

fn record(data: &[u8], sequence: u64) -> Record {
    Record {
        data: Bytes::copy_from_slice(data),
        position: Position {
            source: SourceId::new("shardId-000000000001"),
            offset: Offset::new(SequenceNumber::from_u64(sequence), 2),
        },
        partition_key: Some(Arc::from("pk-1")),
        arrival: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
    }
}

fn limits(batch: usize, payload: usize) -> Limits {
    Limits {
        batch_data_bytes: batch,
        payload_bytes: payload,
    }
}

const KINESIS: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";

#[test]
fn the_event_has_firehoses_fields_and_kinesis_metadata_only_for_kinesis() {
    let records = [record(b"{\"a\":1}", 17)];
    let keys = PartitionKeys::default();
    let inputs: Vec<Input<'_>> = records
        .iter()
        .map(|r| Input {
            data: &r.data,
            origin: r,
            keys: &keys,
        })
        .collect();
    let context = Context::new("orders", "eu-west-1", Some(KINESIS.to_owned()));
    let entries = encode_records(&context, &inputs);
    let built: serde_json::Value = serde_json::from_slice(&event(&context, "inv-1", &entries)).unwrap();
    assert_eq!(
        built,
        serde_json::json!({
            "invocationId": "inv-1",
            "deliveryStreamArn": "arn:aws:firehose:eu-west-1:000000000000:deliverystream/orders",
            "sourceKinesisStreamArn": KINESIS,
            "region": "eu-west-1",
            "records": [{
                "recordId": "0",
                "approximateArrivalTimestamp": 1_700_000_000_123_i64,
                "data": "eyJhIjoxfQ==",
                "kinesisRecordMetadata": {
                    "shardId": "shardId-000000000001",
                    "partitionKey": "pk-1",
                    "approximateArrivalTimestamp": 1_700_000_000_123_i64,
                    "sequenceNumber": "17",
                    "subsequenceNumber": 2,
                }
            }]
        })
    );
    let direct = Context::new("orders", "eu-west-1", None);
    let entries = encode_records(&direct, &inputs);
    let built: serde_json::Value = serde_json::from_slice(&event(&direct, "inv-2", &entries)).unwrap();
    assert!(built.get("sourceKinesisStreamArn").is_none());
    assert!(built["records"][0].get("kinesisRecordMetadata").is_none());
}

fn answers(body: &str, batch: Range<usize>) -> Result<Vec<Answer>, Violation> {
    parse_response(body.as_bytes(), batch, limits(1 << 20, 1 << 20))
}

#[test]
fn a_response_answers_each_record_in_the_batchs_order() {
    let body = r#"{"records": [
        {"recordId": "4", "result": "Dropped"},
        {"recordId": "3", "result": "Ok", "data": "aGk=", "metadata": {"partitionKeys": {"customer": "c1", "year": 2026}}},
        {"recordId": "5", "result": "ProcessingFailed", "data": "eA=="}
    ]}"#;
    assert_eq!(
        answers(body, 3..6).unwrap(),
        [
            Answer::Ok {
                data: Bytes::from_static(b"hi"),
                partition_keys: Some([("customer".into(), "c1".into()), ("year".into(), "2026".into())].into()),
            },
            Answer::Dropped,
            Answer::ProcessingFailed,
        ]
    );
}

#[test]
fn responses_that_break_the_contract_fail_the_batch_with_firehoses_codes() {
    let code = |body: &str| answers(body, 0..2).unwrap_err().code;
    let ok = |id: &str| format!(r#"{{"recordId": "{id}", "result": "Ok", "data": "eA=="}}"#);
    assert_eq!(
        code(&format!(r#"{{"records": [{}]}}"#, ok("0"))),
        codes::MISSING_RECORD_ID
    );
    assert_eq!(
        code(&format!(r#"{{"records": [{}, {}]}}"#, ok("0"), ok("7"))),
        codes::MISSING_RECORD_ID
    );
    assert_eq!(
        code(&format!(r#"{{"records": [{}, {}, {}]}}"#, ok("0"), ok("1"), ok("2"))),
        codes::MISSING_RECORD_ID
    );
    assert_eq!(
        code(&format!(r#"{{"records": [{}, {}, {}]}}"#, ok("0"), ok("01"), ok("1"))),
        codes::MISSING_RECORD_ID
    );
    assert_eq!(
        code(&format!(r#"{{"records": [{}, {}, {}]}}"#, ok("0"), ok("1"), ok("0"))),
        codes::DUPLICATED_RECORD_ID
    );
    for body in [
        "not json",
        "[]",
        r#"{"records": {}}"#,
        r#"{"records": [{"recordId": "0", "result": "OK", "data": "eA=="}, {"recordId": "1", "result": "Dropped"}]}"#,
        r#"{"records": [{"recordId": "0", "result": "Ok", "data": "@@@"}, {"recordId": "1", "result": "Dropped"}]}"#,
        r#"{"records": [{"recordId": "0", "result": "Ok"}, {"recordId": "1", "result": "Dropped"}]}"#,
        r#"{"records": [{"recordId": 0, "result": "Ok", "data": ""}, {"recordId": "1", "result": "Dropped"}]}"#,
        r#"{"records": [{"recordId": "0", "result": "Ok", "data": "", "metadata": {"partitionKeys": {"k": null}}}, {"recordId": "1", "result": "Dropped"}]}"#,
    ] {
        assert_eq!(code(body), codes::JSON_PROCESSING, "{body}");
    }
    let big = format!(
        r#"{{"records": [{}, {}], "pad": "{}"}}"#,
        ok("0"),
        ok("1"),
        "x".repeat(100)
    );
    let err = parse_response(big.as_bytes(), 0..2, limits(1 << 20, 100)).unwrap_err();
    assert_eq!(err.code, codes::RESPONSE_TOO_LARGE);
}

#[test]
fn batches_stop_at_the_data_size_and_at_the_payload_limit() {
    let context = Context::new("s", "us-east-1", None);
    let entries: Vec<Vec<u8>> = (0..6).map(|_| vec![b'x'; 100]).collect();
    let sizes = vec![40; 6];
    // Data: 100 bytes a batch holds two records of 40.
    assert_eq!(
        plan(&context, &entries, &sizes, limits(100, 1 << 20)),
        [Planned::Batch(0..2), Planned::Batch(2..4), Planned::Batch(4..6)]
    );
    // A record over the data size still goes, alone.
    assert_eq!(
        plan(&context, &entries[..2], &[500, 10], limits(100, 1 << 20)),
        [Planned::Batch(0..1), Planned::Batch(1..2)]
    );
    // One entry too large for any event fails alone; the others go on.
    let mut entries = entries;
    entries[2] = vec![b'x'; 5000];
    let overhead = header(&context, &invocation_id()).len() + 14;
    assert_eq!(
        plan(&context, &entries, &sizes, limits(1 << 20, overhead + 201)),
        [
            Planned::Batch(0..2),
            Planned::TooLarge(2),
            Planned::Batch(3..5),
            Planned::Batch(5..6)
        ]
    );
}

proptest! {
    /// Whatever the sizes: every input is planned exactly once, in order,
    /// and every event built from a batch is within the payload limit.
    #[test]
    fn every_input_is_planned_once_in_order_within_the_limits(
        lens in proptest::collection::vec(0usize..3000, 0..40),
        batch in 1usize..5000,
        payload in 200usize..8000,
    ) {
        let context = Context::new("s", "us-east-1", Some(KINESIS.to_owned()));
        let datas: Vec<Vec<u8>> = lens.iter().map(|n| vec![b'a'; *n]).collect();
        let records: Vec<Record> = datas.iter().enumerate().map(|(i, d)| record(d, i as u64)).collect();
        let keys = PartitionKeys::default();
        let inputs: Vec<Input<'_>> = records.iter().map(|r| Input { data: &r.data, origin: r, keys: &keys }).collect();
        let entries = encode_records(&context, &inputs);
        let limits = limits(batch, payload);
        let mut next = 0;
        for planned in plan(&context, &entries, &lens, limits) {
            match planned {
                Planned::TooLarge(i) => {
                    prop_assert_eq!(i, next);
                    prop_assert!(event(&context, &invocation_id(), &entries[i..=i]).len() > payload);
                    next += 1;
                }
                Planned::Batch(range) => {
                    prop_assert_eq!(range.start, next);
                    prop_assert!(!range.is_empty());
                    prop_assert!(event(&context, &invocation_id(), &entries[range.clone()]).len() <= payload);
                    if range.len() > 1 {
                        prop_assert!(lens[range.clone()].iter().sum::<usize>() <= batch);
                    }
                    next = range.end;
                }
            }
        }
        prop_assert_eq!(next, lens.len());
    }

    /// Hostile bodies never panic: each is answers for the whole batch or a
    /// violation.
    #[test]
    fn any_body_is_answers_or_a_violation(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(answers) = parse_response(&body, 0..3, limits(1 << 20, 1 << 20)) {
            prop_assert_eq!(answers.len(), 3);
        }
    }
}
