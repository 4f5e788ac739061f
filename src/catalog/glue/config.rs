//! `[format.glue]`: the Glue table whose columns a Parquet pipeline
//! writes, its keys, and how they become a [`GlueConfig`].
//!
//! Checked offline, like every table of the configuration: the names as
//! Firehose's `SchemaConfiguration` takes them, the endpoint as the SDK
//! would take it. Whether the table exists, and whether spillway can hold
//! its types, is only known by asking Glue: `run` does so at start and
//! stops in one line if it cannot.

use std::time::Duration;

use serde::Deserialize;
use spillway_destinations::endpoint::{self, EndpointUse};
use spillway_settings::Problems;

/// `[format.glue]`: the columns come from an AWS Glue table, as with
/// Firehose's record format conversion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueSettings {
    /// The Glue database holding the table. Required.
    pub database: Option<String>,
    /// The table whose columns (`StorageDescriptor.Columns`) are written.
    /// Required.
    pub table: Option<String>,
    /// AWS region of the catalog; default: the standard chain
    /// (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// Endpoint URL, for tests and Glue-compatible catalogs; default: the
    /// SDK's (which honours `AWS_ENDPOINT_URL_GLUE` and `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// The catalog's id (an account id); default: the caller's account.
    pub catalog_id: Option<String>,
    /// `LATEST` (default: the table as it is, re-read every
    /// `refresh_seconds`) or a version id (that version, read once).
    pub version: Option<String>,
    /// With `LATEST`: how often the table is read again, in seconds, 1 to
    /// 86,400. Default 300. A change is used from the next buffer on.
    pub refresh_seconds: Option<i64>,
}

/// The default of `refresh_seconds`: Firehose documents no period for
/// `LATEST`; five minutes is its default buffer interval, so a change is
/// picked up within about one buffer.
pub const DEFAULT_REFRESH_SECONDS: i64 = 300;

/// A validated `[format.glue]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueConfig {
    pub database: String,
    pub table: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub catalog_id: Option<String>,
    pub version: GlueVersion,
}

/// Which version of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlueVersion {
    /// The table as it is, read again every `refresh`.
    Latest { refresh: Duration },
    /// One version id, read once.
    Fixed(String),
}

impl GlueSettings {
    /// The table these settings name, with every problem (at `key`,
    /// normally `format.glue`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<GlueConfig> {
        let database = required_name(key, "database", self.database, problems);
        let table = required_name(key, "table", self.table, problems);
        let catalog_id = self
            .catalog_id
            .and_then(|id| check_name(&format!("{key}.catalog_id"), id, problems));
        let region = self
            .region
            .and_then(|region| check_name(&format!("{key}.region"), region, problems));
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::Kinesis)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let version = check_version(key, self.version, self.refresh_seconds, problems);
        Some(GlueConfig {
            database: database?,
            table: table?,
            region,
            endpoint,
            catalog_id,
            version: version?,
        })
    }
}

fn required_name(key: &str, name: &str, value: Option<String>, problems: &mut Problems) -> Option<String> {
    let full = format!("{key}.{name}");
    match value {
        Some(value) => check_name(&full, value, problems),
        None => {
            problems.add(
                &full,
                "is required with [format.glue]: the Glue table's database and name",
            );
            None
        }
    }
}

/// Names as Firehose's `SchemaConfiguration` takes them: 1 to 1,024
/// characters, no whitespace.
fn check_name(key: &str, value: String, problems: &mut Problems) -> Option<String> {
    let fits =
        (1..=1024).contains(&value.chars().count()) && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if fits {
        Some(value)
    } else {
        problems.add(
            key,
            format!("{value:?} is not allowed: 1 to 1024 characters, without whitespace"),
        );
        None
    }
}

fn check_version(
    key: &str,
    version: Option<String>,
    refresh_seconds: Option<i64>,
    problems: &mut Problems,
) -> Option<GlueVersion> {
    let refresh_key = format!("{key}.refresh_seconds");
    match version.as_deref() {
        None | Some("LATEST") => {
            let seconds = problems.in_range(
                &refresh_key,
                refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS),
                (1, 86_400),
            )?;
            Some(GlueVersion::Latest {
                refresh: Duration::from_secs(seconds as u64),
            })
        }
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            if refresh_seconds.is_some() {
                problems.add(
                    &refresh_key,
                    format!("only allowed with {key}.version = \"LATEST\": version {id} never changes"),
                );
                return None;
            }
            Some(GlueVersion::Fixed(id.to_owned()))
        }
        Some(other) => {
            problems.add(
                &format!("{key}.version"),
                format!("{other:?} is not allowed: expected \"LATEST\" or a version id (digits, such as \"3\")"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Option<GlueConfig>, Vec<String>) {
        let settings: GlueSettings = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        let config = settings.check("format.glue", &mut problems);
        let shown = problems.into_vec().iter().map(ToString::to_string).collect();
        (config, shown)
    }

    #[test]
    fn the_defaults_are_latest_every_five_minutes() {
        let (config, problems) = check("database = \"db\"\ntable = \"events\"\n");
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(
            config.version,
            GlueVersion::Latest {
                refresh: Duration::from_secs(300)
            }
        );
        assert_eq!((config.region, config.endpoint, config.catalog_id), (None, None, None));
    }

    #[test]
    fn every_problem_names_its_key_and_what_is_allowed() {
        let (config, problems) =
            check("table = \"has space\"\nendpoint = \"ftp://x\"\nversion = \"v2\"\nrefresh_seconds = 0\n");
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "format.glue.database: is required with [format.glue]: the Glue table's database and name",
                "format.glue.table: \"has space\" is not allowed: 1 to 1024 characters, without whitespace",
                "format.glue.endpoint: \"ftp://x\" is not a URL: expected http://host[:port][/path] or https://...",
                "format.glue.version: \"v2\" is not allowed: expected \"LATEST\" or a version id (digits, such as \"3\")",
            ]
        );
        let (_, problems) = check("database = \"d\"\ntable = \"t\"\nrefresh_seconds = 0\n");
        assert_eq!(
            problems,
            ["format.glue.refresh_seconds: 0 is out of range: allowed 1 to 86400"]
        );
        let (_, problems) = check("database = \"d\"\ntable = \"t\"\nversion = \"3\"\nrefresh_seconds = 60\n");
        assert_eq!(
            problems,
            ["format.glue.refresh_seconds: only allowed with format.glue.version = \"LATEST\": version 3 never changes"]
        );
        let (config, _) = check("database = \"d\"\ntable = \"t\"\nversion = \"3\"\ncatalog_id = \"123456789012\"\n");
        let config = config.unwrap();
        assert_eq!(config.version, GlueVersion::Fixed("3".into()));
        assert_eq!(config.catalog_id.as_deref(), Some("123456789012"));
    }
}
