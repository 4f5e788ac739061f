//! The life of one delivery, whatever receives it: the intent saved
//! (key and record runs), the attempt retried while a retry can help, the
//! records delivered and the checkpoint advanced; or, past the retry
//! duration, the records written as error records under the same intent.
//! With coordination, between the intent and the first attempt, the lease
//! of the records' shard must still be held ([`Delivery::begin_held`]).
//!
//! Objects are written here (data objects, error objects, an endpoint's
//! backup); a record endpoint (`endpoint.rs` for HTTP, `kinesis/` for a
//! Kinesis stream) sends its requests through the same intent, lease
//! check, retry and fall-back steps. Neither receiver knows the other:
//! the writer (`writer.rs`) picks one per batch.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spillway_destinations::retry::RetryPolicy;
use spillway_destinations::{Compression, ObjectKey, ObjectStore, PutOutcome};
use spillway_transforms::{ErrorOutputType, Rejection, SourceId};

use super::object::{Body, ObjectPlanner, PlannedObject};
use super::RunError;
use crate::buffer::FlushReason;
use crate::catalog::glue::GlueCatalog;
use crate::checkpoint::{Checkpointer, Claims, ObjectId, StoreError};
use crate::telemetry::events::{CheckpointSaveRetrying, ObjectDelivered, PutGaveUp, PutRetrying};
use crate::telemetry::Telemetry;

/// What one batch is, for the "flushed" log line.
#[derive(Clone, Copy, Debug)]
pub(super) struct FlushInfo {
    pub reason: FlushReason,
    pub buffer_bytes: usize,
}

/// Delivers objects (the destination itself, or an endpoint's backup) and
/// owns the steps every delivery shares.
pub(super) struct Delivery {
    pub planner: Arc<ObjectPlanner>,
    pub store: Arc<dyn ObjectStore>,
    pub checkpoints: Arc<Checkpointer>,
    pub telemetry: Telemetry,
    /// The store's type, as metrics label it: `local` or `s3`.
    pub destination: &'static str,
    /// For data objects: gives up after the configured retry duration.
    pub retry: RetryPolicy,
    /// The table schema version whose schema object this run has put
    /// (see `super::table`).
    pub published_table_schema: tokio::sync::Mutex<Option<u64>>,
    /// With `[format.glue]`: the table data is encoded under (see
    /// `super::catalog`).
    pub catalog: Option<Arc<GlueCatalog>>,
    /// Charged for an object's bytes while they are held whole (Parquet).
    pub budget: crate::limits::MemoryBudget,
    /// With coordination: whether this instance still holds the lease of
    /// the shard an object's records are of, asked between the intent's
    /// save and the put.
    pub leases: Option<Arc<dyn crate::coordination::holds::Leases>>,
    /// Streamed objects of at least this many bytes of records are encoded
    /// one at a time ([`Self::encodes_in_turn`]); `None`: they overlap.
    pub streamed_in_turn_from: Option<usize>,
}

/// From how many bytes of records a streamed object put to `store`,
/// compressed with `compression`, is encoded in turn: when the store is
/// local (its put goes as fast as the encoding, with no round trip to wait
/// on) and the codec then compresses on every core. Two such encodes at
/// once only share the cores, each holding its batch's records: three
/// buffers of records or more where one encoding and one filling do as
/// well (issue #17). Objects sent to a service, or compressed on one core,
/// keep overlapping up to `max_concurrent_puts`.
pub(super) fn streamed_in_turn_from(store: &dyn ObjectStore, compression: Compression) -> Option<usize> {
    compression.every_core_from().filter(|_| store.is_local())
}

/// Runs CPU-bound encoding off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("encoding does not panic")
        .map_err(RunError::Encode)
}

impl Delivery {
    /// Whether a batch of `bytes` of records waits for the batch encoding
    /// before it to finish, before it is taken: a format encoded whole
    /// (Parquet, whose encoder works on every core), or a large streamed
    /// object a local store takes as fast as it is encoded
    /// ([`streamed_in_turn_from`]). `usize::MAX` asks whether any batch
    /// may.
    pub fn encodes_in_turn(&self, bytes: usize) -> bool {
        self.planner.encodes_whole() || self.streamed_in_turn_from.is_some_and(|from| bytes >= from)
    }

