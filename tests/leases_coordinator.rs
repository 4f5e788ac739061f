//! The Kinesis source under coordination (issue #22, step 1), against
//! kinesalite and moto's DynamoDB: several instances of the source, each
//! run in this process as a library, share a stream through the lease
//! table.
//!
//! The pipeline does not run a leased source yet (its buffers are not per
//! shard, and its delivery does not check the lease before a put: steps 2
//! and 5 of `docs/leases.md`), so each instance's records go to a stand-in
//! for the delivery ([`deliver`]): it checkpoints each batch of one shard
//! as one object through the real checkpointer and lease store, and counts
//! the batch as this instance's only if that checkpoint landed in the lease
//! (the instance still holds it after the save). What the tests assert is
//! what the source yields: which records each instance reads, and that
//! every record is delivered by exactly one of them.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway::checkpoint::{Checkpointer, Claims};
use spillway::coordination::config::CoordinationConfig;
use spillway::coordination::dynamodb::{LeaseTable, TableOptions};
use spillway::coordination::keeper::Keeper;
use spillway::coordination::store::LeaseStore;
use spillway::source::kinesis::api::StreamRef;
use spillway::source::kinesis::config::{KinesisConfig, StartPosition};
use spillway::source::kinesis::leased::{self, Coordination};
use spillway::source::kinesis::KinesisSource;
use spillway::source::{Source, SourceContext, SourceEvent};
use spillway::telemetry::Telemetry;
use spillway_destinations::{LocalStore, ObjectKey, ObjectStore, PutOptions, PutOutcome};
use spillway_transforms::SequenceNumber;
use support::kinesis::{
    client, create_stream, merge, open_shard_hash_keys, peer, put_to_hash_key, split, unique_stream, Produced,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Short, as the issue asks of tests: failover in seconds.
const LEASE: Duration = Duration::from_secs(2);
const PIPELINE: &str = "orders";

/// A record as an instance delivered it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivered {
    shard: String,
    sequence: String,
    id: u64,
    /// When it was delivered, in the order of every delivery of the test.
    at: u64,
}

/// Orders deliveries across instances.
static DELIVERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One instance: its leased source and the stand-in delivery behind it.
struct Instance {
    worker: String,
    keeper: Keeper,
    /// The source's stop.
    stop: CancellationToken,
    /// Stops the stand-in delivery (it drains the channel after, delivering
    /// nothing), as a pipeline flushes before it hands its shards over.
    delivering: CancellationToken,
    delivered: Arc<Mutex<Vec<Delivered>>>,
    /// Every record the source yielded, in order.
    received: Arc<Mutex<Vec<Delivered>>>,
    /// Records received of a shard this instance did not hold then.
    strays: Arc<Mutex<Vec<Delivered>>>,
    /// The shards whose tenure's end (`SourceEvent::ShardReleased`) came.
    released: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    /// The store redone intents are put in (create-only), and what each
    /// put found.
    archive: Arc<LocalStore>,
    redone: Arc<Mutex<Vec<Redone>>>,
    harness: Mutex<Option<tokio::task::JoinHandle<()>>>,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(stream: &str, table: &str, worker: &str) -> Self {
        Self::start_at(stream, table, worker, &peer("SPILLWAY_TEST_MOTO")).await
    }

    /// An instance whose lease table is at `dynamodb`.
    async fn start_at(stream: &str, table: &str, worker: &str, dynamodb: &str) -> Self {
        Self::start_with(stream, table, worker, dynamodb, StartPosition::TrimHorizon).await
    }

    /// An instance reading shards without a checkpoint from `start`.
    async fn start_with(stream: &str, table: &str, worker: &str, dynamodb: &str, start: StartPosition) -> Self {
        Self::start_archiving(stream, table, worker, dynamodb, start, None).await
    }

