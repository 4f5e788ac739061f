//! The redo of the last owner's intents, with coordination
//! (`docs/leases.md`, "the new owner redoes the old owner's intents").
//!
//! A shard's lease may hold intents of its last owner: objects it was
//! about to put or was putting, which it may still put (paused, cut off),
//! create-only under the intent's key. The new owner reads the shard from
//! the checkpoint as usual; the tracker knows each inherited intent's runs
//! (`checkpoint/tracker/redo.rs`), and the router sends every record that
//! falls in them, whatever its output, to a buffer of that intent's own
//! ([`RedoBuffers`]), flushed once all the intent's records are in. The
//! writer ([`Writer::deliver_redo`]) encodes them as any batch and puts the
//! object under the intent's key, create-only: either put lands first, and
//! the other finds it (`AlreadyExisted`); both hold the same records.
//!
//! A record may not come out the same way twice: a processor may fail it
//! now and not then, or the reverse (the check and the format are pure, a
//! Lambda is not). The intent's object is the planned object whose key is
//! the intent's (its kind: data, a partition, an error output, or the
//! `delivery-failed` records of a data object that could not be put); the
//! records of the redo that came out of another kind are archived only
//! once that put's outcome is known: if it landed here, the last owner's
//! cannot any more, and they go to their own objects the usual way; if
//! the last owner's object was there, it holds them already (as they came
//! out then), and they count as delivered with it. No record's outputs
//! are archived twice, none is lost. One window is left: the redo's
//! intent names the records of its own kind only (naming the others too
//! would lose them, should the redo's put land and the process die before
//! they are written), so a process dying between finding the last
//! owner's object and the save that counts the others delivered leaves
//! them to be read again as new records: archived twice (once as they
//! came out then, once now), never lost. When no planned object bears the
//! intent's key (the intent's first record changed kind), the largest one
//! is put under it, said as a warning.
//!
//! Error records hold the time they were made: a redone error object's
//! bytes differ from the last owner's, its records do not, and only one of
//! the two puts lands.
//!
//! Not covered: a record endpoint's intents (HTTP, Kinesis destinations):
//! they name requests, which cannot be made create-only; their redo
//! writes the records as an object under the request's backup key.

use std::collections::BTreeMap;
use std::sync::Arc;

use spillway_destinations::{ObjectKey, PutOutcome};
use spillway_transforms::{ErrorOutputType, Record, Rejection, SourceId};

use super::delivery::{blocking, FlushInfo};
use super::object::PlannedObject;
use super::writer::Writer;
use super::RunError;
use crate::buffer::{Batch, BufferKey, Buffered, FlushReason, Redo};
use crate::checkpoint::Ticket;
use crate::limits::Charge;

/// The error code of a redone intent whose last owner wrote its records
/// as `delivery-failed` error records: the redo writes them so too.
pub const REDONE_DELIVERY_FAILED: &str = "Delivery.Failed";

/// The router's buffers of inherited intents, one per intent key. Not
/// flushed by size, age or memory: an intent's object is all its records
/// or none (a part put under its key would refuse the last owner's whole
/// object), and an intent is as large as one buffer of the last owner's.
///
/// Not charged to the memory budget either: a full budget pauses the
/// source (`crate::limits::gate`), and the records that complete an
/// intent would then never come, while nothing could free what its
/// buffer holds. Their memory is bounded by the intents the leases hold:
/// at most a buffer each, as many as the last owners had puts in flight.
#[derive(Debug, Default)]
pub(super) struct RedoBuffers {
    filling: BTreeMap<Arc<str>, Filling>,
}

#[derive(Debug)]
struct Filling {
    source: SourceId,
    items: Vec<Buffered>,
    kinds: Vec<BufferKey>,
    bytes: usize,
}

impl RedoBuffers {
    /// Adds a record routed to the intent `key`, with the buffer it would
    /// otherwise have gone to.
    pub fn push(&mut self, key: Arc<str>, kind: BufferKey, item: Buffered) {
        let filling = self.filling.entry(key).or_insert_with(|| Filling {
            source: item.record.position.source.clone(),
            items: Vec::new(),
            kinds: Vec::new(),
            bytes: 0,
        });
        filling.bytes += item.record.data.len();
        filling.items.push(item);
        filling.kinds.push(kind);
    }

    /// The batch of the intent `key`, all of whose records are in; `None`
    /// when none of them was routed to it.
    pub fn take(&mut self, key: &Arc<str>, reason: FlushReason) -> Option<Batch> {
        let filling = self.filling.remove(key)?;
        Some(Batch {
            key: BufferKey::Redo(Arc::new(Redo {
                key: key.clone(),
                kinds: filling.kinds,
            })),
            items: filling.items,
            bytes: filling.bytes,
            reason,
            charge: Charge::default(),
            encoded: None,
        })
    }

