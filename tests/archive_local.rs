//! End-to-end: the real binary archiving local files and stdin into a local
//! directory.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use support::*;

const MIB: usize = 1024 * 1024;

/// What a test input line is, and what should become of it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Valid,
    Malformed,
    Empty,
    InvalidUtf8,
    TooLarge,
}

fn line(id: usize, kind: Kind) -> Vec<u8> {
    let pad = "p".repeat(150 + (id * 37) % 300);
    match kind {
        Kind::Valid => format!(r#"{{"id":{id},"user":"u{}","nested":{{"pad":"{pad}"}}}}"#, id % 17).into_bytes(),
        Kind::Malformed => format!(r#"{{"id":{id},"user":"#).into_bytes(),
        Kind::Empty => Vec::new(),
        Kind::InvalidUtf8 => {
            let mut bytes = format!(r#"{{"id":{id},"bad":""#).into_bytes();
            bytes.extend_from_slice(b"\xff\xfe\"}");
            bytes
        }
        Kind::TooLarge => format!(r#"{{"id":{id},"blob":"{}"}}"#, "x".repeat(1_100_000)).into_bytes(),
    }
}

fn kind_of(id: usize) -> Kind {
    match id {
        _ if id % 97 == 13 => Kind::Malformed,
        _ if id % 211 == 5 => Kind::Empty,
        _ if id % 307 == 7 => Kind::InvalidUtf8,
        2500 | 6000 | 9000 => Kind::TooLarge,
        _ => Kind::Valid,
    }
}

/// The input file and, per line, its id, kind, bytes and byte offset.
fn write_input(path: &Path, count: usize) -> Vec<(usize, Kind, Vec<u8>, u64)> {
    let mut file = Vec::new();
    let mut lines = Vec::new();
    for id in 0..count {
        let kind = kind_of(id);
        let bytes = line(id, kind);
        lines.push((id, kind, bytes.clone(), file.len() as u64));
        file.extend_from_slice(&bytes);
        file.push(b'\n');
    }
    std::fs::write(path, file).unwrap();
    lines
}

fn ids_of(lines: &[Vec<u8>]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn config(input: &str, size_mb: u32, compression: &str) -> String {
    format!(
        r#"name = "clicks"
[source]
type = "file"
path = "{input}"
[buffer]
size_mb = {size_mb}
interval_seconds = 60
[destination]
type = "local"
path = "archive"
prefix = "events/!{{timestamp:yyyy/MM/dd}}/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
compression = "{compression}"
[checkpoint]
path = "state"
"#
    )
}

#[test]
fn ten_thousand_records_each_valid_one_once_each_invalid_one_in_the_error_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines = write_input(&dir.path().join("events.ndjson"), 10_000);
    let config_path = write_config(dir.path(), &config("events.ndjson", 1, "gzip"));

    let output = run(dir.path(), &config_path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let objects = objects(&dir.path().join("archive"));
    assert!(objects.keys().all(|k| k.ends_with(".gz")), "{:?}", objects.keys());
    assert!(objects
        .keys()
        .any(|k| k.starts_with("events/") && k.ends_with(".jsonl.gz")));

    // Every valid record exactly once, byte for byte, in input order.
    let expected_valid: Vec<&(usize, Kind, Vec<u8>, u64)> = lines.iter().filter(|l| l.1 == Kind::Valid).collect();
    let data_lines = lines_under(&objects, "events/");
    assert_eq!(data_lines.len(), expected_valid.len());
    for (got, want) in data_lines.iter().zip(&expected_valid) {
        assert_eq!(got, &want.2, "record {} differs", want.0);
    }

    // Every invalid record in the error output, with its reason, its bytes
    // and its position.
    let errors: Vec<serde_json::Value> = lines_under(&objects, "errors/")
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let by_offset: HashMap<u64, &serde_json::Value> = errors
        .iter()
        .map(|e| (e["sequenceNumber"].as_str().unwrap().parse().unwrap(), e))
        .collect();
    let invalid: Vec<_> = lines.iter().filter(|l| l.1 != Kind::Valid).collect();
    let source_id = spillway::source::file_source_id(&dir.path().join("events.ndjson"));
    assert_eq!(errors.len(), invalid.len(), "one error record per invalid record");
    for (id, kind, bytes, offset) in invalid {
        let error = by_offset
            .get(offset)
            .unwrap_or_else(|| panic!("record {id} ({kind:?}) has no error record"));
        let (code, output_type) = match kind {
            Kind::Malformed => ("Record.MalformedJson", "format-conversion-failed"),
            Kind::InvalidUtf8 => ("Record.InvalidUtf8", "format-conversion-failed"),
            Kind::Empty => ("Record.Empty", "invalid-record"),
            Kind::TooLarge => ("Record.TooLarge", "invalid-record"),
            Kind::Valid => unreachable!(),
        };
        assert_eq!(error["errorCode"], code, "record {id}");
        assert!(!error["errorMessage"].as_str().unwrap().is_empty());
        assert_eq!(error["attemptsMade"], 1);
        assert!(error["arrivalTimestamp"].as_i64().unwrap() > 1_700_000_000_000);
        assert_eq!(error["shardId"], source_id.as_str());
        assert_eq!(error["subSequenceNumber"], 0);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        assert_eq!(&raw, bytes, "record {id}: rawData is not the original bytes");
        let in_right_place = objects.iter().any(|(key, body)| {
            key.starts_with(&format!("errors/{output_type}/"))
                && String::from_utf8_lossy(body).contains(&format!("\"sequenceNumber\":\"{offset}\""))
        });
        assert!(in_right_place, "record {id} is not under errors/{output_type}/");
    }

    // Flush reasons: data flushes each time 1 MiB of records is buffered,
    // then once at the end of input; each oversize record fills the
    // invalid-record buffer on its own.
    let mut expected_data_flushes = Vec::new();
    let mut buffered = 0;
    for (_, _, bytes, _) in &expected_valid {
        buffered += bytes.len();
        if buffered >= MIB {
            expected_data_flushes.push("size");
            buffered = 0;
        }
    }
    if buffered > 0 {
        expected_data_flushes.push("end_of_input");
    }
    // Flushes are logged as their objects are written, which with
    // concurrent puts need not be the order they were flushed in.
    let logs = logs(&output.stderr);
    let flushes = flushes(&logs);
    let reasons = |output: &str| -> Vec<&str> {
        let mut found: Vec<&str> = flushes
            .iter()
            .filter(|(o, _)| o == output)
            .map(|(_, r)| r.as_str())
            .collect();
        found.sort_unstable();
        found
    };
    expected_data_flushes.sort_unstable();
    let data_flushes = reasons("data");
    assert_eq!(data_flushes, expected_data_flushes);
    assert!(data_flushes.len() >= 4);
    assert_eq!(reasons("invalid-record"), ["end_of_input", "size", "size", "size"]);
    let conversion_flushes: Vec<&str> = flushes
        .iter()
        .filter(|(o, _)| o == "format-conversion-failed")
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(conversion_flushes, ["end_of_input"]);
    // The error count is logged with every flush, and the run's totals add up.
    let last_flush = logs.iter().rfind(|l| l["message"] == "flushed").unwrap();
    assert_eq!(
        last_flush["error_records_total"].as_u64().unwrap() as usize,
        errors.len()
    );
    let summary = logs.iter().find(|l| l["message"] == "run finished").unwrap();
    assert_eq!(summary["records_read"], 10_000);
    assert_eq!(
        summary["records_delivered"].as_u64().unwrap() as usize,
        expected_valid.len()
    );

    // The checkpoint marks the file as archived whole: a second run reads nothing.
    let again = run(dir.path(), &config_path);
    assert!(again.status.success());
    assert_eq!(
        objects,
        support::objects(&dir.path().join("archive")),
        "a second run changed the archive"
    );
}

#[test]
fn sigterm_flushes_and_checkpoints_and_the_next_run_continues_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let c_path = std::ffi::CString::new(input.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let config_path = write_config(dir.path(), &config("events.ndjson", 5, "zstd"));
    let all: Vec<Vec<u8>> = (0..10_000).map(|id| line(id, Kind::Valid)).collect();

    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs_watch = LogWatch::new(&mut child);
    // Opening the FIFO waits for spillway to open it for reading.
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
    for line in &all[..6_000] {
        fifo.write_all(line).unwrap();
        fifo.write_all(b"\n").unwrap();
    }
    fifo.flush().unwrap();
    // The input stays open: only the signal can end this run. Give the
    // records a moment to reach the buffers; whatever has not is read again
    // by the next run.
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    let first_logs = logs_watch.finish();
    assert!(status.success(), "exit {status:?}: {first_logs:#?}");
    drop(fifo);
    let first_flushes: Vec<String> = first_logs
        .iter()
        .filter(|l| l.contains("\"flushed\""))
        .cloned()
        .collect();
    assert!(!first_flushes.is_empty(), "nothing flushed on SIGTERM: {first_logs:#?}");
    assert!(
        first_flushes.iter().all(|l| l.contains("\"reason\":\"shutdown\"")),
        "{first_flushes:#?}"
    );
    let first_objects = objects(&dir.path().join("archive"));
    let first_ids = ids_of(&lines_under(&first_objects, "events/"));
    assert!(!first_ids.is_empty() && first_ids.len() <= 6_000);
    assert_eq!(
        first_ids,
        (0..first_ids.len() as u64).collect::<Vec<_>>(),
        "the first run's records are a prefix"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/clicks.checkpoint.json")).unwrap()).unwrap();
    assert!(
        state["sources"][spillway::source::file_source_id(&input).as_str()]["checkpoint"]["sequence_number"]
            .is_string(),
        "{state}"
    );

    // The same input, now complete, in a regular file.
    std::fs::remove_file(&input).unwrap();
    let mut whole = Vec::new();
    for line in &all {
        whole.extend_from_slice(line);
        whole.push(b'\n');
    }
    std::fs::write(&input, whole).unwrap();
    let second = run(dir.path(), &config_path);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let second_logs = logs(&second.stderr);
    assert!(second_logs
        .iter()
        .any(|l| l["message"] == "resuming after the checkpoint"));

    let ids = ids_of(&lines_under(&objects(&dir.path().join("archive")), "events/"));
    let mut counts = BTreeMap::new();
    for id in &ids {
        *counts.entry(*id).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated records: {duplicated:?}");
    assert_eq!(counts.len(), 10_000, "records lost");
}

#[test]
fn interval_flush_then_end_of_input_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(
        dir.path(),
        "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n[checkpoint]\npath = \"state\"\n",
    );
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .env("SPILLWAY_TEST_INTERVAL_MS", "300")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = LogWatch::new(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    for id in 0..10 {
        writeln!(stdin, "{{\"id\":{id}}}").unwrap();
    }
    stdin.flush().unwrap();
    assert!(
        watch.wait_for("\"reason\":\"interval\"", Duration::from_secs(30)),
        "{:#?}",
        watch.seen
    );
    for id in 10..15 {
        writeln!(stdin, "{{\"id\":{id}}}").unwrap();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let seen = watch.finish();
    assert!(status.success(), "{seen:#?}");
    let logs: Vec<serde_json::Value> = seen.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(
        flushes(&logs),
        [
            ("data".to_owned(), "interval".to_owned()),
            ("data".to_owned(), "end_of_input".to_owned())
        ]
    );
    let objects = objects(&dir.path().join("archive"));
    assert_eq!(objects.len(), 2);
    let mut ids = ids_of(&lines_under(&objects, ""));
    ids.sort();
    assert_eq!(ids, (0..15).collect::<Vec<u64>>());
}

/// Standard input redirected from a file (`spillway run < file`) is read
/// a whole block at a time: every line of an input of several blocks is
/// archived once, the bad ones as error records.
#[test]
fn stdin_from_a_regular_file_archives_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(
        dir.path(),
        "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"archive\"\n\
         prefix = \"events/\"\nerror_prefix = \"errors/\"\n[checkpoint]\npath = \"state\"\n",
    );
    let input = dir.path().join("input.ndjson");
    let lines = write_input(&input, 10_000);
    assert!(
        std::fs::metadata(&input).unwrap().len() > 3 * 1024 * 1024,
        "several blocks"
    );
    let output = spillway()
        .args(["run", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects = objects(&dir.path().join("archive"));
    let mut ids = ids_of(&lines_under(&objects, "events/"));
    ids.sort();
    let valid: Vec<u64> = lines
        .iter()
        .filter(|(_, kind, _, _)| matches!(kind, Kind::Valid))
        .map(|(id, ..)| *id as u64)
        .collect();
    assert_eq!(ids, valid, "every valid line once");
    let errors = lines_under(&objects, "errors/").len();
    assert_eq!(errors, lines.len() - valid.len(), "every bad line an error record");
}

#[test]
fn every_compression_writes_its_extension_and_round_trips() {
    for (codec, extension) in [
        ("none", ".jsonl"),
        ("gzip", ".jsonl.gz"),
        ("snappy", ".jsonl.snappy"),
        ("zstd", ".jsonl.zst"),
        ("zip", ".jsonl.zip"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<Vec<u8>> = (0..300).map(|id| line(id, Kind::Valid)).collect();
        std::fs::write(
            dir.path().join("in.ndjson"),
            lines
                .iter()
                .flat_map(|l| [l.as_slice(), b"\n"].concat())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let config_path = write_config(dir.path(), &config("in.ndjson", 1, codec));
        let output = run(dir.path(), &config_path);
        assert!(
            output.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let objects = objects(&dir.path().join("archive"));
        assert_eq!(objects.len(), 1, "{codec}");
        let (key, body) = objects.iter().next().unwrap();
        assert!(key.ends_with(extension), "{codec}: {key}");
        let source_id = spillway::source::file_source_id(&dir.path().join("in.ndjson"));
        assert!(
            key.starts_with("events/") && key.contains(&format!("/clicks-{source_id}-0-0")),
            "{key}"
        );
        let expected: Vec<u8> = lines.iter().flat_map(|l| [l.as_slice(), b"\n"].concat()).collect();
        assert_eq!(body, &expected, "{codec}");
    }
}

/// An object of several MiB: gzip writes it as several members compressed
/// in parallel, zstd in its multithreaded mode; `gzip -d` and `zstd -d`
/// (where installed) read each file back to exactly the input.
#[test]
fn large_gzip_and_zstd_objects_read_back_whole_with_the_command_line_tools() {
    let lines: Vec<u8> = (0..20_000)
        .flat_map(|id| [line(id, Kind::Valid), b"\n".to_vec()].concat())
        .collect();
    assert!(lines.len() > 5 * 1024 * 1024);
    for (codec, tool) in [("gzip", "gzip"), ("zstd", "zstd")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.ndjson"), &lines).unwrap();
        let output = run(dir.path(), &write_config(dir.path(), &config("in.ndjson", 16, codec)));
        assert!(
            output.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let objects = objects(&dir.path().join("archive"));
        assert_eq!(objects.len(), 1, "{codec}: {:?}", objects.keys());
        let (key, body) = objects.into_iter().next().unwrap();
        assert!(body == lines, "{codec}: the object is not the input");
        let file = std::fs::read(dir.path().join("archive").join(&key)).unwrap();
        if codec == "gzip" {
            // One member per MiB of input, each a complete gzip stream.
            let (mut rest, mut members) = (&file[..], 0);
            while !rest.is_empty() {
                let mut member = flate2::bufread::GzDecoder::new(rest);
                std::io::copy(&mut member, &mut std::io::sink()).unwrap();
                rest = member.into_inner();
                members += 1;
            }
            assert_eq!(members, lines.len().div_ceil(1024 * 1024), "{key}");
        }
        match std::process::Command::new(tool)
            .arg("-dc")
            .arg(dir.path().join("archive").join(&key))
            .output()
        {
            Ok(decoded) => {
                assert!(
                    decoded.status.success(),
                    "{tool}: {}",
                    String::from_utf8_lossy(&decoded.stderr)
                );
                assert!(decoded.stdout == lines, "{tool} -dc read other bytes from {key}");
            }
            Err(err) => eprintln!("{tool} is not installed ({err}): {key} was not read with it"),
        }
    }
}

#[test]
fn raw_format_keeps_bytes_and_adds_the_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.log"),
        b"plain text\n\xff\xfe binary\n{\"json\":true}\n",
    )
    .unwrap();
    let text = config("in.log", 1, "none").replace(
        "[destination]",
        "[format]\ntype = \"raw\"\ndelimiter = \"|\"\n[destination]",
    );
    let output = run(dir.path(), &write_config(dir.path(), &text));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects = objects(&dir.path().join("archive"));
    let (key, body) = objects.iter().next().unwrap();
    assert!(!key.ends_with(".jsonl"), "{key}");
    assert_eq!(body, b"plain text|\xff\xfe binary|{\"json\":true}|");
}

#[test]
fn validate_refuses_out_of_range_buffer_values_naming_key_value_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("in.ndjson", 200, "gzip").replace("interval_seconds = 60", "interval_seconds = 30");
    let path = write_config(dir.path(), &text);
    let output = spillway().args(["validate", "--config"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("buffer.size_mb: 200 is out of range: allowed 1 to 128"),
        "{stderr}"
    );
    assert!(
        stderr.contains("buffer.interval_seconds: 30 is out of range: allowed 60 to 900"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // `run` refuses it too, in one line, before doing anything.
    let output = run(dir.path(), &path);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("buffer.size_mb") && stderr.contains("buffer.interval_seconds"),
        "{stderr}"
    );
    assert!(!dir.path().join("state").exists());
}

/// Each component reads its own table: a value of the wrong type, an
/// unknown key and a key of another type are each one line naming the full
/// key, from `validate` as from `run`.
#[test]
fn validate_names_the_key_of_a_wrong_type_an_unknown_key_and_another_types_key() {
    let dir = tempfile::tempdir().unwrap();
    for (table, line) in [
        (
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\npoll_interval_ms = \"fast\"\n",
            "source.poll_interval_ms: invalid type: string \"fast\", expected i64",
        ),
        (
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\npoll_interval = 500\n",
            "source.poll_interval: unknown field `poll_interval`, expected one of `stream`, `stream_arn`",
        ),
        (
            "[source]\ntype = \"stdin\"\n[destination]\ntype = \"s3\"\nbucket = \"archive\"\npath = \"out\"\n",
            "destination.path: only allowed with destination.type = \"local\", not \"s3\"",
        ),
        (
            "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\nmultipart_threshold_mb = 8\n",
            "destination.multipart_threshold_mb: only allowed with destination.type = \"s3\", not \"local\"",
        ),
        (
            "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\ncompression = 9\n",
            "destination.compression: invalid type: integer `9`, expected a string",
        ),
    ] {
        let text = if table.contains("[destination]") {
            table.to_owned()
        } else {
            format!("{table}[destination]\ntype = \"local\"\npath = \"out\"\n")
        };
        let path = write_config(dir.path(), &text);
        for command in ["validate", "run"] {
            let output = spillway()
                .current_dir(dir.path())
                .args([command, "--config"])
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{command} {text}");
            let stderr = String::from_utf8(output.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
            assert!(stderr.contains(line), "{command}: {stderr}");
        }
    }
    assert!(!dir.path().join("state").exists());
}

#[test]
fn every_example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = spillway().args(["validate", "--config"]).arg(&path).output().unwrap();
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example configs");
}

#[test]
fn the_quick_start_config_archives_the_shipped_sample() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::copy(
        root.join("data/clickstream.ndjson"),
        dir.path().join("data/clickstream.ndjson"),
    )
    .unwrap();
    let output = run(dir.path(), &root.join("config/local.toml"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects = objects(&dir.path().join("archive"));
    let sample = std::fs::read(root.join("data/clickstream.ndjson")).unwrap();
    let valid: Vec<&[u8]> = sample
        .split(|&b| b == b'\n')
        .filter(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok())
        .collect();
    let archived = lines_under(&objects, "events/");
    assert_eq!(archived, valid);
    assert_eq!(lines_under(&objects, "errors/").len(), 3);
    assert!(dir.path().join("state/clickstream.checkpoint.json").exists());
}

#[test]
fn an_unreadable_input_fails_in_one_line_and_checkpoints_nothing_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        dir.path(),
        &write_config(dir.path(), &config("missing.ndjson", 1, "none")),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: source failed: cannot read missing.ndjson"),
        "{stderr}"
    );
}

#[test]
fn an_unusable_destination_fails_at_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ndjson"), "{}\n").unwrap();
    std::fs::write(dir.path().join("archive"), "a file, not a directory").unwrap();
    let output = run(dir.path(), &write_config(dir.path(), &config("in.ndjson", 1, "none")));
    // Found by validation, before anything runs (the store's own start-up
    // check says the same at run time: `a_root_that_is_a_file_is_a_permanent_error_that_says_so`).
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("destination.path: \"archive\" exists and is not a directory"),
        "{stderr}"
    );
    assert!(!dir.path().join("state/clicks.checkpoint.json").exists());
}

#[test]
fn a_crash_between_writing_an_object_and_checkpointing_it_leaves_no_duplicate() {
    // A first run archives everything; then the state a crash would have
    // left is recreated: nothing checkpointed, two objects pending, of which
    // only the second was written. The next run must skip exactly the
    // second object's records and archive the rest once.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<Vec<u8>> = (0..10_000).map(|id| line(id, Kind::Valid)).collect();
    let mut offsets = Vec::new();
    let mut file = Vec::new();
    for l in &lines {
        offsets.push(file.len() as u64);
        file.extend_from_slice(l);
        file.push(b'\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &file).unwrap();
    let config_path = write_config(dir.path(), &config("events.ndjson", 1, "snappy"));
    assert!(run(dir.path(), &config_path).status.success());

    let archive = dir.path().join("archive");
    let data: Vec<(String, Vec<u64>)> = objects(&archive)
        .into_iter()
        .filter(|(k, _)| k.starts_with("events/"))
        .map(|(k, body)| {
            let lines: Vec<Vec<u8>> = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            (k, ids_of(&lines))
        })
        .collect();
    assert!(data.len() >= 3, "{} objects", data.len());
    let mut data = data;
    data.sort_by_key(|(_, ids)| ids[0]);
    let run_of = |ids: &[u64]| {
        serde_json::json!({
            "source": spillway::source::file_source_id(&dir.path().join("events.ndjson")).as_str(),
            "first": {"sequence_number": offsets[ids[0] as usize].to_string(), "subsequence_number": 0},
            "last": {"sequence_number": offsets[*ids.last().unwrap() as usize].to_string(), "subsequence_number": 0},
        })
    };
    let (never_written, written) = (&data[0], &data[1]);
    std::fs::remove_file(archive.join(&never_written.0)).unwrap();
    for (key, _) in &data[2..] {
        std::fs::remove_file(archive.join(key)).unwrap();
    }
    let state = serde_json::json!({
        "version": 1,
        "stream": "clicks",
        "sources": {},
        "pending": [
            {"key": never_written.0, "runs": [run_of(&never_written.1)]},
            {"key": written.0, "runs": [run_of(&written.1)]},
        ],
    });
    std::fs::write(
        dir.path().join("state/clicks.checkpoint.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();

    let output = run(dir.path(), &config_path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let logs = logs(&output.stderr);
    let settled: Vec<(String, bool)> = logs
        .iter()
        .filter(|l| l["message"] == "settled an object pending since the last run")
        .map(|l| (l["key"].as_str().unwrap().to_owned(), l["written"].as_bool().unwrap()))
        .collect();
    assert_eq!(settled, [(never_written.0.clone(), false), (written.0.clone(), true)]);
    let summary = logs.iter().find(|l| l["message"] == "run finished").unwrap();
    assert_eq!(summary["records_skipped"].as_u64().unwrap() as usize, written.1.len());

    let mut ids = ids_of(&lines_under(&objects(&archive), "events/"));
    ids.sort();
    assert_eq!(
        ids,
        (0..10_000).collect::<Vec<u64>>(),
        "a record is missing or duplicated"
    );
}
