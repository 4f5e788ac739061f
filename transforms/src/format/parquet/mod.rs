//! `parquet`: a batch of JSON records as one Parquet file (arrow-rs).
//!
//! The columns are the user's (from a schema file, or inferred from the
//! batch), then spillway's reserved columns (prefix `_spillway_`): the
//! record's source position and, by default, its original bytes, so the
//! archive can be replayed exactly. A record that is exactly the canonical
//! JSON of its row is rebuilt from it instead ([`canonical`]), and its
//! `_spillway_data` is null; [`read_archive`] gives every record back.
//!
//! Records are converted one by one into column builders that can roll a
//! record back, so a record that does not fit is refused alone (see
//! [`convert`]). A compact record of scalars is read straight from its
//! bytes (the flat path), anything else by a JSON parser. Builders are cut into Arrow arrays every [`CHUNK_ROWS`]
//! rows or [`CHUNK_BYTES`] bytes and handed to the Parquet column writers,
//! and a row group is closed when its encoded size passes the configured
//! limit: memory holds the batch's records, the encoded output and one chunk
//! per thread. A large batch is cut into parts encoded on all cores.

pub mod canonical;
pub mod config;
mod convert;
mod infer;
mod json;
mod meta;
mod read;
pub mod schema;
mod single_pass;
mod timestamp;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{Field, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

pub use convert::KeyRules;
pub use read::{read_archive, ArchivedPosition, ArchivedRecord, ReadError};
pub use schema::{Column, ColumnType, Schema, SchemaError, RESERVED_PREFIX};

use super::Encoded;
use crate::check::{malformed_json, not_utf8, Rejection};
use crate::error_record::ErrorOutputType;
use crate::record::Record;
use crate::strict::too_deep;
use convert::{AppendError, ConvertError, RowBuilder};

/// Rows per Arrow record batch handed to the writer.
pub const CHUNK_ROWS: usize = 4096;
/// Column bytes per Arrow record batch handed to the writer.
pub const CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// The compression codec of the pages inside the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Snappy,
    Gzip,
    Zstd,
}

impl Codec {
    pub const NAMES: &'static [&'static str] = &["snappy", "gzip", "zstd", "none"];

    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "snappy" => Some(Codec::Snappy),
            "gzip" => Some(Codec::Gzip),
            "zstd" => Some(Codec::Zstd),
            "none" => Some(Codec::None),
            _ => None,
        }
    }

    /// The levels `level` may take with this codec, if it has levels.
    pub fn levels(self) -> Option<(i32, i32)> {
        match self {
            Codec::Gzip => Some((0, 9)),
            Codec::Zstd => Some((1, 22)),
            Codec::None | Codec::Snappy => None,
        }
    }

    /// With `level` (the codec's default when `None`; a level out of
    /// [`Self::levels`] is a bug of the caller, and gives the default too).
    fn parquet(self, level: Option<i32>) -> Compression {
        debug_assert!(
            level.is_none_or(|l| self.levels().is_some_and(|(lo, hi)| (lo..=hi).contains(&l))),
            "{self:?} at level {level:?}"
        );
        match self {
            Codec::None => Compression::UNCOMPRESSED,
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(
                level
                    .and_then(|l| GzipLevel::try_new(l as u32).ok())
                    .unwrap_or_default(),
            ),
            Codec::Zstd => Compression::ZSTD(level.and_then(|l| ZstdLevel::try_new(l).ok()).unwrap_or_default()),
        }
    }
}

/// Everything `[format]` says about Parquet output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetFormat {
    /// The given schema; `None`: inferred from each batch.
    pub schema: Option<Schema>,
    pub codec: Codec,
    /// The codec's level (gzip 0 to 9, zstd 1 to 22); `None`: its default
    /// (gzip 6, zstd 1).
    pub codec_level: Option<i32>,
    /// A row group is closed when its encoded size passes this.
    pub row_group_bytes: usize,
    pub page_size_bytes: usize,
    pub dictionary: bool,
    /// Parquet writer version 2 (`"2.0"`) instead of 1 (`"1.0"`).
    pub writer_version_2: bool,
    pub key_rules: KeyRules,
    /// Column name → JSON key, for top-level columns.
    pub column_to_json_key: HashMap<String, String>,
    /// Write the `_spillway_` source position columns.
    pub metadata_columns: bool,
    /// Write `_spillway_data`, the record's original bytes.
    pub keep_original: bool,
    /// Leave a record out of `_spillway_data` (a null) when it is exactly
    /// the canonical JSON of its row, which rebuilds it (see [`canonical`]).
    pub elide_rebuildable_original: bool,
    /// Runtime state, not configuration: the schema the last batch
    /// inferred (see [`single_pass`]).
    pub last_inferred: LastInferred,
}

