//! `[telemetry] listen`: the real binary serves `/metrics` and
//! `/health/*` while it runs, and the counts it exposes are those of what
//! it archived.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;

use support::metrics::{free_port, get, samples, sum, wait_for};
use support::{objects, spawn_run, spillway, write_config, LogWatch};

fn lines_of(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()
}

#[test]
fn metrics_while_running_match_what_was_archived() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let c_path = std::ffi::CString::new(input.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[destination]
type = "local"
path = "archive"
prefix = "events/"
[checkpoint]
path = "state"
[telemetry]
listen = "{address}"
"#
        ),
    );
    // Valid records, with malformed JSON, invalid UTF-8 and empty lines
    // among them.
    let mut input_lines: Vec<Vec<u8>> = Vec::new();
    for id in 0..3_000 {
        input_lines.push(match id % 100 {
            7 => format!(r#"{{"id":{id},"#).into_bytes(),
            13 => [format!(r#"{{"id":{id},"bad":""#).as_bytes(), b"\xff\"}"].concat(),
            29 => Vec::new(),
            _ => format!(r#"{{"id":{id},"pad":"{}"}}"#, "p".repeat(id % 200)).into_bytes(),
        });
    }

    // Interval flushes every 200 ms, so that everything is delivered
    // while the input is still open.
    let mut child = spawn_run(dir.path(), &config, 200);
    let logs = LogWatch::new(&mut child);
    let (status, _) = wait_for(address, "/health/live", |status, _| status == 200);
    assert_eq!(status, 200);
    // Ready once started: the destination, checkpoint and source checked.
    wait_for(address, "/health/ready", |status, _| status == 200);

    // The input stays open: the run goes on while it is scraped.
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
    for line in &input_lines {
        fifo.write_all(line).unwrap();
        fifo.write_all(b"\n").unwrap();
    }
    fifo.flush().unwrap();

    // Delivered: every record is in an object, data or error.
    let total = input_lines.len() as f64;
    let (_, text) = wait_for(address, "/metrics", |_, body| {
        sum(
            &samples(body),
            "spillway_delivery_records_total",
            &[r#"stream="clicks""#],
        ) == total
    });
    let metrics = samples(&text);
    let archived = objects(&dir.path().join("archive"));
    let mut data_lines = 0;
    let mut error_lines: BTreeMap<String, usize> = BTreeMap::new();
    for (key, bytes) in &archived {
        if key.starts_with("events/") {
            data_lines += lines_of(bytes);
        } else {
            let output_type = key.split('/').nth(1).unwrap().to_owned();
            *error_lines.entry(output_type).or_default() += lines_of(bytes);
        }
    }
    assert_eq!(
        error_lines.keys().collect::<Vec<_>>(),
        ["format-conversion-failed", "invalid-record"],
        "{:?}",
        archived.keys().collect::<Vec<_>>()
    );

    let stream = r#"stream="clicks""#;
    assert_eq!(sum(&metrics, "spillway_incoming_records_total", &[stream]), total);
    let input_bytes: usize = input_lines.iter().map(Vec::len).sum();
    assert_eq!(
        sum(&metrics, "spillway_incoming_bytes_total", &[stream]),
        input_bytes as f64
    );
    assert_eq!(
        sum(
            &metrics,
            "spillway_delivery_records_total",
            &[stream, r#"destination="local""#, r#"output="data""#]
        ),
        data_lines as f64
    );
    for (output_type, lines) in &error_lines {
        assert_eq!(
            sum(
                &metrics,
                "spillway_error_records_total",
                &[stream, &format!(r#"output_type="{output_type}""#)]
            ),
            *lines as f64,
            "{output_type}"
        );
        assert_eq!(
            sum(
                &metrics,
                "spillway_delivery_records_total",
                &[stream, &format!(r#"output="{output_type}""#)]
            ),
            *lines as f64,
            "{output_type}"
        );
    }
    assert_eq!(
        sum(&metrics, "spillway_delivery_objects_total", &[stream]),
        archived.len() as f64
    );
    // Uncompressed: the objects' bytes as written.
    let archived_bytes: usize = archived
        .iter()
        .filter(|(key, _)| key.starts_with("events/"))
        .map(|(_, bytes)| bytes.len())
        .sum();
    assert_eq!(
        sum(&metrics, "spillway_delivery_bytes_total", &[stream, r#"output="data""#]),
        archived_bytes as f64
    );
    assert_eq!(
        sum(
            &metrics,
            "spillway_delivery_attempts_total",
            &[stream, r#"result="success""#]
        ),
        archived.len() as f64
    );
    assert_eq!(
        sum(&metrics, "spillway_delivery_attempts_total", &[r#"result="failure""#]),
        0.0
    );
    assert!(sum(&metrics, "spillway_flushes_total", &[stream, r#"reason="interval""#]) >= 1.0);
    assert_eq!(
        sum(&metrics, "spillway_flushes_total", &[stream, r#"reason="size""#]),
        0.0
    );
    assert_eq!(sum(&metrics, "spillway_retries_total", &[]), 0.0);
    // Nothing waits: nothing buffered, nothing undelivered.
    let (_, text) = wait_for(address, "/metrics", |_, body| {
        let now = samples(body);
        sum(&now, "spillway_buffered_bytes", &[stream]) == 0.0
            && sum(&now, "spillway_data_freshness_seconds", &[stream]) == 0.0
    });
    assert!(text.contains("# TYPE spillway_data_freshness_seconds gauge"), "{text}");
    assert_eq!(get(address, "/health/ready").unwrap().0, 200);
    assert_eq!(get(address, "/nothing").unwrap().0, 404);

    drop(fifo);
    let status = child.wait().unwrap();
    let logs = logs.finish();
    assert!(status.success(), "{status:?}: {logs:#?}");
    let finished = logs
        .iter()
        .find(|l| l.contains("\"run finished\""))
        .expect("a run finished line");
    assert!(
        finished.contains(&format!("\"records_read\":{}", input_lines.len())),
        "{finished}"
    );
    assert!(
        finished.contains(&format!("\"records_delivered\":{data_lines}")),
        "{finished}"
    );
}

#[test]
fn a_listen_address_in_use_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), "{\"a\":1}\n").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n\
             [telemetry]\nlisten = \"{address}\"\n"
        ),
    );
    let output = spillway()
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: telemetry.listen: {address} cannot be listened on: ")),
        "{stderr}"
    );
    assert!(last.contains("in use"), "{stderr}");
    // Nothing was read or written.
    assert!(!dir.path().join("archive").exists(), "{stderr}");
}
