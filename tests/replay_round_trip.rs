//! The round trip of issue #19's Acceptance, on kinesalite and moto: a
//! 4-shard stream, some records in KPL aggregates, archived to S3 with
//! `run --once` as Parquet and as gzip'd envelope lines; each archive
//! replayed with `spillway replay --from s3://...` into a stream of its
//! own; each of those archived again. Every archive holds the produced
//! records (bytes and partition keys), each exactly once, in the produced
//! order per key.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;

use spillway_transforms::format::envelope;
use spillway_transforms::Record;
use support::kinesis::*;
use support::*;

const BUCKET: &str = "round-trip";

fn archive_config(name: &str, kinesalite: &str, stream: &str, format: &str, prefix: &str, compression: &str) -> String {
    format!(
        r#"name = "{name}"
[source]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{kinesalite}"
poll_interval_ms = 200
shard_discovery_seconds = 1
[buffer]
size_mb = 1
interval_seconds = 60
[format]
{format}
[destination]
type = "s3"
bucket = "{BUCKET}"
region = "us-east-1"
force_path_style = true
prefix = "{prefix}"
compression = "{compression}"
[checkpoint]
path = "state-{name}"
"#
    )
}

/// Every object under `prefix`, decompressed.
fn s3_objects(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<(String, Vec<u8>)> {
    support::moto::s3_objects(rt, s3, BUCKET, prefix)
        .into_iter()
        .map(|(key, body)| match body.starts_with(&[0x1f, 0x8b]) {
            true => (key, spillway_destinations::Compression::Gzip.decompress(&body).unwrap()),
            false => (key, body),
        })
        .collect()
}

/// The envelope records under `prefix`, in their stream's order (by
/// position: objects are named after their first record only).
fn envelope_records(rt: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<Record> {
    let mut records: Vec<Record> = s3_objects(rt, s3, prefix)
        .into_iter()
        .flat_map(|(key, body)| {
            body.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| envelope::read_line(l).unwrap_or_else(|e| panic!("{key}: {e}")))
                .collect::<Vec<_>>()
        })
        .collect();
    records.sort_by(|a, b| (&a.position.source, &a.position.offset).cmp(&(&b.position.source, &b.position.offset)));
    records
}

/// `records` are the produced ones: each once, with its own partition key
/// and the bytes `bytes_of` holds for it, in the produced order per key.
fn assert_the_produced_records(
    what: &str,
    records: &[Record],
    produced: &[Produced],
    bytes_of: &HashMap<u64, Vec<u8>>,
) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in records {
        let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        let id = value["id"].as_u64().unwrap();
        let key = record
            .partition_key
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: record {id} has no key"));
        assert_eq!(
            value["key"].as_str(),
            Some(key),
            "{what}: record {id} under another key"
        );
        if let Some(bytes) = bytes_of.get(&id) {
            assert_eq!(&record.data[..], &bytes[..], "{what}: record {id} changed");
        }
        *seen.entry(id).or_default() += 1;
        order
            .entry(key.to_owned())
            .or_default()
            .push(value["n"].as_u64().unwrap());
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(twice.is_empty(), "{what}: records more than once: {twice:?}");
    let missing: Vec<u64> = produced
        .iter()
        .map(|p| p.id)
        .filter(|id| !seen.contains_key(id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}");
    assert_eq!(seen.len(), produced.len(), "{what}: records never produced");
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in produced {
        expected.entry(p.key.clone()).or_default().push(p.n);
    }
    assert_eq!(order, expected, "{what}: order per key");
}

#[test]
fn kinesis_to_parquet_and_envelope_archives_replayed_and_archived_again_hold_the_same_records() {
    let moto = peer("SPILLWAY_TEST_MOTO");
    let (kinesalite, rt, client, source) = new_stream("SPILLWAY_TEST_KINESALITE", "round-trip", 4);
    let s3 = support::moto::s3_client(&rt, &moto);
    rt.block_on(s3.create_bucket().bucket(BUCKET).send()).unwrap();
    let produced = produce(
        &kinesalite,
        &source,
        &["--count", "3000", "--keys", "40", "--aggregate-every", "3"],
    );
    assert!(produced.iter().any(|p| p.sub > 0), "no KPL aggregates");
    let shards: std::collections::BTreeSet<&str> = produced.iter().map(|p| p.shard.as_str()).collect();
    assert_eq!(shards.len(), 4, "{shards:?}");
    let dir = tempfile::tempdir().unwrap();
    let run_ok = |name: &str, text: String| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let output = run_once(dir.path(), &path);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let parquet = "type = \"parquet\"";
    let lines = "type = \"json_lines\"\nenvelope = true";
    run_ok("pq", archive_config("pq", &kinesalite, &source, parquet, "pq/", "none"));
    run_ok("jl", archive_config("jl", &kinesalite, &source, lines, "jl/", "gzip"));
    assert!(s3_objects(&rt, &s3, "pq/")
        .iter()
        .all(|(k, b)| k.ends_with(".parquet") && b.starts_with(b"PAR1")));

    // The envelope archive: the produced records, with their keys.
    let first = envelope_records(&rt, &s3, "jl/");
    let bytes_of: HashMap<u64, Vec<u8>> = first
        .iter()
        .map(|r| {
            let id = serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["id"]
                .as_u64()
                .unwrap();
            (id, r.data.to_vec())
        })
        .collect();
    assert_the_produced_records("the envelope archive", &first, &produced, &HashMap::new());

    for format in ["pq", "jl"] {
        let target = unique_stream(&format!("round-trip-{format}"));
        rt.block_on(create_stream(&client, &target, 3));
        let output = spillway()
            .args(["--log-format", "json", "replay"])
            .args(["--from", &format!("s3://{BUCKET}/{format}/")])
            .args(["--to", &format!("kinesis:{target}")])
            .args(["--errors", &format!("errors-{format}")])
            // No endpoint flag: the standard variables. `localhost`, not
            // an IP address: the SDK would then ask `round-trip.localhost`
            // (virtual-hosted style), as it would `bucket.minio` of a MinIO
            // at `http://minio:9000`, unless replay asks for path style.
            .env("AWS_ENDPOINT_URL_KINESIS", &kinesalite)
            .env("AWS_ENDPOINT_URL_S3", moto.replace("127.0.0.1", "localhost"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            objects(&dir.path().join(format!("errors-{format}"))).is_empty(),
            "{format}: error output without a cause"
        );
        let again = format!("again-{format}/");
        run_ok(
            &format!("again-{format}"),
            archive_config(&format!("again-{format}"), &kinesalite, &target, lines, &again, "gzip"),
        );
        let records = envelope_records(&rt, &s3, &again);
        assert_the_produced_records(
            &format!("{format} replayed and archived again"),
            &records,
            &produced,
            &bytes_of,
        );
    }
}
