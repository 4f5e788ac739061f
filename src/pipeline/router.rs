//! The router: admits each record against the checkpoints, checks it, and
//! puts it (or its error record) into the buffer of its output: with
//! dynamic partitioning, the buffer of its partition keys. Full and expired
//! buffers go to the writer. Records a processor dropped are admitted and
//! done at once: their checkpoint advances without an object.
//!
//! With coordination the buffers are kept per shard, and the end of a
//! tenure of a shard's lease ([`SourceEvent::ShardReleased`]) drops that
//! shard's buffers unwritten; its records still on their way are dropped
//! as they come (see [`Router::release`] for why that keeps exactly-once).
//! A record in the runs of an intent the shard's last owner left pending
//! goes to that intent's own buffer, whatever buffer it would go to
//! otherwise, and is put under the intent's key (`super::redo`).
//!
//! When the memory budget is full (`crate::limits`), the router flushes
//! its largest buffer, then the next, until the budget has room or its
//! buffers are empty: after each event, and every second while the source
//! is paused (the budget may be full of another pipeline's records).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use spillway_transforms::{error_record, Check, Record, Rejection, SourceId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::redo::RedoBuffers;
use super::RunError;
use crate::buffer::{Batch, BufferKey, Buffered, Buffers, FlushReason};
use crate::checkpoint::Checkpointer;
use crate::checkpoint::Ticket;
use crate::config::{BufferLimits, Config};
use crate::limits::{Charged, MemoryBudget};
use crate::processor::{Failure, PartitionKeys};
use crate::processor::{Fate, Processed};
use crate::source::SourceEvent;
use crate::telemetry::events::{
    BufferLag, BuffersObserved, ErrorRecordsMade, MemoryObserved, RecordsDropped, RecordsReceived, RecordsSkipped,
};
use crate::telemetry::Telemetry;

pub(super) struct Router {
    check: Check,
    buffers: Buffers,
    /// With dynamic partitioning, the keys the data prefix names.
    partitioner: Option<Partitioner>,
    checkpoints: Arc<Checkpointer>,
    telemetry: Telemetry,
    batches: mpsc::Sender<Batch>,
    budget: MemoryBudget,
    /// With coordination: the buffers of the intents the last owners of
    /// this instance's shards left pending (`super::redo`).
    redo: RedoBuffers,
    /// The intent the record being placed is redone in, if any.
    target: Option<Arc<str>>,
}

/// How often the age of the oldest unflushed record is logged.
const LAG_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the buffers' bytes and oldest record are published (the
/// metrics `buffered_bytes` and `data_freshness_seconds`): finding the
/// oldest record looks at every buffered one, so not at every record.
const OBSERVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer stopped taking batches; its own error says why.
struct WriterGone;

impl Router {
    pub fn new(
        config: &Config,
        limits: BufferLimits,
        checkpoints: Arc<Checkpointer>,
        telemetry: Telemetry,
        batches: mpsc::Sender<Batch>,
        budget: MemoryBudget,
    ) -> Self {
        Self {
            check: Check {
                parse_json: !config.format.parses_records(),
                ..Check::new(config.format.expects_json())
            },
            buffers: Buffers::with_partitions(limits, config.partitioning.max_active_partitions)
                .charging(budget.clone())
                .encoding(super::early::fills_of(config)),
            partitioner: Partitioner::of(config),
            checkpoints,
            telemetry,
            batches,
            budget,
            redo: RedoBuffers::default(),
            target: None,
        }
    }

    /// Keeps each shard's records in buffers of their own, so that every
    /// object holds one shard's records: coordination turns it on.
    pub fn per_shard(mut self) -> Self {
        self.buffers = self.buffers.per_shard();
        self
    }