/// The columns the last batch of an inferred-schema format inferred: the
/// next batch is converted under them while it is inferred, in one parse.
/// Shared by the clones of a [`super::Format`] (an `Arc`); equal whatever it
/// holds, as it never changes the output.
#[derive(Default)]
pub struct LastInferred {
    columns: std::sync::Mutex<Option<Vec<Column>>>,
    /// Batches encoded in a single pass.
    confirmed: std::sync::atomic::AtomicU64,
}

impl LastInferred {
    fn get(&self) -> Option<Vec<Column>> {
        self.columns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, columns: Vec<Column>) {
        *self.columns.lock().unwrap_or_else(|e| e.into_inner()) = Some(columns);
    }

    /// How many batches were encoded in a single pass.
    pub fn single_passes(&self) -> u64 {
        self.confirmed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clone for LastInferred {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for LastInferred {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastInferred {}

impl std::fmt::Debug for LastInferred {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("LastInferred")
    }
}

impl Default for ParquetFormat {
    fn default() -> Self {
        Self {
            schema: None,
            codec: Codec::Snappy,
            codec_level: None,
            row_group_bytes: 128 * 1024 * 1024,
            page_size_bytes: 1024 * 1024,
            dictionary: true,
            writer_version_2: false,
            key_rules: KeyRules::default(),
            column_to_json_key: HashMap::new(),
            metadata_columns: true,
            keep_original: true,
            elide_rebuildable_original: true,
            last_inferred: LastInferred::default(),
        }
    }
}

fn rejection(err: ConvertError) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: err.code,
        message: err.message,
    }
}

impl ParquetFormat {
    fn properties(&self) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_created_by(format!("spillway {}", env!("CARGO_PKG_VERSION")))
            .set_compression(self.codec.parquet(self.codec_level))
            .set_data_page_size_limit(self.page_size_bytes)
            .set_dictionary_enabled(self.dictionary)
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_writer_version(if self.writer_version_2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            });
        // Original records are all distinct, and nobody filters on them:
        // a dictionary or min/max statistics would only cost. Sequence
        // numbers are distinct too (no dictionary), but their statistics
        // let a replay skip row groups.
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(meta::DATA), false)
            .set_column_statistics_enabled(ColumnPath::from(meta::DATA), EnabledStatistics::None)
            .set_column_dictionary_enabled(ColumnPath::from(meta::SEQUENCE_NUMBER), false);
        builder.build()
    }

    /// Encodes a batch; records that do not fit are returned in
    /// `rejected`, the others are in the file.
    ///
    /// A large batch is cut into parts (one per core, up to
    /// [`MAX_PARTS`]) that are inferred, converted and encoded on their own
    /// threads, each part into its own row groups; the row groups are then
    /// appended to the file in batch order.
    ///
    /// Without a schema file, a batch after the first is first converted
    /// under the schema the previous batch inferred, while its own is
    /// inferred in the same parse; if the two differ, it is converted again
    /// under its own (see [`single_pass`]). A large first batch is
    /// converted the same way under the schema of its first records
    /// ([`sample`]), and stands only if that is exactly its own.
    pub fn encode(&self, records: &[Record]) -> Encoded {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = split(records, cores);
        let outcome = match &self.schema {
            Some(schema) => self.write(&parts, &schema.columns, Speculation::None),
            None => {
                // The columns to convert under while inferring: the previous
                // batch's, or for a first batch those of its first records.
                let guess = match self.last_inferred.get() {
                    Some(previous) => Some((previous, Speculation::Previous)),
                    None => sample(records).map(|sample| (self.infer(&split(sample, 1)), Speculation::Sample)),
                };
                let inferred = match guess {
                    Some((guess, speculation)) => match self.write(&parts, &guess, speculation) {
                        Ok(Written::Encoded(encoded)) => {
                            self.last_inferred.set(guess);
                            self.last_inferred
                                .confirmed
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            return encoded;
                        }
                        Ok(Written::Changed(inferred)) => Some(inferred),
                        Err(err) => {
                            // A bug, not the records' fault: the batch is
                            // encoded again the usual way.
                            debug_assert!(false, "the single pass failed: {err}");
                            None
                        }
                    },
                    None => None,
                };
                let columns = inferred.unwrap_or_else(|| self.infer(&parts));
                self.last_inferred.set(columns.clone());
                self.write(&parts, &columns, Speculation::None)
            }
        };
        match outcome {
            Ok(Written::Encoded(encoded)) => encoded,
            Ok(Written::Changed(_)) => unreachable!("only a single pass can find a changed schema"),
            Err(err) => refuse_all(
                records.len(),
                "Parquet.WriteFailed",
                &format!("the parquet writer failed: {err}"),
            ),
        }
    }

    fn infer(&self, parts: &[Part]) -> Vec<Column> {
        let infer_part = |part: &Part| {
            let mut inference = infer::Inference::default();
            for record in part.records {
                inference.add_text(&record.data, &self.key_rules);
            }
            inference
        };
        let mut inferences = std::thread::scope(|scope| {
            let handles: Vec<_> = parts[1..]
                .iter()
                .map(|part| scope.spawn(move || infer_part(part)))
                .collect();
            let mut all = vec![infer_part(&parts[0])];
            all.extend(handles.into_iter().map(|h| h.join().expect("inference does not panic")));
            all
        })
        .into_iter();
        let mut whole = inferences.next().expect("at least one part");
        for later in inferences {
            whole.merge(later);
        }
        whole.columns()
    }

    /// Converts and encodes the parts under `columns`. With a
    /// `speculation`, `columns` are a guess, and each record is inferred in
    /// the same parse: the file stands only if the batch infers the same.
    fn write(&self, parts: &[Part], columns: &[Column], speculation: Speculation) -> Result<Written, ParquetError> {
        let single_pass = speculation != Speculation::None;
        let records = parts.iter().map(|p| p.records.len()).sum();
        let mut fields: Vec<Field> = schema::struct_fields(columns)
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let user_columns = fields.len();
        fields.extend(meta::fields(
            self.metadata_columns,
            self.keep_original,
            self.elide_rebuildable_original,
        ));
        if fields.is_empty() {
            if single_pass {
                return Ok(Written::Changed(self.infer(parts)));
            }
            // Nothing to write a column for: every record is `{}` and the
            // reserved columns are off.
            return Ok(Written::Encoded(refuse_all(
                records,
                "Parquet.NoColumns",
                "the batch has no column to write: no keys, and the reserved columns are off",
            )));
        }
        let schema: SchemaRef = Arc::new(arrow_schema::Schema::new(fields));
        let (mut file, factory) =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(self.properties()))?.into_serialized_writer()?;
        let layout = Layout {
            schema: &schema,
            user_columns,
            elide_rebuildable: self.keep_original && self.elide_rebuildable_original,
        };
        let encode_part =
            |(index, part): (usize, &Part)| self.encode_part(index, part, columns, &layout, &factory, single_pass);
        let mut rejected = Vec::new();
        let mut written = 0;
        let mut inferences = Vec::new();
        let mut exact = true;
        let mut append = |file: &mut SerializedFileWriter<Vec<u8>>, part: EncodedPart| -> Result<(), ParquetError> {
            for row_group in part.row_groups {
                let mut row_group_writer = file.next_row_group()?;
                for chunk in row_group {
                    chunk.append_to_row_group(&mut row_group_writer)?;
                }
                row_group_writer.close()?;
            }
            rejected.extend(part.rejected);
            written += part.written;
            inferences.extend(part.inference);
            exact &= part.exact;
            Ok(())
        };
        std::thread::scope(|scope| -> Result<(), ParquetError> {
            let later: Vec<_> = parts
                .iter()
                .enumerate()
                .skip(1)
                .map(|part| scope.spawn(move || encode_part(part)))
                .collect();
            // The first part is encoded here and appended at once, so its
            // pages are freed while the other parts finish; the output is
            // sized once, from the first part, rather than doubled as it
            // grows.
            let first = encode_part((0, &parts[0]))?;
            let first_bytes: u64 = first.row_groups.iter().flatten().map(|c| c.close().bytes_written).sum();
            file.inner_mut()
                .reserve((first_bytes as usize).saturating_mul(parts.len()) + first_bytes as usize / 8 + 64 * 1024);
            append(&mut file, first)?;
            for handle in later {
                append(&mut file, handle.join().expect("encoding does not panic")?)?;
            }
            Ok(())
        })?;
        if single_pass {
            // A malformed record may have been inferred in part only: the
            // batch is inferred again, record by record, to be sure.
            let inferred = if exact {
                let mut inferences = inferences.into_iter();
                let mut whole = inferences.next().expect("one inference per part");
                for later in inferences {
                    whole.merge(later);
                }
                whole.columns()
            } else {
                self.infer(parts)
            };
            let diverged = rejected.iter().any(|(_, r)| r.code == single_pass::DIVERGED);
            let same = match speculation {
                Speculation::Previous => single_pass::same_columns(&inferred, columns),
                // Exactly what two passes give, column order included.
                _ => inferred == columns,
            };
            if !same || diverged {
                return Ok(Written::Changed(inferred));
            }
        }
        Ok(Written::Encoded(Encoded {
            body: file.into_inner()?,
            records: written,
            rejected,
        }))
    }

    /// Converts and encodes one part of the batch into row groups.
    fn encode_part(
        &self,
        part_index: usize,
        part: &Part,
        columns: &[Column],
        layout: &Layout,
        factory: &ArrowRowGroupWriterFactory,
        single_pass: bool,
    ) -> Result<EncodedPart, ParquetError> {
        let mut rows = RowBuilder::new(columns, self.key_rules.clone(), &self.column_to_json_key);
        let mut inference = single_pass.then(infer::Inference::default);
        let mut meta = meta::MetaBuilder::new(self.metadata_columns, self.keep_original);
        // Row group ordinals only matter to encryption, which is off.
        let mut row_group = RowGroup::new(factory.create_column_writers(part_index)?);
        let mut encoded = EncodedPart::default();
        let mut chunk_bytes = 0;
        let mut flat = convert::FlatPath::new(columns, &rows, &self.column_to_json_key);
        for (offset, record) in part.records.iter().enumerate() {
            let read_flat = flat
                .as_mut()
                .and_then(|flat| flat.append(&mut rows, &record.data, inference.as_mut()));
            let appended = match (read_flat, &mut inference) {
                (Some(rebuilt), _) => Ok(Some(rebuilt)),
                (None, Some(inference)) => rows.append_and_infer(&record.data, inference).map(|()| None),
                (None, None) => rows.append_text(&record.data).map(|()| None),
            };
            let rebuilt = match appended {
                Ok(rebuilt) => rebuilt,
                Err(why) => {
                    if matches!(why, AppendError::Malformed(_)) {
                        encoded.exact = false;
                    }
                    let why = match why {
                        AppendError::Convert(err) => rejection(err),
                        AppendError::Malformed(err) => malformed_json(&err),
                        AppendError::NotUtf8(err) => not_utf8(&err),
                        AppendError::TooDeep => too_deep(),
                    };
                    encoded.rejected.push((part.first + offset, why));
                    continue;
                }
            };
            meta.push(record, rebuilt);
            encoded.written += 1;
            // Record bytes stand for column bytes: measuring the builders
            // of a wide schema per record would cost more than converting.
            chunk_bytes += record.data.len();
            if rows.len() >= CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
                chunk_bytes = 0;
                row_group.write(layout, &mut rows, &mut meta)?;
                if row_group.encoded_bytes() >= self.row_group_bytes {
                    let full = std::mem::replace(
                        &mut row_group,
                        RowGroup::new(factory.create_column_writers(part_index)?),
                    );
                    encoded.row_groups.push(full.close()?);
                }
            }
        }
        if !rows.is_empty() {
            row_group.write(layout, &mut rows, &mut meta)?;
        }
        if row_group.rows > 0 {
            encoded.row_groups.push(row_group.close()?);
        }
        encoded.inference = inference;
        Ok(encoded)
    }
}

