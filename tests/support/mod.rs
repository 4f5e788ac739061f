//! Helpers for tests that drive the real `spillway` binary.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod http_receiver;
pub mod kinesis;
pub mod lambda_server;
pub mod metrics;
pub mod moto;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use spillway_destinations::Compression;

pub fn spillway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
    command
        .env_remove("SPILLWAY_LOG")
        .env_remove("SPILLWAY_TEST_INTERVAL_MS")
        .env_remove("SPILLWAY_TEST_RETRY_MS");
    command
}

/// Runs `spillway run` with JSON logs in `dir`, to completion.
pub fn run(dir: &Path, config: &Path) -> Output {
    spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running spillway")
}

/// Starts `spillway run` with JSON logs in `dir`, buffers flushed every
/// `interval_ms` (the test hook), stderr piped for [`LogWatch`].
pub fn spawn_run(dir: &Path, config: &Path, interval_ms: u64) -> std::process::Child {
    spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("SPILLWAY_TEST_INTERVAL_MS", interval_ms.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting spillway")
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("spillway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every object below `root` (relative key → decompressed bytes), skipping
/// hidden files.
pub fn objects(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    collect(root, root, &mut found);
    found
}

fn collect(root: &Path, dir: &Path, found: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, found);
            continue;
        }
        let codec = match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("snappy") => Compression::Snappy,
            Some("zst") => Compression::Zstd,
            Some("zip") => Compression::Zip,
            _ => Compression::None,
        };
        let bytes = codec.decompress(&std::fs::read(&path).unwrap()).unwrap();
        let key = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        found.insert(key, bytes);
    }
}

/// The lines of every object whose key starts with `prefix`.
pub fn lines_under(objects: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<Vec<u8>> {
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

/// Asserts equal record lists without printing megabytes: the counts, then
/// the index of the first record that differs.
pub fn assert_same_records(found: &[Vec<u8>], expected: &[Vec<u8>], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: record count");
    let first_difference = found.iter().zip(expected).position(|(f, e)| f != e);
    assert_eq!(first_difference, None, "{what}: first differing record");
}

/// The JSON log lines of a run's standard error.
pub fn logs(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// `(output, reason)` of each "flushed" log line, in order.
pub fn flushes(logs: &[serde_json::Value]) -> Vec<(String, String)> {
    logs.iter()
        .filter(|l| l["message"] == "flushed")
        .map(|l| {
            (
                l["output"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Reads a child's standard error line by line on a thread, so a test can
/// wait for a given log line while the child runs.
pub struct LogWatch {
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LogWatch {
    pub fn new(child: &mut Child) -> Self {
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        if self.seen.iter().any(|l| l.contains(needle)) {
            return true;
        }
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Collects what is left once the child has exited.
    pub fn finish(mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen
    }
}

pub fn send_signal(child: &Child, signal: i32) {
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill failed");
}

/// Every `.parquet` object below `root`, read with pyarrow
/// (`tests/peers/parquet_dump.py`), in key order. Each row also has `_original`: its
/// record as `spillway originals` reads it back (from `_spillway_data`, or
/// rebuilt from the row where that is null).
pub fn read_parquet(root: &Path) -> Vec<serde_json::Value> {
    let files: Vec<PathBuf> = objects(root)
        .keys()
        .filter(|k| k.ends_with(".parquet"))
        .map(|k| root.join(k))
        .collect();
    assert!(!files.is_empty(), "no parquet object under {}", root.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/parquet_dump.py");
    let output = std::process::Command::new(kinesis::python())
        .arg(script)
        .args(&files)
        .output()
        .expect("running the test venv's python");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut files = dump["files"].as_array().unwrap().clone();
    for file in &mut files {
        let path = file["path"].as_str().unwrap().to_owned();
        let originals = originals(Path::new(&path));
        let rows = file["rows"].as_array_mut().unwrap();
        assert_eq!(originals.len(), rows.len(), "{path}: one record per row");
        for (row, original) in rows.iter_mut().zip(originals) {
            assert_eq!(
                row["_spillway_sequence_number"], original["sequence_number"],
                "{path}: records in row order"
            );
            let data = original["data"].clone();
            let stored = &row["_spillway_data"];
            assert!(
                stored.is_null() || *stored == data,
                "{path}: _spillway_data is the record or null"
            );
            row["_original"] = data;
        }
    }
    files
}

/// The records of an archived Parquet file as `spillway originals` prints
/// them: `{source, sequence_number, ..., data}`, in row order.
pub fn originals(file: &Path) -> Vec<serde_json::Value> {
    let output = spillway()
        .arg("originals")
        .arg(file)
        .output()
        .expect("running spillway originals");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}