    /// Drops the buffers of `source` unwritten (its lease was lost: the
    /// intents stay in the lease for its next owner). Returns the records.
    pub fn drop_shard(&mut self, source: &SourceId) -> usize {
        let mut dropped = 0;
        self.filling.retain(|_, f| {
            let keep = &f.source != source;
            if !keep {
                dropped += f.items.len();
            }
            keep
        });
        dropped
    }

    /// Drops every buffer unwritten, at the end of the run: an intent not
    /// complete yet stays pending in its lease, redone by the next owner.
    pub fn drop_all(&mut self) -> usize {
        let dropped = self.filling.values().map(|f| f.items.len()).sum();
        self.filling.clear();
        dropped
    }
}

impl Writer {
    /// Delivers a redone intent's records: the intent's object under its
    /// key, create-only; the records that came out of another kind after
    /// it, as the module docs say.
    pub(super) async fn deliver_redo(
        &self,
        redo: &Redo,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        let intent_key =
            ObjectKey::new(redo.key.to_string()).map_err(|e| RunError::Encode(std::io::Error::other(e)))?;
        // The records by kind, each kind in source order.
        let mut groups: Vec<(BufferKey, Vec<Record>, Vec<Ticket>)> = Vec::new();
        for ((record, ticket), kind) in records.into_iter().zip(tickets).zip(&redo.kinds) {
            match groups.iter_mut().find(|(k, _, _)| k == kind) {
                Some((_, records, tickets)) => {
                    records.push(record);
                    tickets.push(ticket);
                }
                None => groups.push((kind.clone(), vec![record], vec![ticket])),
            }
        }
        let mut planned = Vec::new();
        for (kind, records, tickets) in groups {
            planned.extend(self.plan(kind, records, tickets).await?);
        }
        let at = match planned.iter().position(|o| o.key == intent_key) {
            Some(at) => at,
            None => self.as_intent(&mut planned, &intent_key).await?,
        };
        let mut object = planned.remove(at);
        object.key = intent_key.clone();
        let claims = std::mem::take(&mut object.claims);
        let Some(id) = self.objects.begin_held(&intent_key, claims).await? else {
            // The shard's next owner redoes it again, under the same key.
            return Ok(());
        };
        // Retried until it lands or is found: a fall-back to error records
        // under another key could archive them twice, should the last
        // owner's put land under this one.
        let outcome = self.objects.put_error_object(&object).await?;
        self.objects.log_flushed(&object, outcome, info);
        tracing::info!(key = %intent_key, records = object.record_count, already_existed = outcome == PutOutcome::AlreadyExisted, "redid an intent the shard's last owner left pending");
        if outcome == PutOutcome::AlreadyExisted {
            // The last owner's object holds them all, the others as they
            // came out then: counted delivered with it, in one save.
            let checkpoints = &self.objects.checkpoints;
            checkpoints.complete_object(id);
            for other in planned {
                let with_it = checkpoints.begin_object(&intent_key, other.claims);
                checkpoints.complete_object(with_it);
            }
            return self.objects.save().await;
        }
        self.objects.complete(id).await?;
        for other in planned {
            // The last owner's object cannot land any more: these records
            // are in no object yet.
            self.objects.deliver(other, info).await?;
        }
        Ok(())
    }

    /// Finds which planned object the intent was, when none bears its key:
    /// a data object the last owner could not put and wrote as
    /// `delivery-failed` error records (`Delivery::put_and_fall_back`), or
    /// else the largest (said as a warning). Returns its index.
    async fn as_intent(&self, planned: &mut [PlannedObject], intent_key: &ObjectKey) -> Result<usize, RunError> {
        for (at, object) in planned.iter_mut().enumerate() {
            if object.output != "data" {
                continue;
            }
            let planner = self.objects.planner.clone();
            let records = object.records.clone();
            let rejection = Rejection {
                output_type: ErrorOutputType::DeliveryFailed,
                code: REDONE_DELIVERY_FAILED,
                message: "the shard's last owner could not deliver these records; its next owner redid its intent"
                    .into(),
            };
            let mut fallback = blocking(move || planner.all_failed(&records, &rejection, 1)).await?;
            if &fallback.key == intent_key {
                fallback.claims = std::mem::take(&mut object.claims);
                *object = fallback;
                return Ok(at);
            }
        }
        let largest = (0..planned.len())
            .max_by_key(|at| planned[*at].record_count)
            .expect("a redo holds records");
        tracing::warn!(key = %intent_key, planned = %planned[largest].key, "a redone intent's records came out otherwise than the last owner's: the largest part is put under the intent's key");
        Ok(largest)
    }
}
