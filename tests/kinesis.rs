//! End-to-end: the real binary archiving Kinesis streams served by real
//! peers (kinesalite and moto, started by scripts/test.sh).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::kinesis::*;
use support::*;

fn shards_read(logs: &[serde_json::Value]) -> BTreeSet<String> {
    logs.iter()
        .filter(|l| l["message"] == "reading shard")
        .map(|l| l["shard"].as_str().unwrap().to_owned())
        .collect()
}

fn four_shards_fifty_thousand_records_with_kpl(peer_variable: &str) {
    let (endpoint, _rt, _client, stream) = new_stream(peer_variable, "four", 4);
    let produced = produce(
        &endpoint,
        &stream,
        &["--count", "50000", "--keys", "40", "--aggregate-every", "3"],
    );
    assert_eq!(produced.len(), 50_000);
    assert!(
        produced.iter().any(|p| p.sub > 0),
        "no KPL aggregated records were produced"
    );
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

/// The exact bytes `tests/peers/produce.py` put for a user record.
fn produced_data(p: &Produced) -> String {
    format!(
        r#"{{"id":{},"key":"{}","n":{},"pad":"{}"}}"#,
        p.id,
        p.key,
        p.n,
        "x".repeat(40 + (p.id % 120) as usize)
    )
}

#[test]
fn kinesis_and_kpl_records_archived_as_parquet_keep_their_values_and_kinesis_positions() {
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "parquet", 2);
    let started_ms = chrono::Utc::now().timestamp_millis();
    let produced = produce(
        &endpoint,
        &stream,
        &["--count", "3000", "--keys", "12", "--aggregate-every", "2"],
    );
    let finished_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        produced.iter().any(|p| p.sub > 0),
        "no KPL aggregated records were produced"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = kinesis_config(&endpoint, &stream, "").replace(
        "compression = \"gzip\"",
        "compression = \"none\"\n[format]\ntype = \"parquet\"",
    );
    let config = write_config(dir.path(), &config);
    let output = run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!dir.path().join("archive/errors").exists(), "no record is refused");

    let files = read_parquet(&dir.path().join("archive"));
    let mut by_id = std::collections::BTreeMap::new();
    for file in &files {
        assert_eq!(file["schema"]["id"], "int64", "{}", file["schema"]);
        assert_eq!(file["schema"]["_spillway_subsequence_number"], "int64");
        let rows = file["rows"].as_array().unwrap();
        // Within a file, each shard's records are in the stream's order.
        let mut last: std::collections::BTreeMap<&str, (usize, String, u64)> = Default::default();
        for row in rows {
            let shard = row["_spillway_source"].as_str().unwrap();
            let seq = row["_spillway_sequence_number"].as_str().unwrap();
            let position = (
                seq.len(),
                seq.to_owned(),
                row["_spillway_subsequence_number"].as_u64().unwrap(),
            );
            if let Some(before) = last.get(shard) {
                assert!(*before < position, "{shard}: {before:?} then {position:?}");
            }
            last.insert(shard, position);
            let id = row["id"].as_u64().unwrap();
            assert!(by_id.insert(id, row.clone()).is_none(), "record {id} archived twice");
        }
    }
    assert_eq!(by_id.len(), produced.len(), "every record once");
    for p in &produced {
        let row = &by_id[&p.id];
        assert_eq!(row["key"], p.key.as_str());
        assert_eq!(row["n"], p.n);
        assert_eq!(row["_spillway_source"], p.shard.as_str(), "record {}", p.id);
        assert_eq!(row["_spillway_sequence_number"], p.seq.as_str(), "record {}", p.id);
        assert_eq!(row["_spillway_subsequence_number"], p.sub, "record {}", p.id);
        // The user record's partition key (inside a KPL aggregate too).
        assert_eq!(row["_spillway_partition_key"], p.key.as_str(), "record {}", p.id);
        assert_eq!(row["_original"], produced_data(p), "record {}", p.id);
        // Compact JSON from one producer is the canonical JSON of its row:
        // rebuilt from it (above), not stored a second time.
        assert!(row["_spillway_data"].is_null(), "record {}", p.id);
        let arrival = row["_spillway_arrival"].as_i64().unwrap();
        assert!(
            (started_ms - 1000..=finished_ms + 1000).contains(&arrival),
            "record {}: arrival {arrival} outside [{started_ms}, {finished_ms}]",
            p.id
        );
    }
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
        format!(
            "error: source failed: kinesis stream no-such-stream not found (region us-east-1, endpoint {endpoint})"
        )
    );
    assert!(!dir.path().join("archive").exists() || objects(&dir.path().join("archive")).is_empty());
}

