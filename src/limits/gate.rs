//! The gate between a source and the rest of its pipeline: where sources
//! pause while the memory budget is full (see [`super`]).

use tokio::sync::mpsc;

use super::{Charged, MemoryBudget};
use crate::buffer::record_cost;
use crate::source::SourceEvent;
use crate::telemetry::events::{MemoryPaused, MemoryResumed};
use crate::telemetry::Telemetry;

/// What an event's records cost the budget.
pub fn event_cost(event: &SourceEvent) -> usize {
    match event {
        SourceEvent::Records(records) => records.iter().map(|r| record_cost(r.data.len())).sum(),
        SourceEvent::Refused(refused) => refused.iter().map(|(r, _)| record_cost(r.data.len())).sum(),
        SourceEvent::Processed(processed) => processed.iter().map(|p| record_cost(p.record.data.len())).sum(),
        SourceEvent::Ended { .. } | SourceEvent::ShardReleased { .. } | SourceEvent::Failed(_) => 0,
    }
}

/// How often a source paused by a full budget says so.
const PAUSE_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The gate between a source and the rest of its pipeline: takes an event
/// from the source only while the budget has room, charges it, and passes
/// it on. While the budget is full the source's channel (one event) fills
/// and the source waits to send: it pauses and drops nothing. Ends when
/// either side hangs up.
pub async fn run(
    budget: MemoryBudget,
    telemetry: Telemetry,
    mut from_source: mpsc::Receiver<SourceEvent>,
    onward: mpsc::Sender<Charged<SourceEvent>>,
) {
    let mut last_said: Option<std::time::Instant> = None;
    loop {
        if budget.is_full() {
            let log = last_said.is_none_or(|at| at.elapsed() >= PAUSE_LOG_INTERVAL);
            if log {
                last_said = Some(std::time::Instant::now());
            }
            telemetry.emit(MemoryPaused {
                used: budget.used(),
                limit: budget.limit(),
                log,
            });
            tokio::select! {
                () = budget.room() => {}
                () = onward.closed() => return,
            }
            telemetry.emit(MemoryResumed { used: budget.used() });
        }
        let event = tokio::select! {
            event = from_source.recv() => event,
            () = onward.closed() => return,
        };
        let Some(event) = event else { return };
        let charge = budget.charge(event_cost(&event));
        if onward.send(Charged { value: event, charge }).await.is_err() {
            return;
        }
    }
}
