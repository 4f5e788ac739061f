//! Buffers: records wait here until their buffer is flushed into an object.
//!
//! One buffer per distinct output (the data prefix, or one per distinct set
//! of partition keys with dynamic partitioning, and one per error output
//! type). At most `max_partitions` partition buffers are open at once: a
//! record of a new partition beyond them flushes the oldest open one early
//! ([`FlushReason::PartitionLimit`]); so is the oldest one while all
//! partitions together hold more than [`PARTITIONS_MAX_BYTES`] (or one
//! buffer's size, if larger), so that their memory stays bounded whatever
//! `max_active_partitions` is. A buffer is flushed when its
//! record data reaches the size limit or its oldest record reaches the age
//! limit, whichever comes first, or when it holds `max_records` records:
//! each record also costs its bookkeeping ([`RECORD_BOOKKEEPING`] bytes: the
//! record, its ticket, its place in the checkpoint tracker), and the
//! configuration sets `max_records` so that their bookkeeping stays within
//! the size limit too. A buffer of tiny records holds fewer of them, and
//! `size_mb` bounds memory whatever the records' size. A synchronous state machine: no I/O, and
//! time is passed in, so it is tested without sleeping.
//!
//! With coordination (several instances sharing a stream through leases,
//! `docs/leases.md`) the buffers are also kept apart per shard
//! ([`Buffers::per_shard`]): every object then holds one shard's records,
//! so that whichever instance owns the shard's lease next can redo an
//! intent of it alone, and a shard whose lease is lost can have its
//! buffers dropped without touching another shard's ([`Buffers::drop_shard`]).
//!
//! Each record pushed is charged to the process's memory budget
//! ([`crate::limits`]), and a flushed [`Batch`] carries its records'
//! charge until the writer is done with it. When the budget is full the
//! router flushes the largest buffer ([`Buffers::take_largest`]).
//!
//! The data buffer may also be encoded as it fills ([`Buffers::encoding`]):
//! each record pushed is written at once into the buffer's object (a
//! [`Filling`]), and the record keeps its place, ticket and metadata but
//! lets go of its data. The pipeline turns it on where the object is
//! compressed on every core and nothing will need the records' data again
//! (`pipeline/early.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use std::sync::Arc;

use spillway_transforms::{ErrorOutputType, Record, SourceId};

use crate::checkpoint::Ticket;
use crate::limits::{Charge, MemoryBudget};
use crate::processor::PartitionKeys;

/// Why a buffer was flushed; logged with every flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    /// Its records reached `buffer.size_mb`.
    Size,
    /// Its oldest record waited `buffer.interval_seconds`.
    Interval,
    /// SIGTERM or SIGINT.
    Shutdown,
    /// Every source reached its end.
    EndOfInput,
    /// A Kinesis shard was read to its end: its children wait until all of
    /// its records are delivered.
    ShardEnd,
    /// A record of a new partition came while `max_active_partitions`
    /// were open: the oldest open partition was flushed to make room.
    PartitionLimit,
    /// The memory budget (`limits.memory_mb`) was full: the largest open
    /// buffer was flushed, so that delivering it frees memory.
    MemoryLimit,
    /// An intent the shard's last owner left pending has all its records
    /// in again: redone under its key (`docs/leases.md`).
    Redo,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Interval => "interval",
            Self::Shutdown => "shutdown",
            Self::EndOfInput => "end_of_input",
            Self::ShardEnd => "shard_end",
            Self::PartitionLimit => "partition_limit",
            Self::MemoryLimit => "memory_limit",
            Self::Redo => "redo",
        }
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which output a buffer feeds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BufferKey {
    Data,
    /// The data of one set of partition keys (dynamic partitioning).
    Partition(Arc<PartitionKeys>),
    Error(ErrorOutputType),
    /// The records of an intent the last owner of their shard left in its
    /// lease, redone under the intent's key (`docs/leases.md`); never in
    /// [`Buffers`] (the router keeps them apart, `pipeline/redo.rs`).
    Redo(Arc<Redo>),
}

/// A redone intent's batch: its key, and for each record the buffer it
/// would have gone to otherwise (data, a partition, an error output).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Redo {
    pub key: Arc<str>,
    pub kinds: Vec<BufferKey>,
}

/// One buffer: an output and, with per-shard buffers, the shard whose
/// records it holds (`None` without them: every source shares a buffer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    key: BufferKey,
    shard: Option<SourceId>,
}

