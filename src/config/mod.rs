//! Configuration: TOML text → [`raw::RawConfig`] (serde, unknown keys
//! refused, `${ENV_VAR}` expanded in string values) → [`Config`], the typed
//! and validated form the runtime trusts.
//!
//! Each component reads its own table: its settings struct and their checks
//! live beside it (the Kinesis source, the S3 store, the Parquet format,
//! ...), and [`components`] is the one place that registers them under
//! their `type`. This module keeps what spans components: the top-level
//! keys, the rules that tie one component to another, and the collecting of
//! every problem.

mod components;
mod env;
pub mod raw;
pub mod set;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spillway_destinations::{Compression, KeyTemplate};
use spillway_transforms::Format;

pub use crate::buffer::BufferLimits;
pub use crate::source::kinesis::config::{KinesisConfig, StartPosition};
pub use crate::source::SourceConfig;
pub use crate::telemetry::config::TelemetryConfig;
pub use spillway_destinations::http::BackupMode;
pub use spillway_settings::ConfigProblem;
pub use validate::validate;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The delivery stream name, used in object names and checkpoint files.
    pub name: String,
    pub source: SourceConfig,
    pub buffer: BufferLimits,
    pub format: Format,
    /// With Parquet, the Glue table the columns come from
    /// (`[format.glue]`).
    pub glue: Option<crate::catalog::glue::GlueConfig>,
    pub destination: DestinationConfig,
    pub checkpoint: CheckpointConfig,
    pub telemetry: TelemetryConfig,
    /// `[[processors]]`, in order.
    pub processors: Vec<crate::processor::ProcessorConfig>,
    /// `[dynamic_partitioning]`.
    pub partitioning: crate::processor::Partitioning,
    /// `[limits]`.
    pub limits: crate::limits::LimitsConfig,
    /// `[coordination]`: `None`, one instance with a local checkpoint;
    /// otherwise one of several instances sharing the stream's shards
    /// through leases (`crate::pipeline::coordinated`).
    pub coordination: Option<crate::coordination::config::CoordinationConfig>,
}

/// Where delivered records go.
#[derive(Clone, Debug)]
pub enum DestinationConfig {
    /// Objects in a local directory or an S3 bucket.
    Objects(ObjectDestination),
    /// Requests to a Firehose-style HTTP endpoint, backed up to objects.
    Http(HttpDestination),
    /// Records put into a Kinesis data stream, backed up to objects.
    Kinesis(KinesisDestination),
}

impl DestinationConfig {
    /// Where objects go: the destination itself, or an HTTP endpoint's
    /// backup (which also takes the error output).
    pub fn objects(&self) -> &ObjectDestination {
        match self {
            DestinationConfig::Objects(objects) => objects,
            DestinationConfig::Http(http) => &http.backup,
            DestinationConfig::Kinesis(kinesis) => &kinesis.backup,
        }
    }
}

/// A `local` or `s3` destination.
#[derive(Clone, Debug)]
pub struct ObjectDestination {
    pub store: StoreConfig,
    pub prefix: KeyTemplate,
    pub error_prefix: KeyTemplate,
    pub compression: Compression,
    /// How long a failing put is retried before its records are written as
    /// error output instead; `None`: until it succeeds.
    pub retry_duration: Option<Duration>,
    /// How many objects are encoded and written at a time.
    pub max_concurrent_puts: usize,
}

/// An `http` destination, backed up to objects.
pub type HttpDestination = spillway_destinations::http::HttpDestination<ObjectDestination>;

/// A `kinesis` destination, backed up to objects.
pub type KinesisDestination = crate::pipeline::kinesis::config::KinesisDestination<ObjectDestination>;

#[derive(Clone, Debug)]
pub enum StoreConfig {
    Local { path: PathBuf },
    S3(spillway_destinations::S3Options),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The directory holding `<name>.checkpoint.json`.
    pub dir: PathBuf,
}

/// Everything wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}: ", self.origin)?;
        let messages: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&messages.join("; "))
    }
}

impl ConfigError {
    fn single(origin: &str, key: &str, message: String) -> Self {
        Self {
            origin: origin.to_owned(),
            problems: vec![ConfigProblem {
                key: key.to_owned(),
                message,
            }],
        }
    }
}
impl Config {
    /// Registers every configured value that may hold a secret (URLs'
    /// user information and queries, the HTTP access key) with
    /// [`spillway_destinations::redact`], so that no line shows it, even
    /// in another library's text.
    pub fn register_secrets(&self) {
        use spillway_destinations::redact::{register_secret, register_url_secrets};
        if let SourceConfig::Kinesis(kinesis) = &self.source {
            if let Some(endpoint) = &kinesis.endpoint {
                register_url_secrets(endpoint);
            }
        }
        if let SourceConfig::Archive(archive) = &self.source {
            if let crate::source::archive::config::ArchiveLocation::S3(s3) = &archive.location {
                if let Some(endpoint) = &s3.endpoint {
                    register_url_secrets(endpoint);
                }
            }
        }
        if let DestinationConfig::Http(http) = &self.destination {
            register_url_secrets(&http.endpoint.url);
            if let Some(key) = &http.endpoint.access_key {
                register_secret(key.expose());
            }
        }
        if let Some(endpoint) = self.glue.as_ref().and_then(|g| g.endpoint.as_ref()) {
            register_url_secrets(endpoint);
        }
        if let DestinationConfig::Kinesis(kinesis) = &self.destination {
            if let Some(endpoint) = &kinesis.endpoint {
                register_url_secrets(endpoint);
            }
        }
        if let Some(endpoint) = self.coordination.as_ref().and_then(|c| c.endpoint.as_ref()) {
            register_url_secrets(endpoint);
        }
        if let StoreConfig::S3(s3) = &self.destination.objects().store {
            if let Some(endpoint) = &s3.endpoint {
                register_url_secrets(endpoint);
            }
        }
    }
}

/// What `validate` mentions without refusing it: source files that do not
/// exist (yet). In CI the input often does not exist; `run` refuses a
/// missing file in one line.
pub fn notes(config: &Config) -> Vec<String> {
    let SourceConfig::Files { paths } = &config.source else {
        return Vec::new();
    };
    paths
        .iter()
        .filter(|path| std::fs::symlink_metadata(path).is_err())
        .map(|path| {
            format!(
                "source.path: {:?} does not exist (yet): run fails on it unless it exists by then (or was archived whole by an earlier run)",
                path.display().to_string()
            )
        })
        .collect()
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::single(&origin, "", format!("cannot read the file: {err}")))?;
    parse(&text, &origin, &|name| std::env::var(name).ok())
}

/// Parses and validates configuration text; `lookup` resolves `${VAR}`.
pub fn parse(text: &str, origin: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let raw = raw::RawConfig::parse(text, lookup).map_err(|problem| ConfigError {
        origin: origin.to_owned(),
        problems: vec![problem],
    })?;
    validate(raw).map_err(|problems| ConfigError {
        origin: origin.to_owned(),
        problems,
    })
}
