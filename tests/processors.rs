//! End-to-end: the real binary with `[[processors]]` and dynamic
//! partitioning (issue #18): jq filters and metadata extraction, partition
//! keys in prefixes (hostile ones too), early flushes at
//! `max_active_partitions`, records split into many across a `kill -9`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use spillway_destinations::sanitize_partition_value;
use support::*;

/// Partition values that try to escape the prefix or break keys.
fn customer(id: usize) -> serde_json::Value {
    let hostile = [
        serde_json::json!("acme"),
        serde_json::json!("../../etc"),
        serde_json::json!("/"),
        serde_json::json!(""),
        serde_json::json!(".."),
        serde_json::json!("x".repeat(10_000)),
        serde_json::json!("a\nb\u{1}c"),
        serde_json::json!("café/é"),
        serde_json::json!(42),
    ];
    hostile[id % hostile.len()].clone()
}

fn partitioned_config(input: &str, extra: &str) -> String {
    format!(
        r#"name = "orders"
[source]
type = "file"
path = "{input}"
[buffer]
size_mb = 1
interval_seconds = 60
[[processors]]
type = "jq"
query = 'select(.keep) | del(.pad)'
[[processors]]
type = "metadata_extraction"
query = '{{customer: .customer}}'
[dynamic_partitioning]
enabled = true
{extra}
[destination]
type = "local"
path = "archive"
prefix = "c=!{{partitionKeyFromQuery:customer}}/!{{timestamp:yyyy}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
[checkpoint]
path = "state"
"#
    )
}

/// The kept records' ids by the partition (first key segment) they are in.
fn ids_by_partition(objects: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u64>> {
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, body) in objects.iter().filter(|(k, _)| k.starts_with("c=")) {
        let partition = key.split('/').next().unwrap().to_owned();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert!(record.get("pad").is_none(), "the jq program ran: {record}");
            found
                .entry(partition.clone())
                .or_default()
                .push(record["id"].as_u64().unwrap());
        }
    }
    found
}

/// Every file under `root`, relative.
fn files(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[test]
fn jq_and_metadata_extraction_archive_each_kept_record_once_in_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    let mut kept: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut failed: Vec<Vec<u8>> = Vec::new();
    let mut keyless: Vec<Vec<u8>> = Vec::new();
    for id in 0..900usize {
        let line = if id % 50 == 7 {
            // Not JSON: the jq processor fails it.
            format!("not json {id}").into_bytes()
        } else if id % 50 == 9 {
            // Kept, but without the key the prefix names.
            let line = serde_json::to_vec(&serde_json::json!({"id": id, "keep": true})).unwrap();
            keyless.push(serde_json::to_vec(&serde_json::json!({"id": id, "keep": true})).unwrap());
            line
        } else {
            let keep = id % 4 != 0;
            let customer = customer(id);
            if keep {
                let value = match &customer {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                kept.entry(format!("c={}", sanitize_partition_value(&value)))
                    .or_default()
                    .push(id as u64);
            }
            serde_json::to_vec(
                &serde_json::json!({"id": id, "customer": customer, "keep": keep, "pad": "p".repeat(100)}),
            )
            .unwrap()
        };
        if id % 50 == 7 {
            failed.push(line.clone());
        }
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("orders.ndjson"), &input).unwrap();
    let config = write_config(dir.path(), &partitioned_config("orders.ndjson", ""));
    let first = run(dir.path(), &config);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    let objects = objects(&dir.path().join("archive"));
    let found = ids_by_partition(&objects);
    assert_eq!(
        found, kept,
        "every kept record once, in its partition; dropped ones nowhere"
    );
    // Readable values stay readable in the key.
    assert!(objects.keys().any(|k| k.starts_with("c=acme/")));
    assert!(objects.keys().any(|k| k.starts_with("c=café%2Fé/")));
    assert!(objects.keys().any(|k| k.starts_with("c=..%2F..%2Fetc/")));
    // Nothing outside the destination's prefixes.
    for file in files(dir.path()) {
        assert!(
            file.starts_with("archive/c=")
                || file.starts_with("archive/errors/processing-failed/")
                || file.starts_with("state/")
                || file.starts_with("archive/.")
                || file == "orders.ndjson"
                || file == "spillway.toml",
            "{file:?} written"
        );
    }
    let errors = lines_under(&objects, "errors/processing-failed/");
    let mut raw: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for line in &errors {
        let error: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(error["attemptsMade"], 1);
        let data = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        raw.entry(error["errorCode"].as_str().unwrap().to_owned())
            .or_default()
            .push(data);
    }
    assert_eq!(
        raw,
        BTreeMap::from([
            ("Jq.InvalidJson".to_owned(), failed),
            ("DynamicPartitioning.MetadataExtractionFailed".to_owned(), keyless),
        ]),
        "failed records in processing-failed with their rawData"
    );

    // The checkpoint is past dropped and failed records: a second run
    // writes nothing.
    let second = run(dir.path(), &config);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(
        objects,
        support::objects(&dir.path().join("archive")),
        "a second run wrote"
    );
}

#[test]
fn more_partitions_than_allowed_flush_the_oldest_early_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    for id in 0..400usize {
        let line = serde_json::json!({"id": id, "customer": format!("p{}", id % 10), "keep": true});
        input.extend_from_slice(&serde_json::to_vec(&line).unwrap());
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("orders.ndjson"), &input).unwrap();
    let config = write_config(
        dir.path(),
        &partitioned_config("orders.ndjson", "max_active_partitions = 3"),
    );
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reasons: Vec<String> = flushes(&logs(&output.stderr)).into_iter().map(|(_, r)| r).collect();
    assert!(reasons.iter().any(|r| r == "partition_limit"), "{reasons:?}");
    let found = ids_by_partition(&objects(&dir.path().join("archive")));
    let mut all: Vec<u64> = found.values().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<u64>>(), "nothing lost, nothing twice");
    for (partition, ids) in &found {
        assert!(ids.iter().all(|id| format!("c=p{}", id % 10) == *partition));
    }
}