/// A record in a buffer, with its checkpoint ticket.
#[derive(Debug)]
pub struct Buffered {
    pub record: Record,
    pub ticket: Ticket,
}

/// A buffer's object, written as its records arrive (see the module).
/// A write that fails is kept and returned by [`Filling::finish`]: the
/// batch then fails to deliver, and its records are read again.
pub trait Filling: Send + Sync + fmt::Debug {
    /// Writes one record (its data, and the metadata the format takes).
    fn write(&mut self, record: &Record);
    /// The object's bytes, encoded and compressed.
    fn finish(self: Box<Self>) -> std::io::Result<Vec<u8>>;
}

/// Opens the [`Filling`] of each data buffer encoded as it fills.
pub trait Fills: Send + Sync + fmt::Debug {
    fn open(&self) -> Box<dyn Filling>;
}

/// The most record data all partition buffers together hold (unless one
/// buffer's `size_mb` is larger): 500 partitions of 128 MiB would be 64 GiB.
pub const PARTITIONS_MAX_BYTES: usize = 256 * 1024 * 1024;

/// A batch's records and their tickets, as two lists. The tickets are
/// copied out first, so that the records are collected in place, into
/// the list that held them: unzipping into two new lists held the
/// batch's list twice (18 MiB of a 64 MB buffer of products; more with
/// small records; issue #17).
pub fn unzip(items: Vec<Buffered>) -> (Vec<Record>, Vec<Ticket>) {
    let tickets = items.iter().map(|b| b.ticket).collect();
    let records = items.into_iter().map(|b| b.record).collect();
    (records, tickets)
}

/// The contents of a flushed buffer.
#[derive(Debug)]
pub struct Batch {
    pub key: BufferKey,
    pub items: Vec<Buffered>,
    /// Record data bytes.
    pub bytes: usize,
    pub reason: FlushReason,
    /// The memory its records hold: released when the batch is dropped,
    /// once delivered (or written as error records).
    pub charge: Charge,
    /// Its object, encoded as its records came ([`Buffers::encoding`]):
    /// its records then hold no data.
    pub encoded: Option<Box<dyn Filling>>,
}

/// What a buffered record costs beside its data: the record and its
/// ticket in the buffer, and its share of the checkpoint tracker's spans
/// ([`TRACKER_SHARE`]).
pub const RECORD_BOOKKEEPING: usize = std::mem::size_of::<Buffered>() + TRACKER_SHARE;

/// A record's share of the checkpoint tracker, as counted: next to
/// nothing when an object's records are consecutive (a buffer's records
/// are one span), up to a span each (104 bytes)
/// where objects interleave record by record (dynamic partitioning, error
/// records among the data) until the objects around them are written.
/// Counted as the 40 bytes its entry took before spans, so that a buffer
/// of tiny records holds as many as before: counting the whole span made
/// 1 MB buffers of 2-byte records 18 – 20% slower (issue #17, docs/benchmarks.md).
pub const TRACKER_SHARE: usize = 40;

/// What a record costs the budget: its data and its bookkeeping (the
/// record, its ticket, its place in the checkpoint tracker).
pub fn record_cost(data_len: usize) -> usize {
    data_len + RECORD_BOOKKEEPING
}

/// When a buffer is flushed: at `max_bytes` of record data or when its
/// oldest record has waited `max_age`, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    pub max_bytes: usize,
    pub max_age: std::time::Duration,
    /// At most this many records per buffer: `max_bytes` of their
    /// bookkeeping ([`RECORD_BOOKKEEPING`] each), so that `size_mb` bounds
    /// memory for tiny records too.
    pub max_records: usize,
}

#[derive(Debug, Default)]
struct Batcher {
    items: Vec<Buffered>,
    bytes: usize,
    opened_at: Option<Instant>,
    /// What its records cost the memory budget.
    charge: Charge,
    /// Its object, encoded as its records arrive ([`Buffers::encoding`]).
    filling: Option<Box<dyn Filling>>,
}

