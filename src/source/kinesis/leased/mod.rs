//! The Kinesis source when several instances share the stream
//! (`[coordination]`, issue #22): each instance reads only the shards whose
//! leases it holds, and a shard moves between instances with its
//! checkpoint, through the lease table (`docs/leases.md`).
//!
//! The coordinator lists the stream's shards (at start, every
//! `shard_discovery_seconds`, and when a shard closes) and adds a lease per
//! shard with its parents, creating only what is missing. Which shards it
//! reads is the keeper's to say ([`keeper::run`]): on `Won` it adopts the
//! checkpoint state the lease holds and starts the shard's reader at its
//! checkpoint; the reader stops the moment the lease's token is cancelled
//! (lost, taken, or no longer provable), and the shard is abandoned, so
//! nothing of it is counted here any more. Lineage needs no waiting here:
//! the keeper takes a child only once every parent's lease says it ended,
//! whichever instance read it. A shard read to its end is `Ended` for the
//! pipeline; once all of it is delivered, the final checkpoint is saved
//! with `ended`, which lets the lease go and its children be taken.
//!
//! A shard whose lease is lost is released, not only abandoned
//! (`Checkpointer::release`): its records still on their way through the
//! pipeline are not admitted. Once its reader has stopped, the coordinator
//! sends [`SourceEvent::ShardReleased`]: every record of that tenure came
//! before it, so the router drops the shard's buffers there and admits its
//! records again after it. A shard won back is not read again before that
//! event is sent, so that the new tenure's records all come after it.
//!
//! A lease holding the last owner's pending intents is read like any
//! other: the checkpointer keeps the intents (`Checkpointer::adopt_lease`)
//! and the pipeline redoes each under its key as its records come again
//! (`pipeline/redo.rs`, `docs/leases.md`); said once per shard.
//!
//! At stop the readers stop; with a [`HandOver`] (the pipeline's) the
//! leases are released only once everything read is delivered and
//! checkpointed ([`hand_over`]), without one at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use spillway_transforms::SourceId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{KinesisApi, ShardInfo, StartAt, StreamRef};
use super::config::{KinesisConfig, StartPosition};
use super::shard_reader::{ReaderOptions, ShardOutcome, ShardReader};
use crate::checkpoint::shard::{ShardState, ShardStateError};
use crate::coordination::config::CoordinationConfig;
use crate::coordination::dynamodb::{LeaseTable, TableOptions};
use crate::coordination::keeper::{self, Keeper, LeaseChange, LossReason};
use crate::coordination::{Lease, LeaseError};
use crate::source::{SourceContext, SourceError, SourceEvent};
use crate::telemetry::events::{LeaseWon, LeasesHeld, ShardLost, ShardRefused};

mod hand_over;
pub use hand_over::HandOver;

/// How often held shards that have no reader running (closing, not
/// listed yet) are looked at: whether they finished, or their lease
/// was lost at a checkpoint write.
const HELD_POLL: Duration = Duration::from_millis(200);

/// Lease changes waiting for the coordinator.
const CHANGES_CAPACITY: usize = 64;

/// What the Kinesis source needs to run under coordination.
#[derive(Clone, Debug)]
pub struct Coordination {
    /// This instance's leases: the same keeper the checkpoint store writes
    /// through ([`crate::coordination::store::LeaseStore`]).
    pub keeper: Keeper,
    /// Stops the source: its readers stop, then its leases are released.
    pub stop: CancellationToken,
}

/// Why the leased source stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeasedError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    State(#[from] ShardStateError),
}

/// Opens (creating if missing) the lease table of `pipeline`'s stream and
/// this instance's keeper of it.
pub async fn open_keeper(
    coordination: &CoordinationConfig,
    pipeline: &str,
    stream: &StreamRef,
) -> Result<Keeper, LeaseError> {
    let table = LeaseTable::open(TableOptions {
        table: coordination.table.clone(),
        region: coordination.region.clone(),
        endpoint: coordination.endpoint.clone(),
        namespace: crate::coordination::namespace(pipeline, stream),
        worker: coordination.worker(),
    })
    .await?;
    Ok(Keeper::new(table, coordination.lease_duration))
}

/// A held shard, in this tenure of its lease.
struct Held {
    /// Tells this tenure's reader from an earlier one's.
    tenure: u64,
    lost: CancellationToken,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Won, but not in this instance's listing yet (another instance
    /// listed it first): read once it is listed.
    Unlisted,
    Reading,
    /// Read to its end: its final checkpoint, with `ended`, is saved once
    /// every record of it is delivered.
    Closing,
}

