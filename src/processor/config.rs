//! `[[processors]]` and `[dynamic_partitioning]`.
//!
//! Each `[[processors]]` table is chosen by its `type` (with
//! [`spillway_settings::Choice`], as `[source]` is); its variants are
//! registered one line each in `config/components.rs`. A checked table is a
//! [`ProcessorSpec`]: it says which partition keys it can produce (so that
//! `validate` refuses a prefix naming a key nothing makes) and builds the
//! running [`Processor`] when the pipeline starts (a Lambda client needs
//! the runtime; a jq program is compiled at check time already).

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use spillway_settings::Problems;

use super::Processor;

/// Which partition keys a processor can produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysProduced {
    None,
    /// `partitionKeyFromQuery` keys: these names, or any when `None`.
    FromQuery(Option<Vec<String>>),
    /// `partitionKeyFromLambda` keys (their names are the function's).
    FromLambda,
}

/// What a processor needs to start.
pub struct BuildContext<'a> {
    /// The delivery stream's name.
    pub stream: &'a str,
    /// Its source (a Lambda's event names a Kinesis source's stream).
    pub source: &'a crate::source::SourceConfig,
}

/// Why a processor could not start.
#[derive(Debug, thiserror::Error)]
#[error("processor {index} ({kind}): {message}")]
pub struct BuildError {
    pub index: usize,
    pub kind: &'static str,
    pub message: String,
}

/// A checked `[[processors]]` table.
#[async_trait::async_trait]
pub trait ProcessorSpec: Send + Sync + fmt::Debug {
    /// Its `type`.
    fn kind(&self) -> &'static str;

    /// The partition keys it can produce.
    fn keys_produced(&self) -> KeysProduced {
        KeysProduced::None
    }

    /// The running processor.
    async fn build(&self, context: &BuildContext<'_>) -> Result<Arc<dyn Processor>, String>;

    /// When the spec is a jq program: its source, so that the stage can
    /// run consecutive jq programs on one parse of each record.
    fn as_jq(&self) -> Option<&crate::processor::jq::JqSpec> {
        None
    }
}

/// One validated `[[processors]]` table.
pub type ProcessorConfig = Arc<dyn ProcessorSpec>;

/// `[dynamic_partitioning]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicPartitioningSettings {
    /// Whether `!{partitionKeyFromQuery:..}` and `!{partitionKeyFromLambda:..}`
    /// may be used in `destination.prefix`: one buffer per distinct set of
    /// keys. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The most partitions buffered at once, 1 to 5000 (default 500; Firehose raises its quota up to 5000 on request; as
    /// Firehose): at the limit, the oldest open partition is flushed early
    /// (flush reason `partition_limit`).
    #[serde(default)]
    pub max_active_partitions: Option<i64>,
}

/// Firehose's default active partitions.
pub const DEFAULT_MAX_ACTIVE_PARTITIONS: i64 = 500;
/// Firehose: 500 by default, raised on request up to 5000.
pub const MAX_ACTIVE_PARTITIONS_RANGE: (i64, i64) = (1, 5000);

/// `[dynamic_partitioning]`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioning {
    pub enabled: bool,
    pub max_active_partitions: usize,
}

impl Default for Partitioning {
    fn default() -> Self {
        Self {
            enabled: false,
            max_active_partitions: DEFAULT_MAX_ACTIVE_PARTITIONS as usize,
        }
    }
}

impl DynamicPartitioningSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<Partitioning> {
        let max = self.max_active_partitions.unwrap_or(DEFAULT_MAX_ACTIVE_PARTITIONS);
        let max = problems.in_range(
            &format!("{key}.max_active_partitions"),
            max,
            MAX_ACTIVE_PARTITIONS_RANGE,
        )?;
        Some(Partitioning {
            enabled: self.enabled,
            max_active_partitions: max as usize,
        })
    }
}

/// Builds the configured processors, in order; consecutive jq-based ones
/// become one [`super::jq::JqChain`] that parses each record once.
pub async fn build_chain(specs: &[ProcessorConfig], context: &BuildContext<'_>) -> Result<super::Chain, BuildError> {
    let mut chain: super::Chain = Vec::new();
    let mut index = 0;
    while index < specs.len() {
        let jq_run: Vec<&super::jq::JqSpec> = specs[index..].iter().map_while(|s| s.as_jq()).collect();
        if jq_run.len() > 1 {
            let steps = jq_run.iter().map(|s| s.step.clone()).collect();
            let description = jq_run.iter().map(|s| s.describe()).collect::<Vec<_>>().join(" | ");
            chain.push(Arc::new(super::jq::JqChain::new(steps, description)));
            index += jq_run.len();
            continue;
        }
        let spec = &specs[index];
        let processor = spec.build(context).await.map_err(|message| BuildError {
            index,
            kind: spec.kind(),
            message,
        })?;
        chain.push(processor);
        index += 1;
    }
    Ok(chain)
}

/// A processor with nothing to set up at start: its spec is itself.
#[derive(Debug)]
pub struct Ready<P> {
    pub kind: &'static str,
    pub processor: Arc<P>,
}

impl<P> Ready<P> {
    pub fn new(kind: &'static str, processor: P) -> Self {
        Self {
            kind,
            processor: Arc::new(processor),
        }
    }
}

#[async_trait::async_trait]
impl<P: Processor + fmt::Debug + 'static> ProcessorSpec for Ready<P> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn build(&self, _context: &BuildContext<'_>) -> Result<Arc<dyn Processor>, String> {
        Ok(self.processor.clone())
    }
}

/// Wraps a checked spec for the registry.
pub fn spec(spec: impl ProcessorSpec + 'static) -> ProcessorConfig {
    Arc::new(spec)
}
