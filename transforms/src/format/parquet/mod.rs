//! `parquet`: a batch of JSON records as one Parquet file (arrow-rs).
//!
//! The columns are the user's (from a schema file, or inferred from the
//! batch), then spillway's reserved columns (prefix `_spillway_`): the
//! record's source position and, by default, its original bytes, so the
//! archive can be replayed exactly.
//!
//! Records are converted one by one into column builders that can roll a
//! record back, so a record that does not fit is refused alone (see
//! [`convert`]). Builders are cut into Arrow record batches every
//! [`CHUNK_ROWS`] rows or [`CHUNK_BYTES`] bytes and handed to the Parquet
//! writer, which starts a new row group when the current one's encoded size
//! passes the configured limit: memory holds the batch's records, the
//! encoded output and one chunk.

mod convert;
mod infer;
mod json;
mod meta;
pub mod schema;
mod timestamp;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

pub use convert::KeyRules;
pub use schema::{Column, ColumnType, Schema, SchemaError, RESERVED_PREFIX};

use super::Encoded;
use crate::check::Rejection;
use crate::error_record::ErrorOutputType;
use crate::record::Record;
use convert::{ConvertError, RowBuilder};
use json::Json;

/// Rows per Arrow record batch handed to the writer.
pub const CHUNK_ROWS: usize = 8192;
/// Column bytes per Arrow record batch handed to the writer.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

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

    fn parquet(self) -> Compression {
        match self {
            Codec::None => Compression::UNCOMPRESSED,
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(GzipLevel::default()),
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
        }
    }
}

/// Everything `[format]` says about Parquet output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetFormat {
    /// The given schema; `None`: inferred from each batch.
    pub schema: Option<Schema>,
    pub codec: Codec,
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
}

impl Default for ParquetFormat {
    fn default() -> Self {
        Self {
            schema: None,
            codec: Codec::Snappy,
            row_group_bytes: 128 * 1024 * 1024,
            page_size_bytes: 1024 * 1024,
            dictionary: true,
            writer_version_2: false,
            key_rules: KeyRules {
                case_insensitive: true,
                dots_to_underscores: false,
            },
            column_to_json_key: HashMap::new(),
            metadata_columns: true,
            keep_original: true,
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

fn malformed(err: serde_json::Error) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: "Record.MalformedJson",
        message: format!("record is not valid JSON: {err}"),
    }
}

impl ParquetFormat {
    fn properties(&self) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_created_by(format!("spillway {}", env!("CARGO_PKG_VERSION")))
            .set_compression(self.codec.parquet())
            .set_data_page_size_limit(self.page_size_bytes)
            .set_dictionary_enabled(self.dictionary)
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_writer_version(if self.writer_version_2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            });
        // Original records are all distinct: a dictionary would only cost.
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(meta::DATA), false);
        builder.build()
    }

    /// Encodes a batch; records that do not fit are returned in
    /// `rejected`, the others are in the file.
    pub fn encode(&self, records: &[Record]) -> Encoded {
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        let columns = match &self.schema {
            Some(schema) => schema.columns.clone(),
            None => {
                let mut inference = infer::Inference::default();
                for record in records {
                    if let Ok(json) = Json::parse(&record.data) {
                        inference.add(&json, &self.key_rules);
                    }
                }
                inference.columns()
            }
        };
        let mut fields: Vec<Field> = schema::struct_fields(&columns).iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(meta::fields(self.metadata_columns, self.keep_original));
        if fields.is_empty() {
            // Nothing to write a column for: every record is `{}` and the
            // reserved columns are off.
            let rejected = (0..records.len())
                .map(|index| {
                    (
                        index,
                        Rejection {
                            output_type: ErrorOutputType::FormatConversionFailed,
                            code: "Parquet.NoColumns",
                            message: "the batch has no column to write: no keys, and the reserved columns are off"
                                .to_owned(),
                        },
                    )
                })
                .collect();
            return Encoded {
                body: Vec::new(),
                records: 0,
                rejected,
            };
        }
        let arrow_schema: SchemaRef = Arc::new(arrow_schema::Schema::new(fields));
        let mut rows = RowBuilder::new(&columns, self.key_rules.clone(), &self.column_to_json_key);
        let mut meta = meta::MetaBuilder::new(self.metadata_columns, self.keep_original);
        let mut writer = match ArrowWriter::try_new(Vec::new(), arrow_schema.clone(), Some(self.properties())) {
            Ok(writer) => writer,
            Err(err) => return write_failed(records.len(), &err),
        };
        let mut written = 0;
        for (index, record) in records.iter().enumerate() {
            let outcome = Json::parse(&record.data)
                .map_err(malformed)
                .and_then(|json| rows.append(&json).map_err(rejection));
            match outcome {
                Ok(()) => meta.push(record),
                Err(why) => {
                    rejected.push((index, why));
                    continue;
                }
            }
            written += 1;
            if rows.len() >= CHUNK_ROWS || rows.bytes() + meta.bytes() >= CHUNK_BYTES {
                if let Err(err) = write_chunk(&mut writer, &arrow_schema, &mut rows, &mut meta) {
                    return write_failed(records.len(), &err);
                }
            }
        }
        if !rows.is_empty() {
            if let Err(err) = write_chunk(&mut writer, &arrow_schema, &mut rows, &mut meta) {
                return write_failed(records.len(), &err);
            }
        }
        match writer.into_inner() {
            Ok(body) => Encoded {
                body,
                records: written,
                rejected,
            },
            Err(err) => write_failed(records.len(), &err),
        }
    }
}

fn write_chunk(
    writer: &mut ArrowWriter<Vec<u8>>,
    schema: &SchemaRef,
    rows: &mut RowBuilder,
    meta: &mut meta::MetaBuilder,
) -> Result<(), Box<dyn std::error::Error>> {
    let rows_in_chunk = rows.len();
    debug_assert_eq!(meta.len(), rows_in_chunk, "one reserved row per user row");
    let mut columns = rows.finish();
    columns.extend(meta.finish());
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows_in_chunk));
    let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
    writer.write(&batch)?;
    Ok(())
}

/// The writer failed (a bug, not the records' fault): every record goes to
/// the error output rather than being lost.
fn write_failed(count: usize, err: &dyn std::fmt::Display) -> Encoded {
    let message = format!("the parquet writer failed: {err}");
    Encoded {
        body: Vec::new(),
        records: 0,
        rejected: (0..count)
            .map(|index| {
                (
                    index,
                    Rejection {
                        output_type: ErrorOutputType::FormatConversionFailed,
                        code: "Parquet.WriteFailed",
                        message: message.clone(),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
