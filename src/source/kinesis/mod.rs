//! The Kinesis Data Streams source.
//!
//! A coordinator lists the stream's shards (at start, every
//! `shard_discovery_seconds`, and whenever a shard closes) and runs one
//! [`shard_reader::ShardReader`] per shard. Shard lineage is respected: a
//! shard is read only once each of its parents is read to its end and
//! checkpointed as finished (a child of a merge waits for both), so the
//! order of each partition key holds across splits and merges. Each shard
//! resumes at its checkpoint; records at or before it are skipped by the
//! checkpoint tracker, which is subsequence-aware.

pub mod api;
pub mod kpl;
mod shard_reader;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spillway_transforms::SourceId;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::api::{KinesisApi, KinesisError, ShardInfo, StartAt};
use self::shard_reader::{ReaderOptions, ShardOutcome, ShardReader};
use super::{Source, SourceContext, SourceError, SourceEvent};
use crate::config::{KinesisConfig, StartPosition};

/// How often a coordinator waiting on a closed parent checks whether it is
/// finished.
const FINISH_POLL: Duration = Duration::from_millis(200);

pub struct KinesisSource {
    config: KinesisConfig,
    once: bool,
    api: Option<Arc<KinesisApi>>,
}

impl KinesisSource {
    pub fn new(config: KinesisConfig, once: bool) -> Self {
        Self {
            config,
            once,
            api: None,
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
        let coordinator = Coordinator {
            api,
            start: self.config.start.clone(),
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
            listed_once: false,
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
    /// Listed at start: it starts at the configured position; shards found
    /// later start at their beginning.
    initial: bool,
}

struct Coordinator {
    api: Arc<KinesisApi>,
    start: StartPosition,
    discovery_interval: Duration,
    reader: ReaderOptions,
    once: bool,
    context: SourceContext,
    shards: BTreeMap<String, Shard>,
    readers: JoinSet<(String, ShardOutcome)>,
    listed_once: bool,
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
                }
                next_discovery = Instant::now() + self.discovery_interval;
            }
            self.promote_finished().await;
            self.start_ready();
            let waiting_on_finish = self.shards.values().any(|s| s.state == State::Closed);
            if self.once && self.readers.is_empty() && !waiting_on_finish {
                tracing::info!("--once: every shard read up to its tip or its end");
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
                        ShardOutcome::Failed(err) => {
                            let _ = self.context.events.send(SourceEvent::Failed(err.into())).await;
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

    async fn discover(&mut self) -> Result<(), KinesisError> {
        let listed = self.api.list_shards().await?;
        let initial = !self.listed_once;
        self.listed_once = true;
        for info in listed {
            if let Some(known) = self.shards.get_mut(&info.id) {
                if info.ending_sequence.is_some() {
                    *known.ending.lock().expect("not poisoned") = info.ending_sequence.clone();
                    known.info.closed = true;
                }
                continue;
            }
            let source = SourceId::new(info.id.clone());
            let checkpoint = self.context.checkpoints.checkpoint(&source);
            let state = if self.context.checkpoints.is_finished(&source) {
                State::Done
            } else if initial && info.closed && checkpoint.is_none() && self.start == StartPosition::Latest {
                tracing::info!(shard = %info.id, "closed shard skipped: reading starts at the latest records");
                State::Done
            } else {
                State::Waiting
            };
            tracing::info!(shard = %info.id, parents = ?info.parents, closed = info.closed, ?state, "found shard");
            let ending = Arc::new(std::sync::Mutex::new(info.ending_sequence.clone()));
            self.shards.insert(
                info.id.clone(),
                Shard {
                    info,
                    ending,
                    state,
                    initial,
                },
            );
        }
        Ok(())
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
                None if shard.initial => match &self.start {
                    StartPosition::TrimHorizon => StartAt::TrimHorizon,
                    StartPosition::Latest => StartAt::Latest,
                    StartPosition::AtTimestamp(at) => StartAt::AtTimestamp(*at),
                },
                None => StartAt::TrimHorizon,
            };
            let reader = ShardReader {
                api: self.api.clone(),
                shard: shard.info.clone(),
                ending: shard.ending.clone(),
                start,
                events: self.context.events.clone(),
                options: self.reader.clone(),
            };
            self.readers.spawn(async move { (id, reader.run().await) });
        }
    }
}

impl From<KinesisError> for SourceError {
    fn from(err: KinesisError) -> Self {
        SourceError::Kinesis(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
