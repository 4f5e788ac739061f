//! Thin, documented wrappers around the Kinesis calls spillway makes (the
//! source's reads, the destination's PutRecords), and the one place that
//! decides what an error means: whether a retry helps, and whether it is a
//! throttle, an expired iterator or a missing stream.

use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::{DateTime, Utc};

/// A Kinesis failure, by what the caller should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KinesisError {
    #[error("kinesis stream {stream} not found{where_}")]
    StreamNotFound { stream: String, where_: String },
    /// Over the shard's read limits, or KMS throttling: back off.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Iterators live five minutes: get a fresh one after the last record.
    #[error("shard iterator expired")]
    ExpiredIterator,
    /// 5xx, timeouts, broken connections: retry.
    #[error("transient kinesis failure: {0}")]
    Transient(String),
    /// Access denied, invalid arguments, KMS misconfiguration: retrying
    /// does not help.
    #[error("kinesis refused the request: {0}")]
    Permanent(String),
}

impl KinesisError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Transient(_))
    }
}

/// Classifies any SDK error of any Kinesis operation.
pub(super) fn classify<E>(err: &SdkError<E, HttpResponse>, stream: &str) -> KinesisError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // Credentials that cannot be had (none found, a broken profile) are
    // not worth a retry, whenever they are found missing.
    if let Some(problem) = spillway_destinations::aws_credentials::find_in_chain(err) {
        return KinesisError::Permanent(problem.to_string());
    }
    // The SDK's own text, one line, without what a URL may hold of secrets.
    let shown = || {
        let text = aws_smithy_types::error::display::DisplayErrorContext(err).to_string();
        spillway_destinations::redact::text_for_logs(&text).into_owned()
    };
    match err {
        SdkError::TimeoutError(_) => KinesisError::Transient("request timed out".into()),
        SdkError::DispatchFailure(_) => KinesisError::Transient(format!("cannot reach kinesis: {}", shown())),
        SdkError::ResponseError(_) => KinesisError::Transient("unreadable response".into()),
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let message = inner.message().unwrap_or_default();
            let status = Some(service.raw().status().as_u16());
            match code {
                "ResourceNotFoundException" => KinesisError::StreamNotFound {
                    stream: stream.to_owned(),
                    where_: String::new(),
                },
                "ExpiredIteratorException" => KinesisError::ExpiredIterator,
                "ProvisionedThroughputExceededException"
                | "KMSThrottlingException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "Throttling" => KinesisError::Throttled(format!("{code}: {message}")),
                "InternalFailureException" | "ServiceUnavailable" | "InternalFailure" => {
                    KinesisError::Transient(format!("{code}: {message}"))
                }
                _ if status.is_some_and(|s| s >= 500 || s == 429) => {
                    KinesisError::Transient(format!("{code}: {message}"))
                }
                _ => KinesisError::Permanent(format!("{code}: {message}")),
            }
        }
        _ => KinesisError::Transient(shown()),
    }
}

/// Which stream, by name or ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamRef::Name(name) => f.write_str(name),
            StreamRef::Arn(arn) => f.write_str(arn),
        }
    }
}

/// Where to start reading a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    TrimHorizon,
    Latest,
    AtTimestamp(DateTime<Utc>),
    AtSequence(String),
    AfterSequence(String),
}

/// What ListShards says of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
    /// Inclusive hash key range.
    pub hash_range: (u128, u128),
    /// The shard has an ending sequence number: it will be read to an end.
    pub closed: bool,
    /// Its last sequence number, once closed.
    pub ending_sequence: Option<String>,
}

/// The calls spillway makes, on one stream.
#[derive(Clone, Debug)]
pub struct KinesisApi {
    client: Client,
    stream: StreamRef,
}

impl KinesisApi {
    pub fn new(client: Client, stream: StreamRef) -> Self {
        Self { client, stream }
    }

    pub fn stream(&self) -> &StreamRef {
        &self.stream
    }

