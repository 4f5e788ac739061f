//! The Kinesis destination's events: a window of records put, calls with
//! failed entries retried, records given up into the error output.

use std::time::Duration;

use super::{attempt, given_up, retry, Event, Operation, Stats, Telemetry};
use crate::buffer::FlushReason;
use crate::telemetry::labels::DeliveryLabels;

/// Every record of a window is settled: written to the target stream
/// (`records`), or given up into the error output (counted apart).
pub struct KinesisWindowDelivered<'a> {
    pub reason: FlushReason,
    pub window_id: &'a str,
    pub records: usize,
    pub bytes: usize,
    pub calls: u32,
    pub given_up: usize,
}

impl Event for KinesisWindowDelivered<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let stats = telemetry.stats();
        Stats::add(&stats.records_delivered, self.records as u64);
        let labels = DeliveryLabels {
            stream: telemetry.stream().to_owned(),
            destination: "kinesis".to_owned(),
            output: "data".to_owned(),
        };
        let families = &telemetry.registry.families;
        families
            .delivery_records
            .get_or_create(&labels)
            .inc_by(self.records as u64);
        families.delivery_bytes.get_or_create(&labels).inc_by(self.bytes as u64);
        attempt(telemetry, "kinesis", true);
        tracing::info!(
            reason = %self.reason,
            window_id = %self.window_id,
            records = self.records,
            bytes = self.bytes,
            calls = self.calls,
            given_up = self.given_up,
            error_records_total = Stats::get(&stats.error_records),
            "delivered"
        );
    }
}

/// Entries of a PutRecords call failed (or the whole call did): they are
/// sent again after `delay`, before any later record of their keys.
pub struct KinesisPutRetrying<'a> {
    pub operation: &'a Operation,
    pub window_id: &'a str,
    pub failed: usize,
    pub sent: usize,
    pub attempt: u32,
    pub delay: Duration,
    /// The first failure's code (`ProvisionedThroughputExceededException`,
    /// ...) and message.
    pub error_code: &'a str,
    pub error: &'a str,
}

impl Event for KinesisPutRetrying<'_> {
    fn emit(self, telemetry: &Telemetry) {
        self.operation.failed();
        attempt(telemetry, "kinesis", false);
        retry(telemetry, "kinesis_put", kind_of(self.error_code));
        tracing::warn!(
            window_id = %self.window_id,
            failed = self.failed,
            sent = self.sent,
            attempt = self.attempt,
            retry_in = ?self.delay,
            error_code = %self.error_code,
            error = %self.error,
            "kinesis put failed for some records; retrying them"
        );
    }
}

/// Records the target stream did not take (over a limit, refused, or
/// failing past the retry duration): they go to the error output.
pub struct KinesisRecordsGaveUp<'a> {
    pub window_id: &'a str,
    pub records: usize,
    pub error_code: &'a str,
    pub error: &'a str,
}

impl Event for KinesisRecordsGaveUp<'_> {
    fn emit(self, telemetry: &Telemetry) {
        given_up(telemetry, "kinesis");
        tracing::error!(
            window_id = %self.window_id,
            records = self.records,
            error_code = %self.error_code,
            error = %self.error,
            "kinesis did not take these records; writing them as delivery-failed error output"
        );
    }
}

/// A bounded set of labels for the retries metric.
fn kind_of(code: &str) -> &'static str {
    match code {
        "ProvisionedThroughputExceededException" | "KMSThrottlingException" | "Throttled" => "throttled",
        "InternalFailure" | "Transient" => "transient",
        _ => "other",
    }
}
