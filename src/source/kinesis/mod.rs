//! The Kinesis Data Streams source.
//!
//! A coordinator lists the stream's shards (at start, every
//! `shard_discovery_seconds`, and whenever a shard closes) and runs one
//! [`shard_reader::ShardReader`] per shard. Shard lineage is respected: a
//! shard is read only once each of its parents is read to its end and
//! checkpointed as finished (a child of a merge waits for both), so the
//! order of each partition key holds across splits and merges. Each shard
//! resumes at its checkpoint; records at or before it are skipped by the
//! checkpoint tracker, which is subsequence-aware. A shard without a
//! checkpoint starts at the configured position; `latest` is the moment the
//! delivery stream first started, kept in the checkpoint, so that a restart
//! never skips what arrived while it was stopped.
//!
//! `--once` reads every open shard up to its tip as of start and every
//! closed shard to its end, and then the children of the closed ones, as
//! many generations as there are; a shard it could not read ends the run
//! with an error naming it.

pub mod api;
pub mod config;
pub mod kpl;
pub mod leased;
mod lineage;
mod shard_reader;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spillway_transforms::SourceId;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::api::{KinesisApi, KinesisError, ShardInfo, StartAt};
use self::config::{KinesisConfig, StartPosition};
use self::lineage::Lineage;
use self::shard_reader::{ReaderOptions, ShardOutcome, ShardReader};
use super::{Source, SourceContext, SourceError, SourceEvent};
use crate::checkpoint::StoreError;

/// How often a coordinator waiting on a closed parent checks whether it is
/// finished.
const FINISH_POLL: Duration = Duration::from_millis(200);

pub struct KinesisSource {
    config: KinesisConfig,
    once: bool,
    api: Option<Arc<KinesisApi>>,
    /// With `[coordination]`: read only the shards whose leases this
    /// instance holds ([`leased`]).
    coordination: Option<leased::Coordination>,
    /// With `[coordination]` in a pipeline: the leases are released at
    /// stop only once the pipeline has delivered what was read.
    hand_over: Option<leased::HandOver>,
}

impl KinesisSource {
    pub fn new(config: KinesisConfig, once: bool) -> Self {
        Self {
            config,
            once,
            api: None,
            coordination: None,
            hand_over: None,
        }
    }

    /// The source of one of several instances sharing the stream: it reads
    /// the shards whose leases `coordination`'s keeper wins ([`leased`]).
    pub fn leased(config: KinesisConfig, coordination: leased::Coordination) -> Self {
        Self {
            coordination: Some(coordination),
            ..Self::new(config, false)
        }
    }

    /// At stop, keeps the leases until `hand_over` is released
    /// ([`leased::HandOver`]) rather than releasing them at once.
    pub fn handing_over(self, hand_over: leased::HandOver) -> Self {
        Self {
            hand_over: Some(hand_over),
            ..self
        }
    }

