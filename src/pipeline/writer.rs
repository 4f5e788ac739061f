//! The writer: takes each flushed batch and hands it to its receiver. Data
//! goes to the destination's receiver (objects, or a record endpoint: HTTP
//! or Kinesis);
//! error records always become objects. Every delivery then follows the
//! same steps ([`super::delivery`]): intent, attempts, checkpoint, and
//! error records for what could not be delivered.

use std::sync::Arc;

use spillway_transforms::Record;
use tokio::sync::mpsc;

use super::delivery::{blocking, Delivery, FlushInfo};
use super::endpoint::EndpointDelivery;
use super::kinesis::KinesisDelivery;
use super::object::PlannedObject;
use super::RunError;
use crate::buffer::{Batch, BufferKey};
use crate::checkpoint::Ticket;
use crate::telemetry::events::{BatchDone, BatchTaken};

/// The most batches delivered as one round.
const MAX_ROUND: usize = 64;

/// Delivers batches to objects, or to a record endpoint backed by objects.
pub(super) struct Writer {
    pub objects: Delivery,
    pub endpoint: Option<EndpointDelivery>,
    pub kinesis: Option<KinesisDelivery>,
}

impl Writer {
    /// Delivers batches until the router hangs up. Stops at the first
    /// error no retry can fix; records of undelivered batches are not
    /// checkpointed, so the next run reads them again.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>) -> Result<(), RunError> {
        while let Some(first) = batches.recv().await {
            // Batches flushed together (the open partitions at their
            // interval, at the partition limit, at the end of input) are
            // one round: their objects' intents are saved together, and
            // their delivery too. With dynamic partitioning an object's
            // records interleave with other partitions', so each of them
            // is a run of its own in the checkpoint; a save per object
            // wrote all the others' runs again each time.
            let mut round = vec![first];
            while round.len() < MAX_ROUND {
                match batches.try_recv() {
                    Ok(batch) => round.push(batch),
                    Err(_) => break,
                }
            }
            let mut objects = Vec::new();
            let taken = round.len();
            for batch in round {
                self.take(batch, &mut objects).await?;
            }
            self.objects.deliver_round(objects).await?;
            for _ in 0..taken {
                self.objects.telemetry.emit(BatchDone);
            }
        }
        Ok(())
    }

    /// Delivers `batch` now if it goes to an endpoint, or plans its
    /// objects into `objects`.
    async fn take(&self, batch: Batch, objects: &mut Vec<(PlannedObject, FlushInfo)>) -> Result<(), RunError> {
        let Batch {
            key,
            items,
            bytes,
            reason,
        } = batch;
        self.objects.telemetry.emit(BatchTaken {
            reason,
            oldest_arrival: items.iter().map(|b| b.record.arrival).min(),
        });
        let info = FlushInfo {
            reason,
            buffer_bytes: bytes,
        };
        let (records, tickets): (Vec<Record>, Vec<Ticket>) = items.into_iter().map(|b| (b.record, b.ticket)).unzip();
        match (&self.endpoint, &self.kinesis, key) {
            (Some(endpoint), _, BufferKey::Data) => endpoint.deliver(&self.objects, records, tickets, info).await?,
            (_, Some(kinesis), BufferKey::Data) => kinesis.deliver(&self.objects, records, tickets, info).await?,
            (_, _, key @ (BufferKey::Data | BufferKey::Partition(_))) => {
                // An endpoint takes no partitions: `validate` refuses
                // dynamic partitioning with one.
                let planner = match key {
                    BufferKey::Partition(keys) => Arc::new(self.objects.planner.for_partition(keys)),
                    _ => self.objects.planner.clone(),
                };
                let in_table = match (&self.objects.catalog, planner.keeps_table()) {
                    (Some(catalog), _) => self.objects.plan_in_catalog(catalog, planner, records, tickets).await?,
                    (None, true) => self.objects.plan_in_table(planner, records, tickets).await?,
                    (None, false) => {
                        let planned = blocking(move || planner.data(records, tickets)).await?;
                        objects.extend(planned.into_iter().map(|object| (object, info)));
                        return Ok(());
                    }
                };
                // Objects under a table schema go out before the next
                // batch is planned, which may publish a newer version.
                for object in in_table {
                    self.objects.deliver(object, info).await?;
                }
            }
            (_, _, BufferKey::Error(output_type)) => {
                let planner = self.objects.planner.clone();
                let object = blocking(move || planner.errors(output_type, records, tickets)).await?;
                objects.push((object, info));
            }
        }
        Ok(())
    }
}