/// What the columns a batch is converted under are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Speculation {
    /// The batch's own, or the schema file's: no inference.
    None,
    /// The previous batch's: stand if the batch infers the same columns, in
    /// any order.
    Previous,
    /// Its first records' ([`sample`]): stand if the batch infers exactly
    /// these, in this order.
    Sample,
}

/// A first batch of at least this many bytes is converted under the columns
/// of its first records while it is inferred (one parse per record, as for
/// later batches); a smaller one is inferred, then converted.
pub const MIN_SAMPLED_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The first records of a batch, 1/16 of its bytes, whose columns a first
/// batch is converted under (see [`Speculation::Sample`]).
const SAMPLE_DIVISOR: usize = 16;

/// The first records of a large batch, about 1/[`SAMPLE_DIVISOR`] of its
/// bytes; `None` for a small batch.
fn sample(records: &[Record]) -> Option<&[Record]> {
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    if total < MIN_SAMPLED_BATCH_BYTES {
        return None;
    }
    let mut bytes = 0;
    let end = records
        .iter()
        .position(|r| {
            bytes += r.data.len();
            bytes >= total / SAMPLE_DIVISOR
        })
        .map_or(records.len(), |at| at + 1);
    Some(&records[..end])
}

/// Parts of a batch encoded in parallel, at most this many.
pub const MAX_PARTS: usize = 8;
/// A part holds at least this many bytes of records: small batches stay
/// one part, one row group.
pub const MIN_PART_BYTES: usize = 4 * 1024 * 1024;