    /// Routes records until the input ends, the source fails or `shutdown`
    /// is cancelled; then flushes every buffer. Returns why it ended.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Charged<SourceEvent>>,
        shutdown: CancellationToken,
    ) -> Result<FlushReason, RunError> {
        let mut lag_log = tokio::time::interval(LAG_LOG_INTERVAL);
        lag_log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut observe = tokio::time::interval(OBSERVE_INTERVAL);
        observe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            let deadline = self.buffers.next_deadline();
            let expiry = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                biased;
                _ = lag_log.tick() => {
                    self.log_lag();
                    Ok(())
                }
                _ = observe.tick() => {
                    self.observe();
                    self.relieve_memory().await
                }
                () = shutdown.cancelled() => break Ok(FlushReason::Shutdown),
                () = expiry => self.flush_expired().await,
                event = events.recv() => {
                    // The event's charge is released once its records are
                    // in the buffers, which charge them on their own.
                    let Some(Charged { value: event, charge }) = event else {
                        break Ok(FlushReason::EndOfInput);
                    };
                    let step = match event {
                        SourceEvent::Records(records) => self.route(records).await,
                        SourceEvent::Refused(refused) => self.route_refused(refused).await,
                        SourceEvent::Processed(processed) => self.route_processed(processed).await,
                        SourceEvent::Ended { source, .. } if self.checkpoints.is_released(&source) => {
                            tracing::debug!(source = %source, "end of a shard whose lease was lost: its new owner reads to it");
                            Ok(())
                        }
                        SourceEvent::Ended { source, flush } => {
                            tracing::info!(source = %source, "source reached its end");
                            let due = self.checkpoints.redo_due_at_end(&source);
                            let redone = self.flush_redo(due.into_iter().map(|key| (source.clone(), key)).collect()).await;
                            self.checkpoints.end_of_input(&source);
                            match redone {
                                Ok(()) if flush => self.flush_all(FlushReason::ShardEnd).await,
                                other => other,
                            }
                        }
                        SourceEvent::ShardReleased { source } => {
                            self.release(&source);
                            Ok(())
                        }
                        SourceEvent::Failed(err) => break Err(RunError::Source(err)),
                    };
                    drop(charge);
                    match step {
                        Ok(()) => self.relieve_memory().await,
                        Err(gone) => Err(gone),
                    }
                }
            };
            if step.is_err() {
                // The writer stopped: its error is the run's error.
                return Ok(FlushReason::Shutdown);
            }
        };
        // Stop the source before flushing: nothing more is admitted.
        drop(events);
        let unfinished = self.redo.drop_all();
        if unfinished > 0 {
            tracing::info!(records = unfinished, "intents being redone not complete at the end of the run: they stay pending in their leases, for the next owner to redo");
        }
        let reason = *outcome.as_ref().unwrap_or(&FlushReason::Shutdown);
        for batch in self.buffers.take_all(reason) {
            if self.hand_over(batch).await.is_err() {
                break;
            }
        }
        outcome
    }

    /// Gives a flushed buffer to the writer and waits until the writer has
    /// taken it, so that at most two buffers are alive (one being encoded
    /// or delivered, one filling): while the writer is busy a full buffer
    /// waits in the channel and nothing more is read (issue #17).
    async fn hand_over(&self, batch: Batch) -> Result<(), WriterGone> {
        self.batches.send(batch).await.map_err(|_| WriterGone)?;
        // The channel holds one batch: a slot is free again once the
        // writer has received it. The permit is given back unused.
        drop(self.batches.reserve().await.map_err(|_| WriterGone)?);
        // Only now: until the writer holds the batch (and counts its
        // records as in flight), they count as buffered.
        self.observe();
        Ok(())
    }

    /// Publishes what the buffers hold.
    fn observe(&self) {
        self.telemetry.emit(BuffersObserved {
            buffered_bytes: self.buffers.buffered_bytes(),
            oldest_arrival: self.buffers.oldest_arrival(),
        });
        self.telemetry.emit(MemoryObserved {
            used: self.budget.used(),
            limit: self.budget.limit(),
        });
    }

    /// While the memory budget is full, flushes the largest buffer: its
    /// delivery frees memory. Each hand-over waits for the writer, so
    /// this flushes no faster than the writer takes batches.
    async fn relieve_memory(&mut self) -> Result<(), WriterGone> {
        while self.budget.is_full() {
            let Some(batch) = self.buffers.take_largest(FlushReason::MemoryLimit) else {
                break;
            };
            self.hand_over(batch).await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self, reason: FlushReason) -> Result<(), WriterGone> {
        for batch in self.buffers.take_all(reason) {
            self.hand_over(batch).await?;
        }
        Ok(())
    }

    fn log_lag(&self) {
        if let Some(oldest) = self.buffers.oldest_arrival() {
            let age = chrono::Utc::now() - oldest;
            self.telemetry.emit(BufferLag {
                oldest_unflushed_age_ms: age.num_milliseconds(),
                buffered_bytes: self.buffers.buffered_bytes(),
            });
        }
    }

    async fn flush_expired(&mut self) -> Result<(), WriterGone> {
        for batch in self.buffers.take_expired(Instant::now()) {
            self.hand_over(batch).await?;
        }
        Ok(())
    }

    /// The end of a tenure of `source`'s lease: its reader stopped, so
    /// every record it read came before. Its buffers are dropped unwritten:
    /// the shard was given up (`Checkpointer::release`), so its records
    /// count for nothing here, and the lease's next owner reads them again
    /// from the lease's checkpoint, which none of them passed (an object is
    /// counted in the lease only once written, and one whose intent was
    /// saved is redone by the next owner). Writing them here could archive
    /// them twice; dropping them loses none. From here on its records come
    /// from a later tenure (the shard won back) and are admitted again.
    fn release(&mut self, source: &SourceId) {
        let dropped = self.buffers.drop_shard(source) + self.redo.drop_shard(source);
        self.checkpoints.tenure_passed(source);
        tracing::debug!(source = %source, dropped_records = dropped, "shard released: its buffers dropped unwritten, the lease's next owner reads them again");
    }

    /// Drops the records of shards released whose tenure's end has not
    /// come yet: read under a lost lease (on their way when it was lost),
    /// they are read again by the lease's next owner, as [`Self::release`]
    /// says; admitting them would count them under a lease not held.
    fn drop_released<T>(&self, items: &mut Vec<T>, source_of: impl Fn(&T) -> &SourceId) {
        let mut last: Option<(SourceId, bool)> = None;
        let before = items.len();
        let mut released = Vec::new();
        items.retain(|item| {
            let source = source_of(item);
            let is_released = match &last {
                Some((known, answer)) if known == source => *answer,
                _ => {
                    let answer = self.checkpoints.is_released(source);
                    if answer && !released.contains(source) {
                        released.push(source.clone());
                    }
                    last = Some((source.clone(), answer));
                    answer
                }
            };
            !is_released
        });
        if items.len() != before {
            tracing::debug!(sources = ?released, dropped_records = before - items.len(), "records of a shard whose lease was lost dropped: its next owner reads them again");
        }
    }

    async fn route(&mut self, mut records: Vec<Record>) -> Result<(), WriterGone> {
        self.drop_released(&mut records, |r| &r.position.source);
        self.telemetry.emit(RecordsReceived {
            records: records.len(),
            bytes: records.iter().map(|r| r.data.len()).sum(),
        });
        let tickets = self
            .checkpoints
            .admit(records.iter().map(|r| (&r.position.source, &r.position.offset)));
        let mut routing = self
            .checkpoints
            .redo_routing(records.iter().map(|r| (&r.position.source, &r.position.offset, true)));
        let now = Instant::now();
        // Data records go to their buffer a run at a time; a record that
        // is refused, already delivered or part of an intent being redone
        // is placed on its own, after the run before it.
        let mut run = Vec::with_capacity(records.len());
        for (n, (record, ticket)) in records.into_iter().zip(tickets).enumerate() {
            let target = routing.targets.get_mut(n).and_then(Option::take);
            let verdict = self.check.check(&record);
            match (target, ticket, verdict) {
                (None, Some(ticket), Ok(())) => run.push(Buffered { record, ticket }),
                (target, ticket, verdict) => {
                    self.push_run(&mut run, now).await?;
                    self.target = target;
                    self.place(record, ticket, verdict, now).await?;
                }
            }
        }
        self.push_run(&mut run, now).await?;
        self.target = None;
        self.flush_redo(routing.due).await
    }

    /// Buffers `run`'s data records (checked, admitted, none redone),
    /// leaving it empty.
    async fn push_run(&mut self, run: &mut Vec<Buffered>, now: Instant) -> Result<(), WriterGone> {
        if run.is_empty() {
            return Ok(());
        }
        for batch in self.buffers.push_run(BufferKey::Data, run.drain(..), now) {
            self.hand_over(batch).await?;
        }
        Ok(())
    }

    /// Records the source refused: admitted in order like any other, and
    /// buffered as error records.
    async fn route_refused(&mut self, mut refused: Vec<(Record, Rejection)>) -> Result<(), WriterGone> {
        self.drop_released(&mut refused, |(r, _)| &r.position.source);
        self.telemetry.emit(RecordsReceived {
            records: refused.len(),
            bytes: refused.iter().map(|(r, _)| r.data.len()).sum(),
        });
        let tickets = self
            .checkpoints
            .admit(refused.iter().map(|(r, _)| (&r.position.source, &r.position.offset)));
        let mut routing = self.checkpoints.redo_routing(
            refused
                .iter()
                .map(|(r, _)| (&r.position.source, &r.position.offset, true)),
        );
        let now = Instant::now();
        for (n, ((record, rejection), ticket)) in refused.into_iter().zip(tickets).enumerate() {
            self.target = routing.targets.get_mut(n).and_then(Option::take);
            self.place(record, ticket, Err(rejection), now).await?;
        }
        self.target = None;
        self.flush_redo(routing.due).await
    }

    /// The processors' outputs: admitted in order (a dropped record done
    /// at once), then buffered by partition, or as error records.
    async fn route_processed(&mut self, mut processed: Vec<Processed>) -> Result<(), WriterGone> {
        self.drop_released(&mut processed, |p| &p.record.position.source);
        self.telemetry.emit(RecordsReceived {
            records: processed.len(),
            bytes: processed.iter().map(|p| p.record.data.len()).sum(),
        });
        let tickets = self.checkpoints.admit_as(
            processed
                .iter()
                .map(|p| (&p.record.position.source, &p.record.position.offset, p.admission)),
        );
        let mut routing = self.checkpoints.redo_routing(processed.iter().map(|p| {
            (
                &p.record.position.source,
                &p.record.position.offset,
                p.admission.ends_input,
            )
        }));
        let now = Instant::now();
        for (
            n,
            (
                Processed {
                    record,
                    admission,
                    fate,
                },
                ticket,
            ),
        ) in processed.into_iter().zip(tickets).enumerate()
        {
            self.target = routing.targets.get_mut(n).and_then(Option::take);
            match fate {
                Fate::Dropped => {
                    debug_assert!(admission.done && ticket.is_none());
                    self.telemetry.emit(RecordsDropped { records: 1 });
                }
                Fate::Failed(failure) => self.place_failed(record, ticket, &failure, now).await?,
                Fate::Keep(keys) => {
                    let verdict = self.check.check(&record);
                    let key = match (&verdict, &mut self.partitioner) {
                        (Ok(()), Some(partitioner)) => match partitioner.key(&keys) {
                            Ok(key) => key,
                            Err(failure) => {
                                self.place_failed(record, ticket, &failure, now).await?;
                                continue;
                            }
                        },
                        _ => BufferKey::Data,
                    };
                    self.place_as(record, ticket, verdict, key, now).await?;
                }
            }
        }
        self.target = None;
        self.flush_redo(routing.due).await
    }

    /// Hands over the batches of redone intents whose records are all in
    /// (`super::redo`); an intent none of whose records came out this
    /// time (a processor dropped them) has nothing to put, and is no
    /// longer pending.
    async fn flush_redo(&mut self, due: Vec<(SourceId, Arc<str>)>) -> Result<(), WriterGone> {
        for (source, key) in due {
            match self.redo.take(&key, FlushReason::Redo) {
                Some(batch) => self.hand_over(batch).await?,
                None => {
                    tracing::info!(source = %source, key = %key, "an intent the shard's last owner left pending has no record to redo: none came out of the processors this time");
                    self.checkpoints.forget_inherited(&source, &key);
                }
            }
        }
        Ok(())
    }

    /// Buffers the error record of a record a processor failed (or whose
    /// partition keys are missing); its `rawData` is the record's bytes.
    async fn place_failed(
        &mut self,
        record: Record,
        ticket: Option<Ticket>,
        failure: &Failure,
        now: Instant,
    ) -> Result<(), WriterGone> {
        let Some(ticket) = ticket else {
            self.telemetry.emit(RecordsSkipped { records: 1 });
            return Ok(());
        };
        self.telemetry.emit(ErrorRecordsMade {
            output_type: failure.output.as_str(),
            records: 1,
        });
        let text = error_record::FailureText {
            code: &failure.code,
            message: &failure.message,
            attempts: failure.attempts,
            lambda_arn: failure.lambda_arn.as_deref(),
        };
        let line = error_record::render_failure(&record, &text, chrono::Utc::now());
        let record = Record {
            data: Bytes::from(line),
            ..record
        };
        self.push(BufferKey::Error(failure.output), Buffered { record, ticket }, now)
            .await
    }

    async fn push(&mut self, key: BufferKey, item: Buffered, now: Instant) -> Result<(), WriterGone> {
        if let Some(intent) = self.target.take() {
            // Whatever buffer it would go to: its object is the intent's.
            self.redo.push(intent, key, item);
            return Ok(());
        }
        for batch in self.buffers.push(key, item, now) {
            self.hand_over(batch).await?;
        }
        Ok(())
    }

    /// Buffers an admitted record as data, or its error record; a record
    /// without a ticket is already delivered and skipped.
    async fn place(
        &mut self,
        record: Record,
        ticket: Option<Ticket>,
        verdict: Result<(), Rejection>,
        now: Instant,
    ) -> Result<(), WriterGone> {
        self.place_as(record, ticket, verdict, BufferKey::Data, now).await
    }

    /// [`Self::place`], into `data_key` when the record is data.
    async fn place_as(
        &mut self,
        record: Record,
        ticket: Option<Ticket>,
        verdict: Result<(), Rejection>,
        data_key: BufferKey,
        now: Instant,
    ) -> Result<(), WriterGone> {
        let Some(ticket) = ticket else {
            self.telemetry.emit(RecordsSkipped { records: 1 });
            return Ok(());
        };
        let (key, record) = match verdict {
            Ok(()) => (data_key, record),
            Err(rejection) => {
                self.telemetry.emit(ErrorRecordsMade {
                    output_type: rejection.output_type.as_str(),
                    records: 1,
                });
                let line = error_record::render(&record, &rejection, 1, chrono::Utc::now());
                (
                    BufferKey::Error(rejection.output_type),
                    Record {
                        data: Bytes::from(line),
                        ..record
                    },
                )
            }
        };
        self.push(key, Buffered { record, ticket }, now).await
    }
}

