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
use super::RunError;
use crate::buffer::{Batch, BufferKey};
use crate::checkpoint::Ticket;
use crate::telemetry::events::{BatchDone, BatchTaken};

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
        while let Some(batch) = batches.recv().await {
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
            let (records, tickets): (Vec<Record>, Vec<Ticket>) =
                items.into_iter().map(|b| (b.record, b.ticket)).unzip();
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
                    let objects = match (&self.objects.catalog, planner.keeps_table()) {
                        (Some(catalog), _) => self.objects.plan_in_catalog(catalog, planner, records, tickets).await?,
                        (None, true) => self.objects.plan_in_table(planner, records, tickets).await?,
                        (None, false) => blocking(move || planner.data(records, tickets)).await?,
                    };
                    for object in objects {
                        self.objects.deliver(object, info).await?;
                    }
                }
                (_, _, BufferKey::Error(output_type)) => {
                    let planner = self.objects.planner.clone();
                    let object = blocking(move || planner.errors(output_type, records, tickets)).await?;
                    self.objects.deliver(object, info).await?;
                }
            }
            self.objects.telemetry.emit(BatchDone);
        }
        Ok(())
    }
}
