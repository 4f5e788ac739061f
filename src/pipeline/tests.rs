//! The writer and the delivery it drives, with the in-memory store as the
//! destination and the real checkpoint file in a temporary directory.
//!
//! What a user of an archive cares about, checked on the objects the store
//! holds: every record of a batch in exactly one object, with its exact
//! bytes, under the key the templates give; the intent saved before the
//! put and the checkpoint advanced only after it; failures retried, or
//! turned into error records with their reason once the retry duration is
//! over, and nothing written twice. The store is watched (see [`Watched`])
//! so that a test can see what the checkpoint file said at each put.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use spillway_destinations::memory::{Failure, Operation};
use spillway_destinations::retry::RetryPolicy;
use spillway_destinations::{Compression, MemoryStore, ObjectKey, ObjectStore, PutOptions, PutOutcome};
use spillway_transforms::{ErrorOutputType, Offset, Position, Record, SequenceNumber, SourceId};
use tempfile::TempDir;
use tokio::sync::mpsc;

use super::delivery::{object_retry, Delivery};
use super::object::ObjectPlanner;
use super::writer::Writer;
use super::RunError;
use super::RunSummary;
use crate::buffer::{Batch, BufferKey, Buffered, FlushReason};
use crate::checkpoint::state::CheckpointState;
use crate::checkpoint::{Checkpointer, LocalFileStore};
use crate::telemetry::Telemetry;

mod concurrent;
mod redo;
mod shards;

const STREAM: &str = "clicks";
const SHARD: &str = "shard-1";
/// The key of the data object of records 1..: the hour of their arrival
/// under `events/`, then the stream, the source and the first position.
const DATA_KEY: &str = "events/2024/05/06/07/clicks-shard-1-1-0.jsonl.gz";

/// When every test record arrived.
fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
}

fn offset(sequence: u64) -> Offset {
    Offset::new(SequenceNumber::from_u64(sequence), 0)
}

fn record(sequence: u64, data: &str) -> Record {
    Record {
        data: Bytes::from(data.to_owned()),
        position: Position {
            source: SourceId::new(SHARD),
            offset: offset(sequence),
        },
        partition_key: Some("user-7".into()),
        arrival: arrival(),
    }
}

