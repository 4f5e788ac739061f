//! The last owner's intents that a shard's new owner redoes
//! (`docs/leases.md`, "the new owner redoes the old owner's intents").
//!
//! A lease may hold pending intents: objects the last owner was about to
//! put, or was putting, when it lost the lease or died. It may be alive
//! still, and put one of them later, create-only under its key. So the new
//! owner neither asks whether the object exists nor reads its records as
//! new ones: it reads the shard from the checkpoint as usual, and every
//! record whose offset falls in an inherited intent's runs goes to that
//! intent's own buffer, flushed under the intent's key once all of the
//! intent's records are in. Whichever put lands first holds them; the
//! other finds it there.
//!
//! Here: which intents are inherited, which one a record belongs to, when
//! one has all its records (its last offset admitted, or a record of the
//! shard past it: a processor may give fewer outputs the second time), and
//! that each stays pending in the snapshot, so in the lease, until the
//! redo's own intent replaces it under the same key.

use std::sync::Arc;

use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

use super::super::state::{PendingObject, Run, SourceRun};
use super::Tracker;

/// An intent of the last owner of a shard, to be redone here.
#[derive(Debug, Clone)]
pub(crate) struct Inherited {
    key: Arc<str>,
    runs: Vec<Run>,
    /// The last offset of its runs.
    last: Offset,
    /// All its records are in: no more are routed to it.
    due: bool,
}

impl Inherited {
    /// Whether `offset` (a record of its shard, admitted in order) says
    /// every record of this intent is in: it is the last, past the last,
    /// or the last output of the same source record as the last
    /// (`ends_input`) with a lower output index.
    fn completed_by(&self, offset: &Offset, ends_input: bool) -> bool {
        if offset >= &self.last {
            return true;
        }
        let same_input = offset.sequence_number == self.last.sequence_number
            && offset.subsequence_number == self.last.subsequence_number;
        same_input && ends_input
    }
}

/// Which inherited intent each record of a batch belongs to, and which
/// intents have all their records once the batch is placed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RedoRouting {
    /// Per record, in order: the key of the intent it is redone in; empty
    /// when no intent is inherited (none is).
    pub targets: Vec<Option<Arc<str>>>,
    /// Intents complete after this batch: flush their buffers.
    pub due: Vec<(SourceId, Arc<str>)>,
}

impl Tracker {
    /// Keeps `pending` (the intents in `source`'s lease) to be redone.
    /// Returns how many there are.
    pub(crate) fn inherit(&mut self, source: &SourceId, pending: Vec<PendingObject>) -> usize {
        let inherited: Vec<Inherited> = pending
            .into_iter()
            .filter_map(|object| {
                let runs: Vec<Run> = object
                    .runs
                    .into_iter()
                    .filter(|r| &r.source == source)
                    .map(|r| r.run)
                    .collect();
                let last = runs.iter().map(|r| r.last.clone()).max()?;
                Some(Inherited {
                    key: Arc::from(object.key),
                    runs,
                    last,
                    due: false,
                })
            })
            .collect();
        let count = inherited.len();
        if count == 0 {
            self.inherited.remove(source);
        } else {
            self.inherited.insert(source.clone(), inherited);
        }
        count
    }

