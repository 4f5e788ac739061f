//! One type per thing that happens in a pipeline and that an operator
//! sees: each [`Event::emit`] writes its log line (if it has one) and
//! counts it, in the metrics and in the run's summary, in one place. The
//! components only build the event and hand it to [`Telemetry::emit`].
//!
//! The log lines keep their messages and fields: tests and operators read
//! them. The metric names are in [`super::registry`] and docs/operations.md's table.

use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::labels::{
    AttemptLabels, DeliveryLabels, DestinationLabels, ErrorLabels, FlushLabels, RetryLabels, ShardLabels,
};
use super::{Operation, RunSummary, Stats, Telemetry};
use crate::buffer::FlushReason;

mod kinesis_put;
mod leases;
mod memory;
pub use kinesis_put::{KinesisPutRetrying, KinesisRecordsGaveUp, KinesisWindowDelivered};
pub use leases::{LeaseWon, LeasesHeld, ShardLost, ShardRefused};
pub use memory::{MemoryBudgetSet, MemoryObserved, MemoryPaused, MemoryResumed};

/// Something that happened, logged and counted by [`Event::emit`].
pub trait Event {
    fn emit(self, telemetry: &Telemetry);
}

/// The pipeline checked its destination, checkpoint and source, and
/// starts reading: from now on it is ready (see [`super::health`]).
pub struct Started<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub checkpoint: &'a str,
    pub buffer_bytes: usize,
    pub buffer_seconds: f64,
}

impl Event for Started<'_> {
    fn emit(self, telemetry: &Telemetry) {
        tracing::info!(
            stream = %telemetry.stream(),
            source = %self.source,
            destination = %self.destination,
            checkpoint = %self.checkpoint,
            buffer_bytes = self.buffer_bytes,
            buffer_seconds = self.buffer_seconds,
            "starting"
        );
        telemetry.state.set_started();
    }
}

/// Records came from the source (valid or not; already delivered or not).
pub struct RecordsReceived {
    pub records: usize,
    pub bytes: usize,
}

impl Event for RecordsReceived {
    fn emit(self, telemetry: &Telemetry) {
        let labels = &telemetry.state.labels;
        let families = &telemetry.registry.families;
        families
            .incoming_records
            .get_or_create(labels)
            .inc_by(self.records as u64);
        families.incoming_bytes.get_or_create(labels).inc_by(self.bytes as u64);
        Stats::add(&telemetry.stats().records_read, self.records as u64);
    }
}

/// Records an earlier run delivered, read again and skipped.
pub struct RecordsSkipped {
    pub records: usize,
}

impl Event for RecordsSkipped {
    fn emit(self, telemetry: &Telemetry) {
        let families = &telemetry.registry.families;
        families
            .records_skipped
            .get_or_create(&telemetry.state.labels)
            .inc_by(self.records as u64);
        Stats::add(&telemetry.stats().records_skipped, self.records as u64);
    }
}

/// Records a processor dropped on purpose (a jq filter's `select`, a
/// CloudWatch Logs control message): checkpointed, written nowhere.
pub struct RecordsDropped {
    pub records: usize,
}

impl Event for RecordsDropped {
    fn emit(self, telemetry: &Telemetry) {
        let families = &telemetry.registry.families;
        families
            .records_dropped
            .get_or_create(&telemetry.state.labels)
            .inc_by(self.records as u64);
        Stats::add(&telemetry.stats().records_dropped, self.records as u64);
    }
}

/// Records became error records of `output_type` (refused when read or
/// checked, refused by the format, or their delivery given up).
pub struct ErrorRecordsMade<'a> {
    pub output_type: &'a str,
    pub records: usize,
}

impl Event for ErrorRecordsMade<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let labels = ErrorLabels {
            stream: telemetry.stream().to_owned(),
            output_type: self.output_type.to_owned(),
        };
        let families = &telemetry.registry.families;
        families
            .error_records
            .get_or_create(&labels)
            .inc_by(self.records as u64);
        Stats::add(&telemetry.stats().error_records, self.records as u64);
    }
}

/// What the buffers hold now (the router says so every second and after
/// each flush): buffered bytes, and the oldest record's arrival.
pub struct BuffersObserved {
    pub buffered_bytes: usize,
    pub oldest_arrival: Option<DateTime<Utc>>,
}

impl Event for BuffersObserved {
    fn emit(self, telemetry: &Telemetry) {
        let families = &telemetry.registry.families;
        families
            .buffered_bytes
            .get_or_create(&telemetry.state.labels)
            .set(self.buffered_bytes as i64);
        telemetry.state.set_buffered_oldest(self.oldest_arrival);
    }
}

