//! `[source] type = "archive"` driven through the real binary (issue #19):
//! an archive read back into a second archive holds the same records
//! (bytes, partition keys, positions), each once, each shard in order;
//! time slices, bad objects, `kill -9` and re-driven error records.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use spillway_transforms::format::envelope;
use spillway_transforms::Record;
use support::*;

/// A record as the tests compare it: position, partition key, arrival
/// (ms), bytes.
type Seen = ((String, String, u64), Option<String>, i64, Vec<u8>);

fn seen(record: &Record) -> Seen {
    (
        (
            record.position.source.to_string(),
            record.position.offset.sequence_number.to_string(),
            record.position.offset.subsequence_number,
        ),
        record.partition_key.as_deref().map(str::to_owned),
        record.arrival.timestamp_millis(),
        record.data.to_vec(),
    )
}

fn hour(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).unwrap()
}

fn record(shard: u32, seq: u64, sub: u64, arrival: DateTime<Utc>) -> Record {
    let data = match seq % 3 {
        0 => format!("{{\"shard\":{shard},\"seq\":{seq},\"sub\":{sub}}}"),
        1 => format!("{{ \"shard\": {shard}, \"seq\": {seq} , \"s\":\"\\u00e9\\\"x\"}}"),
        _ => format!("{{\"a\":[{shard},{seq},{sub},1.50e3]}}"),
    };
    Record {
        data: data.into_bytes().into(),
        position: spillway_transforms::Position {
            source: spillway_transforms::SourceId::new(format!("shardId-00000000000{shard}")),
            offset: spillway_transforms::Offset::new(
                spillway_transforms::SequenceNumber::parse(&format!("4959{seq:020}")).unwrap(),
                sub,
            ),
        },
        partition_key: Some(format!("user-{}", seq % 7).into()),
        arrival,
    }
}

fn envelopes(records: &[Record]) -> Vec<u8> {
    let mut body = Vec::new();
    for record in records {
        envelope::write_line(record, &mut body).unwrap();
    }
    body
}

fn gzip(body: &[u8]) -> Vec<u8> {
    spillway_destinations::Compression::Gzip.compress(body, "").unwrap()
}

fn put(root: &Path, key: &str, body: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// An archive as a spillway destination with `prefix = "events/"` and
/// envelope lines writes it, with the awkward cases: two objects of one
/// hour whose key order is not their shards' order, KPL subsequence
/// numbers, gzip'd and plain objects. Returns every record.
fn sample_archive(root: &Path) -> Vec<Record> {
    let mut all = Vec::new();
    let at = |h: u32, minute: i64| hour(h) + chrono::Duration::minutes(minute);
    // Hour 10: the object named after shard 1 holds later records of
    // shard 2 than the object named after shard 2.
    let first: Vec<Record> = (100..110)
        .map(|s| record(2, s, 0, at(10, 1)))
        .chain((200..230).map(|s| record(1, s, 0, at(10, 2))))
        .collect();
    let second: Vec<Record> = (230..240)
        .map(|s| record(1, s, 0, at(10, 5)))
        .chain((110..130).map(|s| record(2, s, 0, at(10, 6))))
        .collect();
    put(
        root,
        "events/2026/11/01/10/orig-shardId-000000000002-4959100-0.jsonl.gz",
        &gzip(&envelopes(&first)),
    );
    put(
        root,
        "events/2026/11/01/10/orig-shardId-000000000001-4959230-0.jsonl",
        &envelopes(&second),
    );
    all.extend(first);
    all.extend(second);
    // Hour 11: KPL aggregates (one sequence number, several user records).
    let third: Vec<Record> = (300..310)
        .flat_map(|s| (0..3).map(move |sub| (s, sub)))
        .map(|(s, sub)| record(3, s, sub, at(11, 10)))
        .chain((130..140).map(|s| record(2, s, 0, at(11, 40))))
        .collect();
    put(
        root,
        "events/2026/11/01/11/orig-shardId-000000000003-4959300-0.jsonl.gz",
        &gzip(&envelopes(&third)),
    );
    all.extend(third);
    all
}

/// Every record of the envelope objects under `root/prefix`, object by
/// object in key order.
fn read_envelopes(root: &Path, prefix: &str) -> Vec<(String, Vec<Record>)> {
    objects(root)
        .into_iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, body)| {
            let records = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| envelope::read_line(l).unwrap_or_else(|e| panic!("{key}: {e}")))
                .collect();
            (key, records)
        })
        .collect()
}

