//! The `lambda` and `command` processors against real peers: the Invoke API
//! server of `tests/peers/lambda_server.py` running Firehose-style handler
//! files, and the same files behind `contrib/firehose_handler_runner.py`.
//!
//! Each test asserts what a user sees of a record: its bytes and keys when
//! it is kept, nothing when dropped, and, when it fails, the error code,
//! attempts and function an error record will carry, after the retries
//! happened (counted at the server).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use spillway::processor::command::{CommandProcessor, CommandSettings};
use spillway::processor::lambda::{LambdaProcessor, LambdaSettings};
use spillway::processor::{Input, Outcome, PartitionKeys, ProcessError, Processor};
use spillway_settings::Problems;
use spillway_transforms::{Offset, Position, Record, SequenceNumber, SourceId};
use support::lambda_server::{handler, python, runner, LambdaServer};
use tokio_util::sync::CancellationToken;

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";

fn environment() {
    // Credentials the SDK signs with (the server ignores them), no
    // instance metadata lookups, and short backoff between retries.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("SPILLWAY_TEST_RETRY_MS", "20");
}

fn record(data: &str, sequence: u64) -> Record {
    Record {
        data: Bytes::from(data.to_owned()),
        position: Position {
            source: SourceId::new("shardId-000000000003"),
            offset: Offset::new(SequenceNumber::from_u64(sequence), 0),
        },
        partition_key: Some(Arc::from(format!("pk-{sequence}"))),
        arrival: Utc.timestamp_millis_opt(1_764_900_000_000 + sequence as i64).unwrap(),
    }
}

async fn lambda(server: &LambdaServer, function: &str, extra: &str) -> LambdaProcessor {
    environment();
    let toml = format!(
        "function = \"{function}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{extra}",
        server.endpoint()
    );
    let mut problems = Problems::default();
    let config = toml::from_str::<LambdaSettings>(&toml)
        .unwrap()
        .check("processors[0]", &mut problems)
        .unwrap();
    assert!(problems.is_empty());
    LambdaProcessor::new(&config, "orders-archive", Some(STREAM_ARN.to_owned()))
        .await
        .unwrap()
}

fn command(handler_name: &str, extra: &str) -> CommandProcessor {
    environment();
    let toml = format!(
        "command = [{:?}, {:?}, {:?}]\n{extra}",
        python(),
        runner().display().to_string(),
        handler(handler_name).display().to_string()
    );
    let mut problems = Problems::default();
    let config = toml::from_str::<CommandSettings>(&toml)
        .unwrap()
        .check("processors[0]", &mut problems)
        .unwrap();
    assert!(problems.is_empty(), "{:?}", problems.into_vec());
    CommandProcessor::new(&config, "orders-archive", "us-east-1", Some(STREAM_ARN.to_owned()))
}

async fn process(processor: &dyn Processor, records: &[Record]) -> Vec<Outcome> {
    let keys = PartitionKeys::default();
    let inputs: Vec<Input<'_>> = records
        .iter()
        .map(|r| Input {
            data: &r.data,
            origin: r,
            keys: &keys,
        })
        .collect();
    let outcomes = processor.process(&inputs, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcomes.len(), records.len(), "one outcome per input");
    outcomes
}

