//! Raw configuration → [`Config`]: every value checked, every problem
//! collected (not just the first), each naming its key, its value and what
//! is allowed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use spillway_destinations::endpoint::EndpointUse;
use spillway_destinations::key::TemplateKind;
use spillway_destinations::{Compression, KeyTemplate};
use spillway_transforms::format::parquet::{Codec, KeyRules, ParquetFormat, Schema};
use spillway_transforms::Format;

use super::raw::{OneOrMany, RawConfig, RawDestination, RawFormat, RawKinesis, RawSource, DEFAULT_ERROR_PREFIX};
use super::{
    BackupMode, BufferLimits, CheckpointConfig, Config, ConfigProblem, DestinationConfig, HttpDestination,
    KinesisConfig, ObjectDestination, SourceConfig, StartPosition, StoreConfig,
};
use crate::source::kinesis::api::StreamRef;

/// Buffer size limits in MiB, as Firehose.
pub const SIZE_MB_RANGE: (i64, i64) = (1, 128);
/// The largest buffer an HTTP endpoint destination takes, in MiB, as
/// Firehose.
pub const HTTP_SIZE_MB_MAX: i64 = 64;
/// Buffer interval limits in seconds, as Firehose.
pub const INTERVAL_SECONDS_RANGE: (i64, i64) = (60, 900);

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn in_range(&mut self, key: &str, value: i64, (low, high): (i64, i64)) -> Option<i64> {
        if (low..=high).contains(&value) {
            Some(value)
        } else {
            self.add(key, format!("{value} is out of range: allowed {low} to {high}"));
            None
        }
    }

    fn one_of<T>(&mut self, key: &str, value: &str, allowed: &[&str], parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.add(
                key,
                format!("{value:?} is not allowed: expected one of {}", allowed.join(", ")),
            );
        }
        parsed
    }
}

/// Checks everything that can be checked without the network.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Problems::default();

    let name_ok = (1..=64).contains(&raw.name.len())
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !name_ok {
        problems.add(
            "name",
            format!("{:?} is not allowed: 1 to 64 characters of A-Z a-z 0-9 _ . -", raw.name),
        );
    }

    let source = validate_source(raw.source, &mut problems);

    let size_mb = problems.in_range("buffer.size_mb", raw.buffer.size_mb, SIZE_MB_RANGE);
    let interval = problems.in_range(
        "buffer.interval_seconds",
        raw.buffer.interval_seconds,
        INTERVAL_SECONDS_RANGE,
    );

    let parquet = raw.format.kind == "parquet";
    let format = validate_format(raw.format, &mut problems);

    let is_http = raw.destination.kind == "http";
    let destination = validate_destination(&raw.name, raw.destination, &mut problems);
    if let (true, Some(size_mb)) = (is_http, size_mb) {
        if size_mb > HTTP_SIZE_MB_MAX {
            problems.add(
                "buffer.size_mb",
                format!("{size_mb} is out of range with destination.type = \"http\": allowed 1 to {HTTP_SIZE_MB_MAX}"),
            );
        }
    }
    if let (true, Some(format)) = (is_http, &format) {
        if !matches!(format, Format::JsonLines | Format::Raw { delimiter: None }) {
            problems.add(
                "format",
                "with destination.type = \"http\" records are sent as they are: format.type must be json_lines or raw, without a delimiter",
            );
        }
    }
    if let (true, Some(DestinationConfig::Objects(objects))) = (parquet, &destination) {
        if objects.compression != Compression::None {
            problems.add(
                "destination.compression",
                format!(
                    "{:?} does not apply to format.type = \"parquet\", which compresses inside the file: \
                     set format.codec instead, and destination.compression = \"none\"",
                    objects.compression.name()
                ),
            );
        }
    }

    let checkpoint = if raw.checkpoint.path.is_empty() {
        problems.add("checkpoint.path", "must not be empty");
        None
    } else {
        if let Some(problem) = super::paths::directory_problem(std::path::Path::new(&raw.checkpoint.path)) {
            problems.add("checkpoint.path", format!("{:?} {problem}", raw.checkpoint.path));
        }
        Some(CheckpointConfig {
            dir: PathBuf::from(raw.checkpoint.path),
        })
    };

    match (source, size_mb, interval, format, destination, checkpoint) {
        (Some(source), Some(size_mb), Some(interval), Some(format), Some(destination), Some(checkpoint))
            if problems.0.is_empty() =>
        {
            Ok(Config {
                name: raw.name,
                source,
                buffer: BufferLimits {
                    max_bytes: size_mb as usize * 1024 * 1024,
                    max_age: Duration::from_secs(interval as u64),
                    max_records: size_mb as usize * 1024 * 1024 / crate::buffer::RECORD_BOOKKEEPING,
                },
                format,
                destination,
                checkpoint,
            })
        }
        _ => Err(problems.0),
    }
}

