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
mod direct;
pub mod first;
pub mod keys;
mod program;
mod read;
pub mod serve;
pub mod wire;
pub mod worker;

use std::collections::HashMap;
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
            None => self.in_process(data, |reply| reply).await,
        }
    }

    /// The same, each reply as its frame's bytes ([`wire::view_reply`]).
    async fn reply_frames(&self, data: Vec<Bytes>) -> wire::Frames {
        match &self.workers {
            Some(workers) => workers.run_frames(data).await,
            None => {
                let mut frames = wire::Frames::default();
                for reply in self.in_process(data, |reply| wire::encode_reply(&reply)).await {
                    frames.push(&reply);
                }
                frames
            }
        }
    }

    async fn in_process<T: Send + 'static>(&self, data: Vec<Bytes>, each: fn(Reply) -> T) -> Vec<T> {
        let steps = self.steps.clone();
        // CPU-bound: off the async runtime.
        tokio::task::spawn_blocking(move || data.iter().map(|d| each(reply(&steps, d))).collect())
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    }
}

#[async_trait::async_trait]
impl Processor for JqChain {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn process(&self, inputs: &[Input<'_>], _stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        let data: Vec<Bytes> = inputs.iter().map(|i| i.data.clone()).collect();
        let mut known = KnownKeys::default();
        Ok(self
            .reply_frames(data)
            .await
            .iter()
            .zip(inputs)
            .map(|(frame, input)| {
                outcome(frame, input.keys, &mut known).unwrap_or_else(|err| {
                    // Checked as it was read, or made here: not expected.
                    Outcome::Failed(Failure::processing(
                        "Jq.Crashed",
                        format!("the jq worker's reply cannot be read: {err}"),
                    ))
                })
            })
            .collect())
    }
}

/// The keys of a batch's outputs, by their bytes in the replies: the
/// records of one partition share one set of keys, made once (issue #18,
/// speed). Bounded, whatever the records hold.
#[derive(Default)]
struct KnownKeys(HashMap<Box<[u8]>, PartitionKeys>);

/// Distinct sets of keys remembered per batch; beyond, keys are made anew.
const MAX_KNOWN_KEYS: usize = 1024;

impl KnownKeys {
    /// The keys of an output whose input had `keys` and whose programs
    /// made `made`: the input's, with `made` over them.
    fn of(&mut self, made: &wire::KeysView<'_>, keys: &PartitionKeys) -> PartitionKeys {
        if made.is_empty() {
            return keys.clone();
        }
        let fresh = || {
            let mut merged = keys.clone();
            let from_query = Arc::make_mut(&mut merged.from_query);
            for (name, value) in made.pairs() {
                from_query.insert(name.to_owned(), value.to_owned());
            }
            merged
        };
        if !keys.is_empty() {
            // Made from other keys: not the same set for the same bytes.
            return fresh();
        }
        if let Some(known) = self.0.get(made.raw) {
            return known.clone();
        }
        let made_now = fresh();
        if self.0.len() < MAX_KNOWN_KEYS {
            self.0.insert(made.raw.into(), made_now.clone());
        }
        made_now
    }
}

/// Runs every step on one record; the keys are those the programs made.
pub fn reply(steps: &[Step], data: &Bytes) -> Reply {
    match run_values(steps, data, PartitionKeys::default()) {
        Ok(values) => Reply::Outputs(
            values
                .into_iter()
                .map(|(value, keys)| {
                    let made = keys
                        .from_query
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone()));
                    (program::to_json(&value), made.collect())
                })
                .collect(),
        ),
        Err(error) => Reply::Failed {
            code: error.code.to_owned(),
            message: error.message,
        },
    }
}

/// The outcome of a record whose keys were `keys` before the programs,
/// read from its reply's frame.
fn outcome(frame: &[u8], keys: &PartitionKeys, known: &mut KnownKeys) -> std::io::Result<Outcome> {
    Ok(match wire::view_reply(frame)? {
        wire::ReplyView::Outputs(outputs) if outputs.left() == 0 => Outcome::Dropped,
        wire::ReplyView::Outputs(mut outputs) => {
            let mut made = Vec::with_capacity(outputs.left().min(MAX_OUTPUTS));
            while let Some((data, made_keys)) = outputs.next_output()? {
                made.push(Output {
                    data: Bytes::copy_from_slice(data),
                    keys: Some(known.of(&made_keys, keys)),
                });
            }
            Outcome::Ok(made)
        }
        wire::ReplyView::Failed { code, message } => Outcome::Failed(Failure::processing(code, message)),
    })
}

fn run_values(steps: &[Step], data: &Bytes, keys: PartitionKeys) -> Result<Vec<(Val, PartitionKeys)>, RunError> {
    let mut values = vec![(Program::parse_record(data)?, keys)];
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a reply makes of a record, as it was made before replies were
    /// read in place: each output's keys the input's, with the made ones
    /// over them.
    fn expected(reply: &Reply, keys: &PartitionKeys) -> Outcome {
        match reply {
            Reply::Outputs(outputs) if outputs.is_empty() => Outcome::Dropped,
            Reply::Outputs(outputs) => Outcome::Ok(
                outputs
                    .iter()
                    .map(|(data, made)| {
                        let mut from_query = (*keys.from_query).clone();
                        from_query.extend(made.iter().cloned());
                        Output {
                            data: Bytes::from(data.clone()),
                            keys: Some(PartitionKeys {
                                from_query: from_query.into(),
                                from_lambda: keys.from_lambda.clone(),
                            }),
                        }
                    })
                    .collect(),
            ),
            Reply::Failed { code, message } => Outcome::Failed(Failure::processing(code.clone(), message.clone())),
        }
    }

    fn key_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        // Few names and values, so that outputs share sets of keys (the
        // cache's hits) and names repeat within one output (the last wins).
        prop::collection::vec(("[ab]", "[xy]{0,2}"), 0..3)
    }

    proptest! {
        /// Replies read in place, with keys shared between outputs, give
        /// exactly the outcomes of replies decoded into owned values.
        #[test]
        fn replies_read_in_place_give_the_same_outcomes(
            replies in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec((prop::collection::vec(any::<u8>(), 0..20), key_pairs()), 0..4)
                        .prop_map(Reply::Outputs),
                    (".{0,8}", ".{0,8}").prop_map(|(code, message)| Reply::Failed { code, message }),
                ],
                1..12,
            ),
            query in key_pairs(),
            lambda in key_pairs(),
        ) {
            let input = PartitionKeys {
                from_query: Arc::new(query.into_iter().collect()),
                from_lambda: Arc::new(lambda.into_iter().collect()),
            };
            // One cache for records with and without keys before the
            // programs, as in a batch; twice over it: made, then known.
            let mut known = KnownKeys::default();
            for keys in [PartitionKeys::default(), input.clone(), PartitionKeys::default(), input] {
                {
                    for reply in &replies {
                        let frame = wire::encode_reply(reply);
                        prop_assert_eq!(outcome(&frame, &keys, &mut known).unwrap(), expected(reply, &keys));
                    }
                }
            }
        }
    }
}
