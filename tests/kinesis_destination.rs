//! End-to-end: `[destination] type = "kinesis"` on kinesalite. A stream is
//! read by the real binary and put into a second stream, which is then
//! read back: every record, its bytes and its partition key, in order per
//! key; through throttled entries (a proxy forwards some entries of a
//! PutRecords call and answers the others as throttled); and across a
//! `kill -9` (nothing lost, at most one window of 500 records repeated).

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use support::fault_proxy::{Exchange, Fault, FaultProxy};
use support::kinesis::*;
use support::*;

fn config(source_endpoint: &str, source: &str, target_endpoint: &str, target: &str) -> String {
    format!(
        r#"name = "restore"
[source]
type = "kinesis"
stream = "{source}"
region = "us-east-1"
endpoint = "{source_endpoint}"
poll_interval_ms = 200
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "kinesis"
stream = "{target}"
region = "us-east-1"
endpoint = "{target_endpoint}"
retry_duration_seconds = 600
[destination.backup]
type = "local"
path = "backup"
[checkpoint]
path = "state"
"#
    )
}

fn target_stream(rt: &tokio::runtime::Runtime, client: &aws_sdk_kinesis::Client) -> String {
    let target = unique_stream("restored");
    rt.block_on(create_stream(client, &target, 3));
    target
}

#[test]
fn every_record_arrives_with_its_key_in_order_per_key() {
    let (endpoint, rt, client, source) = new_stream("SPILLWAY_TEST_KINESALITE", "to-kinesis", 2);
    let produced = produce(
        &endpoint,
        &source,
        &["--count", "3000", "--keys", "25", "--aggregate-every", "4"],
    );
    let target = target_stream(&rt, &client);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config(&endpoint, &source, &endpoint, &target));
    let output = run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found = rt.block_on(read_back(&client, &target));
    assert_eq!(assert_delivered(&produced, &found, 0), 0);
    assert!(
        objects(&dir.path().join("backup")).is_empty(),
        "error output without a cause"
    );
}

/// A proxy that, on every other PutRecords call, forwards only the entries
/// at even positions and answers the others as throttled (what a shard
/// over its limit does); the counter says how many entries it failed.
fn throttling_proxy(upstream: &str) -> (FaultProxy, Arc<std::sync::atomic::AtomicUsize>) {
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = failed.clone();
    let exchange: Exchange = Arc::new(move |target: &str, nth: usize, body: &[u8]| {
        if target != "Kinesis_20131202.PutRecords" || nth % 2 == 1 {
            return None;
        }
        let mut request: serde_json::Value = serde_json::from_slice(body).unwrap();
        let entries = request["Records"].as_array().unwrap().clone();
        if entries.len() < 2 {
            return None;
        }
        let kept: Vec<serde_json::Value> = entries.iter().step_by(2).cloned().collect();
        let dropped = entries.len() - kept.len();
        counter.fetch_add(dropped, std::sync::atomic::Ordering::SeqCst);
        request["Records"] = serde_json::Value::Array(kept);
        let total = entries.len();
        let rewrite = Box::new(move |answer: Bytes| {
            let mut answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            let written = answer["Records"].as_array().unwrap().clone();
            let mut all = Vec::with_capacity(total);
            for i in 0..total {
                match i % 2 {
                    0 => all.push(written[i / 2].clone()),
                    _ => all.push(serde_json::json!({
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard (injected)",
                    })),
                }
            }
            let failed = answer["FailedRecordCount"].as_u64().unwrap_or(0) + (total / 2) as u64;
            answer["FailedRecordCount"] = failed.into();
            answer["Records"] = serde_json::Value::Array(all);
            Bytes::from(serde_json::to_vec(&answer).unwrap())
        }) as Box<dyn FnOnce(Bytes) -> Bytes + Send>;
        Some((Bytes::from(serde_json::to_vec(&request).unwrap()), rewrite))
    });
    (FaultProxy::start_exchange(upstream, exchange), failed)
}

#[test]
fn throttled_entries_are_sent_again_without_reordering_a_key() {
    let (endpoint, rt, client, source) = new_stream("SPILLWAY_TEST_KINESALITE", "throttled", 2);
    let produced = produce(&endpoint, &source, &["--count", "2000", "--keys", "61"]);
    let target = target_stream(&rt, &client);
    let (proxy, failed) = throttling_proxy(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config(&endpoint, &source, &proxy.url, &target));
    let output = run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        failed.load(std::sync::atomic::Ordering::SeqCst) > 100,
        "the proxy throttled too little"
    );
    let logs = logs(&output.stderr);
    assert!(
        logs.iter()
            .any(|l| l["message"] == "kinesis put failed for some records; retrying them"
                && l["error_code"] == "ProvisionedThroughputExceededException"),
        "no retry was logged"
    );
    let found = rt.block_on(read_back(&client, &target));
    assert_eq!(assert_delivered(&produced, &found, 0), 0);
    assert!(objects(&dir.path().join("backup")).is_empty());
}

