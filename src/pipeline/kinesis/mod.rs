//! Delivery to a Kinesis data stream: records are put with PutRecords, per
//! partition key in the order they were read, backed up to objects (the
//! error output). It follows the steps every delivery shares
//! ([`super::delivery`]), like the HTTP endpoint (`endpoint.rs`).
//!
//! A batch is cut into windows of at most 500 records and 5 MiB (one
//! PutRecords' worth). Each window has an intent in the checkpoint, keyed
//! `kinesis/<window id>`; its records are sent in calls that never hold
//! two records of one key ([`order`]), only the failed entries of a call
//! are sent again, after a backoff with jitter (from 200 ms, doubling, up
//! to 10 s, 30 % either way); once every record of the window is written
//! (or given up) the checkpoint advances past it. With coordination, a
//! window of a shard whose lease is lost is not sent at all (its next
//! owner sends it), asked after its intent is saved.
//!
//! A record the stream cannot take (over 1 MiB with its key, a key that is
//! not 1 to 256 characters), one the stream refuses for good, and one that
//! keeps failing past `retry_duration_seconds`, goes to the backup as a
//! `delivery-failed` error record with the failure's code
//! (`Kinesis.RecordTooLarge`, `ProvisionedThroughputExceededException`,
//! ...); the records of its key after it still go to the stream, in order.
//!
//! Delivery is at least once: a run killed during a window sends the whole
//! window again at its next start, so at most one window (500 records)
//! repeats, each repeat after the first copy of its key's earlier records.

