//! End-to-end: the real binary archiving NDJSON files as Parquet, read back
//! with pyarrow (`SPILLWAY_TEST_PYTHON`, set up by scripts/test.sh).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

/// The error records under `errors/format-conversion-failed/`, by sequence
/// number.
fn conversion_errors(root: &Path) -> BTreeMap<u64, Value> {
    lines_under(&objects(root), "errors/format-conversion-failed/")
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_slice(line).unwrap();
            (record["sequenceNumber"].as_str().unwrap().parse().unwrap(), record)
        })
        .collect()
}

const SCHEMA: &str = r#"{"columns": [
  {"name": "id", "type": "int64"},
  {"name": "name", "type": "string"},
  {"name": "price", "type": "decimal(10,2)"},
  {"name": "score", "type": "double"},
  {"name": "active", "type": "boolean"},
  {"name": "ts", "type": "timestamp(ms)"},
  {"name": "day", "type": "date"},
  {"name": "tags", "type": "list<string>"},
  {"name": "user", "type": "struct<id:string,age:int32>"},
  {"name": "attrs", "type": "map<string,int64>"}
]}"#;

fn parquet_config(schema: Option<&str>, extra: &str) -> String {
    let schema = schema.map(|s| format!("schema = \"{s}\"\n")).unwrap_or_default();
    format!(
        r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 1
interval_seconds = 60
[format]
type = "parquet"
{schema}{extra}
[destination]
type = "local"
path = "archive"
prefix = "events/"
[checkpoint]
path = "state"
"#
    )
}

/// What a line is: valid (with the values pyarrow must read), or refused
/// with an error code and a word its message must contain.
enum Expect {
    Valid(Value),
    Refused(&'static str, &'static str),
}

/// 2026-11-01T00:00:00Z in milliseconds.
const T0: i64 = 1_793_491_200_000;

