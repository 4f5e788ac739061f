//! `json_lines` with `envelope = true`: each line holds a record and its
//! position, so that a JSON-lines archive can be replayed as exactly as a
//! Parquet one (partition keys, shards, order, arrival times).
//!
//! A line is one JSON object, with the names Firehose-style error records
//! use for the same things (see [`crate::error_record`]):
//!
//! ```json
//! {"shardId":"shardId-000000000001","sequenceNumber":"4959...","subSequenceNumber":0,
//!  "partitionKey":"user-7","arrivalTimestamp":1795315074364,"data":{"id":7}}
//! ```
//!
//! The record must come back byte for byte. A record that is JSON is
//! embedded as its own text under `data`, so the archive stays queryable as
//! JSON; that is only done when parsing the line gives exactly those bytes
//! back (one JSON value, no whitespace around it, no newline in it, not
//! `null`, not nested so deep that the envelope's own level would take a
//! parser past its limit). Any other record is held as base64 under
//! `dataBase64`. `partitionKey` is left out when the record has none, and
//! `outputIndex` (the record's index among the outputs processors made of
//! one source record, as error records give it) when it is 0: without it,
//! the outputs of one record would share one position, and reading the
//! archive back would take them for one record.

use std::borrow::Cow;
use std::io::Write;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::record::{Offset, Position, Record, SequenceNumber, SourceId};

/// How deep an embedded record may nest: well under serde_json's recursion
/// limit (128) once the envelope adds its level, and above spillway's own
/// record limit ([`crate::strict::MAX_DEPTH`]).
const MAX_EMBEDDED_DEPTH: usize = 100;

/// Writes the envelope line of `record`, with its newline.
pub fn write_line(record: &Record, out: &mut dyn Write) -> std::io::Result<()> {
    let position = &record.position;
    out.write_all(b"{\"shardId\":")?;
    serde_json::to_writer(&mut *out, position.source.as_str())?;
    write!(
        out,
        ",\"sequenceNumber\":\"{}\",\"subSequenceNumber\":{}",
        position.offset.sequence_number, position.offset.subsequence_number
    )?;
    if position.offset.output != 0 {
        write!(out, ",\"outputIndex\":{}", position.offset.output)?;
    }
    if let Some(key) = &record.partition_key {
        out.write_all(b",\"partitionKey\":")?;
        serde_json::to_writer(&mut *out, &**key)?;
    }
    write!(out, ",\"arrivalTimestamp\":{}", record.arrival.timestamp_millis())?;
    match embeddable(&record.data) {
        Some(json) => {
            out.write_all(b",\"data\":")?;
            out.write_all(json.as_bytes())?;
        }
        None => {
            out.write_all(b",\"dataBase64\":\"")?;
            out.write_all(
                base64::engine::general_purpose::STANDARD
                    .encode(&record.data)
                    .as_bytes(),
            )?;
            out.write_all(b"\"")?;
        }
    }
    out.write_all(b"}\n")
}

/// The record as JSON text to embed, when reading it back from the line
/// gives exactly its bytes.
fn embeddable(data: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(data).ok()?;
    if text.is_empty() || text == "null" || memchr::memchr(b'\n', data).is_some() {
        return None;
    }
    if crate::strict::nests_deeper_than(data, MAX_EMBEDDED_DEPTH) {
        return None;
    }
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(text)
}

