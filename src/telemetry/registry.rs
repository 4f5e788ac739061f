//! The metrics of every pipeline in the process, in one Prometheus
//! registry, and the pipelines whose health `/health/ready` reports.
//!
//! Names follow Firehose's CloudWatch metrics where one exists, so that a
//! dashboard translates (the table is in docs/operations.md, "Metrics and health"); every series
//! carries the pipeline's name as `stream`. Only [`super::events`] changes
//! them: a value here is what some event counted, never a second count
//! kept beside a log line.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::health::PipelineState;
use super::labels::*;

/// Seconds, as Firehose's `DataFreshness`.
pub type SecondsGauge = Gauge<f64, AtomicU64>;

/// The metric families. Counters end in `_total` in the exposition
/// (prometheus-client adds it); the names below are without it.
#[derive(Default)]
pub struct Families {
    pub incoming_records: Family<StreamLabels, Counter>,
    pub incoming_bytes: Family<StreamLabels, Counter>,
    pub records_skipped: Family<StreamLabels, Counter>,
    pub records_dropped: Family<StreamLabels, Counter>,
    pub kinesis_millis_behind_latest: Family<ShardLabels, Gauge>,
    pub throttled_get_records: Family<StreamLabels, Counter>,
    pub delivery_records: Family<DeliveryLabels, Counter>,
    pub delivery_bytes: Family<DeliveryLabels, Counter>,
    pub delivery_objects: Family<DeliveryLabels, Counter>,
    pub delivery_attempts: Family<AttemptLabels, Counter>,
    pub deliveries_given_up: Family<DestinationLabels, Counter>,
    pub data_freshness_seconds: Family<StreamLabels, SecondsGauge>,
    pub flushes: Family<FlushLabels, Counter>,
    pub error_records: Family<ErrorLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub buffered_bytes: Family<StreamLabels, Gauge>,
    pub memory_used_bytes: Family<StreamLabels, Gauge>,
    pub memory_budget_bytes: Family<StreamLabels, Gauge>,
    pub leases_held: Family<StreamLabels, Gauge>,
    pub leases_taken: Family<StreamLabels, Counter>,
    pub leases_lost: Family<LossLabels, Counter>,
    pub leases_refused: Family<StreamLabels, Counter>,
}

/// The process's metrics and pipelines.
pub struct Registry {
    registry: prometheus_client::registry::Registry,
    pub(super) families: Families,
    pipelines: Mutex<Vec<Arc<PipelineState>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let families = Families::default();
        let mut registry = prometheus_client::registry::Registry::with_prefix("spillway");
        let f = &families;
        registry.register(
            "incoming_records",
            "Records read from the source (Firehose IncomingRecords)",
            f.incoming_records.clone(),
        );
        registry.register(
            "incoming_bytes",
            "Bytes of records read from the source (Firehose IncomingBytes)",
            f.incoming_bytes.clone(),
        );
        registry.register(
            "records_skipped",
            "Records read again that an earlier run had delivered, skipped",
            f.records_skipped.clone(),
        );
        registry.register(
            "records_dropped",
            "Records a processor dropped on purpose (Firehose's Dropped result)",
            f.records_dropped.clone(),
        );
        registry.register(
            "kinesis_millis_behind_latest",
            "Milliseconds the shard's last read is behind its tip (Firehose KinesisMillisBehindLatest)",
            f.kinesis_millis_behind_latest.clone(),
        );
        registry.register(
            "throttled_get_records",
            "GetRecords calls throttled by Kinesis (Firehose ThrottledGetRecords)",
            f.throttled_get_records.clone(),
        );
        registry.register(
            "delivery_records",
            "Records delivered, by destination and output (Firehose DeliveryToS3.Records)",
            f.delivery_records.clone(),
        );
        registry.register(
            "delivery_bytes",
            "Bytes delivered: objects as written, requests as sent (Firehose DeliveryToS3.Bytes)",
            f.delivery_bytes.clone(),
        );
        registry.register(
            "delivery_objects",
            "Objects written, by destination and output (Firehose DeliveryToS3.ObjectCount)",
            f.delivery_objects.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Puts and requests by result; success / all is Firehose DeliveryToS3.Success",
            f.delivery_attempts.clone(),
        );
        registry.register(
            "deliveries_given_up",
            "Deliveries given up past the retry duration, their records written as error records",
            f.deliveries_given_up.clone(),
        );
        registry.register(
            "data_freshness_seconds",
            "Age of the oldest record read and not yet delivered (Firehose DataFreshness)",
            f.data_freshness_seconds.clone(),
        );
        registry.register("flushes", "Buffers flushed, by reason", f.flushes.clone());
        registry.register(
            "error_records",
            "Records made error records, by error output type",
            f.error_records.clone(),
        );
        registry.register(
            "retries",
            "Failed attempts that are retried, by operation and error kind",
            f.retries.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Bytes of record data in the buffers",
            f.buffered_bytes.clone(),
        );
        registry.register(
            "memory_used_bytes",
            "Bytes the pipeline holds against its share of the memory budget (limits.memory_mb)",
            f.memory_used_bytes.clone(),
        );
        registry.register(
            "memory_budget_bytes",
            "The pipeline's share of the memory budget (limits.memory_mb)",
            f.memory_budget_bytes.clone(),
        );
        registry.register(
            "leases_held",
            "Shards whose lease this instance holds ([coordination]; KCL CurrentLeases)",
            f.leases_held.clone(),
        );
        registry.register(
            "leases_taken",
            "Leases this instance won, free, expired or taken to balance the load ([coordination]; KCL TakenLeases)",
            f.leases_taken.clone(),
        );
        registry.register(
            "leases_lost",
            "Leases this instance lost, by reason: taken (another instance wrote it) or unproven (not renewed for a lease duration)",
            f.leases_lost.clone(),
        );
        registry.register(
            "leases_refused",
            "Leases given up because their checkpoint state cannot be read by this build (another version's, or damaged)",
            f.leases_refused.clone(),
        );
        Self {
            registry,
            families,
            pipelines: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn add_pipeline(&self, state: Arc<PipelineState>) {
        self.pipelines.lock().expect("not poisoned").push(state);
    }

    /// The metrics in the OpenMetrics text format (which Prometheus
    /// reads), with the gauges that are ages brought up to now.
    pub fn encode(&self) -> String {
        let now = chrono::Utc::now();
        for pipeline in self.pipelines.lock().expect("not poisoned").iter() {
            let age = pipeline
                .oldest_undelivered()
                .map_or(0.0, |oldest| (now - oldest).num_milliseconds().max(0) as f64 / 1000.0);
            self.families
                .data_freshness_seconds
                .get_or_create(&pipeline.labels)
                .set(age);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// Whether every pipeline is ready (and there is one); otherwise the
    /// reasons, one per pipeline that is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let pipelines = self.pipelines.lock().expect("not poisoned");
        if pipelines.is_empty() {
            return Err(vec!["no pipeline has started".to_owned()]);
        }
        let reasons: Vec<String> = pipelines.iter().filter_map(|p| p.unready_reason()).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}
