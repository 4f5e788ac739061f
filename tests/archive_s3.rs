//! End-to-end: the real binary archiving a file into S3 (moto's server,
//! started by scripts/test.sh).

mod support;

use base64::Engine as _;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spillway_destinations::Compression;
use support::fault_proxy::{s3_error, Fault, FaultProxy};
use support::kinesis::peer;
use support::s3::{bucket_objects, client, Moto};
use support::*;

/// An object's body, content type and content encoding.
type StoredObject = (Vec<u8>, Option<String>, Option<String>);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open_uploads(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = rt.block_on(s3.list_multipart_uploads().bucket(bucket).send()).unwrap();
    listed
        .uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_owned())
        .collect()
}

/// Writes `count` JSON lines of about `size` bytes to `events.ndjson`;
/// returns them.
fn write_records(dir: &Path, count: usize, size: usize) -> Vec<Vec<u8>> {
    let mut input = Vec::with_capacity(count * (size + 1));
    let mut records = Vec::with_capacity(count);
    for id in 0..count {
        let line = format!(
            r#"{{"id":{id},"pad":"{}"}}"#,
            "p".repeat(size.saturating_sub(20) + id % 7)
        );
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        records.push(line.into_bytes());
    }
    std::fs::write(dir.join("events.ndjson"), input).unwrap();
    records
}

/// A file-to-S3 configuration through `endpoint`, with `extra` keys in
/// `[destination]`.
fn s3_config(dir: &Path, endpoint: &str, bucket: &str, size_mb: u32, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = {size_mb}
interval_seconds = 60
[destination]
type = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
checksum = "when_required"
prefix = "events/"
{extra}
[checkpoint]
path = "state"
"#
        ),
    )
}

