//! End-to-end: `spillway run --once` on streams that were resharded between
//! runs, start positions across restarts, and records the Kinesis source
//! refuses (issue: `run --once` after a reshard skips the child shards).
//!
//! Resharding runs on kinesalite (moto moves a parent's records into its
//! children). `latest` and `at_timestamp` run on moto: kinesalite 3.3.3
//! never answers an AT_TIMESTAMP GetShardIterator on a shard that holds no
//! record at or after the timestamp (an idle shard, the case that matters).

mod support;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::kinesis::*;
use support::*;

fn succeeded(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    logs(&output.stderr)
}

/// The sequence of the issue: four shards, plain and KPL records, `--once`;
/// more records into the parents; a split and a merge; more records;
/// `--once` again. Every record exactly once, per-key order kept, children
/// read after their parents, and a third run adds nothing.
#[test]
fn once_after_a_split_and_a_merge_reads_the_children_after_their_parents() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "once-reshard", 4);
    let mut produced = produce(&endpoint, &stream, &["--count", "15000", "--keys", "40"]);
    produced.extend(produce(
        &endpoint,
        &stream,
        &[
            "--count",
            "5000",
            "--keys",
            "40",
            "--first-id",
            "15000",
            "--aggregate-every",
            "1",
        ],
    ));
    assert!(produced.iter().any(|p| p.sub > 0), "no KPL aggregated records");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let first = succeeded(&run_once(dir.path(), &config));
    let mut order = written_objects(&first);
    assert_archived_exactly_once_in_order(dir.path(), &produced, &order);

    // Records into one parent after the first run, just before the
    // reshard; the merged parents' last records are older (kinesalite ends
    // a closed shard at once only when its last record is less than a
    // second older than the reshard).
    produced.extend(rt.block_on(put_to_hash_key(&client, &stream, "0", "p-", 20_000..20_300, 7)));
    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    rt.block_on(merge(&client, &stream, "shardId-000000000002", "shardId-000000000003"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &[
            "--count",
            "10000",
            "--keys",
            "40",
            "--first-id",
            "20300",
            "--aggregate-every",
            "3",
        ],
    ));

    let second = succeeded(&run_once(dir.path(), &config));
    order.extend(written_objects(&second));
    assert_archived_exactly_once_in_order(dir.path(), &produced, &order);
    let children = assert_children_after_parents(&rt, &client, &stream, &second, &BTreeSet::new());
    assert_eq!(
        children.len(),
        3,
        "a split makes two children, a merge one, and each is read: {children:?}"
    );
    // The parents closed since the first run are finished now.
    let finished = finished_shards(&second);
    for parent in ["shardId-000000000000", "shardId-000000000002", "shardId-000000000003"] {
        assert!(finished.contains(parent), "{parent} not finished: {finished:?}");
    }

    let before = objects(&dir.path().join("archive")).len();
    succeeded(&run_once(dir.path(), &config));
    assert_eq!(
        objects(&dir.path().join("archive")).len(),
        before,
        "a third run adds nothing"
    );
}

/// Two generations of resharding between runs: a split, then a split of
/// one of its children, records put in between.
#[test]
fn once_after_two_generations_of_splits_reads_every_generation_in_order() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "once-twice", 2);
    let mut produced = produce(&endpoint, &stream, &["--count", "3000", "--keys", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let first = succeeded(&run_once(dir.path(), &config));
    let mut order = written_objects(&first);

    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &[
            "--count",
            "2000",
            "--keys",
            "20",
            "--first-id",
            "3000",
            "--aggregate-every",
            "2",
        ],
    ));
    // shardId-000000000002 is the first child of the split.
    rt.block_on(split(&client, &stream, "shardId-000000000002"));
    produced.extend(produce(
        &endpoint,
        &stream,
        &["--count", "2000", "--keys", "20", "--first-id", "5000"],
    ));

    let second = succeeded(&run_once(dir.path(), &config));
    order.extend(written_objects(&second));
    assert_archived_exactly_once_in_order(dir.path(), &produced, &order);
    let children = assert_children_after_parents(&rt, &client, &stream, &second, &BTreeSet::new());
    let expected: BTreeSet<String> = (2..=5).map(|i| format!("shardId-{i:012}")).collect();
    assert_eq!(children, expected, "both generations of children are read");
}