pub mod config;
mod order;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use spillway_destinations::http::request_id;
use spillway_destinations::retry::RetryPolicy;
use spillway_destinations::ObjectKey;
use spillway_transforms::{ErrorOutputType, Record, Rejection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::config::{KeyFailure, PartitionKey};
use self::order::Schedule;
use super::delivery::{blocking, Delivery, FlushInfo};
use super::RunError;
use crate::checkpoint::{Claims, Ticket};
use crate::config::KinesisDestination;
use crate::source::kinesis::api::{self, KinesisApi, KinesisError};
use crate::telemetry::events::{KinesisPutRetrying, KinesisRecordsGaveUp, KinesisWindowDelivered};

/// One window's records, their keys (or why a record has none) and
/// their checkpoint tickets, index for index.
struct Window {
    records: Vec<Record>,
    keys: Vec<String>,
    key_failures: Vec<Option<Rejection>>,
    tickets: Vec<Ticket>,
}

/// PutRecords' limits: records and bytes (data and keys) per call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// The most a record may hold, its data and its partition key together.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A partition key is 1 to 256 Unicode characters.
const MAX_KEY_CHARS: usize = 256;

pub(super) struct KinesisDelivery {
    api: KinesisApi,
    partition_key: PartitionKey,
    /// The backoff between calls with failures (its `give_up_after` is the
    /// retry duration, counted per record from its first failure).
    retry: RetryPolicy,
    stop: CancellationToken,
    max_records_per_second: Option<u32>,
    pacer: Option<tokio::sync::Mutex<Pacer>>,
}

impl KinesisDelivery {
    pub async fn new(config: &KinesisDestination, stop: &CancellationToken) -> Self {
        let client = api::client(config.region.as_deref(), config.endpoint.as_deref()).await;
        Self {
            api: KinesisApi::new(client, config.stream.clone()),
            partition_key: config.partition_key.clone(),
            retry: RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
                jitter: 0.3,
                give_up_after: Some(config.retry_duration),
                stop: Some(stop.clone()),
            },
            stop: stop.clone(),
            max_records_per_second: config.max_records_per_second,
            pacer: config
                .max_records_per_second
                .map(|rate| tokio::sync::Mutex::new(Pacer::new(rate))),
        }
    }

    /// The target stream exists and is not being deleted.
    pub async fn check(&self) -> Result<(), KinesisError> {
        self.api.check_stream().await
    }

    pub fn describe(&self) -> String {
        format!("kinesis stream {}", self.api.stream())
    }

    /// Delivers one data batch, window by window.
    pub async fn deliver(
        &self,
        backup: &Delivery,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        let (keys, key_failures): (Vec<String>, Vec<Option<Rejection>>) = self
            .keys_of(&records)
            .await
            .into_iter()
            .map(|key| match key {
                Ok(key) => (key, None),
                Err((code, message)) => (String::new(), Some(rejection(code, message))),
            })
            .unzip();
        let (mut records, mut keys, mut key_failures, mut tickets) = (records, keys, key_failures, tickets);
        while !records.is_empty() {
            let len = window_len(&records, &keys);
            let rest = (
                records.split_off(len),
                keys.split_off(len),
                key_failures.split_off(len),
                tickets.split_off(len),
            );
            let window = Window {
                records,
                keys,
                key_failures,
                tickets,
            };
            self.deliver_window(backup, window, info).await?;
            (records, keys, key_failures, tickets) = rest;
        }
        Ok(())
    }

    /// Each record's partition key, or why it has none.
    async fn keys_of(&self, records: &[Record]) -> Vec<Result<String, KeyFailure>> {
        match &self.partition_key {
            PartitionKey::Query(query) => query.keys_of(records.iter().map(|r| r.data.clone()).collect()).await,
            PartitionKey::Original => records
                .iter()
                .map(|record| match &record.partition_key {
                    Some(key) => Ok(key.to_string()),
                    None => Ok(record.position.offset.sequence_number.as_str().to_owned()),
                })
                .collect(),
            PartitionKey::Random => records.iter().map(|_| Ok(rand::random::<u128>().to_string())).collect(),
        }
    }

    async fn deliver_window(&self, backup: &Delivery, window: Window, info: FlushInfo) -> Result<(), RunError> {
        let Window {
            records,
            keys,
            mut key_failures,
            tickets,
        } = window;
        let first = &records[0].position;
        let window_id = request_id(&format!(
            "kinesis/{}/{}/{}/{}/{}",
            self.api.stream(),
            first.source,
            first.offset.sequence_number,
            first.offset.subsequence_number,
            records.len()
        ));
        let intent_key = ObjectKey::new(format!("kinesis/{window_id}")).expect("a window id makes a valid key");
        let claims = Claims::of(
            records
                .iter()
                .zip(tickets)
                .map(|(r, t)| (&r.position.source, &r.position.offset, t)),
        );
        let Some(intent) = backup.begin_held(&intent_key, claims).await? else {
            return Ok(());
        };

        let mut refused: Vec<(usize, Rejection)> = Vec::new();
        let mut sendable: Vec<usize> = Vec::new();
        for (index, (record, key)) in records.iter().zip(&keys).enumerate() {
            match key_failures[index].take().or_else(|| refusal(record, key)) {
                Some(rejection) => refused.push((index, rejection)),
                None => sendable.push(index),
            }
        }
        let sizes = |i: usize| records[i].data.len() + keys[i].len();
        let mut schedule = Schedule::new(sendable.iter().map(|&i| (keys[i].clone(), sizes(i))));
        let mut first_failure: Vec<Option<Instant>> = vec![None; sendable.len()];
        let mut attempts: Vec<u32> = vec![0; sendable.len()];
        let (mut calls, mut written, mut bytes, mut failing_calls) = (0u32, 0usize, 0usize, 0u32);
        let max_per_call = self.max_records_per_call();
        let operation = backup.telemetry.operation();
        while !schedule.is_done() {
            let call = schedule.next_call(max_per_call, MAX_BYTES_PER_CALL);
            self.pace(call.len()).await?;
            let entries: Vec<(&str, &Bytes)> = call
                .iter()
                .map(|&s| (schedule.key(s), &records[sendable[s]].data))
                .collect();
            calls += 1;
            let outcomes: Vec<Option<(String, String)>> = match self.api.put_records(&entries).await {
                Ok(outcomes) => outcomes,
                Err(err) if err.is_retryable() => {
                    vec![Some((whole_call_code(&err).to_owned(), err.to_string())); call.len()]
                }
                Err(err) => {
                    // Retrying does not help (denied, no such stream): these
                    // records go to the error output, as every later one
                    // will if it persists.
                    for &s in &call {
                        schedule.settle(s);
                        refused.push((sendable[s], rejection(whole_call_code(&err), err.to_string())));
                    }
                    continue;
                }
            };
            drop(entries);
            let now = Instant::now();
            let mut retried: Option<(String, String)> = None;
            let mut failed = 0;
            for (&s, outcome) in call.iter().zip(outcomes) {
                attempts[s] += 1;
                let Some((code, message)) = outcome else {
                    schedule.settle(s);
                    written += 1;
                    bytes += sizes(sendable[s]);
                    continue;
                };
                let since = *first_failure[s].get_or_insert(now);
                if self.retry.give_up_after.is_some_and(|limit| now - since >= limit) {
                    schedule.settle(s);
                    refused.push((sendable[s], rejection(entry_code(&code), message)));
                    continue;
                }
                failed += 1;
                retried.get_or_insert((code, message));
            }
            let Some((code, message)) = retried else {
                failing_calls = 0;
                continue;
            };
            failing_calls += 1;
            let delay = self.retry.delay(failing_calls);
            backup.telemetry.emit(KinesisPutRetrying {
                operation: &operation,
                window_id: &window_id,
                failed,
                sent: call.len(),
                attempt: failing_calls,
                delay,
                error_code: &code,
                error: &message,
            });
            self.sleep(delay, &window_id, &message).await?;
        }
        drop(operation);

        let given_up = refused.len();
        self.back_up(backup, &records, refused, &attempts, &window_id, info)
            .await?;
        backup.telemetry.emit(KinesisWindowDelivered {
            reason: info.reason,
            window_id: &window_id,
            records: written,
            bytes,
            calls,
            given_up,
        });
        backup.complete(intent).await
    }

    /// Writes the records the stream did not take as error records, one
    /// object per error code, under the window's intent.
    async fn back_up(
        &self,
        backup: &Delivery,
        records: &[Record],
        refused: Vec<(usize, Rejection)>,
        attempts: &[u32],
        window_id: &str,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        let mut refused = refused;
        // Window order, as read.
        refused.sort_by_key(|(index, _)| *index);
        let mut by_code: BTreeMap<&'static str, Vec<(Record, Rejection)>> = BTreeMap::new();
        for (index, rejection) in refused {
            by_code
                .entry(rejection.code)
                .or_default()
                .push((records[index].clone(), rejection));
        }
        let most_attempts = attempts.iter().copied().max().unwrap_or(0).max(1);
        for (code, failed) in by_code {
            backup.telemetry.emit(KinesisRecordsGaveUp {
                window_id,
                records: failed.len(),
                error_code: code,
                error: &failed[0].1.message,
            });
            let planner = backup.planner.clone();
            let object =
                blocking(move || planner.failed(ErrorOutputType::DeliveryFailed, failed, Vec::new(), most_attempts))
                    .await?;
            let outcome = backup.put_error_object(&object).await?;
            backup.log_flushed(&object, outcome, info);
        }
        Ok(())
    }

    /// At most a second's worth of records per call when rate limited.
    fn max_records_per_call(&self) -> usize {
        let rate = self.max_records_per_second.map_or(usize::MAX, |r| r as usize);
        MAX_RECORDS_PER_CALL.min(rate).max(1)
    }

    /// Waits until `records` more are within the rate limit.
    async fn pace(&self, records: usize) -> Result<(), RunError> {
        let Some(pacer) = &self.pacer else { return Ok(()) };
        let wait = pacer.lock().await.reserve(records, Instant::now());
        self.sleep(wait, "rate limit", "stopped while pacing").await
    }

    /// Sleeps, unless shutdown is requested: then the window's intent stays
    /// pending and its records are sent again at the next start.
    async fn sleep(&self, delay: Duration, what: &str, error: &str) -> Result<(), RunError> {
        if delay.is_zero() && !self.stop.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.stop.cancelled() => Err(RunError::Stopped {
                what: format!("kinesis window {what}"),
                error: error.to_owned(),
            }),
        }
    }
}

