//! End-to-end: spillway as a daemon (issue #21). Concurrent puts to S3
//! (moto) 100 ms away behind the fault proxy, exactly once with 1 and 4 at
//! a time, and after `kill -9` with several in flight; several pipelines
//! in one process, one of them with a destination that cannot be reached.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use support::fault_proxy::{Fault, FaultProxy};
use support::moto::Moto;
use support::*;

/// Each S3 request's added latency.
const LATENCY: Duration = Duration::from_millis(100);

/// A proxy to moto that holds every request back by [`LATENCY`].
fn slow_proxy(endpoint: &str) -> FaultProxy {
    FaultProxy::start(endpoint, Arc::new(|_: &str, _| Some(Fault::delay(LATENCY))))
}

/// `count` JSON lines of about `size` bytes in `dir/name`; their lines.
fn write_records(dir: &Path, name: &str, count: usize, size: usize) -> Vec<Vec<u8>> {
    let mut input = Vec::new();
    let mut records = Vec::new();
    for id in 0..count {
        let line = format!(r#"{{"file":"{name}","id":{id},"pad":"{}"}}"#, "p".repeat(size));
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        records.push(line.into_bytes());
    }
    std::fs::write(dir.join(name), input).unwrap();
    records
}

/// A file-to-S3 pipeline `name` with 1 MiB buffers (one object per MiB).
fn s3_pipeline(name: &str, input: &str, endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
[source]
type = "file"
path = "{input}"
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
checksum = "when_required"
prefix = "{name}/"
{extra}
[checkpoint]
path = "state"
"#
    )
}

