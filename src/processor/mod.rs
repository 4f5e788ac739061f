//! Record processors: what runs between the source and the buffers.
//!
//! This file is the stage's interface as agreed with the `processors`
//! branch (issue #18), which owns the stage itself; at the merge, theirs
//! wins. The `lambda` and `command` processors (this branch) implement
//! [`Processor`] through the Firehose Lambda [`contract`].

pub mod command;
pub mod contract;
pub mod lambda;

use std::collections::BTreeMap;

use bytes::Bytes;
use spillway_transforms::{ErrorOutputType, Record};
use tokio_util::sync::CancellationToken;

/// A record's partition keys: from `metadata_extraction` and from a
/// Lambda's `metadata.partitionKeys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKeys {
    pub from_query: BTreeMap<String, String>,
    pub from_lambda: BTreeMap<String, String>,
}

/// One record as a processor sees it.
pub struct Input<'a> {
    pub data: &'a Bytes,
    /// The source record (position, partition key, arrival).
    pub origin: &'a Record,
    pub keys: &'a PartitionKeys,
}

/// One record a processor gives back.
pub struct Output {
    pub data: Bytes,
    /// `None`: the input's keys.
    pub keys: Option<PartitionKeys>,
}

/// Why a record failed, for its error record.
pub struct Failure {
    pub code: String,
    pub message: String,
    pub output: ErrorOutputType,
    pub attempts: u32,
    pub lambda_arn: Option<String>,
}

/// What became of one input.
pub enum Outcome {
    Ok(Vec<Output>),
    Dropped,
    Failed(Failure),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("stopped while {0}")]
    Stopped(String),
}

#[async_trait::async_trait]
pub trait Processor: Send + Sync {
    fn describe(&self) -> String;
    /// One outcome per input, in order. Retries are the processor's own;
    /// `stop` (shutdown) ends them with `Stopped`.
    async fn process(&self, inputs: &[Input<'_>], stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError>;
}