#[test]
fn kill_9_during_delivery_loses_nothing_and_repeats_at_most_a_window() {
    let (endpoint, rt, client, source) = new_stream("SPILLWAY_TEST_KINESALITE", "kill-put", 2);
    let produced = produce(&endpoint, &source, &["--count", "6000", "--keys", "200"]);
    let target = target_stream(&rt, &client);
    // Slow PutRecords, so that the kill lands in the middle of a window.
    let slow = FaultProxy::start(
        &endpoint,
        Arc::new(|target: &str, _| {
            (target == "Kinesis_20131202.PutRecords").then(|| Fault::delay(Duration::from_millis(150)))
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), &config(&endpoint, &source, &slow.url, &target));
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--once", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = LogWatch::new(&mut child);
    assert!(
        watch.wait_for("\"message\":\"delivered\"", Duration::from_secs(120)),
        "{:?}",
        watch.seen
    );
    std::thread::sleep(Duration::from_millis(300));
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let found_before = rt.block_on(read_back(&client, &target)).len();
    assert!(
        found_before < produced.len(),
        "the kill came after everything was delivered"
    );

    let output = run_once(
        dir.path(),
        &write_config(dir.path(), &config(&endpoint, &source, &endpoint, &target)),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found = rt.block_on(read_back(&client, &target));
    let repeats = assert_delivered(&produced, &found, 500);
    println!("{found_before} records before the kill, {repeats} repeated after it");
}

/// `partition_key` as a jq expression keys each record by its own field;
/// a record it gives no key for goes to the backup, as does one that
/// crashes the program (which once aborted the whole process); and
/// `max_records_per_second` spreads the calls out.
#[test]
fn a_jq_partition_key_and_a_rate_limit_shape_what_the_stream_receives() {
    let endpoint = peer("SPILLWAY_TEST_KINESALITE");
    let rt = runtime();
    let client = rt.block_on(support::kinesis::client(&endpoint));
    let target = target_stream(&rt, &client);
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<String> = (0..600)
        .map(|i| match i {
            100 | 200 => format!("{{\"id\":{i},\"user\":null}}"),
            300 => format!("{{\"id\":{i},\"user\":\"recurse\"}}"),
            _ => format!("{{\"id\":{i},\"user\":\"u-{}\"}}", i % 100),
        })
        .collect();
    std::fs::write(dir.path().join("input.ndjson"), input.join("\n") + "\n").unwrap();
    let text = format!(
        r#"name = "keyed"
[source]
type = "file"
path = "input.ndjson"
[destination]
type = "kinesis"
stream = "{target}"
region = "us-east-1"
endpoint = "{endpoint}"
partition_key = 'if .user == "recurse" then (def f: 1 + f; f) else .user end'
max_records_per_second = 200
[destination.backup]
type = "local"
path = "backup"
[checkpoint]
path = "state"
"#
    );
    let config = write_config(dir.path(), &text);
    let started = std::time::Instant::now();
    let output = run(dir.path(), &config);
    let took = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // 597 records at 200 a second: the first 200 at once, the rest paced.
    assert!(took >= Duration::from_millis(1900), "597 records in {took:?} at 200/s");
    let found = rt.block_on(read_back(&client, &target));
    assert_eq!(found.len(), 597);
    let mut ids = Vec::new();
    for put in &found {
        let value: serde_json::Value = serde_json::from_slice(&put.data).unwrap();
        assert_eq!(value["user"].as_str(), Some(put.key.as_str()), "{value}");
        ids.push(value["id"].as_u64().unwrap());
    }
    // Per key in input order (each key's records sit in one shard).
    let mut by_key: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (put, id) in found.iter().zip(&ids) {
        by_key.entry(put.key.clone()).or_default().push(*id);
    }
    assert!(
        by_key.values().all(|ids| ids.windows(2).all(|w| w[0] < w[1])),
        "order per key"
    );
    let backup = lines_under(&objects(&dir.path().join("backup")), "");
    let refused: Vec<serde_json::Value> = backup.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    for record in &refused {
        assert_eq!(record["errorCode"], "Kinesis.PartitionKeyFailed");
        let message = record["errorMessage"].as_str().unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(record["rawData"].as_str().unwrap())
            .unwrap();
        let why = match serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["id"].as_u64() {
            Some(300) => "Jq.Crashed",
            _ => "gave null",
        };
        assert!(message.contains(why), "{record}");
    }
}
