//! The keys every object destination takes (`local`, `s3`, and any store
//! added later): where data and error objects are named, how they are
//! compressed, and how long a failing put is retried.

use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use spillway_settings::Problems;

use crate::key::TemplateKind;
use crate::{Compression, KeyTemplate};

/// The default of `error_prefix`.
pub const DEFAULT_ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/";

/// Retry duration limits in seconds of an object destination: a day.
const RETRY_SECONDS_RANGE: (i64, i64) = (0, 86_400);

/// The default of `max_concurrent_puts`: enough that a store 100 ms away
/// does not cap a stream at one object per round trip, few enough that
/// the objects in flight stay a small multiple of the buffer size.
pub const DEFAULT_MAX_CONCURRENT_PUTS: usize = 4;

/// `max_concurrent_puts` limits: each object in flight holds a buffer's
/// records and its encoded bytes.
const CONCURRENT_PUTS_RANGE: (i64, i64) = (1, 64);

/// The keys of `[destination]` (or `[destination.backup]`) that every
/// object store takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSettings {
    /// Key prefix of data objects, with Firehose's expressions
    /// `!{timestamp:<pattern>}` (arrival time of the oldest record in the
    /// object, Java `DateTimeFormatter` letters) and
    /// `!{firehose:random-string}`. Without a timestamp expression,
    /// `yyyy/MM/dd/HH/` is appended, as Firehose does. Default `""`.
    pub prefix: Option<String>,
    /// Key prefix of error output (records that could not be delivered as
    /// data), with the same expressions plus
    /// `!{firehose:error-output-type}`. Default
    /// `errors/!{firehose:error-output-type}/`.
    pub error_prefix: Option<String>,
    /// Whole-object compression: `none` (default), `gzip`, `snappy`
    /// (framed), `zstd` or `zip`.
    pub compression: Option<String>,
    /// Time zone of `!{timestamp:...}` expressions, an IANA name such as
    /// `Europe/Paris`. Default `UTC`.
    pub time_zone: Option<String>,
    /// How long a failing put is retried, in seconds: 0 to 86,400.
    /// Default: until it succeeds (an archive does not drop data); when
    /// set, an object that still fails is written as error records under
    /// the error prefix (`delivery-failed`) instead.
    pub retry_duration_seconds: Option<i64>,
    /// How many objects are encoded and written at a time: 1 to 64,
    /// default 4. They complete in any order; a source's checkpoint still
    /// moves only over records whose objects are all written. Each one in
    /// flight holds a buffer's records and its encoded bytes.
    pub max_concurrent_puts: Option<i64>,
}

/// [`ObjectSettings`], checked.
#[derive(Clone, Debug)]
pub struct ObjectOptions {
    pub prefix: KeyTemplate,
    pub error_prefix: KeyTemplate,
    pub compression: Compression,
    /// How long a failing put is retried before its records are written as
    /// error output instead; `None`: until it succeeds.
    pub retry_duration: Option<Duration>,
    /// How many objects are encoded and written at a time.
    pub max_concurrent_puts: usize,
}

impl ObjectSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<ObjectOptions> {
        let time_zone_name = self.time_zone.as_deref().unwrap_or("UTC");
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
        let prefix = template(
            key,
            "prefix",
            self.prefix.as_deref().unwrap_or(""),
            TemplateKind::Data,
            tz,
            problems,
        );
        let error_prefix = template(
            key,
            "error_prefix",
            self.error_prefix.as_deref().unwrap_or(DEFAULT_ERROR_PREFIX),
            TemplateKind::Error,
            tz,
            problems,
        );
        let compression = problems.one_of(
            &format!("{key}.compression"),
            self.compression.as_deref().unwrap_or("none"),
            Compression::NAMES,
            Compression::from_name,
        );
        let retry_duration = match self.retry_duration_seconds {
            None => Some(None),
            Some(seconds) => problems
                .in_range(&format!("{key}.retry_duration_seconds"), seconds, RETRY_SECONDS_RANGE)
                .map(|s| Some(Duration::from_secs(s as u64))),
        };
        let max_concurrent_puts = match self.max_concurrent_puts {
            None => Some(DEFAULT_MAX_CONCURRENT_PUTS),
            Some(n) => problems
                .in_range(&format!("{key}.max_concurrent_puts"), n, CONCURRENT_PUTS_RANGE)
                .map(|n| n as usize),
        };
        time_zone?;
        Some(ObjectOptions {
            prefix: prefix?,
            error_prefix: error_prefix?,
            compression: compression?,
            retry_duration: retry_duration?,
            max_concurrent_puts: max_concurrent_puts?,
        })
    }
}

fn template(
    key: &str,
    name: &str,
    text: &str,
    kind: TemplateKind,
    tz: Tz,
    problems: &mut Problems,
) -> Option<KeyTemplate> {
    KeyTemplate::parse(text, kind, tz)
        .map_err(|err| problems.add(&format!("{key}.{name}"), format!("{text:?}: {err}")))
        .ok()
}
