//! `spillway leases`: the lease table of one pipeline as a person (aligned
//! text) or a script (one JSON object per line) reads it: per shard its
//! owner, checkpoint, state and last renewal.
//!
//! A listing is one look at the table, so it cannot use the rule instances
//! go by (a lease is expired once its counter stood still for a lease
//! duration on the reader's own clock, [`super::expiry`]). It judges from
//! the lease's own fields instead: `expired` means the owner's last write
//! (`renewed_at`, by the owner's clock) is a lease duration old or more by
//! this machine's clock. It is a hint, not a decision: clocks differ, and
//! another instance takes such a lease only after watching it a lease
//! duration itself.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

use super::config::CoordinationConfig;
use super::dynamodb::{LeaseTable, TableOptions};
use super::{Lease, LeaseError};
use crate::checkpoint::shard::ShardState;
use crate::config::{Config, SourceConfig};

/// A lease's state, as one look at the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Owned, and written by its owner within the last lease duration.
    Held,
    /// Owned, but not written for a lease duration: its owner may be dead
    /// (or its clock off); another instance may take it.
    Expired,
    /// Never taken, or released: the next instance to look takes it.
    Free,
    /// Read to its end and all of it delivered: nobody reads it again.
    Ended,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Held => "held",
            LeaseState::Expired => "expired",
            LeaseState::Free => "free",
            LeaseState::Ended => "ended",
        }
    }

    /// The state of `lease` at `now`, with leases of `duration`.
    pub fn of(lease: &Lease, now: DateTime<Utc>, duration: Duration) -> Self {
        if lease.ended {
            return LeaseState::Ended;
        }
        if lease.owner.is_none() {
            return LeaseState::Free;
        }
        let fresh = lease.renewed_at.is_some_and(|at| {
            now.signed_duration_since(at)
                .to_std()
                // A renewal in this machine's future: the clocks differ,
                // and it is recent.
                .map_or(true, |age| age < duration)
        });
        if fresh {
            LeaseState::Held
        } else {
            LeaseState::Expired
        }
    }
}

/// The checkpoint a lease holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing delivered yet (or never checkpointed).
    None,
    At(Offset),
    /// The lease's state is not one this build reads: why.
    Unreadable(String),
}

/// One shard's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub shard: String,
    pub owner: Option<String>,
    pub checkpoint: Checkpoint,
    /// Objects the owner was about to write when it last saved: redone by
    /// the next owner.
    pub pending: usize,
    pub state: LeaseState,
    pub renewed_at: Option<DateTime<Utc>>,
    pub counter: u64,
    pub parents: Vec<String>,
}

impl Row {
    pub fn of(lease: &Lease, now: DateTime<Utc>, duration: Duration) -> Self {
        let (checkpoint, pending) = match &lease.state {
            None => (Checkpoint::None, 0),
            Some(text) => match ShardState::from_json(&SourceId::new(lease.shard.as_str()), text) {
                Ok(state) => (
                    state.source.checkpoint.map_or(Checkpoint::None, Checkpoint::At),
                    state.pending.len(),
                ),
                Err(err) => (Checkpoint::Unreadable(err.to_string()), 0),
            },
        };
        Self {
            shard: lease.shard.clone(),
            owner: lease.owner.clone(),
            checkpoint,
            pending,
            state: LeaseState::of(lease, now, duration),
            renewed_at: lease.renewed_at,
            counter: lease.counter,
            parents: lease.parents.clone(),
        }
    }

    /// The checkpoint as the text listing shows it: the sequence number,
    /// with `:N` for the Nth record of a KPL aggregate when not the first.
    fn checkpoint_text(&self) -> String {
        match &self.checkpoint {
            Checkpoint::None => "-".to_owned(),
            Checkpoint::At(offset) if offset.subsequence_number == 0 => offset.sequence_number.to_string(),
            Checkpoint::At(offset) => format!("{}:{}", offset.sequence_number, offset.subsequence_number),
            Checkpoint::Unreadable(_) => "unreadable".to_owned(),
        }
    }

    /// The row as one JSON object (one line).
    pub fn to_json(&self) -> String {
        let (checkpoint, subsequence, problem) = match &self.checkpoint {
            Checkpoint::None => (None, None, None),
            Checkpoint::At(offset) => (
                Some(offset.sequence_number.to_string()),
                Some(offset.subsequence_number),
                None,
            ),
            Checkpoint::Unreadable(why) => (None, None, Some(why.clone())),
        };
        let mut object = json!({
            "shard": self.shard,
            "owner": self.owner,
            "checkpoint": checkpoint,
            "subsequence_number": subsequence,
            "state": self.state.as_str(),
            "renewed_at": self.renewed_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            "pending": self.pending,
            "counter": self.counter,
            "parents": self.parents,
        });
        if let Some(problem) = problem {
            object["checkpoint_error"] = json!(problem);
        }
        object.to_string()
    }
}

