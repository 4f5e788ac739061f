//! Settling at start: intents a stopped run left are settled against the
//! destination, here the in-memory store, which shows each call
//! [`Checkpointer::open`] makes and fails on demand. The checkpoint file is
//! the real one, in a temporary directory.

use std::path::Path;

use bytes::Bytes;
use spillway_destinations::memory::{Call, Failure, Operation};
use spillway_destinations::{MemoryStore, ObjectKey, ObjectStore, PutOptions};
use spillway_transforms::{Offset, SequenceNumber, SourceId};

use super::{CheckpointError, Checkpointer, Claims, LocalFileStore};

const STREAM: &str = "clicks";

fn off(n: u64) -> Offset {
    Offset::new(SequenceNumber::from_u64(n), 0)
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

async fn open(dir: &Path, destination: &MemoryStore) -> Result<Checkpointer, CheckpointError> {
    let store = LocalFileStore::open(dir, STREAM).expect("open the checkpoint file");
    Checkpointer::open(STREAM, Box::new(store), destination).await
}

/// The offsets of 1..=6 that a run admits, that is, reads again.
fn admitted(checkpoints: &Checkpointer, source: &SourceId) -> Vec<u64> {
    let offsets: Vec<Offset> = (1..=6).map(off).collect();
    let tickets = checkpoints.admit(offsets.iter().map(|o| (source, o)));
    offsets
        .iter()
        .zip(tickets)
        .filter(|(_, ticket)| ticket.is_some())
        .map(|(o, _)| o.sequence_number.to_u64().unwrap())
        .collect()
}

/// A run that admits records 1 to 6 of `source`, saves the intents of
/// `written` (records 3 and 4) and `lost` (1 and 2), writes `written`
/// only, and stops before either is marked delivered.
async fn run_stopped_after_one_put(dir: &Path, destination: &MemoryStore, source: &SourceId) {
    let checkpoints = open(dir, destination).await.unwrap();
    let offsets: Vec<Offset> = (1..=6).map(off).collect();
    let tickets: Vec<_> = checkpoints
        .admit(offsets.iter().map(|o| (source, o)))
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let claims = |range: std::ops::Range<usize>| {
        Claims::of(
            offsets[range.clone()]
                .iter()
                .zip(&tickets[range])
                .map(|(o, t)| (source, o, *t)),
        )
    };
    checkpoints.begin_object(&key("events/written.jsonl"), claims(2..4));
    checkpoints.begin_object(&key("events/lost.jsonl"), claims(0..2));
    checkpoints.save().await.unwrap();
    destination
        .put(
            &key("events/written.jsonl"),
            Bytes::from_static(b"3\n4\n"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_written_object_is_delivered_and_a_missing_one_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let destination = MemoryStore::new();
    let source = SourceId::new("shard-1");
    run_stopped_after_one_put(dir.path(), &destination, &source).await;

    let before = destination.calls().len();
    let checkpoints = open(dir.path(), &destination).await.unwrap();
    assert_eq!(
        admitted(&checkpoints, &source),
        [1, 2, 5, 6],
        "3 and 4 are in the written object"
    );
    // Each pending key: what a killed writer left is cleaned up, then
    // whether the object exists is asked. Nothing is written.
    let settling: Vec<(Operation, String)> = destination.calls()[before..]
        .iter()
        .map(|Call { operation, key }| (*operation, key.as_ref().unwrap().to_string()))
        .collect();
    let mut asked: Vec<&str> = settling.iter().step_by(2).map(|(_, key)| key.as_str()).collect();
    for pair in settling.chunks(2) {
        assert_eq!(
            (pair[0].0, pair[1].0),
            (Operation::CleanUp, Operation::Exists),
            "{settling:?}"
        );
        assert_eq!(pair[0].1, pair[1].1, "{settling:?}");
    }
    asked.sort();
    assert_eq!(asked, ["events/lost.jsonl", "events/written.jsonl"]);
    assert_eq!(destination.keys(), [key("events/written.jsonl")]);
    drop(checkpoints);

    // The settlement was saved: the next start has nothing to ask, even of
    // a destination that cannot answer.
    let unreachable = MemoryStore::new();
    unreachable.fail_next(Operation::Exists, 10, Failure::Transient);
    unreachable.fail_next(Operation::CleanUp, 10, Failure::Transient);
    let checkpoints = open(dir.path(), &unreachable).await.unwrap();
    assert!(unreachable.calls().is_empty(), "{:?}", unreachable.calls());
    assert_eq!(admitted(&checkpoints, &source), [1, 2, 5, 6]);
}

#[tokio::test]
async fn a_destination_that_cannot_answer_stops_the_start_and_keeps_the_intents() {
    let dir = tempfile::tempdir().unwrap();
    let destination = MemoryStore::new();
    let source = SourceId::new("shard-1");
    run_stopped_after_one_put(dir.path(), &destination, &source).await;

    // A refusal, then a passing failure, each naming the pending key.
    for (operation, failure) in [
        (Operation::Exists, Failure::PermissionDenied),
        (Operation::CleanUp, Failure::Transient),
    ] {
        destination.fail_next(operation, 1, failure);
        match open(dir.path(), &destination).await {
            Err(CheckpointError::Settle { key, source }) => {
                assert!(key.starts_with("events/"), "{key}");
                assert_eq!(source.is_retryable(), failure == Failure::Transient, "{source:?}");
            }
            other => panic!("{operation:?} failing with {failure:?} gave {other:?}"),
        }
    }

    // Nothing was settled by halves: once the destination answers, the
    // written object still counts and the lost one is read again.
    let checkpoints = open(dir.path(), &destination).await.unwrap();
    assert_eq!(admitted(&checkpoints, &source), [1, 2, 5, 6]);
}

/// A checkpoint store that takes its time and keeps what it was given.
#[derive(Debug, Default)]
struct SlowStore {
    saved: std::sync::Mutex<Vec<super::state::CheckpointState>>,
}

#[async_trait::async_trait]
impl super::CheckpointStore for SlowStore {
    async fn load(&self) -> Result<Option<super::state::CheckpointState>, super::StoreError> {
        Ok(None)
    }

    async fn save(&self, state: &super::state::CheckpointState) -> Result<(), super::StoreError> {
        let state = state.clone();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.saved.lock().unwrap().push(state);
        Ok(())
    }
}

#[tokio::test]
async fn saves_waiting_for_one_in_progress_are_one_save_and_each_change_is_saved_when_save_returns() {
    // Concurrent deliveries each save their intent: one save writes the
    // whole state, so those queued behind a save in progress need one
    // more, not one each; and none returns before its intent is saved.
    let store = std::sync::Arc::new(SlowStore::default());
    #[derive(Debug)]
    struct Shared(std::sync::Arc<SlowStore>);
    #[async_trait::async_trait]
    impl super::CheckpointStore for Shared {
        async fn load(&self) -> Result<Option<super::state::CheckpointState>, super::StoreError> {
            self.0.load().await
        }
        async fn save(&self, state: &super::state::CheckpointState) -> Result<(), super::StoreError> {
            self.0.save(state).await
        }
    }
    let checkpoints = std::sync::Arc::new(
        Checkpointer::open(STREAM, Box::new(Shared(store.clone())), &MemoryStore::new())
            .await
            .unwrap(),
    );
    let source = SourceId::new("a");
    let offsets: Vec<Offset> = (1..=8).map(off).collect();
    let tickets: Vec<_> = checkpoints
        .admit(offsets.iter().map(|o| (&source, o)))
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut deliveries = tokio::task::JoinSet::new();
    for (n, (offset, ticket)) in offsets.iter().zip(tickets).enumerate() {
        let (checkpoints, store) = (checkpoints.clone(), store.clone());
        let (source, offset) = (source.clone(), offset.clone());
        deliveries.spawn(async move {
            let name = format!("k{n}");
            checkpoints.begin_object(&key(&name), Claims::of([(&source, &offset, ticket)]));
            checkpoints.save().await.unwrap();
            let saved = store.saved.lock().unwrap();
            let last = saved.last().expect("a save was made");
            assert!(
                last.pending.iter().any(|p| p.key == name),
                "{name} is saved when its save returns"
            );
        });
    }
    while let Some(done) = deliveries.join_next().await {
        done.unwrap();
    }
    let saves = store.saved.lock().unwrap().len();
    assert!(saves <= 3, "{saves} saves for 8 intents");
}

/// A shard won again by the instance that lost it: what the earlier
/// tenure left here (records in flight, an intent) goes, and the shard
/// resumes from the state its lease holds; completing the old intent
/// later changes nothing.
#[tokio::test]
async fn adopting_a_shard_drops_what_an_earlier_tenure_left() {
    let dir = tempfile::tempdir().unwrap();
    let destination = MemoryStore::new();
    let checkpoints = open(dir.path(), &destination).await.unwrap();
    let source = SourceId::new("shardId-000000000000");
    let offsets: Vec<Offset> = (1..=4).map(off).collect();
    let tickets = checkpoints.admit(offsets.iter().map(|o| (&source, o)));
    let claims = Claims::of(offsets[..2].iter().zip(&tickets).map(|(o, t)| (&source, o, t.unwrap())));
    let old = checkpoints.begin_object(&key("objects/old"), claims);

    // The lease says another owner delivered up to 7.
    let saved = super::state::SourceState {
        checkpoint: Some(off(7)),
        ..Default::default()
    };
    checkpoints.adopt(&source, saved);
    assert_eq!(checkpoints.checkpoint(&source), Some(off(7)));
    checkpoints.complete_object(old);
    assert_eq!(
        checkpoints.checkpoint(&source),
        Some(off(7)),
        "the old intent counts nothing"
    );
    let reread: Vec<Offset> = (6..=9).map(off).collect();
    let tickets = checkpoints.admit(reread.iter().map(|o| (&source, o)));
    let admitted: Vec<u64> = reread
        .iter()
        .zip(tickets)
        .filter(|(_, t)| t.is_some())
        .map(|(o, _)| o.sequence_number.to_u64().unwrap())
        .collect();
    assert_eq!(admitted, [8, 9], "read on after the lease's checkpoint");
}

/// A shard lost, won back and lost again before the first tenure's end
/// passed the router has two ends to pass: records between the two are of
/// the second tenure, lost too, and are not admitted.
#[tokio::test]
async fn a_shard_released_twice_admits_again_only_after_both_tenures_ended() {
    let dir = tempfile::tempdir().unwrap();
    let destination = MemoryStore::new();
    let checkpoints = open(dir.path(), &destination).await.unwrap();
    let source = SourceId::new("shardId-000000000000");
    let admits = |n: u64| {
        let offset = off(n);
        checkpoints.admit([(&source, &offset)]).pop().flatten().is_some()
    };
    assert!(admits(1));
    checkpoints.release(&source);
    checkpoints.adopt(&source, Default::default());
    checkpoints.release(&source);
    assert!(!admits(2), "admitted while released");
    checkpoints.tenure_passed(&source);
    assert!(!admits(3), "admitted with the second tenure's end still to come");
    checkpoints.tenure_passed(&source);
    checkpoints.adopt(&source, Default::default());
    assert!(admits(1), "the next tenure's records are admitted");
}
