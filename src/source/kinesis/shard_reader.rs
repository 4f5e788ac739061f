//! One shard, read in order: GetRecords in a loop within the shard's
//! limits, KPL records de-aggregated, throttles and failures backed off,
//! expired iterators replaced right after the last record read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use spillway_destinations::retry::RetryPolicy;
use spillway_transforms::record::{Offset, Position};
use spillway_transforms::{Record, SequenceNumber, SourceId};
use tokio::sync::mpsc;

use super::api::{KinesisApi, KinesisError, ShardInfo, StartAt};
use super::kpl::{self, Deaggregated};
use crate::source::SourceEvent;

/// Kinesis allows 5 GetRecords calls per second per shard.
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);
/// And 2 MB/s per shard.
const MAX_BYTES_PER_SECOND: f64 = 2.0 * 1024.0 * 1024.0;
/// How often a reader logs its lag.
const LAG_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How a shard reader polls.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// The wait between calls when the shard is caught up.
    pub idle_poll: Duration,
    /// GetRecords' limit.
    pub max_records: i32,
    /// Stop once the shard is caught up (`spillway run --once`).
    pub once: bool,
    /// When the run started: `--once` reads up to the tip as of then.
    pub started_at: DateTime<Utc>,
}

/// Why a reader stopped.
#[derive(Debug)]
pub enum ShardOutcome {
    /// The shard is closed and was read to its end.
    Closed,
    /// `--once`: the shard was read up to its tip.
    CaughtUp,
    /// The pipeline stopped listening.
    Stopped,
    Failed(KinesisError),
}

pub struct ShardReader {
    pub api: Arc<KinesisApi>,
    pub shard: ShardInfo,
    /// The shard's ending sequence number once a listing shows it closed
    /// (kept up to date by the coordinator).
    pub ending: Arc<std::sync::Mutex<Option<String>>>,
    pub start: StartAt,
    pub events: mpsc::Sender<SourceEvent>,
    pub options: ReaderOptions,
}