#[test]
fn expired_iterators_throttling_and_server_errors_are_survived_without_gap_or_duplicate() {
    use support::fault_proxy::{kinesis_error, FaultProxy};
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "faults", 2);
    let produced = produce(
        &endpoint,
        &stream,
        &["--count", "6000", "--keys", "10", "--batch", "100"],
    );
    // Small GetRecords pages make many calls, so the faults land mid-shard.
    let proxy = FaultProxy::start(
        &endpoint,
        std::sync::Arc::new(|target: &str, nth: usize| {
            if target != "Kinesis_20131202.GetRecords" {
                return None;
            }
            match nth {
                // A burst of throttles longer than the SDK's own retries (3
                // attempts), checked first and long enough that, however the
                // two shard readers interleave, a call exhausts them.
                12..=40 => Some(kinesis_error(400, "ProvisionedThroughputExceededException")),
                // Every 5th call finds its iterator expired.
                n if n % 5 == 3 => Some(kinesis_error(400, "ExpiredIteratorException")),
                n if n % 11 == 7 => Some(kinesis_error(500, "InternalFailure")),
                _ => None,
            }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &kinesis_config(&proxy.url, &stream, "max_records_per_call = 250"),
    );
    let output = run_once(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(proxy.faults_sent.load(std::sync::atomic::Ordering::SeqCst) >= 10);
    let logs = logs(&output.stderr);
    assert!(
        logs.iter()
            .any(|l| l["message"] == "shard iterator expired; getting a fresh one"),
        "{stderr}"
    );
    assert!(
        logs.iter().any(|l| l["message"] == "kinesis call failed; backing off"
            && l["error"].as_str().unwrap().contains("ProvisionedThroughputExceeded")),
        "{stderr}"
    );
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&logs));
}

/// Splits one shard and merges two others while the daemon runs, with
/// records put before, between and after.
fn reshard_while_running(peer_variable: &str) {
    let (endpoint, rt, client, stream) = new_stream(peer_variable, "reshard", 4);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let mut child = spawn_run(dir.path(), &config, 500);
    let mut watch = LogWatch::new(&mut child);
    let mut produced = produce(&endpoint, &stream, &["--count", "4000", "--keys", "20"]);

    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "4000", "--keys", "20", "--first-id", "4000"],
    ));
    rt.block_on(merge(&client, &stream, "shardId-000000000002", "shardId-000000000003"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "4000", "--keys", "20", "--first-id", "8000"],
    ));

    // Wait until everything is archived, then stop the daemon.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let archived = lines_under(&objects(&dir.path().join("archive")), "events/").len();
        if archived >= produced.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {archived} of {} records archived: {:#?}",
            produced.len(),
            watch.seen
        );
        watch.wait_for("\"flushed\"", Duration::from_millis(500));
    }
    send_signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let logs: Vec<serde_json::Value> = watch
        .finish()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&logs));

    // Parents before children: each child is read only after each of its
    // parents is finished.
    let children = assert_children_after_parents(&rt, &client, &stream, &logs, &BTreeSet::new());
    assert_eq!(children.len(), 3, "a split makes two children, a merge one");
}

#[test]
fn kinesalite_split_and_merge_while_running_lose_and_duplicate_nothing() {
    reshard_while_running("SPILLWAY_TEST_KINESALITE");
}

// Resharding is tested on kinesalite only: moto 5.2.5's SplitShard and
// MergeShards do not behave like Kinesis. They move a parent's records into
// its children under new sequence numbers (Kinesis keeps them in the
// parent), and moto keeps routing new records to the closed parent (Kinesis
// never writes to a closed shard), so no reader can archive such a stream
// faithfully. Seen with moto 5.2.5; the reader copes with moto's closed
// shards never returning a null iterator (see shard_reader.rs).

#[test]
fn repeated_kill_9_loses_and_duplicates_nothing() {
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "kill", 4);
    // About three minutes of records, some aggregated, while spillway is killed
    // at random moments and restarted.
    let mut producer = producer(
        &endpoint,
        &stream,
        &[
            "--count",
            "54000",
            "--rate",
            "300",
            "--batch",
            "50",
            "--aggregate-every",
            "4",
            "--keys",
            "30",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut producer_out = producer.stdout.take().unwrap();
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut producer_out, &mut out).unwrap();
        out
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    println!("kill schedule seed {seed}");
    let mut random = seed;
    let mut next_random = move |low: u64, high: u64| {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        low + (random >> 33) % (high - low)
    };
    let mut all_logs = Vec::new();
    let mut kills = 0;
    loop {
        let producing = producer.try_wait().unwrap().is_none();
        if !producing && kills >= 5 {
            break;
        }
        let mut child = spawn_run(dir.path(), &config, 700);
        let mut watch = LogWatch::new(&mut child);
        let alive_for = Duration::from_millis(next_random(3_000, 15_000));
        watch.wait_for("never logged", alive_for);
        send_signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        kills += 1;
        all_logs.extend(watch.finish());
    }
    let produced = parse_produced(&collector.join().unwrap());
    assert_eq!(produced.len(), 54_000);
    // A last run archives what is left.
    let output = run_once(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    all_logs.extend(String::from_utf8_lossy(&output.stderr).lines().map(str::to_owned));
    let logs: Vec<serde_json::Value> = all_logs.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let flushed_before_last = logs.iter().filter(|l| l["message"] == "flushed").count();
    assert!(
        flushed_before_last > kills,
        "the killed runs wrote too little to test anything"
    );
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&logs));
}

