//! The reserved columns: where each record came from, and its bytes.
//!
//! | column | type | value |
//! |---|---|---|
//! | `_spillway_source` | string | shard id, or `file-<name>`, `stdin-<ms>` |
//! | `_spillway_sequence_number` | string | the sequence number (up to 128 digits; a file's byte offset) |
//! | `_spillway_subsequence_number` | int64 | index in a KPL aggregate, else 0 |
//! | `_spillway_output_index` | int64 | index among the outputs processors made of one source record, else 0 |
//! | `_spillway_partition_key` | string, null when the source has none | |
//! | `_spillway_arrival` | timestamp(ms) UTC | approximate arrival time |
//! | `_spillway_data` | string | the original record, byte for byte (with `keep_original`); null when the row rebuilds it exactly (see [`super::canonical`]) |
//! | `_spillway_nulls` | string, nullable (with `_spillway_data` nullable) | where the row rebuilds its record, the places of the record's null members (see [`super::canonical`]); else null |

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, TimeUnit};

use super::canonical::Canonical;
use super::convert::{take_sized, Strings};
use crate::record::Record;

pub const SOURCE: &str = "_spillway_source";
pub const SEQUENCE_NUMBER: &str = "_spillway_sequence_number";
pub const SUBSEQUENCE_NUMBER: &str = "_spillway_subsequence_number";
/// Without it, the outputs of one source record would share a position,
/// and reading the file back would take them for one record.
pub const OUTPUT_INDEX: &str = "_spillway_output_index";
pub const PARTITION_KEY: &str = "_spillway_partition_key";
pub const ARRIVAL: &str = "_spillway_arrival";
pub const DATA: &str = "_spillway_data";
/// Readers from before it rebuild the records it applies to without their
/// null members: a file with it needs a reader that knows it.
pub const NULLS: &str = "_spillway_nulls";

/// The file's key-value entry that says by which rules its records are
/// rebuilt from their rows; readers refuse a file whose rules are newer
/// than theirs, rather than rebuild its records wrongly.
pub const REBUILD: &str = "spillway.rebuild";
/// 1: the canonical JSON of the row (files without [`REBUILD`]); 2: with
/// the null members of [`NULLS`].
pub const REBUILD_VERSION: u32 = 2;

/// The reserved fields, in order. `_spillway_data` is nullable when the
/// records its row rebuilds are left out of it, and `_spillway_nulls` is
/// then there too.
pub fn fields(position: bool, data: bool, elide_rebuildable: bool) -> Vec<Field> {
    let mut fields = Vec::new();
    if position {
        fields.push(Field::new(SOURCE, DataType::Utf8, false));
        fields.push(Field::new(SEQUENCE_NUMBER, DataType::Utf8, false));
        fields.push(Field::new(SUBSEQUENCE_NUMBER, DataType::Int64, false));
        fields.push(Field::new(OUTPUT_INDEX, DataType::Int64, false));
        fields.push(Field::new(PARTITION_KEY, DataType::Utf8, true));
        fields.push(Field::new(
            ARRIVAL,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ));
    }
    if data {
        fields.push(Field::new(DATA, DataType::Utf8, elide_rebuildable));
        if elide_rebuildable {
            fields.push(Field::new(NULLS, DataType::Utf8, true));
        }
    }
    fields
}

/// Fills the reserved columns, one record at a time.
#[derive(Debug)]
pub struct MetaBuilder<'a> {
    position: bool,
    data: bool,
    sources: Strings,
    sequence_numbers: Strings,
    subsequence_numbers: Vec<i64>,
    outputs: Vec<i64>,
    partition_keys: Strings,
    arrivals: Vec<i64>,
    /// The records' bytes, borrowed: copied at [`Self::finish`], and only
    /// those their rows do not rebuild.
    originals: Vec<&'a [u8]>,
    /// Per original, whether it is its row's canonical JSON, where that is
    /// known already (read by the flat path).
    rebuilt: Vec<Option<bool>>,
    /// Working space for the canonical JSON of a row, and its null members.
    scratch: Vec<u8>,
    null_members: Vec<usize>,
    /// Working space for a row's `_spillway_nulls` text.
    places: String,
    /// `_spillway_nulls`, filled at [`Self::finish`].
    nulls: Strings,
    len: usize,
}

impl<'a> MetaBuilder<'a> {
    pub fn new(position: bool, data: bool) -> Self {
        Self {
            position,
            data,
            sources: Strings::new(),
            sequence_numbers: Strings::new(),
            subsequence_numbers: Vec::new(),
            outputs: Vec::new(),
            partition_keys: Strings::new(),
            arrivals: Vec::new(),
            originals: Vec::new(),
            rebuilt: Vec::new(),
            scratch: Vec::new(),
            null_members: Vec::new(),
            places: String::new(),
            nulls: Strings::new(),
            len: 0,
        }
    }