/// The rows as aligned text, a header first.
pub fn text(rows: &[Row]) -> Vec<String> {
    let header = ["SHARD", "OWNER", "CHECKPOINT", "STATE", "RENEWED"].map(str::to_owned);
    let mut table: Vec<[String; 5]> = vec![header];
    for row in rows {
        table.push([
            row.shard.clone(),
            row.owner.clone().unwrap_or_else(|| "-".to_owned()),
            row.checkpoint_text(),
            row.state.as_str().to_owned(),
            row.renewed_at
                .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            table
                .iter()
                .map(|cells| cells[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|cells| {
            let line: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// Prints `rows` on stdout, as [`text`] or one [`Row::to_json`] a line;
/// none is said on stderr, so that an empty listing is not mistaken for a
/// failed one.
pub fn print(namespace: &str, rows: &[Row], json: bool) {
    if rows.is_empty() {
        crate::telemetry::eprint_line(&format!("note: no leases under {namespace:?} yet"));
    }
    match json {
        true => rows.iter().for_each(|row| crate::telemetry::print_line(&row.to_json())),
        false => text(rows).iter().for_each(|line| crate::telemetry::print_line(line)),
    }
}

/// Why `spillway leases` prints no table.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("coordination: spillway leases needs [coordination] (type = \"dynamodb\"): without it the pipeline keeps its checkpoint in a local file")]
    NotCoordinated,
    #[error(transparent)]
    Table(#[from] LeaseError),
}

/// The rows of the pipeline `config` describes (its `[coordination]`
/// table, its leases under [`super::namespace`]), by shard, and the
/// namespace they are kept under.
pub async fn for_config(config: &Config) -> Result<(String, Vec<Row>), ListingError> {
    let (Some(coordination), SourceConfig::Kinesis(kinesis)) = (&config.coordination, &config.source) else {
        return Err(ListingError::NotCoordinated);
    };
    let namespace = super::namespace(&config.name, &kinesis.stream);
    let rows = read(coordination, namespace.clone()).await?;
    Ok((namespace, rows))
}

/// The rows of the leases kept under `namespace` in `coordination`'s
/// table, by shard, as of now. Creates nothing: a missing table is
/// [`LeaseError::Missing`].
pub async fn read(coordination: &CoordinationConfig, namespace: String) -> Result<Vec<Row>, LeaseError> {
    let table = LeaseTable::open_existing(TableOptions {
        table: coordination.table.clone(),
        region: coordination.region.clone(),
        endpoint: coordination.endpoint.clone(),
        namespace,
        // Only reads: writes nothing under this name.
        worker: "spillway-leases".to_owned(),
    })
    .await?;
    let mut leases = table.list().await?;
    leases.sort_by(|a, b| a.shard.cmp(&b.shard));
    let now = Utc::now();
    Ok(leases
        .iter()
        .map(|lease| Row::of(lease, now, coordination.lease_duration))
        .collect())
}

#[cfg(test)]
mod tests {
    use spillway_transforms::SequenceNumber;

    use super::*;

    fn lease(owner: Option<&str>, renewed_secs_ago: Option<i64>, ended: bool, now: DateTime<Utc>) -> Lease {
        Lease {
            shard: "shardId-000000000001".into(),
            owner: owner.map(Into::into),
            counter: 3,
            state: None,
            parents: vec![],
            ended,
            renewed_at: renewed_secs_ago.map(|s| now - chrono::Duration::seconds(s)),
        }
    }

    #[test]
    fn the_state_comes_from_the_leases_fields_and_its_last_renewal() {
        let now = Utc::now();
        let ten = Duration::from_secs(10);
        let state = |l: &Lease| LeaseState::of(l, now, ten);
        assert_eq!(state(&lease(Some("a"), Some(3), false, now)), LeaseState::Held);
        assert_eq!(state(&lease(Some("a"), Some(10), false, now)), LeaseState::Expired);
        assert_eq!(state(&lease(Some("a"), None, false, now)), LeaseState::Expired);
        assert_eq!(
            state(&lease(Some("a"), Some(-30), false, now)),
            LeaseState::Held,
            "a clock ahead of ours"
        );
        assert_eq!(state(&lease(None, Some(3), false, now)), LeaseState::Free);
        assert_eq!(state(&lease(Some("a"), Some(99), true, now)), LeaseState::Ended);
    }

    #[test]
    fn checkpoints_show_their_sequence_and_an_unreadable_state_says_so() {
        let now = Utc::now();
        let mut held = lease(Some("a"), Some(1), false, now);
        let row = |l: &Lease| Row::of(l, now, Duration::from_secs(10));
        assert_eq!(row(&held).checkpoint_text(), "-");
        let mut state = ShardState {
            version: crate::checkpoint::state::STATE_VERSION,
            ..Default::default()
        };
        state.source.checkpoint = Some(Offset::new(SequenceNumber::from_u64(4711), 0));
        held.state = Some(state.to_json());
        assert_eq!(row(&held).checkpoint_text(), "4711");
        state.source.checkpoint = Some(Offset::new(SequenceNumber::from_u64(4711), 2));
        held.state = Some(state.to_json());
        assert_eq!(row(&held).checkpoint_text(), "4711:2");
        let line: serde_json::Value = serde_json::from_str(&row(&held).to_json()).unwrap();
        assert_eq!(line["checkpoint"], "4711");
        assert_eq!(line["subsequence_number"], 2);
        held.state = Some("{not json".into());
        assert_eq!(row(&held).checkpoint_text(), "unreadable");
        let line: serde_json::Value = serde_json::from_str(&row(&held).to_json()).unwrap();
        assert!(line["checkpoint"].is_null());
        assert!(line["checkpoint_error"]
            .as_str()
            .unwrap()
            .contains("shardId-000000000001"));
    }

    #[test]
    fn text_columns_line_up() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut a = Row::of(
            &lease(Some("archiver-a"), Some(1), false, now),
            now,
            Duration::from_secs(10),
        );
        a.shard = "shardId-000000000000".into();
        let b = Row::of(&lease(None, None, false, now), now, Duration::from_secs(10));
        assert_eq!(
            text(&[a, b]),
            [
                "SHARD                 OWNER       CHECKPOINT  STATE  RENEWED",
                "shardId-000000000000  archiver-a  -           held   2026-12-05T09:59:59Z",
                "shardId-000000000001  -           -           free   -",
            ]
        );
    }
}
