//! In-memory checkpoint bookkeeping: which records are buffered, which are
//! in written objects, and how far each source's checkpoint may move.
//!
//! Every record admitted from a source gets the next ordinal of that source.
//! An object's records are described by runs of consecutive ordinals, which
//! are recorded as offset ranges ([`Run`]): "every record of this source
//! from `first` to `last`". A checkpoint moves past a record only once
//! every earlier record of its source is delivered too. No I/O and no
//! clock here: [`super::Checkpointer`] persists what this computes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};

use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

use super::state::{CheckpointState, PendingObject, Run, SourceRun, SourceState, STATE_VERSION};

/// A buffered record's claim on its source's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub source: SourceId,
    pub ordinal: u64,
    pub offset: Offset,
}

/// Identifies an object between [`Tracker::begin_object`] and
/// [`Tracker::complete_object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId(u64);

#[derive(Debug, Default)]
struct Source {
    checkpoint: Option<Offset>,
    finished: bool,
    input_ended: bool,
    delivered: Vec<Run>,
    next_ordinal: u64,
    /// Admitted records not yet behind the checkpoint, from `front_ordinal`.
    in_flight: VecDeque<(Offset, bool)>,
    front_ordinal: u64,
}

impl Source {
    fn advance(&mut self) {
        while let Some((_, true)) = self.in_flight.front() {
            let (offset, _) = self.in_flight.pop_front().expect("front exists");
            self.front_ordinal += 1;
            self.checkpoint = Some(offset);
        }
        if let Some(checkpoint) = &self.checkpoint {
            self.delivered.retain(|run| &run.last > checkpoint);
        }
        if self.input_ended && self.in_flight.is_empty() {
            self.finished = true;
        }
    }
}

/// The bookkeeping of one delivery stream.
#[derive(Debug)]
pub struct Tracker {
    stream: String,
    sources: BTreeMap<SourceId, Source>,
    pending: BTreeMap<ObjectId, (PendingObject, Vec<Ticket>)>,
    next_object: u64,
    started_at: Option<DateTime<Utc>>,
}

impl Tracker {
    /// Starts from a saved state whose pending objects are already settled
    /// (see [`Tracker::settle`]).
    pub fn new(stream: &str, state: Option<CheckpointState>) -> Self {
        let mut sources = BTreeMap::new();
        let started_at = state.as_ref().and_then(|s| s.started_at);
        if let Some(state) = state {
            debug_assert!(state.pending.is_empty(), "settle pending objects first");
            for (id, saved) in state.sources {
                sources.insert(
                    id,
                    Source {
                        checkpoint: saved.checkpoint,
                        finished: saved.finished,
                        delivered: saved.delivered,
                        ..Source::default()
                    },
                );
            }
        }
        Self {
            stream: stream.to_owned(),
            sources,
            pending: BTreeMap::new(),
            next_object: 0,
            started_at,
        }
    }

    /// Sets when reading first started, unless it already is; returns the
    /// value in force and whether this call set it.
    pub fn start_reading_at(&mut self, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
        match self.started_at {
            Some(at) => (at, false),
            None => {
                self.started_at = Some(now);
                (now, true)
            }
        }
    }

    /// Folds the pending objects of a saved state into it: those that
    /// `exists` says were written become delivered runs; the others are
    /// forgotten, and their records will be read again.
    pub fn settle(mut state: CheckpointState, exists: &HashMap<String, bool>) -> CheckpointState {
        for pending in std::mem::take(&mut state.pending) {
            if !exists.get(&pending.key).copied().unwrap_or(false) {
                continue;
            }
            for SourceRun { source, run } in pending.runs {
                let saved = state.sources.entry(source).or_default();
                if saved.checkpoint.as_ref().is_none_or(|c| &run.last > c) {
                    saved.delivered.push(run);
                }
            }
        }
        for saved in state.sources.values_mut() {
            saved.delivered.sort_by(|a, b| a.first.cmp(&b.first));
        }
        state
    }

    /// Where `source` resumes: after this offset (`None`: from the start).
    pub fn checkpoint(&self, source: &SourceId) -> Option<&Offset> {
        self.sources.get(source).and_then(|s| s.checkpoint.as_ref())
    }

    /// Whether `source` was read to its end and delivered whole.
    pub fn is_finished(&self, source: &SourceId) -> bool {
        self.sources.get(source).is_some_and(|s| s.finished)
    }

    /// Forgets the sources `matches` picks, so that they start afresh.
    pub fn forget_where(&mut self, matches: impl Fn(&SourceId) -> bool) {
        self.sources.retain(|id, _| !matches(id));
    }