/// `[format]`: each type's own keys, the Parquet schema file loaded and
/// checked.
fn validate_format(raw: RawFormat, problems: &mut Problems) -> Option<Format> {
    let parquet_only = [
        ("schema", raw.schema.is_some()),
        ("codec", raw.codec.is_some()),
        ("codec_level", raw.codec_level.is_some()),
        ("row_group_size_mb", raw.row_group_size_mb.is_some()),
        ("page_size_bytes", raw.page_size_bytes.is_some()),
        ("dictionary", raw.dictionary.is_some()),
        ("writer_version", raw.writer_version.is_some()),
        ("case_insensitive", raw.case_insensitive.is_some()),
        ("column_to_json_key_mappings", raw.column_to_json_key_mappings.is_some()),
        (
            "convert_dots_in_json_keys_to_underscores",
            raw.convert_dots_in_json_keys_to_underscores.is_some(),
        ),
        ("metadata_columns", raw.metadata_columns.is_some()),
        ("keep_original", raw.keep_original.is_some()),
        ("elide_rebuildable_original", raw.elide_rebuildable_original.is_some()),
    ];
    if raw.kind != "parquet" {
        for (key, given) in parquet_only {
            if given {
                problems.add(&format!("format.{key}"), "only allowed with format.type = \"parquet\"");
            }
        }
    }
    if raw.kind != "raw" && raw.delimiter.is_some() {
        problems.add("format.delimiter", "only allowed with format.type = \"raw\"");
    }
    match raw.kind.as_str() {
        "json_lines" => Some(Format::JsonLines),
        "raw" => Some(Format::Raw {
            delimiter: raw.delimiter.map(String::into_bytes).filter(|d| !d.is_empty()),
        }),
        "parquet" => validate_parquet(raw, problems).map(|p| Format::Parquet(std::sync::Arc::new(p))),
        other => problems.one_of("format.type", other, &["json_lines", "raw", "parquet"], |_| {
            None::<Format>
        }),
    }
}

fn validate_parquet(raw: RawFormat, problems: &mut Problems) -> Option<ParquetFormat> {
    let defaults = ParquetFormat::default();
    let schema = match raw.schema.as_deref() {
        None => Some(None),
        Some("") => {
            problems.add(
                "format.schema",
                "must not be empty: give a schema file, or leave it out to infer",
            );
            None
        }
        Some(path) => match Schema::load(std::path::Path::new(path)) {
            Ok(schema) => Some(Some(schema)),
            Err(err) => {
                problems.add("format.schema", err.to_string());
                None
            }
        },
    };
    let codec = problems.one_of(
        "format.codec",
        raw.codec.as_deref().unwrap_or("snappy"),
        Codec::NAMES,
        Codec::from_name,
    );
    let codec_level = match (codec, raw.codec_level) {
        (_, None) => Some(None),
        (Some(codec), Some(level)) => match codec.levels() {
            Some(range) => problems
                .in_range("format.codec_level", level, (range.0 as i64, range.1 as i64))
                .map(|l| Some(l as i32)),
            None => {
                problems.add(
                    "format.codec_level",
                    format!(
                        "{level}: format.codec = \"{}\" has no levels; only gzip (0 to 9) and zstd (1 to 22) do",
                        raw.codec.as_deref().unwrap_or("snappy")
                    ),
                );
                None
            }
        },
        // The codec is wrong: that is the problem reported.
        (None, Some(_)) => None,
    };
    let row_group_mb = problems.in_range(
        "format.row_group_size_mb",
        raw.row_group_size_mb.unwrap_or(128),
        (1, 1024),
    );
    let page_size = problems.in_range(
        "format.page_size_bytes",
        raw.page_size_bytes.unwrap_or(defaults.page_size_bytes as i64),
        (64 * 1024, 64 * 1024 * 1024),
    );
    let writer_version_2 = problems.one_of(
        "format.writer_version",
        raw.writer_version.as_deref().unwrap_or("1.0"),
        &["1.0", "2.0"],
        |v| match v {
            "1.0" => Some(false),
            "2.0" => Some(true),
            _ => None,
        },
    );
    let mut column_to_json_key = std::collections::HashMap::new();
    for (column, key) in raw.column_to_json_key_mappings.unwrap_or_default() {
        if let Some(Some(schema)) = &schema {
            if !schema.columns.iter().any(|c| c.name == column) {
                problems.add(
                    &format!("format.column_to_json_key_mappings.{column}"),
                    "names no column of the schema file: mappings are for its top-level columns",
                );
            }
        }
        column_to_json_key.insert(column, key);
    }
    Some(ParquetFormat {
        schema: schema?,
        codec: codec?,
        codec_level: codec_level?,
        row_group_bytes: row_group_mb? as usize * 1024 * 1024,
        page_size_bytes: page_size? as usize,
        dictionary: raw.dictionary.unwrap_or(defaults.dictionary),
        writer_version_2: writer_version_2?,
        key_rules: KeyRules {
            case_insensitive: raw.case_insensitive.unwrap_or(true),
            dots_to_underscores: raw.convert_dots_in_json_keys_to_underscores.unwrap_or(false),
        },
        column_to_json_key,
        metadata_columns: raw.metadata_columns.unwrap_or(true),
        keep_original: raw.keep_original.unwrap_or(true),
        elide_rebuildable_original: raw.elide_rebuildable_original.unwrap_or(true),
        ..ParquetFormat::default()
    })
}

