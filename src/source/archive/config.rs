//! `[source]` with `type = "archive"`: where the archive is (a directory or
//! an S3 bucket), how its keys were made (the destination's own `prefix`,
//! `error_prefix` and `time_zone`, so a user copies them over), and which
//! records to read again.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use spillway_destinations::objects::DEFAULT_ERROR_PREFIX;
use spillway_destinations::s3::S3Settings;
use spillway_destinations::{KeyTemplate, S3Options};
use spillway_settings::Problems;
use spillway_transforms::{ErrorOutputType, SourceId};

/// `[source]` with `type = "archive"`: the objects a spillway destination
/// (or Firehose) wrote, read back into records with their original
/// positions wherever the archive kept them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    /// A local directory (what a `local` destination's `path` was). Either
    /// this or `bucket`.
    pub path: Option<String>,
    /// An S3 bucket (what an `s3` destination's `bucket` was).
    pub bucket: Option<String>,
    /// With `bucket`: the region; default: the standard chain.
    pub region: Option<String>,
    /// With `bucket`: an endpoint URL for S3-compatible stores; default:
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` if set, else AWS's.
    pub endpoint: Option<String>,
    /// With `bucket`: path-style URLs. Default false.
    pub force_path_style: Option<bool>,
    /// With `bucket`: `when_supported` (default) or `when_required`.
    pub checksum: Option<String>,
    /// The destination's `prefix`, as it was configured (a template with
    /// `!{timestamp:...}`); default "" (Firehose's `yyyy/MM/dd/HH/`).
    pub prefix: Option<String>,
    /// The destination's `error_prefix`; default
    /// `errors/!{firehose:error-output-type}/`.
    pub error_prefix: Option<String>,
    /// The destination's `time_zone`; default UTC.
    pub time_zone: Option<String>,
    /// Only records that arrived at or after this RFC 3339 time.
    pub start_time: Option<String>,
    /// Only records that arrived before this RFC 3339 time.
    pub end_time: Option<String>,
    /// How long after the time its prefix shows an object may still hold
    /// records, in seconds: objects whose prefix time ends this long before
    /// `start_time` are skipped unread. Default 3600; raise it for an
    /// archive written while catching up a backlog.
    pub object_span_seconds: Option<i64>,
    /// Only records of these shards (source ids).
    pub shards: Option<Vec<String>>,
    /// Also read the records of these error outputs again (their
    /// `rawData`), e.g. `["processing-failed"]`.
    pub include_errors: Option<Vec<String>>,
    /// Only records for which this jq program's first value is neither
    /// false nor null, e.g. `.type == "order"`; records it cannot judge
    /// (not JSON, a runtime error) go to the error output.
    pub filter: Option<String>,
}

/// Where the archive is.
#[derive(Clone, Debug)]
pub enum ArchiveLocation {
    Local(PathBuf),
    S3(S3Options),
}

/// A validated archive source.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    pub location: ArchiveLocation,
    pub prefix: KeyTemplate,
    pub error_prefix: KeyTemplate,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub object_span: Duration,
    pub shards: Option<Vec<SourceId>>,
    pub include_errors: Vec<ErrorOutputType>,
    pub filter: Option<super::filter::RecordFilter>,
}

// Configurations compare by what they read (the templates hold no
// equality of their own beyond their text).
impl PartialEq for ArchiveConfig {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

impl Eq for ArchiveConfig {}

/// The error outputs `include_errors` may name.
const ERROR_TYPES: &[ErrorOutputType] = &[
    ErrorOutputType::ProcessingFailed,
    ErrorOutputType::FormatConversionFailed,
    ErrorOutputType::InvalidRecord,
    ErrorOutputType::HttpEndpointFailed,
    ErrorOutputType::DeliveryFailed,
];

impl ArchiveSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<ArchiveConfig> {
        let location = match (self.path, self.bucket) {
            (Some(path), None) => {
                if self.region.is_some()
                    || self.endpoint.is_some()
                    || self.force_path_style.is_some()
                    || self.checksum.is_some()
                {
                    problems.add(
                        &format!("{key}.path"),
                        "region, endpoint, force_path_style and checksum are only allowed with bucket",
                    );
                }
                if path.is_empty() {
                    problems.add(&format!("{key}.path"), "must name a directory");
                } else if std::path::Path::new(&path).exists() && !std::path::Path::new(&path).is_dir() {
                    // What cannot change before `run`; a missing directory
                    // may yet appear (validate runs in CI).
                    problems.add(
                        &format!("{key}.path"),
                        format!("{path:?} is not a directory: expected the directory a local destination wrote"),
                    );
                }
                Some(ArchiveLocation::Local(PathBuf::from(path)))
            }
            (None, Some(bucket)) => S3Settings {
                bucket: Some(bucket),
                region: self.region,
                endpoint: self.endpoint,
                force_path_style: self.force_path_style,
                checksum: self.checksum,
                server_side_encryption: None,
                kms_key_id: None,
                storage_class: None,
                tags: None,
                multipart_threshold_mb: None,
            }
            .check(key, problems)
            .map(ArchiveLocation::S3),
            (Some(_), Some(_)) => {
                problems.add(
                    &format!("{key}.path"),
                    "give either path (a directory) or bucket (S3), not both",
                );
                None
            }
            (None, None) => {
                problems.add(
                    &format!("{key}.path"),
                    format!("{key}.type = \"archive\" needs path (a directory) or bucket (S3)"),
                );
                None
            }
        };
        let zone_name = self.time_zone.unwrap_or_else(|| "UTC".into());
        let zone = match zone_name.parse::<chrono_tz::Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                problems.add(
                    &format!("{key}.time_zone"),
                    format!("{zone_name:?} is not a time zone: an IANA name such as \"UTC\" or \"Europe/Paris\""),
                );
                None
            }
        };
        let template = |name: &str, text: String, kind, problems: &mut Problems| {
            let zone = zone?;
            KeyTemplate::parse(&text, kind, zone)
                .map_err(|err| problems.add(&format!("{key}.{name}"), format!("{text:?}: {err}")))
                .ok()
        };
        use spillway_destinations::key::TemplateKind;
        let prefix = template("prefix", self.prefix.unwrap_or_default(), TemplateKind::Data, problems);
        let error_prefix = template(
            "error_prefix",
            self.error_prefix.unwrap_or_else(|| DEFAULT_ERROR_PREFIX.into()),
            TemplateKind::Error,
            problems,
        );
        let time = |name: &str, value: Option<String>, problems: &mut Problems| match value {
            None => Some(None),
            Some(text) => match DateTime::parse_from_rfc3339(&text) {
                Ok(time) => Some(Some(time.with_timezone(&Utc))),
                Err(_) => {
                    problems.add(
                        &format!("{key}.{name}"),
                        format!("{text:?} is not an RFC 3339 time such as \"2026-11-01T00:00:00Z\""),
                    );
                    None
                }
            },
        };
        let start_time = time("start_time", self.start_time, problems);
        let end_time = time("end_time", self.end_time, problems);
        if let (Some(Some(start)), Some(Some(end))) = (start_time, end_time) {
            if start >= end {
                problems.add(
                    &format!("{key}.end_time"),
                    format!("{end} is not after start_time ({start})"),
                );
            }
        }
        let span = problems.in_range(
            &format!("{key}.object_span_seconds"),
            self.object_span_seconds.unwrap_or(3600),
            (0, 366 * 86400),
        );
        let shards = match self.shards {
            Some(shards) if shards.is_empty() => {
                problems.add(
                    &format!("{key}.shards"),
                    "must name at least one shard (leave it out to read them all)",
                );
                None
            }
            shards => Some(shards.map(|s| s.into_iter().map(SourceId::new).collect())),
        };
        let mut include_errors = Vec::new();
        for name in self.include_errors.unwrap_or_default() {
            let allowed: Vec<&str> = ERROR_TYPES.iter().map(|t| t.as_str()).collect();
            if let Some(found) = problems.one_of(&format!("{key}.include_errors"), &name, &allowed, |n| {
                ERROR_TYPES.iter().copied().find(|t| t.as_str() == n)
            }) {
                if !include_errors.contains(&found) {
                    include_errors.push(found);
                }
            }
        }
        let filter = match self.filter {
            None => Some(None),
            Some(text) => match super::filter::RecordFilter::compile(&text) {
                Ok(filter) => Some(Some(filter)),
                Err(err) => {
                    problems.add(&format!("{key}.filter"), format!("{text:?} is not a jq program: {err}"));
                    None
                }
            },
        };
        Some(ArchiveConfig {
            location: location?,
            prefix: prefix?,
            error_prefix: error_prefix?,
            start_time: start_time?,
            end_time: end_time?,
            object_span: Duration::from_secs(span? as u64),
            shards: shards?,
            include_errors,
            filter: filter?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, SourceConfig};

    fn problems(source: &str) -> Vec<String> {
        let text = format!(
            "[source]\ntype = \"archive\"\n{source}\n[destination]\ntype = \"local\"\npath = \"out\"\n[checkpoint]\npath = \"state\"\n"
        );
        match parse(&text, "test", &|_| None) {
            Ok(config) => {
                assert!(matches!(config.source, SourceConfig::Archive(_)));
                Vec::new()
            }
            Err(err) => err.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn each_bad_value_is_one_line_naming_its_key_and_what_is_allowed() {
        assert_eq!(
            problems("path = \"archive\"\nprefix = \"events/\""),
            Vec::<String>::new()
        );
        assert_eq!(
            problems("path = \"Cargo.toml\""),
            ["source.path: \"Cargo.toml\" is not a directory: expected the directory a local destination wrote"]
        );
        assert_eq!(
            problems("path = \"a\"\nbucket = \"b-bucket\""),
            ["source.path: give either path (a directory) or bucket (S3), not both"]
        );
        assert_eq!(
            problems("bucket = \"b-bucket\"\nstart_time = \"yesterday\"\ninclude_errors = [\"oops\"]\nshards = []"),
            [
                "source.start_time: \"yesterday\" is not an RFC 3339 time such as \"2026-11-01T00:00:00Z\"",
                "source.shards: must name at least one shard (leave it out to read them all)",
                "source.include_errors: \"oops\" is not allowed: expected one of processing-failed, format-conversion-failed, invalid-record, http-endpoint-failed, delivery-failed",
            ]
        );
        let late = problems(
            "path = \"a\"\nstart_time = \"2026-11-02T00:00:00Z\"\nend_time = \"2026-11-01T00:00:00Z\"\nregion = \"eu-west-1\"",
        );
        assert_eq!(late.len(), 2, "{late:?}");
        assert!(late[0].starts_with("source.path: region"), "{late:?}");
        assert!(late[1].starts_with("source.end_time: "), "{late:?}");
        let filter = problems("path = \"a\"\nfilter = \".a ==\"");
        assert!(
            filter.len() == 1 && filter[0].starts_with("source.filter: \".a ==\" is not a jq program: does not parse"),
            "{filter:?}"
        );
        assert_eq!(
            problems("path = \"a\"\nfilter = '.type == \"order\"'"),
            Vec::<String>::new()
        );
        let unknown = problems("path = \"a\"\nsort = true");
        assert!(unknown.len() == 1 && unknown[0].contains("sort"), "{unknown:?}");
    }
}