/// The error code of a record whose partition keys cannot be extracted,
/// as Firehose's.
pub const MISSING_PARTITION_KEY: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// Which buffer a record goes to with dynamic partitioning: the keys the
/// data prefix names, and only those (other keys do not split buffers).
struct Partitioner {
    from_query: Vec<String>,
    from_lambda: Vec<String>,
    /// The buffer keys made so far, by the values they name (see
    /// [`Self::key`]): a record of a known partition costs a lookup, not
    /// a new map of owned strings and its `Arc`.
    known: HashMap<String, BufferKey>,
    /// The values of the record at hand, as `known` is keyed.
    values: String,
}

/// The most buffer keys [`Partitioner`] remembers; past it, it starts
/// afresh (records of ever new partitions must not grow it without end).
const MAX_KNOWN_PARTITIONS: usize = 4096;

impl Partitioner {
    fn of(config: &Config) -> Option<Self> {
        if !config.partitioning.enabled {
            return None;
        }
        let (query, lambda) = config.destination.objects().prefix.partition_keys();
        Some(Self {
            from_query: query.into_iter().map(str::to_owned).collect(),
            from_lambda: lambda.into_iter().map(str::to_owned).collect(),
            known: HashMap::new(),
            values: String::new(),
        })
    }

    fn key(&mut self, keys: &PartitionKeys) -> Result<BufferKey, Failure> {
        // The values the prefix names, each with its length before it so
        // that no two sets of values read the same.
        self.values.clear();
        for (names, given) in [
            (&self.from_query, &keys.from_query),
            (&self.from_lambda, &keys.from_lambda),
        ] {
            for name in names {
                if let Some(value) = given.get(name) {
                    let _ = write!(self.values, "{}:{value}", value.len());
                } else {
                    self.values.push('-');
                }
            }
        }
        if let Some(key) = self.known.get(self.values.as_str()) {
            return Ok(key.clone());
        }
        let key = self.make_key(keys)?;
        if self.known.len() >= MAX_KNOWN_PARTITIONS {
            self.known.clear();
        }
        self.known.insert(self.values.clone(), key.clone());
        Ok(key)
    }

    fn make_key(&self, keys: &PartitionKeys) -> Result<BufferKey, Failure> {
        let mut used = PartitionKeys::default();
        for (names, given, into, namespace) in [
            (
                &self.from_query,
                &keys.from_query,
                &mut used.from_query,
                "partitionKeyFromQuery",
            ),
            (
                &self.from_lambda,
                &keys.from_lambda,
                &mut used.from_lambda,
                "partitionKeyFromLambda",
            ),
        ] {
            for name in names {
                let Some(value) = given.get(name) else {
                    return Err(Failure::processing(
                        MISSING_PARTITION_KEY,
                        format!("the record has no partition key !{{{namespace}:{name}}}"),
                    ));
                };
                std::sync::Arc::make_mut(into).insert(name.clone(), value.clone());
            }
        }
        Ok(BufferKey::Partition(std::sync::Arc::new(used)))
    }
}
