//! End-to-end: the real binary given hostile JSON (issue #16). Records
//! nested too deep once overflowed the stack (exit 134, and again on every
//! restart, so the stream was stuck); records nested deep but below that
//! made Parquet files pyarrow and `spillway originals` could not read.
//! Parquet files are read with pyarrow (`SPILLWAY_TEST_PYTHON`, set up by
//! scripts/test.sh); `json_lines` needs no peer.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use support::*;

/// The deepest nesting spillway takes (the record counts one).
const MAX_DEPTH: usize = 32;

/// `{"<key>":...}` nesting `depth` deep in all: arrays, objects, or both in
/// turn.
fn nested(key: &str, depth: usize, kind: &str) -> String {
    let mut text = format!("{{\"{key}\":");
    for level in 1..depth {
        match (kind, level % 2) {
            ("arrays", _) | ("mixed", 0) => text.push('['),
            _ => text.push_str("{\"k\":"),
        }
    }
    text.push_str("\"bottom\"");
    for level in (1..depth).rev() {
        match (kind, level % 2) {
            ("arrays", _) | ("mixed", 0) => text.push(']'),
            _ => text.push('}'),
        }
    }
    text.push('}');
    text
}

fn config(format: &str) -> String {
    format!(
        r#"name = "hostile"
[source]
type = "file"
path = "events.ndjson"
[buffer]
size_mb = 4
interval_seconds = 60
{format}
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

/// Writes the lines as the input file; gives each line's byte offset (its
/// sequence number) with its text.
fn write_input(dir: &Path, lines: &[String]) -> Vec<(u64, String)> {
    let mut file = Vec::new();
    let mut offsets = Vec::new();
    for line in lines {
        offsets.push((file.len() as u64, line.clone()));
        file.extend_from_slice(line.as_bytes());
        file.push(b'\n');
    }
    std::fs::write(dir.join("events.ndjson"), file).unwrap();
    offsets
}

/// The error records under `errors/format-conversion-failed/`, by sequence
/// number: (errorCode, rawData decoded).
fn conversion_errors(root: &Path) -> BTreeMap<u64, (String, String)> {
    lines_under(&objects(root), "errors/format-conversion-failed/")
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_slice(line).unwrap();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(record["rawData"].as_str().unwrap())
                .unwrap();
            (
                record["sequenceNumber"].as_str().unwrap().parse().unwrap(),
                (
                    record["errorCode"].as_str().unwrap().to_owned(),
                    String::from_utf8(raw).unwrap(),
                ),
            )
        })
        .collect()
}

/// The archived data records, by sequence number: the lines of `json_lines`
/// objects, or the rows of Parquet objects as `spillway originals` reads
/// them (after pyarrow read the same files, see [`read_parquet`]).
fn data(root: &Path, parquet: bool) -> BTreeMap<u64, String> {
    if !parquet {
        // json_lines: the input's order is the archive's order; offsets are
        // matched by text by the caller.
        return lines_under(&objects(root), "events/")
            .into_iter()
            .enumerate()
            .map(|(i, line)| (i as u64, String::from_utf8(line).unwrap()))
            .collect();
    }
    let mut rows = BTreeMap::new();
    for file in read_parquet(&root.join("events")) {
        for row in file["rows"].as_array().unwrap() {
            let offset = row["_spillway_sequence_number"].as_str().unwrap().parse().unwrap();
            let original = row["_original"].as_str().unwrap().to_owned();
            assert!(rows.insert(offset, original).is_none(), "record at {offset} twice");
        }
    }
    rows
}

const MODES: [(&str, &str); 3] = [
    ("json_lines", ""),
    ("parquet, inferred schema", "[format]\ntype = \"parquet\""),
    (
        "parquet, schema file",
        "[format]\ntype = \"parquet\"\nschema = \"schema.json\"",
    ),
];

