//! Helpers for tests against real Kinesis peers (kinesalite, moto), which
//! `scripts/test.sh` installs and starts.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;

/// A peer's URL from the environment `scripts/test.sh` sets up; never a
/// silent skip.
pub fn peer(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests with scripts/test.sh, which installs and starts the test peers")
    })
}

pub fn python() -> String {
    peer("SPILLWAY_TEST_PYTHON")
}

pub async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    Client::new(&config)
}

pub async fn wait_active(client: &Client, stream: &str) {
    for _ in 0..300 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        if summary.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become active");
}

/// Puts records `ids` (keys `<key_prefix>(id mod keys)`, data as the
/// producer makes it) into the shard whose hash key range holds `hash_key`,
/// one call each, in order; returns what was put. (Give each shard its own
/// `key_prefix`: the order of a key holds within one shard.)
pub async fn put_to_hash_key(
    client: &Client,
    stream: &str,
    hash_key: &str,
    key_prefix: &str,
    ids: std::ops::Range<u64>,
    keys: u64,
) -> Vec<Produced> {
    let mut produced = Vec::new();
    for id in ids {
        let key = format!("{key_prefix}{}", id % keys);
        let n = id / keys;
        let data = format!(
            r#"{{"id":{id},"key":"{key}","n":{n},"pad":"{}"}}"#,
            "x".repeat(40 + (id % 120) as usize)
        );
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(&key)
            .explicit_hash_key(hash_key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
        produced.push(Produced {
            id,
            key,
            n,
            shard: out.shard_id().to_owned(),
            seq: out.sequence_number().to_owned(),
            sub: 0,
        });
    }
    produced
}

/// The open shards' starting hash keys, in shard id order.
pub async fn open_shard_hash_keys(client: &Client, stream: &str) -> Vec<(String, String)> {
    let listed = client.list_shards().stream_name(stream).send().await.unwrap();
    listed
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| {
            (
                s.shard_id().to_owned(),
                s.hash_key_range().unwrap().starting_hash_key().to_owned(),
            )
        })
        .collect()
}

pub async fn create_stream(client: &Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(client, stream).await;
}

pub fn unique_stream(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// One user record the producer put.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Produced {
    pub id: u64,
    pub key: String,
    pub n: u64,
    pub shard: String,
    pub seq: String,
    pub sub: u64,
}

/// The producer command (`tests/peers/produce.py`).
pub fn producer(endpoint: &str, stream: &str, args: &[&str]) -> std::process::Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/produce.py");
    let mut command = std::process::Command::new(python());
    command.arg(script).arg(endpoint).arg(stream).args(args);
    command
}

