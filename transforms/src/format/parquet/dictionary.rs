//! Which columns a file is written without a dictionary: learned from the
//! pipeline's files before it (issue #17).
//!
//! A dictionary pays for a column of few values (a country, a status, a
//! brand) and costs for a column of distinct ones (ids, texts, URLs):
//! every value is hashed into a dictionary that either fills and is given
//! up ([`super::DICTIONARY_PAGE_BYTES`]) or holds every value once. The
//! writer cannot know before it has seen the values, and its properties
//! are the same for every row group of a file, so each file teaches the
//! next: a column whose dictionary was given up, or was more than half of
//! its chunk, is written plain in the next [`PLAIN_FILES`] files, then
//! given a dictionary again to be judged again (values change). DuckDB
//! and polars decide the same way, per column, from what the values
//! gave. The values read back are the same either way; only the file's
//! size and the writer's CPU change.
//!
//! A pipeline's first large file has no file before it: its first records
//! ([`sample`], about [`SAMPLE_BYTES`]) are written first into a file
//! that is thrown away, and judged more strictly, since a sample makes
//! columns of a few hundred values look distinct: a column is written
//! plain only if its dictionary was given up or was over three quarters of
//! its chunk (nearly every value once).

use std::collections::HashMap;
use std::sync::Mutex;

use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
use parquet::schema::types::ColumnPath;

use crate::record::Record;

/// How many files a column judged not to pay for its dictionary is
/// written plain before it is given one again.
pub const PLAIN_FILES: u32 = 8;

/// About how many bytes of records a first file's dictionaries are judged
/// on ([`sample`]).
pub const SAMPLE_BYTES: usize = 1024 * 1024;

/// The first records of a first batch whose dictionaries are judged
/// before it is written: about [`SAMPLE_BYTES`] of them, if the batch
/// (`records`, or its first part) holds at least
/// [`super::MIN_SAMPLED_BATCH_BYTES`]; a smaller batch is its own judge.
pub(super) fn sample(records: &[Record]) -> Option<&[Record]> {
    let mut bytes = 0;
    let mut end = None;
    for (index, record) in records.iter().enumerate() {
        bytes += record.data.len();
        if end.is_none() && bytes >= SAMPLE_BYTES {
            end = Some(index + 1);
        }
        if bytes >= super::MIN_SAMPLED_BATCH_BYTES {
            return end.map(|end| &records[..end]);
        }
    }
    None
}

/// The columns written plain for now: each with the files left before it
/// is given a dictionary again. Shared by the batches of one format (one
/// pipeline, its partitions included: their planners share the format's
/// `Arc`); a clone starts empty, as [`super::LastInferred`] does.
#[derive(Default)]
pub struct Dictionaries {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    plain: HashMap<ColumnPath, u32>,
    /// Whether a file (or a first file's sample) has been judged.
    learned: bool,
}

impl Dictionaries {
    /// The columns the next file writes plain.
    pub(super) fn plain(&self) -> Vec<ColumnPath> {
        let mut plain: Vec<ColumnPath> = self.lock().plain.keys().cloned().collect();
        plain.sort_by(|a, b| a.parts().cmp(b.parts()));
        plain
    }

    /// Learns from a file just written: each column that had a dictionary
    /// is judged, every other column counts a file down.
    pub(super) fn learn(&self, file: &Judged) {
        self.judge(file, Chunks::pays);
    }

    /// Whether nothing has been judged yet: the next large file is judged
    /// on a sample first.
    pub(super) fn unlearned(&self) -> bool {
        !self.lock().learned
    }

    /// Learns from a file of a first batch's [`sample`], more strictly.
    pub(super) fn learn_from_sample(&self, sample: &Judged) {
        self.judge(sample, Chunks::pays_in_a_sample);
    }

    fn judge(&self, file: &Judged, pays: fn(&Chunks) -> bool) {
        let mut state = self.lock();
        state.learned = true;
        let plain = &mut state.plain;
        plain.retain(|path, left| {
            if file.columns.contains_key(path) {
                return true;
            }
            *left = left.saturating_sub(1);
            *left > 0
        });
        for (path, chunk) in &file.columns {
            if pays(chunk) {
                plain.remove(path);
            } else {
                plain.insert(path.clone(), PLAIN_FILES);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a file's dictionaries did, column by column (columns written with
/// a dictionary only), over its row groups.
#[derive(Debug, Default)]
pub(super) struct Judged {
    columns: HashMap<ColumnPath, Chunks>,
}

#[derive(Debug, Default)]
struct Chunks {
    /// Bytes of the dictionary pages, as written (compressed).
    dictionary: i64,
    /// Bytes of the column chunks, dictionary pages included.
    whole: i64,
    /// Whether a chunk gave its dictionary up and wrote values plain.
    given_up: bool,
}

impl Chunks {
    /// A dictionary pays if it was kept and is at most half its chunk.
    fn pays(&self) -> bool {
        !self.given_up && self.dictionary * 2 <= self.whole
    }

    /// In a sample: unless it was given up or is over three quarters of
    /// its chunk.
    fn pays_in_a_sample(&self) -> bool {
        !self.given_up && self.dictionary * 4 <= self.whole * 3
    }
}

impl Judged {
    pub(super) fn add(&mut self, row_group: &RowGroupMetaData) {
        for column in row_group.columns() {
            let Some(dictionary) = dictionary_bytes(column) else {
                continue;
            };
            let chunks = self.columns.entry(column.column_path().clone()).or_default();
            chunks.dictionary += dictionary;
            chunks.whole += column.compressed_size();
            chunks.given_up |= given_up(column);
        }
    }
}

/// The bytes of a chunk's dictionary page, if it has one: it is written
/// first, and its data pages follow it.
fn dictionary_bytes(column: &ColumnChunkMetaData) -> Option<i64> {
    let start = column.dictionary_page_offset()?;
    Some((column.data_page_offset() - start).max(0))
}

/// Whether a chunk with a dictionary has data pages that do not use it.
fn given_up(column: &ColumnChunkMetaData) -> bool {
    column.page_encoding_stats().is_some_and(|stats| {
        stats.iter().any(|page| {
            matches!(page.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                && !matches!(page.encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
        })
    })
}
