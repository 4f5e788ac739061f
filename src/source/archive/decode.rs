//! One archived object's bytes back into records, whatever spillway (or
//! another tool) wrote: the compression and the format are told from the
//! bytes, not from the key, so a renamed or foreign object is read for
//! what it is (or refused for what it is not).
//!
//! - compression: gzip, zstd, framed snappy, zip (their magic numbers);
//! - Parquet (`PAR1`): the original records and, when the file has the
//!   position columns, their positions (`read_archive`);
//! - JSON lines: envelope lines (records with their positions), or plain
//!   NDJSON (Firehose's own output, `json_lines` without envelope), each
//!   line a record positioned by the object's key and its line number;
//! - error objects (with `include_errors`): Firehose-style error records,
//!   whose `rawData` and position become the record again.

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use spillway_transforms::format::envelope;
use spillway_transforms::format::parquet::read_archive;
use spillway_transforms::{ErrorOutputType, Offset, Position, Record, Rejection, SequenceNumber, SourceId};

/// What an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Data,
    Errors(ErrorOutputType),
}

/// A record read back, or a part of the object that could not be.
#[derive(Debug)]
pub enum Item {
    /// A record with the position the archive kept for it.
    Kept(Record),
    /// A record positioned by the object's key and its line.
    Unkept(Record),
    /// A line that cannot be a record, with why.
    Refused(Record, Rejection),
}

/// Why a whole object is unreadable.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("cannot decompress it ({codec}): {source}")]
    Decompress {
        codec: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("not a readable spillway Parquet file: {0}")]
    Parquet(#[from] spillway_transforms::format::parquet::ReadError),
    #[error("neither Parquet nor JSON lines (its first line is not JSON)")]
    Foreign,
}

/// The error output code of a record read back from an unreadable object.
pub const ARCHIVE_READ_FAILED: &str = "Archive.ReadFailed";

/// The rejection of an object (or a line of one) that cannot be read.
pub fn rejection(message: String) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::ArchiveReadFailed,
        code: ARCHIVE_READ_FAILED,
        message,
    }
}

/// The source id of records an object does not position: the object's key.
pub fn object_source(key: &str) -> SourceId {
    SourceId::new(format!("archive-{key}"))
}

/// The most an object may decompress to: 1 GiB. An object spillway or
/// Firehose wrote holds at most 128 MiB of records (the largest buffer),
/// plus envelope lines' positions and base64; anything past this is not an
/// archive's object but a decompression bomb, refused as unreadable rather
/// than allowed to take all memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Reads the object `key`; `arrival` stands for records whose arrival time
/// the archive did not keep (the time its prefix shows).
pub fn decode(key: &str, body: Bytes, kind: ObjectKind, arrival: DateTime<Utc>) -> Result<Vec<Item>, ObjectError> {
    decode_at_most(key, body, kind, arrival, MAX_DECOMPRESSED_BYTES)
}