fn orders(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| record(&format!(r#"{{"n":{i},"customer":"c{}"}}"#, i % 3), i))
        .collect()
}

/// (code, attempts, lambda_arn) of a failed outcome.
fn failed(outcome: &Outcome) -> (String, u32, Option<String>) {
    match outcome {
        Outcome::Failed(f) => (f.code.clone(), f.attempts, f.lambda_arn.clone()),
        Outcome::Ok(_) => panic!("expected a failure, got Ok"),
        Outcome::Dropped => panic!("expected a failure, got Dropped"),
    }
}

fn kept(outcome: &Outcome) -> (String, Option<PartitionKeys>) {
    match outcome {
        Outcome::Ok(outputs) => {
            assert_eq!(outputs.len(), 1);
            (
                String::from_utf8(outputs[0].data.to_vec()).unwrap(),
                outputs[0].keys.clone(),
            )
        }
        _ => panic!("expected Ok"),
    }
}

// ------------------------------------------------------------ the contract

#[tokio::test]
async fn the_handler_gets_firehoses_event_and_its_answers_come_back_in_order() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "echo_event", "").await;
    let records = orders(3);
    let outcomes = process(&processor, &records).await;
    let mut invocations = std::collections::BTreeSet::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let (data, keys) = kept(outcome);
        assert_eq!(keys, None, "no partitionKeys: the input's keys");
        let echoed: Value = serde_json::from_str(&data).unwrap();
        invocations.insert(echoed["invocationId"].as_str().unwrap().to_owned());
        assert_eq!(
            echoed["deliveryStreamArn"],
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/orders-archive"
        );
        assert_eq!(echoed["sourceKinesisStreamArn"], STREAM_ARN);
        assert_eq!(echoed["region"], "us-east-1");
        assert_eq!(echoed["data"], std::str::from_utf8(&records[i].data).unwrap());
        assert_eq!(echoed["approximateArrivalTimestamp"], 1_764_900_000_000_i64 + i as i64);
        assert_eq!(
            echoed["kinesisRecordMetadata"],
            json!({
                "shardId": "shardId-000000000003",
                "partitionKey": format!("pk-{i}"),
                "approximateArrivalTimestamp": 1_764_900_000_000_i64 + i as i64,
                "sequenceNumber": i.to_string(),
                "subsequenceNumber": 0,
            })
        );
    }
    assert_eq!(invocations.len(), 1, "one batch, one invocation");
    assert_eq!(server.calls("echo_event").len(), 1);
}

#[tokio::test]
async fn an_unchanged_firehose_blueprint_passes_records_through() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "process_record", "").await;
    let records = orders(5);
    let outcomes = process(&processor, &records).await;
    for (outcome, record) in outcomes.iter().zip(&records) {
        assert_eq!(kept(outcome).0.as_bytes(), record.data.as_ref());
    }
}

#[tokio::test]
async fn records_are_kept_dropped_or_failed_alone_and_carry_the_functions_partition_keys() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "enrich", "").await;
    let mut records = orders(4);
    records.push(record(r#"{"n":4,"bad":true}"#, 4));
    let outcomes = process(&processor, &records).await;
    let (data, keys) = kept(&outcomes[0]);
    assert_eq!(data, "{\"n\":0,\"customer\":\"c0\",\"enriched\":true}\n");
    assert_eq!(
        *keys.unwrap().from_lambda,
        [("customer".to_owned(), "c0".to_owned())].into()
    );
    assert!(matches!(outcomes[1], Outcome::Dropped));
    assert_eq!(kept(&outcomes[2]).1.unwrap().from_lambda["customer"], "c2");
    assert!(matches!(outcomes[3], Outcome::Dropped));
    assert_eq!(
        failed(&outcomes[4]),
        ("Lambda.ProcessingFailed".into(), 1, Some("enrich".into()))
    );
    assert_eq!(
        server.calls("enrich").len(),
        1,
        "a ProcessingFailed record is not retried"
    );
}

#[tokio::test]
async fn batches_hold_at_most_buffer_size_mb_and_every_record_is_answered_once() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "process_record", "buffer_size_mb = 0.2").await;
    let big = "x".repeat(60 * 1024);
    let records: Vec<Record> = (0..10).map(|i| record(&format!("{i}{big}"), i)).collect();
    let outcomes = process(&processor, &records).await;
    for (outcome, record) in outcomes.iter().zip(&records) {
        assert_eq!(kept(outcome).0.as_bytes(), record.data.as_ref());
    }
    let calls = server.calls("process_record");
    assert!(
        calls.iter().all(|ids| ids.len() <= 3),
        "0.2 MiB holds 3 records of 60 KiB: {calls:?}"
    );
    let sent: Vec<String> = calls.concat();
    assert_eq!(sent, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

// ------------------------------------------------------ failures and retries

#[tokio::test]
async fn a_function_error_is_retried_then_every_record_of_the_batch_fails() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "raise_error", "number_of_retries = 2").await;
    let outcomes = process(&processor, &orders(3)).await;
    for outcome in &outcomes {
        assert_eq!(
            failed(outcome),
            ("Lambda.FunctionError".into(), 3, Some("raise_error".into()))
        );
    }
    match &outcomes[0] {
        Outcome::Failed(f) => assert!(f.message.contains("cannot process this batch"), "{}", f.message),
        _ => unreachable!(),
    }
    assert_eq!(server.calls("raise_error").len(), 3, "one call and two retries");
}

