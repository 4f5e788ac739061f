//! Reading an archived Parquet file back into its original records: the
//! bytes from `_spillway_data`, or rebuilt from the row where that is null
//! (see [`super::canonical`]), with the source position.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;

use super::canonical::Canonical;
use super::meta;
use super::schema::RESERVED_PREFIX;

/// One record of an archive file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedRecord<'a> {
    /// The record's original bytes.
    pub data: &'a [u8],
    /// The source position, when the file has the position columns.
    pub position: Option<ArchivedPosition<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedPosition<'a> {
    pub source: &'a str,
    pub sequence_number: &'a str,
    pub subsequence_number: i64,
    /// The record's index among the outputs processors made of one source
    /// record: 0 in files written before the column was.
    pub output_index: i64,
    pub partition_key: Option<&'a str>,
    /// Milliseconds since the epoch, UTC.
    pub arrival_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a readable Parquet file: {0}")]
    Parquet(#[from] ParquetError),
    #[error(
        "the file has no {} column (written with keep_original = false): its original records cannot be read back",
        meta::DATA
    )]
    NoOriginals,
    #[error(
        "row {row}: {} is null and the row has no canonical JSON to rebuild it from",
        meta::DATA
    )]
    NotRebuildable { row: u64 },
    #[error("row {row}: {} holds {value:?}, not ascending places of null members", meta::NULLS)]
    BadNulls { row: u64, value: String },
    #[error(
        "the file's records are rebuilt by rules this spillway does not know ({} = {version:?}; it knows up to {}): read it with a newer spillway",
        meta::REBUILD,
        meta::REBUILD_VERSION
    )]
    NewerRules { version: String },
    #[error("column {column} is not of the type spillway writes")]
    UnexpectedType { column: &'static str },
    #[error("the file is damaged: the Parquet reader failed on it ({0})")]
    Damaged(String),
}

/// Runs a step of the Parquet reader, which panics on some damaged files
/// (an offset past a buffer's end) rather than returning an error: the
/// panic becomes [`ReadError::Damaged`], so one bad object is an error
/// record, not the end of a replay (again at every restart). The reader's
/// state is dropped with the error, never used after a panic.
fn guarded<T>(step: impl FnOnce() -> Result<T, ReadError>) -> Result<T, ReadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(ReadError::Damaged(why))
    })
}

/// Calls `each` with every record of the Parquet file `body`, in the file's
/// order.
pub fn read_archive(body: Bytes, mut each: impl FnMut(ArchivedRecord)) -> Result<(), ReadError> {
    let mut reader = guarded(|| {
        let builder = match ParquetRecordBatchReaderBuilder::try_new(body.clone()) {
            Ok(builder) => builder,
            // Files written before records were limited to 32 levels may
            // embed an Arrow schema nested deeper than arrow-rs reads (it
            // stops at about 61 levels): their Parquet schema alone gives
            // the same columns, as far as the records are concerned.
            Err(first) => ParquetRecordBatchReaderBuilder::try_new_with_options(
                body,
                ArrowReaderOptions::new().with_skip_arrow_metadata(true),
            )
            .map_err(|_| first)?,
        };
        let version = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|entries| entries.iter().find(|e| e.key == meta::REBUILD))
            .map(|e| e.value.clone().unwrap_or_default());
        if let Some(version) = version {
            if !version.parse::<u32>().is_ok_and(|v| v <= meta::REBUILD_VERSION) {
                return Err(ReadError::NewerRules {
                    version: version.chars().take(16).collect(),
                });
            }
        }
        Ok(builder.build()?)
    })?;
    let mut row_base = 0u64;
    let mut scratch = Vec::new();
    let mut places = Vec::new();
    while let Some(batch) = guarded(|| Ok(reader.next()))? {
        let batch = batch.map_err(ParquetError::from)?;
        let schema = batch.schema();
        let data = strings(&batch, meta::DATA)?.ok_or(ReadError::NoOriginals)?;
        // Absent from files written before it: no record of theirs was
        // rebuilt with null members.
        let nulls = strings(&batch, meta::NULLS)?;
        let user = schema
            .fields()
            .iter()
            .position(|f| f.name().starts_with(RESERVED_PREFIX))
            .unwrap_or(schema.fields().len());
        let canonical = Canonical::new(&schema.fields()[..user], &batch.columns()[..user]);
        let position = Positions::of(&batch)?;
        for row in 0..batch.num_rows() {
            let data: &[u8] = if data.is_valid(row) {
                data.value(row).as_bytes()
            } else {
                scratch.clear();
                places.clear();
                if let Some(nulls) = nulls.filter(|n| n.is_valid(row)) {
                    let value = nulls.value(row);
                    if !null_members(value, &mut places) {
                        return Err(ReadError::BadNulls {
                            row: row_base + row as u64,
                            value: value.chars().take(64).collect(),
                        });
                    }
                }
                if !canonical.write(row, &places, &mut scratch) {
                    return Err(ReadError::NotRebuildable {
                        row: row_base + row as u64,
                    });
                }
                &scratch
            };
            each(ArchivedRecord {
                data,
                position: position.as_ref().map(|p| p.at(row)),
            });
        }
        row_base += batch.num_rows() as u64;
    }
    Ok(())
}

