//! The pipeline, wired: source → processors (when configured, see
//! [`crate::processor::stage`]) → [`router`] (admit, check, buffer) →
//! [`writer`] (encode, compress, key, intent, put, checkpoint).
//!
//! Channels are bounded at every step: when the destination is slow the
//! writer falls behind, the router waits, and the source stops reading.
//! Between the source and the rest, a gate ([`crate::limits::gate::run`])
//! stops taking records while the process's memory budget is full.

mod catalog;
mod coordinated;
mod delivery;
mod early;
mod endpoint;
pub mod kinesis;
pub mod many;
mod object;
mod payload;
mod redo;
mod router;
mod table;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use spillway_destinations::{LocalStore, ObjectStore, S3Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buffer::FlushReason;
use crate::catalog::glue::{GlueCatalog, GlueError};
use crate::checkpoint::{CheckpointError, CheckpointStore, Checkpointer, LocalFileStore, StoreError};
use crate::config::{Config, DestinationConfig, SourceConfig, StoreConfig};
use crate::limits::MemoryBudget;
use crate::source::{self, SourceContext, SourceError};
use crate::telemetry::events::{MemoryBudgetSet, RunFailed, RunFinished, Started};
use crate::telemetry::listener::{self, ListenError};
use crate::telemetry::{Registry, Telemetry, DEFAULT_RETRY_BUDGET};

pub use crate::coordination::holds::Leases;
pub use crate::telemetry::RunSummary;

/// Messages of records in flight from the source's gate to the router
/// (charged to the memory budget).
const SOURCE_CHANNEL_CAPACITY: usize = 4;
/// Messages of records from a source to its gate: not charged yet, so as
/// few as can be.
const GATE_CHANNEL_CAPACITY: usize = 1;
/// Flushed batches waiting for the writer: up to `max_concurrent_puts` are
/// encoded and written while the next fills; a full one waits here, and the
/// router waits with it until the writer takes it (`Router::hand_over`):
/// `max_concurrent_puts` + 1 buffers at most.
const BATCH_CHANNEL_CAPACITY: usize = 1;

/// Options of one run that are not configuration.
pub struct RunOptions {
    /// Resolves when the run should stop (SIGTERM, SIGINT): buffers are
    /// flushed and checkpointed, then the run returns.
    pub shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Replaces `buffer.interval_seconds` (tests only).
    pub interval_override: Option<Duration>,
    /// Read what the source has now, then flush, checkpoint and return
    /// (Kinesis: every shard up to its tip as of start).
    pub once: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("destination check failed: {0}")]
    DestinationCheck(#[source] spillway_destinations::Error),
    #[error("delivery failed: {0}")]
    Delivery(#[source] spillway_destinations::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint save failed: {0}")]
    CheckpointSave(#[from] StoreError),
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    #[error("encoding failed: {0}")]
    Encode(#[source] std::io::Error),
    /// Shutdown was requested while a delivery was being retried: it was
    /// not retried further. Its intent stays pending and is settled at the
    /// next start, whose run reads its records again if they are not in.
    #[error("stopped while retrying {what}: {error}; its records are read again at the next start")]
    Stopped { what: String, error: String },
    /// `[telemetry] listen` cannot be listened on (in use, not this host's).
    #[error(transparent)]
    Telemetry(#[from] ListenError),
    #[error(transparent)]
    Glue(#[from] GlueError),
    /// A table schema object under the destination is not one.
    #[error("table schema object {key} cannot be read: {reason}")]
    TableSchemaObject { key: String, reason: String },
    #[error(transparent)]
    Processor(#[from] crate::processor::BuildError),
    /// No credentials for a Kinesis stream: `role` says which (`source`,
    /// `destination`).
    #[error("kinesis {role}: {problem}")]
    KinesisCredentials {
        role: &'static str,
        #[source]
        problem: spillway_destinations::aws_credentials::CredentialsProblem,
    },
    #[error("kinesis destination: {0}")]
    KinesisDestination(#[source] crate::source::kinesis::api::KinesisError),
    /// `[coordination]`: the lease table cannot be opened or created.
    #[error(transparent)]
    Leases(#[from] crate::coordination::LeaseError),
    /// `--once` under coordination has no end to reach.
    #[error("--once cannot run {pipeline:?}: it has [coordination], under which an instance reads the shards its leases give it for as long as it runs and never stops at a tip; run it without --once")]
    OnceWithCoordination { pipeline: String },
}

/// Runs a delivery stream until its input ends or `shutdown` resolves.
pub async fn run(config: Config, options: RunOptions) -> Result<RunSummary, RunError> {
    coordinated::refuse_once(&config, options.once)?;
    config.register_secrets();
    // First, so that a port in use is said before anything else, and
    // liveness answers while the destination and source are checked.
    let registry = Arc::new(Registry::new());
    let _listener = match config.telemetry.listen {
        Some(address) => Some(listener::serve(address, registry.clone()).await?),
        None => None,
    };
    let budget = budgets_of([&config]).remove(0);
    run_in(config, options, registry, budget).await
}

/// The memory budgets of these pipelines, one each, in their order: the
/// process's budget (`limits.memory_mb`, or the default) divided between
/// them in proportion to what each would take by default. A share, not one
/// pool: a pipeline whose destination fails fills its own share and
/// pauses, and the others keep theirs and go on.
pub(crate) fn budgets_of<'a>(configs: impl IntoIterator<Item = &'a Config> + Clone) -> Vec<MemoryBudget> {
    let (memory_mb, from) = crate::limits::config::memory_mb(configs.clone());
    let weights: Vec<usize> = configs
        .into_iter()
        .map(|config| crate::limits::config::default_memory_mb([config]))
        .collect();
    MemoryBudgetSet {
        memory_mb,
        from,
        pipelines: weights.len(),
    }
    .log();
    crate::limits::shares(memory_mb * 1024 * 1024, &weights)
        .into_iter()
        .map(MemoryBudget::new)
        .collect()
}

/// [`run`], counting into `registry`, whose listener (if any) is served by
/// the caller: one of several pipelines in a process ([`many`]).
pub(crate) async fn run_in(
    config: Config,
    options: RunOptions,
    registry: Arc<Registry>,
    budget: MemoryBudget,
) -> Result<RunSummary, RunError> {
    config.register_secrets();
    let telemetry = Telemetry::new(registry, &config.name, retry_budget(&config.destination));
    let probe = budget.clone();
    telemetry.watch_memory(Box::new(move || probe.is_full()));
    let result = run_with(config, options, telemetry.clone(), budget).await;
    if let Err(error) = &result {
        // Readiness says which pipeline stopped, and why, for as long as
        // the others run.
        telemetry.emit(RunFailed { error });
    }
    result
}

async fn run_with(
    config: Config,
    options: RunOptions,
    telemetry: Telemetry,
    budget: MemoryBudget,
) -> Result<RunSummary, RunError> {
    let objects = config.destination.objects();
    let destination: Arc<dyn ObjectStore> = match &objects.store {
        StoreConfig::Local { path } => Arc::new(LocalStore::new(path)),
        StoreConfig::S3(options) => Arc::new(
            S3Store::new(options.clone())
                .await
                .map_err(RunError::DestinationCheck)?,
        ),
    };
    destination.check().await.map_err(RunError::DestinationCheck)?;
    // A Glue table that cannot be read stops the run here, in one line.
    let catalog = match &config.glue {
        Some(glue) => Some(Arc::new(GlueCatalog::connect(glue).await?)),
        None => None,
    };
    // SIGTERM/SIGINT: said at once, and every retry loop stops waiting.
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            options.shutdown.await;
            tracing::info!("shutdown requested: flushing every buffer");
            stop.cancel();
        }
    });
    let http = match &config.destination {
        DestinationConfig::Http(http) => Some(endpoint::EndpointDelivery::new(&config.name, http, &stop)?),
        DestinationConfig::Objects(_) | DestinationConfig::Kinesis(_) => None,
    };
    let kinesis = match &config.destination {
        DestinationConfig::Kinesis(target) => {
            spillway_destinations::aws_credentials::check(target.region.as_deref())
                .await
                .map_err(|problem| RunError::KinesisCredentials {
                    role: "destination",
                    problem,
                })?;
            let kinesis = kinesis::KinesisDelivery::new(target, &stop).await;
            kinesis.check().await.map_err(RunError::KinesisDestination)?;
            Some(kinesis)
        }
        _ => None,
    };
    // With `[coordination]`, the checkpoints are in the leases.
    let coordinated = coordinated::Coordinated::open(&config).await?;
    let _release_on_error = coordinated.as_ref().map(coordinated::Coordinated::release_on_drop);
    let (store, checkpoint_place): (Box<dyn CheckpointStore>, String) = match &coordinated {
        Some(coordinated) => (coordinated.checkpoint_store(), coordinated.describe().to_owned()),
        None => {
            let store = LocalFileStore::open(&config.checkpoint.dir, &config.name).map_err(CheckpointError::from)?;
            let path = store.path().display().to_string();
            (Box::new(store), path)
        }
    };
    let checkpointer = Arc::new(Checkpointer::open(&config.name, store, &*destination).await?);
    let planner = Arc::new(object::ObjectPlanner::new(&config.name, &config.format, objects));
    if catalog.is_none() && planner.keeps_table() {
        table::resume_published(&planner, &*destination, &checkpointer).await?;
    }

    let mut limits = config.buffer;
    if let Some(interval) = options.interval_override {
        tracing::warn!(
            ?interval,
            "buffer interval overridden by SPILLWAY_TEST_INTERVAL_MS: for tests only"
        );
        limits.max_age = interval;
    }
    if let SourceConfig::Kinesis(kinesis) = &config.source {
        // Without credentials every Kinesis call fails as if the network
        // did: say so in one line, before the source retries.
        spillway_destinations::aws_credentials::check(kinesis.region.as_deref())
            .await
            .map_err(|problem| RunError::KinesisCredentials {
                role: "source",
                problem,
            })?;
    }
    let chain = crate::processor::build_chain(
        &config.processors,
        &crate::processor::BuildContext {
            stream: &config.name,
            source: &config.source,
        },
    )
    .await?;
    let mut source = match &coordinated {
        Some(coordinated) => coordinated.source(&config.source, &stop),
        None => source::build(&config.source, &checkpointer, options.once),
    };
    source.check().await?;
    telemetry.emit(Started {
        source: &source.describe(),
        destination: &match (&http, &kinesis) {
            (Some(http), _) => format!("{} (backup: {})", http.describe(), destination.describe()),
            (_, Some(kinesis)) => format!("{} (backup: {})", kinesis.describe(), destination.describe()),
            _ => destination.describe(),
        },
        checkpoint: &checkpoint_place,
        buffer_bytes: limits.max_bytes,
        buffer_seconds: limits.max_age.as_secs_f64(),
    });

    let (source_tx, source_rx) = mpsc::channel(GATE_CHANNEL_CAPACITY);
    let (events_tx, mut events_rx) = mpsc::channel(SOURCE_CHANNEL_CAPACITY);
    let (batches_tx, batches_rx) = mpsc::channel(BATCH_CHANNEL_CAPACITY);
    tokio::spawn(crate::limits::gate::run(
        budget.clone(),
        telemetry.clone(),
        source_rx,
        events_tx,
    ));
    source
        .run(SourceContext {
            events: source_tx,
            checkpoints: checkpointer.clone(),
            telemetry: telemetry.clone(),
        })
        .await;
    let streamed_in_turn_from = delivery::streamed_in_turn_from(&*destination, objects.compression);
    let writer = writer::Writer {
        objects: delivery::Delivery {
            planner,
            store: destination,
            checkpoints: checkpointer.clone(),
            telemetry: telemetry.clone(),
            destination: match &objects.store {
                StoreConfig::Local { .. } => "local",
                StoreConfig::S3(_) => "s3",
            },
            retry: delivery::object_retry(objects.retry_duration).stopped_by(&stop),
            published_table_schema: Default::default(),
            catalog,
            budget: budget.clone(),
            leases: coordinated.as_ref().map(coordinated::Coordinated::leases),
            streamed_in_turn_from,
        },
        endpoint: http,
        kinesis,
        max_concurrent: objects.max_concurrent_puts,
    };
    let writer_task = tokio::spawn(writer.run(batches_rx));
    if !chain.is_empty() {
        // The stage sits between the source and the router, with a bounded
        // channel on each side.
        let (processed_tx, processed_rx) = mpsc::channel(SOURCE_CHANNEL_CAPACITY);
        let stage = crate::processor::stage::Stage {
            chain,
            stop: stop.clone(),
            budget: budget.clone(),
        };
        tokio::spawn(stage.run(events_rx, processed_tx));
        events_rx = processed_rx;
    }
    let mut router = router::Router::new(
        &config,
        limits,
        checkpointer.clone(),
        telemetry.clone(),
        batches_tx,
        budget,
    );
    if coordinated.is_some() {
        // Every object of one shard, so that the shard's next owner can
        // redo its intents alone (docs/leases.md).
        router = router.per_shard();
    }
    let routed = router.run(events_rx, stop).await;
    // The router has dropped its sender: the writer finishes what it has.
    let written = writer_task.await.expect("the writer does not panic");
    written?;
    let ended_by: FlushReason = routed?;
    checkpointer.save().await?;
    if let Some(coordinated) = &coordinated {
        // Everything read is delivered and in the leases: the others may
        // take them now, and read on from there.
        coordinated.hand_over().await;
    }
    let summary = telemetry.stats().summary(ended_by);
    telemetry.emit(RunFinished { summary: &summary });
    Ok(summary)
}

/// How long an operation may keep failing before the pipeline is unready:
/// the destination's retry duration, when it has one above 0.
fn retry_budget(destination: &DestinationConfig) -> Duration {
    let configured = match destination {
        DestinationConfig::Objects(objects) => objects.retry_duration,
        DestinationConfig::Http(http) => Some(http.retry_duration),
        DestinationConfig::Kinesis(kinesis) => Some(kinesis.retry_duration),
    };
    configured
        .filter(|budget| !budget.is_zero())
        .unwrap_or(DEFAULT_RETRY_BUDGET)
}