    /// Admits the next record of `source`, in source order. Returns `None`
    /// when the record is already delivered (at or before the checkpoint, or
    /// in a delivered run): it must be skipped.
    pub fn admit(&mut self, source: &SourceId, offset: &Offset) -> Option<Ticket> {
        let state = self.sources.entry(source.clone()).or_default();
        if state.checkpoint.as_ref().is_some_and(|c| offset <= c) {
            return None;
        }
        if let Some((last, _)) = state.in_flight.back() {
            debug_assert!(
                last < offset,
                "records of {source} admitted out of order: {offset:?} after {last:?}"
            );
        }
        let already_delivered = state.delivered.iter().any(|run| run.contains(offset));
        let ordinal = state.next_ordinal;
        state.next_ordinal += 1;
        state.in_flight.push_back((offset.clone(), already_delivered));
        if already_delivered {
            state.advance();
            return None;
        }
        Some(Ticket {
            source: source.clone(),
            ordinal,
            offset: offset.clone(),
        })
    }

    /// Notes that `source` has no more records; it becomes finished once
    /// they are all delivered.
    pub fn end_of_input(&mut self, source: &SourceId) {
        let state = self.sources.entry(source.clone()).or_default();
        state.input_ended = true;
        state.advance();
    }

    /// Records the intent to write object `key` holding the records of
    /// `tickets` (in source order within each source).
    pub fn begin_object(&mut self, key: &str, tickets: Vec<Ticket>) -> ObjectId {
        let mut runs: Vec<SourceRun> = Vec::new();
        let mut last_ordinal: HashMap<&SourceId, (usize, u64)> = HashMap::new();
        for ticket in &tickets {
            match last_ordinal.get_mut(&ticket.source) {
                Some((index, ordinal)) if *ordinal + 1 == ticket.ordinal => {
                    runs[*index].run.last = ticket.offset.clone();
                    *ordinal = ticket.ordinal;
                }
                _ => {
                    runs.push(SourceRun {
                        source: ticket.source.clone(),
                        run: Run {
                            first: ticket.offset.clone(),
                            last: ticket.offset.clone(),
                        },
                    });
                    last_ordinal.insert(&ticket.source, (runs.len() - 1, ticket.ordinal));
                }
            }
        }
        let id = ObjectId(self.next_object);
        self.next_object += 1;
        let pending = PendingObject {
            key: key.to_owned(),
            runs,
        };
        self.pending.insert(id, (pending, tickets));
        id
    }

    /// Points the intent `id` at another key: its records will be written
    /// there instead (as error output, after the first key failed).
    pub fn retarget_object(&mut self, id: ObjectId, key: &str) {
        let (pending, _) = self.pending.get_mut(&id).expect("retargeting an object that was begun");
        pending.key = key.to_owned();
    }

    /// Records that object `id` is written: its records are delivered.
    pub fn complete_object(&mut self, id: ObjectId) {
        let (pending, tickets) = self.pending.remove(&id).expect("completing an object that was begun");
        for ticket in tickets {
            let state = self.sources.get_mut(&ticket.source).expect("admitted source");
            let index = ticket
                .ordinal
                .checked_sub(state.front_ordinal)
                .expect("a delivered record is not behind the checkpoint") as usize;
            state.in_flight[index].1 = true;
        }
        for SourceRun { source, run } in pending.runs {
            let state = self.sources.get_mut(&source).expect("admitted source");
            state.delivered.push(run);
        }
        for state in self.sources.values_mut() {
            state.delivered.sort_by(|a, b| a.first.cmp(&b.first));
            state.advance();
        }
    }