/// Reads `value`, the places of a row's null members (`"1"`, `"0,4,7"`),
/// into `places`; `false` unless they are decimal numbers, ascending,
/// joined by commas.
fn null_members(value: &str, places: &mut Vec<usize>) -> bool {
    for place in value.split(',') {
        let valid =
            !place.is_empty() && place.bytes().all(|b| b.is_ascii_digit()) && (place == "0" || !place.starts_with('0'));
        match place.parse::<usize>() {
            Ok(place) if valid && places.last().is_none_or(|&last| last < place) => places.push(place),
            _ => return false,
        }
    }
    true
}

fn strings<'a>(batch: &'a RecordBatch, column: &'static str) -> Result<Option<&'a StringArray>, ReadError> {
    batch
        .column_by_name(column)
        .map(|c| c.as_string_opt::<i32>().ok_or(ReadError::UnexpectedType { column }))
        .transpose()
}

/// The position columns of a batch.
struct Positions<'a> {
    sources: &'a StringArray,
    sequence_numbers: &'a StringArray,
    subsequence_numbers: &'a arrow_array::Int64Array,
    output_indexes: Option<&'a arrow_array::Int64Array>,
    partition_keys: &'a StringArray,
    arrivals: &'a arrow_array::TimestampMillisecondArray,
}

impl<'a> Positions<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Option<Self>, ReadError> {
        let Some(sources) = strings(batch, meta::SOURCE)? else {
            return Ok(None);
        };
        let column = |name: &'static str| {
            batch
                .column_by_name(name)
                .ok_or(ReadError::UnexpectedType { column: name })
        };
        Ok(Some(Self {
            sources,
            sequence_numbers: strings(batch, meta::SEQUENCE_NUMBER)?.ok_or(ReadError::UnexpectedType {
                column: meta::SEQUENCE_NUMBER,
            })?,
            subsequence_numbers: column(meta::SUBSEQUENCE_NUMBER)?
                .as_primitive_opt::<Int64Type>()
                .ok_or(ReadError::UnexpectedType {
                    column: meta::SUBSEQUENCE_NUMBER,
                })?,
            output_indexes: batch
                .column_by_name(meta::OUTPUT_INDEX)
                .map(|c| {
                    c.as_primitive_opt::<Int64Type>().ok_or(ReadError::UnexpectedType {
                        column: meta::OUTPUT_INDEX,
                    })
                })
                .transpose()?,
            partition_keys: strings(batch, meta::PARTITION_KEY)?.ok_or(ReadError::UnexpectedType {
                column: meta::PARTITION_KEY,
            })?,
            arrivals: column(meta::ARRIVAL)?
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or(ReadError::UnexpectedType { column: meta::ARRIVAL })?,
        }))
    }

    fn at(&self, row: usize) -> ArchivedPosition<'a> {
        ArchivedPosition {
            source: self.sources.value(row),
            sequence_number: self.sequence_numbers.value(row),
            subsequence_number: self.subsequence_numbers.value(row),
            output_index: self.output_indexes.map_or(0, |o| o.value(row)),
            partition_key: self
                .partition_keys
                .is_valid(row)
                .then(|| self.partition_keys.value(row)),
            arrival_ms: self.arrivals.value(row),
        }
    }
}
