//! One shard's checkpoint state as its lease holds it, when several
//! instances share a stream (`crate::coordination`, `docs/leases.md`).
//!
//! Without coordination the whole state is one file. With it, each shard's
//! part travels with the shard's lease, so that whichever instance takes
//! the shard over resumes where the last owner's delivered objects end:
//! its checkpoint, the runs delivered past it, and its pending intents
//! (objects the last owner was about to write, or was writing). The new
//! owner does not ask whether those exist and read again: the last owner
//! may be alive and still put one. It redoes each, the same records under
//! the same key, create-only, and then counts them as delivered
//! ([`ShardState::redone`]). That needs every object to hold one shard's
//! records, which the buffers ensure when coordination is on; a pending
//! object naming two shards is refused ([`ShardStateError::Mixed`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use spillway_transforms::SourceId;

use super::state::{CheckpointState, PendingObject, SourceState, STATE_VERSION};
use super::tracker::Tracker;

/// The part of the checkpoint state one shard's lease holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub version: u32,
    #[serde(flatten)]
    pub source: SourceState,
    /// Objects of this shard about to be written, or being written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingObject>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardStateError {
    /// An object with records of two shards: no single owner can redo it.
    #[error("pending object {key} holds records of shard {shard} and of {other}: with coordination an object holds one shard's records")]
    Mixed { key: String, shard: String, other: String },
    #[error("the checkpoint state in the lease of shard {shard} is not valid: {reason}")]
    Corrupt { shard: String, reason: String },
}

impl ShardState {
    /// `shard`'s part of a snapshot: its source state and the pending
    /// objects of its records.
    pub fn of(snapshot: &CheckpointState, shard: &SourceId) -> Result<Self, ShardStateError> {
        let mut pending = Vec::new();
        for object in &snapshot.pending {
            if !object.runs.iter().any(|r| &r.source == shard) {
                continue;
            }
            if let Some(other) = object.runs.iter().find(|r| &r.source != shard) {
                return Err(ShardStateError::Mixed {
                    key: object.key.clone(),
                    shard: shard.to_string(),
                    other: other.source.to_string(),
                });
            }
            pending.push(object.clone());
        }
        Ok(Self {
            version: STATE_VERSION,
            source: snapshot.sources.get(shard).cloned().unwrap_or_default(),
            pending,
        })
    }