/// The lines of every object under `prefix`, each once per time it is
/// stored.
fn lines_of(objects: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<Vec<u8>> {
    objects
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .flat_map(|(_, body)| {
            body.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every record exactly once: no loss, no duplicate.
fn assert_exactly_once(found: Vec<Vec<u8>>, expected: &[Vec<u8>], what: &str) {
    let mut found = found;
    let mut expected = expected.to_vec();
    found.sort();
    expected.sort();
    assert_eq!(found.len(), expected.len(), "{what}: record count");
    assert!(found == expected, "{what}: records differ");
}

/// Starts spillway with `args` and JSON logs in `dir`, watching its log
/// lines.
fn spawn(dir: &Path, args: &[&str]) -> (std::process::Child, LogWatch) {
    let mut child = spillway()
        .args(["--log-format", "json"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = LogWatch::new(&mut child);
    (child, watch)
}

fn archive_through_latency(max_concurrent_puts: usize) -> Duration {
    let moto = Moto::new(&format!("concurrent-{max_concurrent_puts}"));
    let proxy = slow_proxy(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    // About 12 MiB: a dozen objects.
    let records = write_records(dir.path(), "events.ndjson", 12_000, 1_000);
    let config = write_config(
        dir.path(),
        &s3_pipeline(
            "clicks",
            "events.ndjson",
            &proxy.url,
            &moto.bucket,
            &format!("max_concurrent_puts = {max_concurrent_puts}"),
        ),
    );
    let started = std::time::Instant::now();
    let output = run(dir.path(), &config);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let objects = moto.objects();
    assert!(objects.len() >= 12, "{:?}", objects.keys());
    assert_exactly_once(lines_of(&objects, "clicks/"), &records, "archive");
    took
}

#[test]
fn with_100_ms_on_every_s3_request_four_puts_at_a_time_archive_exactly_once_and_faster() {
    let one = archive_through_latency(1);
    let four = archive_through_latency(4);
    // Several objects per round trip: well under the time of one by one.
    assert!(four * 2 < one, "4 at a time took {four:?}, 1 at a time {one:?}");
}

/// Archives `count` records of about 1 KB to S3 in buffers of `size_mb`
/// (`extra`: more destination keys), data puts held back 1.5 s each; kills
/// the run with several puts in flight, runs it again, and checks that it
/// settled what was pending and archived every record exactly once.
/// `decode` gives an object's lines from its key and bytes. Returns how
/// many objects there are.
fn kill_9_with_puts_in_flight_then_restart(
    bucket: &str,
    count: usize,
    size_mb: u32,
    extra: &str,
    decode: fn(&str, &[u8]) -> Vec<u8>,
) -> usize {
    let moto = Moto::new(bucket);
    // Slow enough that several puts are in flight when the kill lands.
    let proxy = FaultProxy::start(
        &moto.endpoint,
        Arc::new(|target: &str, _| {
            let data_put = target.starts_with("PUT") && target.contains("/clicks/");
            Some(Fault::delay(match data_put {
                true => Duration::from_millis(1_500),
                false => LATENCY,
            }))
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), "events.ndjson", count, 1_000);
    let config = write_config(
        dir.path(),
        &s3_pipeline("clicks", "events.ndjson", &proxy.url, &moto.bucket, extra)
            .replace("size_mb = 1\n", &format!("size_mb = {size_mb}\n")),
    );
    let (mut child, mut watch) = spawn(dir.path(), &["run", "--config", config.to_str().unwrap()]);
    // A first object written, and more in flight behind it.
    assert!(
        watch.wait_for("\"flushed\"", Duration::from_secs(60)),
        "{:#?}",
        watch.seen
    );
    std::thread::sleep(Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let state = std::fs::read_to_string(dir.path().join("state/clicks.checkpoint.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let pending = state["pending"].as_array().unwrap().len();
    assert!(
        pending >= 2,
        "the kill should land with several puts in flight: {state}"
    );

    let output = run(dir.path(), &config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("settled an object pending since the last run"),
        "{stderr}"
    );
    let objects: BTreeMap<String, Vec<u8>> = moto
        .objects()
        .into_iter()
        .map(|(key, body)| {
            let lines = decode(&key, &body);
            (key, lines)
        })
        .collect();
    assert_exactly_once(
        lines_of(&objects, "clicks/"),
        &records,
        "archive after kill -9 and restart",
    );
    objects.len()
}

#[test]
fn kill_9_with_several_puts_in_flight_then_restart_archives_exactly_once() {
    kill_9_with_puts_in_flight_then_restart("concurrent-kill", 12_000, 1, "max_concurrent_puts = 4", |_, body| {
        body.to_vec()
    });
}

/// The same kill with zstd objects of 5 MB buffers, which are compressed
/// as their buffers fill (the records then keep only their places and
/// tickets): the objects in flight at the kill are settled or redone from
/// the source, every record exactly once.
#[test]
fn kill_9_with_buffers_compressed_as_they_fill_then_restart_archives_exactly_once() {
    let objects = kill_9_with_puts_in_flight_then_restart(
        "early-kill",
        40_000,
        5,
        "max_concurrent_puts = 4\ncompression = \"zstd\"",
        |key, body| {
            assert!(key.ends_with(".zst"), "{key}");
            zstd::decode_all(body).unwrap()
        },
    );
    assert!(objects >= 8, "{objects} objects");
}

/// Three configurations in a directory, the second pointing at a port
/// where nothing listens.
fn three_pipelines(dir: &Path, moto: &Moto) -> (PathBuf, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let configs = dir.join("pipelines");
    std::fs::create_dir(&configs).unwrap();
    let a = write_records(dir, "a.ndjson", 3_000, 1_000);
    let c = write_records(dir, "c.ndjson", 2_000, 500);
    write_records(dir, "b.ndjson", 10, 10);
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let files = [
        (
            "a.toml",
            s3_pipeline("alpha", "a.ndjson", &moto.endpoint, &moto.bucket, ""),
        ),
        (
            "b.toml",
            s3_pipeline("beta", "b.ndjson", &format!("http://{nowhere}"), &moto.bucket, ""),
        ),
        (
            "c.toml",
            s3_pipeline("gamma", "c.ndjson", &moto.endpoint, &moto.bucket, ""),
        ),
    ];
    for (name, text) in files {
        std::fs::write(configs.join(name), text).unwrap();
    }
    (configs, a, c)
}

#[test]
fn three_pipelines_in_one_process_archive_on_when_one_cannot_reach_its_destination() {
    let moto = Moto::new("three");
    let dir = tempfile::tempdir().unwrap();
    let (configs, a, c) = three_pipelines(dir.path(), &moto);
    let output = run(dir.path(), &configs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let failures: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    assert!(
        failures[0].starts_with("error: pipeline \"beta\" (") && failures[0].contains("destination check failed"),
        "{stderr}"
    );
    let objects = moto.objects();
    assert_exactly_once(lines_of(&objects, "alpha/"), &a, "alpha");
    assert_exactly_once(lines_of(&objects, "gamma/"), &c, "gamma");
    assert!(lines_of(&objects, "beta/").is_empty());
    // Each with its own checkpoint.
    for name in ["alpha", "gamma"] {
        assert!(dir.path().join(format!("state/{name}.checkpoint.json")).exists());
    }
}

#[test]
fn two_pipelines_of_one_name_or_two_listeners_are_refused_in_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let local = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\n\
             [checkpoint]\npath = \"state\"\n{extra}"
        )
    };
    std::fs::write(
        dir.path().join("a.toml"),
        local("same", "[telemetry]\nlisten = \"127.0.0.1:9108\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        local("same", "[telemetry]\nlisten = \"127.0.0.1:9109\"\n"),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let output = spillway()
            .args([command, "a.toml", "b.toml"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{command}: {stderr}");
        assert!(
            lines[0].contains("b.toml: name: \"same\" is also the name of the pipeline in a.toml"),
            "{command}: {stderr}"
        );
        assert!(
            lines[1].contains("b.toml: telemetry.listen: \"127.0.0.1:9109\" is set in a.toml too"),
            "{command}: {stderr}"
        );
    }
    assert!(!dir.path().join("state").exists(), "run refused before anything ran");
}
