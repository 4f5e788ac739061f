//! The writer: takes each flushed batch and hands it to its receiver. Data
//! goes to the destination's receiver (objects, or a record endpoint: HTTP
//! or Kinesis);
//! error records always become objects. Every delivery then follows the
//! same steps ([`super::delivery`]): intent, attempts, checkpoint, and
//! error records for what could not be delivered.
//!
//! Batches that become objects are encoded and written up to
//! `max_concurrent_puts` at a time, so that a store a round trip away does
//! not cap the stream at one object per round trip. They complete in any
//! order, which the checkpoints allow for: each object's intent is saved
//! before its put, and a source's checkpoint moves only over records whose
//! objects are all written (`crate::checkpoint::tracker`). A record
//! endpoint's batches go one at a time, in order.
//!
//! A format encoded whole (Parquet) encodes one batch at a time, and the
//! writer takes the next batch only when the encoder is free: the encoder
//! already works on every core (and under a table schema batches are
//! planned in turn anyway), so batches taken early only waited, holding
//! their records, while the router filled yet another (issue #17: one
//! buffer filling, one encoding). Their puts still overlap, up to
//! `max_concurrent_puts`. A streamed format encodes while it sends, so its
//! puts are its encodes: they overlap, except a large object compressed on
//! every core (gzip, zstd) into a local store, which waits on nothing but
//! its encoding; those take turns too, each until its object has been
//! produced (`Delivery::encodes_in_turn`). A batch whose buffer was
//! compressed as it filled (`super::early`) comes encoded: its object is
//! finished (the codec's last jobs) and delivered whole.

use std::sync::Arc;

use spillway_transforms::Record;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::delivery::{blocking, Delivery, FlushInfo};
use super::endpoint::EndpointDelivery;
use super::kinesis::KinesisDelivery;
use super::object::{Body, PlannedObject};
use super::RunError;
use crate::buffer::{Batch, BufferKey, Filling};
use crate::checkpoint::Ticket;
use crate::limits::Charge;
use crate::telemetry::events::{BatchDone, BatchTaken};

/// Delivers batches to objects, or to a record endpoint backed by objects.
pub(super) struct Writer {
    pub objects: Delivery,
    pub endpoint: Option<EndpointDelivery>,
    pub kinesis: Option<KinesisDelivery>,
    /// How many batches become objects at a time (`max_concurrent_puts`).
    pub max_concurrent: usize,
}

/// A batch taken from the router, as the writer delivers it.
struct Taken {
    key: BufferKey,
    records: Vec<Record>,
    tickets: Vec<Ticket>,
    info: FlushInfo,
    oldest_arrival: Option<chrono::DateTime<chrono::Utc>>,
    /// The memory its records hold (`crate::limits`): released when the
    /// delivery ends, whichever way, or as soon as its one object, encoded
    /// whole, has let go of them.
    charge: Charge,
    /// With a format encoded whole: the turn to encode, given back once the
    /// batch's objects are encoded (see the module).
    encoding: Option<OwnedSemaphorePermit>,
    /// Its object, if encoded as its buffer filled (`super::early`).
    encoded: Option<Box<dyn Filling>>,
}

