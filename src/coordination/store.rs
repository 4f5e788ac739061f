//! The checkpoint store when coordination is on: each held shard's part of
//! the checkpoint state ([`ShardState`]) in its lease item, written fenced
//! by the lease ([`Keeper::checkpoint`]) and only when it changed, so that
//! the instance that takes a shard over finds there its checkpoint and the
//! intents it must redo.
//!
//! A save writes every held shard whose part changed. A shard whose lease
//! turns out lost is not an error of the save: the keeper has given it up
//! (its token is cancelled, so its reader stops and its intents are
//! abandoned), and nothing of it was written, so no object of it may be put
//! on the strength of this save. The caller checks [`Keeper::holds`] after
//! saving an intent and before putting its object.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use spillway_transforms::SourceId;

use super::keeper::Keeper;
use super::LeaseError;
use crate::checkpoint::shard::ShardState;
use crate::checkpoint::state::CheckpointState;
use crate::checkpoint::{CheckpointStore, StoreError};

#[derive(Debug)]
pub struct LeaseStore {
    keeper: Keeper,
    /// What each shard's lease holds now, as this instance last wrote it.
    written: Mutex<HashMap<SourceId, String>>,
}

impl LeaseStore {
    pub fn new(keeper: Keeper) -> Self {
        Self {
            keeper,
            written: Mutex::new(HashMap::new()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<SourceId, String>> {
        self.written.lock().expect("never poisoned")
    }
}

#[async_trait]
impl CheckpointStore for LeaseStore {
    /// Nothing at start: each shard's state comes with its lease, when it
    /// is won.
    async fn load(&self) -> Result<Option<CheckpointState>, StoreError> {
        Ok(None)
    }

    async fn save(&self, state: &CheckpointState) -> Result<(), StoreError> {
        let shards: BTreeSet<&SourceId> = state
            .sources
            .keys()
            .chain(state.pending.iter().flat_map(|p| p.runs.iter().map(|r| &r.source)))
            .collect();
        for shard in shards {
            if !self.keeper.holds(shard.as_str()) {
                continue;
            }
            let part = ShardState::of(state, shard)?;
            let text = part.to_json();
            if self.written().get(shard) == Some(&text) {
                continue;
            }
            match self
                .keeper
                .checkpoint(shard.as_str(), &text, part.source.finished)
                .await
            {
                Ok(()) => {
                    self.written().insert(shard.clone(), text);
                }
                // Given up by the keeper: not this save's error.
                Err(LeaseError::Lost { .. }) => {
                    self.written().remove(shard);
                }
                Err(error) => return Err(StoreError::Lease(error)),
            }
        }
        Ok(())
    }
}
