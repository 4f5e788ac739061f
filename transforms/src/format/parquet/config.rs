//! `[format]` with `type = "parquet"`: its keys, and how they become a
//! [`ParquetFormat`]. The schema file is loaded and checked here, so that
//! `validate` refuses what `run` would.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use spillway_settings::Problems;

use super::{Codec, KeyRules, ParquetFormat, Schema};

/// `[format]` with `type = "parquet"`: one Parquet file per buffer;
/// records must be JSON objects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSettings {
    /// A schema file (JSON, see README) naming the columns and their types.
    /// Relative to the working directory. Default: the schema is inferred
    /// from the records of each buffer.
    pub schema: Option<String>,
    /// The codec of the pages inside the file: `snappy` (default), `gzip`,
    /// `zstd` or `none`. (`destination.compression` must stay `none`.)
    pub codec: Option<String>,
    /// With codec `gzip` (0 to 9, default 6) or `zstd` (1 to 22, default
    /// 1): the codec's compression level.
    pub codec_level: Option<i64>,
    /// A row group is closed when its encoded size reaches this many MiB: 1
    /// to 1,024. Default 128 (Firehose's block size is 256 MiB; a buffer is
    /// at most 128 MiB). Buffers over 8 MiB are encoded in parts on every
    /// core, one or more row groups per part.
    pub row_group_size_mb: Option<i64>,
    /// The target size of a data page in bytes: 65,536 to 67,108,864.
    /// Default 1,048,576 (1 MiB), as Firehose.
    pub page_size_bytes: Option<i64>,
    /// Dictionary encoding of columns (not of `_spillway_data`), where it
    /// pays: learned from the pipeline's files (see `dictionary`). Default
    /// true.
    pub dictionary: Option<bool>,
    /// `"1.0"` (default, read by every engine) or `"2.0"` (data page v2 and
    /// newer encodings).
    pub writer_version: Option<String>,
    /// Match JSON keys to column names ignoring case, as the OpenX JSON
    /// SerDe does. Default true.
    pub case_insensitive: Option<bool>,
    /// A table of top-level column name = JSON key, for keys that differ
    /// from their column's name (e.g. `ts = "timestamp"`).
    pub column_to_json_key_mappings: Option<BTreeMap<String, String>>,
    /// Turn dots in JSON keys into underscores before matching (`a.b` feeds
    /// column `a_b`). Default false.
    pub convert_dots_in_json_keys_to_underscores: Option<bool>,
    /// Write each record's source position in the `_spillway_` columns
    /// (source, sequence number, subsequence number, partition key,
    /// arrival). Default true.
    pub metadata_columns: Option<bool>,
    /// Keep each record's original bytes in `_spillway_data`, so replay is
    /// byte for byte. Default true.
    pub keep_original: Option<bool>,
    /// With `keep_original`: leave a record out of `_spillway_data` (a
    /// null) when it is exactly the canonical JSON of its row, which
    /// rebuilds it byte for byte. Default true.
    pub elide_rebuildable_original: Option<bool>,
}

impl ParquetSettings {
    /// The format these settings describe, with every problem (at `key`,
    /// normally `format`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<ParquetFormat> {
        let defaults = ParquetFormat::default();
        let schema = load_schema(key, self.schema.as_deref(), problems);
        let codec_name = self.codec.as_deref().unwrap_or("snappy");
        let codec = problems.one_of(&format!("{key}.codec"), codec_name, Codec::NAMES, Codec::from_name);
        let codec_level = check_level(key, codec, codec_name, self.codec_level, problems);
        let row_group_mb = problems.in_range(
            &format!("{key}.row_group_size_mb"),
            self.row_group_size_mb.unwrap_or(128),
            (1, 1024),
        );
        let page_size = problems.in_range(
            &format!("{key}.page_size_bytes"),
            self.page_size_bytes.unwrap_or(defaults.page_size_bytes as i64),
            (64 * 1024, 64 * 1024 * 1024),
        );
        let writer_version_2 = problems.one_of(
            &format!("{key}.writer_version"),
            self.writer_version.as_deref().unwrap_or("1.0"),
            &["1.0", "2.0"],
            |v| match v {
                "1.0" => Some(false),
                "2.0" => Some(true),
                _ => None,
            },
        );
        let mappings = self.column_to_json_key_mappings.unwrap_or_default();
        if let Some(Some(schema)) = &schema {
            for column in mappings.keys() {
                if !schema.columns.iter().any(|c| &c.name == column) {
                    problems.add(
                        &format!("{key}.column_to_json_key_mappings.{column}"),
                        "names no column of the schema file: mappings are for its top-level columns",
                    );
                }
            }
        }
        Some(ParquetFormat {
            schema: schema?,
            codec: codec?,
            codec_level: codec_level?,
            row_group_bytes: row_group_mb? as usize * 1024 * 1024,
            page_size_bytes: page_size? as usize,
            dictionary: self.dictionary.unwrap_or(defaults.dictionary),
            writer_version_2: writer_version_2?,
            key_rules: KeyRules {
                case_insensitive: self.case_insensitive.unwrap_or(true),
                dots_to_underscores: self.convert_dots_in_json_keys_to_underscores.unwrap_or(false),
            },
            column_to_json_key: mappings.into_iter().collect::<HashMap<_, _>>(),
            metadata_columns: self.metadata_columns.unwrap_or(true),
            keep_original: self.keep_original.unwrap_or(true),
            elide_rebuildable_original: self.elide_rebuildable_original.unwrap_or(true),
            ..ParquetFormat::default()
        })
    }
}

/// `Some(None)`: infer; `Some(Some(schema))`: the file's; `None`: refused.
fn load_schema(key: &str, path: Option<&str>, problems: &mut Problems) -> Option<Option<Schema>> {
    match path {
        None => Some(None),
        Some("") => {
            problems.add(
                &format!("{key}.schema"),
                "must not be empty: give a schema file, or leave it out to infer",
            );
            None
        }
        Some(path) => match Schema::load(Path::new(path)) {
            Ok(schema) => Some(Some(schema)),
            Err(err) => {
                problems.add(&format!("{key}.schema"), err.to_string());
                None
            }
        },
    }
}

/// The codec's level, if given and the codec has levels.
fn check_level(
    key: &str,
    codec: Option<Codec>,
    codec_name: &str,
    level: Option<i64>,
    problems: &mut Problems,
) -> Option<Option<i32>> {
    match (codec, level) {
        (_, None) => Some(None),
        (Some(codec), Some(level)) => match codec.levels() {
            Some(range) => problems
                .in_range(&format!("{key}.codec_level"), level, (range.0 as i64, range.1 as i64))
                .map(|l| Some(l as i32)),
            None => {
                problems.add(
                    &format!("{key}.codec_level"),
                    format!(
                        "{level}: {key}.codec = \"{codec_name}\" has no levels; only gzip (0 to 9) and zstd (1 to 22) do"
                    ),
                );
                None
            }
        },
        // The codec is wrong: that is the problem reported.
        (None, Some(_)) => None,
    }
}