fn line(id: i64) -> (String, Expect) {
    match id % 50 {
        7 => (
            format!(r#"{{"id":{id},"price":"abc"}}"#),
            Expect::Refused("Parquet.TypeMismatch", "column \"price\""),
        ),
        17 => (
            format!(r#"{{"id":"x{id}","name":"n"}}"#),
            Expect::Refused("Parquet.TypeMismatch", "column \"id\""),
        ),
        27 => (
            format!(r#"{{"id":{id},"user":"flat"}}"#),
            Expect::Refused("Parquet.NestingMismatch", "column \"user\""),
        ),
        37 => (
            format!(r#"{{"id":{id},"tags":{{"a":1}}}}"#),
            Expect::Refused("Parquet.NestingMismatch", "column \"tags\""),
        ),
        47 => (
            format!(r#"{{"id":{id},"user":{{"id":"u","age":{{"years":3}}}}}}"#),
            Expect::Refused("Parquet.NestingMismatch", "column \"user.age\""),
        ),
        48 => (
            format!(r#"{{"id":{id},"name":"#),
            Expect::Refused("Record.MalformedJson", "JSON"),
        ),
        _ => {
            let ms = T0 + id * 1000;
            // Each timestamp form in turn.
            let ts = match id % 4 {
                0 => json!(format!("2026-11-01T00:00:00Z")),
                1 => json!(ms / 1000),
                2 => json!(ms),
                _ => json!("2026-11-01 02:00:00.250"),
            };
            let want_ts = match id % 4 {
                0 => T0,
                1 | 2 => ms,
                _ => T0 + 2 * 3_600_000 + 250,
            };
            let cents = id * 7 % 100_000;
            let text = json!({
                "ID": id,
                "name": format!("n-{id}-\u{e9}\"q\""),
                "price": format!("{}.{:02}", cents / 100, cents % 100),
                "score": id as f64 / 8.0,
                "active": id % 3 == 0,
                "ts": ts,
                "day": "2026-11-01",
                "tags": (0..id % 3).map(|i| format!("t{i}")).collect::<Vec<_>>(),
                "user": {"id": format!("u{}", id % 17), "age": id % 90, "ignored": [1, 2]},
                "attrs": {"a": id, "b": -id},
                "not_in_schema": {"deep": [1]},
            })
            .to_string();
            let want = json!({
                "id": id,
                "name": format!("n-{id}-\u{e9}\"q\""),
                "price": format!("{}.{:02}", cents / 100, cents % 100),
                "score": id as f64 / 8.0,
                "active": id % 3 == 0,
                "ts": want_ts,
                "day": "2026-11-01",
                "tags": (0..id % 3).map(|i| format!("t{i}")).collect::<Vec<_>>(),
                "user": {"id": format!("u{}", id % 17), "age": id % 90},
                "attrs": [["a", id], ["b", -id]],
            });
            (text, Expect::Valid(want))
        }
    }
}

#[test]
fn given_schema_every_valid_record_reads_back_with_its_types_and_position_and_bad_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), SCHEMA).unwrap();
    let mut input = Vec::new();
    let mut lines = Vec::new();
    for id in 0..6000 {
        let (text, expect) = line(id);
        lines.push((input.len() as u64, text.clone(), expect));
        input.extend_from_slice(text.as_bytes());
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(dir.path(), &parquet_config(Some("schema.json"), ""));

    let started = chrono::Utc::now().timestamp_millis();
    let output = run(dir.path(), &config);
    let ended = chrono::Utc::now().timestamp_millis();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let root = dir.path().join("archive");
    let files = read_parquet(&root);
    assert!(files.len() >= 2, "a 1 MiB buffer cuts this input into several objects");
    let want_types = json!({
        "id": "int64", "name": "string", "price": "decimal128(10, 2)", "score": "double",
        "active": "bool", "ts": "timestamp[ms, tz=UTC]", "day": "date32[day]",
        "tags": "list<element: string>", "user": "struct<id: string, age: int32>",
        "attrs": "map<string, int64 ('attrs')>",
        "_spillway_source": "string", "_spillway_sequence_number": "string",
        "_spillway_subsequence_number": "int64", "_spillway_output_index": "int64",
        "_spillway_partition_key": "string",
        "_spillway_arrival": "timestamp[ms, tz=UTC]", "_spillway_data": "string",
        "_spillway_nulls": "string",
    });
    let mut rows: BTreeMap<u64, Value> = BTreeMap::new();
    for file in &files {
        assert_eq!(file["schema"], want_types, "{}", file["path"]);
        assert_eq!(file["compression"], json!(["SNAPPY"]));
        assert_eq!(
            file["physical_types"]["ts"], "INT64",
            "timestamps are int64, never int96"
        );
        assert!(file["created_by"].as_str().unwrap().starts_with("spillway"));
        for row in file["rows"].as_array().unwrap() {
            let offset: u64 = row["_spillway_sequence_number"].as_str().unwrap().parse().unwrap();
            assert!(rows.insert(offset, row.clone()).is_none(), "record at {offset} twice");
        }
    }

    let errors = conversion_errors(&root);
    let source_id = spillway::source::file_source_id(&dir.path().join("events.ndjson"));
    let mut valid = 0;
    for (offset, text, expect) in &lines {
        match expect {
            Expect::Valid(want) => {
                valid += 1;
                let row = rows
                    .get(offset)
                    .unwrap_or_else(|| panic!("record at {offset} missing: {text}"));
                for (column, value) in want.as_object().unwrap() {
                    assert_eq!(&row[column], value, "column {column} of {text}");
                }
                assert_eq!(row["_spillway_source"], source_id.as_str());
                assert_eq!(row["_spillway_subsequence_number"], 0);
                assert_eq!(row["_spillway_partition_key"], Value::Null);
                let arrival = row["_spillway_arrival"].as_i64().unwrap();
                assert!(
                    (started..=ended).contains(&arrival),
                    "{arrival} not in {started}..={ended}"
                );
                assert_eq!(row["_original"], *text, "original bytes");
                assert!(!errors.contains_key(offset));
            }
            Expect::Refused(code, word) => {
                assert!(
                    !rows.contains_key(offset),
                    "refused record at {offset} is in the data: {text}"
                );
                let error = errors
                    .get(offset)
                    .unwrap_or_else(|| panic!("no error record for {text}"));
                assert_eq!(error["errorCode"], *code, "{text}: {error}");
                let message = error["errorMessage"].as_str().unwrap();
                assert!(message.contains(word), "{text}: {message}");
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(error["rawData"].as_str().unwrap())
                    .unwrap();
                assert_eq!(raw, text.as_bytes());
            }
        }
    }
    assert_eq!(rows.len(), valid, "only the valid records are data");
    assert_eq!(
        errors.len(),
        lines.len() - valid,
        "every refused record is an error record"
    );
    assert!(
        valid > 5000 && errors.len() > 600,
        "{valid} valid, {} errors",
        errors.len()
    );
}

/// The project's shared test data, copied into `tests/data/` so that a
/// clean clone has it.
fn shared_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn inferred_mode_archives_every_twitter_status() {
    let twitter: Value = serde_json::from_slice(&std::fs::read(shared_data("twitter.json")).unwrap()).unwrap();
    let statuses = twitter["statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 100);
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for status in statuses {
        input.push_str(&status.to_string());
        input.push('\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(dir.path(), &parquet_config(None, ""));
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let root = dir.path().join("archive");
    assert!(conversion_errors(&root).is_empty(), "no status is refused");
    let files = read_parquet(&root);
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert!(
        file["schema"]["user"].as_str().unwrap().starts_with("struct<"),
        "{}",
        file["schema"]
    );
    assert!(
        file["schema"]["entities"].as_str().unwrap().contains("hashtags: list<"),
        "{}",
        file["schema"]
    );
    let rows = file["rows"].as_array().unwrap();
    let got: BTreeSet<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let want: BTreeSet<u64> = statuses.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(got, want, "every status, by id");
    for (row, status) in rows.iter().zip(statuses) {
        assert_eq!(row["id"], status["id"]);
        assert_eq!(row["text"], status["text"]);
        assert_eq!(row["user"]["screen_name"], status["user"]["screen_name"]);
        assert_eq!(row["_original"], status.to_string());
    }
}

#[test]
fn the_parquet_example_config_archives_the_shipped_sample() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for path in ["data/clickstream.ndjson", "config/schemas/clickstream.json"] {
        std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
        std::fs::copy(root.join(path), dir.path().join(path)).unwrap();
    }
    let output = run(dir.path(), &root.join("config/parquet-local.toml"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let archive = dir.path().join("archive");
    let rows: Vec<Value> = read_parquet(&archive)
        .iter()
        .flat_map(|f| f["rows"].as_array().unwrap().clone())
        .collect();
    assert_eq!(rows.len(), 1997);
    assert_eq!(rows[0]["event_id"], "evt-000000");
    assert_eq!(rows[0]["ts"], T0);
    assert_eq!(rows[0]["user"], json!({"id": "u166", "country": "US"}));
    assert_eq!(rows[0]["amount"], "247.28");
    assert_eq!(rows[1]["amount"], Value::Null);
    assert_eq!(lines_under(&objects(&archive), "errors/").len(), 3);
}

#[test]
fn validate_refuses_parquet_with_whole_object_compression() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &parquet_config(None, "").replace("prefix = \"events/\"", "prefix = \"events/\"\ncompression = \"gzip\""),
    );
    let output = spillway()
        .args(["validate", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("destination.compression: \"gzip\" does not apply to format.type = \"parquet\""),
        "{stderr}"
    );
}

/// `spillway originals` gives back every archived record byte for byte,
/// stored or rebuilt, and refuses files it cannot read them from.
#[test]
fn originals_prints_every_archived_record_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Compact records (rebuilt from their rows, a null member from
    // `_spillway_nulls`) and others (stored).
    let mut input = String::new();
    for id in 0..500 {
        let line = match id % 4 {
            0 => format!(r#"{{"id":{id},"name":"n{id}","score":{}.5,"tags":["a","b"]}}"#, id),
            1 => format!(r#"{{"id":{id}, "name":"spaced"}}"#),
            2 => format!(r#"{{"id":{id},"name":null}}"#),
            _ => format!(r#"{{"name":"\u00e9{id}","id":{id}}}"#),
        };
        input.push_str(&line);
        input.push('\n');
    }
    std::fs::write(dir.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(dir.path(), &parquet_config(None, ""));
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let files = read_parquet(&dir.path().join("archive"));
    let rows: Vec<&Value> = files.iter().flat_map(|f| f["rows"].as_array().unwrap()).collect();
    let rebuilt = rows.iter().filter(|r| r["_spillway_data"].is_null()).count();
    assert_eq!(rebuilt, 250, "the compact records are rebuilt, the others stored");
    for row in &rows {
        let id = row["id"].as_i64().unwrap();
        let nulls = if id % 4 == 2 { json!("1") } else { Value::Null };
        assert_eq!(row["_spillway_nulls"], nulls, "record {id}");
    }

    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect();
    let output = spillway()
        .arg("originals")
        .arg("--data-only")
        .args(&paths)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        input,
        "every record, in order"
    );

    // A reader that stops early (`| head -1`) is not an error.
    let mut child = spillway()
        .arg("originals")
        .args(&paths)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));

    // Not Parquet; Parquet without `_spillway_data`.
    std::fs::write(dir.path().join("not.parquet"), "{}").unwrap();
    let output = spillway()
        .arg("originals")
        .arg(dir.path().join("not.parquet"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a readable Parquet file"));
    let bare = tempfile::tempdir().unwrap();
    std::fs::write(bare.path().join("events.ndjson"), &input).unwrap();
    let config = write_config(bare.path(), &parquet_config(None, "keep_original = false"));
    assert!(run(bare.path(), &config).status.success());
    let file = objects(&bare.path().join("archive"))
        .into_keys()
        .find(|k| k.ends_with(".parquet"))
        .unwrap();
    let output = spillway()
        .arg("originals")
        .arg(bare.path().join("archive").join(file))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keep_original = false"), "{stderr}");
}

/// What the table readers must find for one input record.
enum Drift {
    /// In the data, with these values (`Null` for a missing key).
    Row(Value),
    /// In the error output with `Parquet.TypeMismatch`.
    Mismatch,
}

/// Four phases of about 1.2 MiB each (so several 1 MiB buffers), whose
/// shape drifts: `v` an integer, then sometimes a string (refused) or a
/// string of digits (converted), new keys (`w`, then `x`), a struct that
/// gains a field (`user.age`), a string key that then holds numbers
/// (`pad`, kept as their text) and keys that disappear. The first two
/// phases are archived by one run, the last two by a second run that
/// continues from the checkpoint.
fn drifting_phase(phase: usize, ids: std::ops::Range<i64>) -> Vec<(String, Drift)> {
    let pad = "p".repeat(200);
    ids.map(|n| match phase {
        0 => (
            json!({"id": n, "v": n, "user": {"name": "a"}, "pad": pad}).to_string(),
            Drift::Row(json!({"id": n, "v": n, "pad": pad, "w": null, "x": null, "user": {"name": "a", "age": null}})),
        ),
        1 if n % 5 == 0 => (
            json!({"id": n, "v": format!("s{n}"), "w": true, "pad": pad}).to_string(),
            Drift::Mismatch,
        ),
        1 if n % 5 == 1 => (
            json!({"id": n, "v": n.to_string(), "w": true, "pad": pad}).to_string(),
            Drift::Row(json!({"id": n, "v": n, "pad": pad, "w": true, "x": null, "user": null})),
        ),
        1 => (
            json!({"id": n, "v": n, "w": false, "pad": pad}).to_string(),
            Drift::Row(json!({"id": n, "v": n, "pad": pad, "w": false, "x": null, "user": null})),
        ),
        // After the restart, the first records drift at once: a run that
        // inferred afresh would make `v` a string column.
        2 if n % 5 == 0 => (
            json!({"id": n, "v": format!("c{n}"), "x": 1.5, "pad": pad}).to_string(),
            Drift::Mismatch,
        ),
        2 => (
            json!({"x": 1.5, "user": {"age": n, "name": "c"}, "id": n, "v": n, "pad": pad}).to_string(),
            Drift::Row(json!({"id": n, "v": n, "pad": pad, "w": null, "x": 1.5, "user": {"name": "c", "age": n}})),
        ),
        _ => (
            json!({"id": n, "pad": n}).to_string(),
            Drift::Row(json!({"id": n, "v": null, "pad": n.to_string(), "w": null, "x": null, "user": null})),
        ),
    })
    .collect()
}

/// Issue #20: with an inferred schema, a prefix archived across buffers,
/// drift and a restart reads as one table in pyarrow and DuckDB, with
/// every record once, and every record that did not fit in the error
/// output.
#[test]
fn an_inferred_schema_prefix_reads_as_one_table_across_buffers_drift_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Id → expectation.
    let mut expected: BTreeMap<i64, Drift> = BTreeMap::new();
    // The first run archives the first two phases from one file, the second
    // (same pipeline, same checkpoint) the last two from another.
    for (file, phases) in [("events.ndjson", [0, 1]), ("more.ndjson", [2, 3])] {
        let mut input = Vec::new();
        for phase in phases {
            let ids = phase as i64 * 5000..(phase as i64 + 1) * 5000;
            for (line, drift) in drifting_phase(phase, ids) {
                let id = serde_json::from_str::<Value>(&line).unwrap()["id"].as_i64().unwrap();
                expected.insert(id, drift);
                input.extend_from_slice(line.as_bytes());
                input.push(b'\n');
            }
        }
        std::fs::write(dir.path().join(file), &input).unwrap();
        let paths = match file {
            "events.ndjson" => r#""events.ndjson""#,
            _ => r#"["events.ndjson", "more.ndjson"]"#,
        };
        let config = parquet_config(None, "").replace(r#"path = "events.ndjson""#, &format!("path = {paths}"));
        let output = run(dir.path(), &write_config(dir.path(), &config));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let root = dir.path().join("archive");
    let all = objects(&root);
    let data_files = all.keys().filter(|k| k.ends_with(".parquet")).count();
    assert!(data_files >= 4, "several buffers: {:?}", all.keys().collect::<Vec<_>>());

    // Every record that did not fit is in the error output, with its code.
    let mut refused = BTreeSet::new();
    for line in lines_under(&all, "errors/format-conversion-failed/") {
        let error: Value = serde_json::from_slice(&line).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(error["rawData"].as_str().unwrap())
            .unwrap();
        let id = serde_json::from_slice::<Value>(&raw).unwrap()["id"].as_i64().unwrap();
        assert!(matches!(expected[&id], Drift::Mismatch), "record {id} refused: {error}");
        assert_eq!(error["errorCode"], "Parquet.TypeMismatch", "{error}");
        assert!(refused.insert(id), "record {id} refused twice");
    }
    let mismatches = expected.values().filter(|d| matches!(d, Drift::Mismatch)).count();
    assert_eq!(refused.len(), mismatches, "every mismatch is an error record");
    let want: BTreeMap<i64, &Value> = expected
        .iter()
        .filter_map(|(id, drift)| match drift {
            Drift::Row(row) => Some((*id, row)),
            Drift::Mismatch => None,
        })
        .collect();

    // The readers, on the data prefix, as one table.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/read_table.py");
    let output = std::process::Command::new(support::kinesis::python())
        .arg(script)
        .arg(root.join("events"))
        .output()
        .expect("running the test venv's python");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (reader, columns) in [
        ("pyarrow", &["id", "v", "pad"][..]),
        ("pyarrow_union", &["id", "v", "pad", "w", "x", "user"][..]),
        ("duckdb", &["id", "v", "pad"][..]),
        ("duckdb_union", &["id", "v", "pad", "w", "x", "user"][..]),
    ] {
        let table = &read[reader];
        assert!(table.get("error").is_none(), "{reader}: {}", table["error"]);
        let mut seen: BTreeMap<i64, &Value> = BTreeMap::new();
        for row in table["rows"].as_array().unwrap() {
            let id = row["id"].as_i64().unwrap();
            assert!(seen.insert(id, row).is_none(), "{reader}: record {id} twice");
        }
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{reader}: every record that fits, once"
        );
        for (id, row) in &seen {
            for column in columns {
                assert_eq!(row[column], want[id][column], "{reader}: {column} of record {id}");
            }
        }
    }

    // The table's versions: each holds the one before, as its first
    // columns, with the same types.
    let mut versions: Vec<Value> = Vec::new();
    while let Some(text) = all.get(&format!("_spillway/schemas/clicks/{}.json", versions.len() + 1)) {
        versions.push(serde_json::from_slice(text).unwrap());
    }
    assert!(versions.len() >= 3, "{versions:?}");
    for pair in versions.windows(2) {
        let (before, after) = (
            pair[0]["columns"].as_array().unwrap(),
            pair[1]["columns"].as_array().unwrap(),
        );
        assert!(after.len() >= before.len());
        for (old, new) in before.iter().zip(after) {
            assert_eq!(old["name"], new["name"]);
            assert_eq!(old["type"], new["type"]);
        }
    }
    let last: Vec<String> = versions.last().unwrap()["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        last,
        [
            "id:int64",
            "v:int64",
            "user:struct",
            "pad:string",
            "w:boolean",
            "x:double"
        ]
    );
    assert_eq!(
        versions.last().unwrap()["columns"][2]["fields"],
        json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int64"}])
    );
}

/// Regression (issue #20, point 4): a run without the table schema in its
/// checkpoint (lost, or another instance's) inferred afresh, so `v`, an
/// int64 column of the published version 1, became a string column of a
/// second "version 1" whose schema object was never written (create-only),
/// and the prefix no longer read as one table.
#[test]
fn a_lost_checkpoint_continues_the_published_table_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.ndjson"),
        "{\"id\":1,\"v\":1}\n{\"id\":2,\"v\":2}\n",
    )
    .unwrap();
    let first = run(dir.path(), &write_config(dir.path(), &parquet_config(None, "")));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("more.ndjson"),
        "{\"id\":3,\"v\":\"s3\"}\n{\"id\":4,\"v\":4,\"w\":true}\n",
    )
    .unwrap();
    let config = parquet_config(None, "").replace("events.ndjson", "more.ndjson");
    let second = run(dir.path(), &write_config(dir.path(), &config));
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));

    let root = dir.path().join("archive");
    let errors = conversion_errors(&root);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors.values().next().unwrap()["errorCode"], "Parquet.TypeMismatch");
    let files = read_parquet(&root);
    assert_eq!(files.len(), 2);
    let schema_of = |file: &Value| -> Vec<String> {
        file["schema"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.starts_with("_spillway_"))
            .map(|(name, ty)| format!("{name}:{}", ty.as_str().unwrap()))
            .collect()
    };
    let (old, new) = if files[0]["rows"][0]["id"] == 1 {
        (&files[0], &files[1])
    } else {
        (&files[1], &files[0])
    };
    assert_eq!(schema_of(old), ["id:int64", "v:int64"]);
    assert_eq!(schema_of(new), ["id:int64", "v:int64", "w:bool"]);
    let version_2: Value =
        serde_json::from_slice(&std::fs::read(root.join("_spillway/schemas/clicks/2.json")).unwrap()).unwrap();
    assert_eq!(version_2["columns"][2], json!({"name": "w", "type": "boolean"}));
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/clicks.checkpoint.json")).unwrap()).unwrap();
    assert_eq!(checkpoint["table_schema"]["version"], 2);
}
