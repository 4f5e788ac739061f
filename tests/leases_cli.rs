//! `spillway leases --config FILE` against moto's DynamoDB (issue #22):
//! the real binary prints the lease table that instances wrote through the
//! lease table's own API, as aligned text and as JSON lines, and says in
//! one line why it cannot when the table is missing or unreachable.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use spillway::checkpoint::shard::ShardState;
use spillway::checkpoint::state::STATE_VERSION;
use spillway::coordination::dynamodb::{LeaseTable, TableOptions};
use spillway::coordination::Lease;
use spillway_transforms::record::Offset;
use spillway_transforms::SequenceNumber;
use support::kinesis::{peer, runtime};

/// The lease duration the configurations give: long enough that a lease
/// written just before the listing is `held`, short enough to wait out
/// once for an `expired` one.
const LEASE_SECONDS: u64 = 3;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A pipeline "orders" on stream "archive-stream" with `[coordination]`
/// on `table` through `endpoint`, written in `dir`.
fn config(dir: &Path, table: &str, endpoint: &str) -> PathBuf {
    let text = format!(
        r#"name = "orders"
[source]
type = "kinesis"
stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/archive-stream"
[destination]
type = "local"
path = "archive"
[coordination]
type = "dynamodb"
table = "{table}"
region = "us-east-1"
endpoint = "{endpoint}"
lease_duration_seconds = {LEASE_SECONDS}
"#
    );
    let path = dir.join("orders.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The table as instance `worker` of that pipeline sees it: the namespace
/// the stream's name gives, as configured by name here (the configuration
/// above gives the ARN: both must find the same leases).
async fn open(table: &str, worker: &str) -> LeaseTable {
    LeaseTable::open(TableOptions {
        table: table.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(peer("SPILLWAY_TEST_MOTO")),
        namespace: spillway::coordination::namespace(
            "orders",
            &spillway::source::kinesis::api::StreamRef::Name("archive-stream".into()),
        ),
        worker: worker.into(),
    })
    .await
    .unwrap()
}

fn state_at(sequence: u64) -> String {
    let mut state = ShardState {
        version: STATE_VERSION,
        ..Default::default()
    };
    state.source.checkpoint = Some(Offset::new(SequenceNumber::from_u64(sequence), 0));
    state.to_json()
}

fn leases(dir: &Path, config: &Path, json: bool) -> Output {
    let mut command = support::spillway();
    command.args(["leases", "--config"]).arg(config).current_dir(dir);
    if json {
        command.arg("--json");
    }
    command.output().expect("running spillway leases")
}

fn shard(n: usize) -> String {
    format!("shardId-{n:012}")
}

fn find<'a>(leases: &'a [Lease], shard: &str) -> &'a Lease {
    leases.iter().find(|l| l.shard == shard).unwrap()
}

