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
//! then on, however often the run restarts. `table_schema`, with Parquet
//! and an inferred schema, is the schema every file is written under, so
//! that a restart continues it rather than inferring afresh (see
//! `pipeline::table`).
//!
//! Fields added since version 1 are optional and default when absent, so
//! older files load as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spillway_transforms::format::parquet::TableSchema;
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
    /// The table schema in force (Parquet with an inferred schema), saved
    /// before the first object written under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_schema: Option<TableSchema>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Every record at or before this offset is delivered.
    pub checkpoint: Option<Offset>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
    /// Packed ([`super::packed`]): with dynamic partitioning there is a
    /// run per record until every partition is written.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "super::packed")]
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
    /// Packed by source ([`super::packed::by_source`]).
    #[serde(with = "super::packed::by_source")]
    pub runs: Vec<SourceRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRun {
    pub source: SourceId,
    #[serde(flatten)]
    pub run: Run,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_saved_before_table_schemas_loads_without_one_and_one_with_it_keeps_it() {
        let old = r#"{"version":1,"stream":"clicks","sources":{"shardId-1":{"checkpoint":{"sequence_number":"7","subsequence_number":0}}},"pending":[]}"#;
        let state: CheckpointState = serde_json::from_str(old).unwrap();
        assert_eq!(state.table_schema, None);
        assert_eq!(state.sources.len(), 1);
        let without = serde_json::to_string(&state).unwrap();
        assert!(!without.contains("table_schema"), "{without}");

        let with = CheckpointState {
            table_schema: Some(
                TableSchema::from_json(r#"{"version":2,"columns":[{"name":"v","type":"int64"}]}"#).unwrap(),
            ),
            ..state
        };
        let text = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<CheckpointState>(&text).unwrap(), with);
    }
}
