//! The writer: turns each flushed batch into objects and delivers them.
//!
//! For each object: save the intent (key and record runs), put it
//! create-only (retrying what a retry can help, for as long as it takes),
//! then mark its records delivered and save the advanced checkpoints.

use std::sync::Arc;

use spillway_destinations::retry::RetryPolicy;
use spillway_destinations::{ObjectStore, PutOutcome};
use tokio::sync::mpsc;

use super::object::{ObjectPlanner, PlannedObject};
use super::stats::Stats;
use super::RunError;
use crate::buffer::Batch;
use crate::checkpoint::{Checkpointer, StoreError};
use crate::config::Config;

pub(super) struct Writer {
    planner: Arc<ObjectPlanner>,
    destination: Arc<dyn ObjectStore>,
    checkpoints: Arc<Checkpointer>,
    stats: Arc<Stats>,
    retry: RetryPolicy,
}

impl Writer {
    pub fn new(
        config: &Config,
        destination: Arc<dyn ObjectStore>,
        checkpoints: Arc<Checkpointer>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            planner: Arc::new(ObjectPlanner::new(config)),
            destination,
            checkpoints,
            stats,
            retry: RetryPolicy::default(),
        }
    }

    /// Delivers batches until the router hangs up. Stops at the first
    /// error no retry can fix; records of undelivered batches are not
    /// checkpointed, so the next run reads them again.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>) -> Result<(), RunError> {
        while let Some(batch) = batches.recv().await {
            self.deliver(batch).await?;
        }
        Ok(())
    }

    async fn deliver(&self, batch: Batch) -> Result<(), RunError> {
        let Batch {
            key,
            items,
            bytes,
            reason,
        } = batch;
        let planner = self.planner.clone();
        let objects = tokio::task::spawn_blocking(move || planner.plan(&key, items))
            .await
            .expect("encoding does not panic")
            .map_err(RunError::Encode)?;
        for object in objects {
            let PlannedObject {
                key,
                body,
                options,
                tickets,
                output,
                records,
            } = object;
            let object_bytes = body.len();
            let id = self.checkpoints.begin_object(&key, tickets);
            self.save_with_retry().await?;
            let outcome = self
                .retry
                .run(
                    || self.destination.put(&key, body.clone(), &options),
                    |err| err.is_retryable(),
                    |err, attempt, delay| {
                        tracing::warn!(key = %key, attempt, retry_in = ?delay, error = %err, "put failed; retrying")
                    },
                )
                .await
                .map_err(RunError::Delivery)?;
            if output == "data" {
                Stats::add(&self.stats.records_delivered, records as u64);
            }
            Stats::add(&self.stats.objects_written, 1);
            tracing::info!(
                reason = %reason,
                output,
                key = %key,
                records,
                buffer_bytes = bytes,
                object_bytes,
                already_existed = outcome == PutOutcome::AlreadyExisted,
                error_records_total = Stats::get(&self.stats.error_records),
                "flushed"
            );
            // Logged before the checkpoint moves: a run killed in between
            // finds the object pending at its next start and settles it.
            self.checkpoints.complete_object(id);
            self.save_with_retry().await?;
        }
        Ok(())
    }

    async fn save_with_retry(&self) -> Result<(), RunError> {
        self.retry
            .run(|| self.checkpoints.save(), StoreError::is_retryable, |err, attempt, delay| {
                tracing::warn!(attempt, retry_in = ?delay, error = %err, "checkpoint save failed; retrying")
            })
            .await
            .map_err(RunError::CheckpointSave)
    }
}
