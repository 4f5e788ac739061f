//! One `process` call of a contract processor: batches out, answers back,
//! each failed batch retried with backoff, as Firehose retries a Lambda.
//!
//! Whatever fails a call (a function error, a throttle, a timeout, a
//! response that breaks the contract) is one failed attempt; after
//! `number_of_retries` more, every record of the batch fails with the last
//! attempt's code, and processing goes on with the next batch. Only
//! shutdown (`stop`) ends a call without an outcome for each record.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{codes, encode_records, event, invocation_id, parse_response, plan, Answer, Batching, Context, Planned};
use crate::processor::{Failure, Input, Outcome, Output, PartitionKeys, ProcessError};
use spillway_transforms::ErrorOutputType;

/// Why one call failed: a Firehose error code and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub code: &'static str,
    pub message: String,
}

/// One synchronous call of the function: the event out, the response's
/// bytes back. Retries are the runner's: an implementation calls once.
#[async_trait]
pub trait Invoke: Send + Sync {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, CallError>;
}

/// Waits between attempts: `first`, doubling up to `max`, each with up to a
/// quarter of jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// One second, up to 30 seconds; `SPILLWAY_TEST_RETRY_MS` (a test hook)
    /// sets both to that many milliseconds.
    pub fn from_env() -> Self {
        match std::env::var("SPILLWAY_TEST_RETRY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            Some(ms) => Self {
                first: Duration::from_millis(ms),
                max: Duration::from_millis(ms),
            },
            None => Self {
                first: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
        }
    }

    fn before(&self, retry: u32) -> Duration {
        let base = self.first.saturating_mul(1 << retry.min(16)).min(self.max);
        let jitter = base.mul_f64(rand::random::<f64>() / 4.0);
        base - jitter
    }
}

/// A contract processor's calls: its invoker, and how it batches and
/// retries.
pub struct Runner<I> {
    pub invoker: I,
    pub context: Context,
    pub batching: Batching,
    pub backoff: Backoff,
    /// What error records name as `lambdaArn` (the `command` has none).
    pub lambda_arn: Option<String>,
    /// For logs: `lambda function "enrich"`, `command "python3 ..."`.
    pub name: String,
}

impl<I: Invoke> Runner<I> {
    /// One outcome per input, in order.
    pub async fn process(&self, inputs: &[Input<'_>], stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        let entries = encode_records(&self.context, inputs);
        let sizes: Vec<usize> = inputs.iter().map(|input| input.data.len()).collect();
        let mut outcomes = Vec::with_capacity(inputs.len());
        for planned in plan(&self.context, &entries, &sizes, self.batching.limits) {
            match planned {
                Planned::TooLarge(index) => {
                    let message = format!(
                        "the record's event entry is {} bytes: over the {} byte request limit on its own",
                        entries[index].len(),
                        self.batching.limits.payload_bytes
                    );
                    outcomes.push(Outcome::Failed(self.failure(codes::REQUEST_TOO_LARGE, message, 0)));
                }
                Planned::Batch(batch) => {
                    let answered = self.call(&entries[batch.clone()], batch.clone(), inputs, stop).await?;
                    outcomes.extend(answered);
                }
            }
        }
        debug_assert_eq!(outcomes.len(), inputs.len());
        Ok(outcomes)
    }

    /// The batch `batch` of `inputs`, whose entries are `entries`, until it
    /// is answered or out of retries.
    async fn call(
        &self,
        entries: &[Vec<u8>],
        batch: std::ops::Range<usize>,
        inputs: &[Input<'_>],
        stop: &CancellationToken,
    ) -> Result<Vec<Outcome>, ProcessError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let event = event(&self.context, &invocation_id(), entries);
            let called = tokio::select! {
                _ = stop.cancelled() => return Err(self.stopped("waiting for an answer")),
                called = self.invoker.invoke(event) => called,
            };
            let failed = match called {
                Ok(body) => match parse_response(&body, batch.clone(), self.batching.limits) {
                    Ok(answers) => return Ok(self.outcomes(answers, &inputs[batch], attempt)),
                    Err(violation) => CallError {
                        code: violation.code,
                        message: violation.message,
                    },
                },
                Err(err) => err,
            };
            let retries_left = self.batching.retries + 1 - attempt;
            tracing::warn!(
                processor = %self.name,
                records = batch.len(),
                attempt,
                retries_left,
                error_code = failed.code,
                error = %failed.message,
                "processor call failed"
            );
            if retries_left == 0 {
                let failure = self.failure(failed.code, failed.message, attempt);
                return Ok(batch.map(|_| Outcome::Failed(failure.clone_failure())).collect());
            }
            tokio::select! {
                _ = stop.cancelled() => return Err(self.stopped("waiting to retry")),
                _ = tokio::time::sleep(self.backoff.before(attempt - 1)) => {}
            }
        }
    }

    fn outcomes(&self, answers: Vec<Answer>, inputs: &[Input<'_>], attempt: u32) -> Vec<Outcome> {
        answers
            .into_iter()
            .zip(inputs)
            .map(|(answer, input)| match answer {
                Answer::Ok { data, partition_keys } => Outcome::Ok(vec![Output {
                    data,
                    keys: partition_keys.map(|from_lambda| PartitionKeys {
                        from_query: input.keys.from_query.clone(),
                        from_lambda: from_lambda.into(),
                    }),
                }]),
                Answer::Dropped => Outcome::Dropped,
                Answer::ProcessingFailed => Outcome::Failed(self.failure(
                    codes::PROCESSING_FAILED,
                    "ProcessingFailed status set for record".to_owned(),
                    attempt,
                )),
            })
            .collect()
    }

    fn failure(&self, code: &str, message: String, attempts: u32) -> Failure {
        Failure {
            code: code.to_owned(),
            message,
            output: ErrorOutputType::ProcessingFailed,
            attempts,
            lambda_arn: self.lambda_arn.clone(),
        }
    }

    fn stopped(&self, doing: &str) -> ProcessError {
        ProcessError::Stopped(format!("{doing} from {}", self.name))
    }
}

/// `Failure` need not be `Clone` (the stage's interface does not promise
/// it): copy it field by field.
trait CloneFailure {
    fn clone_failure(&self) -> Failure;
}

impl CloneFailure for Failure {
    fn clone_failure(&self) -> Failure {
        Failure {
            code: self.code.clone(),
            message: self.message.clone(),
            output: self.output,
            attempts: self.attempts,
            lambda_arn: self.lambda_arn.clone(),
        }
    }
}