/// The periodic "buffer lag" line: how long the oldest unflushed record has
/// waited.
pub struct BufferLag {
    pub oldest_unflushed_age_ms: i64,
    pub buffered_bytes: usize,
}

impl Event for BufferLag {
    fn emit(self, _: &Telemetry) {
        tracing::info!(
            oldest_unflushed_age_ms = self.oldest_unflushed_age_ms,
            buffered_bytes = self.buffered_bytes,
            "buffer lag"
        );
    }
}

/// The writer took a flushed buffer: it is delivered from now on.
pub struct BatchTaken {
    pub reason: FlushReason,
    pub oldest_arrival: Option<DateTime<Utc>>,
}

impl Event for BatchTaken {
    fn emit(self, telemetry: &Telemetry) {
        let labels = FlushLabels {
            stream: telemetry.stream().to_owned(),
            reason: self.reason.as_str().to_owned(),
        };
        telemetry.registry.families.flushes.get_or_create(&labels).inc();
        if self.reason == FlushReason::MemoryLimit {
            Stats::add(&telemetry.stats().memory_limit_flushes, 1);
        }
        telemetry.state.add_in_flight(self.oldest_arrival);
    }
}

/// The writer is done with a batch: delivered (or written as error
/// records), checkpointed. Batches are done in any order (concurrent
/// puts): `oldest_arrival` is the one [`BatchTaken`] had.
pub struct BatchDone {
    pub oldest_arrival: Option<DateTime<Utc>>,
}

impl Event for BatchDone {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.state.remove_in_flight(self.oldest_arrival);
    }
}

/// An object was written (or found written by an earlier attempt).
pub struct ObjectDelivered<'a> {
    pub reason: FlushReason,
    /// `local` or `s3`.
    pub destination: &'a str,
    /// `data`, or the error output type.
    pub output: &'a str,
    pub key: &'a dyn Display,
    pub records: usize,
    pub buffer_bytes: usize,
    pub object_bytes: usize,
    pub already_existed: bool,
    /// Its records became error records when it was made (not counted
    /// before).
    pub new_errors: bool,
}

impl Event for ObjectDelivered<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let stats = telemetry.stats();
        if self.output == "data" {
            Stats::add(&stats.records_delivered, self.records as u64);
        }
        if self.new_errors {
            telemetry.emit(ErrorRecordsMade {
                output_type: self.output,
                records: self.records,
            });
        }
        Stats::add(&stats.objects_written, 1);
        let families = &telemetry.registry.families;
        let labels = DeliveryLabels {
            stream: telemetry.stream().to_owned(),
            destination: self.destination.to_owned(),
            output: self.output.to_owned(),
        };
        families
            .delivery_records
            .get_or_create(&labels)
            .inc_by(self.records as u64);
        families
            .delivery_bytes
            .get_or_create(&labels)
            .inc_by(self.object_bytes as u64);
        families.delivery_objects.get_or_create(&labels).inc();
        attempt(telemetry, self.destination, true);
        tracing::info!(
            reason = %self.reason,
            output = self.output,
            key = %self.key,
            records = self.records,
            buffer_bytes = self.buffer_bytes,
            object_bytes = self.object_bytes,
            already_existed = self.already_existed,
            error_records_total = Stats::get(&stats.error_records),
            "flushed"
        );
    }
}

/// A record endpoint took a request.
pub struct RequestDelivered<'a> {
    pub reason: FlushReason,
    pub request_id: &'a str,
    pub records: usize,
    pub request_bytes: usize,
    pub attempts: u32,
    /// Whether its records count as delivered here (with `backup_mode =
    /// "all"` the backup object counts them).
    pub counts_records: bool,
}

impl Event for RequestDelivered<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let stats = telemetry.stats();
        if self.counts_records {
            Stats::add(&stats.records_delivered, self.records as u64);
        }
        let families = &telemetry.registry.families;
        let labels = DeliveryLabels {
            stream: telemetry.stream().to_owned(),
            destination: "http".to_owned(),
            output: "data".to_owned(),
        };
        families
            .delivery_records
            .get_or_create(&labels)
            .inc_by(self.records as u64);
        families
            .delivery_bytes
            .get_or_create(&labels)
            .inc_by(self.request_bytes as u64);
        attempt(telemetry, "http", true);
        tracing::info!(
            reason = %self.reason,
            request_id = %self.request_id,
            records = self.records,
            request_bytes = self.request_bytes,
            attempts = self.attempts,
            error_records_total = Stats::get(&stats.error_records),
            "delivered"
        );
    }
}

