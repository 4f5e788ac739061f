//! `jq`: a jq program (jaq) on each JSON record. No value: the record is
//! dropped; n values: n records; a runtime error: the record fails
//! (`Jq.ExecutionFailed`), as do records that are not JSON
//! (`Jq.InvalidJson`).
//!
//! Consecutive jq-based processors (`jq`, `metadata_extraction`) run as one
//! [`JqChain`]: each record is parsed once, and serialised once at the end,
//! whatever the number of programs (issue #18: parse once where the chain
//! allows).

pub mod config;
pub mod keys;
mod program;

use std::sync::Arc;

use bytes::Bytes;
use jaq_json::Val;
use tokio_util::sync::CancellationToken;

use super::{Failure, Input, Outcome, Output, PartitionKeys, ProcessError, Processor};
pub use config::JqSpec;
pub use program::{Program, RunError, MAX_OUTPUTS};

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
    pub program: Arc<Program>,
}

/// Consecutive jq-based processors, run on one parse of each record.
pub struct JqChain {
    steps: Arc<[Step]>,
    description: String,
}

impl JqChain {
    pub fn new(steps: Vec<Step>, description: String) -> Self {
        Self {
            steps: steps.into(),
            description,
        }
    }
}

#[async_trait::async_trait]
impl Processor for JqChain {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn process(&self, inputs: &[Input<'_>], _stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        let owned: Vec<(Bytes, PartitionKeys)> = inputs.iter().map(|i| (i.data.clone(), i.keys.clone())).collect();
        let steps = self.steps.clone();
        // CPU-bound: off the async runtime.
        let outcomes = tokio::task::spawn_blocking(move || {
            owned
                .into_iter()
                .map(|(data, keys)| run_steps(&steps, &data, keys))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        Ok(outcomes)
    }
}

/// Runs every step on one record.
pub fn run_steps(steps: &[Step], data: &[u8], keys: PartitionKeys) -> Outcome {
    match run_values(steps, data, keys) {
        Ok(values) if values.is_empty() => Outcome::Dropped,
        Ok(values) => Outcome::Ok(
            values
                .into_iter()
                .map(|(value, keys)| Output {
                    data: Bytes::from(program::to_json(&value)),
                    keys: Some(keys),
                })
                .collect(),
        ),
        Err(error) => Outcome::Failed(Failure::processing(error.code, error.message)),
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