#[test]
fn the_lease_table_is_printed_per_shard_with_owner_checkpoint_and_state() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let table = unique("leases-cli");
    let a = rt.block_on(open(&table, "archiver-a"));
    let b = rt.block_on(open(&table, "archiver-b"));
    let dead = rt.block_on(open(&table, "archiver-dead"));
    for n in 0..4 {
        rt.block_on(a.add(&shard(n), &[])).unwrap();
    }
    // The pipeline's own item (its started_at) is no shard: never a row.
    rt.block_on(a.started_at(chrono::Utc::now())).unwrap();

    // Shard 3: taken by an instance that then died, its last renewal a
    // lease duration old by the time the listing runs.
    let listed = rt.block_on(a.list()).unwrap();
    rt.block_on(dead.take(find(&listed, &shard(3)))).unwrap();
    std::thread::sleep(Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(200));

    // Shard 0: held by a, checkpointed. Shard 1: b read it to its end and
    // saved its final checkpoint. Shard 2: never taken.
    let held = rt.block_on(a.take(find(&listed, &shard(0)))).unwrap();
    rt.block_on(a.checkpoint(&held, &state_at(4711), false)).unwrap();
    let ending = rt.block_on(b.take(find(&listed, &shard(1)))).unwrap();
    rt.block_on(b.checkpoint(&ending, &state_at(9000), true)).unwrap();

    let out = leases(
        dir.path(),
        &config(dir.path(), &table, &peer("SPILLWAY_TEST_MOTO")),
        false,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "a header and one row per shard: {stdout}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["SHARD", "OWNER", "CHECKPOINT", "STATE", "RENEWED"]);
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split_whitespace().collect()).collect();
    // The columns line up: every row's state starts where the header's does.
    let state_column = lines[0].find("STATE").unwrap();
    for (line, state) in lines[1..].iter().zip(["held", "ended", "free", "expired"]) {
        assert_eq!(&line[state_column..state_column + state.len()], state, "{stdout}");
    }
    let without_renewal: Vec<&[&str]> = rows.iter().map(|r| &r[..4]).collect();
    assert_eq!(
        without_renewal,
        [
            [shard(0).as_str(), "archiver-a", "4711", "held"].as_slice(),
            [shard(1).as_str(), "archiver-b", "9000", "ended"].as_slice(),
            [shard(2).as_str(), "-", "-", "free"].as_slice(),
            [shard(3).as_str(), "archiver-dead", "-", "expired"].as_slice(),
        ]
    );
    assert_eq!(rows[2][4], "-", "never taken, never renewed");
    for row in [&rows[0], &rows[1], &rows[3]] {
        let renewed = chrono::DateTime::parse_from_rfc3339(row[4]).unwrap();
        let age = chrono::Utc::now().signed_duration_since(renewed);
        assert!(age < chrono::Duration::seconds(60), "{row:?}");
    }

    let out = leases(
        dir.path(),
        &config(dir.path(), &table, &peer("SPILLWAY_TEST_MOTO")),
        true,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objects: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let by_shard: BTreeMap<&str, &serde_json::Value> =
        objects.iter().map(|o| (o["shard"].as_str().unwrap(), o)).collect();
    assert_eq!(by_shard.len(), 4, "{objects:?}");
    let field = |n: usize, key: &str| by_shard[shard(n).as_str()][key].clone();
    let summary: Vec<[serde_json::Value; 3]> = (0..4)
        .map(|n| [field(n, "owner"), field(n, "checkpoint"), field(n, "state")])
        .collect();
    use serde_json::json;
    assert_eq!(
        summary,
        [
            [json!("archiver-a"), json!("4711"), json!("held")],
            [json!("archiver-b"), json!("9000"), json!("ended")],
            [json!(null), json!(null), json!("free")],
            [json!("archiver-dead"), json!(null), json!("expired")],
        ]
    );
    assert_eq!(field(0, "subsequence_number"), json!(0));
    assert_eq!(field(2, "renewed_at"), json!(null));
    assert!(field(0, "renewed_at").as_str().unwrap().ends_with('Z'));
    assert_eq!(field(0, "pending"), json!(0));
}

#[test]
fn a_missing_table_is_one_line_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("never-run");
    let endpoint = peer("SPILLWAY_TEST_MOTO");
    let config = config(dir.path(), &table, &endpoint);
    for _ in 0..2 {
        let out = leases(dir.path(), &config, false);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error: no lease table {table} in us-east-1 at {endpoint}: no instance has run with this [coordination] yet\n"
            ),
            "the second look finds no table either: the first created none"
        );
    }
    // `validate` takes [coordination] (and, like `leases`, creates no
    // table: it touches no network).
    let validate = support::spillway()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
}

#[test]
fn an_unreachable_table_names_the_endpoint_in_one_line_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://lease-user:s3cret-pw@127.0.0.1:{port}/");
    let out = leases(dir.path(), &config(dir.path(), "spillway-leases", &endpoint), true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach lease table spillway-leases in us-east-1 at http://127.0.0.1:{port}/: "
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret") && !stderr.contains("lease-user"), "{stderr}");
    assert!(
        stderr.contains("Connection refused"),
        "the cause, not the SDK's debug dump: {stderr}"
    );
    assert!(!stderr.contains("DispatchFailure"), "{stderr}");
}

#[test]
fn a_configuration_without_coordination_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("single.toml");
    std::fs::write(
        &path,
        "name = \"orders\"\n[source]\ntype = \"kinesis\"\nstream = \"s\"\n[destination]\ntype = \"local\"\npath = \"o\"\n",
    )
    .unwrap();
    let out = leases(dir.path(), &path, false);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {}: coordination: spillway leases needs [coordination] (type = \"dynamodb\"): without it the pipeline keeps its checkpoint in a local file\n",
            path.display()
        )
    );
}