#[test]
fn a_record_split_into_many_is_archived_exactly_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batches.ndjson");
    let c_path = std::ffi::CString::new(input.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let config_text = r#"name = "split"
[source]
type = "file"
path = "batches.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[[processors]]
type = "jq"
query = '.items[] | {id: .}'
[destination]
type = "local"
path = "archive"
prefix = "items/"
[checkpoint]
path = "state"
"#;
    let config = write_config(dir.path(), config_text);
    // 400 batches of 50 items (1 KB each): 20 MB of outputs, many flushes.
    let batches: Vec<Vec<u8>> = (0..400u64)
        .map(|b| {
            let items: Vec<String> = (0..50u64)
                .map(|i| format!("\"{}-{}\"", b * 50 + i, "x".repeat(1000)))
                .collect();
            format!("{{\"items\":[{}]}}", items.join(",")).into_bytes()
        })
        .collect();
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = LogWatch::new(&mut child);
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
    for batch in &batches[..300] {
        fifo.write_all(batch).unwrap();
        fifo.write_all(b"\n").unwrap();
    }
    fifo.flush().unwrap();
    assert!(
        watch.wait_for("\"flushed\"", Duration::from_secs(60)),
        "{:#?}",
        watch.seen
    );
    std::thread::sleep(Duration::from_millis(200));
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    drop(fifo);

    std::fs::remove_file(&input).unwrap();
    let mut whole = Vec::new();
    for batch in &batches {
        whole.extend_from_slice(batch);
        whole.push(b'\n');
    }
    std::fs::write(&input, whole).unwrap();
    let second = run(dir.path(), &config);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines_under(&objects(&dir.path().join("archive")), "items/") {
        let item: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let id = item["id"].as_str().unwrap().split('-').next().unwrap().to_owned();
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 400 * 50, "every output once");
    assert!(counts.values().all(|n| *n == 1), "an output archived twice");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A subscription payload as CloudWatch Logs builds it.
fn cloudwatch_payload(message_type: &str, messages: &[String]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"id": format!("{i:056}"), "timestamp": 1_795_315_074_000u64 + i as u64, "message": m}))
        .collect();
    let payload = serde_json::json!({
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/lambda/checkout",
        "logStream": "2026/11/22/[$LATEST]abc",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": events,
    });
    gzip(&serde_json::to_vec(&payload).unwrap())
}