/// [`decode`], with `limit` bytes as the most the object may decompress to.
pub fn decode_at_most(
    key: &str,
    body: Bytes,
    kind: ObjectKind,
    arrival: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Item>, ObjectError> {
    let body = decompress(body, limit)?;
    if kind == ObjectKind::Data && body.starts_with(b"PAR1") {
        return parquet(key, body, arrival);
    }
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(index, line)| (index as u64 + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .peekable();
    let Some((_, first)) = lines.peek() else {
        return Ok(Vec::new());
    };
    let source = object_source(key);
    let unkept = |line_number: u64, data: &[u8]| Record {
        data: Bytes::copy_from_slice(data),
        position: Position {
            source: source.clone(),
            offset: Offset::new(SequenceNumber::from_u64(line_number), 0),
        },
        partition_key: None,
        arrival,
    };
    let refused = |line_number: u64, data: &[u8], why: String| {
        Item::Refused(
            unkept(line_number, data),
            rejection(format!("{key} line {line_number}: {why}")),
        )
    };
    let items = match kind {
        ObjectKind::Errors(output_type) => lines
            .map(|(n, line)| match error_record(line) {
                Ok(record) => Item::Kept(record),
                Err(why) => refused(n, line, format!("not a {output_type} error record: {why}")),
            })
            .collect(),
        ObjectKind::Data if envelope::is_envelope_line(first) => lines
            .map(|(n, line)| match envelope::read_line(line) {
                Ok(record) => Item::Kept(record),
                Err(why) => refused(n, line, why.to_string()),
            })
            .collect(),
        ObjectKind::Data => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(first).is_err() {
                return Err(ObjectError::Foreign);
            }
            // Records are passed on as they are: the pipeline checks them
            // as it checks any source's.
            lines.map(|(n, line)| Item::Unkept(unkept(n, line))).collect()
        }
    };
    Ok(items)
}

/// Magic numbers of the codecs spillway writes.
const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const SNAPPY_FRAMED: &[u8] = b"\xff\x06\x00\x00sNaPpY";
const ZIP: &[u8] = b"PK\x03\x04";

fn decompress(body: Bytes, limit: u64) -> Result<Bytes, ObjectError> {
    use spillway_destinations::Compression;
    let (codec, name) = if body.starts_with(GZIP) {
        (Compression::Gzip, "gzip")
    } else if body.starts_with(ZSTD) {
        (Compression::Zstd, "zstd")
    } else if body.starts_with(SNAPPY_FRAMED) {
        (Compression::Snappy, "snappy")
    } else if body.starts_with(ZIP) {
        (Compression::Zip, "zip")
    } else {
        return Ok(body);
    };
    let out = codec
        .decompress_at_most(&body, limit)
        .map_err(|source| ObjectError::Decompress { codec: name, source })?;
    Ok(Bytes::from(out))
}

fn parquet(key: &str, body: Bytes, arrival: DateTime<Utc>) -> Result<Vec<Item>, ObjectError> {
    let source = object_source(key);
    let mut items = Vec::new();
    let mut row = 0u64;
    read_archive(body, |archived| {
        row += 1;
        let data = Bytes::copy_from_slice(archived.data);
        let kept = archived.position.as_ref().and_then(|p| {
            Some(Record {
                data: data.clone(),
                position: Position {
                    source: SourceId::new(p.source),
                    offset: Offset {
                        output: u32::try_from(p.output_index).ok()?,
                        ..Offset::new(
                            SequenceNumber::parse(p.sequence_number).ok()?,
                            u64::try_from(p.subsequence_number).ok()?,
                        )
                    },
                },
                partition_key: p.partition_key.map(Into::into),
                arrival: DateTime::from_timestamp_millis(p.arrival_ms)?,
            })
        });
        items.push(match kept {
            Some(record) => Item::Kept(record),
            None => Item::Unkept(Record {
                data,
                position: Position {
                    source: source.clone(),
                    offset: Offset::new(SequenceNumber::from_u64(row), 0),
                },
                partition_key: None,
                arrival,
            }),
        });
    })?;
    Ok(items)
}

/// The fields of an error record that make the record again (see
/// `spillway_transforms::error_record`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine {
    raw_data: String,
    shard_id: String,
    sequence_number: String,
    #[serde(default)]
    sub_sequence_number: u64,
    #[serde(default)]
    output_index: u32,
    #[serde(default)]
    partition_key: Option<String>,
    arrival_timestamp: i64,
}

