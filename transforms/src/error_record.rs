//! Firehose-style error records.
//!
//! A record that cannot be delivered as data is written to the error output,
//! one JSON object per line, in the shape Firehose uses for its own error
//! output, plus the record's source position so it can be traced and
//! replayed.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::record::Record;

/// Why a record was refused, in the words of an error record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub output_type: ErrorOutputType,
    /// A stable, machine-readable code such as `Record.MalformedJson`.
    pub code: &'static str,
    /// A human-readable reason.
    pub message: String,
}

/// The kind of failure, the value of `!{firehose:error-output-type}` in the
/// error prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorOutputType {
    /// The record cannot be a record at all: empty, or over the size limit.
    InvalidRecord,
    /// The record is not what the output format needs (invalid UTF-8 or JSON,
    /// a value the schema cannot hold).
    FormatConversionFailed,
    /// A transform failed on the record.
    ProcessingFailed,
    /// An HTTP endpoint refused or never acknowledged the record.
    HttpEndpointFailed,
    /// A destination kept failing past its retry duration.
    DeliveryFailed,
    /// An archive source could not read an object (or a line of one) back
    /// into records: the object's key is in the error message.
    ArchiveReadFailed,
}

impl ErrorOutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRecord => "invalid-record",
            Self::FormatConversionFailed => "format-conversion-failed",
            Self::ProcessingFailed => "processing-failed",
            Self::HttpEndpointFailed => "http-endpoint-failed",
            Self::DeliveryFailed => "delivery-failed",
            Self::ArchiveReadFailed => "archive-read-failed",
        }
    }
}

impl fmt::Display for ErrorOutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the error output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord<'a> {
    pub attempts_made: u32,
    /// Milliseconds since the epoch.
    pub arrival_timestamp: i64,
    pub error_code: &'a str,
    pub error_message: &'a str,
    /// Milliseconds since the epoch.
    pub attempt_ending_timestamp: i64,
    /// The record's original bytes, base64.
    pub raw_data: String,
    /// The source: a Kinesis shard id, or a file source's id.
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub sub_sequence_number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<&'a str>,
}

/// Renders the error record for `record`, refused for `rejection` after
/// `attempts` attempts, as one JSON line (with its newline).
pub fn render(record: &Record, rejection: &Rejection, attempts: u32, now: DateTime<Utc>) -> Vec<u8> {
    let line = ErrorRecord {
        attempts_made: attempts,
        arrival_timestamp: record.arrival.timestamp_millis(),
        error_code: rejection.code,
        error_message: &rejection.message,
        attempt_ending_timestamp: now.timestamp_millis(),
        raw_data: base64::engine::general_purpose::STANDARD.encode(&record.data),
        shard_id: record.position.source.as_str(),
        sequence_number: record.position.offset.sequence_number.as_str(),
        sub_sequence_number: record.position.offset.subsequence_number,
        partition_key: record.partition_key.as_deref(),
    };
    let mut out = serde_json::to_vec(&line).expect("an error record always serialises");
    out.push(b'\n');
    out
}