/// Asserts that `objects` hold exactly `expected`, each once, and that
/// within every object each shard's records are in order.
fn assert_same_archive(objects: &[(String, Vec<Record>)], expected: &[Record]) {
    let mut found: Vec<Seen> = Vec::new();
    for (key, records) in objects {
        let mut last: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for record in records {
            let seen = seen(record);
            let position = (seen.0 .1.clone(), seen.0 .2);
            if let Some(before) = last.get(&seen.0 .0) {
                let ordered = (before.0.len(), &before.0, before.1) < (position.0.len(), &position.0, position.1);
                assert!(ordered, "{key}: {:?} after {before:?}", seen.0);
            }
            last.insert(seen.0 .0.clone(), position);
            found.push(seen);
        }
    }
    let unique: BTreeSet<&Seen> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "a record was written twice");
    let expected: BTreeSet<Seen> = expected.iter().map(seen).collect();
    let found: BTreeSet<Seen> = found.into_iter().collect();
    let missing: Vec<_> = expected.difference(&found).take(3).collect();
    let extra: Vec<_> = found.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
}

fn config(name: &str, source: &str, format: &str, destination: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntype = \"archive\"\n{source}\n[format]\n{format}\n[destination]\ntype = \"local\"\n{destination}\n[checkpoint]\npath = \"state\"\n"
    )
}

/// The configuration that reads the archive `first/events/` into envelope
/// lines under `second/copy/`.
fn envelope_copy(name: &str) -> String {
    config(
        name,
        "path = \"first\"\nprefix = \"events/\"",
        "type = \"json_lines\"\nenvelope = true",
        "path = \"second\"\nprefix = \"copy/\"",
    )
}

fn run_ok(dir: &Path, text: &str) -> Vec<serde_json::Value> {
    let path = write_config(dir, text);
    let output = run(dir, &path);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    logs(&output.stderr)
}

fn error_records(root: &Path, prefix: &str) -> Vec<serde_json::Value> {
    lines_under(&objects(root), prefix)
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// A prefix time whose records do not fit the sort's memory is sorted
/// through run files on disk (the bound set to a few records by a test
/// hook): every record once, each shard in order, as in memory.
#[test]
fn a_prefix_time_larger_than_the_sort_memory_is_sorted_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let expected = sample_archive(&dir.path().join("first"));
    let path = write_config(dir.path(), &envelope_copy("spilled"));
    let runs = tempfile::tempdir().unwrap();
    let output = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env("SPILLWAY_TEST_SORT_BYTES", "700")
        .env("TMPDIR", runs.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let copied = read_envelopes(&dir.path().join("second"), "copy/");
    assert_eq!(copied.len(), 1, "one object: the order across it is checked");
    assert_same_archive(&copied, &expected);
    assert_eq!(
        std::fs::read_dir(runs.path()).unwrap().count(),
        0,
        "run files left behind"
    );
}

#[test]
fn envelope_archive_round_trips_through_envelope_and_parquet_archives() {
    let dir = tempfile::tempdir().unwrap();
    let expected = sample_archive(&dir.path().join("first"));

    // Envelope lines in, envelope lines out, gzip'd.
    run_ok(
        dir.path(),
        &config(
            "second",
            "path = \"first\"\nprefix = \"events/\"",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"\ncompression = \"gzip\"",
        ),
    );
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &expected);

    // The copy, read again, into Parquet; and that Parquet archive back into
    // envelope lines: positions survive Parquet's metadata columns.
    run_ok(
        dir.path(),
        &config(
            "third",
            "path = \"second\"\nprefix = \"copy/\"",
            "type = \"parquet\"",
            "path = \"third\"\nprefix = \"pq/!{timestamp:yyyy/MM/dd}/\"",
        ),
    );
    let parquet = objects(&dir.path().join("third"));
    assert!(parquet.keys().any(|k| k.ends_with(".parquet")), "{:?}", parquet.keys());
    run_ok(
        dir.path(),
        &config(
            "fourth",
            "path = \"third\"\nprefix = \"pq/!{timestamp:yyyy/MM/dd}/\"",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"fourth\"\nprefix = \"back/\"",
        ),
    );
    assert_same_archive(&read_envelopes(&dir.path().join("fourth"), "back/"), &expected);
    // No error output anywhere: every object was read.
    for root in ["second", "third", "fourth"] {
        let errors: Vec<_> = objects(&dir.path().join(root))
            .into_keys()
            .filter(|k| k.starts_with("errors/"))
            .collect();
        assert!(errors.is_empty(), "{root}: {errors:?}");
    }
}