    fn where_(&self) -> String {
        let mut parts = Vec::new();
        if let Some(region) = &self.config.region {
            parts.push(format!("region {region}"));
        }
        if let Some(endpoint) = &self.config.endpoint {
            // Without user information or query, which may hold secrets.
            parts.push(format!(
                "endpoint {}",
                spillway_destinations::redact::url_for_logs(endpoint)
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

#[async_trait]
impl Source for KinesisSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        let client = api::client(self.config.region.as_deref(), self.config.endpoint.as_deref()).await;
        let api = KinesisApi::new(client, self.config.stream.clone());
        api.check_stream().await.map_err(|err| match err {
            KinesisError::StreamNotFound { stream, where_ } => KinesisError::StreamNotFound {
                stream,
                where_: format!("{where_}{}", self.where_()),
            },
            other => other,
        })?;
        self.api = Some(Arc::new(api));
        Ok(())
    }

    async fn run(self: Box<Self>, context: SourceContext) {
        let api = self.api.clone().expect("check() runs before run()");
        if let Some(coordination) = self.coordination.clone() {
            let hand_over = self.hand_over.clone();
            let coordinator = leased::Coordinator::new(api, &self.config, coordination, context);
            tokio::spawn(async move {
                coordinator.handing_over(hand_over.clone()).run().await;
                // However it ended: nothing of this source holds a lease now.
                if let Some(hand_over) = hand_over {
                    hand_over.done();
                }
            });
            return;
        }
        let coordinator = Coordinator {
            api,
            start: self.config.start.clone(),
            from: None,
            discovery_interval: self.config.discovery_interval,
            reader: ReaderOptions {
                idle_poll: self.config.idle_poll,
                max_records: self.config.max_records,
                once: self.once,
                started_at: chrono::Utc::now(),
            },
            once: self.once,
            context,
            shards: BTreeMap::new(),
            readers: JoinSet::new(),
        };
        tokio::spawn(coordinator.run());
    }

    fn describe(&self) -> String {
        format!("kinesis stream {}{}", self.config.stream, self.where_())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not started: waiting for its parents.
    Waiting,
    Running,
    /// `--once`: read up to its tip.
    CaughtUp,
    /// Read to its end; waiting until all its records are delivered.
    Closed,
    /// Finished (or nothing to read): its children may start.
    Done,
}

struct Shard {
    info: ShardInfo,
    ending: Arc<std::sync::Mutex<Option<String>>>,
    state: State,
}

struct Coordinator {
    api: Arc<KinesisApi>,
    start: StartPosition,
    /// Where a shard without a checkpoint starts: the configured position,
    /// resolved once the shards are first listed.
    from: Option<StartAt>,
    discovery_interval: Duration,
    reader: ReaderOptions,
    once: bool,
    context: SourceContext,
    shards: BTreeMap<String, Shard>,
    readers: JoinSet<(String, ShardOutcome)>,
}

impl Coordinator {
    async fn run(mut self) {
        let mut next_discovery = Instant::now();
        loop {
            if Instant::now() >= next_discovery {
                if let Err(err) = self.discover().await {
                    if !err.is_retryable() {
                        let _ = self.context.events.send(SourceEvent::Failed(err.into())).await;
                        return;
                    }
                    tracing::warn!(error = %err, "listing shards failed; trying again later");
                } else if self.from.is_none() {
                    if let Err(err) = self.resolve_start().await {
                        let _ = self.context.events.send(SourceEvent::Failed(err.into())).await;
                        return;
                    }
                }
                next_discovery = Instant::now() + self.discovery_interval;
            }
            self.promote_finished().await;
            self.start_ready();
            let waiting_on_finish = self.shards.values().any(|s| s.state == State::Closed);
            if self.once && self.from.is_some() && self.readers.is_empty() && !waiting_on_finish {
                let unread = unread(&self.shards);
                if unread.is_empty() {
                    tracing::info!("--once: every open shard read up to its tip, every closed one to its end");
                } else {
                    let _ = self
                        .context
                        .events
                        .send(SourceEvent::Failed(SourceError::Unread(unread)))
                        .await;
                }
                return;
            }
            let wake = if waiting_on_finish {
                Instant::now() + FINISH_POLL
            } else {
                next_discovery
            };
            tokio::select! {
                Some(joined) = self.readers.join_next() => {
                    let (shard, outcome) = joined.expect("shard readers do not panic");
                    match outcome {
                        ShardOutcome::Closed => {
                            self.set_state(&shard, State::Closed);
                            let source = SourceId::new(shard);
                            if self.context.events.send(SourceEvent::Ended { source, flush: true }).await.is_err() {
                                return;
                            }
                            // Its children may not be listed yet.
                            next_discovery = Instant::now();
                        }
                        ShardOutcome::CaughtUp => self.set_state(&shard, State::CaughtUp),
                        ShardOutcome::Stopped => return,
                        ShardOutcome::Failed(error) => {
                            let failed = SourceError::Shard { shard, error };
                            let _ = self.context.events.send(SourceEvent::Failed(failed)).await;
                            return;
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
                () = self.context.events.closed() => return,
            }
        }
    }

    fn set_state(&mut self, shard: &str, state: State) {
        if let Some(s) = self.shards.get_mut(shard) {
            s.state = state;
        }
    }

    /// Resolves where shards without a checkpoint start. For `latest`: the
    /// moment reading first started, set now if this is the first start
    /// (then the shards already closed hold nothing to read and are marked
    /// finished) and saved before anything is read.
    async fn resolve_start(&mut self) -> Result<(), StoreError> {
        let from = match &self.start {
            StartPosition::TrimHorizon => StartAt::TrimHorizon,
            StartPosition::AtTimestamp(at) => StartAt::AtTimestamp(*at),
            StartPosition::Latest => {
                let (at, first) = self.context.checkpoints.start_reading_at(chrono::Utc::now());
                if first {
                    for (id, shard) in self.shards.iter_mut() {
                        let source = SourceId::new(id.as_str());
                        if shard.info.closed && self.context.checkpoints.checkpoint(&source).is_none() {
                            tracing::info!(shard = %id, "closed before the first start: nothing to read");
                            self.context.checkpoints.end_of_input(&source);
                            shard.state = State::Done;
                        }
                    }
                }
                self.context.checkpoints.save().await?;
                tracing::info!(from = %at.to_rfc3339(), first_start = first, "start_position latest: shards without a checkpoint are read from when this delivery stream first started");
                StartAt::AtTimestamp(at)
            }
        };
        self.from = Some(from);
        Ok(())
    }

    async fn discover(&mut self) -> Result<(), KinesisError> {
        let listed = self.api.list_shards().await?;
        let lineage = Lineage::of(listed.iter().map(|s| (s.id.as_str(), s.parents.as_slice())));
        let parents: BTreeMap<String, Vec<String>> = listed.iter().map(|s| (s.id.clone(), s.parents.clone())).collect();
        for info in listed {
            if let Some(known) = self.shards.get_mut(&info.id) {
                if info.ending_sequence.is_some() {
                    *known.ending.lock().expect("not poisoned") = info.ending_sequence.clone();
                    known.info.closed = true;
                }
                continue;
            }
            let source = SourceId::new(info.id.clone());
            let checkpoints = &self.context.checkpoints;
            // Finished: said so by its entry, or, its entry forgotten, by
            // a descendant that was read (see `lineage`).
            let finished = checkpoints.is_finished(&source)
                || (!checkpoints.knows(&source)
                    && lineage.finished_by_descendants(&info.id, &|shard| checkpoints.knows(&SourceId::new(shard))));
            let state = if finished { State::Done } else { State::Waiting };
            tracing::info!(shard = %info.id, parents = ?info.parents, closed = info.closed, ?state, "found shard");
            let ending = Arc::new(std::sync::Mutex::new(info.ending_sequence.clone()));
            self.shards.insert(info.id.clone(), Shard { info, ending, state });
        }
        self.forget_spent(&parents).await;
        Ok(())
    }

    /// Forgets the checkpoint entries of shards finished and superseded by
    /// a child that was read, and of shards the stream no longer lists
    /// (`listed`: shard → parents, just listed), and saves that.
    async fn forget_spent(&mut self, listed: &BTreeMap<String, Vec<String>>) {
        let checkpoints = &self.context.checkpoints;
        let entries: BTreeMap<String, bool> = checkpoints
            .entries()
            .into_iter()
            .map(|(id, finished)| (id.as_str().to_owned(), finished))
            .collect();
        let spent: Vec<SourceId> = lineage::to_forget(&entries, listed)
            .into_iter()
            .map(SourceId::new)
            .collect();
        if spent.is_empty() {
            return;
        }
        let forgotten = checkpoints.forget_idle(&spent);
        if forgotten.is_empty() {
            return;
        }
        match checkpoints.save().await {
            Ok(()) => {
                let shards: Vec<&str> = forgotten.iter().map(SourceId::as_str).collect();
                tracing::info!(
                    ?shards,
                    "checkpoint: forgot shards finished before a child was read, or past retention"
                );
            }
            // The next save (after the next object) writes it.
            Err(err) => tracing::warn!(error = %err, "saving checkpoints failed"),
        }
    }

    /// Closed shards whose records are all delivered become done.
    async fn promote_finished(&mut self) {
        let finished: Vec<String> = self
            .shards
            .iter()
            .filter(|(id, s)| {
                s.state == State::Closed && self.context.checkpoints.is_finished(&SourceId::new(id.as_str()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if finished.is_empty() {
            return;
        }
        // Persist "finished" before any child is read.
        if let Err(err) = self.context.checkpoints.save().await {
            tracing::warn!(error = %err, "saving checkpoints failed; children wait");
            return;
        }
        for id in finished {
            tracing::info!(shard = %id, "shard finished: every record delivered");
            self.set_state(&id, State::Done);
        }
    }

    fn start_ready(&mut self) {
        let Some(from) = self.from.clone() else {
            return;
        };
        let ready: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.state == State::Waiting)
            .filter(|(_, s)| {
                s.info.parents.iter().all(|p| match self.shards.get(p) {
                    // A parent no longer listed is past retention.
                    None => true,
                    Some(parent) => parent.state == State::Done,
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let shard = self.shards.get_mut(&id).expect("listed");
            shard.state = State::Running;
            let source = SourceId::new(id.clone());
            let start = match self.context.checkpoints.checkpoint(&source) {
                // Subsequence-aware: re-read the checkpointed record; the
                // tracker skips its user records up to the checkpoint.
                Some(offset) => StartAt::AtSequence(offset.sequence_number.to_string()),
                None => from.clone(),
            };
            let reader = ShardReader {
                api: self.api.clone(),
                shard: shard.info.clone(),
                ending: shard.ending.clone(),
                start,
                events: self.context.events.clone(),
                options: self.reader.clone(),
                telemetry: self.context.telemetry.clone(),
            };
            self.readers.spawn(async move { (id, reader.run().await) });
        }
    }
}

/// The shards `--once` left unread, each with why. A shard waiting only
/// for parents that were open at start (read up to their tips; they closed
/// during the run) is not one: its turn is the next run's, after the rest
/// of its parents.
fn unread(shards: &BTreeMap<String, Shard>) -> Vec<String> {
    let mut next_run: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = next_run.len();
        for (id, shard) in shards {
            let only_open_parents = shard.info.parents.iter().all(|p| match shards.get(p) {
                None => true,
                Some(parent) => matches!(parent.state, State::Done | State::CaughtUp) || next_run.contains(p.as_str()),
            });
            if shard.state == State::Waiting && only_open_parents {
                next_run.insert(id);
            }
        }
        if next_run.len() == before {
            break;
        }
    }
    if !next_run.is_empty() {
        tracing::info!(shards = ?next_run, "--once: shards whose parents closed during this run are read by the next run");
    }
    shards
        .iter()
        .filter(|(id, s)| !matches!(s.state, State::Done | State::CaughtUp) && !next_run.contains(id.as_str()))
        .map(|(id, shard)| {
            let waits_for: Vec<String> = shard
                .info
                .parents
                .iter()
                .filter_map(|p| shards.get(p).map(|parent| (p, parent.state)))
                .filter(|(_, state)| *state != State::Done)
                .map(|(p, state)| format!("{p} ({})", describe(state)))
                .collect();
            if shard.state == State::Waiting && !waits_for.is_empty() {
                format!("{id} waits for its parent {}", waits_for.join(" and "))
            } else {
                format!("{id} ({})", describe(shard.state))
            }
        })
        .collect()
}

fn describe(state: State) -> &'static str {
    match state {
        State::Waiting => "not read",
        State::Running => "still being read",
        State::CaughtUp => "read only up to its tip, not to its end",
        State::Closed => "read to its end, not all delivered",
        State::Done => "finished",
    }
}

impl From<KinesisError> for SourceError {
    fn from(err: KinesisError) -> Self {
        SourceError::Kinesis(err)
    }
}

impl From<StoreError> for SourceError {
    fn from(err: StoreError) -> Self {
        SourceError::Checkpoint(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], state: State) -> (String, Shard) {
        let info = ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            hash_range: (0, u128::MAX),
            closed: false,
            ending_sequence: None,
        };
        let ending = Arc::new(std::sync::Mutex::new(None));
        (id.into(), Shard { info, ending, state })
    }

    #[test]
    fn once_names_each_shard_it_left_unread_and_why() {
        let shards: BTreeMap<String, Shard> = [
            shard("s0", &[], State::Done),
            shard("s1", &[], State::Closed),
            shard("s2", &["s1"], State::Waiting),
            shard("s3", &["s2"], State::Waiting),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            unread(&shards),
            [
                "s1 (read to its end, not all delivered)",
                "s2 waits for its parent s1 (read to its end, not all delivered)",
                "s3 waits for its parent s2 (not read)",
            ]
        );
    }

    #[test]
    fn children_of_shards_that_closed_during_a_once_run_are_the_next_runs() {
        // s1 was open at start (read up to its tip); its children appeared
        // during the run, and their own child too.
        let shards: BTreeMap<String, Shard> = [
            shard("s1", &[], State::CaughtUp),
            shard("s2", &["s1"], State::Waiting),
            shard("s3", &["s1"], State::Waiting),
            shard("s4", &["s2", "s3"], State::Waiting),
            shard("s5", &[], State::Done),
        ]
        .into_iter()
        .collect();
        assert!(unread(&shards).is_empty());
    }

    #[test]
    fn the_description_hides_what_the_endpoint_url_may_hold_of_secrets() {
        let config = KinesisConfig {
            stream: api::StreamRef::Name("clicks".into()),
            region: Some("eu-west-1".into()),
            endpoint: Some("https://key:secret@kinesis.local:4567/?token=abc".into()),
            start: StartPosition::TrimHorizon,
            idle_poll: Duration::from_secs(1),
            max_records: 10_000,
            discovery_interval: Duration::from_secs(30),
        };
        assert_eq!(
            KinesisSource::new(config, false).describe(),
            "kinesis stream clicks (region eu-west-1, endpoint https://kinesis.local:4567/)"
        );
    }
}