    /// An instance putting redone intents into `archive` (a store of its
    /// own if `None`).
    async fn start_archiving(
        stream: &str,
        table: &str,
        worker: &str,
        dynamodb: &str,
        start: StartPosition,
        archive: Option<Arc<LocalStore>>,
    ) -> Self {
        let coordination = CoordinationConfig {
            table: table.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(dynamodb.into()),
            worker_id: Some(worker.into()),
            lease_duration: LEASE,
        };
        let stream_ref = StreamRef::Name(stream.into());
        let keeper = leased::open_keeper(&coordination, PIPELINE, &stream_ref).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Arc::new(
            Checkpointer::open(
                PIPELINE,
                Box::new(LeaseStore::new(keeper.clone())),
                &LocalStore::new(dir.path()),
            )
            .await
            .unwrap(),
        );
        let config = KinesisConfig {
            stream: stream_ref,
            region: Some("us-east-1".into()),
            endpoint: Some(peer("SPILLWAY_TEST_KINESALITE")),
            start,
            idle_poll: Duration::from_millis(200),
            max_records: 10_000,
            discovery_interval: Duration::from_secs(1),
        };
        let stop = CancellationToken::new();
        let mut source = KinesisSource::leased(
            config,
            Coordination {
                keeper: keeper.clone(),
                stop: stop.clone(),
            },
        );
        source.check().await.unwrap();
        let (events, events_rx) = mpsc::channel(16);
        Box::new(source)
            .run(SourceContext {
                events,
                checkpoints: checkpoints.clone(),
                telemetry: Telemetry::standalone(PIPELINE),
            })
            .await;
        let delivering = CancellationToken::new();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let strays = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let archive = archive.unwrap_or_else(|| Arc::new(LocalStore::new(dir.path().join("archive"))));
        let redone = Arc::new(Mutex::new(Vec::new()));
        let harness = tokio::spawn(deliver(
            worker.to_owned(),
            events_rx,
            keeper.clone(),
            checkpoints,
            delivering.clone(),
            Outputs {
                delivered: delivered.clone(),
                received: received.clone(),
                strays: strays.clone(),
                released: released.clone(),
                failures: failures.clone(),
                archive: archive.clone(),
                redone: redone.clone(),
            },
        ));
        Self {
            worker: worker.into(),
            keeper,
            stop,
            delivering,
            delivered,
            received,
            strays,
            released,
            failures,
            archive,
            redone,
            harness: Mutex::new(Some(harness)),
            _dir: dir,
        }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }

    /// Stops the source and waits until it ended (the channel closed).
    async fn stop(&self) {
        self.stop.cancel();
        let harness = self.harness.lock().unwrap().take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(15), harness)
            .await
            .unwrap_or_else(|_| panic!("{}'s source did not end at its stop", self.worker))
            .unwrap();
    }

    fn assert_no_failure(&self) {
        let failures = self.failures.lock().unwrap();
        assert!(failures.is_empty(), "{}: {failures:?}", self.worker);
    }
}

/// What the stand-in delivery reports.
struct Outputs {
    delivered: Arc<Mutex<Vec<Delivered>>>,
    received: Arc<Mutex<Vec<Delivered>>>,
    strays: Arc<Mutex<Vec<Delivered>>>,
    released: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    archive: Arc<LocalStore>,
    redone: Arc<Mutex<Vec<Redone>>>,
}

/// An intent of a shard's last owner, redone by the stand-in delivery.
#[derive(Clone, Debug)]
struct Redone {
    key: String,
    outcome: PutOutcome,
    records: Vec<Delivered>,
}

fn delivered_of(shard: &str, record: &spillway_transforms::Record) -> Delivered {
    let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
    Delivered {
        shard: shard.to_owned(),
        sequence: record.position.offset.sequence_number.to_string(),
        id: value["id"].as_u64().unwrap(),
        at: DELIVERIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
    }
}