    /// The text the lease item keeps.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("shard state always serialises")
    }

    /// The state a lease item keeps for `shard`; a lease never checkpointed
    /// has none ([`Self::default`]).
    pub fn from_json(shard: &SourceId, text: &str) -> Result<Self, ShardStateError> {
        let corrupt = |reason: String| ShardStateError::Corrupt {
            shard: shard.to_string(),
            reason,
        };
        // The version first, as for the local file: another version's state
        // may lack what this one needs, and is refused for its version.
        #[derive(serde::Deserialize)]
        struct Version {
            version: u32,
        }
        let version = serde_json::from_str::<Version>(text).map_err(|err| corrupt(err.to_string()))?;
        if version.version != STATE_VERSION {
            return Err(corrupt(format!(
                "format version {} is not {STATE_VERSION}, the one this build reads",
                version.version
            )));
        }
        let state: ShardState = serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
        if let Some(other) = state.pending.iter().flat_map(|p| &p.runs).find(|r| &r.source != shard) {
            return Err(corrupt(format!("a pending object holds records of {}", other.source)));
        }
        Ok(state)
    }

    /// The state to resume from once every pending object is redone
    /// (written by this instance, or found written by the last owner:
    /// either way it holds exactly its intent's records): they count as
    /// delivered.
    pub fn redone(self, shard: &SourceId) -> SourceState {
        let written: HashMap<String, bool> = self.pending.iter().map(|p| (p.key.clone(), true)).collect();
        let state = CheckpointState {
            version: self.version,
            stream: String::new(),
            sources: [(shard.clone(), self.source)].into_iter().collect(),
            pending: self.pending,
            started_at: None,
            table_schema: None,
        };
        Tracker::settle(state, &written)
            .sources
            .remove(shard)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use spillway_transforms::record::Offset;
    use spillway_transforms::SequenceNumber;

    use super::*;
    use crate::checkpoint::{Claims, ObjectId};

    fn off(n: u64) -> Offset {
        Offset::new(SequenceNumber::from_u64(n), 0)
    }

    /// What became of one object of the last owner when it lost the shard.
    #[derive(Clone, Copy, Debug)]
    enum Fate {
        /// Written and checkpointed.
        Written,
        /// Its intent saved; the put may or may not have landed (the
        /// new owner redoes it either way).
        Pending,
        /// Still in a buffer: dropped unwritten.
        Buffered,
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![Just(Fate::Written), Just(Fate::Pending), Just(Fate::Buffered)]
    }

    proptest! {
        /// The last owner of shard `s` archived records 1..=n in objects
        /// of consecutive records (completed in any order), interleaved
        /// with shard `t`'s, and lost the lease with some objects pending
        /// and some records buffered. The new owner takes the state from
        /// the lease, redoes the pending objects, reads the shard again
        /// from its checkpoint and archives what it admits: every record of
        /// `s` ends in exactly one object, and the old owner's bookkeeping
        /// of `t` goes on untouched.
        #[test]
        fn a_shard_handed_over_through_its_lease_is_archived_exactly_once(
            sizes in proptest::collection::vec(1u64..6, 1..12),
            fates in proptest::collection::vec(fate(), 12),
            order in proptest::collection::vec(any::<u8>(), 12),
            landed in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let (s, t) = (SourceId::new("s"), SourceId::new("t"));
            let n: u64 = sizes.iter().sum();
            let mut old = Tracker::new("stream", None);
            // Admitted interleaved: s's record k, then t's.
            let mut tickets = BTreeMap::new();
            for k in 1..=n {
                let offset = off(k);
                let got = old.admit_all([(&s, &offset), (&t, &offset)]);
                tickets.insert(k, (got[0].unwrap(), got[1].unwrap()));
            }
            // s's objects, and one object of all of t's records.
            let mut objects: Vec<(Vec<u64>, Fate, Option<ObjectId>)> = Vec::new();
            let mut first = 1;
            for (i, size) in sizes.iter().enumerate() {
                let records: Vec<u64> = (first..first + size).collect();
                first += size;
                let offsets: Vec<Offset> = records.iter().map(|k| off(*k)).collect();
                let claims = Claims::of(records.iter().zip(&offsets).map(|(k, o)| (&s, o, tickets[k].0)));
                let fate = fates[i];
                let id = match fate {
                    Fate::Buffered => None,
                    _ => Some(old.begin_object(&format!("s-{}", records[0]), claims)),
                };
                objects.push((records, fate, id));
            }
            let t_offsets: Vec<Offset> = (1..=n).map(off).collect();
            let t_object = old.begin_object(
                "t",
                Claims::of((1..=n).zip(&t_offsets).map(|(k, o)| (&t, o, tickets[&k].1))),
            );
            // Written objects complete in an arbitrary order.
            let mut written: Vec<usize> = (0..objects.len()).filter(|i| matches!(objects[*i].1, Fate::Written)).collect();
            written.sort_by_key(|i| (order[*i], *i));
            for i in &written {
                old.complete_object(objects[*i].2.expect("begun"));
            }
            // The lease holds what the last save wrote.
            let text = ShardState::of(&old.snapshot(), &s).unwrap().to_json();

            // The bucket: objects by key, put create-only (a second put
            // under a key changes nothing, as `AlreadyExisted`).
            let mut bucket: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut put = |key: String, records: Vec<u64>| {
                bucket.entry(key).or_insert(records);
            };
            for (i, (records, fate, _)) in objects.iter().enumerate() {
                if matches!(fate, Fate::Written) {
                    put(format!("s-{}", records[0]), records.clone());
                }
                // The old owner, paused or partitioned, may still put a
                // pending object after the new owner took over.
                if matches!(fate, Fate::Pending) && landed[i] {
                    put(format!("s-{}", records[0]), records.clone());
                }
            }

            // The old owner finds out, gives the shard up; a put of one of
            // its pending objects may still finish, and counts nothing.
            let abandoned = old.abandon(&s);
            let pending: Vec<&(Vec<u64>, Fate, Option<ObjectId>)> =
                objects.iter().filter(|o| matches!(o.1, Fate::Pending)).collect();
            prop_assert_eq!(abandoned.len(), pending.len());
            for object in &pending {
                old.complete_object(object.2.expect("begun"));
            }
            prop_assert!(!old.knows(&s));
            old.complete_object(t_object);
            prop_assert_eq!(old.checkpoint(&t), Some(&off(n)));

            // The new owner: redo the pending intents (their exact runs,
            // their keys), adopt, read again from the checkpoint.
            let state = ShardState::from_json(&s, &text).unwrap();
            for object in &state.pending {
                prop_assert_eq!(object.runs.len(), 1);
                let run = &object.runs[0].run;
                let (a, b) = (run.first.sequence_number.to_u64().unwrap(), run.last.sequence_number.to_u64().unwrap());
                put(object.key.clone(), (a..=b).collect());
            }
            let mut new = Tracker::new("stream", None);
            new.adopt(&s, state.redone(&s));
            let start = new.checkpoint(&s).map_or(1, |c| c.sequence_number.to_u64().unwrap() + 1);
            let mut admitted = Vec::new();
            for k in start..=n {
                let offset = off(k);
                if let Some(ticket) = new.admit(&s, &offset) {
                    admitted.push((k, offset, ticket));
                }
            }
            if !admitted.is_empty() {
                let id = new.begin_object("s-new", Claims::of(admitted.iter().map(|(_, o, t)| (&s, o, *t))));
                new.complete_object(id);
                put("s-new".into(), admitted.iter().map(|(k, _, _)| *k).collect());
            }
            let mut archived: Vec<u64> = bucket.into_values().flatten().collect();
            archived.sort_unstable();
            prop_assert_eq!(archived, (1..=n).collect::<Vec<_>>());
            prop_assert_eq!(new.checkpoint(&s), Some(&off(n)));
        }
    }

    #[test]
    fn an_object_of_two_shards_cannot_be_handed_over() {
        let (s, t) = (SourceId::new("s"), SourceId::new("t"));
        let mut tracker = Tracker::new("stream", None);
        let (one, two) = (off(1), off(1));
        let tickets = tracker.admit_all([(&s, &one), (&t, &two)]);
        tracker.begin_object(
            "mixed",
            Claims::of([(&s, &one, tickets[0].unwrap()), (&t, &two, tickets[1].unwrap())]),
        );
        let err = ShardState::of(&tracker.snapshot(), &s).unwrap_err();
        assert!(matches!(err, ShardStateError::Mixed { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("pending object mixed holds records of shard s and of t"));
    }

    #[test]
    fn a_lease_state_of_another_version_or_shard_is_refused() {
        let s = SourceId::new("s");
        assert_eq!(
            ShardState::from_json(&s, r#"{"version":1}"#).unwrap(),
            ShardState {
                version: 1,
                ..Default::default()
            }
        );
        let err = ShardState::from_json(&s, r#"{"version":7}"#).unwrap_err().to_string();
        assert!(err.contains("format version 7"), "{err}");
        // Refused for its version even when its fields are not this one's.
        let err = ShardState::from_json(&s, r#"{"version":7,"checkpoint":"1"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("format version 7"), "{err}");
        // The state of shard t, in the lease of shard s.
        let t = SourceId::new("t");
        let mut tracker = Tracker::new("stream", None);
        let one = off(1);
        let ticket = tracker.admit(&t, &one).unwrap();
        tracker.begin_object("k", Claims::of([(&t, &one, ticket)]));
        let other = ShardState::of(&tracker.snapshot(), &t).unwrap().to_json();
        assert!(ShardState::from_json(&t, &other).is_ok());
        let err = ShardState::from_json(&s, &other).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            err,
            "the checkpoint state in the lease of shard s is not valid: a pending object holds records of t"
        );
    }
}
