//! Checkpoints: advance only after delivery.
//!
//! [`Checkpointer`] wraps the [`tracker::Tracker`] bookkeeping and a
//! [`store::CheckpointStore`]. Before an object is written its intent (key
//! and record runs) is saved; once written, its records count as delivered
//! and the state is saved again. At start, intents left by a crash are
//! settled by asking the destination whether the object exists.

pub mod packed;
pub mod shard;
pub mod state;
pub mod store;
pub mod tracker;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use spillway_destinations::{ObjectKey, ObjectStore};
use spillway_transforms::format::parquet::TableSchema;
use spillway_transforms::record::Offset;
use spillway_transforms::SourceId;

pub use store::{CheckpointStore, LocalFileStore, StoreError};
pub use tracker::{Admission, Claims, ObjectId, Ticket, Tracker};

/// Failure to settle or save checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint file belongs to delivery stream {found:?}, not {expected:?}")]
    WrongStream { expected: String, found: String },
    #[error("cannot settle pending object {key}: {source}")]
    Settle {
        key: String,
        #[source]
        source: spillway_destinations::Error,
    },
}

/// The checkpoints of one delivery stream, shared by the router (which
/// admits records) and the writer (which delivers objects).
#[derive(Debug)]
pub struct Checkpointer {
    tracker: Mutex<Tracker>,
    store: Box<dyn CheckpointStore>,
    /// Changes made to the tracker so far (counted under its lock).
    changes: AtomicU64,
    /// Serialises saves so that an older snapshot never overwrites a newer;
    /// holds the changes the last snapshot saved included.
    save_lock: tokio::sync::Mutex<u64>,
    /// Whether a shard was ever adopted with intents to redo: until then
    /// (always, without coordination) routing a batch asks nothing of the
    /// tracker.
    redoing: std::sync::atomic::AtomicBool,
}

impl Checkpointer {
    /// Loads the saved state and settles pending objects against
    /// `destination`.
    pub async fn open(
        stream: &str,
        store: Box<dyn CheckpointStore>,
        destination: &dyn ObjectStore,
    ) -> Result<Self, CheckpointError> {
        let state = match store.load().await? {
            Some(state) if state.stream != stream => {
                return Err(CheckpointError::WrongStream {
                    expected: stream.to_owned(),
                    found: state.stream,
                })
            }
            Some(state) => {
                let mut exists = HashMap::new();
                for pending in &state.pending {
                    let settle_error = |source| CheckpointError::Settle {
                        key: pending.key.clone(),
                        source,
                    };
                    let found = match ObjectKey::new(pending.key.clone()) {
                        Ok(key) => {
                            destination.clean_up(&key).await.map_err(settle_error)?;
                            destination.exists(&key).await.map_err(settle_error)?
                        }
                        Err(_) => false,
                    };
                    tracing::info!(key = %pending.key, written = found, "settled an object pending since the last run");
                    exists.insert(pending.key.clone(), found);
                }
                let had_pending = !state.pending.is_empty();
                let settled = Tracker::settle(state, &exists);
                if had_pending {
                    store.save(&settled).await?;
                }
                Some(settled)
            }
            None => None,
        };
        Ok(Self {
            tracker: Mutex::new(Tracker::new(stream, state)),
            store,
            changes: AtomicU64::new(0),
            save_lock: tokio::sync::Mutex::new(0),
            redoing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().expect("tracker lock is never poisoned")
    }

    /// The tracker, for a change that [`Self::save`] must persist.
    fn change(&self) -> std::sync::MutexGuard<'_, Tracker> {
        let tracker = self.tracker();
        self.changes.fetch_add(1, Ordering::Relaxed);
        tracker
    }

    pub fn checkpoint(&self, source: &SourceId) -> Option<Offset> {
        self.tracker().checkpoint(source).cloned()
    }

    pub fn is_finished(&self, source: &SourceId) -> bool {
        self.tracker().is_finished(source)
    }

    /// When reading first started; set to `now` if it never was. Returns
    /// the value in force and whether it was set now ([`Self::save`] must
    /// follow before anything is read).
    pub fn start_reading_at(&self, now: chrono::DateTime<chrono::Utc>) -> (chrono::DateTime<chrono::Utc>, bool) {
        self.change().start_reading_at(now)
    }

    /// The table schema in force (Parquet with an inferred schema).
    pub fn table_schema(&self) -> Option<TableSchema> {
        self.tracker().table_schema().cloned()
    }

    /// Puts a new version of the table schema in force; [`Self::save`]
    /// must follow before anything is written under it.
    pub fn set_table_schema(&self, schema: TableSchema) {
        self.change().set_table_schema(schema);
    }

    /// Forgets the sources `matches` picks, so they start afresh.
    pub fn forget_where(&self, matches: impl Fn(&SourceId) -> bool) {
        self.change().forget_where(matches);
    }

    /// Whether the checkpoint holds anything of `source`.
    pub fn knows(&self, source: &SourceId) -> bool {
        self.tracker().knows(source)
    }

    /// Every source the checkpoint holds, and whether it is finished.
    pub fn entries(&self) -> std::collections::BTreeMap<SourceId, bool> {
        self.tracker().entries()
    }

    /// Forgets `sources` but those with records in flight; see
    /// [`Tracker::forget_idle`]. [`Self::save`] persists it.
    pub fn forget_idle<'a>(&self, sources: impl IntoIterator<Item = &'a SourceId>) -> Vec<SourceId> {
        let mut tracker = self.tracker();
        let forgotten = tracker.forget_idle(sources);
        if !forgotten.is_empty() {
            // A change for the next save to write (see `change`).
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        forgotten
    }

    /// Takes `source` over from the state its lease holds (with
    /// coordination, when this instance wins the lease); see
    /// [`Tracker::adopt`]. Whatever this instance still had of it (an
    /// earlier tenure's records or intents) is given up first.
    pub fn adopt(&self, source: &SourceId, saved: state::SourceState) {
        let mut tracker = self.change();
        tracker.abandon(source);
        tracker.adopt(source, saved);
    }

    /// Takes `source` over from its lease's state, pending intents and
    /// all: [`Self::adopt`], then the intents are kept to be redone (see
    /// `tracker/redo.rs`). Returns how many there are.
    pub fn adopt_lease(&self, source: &SourceId, state: shard::ShardState) -> usize {
        let mut tracker = self.change();
        tracker.abandon(source);
        tracker.adopt(source, state.source);
        let inherited = tracker.inherit(source, state.pending);
        if inherited > 0 {
            self.redoing.store(true, Ordering::Relaxed);
        }
        inherited
    }

    /// Which inherited intent each record belongs to; see
    /// [`Tracker::redo_routing`]. Cheap when none is inherited.
    pub fn redo_routing<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a SourceId, &'a Offset, bool)>,
    ) -> tracker::RedoRouting {
        if !self.redoing.load(Ordering::Relaxed) {
            return tracker::RedoRouting::default();
        }
        self.tracker().redo_routing(records)
    }