/// A run of the batch's records.
struct Part<'a> {
    /// Index of `records[0]` in the batch.
    first: usize,
    records: &'a [Record],
}

/// Cuts the batch into parts of about equal bytes, one per core.
fn split(records: &[Record], cores: usize) -> Vec<Part<'_>> {
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    let count = cores.min(MAX_PARTS).min(total / MIN_PART_BYTES).max(1);
    let per_part = total.div_ceil(count);
    let mut parts = Vec::with_capacity(count);
    let (mut first, mut bytes) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        bytes += record.data.len();
        if bytes >= per_part && parts.len() + 1 < count {
            parts.push(Part {
                first,
                records: &records[first..=index],
            });
            first = index + 1;
            bytes = 0;
        }
    }
    parts.push(Part {
        first,
        records: &records[first..],
    });
    parts
}

struct EncodedPart {
    row_groups: Vec<Vec<ArrowColumnChunk>>,
    rejected: Vec<(usize, Rejection)>,
    written: usize,
    /// The part's own inference, from a single pass.
    inference: Option<infer::Inference>,
    /// Whether that inference saw every record whole (no malformed one).
    exact: bool,
}

impl Default for EncodedPart {
    fn default() -> Self {
        Self {
            row_groups: Vec::new(),
            rejected: Vec::new(),
            written: 0,
            inference: None,
            exact: true,
        }
    }
}

