//! `jq`: a jq program (jaq) on each JSON record. No value: the record is
//! dropped; n values: n records; a runtime error: the record fails
//! (`Jq.ExecutionFailed`), as do records that are not JSON
//! (`Jq.InvalidJson`).
//!
//! Consecutive jq-based processors (`jq`, `metadata_extraction`) run as one
//! [`JqChain`]: each record is parsed once, and serialised once at the end,
//! whatever the number of programs (issue #18: parse once where the chain
//! allows).
//!
//! In the `spillway` binary the programs run in worker processes
//! ([`worker`]): a record that makes a program recurse, loop or allocate
//! without end fails alone (`Jq.Crashed`, `Jq.TimedOut`) instead of
//! stopping the pipeline.

pub mod config;
pub mod first;
pub mod keys;
mod program;
pub mod serve;
pub mod wire;
pub mod worker;

use std::sync::Arc;

use bytes::Bytes;
use jaq_json::Val;
use tokio_util::sync::CancellationToken;

use super::{Failure, Input, Outcome, Output, PartitionKeys, ProcessError, Processor};
pub use config::JqSpec;
pub use program::{Program, RunError, MAX_OUTPUTS};
use wire::Reply;

/// What a program in a [`JqChain`] does with its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Its values replace the record (`jq`).
    Filter,
    /// Its one object becomes `partitionKeyFromQuery` keys; the record is
    /// unchanged (`metadata_extraction`).
    Metadata,
}

/// One program of a chain.
#[derive(Clone)]
pub struct Step {
    pub kind: StepKind,
    /// The program's text, for the workers to compile.
    pub query: Arc<str>,
    pub program: Arc<Program>,
}

/// Consecutive jq-based processors, run on one parse of each record.
pub struct JqChain {
    steps: Arc<[Step]>,
    description: String,
    /// `None`: in this process (unit tests).
    workers: Option<Arc<worker::Pool>>,
}

impl JqChain {
    /// Runs in workers when the binary serves them
    /// ([`worker::use_worker_binary`]).
    pub fn new(steps: Vec<Step>, description: String) -> Self {
        let workers = worker::worker_binary()
            .map(|binary| Arc::new(worker::Pool::new(binary.clone(), serve::encode_steps(&steps))));
        Self {
            steps: steps.into(),
            description,
            workers,
        }
    }
}

impl JqChain {
    /// What the programs made of each record, in order.
    pub async fn replies(&self, data: Vec<Bytes>) -> Vec<Reply> {
        match &self.workers {
            Some(workers) => workers.run(data).await,
            None => {
                let steps = self.steps.clone();
                // CPU-bound: off the async runtime.
                tokio::task::spawn_blocking(move || data.iter().map(|d| reply(&steps, d)).collect())
                    .await
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            }
        }
    }
}

#[async_trait::async_trait]
impl Processor for JqChain {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn process(&self, inputs: &[Input<'_>], _stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        let data: Vec<Bytes> = inputs.iter().map(|i| i.data.clone()).collect();
        Ok(self
            .replies(data)
            .await
            .into_iter()
            .zip(inputs)
            .map(|(reply, input)| outcome(reply, input.keys))
            .collect())
    }
}

/// Runs every step on one record; the keys are those the programs made.
pub fn reply(steps: &[Step], data: &[u8]) -> Reply {
    match run_values(steps, data, PartitionKeys::default()) {
        Ok(values) => Reply::Outputs(
            values
                .into_iter()
                .map(|(value, keys)| (program::to_json(&value), keys.from_query.into_iter().collect()))
                .collect(),
        ),
        Err(error) => Reply::Failed {
            code: error.code.to_owned(),
            message: error.message,
        },
    }
}

/// The outcome of a record whose keys were `keys` before the programs.
fn outcome(reply: Reply, keys: &PartitionKeys) -> Outcome {
    match reply {
        Reply::Outputs(outputs) if outputs.is_empty() => Outcome::Dropped,
        Reply::Outputs(outputs) => Outcome::Ok(
            outputs
                .into_iter()
                .map(|(data, made)| {
                    let mut keys = keys.clone();
                    keys.from_query.extend(made);
                    Output {
                        data: Bytes::from(data),
                        keys: Some(keys),
                    }
                })
                .collect(),
        ),
        Reply::Failed { code, message } => Outcome::Failed(Failure::processing(code, message)),
    }
}

fn run_values(steps: &[Step], data: &[u8], keys: PartitionKeys) -> Result<Vec<(Val, PartitionKeys)>, RunError> {
    let mut values = vec![(Program::parse(data)?, keys)];
    for step in steps {
        let mut next = Vec::with_capacity(values.len());
        for (value, keys) in values {
            match step.kind {
                StepKind::Filter => {
                    let outputs = step.program.run(value)?;
                    if next.len() + outputs.len() > MAX_OUTPUTS {
                        return Err(RunError {
                            code: "Jq.TooManyOutputs",
                            message: format!("the programs made more than {MAX_OUTPUTS} values of the record"),
                        });
                    }
                    next.extend(outputs.into_iter().map(|v| (v, keys.clone())));
                }
                StepKind::Metadata => {
                    let keys = keys::extract(&step.program, &value, keys)?;
                    next.push((value, keys));
                }
            }
        }
        values = next;
        if values.is_empty() {
            break;
        }
    }
    Ok(values)
}