    /// Saves the intent, puts the object, and checkpoints its records.
    pub async fn deliver(&self, mut object: PlannedObject, info: FlushInfo) -> Result<(), RunError> {
        let _encoded = match &object.body {
            Body::Whole(bytes) => self.budget.charge(bytes.len()),
            Body::Streamed(_) => crate::limits::Charge::default(),
        };
        if !self.keeps_records(&object) {
            object.release_records();
        }
        let claims = std::mem::take(&mut object.claims);
        let Some(id) = self.begin_held(&object.key, claims).await? else {
            return Ok(());
        };
        self.put_and_fall_back(id, object, info).await?;
        self.complete(id).await
    }

    /// [`Self::begin`], then whether the delivery may go ahead: `None`
    /// when the records it claims were read under a lease this instance
    /// no longer holds ([`Self::still_held`]). Every delivery (an object,
    /// an HTTP request, a Kinesis window) asks it between its intent and
    /// its first attempt.
    ///
    /// Then nothing is sent, retried or counted, and the intent is
    /// forgotten: the shard's next owner reads these records again from
    /// its lease's checkpoint, or, if the intent reached the lease before
    /// it was lost, redoes it under the same key. Either way they are
    /// delivered by that owner; a put here could race it.
    pub async fn begin_held(&self, key: &ObjectKey, claims: Claims) -> Result<Option<ObjectId>, RunError> {
        let shards: Vec<SourceId> = claims.sources().into_iter().cloned().collect();
        let id = self.begin(key, claims).await?;
        if self.still_held(id, &shards) {
            return Ok(Some(id));
        }
        self.checkpoints.forget_object(id);
        tracing::debug!(key = %key, shards = ?shards, "not delivered: the lease of its shard is lost, its next owner delivers its records");
        Ok(None)
    }

    /// Whether the object of the intent `id` (saved already), holding
    /// records of `shards`, may be put: its records were read in the
    /// current tenure of their shard's lease (the intent is not abandoned)
    /// and the lease is still held. Asked after the save: an intent saved
    /// is in the lease, so that a loss from here on leaves it to the next
    /// owner to redo, and the put made here lands or finds the object
    /// (create-only, same key).
    pub fn still_held(&self, id: ObjectId, shards: &[SourceId]) -> bool {
        if self.checkpoints.is_abandoned(id) {
            return false;
        }
        match &self.leases {
            Some(leases) => shards.iter().all(|shard| leases.holds(shard)),
            None => true,
        }
    }

    /// Notes and saves the intent to deliver the records of `claims` under
    /// `key` (an object's, or a request's): at the next start, the intent
    /// is settled by asking the destination whether `key` exists.
    async fn begin(&self, key: &ObjectKey, claims: Claims) -> Result<ObjectId, RunError> {
        let id = self.checkpoints.begin_object(key, claims);
        self.save().await?;
        Ok(id)
    }

    /// Whether `object` must keep its records while it is delivered: a
    /// streamed body is made from them (again at each attempt), and a data
    /// object whose delivery may give up turns them into error records.
    /// An object encoded whole otherwise holds them in its body, and lets
    /// go of them before its put ([`Self::deliver`]).
    pub fn keeps_records(&self, object: &PlannedObject) -> bool {
        matches!(object.body, Body::Streamed(_)) || self.may_fall_back(object)
    }

    /// Whether `object`'s records may become error records if its put
    /// fails ([`Self::put_and_fall_back`]): a data object, with a retry
    /// duration to give up after. Otherwise a failing put is retried until
    /// it lands, or stops the run.
    fn may_fall_back(&self, object: &PlannedObject) -> bool {
        object.output == "data" && self.retry.give_up_after.is_some()
    }

    /// Puts `object` under the intent `id` (saved already). A data object
    /// that fails past the retry duration is written as `delivery-failed`
    /// error records instead; error objects are retried until they are
    /// written, or fail the run if no retry can help.
    pub async fn put_and_fall_back(
        &self,
        id: ObjectId,
        object: PlannedObject,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        let is_data = object.output == "data";
        let policy = if is_data { self.retry.clone() } else { self.forever() };
        let attempts = AtomicU32::new(1);
        let outcome = self.put_retrying(policy, &object, &attempts).await;
        let err = match outcome {
            Ok(outcome) => {
                self.log_flushed(&object, outcome, info);
                return Ok(());
            }
            Err(err) if self.retry.is_stopped() => return Err(stopped(&object, err)),
            Err(err) if !self.may_fall_back(&object) => return Err(RunError::Delivery(err)),
            Err(err) => err,
        };
        let attempts = attempts.load(Ordering::Relaxed);
        self.telemetry.emit(PutGaveUp {
            destination: self.destination,
            key: &object.key,
            records: object.record_count,
            attempts,
            error: &err,
        });
        let rejection = Rejection {
            output_type: ErrorOutputType::DeliveryFailed,
            code: delivery_error_code(&err),
            message: err.to_string(),
        };
        let planner = self.planner.clone();
        let PlannedObject { records, .. } = object;
        let fallback = blocking(move || planner.all_failed(&records, &rejection, attempts)).await?;
        self.checkpoints.retarget_object(id, &fallback.key);
        self.save().await?;
        let outcome = self.put_error_object(&fallback).await?;
        self.log_flushed(&fallback, outcome, info);
        Ok(())
    }

