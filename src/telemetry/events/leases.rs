//! The lease table's events (`[coordination]`): what this instance holds,
//! wins and loses, as the Kinesis Client Library's operators watch them.

use super::{Event, Telemetry};
use crate::coordination::keeper::LossReason;
use crate::telemetry::labels::LossLabels;

/// This instance won a shard's lease (the keeper logs `lease taken`).
pub struct LeaseWon;

impl Event for LeaseWon {
    fn emit(self, telemetry: &Telemetry) {
        telemetry
            .registry
            .families
            .leases_taken
            .get_or_create(&telemetry.state.labels)
            .inc();
    }
}

/// A shard this instance held is no longer its: its reader stopped.
pub struct ShardLost<'a> {
    pub shard: &'a str,
    pub reason: LossReason,
    /// Objects of its records that were being written here, abandoned.
    pub abandoned_objects: usize,
}

impl Event for ShardLost<'_> {
    fn emit(self, telemetry: &Telemetry) {
        let (why, label) = match self.reason {
            LossReason::Taken => ("another instance took its lease", "taken"),
            LossReason::Unproven => ("its lease could not be renewed for a lease duration", "unproven"),
        };
        tracing::warn!(
            shard = %self.shard,
            why,
            abandoned_objects = self.abandoned_objects,
            "shard lost: its reader stopped, its records here no longer count"
        );
        let labels = LossLabels {
            stream: telemetry.stream().to_owned(),
            reason: label.to_owned(),
        };
        telemetry.registry.families.leases_lost.get_or_create(&labels).inc();
    }
}

/// How many shards' leases this instance holds now.
pub struct LeasesHeld {
    pub held: usize,
}

impl Event for LeasesHeld {
    fn emit(self, telemetry: &Telemetry) {
        telemetry
            .registry
            .families
            .leases_held
            .get_or_create(&telemetry.state.labels)
            .set(i64::try_from(self.held).unwrap_or(i64::MAX));
    }
}

/// A shard's lease holds a checkpoint state this build cannot read: the
/// instance gives the lease up and does not read the shard; the pipeline
/// is unready from then on (see `PipelineState::unready_reason`).
pub struct ShardRefused<'a> {
    pub shard: &'a str,
    pub reason: &'a str,
}

impl Event for ShardRefused<'_> {
    fn emit(self, telemetry: &Telemetry) {
        tracing::error!(
            shard = %self.shard,
            reason = %self.reason,
            "shard refused: its lease's checkpoint state cannot be read by this build; the lease is released and this instance does not read the shard (its other shards go on)"
        );
        telemetry.state.refuse_shard(self.shard, self.reason);
        telemetry
            .registry
            .families
            .leases_refused
            .get_or_create(&telemetry.state.labels)
            .inc();
    }
}