#[tokio::test]
async fn throttling_is_retried_and_a_batch_that_then_succeeds_is_kept() {
    let server = LambdaServer::start();
    server.control("process_record", json!({"throttle": 2, "function_error": 0}));
    let processor = lambda(&server, "process_record", "number_of_retries = 3").await;
    let records = orders(4);
    let outcomes = process(&processor, &records).await;
    for (outcome, record) in outcomes.iter().zip(&records) {
        assert_eq!(kept(outcome).0.as_bytes(), record.data.as_ref());
    }
    assert_eq!(server.calls("process_record").len(), 3);
}

#[tokio::test]
async fn throttling_past_the_retries_fails_with_invoke_limit_exceeded() {
    let server = LambdaServer::start();
    server.control("process_record", json!({"throttle": 100}));
    let processor = lambda(&server, "process_record", "number_of_retries = 1").await;
    let outcomes = process(&processor, &orders(2)).await;
    for outcome in &outcomes {
        assert_eq!(
            failed(outcome),
            ("Lambda.InvokeLimitExceeded".into(), 2, Some("process_record".into()))
        );
    }
    assert_eq!(server.calls("process_record").len(), 2);
}

#[tokio::test]
async fn responses_that_break_the_contract_are_retried_then_fail_with_firehoses_codes() {
    let server = LambdaServer::start();
    for (function, code) in [
        ("missing_id", "Lambda.MissingRecordId"),
        ("duplicated_id", "Lambda.DuplicatedRecordId"),
        ("bad_base64", "Lambda.JsonProcessingException"),
        ("not_contract", "Lambda.JsonProcessingException"),
        ("oversize", "Lambda.ResponseTooLarge"),
    ] {
        let processor = lambda(&server, function, "number_of_retries = 1").await;
        let outcomes = process(&processor, &orders(2)).await;
        for outcome in &outcomes {
            assert_eq!(failed(outcome), (code.into(), 2, Some(function.into())), "{function}");
        }
        assert_eq!(server.calls(function).len(), 2, "{function}: retried once");
    }
}

#[tokio::test]
async fn a_missing_function_fails_its_records_after_the_retries() {
    let server = LambdaServer::start();
    let processor = lambda(&server, "no_such_function", "number_of_retries = 0").await;
    let outcomes = process(&processor, &orders(1)).await;
    assert_eq!(failed(&outcomes[0]).0, "Lambda.ResourceNotFound");
}

#[tokio::test]
async fn shutdown_ends_a_call_waiting_for_a_slow_function() {
    let server = LambdaServer::start();
    server.control("process_record", json!({"delay_seconds": 30}));
    let processor = lambda(&server, "process_record", "").await;
    let records = orders(2);
    let keys = PartitionKeys::default();
    let inputs: Vec<Input<'_>> = records
        .iter()
        .map(|r| Input {
            data: &r.data,
            origin: r,
            keys: &keys,
        })
        .collect();
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let result = processor.process(&inputs, &stop).await;
    assert!(matches!(result, Err(ProcessError::Stopped(_))));
    assert!(started.elapsed() < Duration::from_secs(5));
}