/// The lines of the objects under `prefix`, in key order (keys hold the
/// first record's offset, zero-padded by nothing: sort by that offset).
fn archived_lines(objects: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<Vec<u8>> {
    let mut under: Vec<(u64, &Vec<u8>)> = objects
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, body)| {
            let offset = key
                .rsplit('-')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("offset in key");
            (offset, body)
        })
        .collect();
    under.sort_by_key(|(offset, _)| *offset);
    under
        .into_iter()
        .flat_map(|(_, body)| {
            body.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts `spillway run` with JSON logs in `dir`, watching its log lines.
fn spawn_run(dir: &Path, config: &Path) -> (std::process::Child, LogWatch) {
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = LogWatch::new(&mut child);
    (child, watch)
}

/// A proxy to `endpoint` that answers 503 SlowDown to every write under
/// `events/` while the flag it returns is set.
fn slow_down_data_writes(endpoint: &str) -> (FaultProxy, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let rule_failing = failing.clone();
    let proxy = FaultProxy::start(
        endpoint,
        Arc::new(move |target: &str, _| {
            let data_write = target.contains("/events/") && (target.starts_with("PUT") || target.starts_with("POST"));
            (data_write && rule_failing.load(Ordering::SeqCst)).then(|| s3_error(503, "SlowDown"))
        }),
    );
    (proxy, failing)
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_file_archived_to_s3_reads_back_as_exactly_the_input() {
    let endpoint = peer("SPILLWAY_TEST_MOTO");
    let bucket = format!("spillway-e2e-{}", std::process::id());
    let rt = runtime();
    let s3 = client(&rt, &endpoint);
    rt.block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for id in 0..5_000 {
        let line = match id {
            100 | 2_000 => format!("{{\"id\":{id},broken"),
            _ => {
                let line = format!(r#"{{"id":{id},"pad":"{}"}}"#, "p".repeat(200 + id % 300));
                expected.push(line.clone());
                line
            }
        };
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
checksum = "when_required"
prefix = "events/!{{timestamp:yyyy/MM/dd}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
compression = "gzip"
storage_class = "STANDARD_IA"
[destination.tags]
pipeline = "clicks"
[checkpoint]
path = "state"
"#
        ),
    );
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let flushes = flushes(&logs(&output.stderr));
    // Logged as each object is written: with concurrent puts the smaller
    // last object may be written first.
    let mut data_flushes: Vec<&str> = flushes
        .iter()
        .filter(|(o, _)| o == "data")
        .map(|(_, r)| r.as_str())
        .collect();
    data_flushes.sort_unstable();
    assert_eq!(
        data_flushes,
        ["end_of_input", "size"],
        "about 1.9 MB of records with 1 MB buffers"
    );

    let objects: BTreeMap<String, StoredObject> = rt.block_on(async {
        let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
        let mut objects = BTreeMap::new();
        for object in listed.contents() {
            let key = object.key().unwrap().to_owned();
            let got = s3.get_object().bucket(&bucket).key(&key).send().await.unwrap();
            let content_type = got.content_type().map(str::to_owned);
            let content_encoding = got.content_encoding().map(str::to_owned);
            let body = got.body.collect().await.unwrap().into_bytes().to_vec();
            objects.insert(key, (body, content_type, content_encoding));
        }
        objects
    });
    let mut archived = Vec::new();
    let mut errors = Vec::new();
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    for (key, (body, content_type, content_encoding)) in &objects {
        assert!(key.ends_with(".jsonl.gz"), "{key}");
        assert_eq!(content_type.as_deref(), Some("application/x-ndjson"), "{key}");
        assert_eq!(content_encoding.as_deref(), Some("gzip"), "{key}");
        let text = String::from_utf8(Compression::Gzip.decompress(body).unwrap()).unwrap();
        if key.starts_with(&format!("events/{today}/clicks-file-events.ndjson-")) {
            archived.extend(text.lines().map(str::to_owned));
        } else {
            assert!(key.starts_with("errors/format-conversion-failed/"), "{key}");
            errors.extend(text.lines().map(str::to_owned));
        }
    }
    assert_eq!(
        archived, expected,
        "the archive is not exactly the valid input, in order"
    );
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e.contains("\"errorCode\":\"Record.MalformedJson\"")));

    // Nothing left behind: no probe object, no open multipart upload.
    assert!(objects.keys().all(|k| !k.starts_with(".spillway-probe")));
    let uploads = rt.block_on(s3.list_multipart_uploads().bucket(&bucket).send()).unwrap();
    assert!(uploads.uploads().is_empty());
}

#[test]
fn a_missing_bucket_is_reported_at_start_in_one_line() {
    let endpoint = peer("SPILLWAY_TEST_MOTO");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), "{}\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[destination]\ntype = \"s3\"\nbucket = \"no-such-bucket-here\"\n\
             region = \"us-east-1\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\n[checkpoint]\npath = \"state\"\n"
        ),
    );
    let output = run(dir.path(), &config);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: destination check failed") && last.contains("NoSuchBucket"),
        "{stderr}"
    );
    assert!(!stderr.contains("testing"), "a credential reached the output: {stderr}");
}

