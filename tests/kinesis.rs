//! End-to-end: the real binary archiving Kinesis streams served by real
//! peers (kinesalite and moto, started by scripts/test.sh).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
#[allow(unused_imports)]
use std::time::Duration as _D;

use support::kinesis::*;
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn run_once(dir: &Path, config: &Path) -> Output {
    spillway()
        .args(["--log-format", "json", "run", "--once", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn spawn_daemon(dir: &Path, config: &Path, interval_ms: u64) -> Child {
    spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("SPILLWAY_TEST_INTERVAL_MS", interval_ms.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn shards_read(logs: &[serde_json::Value]) -> BTreeSet<String> {
    logs.iter()
        .filter(|l| l["message"] == "reading shard")
        .map(|l| l["shard"].as_str().unwrap().to_owned())
        .collect()
}

fn four_shards_fifty_thousand_records_with_kpl(peer_variable: &str) {
    let endpoint = peer(peer_variable);
    let rt = runtime();
    let client = rt.block_on(client(&endpoint));
    let stream = unique_stream("four");
    rt.block_on(create_stream(&client, &stream, 4));
    let produced = produce(&endpoint, &stream, &["--count", "50000", "--keys", "40", "--aggregate-every", "3"]);
    assert_eq!(produced.len(), 50_000);
    assert!(produced.iter().any(|p| p.sub > 0), "no KPL aggregated records were produced");
    let shards: BTreeSet<&str> = produced.iter().map(|p| p.shard.as_str()).collect();
    assert_eq!(shards.len(), 4, "records did not spread over the shards: {shards:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let output = run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let logs = logs(&output.stderr);
    assert_eq!(shards_read(&logs).len(), 4);
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&logs));

    // A second --once run finds nothing new and writes nothing.
    let before = objects(&dir.path().join("archive")).len();
    let again = run_once(dir.path(), &config);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(objects(&dir.path().join("archive")).len(), before);
}

#[test]
fn kinesalite_four_shards_fifty_thousand_records_with_kpl_each_once_in_order() {
    four_shards_fifty_thousand_records_with_kpl("SPILLWAY_TEST_KINESALITE");
}

#[test]
fn moto_four_shards_fifty_thousand_records_with_kpl_each_once_in_order() {
    four_shards_fifty_thousand_records_with_kpl("SPILLWAY_TEST_MOTO");
}

#[test]
fn a_missing_stream_is_a_one_line_error_naming_it() {
    let endpoint = peer("SPILLWAY_TEST_KINESALITE");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, "no-such-stream", ""));
    let output = run_once(dir.path(), &config);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!("error: source failed: kinesis stream no-such-stream not found (region us-east-1, endpoint {endpoint})")
    );
    assert!(!dir.path().join("archive").exists() || objects(&dir.path().join("archive")).is_empty());
}
