//! A run under `[coordination]` (issue #22, `docs/leases.md`): what it
//! changes in the pipeline, in one place.
//!
//! The lease table is opened (created if missing) before anything is read,
//! and this instance's keeper of it serves three parts of the run: the
//! checkpoint store ([`LeaseStore`]: each shard's checkpoint and intents in
//! its lease, not in a local file), the Kinesis source
//! ([`KinesisSource::leased`]: only the shards whose leases it holds), and
//! the delivery's lease check ([`Leases`], asked between each intent and
//! its first attempt). The router keeps buffers per shard.
//!
//! At stop the leases are handed over ([`HandOver`]): the source stops
//! reading, the pipeline flushes, delivers and saves the checkpoint into
//! the leases, and only then are they released, so that another instance
//! takes them at its next round and reads on from the final checkpoint.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::RunError;
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::coordination::holds::Leases;
use crate::coordination::keeper::Keeper;
use crate::coordination::store::LeaseStore;
use crate::source::kinesis::leased::{self, Coordination, HandOver};
use crate::source::kinesis::KinesisSource;
use crate::source::{Source, SourceConfig};

/// What a run under coordination has beside a plain one.
pub(super) struct Coordinated {
    keeper: Keeper,
    hand_over: HandOver,
    /// Where the checkpoints are, for the start line.
    place: String,
    lease_duration: Duration,
}

impl Coordinated {
    /// With `[coordination]`: the lease table opened, this instance's
    /// keeper of it. `None` without.
    pub async fn open(config: &Config) -> Result<Option<Self>, RunError> {
        let (Some(coordination), SourceConfig::Kinesis(kinesis)) = (&config.coordination, &config.source) else {
            return Ok(None);
        };
        let keeper = leased::open_keeper(coordination, &config.name, &kinesis.stream).await?;
        let place = format!(
            "lease table {} (leases {}, worker {})",
            coordination.table,
            crate::coordination::namespace(&config.name, &kinesis.stream),
            keeper.worker()
        );
        Ok(Some(Self {
            keeper,
            hand_over: HandOver::new(),
            place,
            lease_duration: coordination.lease_duration,
        }))
    }

    /// The checkpoint store: each held shard's part in its lease.
    pub fn checkpoint_store(&self) -> Box<dyn CheckpointStore> {
        Box::new(LeaseStore::new(self.keeper.clone()))
    }

    pub fn describe(&self) -> &str {
        &self.place
    }

    /// The Kinesis source reading the shards whose leases this instance
    /// holds, until `stop`; its leases are kept until [`Self::hand_over`].
    pub fn source(&self, config: &SourceConfig, stop: &CancellationToken) -> Box<dyn Source> {
        let SourceConfig::Kinesis(kinesis) = config else {
            unreachable!("[coordination] is only allowed with a Kinesis source")
        };
        let coordination = Coordination {
            keeper: self.keeper.clone(),
            stop: stop.clone(),
        };
        Box::new(KinesisSource::leased(kinesis.clone(), coordination).handing_over(self.hand_over.clone()))
    }

    /// The delivery's lease check.
    pub fn leases(&self) -> Arc<dyn Leases> {
        Arc::new(self.keeper.clone())
    }

    /// Releases the leases when dropped, without waiting: a run that ends
    /// with an error does not keep them renewed (a process that exits on
    /// it may exit first: they expire then).
    pub fn release_on_drop(&self) -> DropGuard {
        self.hand_over.release_on_drop()
    }

    /// After the last checkpoint save: releases the leases, and waits until
    /// they are released (a lease duration at most: by then they have
    /// expired anyway).
    pub async fn hand_over(&self) {
        self.hand_over.release();
        if tokio::time::timeout(self.lease_duration, self.hand_over.released())
            .await
            .is_err()
        {
            tracing::warn!("releasing the leases took over a lease duration; those not released expire instead");
        }
    }
}

/// `--once` with `[coordination]`, refused before anything starts: an
/// instance under coordination reads the shards its leases give it for as
/// long as it runs, and never stops at the tip.
pub(super) fn refuse_once(config: &Config, once: bool) -> Result<(), RunError> {
    match (once, &config.coordination) {
        (true, Some(_)) => Err(RunError::OnceWithCoordination {
            pipeline: config.name.clone(),
        }),
        _ => Ok(()),
    }
}
