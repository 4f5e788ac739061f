//! One part of a batch converted and encoded into row groups, on the
//! part's own thread: records go into column builders, which are cut into
//! Arrow arrays every [`CHUNK_ROWS`] rows or [`CHUNK_BYTES`] bytes and
//! handed to the Parquet column writers, and a row group is closed when its
//! encoded size passes the configured limit. So memory holds one chunk per
//! thread, whatever the width of the records; the batch's side (parts,
//! schema, the file) is in [`super`].

use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::errors::ParquetError;

use super::convert::{self, AppendError, ConvertError, RowBuilder};
use super::parts::Part;
use super::{canonical, infer, meta, Column, ParquetFormat, CHUNK_BYTES, CHUNK_ROWS};
use crate::check::{malformed_json, not_utf8, Rejection};
use crate::error_record::ErrorOutputType;
use crate::strict::too_deep;

fn rejection(err: ConvertError) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: err.code,
        message: err.message,
    }
}

impl ParquetFormat {
    /// Converts and encodes one part of the batch into row groups.
    pub(super) fn encode_part(
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

pub(super) struct EncodedPart {
    pub(super) row_groups: Vec<Vec<ArrowColumnChunk>>,
    pub(super) rejected: Vec<(usize, Rejection)>,
    pub(super) written: usize,
    /// The part's own inference, from a single pass.
    pub(super) inference: Option<infer::Inference>,
    /// Whether that inference saw every record whole (no malformed one).
    pub(super) exact: bool,
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

/// The file's columns: the user's, then the reserved ones.
pub(super) struct Layout<'a> {
    pub(super) schema: &'a SchemaRef,
    pub(super) user_columns: usize,
    /// Records their rows rebuild are nulls in `_spillway_data`.
    pub(super) elide_rebuildable: bool,
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
