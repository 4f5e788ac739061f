//! Record processors: what runs between the source and the buffers.
//!
//! Firehose's order is kept: source → KPL de-aggregation (in the source) →
//! processors, in the order configured → partitioning → format. Each
//! processor is a folder of its own (its settings beside it, registered
//! with one line in `config/components.rs`) and implements [`Processor`]:
//! a batch of inputs in, one [`Outcome`] per input out. The [`stage`] runs
//! the chain between the source's channel and the router, and numbers the
//! outputs of each source record so that exactly-once holds whatever a
//! processor answers (see [`spillway_transforms::Offset::output`]).

pub mod append_delimiter;
pub mod cloudwatch_logs;
pub mod command;
pub mod config;
pub mod contract;
pub mod decompression;
pub mod jq;
pub mod lambda;
pub mod record_deaggregation;
pub mod stage;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use spillway_transforms::{ErrorOutputType, Record};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Admission;

pub use config::{build_chain, BuildContext, BuildError, KeysProduced, Partitioning, ProcessorConfig, ProcessorSpec};

/// What became of one output of the chain.
#[derive(Debug)]
pub enum Fate {
    /// Buffered under its partition keys.
    Keep(PartitionKeys),
    /// Nothing left of its source record: checkpointed without an object.
    Dropped,
    /// To the error output; the record holds the source record's bytes
    /// (its `rawData`).
    Failed(Failure),
}

/// One output of the chain, in source order.
#[derive(Debug)]
pub struct Processed {
    /// Its bytes and position (the source record's, with its output index).
    pub record: Record,
    pub admission: Admission,
    pub fate: Fate,
}

/// Partition keys of a record, by Firehose's namespaces:
/// `!{partitionKeyFromQuery:NAME}` and `!{partitionKeyFromLambda:NAME}`.
///
/// Shared maps: every record of a partition carries the same keys, from a
/// processor to the router, so a clone is a reference count, not a map
/// and its strings allocated per record (issue #18, speed). Change them
/// with [`Arc::make_mut`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKeys {
    pub from_query: Arc<BTreeMap<String, String>>,
    pub from_lambda: Arc<BTreeMap<String, String>>,
}

impl Default for PartitionKeys {
    /// No keys; both maps are one shared empty map, allocated once.
    fn default() -> Self {
        static EMPTY: std::sync::OnceLock<Arc<BTreeMap<String, String>>> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(Default::default);
        Self {
            from_query: empty.clone(),
            from_lambda: empty.clone(),
        }
    }
}

impl PartitionKeys {
    pub fn is_empty(&self) -> bool {
        self.from_query.is_empty() && self.from_lambda.is_empty()
    }

    /// Bytes these keys hold (their share of a buffer's memory).
    pub fn size(&self) -> usize {
        self.from_query
            .iter()
            .chain(self.from_lambda.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// One record as a processor sees it.
pub struct Input<'a> {
    pub data: &'a Bytes,
    /// The source record it comes from: position, partition key, arrival
    /// (the Lambda event's metadata).
    pub origin: &'a Record,
    pub keys: &'a PartitionKeys,
}

/// One record a processor made of its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub data: Bytes,
    /// `None`: the input's keys.
    pub keys: Option<PartitionKeys>,
}

impl Output {
    /// An output with the input's keys.
    pub fn data(data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            keys: None,
        }
    }
}

/// Why a processor failed a record: what its error record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Firehose's `errorCode`, e.g. `Lambda.FunctionError`.
    pub code: String,
    pub message: String,
    /// The error output: `processing-failed` unless the processor says
    /// otherwise (decompression has its own, as in Firehose).
    pub output: ErrorOutputType,
    /// Attempts made (`attemptsMade`).
    pub attempts: u32,
    /// The Lambda function called, if one was (`lambdaArn`).
    pub lambda_arn: Option<String>,
}

impl Failure {
    /// A `processing-failed` failure after one attempt.
    pub fn processing(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            output: ErrorOutputType::ProcessingFailed,
            attempts: 1,
            lambda_arn: None,
        }
    }
}

/// What became of one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Zero or more records (zero is the same as `Dropped`).
    Ok(Vec<Output>),
    /// Filtered out on purpose: nowhere in the output, checkpointed.
    Dropped,
    /// Written to the error output, checkpointed.
    Failed(Failure),
}

/// Why a processor stopped without outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Shutdown came while the processor waited (a retry, an answer): the
    /// batch is not checkpointed and is read again at the next start.
    #[error("stopped while {0}")]
    Stopped(String),
}

/// A record processor.
#[async_trait::async_trait]
pub trait Processor: Send + Sync {
    /// A description for logs.
    fn describe(&self) -> String;

    /// One outcome per input, in the inputs' order. Retries are the
    /// processor's own; `stop` (shutdown) ends them with `Stopped`.
    async fn process(&self, inputs: &[Input<'_>], stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError>;
}

/// Runs `each` on every input's bytes off the async runtime (the built-in
/// processors are CPU-bound: gunzip, JSON scans).
pub(crate) async fn per_record<F>(inputs: &[Input<'_>], each: F) -> Vec<Outcome>
where
    F: Fn(&[u8]) -> Outcome + Send + 'static,
{
    let data: Vec<Bytes> = inputs.iter().map(|i| i.data.clone()).collect();
    tokio::task::spawn_blocking(move || data.iter().map(|d| each(d)).collect())
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// The most records a built-in processor makes of one record.
pub const MAX_SPLIT: usize = 100_000;

/// A built chain, in the configured order.
pub type Chain = Vec<Arc<dyn Processor>>;