/// The shards the checkpoint file holds an entry for.
fn checkpointed_shards(dir: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("state/archive.checkpoint.json")) else {
        return BTreeSet::new();
    };
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["sources"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn finished_parents_leave_the_checkpoint_file_and_a_restart_neither_rereads_them_nor_skips_a_record() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "prune", 4);
    let mut produced = produce(&endpoint, &stream, &["--count", "2000", "--keys", "40"]);
    // shardId-000000000000 splits into 4 and 5; 2 and 3 merge into 6.
    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "2000", "--keys", "40", "--first-id", "2000"],
    ));
    rt.block_on(merge(&client, &stream, "shardId-000000000002", "shardId-000000000003"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "2000", "--keys", "40", "--first-id", "4000"],
    ));
    let parents: BTreeSet<String> = ["shardId-000000000000", "shardId-000000000002", "shardId-000000000003"]
        .map(str::to_owned)
        .into();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let mut child = spawn_run(dir.path(), &config, 500);
    let mut watch = LogWatch::new(&mut child);
    // Everything archived, and then the parents forgotten (shards are
    // listed every second).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let archived = lines_under(&objects(&dir.path().join("archive")), "events/").len();
        let held = checkpointed_shards(dir.path());
        if archived >= produced.len() && held.is_disjoint(&parents) {
            break;
        }
        if Instant::now() > deadline {
            send_signal(&child, libc::SIGKILL);
            child.wait().unwrap();
            panic!(
                "{archived} of {} records archived; the checkpoint file holds {held:?}",
                produced.len()
            );
        }
        watch.wait_for("never logged", Duration::from_millis(200));
    }
    send_signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let first: Vec<String> = watch.finish();
    let held = checkpointed_shards(dir.path());
    assert!(held.is_disjoint(&parents), "{held:?}");
    assert!(
        held.contains("shardId-000000000006"),
        "the merge's child stays: {held:?}"
    );

    // More records, into the children only; a restart reads them and
    // nothing of the forgotten parents.
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "2000", "--keys", "40", "--first-id", "6000"],
    ));
    let output = run_once(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let restart = logs(&output.stderr);
    let reread: BTreeSet<String> = shards_read(&restart).intersection(&parents).cloned().collect();
    assert!(reread.is_empty(), "the restart read finished parents again: {reread:?}");
    let all: Vec<serde_json::Value> = first
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .chain(restart)
        .collect();
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&all));
    assert!(checkpointed_shards(dir.path()).is_disjoint(&parents));
}

/// A shard the stream no longer lists (past retention; kinesalite keeps
/// shards forever, so the proxy leaves it out of ListShards) leaves the
/// checkpoint file even though no child proves it finished, and its
/// children are read.
#[test]
fn a_shard_the_stream_no_longer_lists_leaves_the_checkpoint_file() {
    use support::fault_proxy::FaultProxy;
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "expired", 2);
    let mut produced = produce(&endpoint, &stream, &["--count", "1000", "--keys", "20"]);
    // Split with nothing put since: the children have no record, so no
    // entry, and the finished parent stays.
    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    let dir = tempfile::tempdir().unwrap();
    let direct = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let first = run_once(dir.path(), &direct);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let expired = "shardId-000000000000";
    let held = checkpointed_shards(dir.path());
    assert!(held.contains(expired), "{held:?}");

    // Retention passes for the parent; records go to the children.
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "1000", "--keys", "20", "--first-id", "1000"],
    ));
    let proxy = FaultProxy::start_with(
        &endpoint,
        std::sync::Arc::new(|_: &str, _: usize, _: &[u8]| None),
        Some(std::sync::Arc::new(move |target: &str, body: bytes::Bytes| {
            if target != "Kinesis_20131202.ListShards" {
                return body;
            }
            let mut answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            answer["Shards"]
                .as_array_mut()
                .unwrap()
                .retain(|shard| shard["ShardId"] != expired);
            serde_json::to_vec(&answer).unwrap().into()
        })),
    );
    let through_proxy = write_config(dir.path(), &kinesis_config(&proxy.url, &stream, ""));
    let second = run_once(dir.path(), &through_proxy);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let held = checkpointed_shards(dir.path());
    assert!(!held.contains(expired), "{held:?}");
    assert!(held.contains("shardId-000000000001"), "an open shard stays: {held:?}");
    let all: Vec<serde_json::Value> = logs(&first.stderr).into_iter().chain(logs(&second.stderr)).collect();
    assert_archived_exactly_once_in_order(dir.path(), &produced, &written_objects(&all));
}