#[test]
fn a_time_slice_reads_exactly_its_records_and_no_object_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("first");
    let mut all = Vec::new();
    for h in 8..14u32 {
        let records: Vec<Record> = (0..20u64)
            .map(|i| {
                record(
                    1,
                    u64::from(h) * 100 + i,
                    0,
                    hour(h) + chrono::Duration::minutes(3 * i as i64),
                )
            })
            .collect();
        put(
            &root,
            &format!("events/2026/11/01/{h:02}/orig-shardId-000000000001-{h}.jsonl.gz"),
            &gzip(&envelopes(&records)),
        );
        all.extend(records);
    }
    // Unreadable objects in hours wholly outside the slice: reading either
    // would put an error record in the error output.
    put(
        &root,
        "events/2026/11/01/07/orig-garbage.jsonl.gz",
        b"\x1f\x8bnot gzip at all",
    );
    put(
        &root,
        "events/2026/11/01/14/orig-garbage.jsonl.gz",
        b"\x1f\x8bnot gzip at all",
    );
    let (start, end) = (
        hour(9) + chrono::Duration::minutes(30),
        hour(11) + chrono::Duration::minutes(15),
    );
    let logs = run_ok(
        dir.path(),
        &config(
            "slice",
            &format!(
                "path = \"first\"\nprefix = \"events/\"\nstart_time = \"{}\"\nend_time = \"{}\"\nobject_span_seconds = 1800",
                start.to_rfc3339(),
                end.to_rfc3339()
            ),
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    let expected: Vec<Record> = all
        .into_iter()
        .filter(|r| r.arrival >= start && r.arrival < end)
        .collect();
    assert!(expected.len() > 20, "the slice spans hours");
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &expected);
    assert!(error_records(&dir.path().join("second"), "errors/").is_empty());
    let reading = logs
        .iter()
        .find(|l| l["message"] == "reading the archive")
        .expect("a reading line");
    // Hours 7 and 8 end object_span (or more) before the start, 12 to 14
    // start after the end: skipped unread.
    assert_eq!(reading["skipped_outside_time_range"], 5, "{reading}");
}

#[test]
fn bad_objects_are_error_records_naming_their_key_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("first");
    let good: Vec<Record> = (0..10).map(|s| record(1, s, 0, hour(10))).collect();
    put(&root, "events/2026/11/01/10/a-good.jsonl.gz", &gzip(&envelopes(&good)));
    let whole = gzip(&envelopes(
        &(10..100).map(|s| record(2, s, 0, hour(10))).collect::<Vec<_>>(),
    ));
    let bad = [
        (
            "events/2026/11/01/10/b-truncated.jsonl.gz",
            whole[..whole.len() / 2].to_vec(),
        ),
        (
            "events/2026/11/01/10/c-corrupt.parquet",
            b"PAR1\x15\x04\x15\x10garbage garbage PAR1".to_vec(),
        ),
        (
            "events/2026/11/01/10/d-foreign.png",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01".to_vec(),
        ),
    ];
    for (key, body) in &bad {
        put(&root, key, body);
    }
    // A good plain NDJSON object (Firehose's own output) beside them.
    put(&root, "events/2026/11/01/10/e-firehose", b"{\"a\":1}\n{\"a\":2}\n");
    run_ok(dir.path(), &envelope_copy("second"));
    let copied: Vec<Record> = read_envelopes(&dir.path().join("second"), "copy/")
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    let from_shard: Vec<Record> = copied
        .iter()
        .filter(|r| r.position.source.as_str() == "shardId-000000000001")
        .cloned()
        .collect();
    assert_same_archive(&[("copy".into(), from_shard)], &good);
    let plain: Vec<(String, String, Vec<u8>)> = copied
        .iter()
        .filter(|r| r.position.source.as_str() != "shardId-000000000001")
        .map(|r| {
            (
                r.position.source.to_string(),
                r.position.offset.sequence_number.to_string(),
                r.data.to_vec(),
            )
        })
        .collect();
    let source = "archive-events/2026/11/01/10/e-firehose".to_owned();
    assert_eq!(
        plain,
        [
            (source.clone(), "1".into(), b"{\"a\":1}".to_vec()),
            (source, "2".into(), b"{\"a\":2}".to_vec())
        ]
    );
    let errors = error_records(&dir.path().join("second"), "errors/archive-read-failed/");
    assert_eq!(errors.len(), bad.len(), "{errors:#?}");
    for ((key, _), error) in bad.iter().zip(&errors) {
        assert_eq!(error["errorCode"], "Archive.ReadFailed");
        let message = error["errorMessage"].as_str().unwrap();
        assert!(message.starts_with(&format!("{key}: ")), "{message}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, key.as_bytes());
    }
}