/// A shard that cannot be read ends a `--once` run with an error naming it.
#[test]
fn once_that_cannot_read_a_shard_exits_non_zero_and_names_it() {
    use support::fault_proxy::{kinesis_error, FaultProxy};
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "once-unread", 2);
    produce(&endpoint, &stream, &["--count", "200", "--keys", "10"]);
    let proxy = FaultProxy::start_with(
        &endpoint,
        std::sync::Arc::new(|target: &str, _nth: usize, body: &[u8]| {
            let for_shard_1 = String::from_utf8_lossy(body).contains("shardId-000000000001");
            (target == "Kinesis_20131202.GetShardIterator" && for_shard_1)
                .then(|| kinesis_error(400, "AccessDeniedException"))
        }),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&proxy.url, &stream, ""));
    let output = run_once(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: source failed: cannot read shard shardId-000000000001: ")
            && last.contains("AccessDeniedException"),
        "{last}"
    );
}

/// A record whose sequence number is not one (injected by the proxy) goes
/// to the error output with its bytes and a code; every other record is
/// archived once, and a second run adds nothing.
#[test]
fn a_record_with_an_unparsable_sequence_number_goes_to_the_error_output() {
    use support::fault_proxy::FaultProxy;
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "badseq", 1);
    let produced = produce(
        &endpoint,
        &stream,
        &["--count", "300", "--keys", "10", "--batch", "100"],
    );
    let victim = produced.iter().find(|p| p.id == 117).unwrap().clone();
    let victim_seq = victim.seq.clone();
    let proxy = FaultProxy::start_with(
        &endpoint,
        std::sync::Arc::new(|_: &str, _: usize, _: &[u8]| None),
        Some(std::sync::Arc::new(move |target: &str, body: bytes::Bytes| {
            if target != "Kinesis_20131202.GetRecords" {
                return body;
            }
            let mut answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for record in answer["Records"].as_array_mut().unwrap() {
                if record["SequenceNumber"] == victim_seq.as_str() {
                    record["SequenceNumber"] = "49-not-a-number\n".into();
                }
            }
            serde_json::to_vec(&answer).unwrap().into()
        })),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&proxy.url, &stream, ""));
    let first = succeeded(&run_once(dir.path(), &config));
    let kept: Vec<Produced> = produced.iter().filter(|p| p.id != victim.id).cloned().collect();
    let mut order = written_objects(&first);
    assert_archived_exactly_once_in_order(dir.path(), &kept, &order);

    let errors = lines_under(&objects(&dir.path().join("archive")), "errors/invalid-record/");
    assert_eq!(errors.len(), 1, "one error record");
    let error: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(error["errorCode"], "Kinesis.InvalidSequenceNumber");
    assert!(
        error["errorMessage"].as_str().unwrap().contains("49-not-a-number\\n"),
        "{error}"
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(error["rawData"].as_str().unwrap())
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(raw["id"], 117);
    assert_eq!(error["partitionKey"], victim.key.as_str());
    assert_eq!(error["shardId"], "shardId-000000000000");

    // Read again from its checkpoint: nothing is archived twice.
    let second = succeeded(&run_once(dir.path(), &config));
    order.extend(written_objects(&second));
    assert_archived_exactly_once_in_order(dir.path(), &kept, &order);
    let errors = lines_under(&objects(&dir.path().join("archive")), "errors/");
    assert_eq!(errors.len(), 1, "the error record is not written twice");
}

/// After a real split, an aggregated record put into one child with an
/// explicit hash key holds user records whose keys belong to the sibling
/// (as a KPL with a stale shard map makes them): those go to the error
/// output, the others are archived, nothing is dropped.
#[test]
fn kpl_user_records_of_the_sibling_shard_go_to_the_error_output_after_a_split() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_KINESALITE", "kplrange", 1);
    let mut archived = produce(&endpoint, &stream, &["--count", "500", "--keys", "40"]);
    rt.block_on(split(&client, &stream, "shardId-000000000000"));
    let children = rt.block_on(open_shard_hash_keys(&client, &stream));
    assert_eq!(children.len(), 2, "{children:?}");
    let (low_child, low_start) = children[0].clone();
    let high_start: u128 = children[1].1.parse().unwrap();
    let aggregated = produce(
        &endpoint,
        &stream,
        &[
            "--count",
            "200",
            "--keys",
            "40",
            "--first-id",
            "500",
            "--batch",
            "40",
            "--one-aggregate-ehk",
            &low_start,
        ],
    );
    assert!(aggregated.iter().all(|p| p.shard == low_child));
    let (inside, outside): (Vec<Produced>, Vec<Produced>) = aggregated
        .into_iter()
        .partition(|p| spillway::source::kinesis::kpl::partition_key_hash(&p.key) < high_start);
    assert!(
        !inside.is_empty() && !outside.is_empty(),
        "the keys spread over both children"
    );
    archived.extend(inside);

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesis_config(&endpoint, &stream, ""));
    let logs = succeeded(&run_once(dir.path(), &config));
    assert_archived_exactly_once_in_order(dir.path(), &archived, &written_objects(&logs));

    let errors = lines_under(&objects(&dir.path().join("archive")), "errors/invalid-record/");
    let mut refused: Vec<(u64, u64)> = Vec::new();
    for line in &errors {
        let error: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(error["errorCode"], "Kinesis.OutsideShardHashKeyRange", "{error}");
        assert_eq!(error["shardId"], low_child.as_str());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(error["partitionKey"], raw["key"]);
        refused.push((
            raw["id"].as_u64().unwrap(),
            error["subSequenceNumber"].as_u64().unwrap(),
        ));
    }
    refused.sort();
    let mut expected: Vec<(u64, u64)> = outside.iter().map(|p| (p.id, p.sub)).collect();
    expected.sort();
    assert_eq!(
        refused, expected,
        "every user record of the sibling, once, with its subsequence number"
    );
}

