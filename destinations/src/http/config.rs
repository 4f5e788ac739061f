//! `[destination]` with `type = "http"`: a Firehose-style HTTP endpoint,
//! its own keys, and how they become [`HttpOptions`] and the delivery's
//! retry and backup.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use spillway_settings::{Problems, Table};

use super::{ContentEncoding, HttpOptions, Secret, DEFAULT_REQUEST_TIMEOUT};
use crate::endpoint::{self, EndpointUse};

/// Retry duration limits in seconds, as Firehose's for HTTP endpoints.
const RETRY_SECONDS_RANGE: (i64, i64) = (0, 7_200);
/// The default retry duration, as Firehose.
const DEFAULT_RETRY_SECONDS: i64 = 300;

/// `[destination]` with `type = "http"`, backed up to
/// `[destination.backup]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The endpoint's URL, `https://...` (or `http://...`).
    pub url: Option<String>,
    /// Sent as `X-Amz-Firehose-Access-Key`; use `${VAR}` to read it from
    /// the environment. Never logged. Empty: not sent.
    pub access_key: Option<String>,
    /// `none` (default) or `gzip` (request bodies gzipped, with
    /// `Content-Encoding: gzip`).
    pub content_encoding: Option<String>,
    /// A table of strings sent as `X-Amz-Firehose-Common-Attributes`.
    pub common_attributes: Option<BTreeMap<String, String>>,
    /// Sent as `X-Amz-Firehose-Source-Arn`. Default
    /// `arn:aws:firehose:local:000000000000:deliverystream/<name>`.
    pub source_arn: Option<String>,
    /// Seconds an endpoint has to answer one request: 1 to 600. Default
    /// 180, as Firehose.
    pub request_timeout_seconds: Option<i64>,
    /// How long a failing request is retried, in seconds: 0 to 7,200,
    /// default 300; then the records go to the backup under
    /// `http-endpoint-failed`.
    pub retry_duration_seconds: Option<i64>,
    /// `failed_only` (default: the backup receives records the endpoint
    /// did not take) or `all` (every record is also archived in the
    /// backup).
    pub backup_mode: Option<String>,
    /// Where records go that the endpoint does not take (and every record
    /// with `backup_mode = "all"`), and where error output goes: a `local`
    /// or `s3` destination.
    pub backup: Option<Table>,
}

/// Which records an HTTP destination's backup receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupMode {
    /// Records the endpoint did not take, as `http-endpoint-failed` error
    /// output.
    FailedOnly,
    /// Those, and every record as data.
    All,
}

/// An `http` destination, backed up to `B` (an object destination).
#[derive(Clone, Debug)]
pub struct HttpDestination<B> {
    pub endpoint: HttpOptions,
    /// How long a failing request is retried before its records go to the
    /// backup.
    pub retry_duration: Duration,
    pub backup_mode: BackupMode,
    pub backup: B,
}

impl HttpSettings {
    /// The destination these settings describe (at `key`, for the delivery
    /// stream `name`); `backup` checks the backup's table.
    pub fn check<B>(
        self,
        key: &str,
        name: &str,
        problems: &mut Problems,
        backup: impl FnOnce(Table, &mut Problems) -> Option<B>,
    ) -> Option<HttpDestination<B>> {
        let url = check_url(key, self.url, problems);
        let access_key = check_access_key(key, self.access_key, problems);
        let content_encoding = problems.one_of(
            &format!("{key}.content_encoding"),
            self.content_encoding.as_deref().unwrap_or("none"),
            &["none", "gzip"],
            |e| match e {
                "none" => Some(ContentEncoding::None),
                "gzip" => Some(ContentEncoding::Gzip),
                _ => None,
            },
        );
        let retry = problems.in_range(
            &format!("{key}.retry_duration_seconds"),
            self.retry_duration_seconds.unwrap_or(DEFAULT_RETRY_SECONDS),
            RETRY_SECONDS_RANGE,
        );
        let timeout = match self.request_timeout_seconds {
            None => Some(DEFAULT_REQUEST_TIMEOUT),
            Some(seconds) => problems
                .in_range(&format!("{key}.request_timeout_seconds"), seconds, (1, 600))
                .map(|s| Duration::from_secs(s as u64)),
        };
        let backup_mode = problems.one_of(
            &format!("{key}.backup_mode"),
            self.backup_mode.as_deref().unwrap_or("failed_only"),
            &["failed_only", "all"],
            BackupMode::from_name,
        );
        let backup = match self.backup {
            None => {
                problems.add(
                    &format!("{key}.backup"),
                    format!("is required with {key}.type = \"http\": a local or s3 destination for the records the endpoint does not take"),
                );
                None
            }
            Some(table) => backup(table, problems),
        };
        let source_arn = self
            .source_arn
            .unwrap_or_else(|| format!("arn:aws:firehose:local:000000000000:deliverystream/{name}"));
        Some(HttpDestination {
            endpoint: HttpOptions {
                url: url?,
                access_key: access_key?,
                content_encoding: content_encoding?,
                common_attributes: self.common_attributes.unwrap_or_default(),
                source_arn,
                request_timeout: timeout?,
            },
            retry_duration: Duration::from_secs(retry? as u64),
            backup_mode: backup_mode?,
            backup: backup?,
        })
    }
}

impl BackupMode {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "failed_only" => Some(Self::FailedOnly),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

fn check_url(key: &str, url: Option<String>, problems: &mut Problems) -> Option<String> {
    let Some(url) = url else {
        problems.add(&format!("{key}.url"), format!("is required with {key}.type = \"http\""));
        return None;
    };
    if let Err(problem) = endpoint::check(&url, EndpointUse::Http) {
        problems.add(&format!("{key}.url"), problem);
    }
    Some(url)
}

/// `Some(None)`: no access key (`${KEY:-}` with KEY unset gives `""`).
fn check_access_key(key: &str, access_key: Option<String>, problems: &mut Problems) -> Option<Option<Secret>> {
    match access_key {
        Some(k) if k.is_empty() => Some(None),
        Some(k) if !k.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            // The value is a secret: never repeat it.
            problems.add(
                &format!("{key}.access_key"),
                "is not a valid header value (the value is not shown): expected printable ASCII",
            );
            None
        }
        other => Some(other.map(Secret::new)),
    }
}
