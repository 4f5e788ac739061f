//! `[source] type = "archive"`: what a spillway destination wrote, read
//! back into records, for replays and backfills (issue #19).
//!
//! Records come out with the position the archive kept for them (Parquet's
//! position columns, envelope lines, error records), so their source ids
//! are the original shards, and checkpoints are per original shard: the
//! tracker skips what an earlier run delivered, whichever object holds it,
//! which makes a resumed run exact. Records whose position was not kept
//! (plain NDJSON) are positioned by their object's key and line.
//!
//! Order. Objects are read by the time their prefix shows, then by key.
//! Within that time, an object's records of one shard are in order, but
//! objects are named after their first record only, so two objects of the
//! same hour may hold one shard's records in either key order: the
//! objects of one prefix time are therefore read together and each shard's
//! records sorted by position before they are sent ([`sort`]: in memory up
//! to a bound, through run files on disk past it). A record at or before one already sent for its shard,
//! but not the same, is out of order (the archive mixed prefix times): it
//! goes to the error output rather than break the shard's order. A record
//! whose position was sent already (the same record archived twice) is
//! sent once.

pub mod config;
mod decode;
mod filter;
mod sort;
mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use spillway_destinations::TimeSpan;
use spillway_transforms::{Offset, Record, Rejection, SourceId};
use tokio::sync::mpsc;

pub use config::{ArchiveConfig, ArchiveSettings};
use decode::{Item, ObjectKind};
pub use filter::RecordFilter;
pub use store::ArchiveError;
use store::ArchiveStore;

use super::{Source, SourceContext, SourceError, SourceEvent};

/// Records per event sent to the pipeline.
const CHUNK: usize = 1000;

pub struct ArchiveSource {
    config: ArchiveConfig,
}

impl ArchiveSource {
    pub fn new(config: ArchiveConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Source for ArchiveSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        ArchiveStore::open(&self.config.location).await?.check().await
    }

    async fn run(self: Box<Self>, context: SourceContext) {
        tokio::spawn(async move {
            match read(&self.config, &context.events, &ReadProgress::default()).await {
                Ok(()) | Err(SourceError::Archive(ArchiveError::Stopped)) => {}
                Err(err) => {
                    let _ = context.events.send(SourceEvent::Failed(err)).await;
                }
            }
        });
    }

    fn describe(&self) -> String {
        format!("archive {}", store::describe(&self.config.location))
    }
}

/// An object to read, and the span of time its prefix stands for.
#[derive(Debug)]
struct Listed {
    key: String,
    kind: ObjectKind,
    /// `None` when the prefix template names no year: the object's time
    /// cannot be told from its key.
    span: Option<TimeSpan>,
}

/// The objects to read, grouped by the start of their prefix time, each
/// group in key order; and how many were skipped unread for the time range.
/// Objects whose time cannot be told (a prefix template without a year)
/// are one group, read first, and never skipped for the time range: their
/// records are filtered one by one.
fn plan(config: &ArchiveConfig, keys: Vec<String>) -> (BTreeMap<Option<DateTime<Utc>>, Vec<Listed>>, usize) {
    // Everything under the error prefix's fixed part is error output: only
    // the chosen types are read.
    let error_root = config.error_prefix.root(Some("\0"));
    let error_root = error_root.split('\0').next().unwrap_or_default().to_owned();
    let mut groups: BTreeMap<Option<DateTime<Utc>>, Vec<Listed>> = BTreeMap::new();
    let mut outside = 0;
    let mut foreign = 0;
    for key in keys {
        let internal = key.starts_with("_spillway/")
            || key
                .split('/')
                .any(|segment| segment == spillway_destinations::key::STAGING_DIR);
        if internal {
            continue;
        }
        let error_type = config.include_errors.iter().find_map(|&t| {
            config
                .error_prefix
                .time_of(&key, Some(t.as_str()))
                .filter(|(_, name)| !name.contains('/'))
                .map(|(span, _)| (t, span))
        });
        let (kind, span) = match error_type {
            Some((t, span)) => (ObjectKind::Errors(t), span),
            None if !error_root.is_empty() && key.starts_with(&error_root) => continue,
            None => match config.prefix.time_of(&key, None) {
                Some((span, name)) if !name.contains('/') && !name.is_empty() => (ObjectKind::Data, span),
                _ => {
                    foreign += 1;
                    tracing::warn!(key = %key, prefix = %config.prefix.as_str(), "skipping an object whose key the prefix template did not make");
                    continue;
                }
            },
        };
        let after_end = config.end_time.zip(span).is_some_and(|(end, span)| span.start >= end);
        let before_start = config.start_time.zip(span).is_some_and(|(start, span)| {
            span.end + chrono::Duration::from_std(config.object_span).unwrap_or_default() <= start
        });
        if after_end || before_start {
            outside += 1;
            tracing::debug!(key = %key, "skipping an object outside the time range, unread");
            continue;
        }
        groups
            .entry(span.map(|s| s.start))
            .or_default()
            .push(Listed { key, kind, span });
    }
    for group in groups.values_mut() {
        group.sort_by(|a, b| a.key.cmp(&b.key));
    }
    if foreign > 0 {
        tracing::warn!(
            objects = foreign,
            "objects skipped: their keys are not of the configured prefix (set source.prefix to the destination's)"
        );
    }
    (groups, outside)
}

