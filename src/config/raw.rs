//! The configuration file as written: serde structs that refuse unknown
//! keys. Each field's doc comment is its user documentation (README's
//! configuration reference repeats it). Values are checked in
//! [`super::validate`], not here, so that a range error can name the key,
//! the value and what is allowed.

use serde::Deserialize;

use super::env::expand_tree;
use super::ConfigProblem;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Delivery stream name: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
    /// Used in object names and in the checkpoint file's name. Default
    /// `spillway`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where records come from.
    pub source: RawSource,
    /// When buffers are flushed.
    #[serde(default)]
    pub buffer: RawBuffer,
    /// How records are written into objects.
    #[serde(default)]
    pub format: RawFormat,
    /// Where objects go.
    pub destination: RawDestination,
    /// Where progress is kept.
    #[serde(default)]
    pub checkpoint: RawCheckpoint,
}

fn default_name() -> String {
    "spillway".to_owned()
}

/// `[source]`, chosen by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    /// NDJSON files, one record per line. Each file is read once, in the
    /// order given; a restarted run continues after the last checkpointed
    /// line. Relative paths are relative to the working directory.
    File {
        /// A path, or an array of paths. File names must differ: a file's
        /// name is its source id in object names and checkpoints.
        path: OneOrMany,
    },
    /// NDJSON on standard input, one record per line, read until end of
    /// input. A pipe cannot be resumed: every run reads its input whole.
    Stdin {},
    /// A Kinesis data stream: every shard, parents before children, KPL
    /// aggregated records de-aggregated.
    Kinesis(RawKinesis),
}

/// `[source]` with `type = "kinesis"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKinesis {
    /// The stream's name. Give this or `stream_arn`.
    pub stream: Option<String>,
    /// The stream's ARN, `arn:aws:kinesis:<region>:<account>:stream/<name>`.
    pub stream_arn: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// Endpoint URL, for Kinesis-compatible services and tests.
    pub endpoint: Option<String>,
    /// Where shards without a checkpoint begin: `trim_horizon` (default:
    /// the oldest retained record), `latest` (what arrived since the
    /// delivery stream first started, kept in the checkpoint), or
    /// `at_timestamp`. A checkpointed shard resumes after its checkpoint.
    #[serde(default = "default_start_position")]
    pub start_position: String,
    /// With `at_timestamp`: an RFC 3339 time such as `2026-11-01T00:00:00Z`.
    pub start_timestamp: Option<String>,
    /// Milliseconds between GetRecords calls on a shard that is caught up:
    /// 200 to 60,000. Default 1000. (A shard that is behind is read at up
    /// to 5 calls/s and 2 MB/s, its limits.)
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: i64,
    /// Records per GetRecords call: 1 to 10,000. Default 10,000.
    #[serde(default = "default_max_records")]
    pub max_records_per_call: i64,
    /// Seconds between listings of the stream's shards, to find new ones:
    /// 1 to 3,600. Default 30. Shards are listed at once when one closes.
    #[serde(default = "default_discovery_seconds")]
    pub shard_discovery_seconds: i64,
}

fn default_start_position() -> String {
    "trim_horizon".to_owned()
}

fn default_poll_interval_ms() -> i64 {
    1000
}

fn default_max_records() -> i64 {
    10_000
}

fn default_discovery_seconds() -> i64 {
    30
}

/// A string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[buffer]`: a buffer is flushed into an object when its records reach
/// `size_mb` or its oldest record has waited `interval_seconds`, whichever
/// comes first. One buffer per distinct output prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    /// Megabytes (MiB) of record data per buffer: 1 to 128. Default 5.
    #[serde(default = "default_size_mb")]
    pub size_mb: i64,
    /// Seconds a record may wait in a buffer: 60 to 900. Default 300.
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: i64,
}

fn default_size_mb() -> i64 {
    5
}

fn default_interval_seconds() -> i64 {
    300
}

impl Default for RawBuffer {
    fn default() -> Self {
        Self {
            size_mb: default_size_mb(),
            interval_seconds: default_interval_seconds(),
        }
    }
}

