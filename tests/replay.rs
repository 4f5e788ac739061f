//! End-to-end: `spillway replay` on kinesalite. A stream is archived (JSON
//! lines with `envelope`, so partition keys are kept), then replayed into a
//! second stream with `--to kinesis:STREAM`; the replay is killed with
//! `kill -9` in the middle and run again with the same `--state`: every
//! record arrives with its key, in order per key, at most one window of
//! 500 records repeated.

mod support;

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