    /// The state to persist.
    pub fn snapshot(&self) -> CheckpointState {
        CheckpointState {
            version: STATE_VERSION,
            stream: self.stream.clone(),
            sources: self
                .sources
                .iter()
                .map(|(id, s)| {
                    (
                        id.clone(),
                        SourceState {
                            checkpoint: s.checkpoint.clone(),
                            finished: s.finished,
                            delivered: s.delivered.clone(),
                        },
                    )
                })
                .collect(),
            pending: self.pending.values().map(|(p, _)| p.clone()).collect(),
            started_at: self.started_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_transforms::SequenceNumber;

    fn off(n: u64) -> Offset {
        Offset::new(SequenceNumber::from_u64(n), 0)
    }

    fn admit_all(tracker: &mut Tracker, source: &SourceId, offsets: &[u64]) -> Vec<Ticket> {
        offsets
            .iter()
            .map(|&n| tracker.admit(source, &off(n)).unwrap())
            .collect()
    }

    #[test]
    fn the_first_start_is_set_once_and_kept_across_restarts() {
        let first = chrono::DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let mut tracker = Tracker::new("s", None);
        assert_eq!(tracker.start_reading_at(first), (first, true));
        let later = first + chrono::Duration::seconds(60);
        assert_eq!(tracker.start_reading_at(later), (first, false));
        let saved = tracker.snapshot();
        assert_eq!(saved.started_at, Some(first));
        let json = serde_json::to_string(&saved).unwrap();
        let restarted = Tracker::new("s", Some(serde_json::from_str(&json).unwrap()));
        let mut restarted = restarted;
        assert_eq!(restarted.start_reading_at(later), (first, false));
    }

    #[test]
    fn checkpoint_waits_for_every_earlier_record() {
        let a = SourceId::new("a");
        let mut tracker = Tracker::new("s", None);
        let tickets = admit_all(&mut tracker, &a, &[10, 20, 30, 40]);
        // Records 10 and 30 went to one buffer, 20 and 40 to another.
        let odd = tracker.begin_object("k1", vec![tickets[0].clone(), tickets[2].clone()]);
        let even = tracker.begin_object("k2", vec![tickets[1].clone(), tickets[3].clone()]);
        assert_eq!(tracker.snapshot().pending.len(), 2);
        tracker.complete_object(even);
        assert_eq!(tracker.checkpoint(&a), None, "record 10 is not delivered yet");
        tracker.complete_object(odd);
        assert_eq!(tracker.checkpoint(&a), Some(&off(40)));
        let snapshot = tracker.snapshot();
        assert!(snapshot.pending.is_empty());
        assert!(
            snapshot.sources[&a].delivered.is_empty(),
            "runs behind the checkpoint are pruned"
        );
    }

    #[test]
    fn runs_follow_consecutive_records_of_each_source() {
        let (a, b) = (SourceId::new("a"), SourceId::new("b"));
        let mut tracker = Tracker::new("s", None);
        let ta = admit_all(&mut tracker, &a, &[1, 2, 3, 4]);
        let tb = admit_all(&mut tracker, &b, &[7, 8]);
        let tickets = vec![
            ta[0].clone(),
            tb[0].clone(),
            ta[1].clone(),
            tb[1].clone(),
            ta[3].clone(),
        ];
        tracker.begin_object("k", tickets);
        let runs = &tracker.snapshot().pending[0].runs;
        let described: Vec<(String, String, String)> = runs
            .iter()
            .map(|r| {
                (
                    r.source.to_string(),
                    r.run.first.sequence_number.to_string(),
                    r.run.last.sequence_number.to_string(),
                )
            })
            .collect();
        let expected = [("a", "1", "2"), ("b", "7", "8"), ("a", "4", "4")];
        assert_eq!(
            described,
            expected.map(|(s, f, l)| (s.to_string(), f.to_string(), l.to_string()))
        );
    }

    #[test]
    fn after_a_crash_written_objects_are_skipped_and_the_rest_reread() {
        let a = SourceId::new("a");
        let mut first_run = Tracker::new("s", None);
        let tickets = admit_all(&mut first_run, &a, &[1, 2, 3, 4, 5, 6]);
        let written = first_run.begin_object("written", tickets[2..4].to_vec());
        let _lost = first_run.begin_object("never-written", tickets[0..2].to_vec());
        let _ = written;
        // Crash: both intents are saved, one object exists.
        let saved = first_run.snapshot();
        let exists = HashMap::from([("written".to_string(), true), ("never-written".to_string(), false)]);
        let settled = Tracker::settle(saved, &exists);
        assert!(settled.pending.is_empty());
        let mut second_run = Tracker::new("s", Some(settled));
        assert_eq!(second_run.checkpoint(&a), None);
        // Everything is read again; 3 and 4 are skipped.
        let admitted: Vec<u64> = (1..=6)
            .filter_map(|n| second_run.admit(&a, &off(n)))
            .map(|t| t.offset.sequence_number.to_u64().unwrap())
            .collect();
        assert_eq!(admitted, [1, 2, 5, 6]);
    }

    #[test]
    fn skipped_records_let_the_checkpoint_move() {
        let a = SourceId::new("a");
        let mut state = CheckpointState {
            version: STATE_VERSION,
            stream: "s".into(),
            ..Default::default()
        };
        state.sources.insert(
            a.clone(),
            SourceState {
                checkpoint: Some(off(1)),
                finished: false,
                delivered: vec![Run {
                    first: off(3),
                    last: off(4),
                }],
            },
        );
        let mut tracker = Tracker::new("s", Some(state));
        assert!(tracker.admit(&a, &off(1)).is_none(), "at the checkpoint");
        let two = tracker.admit(&a, &off(2)).unwrap();
        assert!(tracker.admit(&a, &off(3)).is_none());
        assert!(tracker.admit(&a, &off(4)).is_none());
        let five = tracker.admit(&a, &off(5)).unwrap();
        let id = tracker.begin_object("k", vec![two]);
        tracker.complete_object(id);
        assert_eq!(tracker.checkpoint(&a), Some(&off(4)));
        tracker.end_of_input(&a);
        assert!(!tracker.is_finished(&a));
        let id = tracker.begin_object("k2", vec![five]);
        tracker.complete_object(id);
        assert!(tracker.is_finished(&a));
        assert!(tracker.snapshot().sources[&a].delivered.is_empty());
    }
}