/// A put failed and is tried again after `delay`.
pub struct PutRetrying<'a> {
    pub operation: &'a Operation,
    pub destination: &'a str,
    pub key: &'a dyn Display,
    pub attempt: u32,
    pub delay: Duration,
    pub error: &'a spillway_destinations::Error,
}

impl Event for PutRetrying<'_> {
    fn emit(self, telemetry: &Telemetry) {
        self.operation.failed();
        attempt(telemetry, self.destination, false);
        retry(telemetry, "put", put_error_kind(self.error));
        tracing::warn!(key = %self.key, attempt = self.attempt, retry_in = ?self.delay, error = %self.error, "put failed; retrying");
    }
}

/// A put failed past the retry duration: its records become
/// `delivery-failed` error records.
pub struct PutGaveUp<'a> {
    pub destination: &'a str,
    pub key: &'a dyn Display,
    pub records: usize,
    pub attempts: u32,
    pub error: &'a spillway_destinations::Error,
}

impl Event for PutGaveUp<'_> {
    fn emit(self, telemetry: &Telemetry) {
        attempt(telemetry, self.destination, false);
        given_up(telemetry, self.destination);
        tracing::error!(
            key = %self.key,
            records = self.records,
            attempts = self.attempts,
            error = %self.error,
            "put failed past the retry duration; writing its records as error output"
        );
    }
}

/// A request to a record endpoint failed and is sent again after `delay`.
pub struct RequestRetrying<'a> {
    pub operation: &'a Operation,
    pub request_id: &'a str,
    pub attempt: u32,
    pub delay: Duration,
    pub error: &'a spillway_destinations::http::HttpError,
}

impl Event for RequestRetrying<'_> {
    fn emit(self, telemetry: &Telemetry) {
        self.operation.failed();
        attempt(telemetry, "http", false);
        retry(telemetry, "http_request", self.error.error_code());
        tracing::warn!(
            request_id = %self.request_id,
            attempt = self.attempt,
            retry_in = ?self.delay,
            error_code = self.error.error_code(),
            error = %self.error,
            "http request failed; retrying"
        );
    }
}

/// A record endpoint did not take a request within the retry duration (or
/// refused it for good): its records go to the backup as error records.
pub struct RequestGaveUp<'a> {
    pub request_id: &'a str,
    pub records: usize,
    pub attempts: u32,
    pub error: &'a spillway_destinations::http::HttpError,
}

impl Event for RequestGaveUp<'_> {
    fn emit(self, telemetry: &Telemetry) {
        attempt(telemetry, "http", false);
        given_up(telemetry, "http");
        tracing::error!(
            request_id = %self.request_id,
            records = self.records,
            attempts = self.attempts,
            error_code = self.error.error_code(),
            error = %self.error,
            "http endpoint did not take the request; backing its records up as http-endpoint-failed"
        );
    }
}

/// Saving the checkpoint file failed and is tried again.
pub struct CheckpointSaveRetrying<'a> {
    pub operation: &'a Operation,
    pub attempt: u32,
    pub delay: Duration,
    pub error: &'a crate::checkpoint::StoreError,
}

impl Event for CheckpointSaveRetrying<'_> {
    fn emit(self, telemetry: &Telemetry) {
        self.operation.failed();
        retry(telemetry, "checkpoint_save", "io");
        tracing::warn!(attempt = self.attempt, retry_in = ?self.delay, error = %self.error, "checkpoint save failed; retrying");
    }
}

/// Which Kinesis call a shard reader made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KinesisCall {
    GetRecords,
    GetShardIterator,
}

impl KinesisCall {
    fn as_str(self) -> &'static str {
        match self {
            Self::GetRecords => "get_records",
            Self::GetShardIterator => "get_shard_iterator",
        }
    }
}

/// A shard reader's call failed in a way a retry can help (a throttle, a
/// 5xx): it waits `delay` and calls again.
pub struct KinesisCallRetrying<'a> {
    pub operation: &'a Operation,
    pub shard: &'a str,
    pub call: KinesisCall,
    pub attempt: u32,
    pub delay: Duration,
    pub error: &'a crate::source::kinesis::api::KinesisError,
}