#[test]
fn s3_answering_503_for_a_while_holds_delivery_back_without_loss_or_memory_growth() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("slowdown");
    let dir = tempfile::tempdir().unwrap();
    // 160 MB of input, far more than the pipeline may hold.
    let records = write_records(dir.path(), 160_000, 1_000);
    let (proxy, failing) = slow_down_data_writes(&endpoint);
    let config = s3_config(dir.path(), &proxy.url, &bucket, 2, "");
    let (mut child, mut watch) = spawn_run(dir.path(), &config);
    assert!(
        watch.wait_for("put failed; retrying", Duration::from_secs(60)),
        "{:#?}",
        watch.seen
    );
    // While S3 refuses, the source must stop reading: memory stays bounded.
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        peak = peak.max(rss(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    failing.store(false, Ordering::SeqCst);
    let status = child.wait().unwrap();
    let seen = watch.finish();
    assert!(status.success(), "{seen:#?}");
    let refused = proxy.faults_sent.load(Ordering::SeqCst);
    assert!(refused >= 3, "only {refused} puts were refused");
    println!("peak RSS while S3 answered 503: {} MiB", peak / (1024 * 1024));
    assert!(
        peak < 96 * 1024 * 1024,
        "RSS reached {} MiB while delivery was held back (input: 160 MB)",
        peak / (1024 * 1024)
    );
    let objects = bucket_objects(&rt, &s3, &bucket);
    assert_same_records(&archived_lines(&objects, "events/"), &records, "archive after the 503s");
    assert!(open_uploads(&rt, &s3, &bucket).is_empty());
}

#[test]
fn kill_9_during_a_multipart_upload_then_restart_leaves_one_copy_and_no_open_upload() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("multipart-kill");
    let dir = tempfile::tempdir().unwrap();
    // About 50 MB: objects of up to 20 MiB, sent in 8 MiB parts.
    let records = write_records(dir.path(), 50_000, 1_000);
    // Slow parts down so that the kill lands inside an upload.
    let proxy = FaultProxy::start(
        &endpoint,
        Arc::new(|target: &str, _| {
            target
                .contains("partNumber=")
                .then(|| Fault::delay(Duration::from_millis(800)))
        }),
    );
    let config = s3_config(dir.path(), &proxy.url, &bucket, 20, "multipart_threshold_mb = 5");
    let (mut child, mut watch) = spawn_run(dir.path(), &config);
    assert!(
        watch.wait_for("multipart upload started", Duration::from_secs(60)),
        "{:#?}",
        watch.seen
    );
    std::thread::sleep(Duration::from_millis(400));
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // With concurrent puts (`max_concurrent_puts`, 4 by default) several
    // uploads may be open at the kill; at least one must be.
    let left_open = open_uploads(&rt, &s3, &bucket);
    assert!(!left_open.is_empty(), "the kill should land inside an upload");

    let output = run(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("aborted a multipart upload left open by an earlier run"),
        "{stderr}"
    );
    assert_eq!(open_uploads(&rt, &s3, &bucket), Vec::<String>::new());
    let objects = bucket_objects(&rt, &s3, &bucket);
    assert!(objects.len() >= 3, "{:?}", objects.keys());
    assert_same_records(
        &archived_lines(&objects, "events/"),
        &records,
        "archive after kill -9 and restart",
    );
}