/// How a reader's task ended.
enum TenureEnd {
    /// Its lease's token was cancelled.
    Lost,
    /// The source's stop.
    Stopped,
    Read(ShardOutcome),
}

/// A shard as listed, and its ending sequence number once it closed (the
/// reader watches it).
struct Listed {
    info: ShardInfo,
    ending: Arc<std::sync::Mutex<Option<String>>>,
}

pub(super) struct Coordinator {
    api: Arc<KinesisApi>,
    start: StartPosition,
    discovery_interval: Duration,
    reader: ReaderOptions,
    context: SourceContext,
    keeper: Keeper,
    stop: CancellationToken,
    listed: BTreeMap<String, Listed>,
    /// Shards whose lease is known to exist.
    added: BTreeSet<String>,
    held: BTreeMap<String, Held>,
    /// Shards won with the last owner's pending intents, said once each.
    redoing: BTreeSet<String>,
    tenures: u64,
    readers: JoinSet<(String, u64, TenureEnd)>,
    /// Shards lost while their reader ran: the end of the tenure is sent
    /// once that reader's task has ended.
    awaiting_reader: BTreeSet<String>,
    /// Shards lost whose tenure's end is to be sent
    /// ([`SourceEvent::ShardReleased`]); none is read before.
    to_release: Vec<String>,
    /// The pipeline's, to release the leases at stop only after its flush.
    hand_over: Option<HandOver>,
}

impl Coordinator {
    pub(super) fn new(
        api: Arc<KinesisApi>,
        config: &KinesisConfig,
        coordination: Coordination,
        context: SourceContext,
    ) -> Self {
        Self {
            api,
            start: config.start.clone(),
            discovery_interval: config.discovery_interval,
            reader: ReaderOptions {
                idle_poll: config.idle_poll,
                max_records: config.max_records,
                // `--once` reads every shard; under coordination an
                // instance reads its share, for as long as it runs.
                once: false,
                started_at: chrono::Utc::now(),
            },
            context,
            keeper: coordination.keeper,
            stop: coordination.stop,
            listed: BTreeMap::new(),
            added: BTreeSet::new(),
            held: BTreeMap::new(),
            redoing: BTreeSet::new(),
            tenures: 0,
            readers: JoinSet::new(),
            awaiting_reader: BTreeSet::new(),
            to_release: Vec::new(),
            hand_over: None,
        }
    }

