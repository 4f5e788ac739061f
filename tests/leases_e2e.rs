//! Several `spillway run` processes sharing one Kinesis stream through the
//! lease table (issue #22): kinesalite's stream, moto's DynamoDB table, one
//! archive they all write to (a local directory, or a bucket on moto's
//! S3), 3-second leases.
//!
//! What a user cares about, checked on the archive once every instance has
//! stopped: every record put into the stream is archived exactly once, and
//! the records of each partition key in the order they were put, however
//! the shards moved between instances. On the way: every shard has one
//! owner and the load is within one shard of even (read with `spillway
//! leases --json`), a joining instance gets its share, an instance stopped
//! with SIGTERM hands its shards over without their leases expiring, and
//! after a split and a merge children are read only after their parents.
//! Failures: an instance killed with `kill -9` while it writes (its shards
//! taken and read again after its leases expire, its pending intents
//! redone), one paused with SIGSTOP past its lease then resumed (it gives
//! its shards up at its first conditional write), and DynamoDB unreachable
//! past a lease (the fault proxy: every instance stops reading what it
//! cannot prove it holds, then takes its share again).
//!
//! A lease taken while it holds an intent (an object its last owner was
//! writing) is read by its new owner, which redoes the intent (issue #22
//! step 3, `docs/leases.md`); a test waiting for records that never come
//! names the shards whose leases still hold pending intents.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway_destinations::Compression;
use support::fault_proxy::{Fault, FaultProxy};
use support::kinesis::{client, merge, new_stream, peer, split};
use support::moto::Moto;
use support::{spawn_run, spillway, write_config, LogWatch};

/// Short, as the issue asks of tests; a renewal every second.
const LEASE_SECONDS: u64 = 3;
/// A third of the lease (`Keeper::renewal_interval`).
const RENEWAL: Duration = Duration::from_secs(LEASE_SECONDS).checked_div(3).unwrap();
/// Buffers are flushed this often (the test hook).
const INTERVAL_MS: u64 = 1000;
/// Partition keys the producer writes, spread evenly over the hash key
/// space: two per shard of a 16-shard stream.
const KEYS: u64 = 32;

/// One `spillway run` process, in its own directory, killed if the test
/// ends without stopping it.
struct Instance {
    worker: String,
    config: PathBuf,
    child: Child,
    logs: Option<LogWatch>,
}

/// How an instance differs from the others.
#[derive(Default)]
struct Setup<'a> {
    /// Appended to its configuration.
    extra: &'a str,
    /// How often its buffers are flushed ([`INTERVAL_MS`] when not given).
    interval_ms: Option<u64>,
    /// Its DynamoDB endpoint (moto's when not given): a fault proxy.
    dynamodb: Option<&'a str>,
    /// Its S3 endpoint, with an S3 archive (moto's when not given).
    s3: Option<&'a str>,
}

impl Instance {
    fn start(test: &Test, worker: &str) -> Self {
        Self::start_setup(test, worker, &Setup::default())
    }

    /// An instance whose configuration ends with `extra`, its buffers
    /// flushed every `interval_ms`.
    fn start_with(test: &Test, worker: &str, extra: &str, interval_ms: u64) -> Self {
        let setup = Setup {
            extra,
            interval_ms: Some(interval_ms),
            ..Setup::default()
        };
        Self::start_setup(test, worker, &setup)
    }

    /// An instance serving its metrics on `address`.
    fn start_serving(test: &Test, worker: &str, address: std::net::SocketAddr) -> Self {
        let extra = format!("[telemetry]\nlisten = \"{address}\"\n");
        let setup = Setup {
            extra: &extra,
            ..Setup::default()
        };
        Self::start_setup(test, worker, &setup)
    }

    fn start_setup(test: &Test, worker: &str, setup: &Setup) -> Self {
        let dir = test.dir.path().join(worker);
        std::fs::create_dir_all(&dir).unwrap();
        let config = write_config(&dir, &format!("{}{}", test.config_for(worker, setup), setup.extra));
        let mut child = spawn_run(&dir, &config, setup.interval_ms.unwrap_or(INTERVAL_MS));
        let logs = Some(LogWatch::new(&mut child));
        Self {
            worker: worker.to_owned(),
            config,
            child,
            logs,
        }
    }

    /// SIGTERM, then waits for the exit (0) and returns every log line.
    fn stop(mut self) -> Vec<serde_json::Value> {
        support::send_signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{} did not exit after SIGTERM", self.worker);
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = self.logs.take().unwrap().finish();
        assert!(
            status.success(),
            "{} exited with {status}: {}",
            self.worker,
            lines.join("\n")
        );
        lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Instance {
    /// `kill -9`, then every log line it wrote.
    fn kill(mut self) -> Vec<serde_json::Value> {
        support::send_signal(&self.child, libc::SIGKILL);
        self.child.wait().unwrap();
        json_lines(&self.logs.take().unwrap().finish())
    }

    /// The JSON log lines it wrote so far (waiting for new ones at most
    /// `wait`).
    fn logs_so_far(&mut self, wait: Duration) -> Vec<serde_json::Value> {
        let watch = self.logs.as_mut().unwrap();
        // No line holds this: reads what came within `wait`.
        watch.wait_for("\u{0}never", wait);
        json_lines(&watch.seen)
    }
}

fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test's logs, for whoever looks into it: in the
        // directory `SPILLWAY_TEST_KEEP_LOGS` names, when set.
        if let (true, Some(dir), Some(logs)) = (
            std::thread::panicking(),
            std::env::var_os("SPILLWAY_TEST_KEEP_LOGS"),
            self.logs.take(),
        ) {
            let name = format!(
                "{}-{}.log",
                self.config.parent().unwrap().parent().unwrap().display(),
                self.worker
            );
            let name = name.replace('/', "_");
            let _ = std::fs::write(Path::new(&dir).join(name), logs.finish().join("\n"));
        }
    }
}

/// Where the instances archive: a local directory, or a bucket on moto's
/// S3 (the objects read so far kept: a key is written once).
enum Archive {
    Local(PathBuf),
    S3 {
        moto: Moto,
        read: RefCell<BTreeMap<String, Vec<u8>>>,
    },
}

impl Archive {
    /// The `[destination]`'s lines, S3 through `s3` when given.
    fn destination(&self, s3: Option<&str>) -> String {
        match self {
            Archive::Local(path) => format!("type = \"local\"\npath = \"{}\"\n", path.display()),
            Archive::S3 { moto, .. } => format!(
                "type = \"s3\"\nbucket = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\
                 force_path_style = true\nchecksum = \"when_required\"\n",
                moto.bucket,
                s3.unwrap_or(&moto.endpoint)
            ),
        }
    }

