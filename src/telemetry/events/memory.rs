//! The memory budget's events (`crate::limits`): the budget the process
//! runs under, sources paused and resumed when it is full, and what it
//! holds.

use super::{Event, Telemetry};

/// The budget of the process, said once at start.
pub struct MemoryBudgetSet {
    pub memory_mb: usize,
    /// `limits.memory_mb`, or how the default is derived.
    pub from: &'static str,
    pub pipelines: usize,
}

impl MemoryBudgetSet {
    /// The process's, not a pipeline's: logged without one.
    pub fn log(self) {
        tracing::info!(
            memory_mb = self.memory_mb,
            from = self.from,
            pipelines = self.pipelines,
            "memory budget"
        );
    }
}

/// The budget is full: the pipeline's source is paused until deliveries
/// free memory.
pub struct MemoryPaused {
    pub used: usize,
    pub limit: usize,
    /// Whether to log it: a source at the limit pauses often, and the line
    /// is said at most every 30 seconds (the gate decides).
    pub log: bool,
}

impl Event for MemoryPaused {
    fn emit(self, telemetry: &Telemetry) {
        if self.log {
            tracing::info!(
                stream = %telemetry.stream(),
                used_bytes = self.used,
                limit_bytes = self.limit,
                "memory budget full: source paused"
            );
        }
    }
}

/// Deliveries freed memory: the source reads again.
pub struct MemoryResumed {
    pub used: usize,
}

impl Event for MemoryResumed {
    fn emit(self, telemetry: &Telemetry) {
        tracing::debug!(stream = %telemetry.stream(), used_bytes = self.used, "memory budget has room: source resumed");
    }
}

/// What the budget holds now (the router says so every second): the
/// process's, published under each pipeline.
pub struct MemoryObserved {
    pub used: usize,
    pub limit: usize,
}

impl Event for MemoryObserved {
    fn emit(self, telemetry: &Telemetry) {
        let families = &telemetry.registry.families;
        let labels = &telemetry.state.labels;
        families
            .memory_used_bytes
            .get_or_create(labels)
            .set(i64::try_from(self.used).unwrap_or(i64::MAX));
        families
            .memory_budget_bytes
            .get_or_create(labels)
            .set(i64::try_from(self.limit).unwrap_or(i64::MAX));
    }
}
