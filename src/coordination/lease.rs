//! One shard's lease as the table holds it.

/// A shard's lease. `counter` changes with every write (take, renewal,
/// checkpoint, release), so a write conditional on the counter an
/// instance last saw fails once anyone else has written since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard: String,
    /// The instance holding it; `None` when released or never taken.
    pub owner: Option<String>,
    pub counter: u64,
    /// The shard's checkpoint state (its delivered offsets and pending
    /// intents), opaque to the table: JSON written by the checkpointer.
    pub state: Option<String>,
    /// Shards this one was split from or merged from: it is read only
    /// once every parent has ended.
    pub parents: Vec<String>,
    /// Read to its end and everything of it delivered.
    pub ended: bool,
    /// When the owner last wrote the lease, by the owner's clock. For
    /// people (`spillway leases`) only: expiry is judged by the counter
    /// standing still on the reader's own clock ([`super::expiry`]), so
    /// that instances need not agree on the time of day.
    pub renewed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Lease {
    pub fn held_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }
}

/// Errors of the lease table. [`LeaseError::is_retryable`] says whether
/// trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone wrote the lease since this instance last saw it: it is no
    /// longer ours (or was never), and nothing was written.
    #[error("lease on shard {shard} is held by another instance now")]
    Lost { shard: String },
    /// DynamoDB could not be reached or answered with a server error or
    /// throttling.
    /// `place`: the region, and the endpoint when one is set.
    #[error("cannot reach lease table {table} in {place}: {detail}")]
    Unavailable {
        table: String,
        place: String,
        detail: String,
    },
    /// The table does not exist (`spillway leases` looks, and creates
    /// nothing).
    #[error("no lease table {table} in {place}: no instance has run with this [coordination] yet")]
    Missing { table: String, place: String },
    /// Refused for good: access denied, no credentials, a table that cannot
    /// be created, an invalid request.
    #[error("lease table {table}: {detail}")]
    Refused { table: String, detail: String },
    /// An item that is not a lease spillway wrote.
    #[error("lease table {table}: item for shard {shard} is not a spillway lease: {detail}")]
    Corrupt {
        table: String,
        shard: String,
        detail: String,
    },
}

impl LeaseError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LeaseError::Unavailable { .. })
    }
}
