//! What `[format]` says about Parquet output ([`ParquetFormat`], its
//! [`Codec`]) and the Parquet writer properties it makes. The configuration
//! builds and checks these types without touching the encoder, so they
//! live apart from it.

use std::collections::HashMap;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::dictionary::Dictionaries;
use super::{meta, Column, KeyRules, Schema};

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

/// The most a column chunk's dictionary holds before its values are
/// written plain (arrow-rs's default is 1 MiB). A column of distinct values
/// (ids, texts, URLs) fills any dictionary and falls back; until it does,
/// every value is hashed into the dictionary, and the dictionary is held
/// until the chunk is closed, for each column of each part of a buffer. A
/// column of few values (a country, a status, a brand) stays far below
/// it. At 1 MiB, 200 MB of benchmark records into Parquet took 3 to 9%
/// more CPU than at 256 KiB, and made files of products and events 1 to 2%
/// larger (docs/benchmarks.md, 2026-12-07; issue #17).
pub const DICTIONARY_PAGE_BYTES: usize = 256 * 1024;

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
    /// the canonical JSON of its row, which rebuilds it (see
    /// [`super::canonical`]).
    pub elide_rebuildable_original: bool,
    /// Runtime state, not configuration: the schema the last batch
    /// inferred (see [`super::single_pass`]).
    pub last_inferred: LastInferred,
    /// Runtime state, not configuration: the columns written plain for now
    /// (see [`super::dictionary`]).
    pub dictionaries: Dictionaries,
}

/// The columns the last batch of an inferred-schema format inferred: the
/// next batch is converted under them while it is inferred, in one parse.
/// Shared by the clones of a [`crate::format::Format`] (an `Arc`); equal
/// whatever it holds, as it never changes the output.
#[derive(Default)]
pub struct LastInferred {
    columns: std::sync::Mutex<Option<Vec<Column>>>,
    /// Batches encoded in a single pass.
    pub(super) confirmed: std::sync::atomic::AtomicU64,
}

impl LastInferred {
    pub(super) fn get(&self) -> Option<Vec<Column>> {
        self.columns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set(&self, columns: Vec<Column>) {
        *self.columns.lock().unwrap_or_else(|e| e.into_inner()) = Some(columns);
    }

    /// How many batches were encoded in a single pass.
    pub fn single_passes(&self) -> u64 {
        self.confirmed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Runtime state kept inside a [`ParquetFormat`]: a clone starts empty,
/// any two compare equal (it never changes the values a file holds), and
/// it prints as its name.
macro_rules! runtime_state {
    ($($name:ty),*) => {$(
        impl Clone for $name {
            fn clone(&self) -> Self {
                Self::default()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, _: &Self) -> bool {
                true
            }
        }

        impl Eq for $name {}

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    )*};
}

runtime_state!(LastInferred, Dictionaries);

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
            dictionaries: Dictionaries::default(),
        }
    }
}

impl ParquetFormat {
    /// The writer's properties for a file whose columns `plain` are
    /// written without a dictionary (see [`super::dictionary`]).
    pub(super) fn properties(&self, plain: &[ColumnPath]) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_created_by(format!("spillway {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                meta::REBUILD.to_owned(),
                meta::REBUILD_VERSION.to_string(),
            )]))
            .set_compression(self.codec.parquet(self.codec_level))
            .set_data_page_size_limit(self.page_size_bytes)
            .set_dictionary_enabled(self.dictionary)
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
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
        for path in plain {
            builder = builder.set_column_dictionary_enabled(path.clone(), false);
        }
        builder.build()
    }
}
