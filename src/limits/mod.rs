//! One memory budget over everything spillway holds, in all its pipelines
//! (`[limits] memory_mb`): records read ahead of the router, processor
//! batches, open buffers of every partition, and batches being encoded or
//! sent.
//!
//! Why one counter of bytes rather than a limit per stage: the stages
//! already bound themselves (bounded channels, buffer sizes,
//! `max_concurrent_puts`), but their bounds multiply with the number of
//! partitions, pipelines and puts in flight; a container's limit is one
//! number. So every byte is charged once to one [`MemoryBudget`] shared by
//! the process, and released when it is no longer held. A [`Charge`] is
//! the proof of a charge: it releases its bytes when dropped, so that
//! every path (delivered, failed, dropped, skipped, a run that stops) gives
//! them back without a line of bookkeeping, and bytes charged always equal
//! bytes released once the charges are gone.
//!
//! Where bytes are charged, in the order records flow:
//! - the gate ([`gate::run`]) between a source and the rest of the pipeline
//!   charges each event it passes on (its records' data and bookkeeping),
//!   and takes nothing from the source while the budget is full: this is
//!   where sources pause, never drop;
//! - the processor stage charges its outputs and releases its inputs;
//! - the buffers charge each record pushed (`crate::buffer::Buffers`), and
//!   a flushed batch carries the charge of its records until the writer
//!   is done with it (delivered, or written as error records);
//! - a delivery charges an object's bytes held whole in memory (Parquet)
//!   while it is put.
//!
//! When the budget is full, each router flushes its largest open buffer
//! early (reason `memory_limit`), so that delivery frees memory. If the
//! destination fails, nothing frees it: the pipeline waits (nothing is
//! dropped) and readiness says so.

pub mod config;
pub mod gate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

pub use config::{default_memory_mb, LimitsConfig, LimitsSettings};

/// The bytes all pipelines of the process may hold, and those they hold.
/// Cheap to clone: every clone is the same budget.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Woken whenever bytes are released.
    released: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                released: Notify::new(),
            }),
        }
    }

    /// A budget that is never full: for tests, and code that holds no
    /// pipeline's memory.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes charged and not yet released.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Whether the bytes held have reached the limit.
    pub fn is_full(&self) -> bool {
        self.used() >= self.inner.limit
    }

    /// Charges `bytes` at once, full or not: for bytes that are already in
    /// memory (a record pushed into a buffer, a processor's outputs). Only
    /// [`gate::run`] waits for room, so that what is already read always moves
    /// on towards delivery, where it can be released.
    pub fn charge(&self, bytes: usize) -> Charge {
        self.inner.used.fetch_add(bytes, Ordering::AcqRel);
        Charge {
            budget: Some(self.clone()),
            bytes,
        }
    }

    /// Waits until the budget is not full.
    pub async fn room(&self) {
        loop {
            // Registered before the check, so that a release between the
            // check and the wait is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.is_full() {
                return;
            }
            released.await;
        }
    }

    fn release(&self, bytes: usize) {
        let before = self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(before >= bytes, "released more than was charged");
        self.inner.released.notify_waiters();
    }
}

/// Bytes charged to a budget, released when dropped. `Charge::default()`
/// charges nothing.
#[derive(Debug, Default)]
pub struct Charge {
    budget: Option<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `other`'s bytes to this charge (of the same budget, or of
    /// none): released together.
    pub fn absorb(&mut self, mut other: Charge) {
        // A charge without a budget holds no bytes.
        let Some(theirs) = other.budget.take() else { return };
        let bytes = std::mem::take(&mut other.bytes);
        match &self.budget {
            None => self.budget = Some(theirs),
            Some(mine) => debug_assert!(Arc::ptr_eq(&mine.inner, &theirs.inner), "one budget per process"),
        }
        self.bytes += bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            if self.bytes > 0 {
                budget.release(self.bytes);
            }
        }
    }
}

/// A value and the charge of the memory it holds.
#[derive(Debug)]
pub struct Charged<T> {
    pub value: T,
    pub charge: Charge,
}

impl<T> Charged<T> {
    /// `value`, charging nothing: for tests, and events that hold no
    /// records.
    pub fn free(value: T) -> Self {
        Self {
            value,
            charge: Charge::default(),
        }
    }
}

/// `total` bytes shared out in proportion to `weights` (each at least 1
/// byte's worth of weight); the shares add up to at most `total`.
pub fn shares(total: usize, weights: &[usize]) -> Vec<usize> {
    let sum: u128 = weights.iter().map(|w| (*w).max(1) as u128).sum();
    weights
        .iter()
        .map(|w| (total as u128 * (*w).max(1) as u128 / sum.max(1)) as usize)
        .collect()
}

#[cfg(test)]
mod tests;