/// The issue's stack overflows: 100,000 deep (every mode), 1,000 deep
/// (inferred Parquet), and just past the limit. Each deep record is an
/// error record (`Record.TooDeep`), every other record is archived, the run
/// exits 0, and a second run finds nothing left to do.
#[test]
fn records_nested_too_deep_are_error_records_and_the_stream_goes_on() {
    for (mode, format) in MODES {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("schema.json"),
            r#"{"columns":[{"name":"id","type":"int64"},{"name":"a","type":"string"}]}"#,
        )
        .unwrap();
        let mut lines = Vec::new();
        let mut deep = Vec::new();
        for id in 0..300 {
            let line = match id {
                50 => nested("a", 100_000, "arrays"),
                100 => nested("a", 100_000, "objects"),
                150 => nested("a", 1_000, "mixed"),
                200 => nested("zz", 1_000, "objects"),
                250 => nested("a", MAX_DEPTH + 1, "arrays"),
                _ => format!(r#"{{"id":{id},"a":"v{id}"}}"#),
            };
            if id % 50 == 0 && id > 0 {
                deep.push(line.clone());
            }
            lines.push(line);
        }
        let input = write_input(dir.path(), &lines);
        let config = write_config(dir.path(), &config(format));

        let output = run(dir.path(), &config);
        assert!(
            output.status.success(),
            "{mode}: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let root = dir.path().join("archive");
        let errors = conversion_errors(&root);
        let want_errors: BTreeMap<u64, (String, String)> = input
            .iter()
            .filter(|(_, text)| deep.contains(text))
            .map(|(offset, text)| (*offset, ("Record.TooDeep".to_owned(), text.clone())))
            .collect();
        assert_eq!(errors.len(), 5, "{mode}");
        assert!(errors == want_errors, "{mode}: the deep records are the error records");
        let good: Vec<&(u64, String)> = input.iter().filter(|(_, text)| !deep.contains(text)).collect();
        let archived = data(&root, format.contains("parquet"));
        if format.contains("parquet") {
            let want: BTreeMap<u64, String> = good.iter().map(|(o, t)| (*o, t.clone())).collect();
            assert!(archived == want, "{mode}: every other record, once");
        } else {
            let want: Vec<&String> = good.iter().map(|(_, t)| t).collect();
            assert_eq!(
                archived.values().collect::<Vec<_>>(),
                want,
                "{mode}: every other record, once"
            );
        }

        // Nothing is left to read: the checkpoint is past the deep records.
        let before = objects(&root);
        let again = run(dir.path(), &config);
        assert!(again.status.success(), "{mode}: second run {:?}", again.status);
        assert_eq!(
            objects(&root).keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{mode}"
        );
    }
}

/// Records nested to the limit, in arrays, objects and both, among good
/// records, with an inferred schema (the file's schema nests as deep as the
/// records): pyarrow and `spillway originals` read the whole file.
#[test]
fn records_nested_to_the_limit_read_back_with_pyarrow_and_spillway_originals() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for id in 0..200 {
        lines.push(match id {
            60 => nested("arrays", MAX_DEPTH, "arrays"),
            120 => nested("objects", MAX_DEPTH, "objects"),
            180 => nested("mixed", MAX_DEPTH, "mixed"),
            _ => format!(r#"{{"id":{id},"name":"n{id}","tags":["t{}"]}}"#, id % 7),
        });
    }
    let input = write_input(dir.path(), &lines);
    let config = write_config(dir.path(), &config("[format]\ntype = \"parquet\""));
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let root = dir.path().join("archive");
    assert!(conversion_errors(&root).is_empty());
    let archived = data(&root, true);
    let want: BTreeMap<u64, String> = input.into_iter().collect();
    assert!(archived == want, "every record, byte for byte");
    // pyarrow read the deep columns as the nesting they are.
    let files = read_parquet(&root.join("events"));
    assert_eq!(files.len(), 1);
    let arrays = files[0]["schema"]["arrays"].as_str().unwrap();
    assert_eq!(arrays.matches("list<").count(), MAX_DEPTH - 1, "{arrays}");
}

/// Records whose keys are ids (`{"k<record>_<n>": ...}`, 100,000 distinct
/// keys in 1.6 MB) once made one Parquet column per key: 6 MB of them took
/// 21 GiB and six minutes, and wrote nothing. The table stops at 2,000
/// columns and says so; every record is archived byte for byte (pyarrow
/// reads the file, `spillway originals` gives each record back), with no
/// error record.
#[test]
fn records_whose_keys_are_ids_are_archived_whole_under_a_bounded_schema() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5_000)
        .map(|i| {
            let fields: Vec<String> = (0..20).map(|j| format!(r#""k{i}_{j}":{j}"#)).collect();
            format!(r#"{{"id":{i},{}}}"#, fields.join(","))
        })
        .collect();
    let input = write_input(dir.path(), &lines);
    let config = write_config(dir.path(), &config("[format]\ntype = \"parquet\""));
    let started = std::time::Instant::now();
    let output = run(dir.path(), &config);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the table schema has reached its limit of 2000 columns"),
        "{stderr}"
    );
    let root = dir.path().join("archive");
    assert!(conversion_errors(&root).is_empty());
    let files = read_parquet(&root.join("events"));
    for file in &files {
        let columns = file["schema"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with("_spillway_"))
            .count();
        assert!(columns <= 2_000, "{columns} columns");
    }
    let archived = data(&root, true);
    let want: BTreeMap<u64, String> = input.into_iter().collect();
    assert!(archived == want, "every record, byte for byte");
    println!("archived in {:?}", started.elapsed());
}