#[test]
fn cloudwatch_logs_payloads_from_kinesalite_become_one_record_per_log_event() {
    let (endpoint, rt, client, stream) = kinesis::new_stream("SPILLWAY_TEST_KINESALITE", "cwl", 1);
    let mut expected = Vec::new();
    let put = |data: Vec<u8>| {
        rt.block_on(
            client
                .put_record()
                .stream_name(&stream)
                .partition_key("k")
                .data(aws_sdk_kinesis::primitives::Blob::new(data))
                .send(),
        )
        .map(|_| ())
        .unwrap()
    };
    put(cloudwatch_payload(
        "CONTROL_MESSAGE",
        &["CWL CONTROL MESSAGE: Checking health of destination Firehose.".to_owned()],
    ));
    for batch in 0..20 {
        let messages: Vec<String> = (0..25).map(|i| format!(r#"{{"batch":{batch},"event":{i}}}"#)).collect();
        expected.extend(messages.iter().map(|m| m.as_bytes().to_vec()));
        put(cloudwatch_payload("DATA_MESSAGE", &messages));
    }
    put(b"not a cloudwatch payload".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let config = kinesis::kinesis_config(&endpoint, &stream, "").replace(
        "[destination]",
        "[[processors]]\ntype = \"cloudwatch_logs\"\n[destination]",
    );
    let config = write_config(dir.path(), &config);
    let output = kinesis::run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let archived = objects(&dir.path().join("archive"));
    assert_same_records(&lines_under(&archived, "events/"), &expected, "log events");
    let errors = lines_under(&archived, "errors/decompression-failed/");
    assert_eq!(errors.len(), 1, "the non-CloudWatch payload");
    let error: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(error["errorCode"], "CloudWatchLogs.InvalidPayload");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap(),
        b"not a cloudwatch payload"
    );
    // Everything checkpointed: a second run writes nothing.
    let again = kinesis::run_once(dir.path(), &config);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(archived, objects(&dir.path().join("archive")));
}

/// Input for the partitioned tests: `count` records over `partitions`
/// customers, every fourth one dropped by the jq filter.
fn orders(count: usize, partitions: usize) -> (Vec<u8>, BTreeMap<String, Vec<u64>>) {
    let mut input = Vec::new();
    let mut kept: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in 0..count {
        let keep = id % 4 != 0;
        let customer = format!("cust-{}", id % partitions);
        if keep {
            kept.entry(format!("c={customer}")).or_default().push(id as u64);
        }
        let line = serde_json::json!({"id": id, "customer": customer, "keep": keep, "pad": "p"});
        input.extend_from_slice(&serde_json::to_vec(&line).unwrap());
        input.push(b'\n');
    }
    (input, kept)
}

#[test]
fn partitioned_parquet_makes_one_file_per_partition_per_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (input, kept) = orders(600, 5);
    std::fs::write(dir.path().join("orders.ndjson"), &input).unwrap();
    let config =
        partitioned_config("orders.ndjson", "").replace("[checkpoint]", "[format]\ntype = \"parquet\"\n[checkpoint]");
    let config = write_config(dir.path(), &config);
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let archive = dir.path().join("archive");
    let files = read_parquet(&archive);
    assert_eq!(files.len(), 5, "one file per partition (one flush each)");
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for file in &files {
        let path = file["path"].as_str().unwrap();
        let partition = Path::new(path)
            .strip_prefix(&archive)
            .unwrap()
            .to_string_lossy()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        for row in file["rows"].as_array().unwrap() {
            assert_eq!(format!("c={}", row["customer"].as_str().unwrap()), partition);
            found
                .entry(partition.clone())
                .or_default()
                .push(row["id"].as_u64().unwrap());
        }
    }
    assert_eq!(found, kept);
}

#[test]
fn moto_partitioned_prefix_on_s3_holds_each_kept_record_once() {
    let moto = support::moto::Moto::new("partitions");
    let dir = tempfile::tempdir().unwrap();
    let (mut input, kept) = orders(500, 7);
    input.extend_from_slice(b"{broken\n");
    std::fs::write(dir.path().join("orders.ndjson"), &input).unwrap();
    let config =
        partitioned_config("orders.ndjson", "").replace("type = \"local\"\npath = \"archive\"", &moto.destination());
    let config = write_config(dir.path(), &config);
    let list = || moto.objects();
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = list();
    assert_eq!(ids_by_partition(&stored), kept);
    let errors = lines_under(&stored, "errors/processing-failed/");
    assert_eq!(errors.len(), 1);
    let error: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(
        error["rawData"],
        base64::engine::general_purpose::STANDARD.encode(b"{broken")
    );
    let again = run(dir.path(), &config);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(stored, list(), "a second run wrote");
}