/// Records 1 to 3, valid JSON each.
fn three_records() -> Vec<Record> {
    vec![
        record(1, r#"{"n":1,"page":"/"}"#),
        record(2, r#"{"n":2,"page":"/cart"}"#),
        record(3, r#"{"n":3,"page":"/pay"}"#),
    ]
}

/// What an object holding `records` as gzip'd JSON lines decompresses to.
fn json_lines(records: &[Record]) -> Vec<u8> {
    records.iter().flat_map(|r| [&r.data[..], b"\n"].concat()).collect()
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

fn read_state(path: &Path) -> Option<CheckpointState> {
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).expect("the checkpoint file is valid JSON"))
}

/// The in-memory store, watched: each put notes what the checkpoint file
/// says at that moment, and a put can be made to lose its response after
/// it wrote its object (a timeout after S3 committed it), which no store
/// does on demand.
#[derive(Debug)]
struct Watched {
    store: MemoryStore,
    checkpoint_file: PathBuf,
    /// Each put's key, with the checkpoint file as it was when it began.
    puts: Mutex<Vec<(ObjectKey, Option<CheckpointState>)>>,
    /// How many more puts write their object, then fail as if the answer
    /// never came.
    lose_responses: AtomicUsize,
    /// Holds puts back until a test lets them through (see
    /// [`concurrent`]): open unless a test closes it.
    gate: concurrent::Gate,
    /// Records' bytes a test keeps a handle to, and for each put, how many
    /// of them something else (the pipeline) still held when it began.
    kept_records: Mutex<Vec<Bytes>>,
    held_at_puts: Mutex<Vec<usize>>,
    /// The harness's memory budget, and what it counted at each put.
    budget: crate::limits::MemoryBudget,
    charged_at_puts: Mutex<Vec<usize>>,
}

#[async_trait]
impl ObjectStore for Watched {
    async fn put(
        &self,
        key: &ObjectKey,
        payload: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, spillway_destinations::Error> {
        let saved = read_state(&self.checkpoint_file);
        self.puts.lock().unwrap().push((key.clone(), saved));
        let held = self
            .kept_records
            .lock()
            .unwrap()
            .iter()
            .filter(|b| !b.is_unique())
            .count();
        self.held_at_puts.lock().unwrap().push(held);
        self.charged_at_puts.lock().unwrap().push(self.budget.used());
        self.gate.pass(key).await;
        let outcome = self.store.put(key, payload, options).await?;
        let lose = self
            .lose_responses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match lose {
            Ok(_) => Err(spillway_destinations::Error::Transient {
                location: key.to_string(),
                source: "the response was lost after the object was written".into(),
            }),
            Err(_) => Ok(outcome),
        }
    }

    /// The gate holds a streamed put back before its payload is produced,
    /// as a service slow to read the body would.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        payload: &dyn spillway_destinations::Payload,
        options: &PutOptions,
    ) -> Result<PutOutcome, spillway_destinations::Error> {
        self.gate.pass(key).await;
        let body = spillway_destinations::store::collect(payload.open(), key).await?;
        self.put(key, body, options).await
    }

    async fn clean_up(&self, key: &ObjectKey) -> Result<(), spillway_destinations::Error> {
        self.store.clean_up(key).await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, spillway_destinations::Error> {
        self.store.exists(key).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, spillway_destinations::Error> {
        ObjectStore::get(&self.store, key).await
    }

    async fn check(&self) -> Result<(), spillway_destinations::Error> {
        self.store.check().await
    }

    fn describe(&self) -> String {
        self.store.describe()
    }
}

/// One delivery stream's writer over a watched memory store, configured
/// from TOML as a user would.
struct Harness {
    _dir: TempDir,
    watched: Arc<Watched>,
    checkpoints: Arc<Checkpointer>,
    planner: Arc<ObjectPlanner>,
    telemetry: Telemetry,
    retry: RetryPolicy,
    /// Batches written at a time: 1 unless a test says otherwise, so that
    /// puts come in the order tests expect.
    max_concurrent: usize,
    /// Charged for objects held whole (Parquet).
    budget: crate::limits::MemoryBudget,
    /// Streamed objects from this size are encoded in turn: never unless a
    /// test says so (the watched store is not local).
    streamed_in_turn_from: Option<usize>,
}

impl Harness {
    /// A stream to a local destination; `destination` and `format` are
    /// added to their sections.
    async fn new(destination: &str, format: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
name = "{STREAM}"
[source]
type = "file"
path = "in.ndjson"
[format]
{format}
[destination]
type = "local"
path = "archive"
prefix = "events/!{{timestamp:yyyy/MM/dd/HH}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd}}/"
{destination}
[checkpoint]
path = "state"
"#
        );
        let config = crate::config::parse(&text, "test", &|_| None).expect("a valid configuration");
        let objects = config.destination.objects();
        let checkpoint_store = LocalFileStore::open(&dir.path().join("state"), STREAM).unwrap();
        let watched = Arc::new(Watched {
            store: MemoryStore::new(),
            checkpoint_file: checkpoint_store.path().to_owned(),
            puts: Mutex::default(),
            lose_responses: AtomicUsize::new(0),
            gate: concurrent::Gate::default(),
            kept_records: Mutex::default(),
            held_at_puts: Mutex::default(),
            budget: crate::limits::MemoryBudget::unlimited(),
            charged_at_puts: Mutex::default(),
        });
        let checkpoints = Checkpointer::open(STREAM, Box::new(checkpoint_store), &*watched)
            .await
            .unwrap();
        Self {
            planner: Arc::new(ObjectPlanner::new(&config.name, &config.format, objects)),
            // The configured policy, with waits of milliseconds.
            retry: RetryPolicy {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(4),
                ..object_retry(objects.retry_duration)
            },
            _dir: dir,
            checkpoints: Arc::new(checkpoints),
            telemetry: Telemetry::standalone(STREAM),
            max_concurrent: 1,
            budget: watched.budget.clone(),
            streamed_in_turn_from: None,
            watched,
        }
    }

    /// Gzip'd JSON lines.
    async fn json_lines(destination: &str) -> Self {
        let destination = format!("compression = \"gzip\"\n{destination}");
        Self::new(&destination, r#"type = "json_lines""#).await
    }

    /// Parquet with an inferred schema, which compresses inside the file.
    async fn parquet() -> Self {
        Self::new(r#"compression = "none""#, r#"type = "parquet""#).await
    }

    fn store(&self) -> &MemoryStore {
        &self.watched.store
    }

    /// `records` admitted by the checkpoints and flushed as one batch.
    fn batch(&self, key: BufferKey, records: Vec<Record>) -> Batch {
        let tickets = self
            .checkpoints
            .admit(records.iter().map(|r| (&r.position.source, &r.position.offset)));
        let bytes = records.iter().map(|r| r.data.len()).sum();
        let items = records
            .into_iter()
            .zip(tickets)
            .map(|(record, ticket)| Buffered {
                record,
                ticket: ticket.expect("a record read for the first time is admitted"),
            })
            .collect();
        Batch {
            key,
            items,
            bytes,
            reason: FlushReason::Size,
            charge: Default::default(),
            encoded: None,
        }
    }

    /// Runs the writer over `batches` until it has delivered them all, or
    /// stops at an error.
    async fn write(&self, batches: Vec<Batch>) -> Result<(), RunError> {
        let (tx, rx) = mpsc::channel(batches.len().max(1));
        for batch in batches {
            tx.send(batch).await.unwrap();
        }
        drop(tx);
        self.writer().run(rx).await
    }

    /// A writer over this harness's store and checkpoints.
    fn writer(&self) -> Writer {
        Writer {
            objects: Delivery {
                planner: self.planner.clone(),
                store: self.watched.clone(),
                checkpoints: self.checkpoints.clone(),
                telemetry: self.telemetry.clone(),
                destination: "local",
                retry: self.retry.clone(),
                published_table_schema: Default::default(),
                catalog: None,
                budget: self.budget.clone(),
                leases: None,
                streamed_in_turn_from: self.streamed_in_turn_from,
            },
            endpoint: None,
            kinesis: None,
            max_concurrent: self.max_concurrent,
        }
    }

    /// The object `k`, decompressed.
    fn object(&self, k: &str) -> Vec<u8> {
        let bytes = self.store().get(&key(k)).unwrap_or_else(|| panic!("no object {k}"));
        Compression::Gzip.decompress(&bytes).unwrap()
    }

    fn keys(&self) -> Vec<String> {
        self.store().keys().iter().map(ToString::to_string).collect()
    }

    /// How many puts of `k` the store received, failed ones included.
    fn puts_of(&self, k: &str) -> usize {
        let k = key(k);
        let calls = self.store().calls();
        calls
            .iter()
            .filter(|c| c.operation == Operation::Put && c.key.as_ref() == Some(&k))
            .count()
    }

    /// The checkpoint file as saved last.
    fn saved(&self) -> CheckpointState {
        read_state(&self.watched.checkpoint_file).expect("the checkpoint was saved")
    }

    /// The saved checkpoint of the test's source.
    fn checkpoint(&self) -> Option<Offset> {
        self.saved()
            .sources
            .get(&SourceId::new(SHARD))
            .and_then(|source| source.checkpoint.clone())
    }

    fn summary(&self) -> RunSummary {
        self.telemetry.stats().summary(FlushReason::EndOfInput)
    }
}

/// The error records of an error object, as JSON.
fn error_lines(object: &[u8]) -> Vec<serde_json::Value> {
    object
        .split_inclusive(|&b| b == b'\n')
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}

fn raw_data(error_record: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(error_record["rawData"].as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn a_batch_is_one_object_under_the_templates_key_with_every_record_once() {
    let h = Harness::json_lines("").await;
    let records = three_records();
    h.write(vec![h.batch(BufferKey::Data, records.clone())]).await.unwrap();

    assert_eq!(h.keys(), [DATA_KEY]);
    assert_eq!(h.object(DATA_KEY), json_lines(&records));
    let stored = h.store().object(&key(DATA_KEY)).unwrap();
    assert_eq!(stored.content_type.as_deref(), Some("application/x-ndjson"));
    assert_eq!(stored.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(h.puts_of(DATA_KEY), 1);
    let summary = h.summary();
    assert_eq!((summary.records_delivered, summary.objects_written), (3, 1));
}

#[tokio::test]
async fn an_object_keeps_its_batchs_record_list_rather_than_a_copy() {
    // Issue #17 (memory): a copy held the batch's list twice while it was
    // made, a fifth of the peak with small records.
    for h in [Harness::json_lines("").await, Harness::parquet().await] {
        let batch = h.batch(BufferKey::Data, three_records());
        let (records, tickets) = crate::buffer::unzip(batch.items);
        let list = records.as_ptr();
        let objects = h.planner.data(records, tickets).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].records.len(), 3);
        assert_eq!(objects[0].records.as_ptr(), list, "the records were copied");
    }
}

#[tokio::test]
async fn a_parquet_batchs_records_are_let_go_before_its_put_unless_they_may_become_error_records() {
    // Issue #17 (memory): a batch's raw records were held while its
    // Parquet object was put, beside the batch being encoded and the one
    // filling. Without a retry duration (local and S3's default), nothing
    // can need them once encoded; with one, a put that gives up writes
    // them as `delivery-failed` error records, so they are kept. The
    // batch's charge on the memory budget goes with them: the put counts
    // its object's bytes only.
    for (destination, held) in [
        ("compression = \"none\"", 0),
        ("compression = \"none\"\nretry_duration_seconds = 60", 3),
    ] {
        let h = Harness::new(destination, r#"type = "parquet""#).await;
        let records = three_records();
        // The batch's records and the test's handles share their bytes.
        let mut batch = h.batch(BufferKey::Data, records.clone());
        const RECORDS_CHARGE: usize = 1_000_000;
        batch.charge = h.budget.charge(RECORDS_CHARGE);
        *h.watched.kept_records.lock().unwrap() = records.iter().map(|r| r.data.clone()).collect();
        drop(records);
        h.write(vec![batch]).await.unwrap();
        // The data object's put (the table schema's object is put first).
        let puts = h.watched.puts.lock().unwrap().clone();
        let held_at_puts = h.watched.held_at_puts.lock().unwrap().clone();
        let data: Vec<usize> = puts
            .iter()
            .zip(held_at_puts)
            .filter(|((key, _), _)| key.as_str().ends_with(".parquet") && !key.as_str().starts_with('_'))
            .map(|(_, held)| held)
            .collect();
        assert_eq!(
            data,
            [held],
            "{destination}: records the pipeline still held when the data object's put began ({puts:?})"
        );
        let object_bytes = h.store().object(&puts.last().unwrap().0).unwrap().bytes.len();
        let charged = *h.watched.charged_at_puts.lock().unwrap().last().unwrap();
        let records_charged = if held == 0 { 0 } else { RECORDS_CHARGE };
        assert_eq!(
            charged,
            records_charged + object_bytes,
            "{destination}: charged at the put"
        );
        assert_eq!(h.budget.used(), 0, "{destination}: everything released once delivered");
        assert_eq!(h.summary().records_delivered, 3);
    }
}

#[tokio::test]
async fn a_batch_with_refused_records_keeps_the_rest_in_a_list_of_their_size() {
    // Issue #17 (memory): the kept records (most of the batch) were pushed
    // into a list that grew by doubling, and kept its room until delivered.
    let h = Harness::parquet().await;
    let mut records: Vec<Record> = (1..=100).map(|n| record(n, &format!(r#"{{"n":{n}}}"#))).collect();
    records[37] = record(38, r#"{"n":"#);
    let batch = h.batch(BufferKey::Data, records);
    let (records, tickets) = crate::buffer::unzip(batch.items);
    let objects = h.planner.data(records, tickets).unwrap();
    assert_eq!(objects.len(), 2, "a data object and an error object");
    let (kept, failed) = (&objects[0].records, &objects[1].records);
    assert_eq!((kept.len(), failed.len()), (99, 1));
    assert!(kept.iter().all(|r| r.position.offset != offset(38)));
    assert_eq!(kept.capacity(), kept.len(), "room beyond the kept records");
}

#[tokio::test]
async fn the_intent_is_saved_before_the_put_and_the_checkpoint_moves_only_after_it() {
    let h = Harness::json_lines("").await;
    h.write(vec![h.batch(BufferKey::Data, three_records())]).await.unwrap();

    let puts = h.watched.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 1, "{puts:?}");
    let (put_key, at_put) = &puts[0];
    assert_eq!(put_key.as_str(), DATA_KEY);
    let at_put = at_put.as_ref().expect("the intent was saved before the put");
    assert_eq!(at_put.pending.len(), 1, "{at_put:?}");
    let intent = &at_put.pending[0];
    assert_eq!(intent.key, DATA_KEY);
    let runs: Vec<_> = intent
        .runs
        .iter()
        .map(|r| (r.source.as_str(), r.run.first.clone(), r.run.last.clone()))
        .collect();
    assert_eq!(runs, [(SHARD, offset(1), offset(3))]);
    let before = at_put
        .sources
        .get(&SourceId::new(SHARD))
        .and_then(|s| s.checkpoint.clone());
    assert_eq!(before, None, "the checkpoint moved before the put");

    let after = h.saved();
    assert!(after.pending.is_empty(), "{after:?}");
    assert_eq!(h.checkpoint(), Some(offset(3)));
}

#[tokio::test]
async fn a_put_failing_with_a_retryable_error_is_retried_and_delivered_once() {
    let h = Harness::json_lines("").await;
    h.store().fail_next(Operation::Put, 2, Failure::Transient);
    let records = three_records();
    h.write(vec![h.batch(BufferKey::Data, records.clone())]).await.unwrap();

    assert_eq!(h.puts_of(DATA_KEY), 3);
    assert_eq!(h.keys(), [DATA_KEY]);
    assert_eq!(h.object(DATA_KEY), json_lines(&records));
    assert_eq!(h.checkpoint(), Some(offset(3)));
    let summary = h.summary();
    assert_eq!((summary.records_delivered, summary.objects_written), (3, 1));
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_finds_its_object_and_counts_it_once() {
    let h = Harness::json_lines("").await;
    h.watched.lose_responses.store(1, Ordering::SeqCst);
    let records = three_records();
    h.write(vec![h.batch(BufferKey::Data, records.clone())]).await.unwrap();

    // The retry met the object the lost attempt wrote: one object, once.
    assert_eq!(h.puts_of(DATA_KEY), 2);
    assert_eq!(h.keys(), [DATA_KEY]);
    assert_eq!(h.object(DATA_KEY), json_lines(&records));
    assert_eq!(h.checkpoint(), Some(offset(3)));
    let summary = h.summary();
    assert_eq!((summary.records_delivered, summary.objects_written), (3, 1));
    assert_eq!(summary.error_records, 0);
}

#[tokio::test]
async fn an_object_already_there_counts_as_delivered_and_is_not_overwritten() {
    let h = Harness::json_lines("").await;
    // Written by an earlier run whose checkpoint was lost.
    let earlier = Bytes::from_static(b"written earlier");
    h.store()
        .put(&key(DATA_KEY), earlier.clone(), &PutOptions::default())
        .await
        .unwrap();
    h.write(vec![h.batch(BufferKey::Data, three_records())]).await.unwrap();

    assert_eq!(h.keys(), [DATA_KEY]);
    assert_eq!(h.store().get(&key(DATA_KEY)), Some(earlier));
    assert_eq!(h.checkpoint(), Some(offset(3)));
    assert!(h.saved().pending.is_empty());
    assert_eq!(h.summary().records_delivered, 3);
}

#[tokio::test]
async fn a_put_failing_past_the_retry_duration_becomes_delivery_failed_error_records() {
    let h = Harness::json_lines("retry_duration_seconds = 0").await;
    h.store().fail_next(Operation::Put, 1, Failure::Transient);
    let records = three_records();
    h.write(vec![h.batch(BufferKey::Data, records.clone())]).await.unwrap();

    let error_key = "errors/delivery-failed/2024/05/06/clicks-shard-1-1-0.jsonl.gz";
    assert_eq!(h.keys(), [error_key], "no data object, one error object");
    assert_eq!(h.puts_of(DATA_KEY), 1);
    let lines = error_lines(&h.object(error_key));
    assert_eq!(lines.len(), records.len());
    for (line, record) in lines.iter().zip(&records) {
        assert_eq!(line["errorCode"], "Delivery.Failed", "{line}");
        assert!(
            line["errorMessage"].as_str().unwrap().contains("failure injected"),
            "{line}"
        );
        assert_eq!(line["attemptsMade"], 1, "{line}");
        assert_eq!(raw_data(line), record.data, "{line}");
        assert_eq!(line["shardId"], SHARD);
        assert_eq!(line["sequenceNumber"], record.position.offset.sequence_number.as_str());
        assert_eq!(line["partitionKey"], "user-7");
    }
    // The intent was pointed at the error object before it was written;
    // the records are done with once it is.
    let puts = h.watched.puts.lock().unwrap().clone();
    let (last_key, at_put) = puts.last().unwrap();
    assert_eq!(last_key.as_str(), error_key);
    let pending: Vec<&str> = at_put
        .as_ref()
        .unwrap()
        .pending
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(pending, [error_key]);
    assert!(h.saved().pending.is_empty());
    assert_eq!(h.checkpoint(), Some(offset(3)));
}

#[tokio::test]
async fn a_permanent_error_with_a_retry_duration_is_not_retried_and_its_code_says_why() {
    for (failure, code) in [
        (Failure::PermissionDenied, "Delivery.PermissionDenied"),
        (Failure::TooLarge, "Delivery.TooLarge"),
    ] {
        let h = Harness::json_lines("retry_duration_seconds = 3600").await;
        h.store().fail_next(Operation::Put, 1, failure);
        h.write(vec![h.batch(BufferKey::Data, three_records())]).await.unwrap();

        assert_eq!(h.puts_of(DATA_KEY), 1, "{failure:?} was retried");
        let error_key = "errors/delivery-failed/2024/05/06/clicks-shard-1-1-0.jsonl.gz";
        assert_eq!(h.keys(), [error_key]);
        let lines = error_lines(&h.object(error_key));
        let codes: Vec<&str> = lines.iter().map(|l| l["errorCode"].as_str().unwrap()).collect();
        assert_eq!(codes, [code; 3], "{failure:?}");
        assert_eq!(h.checkpoint(), Some(offset(3)));
    }
}

#[tokio::test]
async fn without_a_retry_duration_a_permanent_error_stops_the_run_and_its_records_are_read_again() {
    let h = Harness::json_lines("").await;
    h.store().fail_next(Operation::Put, 1, Failure::PermissionDenied);
    let err = h
        .write(vec![h.batch(BufferKey::Data, three_records())])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Delivery(spillway_destinations::Error::PermissionDenied { .. })
        ),
        "{err:?}"
    );
    assert!(h.store().is_empty());
    // Nothing checkpointed; the intent is left for the next start.
    assert_eq!(h.checkpoint(), None);
    let pending: Vec<String> = h.saved().pending.into_iter().map(|p| p.key).collect();
    assert_eq!(pending, [DATA_KEY]);

    // The next start settles it (no such object) and reads all three again.
    let Harness {
        _dir: dir,
        watched,
        checkpoints,
        ..
    } = h;
    drop(checkpoints);
    let checkpoint_store = LocalFileStore::open(&dir.path().join("state"), STREAM).unwrap();
    let again = Checkpointer::open(STREAM, Box::new(checkpoint_store), &*watched)
        .await
        .unwrap();
    let source = SourceId::new(SHARD);
    let offsets: Vec<Offset> = (1..=3).map(offset).collect();
    let admitted = again.admit(offsets.iter().map(|o| (&source, o)));
    assert!(admitted.iter().all(Option::is_some), "{admitted:?}");
}

#[tokio::test]
async fn an_error_batch_becomes_one_error_object_of_its_lines() {
    let h = Harness::json_lines("").await;
    // Error records as the router renders them: one JSON line each.
    let lines = vec![
        record(1, "{\"errorCode\":\"Record.Empty\"}\n"),
        record(2, "{\"errorCode\":\"Record.TooLarge\"}\n"),
    ];
    let batch = h.batch(BufferKey::Error(ErrorOutputType::InvalidRecord), lines.clone());
    h.write(vec![batch]).await.unwrap();

    let error_key = "errors/invalid-record/2024/05/06/clicks-shard-1-1-0.jsonl.gz";
    assert_eq!(h.keys(), [error_key]);
    let expected: Vec<u8> = lines.iter().flat_map(|r| r.data.to_vec()).collect();
    assert_eq!(h.object(error_key), expected);
    assert_eq!(h.checkpoint(), Some(offset(2)));
    assert_eq!(h.summary().records_delivered, 0, "error records are not delivered data");
}

#[tokio::test]
async fn records_the_writer_turns_into_error_records_count_in_the_run_summary() {
    // Past the retry duration: delivery-failed.
    let h = Harness::json_lines("retry_duration_seconds = 0").await;
    h.store().fail_next(Operation::Put, 1, Failure::Transient);
    h.write(vec![h.batch(BufferKey::Data, three_records())]).await.unwrap();
    let summary = h.summary();
    assert_eq!(
        (
            summary.records_delivered,
            summary.error_records,
            summary.objects_written
        ),
        (0, 3, 1),
        "{summary:?}"
    );

    // Refused by the format: format-conversion-failed, beside the data.
    let h = Harness::parquet().await;
    let records = vec![record(1, r#"{"n":1}"#), record(2, r#"{"n":"#), record(3, r#"{"n":3}"#)];
    h.write(vec![h.batch(BufferKey::Data, records)]).await.unwrap();
    let summary = h.summary();
    assert_eq!(
        (
            summary.records_delivered,
            summary.error_records,
            summary.objects_written
        ),
        (2, 1, 2),
        "{summary:?}"
    );
}

#[tokio::test]
async fn a_record_the_format_refuses_is_an_error_record_and_the_others_stay_data() {
    let h = Harness::parquet().await;
    let records = vec![record(1, r#"{"n":1}"#), record(2, r#"{"n":"#), record(3, r#"{"n":3}"#)];
    h.write(vec![h.batch(BufferKey::Data, records.clone())]).await.unwrap();

    // Each object is named after its own first record.
    let data_key = "events/2024/05/06/07/clicks-shard-1-1-0.parquet";
    let error_key = "errors/format-conversion-failed/2024/05/06/clicks-shard-1-2-0.jsonl";
    // With the table schema's first version, put before the data.
    assert_eq!(h.keys(), ["_spillway/schemas/clicks/1.json", error_key, data_key]);
    let mut archived = Vec::new();
    let body = h.store().get(&key(data_key)).unwrap();
    spillway_transforms::format::parquet::read_archive(body, |r| {
        let position = r.position.expect("the position columns are written");
        archived.push((position.sequence_number.to_owned(), r.data.to_vec()));
    })
    .unwrap();
    let expected: Vec<_> = [&records[0], &records[2]]
        .iter()
        .map(|r| (r.position.offset.sequence_number.as_str().to_owned(), r.data.to_vec()))
        .collect();
    assert_eq!(archived, expected);

    let error_object = h.store().get(&key(error_key)).unwrap();
    let lines = error_lines(&error_object);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(raw_data(&lines[0]), records[1].data);
    assert_eq!(lines[0]["sequenceNumber"], "2");
    assert_eq!(lines[0]["errorCode"], "Record.MalformedJson", "{}", lines[0]);
    // Both objects written, the checkpoint is past all three.
    assert_eq!(h.checkpoint(), Some(offset(3)));
    assert!(h.saved().pending.is_empty());
}

#[tokio::test]
async fn a_stop_while_a_put_is_retried_ends_the_run_and_keeps_its_intent() {
    let mut h = Harness::json_lines("").await;
    h.store().fail_next(Operation::Put, 1_000, Failure::Transient);
    let stop = tokio_util::sync::CancellationToken::new();
    h.retry = h.retry.clone().stopped_by(&stop);
    let stopper = {
        let store = h.store().clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while store.calls().len() < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.cancel();
        })
    };
    let err = h
        .write(vec![h.batch(BufferKey::Data, three_records())])
        .await
        .unwrap_err();
    stopper.await.unwrap();
    assert!(
        matches!(&err, RunError::Stopped { what, .. } if what.contains(DATA_KEY)),
        "{err:?}"
    );
    // Neither delivered nor given up on: no object, no error records, and
    // the intent is left for the next start to settle.
    assert!(h.store().is_empty());
    assert_eq!(h.checkpoint(), None);
    let pending: Vec<String> = h.saved().pending.into_iter().map(|p| p.key).collect();
    assert_eq!(pending, [DATA_KEY]);
    let summary = h.summary();
    assert_eq!((summary.records_delivered, summary.error_records), (0, 0));
}

mod properties {
    //! Any records, in any batches, through any run of passing failures
    //! and lost answers: each batch is one object of exactly its records.

    use proptest::prelude::*;

    use super::*;

    const CODECS: [(&str, Compression); 4] = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
        ("zip", Compression::Zip),
    ];

    async fn deliver_batches(codec: usize, batches: Vec<Vec<Vec<u8>>>, failures: usize, lost: usize) {
        let (name, compression) = CODECS[codec];
        let h = Harness::new(
            &format!("compression = \"{name}\""),
            "type = \"raw\"\ndelimiter = \"\\n\"",
        )
        .await;
        h.store().fail_next(Operation::Put, failures, Failure::Transient);
        h.watched.lose_responses.store(lost, Ordering::SeqCst);
        let mut sequence = 0;
        let mut expected = std::collections::BTreeMap::new();
        let mut flushed = Vec::new();
        for datas in &batches {
            let records: Vec<Record> = datas
                .iter()
                .map(|data| {
                    sequence += 1;
                    let mut r = record(sequence, "");
                    r.data = Bytes::from(data.clone());
                    r
                })
                .collect();
            let first = records[0].position.offset.sequence_number.as_str().to_owned();
            let k = format!(
                "events/2024/05/06/07/clicks-shard-1-{first}-0{}",
                compression.extension()
            );
            let body: Vec<u8> = datas.iter().flat_map(|d| [&d[..], b"\n"].concat()).collect();
            expected.insert(k, body);
            flushed.push(h.batch(BufferKey::Data, records));
        }
        h.write(flushed).await.unwrap();

        let found: std::collections::BTreeMap<String, Vec<u8>> = h
            .store()
            .keys()
            .into_iter()
            .map(|k| {
                let bytes = h.store().get(&k).unwrap();
                (k.to_string(), compression.decompress(&bytes).unwrap())
            })
            .collect();
        assert_eq!(found, expected);
        assert_eq!(h.checkpoint(), Some(offset(sequence)));
        assert!(h.saved().pending.is_empty());
        let summary = h.summary();
        assert_eq!(summary.records_delivered, sequence);
        assert_eq!(summary.objects_written, batches.len() as u64);
        assert_eq!(summary.error_records, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn every_record_is_in_exactly_one_object_with_its_bytes(
            codec in 0..CODECS.len(),
            batches in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 1..48), 1..12),
                1..5,
            ),
            failures in 0usize..4,
            lost in 0usize..3,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(deliver_batches(codec, batches, failures, lost));
        }
    }
}

/// At most two buffers are alive: while the writer works on one, a second
/// may fill; once it is full, the router hands it over and reads nothing
/// more until the writer has taken it (issue #17: a third buffer filling
/// behind a queued one held the whole input in memory at 64 MB).
#[tokio::test]
async fn the_router_fills_no_third_buffer_while_one_is_written_and_one_waits() {
    use std::sync::atomic::Ordering::SeqCst;

    use crate::buffer::BufferLimits;
    use crate::source::SourceEvent;

    let harness = Harness::json_lines("").await;
    let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n";
    let config = crate::config::parse(text, "test", &|_| None).unwrap();
    // Two records fill a buffer.
    let limits = BufferLimits {
        max_bytes: 1024,
        max_age: Duration::from_secs(3600),
        max_records: 2,
    };
    let (batches_tx, mut batches) = mpsc::channel(super::BATCH_CHANNEL_CAPACITY);
    let (events, events_rx) = mpsc::channel(4);
    let router = super::router::Router::new(
        &config,
        limits,
        harness.checkpoints.clone(),
        harness.telemetry.clone(),
        batches_tx,
        crate::limits::MemoryBudget::unlimited(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let routed = tokio::spawn(router.run(events_rx, stop));
    let buffer = |n: u64| {
        crate::limits::Charged::free(SourceEvent::Records(vec![
            record(2 * n + 1, "{\"a\":1}"),
            record(2 * n + 2, "{\"a\":2}"),
        ]))
    };
    let read = || harness.telemetry.stats().records_read.load(SeqCst);
    let settle = || tokio::time::sleep(Duration::from_millis(200));

    // The first buffer is full and handed over; the writer takes it and
    // keeps working on it.
    events.send(buffer(0)).await.unwrap();
    let first = batches.recv().await.unwrap();
    assert_eq!(first.items.len(), 2);
    // The second fills and waits for the writer; the third is not read.
    events.send(buffer(1)).await.unwrap();
    events.send(buffer(2)).await.unwrap();
    settle().await;
    assert_eq!(read(), 4, "a third buffer was filled while two were alive");
    // The writer is done with the first and takes the second: the third
    // fills, and waits in turn.
    drop(first);
    let second = batches.recv().await.unwrap();
    settle().await;
    assert_eq!(read(), 6);
    drop(second);
    let third = batches.recv().await.unwrap();
    assert_eq!(third.items[0].record.position.offset, offset(5));
    drop(events);
    assert!(batches.recv().await.is_none());
    assert!(matches!(routed.await.unwrap(), Ok(FlushReason::EndOfInput)));
}

/// Issue #20: a new version of the table schema is in the checkpoint
/// before its schema object is put, and both before the first object
/// written under it.
#[tokio::test]
async fn a_table_schema_version_is_saved_then_published_before_any_object_under_it() {
    let h = Harness::parquet().await;
    let first = vec![record(1, r#"{"n":1}"#)];
    let grows = vec![record(2, r#"{"n":"2","m":true}"#), record(3, r#"{"n":"x"}"#)];
    h.write(vec![h.batch(BufferKey::Data, first)]).await.unwrap();
    h.write(vec![h.batch(BufferKey::Data, grows)]).await.unwrap();

    let puts = h.watched.puts.lock().unwrap().clone();
    let order: Vec<(String, Option<u64>)> = puts
        .iter()
        .map(|(k, saved)| {
            let version = saved.as_ref().and_then(|s| s.table_schema.as_ref()).map(|t| t.version);
            (k.to_string(), version)
        })
        .collect();
    assert_eq!(
        order,
        [
            ("_spillway/schemas/clicks/1.json".to_owned(), Some(1)),
            ("events/2024/05/06/07/clicks-shard-1-1-0.parquet".to_owned(), Some(1)),
            ("_spillway/schemas/clicks/2.json".to_owned(), Some(2)),
            ("events/2024/05/06/07/clicks-shard-1-2-0.parquet".to_owned(), Some(2)),
            (
                "errors/format-conversion-failed/2024/05/06/clicks-shard-1-3-0.jsonl".to_owned(),
                Some(2)
            ),
        ],
        "(put, table schema version saved when it began)"
    );
    let schema = h.store().get(&key("_spillway/schemas/clicks/2.json")).unwrap();
    let schema =
        spillway_transforms::format::parquet::TableSchema::from_json(std::str::from_utf8(&schema).unwrap()).unwrap();
    assert_eq!(Some(&schema), h.saved().table_schema.as_ref());
    assert_eq!(
        schema
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.ty))
            .collect::<Vec<_>>(),
        ["n:int64", "m:boolean"]
    );
    let errors = String::from_utf8(
        h.store()
            .get(&key(
                "errors/format-conversion-failed/2024/05/06/clicks-shard-1-3-0.jsonl",
            ))
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(errors.contains("Parquet.TypeMismatch"), "{errors}");
}

/// When the memory budget is full, the router flushes its largest buffer
/// early (`memory_limit`), then the next while it stays full; the charges
/// of the batches are released when the writer is done with them.
#[tokio::test]
async fn a_full_budget_flushes_the_largest_buffer_first() {
    use crate::buffer::record_cost;
    use crate::buffer::BufferLimits;
    use crate::limits::{Charged, MemoryBudget};
    use crate::source::SourceEvent;

    let harness = Harness::json_lines("").await;
    let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n";
    let config = crate::config::parse(text, "test", &|_| None).unwrap();
    let limits = BufferLimits {
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
        max_records: 1000,
    };
    let big = format!("{{\"pad\":\"{}\"}}", "p".repeat(2000));
    // Two large records and an invalid one (an error record) fill it.
    let budget = MemoryBudget::new(2 * record_cost(big.len()) + 100);
    let (batches_tx, mut batches) = mpsc::channel(super::BATCH_CHANNEL_CAPACITY);
    let (events, events_rx) = mpsc::channel(4);
    let router = super::router::Router::new(
        &config,
        limits,
        harness.checkpoints.clone(),
        harness.telemetry.clone(),
        batches_tx,
        budget.clone(),
    );
    let routed = tokio::spawn(router.run(events_rx, tokio_util::sync::CancellationToken::new()));
    let send = |records: Vec<Record>| {
        let events = events.clone();
        async move { events.send(Charged::free(SourceEvent::Records(records))).await.unwrap() }
    };
    send(vec![record(1, &big)]).await;
    send(vec![record(2, "not json")]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(batches.try_recv().is_err(), "flushed before the budget was full");
    send(vec![record(3, &big)]).await;
    let wait = Duration::from_secs(5);
    let first = tokio::time::timeout(wait, batches.recv())
        .await
        .expect("no flush with the budget full")
        .unwrap();
    assert_eq!(
        (first.key.clone(), first.reason, first.items.len()),
        (BufferKey::Data, FlushReason::MemoryLimit, 2),
        "the data buffer is the largest"
    );
    // Still full while the first batch is held: the error buffer next.
    let second = tokio::time::timeout(wait, batches.recv())
        .await
        .expect("no second flush with the budget full")
        .unwrap();
    assert!(matches!(second.key, BufferKey::Error(_)), "{:?}", second.key);
    assert_eq!(second.reason, FlushReason::MemoryLimit);
    drop((first, second));
    assert_eq!(budget.used(), 0, "released once the writer is done");
    drop(events);
    assert!(matches!(routed.await.unwrap(), Ok(FlushReason::EndOfInput)));
}

/// A batch's charge is released once the writer is done with it: written,
/// written after retries, or abandoned on an error no retry can fix; and
/// so is a Parquet object's, held whole while it is put.
#[tokio::test]
async fn the_writer_releases_what_a_batch_holds_however_its_delivery_ends() {
    let budget = crate::limits::MemoryBudget::new(usize::MAX);
    for failure in [None, Some(Failure::Transient), Some(Failure::PermissionDenied)] {
        for parquet in [false, true] {
            let mut h = match parquet {
                false => Harness::json_lines("").await,
                true => Harness::parquet().await,
            };
            h.budget = budget.clone();
            if let Some(failure) = failure {
                h.store().fail_next(Operation::Put, 1, failure);
            }
            let mut batch = h.batch(BufferKey::Data, three_records());
            batch.charge = budget.charge(1234);
            let result = h.write(vec![batch]).await;
            assert_eq!(
                result.is_err(),
                failure == Some(Failure::PermissionDenied),
                "{failure:?}"
            );
            assert_eq!(budget.used(), 0, "{failure:?}, parquet: {parquet}");
        }
    }
}