/// The stand-in for the pipeline's delivery: each batch (one shard's
/// records) becomes one object whose checkpoint is saved through the lease
/// store. A batch of a shard this instance does not hold is dropped unread
/// (the pipeline's router drops a released shard's records until its
/// tenure's end, `SourceEvent::ShardReleased`, which this stand-in notes). The intent and
/// its completion are saved in one write here, since nothing is put. The
/// records of an intent the shard's last owner left in the lease are
/// gathered as the router does (`Checkpointer::redo_routing`) and put,
/// once all are in, under the intent's key into [`Instance::archive`],
/// create-only, between the intent's save and its completion's.
async fn deliver(
    worker: String,
    mut events: mpsc::Receiver<SourceEvent>,
    keeper: Keeper,
    checkpoints: Arc<Checkpointer>,
    delivering: CancellationToken,
    outputs: Outputs,
) {
    let Outputs {
        delivered,
        received,
        strays,
        released,
        failures,
        archive,
        redone,
    } = outputs;
    let mut objects = 0u64;
    let mut redoing: BTreeMap<Arc<str>, Vec<(spillway_transforms::Record, spillway::checkpoint::Ticket)>> =
        BTreeMap::new();
    loop {
        let event = tokio::select! {
            biased;
            () = delivering.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        match event {
            SourceEvent::Records(records) => {
                let shard = records[0].position.source.clone();
                assert!(
                    records.iter().all(|r| r.position.source == shard),
                    "one shard per batch"
                );
                let yielded = records.iter().map(|r| delivered_of(shard.as_str(), r));
                received.lock().unwrap().extend(yielded);
                if !keeper.holds(shard.as_str()) {
                    let mut strays = strays.lock().unwrap();
                    strays.extend(records.iter().map(|r| delivered_of(shard.as_str(), r)));
                    continue;
                }
                let tickets = checkpoints.admit(records.iter().map(|r| (&r.position.source, &r.position.offset)));
                let routing =
                    checkpoints.redo_routing(records.iter().map(|r| (&r.position.source, &r.position.offset, true)));
                let mut admitted = Vec::new();
                for (n, (record, ticket)) in records.iter().zip(tickets).enumerate() {
                    let Some(ticket) = ticket else { continue };
                    match routing.targets.get(n).cloned().flatten() {
                        Some(intent) => redoing.entry(intent).or_default().push((record.clone(), ticket)),
                        None => admitted.push((record, ticket)),
                    }
                }
                for (source, intent) in routing.due {
                    let Some(records) = redoing.remove(&intent) else {
                        checkpoints.forget_inherited(&source, &intent);
                        continue;
                    };
                    let claims = Claims::of(
                        records
                            .iter()
                            .map(|(r, t)| (&r.position.source, &r.position.offset, *t)),
                    );
                    let key = ObjectKey::new(intent.to_string()).unwrap();
                    let object = checkpoints.begin_object(&key, claims);
                    save(&checkpoints).await;
                    if !keeper.holds(source.as_str()) {
                        checkpoints.forget_object(object);
                        continue;
                    }
                    let body: Vec<u8> = records
                        .iter()
                        .flat_map(|(r, _)| [&r.data[..], b"\n"].concat())
                        .collect();
                    let outcome = archive.put(&key, body.into(), &PutOptions::default()).await.unwrap();
                    checkpoints.complete_object(object);
                    save(&checkpoints).await;
                    redone.lock().unwrap().push(Redone {
                        key: intent.to_string(),
                        outcome,
                        records: records.iter().map(|(r, _)| delivered_of(shard.as_str(), r)).collect(),
                    });
                }
                if admitted.is_empty() {
                    continue;
                }
                objects += 1;
                let key = ObjectKey::new(format!("objects/{worker}/{objects}")).unwrap();
                let claims = Claims::of(
                    admitted
                        .iter()
                        .map(|(r, t)| (&r.position.source, &r.position.offset, *t)),
                );
                let object = checkpoints.begin_object(&key, claims);
                checkpoints.complete_object(object);
                save(&checkpoints).await;
                if keeper.holds(shard.as_str()) {
                    let mut delivered = delivered.lock().unwrap();
                    delivered.extend(admitted.iter().map(|(r, _)| delivered_of(shard.as_str(), r)));
                }
            }
            // As the router does: nothing is saved here, so the final
            // checkpoint (with `ended`) is the source's to save.
            SourceEvent::Ended { source, .. } => {
                if keeper.holds(source.as_str()) {
                    checkpoints.end_of_input(&source);
                }
            }
            // As the router does (it drops the shard's buffers too; a
            // batch is delivered at once here): from here on the shard's
            // records are of a later tenure, and admitted again.
            SourceEvent::ShardReleased { source } => {
                redoing.retain(|_, records| records[0].0.position.source != source);
                released.lock().unwrap().push(source.to_string());
                checkpoints.tenure_passed(&source);
            }
            SourceEvent::Failed(error) => {
                failures.lock().unwrap().push(error.to_string());
                return;
            }
            other => failures.lock().unwrap().push(format!("unexpected event {other:?}")),
        }
    }
    // Stopped delivering: what still comes is read by the next owner.
    while events.recv().await.is_some() {}
}

/// Saves, trying again while DynamoDB is briefly unavailable.
async fn save(checkpoints: &Checkpointer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match checkpoints.save().await {
            Ok(()) => return,
            Err(error) if error.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("saving the checkpoint: {error}"),
        }
    }
}

/// Waits until `done` holds, polling; fails with `what` past `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `count` records into each open shard, ids from `first` on, each
/// shard's keys its own.
async fn put_each(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: &[(String, String)],
    first: u64,
    count: u64,
) -> Vec<Produced> {
    let mut produced = Vec::new();
    for (n, (_, hash_key)) in shards.iter().enumerate() {
        let start = first + n as u64 * count;
        produced.extend(put_to_hash_key(kinesis, stream, hash_key, &format!("s{n}-"), start..start + count, 5).await);
    }
    produced
}

