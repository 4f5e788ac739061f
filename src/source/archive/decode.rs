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

use std::io::Read;

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

/// Reads the object `key`; `arrival` stands for records whose arrival time
/// the archive did not keep (the time its prefix shows).
pub fn decode(key: &str, body: Bytes, kind: ObjectKind, arrival: DateTime<Utc>) -> Result<Vec<Item>, ObjectError> {
    let body = decompress(body)?;
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

fn decompress(body: Bytes) -> Result<Bytes, ObjectError> {
    let failed = |codec| move |source| ObjectError::Decompress { codec, source };
    let mut out = Vec::new();
    if body.starts_with(GZIP) {
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(failed("gzip"))?;
    } else if body.starts_with(ZSTD) {
        out = zstd::decode_all(&body[..]).map_err(failed("zstd"))?;
    } else if body.starts_with(SNAPPY_FRAMED) {
        snap::read::FrameDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(failed("snappy"))?;
    } else if body.starts_with(ZIP) {
        out = spillway_destinations::Compression::Zip
            .decompress(&body)
            .map_err(failed("zip"))?;
    } else {
        return Ok(body);
    }
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
                    offset: Offset::new(
                        SequenceNumber::parse(p.sequence_number).ok()?,
                        u64::try_from(p.subsequence_number).ok()?,
                    ),
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
            offset: Offset::new(
                SequenceNumber::parse(&line.sequence_number).map_err(|err| err.to_string())?,
                line.sub_sequence_number,
            ),
        },
        partition_key: line.partition_key.map(Into::into),
        arrival: DateTime::from_timestamp_millis(line.arrival_timestamp)
            .ok_or_else(|| format!("arrivalTimestamp {} is out of range", line.arrival_timestamp))?,
    })
}
