//! The budget's accounting: every byte charged is released once its
//! holder is gone, whichever way (delivered, failed, dropped), and the
//! buffer flushed when it is full is the largest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use spillway_transforms::record::{Offset, Position};
use spillway_transforms::{ErrorOutputType, Record, SequenceNumber, SourceId};
use tokio::sync::mpsc;

use super::gate::run as gate;
use super::*;
use crate::buffer::{record_cost, Batch, BufferKey, BufferLimits, Buffered, Buffers, FlushReason};
use crate::checkpoint::Ticket;
use crate::processor::PartitionKeys;
use crate::source::SourceEvent;
use crate::telemetry::Telemetry;

fn record(n: u64, size: usize) -> Record {
    Record {
        data: Bytes::from(vec![b'x'; size]),
        position: Position {
            source: SourceId::new("s"),
            offset: Offset::new(SequenceNumber::from_u64(n), 0),
        },
        partition_key: None,
        arrival: chrono::Utc::now(),
    }
}

fn item(n: u64, size: usize) -> Buffered {
    Buffered {
        record: record(n, size),
        ticket: Ticket { ordinal: n },
    }
}

fn key(which: u8) -> BufferKey {
    match which {
        0 => BufferKey::Data,
        1 => BufferKey::Error(ErrorOutputType::InvalidRecord),
        n => {
            let mut keys = PartitionKeys::default();
            Arc::make_mut(&mut keys.from_query).insert("k".into(), n.to_string());
            BufferKey::Partition(Arc::new(keys))
        }
    }
}

fn limits() -> BufferLimits {
    BufferLimits {
        max_bytes: 4096,
        max_age: Duration::from_secs(60),
        max_records: 50,
    }
}

fn cost_of(batch: &Batch) -> usize {
    batch.items.iter().map(|i| record_cost(i.record.data.len())).sum()
}

#[derive(Clone, Debug)]
enum Step {
    Push {
        key: u8,
        size: usize,
    },
    /// Time passes: expired buffers are flushed.
    Expire,
    /// The budget is full: the largest buffer is flushed.
    Largest,
    /// The writer is done with the batch at this index (delivered, failed
    /// or abandoned: it is dropped either way).
    Done(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..8, 0usize..2000).prop_map(|(key, size)| Step::Push { key, size }),
        1 => Just(Step::Expire),
        2 => Just(Step::Largest),
        2 => any::<usize>().prop_map(Step::Done),
    ]
}

proptest! {
    /// At every step the budget holds exactly what the buffers and the
    /// batches not yet done hold; once all are done it holds nothing.
    #[test]
    fn bytes_charged_equal_bytes_released(steps in proptest::collection::vec(step(), 1..200)) {
        let budget = MemoryBudget::new(usize::MAX);
        let mut buffers = Buffers::with_partitions(limits(), 4).charging(budget.clone());
        // What each buffer holds, as the model sees it.
        let mut model: BTreeMap<BufferKey, usize> = BTreeMap::new();
        let mut held: Vec<Batch> = Vec::new();
        let t0 = Instant::now();
        let mut now = t0;
        for (n, step) in steps.into_iter().enumerate() {
            let flushed = match step {
                Step::Push { key: k, size } => {
                    now += Duration::from_millis(10);
                    *model.entry(key(k)).or_default() += record_cost(size);
                    buffers.push(key(k), item(n as u64, size), now)
                }
                Step::Expire => {
                    now += Duration::from_secs(30);
                    buffers.take_expired(now)
                }
                Step::Largest => {
                    let most = model.values().copied().max();
                    let taken = buffers.take_largest(FlushReason::MemoryLimit);
                    if let Some(batch) = &taken {
                        prop_assert_eq!(Some(cost_of(batch)), most, "not the largest buffer");
                        prop_assert_eq!(batch.reason, FlushReason::MemoryLimit);
                    } else {
                        prop_assert!(model.is_empty());
                    }
                    taken.into_iter().collect()
                }
                Step::Done(index) => {
                    if !held.is_empty() {
                        drop(held.swap_remove(index % held.len()));
                    }
                    Vec::new()
                }
            };
            for batch in flushed {
                prop_assert_eq!(batch.charge.bytes(), cost_of(&batch));
                model.remove(&batch.key);
                held.push(batch);
            }
            let in_buffers: usize = model.values().sum();
            let in_batches: usize = held.iter().map(|b| b.charge.bytes()).sum();
            prop_assert_eq!(budget.used(), in_buffers + in_batches);
        }
        drop(held);
        let rest = buffers.take_all(FlushReason::Shutdown);
        prop_assert_eq!(rest.iter().map(cost_of).sum::<usize>(), budget.used());
        drop(rest);
        prop_assert_eq!(budget.used(), 0);
    }
}