/// Every record produced is delivered by exactly one instance, once.
fn assert_exactly_once(instances: &[&Instance], produced: &[Produced]) {
    let mut seen: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for instance in instances {
        for record in instance.delivered() {
            seen.entry(record.id).or_default().push(&instance.worker);
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let missing: Vec<u64> = produced
        .iter()
        .map(|p| p.id)
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(seen.len(), produced.len(), "nothing else delivered");
}

/// What was read of `shard` (`read`) after a hand-over starts at the last
/// record `delivered` before it (read again, and skipped by the
/// checkpoint), not before: the shard was taken at that checkpoint.
fn assert_read_on(delivered: &[Delivered], read: &[Delivered], shard: &str) {
    let sequence = |d: &Delivered| SequenceNumber::parse(&d.sequence).unwrap();
    let last_delivered = delivered
        .iter()
        .filter(|d| d.shard == shard)
        .map(sequence)
        .max()
        .unwrap_or_else(|| panic!("nothing of {shard} delivered before"));
    let taken_over: Vec<_> = read.iter().filter(|d| d.shard == shard).collect();
    assert!(!taken_over.is_empty(), "nothing of {shard} read after");
    assert!(
        taken_over.iter().all(|d| sequence(d) >= last_delivered),
        "{shard}: read from before its checkpoint"
    );
}

/// Waits until `instances` delivered as many records as `produced`.
async fn wait_delivered(instances: &[&Instance], produced: &[Produced], what: &str) {
    wait_until(Duration::from_secs(30), what, || all_delivered(instances, produced)).await;
}

/// [`put_each`] into the shards open now.
async fn put_open(kinesis: &aws_sdk_kinesis::Client, stream: &str, first: u64, count: u64) -> Vec<Produced> {
    put_each(
        kinesis,
        stream,
        &open_shard_hash_keys(kinesis, stream).await,
        first,
        count,
    )
    .await
}

fn all_delivered(instances: &[&Instance], produced: &[Produced]) -> bool {
    let count: usize = instances.iter().map(|i| i.delivered.lock().unwrap().len()).sum();
    count >= produced.len()
}

fn unique(prefix: &str) -> String {
    unique_stream(prefix)
}

/// Two instances on a 4-shard stream, records put before and while they
/// run. The first takes every shard; the second joins and takes two of its
/// live leases: the shards end up two each, one owner apiece, each read on
/// from where the first left it, and every record is delivered by exactly
/// one instance. One stops: its leases are released at once, the other
/// takes its shards and reads on from their checkpoints, and across both
/// every record is still delivered once.
#[test]
fn two_instances_share_a_stream_and_one_takes_over_when_the_other_stops() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        let stream = unique_stream("leased");
        create_stream(&kinesis, &stream, 4).await;
        let shards = open_shard_hash_keys(&kinesis, &stream).await;
        assert_eq!(shards.len(), 4);
        let table = unique("coordinator");

        let mut produced = put_each(&kinesis, &stream, &shards, 0, 25).await;
        // a alone first: it takes every shard and reads what is there.
        let a = Instance::start(&stream, &table, "worker-a").await;
        wait_until(Duration::from_secs(30), "a holds every shard", || {
            a.keeper.held().len() == 4
        })
        .await;
        wait_delivered(&[&a], &produced, "a delivered the first records").await;
        // b joins and takes two of a's live leases; records keep coming.
        let b = Instance::start(&stream, &table, "worker-b").await;
        produced.extend(put_each(&kinesis, &stream, &shards, 1_000, 25).await);

        // (a) Balanced, one owner per shard, every record once.
        let both = [&a, &b];
        wait_until(Duration::from_secs(30), "two shards each", || {
            a.keeper.held().len() == 2 && b.keeper.held().len() == 2
        })
        .await;
        let (held_a, held_b) = (a.keeper.held(), b.keeper.held());
        assert!(held_a.iter().all(|s| !held_b.contains(s)), "{held_a:?} and {held_b:?}");
        produced.extend(put_each(&kinesis, &stream, &shards, 2_000, 25).await);
        wait_delivered(&both, &produced, "every record delivered").await;
        a.assert_no_failure();
        b.assert_no_failure();
        assert_exactly_once(&both, &produced);
        // Since the balance, each instance read only its own shards: a
        // reader stops with its lease (before, each read what it held).
        for (instance, held) in [(&a, &held_a), (&b, &held_b)] {
            let strays = instance.strays.lock().unwrap().clone();
            let since: Vec<String> = instance
                .delivered()
                .into_iter()
                .chain(strays)
                .filter(|d| d.id >= 2_000)
                .map(|d| d.shard)
                .collect();
            assert!(since.iter().all(|s| held.contains(s)), "{}: {since:?}", instance.worker);
        }

        // a lost the shards b took: the end of each tenure came to its
        // pipeline, once its reader had stopped.
        let released_by_a = a.released.lock().unwrap().clone();
        for shard in &held_b {
            assert!(
                released_by_a.contains(shard),
                "no end of {shard}'s tenure: {released_by_a:?}"
            );
        }

        // b read the shards it took on from a's checkpoints.
        let read_by_b = b.received.lock().unwrap().clone();
        for shard in &held_b {
            assert_read_on(&a.delivered(), &read_by_b, shard);
        }

        // (b) b stops: it delivers what it has, its source stops, and its
        // leases are released (not left to expire).
        b.delivering.cancel();
        b.stop().await;
        let view = lease_view(&table, &stream).await;
        let leases = view.list().await.unwrap();
        assert_eq!(leases.len(), 4);
        assert!(
            leases.iter().all(|l| !l.held_by("worker-b")),
            "b released its leases at stop: {leases:?}"
        );
        let before_b_stopped = b.delivered().len();
        let a_before_b_stopped = a.received.lock().unwrap().len();
        let delivered_before: Vec<Delivered> = a.delivered().into_iter().chain(b.delivered()).collect();
        produced.extend(put_each(&kinesis, &stream, &shards, 3_000, 25).await);
        wait_until(Duration::from_secs(30), "a holds every shard", || {
            a.keeper.held().len() == 4
        })
        .await;
        wait_delivered(&both, &produced, "every record delivered after b stopped").await;
        a.assert_no_failure();
        b.assert_no_failure();
        assert_eq!(
            b.delivered().len(),
            before_b_stopped,
            "b delivers nothing after its stop"
        );
        assert_exactly_once(&both, &produced);
        // a read b's shards on from b's checkpoints.
        let since_b_stopped = a.received.lock().unwrap()[a_before_b_stopped..].to_vec();
        for shard in &held_b {
            assert_read_on(&delivered_before, &since_b_stopped, shard);
        }

        a.stop().await;
        let leases = view.list().await.unwrap();
        assert!(leases.iter().all(|l| l.owner.is_none()), "released at stop: {leases:?}");
    });
}