/// `[format]`: how records are written into objects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    /// `json_lines` (default: one record per line, a newline added where a
    /// record lacks one; records must be valid JSON), `raw` (the record
    /// bytes as they are) or `parquet` (one Parquet file per buffer;
    /// records must be JSON objects).
    #[serde(rename = "type", default = "default_format")]
    pub kind: String,
    /// With `raw`: bytes written after each record, for example `"\n"`.
    /// Default: none.
    pub delimiter: Option<String>,
    /// With `parquet`: a schema file (JSON, see README) naming the columns
    /// and their types. Relative to the working directory. Default: the
    /// schema is inferred from the records of each buffer.
    pub schema: Option<String>,
    /// With `parquet`: the codec of the pages inside the file: `snappy`
    /// (default), `gzip`, `zstd` or `none`. (`destination.compression`
    /// must stay `none`.)
    pub codec: Option<String>,
    /// With `parquet` and codec `gzip` (0 to 9, default 6) or `zstd` (1 to
    /// 22, default 1): the codec's compression level.
    pub codec_level: Option<i64>,
    /// With `parquet`: a row group is closed when its encoded size reaches
    /// this many MiB: 1 to 1,024. Default 128 (Firehose's block size is
    /// 256 MiB; a buffer is at most 128 MiB). Buffers over 8 MiB are
    /// encoded in parts on every core, one or more row groups per part.
    pub row_group_size_mb: Option<i64>,
    /// With `parquet`: the target size of a data page in bytes: 65,536 to
    /// 67,108,864. Default 1,048,576 (1 MiB), as Firehose.
    pub page_size_bytes: Option<i64>,
    /// With `parquet`: dictionary encoding of columns (not of
    /// `_spillway_data`). Default true.
    pub dictionary: Option<bool>,
    /// With `parquet`: `"1.0"` (default, read by every engine) or `"2.0"`
    /// (data page v2 and newer encodings).
    pub writer_version: Option<String>,
    /// With `parquet`: match JSON keys to column names ignoring case, as
    /// the OpenX JSON SerDe does. Default true.
    pub case_insensitive: Option<bool>,
    /// With `parquet`: a table of top-level column name = JSON key, for
    /// keys that differ from their column's name (e.g. `ts = "timestamp"`).
    pub column_to_json_key_mappings: Option<std::collections::BTreeMap<String, String>>,
    /// With `parquet`: turn dots in JSON keys into underscores before
    /// matching (`a.b` feeds column `a_b`). Default false.
    pub convert_dots_in_json_keys_to_underscores: Option<bool>,
    /// With `parquet`: write each record's source position in the
    /// `_spillway_` columns (source, sequence number, subsequence number,
    /// partition key, arrival). Default true.
    pub metadata_columns: Option<bool>,
    /// With `parquet`: keep each record's original bytes in
    /// `_spillway_data`, so replay is byte for byte. Default true.
    pub keep_original: Option<bool>,
    /// With `parquet` and `keep_original`: leave a record out of
    /// `_spillway_data` (a null) when it is exactly the canonical JSON of
    /// its row, which rebuilds it byte for byte. Default true.
    pub elide_rebuildable_original: Option<bool>,
}

fn default_format() -> String {
    "json_lines".to_owned()
}

impl Default for RawFormat {
    fn default() -> Self {
        Self {
            kind: default_format(),
            delimiter: None,
            schema: None,
            codec: None,
            codec_level: None,
            row_group_size_mb: None,
            page_size_bytes: None,
            dictionary: None,
            writer_version: None,
            case_insensitive: None,
            column_to_json_key_mappings: None,
            convert_dots_in_json_keys_to_underscores: None,
            metadata_columns: None,
            keep_original: None,
            elide_rebuildable_original: None,
        }
    }
}

