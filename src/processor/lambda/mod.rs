//! The `lambda` processor: a Firehose processing Lambda, called through the
//! Lambda Invoke API (any server of it: AWS, the runtime emulator, a test
//! peer) exactly as Firehose calls it, so existing functions run unchanged.
//!
//! The contract and the retries are [`contract`](super::contract)'s; this
//! module is the call, and the one place that decides which Firehose error
//! code an Invoke failure is.

pub mod config;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use tokio_util::sync::CancellationToken;

use super::config::{BuildContext, KeysProduced, ProcessorSpec};
use super::contract::{codes, source_stream_arn, Backoff, CallError, Context, Invoke, Runner};
use super::{Input, Outcome, ProcessError, Processor};
pub use config::{LambdaConfig, LambdaSettings};

/// Firehose's longest Lambda call: five minutes, then a timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a `lambda` processor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("lambda function {function:?}: no AWS region: set the processor's region or AWS_REGION")]
    NoRegion { function: String },
}

/// A `lambda` processor.
pub struct LambdaProcessor {
    runner: Runner<LambdaInvoker>,
}

impl LambdaProcessor {
    /// A client from the standard AWS chain with the config's region and
    /// endpoint, without the SDK's own retries (each call is one attempt,
    /// counted as Firehose counts them). `delivery_stream` and
    /// `source_stream_arn` go into every event.
    pub async fn new(
        config: &LambdaConfig,
        delivery_stream: &str,
        source_stream_arn: Option<String>,
    ) -> Result<Self, LambdaError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(CALL_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(LambdaError::NoRegion {
                function: config.function.clone(),
            });
        };
        let invoker = LambdaInvoker {
            client: Client::new(&shared),
            function: config.function.clone(),
        };
        Ok(Self::with_invoker(
            invoker,
            config,
            Context::new(delivery_stream, &region, source_stream_arn),
        ))
    }

    fn with_invoker(invoker: LambdaInvoker, config: &LambdaConfig, context: Context) -> Self {
        Self {
            runner: Runner {
                invoker,
                context,
                batching: config.batching,
                backoff: Backoff::from_env(),
                lambda_arn: Some(config.function.clone()),
                name: format!("lambda function {:?}", config.function),
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
impl Processor for LambdaProcessor {
    fn describe(&self) -> String {
        self.runner.name.clone()
    }

    async fn process(&self, inputs: &[Input<'_>], stop: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        self.runner.process(inputs, stop).await
    }
}

#[async_trait]
impl ProcessorSpec for LambdaConfig {
    fn kind(&self) -> &'static str {
        "lambda"
    }

    fn keys_produced(&self) -> KeysProduced {
        KeysProduced::FromLambda
    }

    async fn build(&self, context: &BuildContext<'_>) -> Result<std::sync::Arc<dyn Processor>, String> {
        let source = source_stream_arn(context.source, self.region.as_deref());
        let processor = LambdaProcessor::new(self, context.stream, source)
            .await
            .map_err(|err| err.to_string())?;
        Ok(std::sync::Arc::new(processor))
    }
}

struct LambdaInvoker {
    client: Client,
    function: String,
}

#[async_trait]
impl Invoke for LambdaInvoker {
    async fn invoke(&self, event: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let sent = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(event))
            .send()
            .await;
        let output = sent.map_err(classify)?;
        let payload = output.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
        if let Some(kind) = output.function_error() {
            return Err(CallError {
                code: codes::FUNCTION_ERROR,
                message: format!("function error ({kind}): {}", excerpt(&payload)),
            });
        }
        Ok(payload)
    }
}

/// The Firehose error code of a failed Invoke call. Messages carry the
/// service's code and message, never the request (nor the endpoint, which
/// may hold credentials).
fn classify(err: SdkError<aws_sdk_lambda::operation::invoke::InvokeError, HttpResponse>) -> CallError {
    match &err {
        SdkError::TimeoutError(_) => CallError {
            code: codes::FUNCTION_TIMED_OUT,
            message: format!("no answer within {} seconds", CALL_TIMEOUT.as_secs()),
        },
        SdkError::DispatchFailure(failure) => CallError {
            code: codes::SERVICE_EXCEPTION,
            message: format!(
                "the Lambda endpoint could not be reached ({})",
                if failure.is_timeout() {
                    "connect timeout"
                } else if failure.is_io() {
                    "connection failed"
                } else {
                    "dispatch failure"
                }
            ),
        },
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let name = inner.code().unwrap_or("unknown error");
            let message = format!("{name}: {}", inner.message().unwrap_or_default());
            let status = service.raw().status().as_u16();
            let code = match name {
                _ if status == 429 => codes::INVOKE_LIMIT_EXCEEDED,
                "TooManyRequestsException" | "EC2ThrottledException" => codes::INVOKE_LIMIT_EXCEEDED,
                "ResourceNotFoundException" => codes::RESOURCE_NOT_FOUND,
                "AccessDeniedException" | "KMSAccessDeniedException" => codes::INVOKE_ACCESS_DENIED,
                _ if status >= 500 => codes::SERVICE_EXCEPTION,
                _ => codes::FUNCTION_ERROR,
            };
            CallError { code, message }
        }
        _ => CallError {
            code: codes::SERVICE_EXCEPTION,
            message: "the Lambda service's answer could not be read".to_owned(),
        },
    }
}

/// The start of an error payload, for a message.
fn excerpt(payload: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]);
    if payload.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}
