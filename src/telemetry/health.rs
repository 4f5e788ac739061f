//! What one pipeline's readiness and freshness are made of: whether it
//! started (destination, checkpoint and source checked), which operations
//! are failing and since when, and the arrival time of the oldest record
//! not yet delivered.
//!
//! Ready means: the pipeline started, and no operation (a put, an HTTP
//! request, a checkpoint save, a Kinesis call) has been failing without a
//! success for longer than the retry budget: the destination's
//! `retry_duration_seconds` when it is set and above 0, else
//! [`DEFAULT_RETRY_BUDGET`]. Those that are retried until they succeed
//! (local and S3 puts by default, checkpoint saves, Kinesis reads) would
//! otherwise never say that the pipeline is stuck. A pipeline with an
//! operation failing while the memory budget is full (`crate::limits`) is
//! unready at once: its source is paused, and nothing frees memory until
//! the operation succeeds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::labels::StreamLabels;
use super::summary::Stats;

/// How long an operation may keep failing before the pipeline is unready,
/// when the destination sets no retry duration: Firehose's default for
/// HTTP endpoints.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// No record: the atomics below hold milliseconds since the epoch.
const NONE: i64 = i64::MAX;

/// Says whether the memory budget is full.
pub type MemoryProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// One pipeline's state, shared by its telemetry handles and the registry.
pub struct PipelineState {
    pub labels: StreamLabels,
    pub(super) stats: Stats,
    budget: Duration,
    started: AtomicBool,
    /// Why the pipeline stopped, if it failed.
    failed: Mutex<Option<String>>,
    /// Shards not read because their lease's state cannot be read: why.
    refused: Mutex<BTreeMap<String, String>>,
    /// Operations failing now, by id: when their first failure was.
    failing: Mutex<HashMap<u64, Instant>>,
    next_operation: AtomicU64,
    /// Whether the process's memory budget is full: full while an
    /// operation fails, the pipeline is stuck. A probe, so that telemetry
    /// needs nothing of the budget's type (which itself reports through
    /// telemetry).
    memory_full: std::sync::OnceLock<MemoryProbe>,
    /// The oldest arrival among buffered records (the router's view).
    buffered_oldest_ms: AtomicI64,
    /// The oldest arrival of each batch being delivered (the writer's
    /// view; several with concurrent puts), as a multiset: ms → batches.
    in_flight_oldest_ms: Mutex<BTreeMap<i64, usize>>,
}

impl PipelineState {
    pub fn new(stream: &str, budget: Duration) -> Self {
        Self {
            labels: StreamLabels {
                stream: stream.to_owned(),
            },
            stats: Stats::default(),
            budget,
            started: AtomicBool::new(false),
            memory_full: std::sync::OnceLock::new(),
            failed: Mutex::new(None),
            refused: Mutex::new(BTreeMap::new()),
            failing: Mutex::new(HashMap::new()),
            next_operation: AtomicU64::new(0),
            buffered_oldest_ms: AtomicI64::new(NONE),
            in_flight_oldest_ms: Mutex::new(BTreeMap::new()),
        }
    }

    pub(super) fn set_started(&self) {
        self.started.store(true, Relaxed);
    }

    pub(super) fn watch_memory(&self, full: MemoryProbe) {
        let _ = self.memory_full.set(full);
    }

    pub(super) fn set_buffered_oldest(&self, oldest: Option<DateTime<Utc>>) {
        self.buffered_oldest_ms
            .store(oldest.map_or(NONE, |t| t.timestamp_millis()), Relaxed);
    }

    /// A batch whose oldest record arrived at `oldest` is being delivered.
    pub(super) fn add_in_flight(&self, oldest: Option<DateTime<Utc>>) {
        let Some(oldest) = oldest else { return };
        let mut in_flight = self.in_flight_oldest_ms.lock().expect("not poisoned");
        *in_flight.entry(oldest.timestamp_millis()).or_default() += 1;
    }