/// `start_position = "latest"` under coordination is one time for every
/// instance: when the first one started (the lease table keeps it). The
/// first instance starts and stops before anything new arrives, so no
/// shard has a checkpoint; records then arrive, and a second instance
/// starts after them: it reads them, from the first's start, and nothing
/// from before it. With its own start time it would skip them all.
#[test]
fn latest_under_coordination_is_when_the_first_instance_started() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        let stream = unique_stream("leased-latest");
        create_stream(&kinesis, &stream, 2).await;
        let shards = open_shard_hash_keys(&kinesis, &stream).await;
        let table = unique("coordinator-latest");
        let moto = peer("SPILLWAY_TEST_MOTO");

        let before = put_each(&kinesis, &stream, &shards, 0, 10).await;
        let a = Instance::start_with(&stream, &table, "worker-a", &moto, StartPosition::Latest).await;
        wait_until(Duration::from_secs(30), "a holds every shard", || {
            a.keeper.held().len() == 2
        })
        .await;
        a.stop().await;
        a.assert_no_failure();
        assert!(
            a.delivered().is_empty(),
            "a read what came before it started: {:?}",
            a.delivered()
        );

        let after = put_each(&kinesis, &stream, &shards, 1_000, 10).await;
        let b = Instance::start_with(&stream, &table, "worker-b", &moto, StartPosition::Latest).await;
        wait_delivered(&[&b], &after, "b delivered what arrived after a started").await;
        b.assert_no_failure();
        assert_exactly_once(&[&a, &b], &after);
        let early: Vec<u64> = b
            .delivered()
            .iter()
            .map(|d| d.id)
            .filter(|id| before.iter().any(|p| p.id == *id))
            .collect();
        assert!(early.is_empty(), "read from before the first start: {early:?}");
        b.stop().await;
    });
}

fn lease_view_options(table: &str, stream: &str) -> TableOptions {
    TableOptions {
        table: table.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
        namespace: spillway::coordination::namespace(PIPELINE, &StreamRef::Name(stream.into())),
        worker: "observer".into(),
    }
}

/// A view of the lease table of `stream`'s pipeline.
async fn lease_view(table: &str, stream: &str) -> LeaseTable {
    LeaseTable::open(lease_view_options(table, stream)).await.unwrap()
}