    /// Routes records (source, offset, whether it ends its input) in
    /// source order to the inherited intents whose runs hold them; see
    /// [`RedoRouting`]. Records skipped or dropped count towards an
    /// intent's completion too: pass every record admitted.
    pub fn redo_routing<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a SourceId, &'a Offset, bool)>,
    ) -> RedoRouting {
        let mut routing = RedoRouting::default();
        if self.inherited.is_empty() {
            return routing;
        }
        for (source, offset, ends_input) in records {
            let Some(intents) = self.inherited.get_mut(source) else {
                routing.targets.push(None);
                continue;
            };
            let mut target = None;
            for intent in intents.iter_mut().filter(|i| !i.due) {
                if target.is_none() && intent.runs.iter().any(|r| r.contains(offset)) {
                    target = Some(intent.key.clone());
                }
                if intent.completed_by(offset, ends_input) {
                    intent.due = true;
                    routing.due.push((source.clone(), intent.key.clone()));
                }
            }
            routing.targets.push(target);
        }
        routing
    }

    /// `source` was read to its end: every inherited intent of it not yet
    /// complete is (its records are all in).
    pub fn redo_due_at_end(&mut self, source: &SourceId) -> Vec<Arc<str>> {
        let Some(intents) = self.inherited.get_mut(source) else {
            return Vec::new();
        };
        intents
            .iter_mut()
            .filter(|i| !i.due)
            .map(|i| {
                i.due = true;
                i.key.clone()
            })
            .collect()
    }

    /// The inherited intent `key` of `source` is no longer pending here:
    /// its redo's own intent (same key) replaces it, or none of its records
    /// came out of the processors this time, so that there is nothing to put.
    pub fn forget_inherited(&mut self, source: &SourceId, key: &str) {
        if let Some(intents) = self.inherited.get_mut(source) {
            intents.retain(|i| &*i.key != key);
            if intents.is_empty() {
                self.inherited.remove(source);
            }
        }
    }

    /// Whether any inherited intent is still pending.
    pub fn is_redoing(&self) -> bool {
        !self.inherited.is_empty()
    }

    /// The inherited intents still pending, as the snapshot holds them
    /// (so that the lease keeps them for a next owner until redone).
    pub(super) fn inherited_pending(&self) -> impl Iterator<Item = PendingObject> + '_ {
        self.inherited.iter().flat_map(|(source, intents)| {
            intents.iter().map(move |intent| PendingObject {
                key: intent.key.to_string(),
                runs: intent
                    .runs
                    .iter()
                    .map(|run| SourceRun {
                        source: source.clone(),
                        run: run.clone(),
                    })
                    .collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spillway_transforms::SequenceNumber;

    use super::*;

    fn off(n: u64, sub: u64, output: u32) -> Offset {
        Offset::new(SequenceNumber::from_u64(n), sub).with_output(output)
    }

    fn intent(source: &SourceId, key: &str, runs: &[(Offset, Offset)]) -> PendingObject {
        PendingObject {
            key: key.into(),
            runs: runs
                .iter()
                .map(|(first, last)| SourceRun {
                    source: source.clone(),
                    run: Run {
                        first: first.clone(),
                        last: last.clone(),
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn kpl_subsequences_and_processor_outputs_are_routed_by_their_exact_offsets() {
        let s = SourceId::new("s");
        let mut tracker = Tracker::new("stream", None);
        // KPL: user records 1..=2 of aggregate 5; outputs 0..=1 of 7.
        let kpl = intent(&s, "kpl", &[(off(5, 1, 0), off(5, 2, 0))]);
        let outputs = intent(&s, "outputs", &[(off(7, 0, 0), off(7, 0, 1))]);
        assert_eq!(tracker.inherit(&s, vec![kpl, outputs]), 2);
        assert_eq!(tracker.snapshot().pending.len(), 2, "kept pending until redone");
        let records = [
            (off(5, 0, 0), true),
            (off(5, 1, 0), true),
            (off(5, 2, 0), true),
            (off(5, 3, 0), true),
            (off(7, 0, 0), false),
            (off(7, 0, 1), false),
            (off(7, 0, 2), true),
        ];
        let routing = tracker.redo_routing(records.iter().map(|(o, e)| (&s, o, *e)));
        let targets: Vec<Option<&str>> = routing.targets.iter().map(|t| t.as_deref()).collect();
        assert_eq!(
            targets,
            [
                None,
                Some("kpl"),
                Some("kpl"),
                None,
                Some("outputs"),
                Some("outputs"),
                None
            ]
        );
        let due: Vec<&str> = routing.due.iter().map(|(_, k)| &**k).collect();
        assert_eq!(due, ["kpl", "outputs"]);
        tracker.forget_inherited(&s, "kpl");
        tracker.forget_inherited(&s, "outputs");
        assert!(!tracker.is_redoing());
        assert!(tracker.snapshot().pending.is_empty());
    }

    #[test]
    fn fewer_outputs_the_second_time_complete_the_intent_at_the_last_output_made() {
        let s = SourceId::new("s");
        let mut tracker = Tracker::new("stream", None);
        tracker.inherit(&s, vec![intent(&s, "k", &[(off(3, 0, 0), off(3, 0, 2))])]);
        let first = tracker.redo_routing([(&s, &off(3, 0, 0), false)]);
        assert!(first.due.is_empty());
        let last = tracker.redo_routing([(&s, &off(3, 0, 1), true)]);
        assert_eq!(last.targets, [Some(Arc::from("k"))]);
        assert_eq!(last.due, [(s.clone(), Arc::from("k"))]);
        // Due: no record is routed to it any more.
        assert_eq!(tracker.redo_routing([(&s, &off(3, 0, 2), true)]).targets, [None]);
    }

    #[test]
    fn an_abandoned_shard_forgets_its_inherited_intents_and_its_end_completes_them() {
        let s = SourceId::new("s");
        let mut tracker = Tracker::new("stream", None);
        tracker.inherit(&s, vec![intent(&s, "k", &[(off(3, 0, 0), off(4, 0, 0))])]);
        assert_eq!(tracker.redo_due_at_end(&s), [Arc::from("k")]);
        tracker.abandon(&s);
        assert!(!tracker.is_redoing());
        assert!(tracker.snapshot().pending.is_empty());
    }

    proptest! {
        /// Records 1..=n of a shard, the last owner's intents each a set
        /// of runs over them (disjoint, as objects are): each record is
        /// routed to the one intent whose runs hold it, or to none; each
        /// intent is due exactly once, and only once its last record is
        /// routed.
        #[test]
        fn each_record_goes_to_the_intent_whose_runs_hold_it(
            owner in proptest::collection::vec(0usize..4, 1..60),
        ) {
            let s = SourceId::new("s");
            // Owner 0: no intent (written or buffered); 1..=3: intents.
            let mut runs: Vec<Vec<(Offset, Offset)>> = vec![Vec::new(); 4];
            for (i, o) in owner.iter().enumerate() {
                let n = i as u64 + 1;
                match runs[*o].last_mut() {
                    Some((_, last)) if i > 0 && owner[i - 1] == *o => *last = off(n, 0, 0),
                    _ => runs[*o].push((off(n, 0, 0), off(n, 0, 0))),
                }
            }
            let pending: Vec<PendingObject> = (1..4)
                .filter(|o| !runs[*o].is_empty())
                .map(|o| intent(&s, &format!("k{o}"), &runs[o]))
                .collect();
            let mut tracker = Tracker::new("stream", None);
            tracker.inherit(&s, pending.clone());
            let mut due_seen = Vec::new();
            for (i, o) in owner.iter().enumerate() {
                let offset = off(i as u64 + 1, 0, 0);
                let routing = tracker.redo_routing([(&s, &offset, true)]);
                let expected = (*o > 0).then(|| format!("k{o}"));
                let target = routing.targets.first().cloned().flatten();
                prop_assert_eq!(target.as_deref().map(str::to_owned), expected);
                for (_, key) in routing.due {
                    let o: usize = key[1..].parse().unwrap();
                    let last = owner.iter().rposition(|x| *x == o).unwrap();
                    prop_assert_eq!(last, i, "due at its last record");
                    due_seen.push(key.to_string());
                }
            }
            due_seen.sort();
            let mut all: Vec<String> = pending.iter().map(|p| p.key.clone()).collect();
            all.sort();
            prop_assert_eq!(due_seen, all);
        }
    }
}
