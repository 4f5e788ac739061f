//! End-to-end: hostile records through the processors, which see a
//! source's records before any check does (issue #18). A jq program that a
//! record sends into endless recursion once aborted the whole process (and
//! again at every restart: a stuck stream); one that a record sends into an
//! endless loop stalled it. Now each such record fails alone, with its
//! code, and every other record is archived once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::*;

const CONFIG: &str = r#"name = "hostile"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 4
interval_seconds = 60
[[processors]]
type = "jq"
query = '''
if .hostile == "loop" then last(range(1e18))
elif .hostile == "recurse" then (def f: 1 + f; f)
elif .hostile == "deep" then (reduce range(300000) as $i (0; [.]) | length)
elif .hostile == "many" then repeat(.)
else del(.pad) end
'''
[[processors]]
type = "metadata_extraction"
query = '{v: .v}'
[dynamic_partitioning]
enabled = true
[destination]
type = "local"
path = "archive"
prefix = "v=!{partitionKeyFromQuery:v}/"
error_prefix = "errors/!{firehose:error-output-type}/"
[checkpoint]
path = "state"
"#;

/// Runs `spillway run` in `dir`; fails the test if it runs past `limit`
/// (a stalled pipeline) rather than hanging.
fn run_within(dir: &Path, limit: Duration) -> std::process::Output {
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config", "spillway.toml"])
        .current_dir(dir)
        .env("SPILLWAY_TEST_JQ_MS", "1500")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "spillway stalled: still running after {limit:?}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn records_that_crash_stall_or_flood_a_jq_program_fail_alone_and_the_rest_are_archived_once() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |id: usize| format!(r#"{{"id":{id},"v":"V{}","pad":"{}"}}"#, id % 3, "p".repeat(50)).into_bytes();
    // (line, the errorCode it must fail with; None: kept)
    let mut lines: Vec<(Vec<u8>, Option<&str>)> = Vec::new();
    let hostile: Vec<(Vec<u8>, &str)> = vec![
        (br#"{"id":-1,"hostile":"recurse"}"#.to_vec(), "Jq.Crashed"),
        (br#"{"id":-2,"hostile":"loop"}"#.to_vec(), "Jq.TimedOut"),
        // A value 300,000 deep, dropped: its recursive drop overflows the
        // stack (or, on a slow machine, the record runs out of time).
        (br#"{"id":-3,"hostile":"deep"}"#.to_vec(), "Jq.Crashed|Jq.TimedOut"),
        (br#"{"id":-4,"hostile":"many"}"#.to_vec(), "Jq.TooManyOutputs"),
        ("[".repeat(100_000).into_bytes(), "Jq.InvalidJson"),
        (b"\xff\xfe{\"id\":\x80}".to_vec(), "Jq.InvalidJson"),
        (
            format!(r#"{{"id":"{}"#, "x".repeat(15 << 20)).into_bytes(),
            "Jq.InvalidJson",
        ),
    ];
    let mut id = 0;
    for (line, code) in hostile {
        for _ in 0..40 {
            lines.push((ok(id), None));
            id += 1;
        }
        lines.push((line, Some(code)));
    }
    // A large record that is fine: 15 MiB in, kept without its pad.
    let large = format!(r#"{{"id":{id},"v":"big","pad":"{}"}}"#, "p".repeat(15 << 20));
    lines.push((large.into_bytes(), None));
    for _ in 0..40 {
        id += 1;
        lines.push((ok(id), None));
    }
    let mut input = Vec::new();
    for (line, _) in &lines {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    write_config(dir.path(), CONFIG);

    let first = run_within(dir.path(), Duration::from_secs(300));
    assert!(
        first.status.success(),
        "exit {:?}\n{}",
        first.status,
        String::from_utf8_lossy(&first.stderr)
    );

    let objects = objects(&dir.path().join("archive"));
    let mut archived: Vec<Vec<u8>> = objects
        .iter()
        .filter(|(key, _)| key.starts_with("v="))
        .flat_map(|(_, body)| {
            body.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<Vec<u8>> = lines
        .iter()
        .filter(|(_, code)| code.is_none())
        .map(|(line, _)| {
            let mut value: serde_json::Value = serde_json::from_slice(line).unwrap();
            value.as_object_mut().unwrap().remove("pad");
            serde_json::to_vec(&value).unwrap()
        })
        .collect();
    archived.sort();
    expected.sort();
    assert_same_records(&archived, &expected, "kept records, each once");

    let mut failed: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for line in lines_under(&objects, "errors/processing-failed/") {
        let error: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        let code = error["errorCode"].as_str().unwrap().to_owned();
        assert!(failed.insert(raw, code).is_none(), "a record failed twice");
    }
    let expected_failed: BTreeMap<Vec<u8>, String> = lines
        .iter()
        .filter_map(|(line, code)| code.map(|code| (line.clone(), code.to_owned())))
        .collect();
    assert_eq!(
        failed.len(),
        expected_failed.len(),
        "every hostile record in processing-failed"
    );
    for (raw, code) in &expected_failed {
        let found = failed.get(raw).map(String::as_str).unwrap_or("none");
        assert!(
            code.split('|').any(|code| code == found),
            "record {:?} failed with {found}, not {code}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
    }

    // Checkpointed past all of them: a second run writes nothing.
    let second = run_within(dir.path(), Duration::from_secs(120));
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(
        objects.len(),
        support::objects(&dir.path().join("archive")).len(),
        "a second run wrote"
    );
}

/// The workers' process ids whose parent is `parent`.
fn workers_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent && cmdline.windows(9).any(|w| w == b"jq-worker") {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_worker_stuck_in_an_endless_program_dies_with_a_killed_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spillway.toml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("events.ndjson"), b"{\"id\":1,\"hostile\":\"loop\"}\n").unwrap();
    let mut child = spillway()
        .args(["run", "--config", "spillway.toml"])
        .current_dir(dir.path())
        .env("SPILLWAY_TEST_JQ_MS", "60000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let workers = loop {
        let workers = workers_of(child.id());
        if !workers.is_empty() {
            break workers;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no jq worker started");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the worker get into the loop, then kill the pipeline outright.
    std::thread::sleep(Duration::from_millis(500));
    send_signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let killed = Instant::now();
    while workers.iter().any(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
        // A zombie is reaped by init quickly; a live orphan would spin on.
        let alive = workers.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
                .unwrap_or(false)
        });
        if !alive {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "a jq worker outlived the pipeline: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The archive source's `filter` runs its program where the `jq` processor
/// does: a record that sends it into endless recursion (which once aborted
/// the whole replay, and every restart with it) is refused alone with
/// `Jq.Crashed`, and every other record is read again once.
#[test]
fn a_record_that_crashes_the_archive_filter_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..300)
        .map(|id| match id {
            150 => format!(r#"{{"id":{id},"hostile":"recurse"}}"#),
            _ => format!(r#"{{"id":{id},"keep":{}}}"#, id % 2 == 0),
        })
        .collect();
    std::fs::write(dir.path().join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    // An archive of envelope lines, as spillway writes one.
    let archive = "name = \"archive\"\n[source]\ntype = \"file\"\npath = \"events.ndjson\"\n[format]\ntype = \"json_lines\"\nenvelope = true\n[destination]\ntype = \"local\"\npath = \"first\"\nprefix = \"events/\"\n[checkpoint]\npath = \"state-first\"\n";
    let output = run(dir.path(), &write_config(dir.path(), archive));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let replay = "name = \"replay\"\n[source]\ntype = \"archive\"\npath = \"first\"\nprefix = \"events/\"\nfilter = '''\nif .hostile == \"recurse\" then (def f: 1 + f; f) else .keep end\n'''\n[destination]\ntype = \"local\"\npath = \"second\"\nerror_prefix = \"errors/!{firehose:error-output-type}/\"\n[checkpoint]\npath = \"state-second\"\n";
    let config = write_config(dir.path(), replay);
    let output = spillway()
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("SPILLWAY_TEST_JQ_MS", "1500")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "exit {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let objects = objects(&dir.path().join("second"));
    let mut read: Vec<u64> = objects
        .iter()
        .filter(|(key, _)| !key.starts_with("errors/"))
        .flat_map(|(_, body)| {
            body.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .map(|line| {
            serde_json::from_slice::<serde_json::Value>(&line).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    read.sort();
    let expected: Vec<u64> = (0..300).filter(|id| id % 2 == 0 && *id != 150).collect();
    assert_eq!(read, expected, "the kept records, each once");
    let refused = lines_under(&objects, "errors/processing-failed/");
    assert_eq!(refused.len(), 1, "one refused record");
    let error: serde_json::Value = serde_json::from_slice(&refused[0]).unwrap();
    assert_eq!(error["errorCode"], "Jq.Crashed", "{error}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(error["rawData"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, lines[150].as_bytes());
}