impl ShardReader {
    pub async fn run(self) -> ShardOutcome {
        let source = SourceId::new(self.shard.id.clone());
        let backoff = RetryPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            jitter: 0.25,
            give_up_after: None,
        };
        let mut failures = 0u32;
        let mut last_sequence: Option<String> = None;
        let mut iterator: Option<String> = None;
        let mut last_lag_log = Instant::now() - LAG_LOG_INTERVAL;
        tracing::info!(shard = %self.shard.id, start = ?self.start, "reading shard");
        loop {
            let current = match &iterator {
                Some(it) => it.clone(),
                None => {
                    // A fresh iterator: right after the last record read, or
                    // at the start position.
                    let start = last_sequence
                        .clone()
                        .map(StartAt::AfterSequence)
                        .unwrap_or_else(|| self.start.clone());
                    match self.api.shard_iterator(&self.shard.id, &start).await {
                        Ok(it) => {
                            iterator = Some(it.clone());
                            it
                        }
                        Err(err) => match self.back_off(err, &mut failures, &backoff).await {
                            Some(outcome) => return outcome,
                            None => continue,
                        },
                    }
                }
            };
            let called_at = Instant::now();
            let output = match self.api.get_records(&current, self.options.max_records).await {
                Ok(output) => output,
                Err(KinesisError::ExpiredIterator) => {
                    tracing::info!(shard = %self.shard.id, after = ?last_sequence, "shard iterator expired; getting a fresh one");
                    iterator = None;
                    continue;
                }
                Err(err) => match self.back_off(err, &mut failures, &backoff).await {
                    Some(outcome) => return outcome,
                    None => continue,
                },
            };
            failures = 0;
            let millis_behind = output.millis_behind_latest();
            let (records, bytes) = self.convert(&source, output.records());
            if let Some(last) = output.records().last() {
                last_sequence = Some(last.sequence_number().to_owned());
            }
            if last_lag_log.elapsed() >= LAG_LOG_INTERVAL {
                tracing::info!(shard = %self.shard.id, millis_behind_latest = ?millis_behind, "shard lag");
                last_lag_log = Instant::now();
            }
            if !records.is_empty() && self.events.send(SourceEvent::Records(records)).await.is_err() {
                return ShardOutcome::Stopped;
            }
            // Kinesis ends a closed shard with a null iterator; some
            // implementations never do, so an empty, caught-up answer after
            // the shard's ending sequence number ends it too.
            let past_end = output.records().is_empty()
                && millis_behind.is_none_or(|m| m == 0)
                && self.reached_end(last_sequence.as_deref());
            match output.next_shard_iterator().filter(|_| !past_end) {
                None => {
                    tracing::info!(shard = %self.shard.id, children = ?output.child_shards().iter().map(|c| c.shard_id()).collect::<Vec<_>>(), "shard closed and read to its end");
                    return ShardOutcome::Closed;
                }
                Some(next) => iterator = Some(next.to_owned()),
            }
            // Behind by zero, or (some implementations leave the field out)
            // an empty answer: caught up for polling purposes.
            let caught_up = millis_behind.is_none_or(|m| m == 0);
            // `--once` stops at the tip as of start: an empty answer, or a
            // record that arrived after the run started. MillisBehindLatest
            // alone is not enough: it is 0 for records put within the same
            // millisecond as the latest, while more remain.
            let past_start = output
                .records()
                .last()
                .and_then(|r| r.approximate_arrival_timestamp())
                .and_then(|t| t.to_millis().ok())
                .is_some_and(|ms| ms >= self.options.started_at.timestamp_millis());
            let at_tip = caught_up && (output.records().is_empty() || past_start);
            if self.options.once && at_tip {
                tracing::info!(shard = %self.shard.id, "shard read up to its tip");
                return ShardOutcome::CaughtUp;
            }
            // Stay within the shard's limits: 5 calls/s and 2 MB/s, shared
            // with other consumers; poll slowly when there is nothing new.
            let by_bytes = Duration::from_secs_f64(bytes as f64 / MAX_BYTES_PER_SECOND);
            let wait = if caught_up {
                self.options.idle_poll
            } else {
                MIN_CALL_INTERVAL
            }
            .max(by_bytes);
            let elapsed = called_at.elapsed();
            if wait > elapsed {
                tokio::select! {
                    () = tokio::time::sleep(wait - elapsed) => {}
                    () = self.events.closed() => return ShardOutcome::Stopped,
                }
            }
        }
    }

    /// Whether the shard is closed and the last record read is its last (or
    /// it had none from where this reader started).
    fn reached_end(&self, last_read: Option<&str>) -> bool {
        let ending = self.ending.lock().expect("not poisoned").clone();
        match (
            ending.as_deref().map(SequenceNumber::parse),
            last_read.map(SequenceNumber::parse),
        ) {
            (Some(Ok(end)), Some(Ok(last))) => last >= end,
            // Closed, and nothing at all from where this reader started.
            (Some(Ok(_)), None) => true,
            _ => false,
        }
    }

    /// Waits after a failure a retry can help; returns the outcome to end
    /// with otherwise.
    async fn back_off(&self, err: KinesisError, failures: &mut u32, policy: &RetryPolicy) -> Option<ShardOutcome> {
        if !err.is_retryable() {
            return Some(ShardOutcome::Failed(err));
        }
        *failures += 1;
        let delay = policy.delay(*failures);
        tracing::warn!(shard = %self.shard.id, attempt = *failures, retry_in = ?delay, error = %err, "kinesis call failed; backing off");
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = self.events.closed() => Some(ShardOutcome::Stopped),
        }
    }

    /// Kinesis records to spillway records, KPL records de-aggregated.
    fn convert(&self, source: &SourceId, records: &[aws_sdk_kinesis::types::Record]) -> (Vec<Record>, usize) {
        let mut out = Vec::with_capacity(records.len());
        let mut bytes = 0;
        for record in records {
            let data = record.data().as_ref();
            bytes += data.len();
            let Ok(sequence) = SequenceNumber::parse(record.sequence_number()) else {
                tracing::error!(shard = %self.shard.id, sequence = record.sequence_number(), "record with an invalid sequence number; passing it through with sequence 0");
                continue;
            };
            let arrival = record
                .approximate_arrival_timestamp()
                .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?))
                .unwrap_or_else(Utc::now);
            let outer_key = record.partition_key();
            let make = |data: Bytes, subsequence: u64, key: Option<&str>| Record {
                data,
                position: Position {
                    source: source.clone(),
                    offset: Offset::new(sequence.clone(), subsequence),
                },
                partition_key: key.map(Into::into),
                arrival,
            };
            match kpl::deaggregate(data, Some(self.shard.hash_range)) {
                Deaggregated::NotAggregated => out.push(make(Bytes::copy_from_slice(data), 0, outer_key)),
                Deaggregated::Aggregated { records, dropped } => {
                    if dropped > 0 {
                        tracing::info!(shard = %self.shard.id, sequence = %sequence, dropped, "dropped KPL user records outside the shard's hash key range, as the KCL does");
                    }
                    for user in records {
                        out.push(make(user.data, user.sub_sequence_number, Some(&user.partition_key)));
                    }
                }
                Deaggregated::Corrupt { reason } => {
                    tracing::warn!(shard = %self.shard.id, sequence = %sequence, %reason, "corrupt KPL aggregated record; archiving its bytes as one record");
                    out.push(make(Bytes::copy_from_slice(data), 0, outer_key));
                }
            }
        }
        (out, bytes)
    }
}
