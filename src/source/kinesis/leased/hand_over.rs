//! The hand-over at stop (SIGTERM, issue #22): an instance that stops
//! gives its shards to the others without making them wait for its leases
//! to expire, and without leaving them anything to redo or read twice.
//!
//! The order matters. At the stop the readers stop at once, but the
//! leases are kept, and renewed, while the pipeline flushes every buffer,
//! delivers it and saves the checkpoint into the leases: until then an
//! object could still be put under a lease. Only when the pipeline says
//! all of it is in ([`HandOver::release`]) does the lease loop release
//! them, and the next owner reads on from the final checkpoint, with no
//! pending intent in the lease. Meanwhile the keeper takes nothing
//! ([`Keeper::stop_taking`](crate::coordination::keeper::Keeper::stop_taking)),
//! and a lease lost meanwhile is given up as at any other time, so that
//! nothing more of its shard is put.
//!
//! A run that ends with an error lets its leases go as well (the pipeline
//! holds [`HandOver::release_on_drop`]): what it saved in the leases is
//! what was delivered, and its pending intents are the next owner's to
//! redo, so a failed pipeline, one of several in a process, does not keep
//! renewing leases that nobody reads. (It does not wait for the release: a
//! process that exits on the error may exit first, and its leases then
//! expire.)

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Coordinator;
use crate::coordination::keeper::LeaseChange;
use crate::coordination::LeaseError;

/// Between a pipeline and its leased source at stop: the pipeline says
/// when everything read is delivered and checkpointed, the source says
/// when the leases are released.
#[derive(Clone, Debug, Default)]
pub struct HandOver {
    release: CancellationToken,
    released: CancellationToken,
}

impl HandOver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything read is delivered and its checkpoint saved: the leases
    /// may go.
    pub fn release(&self) {
        self.release.cancel();
    }

    /// Releases the leases when dropped, however the run ends.
    pub fn release_on_drop(&self) -> DropGuard {
        self.release.clone().drop_guard()
    }

    /// Resolves once the source has released its leases (or ended
    /// without any to release).
    pub async fn released(&self) {
        self.released.cancelled().await;
    }

    /// Said by the source once it has ended, its lease loop with it.
    pub(in crate::source::kinesis) fn done(&self) {
        self.released.cancel();
    }
}

impl Coordinator {
    /// At stop, keeps the leases until `hand_over` releases them.
    pub(in crate::source::kinesis) fn handing_over(self, hand_over: Option<HandOver>) -> Self {
        Self { hand_over, ..self }
    }

    /// The source's stop with a hand-over: its readers have stopped. Keeps
    /// the leases (the lease loop renews them) until the pipeline releases
    /// them, giving up those lost meanwhile. Returns whether the lease loop
    /// ended meanwhile (an error no retry helps, said here).
    pub(super) async fn hold_until_released(
        &mut self,
        changes: &mut mpsc::Receiver<LeaseChange>,
        lease_loop: &mut JoinHandle<Result<(), LeaseError>>,
    ) -> bool {
        let Some(hand_over) = self.hand_over.clone() else {
            return false;
        };
        self.keeper.stop_taking();
        tracing::info!(
            shards = self.keeper.held().len(),
            "stopped reading; the leases are released once every buffer is delivered and checkpointed"
        );
        let mut open = true;
        loop {
            tokio::select! {
                () = hand_over.release.cancelled() => return false,
                change = changes.recv(), if open => match change {
                    Some(LeaseChange::Lost { shard, why }) => self.lose(&shard, why),
                    // Taken by a round under way at the stop: released
                    // with the rest, unread.
                    Some(LeaseChange::Won { lease, .. }) => {
                        tracing::debug!(shard = %lease.shard, "lease won while stopping: released unread");
                    }
                    None => open = false,
                },
                ended = &mut *lease_loop => {
                    match ended {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(error = %error, "the lease loop ended while stopping; the leases expire instead"),
                        Err(panic) => std::panic::resume_unwind(panic.into_panic()),
                    }
                    return true;
                }
            }
        }
    }
}