    /// Every object under `events/`: key → decompressed bytes.
    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        match self {
            Archive::Local(path) => support::objects(path)
                .into_iter()
                .filter(|(key, _)| key.starts_with("events/"))
                .collect(),
            Archive::S3 { moto, read } => {
                let mut read = read.borrow_mut();
                let listed = moto.rt.block_on(async {
                    let mut keys = Vec::new();
                    let mut token = None;
                    loop {
                        let page = moto
                            .s3
                            .list_objects_v2()
                            .bucket(&moto.bucket)
                            .prefix("events/")
                            .set_continuation_token(token)
                            .send()
                            .await
                            .unwrap();
                        keys.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
                        token = page.next_continuation_token().map(str::to_owned);
                        if token.is_none() {
                            return keys;
                        }
                    }
                });
                for key in listed {
                    if read.contains_key(&key) {
                        continue;
                    }
                    let body = moto.rt.block_on(async {
                        let got = moto
                            .s3
                            .get_object()
                            .bucket(&moto.bucket)
                            .key(&key)
                            .send()
                            .await
                            .unwrap();
                        got.body.collect().await.unwrap().into_bytes().to_vec()
                    });
                    let codec = match key.rsplit('.').next() {
                        Some("gz") => Compression::Gzip,
                        Some("snappy") => Compression::Snappy,
                        Some("zst") => Compression::Zstd,
                        Some("zip") => Compression::Zip,
                        _ => Compression::None,
                    };
                    read.insert(key, codec.decompress(&body).unwrap());
                }
                read.clone()
            }
        }
    }
}

/// A stream, a lease table and an archive shared by the instances.
struct Test {
    dir: tempfile::TempDir,
    stream: String,
    table: String,
    kinesis: String,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    archive: Archive,
    /// A configuration talking to moto directly, for `spillway leases`
    /// whatever the instances' endpoints.
    observer: PathBuf,
}

impl Test {
    /// Archiving into a local directory.
    fn new(name: &str, shards: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::Local(dir.path().join("archive"));
        Self::with_archive(name, shards, dir, archive)
    }

    /// Archiving into a new bucket on moto's S3.
    fn new_s3(name: &str, shards: i32) -> Self {
        let archive = Archive::S3 {
            moto: Moto::new(name),
            read: RefCell::default(),
        };
        Self::with_archive(name, shards, tempfile::tempdir().unwrap(), archive)
    }

