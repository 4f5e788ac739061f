//! The configuration file as written: serde structs that refuse unknown
//! keys. Each field's doc comment is its user documentation (README's
//! configuration reference repeats it). The tables of components
//! (`[source]`, `[format]`, `[destination]`) are kept as tables here and
//! read by the component their `type` names, beside it. Values are checked
//! in [`super::validate`], not here, so that a range error can name the
//! key, the value and what is allowed.

use serde::Deserialize;
use spillway_settings::Table;

use super::env::expand_tree;
use crate::telemetry::config::TelemetrySettings;
use spillway_settings::ConfigProblem;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Delivery stream name: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
    /// Used in object names and in the checkpoint file's name. Default
    /// `spillway`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where records come from: a table chosen by its `type`, read by the
    /// source it names (see `components`).
    pub source: Table,
    /// When buffers are flushed.
    #[serde(default)]
    pub buffer: RawBuffer,
    /// How records are written into objects (default: `json_lines`).
    #[serde(default)]
    pub format: Table,
    /// Where records go.
    pub destination: Table,
    /// Where progress is kept.
    #[serde(default)]
    pub checkpoint: RawCheckpoint,
    /// Record processors, run in order between the source and the buffers:
    /// tables chosen by their `type`, read by the processor they name (see
    /// `components`).
    #[serde(default)]
    pub processors: Vec<Table>,
    /// Buffers per distinct set of partition keys.
    #[serde(default)]
    pub dynamic_partitioning: Option<crate::processor::config::DynamicPartitioningSettings>,
    /// Metrics and health over HTTP (`crate::telemetry::config`); none
    /// without the table.
    #[serde(default)]
    pub telemetry: Option<TelemetrySettings>,
    /// The memory budget of the process (`crate::limits::config`); derived
    /// from the buffers without the table.
    #[serde(default)]
    pub limits: Option<crate::limits::LimitsSettings>,
    /// Several instances sharing a Kinesis stream: a table chosen by its
    /// `type`, read by the coordination it names
    /// (`crate::coordination::config`); one instance without it.
    #[serde(default)]
    pub coordination: Option<Table>,
}

fn default_name() -> String {
    "spillway".to_owned()
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
            // Line breaks before the error, plus one: `lines()` would
            // count one line short for an error at the start of a line.
            let line = err
                .span()
                .map(|span| text.as_bytes()[..span.start].iter().filter(|&&b| b == b'\n').count() + 1);
            // The parser's message may run over several lines (`invalid
            // table header` then `duplicate key ...`): one line, joined.
            let why = err
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            ConfigProblem {
                key: String::new(),
                message: match line {
                    Some(line) => format!("not valid TOML at line {line}: {why}"),
                    None => format!("not valid TOML: {why}"),
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
