//! `/metrics` scraped during and after a run that reads a Kinesis stream
//! of several shards and writes to S3, both served by moto (issue #21,
//! acceptance): the counters equal the records and objects found in the
//! bucket, the shards' lag falls to 0 as their backlog drains, and
//! `DataFreshness` grows while records wait in the buffers and drops to 0
//! once they are delivered.
//!
//! moto serves the stream rather than kinesalite: kinesalite answers every
//! GetRecords of an open shard with `MillisBehindLatest: 0`, so a lag could
//! not move there; moto reports how far the last record returned is behind
//! the shard's newest, as Kinesis does.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use spillway_destinations::Compression;
use support::kinesis::{new_stream, produce};
use support::metrics::{free_address, get, samples, series, sum};
use support::moto::Moto;
use support::{send_signal, spawn_run, write_config, LogWatch};

const RECORDS: usize = 3_000;
const SHARDS: usize = 3;

/// One scrape of the run: each shard's lag, the freshness and the bytes
/// buffered.
struct Scrape {
    lag: BTreeMap<String, f64>,
    freshness: f64,
    buffered: f64,
}

#[test]
fn metrics_of_a_kinesis_to_s3_run_move_with_the_backlog_and_match_the_bucket() {
    let (endpoint, _rt, _client, stream) = new_stream("SPILLWAY_TEST_MOTO", "scrape", SHARDS as i32);
    // A backlog spread over about two seconds of arrivals, waiting in every
    // shard before the run starts.
    let produced = produce(
        &endpoint,
        &stream,
        &[
            "--count",
            &RECORDS.to_string(),
            "--keys",
            "30",
            "--batch",
            "100",
            "--rate",
            "1500",
        ],
    );
    assert_eq!(produced.len(), RECORDS);
    let shards: BTreeSet<&str> = produced.iter().map(|p| p.shard.as_str()).collect();
    assert_eq!(shards.len(), SHARDS, "records did not spread over the shards");
    let moto = Moto::new("scrape");

    let dir = tempfile::tempdir().unwrap();
    let address = free_address();
    let config = write_config(
        dir.path(),
        &format!(
            r#"name = "scrape"
[source]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{endpoint}"
poll_interval_ms = 200
shard_discovery_seconds = 1
# Small pages: each shard's backlog takes about ten calls, 200 ms apart,
# so the lag is seen falling.
max_records_per_call = 100
[buffer]
size_mb = 64
interval_seconds = 60
[destination]
{destination}
prefix = "events/"
compression = "gzip"
[checkpoint]
path = "state"
[telemetry]
listen = "{address}"
"#,
            destination = moto.destination()
        ),
    );
    // Interval flushes every 1.5 s: records are seen waiting in the
    // buffers, and all of them are delivered while the run goes on.
    let mut child = spawn_run(dir.path(), &config, 1500);
    let logs = LogWatch::new(&mut child);
    let mut child = KillOnDrop(child);
    let stream_label = r#"stream="scrape""#;

    // During the run: scrape every 20 ms until every record is delivered
    // and nothing waits any more.
    let mut scrapes: Vec<Scrape> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        assert!(
            Instant::now() < deadline,
            "not drained in 60 s; last scrape: {:?}",
            get(address, "/metrics")
        );
        let Some((200, body)) = get(address, "/metrics") else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let now = samples(&body);
        let lag: BTreeMap<String, f64> = series(&now, "spillway_kinesis_millis_behind_latest", &[stream_label])
            .into_iter()
            .map(|(series, value)| (shard_of(series), value))
            .collect();
        let scrape = Scrape {
            freshness: sum(&now, "spillway_data_freshness_seconds", &[stream_label]),
            buffered: sum(&now, "spillway_buffered_bytes", &[stream_label]),
            lag,
        };
        let delivered = sum(&now, "spillway_delivery_records_total", &[stream_label]);
        let drained = delivered == RECORDS as f64
            && scrape.freshness == 0.0
            && scrape.buffered == 0.0
            && scrape.lag.len() == SHARDS
            && scrape.lag.values().all(|lag| *lag == 0.0);
        scrapes.push(scrape);
        if drained {
            break now;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    // Lag: above 0 while the backlog waits, falling as it drains (the
    // stream's newest record does not change), 0 once caught up.
    for shard in &shards {
        let seen: Vec<f64> = scrapes.iter().filter_map(|s| s.lag.get(*shard).copied()).collect();
        assert!(seen.iter().any(|lag| *lag > 0.0), "{shard}: never behind: {seen:?}");
        assert!(
            seen.windows(2).all(|pair| pair[1] <= pair[0]),
            "{shard}: the lag rose while the backlog drained: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&0.0), "{shard}");
    }
    // Freshness: grows while records are buffered, and is 0 once they
    // are all delivered (checked by the last scrape).
    assert!(
        scrapes
            .windows(2)
            .any(|pair| pair[0].buffered > 0.0 && pair[1].buffered > 0.0 && pair[1].freshness > pair[0].freshness),
        "DataFreshness never grew while records were buffered: {:?}",
        scrapes.iter().map(|s| (s.buffered, s.freshness)).collect::<Vec<_>>()
    );
    assert!(
        scrapes.iter().any(|s| s.freshness >= 1.0),
        "records waited seconds in the stream and the buffers, yet DataFreshness stayed under 1 s"
    );

    // After: the counters are what the bucket holds.
    let stored = moto.objects();
    assert!(!stored.is_empty());
    assert!(
        stored.keys().all(|key| key.starts_with("events/")),
        "{:?}",
        stored.keys()
    );
    let mut ids = BTreeSet::new();
    let mut record_bytes = 0;
    for body in stored.values() {
        let lines = Compression::Gzip.decompress(body).unwrap();
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert!(ids.insert(value["id"].as_u64().unwrap()), "record archived twice");
            record_bytes += line.len();
        }
    }
    let expected: BTreeSet<u64> = produced.iter().map(|p| p.id).collect();
    assert_eq!(ids, expected, "every record once");
    let s3_data = [stream_label, r#"destination="s3""#, r#"output="data""#];
    let metrics = &last;
    assert_eq!(
        sum(metrics, "spillway_incoming_records_total", &[stream_label]),
        RECORDS as f64
    );
    assert_eq!(
        sum(metrics, "spillway_incoming_bytes_total", &[stream_label]),
        record_bytes as f64
    );
    assert_eq!(
        sum(metrics, "spillway_delivery_records_total", &s3_data),
        RECORDS as f64
    );
    assert_eq!(
        sum(metrics, "spillway_delivery_objects_total", &s3_data),
        stored.len() as f64
    );
    // Bytes as written: gzip'd, as the bucket holds them.
    let stored_bytes: usize = stored.values().map(Vec::len).sum();
    assert_eq!(
        sum(metrics, "spillway_delivery_bytes_total", &s3_data),
        stored_bytes as f64
    );
    assert_eq!(
        sum(
            metrics,
            "spillway_delivery_attempts_total",
            &[stream_label, r#"destination="s3""#, r#"result="success""#]
        ),
        stored.len() as f64
    );
    assert_eq!(sum(metrics, "spillway_error_records_total", &[stream_label]), 0.0);
    assert!(
        sum(
            metrics,
            "spillway_flushes_total",
            &[stream_label, r#"reason="interval""#]
        ) >= 1.0
    );
    assert_eq!(get(address, "/health/ready").map(|(status, _)| status), Some(200));

    // A graceful stop: nothing was left to flush, the summary agrees.
    send_signal(&child.0, libc::SIGTERM);
    let status = child.0.wait().unwrap();
    let logs = logs.finish();
    assert!(status.success(), "{status:?}: {logs:#?}");
    let finished = logs
        .iter()
        .find(|l| l.contains("\"run finished\""))
        .expect("a run finished line");
    assert!(finished.contains(&format!("\"records_read\":{RECORDS}")), "{finished}");
    assert!(
        finished.contains(&format!("\"objects_written\":{}", stored.len())),
        "{finished}"
    );
    assert_eq!(moto.objects().len(), stored.len(), "the stop wrote nothing more");
}

/// The run, killed if the test fails before it stops it: a run left
/// behind would hold the test harness's output open.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `shard` label of a series.
fn shard_of(series: &str) -> String {
    let start = series.find("shard=\"").expect("a shard label") + "shard=\"".len();
    let end = series[start..].find('"').unwrap() + start;
    series[start..end].to_owned()
}