    fn with_archive(name: &str, shards: i32, dir: tempfile::TempDir, archive: Archive) -> Self {
        let (kinesis, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", name, shards);
        let mut test = Self {
            dir,
            table: format!("{stream}-leases"),
            stream,
            kinesis,
            rt,
            client,
            archive,
            observer: PathBuf::new(),
        };
        let observer = test.dir.path().join("observer");
        std::fs::create_dir_all(&observer).unwrap();
        test.observer = write_config(&observer, &test.config("observer"));
        test
    }

    fn config(&self, worker: &str) -> String {
        self.config_for(worker, &Setup::default())
    }

    fn config_for(&self, worker: &str, setup: &Setup) -> String {
        format!(
            r#"name = "orders"
[source]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{kinesis}"
poll_interval_ms = 200
shard_discovery_seconds = 1
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
{destination}prefix = "events/"
[checkpoint]
path = "state"
[coordination]
type = "dynamodb"
table = "{table}"
region = "us-east-1"
endpoint = "{dynamodb}"
worker_id = "{worker}"
lease_duration_seconds = {LEASE_SECONDS}
"#,
            stream = self.stream,
            kinesis = self.kinesis,
            destination = self.archive.destination(setup.s3),
            table = self.table,
            dynamodb = setup.dynamodb.map_or_else(|| peer("SPILLWAY_TEST_MOTO"), str::to_owned),
        )
    }

    /// The lease table as `spillway leases --json` prints it: shard → row
    /// (none before the first instance has made the table).
    fn leases(&self, config: &Path) -> BTreeMap<String, serde_json::Value> {
        let out = spillway()
            .args(["leases", "--json", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(1) && stderr.starts_with("error: no lease table") {
            return BTreeMap::new();
        }
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .map(|row| (row["shard"].as_str().unwrap().to_owned(), row))
            .collect()
    }

    /// Shards per owner among the leases held (not ended, not free).
    fn load(&self, config: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let mut load: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (shard, row) in self.leases(config) {
            if row["state"] == "held" {
                load.entry(row["owner"].as_str().unwrap().to_owned())
                    .or_default()
                    .insert(shard);
            }
        }
        load
    }

    /// Waits until the open shards' leases (`shards` of them) are all held
    /// by `workers`, each holding within one of the others.
    fn wait_balanced(&self, config: &Path, shards: usize, workers: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let load = self.load(config);
            let counts: Vec<usize> = workers.iter().map(|w| load.get(*w).map_or(0, BTreeSet::len)).collect();
            let held: usize = load.values().map(BTreeSet::len).sum();
            let owners_known = load.keys().all(|owner| workers.contains(&owner.as_str()));
            let even = counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1;
            if held == shards && owners_known && even {
                return load;
            }
            assert!(
                Instant::now() < deadline,
                "the leases never balanced over {workers:?}: {load:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The ids archived so far, with how often each.
    fn archived_ids(&self) -> BTreeMap<u64, usize> {
        let mut seen = BTreeMap::new();
        for line in support::lines_under(&self.archive.objects(), "events/") {
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            *seen.entry(value["id"].as_u64().unwrap()).or_insert(0) += 1;
        }
        seen
    }

    /// Waits until every id put is archived.
    fn wait_archived(&self, produced: &[Put], instances: &[&Instance]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let want: BTreeSet<u64> = produced.iter().map(|p| p.id).collect();
        loop {
            let seen = self.archived_ids();
            let missing: Vec<u64> = want.iter().filter(|id| !seen.contains_key(id)).copied().collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let leases = self.leases(&instances[0].config);
                let pending: Vec<&String> = leases
                    .iter()
                    .filter(|(_, row)| row["pending"].as_u64().unwrap_or(0) > 0)
                    .map(|(shard, _)| shard)
                    .collect();
                panic!(
                    "{} of {} records never archived, e.g. {:?}; shards whose lease holds pending intents \
                     : {pending:?}; leases: {leases:?}",
                    missing.len(),
                    want.len(),
                    &missing[..missing.len().min(10)]
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every id put archived once, and each key's records in the order
    /// they were put. Objects are taken in the order of their names within
    /// a shard (the name holds the first record's sequence number; objects
    /// of one shard may be written in any order, `max_concurrent_puts`
    /// of them at a time), and shards in the order their first object was
    /// written (the "flushed" lines of every instance, by their time): a
    /// parent's objects before its children's.
    fn assert_exactly_once_in_order(&self, produced: &[Put], logs: &[Vec<serde_json::Value>]) {
        // A key may be logged twice: written by an owner killed or paused
        // before it saved that, then found by the next owner's redo.
        let mut first_written: BTreeMap<String, chrono::DateTime<chrono::FixedOffset>> = BTreeMap::new();
        for line in logs.iter().flatten().filter(|l| l["message"] == "flushed") {
            let key = line["key"].as_str().unwrap().to_owned();
            let at = at(line);
            first_written.entry(key).and_modify(|t| *t = (*t).min(at)).or_insert(at);
        }
        let objects = self.archive.objects();
        let archived: BTreeSet<&String> = objects.keys().collect();
        let logged: BTreeSet<&String> = first_written.keys().collect();
        assert_eq!(archived, logged, "objects in the archive and objects logged as written");
        let mut shard_first: BTreeMap<String, chrono::DateTime<chrono::FixedOffset>> = BTreeMap::new();
        for (key, at) in &first_written {
            let name = self.object_name(key);
            shard_first
                .entry(name.shard)
                .and_modify(|t| *t = (*t).min(*at))
                .or_insert(*at);
        }
        let mut written: Vec<(chrono::DateTime<chrono::FixedOffset>, ObjectName, String)> = first_written
            .keys()
            .map(|key| {
                let name = self.object_name(key);
                (shard_first[&name.shard], name, key.clone())
            })
            .collect();
        written.sort();
        let written: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> =
            written.into_iter().map(|(at, _, key)| (at, key)).collect();

        let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
        let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (_, key) in &written {
            for line in objects[key].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let value: serde_json::Value = serde_json::from_slice(line).unwrap();
                *copies.entry(value["id"].as_u64().unwrap()).or_insert(0) += 1;
                per_key
                    .entry(value["key"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(value["n"].as_u64().unwrap());
            }
        }
        let twice: Vec<_> = copies.iter().filter(|(_, &c)| c > 1).take(10).collect();
        assert!(twice.is_empty(), "archived more than once (id, copies): {twice:?}");
        let want: BTreeSet<u64> = produced.iter().map(|p| p.id).collect();
        let got: BTreeSet<u64> = copies.keys().copied().collect();
        assert_eq!(got, want, "the ids archived are the ids put");
        // The producer puts each key's records one after the other, n = 0, 1, ...
        let mut put_per_key: BTreeMap<&str, u64> = BTreeMap::new();
        for put in produced {
            *put_per_key.entry(put.key.as_str()).or_default() += 1;
        }
        for (key, count) in put_per_key {
            let expected: Vec<u64> = (0..count).collect();
            assert_eq!(per_key[key], expected, "key {key}: archived out of order");
        }
    }
}

/// What an object's name says of its first record:
/// `<pipeline>-<shard>-<sequence>-<subsequence><extensions>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectName {
    shard: String,
    /// Decimal digits, compared as numbers: by length first.
    sequence: (usize, String),
    subsequence: u64,
}

impl Test {
    fn object_name(&self, key: &str) -> ObjectName {
        let file = key.rsplit('/').next().unwrap();
        let rest = file
            .strip_prefix("orders-")
            .unwrap_or_else(|| panic!("{key}: not named after the pipeline"));
        let rest = rest.split('.').next().unwrap();
        let mut parts = rest.rsplitn(3, '-');
        let subsequence = parts.next().unwrap().parse().unwrap();
        let sequence = parts.next().unwrap().to_owned();
        let shard = parts.next().unwrap().to_owned();
        ObjectName {
            shard,
            sequence: (sequence.len(), sequence),
            subsequence,
        }
    }
}

/// A record the producer put.
#[derive(Clone, Debug)]
struct Put {
    id: u64,
    key: String,
}

/// Puts records into the stream until stopped, round after round: one
/// record of each of [`KEYS`] keys per round, each key at a hash key of
/// its own (spread evenly, so that every shard gets some and a split
/// shard's keys go to both children), each record `{"id", "key", "n"}`
/// with `n` counting the key's records.
struct Producer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Put>>,
}

impl Producer {
    fn start(test: &Test) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (endpoint, stream, flag) = (test.kinesis.clone(), test.stream.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = support::kinesis::runtime();
            rt.block_on(async {
                let client = client(&endpoint).await;
                let mut put = Vec::new();
                for round in 0u64.. {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    put.extend(put_round(&client, &stream, round).await);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                put
            })
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<Put> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Puts round `round` of the producer's records: one of each key, `n` =
/// `round`.
async fn put_round(client: &aws_sdk_kinesis::Client, stream: &str, round: u64) -> Vec<Put> {
    let step = u128::MAX / u128::from(KEYS);
    let mut put = Vec::new();
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let id = round * KEYS + k;
        let data = format!(r#"{{"id":{id},"key":"{key}","n":{round}}}"#);
        client
            .put_record()
            .stream_name(stream)
            .partition_key(&key)
            .explicit_hash_key((step * u128::from(k) + step / 2).to_string())
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
        put.push(Put { id, key });
    }
    put
}

/// The log lines of `logs` with `message`.
fn lines_of<'a>(logs: &'a [serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    logs.iter().filter(|l| l["message"] == message).collect()
}

/// When a JSON log line was written (every instance on this machine's
/// clock).
fn at(line: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap()
}

/// SIGTERM to an instance whose records are all in its buffers: before it
/// releases its leases it writes them and saves their checkpoints into the
/// leases, so the archive holds them all once it has exited, and the
/// leases are free (no owner), with nothing pending. The next instance
/// reads on from those checkpoints: nothing archived twice.
#[test]
fn sigterm_writes_what_was_read_checkpoints_it_then_releases_and_the_next_instance_reads_on() {
    let test = Test::new("leases-e2e-sigterm", 4);
    let address = support::metrics::free_address();
    // Buffers flushed only at the stop.
    let w1 = Instance::start_with(&test, "w1", &format!("[telemetry]\nlisten = \"{address}\"\n"), 600_000);
    let mut produced: Vec<Put> = Vec::new();
    for round in 0..5 {
        produced.extend(test.rt.block_on(put_round(&test.client, &test.stream, round)));
    }
    let (_, metrics) = support::metrics::wait_for(address, "/metrics", |_, body| {
        let samples = support::metrics::samples(body);
        support::metrics::sum(&samples, "spillway_incoming_records_total", &[]) >= produced.len() as f64
    });
    // Alone, w1 holds every lease, each won once and none lost.
    let samples = support::metrics::samples(&metrics);
    assert_eq!(
        support::metrics::sum(&samples, "spillway_leases_held", &[]),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        support::metrics::sum(&samples, "spillway_leases_taken_total", &[]),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        support::metrics::sum(&samples, "spillway_leases_lost_total", &[]),
        0.0,
        "{metrics}"
    );
    let config = w1.config.clone();
    let logs = w1.stop();
    assert_eq!(
        test.archived_ids().len(),
        produced.len(),
        "every record read is archived once w1 has exited"
    );
    let last_flush = logs.iter().rposition(|l| l["message"] == "flushed");
    let first_release = logs.iter().position(|l| l["message"] == "lease released");
    assert!(
        last_flush.is_some() && first_release.is_some(),
        "flushed, then released"
    );
    assert!(
        last_flush < first_release,
        "a lease was released before the last object was written"
    );
    let leases = test.leases(&config);
    assert_eq!(leases.len(), 4, "{leases:?}");
    for (shard, row) in &leases {
        assert_eq!(row["state"], "free", "{shard}: {row}");
        assert_eq!(row["pending"], 0, "{shard}: {row}");
        assert!(row["checkpoint"].is_string(), "{shard} has no checkpoint: {row}");
    }

    for round in 5..10 {
        produced.extend(test.rt.block_on(put_round(&test.client, &test.stream, round)));
    }
    let w2 = Instance::start(&test, "w2");
    test.wait_archived(&produced, &[&w2]);
    let logs = vec![logs, w2.stop()];
    test.assert_exactly_once_in_order(&produced, &logs);
}

/// Three instances on a 16-shard stream with records flowing: every shard
/// one owner, the load within one of even. A fourth joins and gets its
/// share. One is stopped with SIGTERM: it writes what it read, saves its
/// checkpoints and releases its leases, and the others take them at their
/// next round, not once they expired. Every record is archived exactly
/// once, in order per key.
#[test]
fn three_instances_balance_a_fourth_gets_its_share_and_sigterm_hands_shards_over() {
    let test = Test::new("leases-e2e-balance", 16);
    let producer = Producer::start(&test);
    let addresses: Vec<std::net::SocketAddr> = (0..4).map(|_| support::metrics::free_address()).collect();
    let w1 = Instance::start_serving(&test, "w1", addresses[0]);
    let w2 = Instance::start_serving(&test, "w2", addresses[1]);
    let w3 = Instance::start_serving(&test, "w3", addresses[2]);
    let load = test.wait_balanced(&w1.config, 16, &["w1", "w2", "w3"]);
    eprintln!("three instances: {load:?}");

    let w4 = Instance::start_serving(&test, "w4", addresses[3]);
    let load = test.wait_balanced(&w1.config, 16, &["w1", "w2", "w3", "w4"]);
    assert_eq!(load["w4"].len(), 4, "the fourth instance's share: {load:?}");
    // Each instance's metrics say what the lease table says it holds; w4's
    // four were taken from the others (every lease was held), and they
    // count them as lost to another instance.
    let mut lost_to_another = 0.0;
    for (worker, address) in ["w1", "w2", "w3", "w4"].iter().zip(&addresses) {
        let holds = load[*worker].len() as f64;
        let (_, metrics) = support::metrics::wait_for(*address, "/metrics", |_, body| {
            support::metrics::sum(&support::metrics::samples(body), "spillway_leases_held", &[]) == holds
        });
        let samples = support::metrics::samples(&metrics);
        assert_eq!(
            support::metrics::sum(&samples, "spillway_leases_held", &[]),
            holds,
            "{worker}: {metrics}"
        );
        lost_to_another += support::metrics::sum(&samples, "spillway_leases_lost_total", &["reason=\"taken\""]);
    }
    assert!(
        lost_to_another >= 4.0,
        "w4's shards were lost by the others {lost_to_another} times"
    );
    let handed_over = test.load(&w1.config)["w2"].clone();

    // SIGTERM to w2 while records flow: its shards move to the others.
    let stopped_at = Instant::now();
    let sigterm = chrono::Utc::now();
    support::send_signal(&w2.child, libc::SIGTERM);
    let moved_after = loop {
        let leases = test.leases(&w1.config);
        let moved = handed_over.iter().all(|shard| {
            let owner = leases[shard]["owner"].as_str();
            leases[shard]["state"] == "held" && owner.is_some_and(|o| o != "w2")
        });
        if moved {
            break stopped_at.elapsed();
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(30),
            "w2's shards never moved: {leases:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("w2's shards {handed_over:?} held by others {moved_after:?} after its SIGTERM");
    let w2_logs = w2.stop();
    let released: BTreeSet<String> = lines_of(&w2_logs, "lease released")
        .iter()
        .map(|l| l["shard"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(released, handed_over, "w2 released each of its leases");
    let last_flush = w2_logs.iter().rposition(|l| l["message"] == "flushed");
    let first_release = w2_logs.iter().position(|l| l["message"] == "lease released");
    assert!(
        last_flush < first_release,
        "w2 released a lease before its last object was written"
    );

    let produced = producer.stop();
    test.wait_archived(&produced, &[&w1, &w3, &w4]);
    let mut logs = vec![w2_logs];
    for instance in [w1, w3, w4] {
        logs.push(instance.stop());
    }
    // Each taken after the SIGTERM as released (no owner), not as expired
    // from w2: the hand-over did not wait for the leases to run out.
    for shard in &handed_over {
        let take = logs[1..]
            .iter()
            .flat_map(|l| lines_of(l, "lease taken"))
            .filter(|l| l["shard"] == shard.as_str() && at(l) > sigterm)
            .min_by_key(|l| at(l))
            .unwrap_or_else(|| panic!("nobody took {shard} after w2's SIGTERM"));
        assert_eq!(take["from"], "None", "{shard} was not taken as released by w2: {take}");
    }
    assert!(
        moved_after < Duration::from_secs(LEASE_SECONDS),
        "w2's shards moved {moved_after:?} after its SIGTERM: not before its leases could expire"
    );
    test.assert_exactly_once_in_order(&produced, &logs);
}

/// A split and a merge while three instances run: each child is read only
/// once its parents were read to their end and delivered (whichever
/// instance held them), and every record is archived exactly once, each
/// key's in order across the parent and the child it moved to.
#[test]
fn a_split_and_a_merge_while_three_instances_run_read_parents_before_children() {
    let test = Test::new("leases-e2e-reshard", 4);
    let producer = Producer::start(&test);
    let instances = [
        Instance::start(&test, "w1"),
        Instance::start(&test, "w2"),
        Instance::start(&test, "w3"),
    ];
    test.wait_balanced(&instances[0].config, 4, &["w1", "w2", "w3"]);
    let shards = test
        .rt
        .block_on(support::kinesis::open_shard_hash_keys(&test.client, &test.stream));
    let ids: Vec<String> = shards.into_iter().map(|(id, _)| id).collect();
    test.rt.block_on(split(&test.client, &test.stream, &ids[0]));
    test.rt.block_on(merge(&test.client, &test.stream, &ids[2], &ids[3]));
    // Records go on into the children for a while.
    std::thread::sleep(Duration::from_secs(3));
    let produced = producer.stop();
    let refs: Vec<&Instance> = instances.iter().collect();
    test.wait_archived(&produced, &refs);
    let leases = test.leases(&instances[0].config);
    for parent in [&ids[0], &ids[2], &ids[3]] {
        assert_eq!(leases[parent.as_str()]["state"], "ended", "{parent}: {leases:?}");
    }
    let logs: Vec<Vec<serde_json::Value>> = instances.into_iter().map(Instance::stop).collect();

    // Parents before children, across the instances' logs (one clock).
    let all: Vec<&serde_json::Value> = logs.iter().flatten().collect();
    let listed = test
        .rt
        .block_on(test.client.list_shards().stream_name(&test.stream).send())
        .unwrap();
    let mut children = 0;
    for shard in listed.shards() {
        let parents: Vec<&str> = shard
            .parent_shard_id()
            .into_iter()
            .chain(shard.adjacent_parent_shard_id())
            .collect();
        if parents.is_empty() {
            continue;
        }
        children += 1;
        let first_read = all
            .iter()
            .filter(|l| l["message"] == "reading shard" && l["shard"] == shard.shard_id())
            .map(|l| at(l))
            .min()
            .unwrap_or_else(|| panic!("child {} never read", shard.shard_id()));
        for parent in parents {
            let ended = all
                .iter()
                .filter(|l| {
                    l["shard"] == parent
                        && l["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("shard finished") || m.starts_with("shard ended"))
                })
                .map(|l| at(l))
                .min()
                .unwrap_or_else(|| panic!("parent {parent} never ended"));
            assert!(
                ended < first_read,
                "{} read at {first_read}, before its parent {parent} ended at {ended}",
                shard.shard_id()
            );
        }
    }
    assert_eq!(children, 3, "two children of the split, one of the merge");
    test.assert_exactly_once_in_order(&produced, &logs);
}

/// `run --once` with `[coordination]` is refused in one line before
/// anything starts (no lease table is created): an instance under
/// coordination never stops at a tip.
#[test]
fn once_with_coordination_is_refused_in_one_line() {
    let test = Test::new("leases-e2e-once", 1);
    let dir = test.dir.path().join("w1");
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(&dir, &test.config("w1"));
    let out = support::kinesis::run_once(&dir, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--once cannot run \"orders\": it has [coordination]"),
        "{stderr}"
    );
    let leases = spillway().args(["leases", "--config"]).arg(&config).output().unwrap();
    assert_eq!(
        leases.status.code(),
        Some(1),
        "no lease table was made: {}",
        String::from_utf8_lossy(&leases.stderr)
    );
}

/// How long the killed instance's S3 puts are held by its proxy before
/// they are forwarded: long enough that one sent just before the kill is
/// certainly still in flight at the kill.
const PUT_HELD: Duration = Duration::from_secs(3);

/// How much later than a lease and a renewal period after its death a
/// dead instance's lease may be taken: the time of the DynamoDB calls
/// themselves (the listing that sees the counter stand still, the take)
/// on a loaded machine. The keeper looks again the moment a watched
/// counter has stood still for a lease (not at its next round), runs its
/// rounds at a fixed rate (their own length does not add up), and a take
/// that lost a race to another instance lists again and takes the rest of
/// its share in the same round; before those three, takes came 3.6 to
/// 6.1 s after the kill with 3 s leases (up to two renewal periods and
/// four rounds' length late).
const TAKE_ALLOWANCE: Duration = Duration::from_secs(1);

/// The leases of the shards in `shards` as polled until none is held by
/// `gone` any more and each is held by another instance: how long that
/// took from `since`, measured at the end of the poll that saw it, and
/// how long that poll took.
fn wait_taken_from(
    test: &Test,
    gone: &str,
    shards: &BTreeSet<String>,
    since: Instant,
    within: Duration,
) -> (Duration, Duration) {
    loop {
        let polled = Instant::now();
        let leases = test.leases(&test.observer);
        let taken = shards.iter().all(|shard| {
            let owner = leases[shard]["owner"].as_str();
            leases[shard]["state"] == "held" && owner.is_some_and(|o| o != gone)
        });
        if taken {
            return (since.elapsed(), polled.elapsed());
        }
        assert!(
            since.elapsed() < within,
            "{gone}'s shards {shards:?} were not taken by others within {within:?}: {leases:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shard an object of `line` ("flushed") holds records of.
fn flushed_shard(test: &Test, line: &serde_json::Value) -> String {
    test.object_name(line["key"].as_str().unwrap()).shard
}

/// Three instances on a 16-shard stream archiving into moto's S3, records
/// flowing; one is killed with `kill -9` while it has objects in flight
/// (its S3 puts go through a proxy that holds each for [`PUT_HELD`], and
/// the kill comes within half a second of one being sent, so the intent
/// of that object is in its lease). The others take its shards within a
/// lease duration plus one renewal period of the kill (allowing for the
/// time they take to write the takes, see below), read them again, redo
/// the intents it left pending, and every record is archived exactly once,
/// in order per key.
#[test]
fn kill_9_one_of_three_the_others_read_its_shards_within_a_lease_and_redo_its_intents() {
    let test = Test::new_s3("leases-e2e-kill", 16);
    let Archive::S3 { moto, .. } = &test.archive else {
        unreachable!()
    };
    let last_put: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = last_put.clone();
    let proxy = FaultProxy::start(
        &moto.endpoint,
        Arc::new(move |target: &str, _| {
            if !(target.starts_with("PUT ") && target.contains("/events/")) {
                return None;
            }
            *seen.lock().unwrap() = Some(Instant::now());
            Some(Fault::delay(PUT_HELD))
        }),
    );
    let producer = Producer::start(&test);
    // The victim joins last: its leases nearly always hold a pending
    // intent (its puts are slow), and a steal never takes such a lease.
    let w2 = Instance::start(&test, "w2");
    let w3 = Instance::start(&test, "w3");
    test.wait_balanced(&test.observer, 16, &["w2", "w3"]);
    let setup = Setup {
        interval_ms: Some(300),
        s3: Some(&proxy.url),
        ..Setup::default()
    };
    let w1 = Instance::start_setup(&test, "w1", &setup);
    let load = test.wait_balanced(&test.observer, 16, &["w1", "w2", "w3"]);
    eprintln!("three instances: {load:?}");

    // Killed within half a second of an object's put being sent: that
    // put is still held by the proxy, its intent saved in the lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = *last_put.lock().unwrap();
        if sent.is_some_and(|at| at.elapsed() < Duration::from_millis(500)) {
            break;
        }
        assert!(Instant::now() < deadline, "w1 never sent a put");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    let w1_logs = w1.kill();
    let in_flight_for = last_put.lock().unwrap().unwrap().elapsed();
    let orphaned = test.load(&test.observer).remove("w1").unwrap_or_default();
    assert!(
        (5..=6).contains(&orphaned.len()),
        "w1 held its share when killed: {orphaned:?}"
    );

    // The bound: a lease and a renewal period from the kill, plus
    // `TAKE_ALLOWANCE` and, on the lease table, the poll that saw the
    // takes (timed: they were made before it ended).
    let bound = Duration::from_secs(LEASE_SECONDS) + RENEWAL;
    let (taken_after, poll) = wait_taken_from(&test, "w1", &orphaned, killed, Duration::from_secs(30));
    eprintln!("w1's shards {orphaned:?} held by others {taken_after:?} after kill -9 (poll {poll:?})");
    assert!(
        taken_after <= bound + TAKE_ALLOWANCE + poll,
        "w1's shards were taken {taken_after:?} after its kill: over {bound:?} (plus {TAKE_ALLOWANCE:?} and a poll of {poll:?})"
    );

    let produced = producer.stop();
    test.wait_archived(&produced, &[&w2, &w3]);
    let logs = vec![w1_logs, w2.stop(), w3.stop()];
    let survivors: Vec<&serde_json::Value> = logs[1..].iter().flatten().collect();
    // Each taken from w1 as expired, then read again, by a survivor.
    let tries: Vec<String> = survivors
        .iter()
        .filter(|l| l["shard"].as_str().is_some_and(|s| orphaned.contains(s)) && at(l) > killed_at)
        .filter(|l| l["message"] == "lease taken" || l["message"] == "lease lost: another instance wrote it")
        .map(|l| {
            format!(
                "{:?} {} {}",
                (at(l) - killed_at.fixed_offset()).to_std().unwrap(),
                l["shard"],
                l["message"]
            )
        })
        .collect();
    eprintln!("takes of w1's shards after the kill: {tries:#?}");
    for shard in &orphaned {
        let taken = survivors
            .iter()
            .filter(|l| l["message"] == "lease taken" && l["shard"] == shard.as_str() && at(l) > killed_at)
            .map(|l| at(l))
            .min()
            .unwrap_or_else(|| panic!("nobody took {shard} after w1's kill"));
        let after = (taken - killed_at.fixed_offset()).to_std().unwrap();
        assert!(
            after <= bound + TAKE_ALLOWANCE,
            "{shard} taken {after:?} after the kill, as its taker logged it: over {bound:?} and {TAKE_ALLOWANCE:?}"
        );
        assert!(
            survivors
                .iter()
                .any(|l| l["message"] == "reading shard" && l["shard"] == shard.as_str() && at(l) >= taken),
            "{shard} was not read again after w1's kill"
        );
    }
    let redone = lines_of_all(&survivors, "redid an intent the shard's last owner left pending");
    eprintln!(
        "killed {in_flight_for:?} after w1's last put was sent; intents redone: {}",
        redone.len()
    );
    for line in &redone {
        eprintln!("  {line}");
    }
    assert!(
        !redone.is_empty(),
        "w1 was killed with a put in flight, its intent in the lease: nobody redid it"
    );
    test.assert_exactly_once_in_order(&produced, &logs);
}

/// The log lines among `logs` with `message`.
fn lines_of_all<'a>(logs: &[&'a serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    logs.iter().copied().filter(|l| l["message"] == message).collect()
}

/// Three instances on a 16-shard stream, records flowing, buffers flushed
/// every 300 ms (so that the paused one is likely to be between an intent
/// and its put). One is paused with SIGSTOP until the others have taken
/// all its shards (its leases expired: longer than a lease duration), then
/// resumed: it gives those shards up at once (its logs say each was lost)
/// and reads none of them again unless it takes its lease anew; whatever
/// it was writing when paused lands under the same key as its new owner's
/// redo or not at all. Every record is archived exactly once, in order per
/// key.
#[test]
fn sigstop_past_the_lease_then_sigcont_the_paused_instance_gives_its_shards_up_nothing_twice() {
    let test = Test::new("leases-e2e-sigstop", 16);
    let producer = Producer::start(&test);
    let fast = Setup {
        interval_ms: Some(300),
        ..Setup::default()
    };
    let w1 = Instance::start_setup(&test, "w1", &fast);
    let mut w2 = Instance::start_setup(&test, "w2", &fast);
    let w3 = Instance::start_setup(&test, "w3", &fast);
    let load = test.wait_balanced(&test.observer, 16, &["w1", "w2", "w3"]);
    let paused_shards = load["w2"].clone();

    let paused = Instant::now();
    support::send_signal(&w2.child, libc::SIGSTOP);
    let (taken_after, _) = wait_taken_from(&test, "w2", &paused_shards, paused, Duration::from_secs(30));
    assert!(
        taken_after > Duration::from_secs(LEASE_SECONDS),
        "w2's leases were taken {taken_after:?} after its pause, before they could expire"
    );
    let resumed_at = chrono::Utc::now();
    support::send_signal(&w2.child, libc::SIGCONT);
    eprintln!(
        "w2 paused {:?}; its shards {paused_shards:?} taken {taken_after:?} after the pause",
        paused.elapsed()
    );

    // Each of its shards said lost, soon after it resumed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let lost: BTreeMap<String, String> = loop {
        let lines = w2.logs_so_far(Duration::from_millis(200));
        let lost: BTreeMap<String, String> = lines
            .iter()
            .filter(|l| l["message"] == "shard lost: its reader stopped, its records here no longer count")
            .filter(|l| at(l) > resumed_at)
            .map(|l| (l["shard"].as_str().unwrap().to_owned(), l["why"].to_string()))
            .collect();
        if paused_shards.iter().all(|shard| lost.contains_key(shard)) {
            break lost;
        }
        assert!(
            Instant::now() < deadline,
            "w2 did not say its shards were lost after it resumed: {lost:?} of {paused_shards:?}"
        );
    };
    eprintln!("w2 after SIGCONT: {lost:?}");

    let produced = producer.stop();
    test.wait_archived(&produced, &[&w1, &w3]);
    let logs = vec![w1.stop(), w2.stop(), w3.stop()];
    // After it resumed, w2 read a shard only after taking its lease anew.
    for read in logs[1]
        .iter()
        .filter(|l| l["message"] == "reading shard" && at(l) > resumed_at)
    {
        let shard = read["shard"].as_str().unwrap();
        let taken_anew = logs[1]
            .iter()
            .any(|l| l["message"] == "lease taken" && l["shard"] == shard && at(l) > resumed_at && at(l) <= at(read));
        assert!(
            taken_anew,
            "w2 read {shard} after it resumed without taking its lease: {read}"
        );
    }
    test.assert_exactly_once_in_order(&produced, &logs);
    // What it wrote of its old shards after it resumed, before taking any
    // of them anew, is what it was putting when paused (begun under the
    // lease, its intent in it): the new owner redid that intent under the
    // same key, and one of the two puts found the other's object.
    let redone: BTreeSet<&str> = logs
        .iter()
        .flatten()
        .filter(|l| l["message"] == "redid an intent the shard's last owner left pending")
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    let taken_anew = |shard: &str| {
        logs[1]
            .iter()
            .filter(|l| l["message"] == "lease taken" && l["shard"] == shard && at(l) > resumed_at)
            .map(at)
            .min()
    };
    let written_after: Vec<&serde_json::Value> = logs[1]
        .iter()
        .filter(|l| l["message"] == "flushed" && at(l) > resumed_at)
        .filter(|l| paused_shards.contains(&flushed_shard(&test, l)))
        .filter(|l| taken_anew(&flushed_shard(&test, l)).is_none_or(|taken| at(l) < taken))
        .collect();
    eprintln!("objects of its old shards w2 wrote after it resumed, not taken anew: {written_after:#?}");
    for line in &written_after {
        let key = line["key"].as_str().unwrap();
        assert!(
            line["already_existed"] == true || redone.contains(key),
            "w2 wrote {key} after it resumed, and no new owner redid it: {line}"
        );
    }
}

/// Three instances on a 16-shard stream archiving into moto's S3, their
/// DynamoDB through a proxy that answers 503 to every call while down.
/// With records flowing, DynamoDB goes down until every instance has given
/// up every lease it held (none can renew, so none can prove it holds
/// one: each stops reading, at most a lease duration after its last
/// renewal, before the outage plus a lease), then comes back: the leases
/// are taken again, each shard read on from its checkpoint, and every
/// record is archived exactly once, in order per key.
#[test]
fn dynamodb_unreachable_past_the_lease_instances_stop_reading_then_read_on_nothing_lost() {
    let test = Test::new_s3("leases-e2e-ddb-down", 16);
    let down = Arc::new(AtomicBool::new(false));
    let proxy = FaultProxy::dynamodb_down_while(&peer("SPILLWAY_TEST_MOTO"), down.clone());
    let producer = Producer::start(&test);
    let setup = Setup {
        dynamodb: Some(&proxy.url),
        ..Setup::default()
    };
    let mut instances: Vec<Instance> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|worker| Instance::start_setup(&test, worker, &setup))
        .collect();
    let load = test.wait_balanced(&test.observer, 16, &["w1", "w2", "w3"]);

    let went_down = Instant::now();
    let down_at = chrono::Utc::now();
    down.store(true, Ordering::SeqCst);
    // Until every instance has given up every lease it held.
    let deadline = went_down + Duration::from_secs(30);
    let mut given_up: BTreeMap<String, BTreeMap<String, chrono::DateTime<chrono::FixedOffset>>> = BTreeMap::new();
    for instance in &mut instances {
        let held = &load[&instance.worker];
        loop {
            let lines = instance.logs_so_far(Duration::from_millis(200));
            let lost: BTreeMap<String, chrono::DateTime<chrono::FixedOffset>> = lines
                .iter()
                .filter(|l| l["message"] == "shard lost: its reader stopped, its records here no longer count")
                .filter(|l| at(l) > down_at)
                .map(|l| (l["shard"].as_str().unwrap().to_owned(), at(l)))
                .collect();
            if held.iter().all(|shard| lost.contains_key(shard)) {
                given_up.insert(instance.worker.clone(), lost);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still reads shards it cannot prove it holds: lost {lost:?} of {held:?}",
                instance.worker
            );
        }
    }
    let outage = went_down.elapsed();
    down.store(false, Ordering::SeqCst);
    eprintln!(
        "DynamoDB down {outage:?}, {} answers refused; each lease's tenure ended (\"shard lost\"): {given_up:?}",
        proxy.faults_sent.load(Ordering::SeqCst)
    );
    assert!(outage > Duration::from_secs(LEASE_SECONDS), "down for {outage:?}");
    // The keeper gives a lease up (its token cancelled: the shard's reader
    // stops, no object of it is put any more) once its last successful
    // write was sent a lease duration ago, which was before the outage;
    // found by a proof check every tenth of a lease (allowed: 1 s for that
    // check and a loaded machine). The tenure's end ("shard lost") may
    // come later: the source handles it between its own DynamoDB calls.
    // So the line that ended a tenure is the last one at its end (a second
    // of slack: the keeper logs just after it cancels the reader), and it
    // may come before the outage: a lease another instance took just
    // before it (balancing still moving a shard), whose tenure's end the
    // source handled during the outage.
    let mut stopped_at: BTreeMap<(String, String), chrono::DateTime<chrono::FixedOffset>> = BTreeMap::new();
    for instance in &mut instances {
        let lines = instance.logs_so_far(Duration::ZERO);
        for (shard, tenure_end) in &given_up[&instance.worker] {
            let stopped = lines
                .iter()
                .filter(|l| l["shard"] == shard.as_str() && at(l) <= *tenure_end + chrono::Duration::seconds(1))
                .filter(|l| {
                    l["message"] == "lease given up: not renewed for a lease duration, another instance may take it"
                        || l["message"] == "lease lost: another instance wrote it"
                })
                .map(at)
                .max()
                .unwrap_or_else(|| panic!("{}: no line says when {shard}'s lease was given up", instance.worker));
            stopped_at.insert((instance.worker.clone(), shard.clone()), stopped);
            let after = (stopped - down_at.fixed_offset()).to_std().unwrap_or_default();
            eprintln!(
                "{} gave {shard} up {}",
                instance.worker,
                if stopped < down_at {
                    "before DynamoDB went down".to_owned()
                } else {
                    format!("{after:?} after DynamoDB went down")
                }
            );
            assert!(
                after <= Duration::from_secs(LEASE_SECONDS + 1),
                "{} gave {shard} up {after:?} after DynamoDB went down: it read on past its proof",
                instance.worker
            );
        }
    }

    // DynamoDB back: the leases are taken again, all of them.
    let load = test.wait_balanced(&test.observer, 16, &["w1", "w2", "w3"]);
    eprintln!("after the outage: {load:?}");
    let produced = producer.stop();
    let refs: Vec<&Instance> = instances.iter().collect();
    test.wait_archived(&produced, &refs);
    let logs: Vec<Vec<serde_json::Value>> = instances.into_iter().map(Instance::stop).collect();
    // No shard read during the outage once given up: every read after it
    // follows a take of the lease, made once DynamoDB answered again. A
    // reader may start in the outage before that, on a lease taken just
    // before it and still proven (its lease taken before the outage: the
    // observer saw the leases balanced, the reader had yet to start).
    for (worker, lines) in ["w1", "w2", "w3"].iter().zip(&logs) {
        for read in lines
            .iter()
            .filter(|l| l["message"] == "reading shard" && at(l) > down_at)
        {
            let shard = read["shard"].as_str().unwrap();
            // The take the read must follow: after the lease was given up,
            // or for a shard not held when the outage began, after it
            // began; before the give-up, any earlier take.
            let since = match stopped_at.get(&(worker.to_string(), shard.to_owned())) {
                Some(stopped) if at(read) < *stopped => None,
                Some(stopped) => Some(*stopped),
                None => Some(down_at.fixed_offset()),
            };
            let taken = lines.iter().any(|l| {
                l["message"] == "lease taken"
                    && l["shard"] == shard
                    && since.is_none_or(|since| at(l) > since)
                    && at(l) <= at(read)
            });
            assert!(
                taken,
                "{worker} read {shard} after the outage began without taking its lease: {read}"
            );
        }
    }
    test.assert_exactly_once_in_order(&produced, &logs);
}

/// A lease whose checkpoint state this build cannot read (here one of a
/// later format version, as a newer instance in a rolling upgrade would
/// leave it) is refused, not fatal: the instance releases it and does not
/// read that shard, reads and archives the other shard's records exactly
/// once, says why in an error line, a metric and `/health/ready`, and
/// still stops cleanly. Before, the first instance to take such a lease
/// ended its run, and so in turn did every instance that took it.
#[test]
fn a_lease_whose_state_cannot_be_read_is_refused_and_the_other_shard_is_archived() {
    use spillway::coordination::dynamodb::{LeaseTable, TableOptions};

    let test = Test::new("leases-e2e-refused", 2);
    let listed = test
        .rt
        .block_on(test.client.list_shards().stream_name(&test.stream).send())
        .unwrap();
    let mut shards: Vec<String> = listed.shards().iter().map(|s| s.shard_id().to_owned()).collect();
    shards.sort();
    let (bad, good) = (shards[0].clone(), shards[1].clone());
    // The first shard's lease, checkpointed by "w0" with a state of format
    // version 99, then released.
    test.rt.block_on(async {
        let table = LeaseTable::open(TableOptions {
            table: test.table.clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
            namespace: format!("orders#{}", test.stream),
            worker: "w0".into(),
        })
        .await
        .unwrap();
        assert!(table.add(&bad, &[]).await.unwrap());
        let free = table
            .list()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.shard == bad)
            .unwrap();
        let taken = table.take(&free).await.unwrap();
        let saved = table
            .checkpoint(&taken, r#"{"version":99,"checkpoint":"1"}"#, false)
            .await
            .unwrap();
        table.release(&saved).await.unwrap();
    });
    let mut produced = Vec::new();
    for round in 0..3 {
        produced.extend(test.rt.block_on(put_round(&test.client, &test.stream, round)));
    }
    // Keys spread evenly over the hash keys: the upper half's are the
    // second shard's.
    let (unread, read): (Vec<Put>, Vec<Put>) = produced.into_iter().partition(|p| {
        let k: u64 = p.key.trim_start_matches("key-").parse().unwrap();
        k < KEYS / 2
    });

    let address = support::metrics::free_address();
    let w1 = Instance::start_serving(&test, "w1", address);
    test.wait_archived(&read, &[&w1]);
    let (status, body) = support::metrics::wait_for(address, "/health/ready", |status, _| status == 503);
    assert_eq!(status, 503);
    assert!(
        body.contains(&format!("shard {bad} is not read")) && body.contains("format version 99"),
        "{body}"
    );
    let (_, metrics) = support::metrics::wait_for(address, "/metrics", |_, _| true);
    let samples = support::metrics::samples(&metrics);
    assert_eq!(
        support::metrics::sum(&samples, "spillway_leases_refused_total", &[]),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        support::metrics::sum(&samples, "spillway_leases_held", &[]),
        1.0,
        "{metrics}"
    );
    let leases = test.leases(&w1.config);
    assert_eq!(leases[&good]["owner"], "w1", "{leases:?}");
    assert_ne!(leases[&bad]["owner"], "w1", "the refused lease is released: {leases:?}");

    let logs = w1.stop();
    let refused = lines_of(&logs, "shard refused: its lease's checkpoint state cannot be read by this build; the lease is released and this instance does not read the shard (its other shards go on)");
    assert_eq!(refused.len(), 1, "said once");
    assert_eq!(refused[0]["shard"], bad.as_str());
    let archived = test.archived_ids();
    for put in &read {
        assert_eq!(
            archived.get(&put.id),
            Some(&1),
            "record {} of {good} archived once",
            put.id
        );
    }
    for put in &unread {
        assert!(
            !archived.contains_key(&put.id),
            "record {} of the refused shard {bad} archived",
            put.id
        );
    }
}