impl Writer {
    /// Delivers batches until the router hangs up. Stops at the first
    /// error no retry can fix, abandoning the deliveries in flight: their
    /// intents stay pending, records of undelivered batches are not
    /// checkpointed, and the next run settles the one and reads the
    /// others again.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>) -> Result<(), RunError> {
        let max_concurrent = self.max_concurrent.max(1);
        let encoder = self
            .objects
            .encodes_in_turn(usize::MAX)
            .then(|| Arc::new(Semaphore::new(1)));
        let writer = Arc::new(self);
        let mut in_flight: JoinSet<Result<(), RunError>> = JoinSet::new();
        loop {
            // A batch is taken only when a slot is free: the router waits
            // meanwhile, and the source with it.
            if in_flight.len() >= max_concurrent {
                let done = in_flight.join_next().await.expect("deliveries are in flight");
                done.expect("a delivery does not panic")?;
                continue;
            }
            // And, where batches are encoded in turn, when the encoder is
            // free; a batch found small enough to overlap gives its turn
            // back at once.
            let encoding = match &encoder {
                None => None,
                Some(encoder) => tokio::select! {
                    biased;
                    Some(done) = in_flight.join_next() => {
                        done.expect("a delivery does not panic")?;
                        continue;
                    }
                    permit = encoder.clone().acquire_owned() => {
                        Some(permit.expect("the encoder's semaphore is never closed"))
                    }
                },
            };
            let batch = tokio::select! {
                biased;
                Some(done) = in_flight.join_next() => {
                    done.expect("a delivery does not panic")?;
                    continue;
                }
                batch = batches.recv() => batch,
            };
            let Some(batch) = batch else { break };
            let encoding = encoding.filter(|_| writer.objects.encodes_in_turn(batch.bytes));
            let taken = writer.take(batch, encoding);
            if writer.is_endpoint_data(&taken.key) {
                // Records sent to an endpoint keep their order.
                writer.deliver(taken).await?;
            } else {
                in_flight.spawn(writer.clone().deliver_owned(taken));
            }
        }
        while let Some(done) = in_flight.join_next().await {
            done.expect("a delivery does not panic")?;
        }
        Ok(())
    }

    fn take(&self, batch: Batch, encoding: Option<OwnedSemaphorePermit>) -> Taken {
        let Batch {
            key,
            items,
            bytes,
            reason,
            charge,
            encoded,
        } = batch;
        let oldest_arrival = items.iter().map(|b| b.record.arrival).min();
        self.objects.telemetry.emit(BatchTaken { reason, oldest_arrival });
        let (records, tickets) = crate::buffer::unzip(items);
        Taken {
            key,
            records,
            tickets,
            info: FlushInfo {
                reason,
                buffer_bytes: bytes,
            },
            oldest_arrival,
            charge,
            encoding,
            encoded,
        }
    }

    fn is_endpoint_data(&self, key: &BufferKey) -> bool {
        (self.endpoint.is_some() || self.kinesis.is_some()) && matches!(key, BufferKey::Data)
    }

    async fn deliver_owned(self: Arc<Self>, taken: Taken) -> Result<(), RunError> {
        self.deliver(taken).await
    }

    /// The objects of a batch of `key` (not a redo): encoded, compressed
    /// and named as the configuration says.
    pub(super) async fn plan(
        &self,
        key: BufferKey,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<PlannedObject>, RunError> {
        debug_assert!(!matches!(key, BufferKey::Redo(_)), "a redo is planned by its kinds");
        if let BufferKey::Error(output_type) = key {
            let planner = self.objects.planner.clone();
            return Ok(vec![
                blocking(move || planner.errors(output_type, records, tickets)).await?,
            ]);
        }
        // An endpoint takes no partitions: `validate` refuses dynamic
        // partitioning with one.
        let planner = match key {
            BufferKey::Partition(keys) => Arc::new(self.objects.planner.for_partition(keys)),
            _ => self.objects.planner.clone(),
        };
        Ok(match (&self.objects.catalog, planner.keeps_table()) {
            (Some(catalog), _) => self.objects.plan_in_catalog(catalog, planner, records, tickets).await?,
            (None, true) => self.objects.plan_in_table(planner, records, tickets).await?,
            (None, false) => blocking(move || planner.data(records, tickets)).await?,
        })
    }

    /// Delivers one batch to its receiver.
    async fn deliver(&self, taken: Taken) -> Result<(), RunError> {
        let Taken {
            key,
            records,
            tickets,
            info,
            oldest_arrival,
            charge,
            encoding,
            encoded,
        } = taken;
        match (&self.endpoint, &self.kinesis, key) {
            (Some(endpoint), _, BufferKey::Data) => endpoint.deliver(&self.objects, records, tickets, info).await?,
            (_, Some(kinesis), BufferKey::Data) => kinesis.deliver(&self.objects, records, tickets, info).await?,
            (_, _, BufferKey::Redo(redo)) => self.deliver_redo(&redo, records, tickets, info).await?,
            (_, _, key) => {
                let objects = match encoded {
                    Some(filled) => {
                        let planner = self.objects.planner.clone();
                        vec![blocking(move || planner.filled(records, tickets, filled)).await?]
                    }
                    None => self.plan(key, records, tickets).await?,
                };
                // Encoded whole, the objects leave the encoder free for the
                // next batch while they are put; a streamed object is
                // encoded by its put, and holds the turn until it has been
                // produced.
                if let Some(turn) = encoding {
                    match objects.iter().find_map(|object| match &object.body {
                        Body::Streamed(payload) => Some(payload),
                        Body::Whole(_) => None,
                    }) {
                        Some(payload) => payload.hold_turn(turn),
                        None => drop(turn),
                    }
                }
                // One object that lets go of the batch's records when its
                // delivery starts (below, before any wait) holds its bytes
                // only, charged while it is delivered: the records' charge
                // goes with them.
                if let [object] = &objects[..] {
                    if !self.objects.keeps_records(object) {
                        drop(charge);
                    }
                }
                for object in objects {
                    self.objects.deliver(object, info).await?;
                }
            }
        }
        self.objects.telemetry.emit(BatchDone { oldest_arrival });
        Ok(())
    }
}
