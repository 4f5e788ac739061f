//! What spillway tells its operators, in one place: log lines ([`log`]),
//! and the metrics and health of every pipeline, served over HTTP when
//! `[telemetry] listen` is set ([`listener`]).
//!
//! Every event worth a log line or a count is a type in [`events`] that
//! does both, so that the reader, the router, the writer and the HTTP
//! delivery say what happened without knowing how it is logged, counted or
//! summed into the run's summary, and a count can never drift from the
//! line beside it. A pipeline holds a [`Telemetry`] handle: its name (the
//! `stream` label), its state, and the process's [`Registry`].

pub mod config;
pub mod events;
mod health;
mod labels;
pub mod listener;
mod log;
mod registry;
mod summary;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use events::Event;
pub use health::{Operation, DEFAULT_RETRY_BUDGET};
pub use log::{eprint_line, escape_controls, filter, init, print_line, LogFormat, LogLevelError};
pub use registry::Registry;
pub use summary::RunSummary;
pub(crate) use summary::Stats;

use health::PipelineState;

/// One pipeline's side of the telemetry: cheap to clone, shared by its
/// source, router and writer.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Registry>,
    state: Arc<PipelineState>,
}

impl Telemetry {
    /// Registers the pipeline `stream` with `registry`; an operation that
    /// fails for longer than `retry_budget` makes it unready.
    pub fn new(registry: Arc<Registry>, stream: &str, retry_budget: Duration) -> Self {
        let state = Arc::new(PipelineState::new(stream, retry_budget));
        registry.add_pipeline(state.clone());
        Self { registry, state }
    }

    /// A pipeline of its own registry: for runs without a listener, and
    /// tests.
    pub fn standalone(stream: &str) -> Self {
        Self::new(Arc::new(Registry::new()), stream, DEFAULT_RETRY_BUDGET)
    }

    /// Logs and counts `event`.
    pub fn emit(&self, event: impl Event) {
        event.emit(self);
    }

    /// Readiness also watches the memory budget through `full`: full
    /// while an operation fails, the pipeline is stuck.
    pub fn watch_memory(&self, full: health::MemoryProbe) {
        self.state.watch_memory(full);
    }

    /// A new operation whose failures count against readiness.
    pub fn operation(&self) -> Operation {
        self.state.operation()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The run's counters so far.
    pub(crate) fn stats(&self) -> &Stats {
        &self.state.stats
    }

    fn stream(&self) -> &str {
        &self.state.labels.stream
    }
}