#[test]
fn a_put_failing_past_the_retry_duration_becomes_delivery_failed_error_records() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("give-up");
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 2_000, 300);
    let proxy = FaultProxy::start(
        &endpoint,
        Arc::new(|target: &str, _| {
            (target.starts_with("PUT") && target.contains("/events/")).then(|| s3_error(503, "SlowDown"))
        }),
    );
    let config = s3_config(dir.path(), &proxy.url, &bucket, 1, "retry_duration_seconds = 2");
    let output = run(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("put failed past the retry duration"), "{stderr}");

    let objects = bucket_objects(&rt, &s3, &bucket);
    assert!(
        objects.keys().all(|k| k.starts_with("errors/delivery-failed/")),
        "{:?}",
        objects.keys()
    );
    let mut failed = Vec::new();
    for line in archived_lines(&objects, "errors/delivery-failed/") {
        let record: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(record["errorCode"], "Delivery.Failed");
        assert!(
            record["errorMessage"].as_str().unwrap().contains("SlowDown"),
            "{record}"
        );
        failed.push(
            base64::engine::general_purpose::STANDARD
                .decode(record["rawData"].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_same_records(&failed, &records, "delivery-failed error records");
}

#[test]
fn a_large_object_is_sent_in_parts_while_it_is_encoded() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("streamed");
    let dir = tempfile::tempdir().unwrap();
    // 120 MB of records in one 128 MiB buffer: one object of 120 MB.
    let records = write_records(dir.path(), 120_000, 1_000);
    let input_bytes: u64 = records.iter().map(|r| r.len() as u64 + 1).sum();
    let config = s3_config(dir.path(), &endpoint, &bucket, 128, "");
    let (mut child, watch) = spawn_run(dir.path(), &config);
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(rss(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = watch.finish();
    let uploads = seen.iter().filter(|l| l.contains("multipart upload started")).count();
    assert_eq!(uploads, 1, "{seen:#?}");
    println!(
        "peak RSS {} MiB for a {} MiB object",
        peak / (1024 * 1024),
        input_bytes / (1024 * 1024)
    );
    // The buffer's records are in memory, with their bookkeeping (about
    // twice their bytes in all, measured: 246 MiB here). The object's bytes
    // must not be as well: encoded whole first, as to a local directory,
    // the same run peaks at about 320 MiB.
    assert!(
        peak < 2 * input_bytes + 48 * 1024 * 1024,
        "RSS reached {} MiB for a {} MiB object",
        peak / (1024 * 1024),
        input_bytes / (1024 * 1024)
    );
    let objects = bucket_objects(&rt, &s3, &bucket);
    assert_eq!(objects.len(), 1);
    assert_same_records(&archived_lines(&objects, "events/"), &records, "the streamed object");
}

/// SIGTERM while a put is being retried: said at once, the retries stop,
/// the run exits saying so, and the next run archives every record once.
#[test]
fn sigterm_while_a_put_is_retried_stops_at_once_and_loses_nothing() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("sigterm-retry");
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 3_000, 200);
    let (proxy, failing) = slow_down_data_writes(&endpoint);
    let config = s3_config(dir.path(), &proxy.url, &bucket, 1, "");
    let (mut child, mut watch) = spawn_run(dir.path(), &config);
    // Let the backoff grow past a few seconds.
    for attempt in ["\"attempt\":1,", "\"attempt\":5,"] {
        assert!(watch.wait_for(attempt, Duration::from_secs(60)), "{:#?}", watch.seen);
    }
    let signalled = Instant::now();
    send_signal(&child, libc::SIGTERM);
    assert!(
        watch.wait_for("shutdown requested", Duration::from_secs(2)),
        "{:#?}",
        watch.seen
    );
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still retrying 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen = watch.finish();
    assert_eq!(status.code(), Some(1), "{seen:#?}");
    let last = seen.last().unwrap();
    assert!(
        last.starts_with("error: stopped while retrying the put of events/"),
        "{last}"
    );

    failing.store(false, Ordering::SeqCst);
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let logs = logs(&output.stderr);
    assert!(
        logs.iter()
            .any(|l| l["message"] == "settled an object pending since the last run" && l["written"] == false),
        "the pending intent is settled at the next start"
    );
    let objects = bucket_objects(&rt, &s3, &bucket);
    assert_same_records(
        &archived_lines(&objects, "events/"),
        &records,
        "archive after the restart",
    );
}

/// The start-up check leaves nothing behind, not even an old version in a
/// versioned bucket.
#[test]
fn the_start_up_check_leaves_no_probe_object_or_version_behind() {
    let Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = Moto::new("probe");
    rt.block_on(
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 100, 100);
    let config = s3_config(dir.path(), &endpoint, &bucket, 1, "");
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects = bucket_objects(&rt, &s3, &bucket);
    assert_same_records(&archived_lines(&objects, "events/"), &records, "archive");
    let versions = rt.block_on(s3.list_object_versions().bucket(&bucket).send()).unwrap();
    let left: Vec<String> = versions
        .versions()
        .iter()
        .filter_map(|v| v.key())
        .chain(versions.delete_markers().iter().filter_map(|m| m.key()))
        .filter(|k| !k.starts_with("events/"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(open_uploads(&rt, &s3, &bucket).is_empty());
}
