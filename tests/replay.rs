//! End-to-end: `spillway replay` on kinesalite. A stream is archived (JSON
//! lines with `envelope`, so partition keys are kept), then replayed into a
//! second stream with `--to kinesis:STREAM`; the replay is killed with
//! `kill -9` in the middle and run again with the same `--state`: every
//! record arrives with its key, in order per key, at most one window of
//! 500 records repeated.
//!
//! Without peers: `--to -`, `--to file:PATH` and `--dry-run` on archives
//! made by `spillway run` from a file, as Parquet and as gzip'd envelope
//! lines.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use support::fault_proxy::{Fault, FaultProxy};
use support::kinesis::*;
use support::*;

fn replay(dir: &std::path::Path, target: &str, kinesis_endpoint: &str) -> std::process::Command {
    let mut command = spillway();
    command
        .args([
            "--log-format",
            "json",
            "replay",
            "--from",
            "archive",
            "--prefix",
            "events/",
        ])
        .args(["--to", &format!("kinesis:{target}")])
        .args(["--state", "st/restore.checkpoint.json"])
        // No endpoint flag: the standard variables, as the SDKs read them.
        .env("AWS_ENDPOINT_URL_KINESIS", kinesis_endpoint)
        .env("AWS_ENDPOINT_URL", kinesis_endpoint)
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

#[test]
fn kill_9_during_a_replay_into_kinesis_then_resume_loses_nothing() {
    let (endpoint, rt, client, source) = new_stream("SPILLWAY_TEST_KINESALITE", "replay-src", 2);
    let produced = produce(&endpoint, &source, &["--count", "4000", "--keys", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let archive = kinesis_config(&endpoint, &source, "").replace(
        "[checkpoint]",
        "[format]\ntype = \"json_lines\"\nenvelope = true\n[checkpoint]",
    );
    let output = run_once(dir.path(), &write_config(dir.path(), &archive));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let target = unique_stream("replayed");
    rt.block_on(create_stream(&client, &target, 3));
    // Slow PutRecords, so that the kill lands in the middle of a window.
    let slow = FaultProxy::start(
        &endpoint,
        Arc::new(|target: &str, _| {
            (target == "Kinesis_20131202.PutRecords").then(|| Fault::delay(Duration::from_millis(150)))
        }),
    );
    let mut child = replay(dir.path(), &target, &slow.url)
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
    let before = rt.block_on(read_back(&client, &target)).len();
    assert!(before < produced.len(), "the kill came after everything was delivered");

    let output = replay(dir.path(), &target, &endpoint).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found = rt.block_on(read_back(&client, &target));
    let repeats = assert_delivered(&produced, &found, 500);
    println!("{before} records before the kill, {repeats} repeated after it");
    assert!(
        objects(&dir.path().join("replay-errors")).is_empty(),
        "error output without a cause"
    );
}

/// Records of every shape the archives must give back byte for byte:
/// spaces, escapes, exponents, nesting, big enough for several objects.
fn awkward_records(count: usize) -> Vec<u8> {
    let mut input = Vec::new();
    for i in 0..count {
        let filler: String = (0..(200 + (i * 37) % 900))
            .map(|j| char::from(b'a' + ((i * 7 + j * 13) % 26) as u8))
            .collect();
        let line = match i % 4 {
            0 => format!("{{\"id\":{i},\"text\":\"{filler}\"}}"),
            1 => format!("{{ \"id\" : {i}, \"s\":\"\\u00e9\\\"x\", \"text\": \"{filler}\" }}"),
            2 => format!("{{\"id\":{i},\"n\":1.50e3,\"a\":[1,2],\"o\":{{\"b\":null}},\"text\":\"{filler}\"}}"),
            _ => format!("{{\"text\":\"{filler}\",\"id\":{i},\"t\":true,\"u\":\"\u{1F600}\"}}"),
        };
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input
}

/// Archives `input` (one NDJSON file) under `dir/archive`, prefix
/// `NAME/yyyy/MM/dd/HH/`, in the given format and compression.
fn archive_file(dir: &std::path::Path, name: &str, format: &str, compression: &str) {
    let text = format!(
        r#"name = "{name}"
[source]
type = "file"
path = "input.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[format]
{format}
[destination]
type = "local"
path = "archive"
prefix = "{name}/!{{timestamp:yyyy/MM/dd/HH}}/"
compression = "{compression}"
[checkpoint]
path = "state-{name}"
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let output = run(dir, &path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn objects_of(dir: &std::path::Path, name: &str) -> usize {
    objects(&dir.join("archive"))
        .keys()
        .filter(|k| k.starts_with(&format!("{name}/")))
        .count()
}

/// The two archives of `awkward_records`: Parquet and gzip'd envelope
/// lines.
fn two_archives(count: usize) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let input = awkward_records(count);
    std::fs::write(dir.path().join("input.ndjson"), &input).unwrap();
    archive_file(dir.path(), "parquet", "type = \"parquet\"", "none");
    archive_file(dir.path(), "jsonl", "type = \"json_lines\"\nenvelope = true", "gzip");
    (dir, input)
}

fn replay_print(dir: &std::path::Path, name: &str, args: &[&str]) -> std::process::Output {
    spillway()
        .args(["--log-format", "json", "replay", "--from", "archive"])
        .args(["--prefix", &format!("{name}/!{{timestamp:yyyy/MM/dd/HH}}/")])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn replay_to_stdout_prints_exactly_the_archived_records_bytes_in_order() {
    let (dir, input) = two_archives(3000);
    for name in ["parquet", "jsonl"] {
        assert!(objects_of(dir.path(), name) >= 2, "{name}: one object, want several");
        let output = replay_print(dir.path(), name, &["--to", "-"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        assert!(
            output.stdout == input,
            "{name}: stdout is not the input ({} bytes, want {}); first difference at byte {:?}",
            output.stdout.len(),
            input.len(),
            output.stdout.iter().zip(&input).position(|(a, b)| a != b)
        );
        // The logs went to stderr, as JSON lines, with the final tally.
        let done = logs(&output.stderr)
            .into_iter()
            .find(|l| l["message"] == "replay sent")
            .unwrap_or_else(|| panic!("{name}: no final tally in {stderr}"));
        assert_eq!(done["records"], 3000, "{done}");
        assert!(
            !dir.path().join("replay-errors").exists(),
            "{name}: error output without a cause"
        );
    }
}

#[test]
fn replay_to_a_file_writes_the_same_bytes_and_refuses_an_existing_file() {
    let (dir, input) = two_archives(1500);
    for name in ["parquet", "jsonl"] {
        let file = format!("{name}.out.ndjson");
        let output = replay_print(dir.path(), name, &["--to", &format!("file:{file}")]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(
            output.stdout.is_empty(),
            "stdout: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        let written = std::fs::read(dir.path().join(&file)).unwrap();
        assert!(written == input, "{name}: the file is not the input");

        // Again: the file is there, so the replay refuses, naming it, and
        // leaves it as it was (and no staged file beside it).
        let output = replay_print(dir.path(), name, &["--to", &format!("file:{file}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("error: {file} exists")), "{stderr}");
        assert!(std::fs::read(dir.path().join(&file)).unwrap() == input);
    }
    let staged: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // --state means nothing to a file: refused before anything is read.
    let output = replay_print(dir.path(), "jsonl", &["--to", "file:x", "--state", "s.checkpoint.json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--state \"s.checkpoint.json\": only kinesis: and http: replays keep state"),
        "{stderr}"
    );
}

/// The `name: value` lines of a dry run.
fn dry_run_report(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("not name: value: {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn a_dry_run_counts_what_a_replay_then_sends_and_sends_nothing() {
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (dir, input) = two_archives(2000);
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    for name in ["parquet", "jsonl"] {
        let objects_of = objects_of(dir.path(), name);
        // A Kinesis target that does not answer: a dry run never calls it,
        // and keeps no state even when --state is given.
        let output = spillway()
            .args(["--log-format", "json", "replay", "--from", "archive", "--dry-run"])
            .args(["--prefix", &format!("{name}/!{{timestamp:yyyy/MM/dd/HH}}/")])
            .args(["--to", "kinesis:nowhere", "--state", "st/dry.checkpoint.json"])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        let report = dry_run_report(&output.stdout);
        assert!(!dir.path().join("st").exists(), "a dry run wrote state");
        assert!(
            !dir.path().join("replay-errors").exists(),
            "a dry run wrote error output"
        );

        // What the replay then sends.
        let sent = replay_print(dir.path(), name, &["--to", "-"]);
        assert!(sent.status.success());
        let lines = sent.stdout.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(report["objects"], objects_of.to_string(), "{report:?}");
        assert_eq!(report["records"], lines.to_string(), "{report:?}");
        assert_eq!(report["records"], "2000");
        assert_eq!(report["bytes"], (sent.stdout.len() - lines).to_string(), "{report:?}");
        assert_eq!(input.len(), sent.stdout.len());
        assert_eq!(report["refused"], "0");
        for key in ["first_arrival", "last_arrival"] {
            let time = chrono::DateTime::parse_from_rfc3339(&report[key]).unwrap();
            assert!(
                before <= time && time <= after,
                "{key} {time} not in [{before}, {after}]"
            );
        }

        // A slice after the archive: no object is read at all.
        let later = (after + chrono::Duration::hours(2)).to_rfc3339();
        let output = replay_print(dir.path(), name, &["--dry-run", "--start", &later]);
        assert!(output.status.success());
        let report = dry_run_report(&output.stdout);
        assert_eq!(
            (report["objects"].as_str(), report["records"].as_str()),
            ("0", "0"),
            "{report:?}"
        );
        assert_eq!(report["first_arrival"], "-");
    }
}

/// A bad object in the archive does not end a printing replay silently:
/// its key is logged and written as an error record under `--errors`, and
/// the rest is printed.
#[test]
fn a_bad_object_is_an_error_record_naming_its_key_and_the_rest_is_printed() {
    let (dir, input) = two_archives(500);
    let hour_dir = objects(&dir.path().join("archive"))
        .keys()
        .find(|k| k.starts_with("jsonl/"))
        .map(|k| k.rsplit_once('/').unwrap().0.to_owned())
        .unwrap();
    let bad = format!("{hour_dir}/zz-truncated.jsonl.gz");
    let gzip = spillway_destinations::Compression::Gzip.compress(&input, "").unwrap();
    std::fs::write(dir.path().join("archive").join(&bad), &gzip[..gzip.len() / 2]).unwrap();
    let output = replay_print(dir.path(), "jsonl", &["--to", "-", "--errors", "errs"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout == input, "the good objects' records, exactly");
    assert!(stderr.contains(&bad), "the key is not in the logs: {stderr}");
    let errors = objects(&dir.path().join("errs"));
    let lines = lines_under(&errors, "archive-read-failed/");
    assert_eq!(lines.len(), 1, "{errors:?}");
    let record: serde_json::Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(record["errorCode"], "Archive.ReadFailed");
    assert!(record["errorMessage"].as_str().unwrap().contains(&bad), "{record}");
}

/// Records kept byte for byte by envelope lines, printed as NDJSON: a
/// pretty-printed JSON record is one line (its line breaks made spaces,
/// the same value), and a record that holds a line break and is not JSON
/// goes to the error output (`Record.MultiLine`) instead of being printed
/// as two lines that would be read back as two records.
#[test]
fn records_with_line_breaks_are_printed_as_one_line_or_go_to_the_errors() {
    use spillway_transforms::{Offset, Position, Record, SequenceNumber, SourceId};
    let dir = tempfile::tempdir().unwrap();
    let record = |seq: u64, data: &str| Record {
        data: bytes::Bytes::from(data.to_owned()),
        position: Position {
            source: SourceId::new("shardId-000000000001"),
            offset: Offset::new(SequenceNumber::from_u64(seq), 0),
        },
        partition_key: Some("k".into()),
        arrival: chrono::DateTime::from_timestamp_millis(1_793_491_200_000).unwrap(),
    };
    let records = [
        record(1, "{\"a\":1}"),
        record(2, "{\r\n  \"b\": [\n    2\n  ]\n}"),
        record(3, "line one\nline two"),
        record(4, "{\"c\":3}"),
    ];
    let mut body = Vec::new();
    for r in &records {
        spillway_transforms::format::envelope::write_line(r, &mut body).unwrap();
    }
    let key = "archive/env/2026/11/01/10/s-shardId-000000000001-1-0.jsonl";
    std::fs::create_dir_all(dir.path().join(key).parent().unwrap()).unwrap();
    std::fs::write(dir.path().join(key), body).unwrap();

    let output = replay_print(dir.path(), "env", &["--to", "-", "--errors", "errs"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, "{\"a\":1}\n{    \"b\": [     2   ] }\n{\"c\":3}\n");
    let errors = lines_under(&objects(&dir.path().join("errs")), "format-conversion-failed/");
    assert_eq!(errors.len(), 1);
    let error: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(error["errorCode"], "Record.MultiLine");
    assert_eq!(error["sequenceNumber"], "3");
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            error["rawData"].as_str().unwrap()
        )
        .unwrap(),
        b"line one\nline two"
    );
}
