//! `spillway originals`: the records of archived Parquet files, as they
//! were read from the source (see `transforms`' `read_archive`).

use std::io::Write;
use std::path::Path;

use chrono::{TimeZone, Utc};
use spillway_transforms::format::parquet::{read_archive, ArchivedRecord, ReadError};

#[derive(Debug, thiserror::Error)]
pub enum OriginalsError {
    #[error("cannot read the file: {0}")]
    Open(std::io::Error),
    #[error(transparent)]
    Archive(#[from] ReadError),
    #[error("writing the records: {0}")]
    Write(std::io::Error),
}

impl OriginalsError {
    /// The reader of the output went away (`spillway originals ... | head`):
    /// not a failure, the command just stops.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, OriginalsError::Write(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Writes every record of the Parquet file `path` to `out`: with
/// `data_only` its bytes and a newline, else one JSON object per line,
/// `{"source", "sequence_number", "subsequence_number", "partition_key",
/// "arrival", "data"}` (the position fields only when the file has them,
/// and `output_index` when it is not 0; `data` is the record as a JSON
/// string).
pub fn print(path: &Path, data_only: bool, out: &mut impl Write) -> Result<(), OriginalsError> {
    let body = std::fs::read(path).map_err(OriginalsError::Open)?;
    let mut failed = None;
    read_archive(body.into(), |record| {
        if failed.is_none() {
            if let Err(err) = write_record(&record, data_only, out) {
                failed = Some(err);
            }
        }
    })?;
    failed.map_or(Ok(()), |err| Err(OriginalsError::Write(err)))
}

fn write_record(record: &ArchivedRecord, data_only: bool, out: &mut impl Write) -> std::io::Result<()> {
    if data_only {
        out.write_all(record.data)?;
        return out.write_all(b"\n");
    }
    let mut line = serde_json::Map::new();
    if let Some(position) = &record.position {
        line.insert("source".into(), position.source.into());
        line.insert("sequence_number".into(), position.sequence_number.into());
        line.insert("subsequence_number".into(), position.subsequence_number.into());
        if position.output_index != 0 {
            line.insert("output_index".into(), position.output_index.into());
        }
        line.insert("partition_key".into(), position.partition_key.into());
        let arrival = Utc.timestamp_millis_opt(position.arrival_ms).single();
        line.insert(
            "arrival".into(),
            arrival
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .into(),
        );
    }
    // Parquet records are valid JSON, so UTF-8.
    line.insert("data".into(), String::from_utf8_lossy(record.data).into());
    serde_json::to_writer(&mut *out, &serde_json::Value::Object(line))?;
    out.write_all(b"\n")
}