// -------------------------------------------------------------- command

#[tokio::test]
async fn the_command_runs_the_same_handler_files_with_the_same_contract() {
    let processor = command("enrich", "");
    let mut records = orders(4);
    records.push(record(r#"{"n":4,"bad":true}"#, 4));
    // Twice: the process is long-lived, the second call reuses it.
    for _ in 0..2 {
        let outcomes = process(&processor, &records).await;
        let (data, keys) = kept(&outcomes[0]);
        assert_eq!(data, "{\"n\":0,\"customer\":\"c0\",\"enriched\":true}\n");
        assert_eq!(keys.unwrap().from_lambda["customer"], "c0");
        assert!(matches!(outcomes[1], Outcome::Dropped));
        assert!(matches!(outcomes[3], Outcome::Dropped));
        assert_eq!(failed(&outcomes[4]), ("Lambda.ProcessingFailed".into(), 1, None));
    }
}

#[tokio::test]
async fn a_blueprint_that_prints_does_not_break_the_line_protocol() {
    let processor = command("process_record", "");
    let records = orders(3);
    let outcomes = process(&processor, &records).await;
    for (outcome, record) in outcomes.iter().zip(&records) {
        assert_eq!(kept(outcome).0.as_bytes(), record.data.as_ref());
    }
}

#[tokio::test]
async fn the_command_event_is_firehoses_event() {
    let processor = command("echo_event", "");
    let records = orders(2);
    let outcomes = process(&processor, &records).await;
    let echoed: Value = serde_json::from_str(&kept(&outcomes[1]).0).unwrap();
    assert_eq!(echoed["recordId"], "1");
    assert_eq!(echoed["sourceKinesisStreamArn"], STREAM_ARN);
    assert_eq!(echoed["kinesisRecordMetadata"]["partitionKey"], "pk-1");
}

#[tokio::test]
async fn command_failures_are_retried_then_fail_with_the_same_codes() {
    for (handler_name, code) in [
        ("raise_error", "Lambda.FunctionError"),
        ("missing_id", "Lambda.MissingRecordId"),
        ("duplicated_id", "Lambda.DuplicatedRecordId"),
        ("not_contract", "Lambda.JsonProcessingException"),
        ("oversize", "Lambda.ResponseTooLarge"),
    ] {
        let processor = command(handler_name, "number_of_retries = 2");
        let outcomes = process(&processor, &orders(2)).await;
        for outcome in &outcomes {
            assert_eq!(failed(outcome), (code.into(), 3, None), "{handler_name}");
        }
    }
}

#[tokio::test]
async fn a_command_that_exits_is_restarted_and_counts_as_a_failed_attempt() {
    // The handler exits the process on its first call only (a marker file
    // remembers): the retry runs in a new process and succeeds.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("crashed");
    let handler_file = dir.path().join("crash_once.py");
    std::fs::write(
        &handler_file,
        format!(
            "import os\nimport sys\nsys.path.insert(0, {:?})\nimport process_record_impl\n\ndef lambda_handler(event, context):\n    if not os.path.exists({:?}):\n        open({:?}, 'w').close()\n        os._exit(3)\n    return {{'records': process_record_impl.ok(event['records'])}}\n",
            support::lambda_server::peers_dir().join("handlers").display().to_string(),
            marker.display().to_string(),
            marker.display().to_string()
        ),
    )
    .unwrap();
    environment();
    let toml = format!(
        "command = [{:?}, {:?}, {:?}]\nnumber_of_retries = 1",
        python(),
        runner().display().to_string(),
        handler_file.display().to_string()
    );
    let mut problems = Problems::default();
    let config = toml::from_str::<CommandSettings>(&toml)
        .unwrap()
        .check("p", &mut problems)
        .unwrap();
    let processor = CommandProcessor::new(&config, "orders-archive", "us-east-1", None);
    let records = orders(3);
    let outcomes = process(&processor, &records).await;
    for (outcome, record) in outcomes.iter().zip(&records) {
        assert_eq!(kept(outcome).0.as_bytes(), record.data.as_ref());
    }
    assert!(marker.exists(), "the first call crashed the process");
}

#[tokio::test]
async fn a_command_that_never_answers_times_out_and_its_records_fail() {
    environment();
    let toml = "command = [\"sh\", \"-c\", \"cat > /dev/null\"]\nnumber_of_retries = 1\ntimeout_seconds = 1";
    let mut problems = Problems::default();
    let config = toml::from_str::<CommandSettings>(toml)
        .unwrap()
        .check("p", &mut problems)
        .unwrap();
    let processor = CommandProcessor::new(&config, "orders-archive", "us-east-1", None);
    let started = Instant::now();
    let outcomes = process(&processor, &orders(2)).await;
    for outcome in &outcomes {
        assert_eq!(failed(outcome), ("Lambda.FunctionTimedOut".into(), 2, None));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ------------------------------------------------ the real binary, end to end

/// `n`: even records are kept by `enrich` unless jq skips them (n % 10 ==
/// 4) or they are "bad" (n % 14 == 0: ProcessingFailed); odd ones are
/// dropped by the function.
fn input_records(count: u64) -> Vec<String> {
    (0..count)
        .map(|n| {
            let bad = if n % 14 == 0 { ",\"bad\":true" } else { "" };
            format!(
                r#"{{"n":{n},"customer":"c{}","day":"2026-12-0{}","skip":{}{bad}}}"#,
                n % 3,
                n % 4 + 1,
                n % 10 == 4
            )
        })
        .collect()
}

fn kept_ids(count: u64) -> Vec<u64> {
    (0..count)
        .filter(|n| n % 2 == 0 && n % 10 != 4 && n % 14 != 0)
        .collect()
}

fn failed_ids(count: u64) -> Vec<u64> {
    (0..count).filter(|n| n % 14 == 0 && n % 10 != 4).collect()
}

/// A pipeline: jq, then `processor` (a `lambda` or `command` table's
/// keys), then metadata_extraction, into a prefix partitioned by a key of
/// each.
fn pipeline_config(processor: &str) -> String {
    format!(
        r#"name = "orders"
[source]
type = "file"
path = "input.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[[processors]]
type = "jq"
query = 'select(.skip | not)'
[[processors]]
{processor}
[[processors]]
type = "metadata_extraction"
query = '{{day: .day}}'
[dynamic_partitioning]
enabled = true
[destination]
type = "local"
path = "archive"
prefix = "customer=!{{partitionKeyFromLambda:customer}}/day=!{{partitionKeyFromQuery:day}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
[checkpoint]
path = "state"
"#
    )
}

fn lambda_table(server: &LambdaServer, function: &str, retries: u32) -> String {
    format!(
        "type = \"lambda\"\nfunction = \"{function}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nnumber_of_retries = {retries}",
        server.endpoint()
    )
}

fn command_table(handler_name: &str, retries: u32) -> String {
    format!(
        "type = \"command\"\ncommand = [{:?}, {:?}, {:?}]\nnumber_of_retries = {retries}",
        python(),
        runner().display().to_string(),
        handler(handler_name).display().to_string()
    )
}

fn spillway_run(dir: &std::path::Path) -> std::process::Output {
    support::spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(dir.join("spillway.toml"))
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SPILLWAY_TEST_RETRY_MS", "20")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

type Objects = std::collections::BTreeMap<String, Vec<u8>>;

/// Kept records' `n` by the key they are under (partition directories),
/// and the error records under `errors/processing-failed/`.
fn archived(dir: &std::path::Path) -> (std::collections::BTreeMap<u64, Vec<String>>, Vec<Value>) {
    archived_in(support::objects(&dir.join("archive")))
}

fn archived_in(objects: Objects) -> (std::collections::BTreeMap<u64, Vec<String>>, Vec<Value>) {
    let mut kept: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let mut errors = Vec::new();
    for (key, body) in objects {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(line).unwrap();
            if key.starts_with("errors/processing-failed/") {
                errors.push(value);
            } else {
                assert!(!key.starts_with("errors/"), "{key}: {value}");
                assert_eq!(value["enriched"], true, "the function ran on {value}");
                // customer=../day=../ then the time spillway adds.
                let partition = key.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
                kept.entry(value["n"].as_u64().unwrap()).or_default().push(partition);
            }
        }
    }
    (kept, errors)
}

fn assert_archived_exactly_once(dir: &std::path::Path, count: u64, lambda_arn: Option<&str>) {
    assert_exactly_once_in(support::objects(&dir.join("archive")), count, lambda_arn);
}

fn assert_exactly_once_in(objects: Objects, count: u64, lambda_arn: Option<&str>) {
    let (kept, errors) = archived_in(objects);
    let expected: Vec<u64> = kept_ids(count);
    assert_eq!(
        kept.keys().copied().collect::<Vec<_>>(),
        expected,
        "kept records, each once"
    );
    for (n, partitions) in &kept {
        assert_eq!(
            partitions,
            &[format!("customer=c{}/day=2026-12-0{}", n % 3, n % 4 + 1)],
            "record {n}: once, in its partition"
        );
    }
    let input = input_records(count);
    let mut failed: Vec<u64> = Vec::new();
    for error in &errors {
        assert_eq!(error["errorCode"], "Lambda.ProcessingFailed", "{error}");
        assert_eq!(error["attemptsMade"], 1, "{error}");
        assert_eq!(error.get("lambdaArn").and_then(Value::as_str), lambda_arn, "{error}");
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        let original: Value = serde_json::from_slice(&raw).unwrap();
        let n = original["n"].as_u64().unwrap();
        assert_eq!(raw, input[n as usize].as_bytes(), "rawData: the source record's bytes");
        failed.push(n);
    }
    failed.sort();
    assert_eq!(failed, failed_ids(count), "failed records, each once");
}

#[test]
fn jq_lambda_and_metadata_extraction_archive_each_record_once_in_its_partition() {
    let server = LambdaServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), input_records(200).join("\n") + "\n").unwrap();
    support::write_config(dir.path(), &pipeline_config(&lambda_table(&server, "enrich", 3)));
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_archived_exactly_once(dir.path(), 200, Some("enrich"));
    // jq's skipped records never reached the function.
    let sent: Vec<String> = server.calls("enrich").concat();
    assert_eq!(sent.len() as u64, (0..200).filter(|n| n % 10 != 4).count() as u64);
}

#[test]
fn the_same_pipeline_with_the_command_processor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), input_records(200).join("\n") + "\n").unwrap();
    support::write_config(dir.path(), &pipeline_config(&command_table("enrich", 3)));
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_archived_exactly_once(dir.path(), 200, None);
}