    /// See [`Tracker::redo_due_at_end`].
    pub fn redo_due_at_end(&self, source: &SourceId) -> Vec<std::sync::Arc<str>> {
        self.tracker().redo_due_at_end(source)
    }

    /// See [`Tracker::forget_inherited`]. [`Self::save`] persists it.
    pub fn forget_inherited(&self, source: &SourceId, key: &str) {
        self.change().forget_inherited(source, key);
    }

    /// Gives `source` up (its lease was lost); see [`Tracker::abandon`].
    pub fn abandon(&self, source: &SourceId) -> Vec<ObjectId> {
        self.change().abandon(source)
    }

    /// Gives `source` up, its records perhaps still on their way from the
    /// source; see [`Tracker::release`].
    pub fn release(&self, source: &SourceId) -> Vec<ObjectId> {
        self.change().release(source)
    }

    /// See [`Tracker::is_released`].
    pub fn is_released(&self, source: &SourceId) -> bool {
        self.tracker().is_released(source)
    }

    /// See [`Tracker::tenure_passed`].
    pub fn tenure_passed(&self, source: &SourceId) {
        self.tracker().tenure_passed(source);
    }

    /// See [`Tracker::is_abandoned`].
    pub fn is_abandoned(&self, id: ObjectId) -> bool {
        self.tracker().is_abandoned(id)
    }

    /// Forgets an intent whose object is not put; see
    /// [`Tracker::forget_object`]. [`Self::save`] persists it.
    pub fn forget_object(&self, id: ObjectId) {
        self.change().forget_object(id);
    }

    /// Admits records in source order; see [`Tracker::admit`].
    pub fn admit<'a, I>(&self, records: I) -> Vec<Option<Ticket>>
    where
        I: IntoIterator<Item = (&'a SourceId, &'a Offset)>,
    {
        self.change().admit_all(records)
    }

    /// Admits processors' outputs in source order; see
    /// [`Tracker::admit_all_as`].
    pub fn admit_as<'a, I>(&self, records: I) -> Vec<Option<Ticket>>
    where
        I: IntoIterator<Item = (&'a SourceId, &'a Offset, Admission)>,
    {
        self.change().admit_all_as(records)
    }

    pub fn end_of_input(&self, source: &SourceId) {
        self.change().end_of_input(source);
    }

    /// Notes the intent to write `key` with these records; [`Self::save`]
    /// must follow before the object is written.
    pub fn begin_object(&self, key: &ObjectKey, claims: Claims) -> ObjectId {
        self.change().begin_object(key.as_str(), claims)
    }

    /// Points an intent at another key (its records go there instead);
    /// [`Self::save`] must follow before that object is written.
    pub fn retarget_object(&self, id: ObjectId, key: &ObjectKey) {
        self.change().retarget_object(id, key.as_str());
    }

    /// Marks an object written; [`Self::save`] persists the advance.
    pub fn complete_object(&self, id: ObjectId) {
        self.change().complete_object(id);
    }

    /// Saves the current state: every change made before this call is
    /// saved when it returns. Saves waiting for one in progress are done
    /// by a single save after it (a group commit): concurrent deliveries
    /// each save their intent, and a save writes the whole state.
    pub async fn save(&self) -> Result<(), StoreError> {
        let made = self.changes.load(Ordering::Relaxed);
        let mut saved = self.save_lock.lock().await;
        if *saved >= made {
            // A save that began after this caller's changes included them.
            return Ok(());
        }
        let (snapshot, including) = {
            let tracker = self.tracker();
            (tracker.snapshot(), self.changes.load(Ordering::Relaxed))
        };
        self.store.save(&snapshot).await?;
        *saved = including;
        Ok(())
    }
}