/// Why a line is not an envelope line.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an envelope line: {0}")]
    Json(#[from] serde_json::Error),
    #[error("an envelope line holds exactly one of data and dataBase64")]
    Data,
    #[error("dataBase64 is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(transparent)]
    SequenceNumber(#[from] crate::record::InvalidSequenceNumber),
    #[error("arrivalTimestamp {0} is out of range")]
    Arrival(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Line<'a> {
    #[serde(borrow)]
    shard_id: Cow<'a, str>,
    #[serde(borrow)]
    sequence_number: Cow<'a, str>,
    sub_sequence_number: u64,
    #[serde(default)]
    output_index: u32,
    #[serde(default, borrow)]
    partition_key: Option<Cow<'a, str>>,
    arrival_timestamp: i64,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data_base64: Option<Cow<'a, str>>,
}

/// Reads an envelope line (without its newline) back into the record it
/// was written from.
pub fn read_line(line: &[u8]) -> Result<Record, EnvelopeError> {
    let line: Line = serde_json::from_slice(line)?;
    let data = match (line.data, line.data_base64) {
        (Some(json), None) => Bytes::copy_from_slice(json.get().as_bytes()),
        (None, Some(encoded)) => Bytes::from(base64::engine::general_purpose::STANDARD.decode(&*encoded)?),
        _ => return Err(EnvelopeError::Data),
    };
    let arrival = DateTime::<Utc>::from_timestamp_millis(line.arrival_timestamp)
        .ok_or(EnvelopeError::Arrival(line.arrival_timestamp))?;
    Ok(Record {
        data,
        position: Position {
            source: SourceId::new(&*line.shard_id),
            offset: Offset {
                output: line.output_index,
                ..Offset::new(SequenceNumber::parse(&line.sequence_number)?, line.sub_sequence_number)
            },
        },
        partition_key: line.partition_key.map(|k| k.as_ref().into()),
        arrival,
    })
}

/// Whether `line` (without its newline) is an envelope line.
pub fn is_envelope_line(line: &[u8]) -> bool {
    read_line(line).is_ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(data: Vec<u8>, source: String, seq: String, sub: u64, key: Option<String>, ms: i64) -> Record {
        Record {
            data: Bytes::from(data),
            position: Position {
                source: SourceId::new(source),
                offset: Offset::new(SequenceNumber::parse(&seq).unwrap(), sub),
            },
            partition_key: key.map(Into::into),
            arrival: DateTime::from_timestamp_millis(ms).unwrap(),
        }
    }

    fn line_of(record: &Record) -> Vec<u8> {
        let mut line = Vec::new();
        write_line(record, &mut line).unwrap();
        line
    }

    fn assert_round_trips(original: &Record) {
        let line = line_of(original);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(memchr::memchr(b'\n', &line[..line.len() - 1]), None, "one line");
        let back = read_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(back.data, original.data);
        assert_eq!(back.position, original.position);
        assert_eq!(back.partition_key, original.partition_key);
        assert_eq!(back.arrival, original.arrival);
    }

    #[test]
    fn json_records_are_embedded_as_their_text_and_others_as_base64() {
        let json = record(
            br#"{"b": 1,"a":[1.50,"\u00e9"]}"#.to_vec(),
            "shardId-1".into(),
            "49590338271490256608559692538361571095921575989136588898".into(),
            3,
            Some("k\"ey".into()),
            1_795_315_074_364,
        );
        let line = String::from_utf8(line_of(&json)).unwrap();
        assert_eq!(
            line,
            "{\"shardId\":\"shardId-1\",\"sequenceNumber\":\"49590338271490256608559692538361571095921575989136588898\",\"subSequenceNumber\":3,\"partitionKey\":\"k\\\"ey\",\"arrivalTimestamp\":1795315074364,\"data\":{\"b\": 1,\"a\":[1.50,\"\\u00e9\"]}}\n"
        );
        assert_round_trips(&json);
        for data in [&b" {}"[..], b"{}\n", b"null", b"", b"{\"a\":", b"\xff", b"1 2", b"{\n}"] {
            let other = record(data.to_vec(), "s".into(), "0".into(), 0, None, 0);
            let line = String::from_utf8(line_of(&other)).unwrap();
            assert!(line.contains("\"dataBase64\""), "{line}");
            assert!(!line.contains("partitionKey"), "{line}");
            assert_round_trips(&other);
        }
    }

    #[test]
    fn the_outputs_of_one_record_keep_their_index_and_a_first_output_writes_none() {
        let mut split = record(b"{}".to_vec(), "shardId-1".into(), "7".into(), 0, None, 1);
        let first = String::from_utf8(line_of(&split)).unwrap();
        assert!(!first.contains("outputIndex"), "{first}");
        split.position.offset.output = 2;
        let third = String::from_utf8(line_of(&split)).unwrap();
        assert!(third.contains(",\"outputIndex\":2,"), "{third}");
        assert_round_trips(&split);
    }

    #[test]
    fn deeply_nested_records_still_round_trip() {
        for depth in [99, 100, 101, 126, 127, 128, 200] {
            let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_round_trips(&record(data.into_bytes(), "s".into(), "1".into(), 0, None, 1));
        }
    }

    #[test]
    fn lines_that_are_not_envelopes_are_told_apart() {
        for line in [
            &br#"{"id":1}"#[..],
            br#"{"shardId":"s","sequenceNumber":"1","subSequenceNumber":0,"arrivalTimestamp":1}"#,
            br#"{"shardId":"s","sequenceNumber":"01","subSequenceNumber":0,"arrivalTimestamp":1,"data":1}"#,
            br#"{"shardId":"s","sequenceNumber":"1","subSequenceNumber":0,"arrivalTimestamp":1,"data":1,"dataBase64":"AA=="}"#,
            br#"{"shardId":"s","sequenceNumber":"1","subSequenceNumber":0,"arrivalTimestamp":1,"data":1,"x":2}"#,
            b"not json",
        ] {
            assert!(!is_envelope_line(line), "{}", String::from_utf8_lossy(line));
        }
        assert!(is_envelope_line(
            br#"{"shardId":"s","sequenceNumber":"1","subSequenceNumber":0,"arrivalTimestamp":1,"data":1}"#
        ));
    }

    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        // Bytes biased towards JSON text, so that both the embedded and
        // the base64 forms are exercised.
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'{'),
                    Just(b'}'),
                    Just(b'['),
                    Just(b']'),
                    Just(b'"'),
                    Just(b':'),
                    Just(b','),
                    Just(b'\\'),
                    Just(b' '),
                    Just(b'\n'),
                    Just(b'1'),
                    Just(b'e'),
                    Just(b'a'),
                    Just(b'u'),
                    any::<u8>()
                ],
                0..64
            ),
            "[a-z0-9\"\\\\ :,\\{\\}\\[\\]\u{e9}\u{1F600}]{0,40}".prop_map(|s| s.into_bytes()),
            (any::<i64>(), "[ -~]{0,16}")
                .prop_map(|(n, s)| serde_json::json!({"n": n, "s": s, "l": [n]}).to_string().into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_and_position_round_trip_exactly(
            data in json_like(),
            source in any::<String>(),
            seq in "0|[1-9][0-9]{0,60}",
            sub in any::<u64>(),
            key in proptest::option::of(any::<String>()),
            ms in -8_000_000_000_000i64..8_000_000_000_000i64,
            output in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let mut original = record(data, source, seq, sub, key, ms);
            original.position.offset.output = output;
            assert_round_trips(&original);
        }
    }
}
