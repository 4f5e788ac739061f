//! With coordination (`docs/leases.md`, issue #22 step 2): buffers per
//! shard, the end of a lost lease's tenure in the event stream, and the
//! delivery asking whether the lease is still held.
//!
//! What matters to the user, checked on the objects the store holds: every
//! object holds one shard's records (its next owner can redo it alone);
//! records of a shard whose lease was lost are neither written nor
//! counted here (its next owner archives them), and once it is won back
//! its records are archived once; an object whose lease is lost between
//! its intent and its put is not put.

use std::collections::BTreeMap;

use super::*;
use crate::buffer::BufferLimits;
use crate::checkpoint::state::SourceState;
use crate::limits::Charged;
use crate::source::SourceEvent;

pub(super) const A: &str = "shardId-a";
const B: &str = "shardId-b";

/// A record of `shard`, whose bytes name the shard: objects can be told
/// apart by what they hold, not only by their key.
pub(super) fn shard_record(shard: &str, sequence: u64, data: &str) -> Record {
    Record {
        data: Bytes::from(data.replace("SHARD", shard)),
        position: Position {
            source: SourceId::new(shard),
            offset: offset(sequence),
        },
        partition_key: None,
        arrival: arrival(),
    }
}

pub(super) fn valid(shard: &str, sequence: u64) -> Record {
    shard_record(shard, sequence, &format!(r#"{{"shard":"SHARD","n":{sequence}}}"#))
}

/// A record that is not JSON: it becomes an error record.
pub(super) fn invalid(shard: &str, sequence: u64) -> Record {
    shard_record(shard, sequence, &format!("SHARD {sequence} is not json"))
}

/// Runs a router (per shard, or not) and the harness's writer; returns the
/// channel the test sends events on and the task that ends with both.
pub(super) fn pipeline(
    harness: &Harness,
    per_shard: bool,
) -> (mpsc::Sender<Charged<SourceEvent>>, tokio::task::JoinHandle<()>) {
    pipeline_in(harness, per_shard, crate::limits::MemoryBudget::unlimited())
}

/// [`pipeline`], the buffers charging `budget`.
pub(super) fn pipeline_in(
    harness: &Harness,
    per_shard: bool,
    budget: crate::limits::MemoryBudget,
) -> (mpsc::Sender<Charged<SourceEvent>>, tokio::task::JoinHandle<()>) {
    let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n";
    let config = crate::config::parse(text, "test", &|_| None).unwrap();
    let limits = BufferLimits {
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
        max_records: 1000,
    };
    let (batches_tx, batches_rx) = mpsc::channel(crate::pipeline::BATCH_CHANNEL_CAPACITY);
    let (events, events_rx) = mpsc::channel(4);
    let mut router = crate::pipeline::router::Router::new(
        &config,
        limits,
        harness.checkpoints.clone(),
        harness.telemetry.clone(),
        batches_tx,
        budget,
    );
    if per_shard {
        router = router.per_shard();
    }
    let writer = harness.writer();
    let done = tokio::spawn(async move {
        let written = tokio::spawn(writer.run(batches_rx));
        let routed = router.run(events_rx, tokio_util::sync::CancellationToken::new()).await;
        assert!(matches!(routed, Ok(FlushReason::EndOfInput)), "{routed:?}");
        written.await.unwrap().expect("every object is written");
    });
    (events, done)
}

pub(super) async fn send(events: &mpsc::Sender<Charged<SourceEvent>>, event: SourceEvent) {
    events.send(Charged::free(event)).await.unwrap();
}

/// Every record line the store holds, data and error objects alike (an
/// error record by its `rawData`), by object key.
pub(super) fn lines_by_object(harness: &Harness) -> BTreeMap<String, Vec<String>> {
    harness
        .keys()
        .into_iter()
        .map(|k| {
            let object = harness.object(&k);
            let lines = if k.starts_with("errors/") {
                error_lines(&object)
                    .iter()
                    .map(|e| String::from_utf8(raw_data(e)).unwrap())
                    .collect()
            } else {
                String::from_utf8(object).unwrap().lines().map(str::to_owned).collect()
            };
            (k, lines)
        })
        .collect()
}

/// Every line the store holds, sorted: each record must be there once.
pub(super) fn all_lines(harness: &Harness) -> Vec<String> {
    let mut lines: Vec<String> = lines_by_object(harness).into_values().flatten().collect();
    lines.sort();
    lines
}

pub(super) fn expected(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect();
    lines.sort();
    lines
}

/// Waits (a few seconds at most) until `done` says so.
pub(super) async fn until(done: impl Fn() -> bool, what: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not so: {what}"));
}

/// Two shards' records interleaved, data and error records: with
/// per-shard buffers every object holds one shard's records, and its key
/// names that shard; every record is in one object.
#[tokio::test]
async fn with_per_shard_buffers_every_object_holds_one_shards_records() {
    let harness = Harness::json_lines("").await;
    let (events, done) = pipeline(&harness, true);
    let mut sent = Vec::new();
    for n in 1..=6 {
        let batch = vec![
            valid(A, 2 * n - 1),
            valid(B, 2 * n - 1),
            invalid(A, 2 * n),
            invalid(B, 2 * n),
        ];
        sent.extend(batch.iter().cloned());
        send(&events, SourceEvent::Records(batch)).await;
    }
    drop(events);
    done.await.unwrap();

    let objects = lines_by_object(&harness);
    assert_eq!(objects.len(), 4, "data and errors, per shard: {:?}", objects.keys());
    for (key, lines) in &objects {
        let shard = if key.contains(&format!("-{A}-")) { A } else { B };
        assert!(key.contains(&format!("-{shard}-")), "{key} names no shard");
        assert!(
            lines.iter().all(|line| line.contains(shard)),
            "{key} holds records of another shard than {shard}: {lines:?}"
        );
    }
    assert_eq!(all_lines(&harness), expected(&sent), "every record once");
}

/// Without coordination, nothing changes: one data object for both shards.
#[tokio::test]
async fn without_per_shard_buffers_shards_share_their_objects() {
    let harness = Harness::json_lines("").await;
    let (events, done) = pipeline(&harness, false);
    send(&events, SourceEvent::Records(vec![valid(A, 1), valid(B, 1)])).await;
    drop(events);
    done.await.unwrap();
    assert_eq!(harness.keys().len(), 1);
}

/// Shard A's lease is lost with records of it buffered and more on their
/// way: none of them is written or counted here, B's go on. A is won back
/// (a new tenure, from the lease's checkpoint): what its new reader reads
/// is archived, each record once.
#[tokio::test]
async fn a_released_shards_records_are_dropped_until_its_next_tenure() {
    let harness = Harness::json_lines("").await;
    let checkpoints = harness.checkpoints.clone();
    let budget = crate::limits::MemoryBudget::new(usize::MAX);
    let (events, done) = pipeline_in(&harness, true, budget.clone());
    let a = SourceId::new(A);
    let b = SourceId::new(B);

    // Buffered, A with an error record too.
    send(
        &events,
        SourceEvent::Records(vec![valid(A, 1), valid(B, 1), invalid(A, 2)]),
    )
    .await;
    until(|| budget.used() > 0, "the router buffers the first records").await;
    // The lease of A is lost: the coordinator gives the shard up at once...
    checkpoints.release(&a);
    // ...while its reader's last records are still on their way.
    send(&events, SourceEvent::Records(vec![valid(A, 3), valid(B, 2)])).await;
    // Its reader has stopped: the tenure's end.
    send(&events, SourceEvent::ShardReleased { source: a.clone() }).await;
    // A's buffers are gone, their memory with them: B's records are all
    // the buffers hold.
    let b_only = [valid(B, 1), valid(B, 2)]
        .iter()
        .map(|r| crate::buffer::record_cost(r.data.len()))
        .sum::<usize>();
    until(|| budget.used() == b_only, "the buffers hold only B's records").await;
    // Won back, from the lease's checkpoint (nothing of A delivered): the
    // new tenure's reader reads A from its start.
    checkpoints.adopt(&a, SourceState::default());
    let again = vec![valid(A, 1), invalid(A, 2), valid(A, 3), valid(A, 4)];
    send(&events, SourceEvent::Records(again.clone())).await;
    send(&events, SourceEvent::Records(vec![valid(B, 3)])).await;
    drop(events);
    done.await.unwrap();

    let mut archived = again;
    archived.extend([valid(B, 1), valid(B, 2), valid(B, 3)]);
    assert_eq!(
        all_lines(&harness),
        expected(&archived),
        "every record once: none of A's first tenure, all of its second"
    );
    assert_eq!(checkpoints.checkpoint(&a), Some(offset(4)));
    assert_eq!(checkpoints.checkpoint(&b), Some(offset(3)));
}

/// Records of A arriving after its lease was lost, with no `ShardReleased`
/// yet, are not admitted: the checkpoint holds nothing of them, and the
/// end of that tenure's input does not finish the shard.
#[tokio::test]
async fn a_released_shard_admits_nothing_until_its_tenure_ends() {
    let harness = Harness::json_lines("").await;
    let checkpoints = harness.checkpoints.clone();
    let (events, done) = pipeline(&harness, true);
    let a = SourceId::new(A);
    checkpoints.release(&a);
    send(&events, SourceEvent::Records(vec![valid(A, 1), valid(B, 1)])).await;
    send(
        &events,
        SourceEvent::Ended {
            source: a.clone(),
            flush: true,
        },
    )
    .await;
    drop(events);
    done.await.unwrap();
    assert_eq!(all_lines(&harness), expected(&[valid(B, 1)]));
    assert!(!checkpoints.knows(&a), "A is counted under a lease not held");
    assert!(!checkpoints.is_finished(&a));
}

/// The keeper, as the delivery sees it: which shards are held.
struct Held(Mutex<Vec<SourceId>>);

impl super::super::Leases for Held {
    fn holds(&self, shard: &SourceId) -> bool {
        self.0.lock().unwrap().contains(shard)
    }
}

/// An object whose shard's lease is no longer held when its intent is
/// saved is not put, and its records are not counted; the held shard's
/// object is.
#[tokio::test]
async fn an_object_of_a_shard_no_longer_held_is_not_put() {
    let harness = Harness::json_lines("").await;
    let held = Arc::new(Held(Mutex::new(vec![SourceId::new(B)])));
    let mut writer = harness.writer();
    writer.objects.leases = Some(held);
    let batches = vec![
        harness.batch(BufferKey::Data, vec![valid(A, 1), valid(A, 2)]),
        harness.batch(BufferKey::Data, vec![valid(B, 1)]),
    ];
    let (tx, rx) = mpsc::channel(2);
    for batch in batches {
        tx.send(batch).await.unwrap();
    }
    drop(tx);
    writer.run(rx).await.unwrap();

    assert_eq!(all_lines(&harness), expected(&[valid(B, 1)]), "only B's object is put");
    let puts = harness.store().calls();
    assert!(
        puts.iter()
            .all(|c| c.key.as_ref().is_none_or(|k| !k.as_str().contains(A))),
        "a put of A's object was tried: {puts:?}"
    );
    assert_eq!(harness.checkpoints.checkpoint(&SourceId::new(A)), None);
    assert_eq!(harness.checkpoints.checkpoint(&SourceId::new(B)), Some(offset(1)));
}

/// A batch read in an earlier tenure of A's lease reaches the writer after
/// A was won back: it is not put, and counts for nothing in the new
/// tenure, whose own records are delivered and checkpointed.
#[tokio::test]
async fn an_object_of_an_earlier_tenure_is_not_put_after_the_shard_is_won_back() {
    let harness = Harness::json_lines("").await;
    let a = SourceId::new(A);
    let old = harness.batch(BufferKey::Data, vec![valid(A, 1), valid(A, 2)]);
    harness.checkpoints.release(&a);
    harness.checkpoints.tenure_passed(&a);
    harness.checkpoints.adopt(&a, SourceState::default());
    let new = harness.batch(BufferKey::Data, vec![valid(A, 1)]);
    harness.write(vec![old]).await.unwrap();
    assert!(harness.keys().is_empty(), "the earlier tenure's object was put");
    assert_eq!(harness.checkpoints.checkpoint(&a), None);
    harness.write(vec![new]).await.unwrap();
    assert_eq!(all_lines(&harness), expected(&[valid(A, 1)]));
    assert_eq!(harness.checkpoints.checkpoint(&a), Some(offset(1)));
}

/// A TCP listener standing in for a record endpoint: it counts the
/// connections made to it and answers none. Returns its address.
async fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (address, connections)
}

/// The destination of a configuration whose `[destination]` is `lines`,
/// backed up to a local directory.
fn destination_of(lines: &str) -> crate::config::DestinationConfig {
    let text = format!(
        "[source]\ntype = \"stdin\"\n[destination]\n{lines}\n[destination.backup]\ntype = \"local\"\npath = \"backup\"\n"
    );
    crate::config::parse(&text, "test", &|_| None).unwrap().destination
}

/// Delivers one data batch of shard A (whose lease is not held) through
/// `writer`, with a deadline: a request tried against the listener fails
/// and is retried, so a delivery that does not ask the lease ends late or
/// with an error, not quickly and cleanly.
async fn deliver_unheld(harness: &Harness, mut writer: Writer) {
    writer.objects.leases = Some(Arc::new(Held(Mutex::new(vec![SourceId::new(B)]))));
    let batch = harness.batch(BufferKey::Data, vec![valid(A, 1), valid(A, 2)]);
    let (tx, rx) = mpsc::channel(1);
    tx.send(batch).await.unwrap();
    drop(tx);
    let written = tokio::time::timeout(Duration::from_secs(3), writer.run(rx)).await;
    assert!(
        matches!(written, Ok(Ok(()))),
        "the delivery did not end at once: {written:?}"
    );
}

/// An HTTP endpoint is not sent a request of records whose shard's lease
/// is no longer held, and they are not counted: their next owner sends
/// them.
#[tokio::test]
async fn no_http_request_for_a_shard_no_longer_held() {
    let harness = Harness::json_lines("").await;
    let (address, connections) = counting_listener().await;
    let crate::config::DestinationConfig::Http(http) =
        destination_of(&format!("type = \"http\"\nurl = \"http://{address}/\""))
    else {
        unreachable!("an http destination")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writer = harness.writer();
    writer.endpoint = Some(super::super::endpoint::EndpointDelivery::new(STREAM, &http, &stop).unwrap());
    deliver_unheld(&harness, writer).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a request was sent");
    assert!(harness.keys().is_empty(), "something was written: {:?}", harness.keys());
    assert_eq!(harness.checkpoints.checkpoint(&SourceId::new(A)), None);
}

/// A Kinesis destination is not sent a window of records whose shard's
/// lease is no longer held, and they are not counted.
#[tokio::test]
async fn no_kinesis_window_for_a_shard_no_longer_held() {
    let harness = Harness::json_lines("").await;
    let (address, connections) = counting_listener().await;
    let crate::config::DestinationConfig::Kinesis(target) = destination_of(&format!(
        "type = \"kinesis\"\nstream = \"target\"\nregion = \"us-east-1\"\nendpoint = \"http://{address}\""
    )) else {
        unreachable!("a kinesis destination")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writer = harness.writer();
    writer.kinesis = Some(super::super::kinesis::KinesisDelivery::new(&target, &stop).await);
    deliver_unheld(&harness, writer).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a PutRecords call was made");
    assert!(harness.keys().is_empty(), "something was written: {:?}", harness.keys());
    assert_eq!(harness.checkpoints.checkpoint(&SourceId::new(A)), None);
}
