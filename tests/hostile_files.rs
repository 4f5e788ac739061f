//! End-to-end, the real binary on hostile files (issue #16): names that
//! sanitise alike, checkpoints that do not fit their file, lines over the
//! 16 MiB cut, and temporary files left by a `kill -9`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use support::*;

/// A configuration reading `paths` (a TOML array) into `archive/`.
fn config(paths: &[&str]) -> String {
    let paths = serde_json::to_string(paths).unwrap();
    format!(
        r#"name = "clicks"
[source]
type = "file"
path = {paths}
[buffer]
size_mb = 1
interval_seconds = 60
[destination]
type = "local"
path = "archive"
prefix = "events/"
error_prefix = "errors/!{{firehose:error-output-type}}/"
[checkpoint]
path = "state"
"#
    )
}

/// Writes `count` records naming their file, returns them.
fn write_records(dir: &Path, name: &str, count: usize) -> Vec<String> {
    let records: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"file":"{name}","i":{i},"pad":"{}"}}"#, "p".repeat(i % 200)))
        .collect();
    std::fs::write(dir.join(name), records.join("\n") + "\n").unwrap();
    records
}

/// How many times each archived data record occurs.
fn archived_counts(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines_under(&objects(&dir.join("archive")), "events/") {
        *counts.entry(String::from_utf8(line).unwrap()).or_insert(0) += 1;
    }
    counts
}

fn assert_each_once(dir: &Path, expected: &[String]) {
    let counts = archived_counts(dir);
    let missing = expected.iter().filter(|r| !counts.contains_key(*r)).count();
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).map(|(r, _)| r).collect();
    assert_eq!(missing, 0, "{missing} of {} records lost", expected.len());
    assert!(repeated.is_empty(), "{} records archived twice", repeated.len());
    assert_eq!(counts.len(), expected.len());
}

#[test]
fn files_whose_names_sanitise_alike_are_each_archived_once_in_one_run() {
    // `日志` and `记录` were both `file-__`, `a b` and `a_b` both `file-a_b`:
    // the second object of each pair took the first one's key, so its
    // records counted as delivered and were lost.
    let dir = tempfile::tempdir().unwrap();
    let names = ["日志", "记录", "a b", "a_b"];
    let mut expected = Vec::new();
    for name in names {
        expected.extend(write_records(dir.path(), name, 3_000));
    }
    let output = run(dir.path(), &write_config(dir.path(), &config(&names)));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_each_once(dir.path(), &expected);
}

#[test]
fn a_later_file_whose_name_sanitises_alike_is_archived_too() {
    // A second run was told that `a_b` was "archived whole by an earlier
    // run": the checkpoint of `a b`.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (first, second) in [("a b", "a_b"), ("日志", "记录")] {
        expected.extend(write_records(dir.path(), first, 2_000));
        let output = run(dir.path(), &write_config(dir.path(), &config(&[first])));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        expected.extend(write_records(dir.path(), second, 2_000));
        let output = run(dir.path(), &write_config(dir.path(), &config(&[second])));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("archived whole by an earlier run"),
            "{second} was taken for {first}"
        );
    }
    assert_each_once(dir.path(), &expected);
}

