//! Several pipelines in one process (`spillway run A.toml B.toml`, or a
//! directory of configurations): each runs on its own, with its own
//! checkpoint, and they share the metrics and health listener. A pipeline
//! that fails (at start: an unreachable destination, say) is reported at
//! once, naming it, and the others run on: one bad stream must not stop
//! the archiving of the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{run_in, RunError, RunOptions, RunSummary};
use crate::config::set::{describe, Loaded};
use crate::telemetry::listener;
use crate::telemetry::Registry;

/// Options shared by every pipeline of the process.
pub struct ManyOptions {
    /// Resolves when every pipeline should stop (SIGTERM, SIGINT).
    pub shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Replaces `buffer.interval_seconds` (tests only).
    pub interval_override: Option<Duration>,
    /// Read what each source has now, then flush, checkpoint and return.
    pub once: bool,
}

/// How one pipeline of several ended: its name and file, and its result.
pub struct Ended {
    pub pipeline: String,
    pub result: Result<RunSummary, RunError>,
}

/// Runs every pipeline until each has ended, calling `report` as each one
/// does. Fails only when the shared listener cannot listen (that is the
/// process's, not a pipeline's); checked together beforehand
/// (`crate::config::set`), at most one configuration sets it.
pub async fn run_many(
    pipelines: Vec<Loaded>,
    options: ManyOptions,
    report: impl Fn(&Ended),
) -> Result<Vec<Ended>, RunError> {
    for loaded in &pipelines {
        super::coordinated::refuse_once(&loaded.config, options.once)?;
    }
    for loaded in &pipelines {
        loaded.config.register_secrets();
    }
    let registry = Arc::new(Registry::new());
    let listen = pipelines.iter().find_map(|loaded| loaded.config.telemetry.listen);
    let _listener = match listen {
        Some(address) => Some(listener::serve(address, registry.clone()).await?),
        None => None,
    };
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            options.shutdown.await;
            stop.cancel();
        }
    });
    // The process's memory is one number, shared out between the
    // pipelines (see `budgets_of`).
    let budgets = super::budgets_of(pipelines.iter().map(|loaded| &loaded.config));
    let mut running = JoinSet::new();
    for (Loaded { path, config }, budget) in pipelines.into_iter().zip(budgets) {
        let pipeline = describe(&path, &config);
        let run_options = RunOptions {
            shutdown: Box::pin(stop.clone().cancelled_owned()),
            interval_override: options.interval_override,
            once: options.once,
        };
        let registry = registry.clone();
        running.spawn(async move {
            let result = run_in(config, run_options, registry, budget).await;
            Ended { pipeline, result }
        });
    }
    let mut ended = Vec::new();
    while let Some(done) = running.join_next().await {
        let done = done.expect("a pipeline does not panic");
        report(&done);
        ended.push(done);
    }
    Ok(ended)
}
