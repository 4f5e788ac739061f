//! The `command` processor: the Firehose Lambda contract with a long-lived
//! local process instead of a Lambda, for functions that should run beside
//! spillway (no AWS account, no network). `contrib/firehose_handler_runner.py`
//! runs a Python `lambda_handler(event, context)` file behind it unchanged.
//!
//! The line protocol: spillway writes one event (compact JSON, so one line)
//! to the process's standard input; the process answers with one line on
//! its standard output, the response, or Lambda's error object
//! (`{"errorMessage": ..., "errorType": ...}`) for a function error. Its
//! standard error is spillway's. A process that exits, answers more than
//! 6 MB on a line, or does not answer within `timeout_seconds` is killed
//! and started again at the next call; the call counts as a failed attempt,
//! retried as a Lambda's would be.

pub mod config;

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::config::{BuildContext, KeysProduced, ProcessorSpec};
use super::contract::{
    codes, default_region, source_stream_arn, Backoff, CallError, Context, Invoke, Runner, PAYLOAD_LIMIT,
};
use super::{Input, Outcome, ProcessError, Processor};
pub use config::{CommandConfig, CommandSettings};

/// A `command` processor.
pub struct CommandProcessor {
    runner: Runner<CommandInvoker>,
}

impl CommandProcessor {
    /// The process starts at the first call. `delivery_stream`, `region`
    /// and `source_stream_arn` go into every event.
    pub fn new(config: &CommandConfig, delivery_stream: &str, region: &str, source_stream_arn: Option<String>) -> Self {
        let name = format!("command {:?}", config.command.join(" "));
        Self {
            runner: Runner {
                invoker: CommandInvoker {
                    command: config.command.clone(),
                    timeout: config.timeout,
                    running: Mutex::new(None),
                },
                context: Context::new(delivery_stream, region, source_stream_arn),
                batching: config.batching,
                backoff: Backoff::from_env(),
                lambda_arn: None,
                name,
            },
        }
    }

    /// How long the stage may hold records for this processor
    /// (`buffer_interval_seconds`).
    pub fn interval(&self) -> Duration {
        self.runner.batching.interval
    }
}

#[async_trait]
impl Processor for CommandProcessor {
    fn describe(&self) -> String {
        self.runner.name.clone()
    }

    async fn process(&self, inputs: &[Input<'_>], stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        self.runner.process(inputs, stop).await
    }
}

#[async_trait]
impl ProcessorSpec for CommandConfig {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn keys_produced(&self) -> KeysProduced {
        KeysProduced::FromLambda
    }

    async fn build(&self, context: &BuildContext<'_>) -> Result<std::sync::Arc<dyn Processor>, String> {
        let region = match context.source {
            crate::source::SourceConfig::Kinesis(kinesis) => default_region(kinesis.region.as_deref()),
            _ => default_region(None),
        };
        let source = source_stream_arn(context.source, Some(&region));
        Ok(std::sync::Arc::new(CommandProcessor::new(
            self,
            context.stream,
            &region,
            source,
        )))
    }
}

struct CommandInvoker {
    command: Vec<String>,
    timeout: Duration,
    running: Mutex<Option<Running>>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// An event went out and its answer has not been read: set if a call
    /// was abandoned (shutdown) halfway, so that the next call does not
    /// read that stale answer as its own.
    awaiting: bool,
}

#[async_trait]
impl Invoke for CommandInvoker {
    async fn invoke(&self, mut event: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let mut running = self.running.lock().await;
        if running.as_ref().is_some_and(|r| r.awaiting) {
            stop_process(running.take()).await;
        }
        if running.is_none() {
            *running = Some(self.start()?);
        }
        let process = running.as_mut().expect("started above");
        process.awaiting = true;
        event.push(b'\n');
        let answered = tokio::time::timeout(self.timeout, exchange(process, &event)).await;
        let failed = match answered {
            Ok(Ok(line)) => {
                process.awaiting = false;
                return function_error(&line).map_or(Ok(line), Err);
            }
            Ok(Err(Exchange::Closed)) => {
                let mut process = running.take().expect("running");
                let status = match tokio::time::timeout(Duration::from_secs(5), process.child.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running with its output closed".to_owned(),
                };
                let _ = process.child.start_kill();
                return Err(CallError {
                    code: codes::FUNCTION_ERROR,
                    message: format!("the command ended without an answer ({status}); it is started again"),
                });
            }
            Ok(Err(Exchange::TooLong)) => CallError {
                code: codes::RESPONSE_TOO_LARGE,
                message: format!("the command's answer is over {PAYLOAD_LIMIT} bytes; it is restarted"),
            },
            Err(_) => CallError {
                code: codes::FUNCTION_TIMED_OUT,
                message: format!(
                    "no answer within {} seconds; the command is restarted",
                    self.timeout.as_secs()
                ),
            },
        };
        stop_process(running.take()).await;
        Err(failed)
    }
}

impl CommandInvoker {
    fn start(&self) -> Result<Running, CallError> {
        let (program, args) = self.command.split_first().expect("checked non-empty");
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| CallError {
                code: codes::FUNCTION_ERROR,
                message: format!("cannot start the command {program:?}: {err}"),
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("piped"));
        tracing::info!(command = %self.command.join(" "), pid = child.id(), "processor command started");
        Ok(Running {
            child,
            stdin,
            stdout,
            awaiting: false,
        })
    }
}

enum Exchange {
    /// The process closed its output or its input (it exited).
    Closed,
    /// The answer's line is over the payload limit.
    TooLong,
}

/// Writes `event` (one line), reads one line back, without its newline.
async fn exchange(process: &mut Running, event: &[u8]) -> Result<Vec<u8>, Exchange> {
    process.stdin.write_all(event).await.map_err(|_| Exchange::Closed)?;
    process.stdin.flush().await.map_err(|_| Exchange::Closed)?;
    let mut line = Vec::new();
    loop {
        let buffered = process.stdout.fill_buf().await.map_err(|_| Exchange::Closed)?;
        if buffered.is_empty() {
            return Err(Exchange::Closed);
        }
        let (taken, done) = match memchr::memchr(b'\n', buffered) {
            Some(end) => (end + 1, true),
            None => (buffered.len(), false),
        };
        line.extend_from_slice(&buffered[..taken]);
        process.stdout.consume(taken);
        if line.len() > PAYLOAD_LIMIT + 2 {
            return Err(Exchange::TooLong);
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

/// Lambda's error object, `{"errorMessage": ..., ...}`, as the runner
/// writes it for a handler that raised.
fn function_error(line: &[u8]) -> Option<CallError> {
    let trimmed = line.trim_ascii_start();
    if !trimmed.starts_with(b"{\"errorMessage\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ErrorObject {
        error_message: serde_json::Value,
        error_type: Option<String>,
    }
    let error: ErrorObject = serde_json::from_slice(trimmed).ok()?;
    let text = match error.error_message {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let text: String = text.chars().take(512).collect();
    Some(CallError {
        code: codes::FUNCTION_ERROR,
        message: format!(
            "function error ({}): {text}",
            error.error_type.as_deref().unwrap_or("Unhandled")
        ),
    })
}

/// Kills the process (it may be stuck), and reaps it.
async fn stop_process(running: Option<Running>) {
    let Some(mut running) = running else {
        return;
    };
    let _ = running.child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), running.child.wait()).await;
}