    /// `rebuilt`: whether the record is its row's canonical JSON, if known.
    pub fn push(&mut self, record: &'a Record, rebuilt: Option<bool>) {
        self.len += 1;
        if self.position {
            self.sources.push(record.position.source.as_str());
            self.sequence_numbers
                .push(record.position.offset.sequence_number.as_str());
            self.subsequence_numbers
                .push(record.position.offset.subsequence_number as i64);
            self.outputs.push(i64::from(record.position.offset.output));
            match record.partition_key.as_deref() {
                Some(key) => self.partition_keys.push(key),
                None => self.partition_keys.push_null(),
            }
            self.arrivals.push(record.arrival.timestamp_millis());
        }
        if self.data {
            self.originals.push(&record.data);
            self.rebuilt.push(rebuilt);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The reserved columns of the rows pushed since the last call. With
    /// `rows`, the canonical JSON of the same rows, a record that is exactly
    /// its row's canonical JSON (with null members where it has them) is a
    /// null in `_spillway_data`, and its null members are in
    /// `_spillway_nulls`: known from [`Self::push`] for a record without
    /// null members, or checked against the rows (debug builds check both
    /// ways agree).
    pub fn finish(&mut self, rows: Option<&Canonical>) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        self.len = 0;
        if self.position {
            columns.push(Arc::new(self.sources.finish()));
            columns.push(Arc::new(self.sequence_numbers.finish()));
            columns.push(Arc::new(Int64Array::from(take_sized(&mut self.subsequence_numbers))));
            columns.push(Arc::new(Int64Array::from(take_sized(&mut self.outputs))));
            columns.push(Arc::new(self.partition_keys.finish()));
            columns.push(Arc::new(
                TimestampMillisecondArray::from(take_sized(&mut self.arrivals)).with_timezone("UTC"),
            ));
        }
        if self.data {
            let kept: Vec<bool> = match rows {
                Some(rows) => (0..self.originals.len())
                    .map(|row| {
                        let original = self.originals[row];
                        let rebuilt = match self.rebuilt[row] {
                            Some(true) => {
                                debug_assert!(
                                    rows.matches(row, original, &mut self.scratch, &mut self.null_members)
                                        && self.null_members.is_empty(),
                                    "the flat path and the rows disagree on {:?}",
                                    String::from_utf8_lossy(original)
                                );
                                self.null_members.clear();
                                true
                            }
                            // The flat path judges a record with a null
                            // member not canonical: only such a one may be
                            // rebuilt after all.
                            Some(false) => {
                                let null = memchr::memmem::find(original, b"\":null").is_some();
                                let rebuilt =
                                    null && rows.matches(row, original, &mut self.scratch, &mut self.null_members);
                                debug_assert!(
                                    null || !rows.matches(row, original, &mut self.scratch, &mut self.null_members),
                                    "the flat path and the rows disagree on {:?}",
                                    String::from_utf8_lossy(original)
                                );
                                rebuilt
                            }
                            None => rows.matches(row, original, &mut self.scratch, &mut self.null_members),
                        };
                        if rebuilt && !self.null_members.is_empty() {
                            self.places.clear();
                            for (index, place) in self.null_members.iter().enumerate() {
                                if index > 0 {
                                    self.places.push(',');
                                }
                                self.places.push_str(itoa::Buffer::new().format(*place));
                            }
                            self.nulls.push(&self.places);
                        } else {
                            self.nulls.push_null();
                        }
                        !rebuilt
                    })
                    .collect(),
                None => vec![true; self.originals.len()],
            };
            let bytes = self
                .originals
                .iter()
                .zip(&kept)
                .filter(|(_, kept)| **kept)
                .map(|(original, _)| original.len())
                .sum();
            let mut data = Vec::with_capacity(bytes);
            let mut offsets = Vec::with_capacity(self.originals.len() + 1);
            offsets.push(0);
            for (original, kept) in self.originals.iter().zip(&kept) {
                if *kept {
                    data.extend_from_slice(original);
                }
                offsets.push(data.len() as i32);
            }
            self.originals.clear();
            self.rebuilt.clear();
            let nulls = rows.map(|_| arrow_buffer::NullBuffer::from(kept));
            // SAFETY: only records that parsed as JSON are pushed, and a
            // slice that parses as JSON is UTF-8 (strings are validated, and
            // everything outside them is ASCII); kept records are copied
            // whole; offsets start at 0, never decrease and end at
            // data.len().
            let array = unsafe {
                StringArray::new_unchecked(
                    arrow_buffer::OffsetBuffer::new_unchecked(offsets.into()),
                    arrow_buffer::Buffer::from_vec(data),
                    nulls,
                )
            };
            columns.push(Arc::new(array));
            if rows.is_some() {
                columns.push(Arc::new(self.nulls.finish()));
            }
        }
        columns
    }
}