    fn error<E>(&self, err: SdkError<E, HttpResponse>) -> KinesisError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify(&err, &self.stream.to_string())
    }

    /// DescribeStreamSummary: the stream exists and is readable.
    pub async fn check_stream(&self) -> Result<(), KinesisError> {
        let request = self.client.describe_stream_summary();
        let request = match &self.stream {
            StreamRef::Name(name) => request.stream_name(name),
            StreamRef::Arn(arn) => request.stream_arn(arn),
        };
        let out = request.send().await.map_err(|e| self.error(e))?;
        let status = out.stream_description_summary().map(|s| s.stream_status().clone());
        match status {
            Some(StreamStatus::Deleting) => Err(KinesisError::StreamNotFound {
                stream: self.stream.to_string(),
                where_: " (it is being deleted)".into(),
            }),
            _ => Ok(()),
        }
    }

    /// ListShards, every page: all shards the stream still retains.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, KinesisError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = self.client.list_shards().max_results(1000);
            // With a next token, the stream must not be named again.
            let request = match (&next_token, &self.stream) {
                (Some(token), _) => request.next_token(token),
                (None, StreamRef::Name(name)) => request.stream_name(name),
                (None, StreamRef::Arn(arn)) => request.stream_arn(arn),
            };
            let out = request.send().await.map_err(|e| self.error(e))?;
            for shard in out.shards() {
                let range = shard.hash_key_range();
                let parse = |s: Option<&str>| s.and_then(|s| s.parse::<u128>().ok());
                let hash_range = (
                    parse(range.map(|r| r.starting_hash_key())).unwrap_or(0),
                    parse(range.map(|r| r.ending_hash_key())).unwrap_or(u128::MAX),
                );
                shards.push(ShardInfo {
                    id: shard.shard_id().to_owned(),
                    parents: shard
                        .parent_shard_id()
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                    hash_range,
                    closed: shard
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some(),
                    ending_sequence: shard
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .map(str::to_owned),
                });
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(shards),
            }
        }
    }

    /// GetShardIterator.
    pub async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, KinesisError> {
        let request = self.client.get_shard_iterator().shard_id(shard);
        let request = match &self.stream {
            StreamRef::Name(name) => request.stream_name(name),
            StreamRef::Arn(arn) => request.stream_arn(arn),
        };
        let request = match start {
            StartAt::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartAt::AtTimestamp(at) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(at.timestamp_millis())),
            StartAt::AtSequence(seq) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq),
            StartAt::AfterSequence(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        let out = request.send().await.map_err(|e| self.error(e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| KinesisError::Transient(format!("no shard iterator returned for {shard}")))
    }

    /// GetRecords.
    pub async fn get_records(&self, iterator: &str, limit: i32) -> Result<GetRecordsOutput, KinesisError> {
        self.client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(|e| self.error(e))
    }
}

/// What PutRecords said of one entry: `None` if it was written, else its
/// `ErrorCode` and `ErrorMessage`.
pub type EntryFailure = Option<(String, String)>;

impl KinesisApi {
    /// PutRecords: one entry per `(partition key, data)`, in order. `Ok`
    /// holds one outcome per entry, in the same order (a call that
    /// succeeds may still have failed entries: throttled, internal
    /// failures).
    pub async fn put_records(&self, entries: &[(&str, &bytes::Bytes)]) -> Result<Vec<EntryFailure>, KinesisError> {
        let request = self.client.put_records();
        let request = match &self.stream {
            StreamRef::Name(name) => request.stream_name(name),
            StreamRef::Arn(arn) => request.stream_arn(arn),
        };
        let entries_built: Result<Vec<_>, _> = entries
            .iter()
            .map(|(key, data)| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(*key)
                    .data(aws_sdk_kinesis::primitives::Blob::new(data.to_vec()))
                    .build()
            })
            .collect();
        let entries_built = entries_built.map_err(|err| KinesisError::Permanent(format!("invalid entry: {err}")))?;
        let out = request
            .set_records(Some(entries_built))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let results = out.records();
        if results.len() != entries.len() {
            // Which entries were written cannot be told: retry them all
            // (at least once).
            return Err(KinesisError::Transient(format!(
                "PutRecords answered {} entries for {} records",
                results.len(),
                entries.len()
            )));
        }
        Ok(results
            .iter()
            .map(|entry| match entry.error_code() {
                Some(code) if !code.is_empty() => {
                    Some((code.to_owned(), entry.error_message().unwrap_or_default().to_owned()))
                }
                _ => None,
            })
            .collect())
    }
}

/// Builds a client from the standard chain, with config overrides.
pub async fn client(region: Option<&str>, endpoint: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    Client::new(&loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    async fn error_for(code: &'static str, status: u16) -> KinesisError {
        let rule = mock!(Client::get_records).then_http_response(move || {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
                aws_smithy_types::body::SdkBody::from(format!(r#"{{"__type":"{code}","message":"injected"}}"#)),
            )
        });
        let client = mock_client!(aws_sdk_kinesis, RuleMode::Sequential, [&rule]);
        let api = KinesisApi::new(client, StreamRef::Name("s".into()));
        api.get_records("it", 10).await.unwrap_err()
    }

    #[tokio::test]
    async fn errors_are_classified_by_what_to_do() {
        assert!(matches!(
            error_for("ExpiredIteratorException", 400).await,
            KinesisError::ExpiredIterator
        ));
        for throttle in ["ProvisionedThroughputExceededException", "KMSThrottlingException"] {
            let err = error_for(throttle, 400).await;
            assert!(
                matches!(err, KinesisError::Throttled(_)) && err.is_retryable(),
                "{throttle}: {err:?}"
            );
        }
        let err = error_for("InternalFailureException", 500).await;
        assert!(matches!(err, KinesisError::Transient(_)), "{err:?}");
        let err = error_for("SomethingNew", 503).await;
        assert!(err.is_retryable(), "{err:?}");
        let err = error_for("AccessDeniedException", 400).await;
        assert!(
            matches!(err, KinesisError::Permanent(_)) && !err.is_retryable(),
            "{err:?}"
        );
        let err = error_for("ResourceNotFoundException", 400).await;
        assert!(matches!(err, KinesisError::StreamNotFound { .. }), "{err:?}");
        let _unused: Option<GetRecordsError> = None;
    }
}