fn validate_kinesis(raw: RawKinesis, problems: &mut Problems) -> Option<SourceConfig> {
    let stream = match (raw.stream, raw.stream_arn) {
        (Some(name), None) => {
            let ok = (1..=128).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                problems.add(
                    "source.stream",
                    format!("{name:?} is not a stream name: 1 to 128 characters of A-Z a-z 0-9 _ . -"),
                );
            }
            Some(StreamRef::Name(name))
        }
        (None, Some(arn)) => {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "kinesis"
                && parts[5].strip_prefix("stream/").is_some_and(|n| !n.is_empty());
            if !ok {
                problems.add(
                    "source.stream_arn",
                    format!("{arn:?} is not a stream ARN: expected arn:aws:kinesis:<region>:<account>:stream/<name>"),
                );
            }
            Some(StreamRef::Arn(arn))
        }
        (Some(_), Some(_)) => {
            problems.add("source.stream", "give either stream or stream_arn, not both");
            None
        }
        (None, None) => {
            problems.add(
                "source.stream",
                "is required with source.type = \"kinesis\" (or give source.stream_arn)",
            );
            None
        }
    };
    if let Some(endpoint) = raw.endpoint.as_deref().filter(|e| !e.is_empty()) {
        check_url(problems, "source.endpoint", endpoint, EndpointUse::Kinesis);
    }
    let start = match (raw.start_position.as_str(), raw.start_timestamp) {
        ("trim_horizon", None) => Some(StartPosition::TrimHorizon),
        ("latest", None) => Some(StartPosition::Latest),
        ("at_timestamp", Some(at)) => match chrono::DateTime::parse_from_rfc3339(&at) {
            Ok(at) => Some(StartPosition::AtTimestamp(at.with_timezone(&chrono::Utc))),
            Err(err) => {
                problems.add(
                    "source.start_timestamp",
                    format!("{at:?} is not an RFC 3339 time ({err}): expected e.g. 2026-11-01T00:00:00Z"),
                );
                None
            }
        },
        ("at_timestamp", None) => {
            problems.add(
                "source.start_timestamp",
                "is required with start_position = \"at_timestamp\"",
            );
            None
        }
        ("trim_horizon" | "latest", Some(_)) => {
            problems.add(
                "source.start_timestamp",
                "only allowed with start_position = \"at_timestamp\"",
            );
            None
        }
        (other, _) => problems.one_of(
            "source.start_position",
            other,
            &["trim_horizon", "latest", "at_timestamp"],
            |_| None::<StartPosition>,
        ),
    };
    let poll = problems.in_range("source.poll_interval_ms", raw.poll_interval_ms, (200, 60_000));
    let max_records = problems.in_range("source.max_records_per_call", raw.max_records_per_call, (1, 10_000));
    let discovery = problems.in_range(
        "source.shard_discovery_seconds",
        raw.shard_discovery_seconds,
        (1, 3_600),
    );
    Some(SourceConfig::Kinesis(KinesisConfig {
        stream: stream?,
        region: raw.region.filter(|r| !r.is_empty()),
        endpoint: raw.endpoint.filter(|e| !e.is_empty()),
        start: start?,
        idle_poll: Duration::from_millis(poll? as u64),
        max_records: max_records? as i32,
        discovery_interval: Duration::from_secs(discovery? as u64),
    }))
}

fn validate_source(raw: RawSource, problems: &mut Problems) -> Option<SourceConfig> {
    match raw {
        RawSource::Kinesis(kinesis) => validate_kinesis(kinesis, problems),
        RawSource::Stdin {} => Some(SourceConfig::Stdin),
        RawSource::File { path } => {
            let paths = match path {
                OneOrMany::One(p) => vec![p],
                OneOrMany::Many(ps) => ps,
            };
            if paths.is_empty() {
                problems.add("source.path", "must name at least one file");
                return None;
            }
            let mut names = HashSet::new();
            for path in &paths {
                let name = std::path::Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                if let Some(problem) = super::paths::input_file_problem(std::path::Path::new(path)) {
                    problems.add("source.path", format!("{path:?} {problem}"));
                }
                match name {
                    None => problems.add("source.path", format!("{path:?} does not name a file")),
                    Some(name) if !names.insert(name.clone()) => problems.add(
                        "source.path",
                        format!("two files are named {name:?}: a file's name is its source id, so names must differ"),
                    ),
                    Some(_) => {}
                }
            }
            Some(SourceConfig::Files {
                paths: paths.into_iter().map(PathBuf::from).collect(),
            })
        }
    }
}