fn error_record(line: &[u8]) -> Result<Record, String> {
    let line: ErrorLine = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(&line.raw_data)
        .map_err(|err| format!("rawData is not base64: {err}"))?;
    Ok(Record {
        data: Bytes::from(data),
        position: Position {
            source: SourceId::new(line.shard_id),
            offset: Offset {
                output: line.output_index,
                ..Offset::new(
                    SequenceNumber::parse(&line.sequence_number).map_err(|err| err.to_string())?,
                    line.sub_sequence_number,
                )
            },
        },
        partition_key: line.partition_key.map(Into::into),
        arrival: DateTime::from_timestamp_millis(line.arrival_timestamp)
            .ok_or_else(|| format!("arrivalTimestamp {} is out of range", line.arrival_timestamp))?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spillway_destinations::Compression;

    use super::*;

    fn data(items: &[Item]) -> Vec<(String, Vec<u8>)> {
        items
            .iter()
            .map(|item| match item {
                Item::Kept(r) | Item::Unkept(r) => (r.position.source.to_string(), r.data.to_vec()),
                Item::Refused(_, why) => panic!("refused: {why:?}"),
            })
            .collect()
    }

    #[test]
    fn every_codec_spillway_writes_is_told_from_the_bytes_whatever_the_key() {
        let body = b"{\"a\":1}\n{\"b\":[2]}\n";
        let expected = data(&decode("k", Bytes::from_static(body), ObjectKind::Data, Utc::now()).unwrap());
        assert_eq!(expected.len(), 2);
        for name in Compression::NAMES {
            let compressed = Compression::from_name(name).unwrap().compress(body, "entry").unwrap();
            let items = decode("k", compressed.into(), ObjectKind::Data, Utc::now()).unwrap();
            assert_eq!(data(&items), expected, "{name}");
        }
    }

    #[test]
    fn a_bad_line_in_an_envelope_object_is_refused_with_its_key_and_line() {
        let mut body = Vec::new();
        let record = Record {
            data: Bytes::from_static(b"{}"),
            position: Position {
                source: SourceId::new("shardId-1"),
                offset: Offset::new(SequenceNumber::from_u64(5), 0),
            },
            partition_key: Some("k".into()),
            arrival: Utc::now(),
        };
        envelope::write_line(&record, &mut body).unwrap();
        body.extend_from_slice(b"{\"half\":\n");
        let items = decode("a/b", body.into(), ObjectKind::Data, Utc::now()).unwrap();
        assert!(matches!(&items[0], Item::Kept(r) if r.position == record.position));
        match &items[1] {
            Item::Refused(line, why) => {
                assert_eq!(line.data.as_ref(), b"{\"half\":");
                assert!(why.message.starts_with("a/b line 2: "), "{}", why.message);
                assert_eq!(why.output_type, ErrorOutputType::ArchiveReadFailed);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A small object that inflates past the limit is refused as
    /// unreadable (its key goes to the error output), whatever its codec;
    /// one that inflates to the limit exactly is read.
    #[test]
    fn an_object_that_decompresses_past_the_limit_is_refused_whatever_its_codec() {
        let line = b"{\"a\":1}\n";
        let body: Vec<u8> = line.iter().copied().cycle().take(line.len() * 1000).collect();
        let limit = body.len() as u64;
        for name in Compression::NAMES {
            let codec = Compression::from_name(name).unwrap();
            if codec == Compression::None {
                continue;
            }
            let compressed = Bytes::from(codec.compress(&body, "entry").unwrap());
            let read = decode_at_most("k", compressed.clone(), ObjectKind::Data, Utc::now(), limit).unwrap();
            assert_eq!(read.len(), 1000, "{name}");
            match decode_at_most("k", compressed, ObjectKind::Data, Utc::now(), limit - 1) {
                Err(ObjectError::Decompress { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::FileTooLarge, "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            proptest::collection::vec(any::<u8>(), 0..48),
            "[ -~]{1,20}",
            "0|[1-9][0-9]{0,40}",
            any::<u64>(),
            prop_oneof![Just(0u32), any::<u32>()],
            proptest::option::of("[ -~\u{e9}]{0,12}"),
            -8_000_000_000_000i64..8_000_000_000_000i64,
        )
            .prop_map(|(data, source, seq, sub, output, key, ms)| Record {
                data: Bytes::from(data),
                position: Position {
                    source: SourceId::new(source),
                    offset: Offset {
                        output,
                        ..Offset::new(SequenceNumber::parse(&seq).unwrap(), sub)
                    },
                },
                partition_key: key.map(Into::into),
                arrival: DateTime::from_timestamp_millis(ms).unwrap(),
            })
    }

    fn kept(items: Vec<Item>) -> Vec<Record> {
        items
            .into_iter()
            .map(|item| match item {
                Item::Kept(record) => record,
                other => panic!("not kept: {other:?}"),
            })
            .collect()
    }

    fn same(a: &[Record], b: &[Record]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(a, b)| {
                a.data == b.data
                    && a.position == b.position
                    && a.partition_key == b.partition_key
                    && a.arrival == b.arrival
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A real object of every codec, damaged (bytes changed, cut short):
        /// read or refused, never a panic.
        #[test]
        fn a_damaged_compressed_object_is_read_or_refused_never_a_panic(
            codec in proptest::sample::select(Compression::NAMES.to_vec()),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let lines: Vec<u8> = (0..200).flat_map(|n| format!("{{\"n\":{n},\"s\":\"abc\"}}\n").into_bytes()).collect();
            let mut body = Compression::from_name(codec).unwrap().compress(&lines, "entry").unwrap();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            if let Some(at) = cut {
                body.truncate(at.index(body.len()));
            }
            let _ = decode_at_most("k", Bytes::from(body), ObjectKind::Data, Utc::now(), 1 << 20);
        }

        /// Whatever bytes an object holds (behind any codec's magic
        /// number, too), reading it gives records, refused lines or one
        /// error for the object: never a panic.
        #[test]
        fn any_object_is_read_or_refused_never_a_panic(
            magic in prop_oneof![Just(&b""[..]), Just(GZIP), Just(ZSTD), Just(SNAPPY_FRAMED), Just(ZIP), Just(&b"PAR1"[..])],
            rest in proptest::collection::vec(any::<u8>(), 0..256),
            errors in any::<bool>(),
        ) {
            let body: Vec<u8> = magic.iter().copied().chain(rest).collect();
            let kind = if errors { ObjectKind::Errors(ErrorOutputType::ProcessingFailed) } else { ObjectKind::Data };
            let _ = decode_at_most("k", Bytes::from(body), kind, Utc::now(), 1 << 20);
        }

        /// Envelope lines, under every codec: each record back exactly,
        /// its output index included, in the object's order.
        #[test]
        fn envelope_objects_give_their_records_back_exactly(
            records in proptest::collection::vec(arb_record(), 1..8),
            codec in proptest::sample::select(Compression::NAMES.to_vec()),
        ) {
            let mut body = Vec::new();
            for record in &records {
                envelope::write_line(record, &mut body).unwrap();
            }
            let body = Compression::from_name(codec).unwrap().compress(&body, "entry").unwrap();
            let back = kept(decode("k", Bytes::from(body), ObjectKind::Data, Utc::now()).unwrap());
            prop_assert!(same(&back, &records), "{:?} != {:?}", back, records);
        }

        /// Error records as the pipeline writes them give the failed
        /// record back: bytes, position (output index included), key and
        /// arrival, so a re-drive cannot take two outputs of one record
        /// for one.
        #[test]
        fn error_records_give_their_records_back_exactly(
            records in proptest::collection::vec(arb_record(), 1..8),
            message in "[ -~\n\u{0}]{0,40}",
        ) {
            let rejection = Rejection {
                output_type: ErrorOutputType::ProcessingFailed,
                code: "Lambda.FunctionError",
                message,
            };
            let body: Vec<u8> = records
                .iter()
                .flat_map(|r| spillway_transforms::error_record::render(r, &rejection, 1, Utc::now()))
                .collect();
            let kind = ObjectKind::Errors(ErrorOutputType::ProcessingFailed);
            let back = kept(decode("k", Bytes::from(body), kind, Utc::now()).unwrap());
            prop_assert!(same(&back, &records), "{:?} != {:?}", back, records);
        }
    }
}
