//! A shard's tenures, when several instances share a stream through leases
//! (`docs/leases.md`): a shard is adopted from the state its lease holds,
//! abandoned when the lease is lost (released, while its records may still
//! be on their way through the pipeline), and an intent of an earlier
//! tenure's records counts for nothing in a later one.

use spillway_transforms::SourceId;

use super::super::state::SourceState;
use super::{ObjectId, Source, Tracker};

impl Tracker {
    /// Takes `source` over from the state another instance left in its
    /// lease, its pending objects redone ([`crate::checkpoint::shard::ShardState::redone`]).
    /// Nothing of it is in flight here (it was not ours, or was abandoned).
    pub fn adopt(&mut self, source: &SourceId, saved: SourceState) {
        debug_assert!(
            self.sources.get(source).is_none_or(|s| s.in_flight.is_empty()),
            "{source} adopted with records in flight"
        );
        let floor = self.ordinal_floors.get(source).copied().unwrap_or(0);
        self.sources.insert(
            source.clone(),
            Source {
                checkpoint: saved.checkpoint,
                finished: saved.finished,
                delivered: saved.delivered,
                ..Source::starting_at(floor)
            },
        );
    }

    /// Whether the intent `id` is abandoned: its shard was given up, or
    /// its records were read in an earlier tenure of the shard's lease.
    /// Its object must not be put by this instance.
    pub fn is_abandoned(&self, id: ObjectId) -> bool {
        self.abandoned.contains(&id)
    }

    /// Forgets the intent `id` without delivering it (its object is not
    /// put: the lease of its shard is lost). Its records stay in flight
    /// until their shard is abandoned.
    pub fn forget_object(&mut self, id: ObjectId) {
        self.abandoned.remove(&id);
        self.pending.remove(&id);
    }

    /// Gives `source` up as [`Self::abandon`] does, its records possibly
    /// still on their way from the source: none of them is admitted until
    /// [`Self::tenure_passed`].
    pub fn release(&mut self, source: &SourceId) -> Vec<ObjectId> {
        *self.released.entry(source.clone()).or_default() += 1;
        self.abandon(source)
    }

    /// Whether `source` was released and the end of its tenure has not
    /// passed yet.
    pub fn is_released(&self, source: &SourceId) -> bool {
        self.released.contains_key(source)
    }

    /// The end of a released tenure of `source` passed the router: what
    /// comes after it was read in a later tenure, and is admitted.
    pub fn tenure_passed(&mut self, source: &SourceId) {
        if let Some(ends) = self.released.get_mut(source) {
            *ends -= 1;
            if *ends == 0 {
                self.released.remove(source);
            }
        }
    }

    /// Gives `source` up (its lease was lost): forgets it, its records in
    /// flight and the intents naming it, which this instance must not
    /// count as delivered now (the new owner redoes them). Returns those
    /// intents; completing one later changes nothing.
    pub fn abandon(&mut self, source: &SourceId) -> Vec<ObjectId> {
        self.inherited.remove(source);
        if let Some(state) = self.sources.remove(source) {
            self.ordinal_floors.insert(source.clone(), state.next_ordinal);
        }
        let ids: Vec<ObjectId> = self
            .pending
            .iter()
            .filter(|(_, (pending, _))| pending.runs.iter().any(|r| &r.source == source))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            let (pending, _) = self.pending.remove(id).expect("listed above");
            debug_assert!(
                pending.runs.iter().all(|r| &r.source == source),
                "an object of {source} holds records of another shard: {}",
                pending.key
            );
            self.abandoned.insert(*id);
        }
        ids
    }
}