/// `[destination]`, chosen by `type`. The same keys describe
/// `[destination.backup]`, the local or S3 destination behind an `http` one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    /// `local` (objects are files below `path`), `s3`, or `http` (a
    /// Firehose-style HTTP endpoint, backed up to `[destination.backup]`).
    #[serde(rename = "type")]
    pub kind: String,
    /// With `local`: the directory objects are written under. Relative to
    /// the working directory.
    pub path: Option<String>,
    /// With `s3`: the bucket.
    pub bucket: Option<String>,
    /// With `s3`: the region; default: the standard chain.
    pub region: Option<String>,
    /// With `s3`: an endpoint URL, for S3-compatible stores (MinIO, Ceph,
    /// moto).
    pub endpoint: Option<String>,
    /// With `s3`: path-style URLs, which most S3-compatible stores need.
    /// Default false.
    pub force_path_style: Option<bool>,
    /// With `s3`: `when_supported` (default: the SDK's checksums) or
    /// `when_required` (only where an operation needs one, for stores that
    /// refuse the others).
    pub checksum: Option<String>,
    /// With `s3`: server-side encryption, `AES256` (SSE-S3) or `aws:kms`.
    pub server_side_encryption: Option<String>,
    /// With `s3` and `aws:kms`: the KMS key id or ARN; default: the
    /// account's `aws/s3` key.
    pub kms_key_id: Option<String>,
    /// With `s3`: the storage class, e.g. `STANDARD_IA`; default: the
    /// bucket's.
    pub storage_class: Option<String>,
    /// With `s3`: tags of every object, a table of strings.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    /// With `s3`: objects of at least this many MiB are sent as multipart
    /// uploads: 5 to 5,120. Default 16.
    pub multipart_threshold_mb: Option<i64>,
    /// With `local` and `s3`: key prefix of data objects, with Firehose's
    /// expressions `!{timestamp:<pattern>}` (arrival time of the oldest
    /// record in the object, Java `DateTimeFormatter` letters) and
    /// `!{firehose:random-string}`. Without a timestamp expression,
    /// `yyyy/MM/dd/HH/` is appended, as Firehose does. Default `""`.
    pub prefix: Option<String>,
    /// With `local` and `s3`: key prefix of error output (records that
    /// could not be delivered as data), with the same expressions plus
    /// `!{firehose:error-output-type}`. Default
    /// `errors/!{firehose:error-output-type}/`.
    pub error_prefix: Option<String>,
    /// With `local` and `s3`: whole-object compression: `none` (default),
    /// `gzip`, `snappy` (framed), `zstd` or `zip`.
    pub compression: Option<String>,
    /// With `local` and `s3`: time zone of `!{timestamp:...}` expressions,
    /// an IANA name such as `Europe/Paris`. Default `UTC`.
    pub time_zone: Option<String>,
    /// How long a failing delivery is retried, in seconds. With `http`: 0
    /// to 7,200, default 300; then the records go to the backup under
    /// `http-endpoint-failed`. With `local` and `s3`: 0 to 86,400, default:
    /// retried until it succeeds (an archive does not drop data); when set,
    /// an object that still fails is written as error records under the
    /// error prefix (`delivery-failed`) instead.
    pub retry_duration_seconds: Option<i64>,
    /// With `http`: the endpoint's URL, `https://...` (or `http://...`).
    pub url: Option<String>,
    /// With `http`: sent as `X-Amz-Firehose-Access-Key`; use `${VAR}` to
    /// read it from the environment. Never logged. Empty: not sent.
    pub access_key: Option<String>,
    /// With `http`: `none` (default) or `gzip` (request bodies gzipped,
    /// with `Content-Encoding: gzip`).
    pub content_encoding: Option<String>,
    /// With `http`: a table of strings sent as
    /// `X-Amz-Firehose-Common-Attributes`.
    pub common_attributes: Option<std::collections::BTreeMap<String, String>>,
    /// With `http`: sent as `X-Amz-Firehose-Source-Arn`. Default
    /// `arn:aws:firehose:local:000000000000:deliverystream/<name>`.
    pub source_arn: Option<String>,
    /// With `http`: seconds an endpoint has to answer one request: 1 to
    /// 600. Default 180, as Firehose.
    pub request_timeout_seconds: Option<i64>,
    /// With `http`: `failed_only` (default: the backup receives records the
    /// endpoint did not take) or `all` (every record is also archived in
    /// the backup).
    pub backup_mode: Option<String>,
    /// With `http`: where records go that the endpoint does not take (and
    /// every record with `backup_mode = "all"`), and where error output
    /// goes: a `local` or `s3` destination with the keys above.
    pub backup: Option<Box<RawDestination>>,
}

/// The default of `error_prefix`.
pub const DEFAULT_ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/";

/// `[checkpoint]`: where progress is kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    /// Directory of the checkpoint file `<name>.checkpoint.json`. Relative
    /// to the working directory. Default `./state`.
    #[serde(default = "default_checkpoint_path")]
    pub path: String,
}

fn default_checkpoint_path() -> String {
    "./state".to_owned()
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        Self {
            path: default_checkpoint_path(),
        }
    }
}

impl RawConfig {
    /// Parses TOML text, expanding `${VAR}` in string values.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigProblem> {
        let mut tree: toml::Value = toml::from_str(text).map_err(|err| {
            let line = err.span().map(|span| text[..span.start].lines().count().max(1));
            ConfigProblem {
                key: String::new(),
                message: match line {
                    Some(line) => {
                        format!("not valid TOML at line {line}: {}", err.message().trim())
                    }
                    None => format!("not valid TOML: {}", err.message().trim()),
                },
            }
        })?;
        expand_tree(&mut tree, "", lookup).map_err(|(key, message)| ConfigProblem { key, message })?;
        serde_path_to_error::deserialize(tree).map_err(|err| {
            let key = err.path().to_string();
            ConfigProblem {
                key: if key == "." { String::new() } else { key },
                // The toml deserializer appends "in `table`" lines: the key says it.
                message: err
                    .into_inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            }
        })
    }
}
