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
//!
//! A pipeline with an inferred schema encodes its batches under one table
//! schema that only grows (`table`), so that its files read as one table.
//!
//! This module encodes a batch: parts, schema, single pass, the file. The
//! options are in `options`, the cut into parts in `parts`, a part's
//! conversion into row groups in `row_group`, and which columns are
//! written without a dictionary, learned from the files before, in
//! `dictionary`.

pub mod canonical;
pub mod config;
mod convert;
mod dictionary;
mod infer;
mod json;
mod meta;
mod options;
mod parts;
mod read;
mod row_group;
pub mod schema;
mod single_pass;
mod table;
mod timestamp;

use std::sync::Arc;

use arrow_schema::{Field, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::writer::SerializedFileWriter;

pub use convert::KeyRules;
pub use dictionary::{Dictionaries, PLAIN_FILES};
pub use infer::MAX_COLUMNS;
pub use options::{Codec, LastInferred, ParquetFormat};
pub use parts::{MAX_PARTS, MIN_PART_BYTES, MIN_SAMPLED_BATCH_BYTES};
pub use read::{read_archive, ArchivedPosition, ArchivedRecord, ReadError};
pub use schema::{Column, ColumnType, Schema, SchemaError, RESERVED_PREFIX};
pub use table::{count_columns, TableEncoded, TableSchema, TableSchemaError};

use super::Encoded;
use crate::check::Rejection;
use crate::error_record::ErrorOutputType;
use crate::record::Record;
use parts::{sample, split, Part};
use row_group::{EncodedPart, Layout};

/// Rows per Arrow record batch handed to the writer.
pub const CHUNK_ROWS: usize = 4096;
/// Column bytes per Arrow record batch handed to the writer.
pub const CHUNK_BYTES: usize = 2 * 1024 * 1024;

impl ParquetFormat {
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
        let parts = split(records, cores());
        match &self.schema {
            Some(schema) => finish(self.write(&parts, &schema.columns, Speculation::None), records.len()),
            None => self.encode_inferred(records, &parts).0,
        }
    }

    /// Encodes a batch under the schema it infers (see [`Self::encode`]),
    /// and gives the columns it was written under.
    fn encode_inferred(&self, records: &[Record], parts: &[Part]) -> (Encoded, Vec<Column>) {
        // The columns to convert under while inferring: the previous
        // batch's, or for a first batch those of its first records.
        let guess = match self.last_inferred.get() {
            Some(previous) => Some((previous, Speculation::Previous)),
            None => sample(records).map(|sample| (self.infer(&split(sample, 1)), Speculation::Sample)),
        };
        let inferred = match guess {
            Some((guess, speculation)) => match self.write(parts, &guess, speculation) {
                Ok(Written::Encoded(encoded)) => {
                    self.last_inferred.set(guess.clone());
                    self.last_inferred
                        .confirmed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return (encoded, guess);
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
        let columns = inferred.unwrap_or_else(|| self.infer(parts));
        self.last_inferred.set(columns.clone());
        let encoded = finish(self.write(parts, &columns, Speculation::None), records.len());
        (encoded, columns)
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
        let layout = Layout {
            schema: &schema,
            user_columns,
            elide_rebuildable: self.keep_original && self.elide_rebuildable_original,
        };
        if self.dictionary && self.dictionaries.unlearned() {
            if let Some(sample) = dictionary::sample(parts[0].records) {
                if let Err(err) = self.judge_sample(sample, columns, &layout) {
                    // A bug, not the records' fault: the file is written
                    // with every dictionary, and judged itself.
                    debug_assert!(false, "the dictionaries' sample failed: {err}");
                }
            }
        }
        let plain = if self.dictionary {
            self.dictionaries.plain()
        } else {
            Vec::new()
        };
        let (mut file, factory) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(self.properties(&plain)))?
            .into_serialized_writer()?;
        let encode_part =
            |(index, part): (usize, &Part)| self.encode_part(index, part, columns, &layout, &factory, single_pass);
        let mut rejected = Vec::new();
        let mut written = 0;
        let mut inferences = Vec::new();
        let mut exact = true;
        let mut judged = dictionary::Judged::default();
        let mut append = |file: &mut SerializedFileWriter<Vec<u8>>, part: EncodedPart| -> Result<(), ParquetError> {
            append_row_groups(file, part.row_groups, &mut judged)?;
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
                // Nothing the table lacks: the batch fits it as it is.
                Speculation::Table => table::grow(columns, &inferred, &self.key_rules) == columns,
                // Exactly what two passes give, column order included.
                _ => inferred == columns,
            };
            if !same || diverged {
                return Ok(Written::Changed(inferred));
            }
        }
        // Only a file that stands teaches the next (see `dictionary`): a
        // batch encodes the same whether or not a guess was tried first.
        if self.dictionary {
            self.dictionaries.learn(&judged);
        }
        Ok(Written::Encoded(Encoded {
            body: file.into_inner()?,
            records: written,
            rejected,
        }))
    }
}

impl ParquetFormat {
    /// Writes a first batch's [`dictionary::sample`] with every dictionary
    /// into a file that is thrown away, and learns from it.
    fn judge_sample(&self, sample: &[Record], columns: &[Column], layout: &Layout) -> Result<(), ParquetError> {
        let (mut file, factory) =
            ArrowWriter::try_new(std::io::sink(), layout.schema.clone(), Some(self.properties(&[])))?
                .into_serialized_writer()?;
        let part = Part {
            first: 0,
            records: sample,
        };
        let mut judged = dictionary::Judged::default();
        let row_groups = self.encode_part(0, &part, columns, layout, &factory, false)?.row_groups;
        append_row_groups(&mut file, row_groups, &mut judged)?;
        self.dictionaries.learn_from_sample(&judged);
        Ok(())
    }
}

/// Appends a part's row groups to `file`, and what their dictionaries did
/// to `judged`.
fn append_row_groups<W: std::io::Write + Send>(
    file: &mut SerializedFileWriter<W>,
    row_groups: Vec<Vec<parquet::arrow::arrow_writer::ArrowColumnChunk>>,
    judged: &mut dictionary::Judged,
) -> Result<(), ParquetError> {
    for row_group in row_groups {
        let mut row_group_writer = file.next_row_group()?;
        for chunk in row_group {
            chunk.append_to_row_group(&mut row_group_writer)?;
        }
        judged.add(&*row_group_writer.close()?);
    }
    Ok(())
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
    /// The pipeline's table schema ([`table`]): stand if the batch brings
    /// no column (nor struct field) the table lacks; values whose type
    /// differs from their column's are converted to it, or refused, as
    /// under a schema file.
    Table,
}

/// What [`ParquetFormat::write`] made.
enum Written {
    Encoded(Encoded),
    /// A single pass found that the batch infers other columns than it was
    /// converted under: these.
    Changed(Vec<Column>),
}

/// The cores a batch is encoded on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The batch `outcome` wrote, or every record refused if the writer failed.
fn finish(outcome: Result<Written, ParquetError>, records: usize) -> Encoded {
    match outcome {
        Ok(Written::Encoded(encoded)) => encoded,
        Ok(Written::Changed(_)) => unreachable!("only a single pass can find a changed schema"),
        Err(err) => refuse_all(
            records,
            "Parquet.WriteFailed",
            &format!("the parquet writer failed: {err}"),
        ),
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