#[test]
fn a_failing_function_sends_every_record_to_processing_failed_after_its_retries() {
    let server = LambdaServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = input_records(30);
    std::fs::write(dir.path().join("input.ndjson"), input.join("\n") + "\n").unwrap();
    support::write_config(dir.path(), &pipeline_config(&lambda_table(&server, "raise_error", 2)));
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (kept, errors) = archived(dir.path());
    assert!(kept.is_empty());
    let mut failed: Vec<u64> = Vec::new();
    for error in &errors {
        assert_eq!(error["errorCode"], "Lambda.FunctionError", "{error}");
        assert_eq!(error["attemptsMade"], 3, "{error}");
        assert_eq!(error["lambdaArn"], "raise_error", "{error}");
        assert!(error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("cannot process this batch"));
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        let n = serde_json::from_slice::<Value>(&raw).unwrap()["n"].as_u64().unwrap();
        assert_eq!(raw, input[n as usize].as_bytes());
        failed.push(n);
    }
    failed.sort();
    let expected: Vec<u64> = (0..30).filter(|n| n % 10 != 4).collect();
    assert_eq!(failed, expected, "every record that reached the function, once");
    let calls = server.calls("raise_error");
    assert_eq!(calls.len() % 3, 0, "each batch called three times: {calls:?}");
    assert_eq!(calls.concat().len(), expected.len() * 3);
}

