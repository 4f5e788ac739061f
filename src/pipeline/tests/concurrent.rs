//! Concurrent puts (`max_concurrent_puts`): objects written in any order,
//! and a crash with several of them in flight.
//!
//! The store's [`Gate`] holds every put back until the test lets it
//! through, so a test chooses the order in which objects complete. After
//! each one, the checkpoint file must say exactly how far every earlier
//! record is delivered: never past a record whose object is not written.
//! Then the writer is dropped mid-flight (as `kill -9` would leave the
//! file), the checkpoints are opened again and settled against the store,
//! the records are read again, and every record must end up in exactly
//! one object.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::*;

/// Lets puts through: all of them (open, the default), or only those
/// whose key a test opened.
#[derive(Debug, Default)]
pub(super) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    opened: HashSet<String>,
    /// Key prefixes let through even while closed.
    opened_prefixes: Vec<String>,
    /// Keys whose puts wait at the gate now.
    waiting: HashSet<String>,
}

impl Gate {
    /// Returns once a put of `key` may go on.
    pub(super) async fn pass(&self, key: &ObjectKey) {
        loop {
            {
                let mut state = self.state.lock().unwrap();
                let opened = state.opened.contains(key.as_str())
                    || state
                        .opened_prefixes
                        .iter()
                        .any(|prefix| key.as_str().starts_with(prefix));
                if !state.closed || opened {
                    state.waiting.remove(key.as_str());
                    return;
                }
                state.waiting.insert(key.to_string());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    fn open_all(&self) {
        self.state.lock().unwrap().closed = false;
    }

    fn open(&self, key: &str) {
        self.state.lock().unwrap().opened.insert(key.to_owned());
    }

    fn open_prefix(&self, prefix: &str) {
        self.state.lock().unwrap().opened_prefixes.push(prefix.to_owned());
    }

    fn waiting(&self) -> usize {
        self.state.lock().unwrap().waiting.len()
    }

    fn waiting_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().waiting.iter().cloned().collect()
    }
}

/// Polls `done` every millisecond, for up to 10 seconds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The key of the raw, uncompressed object whose first record is `first`.
fn raw_key(first: u64) -> String {
    format!("events/2024/05/06/07/clicks-shard-1-{first}-0")
}

/// Batches of `sizes` records, numbered from 1, each record's data its
/// number (`r<n>`).
fn numbered(sizes: &[usize]) -> Vec<Vec<Record>> {
    let mut next = 0;
    sizes
        .iter()
        .map(|&size| {
            (0..size)
                .map(|_| {
                    next += 1;
                    record(next, &format!("r{next}"))
                })
                .collect()
        })
        .collect()
}

/// Every record line in the store, with how many objects hold it.
fn stored_lines(h: &Harness) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    for key in h.store().keys() {
        let body = h.store().get(&key).unwrap();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            *lines.entry(String::from_utf8(line.to_vec()).unwrap()).or_default() += 1;
        }
    }
    lines
}

impl Harness {
    /// Opens the checkpoints again from the file, settling its pending
    /// objects against the store, as a restarted run does.
    async fn reopen(&mut self) {
        // The dead run's lock goes with it: let go of its checkpoints
        // before they are opened again.
        let elsewhere = LocalFileStore::open(&self._dir.path().join("elsewhere"), STREAM).unwrap();
        let placeholder = Checkpointer::open(STREAM, Box::new(elsewhere), &*self.watched)
            .await
            .unwrap();
        let dead = std::mem::replace(&mut self.checkpoints, Arc::new(placeholder));
        // Its aborted deliveries are dropped on their own threads.
        wait_until("the dead run's deliveries are gone", || Arc::strong_count(&dead) == 1).await;
        drop(dead);
        let store = LocalFileStore::open(&self._dir.path().join("state"), STREAM).unwrap();
        let checkpoints = Checkpointer::open(STREAM, Box::new(store), &*self.watched)
            .await
            .unwrap();
        self.checkpoints = Arc::new(checkpoints);
    }

    /// The records not yet delivered, read again in order and admitted by
    /// the (reopened) checkpoints, as one batch.
    fn read_again(&self, records: &[Record]) -> Option<Batch> {
        let tickets = self
            .checkpoints
            .admit(records.iter().map(|r| (&r.position.source, &r.position.offset)));
        let items: Vec<Buffered> = records
            .iter()
            .zip(tickets)
            .filter_map(|(record, ticket)| {
                ticket.map(|ticket| Buffered {
                    record: record.clone(),
                    ticket,
                })
            })
            .collect();
        (!items.is_empty()).then(|| Batch {
            key: BufferKey::Data,
            bytes: items.iter().map(|b| b.record.data.len()).sum(),
            items,
            reason: FlushReason::EndOfInput,
            charge: Default::default(),
            encoded: None,
        })
    }
}