/// A split and then a merge while two instances run: a shard read to its
/// end gets its final checkpoint with `ended` once all of it is delivered,
/// and only then are its children read, by whichever instance takes them;
/// the merged child waits for both its parents. Every record once, and
/// every record of a parent delivered before any of its children's.
#[test]
fn a_shard_read_to_its_end_ends_its_lease_and_its_children_are_read_after_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        let stream = unique_stream("leased-split");
        create_stream(&kinesis, &stream, 2).await;
        let table = unique("coordinator-split");
        let (a, b) = tokio::join!(
            Instance::start(&stream, &table, "worker-a"),
            Instance::start(&stream, &table, "worker-b")
        );
        let both = [&a, &b];
        let shard = |n: u32| format!("shardId-{n:012}");
        let mut produced = put_each(&kinesis, &stream, &open_shard_hash_keys(&kinesis, &stream).await, 0, 20).await;

        // 0 splits into 2 and 3; then 2 and 3 merge into 4.
        split(&kinesis, &stream, &shard(0)).await;
        produced.extend(put_open(&kinesis, &stream, 1_000, 20).await);
        wait_delivered(&both, &produced, "the split's records delivered").await;
        merge(&kinesis, &stream, &shard(2), &shard(3)).await;
        produced.extend(put_open(&kinesis, &stream, 2_000, 20).await);
        wait_delivered(&both, &produced, "every record delivered").await;
        a.assert_no_failure();
        b.assert_no_failure();
        assert_exactly_once(&both, &produced);

        let delivered: Vec<Delivered> = both.iter().flat_map(|i| i.delivered()).collect();
        let of = |n: u32| -> Vec<u64> { delivered.iter().filter(|d| d.shard == shard(n)).map(|d| d.at).collect() };
        for (parent, child) in [(0, 2), (0, 3), (2, 4), (3, 4)] {
            let (parent_at, child_at) = (of(parent), of(child));
            assert!(
                !parent_at.is_empty() && !child_at.is_empty(),
                "{parent} and {child} were read"
            );
            assert!(
                parent_at.iter().max() < child_at.iter().min(),
                "every record of shard {parent} delivered before any of its child {child}"
            );
        }
        let leases = lease_view(&table, &stream).await.list().await.unwrap();
        let ended: Vec<&str> = leases.iter().filter(|l| l.ended).map(|l| l.shard.as_str()).collect();
        assert_eq!(ended, [shard(0), shard(2), shard(3)], "{leases:?}");

        a.stop().await;
        b.stop().await;
    });
}

/// Log lines, captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The data `put_to_hash_key` gave the record `produced`.
fn data_of(produced: &Produced) -> String {
    format!(
        r#"{{"id":{},"key":"{}","n":{},"pad":"{}"}}"#,
        produced.id,
        produced.key,
        produced.n,
        "x".repeat(40 + (produced.id % 120) as usize)
    )
}

/// When the last owner's put of its pending object lands, if ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastPut {
    Never,
    /// Before the new owner redoes it: the redo finds it there.
    Before,
    /// After the redo: the last owner was paused, and resumed its put.
    After,
}