#[test]
fn kill_9_while_records_wait_for_a_slow_function_then_a_restart_archives_each_once() {
    let server = LambdaServer::start();
    server.control("enrich", json!({"delay_seconds": 30}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), input_records(100).join("\n") + "\n").unwrap();
    support::write_config(dir.path(), &pipeline_config(&lambda_table(&server, "enrich", 3)));
    let mut child = support::spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(dir.path().join("spillway.toml"))
        .current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.calls("enrich").is_empty() {
        assert!(Instant::now() < deadline, "the function was never called");
        std::thread::sleep(Duration::from_millis(50));
    }
    support::send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let (kept, errors) = archived(dir.path());
    assert!(
        kept.is_empty() && errors.is_empty(),
        "nothing archived while the function had not answered"
    );

    server.control("enrich", json!({"delay_seconds": 0}));
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_archived_exactly_once(dir.path(), 100, Some("enrich"));
}

#[test]
fn validate_refuses_bad_lambda_and_command_keys_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), "{}\n").unwrap();
    let text = pipeline_config(
        "type = \"lambda\"\nfunction = \"arn:aws:lambda:x\"\nbuffer_size_mb = 0.1\nnumber_of_retries = 301",
    )
    .replace(
        "[[processors]]\ntype = \"metadata_extraction\"",
        "[[processors]]\ntype = \"command\"\ncommand = []\n[[processors]]\ntype = \"metadata_extraction\"",
    );
    let path = support::write_config(dir.path(), &text);
    let output = support::spillway()
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for expected in [
        "processors[1].function: \"arn:aws:lambda:x\" is not a Lambda function ARN",
        "processors[1].buffer_size_mb: 0.1 is out of range: allowed 0.2 to 3",
        "processors[1].number_of_retries: 301 is out of range: allowed 0 to 300",
        "processors[2].command: [] is empty",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
}

