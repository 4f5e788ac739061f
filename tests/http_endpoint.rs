//! End-to-end: the real binary delivering a file to a Firehose-style HTTP
//! endpoint (a receiver inside the test that checks every header and body
//! rule), with its retries and its backup.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use support::http_receiver::{Answer, Expect, Receiver};
use support::*;

const ACCESS_KEY: &str = "s3cr3t-access-key-for-the-receiver";

/// Writes `count` JSON records (and the invalid lines at `broken`) to
/// `events.ndjson`; returns the valid ones.
fn write_input(dir: &Path, count: usize, broken: &[usize]) -> Vec<Vec<u8>> {
    let mut input = Vec::new();
    let mut valid = Vec::new();
    for id in 0..count {
        if broken.contains(&id) {
            input.extend_from_slice(format!("{{\"id\":{id},broken\n").as_bytes());
            continue;
        }
        let line = format!(r#"{{"id":{id},"pad":"{}"}}"#, "x".repeat(id % 50));
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        valid.push(line.into_bytes());
    }
    std::fs::write(dir.join("events.ndjson"), input).unwrap();
    valid
}

fn config(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 64
interval_seconds = 60
[destination]
type = "http"
url = "{url}"
access_key = "${{RECEIVER_KEY}}"
content_encoding = "gzip"
request_timeout_seconds = 2
{extra}
[destination.common_attributes]
team = "data"
env = "test"
[destination.backup]
type = "local"
path = "backup"
[checkpoint]
path = "state"
"#
        ),
    )
}

fn expect() -> Expect {
    Expect {
        path: "/firehose".into(),
        access_key: Some(ACCESS_KEY.into()),
        gzip: true,
        common_attributes: BTreeMap::from([("team".into(), "data".into()), ("env".into(), "test".into())]),
    }
}

