//! Output formats: a batch of records in, the bytes of one object out.
//!
//! `json_lines` (with or without its [`envelope`]), `raw` and `parquet`
//! live here. A
//! format that finds a record it cannot hold returns it in
//! [`Encoded::rejected`] so the pipeline can send it to the error output,
//! while the rest of the batch is written.

pub mod envelope;
mod json_lines;
pub use json_lines::as_one_line;
pub mod parquet;
mod raw;

use std::sync::Arc;

pub use json_lines::JsonLinesSettings;
pub use raw::RawFormatSettings;

use crate::check::Rejection;
use crate::record::Record;

/// A configured output format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// One record per line, a newline added where a record lacks one.
    JsonLines,
    /// One record and its position per line (`json_lines` with
    /// `envelope = true`, see [`envelope`]).
    JsonLinesEnvelope,
    /// The records' bytes, each followed by `delimiter` when one is set.
    Raw { delimiter: Option<Vec<u8>> },
    /// One Parquet file per batch (see [`parquet`]).
    Parquet(Arc<parquet::ParquetFormat>),
}

/// The body of one object, and the records it could not hold.
#[derive(Debug, Default)]
pub struct Encoded {
    pub body: Vec<u8>,
    /// How many records the body holds.
    pub records: usize,
    /// Indices (into the batch) of refused records, with the reason.
    pub rejected: Vec<(usize, Rejection)>,
}

impl Format {
    /// Whether records must be JSON texts.
    pub fn expects_json(&self) -> bool {
        match self {
            Format::JsonLines | Format::Parquet(_) => true,
            // A record that is not JSON is held as base64.
            Format::Raw { .. } | Format::JsonLinesEnvelope => false,
        }
    }

    /// Whether encoding parses every record and refuses a malformed one
    /// itself, with the codes and messages of [`crate::check::Check`]: the
    /// router need not parse it first.
    pub fn parses_records(&self) -> bool {
        matches!(self, Format::Parquet(_))
    }

    /// The file extension of an object in this format, before any
    /// compression extension.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::JsonLines | Format::JsonLinesEnvelope => ".jsonl",
            Format::Raw { .. } => "",
            Format::Parquet(_) => ".parquet",
        }
    }

    /// The object's content type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::JsonLines | Format::JsonLinesEnvelope => "application/x-ndjson",
            Format::Raw { .. } => "application/octet-stream",
            Format::Parquet(_) => "application/vnd.apache.parquet",
        }
    }

    /// Whether objects in this format can be written record by record while
    /// they are sent: formats that refuse no record once it passed the
    /// router's checks.
    pub fn is_streamable(&self) -> bool {
        matches!(self, Format::JsonLines | Format::JsonLinesEnvelope | Format::Raw { .. })
    }

    /// Writes the records in a streamable format (see
    /// [`Format::is_streamable`]); gives the same bytes as
    /// [`Format::encode`].
    pub fn write_records(&self, records: &[Record], out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match self {
            Format::JsonLines => json_lines::write(records, out),
            Format::JsonLinesEnvelope => json_lines::write_envelopes(records, out),
            Format::Raw { delimiter } => raw::write(records, delimiter.as_deref(), out),
            Format::Parquet(_) => Err(std::io::Error::other(
                "parquet is not streamable: a record may be refused, so a batch is encoded whole",
            )),
        }
    }

    pub fn encode(&self, records: &[Record]) -> Encoded {
        match self {
            Format::JsonLines => json_lines::encode(records),
            Format::JsonLinesEnvelope => json_lines::encode_envelopes(records),
            Format::Raw { delimiter } => raw::encode(records, delimiter.as_deref()),
            Format::Parquet(format) => format.encode(records),
        }
    }
}