    /// The default backoff without end (until stopped), for what must be
    /// written: error objects, checkpoints.
    fn forever(&self) -> RetryPolicy {
        RetryPolicy {
            give_up_after: None,
            stop: self.retry.stop.clone(),
            ..RetryPolicy::default()
        }
    }

    /// Puts an error object, retrying until it is written.
    pub async fn put_error_object(&self, object: &PlannedObject) -> Result<PutOutcome, RunError> {
        self.put_retrying(self.forever(), object, &AtomicU32::new(1))
            .await
            .map_err(|err| match self.retry.is_stopped() {
                true => stopped(object, err),
                false => RunError::Delivery(err),
            })
    }

    /// Puts `object`, retrying under `policy` what a retry can help;
    /// `attempts` ends as the number of attempts made.
    async fn put_retrying(
        &self,
        policy: RetryPolicy,
        object: &PlannedObject,
        attempts: &AtomicU32,
    ) -> Result<PutOutcome, spillway_destinations::Error> {
        let operation = self.telemetry.operation();
        policy
            .run(
                || self.put_once(object),
                |err| err.is_retryable(),
                |err, attempt, delay| {
                    attempts.store(attempt + 1, Ordering::Relaxed);
                    self.telemetry.emit(PutRetrying {
                        operation: &operation,
                        destination: self.destination,
                        key: &object.key,
                        attempt,
                        delay,
                        error: err,
                    });
                },
            )
            .await
    }

    /// One attempt to put `object`.
    async fn put_once(&self, object: &PlannedObject) -> Result<PutOutcome, spillway_destinations::Error> {
        match &object.body {
            Body::Whole(bytes) => self.store.put(&object.key, bytes.clone(), &object.options).await,
            Body::Streamed(payload) => self.store.put_stream(&object.key, &**payload, &object.options).await,
        }
    }

    pub fn log_flushed(&self, object: &PlannedObject, outcome: PutOutcome, info: FlushInfo) {
        self.telemetry.emit(ObjectDelivered {
            reason: info.reason,
            destination: self.destination,
            output: object.output,
            key: &object.key,
            records: object.record_count,
            buffer_bytes: info.buffer_bytes,
            object_bytes: object.body.len(),
            already_existed: outcome == PutOutcome::AlreadyExisted,
            new_errors: object.new_errors,
        });
    }

    /// Marks the intent `id` delivered and saves the advanced checkpoints.
    /// Called after the "flushed" line: a run killed in between finds the
    /// object pending at its next start and settles it.
    pub async fn complete(&self, id: ObjectId) -> Result<(), RunError> {
        self.checkpoints.complete_object(id);
        self.save().await
    }

    pub async fn save(&self) -> Result<(), RunError> {
        let operation = self.telemetry.operation();
        self.forever()
            .run(
                || self.checkpoints.save(),
                StoreError::is_retryable,
                |err, attempt, delay| {
                    self.telemetry.emit(CheckpointSaveRetrying {
                        operation: &operation,
                        attempt,
                        delay,
                        error: err,
                    })
                },
            )
            .await
            .map_err(RunError::CheckpointSave)
    }
}

/// A put given up because shutdown was requested.
fn stopped(object: &PlannedObject, err: spillway_destinations::Error) -> RunError {
    RunError::Stopped {
        what: format!("the put of {}", object.key),
        error: err.to_string(),
    }
}

/// The `errorCode` of records whose object could not be written.
fn delivery_error_code(err: &spillway_destinations::Error) -> &'static str {
    use spillway_destinations::Error;
    match err {
        Error::PermissionDenied { .. } => "Delivery.PermissionDenied",
        Error::Misconfigured { .. } => "Delivery.Misconfigured",
        Error::TooLarge { .. } => "Delivery.TooLarge",
        Error::AlreadyExists { .. } => "Delivery.AlreadyExists",
        _ => "Delivery.Failed",
    }
}

/// The retry policy of data objects: the default backoff, giving up after
/// `retry_duration` when one is set.
pub(super) fn object_retry(retry_duration: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        give_up_after: retry_duration,
        ..RetryPolicy::default()
    }
}