/// Runs the producer to completion and returns what it put.
pub fn produce(endpoint: &str, stream: &str, args: &[&str]) -> Vec<Produced> {
    let output = producer(endpoint, stream, args).output().unwrap();
    assert!(
        output.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_produced(&output.stdout)
}

pub fn parse_produced(stdout: &[u8]) -> Vec<Produced> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn kinesis_config(endpoint: &str, stream: &str, extra_source: &str) -> String {
    format!(
        r#"name = "archive"
[source]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{endpoint}"
poll_interval_ms = 200
shard_discovery_seconds = 1
{extra_source}
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "local"
path = "archive"
prefix = "events/"
# The order per key is checked across objects in the order they were
# written (from the logs): one put at a time, so that is the order they
# were flushed in. Concurrent puts keep order within each object only.
max_concurrent_puts = 1
compression = "gzip"
[checkpoint]
path = "state"
"#
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A new stream of `shards` shards on the peer named by `peer_variable`,
/// with a runtime and a client to drive it.
pub fn new_stream(
    peer_variable: &str,
    prefix: &str,
    shards: i32,
) -> (String, tokio::runtime::Runtime, aws_sdk_kinesis::Client, String) {
    let endpoint = peer(peer_variable);
    let rt = runtime();
    let client = rt.block_on(client(&endpoint));
    let stream = unique_stream(prefix);
    rt.block_on(create_stream(&client, &stream, shards));
    (endpoint, rt, client, stream)
}

pub fn run_once(dir: &Path, config: &Path) -> Output {
    super::spillway()
        .args(["--log-format", "json", "run", "--once", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Splits `shard` at the middle of its hash key range.
pub async fn split(client: &Client, stream: &str, shard: &str) {
    let listed = client.list_shards().stream_name(stream).send().await.unwrap();
    let info = listed.shards().iter().find(|s| s.shard_id() == shard).unwrap();
    let range = info.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key((low + (high - low) / 2 + 1).to_string())
        .send()
        .await
        .unwrap();
    wait_active(client, stream).await;
}

/// Merges two adjacent shards.
pub async fn merge(client: &Client, stream: &str, a: &str, b: &str) {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(a)
        .adjacent_shard_to_merge(b)
        .send()
        .await
        .unwrap();
    wait_active(client, stream).await;
}

/// Every child shard of the stream was read, in the run whose `logs` these
/// are, only after each of its parents was finished (in that run or an
/// earlier one, `finished_before`). Returns the children read.
pub fn assert_children_after_parents(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    stream: &str,
    logs: &[serde_json::Value],
    finished_before: &BTreeSet<String>,
) -> BTreeSet<String> {
    let all = rt.block_on(client.list_shards().stream_name(stream).send()).unwrap();
    let index_of =
        |message: &str, shard: &str| logs.iter().position(|l| l["message"] == message && l["shard"] == shard);
    let mut children = BTreeSet::new();
    for shard in all.shards() {
        let parents: Vec<&str> = shard
            .parent_shard_id()
            .into_iter()
            .chain(shard.adjacent_parent_shard_id())
            .collect();
        if parents.is_empty() {
            continue;
        }
        let Some(started) = index_of("reading shard", shard.shard_id()) else {
            continue;
        };
        children.insert(shard.shard_id().to_owned());
        for parent in parents {
            if finished_before.contains(parent) {
                continue;
            }
            let finished = index_of("shard finished: every record delivered", parent)
                .unwrap_or_else(|| panic!("parent {parent} of {} never finished", shard.shard_id()));
            assert!(
                finished < started,
                "{} was read before its parent {parent} finished",
                shard.shard_id()
            );
        }
    }
    children
}

pub fn finished_shards(logs: &[serde_json::Value]) -> BTreeSet<String> {
    logs.iter()
        .filter(|l| l["message"] == "shard finished: every record delivered")
        .map(|l| l["shard"].as_str().unwrap().to_owned())
        .collect()
}

/// Numeric order of Kinesis sequence numbers.
fn seq_key(seq: &str) -> (usize, String) {
    (seq.len(), seq.to_owned())
}

/// Checks the archive under `dir/archive/events/` against what was
/// produced: every user record exactly once, and per partition key in the
/// stream's order, objects taken in the order they were written
/// (`object_order`, from the logs of every run, in order).
pub fn assert_archived_exactly_once_in_order(dir: &Path, produced: &[Produced], object_order: &[String]) {
    let mut objects = super::objects(&dir.join("archive"));
    objects.retain(|key, _| key.starts_with("events/"));
    let position: HashMap<&str, usize> = object_order.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let mut ordered: Vec<(usize, &String, &Vec<u8>)> = Vec::new();
    for (key, body) in &objects {
        let at = *position
            .get(key.as_str())
            .unwrap_or_else(|| panic!("object {key} is in the archive but no run logged writing it"));
        ordered.push((at, key, body));
    }
    ordered.sort_by_key(|(at, _, _)| *at);

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for (_, _, body) in &ordered {
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line).unwrap();
            let id = value["id"].as_u64().unwrap();
            *seen.entry(id).or_insert(0) += 1;
            per_key
                .entry(value["key"].as_str().unwrap().to_owned())
                .or_default()
                .push(value["n"].as_u64().unwrap());
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).take(10).collect();
    assert!(duplicated.is_empty(), "duplicated ids (id, count): {duplicated:?}");
    let expected: std::collections::BTreeSet<u64> = produced.iter().map(|p| p.id).collect();
    let missing: Vec<_> = expected.iter().filter(|id| !seen.contains_key(id)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} records missing, e.g. {missing:?}",
        expected.len() - seen.len().min(expected.len())
    );
    let extra: Vec<_> = seen.keys().filter(|id| !expected.contains(id)).take(10).collect();
    assert!(extra.is_empty(), "unexpected ids {extra:?}");

    // The stream's order per key: by sequence number, then subsequence.
    let mut by_key: HashMap<&str, Vec<&Produced>> = HashMap::new();
    for p in produced {
        by_key.entry(&p.key).or_default().push(p);
    }
    for (key, records) in by_key.iter_mut() {
        records.sort_by(|a, b| seq_key(&a.seq).cmp(&seq_key(&b.seq)).then(a.sub.cmp(&b.sub)));
        let expected_order: Vec<u64> = records.iter().map(|p| p.n).collect();
        assert_eq!(per_key[*key], expected_order, "key {key}: archived out of order");
    }
}

/// The keys of objects written, in order, from a run's JSON logs: those a
/// run wrote, and those a restart found written by a run that was killed
/// before it could log them.
pub fn written_objects(logs: &[serde_json::Value]) -> Vec<String> {
    logs.iter()
        .filter(|l| {
            l["message"] == "flushed"
                || (l["message"] == "settled an object pending since the last run" && l["written"] == true)
        })
        .map(|l| l["key"].as_str().unwrap().to_owned())
        .fold(Vec::new(), |mut keys, key| {
            if !keys.contains(&key) {
                keys.push(key);
            }
            keys
        })
}

/// One record read back from the target stream.
#[derive(Debug)]
pub struct Put {
    pub key: String,
    pub data: Vec<u8>,
}

/// Every record of every shard of `stream`, each shard in its order.
pub async fn read_back(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Put> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let mut all = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let out = client.get_records().shard_iterator(&it).send().await.unwrap();
            for record in out.records() {
                all.push(Put {
                    key: record.partition_key().unwrap_or_default().to_owned(),
                    data: record.data().as_ref().to_vec(),
                });
            }
            if out.records().is_empty() {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_owned);
        }
    }
    all
}

/// Checks what the target stream holds against what was produced: every
/// record's bytes with its original key, per key in the order produced
/// (records of a key sit in one shard). Duplicates (from a kill) are
/// allowed up to `max_repeats`: each copy after the first is a repeat,
/// and the first copies alone are in order. Returns the repeats.
pub fn assert_delivered(produced: &[Produced], found: &[Put], max_repeats: usize) -> usize {
    let mut copies: HashMap<u64, usize> = HashMap::new();
    let mut first_order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for put in found {
        let value: serde_json::Value = serde_json::from_slice(&put.data).unwrap();
        let id = value["id"].as_u64().unwrap();
        assert_eq!(
            value["key"].as_str().unwrap(),
            put.key,
            "record {id} lost its partition key"
        );
        let n = copies.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            first_order
                .entry(put.key.clone())
                .or_default()
                .push(value["n"].as_u64().unwrap());
        }
    }
    let missing: Vec<u64> = produced
        .iter()
        .map(|p| p.id)
        .filter(|id| !copies.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(copies.len(), produced.len(), "records that were never produced");
    let repeats: usize = copies.values().map(|c| c - 1).sum();
    assert!(
        repeats <= max_repeats,
        "{repeats} records repeated, at most {max_repeats} allowed"
    );
    // The order produced, per key (one shard each, sequence order).
    let mut expected: BTreeMap<String, Vec<(usize, String, u64, u64)>> = BTreeMap::new();
    for p in produced {
        expected
            .entry(p.key.clone())
            .or_default()
            .push((p.seq.len(), p.seq.clone(), p.sub, p.n));
    }
    for (key, mut records) in expected {
        records.sort();
        let want: Vec<u64> = records.iter().map(|r| r.3).collect();
        assert_eq!(first_order[&key], want, "key {key} out of order");
    }
    repeats
}