/// How many records from the front of `records` make a window: at most a
/// call's limits (records the stream cannot take count for nothing).
fn window_len(records: &[Record], keys: &[String]) -> usize {
    let mut bytes = 0;
    for (index, (record, key)) in records.iter().zip(keys).enumerate() {
        if index == MAX_RECORDS_PER_CALL {
            return index;
        }
        let size = record.data.len() + key.len();
        if size > MAX_RECORD_BYTES {
            continue;
        }
        if bytes + size > MAX_BYTES_PER_CALL {
            return index;
        }
        bytes += size;
    }
    records.len()
}

/// Why the stream cannot take `record` under `key`, if it cannot.
fn refusal(record: &Record, key: &str) -> Option<Rejection> {
    let size = record.data.len() + key.len();
    if size > MAX_RECORD_BYTES {
        return Some(rejection(
            "Kinesis.RecordTooLarge",
            format!(
                "the record and its partition key are {size} bytes; a Kinesis record holds at most {MAX_RECORD_BYTES}"
            ),
        ));
    }
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS {
        return Some(rejection(
            "Kinesis.InvalidPartitionKey",
            format!("the partition key has {chars} characters; Kinesis takes 1 to {MAX_KEY_CHARS}"),
        ));
    }
    None
}

fn rejection(code: &'static str, message: String) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::DeliveryFailed,
        code,
        message,
    }
}