#[test]
fn the_largest_buffer_is_taken_and_error_buffers_count() {
    let budget = MemoryBudget::new(1 << 20);
    let mut buffers = Buffers::new(limits()).charging(budget.clone());
    let t0 = Instant::now();
    buffers.push(key(2), item(0, 300), t0);
    buffers.push(key(1), item(1, 900), t0);
    buffers.push(key(3), item(2, 500), t0);
    buffers.push(key(3), item(3, 500), t0);
    let order: Vec<BufferKey> = std::iter::from_fn(|| buffers.take_largest(FlushReason::MemoryLimit))
        .map(|batch| batch.key.clone())
        .collect();
    assert_eq!(order, [key(3), key(1), key(2)]);
    assert!(buffers.is_empty());
    assert_eq!(budget.used(), 0, "the batches were dropped");
}

#[test]
fn charges_absorbed_are_released_together_once() {
    let budget = MemoryBudget::new(100);
    let mut total = Charge::default();
    total.absorb(budget.charge(60));
    total.absorb(Charge::default());
    total.absorb(budget.charge(50));
    assert_eq!((total.bytes(), budget.used()), (110, 110));
    assert!(budget.is_full());
    drop(total);
    assert_eq!(budget.used(), 0);
    assert!(!budget.is_full());
}

fn records_event(count: u64, size: usize) -> SourceEvent {
    SourceEvent::Records((0..count).map(|n| record(n, size)).collect())
}

/// While the budget is full, the gate takes nothing from the source: the
/// source's channel fills and the source waits. Bytes freed let it go on.
#[tokio::test]
async fn the_gate_pauses_the_source_while_the_budget_is_full() {
    let budget = MemoryBudget::new(10_000);
    let telemetry = Telemetry::standalone("s");
    let (source, from_source) = mpsc::channel(1);
    let (onward, mut routed) = mpsc::channel(4);
    tokio::spawn(gate(budget.clone(), telemetry, from_source, onward));

    source.send(records_event(2, 100)).await.unwrap();
    let first = routed.recv().await.unwrap();
    assert_eq!(first.charge.bytes(), 2 * record_cost(100));
    assert_eq!(budget.used(), first.charge.bytes());

    let held = budget.charge(10_000);
    // The gate was already waiting for an event: it passes this one on,
    // then sees the budget full.
    source.send(records_event(3, 100)).await.unwrap();
    let second = routed.recv().await.unwrap();
    source.send(records_event(4, 100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        routed.try_recv().is_err(),
        "an event passed the gate while the budget was full"
    );
    assert!(
        source.try_send(records_event(1, 1)).is_err(),
        "the source's channel is full: the source waits"
    );

    drop(held);
    let third = routed.recv().await.unwrap();
    assert_eq!(third.charge.bytes(), 4 * record_cost(100));
    drop((first, second, third));
    drop(source);
    assert!(routed.recv().await.is_none());
    assert_eq!(budget.used(), 0);
}

proptest! {
    /// Shares add up to at most the whole, each in proportion to its
    /// weight (to within a byte), and none is left without memory.
    #[test]
    fn shares_add_up_and_follow_the_weights(
        total in 0usize..(1 << 40),
        weights in proptest::collection::vec(0usize..100_000, 1..20),
    ) {
        let shares = super::shares(total, &weights);
        prop_assert_eq!(shares.len(), weights.len());
        prop_assert!(shares.iter().sum::<usize>() <= total);
        let sum: u128 = weights.iter().map(|w| (*w).max(1) as u128).sum();
        for (share, weight) in shares.iter().zip(&weights) {
            let exact = total as u128 * (*weight).max(1) as u128;
            prop_assert!((*share as u128) * sum <= exact && exact < (*share as u128 + 1) * sum);
        }
    }
}

#[test]
fn one_pipeline_takes_the_whole_budget_and_two_split_it_by_their_buffers() {
    assert_eq!(super::shares(96, &[40]), vec![96]);
    assert_eq!(super::shares(96, &[16, 32]), vec![32, 64]);
}