/// Every buffer of a pipeline.
#[derive(Debug)]
pub struct Buffers {
    limits: BufferLimits,
    buffers: BTreeMap<Slot, Batcher>,
    /// Whether each shard (source id) has buffers of its own.
    per_shard: bool,
    /// The most partition buffers open at once.
    max_partitions: usize,
    /// How many partition buffers are open.
    open_partitions: usize,
    /// Record data in partition buffers, and the most they may hold.
    partition_bytes: usize,
    max_partition_bytes: usize,
    /// The process's memory budget, charged for every record pushed.
    budget: MemoryBudget,
    /// The records the data buffer makes room for when it opens (its
    /// first record). A list that grows by doubling is copied at each
    /// step and ends up to twice its records' size: 29 MB for the 20 MB
    /// of a 64 MB buffer of products, with the list before it alive while
    /// it is copied (issue #17). The data buffer of a pipeline without
    /// per-shard buffers, which fills to about as many records each time,
    /// opens with room for as many as the last full one and an eighth (the
    /// room not filled is given back when it is taken); set when a full
    /// one is taken. The others (partitions, error records, per-shard
    /// buffers) open empty: many may be open at once, with few records
    /// each.
    data_room: usize,
    /// Opens the object of the data buffer encoded as it fills, if it is.
    fills: Option<Arc<dyn Fills>>,
}

impl Buffers {
    pub fn new(limits: BufferLimits) -> Self {
        Self::with_partitions(limits, usize::MAX)
    }

    /// Buffers of which at most `max_partitions` partition buffers are
    /// open at once.
    pub fn with_partitions(limits: BufferLimits, max_partitions: usize) -> Self {
        Self {
            limits,
            buffers: BTreeMap::new(),
            per_shard: false,
            max_partitions: max_partitions.max(1),
            open_partitions: 0,
            partition_bytes: 0,
            max_partition_bytes: PARTITIONS_MAX_BYTES.max(limits.max_bytes),
            budget: MemoryBudget::unlimited(),
            data_room: 0,
            fills: None,
        }
    }

    /// These buffers, the data buffer encoded as it fills by what `fills`
    /// opens (see the module). Not with per-shard buffers: each would hold
    /// a codec of its own.
    pub fn encoding(self, fills: Option<Arc<dyn Fills>>) -> Self {
        Self { fills, ..self }
    }

    /// These buffers, charging `budget` for every record pushed.
    pub fn charging(self, budget: MemoryBudget) -> Self {
        Self { budget, ..self }
    }

    /// These buffers, one set per shard (the record's source id): every
    /// batch holds the records of one shard. Coordination turns it on
    /// (an object of two shards could not be redone by either shard's next
    /// owner: `crate::checkpoint::shard`); each per-shard partition buffer
    /// counts towards `max_partitions` and the partitions' byte bound.
    pub fn per_shard(self) -> Self {
        Self {
            per_shard: true,
            fills: None,
            ..self
        }
    }

    /// Adds a record; returns the batches this flushed: the buffer's own if
    /// this filled it, and the oldest partition's if a new partition had
    /// to make room.
    pub fn push(&mut self, key: BufferKey, item: Buffered, now: Instant) -> Vec<Batch> {
        self.push_run(key, [item], now)
    }

    /// Adds a run of records, in order, all to `key`'s buffer (one per
    /// shard with per-shard buffers); returns the batches this flushed, as
    /// [`Self::push`] for each record would. The buffer is found and the
    /// memory budget charged once for each stretch of the run that goes
    /// into one buffer, not once a record (issue #17: per-record work per
    /// run of records).
    pub fn push_run(&mut self, key: BufferKey, items: impl IntoIterator<Item = Buffered>, now: Instant) -> Vec<Batch> {
        let mut flushed = Vec::new();
        let partition = matches!(key, BufferKey::Partition(_));
        let mut items = items.into_iter().peekable();
        while let Some(first) = items.peek() {
            let slot = Slot {
                key: key.clone(),
                shard: self.per_shard.then(|| first.record.position.source.clone()),
            };
            if partition && !self.buffers.contains_key(&slot) {
                if self.open_partitions >= self.max_partitions {
                    flushed.extend(self.take_oldest_partition());
                }
                self.open_partitions += 1;
            }
            let data = matches!(slot.key, BufferKey::Data);
            let data_room = self.data_room;
            let fills = self.fills.as_ref().filter(|_| data);
            let batcher = self.buffers.entry(slot.clone()).or_insert_with(|| Batcher {
                items: Vec::with_capacity(if data { data_room } else { 0 }),
                filling: fills.map(|fills| fills.open()),
                ..Batcher::default()
            });
            batcher.opened_at.get_or_insert(now);
            let mut cost = 0;
            let mut full = false;
            // This buffer's stretch of the run: the records of its shard,
            // until it is full or the partitions hold too much.
            while let Some(mut item) =
                items.next_if(|item| slot.shard.is_none() || slot.shard.as_ref() == Some(&item.record.position.source))
            {
                if partition {
                    // A source's records are slices of the blocks it read
                    // (a file reader's 1 MiB blocks, a decompressed
                    // object): one record kept in one of many partitions
                    // would keep its whole block alive, so that memory
                    // would follow the input rather than what the buffers
                    // hold. A partition's records own their bytes.
                    item.record.data = bytes::Bytes::copy_from_slice(&item.record.data);
                    self.partition_bytes += item.record.data.len();
                }
                cost += record_cost(item.record.data.len());
                batcher.bytes += item.record.data.len();
                if let Some(filling) = &mut batcher.filling {
                    filling.write(&item.record);
                    // Written: the read block it is a slice of may go as
                    // soon as its other records are written too.
                    item.record.data = bytes::Bytes::new();
                }
                batcher.items.push(item);
                if batcher.bytes >= self.limits.max_bytes || batcher.items.len() >= self.limits.max_records {
                    full = true;
                    break;
                }
                if self.partition_bytes > self.max_partition_bytes {
                    break;
                }
            }
            batcher.charge.absorb(self.budget.charge(cost));
            if full {
                flushed.extend(self.take(&slot, FlushReason::Size));
            }
            while self.partition_bytes > self.max_partition_bytes {
                let Some(batch) = self.take_oldest_partition() else {
                    break;
                };
                flushed.push(batch);
            }
        }
        flushed
    }