fn validate_s3(key: &str, raw: &RawDestination, problems: &mut Problems) -> Option<StoreConfig> {
    use spillway_destinations::s3::Sse;
    let Some(bucket) = raw.bucket.clone() else {
        problems.add(
            &format!("{key}.bucket"),
            format!("is required with {key}.type = \"s3\""),
        );
        return None;
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        problems.add(
            &format!("{key}.bucket"),
            format!("{bucket:?} is not a bucket name: 3 to 63 characters of a-z 0-9 . -"),
        );
    }
    if let Some(endpoint) = raw.endpoint.as_deref().filter(|e| !e.is_empty()) {
        check_url(problems, &format!("{key}.endpoint"), endpoint, EndpointUse::S3);
    }
    let checksum_when_required = problems.one_of(
        &format!("{key}.checksum"),
        raw.checksum.as_deref().unwrap_or("when_supported"),
        &["when_supported", "when_required"],
        |c| match c {
            "when_supported" => Some(false),
            "when_required" => Some(true),
            _ => None,
        },
    );
    let sse = match (raw.server_side_encryption.as_deref(), &raw.kms_key_id) {
        (None, None) => Some(None),
        (Some("AES256"), None) => Some(Some(Sse::S3)),
        (Some("aws:kms"), kms_key) => Some(Some(Sse::Kms {
            key_id: kms_key.clone(),
        })),
        (Some("AES256") | None, Some(_)) => {
            problems.add(
                &format!("{key}.kms_key_id"),
                "only allowed with server_side_encryption = \"aws:kms\"",
            );
            None
        }
        (Some(other), _) => {
            problems.one_of(
                &format!("{key}.server_side_encryption"),
                other,
                &["AES256", "aws:kms"],
                |_| None::<()>,
            );
            None
        }
    };
    let threshold_mb = problems.in_range(
        &format!("{key}.multipart_threshold_mb"),
        raw.multipart_threshold_mb.unwrap_or(16),
        (5, 5120),
    );
    let mut options = spillway_destinations::S3Options::new(bucket);
    options.region = raw.region.clone().filter(|r| !r.is_empty());
    options.endpoint = raw.endpoint.clone().filter(|e| !e.is_empty());
    options.force_path_style = raw.force_path_style.unwrap_or(false);
    options.checksum_when_required = checksum_when_required?;
    options.server_side_encryption = sse?;
    options.storage_class = raw.storage_class.clone();
    options.tags = raw.tags.clone().unwrap_or_default().into_iter().collect();
    options.multipart_threshold = threshold_mb? as usize * 1024 * 1024;
    Some(StoreConfig::S3(options))
}

/// A URL checked for the client that will use it; the problem shows it
/// without user information or query.
fn check_url(problems: &mut Problems, key: &str, url: &str, used_by: EndpointUse) {
    if let Err(problem) = spillway_destinations::endpoint::check(url, used_by) {
        problems.add(key, problem);
    }
}

