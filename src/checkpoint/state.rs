//! The persisted checkpoint state, versioned.
//!
//! Per source: `checkpoint`, the offset up to which every record is in a
//! written object; `delivered`, runs of records beyond it that are in
//! written objects too (objects need not complete in order); `finished`,
//! set once a source is read to its end and all of it is delivered.
//! `pending` lists objects about to be written (an intent written before
//! each put), settled at the next start by asking the destination whether
//! they exist. `started_at`, once set, is when the delivery stream first
//! started reading: `start_position = "latest"` reads every shard from
//! then on, however often the run restarts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

/// The format version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub version: u32,
    /// The delivery stream name, checked at load.
    pub stream: String,
    pub sources: BTreeMap<SourceId, SourceState>,
    #[serde(default)]
    pub pending: Vec<PendingObject>,
    /// When reading first started (set by the Kinesis source with
    /// `start_position = "latest"`): records that arrived from then on are
    /// archived, whenever the run restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Every record at or before this offset is delivered.
    pub checkpoint: Option<Offset>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<Run>,
}

/// Consecutive records of one source, `first` to `last` inclusive: every
/// record of that source between these offsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub first: Offset,
    pub last: Offset,
}

impl Run {
    pub fn contains(&self, offset: &Offset) -> bool {
        &self.first <= offset && offset <= &self.last
    }
}

/// An object about to be written, and the records it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingObject {
    pub key: String,
    pub runs: Vec<SourceRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRun {
    pub source: SourceId,
    #[serde(flatten)]
    pub run: Run,
}