#[test]
fn processing_failed_records_are_re_driven_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("first");
    let good: Vec<Record> = (0..5).map(|s| record(1, s * 2, 0, hour(10))).collect();
    put(&root, "events/2026/11/01/10/a.jsonl", &envelopes(&good));
    // Records a processor failed, in the shape error_record.rs writes.
    let failed: Vec<Record> = (0..5).map(|s| record(1, s * 2 + 1, 0, hour(10))).collect();
    let mut body = Vec::new();
    for record in &failed {
        let rejection = spillway_transforms::Rejection {
            output_type: spillway_transforms::ErrorOutputType::ProcessingFailed,
            code: "Lambda.FunctionError",
            message: "the processor failed".into(),
        };
        body.extend(spillway_transforms::error_record::render(
            record,
            &rejection,
            1,
            hour(10),
        ));
    }
    put(&root, "errors/processing-failed/2026/11/01/10/a.gz", &gzip(&body));
    // Other error outputs are not read unless asked for.
    put(
        &root,
        "errors/delivery-failed/2026/11/01/10/b",
        b"not even an error record\n",
    );

    let source = "path = \"first\"\nprefix = \"events/\"\ninclude_errors = [\"processing-failed\"]";
    run_ok(
        dir.path(),
        &config(
            "second",
            source,
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    let copied = read_envelopes(&dir.path().join("second"), "copy/");
    let all: Vec<Record> = good.iter().chain(&failed).cloned().collect();
    assert_same_archive(&copied, &all);
    assert!(error_records(&dir.path().join("second"), "errors/").is_empty());
    // Run again: nothing more is written (the checkpoint holds them).
    run_ok(
        dir.path(),
        &config(
            "second",
            source,
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &all);
}

#[test]
fn archive_to_archive_is_exactly_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("first");
    let mut all = Vec::new();
    for h in 0..12u32 {
        let records: Vec<Record> = (0..4u32)
            .flat_map(|shard| (0..1500u64).map(move |i| (shard, i)))
            .map(|(shard, i)| {
                record(
                    shard,
                    u64::from(h) * 10_000 + i,
                    0,
                    hour(h) + chrono::Duration::seconds(i as i64),
                )
            })
            .collect();
        put(
            &root,
            &format!("events/2026/11/01/{h:02}/orig-{h}.jsonl.gz"),
            &gzip(&envelopes(&records)),
        );
        all.extend(records);
    }
    let text = config(
        "second",
        "path = \"first\"\nprefix = \"events/\"",
        "type = \"parquet\"",
        "path = \"second\"\nprefix = \"pq/!{timestamp:yyyy/MM/dd/HH}/\"",
    );
    let path = write_config(dir.path(), &format!("{text}[buffer]\nsize_mb = 1\n"));
    let mut child = spawn_run(dir.path(), &path, 20);
    let mut watch = LogWatch::new(&mut child);
    assert!(
        watch.wait_for("\"flushed\"", Duration::from_secs(60)),
        "{:#?}",
        watch.seen
    );
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let seen = watch.finish();
    assert!(
        !seen.iter().any(|l| l.contains("run finished")),
        "killed before the end: {seen:#?}"
    );
    let written_before = objects(&dir.path().join("second")).len();
    run_ok(dir.path(), &format!("{text}[buffer]\nsize_mb = 1\n"));
    assert!(written_before > 0);
    // Read the Parquet archive back through the archive source itself.
    run_ok(
        dir.path(),
        &config(
            "third",
            "path = \"second\"\nprefix = \"pq/!{timestamp:yyyy/MM/dd/HH}/\"",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"third\"\nprefix = \"back/\"",
        ),
    );
    assert_same_archive(&read_envelopes(&dir.path().join("third"), "back/"), &all);
    let mut state = std::fs::File::open(dir.path().join("state/second.checkpoint.json")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut state, &mut text).unwrap();
    assert!(
        text.contains("shardId-000000000003"),
        "checkpoints are per original shard: {text}"
    );
    let _ = std::io::stdout().flush();
}

#[test]
fn an_s3_archive_round_trips_with_the_endpoint_from_aws_endpoint_url_s3_only() {
    let support::moto::Moto {
        endpoint,
        rt,
        s3,
        bucket,
    } = support::moto::Moto::with_bucket("replay-archive-round-trip".to_owned());
    let bucket = bucket.as_str();
    let dir = tempfile::tempdir().unwrap();
    // An envelope archive (gzip'd and not), and the same records as Parquet
    // under another prefix, uploaded as a destination would have written them.
    let expected = sample_archive(&dir.path().join("local"));
    run_ok(
        dir.path(),
        &config(
            "pq",
            "path = \"local\"\nprefix = \"events/\"",
            "type = \"parquet\"",
            "path = \"local\"\nprefix = \"pq/\"",
        ),
    );
    let uploads = objects(&dir.path().join("local"));
    assert!(uploads.keys().any(|k| k.ends_with(".parquet")));
    for key in uploads.keys() {
        let body = std::fs::read(dir.path().join("local").join(key)).unwrap();
        rt.block_on(s3.put_object().bucket(bucket).key(key).body(body.into()).send())
            .unwrap();
    }
    // No endpoint key: the service-specific variable must win over the
    // general one, which points at a closed port.
    let s3_config = |name: &str, prefix: &str, out: &str| {
        format!(
            "name = \"{name}\"\n[source]\ntype = \"archive\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nforce_path_style = true\nprefix = \"{prefix}\"\n\
             [format]\ntype = \"json_lines\"\nenvelope = true\n\
             [destination]\ntype = \"s3\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nforce_path_style = true\nprefix = \"{out}\"\ncompression = \"gzip\"\n\
             [checkpoint]\npath = \"state\"\n"
        )
    };
    for (name, prefix, out) in [
        ("from-envelope", "events/", "copy-envelope/"),
        ("from-parquet", "pq/", "copy-parquet/"),
    ] {
        let path = write_config(dir.path(), &s3_config(name, prefix, out));
        let output = spillway()
            .args(["--log-format", "json", "run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("AWS_ENDPOINT_URL_S3", &endpoint)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let copied: Vec<(String, Vec<Record>)> = support::moto::s3_objects(&rt, &s3, bucket, out)
            .into_iter()
            .map(|(key, body)| {
                let body = spillway_destinations::Compression::Gzip.decompress(&body).unwrap();
                let records = body
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| envelope::read_line(l).unwrap())
                    .collect();
                (key, records)
            })
            .collect();
        assert!(!copied.is_empty(), "{name}: nothing written");
        assert_same_archive(&copied, &expected);
    }
}

#[test]
fn a_kinesis_stream_archived_with_envelopes_replays_its_positions_with_the_endpoint_from_aws_endpoint_url_kinesis_only()
{
    use support::kinesis::{new_stream, produce};
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "envelope", 3);
    let produced = produce(
        &endpoint,
        &stream,
        &["--count", "900", "--keys", "30", "--aggregate-every", "5"],
    );
    let dir = tempfile::tempdir().unwrap();
    // No endpoint key: AWS_ENDPOINT_URL_KINESIS must win over an
    // AWS_ENDPOINT_URL that points at a closed port.
    let text = format!(
        "name = \"first\"\n[source]\ntype = \"kinesis\"\nstream = \"{stream}\"\nregion = \"us-east-1\"\npoll_interval_ms = 200\n\
         [format]\ntype = \"json_lines\"\nenvelope = true\n\
         [destination]\ntype = \"local\"\npath = \"first\"\nprefix = \"events/\"\ncompression = \"gzip\"\n[checkpoint]\npath = \"state\"\n"
    );
    let path = write_config(dir.path(), &text);
    let output = spillway()
        .args(["--log-format", "json", "run", "--once", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL_KINESIS", &endpoint)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let first: Vec<Record> = read_envelopes(&dir.path().join("first"), "events/")
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    // Every produced record, at the position Kinesis gave it, once.
    let mut positions: Vec<(String, String, u64, String)> = first
        .iter()
        .map(|r| {
            (
                r.position.source.to_string(),
                r.position.offset.sequence_number.to_string(),
                r.position.offset.subsequence_number,
                r.partition_key.as_deref().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    positions.sort();
    let mut expected: Vec<(String, String, u64, String)> = produced
        .iter()
        .map(|p| (p.shard.clone(), p.seq.clone(), p.sub, p.key.clone()))
        .collect();
    expected.sort();
    assert_eq!(positions, expected);
    run_ok(dir.path(), &envelope_copy("second"));
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &first);
}

#[test]
fn shards_reads_only_the_shards_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let all = sample_archive(&dir.path().join("first"));
    run_ok(
        dir.path(),
        &config(
            "second",
            "path = \"first\"\nprefix = \"events/\"\nshards = [\"shardId-000000000002\", \"shardId-000000000003\"]",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    let expected: Vec<Record> = all
        .into_iter()
        .filter(|r| r.position.source.as_str() != "shardId-000000000001")
        .collect();
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &expected);
}

/// The Acceptance as an operator meets it: a real `jq` processor fails
/// some records (they land in `processing-failed` with their positions),
/// the processor is fixed, and an archive source with `include_errors`
/// re-drives the archive through the fixed one: every input record is in
/// the new archive exactly once (the failed ones fixed), nothing in its
/// error output, and a second re-drive adds nothing.
#[test]
fn records_a_real_processor_failed_are_archived_once_after_it_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<String> = (0..300)
        .map(|i| match i % 7 {
            3 => format!("{{\"id\":{i},\"price\":\"n/a\"}}"),
            _ => format!("{{\"id\":{i},\"price\":{}}}", i * 10),
        })
        .collect();
    std::fs::write(dir.path().join("input.ndjson"), input.join("\n") + "\n").unwrap();
    let first = r#"name = "first"
[source]
type = "file"
path = "input.ndjson"
[[processors]]
type = "jq"
query = '.cents = ((.price + 0) * 100)'
[format]
type = "json_lines"
envelope = true
[destination]
type = "local"
path = "first"
prefix = "events/"
[checkpoint]
path = "state"
"#;
    run_ok(dir.path(), first);
    let failed = error_records(&dir.path().join("first"), "errors/processing-failed/");
    assert_eq!(
        failed.len(),
        300 / 7 + 1,
        "the broken processor fails the \"n/a\" prices"
    );
    assert!(
        failed.iter().all(|e| e["errorCode"] == "Jq.ExecutionFailed"),
        "{failed:?}"
    );

    // The fixed processor; the source reads the archive and its failures.
    let fixed = r#"name = "second"
[source]
type = "archive"
path = "first"
prefix = "events/"
include_errors = ["processing-failed"]
[[processors]]
type = "jq"
query = '.cents = (if (.price | type) == "number" then .price * 100 else null end)'
[format]
type = "json_lines"
[destination]
type = "local"
path = "second"
prefix = "copy/"
[checkpoint]
path = "state"
"#;
    for _ in 0..2 {
        run_ok(dir.path(), fixed);
        let copied = lines_under(&objects(&dir.path().join("second")), "copy/");
        let mut ids: Vec<i64> = copied
            .iter()
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        ids.sort();
        assert_eq!(ids, (0..300).collect::<Vec<i64>>(), "each record once");
        let redriven = copied
            .iter()
            .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
            .filter(|v| v["price"] == "n/a" && v["cents"].is_null())
            .count();
        assert_eq!(redriven, failed.len());
        assert!(error_records(&dir.path().join("second"), "errors/").is_empty());
    }
}

/// `filter = '<jq>'`: only the records the program keeps are read again;
/// one it cannot judge (not JSON) is an error record, not a silent drop.
#[test]
fn a_jq_filter_reads_only_what_it_keeps_and_refuses_what_it_cannot_judge() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<Record> = (0..50u64).map(|s| record(1, s, 0, hour(10))).collect();
    for (i, r) in records.iter_mut().enumerate() {
        r.data = format!("{{\"n\":{i}}}").into_bytes().into();
    }
    records[7].data = bytes::Bytes::from_static(b"not json");
    put(
        &dir.path().join("first"),
        "events/2026/11/01/10/a.jsonl",
        &envelopes(&records),
    );
    run_ok(
        dir.path(),
        &config(
            "second",
            "path = \"first\"\nprefix = \"events/\"\nfilter = '.n % 2 == 0'",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    let kept: Vec<Record> = records.iter().step_by(2).cloned().collect();
    assert_same_archive(&read_envelopes(&dir.path().join("second"), "copy/"), &kept);
    let refused = error_records(&dir.path().join("second"), "errors/processing-failed/");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["errorCode"], "Jq.InvalidJson");
    assert_eq!(
        refused[0]["rawData"],
        base64::engine::general_purpose::STANDARD.encode("not json")
    );
}

/// The records of the envelope objects under `root/prefix`: data and
/// output index, each as often as it was archived.
fn outputs_under(root: &Path, prefix: &str) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = read_envelopes(root, prefix)
        .into_iter()
        .flat_map(|(_, records)| records)
        .map(|r| (String::from_utf8(r.data.to_vec()).unwrap(), r.position.offset.output))
        .collect();
    found.sort();
    found
}

/// A processor that makes several records of one (here
/// `record_deaggregation`; CloudWatch Logs and Lambdas do the same) gives
/// them one source position and their index among its outputs. The archive
/// keeps the index (envelope lines and Parquet alike), so that reading it
/// back never takes two of them for one: every output is replayed once.
#[test]
fn several_outputs_of_one_record_are_replayed_each_once_through_envelope_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut expected = Vec::new();
    for n in 0..40 {
        for i in 0..3u32 {
            let data = format!("{{\"n\":{n},\"i\":{i}}}");
            input.push_str(&data);
            expected.push((data, i));
        }
        input.push('\n');
    }
    expected.sort();
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    run_ok(
        dir.path(),
        "name = \"split\"\n[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[[processors]]\ntype = \"record_deaggregation\"\nsub_record_type = \"json\"\n[format]\ntype = \"json_lines\"\nenvelope = true\n[destination]\ntype = \"local\"\npath = \"first\"\nprefix = \"events/\"\n[checkpoint]\npath = \"state\"\n",
    );
    assert_eq!(
        outputs_under(&dir.path().join("first"), "events/"),
        expected,
        "the archive itself"
    );

    run_ok(dir.path(), &envelope_copy("second"));
    assert_eq!(
        outputs_under(&dir.path().join("second"), "copy/"),
        expected,
        "envelope to envelope"
    );

    run_ok(
        dir.path(),
        &config(
            "third",
            "path = \"first\"\nprefix = \"events/\"",
            "type = \"parquet\"",
            "path = \"third\"\nprefix = \"pq/\"",
        ),
    );
    run_ok(
        dir.path(),
        &config(
            "fourth",
            "path = \"third\"\nprefix = \"pq/\"",
            "type = \"json_lines\"\nenvelope = true",
            "path = \"fourth\"\nprefix = \"back/\"",
        ),
    );
    assert_eq!(
        outputs_under(&dir.path().join("fourth"), "back/"),
        expected,
        "through Parquet"
    );
}

/// A prefix whose timestamp names no year (`hour=!{timestamp:HH}/`, which
/// Firehose takes too): the archive source cannot tell an object's time
/// from its key, but the key is still the template's, so every record is
/// read back rather than the objects being skipped as foreign.
#[test]
fn an_archive_whose_prefix_names_no_year_is_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..50).map(|n| format!("{{\"n\":{n}}}")).collect();
    std::fs::write(dir.path().join("in.ndjson"), lines.join("\n") + "\n").unwrap();
    run_ok(
        dir.path(),
        "name = \"hourly\"\n[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[format]\ntype = \"json_lines\"\n[destination]\ntype = \"local\"\npath = \"first\"\nprefix = \"hour=!{timestamp:HH}/\"\ncompression = \"gzip\"\n[checkpoint]\npath = \"state\"\n",
    );
    let logs = run_ok(
        dir.path(),
        &config(
            "copy",
            "path = \"first\"\nprefix = \"hour=!{timestamp:HH}/\"",
            "type = \"json_lines\"",
            "path = \"second\"\nprefix = \"copy/\"",
        ),
    );
    let mut copied: Vec<String> = lines_under(&objects(&dir.path().join("second")), "copy/")
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    copied.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(copied, expected);
    assert!(
        !logs.iter().any(|l| l.to_string().contains("did not make")),
        "an object was skipped as foreign"
    );
}