/// How far a reading of the archive is, for those who show it (the
/// `spillway replay` progress bar): set as objects are listed and read.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// The objects to read (in the time range, of the prefix), once
    /// listed.
    pub objects_total: AtomicU64,
    pub objects_read: AtomicU64,
    /// Their bytes as stored (compressed).
    pub bytes_read: AtomicU64,
}

/// Reads every object of the archive, in order, and sends its records to
/// `events`: what the source does in a pipeline, and what `spillway replay
/// --to -` prints without one.
pub async fn read(
    config: &ArchiveConfig,
    events: &mpsc::Sender<SourceEvent>,
    progress: &ReadProgress,
) -> Result<(), SourceError> {
    let store = ArchiveStore::open(&config.location).await?;
    let mut roots = vec![config.prefix.root(None)];
    for &error_type in &config.include_errors {
        roots.push(config.error_prefix.root(Some(error_type.as_str())));
    }
    let keys = store.list(&roots).await?;
    let listed = keys.len();
    let (groups, outside) = plan(config, keys);
    let to_read: usize = groups.values().map(Vec::len).sum();
    progress.objects_total.store(to_read as u64, Ordering::Relaxed);
    tracing::info!(
        archive = %store.describe(),
        listed,
        to_read,
        skipped_outside_time_range = outside,
        "reading the archive"
    );
    let mut sender = Sender::new(config, events);
    for group in groups.into_values() {
        let mut kept = sort::ShardSort::for_pipeline();
        for object in group {
            let body = store.read(&object.key).await?;
            progress.bytes_read.fetch_add(body.len() as u64, Ordering::Relaxed);
            // Records whose arrival the archive did not keep arrive at the
            // time their prefix shows, or, when it shows none, when they
            // are read (as a file source's records do).
            let arrival = object.span.map_or_else(Utc::now, |span| span.start);
            match decode::decode(&object.key, body, object.kind, arrival) {
                Ok(items) => {
                    for item in items {
                        match item {
                            Item::Kept(record) => kept.push(record).map_err(ArchiveError::sort)?,
                            Item::Unkept(record) => sender.record(record).await?,
                            Item::Refused(record, why) => sender.refused(record, why).await?,
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(key = %object.key, error = %err, "cannot read an archived object: it goes to the error output");
                    let record = Record {
                        data: bytes::Bytes::from(object.key.clone().into_bytes()),
                        position: spillway_transforms::Position {
                            source: decode::object_source(&object.key),
                            offset: Offset::new(spillway_transforms::SequenceNumber::from_u64(0), 0),
                        },
                        partition_key: None,
                        arrival,
                    };
                    sender
                        .refused(record, decode::rejection(format!("{}: {err}", object.key)))
                        .await?;
                }
            }
            sender.flush().await?;
            progress.objects_read.fetch_add(1, Ordering::Relaxed);
        }
        // Each shard's records in order: a stable sort keeps the archive's
        // order among records of equal position (sent once, below).
        for record in kept.finish().map_err(ArchiveError::sort)? {
            sender.kept(record.map_err(ArchiveError::sort)?).await?;
        }
        sender.flush().await?;
    }
    sender.end().await
}

/// Sends records in chunks, filtered, each shard in order.
struct Sender<'a> {
    config: &'a ArchiveConfig,
    events: &'a mpsc::Sender<SourceEvent>,
    shards: Option<HashSet<SourceId>>,
    /// The last position sent per source.
    last: HashMap<SourceId, Offset>,
    records: Vec<Record>,
    duplicates: u64,
}

impl<'a> Sender<'a> {
    fn new(config: &'a ArchiveConfig, events: &'a mpsc::Sender<SourceEvent>) -> Self {
        Self {
            config,
            events,
            shards: config.shards.as_ref().map(|s| s.iter().cloned().collect()),
            last: HashMap::new(),
            records: Vec::new(),
            duplicates: 0,
        }
    }

    fn in_range(&self, record: &Record) -> bool {
        self.config.start_time.is_none_or(|start| record.arrival >= start)
            && self.config.end_time.is_none_or(|end| record.arrival < end)
    }

    /// A record whose position the archive did not keep: its object's
    /// records are in order already.
    async fn record(&mut self, record: Record) -> Result<(), SourceError> {
        if !self.in_range(&record) {
            return Ok(());
        }
        self.last
            .insert(record.position.source.clone(), record.position.offset.clone());
        self.push(record).await
    }

    /// A record with its original position.
    async fn kept(&mut self, record: Record) -> Result<(), SourceError> {
        if self
            .shards
            .as_ref()
            .is_some_and(|s| !s.contains(&record.position.source))
            || !self.in_range(&record)
        {
            return Ok(());
        }
        match self.last.get(&record.position.source) {
            Some(last) if *last == record.position.offset => {
                self.duplicates += 1;
                return Ok(());
            }
            Some(last) if *last > record.position.offset => {
                let why = format!(
                    "record {} of {} comes after {} in the archive (an earlier prefix time): sent to the error output to keep the shard's order",
                    record.position.offset.sequence_number, record.position.source, last.sequence_number
                );
                // Positioned apart from the shard, whose order it would break.
                let mut refused = record;
                refused.position.source = SourceId::new(format!("archive-out-of-order-{}", refused.position.source));
                return self.refused(refused, decode::rejection(why)).await;
            }
            _ => {}
        }
        self.last
            .insert(record.position.source.clone(), record.position.offset.clone());
        self.push(record).await
    }

    async fn push(&mut self, record: Record) -> Result<(), SourceError> {
        self.records.push(record);
        if self.records.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn refused(&mut self, record: Record, why: Rejection) -> Result<(), SourceError> {
        self.flush().await?;
        // Out-of-order records of one shard share a source: keep them in
        // order among themselves too.
        if let Some(last) = self.last.get(&record.position.source) {
            if *last >= record.position.offset {
                self.duplicates += 1;
                return Ok(());
            }
        }
        self.last
            .insert(record.position.source.clone(), record.position.offset.clone());
        self.send(SourceEvent::Refused(vec![(record, why)])).await
    }

    /// Sends the records waiting, those the filter keeps; one it cannot
    /// judge goes to the error output, in its place among the others.
    async fn flush(&mut self) -> Result<(), SourceError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        let Some(filter) = &self.config.filter else {
            return self.send(SourceEvent::Records(records)).await;
        };
        let verdicts = filter.keeps(records.iter().map(|r| r.data.clone()).collect()).await;
        let mut kept = Vec::with_capacity(records.len());
        for (record, verdict) in records.into_iter().zip(verdicts) {
            match verdict {
                Ok(true) => kept.push(record),
                Ok(false) => {}
                Err(why) => {
                    if !kept.is_empty() {
                        self.send(SourceEvent::Records(std::mem::take(&mut kept))).await?;
                    }
                    self.send(SourceEvent::Refused(vec![(record, why)])).await?;
                }
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        self.send(SourceEvent::Records(kept)).await
    }

    async fn send(&self, event: SourceEvent) -> Result<(), SourceError> {
        // The pipeline stopped listening (shutdown): nothing more to do.
        self.events.send(event).await.map_err(|_| ArchiveError::Stopped.into())
    }

    async fn end(mut self) -> Result<(), SourceError> {
        self.flush().await?;
        if self.duplicates > 0 {
            tracing::warn!(
                records = self.duplicates,
                "records archived more than once were sent once"
            );
        }
        let mut sources: Vec<SourceId> = self.last.keys().cloned().collect();
        sources.sort();
        for source in sources {
            self.send(SourceEvent::Ended { source, flush: false }).await?;
        }
        Ok(())
    }
}