/// A lease holding the last owner's pending intent: records 3..=5 of
/// shard 0 (it delivered 0..=2, its checkpoint at 2), about to be put
/// under `objects/old/2` when it lost the lease. The new owner reads the
/// shard from the checkpoint and puts exactly those records under that
/// key, create-only, then reads on. Whether the last owner's put never
/// lands, landed before the redo (found there: counted delivered, not
/// written again) or lands after it (refused), the key holds one copy of
/// records 3..=5, and across the last owner's objects, the redone one and
/// the new owner's, every record of the shard is archived once; the lease
/// holds no pending intent after. Said once, with the number of intents.
#[test]
fn a_shard_whose_lease_holds_pending_intents_is_read_and_they_are_redone_under_their_keys() {
    use spillway::checkpoint::shard::ShardState;
    use spillway::checkpoint::Tracker;
    use spillway_transforms::record::Offset;
    use spillway_transforms::SourceId;

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        for last in [LastPut::Never, LastPut::Before, LastPut::After] {
            let stream = unique_stream("leased-redo");
            create_stream(&kinesis, &stream, 2).await;
            let table = unique("coordinator-redo");
            let (redone_shard, other) = ("shardId-000000000000", "shardId-000000000001");
            let produced = put_each(&kinesis, &stream, &open_shard_hash_keys(&kinesis, &stream).await, 0, 10).await;
            let mut of_shard: Vec<Produced> = produced.iter().filter(|p| p.shard == redone_shard).cloned().collect();
            of_shard.sort_by_key(|p| SequenceNumber::parse(&p.seq).unwrap());
            let offsets: Vec<Offset> = of_shard
                .iter()
                .map(|p| Offset::new(SequenceNumber::parse(&p.seq).unwrap(), 0))
                .collect();

            // The last owner delivered records 0..=2, saved the intent of
            // 3..=5 and vanished.
            let old = LeaseTable::open(TableOptions {
                worker: "worker-old".into(),
                ..lease_view_options(&table, &stream)
            })
            .await
            .unwrap();
            old.add(redone_shard, &[]).await.unwrap();
            let free = old.list().await.unwrap().remove(0);
            let taken = old.take(&free).await.unwrap();
            let source = SourceId::new(redone_shard);
            let mut tracker = Tracker::new(PIPELINE, None);
            let tickets: Vec<_> = tracker
                .admit_all(offsets[..6].iter().map(|o| (&source, o)))
                .into_iter()
                .map(Option::unwrap)
                .collect();
            let claims = |range: std::ops::Range<usize>| Claims::of(range.map(|i| (&source, &offsets[i], tickets[i])));
            let written = tracker.begin_object("objects/old/1", claims(0..3));
            tracker.complete_object(written);
            tracker.begin_object("objects/old/2", claims(3..6));
            let state = ShardState::of(&tracker.snapshot(), &source).unwrap();
            assert_eq!(state.source.checkpoint.as_ref(), Some(&offsets[2]));
            let saved = old.checkpoint(&taken, &state.to_json(), false).await.unwrap();
            old.release(&saved).await.unwrap();
            let intended: String = of_shard[3..6].iter().map(|p| data_of(p) + "\n").collect();

            let archive_dir = tempfile::tempdir().unwrap();
            let archive = Arc::new(LocalStore::new(archive_dir.path()));
            let intent = ObjectKey::new("objects/old/2").unwrap();
            let options = PutOptions::default();
            let last_owner_puts = || archive.put(&intent, intended.clone().into(), &options);
            if last == LastPut::Before {
                assert_eq!(last_owner_puts().await.unwrap(), PutOutcome::Created);
            }
            let a = Instance::start_archiving(
                &stream,
                &table,
                "worker-a",
                &peer("SPILLWAY_TEST_MOTO"),
                StartPosition::TrimHorizon,
                Some(archive.clone()),
            )
            .await;
            let expected: Vec<Produced> = produced
                .iter()
                .filter(|p| p.shard == other || of_shard[6..].iter().any(|q| q.id == p.id))
                .cloned()
                .collect();
            wait_delivered(
                &[&a],
                &expected,
                "shard 1's records and shard 0's after the intent delivered",
            )
            .await;
            wait_until(Duration::from_secs(30), "the intent redone", || {
                !a.redone.lock().unwrap().is_empty()
            })
            .await;
            a.assert_no_failure();
            if last == LastPut::After {
                assert_eq!(
                    last_owner_puts().await.unwrap(),
                    PutOutcome::AlreadyExisted,
                    "the last owner's late put is refused"
                );
            }
            // The new owner's own objects: everything but the last
            // owner's records, each once.
            assert_exactly_once(&[&a], &expected);
            let redone = a.redone.lock().unwrap().clone();
            assert_eq!(redone.len(), 1, "{last:?}: {redone:?}");
            assert_eq!(redone[0].key, "objects/old/2");
            let ids: Vec<u64> = redone[0].records.iter().map(|d| d.id).collect();
            let intended_ids: Vec<u64> = of_shard[3..6].iter().map(|p| p.id).collect();
            assert_eq!(ids, intended_ids, "{last:?}: exactly the intent's records");
            let found = if last == LastPut::Before {
                PutOutcome::AlreadyExisted
            } else {
                PutOutcome::Created
            };
            assert_eq!(redone[0].outcome, found, "{last:?}");
            let archived = a.archive.get(&intent).await.unwrap().expect("the intent's object");
            assert_eq!(
                String::from_utf8(archived.to_vec()).unwrap(),
                intended,
                "{last:?}: one copy"
            );
            // Nothing of records 0..=5 was archived by the new owner
            // otherwise: they are the last owner's objects' and the redo's.
            let delivered_of_shard: Vec<u64> = a
                .delivered()
                .iter()
                .filter(|d| d.shard == redone_shard)
                .map(|d| d.id)
                .collect();
            let after: Vec<u64> = of_shard[6..].iter().map(|p| p.id).collect();
            assert_eq!(delivered_of_shard, after, "{last:?}");
            let lease = lease_view(&table, &stream)
                .await
                .list()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.shard == redone_shard)
                .unwrap();
            let state = ShardState::from_json(&source, lease.state.as_deref().unwrap()).unwrap();
            assert!(state.pending.is_empty(), "{last:?}: {:?}", state.pending);
            a.stop().await;
        }

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let said: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("each is redone under its key"))
            .collect();
        assert_eq!(said.len(), 3, "once per shard and instance: {said:?}");
        assert!(
            said.iter()
                .all(|l| l.contains("shardId-000000000000") && l.contains("intents=1") && l.contains("objects/old/2")),
            "{said:?}"
        );
    });
}