/// The S3-only keys of a destination, and whether each is given.
fn s3_keys(raw: &RawDestination) -> [(&'static str, bool); 10] {
    [
        ("bucket", raw.bucket.is_some()),
        ("region", raw.region.is_some()),
        ("endpoint", raw.endpoint.is_some()),
        ("force_path_style", raw.force_path_style.is_some()),
        ("checksum", raw.checksum.is_some()),
        ("server_side_encryption", raw.server_side_encryption.is_some()),
        ("kms_key_id", raw.kms_key_id.is_some()),
        ("storage_class", raw.storage_class.is_some()),
        ("tags", raw.tags.is_some()),
        ("multipart_threshold_mb", raw.multipart_threshold_mb.is_some()),
    ]
}

/// The keys of `local` and `s3` destinations (not `http`), and whether each
/// is given.
fn object_keys(raw: &RawDestination) -> [(&'static str, bool); 4] {
    [
        ("prefix", raw.prefix.is_some()),
        ("error_prefix", raw.error_prefix.is_some()),
        ("compression", raw.compression.is_some()),
        ("time_zone", raw.time_zone.is_some()),
    ]
}

/// Refuses the keys in `given` that `kind` does not take.
fn refuse_keys(problems: &mut Problems, key: &str, kind: &str, allowed_with: &str, given: &[(&str, bool)]) {
    for (name, present) in given {
        if *present {
            problems.add(
                &format!("{key}.{name}"),
                format!("only allowed with {key}.type = {allowed_with}, not {kind:?}"),
            );
        }
    }
}

/// Retry duration limits in seconds: Firehose's for HTTP endpoints, a day
/// for object stores.
const HTTP_RETRY_SECONDS_RANGE: (i64, i64) = (0, 7_200);
const OBJECT_RETRY_SECONDS_RANGE: (i64, i64) = (0, 86_400);
/// The default retry duration of an HTTP destination, as Firehose.
const DEFAULT_HTTP_RETRY_SECONDS: i64 = 300;

fn validate_destination(name: &str, raw: RawDestination, problems: &mut Problems) -> Option<DestinationConfig> {
    match raw.kind.as_str() {
        "local" | "s3" => validate_objects("destination", &raw, problems).map(DestinationConfig::Objects),
        "http" => validate_http(name, raw, problems).map(DestinationConfig::Http),
        other => problems.one_of("destination.type", other, &["local", "s3", "http"], |_| None),
    }
}

fn validate_http(name: &str, raw: RawDestination, problems: &mut Problems) -> Option<HttpDestination> {
    use spillway_destinations::http::{ContentEncoding, Secret, DEFAULT_REQUEST_TIMEOUT};
    let key = "destination";
    refuse_keys(
        problems,
        key,
        "http",
        "\"local\" or \"s3\" (with http they belong in [destination.backup])",
        &[("path", raw.path.is_some())],
    );
    for given in [&s3_keys(&raw)[..], &object_keys(&raw)[..]] {
        refuse_keys(
            problems,
            key,
            "http",
            "\"local\" or \"s3\" (with http they belong in [destination.backup])",
            given,
        );
    }
    let url = match &raw.url {
        Some(url) => {
            check_url(problems, "destination.url", url, EndpointUse::Http);
            Some(url.clone())
        }
        None => {
            problems.add("destination.url", "is required with destination.type = \"http\"");
            None
        }
    };
    let access_key = match raw.access_key {
        // `${KEY:-}` with KEY unset: no access key.
        Some(k) if k.is_empty() => Some(None),
        Some(k) if !k.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            // The value is a secret: never repeat it.
            problems.add(
                "destination.access_key",
                "is not a valid header value (the value is not shown): expected printable ASCII",
            );
            None
        }
        other => Some(other.map(Secret::new)),
    };
    let content_encoding = problems.one_of(
        "destination.content_encoding",
        raw.content_encoding.as_deref().unwrap_or("none"),
        &["none", "gzip"],
        |e| match e {
            "none" => Some(ContentEncoding::None),
            "gzip" => Some(ContentEncoding::Gzip),
            _ => None,
        },
    );
    let retry = problems.in_range(
        "destination.retry_duration_seconds",
        raw.retry_duration_seconds.unwrap_or(DEFAULT_HTTP_RETRY_SECONDS),
        HTTP_RETRY_SECONDS_RANGE,
    );
    let timeout = match raw.request_timeout_seconds {
        None => Some(DEFAULT_REQUEST_TIMEOUT),
        Some(seconds) => problems
            .in_range("destination.request_timeout_seconds", seconds, (1, 600))
            .map(|s| Duration::from_secs(s as u64)),
    };
    let backup_mode = problems.one_of(
        "destination.backup_mode",
        raw.backup_mode.as_deref().unwrap_or("failed_only"),
        &["failed_only", "all"],
        |m| match m {
            "failed_only" => Some(BackupMode::FailedOnly),
            "all" => Some(BackupMode::All),
            _ => None,
        },
    );
    let backup = match raw.backup.as_deref() {
        None => {
            problems.add(
                "destination.backup",
                "is required with destination.type = \"http\": a local or s3 destination for the records the endpoint does not take",
            );
            None
        }
        Some(backup) => match backup.kind.as_str() {
            "local" | "s3" => validate_objects("destination.backup", backup, problems),
            other => problems.one_of("destination.backup.type", other, &["local", "s3"], |_| None),
        },
    };
    let source_arn = raw
        .source_arn
        .unwrap_or_else(|| format!("arn:aws:firehose:local:000000000000:deliverystream/{name}"));
    Some(HttpDestination {
        endpoint: spillway_destinations::HttpOptions {
            url: url?,
            access_key: access_key?,
            content_encoding: content_encoding?,
            common_attributes: raw.common_attributes.unwrap_or_default(),
            source_arn,
            request_timeout: timeout?,
        },
        retry_duration: Duration::from_secs(retry? as u64),
        backup_mode: backup_mode?,
        backup: backup?,
    })
}

/// A `local` or `s3` destination at `key` (`destination`, or
/// `destination.backup`).
fn validate_objects(key: &str, raw: &RawDestination, problems: &mut Problems) -> Option<ObjectDestination> {
    let store = match raw.kind.as_str() {
        "local" => match raw.path.clone() {
            Some(path) if !path.is_empty() => {
                if let Some(problem) = super::paths::directory_problem(std::path::Path::new(&path)) {
                    problems.add(&format!("{key}.path"), format!("{path:?} {problem}"));
                }
                Some(StoreConfig::Local {
                    path: PathBuf::from(path),
                })
            }
            _ => {
                problems.add(
                    &format!("{key}.path"),
                    format!("is required with {key}.type = \"local\""),
                );
                None
            }
        },
        _ => validate_s3(key, raw, problems),
    };
    if raw.kind != "s3" {
        refuse_keys(problems, key, &raw.kind, "\"s3\"", &s3_keys(raw));
    }
    if raw.kind != "local" && raw.path.is_some() {
        refuse_keys(problems, key, &raw.kind, "\"local\"", &[("path", true)]);
    }
    refuse_keys(
        problems,
        key,
        &raw.kind,
        "\"http\"",
        &[
            ("url", raw.url.is_some()),
            ("access_key", raw.access_key.is_some()),
            ("content_encoding", raw.content_encoding.is_some()),
            ("common_attributes", raw.common_attributes.is_some()),
            ("source_arn", raw.source_arn.is_some()),
            ("request_timeout_seconds", raw.request_timeout_seconds.is_some()),
            ("backup_mode", raw.backup_mode.is_some()),
            ("backup", raw.backup.is_some()),
        ],
    );

    let time_zone_name = raw.time_zone.as_deref().unwrap_or("UTC");
    let time_zone = match time_zone_name.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            problems.add(
                &format!("{key}.time_zone"),
                format!(
                    "{time_zone_name:?} is not a known time zone: expected an IANA name such as UTC or Europe/Paris"
                ),
            );
            None
        }
    };
    let tz = time_zone.unwrap_or(Tz::UTC);
    let prefix_text = raw.prefix.as_deref().unwrap_or("");
    let error_prefix_text = raw.error_prefix.as_deref().unwrap_or(DEFAULT_ERROR_PREFIX);
    let prefix = KeyTemplate::parse(prefix_text, TemplateKind::Data, tz)
        .map_err(|err| problems.add(&format!("{key}.prefix"), format!("{prefix_text:?}: {err}")))
        .ok();
    let error_prefix = KeyTemplate::parse(error_prefix_text, TemplateKind::Error, tz)
        .map_err(|err| problems.add(&format!("{key}.error_prefix"), format!("{error_prefix_text:?}: {err}")))
        .ok();
    let compression = problems.one_of(
        &format!("{key}.compression"),
        raw.compression.as_deref().unwrap_or("none"),
        Compression::NAMES,
        Compression::from_name,
    );
    let retry_duration = match raw.retry_duration_seconds {
        None => Some(None),
        Some(seconds) => problems
            .in_range(
                &format!("{key}.retry_duration_seconds"),
                seconds,
                OBJECT_RETRY_SECONDS_RANGE,
            )
            .map(|s| Some(Duration::from_secs(s as u64))),
    };

    Some(ObjectDestination {
        store: store?,
        prefix: prefix?,
        error_prefix: error_prefix?,
        compression: compression?,
        retry_duration: retry_duration?,
    })
    .filter(|_| time_zone.is_some())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "test.toml", &|_| None) {
            Ok(_) => vec![],
            Err(err) => err.problems.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\n";

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = parse(MINIMAL, "t", &|_| None).unwrap();
        assert_eq!(config.name, "spillway");
        assert_eq!(config.buffer.max_bytes, 5 * 1024 * 1024);
        assert_eq!(config.buffer.max_age.as_secs(), 300);
        assert_eq!(config.format, spillway_transforms::Format::JsonLines);
        assert_eq!(config.checkpoint.dir, std::path::PathBuf::from("./state"));
    }

    #[test]
    fn out_of_range_buffer_values_name_key_value_and_range() {
        let text = format!("{MINIMAL}[buffer]\nsize_mb = 200\ninterval_seconds = 30\n");
        assert_eq!(
            problems(&text),
            [
                "buffer.size_mb: 200 is out of range: allowed 1 to 128",
                "buffer.interval_seconds: 30 is out of range: allowed 60 to 900",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let found = problems(&format!("{MINIMAL}[buffer]\nsize = 5\n"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0],
            "buffer.size: unknown field `size`, expected `size_mb` or `interval_seconds`"
        );
        let found = problems("[source]\ntype = \"stdin\"\nwhat = 1\n[destination]\ntype = \"local\"\npath = \"o\"\n");
        assert!(found[0].contains("unknown field `what`"), "{found:?}");
        let found = problems(&format!("{MINIMAL}colour = \"blue\"\n"));
        assert!(found[0].contains("unknown field `colour`"), "{found:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "name = \"has space\"\n[source]\ntype = \"file\"\npath = [\"a/x.ndjson\", \"b/x.ndjson\"]\n\
                    [format]\ntype = \"avro\"\n[destination]\ntype = \"local\"\npath = \"o\"\n\
                    compression = \"lz4\"\ntime_zone = \"Mars/Olympus\"\nprefix = \"!{firehose:error-output-type}/\"\n";
        let found = problems(text);
        let keys: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "source.path",
                "format.type",
                "destination.time_zone",
                "destination.prefix",
                "destination.compression"
            ],
            "{found:#?}"
        );
        assert!(found[5].contains("\"lz4\" is not allowed: expected one of none, gzip, snappy, zstd, zip"));
    }

    #[test]
    fn environment_variables_expand_in_strings() {
        let text =
            "[source]\ntype = \"file\"\npath = \"${DATA}/in.ndjson\"\n[destination]\ntype = \"local\"\npath = \"o\"\n";
        let config = parse(text, "t", &|name| (name == "DATA").then(|| "/data".to_owned())).unwrap();
        assert_eq!(
            config.source,
            crate::config::SourceConfig::Files {
                paths: vec!["/data/in.ndjson".into()]
            }
        );
        let err = parse(text, "t", &|_| None).unwrap_err();
        assert_eq!(
            err.problems[0].to_string(),
            "source.path: environment variable DATA is not set"
        );
    }

    #[test]
    fn kinesis_sources_are_checked_key_by_key() {
        let text =
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\nstream_arn = \"arn:aws:kinesis:us-east-1:1:stream/s\"\n\
                    start_position = \"at_timestamp\"\nstart_timestamp = \"yesterday\"\npoll_interval_ms = 10\n\
                    [destination]\ntype = \"local\"\npath = \"o\"\n";
        assert_eq!(
            problems(text),
            [
                "source.stream: give either stream or stream_arn, not both",
                "source.start_timestamp: \"yesterday\" is not an RFC 3339 time (premature end of input): expected e.g. 2026-11-01T00:00:00Z",
                "source.poll_interval_ms: 10 is out of range: allowed 200 to 60000",
            ]
        );
        let ok = "[source]\ntype = \"kinesis\"\nstream_arn = \"arn:aws:kinesis:eu-west-1:123:stream/clicks\"\n\
                  start_position = \"latest\"\n[destination]\ntype = \"local\"\npath = \"o\"\n";
        match parse(ok, "t", &|_| None).unwrap().source {
            crate::config::SourceConfig::Kinesis(k) => {
                assert_eq!(k.start, crate::config::StartPosition::Latest);
                assert_eq!(k.max_records, 10_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_destinations_are_checked_key_by_key() {
        let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"s3\"\nbucket = \"B\"\npath = \"x\"\n\
                    server_side_encryption = \"rot13\"\nmultipart_threshold_mb = 1\n";
        assert_eq!(
            problems(text),
            [
                "destination.bucket: \"B\" is not a bucket name: 3 to 63 characters of a-z 0-9 . -",
                "destination.server_side_encryption: \"rot13\" is not allowed: expected one of AES256, aws:kms",
                "destination.multipart_threshold_mb: 1 is out of range: allowed 5 to 5120",
                "destination.path: only allowed with destination.type = \"local\", not \"s3\"",
            ]
        );
        let local_with_bucket = format!("{MINIMAL}bucket = \"b-b-b\"\n");
        assert_eq!(
            problems(&local_with_bucket),
            ["destination.bucket: only allowed with destination.type = \"s3\", not \"local\""]
        );
    }

    const HTTP: &str =
        "[source]\ntype = \"stdin\"\n[destination]\ntype = \"http\"\nurl = \"https://r.example.com/in\"\n";

    #[test]
    fn http_destinations_are_checked_key_by_key() {
        let text = format!(
            "[buffer]\nsize_mb = 100\n{HTTP}retry_duration_seconds = 9000\ncontent_encoding = \"br\"\n\
             backup_mode = \"some\"\naccess_key = \"bad\\nkey\"\ncompression = \"gzip\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                "destination.compression: only allowed with destination.type = \"local\" or \"s3\" (with http they belong in [destination.backup]), not \"http\"",
                "destination.access_key: is not a valid header value (the value is not shown): expected printable ASCII",
                "destination.content_encoding: \"br\" is not allowed: expected one of none, gzip",
                "destination.retry_duration_seconds: 9000 is out of range: allowed 0 to 7200",
                "destination.backup_mode: \"some\" is not allowed: expected one of failed_only, all",
                "destination.backup: is required with destination.type = \"http\": a local or s3 destination for the records the endpoint does not take",
                "buffer.size_mb: 100 is out of range with destination.type = \"http\": allowed 1 to 64",
            ]
        );
        let bad_backup = format!("{HTTP}[destination.backup]\ntype = \"http\"\n");
        assert_eq!(
            problems(&bad_backup),
            ["destination.backup.type: \"http\" is not allowed: expected one of local, s3"]
        );
        let s3_backup_without_bucket = format!("{HTTP}[destination.backup]\ntype = \"s3\"\nurl = \"https://x\"\n");
        assert_eq!(
            problems(&s3_backup_without_bucket),
            [
                "destination.backup.bucket: is required with destination.backup.type = \"s3\"",
                "destination.backup.url: only allowed with destination.backup.type = \"http\", not \"s3\"",
            ]
        );
        let ok = format!("{HTTP}[destination.backup]\ntype = \"local\"\npath = \"b\"\nretry_duration_seconds = 60\n");
        match parse(&ok, "t", &|_| None).unwrap().destination {
            crate::config::DestinationConfig::Http(http) => {
                assert_eq!(http.retry_duration.as_secs(), 300);
                assert_eq!(http.backup_mode, crate::config::BackupMode::FailedOnly);
                assert_eq!(http.endpoint.request_timeout.as_secs(), 180);
                assert_eq!(http.backup.retry_duration.map(|d| d.as_secs()), Some(60));
                assert!(http.endpoint.source_arn.ends_with(":deliverystream/spillway"));
            }
            other => panic!("{other:?}"),
        }
        let parquet = format!("{HTTP}[destination.backup]\ntype = \"local\"\npath = \"b\"\n[format]\ntype = \"raw\"\ndelimiter = \"\\n\"\n");
        assert_eq!(
            problems(&parquet),
            ["format: with destination.type = \"http\" records are sent as they are: format.type must be json_lines or raw, without a delimiter"]
        );
    }

    #[test]
    fn parquet_gets_its_defaults_and_refuses_whole_object_compression() {
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert_eq!(
            **parquet,
            spillway_transforms::format::parquet::ParquetFormat::default()
        );
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\ncodec = \"zstd\"\ncodec_level = 9\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert_eq!(
            (parquet.codec, parquet.codec_level),
            (spillway_transforms::format::parquet::Codec::Zstd, Some(9))
        );
        for (codec, level, problem) in [
            ("gzip", 10, "format.codec_level: 10 is out of range: allowed 0 to 9"),
            ("zstd", 0, "format.codec_level: 0 is out of range: allowed 1 to 22"),
            (
                "snappy",
                3,
                "format.codec_level: 3: format.codec = \"snappy\" has no levels; only gzip (0 to 9) and zstd (1 to 22) do",
            ),
        ] {
            let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\ncodec = \"{codec}\"\ncodec_level = {level}\n");
            assert_eq!(problems(&text), [problem]);
        }
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\nelide_rebuildable_original = false\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert!(parquet.keep_original && !parquet.elide_rebuildable_original);
        let text = format!("{MINIMAL}compression = \"gzip\"\n[format]\ntype = \"parquet\"\ncodec = \"lz4\"\n");
        assert_eq!(
            problems(&text),
            [
                "format.codec: \"lz4\" is not allowed: expected one of snappy, gzip, zstd, none",
                "destination.compression: \"gzip\" does not apply to format.type = \"parquet\", which compresses \
                 inside the file: set format.codec instead, and destination.compression = \"none\"",
            ]
        );
    }

    #[test]
    fn parquet_keys_are_checked_and_refused_with_other_formats() {
        let text = format!(
            "{MINIMAL}[format]\ntype = \"parquet\"\nrow_group_size_mb = 0\nwriter_version = \"3\"\n\
             page_size_bytes = 10\ndelimiter = \",\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                "format.delimiter: only allowed with format.type = \"raw\"",
                "format.row_group_size_mb: 0 is out of range: allowed 1 to 1024",
                "format.page_size_bytes: 10 is out of range: allowed 65536 to 67108864",
                "format.writer_version: \"3\" is not allowed: expected one of 1.0, 2.0",
            ]
        );
        let text = format!(
            "{MINIMAL}[format]\ntype = \"json_lines\"\ncodec = \"zstd\"\nkeep_original = false\n\
             elide_rebuildable_original = true\n"
        );
        assert_eq!(
            problems(&text),
            [
                "format.codec: only allowed with format.type = \"parquet\"",
                "format.keep_original: only allowed with format.type = \"parquet\"",
                "format.elide_rebuildable_original: only allowed with format.type = \"parquet\"",
            ]
        );
    }

    #[test]
    fn paths_urls_and_prefixes_that_run_would_refuse_are_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let (dir_shown, file_shown) = (dir.path().display(), file.display());
        let text = format!(
            "[source]\ntype = \"file\"\npath = \"{dir_shown}\"\n[destination]\ntype = \"local\"\npath = \"{file_shown}\"\n\
             prefix = \"a/!{{timestamp:'..'}}/\"\n[checkpoint]\npath = \"{file_shown}/state\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                format!("source.path: \"{dir_shown}\" is a directory: expected an NDJSON file (or a FIFO)"),
                format!("destination.path: \"{file_shown}\" exists and is not a directory: expected a directory (created if missing)"),
                "destination.prefix: \"a/!{timestamp:'..'}/\": makes keys such as \"a/../object\", which contains a '.' or '..' segment: \
                 a prefix must make a relative key without '.' or '..' segments, '\\' or control characters"
                    .to_owned(),
                format!("checkpoint.path: \"{file_shown}/state\" cannot be created: \"{file_shown}\" is not a directory"),
            ]
        );
        let text = "[source]\ntype = \"kinesis\"\nstream = \"s\"\nendpoint = \"http://u:pa55word@:1/?t=t0ken\"\n\
                    [destination]\ntype = \"s3\"\nbucket = \"bkt\"\nendpoint = \"https://h:1/?token=t0ken\"\n";
        let found = problems(text);
        assert_eq!(
            found,
            [
                "source.endpoint: \"http://:1/\" has no host: expected http://host[:port][/path] or https://...",
                "destination.endpoint: \"https://h:1/\" (query or fragment not shown) must not have a query string or \
                 fragment: the AWS SDK refuses them in an S3 endpoint",
            ]
        );
    }

    #[test]
    fn a_bad_schema_file_is_reported_with_the_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"columns":[{"name":"id","type":"int64"},{"name":"price","type":"money"}]}"#,
        )
        .unwrap();
        let text = format!(
            "{MINIMAL}[format]\ntype = \"parquet\"\nschema = \"{}\"\n",
            path.display()
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(&format!(
                "format.schema: schema file {}: column \"price\": type \"money\": unknown type",
                path.display()
            )),
            "{found:?}"
        );
        assert!(found[0].contains("allowed: string, boolean, int32"), "{found:?}");
        let missing = format!("{MINIMAL}[format]\ntype = \"parquet\"\nschema = \"/nonexistent/s.json\"\n");
        assert!(problems(&missing)[0].starts_with("format.schema: cannot read schema file /nonexistent/s.json"));
    }
}