#[test]
fn moto_jq_lambda_and_metadata_extraction_to_a_partitioned_s3_prefix_exactly_once() {
    let server = LambdaServer::start();
    let moto = support::moto::Moto::new("lambda");
    let list = || -> Objects { moto.objects() };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), input_records(120).join("\n") + "\n").unwrap();
    let config = pipeline_config(&lambda_table(&server, "enrich", 3))
        .replace("type = \"local\"\npath = \"archive\"", &moto.destination());
    support::write_config(dir.path(), &config);
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = list();
    assert_exactly_once_in(stored.clone(), 120, Some("enrich"));
    let again = spillway_run(dir.path());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(stored, list(), "a second run wrote nothing");
}

#[test]
fn kill_9_while_records_wait_for_a_slow_command_then_a_restart_archives_each_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.ndjson"), input_records(100).join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("slow"), "").unwrap();
    support::write_config(dir.path(), &pipeline_config(&command_table("slow_enrich", 3)));
    let mut child = support::spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(dir.path().join("spillway.toml"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("called").exists() {
        assert!(Instant::now() < deadline, "the command was never called");
        std::thread::sleep(Duration::from_millis(50));
    }
    support::send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let (kept, errors) = archived(dir.path());
    assert!(
        kept.is_empty() && errors.is_empty(),
        "nothing archived while the command had not answered"
    );

    std::fs::remove_file(dir.path().join("slow")).unwrap();
    let output = spillway_run(dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_archived_exactly_once(dir.path(), 100, None);
}
