//! The counters of a run, logged at each flush and in its summary at the
//! end. Fed by the same events as the metrics ([`super::events`]), but one
//! pipeline's and one run's, where the metrics are the process's.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::buffer::FlushReason;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub records_read: AtomicU64,
    pub records_skipped: AtomicU64,
    pub records_dropped: AtomicU64,
    pub records_delivered: AtomicU64,
    pub error_records: AtomicU64,
    pub objects_written: AtomicU64,
    pub memory_limit_flushes: AtomicU64,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub ended_by: FlushReason,
    pub records_read: u64,
    /// Records already delivered by an earlier run, read again and skipped.
    pub records_skipped: u64,
    /// Records a processor dropped on purpose (checkpointed, written nowhere).
    pub records_dropped: u64,
    /// Records written to data objects.
    pub records_delivered: u64,
    /// Records written to the error output.
    pub error_records: u64,
    pub objects_written: u64,
    /// Buffers flushed early because the memory budget was full.
    pub memory_limit_flushes: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn summary(&self, ended_by: FlushReason) -> RunSummary {
        RunSummary {
            ended_by,
            records_read: Self::get(&self.records_read),
            records_skipped: Self::get(&self.records_skipped),
            records_dropped: Self::get(&self.records_dropped),
            records_delivered: Self::get(&self.records_delivered),
            error_records: Self::get(&self.error_records),
            objects_written: Self::get(&self.objects_written),
            memory_limit_flushes: Self::get(&self.memory_limit_flushes),
        }
    }
}