#[test]
fn a_checkpoint_that_is_not_a_line_start_is_refused_in_one_line() {
    // A well-formed checkpoint pointing into the middle of a line was
    // trusted: the rest of that line became a record, and 2,999 lines
    // were archived twice.
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), "events.ndjson", 3_000);
    let config_path = write_config(dir.path(), &config(&["events.ndjson"]));
    assert!(run(dir.path(), &config_path).status.success());
    let before = objects(&dir.path().join("archive"));

    let state_path = dir.path().join("state/clicks.checkpoint.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let id = spillway::source::file_source_id(&dir.path().join("events.ndjson"));
    let mid_line = records[0].len() as u64 + 1 + 5;
    state["sources"][id.as_str()] = serde_json::json!({
        "checkpoint": {"sequence_number": mid_line.to_string(), "subsequence_number": 0}
    });
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let output = run(dir.path(), &config_path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    let expected = format!(
        "error: source failed: cannot read events.ndjson: its checkpoint (offset {mid_line}) is not the start of a line"
    );
    assert!(last.starts_with(&expected), "{stderr}");
    assert_eq!(
        objects(&dir.path().join("archive")),
        before,
        "nothing was written from the mid-line checkpoint"
    );
}

#[test]
fn a_line_over_16_mib_is_cut_wherever_it_starts_with_a_warning() {
    // The cut only happened for a line starting at a 16 MiB boundary;
    // elsewhere the whole line was kept, without a warning.
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let first = r#"{"before":1}"#;
    let long = format!(r#"{{"blob":"{}"}}"#, "x".repeat(17 * MIB));
    let last = r#"{"after":2}"#;
    std::fs::write(dir.path().join("events.ndjson"), format!("{first}\n{long}\n{last}\n")).unwrap();
    let output = run(dir.path(), &write_config(dir.path(), &config(&["events.ndjson"])));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let offset = first.len() + 1;
    let warning = logs(&output.stderr)
        .into_iter()
        .find(|l| l["message"] == "line is too long; its first bytes go to the error output")
        .expect("no warning for the long line");
    assert_eq!(warning["offset"], offset);
    assert_eq!(warning["length"], long.len());
    assert_eq!(warning["kept"], 16 * MIB);
    assert_eq!(warning["path"], "events.ndjson");

    let objects = objects(&dir.path().join("archive"));
    let data: Vec<Vec<u8>> = lines_under(&objects, "events/");
    assert_eq!(data, [first.as_bytes(), last.as_bytes()]);
    let errors = lines_under(&objects, "errors/invalid-record/");
    assert_eq!(errors.len(), 1);
    let error: serde_json::Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(error["errorCode"], "Record.TooLarge");
    assert_eq!(error["sequenceNumber"], offset.to_string());
    let raw = base64::engine::general_purpose::STANDARD
        .decode(error["rawData"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw.len(), 16 * MIB, "the record is cut to 16 MiB");
    assert_eq!(raw[..], long.as_bytes()[..16 * MIB]);
}

/// The files under `root`, relative, skipping `skip` (a top directory).
fn files_under(root: &Path, skip: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, skip: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if relative == skip {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, skip, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, skip, &mut out);
    out
}

#[test]
fn kill_9_during_local_puts_leaves_no_temporary_file_under_the_prefix() {
    // `kill -9` during a put left partial `.…spillway-tmp-…` files beside
    // the objects, which a reader globbing the prefix took for objects.
    // Each round kills the run the moment a temporary file exists.
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<String> = (0..40_000)
        .map(|i| format!(r#"{{"i":{i},"pad":"{}"}}"#, "p".repeat(1_000)))
        .collect();
    std::fs::write(dir.path().join("events.ndjson"), records.join("\n") + "\n").unwrap();
    let config_path = write_config(dir.path(), &config(&["events.ndjson"]));
    let archive = dir.path().join("archive");
    let is_object = |file: &String| {
        let name = file.rsplit('/').next().unwrap();
        !name.starts_with('.') && name.ends_with(".jsonl") && !file.contains("spillway-tmp")
    };

    let mut kills = 0;
    for _round in 0..4 {
        let mut child = spillway()
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let killed = loop {
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                break false;
            }
            let temporary = files_under(&archive, "")
                .iter()
                .any(|f| f.contains("spillway-tmp") && !f.ends_with("probe"));
            if temporary {
                send_signal(&child, libc::SIGKILL);
                break true;
            }
        };
        child.wait().unwrap();
        kills += usize::from(killed);
        let strays: Vec<String> = files_under(&archive, ".spillway-tmp")
            .into_iter()
            .filter(|f| !is_object(f))
            .collect();
        assert!(strays.is_empty(), "not objects, under the prefixes: {strays:?}");
    }
    assert!(kills > 0, "no round caught a put in progress");

    let output = run(dir.path(), &config_path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_each_once(dir.path(), &records);
    let left: Vec<String> = files_under(&archive, "")
        .into_iter()
        .filter(|f| !is_object(f))
        .collect();
    assert!(left.is_empty(), "left after a clean run: {left:?}");
}