fn moto_config(endpoint: &str, stream: &str, start: &str) -> String {
    kinesis_config(endpoint, stream, start)
}

/// `latest` is the moment the delivery stream first started: what was put
/// before is not archived; what was put after is, on every shard, across a
/// restart, including a shard that was idle while spillway ran.
#[test]
fn latest_archives_everything_put_since_the_first_start_across_a_restart() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_MOTO", "latest", 2);
    let shards = rt.block_on(open_shard_hash_keys(&client, &stream));
    let (shard0, shard1) = (shards[0].1.clone(), shards[1].1.clone());
    // Before the first start: never archived.
    rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 0..30, 10));
    rt.block_on(put_to_hash_key(&client, &stream, &shard1, "b-", 30..60, 10));

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &moto_config(&endpoint, &stream, "start_position = \"latest\""),
    );
    let mut child = spawn_run(dir.path(), &config, 300);
    let mut watch = LogWatch::new(&mut child);
    assert!(
        watch.wait_for("\"first_start\":true", Duration::from_secs(30)),
        "{:#?}",
        watch.seen
    );
    // Records on shard 0 only while it runs.
    let mut expected = rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 60..90, 10));
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_under(&objects(&dir.path().join("archive")), "events/").len() < expected.len() {
        assert!(Instant::now() < deadline, "{:#?}", watch.seen);
        watch.wait_for("\"flushed\"", Duration::from_millis(300));
    }
    send_signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let mut all_logs: Vec<serde_json::Value> = watch
        .finish()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    // While stopped: records to both shards, shard 1 never read so far.
    expected.extend(rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 90..190, 10)));
    expected.extend(rt.block_on(put_to_hash_key(&client, &stream, &shard1, "b-", 190..290, 10)));
    let output = run_once(dir.path(), &config);
    let logs = succeeded(&output);
    assert!(
        logs.iter().any(|l| l["first_start"] == false),
        "the restart keeps the first start's moment"
    );
    all_logs.extend(logs);
    assert_archived_exactly_once_in_order(dir.path(), &expected, &written_objects(&all_logs));
}

/// `at_timestamp`: exactly the records that arrived at or after the
/// timestamp, on every shard, across runs, including a shard that had none
/// at the first run.
#[test]
fn at_timestamp_archives_exactly_what_arrived_from_then_on_across_runs() {
    let (endpoint, rt, client, stream) = new_stream("SPILLWAY_TEST_MOTO", "attime", 2);
    let shards = rt.block_on(open_shard_hash_keys(&client, &stream));
    let (shard0, shard1) = (shards[0].1.clone(), shards[1].1.clone());
    rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 0..40, 10));
    rt.block_on(put_to_hash_key(&client, &stream, &shard1, "b-", 40..80, 10));
    std::thread::sleep(Duration::from_millis(20));
    let from = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(20));
    let mut expected = rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 80..130, 10));

    let dir = tempfile::tempdir().unwrap();
    let start = format!(
        "start_position = \"at_timestamp\"\nstart_timestamp = \"{}\"",
        from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let config = write_config(dir.path(), &moto_config(&endpoint, &stream, &start));
    let first = succeeded(&run_once(dir.path(), &config));
    let mut order = written_objects(&first);
    assert_archived_exactly_once_in_order(dir.path(), &expected, &order);

    // Shard 1 had nothing since the timestamp; now it has.
    expected.extend(rt.block_on(put_to_hash_key(&client, &stream, &shard1, "b-", 130..180, 10)));
    expected.extend(rt.block_on(put_to_hash_key(&client, &stream, &shard0, "a-", 180..200, 10)));
    let second = succeeded(&run_once(dir.path(), &config));
    order.extend(written_objects(&second));
    assert_archived_exactly_once_in_order(dir.path(), &expected, &order);
}