/// A PutRecords entry's `ErrorCode`, as a stable code.
fn entry_code(code: &str) -> &'static str {
    match code {
        "ProvisionedThroughputExceededException" => "ProvisionedThroughputExceededException",
        "InternalFailure" => "InternalFailure",
        "KMSThrottlingException" => "KMSThrottlingException",
        "KMSAccessDeniedException" => "KMSAccessDeniedException",
        "KMSDisabledException" => "KMSDisabledException",
        "KMSNotFoundException" => "KMSNotFoundException",
        _ => "Kinesis.PutFailed",
    }
}

/// The code of a failed call, for each of its entries.
fn whole_call_code(err: &KinesisError) -> &'static str {
    match err {
        KinesisError::StreamNotFound { .. } => "Kinesis.StreamNotFound",
        KinesisError::Throttled(_) => "ProvisionedThroughputExceededException",
        KinesisError::ExpiredIterator | KinesisError::Transient(_) => "Kinesis.Transient",
        KinesisError::Permanent(_) => "Kinesis.Refused",
    }
}

/// `max_records_per_second`: each call reserves its records' share of
/// time, and waits until the reservation before it has passed.
#[derive(Debug)]
struct Pacer {
    rate: u32,
    next: Option<Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Self { rate, next: None }
    }

    /// How long to wait before sending `records`.
    fn reserve(&mut self, records: usize, now: Instant) -> Duration {
        let start = self.next.map_or(now, |next| next.max(now));
        self.next = Some(start + Duration::from_secs_f64(records as f64 / f64::from(self.rate)));
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spreads_records_over_time() {
        let now = Instant::now();
        let mut pacer = Pacer::new(100);
        assert_eq!(pacer.reserve(100, now), Duration::ZERO);
        assert_eq!(pacer.reserve(50, now), Duration::from_secs(1));
        assert_eq!(pacer.reserve(10, now + Duration::from_secs(5)), Duration::ZERO);
    }
}