impl Event for KinesisCallRetrying<'_> {
    fn emit(self, telemetry: &Telemetry) {
        use crate::source::kinesis::api::KinesisError;
        self.operation.failed();
        let throttled = matches!(self.error, KinesisError::Throttled(_));
        if throttled && self.call == KinesisCall::GetRecords {
            let families = &telemetry.registry.families;
            families
                .throttled_get_records
                .get_or_create(&telemetry.state.labels)
                .inc();
        }
        retry(
            telemetry,
            self.call.as_str(),
            if throttled { "throttled" } else { "transient" },
        );
        tracing::warn!(shard = %self.shard, attempt = self.attempt, retry_in = ?self.delay, error = %self.error, "kinesis call failed; backing off");
    }
}

/// A GetRecords answer's `MillisBehindLatest` (`None`: left out).
pub struct ShardRead<'a> {
    pub shard: &'a str,
    pub millis_behind: Option<i64>,
}

impl Event for ShardRead<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let Some(millis) = self.millis_behind else {
            return;
        };
        let labels = ShardLabels {
            stream: telemetry.stream().to_owned(),
            shard: self.shard.to_owned(),
        };
        let families = &telemetry.registry.families;
        families.kinesis_millis_behind_latest.get_or_create(&labels).set(millis);
    }
}

/// The periodic "shard lag" line of a shard reader.
pub struct ShardLag<'a> {
    pub shard: &'a str,
    pub millis_behind: Option<i64>,
}

impl Event for ShardLag<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::info!(shard = %self.shard, millis_behind_latest = ?self.millis_behind, "shard lag");
    }
}

/// A shard is closed and was read to its end: it has no lag any more.
pub struct ShardClosed<'a> {
    pub shard: &'a str,
    pub children: Vec<&'a str>,
}

impl Event for ShardClosed<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let labels = ShardLabels {
            stream: telemetry.stream().to_owned(),
            shard: self.shard.to_owned(),
        };
        telemetry.registry.families.kinesis_millis_behind_latest.remove(&labels);
        tracing::info!(shard = %self.shard, children = ?self.children, "shard closed and read to its end");
    }
}

/// The run stopped on an error (one of several pipelines in a process:
/// the others run on). The caller prints the error; readiness keeps it.
pub struct RunFailed<'a> {
    pub error: &'a dyn std::error::Error,
}

impl Event for RunFailed<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.state.set_failed(self.error.to_string());
    }
}

/// The run is over: everything read is delivered and checkpointed.
pub struct RunFinished<'a> {
    pub summary: &'a RunSummary,
}

impl Event for RunFinished<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let summary = self.summary;
        telemetry.state.set_buffered_oldest(None);
        telemetry.state.clear_in_flight();
        tracing::info!(
            ended_by = %summary.ended_by,
            records_read = summary.records_read,
            records_delivered = summary.records_delivered,
            records_skipped = summary.records_skipped,
            records_dropped = summary.records_dropped,
            error_records = summary.error_records,
            objects_written = summary.objects_written,
            memory_limit_flushes = summary.memory_limit_flushes,
            "run finished"
        );
    }
}

fn attempt(telemetry: &Telemetry, destination: &str, success: bool) {
    let labels = AttemptLabels {
        stream: telemetry.stream().to_owned(),
        destination: destination.to_owned(),
        result: if success { "success" } else { "failure" }.to_owned(),
    };
    telemetry
        .registry
        .families
        .delivery_attempts
        .get_or_create(&labels)
        .inc();
}

fn given_up(telemetry: &Telemetry, destination: &str) {
    let labels = DestinationLabels {
        stream: telemetry.stream().to_owned(),
        destination: destination.to_owned(),
    };
    telemetry
        .registry
        .families
        .deliveries_given_up
        .get_or_create(&labels)
        .inc();
}

fn retry(telemetry: &Telemetry, operation: &str, kind: &str) {
    let labels = RetryLabels {
        stream: telemetry.stream().to_owned(),
        operation: operation.to_owned(),
        kind: kind.to_owned(),
    };
    telemetry.registry.families.retries.get_or_create(&labels).inc();
}

/// The kind of a put's error, as a label: a bounded set of names.
fn put_error_kind(error: &spillway_destinations::Error) -> &'static str {
    use spillway_destinations::Error;
    match error {
        Error::AlreadyExists { .. } => "already_exists",
        Error::PermissionDenied { .. } => "permission_denied",
        Error::Misconfigured { .. } => "misconfigured",
        Error::TooLarge { .. } => "too_large",
        Error::Transient { .. } => "transient",
        _ => "other",
    }
}
