//! `[source]` with `type = "kinesis"`: its keys, and how they become a
//! [`KinesisConfig`].

use std::time::Duration;

use serde::Deserialize;
use spillway_destinations::endpoint::{self, EndpointUse};
use spillway_settings::Problems;

use super::api::StreamRef;

/// `[source]` with `type = "kinesis"`: a Kinesis data stream, every shard,
/// parents before children, KPL aggregated records de-aggregated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSettings {
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

/// A validated `[source]` of type `kinesis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisConfig {
    pub stream: StreamRef,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub start: StartPosition,
    /// The wait between GetRecords calls on a caught-up shard.
    pub idle_poll: Duration,
    /// GetRecords' limit, 1 to 10,000.
    pub max_records: i32,
    /// How often shards are listed to find new ones.
    pub discovery_interval: Duration,
}

/// Where a shard without a checkpoint starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(chrono::DateTime<chrono::Utc>),
}

impl KinesisSettings {
    /// The source these settings describe, with every problem (at `key`,
    /// normally `source`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<KinesisConfig> {
        let stream = check_stream(key, self.stream, self.stream_arn, problems);
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::Kinesis)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let start = check_start(key, &self.start_position, self.start_timestamp, problems);
        let poll = problems.in_range(&format!("{key}.poll_interval_ms"), self.poll_interval_ms, (200, 60_000));
        let max_records = problems.in_range(
            &format!("{key}.max_records_per_call"),
            self.max_records_per_call,
            (1, 10_000),
        );
        let discovery = problems.in_range(
            &format!("{key}.shard_discovery_seconds"),
            self.shard_discovery_seconds,
            (1, 3_600),
        );
        Some(KinesisConfig {
            stream: stream?,
            region: self.region.filter(|r| !r.is_empty()),
            endpoint,
            start: start?,
            idle_poll: Duration::from_millis(poll? as u64),
            max_records: max_records? as i32,
            discovery_interval: Duration::from_secs(discovery? as u64),
        })
    }
}

fn check_stream(key: &str, name: Option<String>, arn: Option<String>, problems: &mut Problems) -> Option<StreamRef> {
    match (name, arn) {
        (Some(name), None) => {
            if !spillway_settings::is_resource_name(&name, 128) {
                problems.add(
                    &format!("{key}.stream"),
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
                    &format!("{key}.stream_arn"),
                    format!("{arn:?} is not a stream ARN: expected arn:aws:kinesis:<region>:<account>:stream/<name>"),
                );
            }
            Some(StreamRef::Arn(arn))
        }
        (Some(_), Some(_)) => {
            problems.add(&format!("{key}.stream"), "give either stream or stream_arn, not both");
            None
        }
        (None, None) => {
            problems.add(
                &format!("{key}.stream"),
                format!("is required with {key}.type = \"kinesis\" (or give {key}.stream_arn)"),
            );
            None
        }
    }
}

fn check_start(key: &str, position: &str, timestamp: Option<String>, problems: &mut Problems) -> Option<StartPosition> {
    match (position, timestamp) {
        ("trim_horizon", None) => Some(StartPosition::TrimHorizon),
        ("latest", None) => Some(StartPosition::Latest),
        ("at_timestamp", Some(at)) => match chrono::DateTime::parse_from_rfc3339(&at) {
            Ok(at) => Some(StartPosition::AtTimestamp(at.with_timezone(&chrono::Utc))),
            Err(err) => {
                problems.add(
                    &format!("{key}.start_timestamp"),
                    format!("{at:?} is not an RFC 3339 time ({err}): expected e.g. 2026-11-01T00:00:00Z"),
                );
                None
            }
        },
        ("at_timestamp", None) => {
            problems.add(
                &format!("{key}.start_timestamp"),
                "is required with start_position = \"at_timestamp\"",
            );
            None
        }
        ("trim_horizon" | "latest", Some(_)) => {
            problems.add(
                &format!("{key}.start_timestamp"),
                "only allowed with start_position = \"at_timestamp\"",
            );
            None
        }
        (other, _) => problems.one_of(
            &format!("{key}.start_position"),
            other,
            &["trim_horizon", "latest", "at_timestamp"],
            |_| None,
        ),
    }
}