/// Writes `sizes` batches all at once, lets their puts complete in
/// `order`, checking the checkpoint after each; then, if `crash_after` is
/// less than their number, drops the writer with the others in flight,
/// restarts and reads everything again. Every record must be in exactly
/// one object, and the checkpoint at the last.
async fn complete_out_of_order(sizes: Vec<usize>, order: Vec<usize>, crash_after: usize) {
    let mut h = Harness::new(r#"compression = "none""#, "type = \"raw\"\ndelimiter = \"\\n\"").await;
    h.max_concurrent = sizes.len();
    h.watched.gate.close();
    let batches = numbered(&sizes);
    let all: Vec<Record> = batches.iter().flatten().cloned().collect();
    let (tx, rx) = mpsc::channel(batches.len());
    for records in &batches {
        tx.send(h.batch(BufferKey::Data, records.clone())).await.unwrap();
    }
    drop(tx);
    let writer = tokio::spawn(h.writer().run(rx));

    // Every object is in flight at once, each under its saved intent.
    wait_until("every put waits at the gate", || {
        h.watched.gate.waiting() == sizes.len()
    })
    .await;
    assert_eq!(h.saved().pending.len(), sizes.len());
    assert_eq!(h.checkpoint(), None);

    let firsts: Vec<u64> = batches
        .iter()
        .map(|b| b[0].position.offset.sequence_number.as_str().parse().unwrap())
        .collect();
    let mut written = vec![false; batches.len()];
    for &index in order.iter().take(crash_after) {
        let key = raw_key(firsts[index]);
        h.watched.gate.open(&key);
        wait_until("the object is written and checkpointed", || {
            !h.saved().pending.iter().any(|p| p.key == key)
        })
        .await;
        written[index] = true;
        // The checkpoint is the last record of the written prefix of the
        // batches: never past a record whose object is not written.
        let prefix = written.iter().take_while(|w| **w).count();
        let expected = match prefix {
            0 => None,
            n => Some(offset(sizes[..n].iter().sum::<usize>() as u64)),
        };
        assert_eq!(h.checkpoint(), expected, "after writing batch {index} of {order:?}");
    }

    if crash_after < batches.len() {
        // Killed with puts in flight: what the file says is all there is.
        writer.abort();
        assert!(writer.await.unwrap_err().is_cancelled());
        h.watched.gate.open_all();
        h.reopen().await;
        h.max_concurrent = 1;
        if let Some(batch) = h.read_again(&all) {
            h.write(vec![batch]).await.unwrap();
        }
    } else {
        writer.await.unwrap().unwrap();
    }

    let expected: BTreeMap<String, usize> = all
        .iter()
        .map(|r| (String::from_utf8(r.data.to_vec()).unwrap(), 1))
        .collect();
    assert_eq!(stored_lines(&h), expected, "every record in exactly one object");
    assert_eq!(h.checkpoint(), Some(offset(all.len() as u64)));
    assert!(h.saved().pending.is_empty());
}

#[tokio::test]
async fn a_later_object_written_first_does_not_move_the_checkpoint_past_an_earlier_one() {
    complete_out_of_order(vec![2, 3, 1], vec![2, 1, 0], 3).await;
}

#[tokio::test]
async fn a_crash_with_earlier_objects_unwritten_reads_them_again_and_skips_the_later_ones_written() {
    // Batches 2 and 4 are written, 1 and 3 are not when the run dies.
    complete_out_of_order(vec![2, 2, 2, 2], vec![1, 3, 0, 2], 2).await;
}

/// Parquet encodes one batch at a time (its encoder works on every core),
/// but that must not make puts wait for each other: every batch's object
/// is in flight at once, each under its intent, and once they are let
/// through every record is in exactly one file.
#[tokio::test]
async fn parquet_batches_are_encoded_in_turn_and_still_put_at_once() {
    let mut h = Harness::new(r#"compression = "none""#, r#"type = "parquet""#).await;
    h.max_concurrent = 3;
    h.watched.gate.close();
    // The table schema's object, put before the first file under it.
    h.watched.gate.open_prefix(crate::pipeline::object::TABLE_SCHEMAS);
    let batches: Vec<Vec<Record>> = (0..3u64)
        .map(|b| {
            (1..=4)
                .map(|i| record(b * 4 + i, &format!(r#"{{"n":{}}}"#, b * 4 + i)))
                .collect()
        })
        .collect();
    let (tx, rx) = mpsc::channel(batches.len());
    for records in &batches {
        tx.send(h.batch(BufferKey::Data, records.clone())).await.unwrap();
    }
    drop(tx);
    let writer = tokio::spawn(h.writer().run(rx));
    wait_until("every put waits at the gate", || h.watched.gate.waiting() == 3).await;
    assert_eq!(h.saved().pending.len(), 3);
    h.watched.gate.open_all();
    writer.await.unwrap().unwrap();

    let mut numbers = Vec::new();
    for key in h
        .store()
        .keys()
        .into_iter()
        .filter(|k| k.as_str().starts_with("events/"))
    {
        let body = h.store().get(&key).unwrap();
        spillway_transforms::format::parquet::read_archive(body, |r| {
            let value: serde_json::Value = serde_json::from_slice(r.data).unwrap();
            numbers.push(value["n"].as_u64().unwrap());
        })
        .unwrap();
    }
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=12).collect::<Vec<u64>>(),
        "every record in exactly one file"
    );
    assert_eq!(h.checkpoint(), Some(offset(12)));
}

/// Writes three batches of 8 to 11 bytes of records as gzip'd JSON lines,
/// with three puts allowed at once, streamed objects from `in_turn_from`
/// bytes encoded in turn, and the gate closed; returns the harness, the
/// running writer and the records.
async fn three_gzip_batches(
    in_turn_from: Option<usize>,
) -> (Harness, tokio::task::JoinHandle<Result<(), RunError>>, Vec<Record>) {
    let mut h = Harness::json_lines("").await;
    h.max_concurrent = 3;
    h.streamed_in_turn_from = in_turn_from;
    h.watched.gate.close();
    let batches = numbered(&[4, 4, 4]);
    let (tx, rx) = mpsc::channel(batches.len());
    for records in &batches {
        tx.send(h.batch(BufferKey::Data, records.clone())).await.unwrap();
    }
    drop(tx);
    let writer = tokio::spawn(h.writer().run(rx));
    (h, writer, batches.into_iter().flatten().collect())
}

/// Lets every put through, waits for the writer, and checks that every
/// record is in exactly one object and the checkpoint is at the last.
async fn finish_and_check(h: &Harness, writer: tokio::task::JoinHandle<Result<(), RunError>>, all: &[Record]) {
    h.watched.gate.open_all();
    writer.await.unwrap().unwrap();
    let mut lines = BTreeMap::<String, usize>::new();
    for key in h.keys() {
        for line in h.object(&key).split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            *lines.entry(String::from_utf8(line.to_vec()).unwrap()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = all
        .iter()
        .map(|r| (String::from_utf8(r.data.to_vec()).unwrap(), 1))
        .collect();
    assert_eq!(lines, expected, "every record in exactly one object");
    assert_eq!(h.checkpoint(), Some(offset(all.len() as u64)));
    assert!(h.saved().pending.is_empty());
}

/// A large streamed object compressed on every core into a local store
/// (`Delivery::encodes_in_turn`) is encoded by its put, one at a time:
/// while the first put waits before its object is produced, the other
/// batches are not even taken (no intent saved; their records stay with
/// the router, which stops filling), and the next put begins only once
/// the first object has been produced.
#[tokio::test]
async fn large_streamed_objects_into_a_local_store_are_put_in_turn() {
    let (h, writer, all) = three_gzip_batches(Some(8)).await;
    let mut seen = Vec::new();
    for turn in 0..3 {
        wait_until("the next put waits at the gate", || {
            h.watched.gate.waiting_keys().iter().any(|k| !seen.contains(k))
        })
        .await;
        // Given time to take another batch, the writer does not.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = h.watched.gate.waiting_keys();
        assert_eq!(waiting.len(), 1, "turn {turn}: one put at a time, not {waiting:?}");
        assert_eq!(h.saved().pending.len(), 1, "turn {turn}: one batch taken");
        h.watched.gate.open(&waiting[0]);
        seen.push(waiting[0].clone());
    }
    finish_and_check(&h, writer, &all).await;
}

/// Below that size, or into a store that is not local, streamed objects
/// overlap up to `max_concurrent_puts`: small objects do not keep the
/// cores busy, and a service's round trips are waited on side by side.
#[tokio::test]
async fn small_streamed_objects_and_objects_sent_to_a_service_overlap() {
    for in_turn_from in [Some(12), None] {
        let (h, writer, all) = three_gzip_batches(in_turn_from).await;
        wait_until("every put waits at the gate", || h.watched.gate.waiting() == 3).await;
        assert_eq!(h.saved().pending.len(), 3);
        finish_and_check(&h, writer, &all).await;
    }
}

/// Shuffles `0..n` by `keys` (one random key per index).
fn permutation(keys: &[u32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| (keys[i], i));
    order
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn in_any_completion_order_and_any_crash_point_every_record_is_written_once(
        sizes in prop::collection::vec(1usize..4, 1..7),
        keys in prop::collection::vec(any::<u32>(), 7),
        crash_fraction in 0.0f64..=1.0,
    ) {
        let order = permutation(&keys[..sizes.len()]);
        let crash_after = (crash_fraction * sizes.len() as f64).round() as usize;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(complete_out_of_order(sizes, order, crash_after));
    }
}

/// Streamed objects take turns only in a local store, and only with a codec
/// that compresses on every core, from the size at which it does.
#[test]
fn only_a_local_store_with_a_codec_on_every_core_takes_turns() {
    let dir = tempfile::tempdir().unwrap();
    let local = spillway_destinations::LocalStore::new(dir.path());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let in_turn_from = |store: &dyn ObjectStore, codec| super::super::delivery::streamed_in_turn_from(store, codec);
    assert_eq!(in_turn_from(&local, Compression::Gzip), Some(cores * 1024 * 1024));
    assert_eq!(in_turn_from(&local, Compression::Zstd), Some(cores * 2 * 1024 * 1024));
    for codec in [Compression::None, Compression::Snappy, Compression::Zip] {
        assert_eq!(in_turn_from(&local, codec), None, "{codec:?}");
    }
    assert_eq!(in_turn_from(&MemoryStore::new(), Compression::Zstd), None);
}