    /// The batch [`Self::add_in_flight`] noted is delivered.
    pub(super) fn remove_in_flight(&self, oldest: Option<DateTime<Utc>>) {
        let Some(oldest) = oldest else { return };
        let mut in_flight = self.in_flight_oldest_ms.lock().expect("not poisoned");
        let ms = oldest.timestamp_millis();
        if let Some(count) = in_flight.get_mut(&ms) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&ms);
            }
        }
    }

    pub(super) fn set_failed(&self, error: String) {
        *self.failed.lock().expect("not poisoned") = Some(error);
    }

    pub(super) fn clear_in_flight(&self) {
        self.in_flight_oldest_ms.lock().expect("not poisoned").clear();
    }

    /// The arrival of the oldest record buffered or being delivered.
    pub fn oldest_undelivered(&self) -> Option<DateTime<Utc>> {
        let oldest = self.buffered_oldest_ms.load(Relaxed).min(
            self.in_flight_oldest_ms
                .lock()
                .expect("not poisoned")
                .keys()
                .next()
                .copied()
                .unwrap_or(NONE),
        );
        (oldest != NONE).then(|| DateTime::from_timestamp_millis(oldest))?
    }

    /// Why the pipeline is not ready, if it is not.
    pub fn unready_reason(&self) -> Option<String> {
        let stream = &self.labels.stream;
        if let Some(error) = &*self.failed.lock().expect("not poisoned") {
            return Some(format!("{stream}: stopped: {error}"));
        }
        if !self.started.load(Relaxed) {
            return Some(format!(
                "{stream}: starting (destination, checkpoint and source not all checked yet)"
            ));
        }
        if let Some((shard, reason)) = self.refused.lock().expect("not poisoned").iter().next() {
            return Some(format!(
                "{stream}: shard {shard} is not read: its lease's checkpoint state cannot be read: {reason}"
            ));
        }
        let failing = self.failing.lock().expect("not poisoned");
        let longest = failing.values().map(Instant::elapsed).max()?;
        if self.memory_full.get().is_some_and(|full| full()) {
            // Nothing will free memory until the failing operation
            // succeeds: the pipeline is stuck now, not after its budget.
            return Some(format!(
                "{stream}: memory budget full while an operation has been failing for {} s: sources paused, nothing dropped",
                longest.as_secs()
            ));
        }
        (longest > self.budget).then(|| {
            format!(
                "{stream}: an operation has been failing for {} s, past the retry budget of {} s",
                longest.as_secs(),
                self.budget.as_secs()
            )
        })
    }

    /// Notes a shard not read because its lease's state cannot be read.
    pub fn refuse_shard(&self, shard: &str, reason: &str) {
        self.refused
            .lock()
            .expect("not poisoned")
            .insert(shard.to_owned(), reason.to_owned());
    }

    /// A new operation whose failures count against readiness.
    pub fn operation(self: &Arc<Self>) -> Operation {
        Operation {
            state: self.clone(),
            id: self.next_operation.fetch_add(1, Relaxed),
        }
    }
}

/// An operation that may fail and be retried (a put, a request, a save, a
/// shard's reads). Its first failure starts its clock; dropping it (done,
/// given up) or [`Operation::succeeded`] stops it.
pub struct Operation {
    state: Arc<PipelineState>,
    id: u64,
}

impl Operation {
    /// A failure: the clock starts at the first one since the last success.
    pub(super) fn failed(&self) {
        self.state
            .failing
            .lock()
            .expect("not poisoned")
            .entry(self.id)
            .or_insert_with(Instant::now);
    }

    /// A success: the operation is not failing (any more).
    pub fn succeeded(&self) {
        self.state.failing.lock().expect("not poisoned").remove(&self.id);
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        self.succeeded();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_started_until_an_operation_fails_past_the_budget() {
        let state = Arc::new(PipelineState::new("s", Duration::from_millis(20)));
        assert!(state.unready_reason().unwrap().contains("starting"));
        let failed = PipelineState::new("f", DEFAULT_RETRY_BUDGET);
        failed.set_failed("destination check failed: connection refused".into());
        assert_eq!(
            failed.unready_reason().as_deref(),
            Some("f: stopped: destination check failed: connection refused"),
            "a pipeline that failed at start is not said to be starting"
        );
        state.set_started();
        assert_eq!(state.unready_reason(), None);
        let put = state.operation();
        put.failed();
        assert_eq!(state.unready_reason(), None, "within the budget");
        std::thread::sleep(Duration::from_millis(30));
        put.failed();
        assert!(state.unready_reason().unwrap().contains("past the retry budget"));
        put.succeeded();
        assert_eq!(state.unready_reason(), None);
        put.failed();
        std::thread::sleep(Duration::from_millis(30));
        assert!(state.unready_reason().is_some());
        drop(put);
        assert_eq!(state.unready_reason(), None, "a dropped operation is over");
    }

    #[test]
    fn a_full_memory_budget_with_a_failing_operation_is_unready_at_once() {
        let state = Arc::new(PipelineState::new("s", DEFAULT_RETRY_BUDGET));
        state.set_started();
        let full = Arc::new(AtomicBool::new(true));
        let probe = full.clone();
        state.watch_memory(Box::new(move || probe.load(Relaxed)));
        assert_eq!(
            state.unready_reason(),
            None,
            "full, but nothing failing: delivery frees it"
        );
        let put = state.operation();
        put.failed();
        assert!(state.unready_reason().unwrap().contains("memory budget full"));
        full.store(false, Relaxed);
        assert_eq!(
            state.unready_reason(),
            None,
            "failing within its retry budget, memory has room"
        );
    }

    #[test]
    fn the_oldest_undelivered_record_is_buffered_or_in_flight() {
        let state = PipelineState::new("s", DEFAULT_RETRY_BUDGET);
        assert_eq!(state.oldest_undelivered(), None);
        let t1 = DateTime::from_timestamp_millis(1_000).unwrap();
        let t2 = DateTime::from_timestamp_millis(2_000).unwrap();
        let t0 = DateTime::from_timestamp_millis(500).unwrap();
        state.set_buffered_oldest(Some(t2));
        state.add_in_flight(Some(t1));
        state.add_in_flight(Some(t0));
        state.add_in_flight(Some(t1));
        assert_eq!(state.oldest_undelivered(), Some(t0));
        // Batches delivered out of order: the oldest left still counts.
        state.remove_in_flight(Some(t0));
        state.remove_in_flight(Some(t1));
        assert_eq!(state.oldest_undelivered(), Some(t1));
        state.remove_in_flight(Some(t1));
        assert_eq!(state.oldest_undelivered(), Some(t2));
        state.set_buffered_oldest(None);
        assert_eq!(state.oldest_undelivered(), None);
    }
}