fn run_with_key(dir: &Path, config: &Path) -> std::process::Output {
    spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .env("RECEIVER_KEY", ACCESS_KEY)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The error records under `prefix` in the backup: (errorCode, attempts,
/// rawData decoded).
fn backed_up_errors(dir: &Path, prefix: &str) -> Vec<(String, u64, Vec<u8>)> {
    lines_under(&objects(&dir.join("backup")), prefix)
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            (
                record["errorCode"].as_str().unwrap().to_owned(),
                record["attemptsMade"].as_u64().unwrap(),
                base64::engine::general_purpose::STANDARD
                    .decode(record["rawData"].as_str().unwrap())
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn three_failures_then_success_is_one_delivery_per_request_id() {
    let dir = tempfile::tempdir().unwrap();
    // 25,000 records: three requests (at most 10,000 records each).
    let valid = write_input(dir.path(), 25_002, &[7, 20_000]);
    let receiver = Receiver::start(
        expect(),
        &[Answer::Status(500), Answer::Slow(Duration::from_secs(4)), Answer::Reset],
        Answer::Ok,
    );
    let config = config(dir.path(), &receiver.url, "retry_duration_seconds = 300");
    let output = run_with_key(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");

    assert_eq!(receiver.violations(), Vec::<String>::new());
    assert_same_records(&receiver.delivered(), &valid, "every record exactly once, in order");
    let received = receiver.received();
    let answers: Vec<Answer> = received.iter().map(|r| r.answer).collect();
    assert_eq!(
        answers[..4],
        [
            Answer::Status(500),
            Answer::Slow(Duration::from_secs(4)),
            Answer::Reset,
            Answer::Ok
        ]
    );
    assert_eq!(received.len(), 6, "three requests, the first attempted four times");
    // The four attempts of the first request carry one request id; each
    // logical request has its own.
    let first_id = &received[0].request_id;
    assert!(received[..4].iter().all(|r| &r.request_id == first_id));
    assert!(received[..4].iter().all(|r| r.records == received[0].records));
    let ids: BTreeSet<&str> = received.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(received[3].records.len(), 10_000);

    // The invalid records went to the backup's error output; nothing else
    // is in the backup.
    let errors = backed_up_errors(dir.path(), "errors/format-conversion-failed/");
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|(code, _, _)| code == "Record.MalformedJson"));
    assert_eq!(objects(&dir.path().join("backup")).len(), 1);

    let logs = logs(&output.stderr);
    let retries: Vec<&str> = logs
        .iter()
        .filter(|l| l["message"] == "http request failed; retrying")
        .map(|l| l["error_code"].as_str().unwrap())
        .collect();
    assert_eq!(
        retries,
        [
            "HttpEndpoint.DestinationException",
            "HttpEndpoint.RequestTimeout",
            "HttpEndpoint.ConnectionFailed"
        ]
    );
    assert!(!stderr.contains(ACCESS_KEY), "the access key reached the logs");
}

#[test]
fn failing_past_the_retry_duration_backs_the_records_up() {
    let dir = tempfile::tempdir().unwrap();
    let valid = write_input(dir.path(), 3_000, &[]);
    let receiver = Receiver::start(expect(), &[], Answer::Status(503));
    let config = config(dir.path(), &receiver.url, "retry_duration_seconds = 4");
    let output = run_with_key(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(receiver.violations(), Vec::<String>::new());
    let received = receiver.received();
    assert!(
        received.len() >= 3,
        "retried until the retry duration ran out: {}",
        received.len()
    );
    assert!(received.iter().all(|r| r.request_id == received[0].request_id));

    let backed_up = backed_up_errors(dir.path(), "errors/http-endpoint-failed/");
    let raw: Vec<Vec<u8>> = backed_up.iter().map(|(_, _, raw)| raw.clone()).collect();
    assert_same_records(&raw, &valid, "every record in the backup, once, in order");
    assert!(backed_up
        .iter()
        .all(|(code, attempts, _)| code == "HttpEndpoint.DestinationException" && *attempts == received.len() as u64));
}

/// A receiver answering 200 with a body that never ends: the attempt
/// fails once the body passes 1 MiB (not read into memory until the
/// request times out), is retried, and the records are delivered once.
#[test]
fn a_response_body_without_end_fails_the_attempt_at_1_mib_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let valid = write_input(dir.path(), 500, &[]);
    let receiver = Receiver::start(expect(), &[Answer::Endless], Answer::Ok);
    let config = config(dir.path(), &receiver.url, "retry_duration_seconds = 300");
    let output = run_with_key(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert_same_records(&receiver.delivered(), &valid, "every record exactly once");
    let retries: Vec<(String, String)> = logs(&output.stderr)
        .iter()
        .filter(|l| l["message"] == "http request failed; retrying")
        .map(|l| (l["error_code"].as_str().unwrap().to_owned(), l.to_string()))
        .collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(
        retries[0].0, "HttpEndpoint.InvalidResponseFromDestination",
        "{retries:?}"
    );
    assert!(retries[0].1.contains("body over 1048576 bytes"), "{retries:?}");
}

#[test]
fn a_413_is_not_retried_and_its_records_are_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let valid = write_input(dir.path(), 1_000, &[]);
    let receiver = Receiver::start(expect(), &[], Answer::Status(413));
    let config = config(dir.path(), &receiver.url, "retry_duration_seconds = 7200");
    let output = run_with_key(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(receiver.received().len(), 1, "a 413 is permanent");
    let backed_up = backed_up_errors(dir.path(), "errors/http-endpoint-failed/");
    let raw: Vec<Vec<u8>> = backed_up.iter().map(|(_, _, raw)| raw.clone()).collect();
    assert_same_records(&raw, &valid, "the backup");
    assert!(backed_up
        .iter()
        .all(|(code, attempts, _)| code == "HttpEndpoint.PayloadTooLarge" && *attempts == 1));
}

#[test]
fn backup_mode_all_archives_every_record_as_well() {
    let dir = tempfile::tempdir().unwrap();
    let valid = write_input(dir.path(), 12_000, &[]);
    // A 200 for another request id is not success.
    let receiver = Receiver::start(expect(), &[Answer::WrongRequestId], Answer::Ok);
    let config = config(dir.path(), &receiver.url, "backup_mode = \"all\"");
    let output = run_with_key(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(receiver.violations(), Vec::<String>::new());
    assert_eq!(receiver.received()[0].answer, Answer::WrongRequestId);
    assert_same_records(&receiver.delivered(), &valid, "the endpoint");
    let backup = objects(&dir.path().join("backup"));
    let archived = lines_under(&backup, "20");
    assert_same_records(&archived, &valid, "the backup holds every record as data");
    assert!(backup.keys().all(|k| !k.starts_with("errors/")), "{:?}", backup.keys());
}