    pub(super) async fn run(mut self) {
        let from = match &self.start {
            StartPosition::TrimHorizon => StartAt::TrimHorizon,
            StartPosition::AtTimestamp(at) => StartAt::AtTimestamp(*at),
            // One time for every instance: the lease table's, set by the
            // first instance to ask (docs/leases.md, step 4).
            StartPosition::Latest => match self.keeper.started_at(chrono::Utc::now()).await {
                Ok(at) => {
                    tracing::info!(from = %at.to_rfc3339(), "start_position latest: shards without a checkpoint are read from when this delivery stream first started (the lease table's time)");
                    self.reader.started_at = at;
                    StartAt::AtTimestamp(at)
                }
                Err(error) => {
                    self.fail(LeasedError::from(error).into()).await;
                    return;
                }
            },
        };
        // The leases of the shards listed now exist before the first round.
        if let Err(error) = self.discover().await {
            if !is_retryable(&error) {
                self.fail(error).await;
                return;
            }
            tracing::warn!(error = %error, "listing shards or adding their leases failed; trying again later");
        }
        let (changes_tx, mut changes) = mpsc::channel(CHANGES_CAPACITY);
        let keeper_stop = CancellationToken::new();
        let mut lease_loop = tokio::spawn(keeper::run(self.keeper.clone(), changes_tx, keeper_stop.clone()));
        let mut next_discovery = Instant::now() + self.discovery_interval;
        let mut lease_loop_ended = false;
        let failure = loop {
            if Instant::now() >= next_discovery {
                match self.discover().await {
                    Ok(()) => {}
                    Err(error) if is_retryable(&error) => {
                        tracing::warn!(error = %error, "listing shards or adding their leases failed; trying again later")
                    }
                    Err(error) => break Some(error),
                }
                next_discovery = Instant::now() + self.discovery_interval;
                self.start_listed(&from);
            }
            if let Err(error) = self.end_finished().await {
                break Some(error);
            }
            self.sweep_lost();
            if !self.send_releases().await {
                break None;
            }
            self.start_listed(&from);
            self.context.telemetry.emit(LeasesHeld { held: self.held.len() });
            let idle_held = self.held.values().any(|h| h.phase != Phase::Reading);
            let wake = if idle_held {
                next_discovery.min(Instant::now() + HELD_POLL)
            } else {
                next_discovery
            };
            tokio::select! {
                () = self.stop.cancelled() => break None,
                () = self.context.events.closed() => break None,
                change = changes.recv() => match change {
                    Some(LeaseChange::Won { lease, lost }) => {
                        if let Err(error) = self.won(lease, lost, &from) {
                            break Some(error);
                        }
                        if self.held.values().any(|h| h.phase == Phase::Unlisted) {
                            next_discovery = Instant::now();
                        }
                    }
                    Some(LeaseChange::Lost { shard, why }) => self.lose(&shard, why),
                    // The lease loop ended: its result says why.
                    None => {}
                },
                ended = &mut lease_loop => {
                    lease_loop_ended = true;
                    break match ended {
                        // Only at its stop, or with the channel closed:
                        // neither before the shutdown below.
                        Ok(Ok(())) => None,
                        Ok(Err(error)) => Some(LeasedError::Lease(error).into()),
                        Err(panic) => std::panic::resume_unwind(panic.into_panic()),
                    };
                }
                Some(joined) = self.readers.join_next() => {
                    let (shard, tenure, end) = joined.expect("shard readers do not panic");
                    match self.reader_ended(shard, tenure, end).await {
                        Ok(true) => {}
                        Ok(false) => break None,
                        Err(error) => break Some(error),
                    }
                    // A closed shard's children may not be listed yet.
                    next_discovery = next_discovery.min(Instant::now() + HELD_POLL);
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        };
        // Readers first, so that nothing is read under a released lease;
        // then (at a stop, after the pipeline's flush when it hands over)
        // the lease loop releases what this instance holds.
        self.readers.shutdown().await;
        if failure.is_none() && !lease_loop_ended {
            lease_loop_ended = self.hold_until_released(&mut changes, &mut lease_loop).await;
        }
        keeper_stop.cancel();
        while !lease_loop_ended {
            tokio::select! {
                ended = &mut lease_loop => {
                    if let Ok(Err(error)) = ended {
                        tracing::warn!(error = %error, "the lease loop ended with an error");
                    }
                    lease_loop_ended = true;
                }
                // Drained so that the loop never waits on a full channel.
                _ = changes.recv() => {}
            }
        }
        // Released, or no longer renewed: held by nobody here.
        self.context.telemetry.emit(LeasesHeld { held: 0 });
        if let Some(error) = failure {
            self.fail(error).await;
        }
    }

    async fn fail(&self, error: SourceError) {
        let _ = self.context.events.send(SourceEvent::Failed(error)).await;
    }

    /// Lists the shards and adds the leases that are missing.
    async fn discover(&mut self) -> Result<(), SourceError> {
        let listed = self.api.list_shards().await?;
        for info in listed {
            if let Some(known) = self.listed.get_mut(&info.id) {
                if info.ending_sequence.is_some() {
                    *known.ending.lock().expect("not poisoned") = info.ending_sequence.clone();
                    known.info.closed = true;
                }
            } else {
                tracing::info!(shard = %info.id, parents = ?info.parents, closed = info.closed, "found shard");
                let ending = Arc::new(std::sync::Mutex::new(info.ending_sequence.clone()));
                self.listed.insert(info.id.clone(), Listed { info, ending });
            }
        }
        let missing: Vec<(String, Vec<String>)> = self
            .listed
            .iter()
            .filter(|(id, _)| !self.added.contains(*id))
            .map(|(id, l)| (id.clone(), l.info.parents.clone()))
            .collect();
        for (shard, parents) in missing {
            let added = self.keeper.add(&shard, &parents).await.map_err(LeasedError::from)?;
            if added {
                tracing::info!(shard = %shard, "lease added");
            }
            self.added.insert(shard);
        }
        Ok(())
    }

    /// Takes a shard won: its state from the lease, then its reader.
    fn won(&mut self, lease: Lease, lost: CancellationToken, from: &StartAt) -> Result<(), SourceError> {
        let source = SourceId::new(lease.shard.clone());
        let state = match &lease.state {
            None => ShardState::default(),
            Some(text) => match ShardState::from_json(&source, text) {
                Ok(state) => state,
                Err(error) => {
                    self.refuse(&lease.shard, &error);
                    return Ok(());
                }
            },
        };
        self.tenures += 1;
        let mut held = Held {
            tenure: self.tenures,
            lost,
            phase: Phase::Unlisted,
        };
        let finished = state.source.finished;
        let keys: Vec<String> = state.pending.iter().map(|p| p.key.clone()).collect();
        // Whatever is left here of an earlier tenure goes; the last
        // owner's pending intents are redone as their records come again.
        let redone = self.context.checkpoints.adopt_lease(&source, state);
        // Said once per shard, however often it is won.
        if redone > 0 && self.redoing.insert(lease.shard.clone()) {
            tracing::info!(
                shard = %lease.shard,
                intents = redone,
                keys = ?keys,
                "shard won with objects its last owner was writing: each is redone under its key, create-only, as its records are read again"
            );
        }
        tracing::info!(shard = %lease.shard, checkpoint = ?self.context.checkpoints.checkpoint(&source), "shard won");
        if finished {
            held.phase = Phase::Closing;
        }
        self.held.insert(lease.shard.clone(), held);
        self.context.telemetry.emit(LeaseWon);
        self.start_listed(from);
        Ok(())
    }

    /// Starts the reader of every held shard that waits for its listing
    /// and is listed now.
    fn start_listed(&mut self, from: &StartAt) {
        let ready: Vec<String> = self
            .held
            .iter()
            .filter(|(id, h)| h.phase == Phase::Unlisted && self.listed.contains_key(*id))
            // An earlier tenure's end not sent yet: its records must all
            // come before it, and this tenure's after.
            .filter(|(id, _)| !self.awaiting_reader.contains(*id) && !self.to_release.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            self.start_reader(&id, from);
        }
    }

    fn start_reader(&mut self, id: &str, from: &StartAt) {
        let (Some(held), Some(listed)) = (self.held.get_mut(id), self.listed.get(id)) else {
            return;
        };
        held.phase = Phase::Reading;
        let source = SourceId::new(id);
        let start = match self.context.checkpoints.checkpoint(&source) {
            // Subsequence-aware: the checkpointed record is read again and
            // the tracker skips its user records up to the checkpoint.
            Some(offset) => StartAt::AtSequence(offset.sequence_number.to_string()),
            None => from.clone(),
        };
        let reader = ShardReader {
            api: self.api.clone(),
            shard: listed.info.clone(),
            ending: listed.ending.clone(),
            start,
            events: self.context.events.clone(),
            options: self.reader.clone(),
            telemetry: self.context.telemetry.clone(),
        };
        let (lost, stop, tenure, id) = (held.lost.clone(), self.stop.clone(), held.tenure, id.to_owned());
        self.readers.spawn(async move {
            // Biased: a lost lease stops the reader before anything else
            // of it runs.
            let end = tokio::select! {
                biased;
                () = lost.cancelled() => TenureEnd::Lost,
                () = stop.cancelled() => TenureEnd::Stopped,
                outcome = reader.run() => TenureEnd::Read(outcome),
            };
            (id, tenure, end)
        });
    }

    /// A reader's task ended. Returns whether to go on.
    async fn reader_ended(&mut self, shard: String, tenure: u64, end: TenureEnd) -> Result<bool, SourceError> {
        if self.held.get(&shard).is_none_or(|h| h.tenure != tenure) {
            // An earlier tenure's reader, already given up: it has stopped
            // now, so its tenure's end may be sent.
            if self.awaiting_reader.remove(&shard) {
                self.to_release.push(shard);
            }
            return Ok(true);
        }
        match end {
            TenureEnd::Lost => {
                // Its reader has ended: the tenure's end needs no wait.
                if let Some(held) = self.held.get_mut(&shard) {
                    held.phase = Phase::Unlisted;
                }
                self.sweep_lost();
                Ok(true)
            }
            TenureEnd::Stopped | TenureEnd::Read(ShardOutcome::Stopped) => Ok(false),
            TenureEnd::Read(ShardOutcome::Closed) => {
                if let Some(held) = self.held.get_mut(&shard) {
                    held.phase = Phase::Closing;
                }
                let source = SourceId::new(shard);
                let ended = SourceEvent::Ended { source, flush: true };
                // A pipeline that takes nothing more must not keep the
                // stop (and the release of the leases) waiting.
                tokio::select! {
                    sent = self.context.events.send(ended) => Ok(sent.is_ok()),
                    () = self.stop.cancelled() => Ok(false),
                }
            }
            // Not with `once` off; read again from the checkpoint.
            TenureEnd::Read(ShardOutcome::CaughtUp) => {
                if let Some(held) = self.held.get_mut(&shard) {
                    held.phase = Phase::Unlisted;
                }
                Ok(true)
            }
            TenureEnd::Read(ShardOutcome::Failed(error)) => Err(SourceError::Shard { shard, error }),
        }
    }

    /// Saves the final checkpoint of each closing shard whose records are
    /// all delivered: the lease store writes it with `ended`, and the
    /// keeper lets the lease go.
    async fn end_finished(&mut self) -> Result<(), SourceError> {
        let finished: Vec<String> = self
            .held
            .iter()
            .filter(|(id, h)| {
                h.phase == Phase::Closing && self.context.checkpoints.is_finished(&SourceId::new(id.as_str()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if finished.is_empty() {
            return Ok(());
        }
        match self.context.checkpoints.save().await {
            Ok(()) => {}
            Err(error) if error.is_retryable() => {
                tracing::warn!(error = %error, "saving the final checkpoint of a shard failed; trying again");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        }
        for id in finished {
            if !self.keeper.holds(&id) {
                self.held.remove(&id);
                self.context.checkpoints.abandon(&SourceId::new(id.as_str()));
                tracing::info!(shard = %id, "shard finished: every record delivered, its final checkpoint saved, its lease let go");
            }
        }
        Ok(())
    }

    /// Gives up the held shards whose lease's token was cancelled without a
    /// `Lost` change (a checkpoint write that found it taken), or that
    /// ended by the pipeline's own save of their final checkpoint.
    fn sweep_lost(&mut self) {
        let gone: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.lost.is_cancelled())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let closing = self.held.get(&id).is_some_and(|h| h.phase == Phase::Closing);
            if closing && self.context.checkpoints.is_finished(&SourceId::new(id.as_str())) {
                self.held.remove(&id);
                self.context.checkpoints.abandon(&SourceId::new(id.as_str()));
                tracing::info!(shard = %id, "shard ended: every record delivered, its final checkpoint in its lease");
            } else {
                self.lose(&id, LossReason::Taken);
            }
        }
    }

    /// Sends the end of each lost tenure whose reader has stopped. Returns
    /// whether to go on (the pipeline takes events and the source is not
    /// stopped).
    async fn send_releases(&mut self) -> bool {
        while let Some(shard) = self.to_release.first().cloned() {
            let released = SourceEvent::ShardReleased {
                source: SourceId::new(shard.as_str()),
            };
            let sent = tokio::select! {
                sent = self.context.events.send(released) => sent.is_ok(),
                () = self.stop.cancelled() => false,
            };
            if !sent {
                return false;
            }
            // One end per tenure lost: the same shard may be here twice.
            self.to_release.remove(0);
            tracing::debug!(shard = %shard, "end of a lost lease's tenure sent: its records still in the pipeline are dropped, the next owner reads them again");
        }
        true
    }

    /// A shard whose lease holds a checkpoint state this build cannot read
    /// (another version's, or damaged): not read here, its lease released
    /// and never taken again by this instance, the pipeline unready until
    /// it restarts. Its other shards go on: one bad lease must not stop
    /// every instance that takes it in turn.
    fn refuse(&mut self, shard: &str, error: &ShardStateError) {
        self.context.telemetry.emit(ShardRefused {
            shard,
            reason: &error.to_string(),
        });
        let keeper = self.keeper.clone();
        let shard = shard.to_owned();
        tokio::spawn(async move { keeper.refuse(&shard).await });
    }

    /// Stops reading a shard whose lease is lost and forgets it: nothing of
    /// it is counted as delivered here any more, and its records still on
    /// their way are not admitted until the end of this tenure, sent once
    /// its reader has stopped ([`Self::send_releases`]).
    fn lose(&mut self, shard: &str, reason: LossReason) {
        let Some(held) = self.held.remove(shard) else {
            return;
        };
        // Its reader, if any, stops on the token (cancelled already when
        // the keeper gave the lease up).
        held.lost.cancel();
        if held.phase == Phase::Reading {
            self.awaiting_reader.insert(shard.to_owned());
        } else {
            self.to_release.push(shard.to_owned());
        }
        let abandoned = self.context.checkpoints.release(&SourceId::new(shard));
        self.context.telemetry.emit(ShardLost {
            shard,
            reason,
            abandoned_objects: abandoned.len(),
        });
    }
}

fn is_retryable(error: &SourceError) -> bool {
    match error {
        SourceError::Kinesis(error) => error.is_retryable(),
        SourceError::Leased(LeasedError::Lease(error)) => error.is_retryable(),
        _ => false,
    }
}

impl From<LeasedError> for SourceError {
    fn from(error: LeasedError) -> Self {
        SourceError::Leased(error)
    }
}