    fn take_oldest_partition(&mut self) -> Option<Batch> {
        let oldest = self
            .buffers
            .iter()
            .filter(|(k, _)| matches!(k.key, BufferKey::Partition(_)))
            .min_by_key(|(_, b)| b.opened_at)
            .map(|(k, _)| k.clone())?;
        self.take(&oldest, FlushReason::PartitionLimit)
    }

    /// Takes the buffer holding the most record data (the memory budget
    /// is full: delivering it frees the most).
    pub fn take_largest(&mut self, reason: FlushReason) -> Option<Batch> {
        let largest = self
            .buffers
            .iter()
            .filter(|(_, b)| !b.items.is_empty())
            .max_by_key(|(_, b)| b.charge.bytes())
            .map(|(k, _)| k.clone())?;
        self.take(&largest, reason)
    }

    /// Whether no buffer holds a record.
    pub fn is_empty(&self) -> bool {
        self.buffers.values().all(|b| b.items.is_empty())
    }

    /// How many partition buffers are open.
    pub fn open_partitions(&self) -> usize {
        self.open_partitions
    }

    /// When the oldest open buffer reaches its age limit.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.buffers
            .values()
            .filter_map(|b| b.opened_at)
            .min()
            .map(|opened| opened + self.limits.max_age)
    }

    /// Takes every buffer whose oldest record has waited long enough.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Batch> {
        let max_age = self.limits.max_age;
        let expired: Vec<Slot> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.opened_at.is_some_and(|opened| now.duration_since(opened) >= max_age))
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .iter()
            .filter_map(|key| self.take(key, FlushReason::Interval))
            .collect()
    }

    /// Takes every non-empty buffer.
    /// Largest first: the batches are encoded and written several at a
    /// time (`max_concurrent_puts`), and starting the longest first lets
    /// the small ones fill in beside them, rather than the largest
    /// starting last and running alone at the end (20 partitions at the
    /// end of the input: the last two, the largest, took the final second
    /// on one core).
    pub fn take_all(&mut self, reason: FlushReason) -> Vec<Batch> {
        let keys: Vec<Slot> = self.buffers.keys().cloned().collect();
        let mut batches: Vec<Batch> = keys.iter().filter_map(|key| self.take(key, reason)).collect();
        batches.sort_by_key(|batch| std::cmp::Reverse(batch.bytes));
        batches
    }

    /// The arrival time of the oldest buffered record.
    pub fn oldest_arrival(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.buffers
            .values()
            .flat_map(|b| b.items.iter().map(|i| i.record.arrival))
            .min()
    }

    /// Bytes of record data buffered in all buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.buffers.values().map(|b| b.bytes).sum()
    }

    /// Drops every buffer of `shard` unwritten (with per-shard buffers;
    /// without them no buffer is one shard's, and nothing is dropped).
    /// Returns how many records were dropped; their memory is released.
    pub fn drop_shard(&mut self, shard: &SourceId) -> usize {
        let slots: Vec<Slot> = self
            .buffers
            .keys()
            .filter(|slot| slot.shard.as_ref() == Some(shard))
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|slot| self.take(slot, FlushReason::Shutdown))
            .map(|batch| batch.items.len())
            .sum()
    }

    fn take(&mut self, key: &Slot, reason: FlushReason) -> Option<Batch> {
        let batcher = self.buffers.remove(key)?;
        if matches!(key.key, BufferKey::Partition(_)) {
            self.open_partitions -= 1;
            self.partition_bytes -= batcher.bytes;
        }
        if batcher.items.is_empty() {
            return None;
        }
        if matches!(key.key, BufferKey::Data) && reason == FlushReason::Size && !self.per_shard {
            let full = batcher.items.len();
            self.data_room = full.saturating_add(full / 8).min(self.limits.max_records);
        }
        let mut items = batcher.items;
        // The list grew by doubling, or was made for more records: room no
        // record will fill, held until the batch is delivered. Shrinking
        // gives the tail back where it lies (no copy) (issue #17).
        items.shrink_to_fit();
        Some(Batch {
            key: key.key.clone(),
            items,
            bytes: batcher.bytes,
            reason,
            charge: batcher.charge,
            encoded: batcher.filling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spillway_transforms::record::{Offset, Position};
    use spillway_transforms::{SequenceNumber, SourceId};
    use std::time::Duration;

    fn item(n: u64, size: usize) -> Buffered {
        item_of("s", n, size)
    }

    fn item_of(shard: &str, n: u64, size: usize) -> Buffered {
        let offset = Offset::new(SequenceNumber::from_u64(n), 0);
        Buffered {
            record: Record {
                data: Bytes::from(vec![b'x'; size]),
                position: Position {
                    source: SourceId::new(shard),
                    offset: offset.clone(),
                },
                partition_key: None,
                arrival: chrono::Utc::now(),
            },
            ticket: Ticket { ordinal: n },
        }
    }

    fn limits() -> BufferLimits {
        BufferLimits {
            max_bytes: 100,
            max_age: Duration::from_secs(60),
            max_records: usize::MAX,
        }
    }

    #[test]
    fn flushes_when_size_is_reached() {
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        assert!(buffers.push(BufferKey::Data, item(0, 60), t0).is_empty());
        let batch = buffers
            .push(BufferKey::Data, item(1, 40), t0)
            .pop()
            .expect("100 bytes reach the limit");
        assert_eq!(
            (batch.reason, batch.items.len(), batch.bytes),
            (FlushReason::Size, 2, 100)
        );
        assert_eq!(buffers.buffered_bytes(), 0);
        assert_eq!(buffers.next_deadline(), None, "an emptied buffer has no deadline");
    }

    #[test]
    fn a_flushed_batch_holds_no_room_beyond_its_records() {
        // The list grew by doubling (to 8 for 5 records); what is not
        // filled would be held until the batch is delivered (issue #17).
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        for n in 0..4 {
            assert!(buffers.push(BufferKey::Data, item(n, 20), t0).is_empty());
        }
        let batch = buffers.push(BufferKey::Data, item(4, 20), t0).pop().expect("full");
        assert_eq!((batch.items.len(), batch.items.capacity()), (5, 5));
    }

    /// The list of the open buffer at `key` (no shard).
    fn open_list(buffers: &Buffers, key: BufferKey) -> &Vec<Buffered> {
        &buffers.buffers[&Slot { key, shard: None }].items
    }

    fn room(buffers: &Buffers, key: BufferKey) -> usize {
        open_list(buffers, key).capacity()
    }

    #[test]
    fn a_data_buffer_opens_with_room_for_the_last_full_ones_records() {
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        // The first buffer grows as it goes: ten records of 10 bytes.
        let mut flushed = Vec::new();
        for n in 0..10 {
            flushed.extend(buffers.push(BufferKey::Data, item(n, 10), t0));
        }
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].items.len(), 10);
        // The next opens with room for ten and an eighth, and fills
        // without moving its list.
        assert!(buffers.push(BufferKey::Data, item(10, 10), t0).is_empty());
        assert_eq!(room(&buffers, BufferKey::Data), 11);
        let list = open_list(&buffers, BufferKey::Data).as_ptr();
        for n in 11..19 {
            assert!(buffers.push(BufferKey::Data, item(n, 10), t0).is_empty());
        }
        let moved = open_list(&buffers, BufferKey::Data).as_ptr() != list;
        assert!(!moved, "the list was copied while it filled");
        let batch = buffers.push(BufferKey::Data, item(19, 10), t0).pop().expect("full");
        assert_eq!((batch.items.len(), batch.items.capacity()), (10, 10));
        // A buffer taken before it is full (its age, the end of input)
        // says nothing of the next: room for ten again.
        buffers.push(BufferKey::Data, item(20, 10), t0);
        let taken = buffers.take_all(FlushReason::Shutdown);
        assert_eq!(taken[0].items.len(), 1);
        buffers.push(BufferKey::Data, item(21, 10), t0);
        assert_eq!(room(&buffers, BufferKey::Data), 11);
        // Partitions, error records and per-shard buffers open empty.
        buffers.push(partition("a"), item(22, 10), t0);
        assert!(room(&buffers, partition("a")) < 11);
        let errors = BufferKey::Error(ErrorOutputType::ProcessingFailed);
        buffers.push(errors.clone(), item(23, 10), t0);
        assert!(room(&buffers, errors) < 11);
        let mut per_shard = Buffers::new(limits()).per_shard();
        for n in 0..11 {
            per_shard.push(BufferKey::Data, item(n, 10), t0);
        }
        let slot = Slot {
            key: BufferKey::Data,
            shard: Some(SourceId::new("s")),
        };
        assert!(per_shard.buffers[&slot].items.capacity() < 11);
    }

    #[test]
    fn flushes_when_the_oldest_record_is_old_enough() {
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        buffers.push(BufferKey::Data, item(0, 1), t0);
        buffers.push(BufferKey::Data, item(1, 1), t0 + Duration::from_secs(30));
        buffers.push(
            BufferKey::Error(ErrorOutputType::InvalidRecord),
            item(2, 1),
            t0 + Duration::from_secs(45),
        );
        assert_eq!(buffers.next_deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(buffers.take_expired(t0 + Duration::from_secs(59)).is_empty());
        let expired = buffers.take_expired(t0 + Duration::from_secs(60));
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].key.clone(), expired[0].items.len()), (BufferKey::Data, 2));
        assert_eq!(expired[0].reason, FlushReason::Interval);
        // The error buffer keeps its own age.
        assert_eq!(buffers.next_deadline(), Some(t0 + Duration::from_secs(105)));
        // A new record in the data buffer starts a new age.
        buffers.push(BufferKey::Data, item(3, 1), t0 + Duration::from_secs(70));
        assert_eq!(buffers.next_deadline(), Some(t0 + Duration::from_secs(105)));
        let rest = buffers.take_all(FlushReason::Shutdown);
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|b| b.reason == FlushReason::Shutdown));
        assert!(buffers.take_all(FlushReason::EndOfInput).is_empty());
    }

    #[test]
    fn tiny_records_flush_when_the_buffer_holds_its_most_records() {
        let mut buffers = Buffers::new(BufferLimits {
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(60),
            max_records: 100,
        });
        let t0 = Instant::now();
        for n in 0..99 {
            assert!(buffers.push(BufferKey::Data, item(n, 2), t0).is_empty());
        }
        let batch = buffers
            .push(BufferKey::Data, item(99, 2), t0)
            .pop()
            .expect("100 records");
        assert_eq!(
            (batch.reason, batch.items.len(), batch.bytes),
            (FlushReason::Size, 100, 200)
        );
    }

    #[test]
    fn buffers_are_separate_per_output() {
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        assert!(buffers.push(BufferKey::Data, item(0, 90), t0).is_empty());
        assert!(buffers
            .push(
                BufferKey::Error(ErrorOutputType::FormatConversionFailed),
                item(1, 90),
                t0
            )
            .is_empty());
        assert_eq!(buffers.buffered_bytes(), 180);
    }

    fn partition(value: &str) -> BufferKey {
        let mut keys = PartitionKeys::default();
        Arc::make_mut(&mut keys.from_query).insert("k".into(), value.into());
        BufferKey::Partition(Arc::new(keys))
    }

    #[test]
    fn a_new_partition_past_the_limit_flushes_the_oldest_open_one() {
        let mut buffers = Buffers::with_partitions(limits(), 2);
        let t0 = Instant::now();
        assert!(buffers.push(partition("a"), item(0, 1), t0).is_empty());
        assert!(buffers
            .push(partition("b"), item(1, 1), t0 + Duration::from_secs(1))
            .is_empty());
        assert!(buffers
            .push(partition("a"), item(2, 1), t0 + Duration::from_secs(2))
            .is_empty());
        // Error and unpartitioned buffers do not count.
        assert!(buffers
            .push(BufferKey::Error(ErrorOutputType::ProcessingFailed), item(3, 1), t0)
            .is_empty());
        let flushed = buffers.push(partition("c"), item(4, 1), t0 + Duration::from_secs(3));
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].key, partition("a"), "a opened first");
        assert_eq!(flushed[0].reason, FlushReason::PartitionLimit);
        assert_eq!(flushed[0].items.len(), 2);
        assert_eq!(buffers.open_partitions(), 2);
        let rest = buffers.take_all(FlushReason::EndOfInput);
        assert_eq!(rest.len(), 3);
        assert_eq!(buffers.open_partitions(), 0);
    }

    /// A record kept in a partition must not keep the source's whole
    /// block alive: memory would follow the input, not the buffers.
    #[test]
    fn a_partition_record_owns_its_bytes_rather_than_its_source_block() {
        let block = Bytes::from(vec![b'x'; 1024 * 1024]);
        let range = block.as_ptr_range();
        let mut record = item(0, 1);
        record.record.data = block.slice(10..20);
        drop(block);
        let mut buffers = Buffers::new(limits());
        buffers.push(partition("a"), record, Instant::now());
        let batch = buffers.take_all(FlushReason::Shutdown).pop().unwrap();
        let data = &batch.items[0].record.data;
        assert_eq!(&data[..], &[b'x'; 10]);
        assert!(
            !range.contains(&data.as_ptr()),
            "the record still points into its 1 MiB block"
        );
    }

    #[test]
    fn partitions_together_stay_within_their_byte_bound() {
        let mut buffers = Buffers::with_partitions(
            BufferLimits {
                max_bytes: 64 * 1024 * 1024,
                ..limits()
            },
            5000,
        );
        let t0 = Instant::now();
        let record = 1024 * 1024;
        let mut early = 0;
        for n in 0..1000u64 {
            for batch in buffers.push(
                partition(&n.to_string()),
                item(n, record),
                t0 + Duration::from_millis(n),
            ) {
                assert_eq!(batch.reason, FlushReason::PartitionLimit);
                early += 1;
            }
            assert!(buffers.buffered_bytes() <= PARTITIONS_MAX_BYTES);
        }
        assert_eq!(early, 1000 - PARTITIONS_MAX_BYTES / record);
    }

    /// The shards whose records a batch holds.
    fn shards(batch: &Batch) -> Vec<String> {
        let mut shards: Vec<String> = batch
            .items
            .iter()
            .map(|i| i.record.position.source.to_string())
            .collect();
        shards.dedup();
        shards
    }

    /// With coordination, two shards' records interleaved go to buffers of
    /// their own, for the data, each error output and each partition:
    /// every batch (so every object) holds one shard's records.
    #[test]
    fn per_shard_buffers_hold_one_shards_records_each() {
        let mut buffers = Buffers::with_partitions(limits(), 100).per_shard();
        let t0 = Instant::now();
        let keys = [
            BufferKey::Data,
            BufferKey::Error(ErrorOutputType::ProcessingFailed),
            partition("a"),
        ];
        let mut flushed = Vec::new();
        for n in 0..30u64 {
            let shard = if n % 2 == 0 { "shard-a" } else { "shard-b" };
            flushed.extend(buffers.push(keys[(n / 2 % 3) as usize].clone(), item_of(shard, n, 10), t0));
        }
        flushed.extend(buffers.take_all(FlushReason::Shutdown));
        assert_eq!(flushed.iter().map(|b| b.items.len()).sum::<usize>(), 30);
        assert_eq!(flushed.len(), 6, "one batch per output and shard");
        for batch in &flushed {
            assert_eq!(
                shards(batch).len(),
                1,
                "a batch of {:?} holds {:?}",
                batch.key,
                shards(batch)
            );
        }
    }

    #[test]
    fn without_per_shard_buffers_shards_share_a_buffer() {
        let mut buffers = Buffers::new(limits());
        let t0 = Instant::now();
        buffers.push(BufferKey::Data, item_of("shard-a", 0, 10), t0);
        buffers.push(BufferKey::Data, item_of("shard-b", 1, 10), t0);
        let batches = buffers.take_all(FlushReason::Shutdown);
        assert_eq!(batches.len(), 1);
        assert_eq!(shards(&batches[0]), ["shard-a", "shard-b"]);
    }

    /// A lost shard's buffers go unwritten, their memory released; the
    /// other shard's stay, and the partition bookkeeping follows.
    #[test]
    fn dropping_a_shard_drops_its_buffers_only() {
        let budget = MemoryBudget::new(usize::MAX);
        let mut buffers = Buffers::with_partitions(limits(), 100)
            .per_shard()
            .charging(budget.clone());
        let t0 = Instant::now();
        buffers.push(BufferKey::Data, item_of("shard-a", 0, 10), t0);
        buffers.push(partition("x"), item_of("shard-a", 1, 10), t0);
        buffers.push(
            BufferKey::Error(ErrorOutputType::InvalidRecord),
            item_of("shard-a", 2, 10),
            t0,
        );
        buffers.push(BufferKey::Data, item_of("shard-b", 3, 10), t0);
        buffers.push(partition("x"), item_of("shard-b", 4, 10), t0);
        assert_eq!(buffers.open_partitions(), 2);
        assert_eq!(buffers.drop_shard(&SourceId::new("shard-a")), 3);
        assert_eq!(buffers.open_partitions(), 1);
        assert_eq!(buffers.buffered_bytes(), 20);
        assert_eq!(
            budget.used(),
            2 * record_cost(10),
            "the dropped records' memory is released"
        );
        let rest = buffers.take_all(FlushReason::Shutdown);
        assert!(rest.iter().all(|b| shards(b) == ["shard-b"]));
        assert_eq!(rest.iter().map(|b| b.items.len()).sum::<usize>(), 2);
        assert_eq!(buffers.drop_shard(&SourceId::new("shard-a")), 0);
    }

    /// What a flushed batch is, for comparing two ways of filling buffers.
    fn summary(batch: &Batch) -> (BufferKey, Vec<u64>, Vec<String>, usize, FlushReason, usize) {
        (
            batch.key.clone(),
            batch.items.iter().map(|b| b.ticket.ordinal).collect(),
            shards(batch),
            batch.bytes,
            batch.reason,
            batch.charge.bytes(),
        )
    }

    proptest::proptest! {
        /// Records pushed as runs (cut anywhere) fill and flush the buffers
        /// exactly as the same records pushed one by one: the same batches,
        /// records, sizes, reasons and charges, the same memory used.
        #[test]
        fn a_run_is_buffered_as_its_records_one_by_one(
            records in proptest::collection::vec((proptest::bool::ANY, 0usize..60), 0..60),
            cuts in proptest::collection::vec(proptest::bool::ANY, 60),
            max_records in 1usize..12,
            per_shard in proptest::bool::ANY,
            partitioned in proptest::bool::ANY,
        ) {
            let limits = BufferLimits { max_records, ..limits() };
            let key = if partitioned { partition("p") } else { BufferKey::Data };
            let make = || {
                let buffers = Buffers::with_partitions(limits, 4).charging(MemoryBudget::new(usize::MAX));
                if per_shard { buffers.per_shard() } else { buffers }
            };
            let items = || {
                records.iter().enumerate().map(|(n, &(b, size))| item_of(if b { "shard-b" } else { "shard-a" }, n as u64, size))
            };
            let t0 = Instant::now();
            let (mut one_by_one, mut in_runs) = (make(), make());
            let mut expected: Vec<Batch> = items().flat_map(|item| one_by_one.push(key.clone(), item, t0)).collect();
            let mut got = Vec::new();
            let mut run = Vec::new();
            for (n, item) in items().enumerate() {
                run.push(item);
                if cuts[n] {
                    got.extend(in_runs.push_run(key.clone(), run.drain(..), t0));
                }
            }
            got.extend(in_runs.push_run(key.clone(), run, t0));
            proptest::prop_assert_eq!(one_by_one.budget.used(), in_runs.budget.used());
            expected.extend(one_by_one.take_all(FlushReason::Shutdown));
            got.extend(in_runs.take_all(FlushReason::Shutdown));
            proptest::prop_assert_eq!(
                expected.iter().map(summary).collect::<Vec<_>>(),
                got.iter().map(summary).collect::<Vec<_>>()
            );
            proptest::prop_assert_eq!(got.iter().map(|b| b.items.len()).sum::<usize>(), records.len());
        }
    }
}
