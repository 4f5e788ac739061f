//! Sources: where records come from.
//!
//! A source reads one or more ordered partitions (files, Kinesis shards,
//! the original shards of an archive), each identified by a [`SourceId`], and sends their records in
//! order over a bounded channel, so a full pipeline slows it down instead
//! of growing memory. It resumes each partition after its checkpoint.

pub mod archive;
mod file;
pub mod kinesis;
mod lines;
mod stdin;

use std::sync::Arc;

use async_trait::async_trait;
use spillway_transforms::{Record, Rejection, SourceId};
use tokio::sync::mpsc;

use crate::checkpoint::Checkpointer;

pub use file::{file_source_id, FileSettings, FileSource};
pub use stdin::{StdinSettings, StdinSource};

/// A validated `[source]`: one variant per source, registered in
/// `config/components.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// NDJSON files, read in order, each once.
    Files { paths: Vec<std::path::PathBuf> },
    /// NDJSON on standard input.
    Stdin,
    /// A Kinesis data stream.
    Kinesis(kinesis::config::KinesisConfig),
    /// What a spillway destination (or Firehose) archived.
    Archive(Box<archive::ArchiveConfig>),
}

/// What a source tells the pipeline.
#[derive(Debug)]
pub enum SourceEvent {
    /// Records, in order within each source id.
    Records(Vec<Record>),
    /// Records the source itself cannot pass on as data (a Kinesis record
    /// whose sequence number is not one, a KPL user record outside its
    /// shard's hash key range): each goes to the error output with its
    /// reason, in order with the records around it, and is checkpointed
    /// like any other.
    Refused(Vec<(Record, Rejection)>),
    /// Records that went through the processors (sent by the processor
    /// stage, never by a source), in order within each source id.
    Processed(Vec<crate::processor::Processed>),
    /// This partition has no more records (a file read to its end, a
    /// closed shard). With `flush`, buffers are flushed at once so that it
    /// is finished soon (its children wait for that).
    Ended { source: SourceId, flush: bool },
    /// The end of a tenure of this shard's lease (with coordination): its
    /// lease was lost and its reader has stopped, so every record read
    /// under that lease came before this event. Its buffers are dropped
    /// unwritten and none of its records is admitted until here (the new
    /// owner reads them again from the lease's checkpoint); what comes
    /// after was read in a later tenure (the shard won back). Not sent
    /// when a shard ends: that is [`SourceEvent::Ended`].
    ShardReleased { source: SourceId },
    /// The source cannot go on.
    Failed(SourceError),
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kinesis(kinesis::api::KinesisError),
    #[error("cannot read shard {shard}: {error}")]
    Shard {
        shard: String,
        #[source]
        error: kinesis::api::KinesisError,
    },
    #[error("archive source: {0}")]
    Archive(archive::ArchiveError),
    #[error("saving the checkpoint failed: {0}")]
    Checkpoint(crate::checkpoint::StoreError),
    /// With `[coordination]`: the lease table, or a lease's state.
    #[error(transparent)]
    Leased(kinesis::leased::LeasedError),
    /// `--once` could not read these shards (each with why).
    #[error("--once left {} shard(s) unread: {}", .0.len(), .0.join("; "))]
    Unread(Vec<String>),
    #[error("{path} is shorter ({length} bytes) than its checkpoint (offset {offset}): was it truncated or replaced? Delete the checkpoint to read it again from the start")]
    ShorterThanCheckpoint { path: String, length: u64, offset: u64 },
}

/// What a running source needs.
pub struct SourceContext {
    pub events: mpsc::Sender<SourceEvent>,
    pub checkpoints: Arc<Checkpointer>,
    /// Where readers report what they see (Kinesis: lag, throttles).
    pub telemetry: crate::telemetry::Telemetry,
}

/// A reader of records.
#[async_trait]
pub trait Source: Send {
    /// Checks, before anything is read, what can be checked: for Kinesis,
    /// that the stream exists.
    async fn check(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Starts reading; reads until every partition ends or the receiver is
    /// dropped.
    async fn run(self: Box<Self>, context: SourceContext);

    /// A description for logs.
    fn describe(&self) -> String;
}

/// Builds the configured source. `once`: read what is there now, then end
/// (files and stdin always do).
pub fn build(config: &SourceConfig, checkpoints: &Checkpointer, once: bool) -> Box<dyn Source> {
    match config {
        SourceConfig::Files { paths } => Box::new(FileSource::new(paths.clone())),
        SourceConfig::Stdin => Box::new(StdinSource::new(checkpoints)),
        SourceConfig::Kinesis(kinesis) => Box::new(kinesis::KinesisSource::new(kinesis.clone(), once)),
        SourceConfig::Archive(archive) => Box::new(archive::ArchiveSource::new(archive.as_ref().clone())),
    }
}