/// What [`ParquetFormat::write`] made.
enum Written {
    Encoded(Encoded),
    /// A single pass found that the batch infers other columns than it was
    /// converted under: these.
    Changed(Vec<Column>),
}

/// The file's columns: the user's, then the reserved ones.
struct Layout<'a> {
    schema: &'a SchemaRef,
    user_columns: usize,
    /// Records their rows rebuild are nulls in `_spillway_data`.
    elide_rebuildable: bool,
}

/// The column writers of one row group being encoded.
struct RowGroup {
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl RowGroup {
    fn new(writers: Vec<ArrowColumnWriter>) -> Self {
        Self { writers, rows: 0 }
    }

    /// Hands the converted rows to the column writers.
    fn write(
        &mut self,
        layout: &Layout,
        rows: &mut RowBuilder,
        meta: &mut meta::MetaBuilder,
    ) -> Result<(), ParquetError> {
        debug_assert_eq!(meta.len(), rows.len(), "one reserved row per user row");
        self.rows += rows.len();
        let mut arrays = rows.finish();
        let fields = layout.schema.fields();
        let reserved = if layout.elide_rebuildable {
            // The very arrays the writer gets: what a reader rebuilds from.
            let canonical = canonical::Canonical::new(&fields[..layout.user_columns], &arrays);
            meta.finish(Some(&canonical))
        } else {
            meta.finish(None)
        };
        arrays.extend(reserved);
        let mut writers = self.writers.iter_mut();
        for (field, array) in fields.iter().zip(&arrays) {
            for leaf in compute_leaves(field, array)? {
                writers.next().expect("one writer per leaf").write(&leaf)?;
            }
        }
        Ok(())
    }

    fn encoded_bytes(&self) -> usize {
        self.writers
            .iter()
            .map(ArrowColumnWriter::get_estimated_total_bytes)
            .sum()
    }

    fn close(self) -> Result<Vec<ArrowColumnChunk>, ParquetError> {
        self.writers.into_iter().map(ArrowColumnWriter::close).collect()
    }
}

/// Every record refused for the same reason (the writer failed, a bug and
/// not the records' fault: they go to the error output rather than being
/// lost).
fn refuse_all(count: usize, code: &'static str, message: &str) -> Encoded {
    Encoded {
        body: Vec::new(),
        records: 0,
        rejected: (0..count)
            .map(|index| {
                (
                    index,
                    Rejection {
                        output_type: ErrorOutputType::FormatConversionFailed,
                        code,
                        message: message.to_owned(),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