/// DynamoDB fails for longer than a lease: the instance gives its leases
/// up (it can no longer prove them), its readers stop and what it still
/// receives of those shards counts nothing; once DynamoDB answers, it takes
/// them back and reads on from the checkpoints in the leases. Every record
/// once.
#[test]
fn an_instance_that_cannot_prove_its_leases_stops_reading_and_reads_on_when_it_wins_them_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use support::fault_proxy::FaultProxy;

    let down = Arc::new(AtomicBool::new(false));
    let proxy = FaultProxy::dynamodb_down_while(&peer("SPILLWAY_TEST_MOTO"), down.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        let stream = unique_stream("leased-down");
        create_stream(&kinesis, &stream, 2).await;
        let shards = open_shard_hash_keys(&kinesis, &stream).await;
        let table = unique("coordinator-down");
        let mut produced = put_each(&kinesis, &stream, &shards, 0, 20).await;
        let a = Instance::start_at(&stream, &table, "worker-a", &proxy.url).await;
        wait_until(Duration::from_secs(30), "a holds both shards", || {
            a.keeper.held().len() == 2
        })
        .await;
        wait_delivered(&[&a], &produced, "the first records delivered").await;

        down.store(true, Ordering::SeqCst);
        wait_until(LEASE * 3, "a gives its leases up", || a.keeper.held().is_empty()).await;
        let delivered_before = a.delivered();
        let read_before = a.received.lock().unwrap().len();
        produced.extend(put_each(&kinesis, &stream, &shards, 1_000, 20).await);

        down.store(false, Ordering::SeqCst);
        wait_until(Duration::from_secs(30), "a takes both back", || {
            a.keeper.held().len() == 2
        })
        .await;
        wait_delivered(&[&a], &produced, "every record delivered").await;
        a.assert_no_failure();
        assert_exactly_once(&[&a], &produced);
        let read_after = a.received.lock().unwrap()[read_before..].to_vec();
        for (shard, _) in &shards {
            assert_read_on(&delivered_before, &read_after, shard);
        }
        // One reader per shard: what was put during the outage is read
        // once, by the reader started when the lease was won back (the one
        // of the lost lease stopped).
        let mut times_read: BTreeMap<u64, usize> = BTreeMap::new();
        for record in read_after.iter().filter(|d| d.id >= 1_000) {
            *times_read.entry(record.id).or_default() += 1;
        }
        let twice: Vec<_> = times_read.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "read more than once: {twice:?}");
        a.stop().await;
    });
}

/// An instance vanishes (its runtime dropped: nothing released, as after
/// `kill -9`): the other takes its shards once their leases expire, not
/// before, and reads on from their checkpoints. Every record once.
#[test]
fn when_an_instance_vanishes_the_other_takes_its_shards_once_their_leases_expire() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rt_b = tokio::runtime::Runtime::new().unwrap();
    let stream = unique_stream("leased-vanish");
    let table = unique("coordinator-vanish");
    let (kinesis, shards, mut produced) = rt.block_on(async {
        let kinesis = client(&peer("SPILLWAY_TEST_KINESALITE")).await;
        create_stream(&kinesis, &stream, 4).await;
        let shards = open_shard_hash_keys(&kinesis, &stream).await;
        let produced = put_each(&kinesis, &stream, &shards, 0, 20).await;
        (kinesis, shards, produced)
    });
    let a = rt.block_on(Instance::start(&stream, &table, "worker-a"));
    let b = rt_b.block_on(Instance::start(&stream, &table, "worker-b"));
    rt.block_on(async {
        wait_until(Duration::from_secs(30), "two shards each", || {
            a.keeper.held().len() == 2 && b.keeper.held().len() == 2
        })
        .await;
        wait_delivered(&[&a, &b], &produced, "every record delivered").await;
    });
    let held_b = b.keeper.held();
    let read_before = a.received.lock().unwrap().len();
    let delivered_before: Vec<Delivered> = a.delivered().into_iter().chain(b.delivered()).collect();
    rt_b.shutdown_background();
    let vanished_at = Instant::now();

    rt.block_on(async {
        produced.extend(put_each(&kinesis, &stream, &shards, 1_000, 20).await);
        wait_until(Duration::from_secs(30), "a holds every shard", || {
            a.keeper.held().len() == 4
        })
        .await;
        // A lease expires a lease duration after the last renewal a saw,
        // and b last renewed up to one renewal interval (a third of the
        // lease) before it vanished: measured from the vanishing, the
        // earliest lawful take is a lease duration less that interval.
        let earliest = LEASE - LEASE / 3;
        assert!(
            vanished_at.elapsed() >= earliest,
            "b's leases were taken before they expired: {:?} after b vanished, where its last renewal was at most {:?} before",
            vanished_at.elapsed(),
            LEASE / 3
        );
        wait_delivered(&[&a, &b], &produced, "every record delivered").await;
        a.assert_no_failure();
        assert_exactly_once(&[&a, &b], &produced);
        let read_after = a.received.lock().unwrap()[read_before..].to_vec();
        for shard in &held_b {
            assert_read_on(&delivered_before, &read_after, shard);
        }
        a.stop().await;
    });
}
