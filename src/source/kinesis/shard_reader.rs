//! One shard, read in order: GetRecords in a loop within the shard's
//! limits, KPL records de-aggregated, throttles and failures backed off,
//! expired iterators replaced right after the last record read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use spillway_destinations::retry::RetryPolicy;
use spillway_transforms::record::{Offset, Position};
use spillway_transforms::{ErrorOutputType, Record, Rejection, SequenceNumber, SourceId};
use tokio::sync::mpsc;

use super::api::{KinesisApi, KinesisError, ShardInfo, StartAt};
use super::kpl::{self, Deaggregated};
use crate::source::SourceEvent;
use crate::telemetry::events::{KinesisCall, KinesisCallRetrying, ShardClosed, ShardLag, ShardRead};
use crate::telemetry::{Operation, Telemetry};

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
    pub telemetry: Telemetry,
}

impl ShardReader {
    pub async fn run(self) -> ShardOutcome {
        let source = SourceId::new(self.shard.id.clone());
        let backoff = RetryPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            jitter: 0.25,
            give_up_after: None,
            stop: None,
        };
        let mut failures = 0u32;
        // Failing calls count against readiness until one succeeds.
        let operation = self.telemetry.operation();
        let mut cursor = Cursor::default();
        let mut iterator: Option<String> = None;
        let mut last_lag_log = Instant::now() - LAG_LOG_INTERVAL;
        tracing::info!(shard = %self.shard.id, start = ?self.start, "reading shard");
        loop {
            let current = match &iterator {
                Some(it) => it.clone(),
                None => {
                    // A fresh iterator: right after the last record read, or
                    // at the start position.
                    let start = cursor
                        .resume_after()
                        .map(StartAt::AfterSequence)
                        .unwrap_or_else(|| self.start.clone());
                    cursor.restart();
                    match self.api.shard_iterator(&self.shard.id, &start).await {
                        Ok(it) => {
                            iterator = Some(it.clone());
                            it
                        }
                        Err(err) => match self
                            .back_off(err, KinesisCall::GetShardIterator, &mut failures, &backoff, &operation)
                            .await
                        {
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
                    tracing::info!(shard = %self.shard.id, after = ?cursor.resume_after(), "shard iterator expired; getting a fresh one");
                    iterator = None;
                    continue;
                }
                Err(err) => match self
                    .back_off(err, KinesisCall::GetRecords, &mut failures, &backoff, &operation)
                    .await
                {
                    Some(outcome) => return outcome,
                    None => continue,
                },
            };
            failures = 0;
            operation.succeeded();
            let millis_behind = output.millis_behind_latest();
            let (events, bytes) = self.convert(&source, output.records(), &mut cursor);
            self.telemetry.emit(ShardRead {
                shard: &self.shard.id,
                millis_behind,
            });
            if last_lag_log.elapsed() >= LAG_LOG_INTERVAL {
                self.telemetry.emit(ShardLag {
                    shard: &self.shard.id,
                    millis_behind,
                });
                last_lag_log = Instant::now();
            }
            for event in events {
                if self.events.send(event).await.is_err() {
                    return ShardOutcome::Stopped;
                }
            }
            // Kinesis ends a closed shard with a null iterator; some
            // implementations never do, so an empty, caught-up answer after
            // the shard's ending sequence number ends it too.
            let past_end = output.records().is_empty()
                && millis_behind.is_none_or(|m| m == 0)
                && self.reached_end(cursor.resume_after().as_deref());
            match output.next_shard_iterator().filter(|_| !past_end) {
                None => {
                    self.telemetry.emit(ShardClosed {
                        shard: &self.shard.id,
                        children: output.child_shards().iter().map(|c| c.shard_id()).collect(),
                    });
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
            // A closed shard is read to its end, even by `--once`: only then
            // is it finished, and only then may its children be read.
            if self.options.once && at_tip && !self.is_closed() {
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

    /// Whether a listing showed the shard closed.
    fn is_closed(&self) -> bool {
        self.shard.closed || self.ending.lock().expect("not poisoned").is_some()
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
    async fn back_off(
        &self,
        err: KinesisError,
        call: KinesisCall,
        failures: &mut u32,
        policy: &RetryPolicy,
        operation: &Operation,
    ) -> Option<ShardOutcome> {
        if !err.is_retryable() {
            return Some(ShardOutcome::Failed(err));
        }
        *failures += 1;
        let delay = policy.delay(*failures);
        self.telemetry.emit(KinesisCallRetrying {
            operation,
            shard: &self.shard.id,
            call,
            attempt: *failures,
            delay,
            error: &err,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = self.events.closed() => Some(ShardOutcome::Stopped),
        }
    }

    /// Kinesis records to spillway records, KPL records de-aggregated, as
    /// the events to send in order: runs of records, and the records the
    /// source refuses (with their reasons) between them. Records the
    /// `cursor` has sent already (read again after a fresh iterator) are
    /// skipped.
    fn convert(
        &self,
        source: &SourceId,
        records: &[aws_sdk_kinesis::types::Record],
        cursor: &mut Cursor,
    ) -> (Vec<SourceEvent>, usize) {
        let mut out = Events::with_capacity(records.len());
        let mut bytes = 0;
        for record in records {
            let data = record.data().as_ref();
            bytes += data.len();
            let arrival = record
                .approximate_arrival_timestamp()
                .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?))
                .unwrap_or_else(Utc::now);
            let outer_key = record.partition_key();
            let make = |offset: Offset, data: Bytes, key: Option<&str>| Record {
                data,
                position: Position {
                    source: source.clone(),
                    offset,
                },
                partition_key: key.map(Into::into),
                arrival,
            };
            let Ok(sequence) = SequenceNumber::parse(record.sequence_number()) else {
                // Never from Kinesis itself, but nothing is dropped: the
                // record goes to the error output, placed right after the
                // shard's last record with a sequence number (so a restart
                // or a fresh iterator finds it at the same place and does
                // not send it twice).
                let offset = cursor.next_without_sequence();
                if cursor.has_sent(&offset) {
                    continue;
                }
                tracing::warn!(shard = %self.shard.id, sequence = %Shown(record.sequence_number()), "record with an invalid sequence number: to the error output");
                let rejection = Rejection {
                    output_type: ErrorOutputType::InvalidRecord,
                    code: "Kinesis.InvalidSequenceNumber",
                    message: format!(
                        "kinesis returned the record with the sequence number \"{}\", which is not one (decimal digits)",
                        Shown(record.sequence_number())
                    ),
                };
                cursor.sent_without_sequence(&offset);
                out.refused(make(offset, Bytes::copy_from_slice(data), outer_key), rejection);
                continue;
            };
            if cursor.has_sent_sequence(&sequence) {
                continue;
            }
            match kpl::deaggregate(data, Some(self.shard.hash_range)) {
                Deaggregated::NotAggregated => {
                    let offset = Offset::new(sequence, 0);
                    cursor.sent(&offset);
                    out.record(make(offset, Bytes::copy_from_slice(data), outer_key));
                }
                Deaggregated::Aggregated { records, outside } => {
                    if !outside.is_empty() {
                        tracing::warn!(shard = %self.shard.id, sequence = %sequence, count = outside.len(), "KPL user records outside the shard's hash key range (the KCL drops them as duplicates): to the error output");
                    }
                    // Merged back into their order in the aggregate.
                    let mut users: Vec<(kpl::UserRecord, bool)> = records
                        .into_iter()
                        .map(|u| (u, true))
                        .chain(outside.into_iter().map(|u| (u, false)))
                        .collect();
                    users.sort_by_key(|(u, _)| u.sub_sequence_number);
                    for (user, in_range) in users {
                        let offset = Offset::new(sequence.clone(), user.sub_sequence_number);
                        cursor.sent(&offset);
                        let record = make(offset, user.data, Some(&user.partition_key));
                        if in_range {
                            out.record(record);
                        } else {
                            out.refused(record, outside_range(&self.shard));
                        }
                    }
                }
                Deaggregated::Corrupt { reason } => {
                    tracing::warn!(shard = %self.shard.id, sequence = %sequence, %reason, "corrupt KPL aggregated record; archiving its bytes as one record");
                    let offset = Offset::new(sequence, 0);
                    cursor.sent(&offset);
                    out.record(make(offset, Bytes::copy_from_slice(data), outer_key));
                }
            }
        }
        (out.events, bytes)
    }
}

/// Where a reader is in its shard.
#[derive(Debug, Default)]
struct Cursor {
    /// The last record sent: one read again (a fresh iterator) at or
    /// before it is skipped.
    sent: Option<Offset>,
    /// The last record sent whose sequence number is one: a fresh iterator
    /// resumes right after it.
    with_sequence: Option<Offset>,
    /// Records without a sequence number of their own met since then.
    without_sequence: u64,
}

impl Cursor {
    /// Where a fresh iterator starts: after this sequence number.
    fn resume_after(&self) -> Option<String> {
        self.with_sequence.as_ref().map(|o| o.sequence_number.to_string())
    }

    /// A fresh iterator reads again what follows `with_sequence`.
    fn restart(&mut self) {
        self.without_sequence = 0;
    }

    fn sent(&mut self, offset: &Offset) {
        self.sent = Some(offset.clone());
        self.with_sequence = Some(offset.clone());
        self.without_sequence = 0;
    }

    /// The position of the next record that has no sequence number of its
    /// own: after the last one that has, and the others without since (the
    /// same position whenever it is read again).
    fn next_without_sequence(&mut self) -> Offset {
        self.without_sequence += 1;
        match &self.with_sequence {
            Some(last) => Offset::new(
                last.sequence_number.clone(),
                last.subsequence_number + self.without_sequence,
            ),
            None => Offset::new(SequenceNumber::from_u64(0), self.without_sequence - 1),
        }
    }

    fn sent_without_sequence(&mut self, offset: &Offset) {
        self.sent = Some(offset.clone());
    }

    fn has_sent(&self, offset: &Offset) -> bool {
        self.sent.as_ref().is_some_and(|sent| offset <= sent)
    }

    fn has_sent_sequence(&self, sequence: &SequenceNumber) -> bool {
        self.sent.as_ref().is_some_and(|sent| &sent.sequence_number >= sequence)
    }
}

/// Why a KPL user record outside its shard's range is not archived as data.
fn outside_range(shard: &ShardInfo) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::InvalidRecord,
        code: "Kinesis.OutsideShardHashKeyRange",
        message: format!(
            "KPL user record whose hash key is outside shard {}'s range {}..={}: a KPL with a stale shard map puts such records again into their own shard, so this copy is likely a duplicate (the KCL drops it)",
            shard.id, shard.hash_range.0, shard.hash_range.1
        ),
    }
}

/// A value from the service shown in a line: at most 128 characters, and
/// control characters escaped.
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars().take(128) {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if self.0.chars().nth(128).is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// The events a batch of records becomes, in order.
struct Events {
    events: Vec<SourceEvent>,
    capacity: usize,
}

impl Events {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Vec::new(),
            capacity,
        }
    }

    fn record(&mut self, record: Record) {
        match self.events.last_mut() {
            Some(SourceEvent::Records(records)) => records.push(record),
            _ => {
                let mut records = Vec::with_capacity(self.capacity);
                records.push(record);
                self.events.push(SourceEvent::Records(records));
            }
        }
    }

    fn refused(&mut self, record: Record, rejection: Rejection) {
        match self.events.last_mut() {
            Some(SourceEvent::Refused(refused)) => refused.push((record, rejection)),
            _ => self.events.push(SourceEvent::Refused(vec![(record, rejection)])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sequence: u64, subsequence: u64) -> Offset {
        Offset::new(SequenceNumber::from_u64(sequence), subsequence)
    }

    #[test]
    fn records_without_a_sequence_number_keep_their_place_when_read_again() {
        let mut cursor = Cursor::default();
        cursor.sent(&at(100, 0));
        // Two records without a sequence number follow record 100.
        let first = cursor.next_without_sequence();
        assert!(!cursor.has_sent(&first));
        cursor.sent_without_sequence(&first);
        let second = cursor.next_without_sequence();
        cursor.sent_without_sequence(&second);
        assert_eq!((first.clone(), second.clone()), (at(100, 1), at(100, 2)));
        // The iterator expires: a fresh one resumes after 100 and reads
        // both again; they get the same places and are skipped.
        assert_eq!(cursor.resume_after().as_deref(), Some("100"));
        cursor.restart();
        assert_eq!(cursor.next_without_sequence(), first);
        assert!(cursor.has_sent(&first));
        assert_eq!(cursor.next_without_sequence(), second);
        assert!(cursor.has_sent(&second));
        // The next record with a sequence number is new.
        let sequence = SequenceNumber::from_u64(101);
        assert!(!cursor.has_sent_sequence(&sequence));
        cursor.sent(&at(101, 0));
        assert!(cursor.has_sent_sequence(&SequenceNumber::from_u64(100)));
        assert_eq!(cursor.next_without_sequence(), at(101, 1));
    }
}
