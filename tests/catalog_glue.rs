//! End-to-end: `[format.glue]`, the real binary writing Parquet under a
//! Glue table's columns, against moto's Glue (started by scripts/test.sh).

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use serde_json::Value;
use support::kinesis::peer;
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// moto's Glue, a client of it, and a database named after the test.
struct Glue {
    endpoint: String,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_glue::Client,
    database: String,
}

impl Glue {
    fn new(test: &str) -> Self {
        let endpoint = peer("SPILLWAY_TEST_MOTO");
        let rt = runtime();
        let client = rt.block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .credentials_provider(aws_sdk_glue::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .load()
                .await;
            aws_sdk_glue::Client::new(&config)
        });
        let database = format!("{test}_{}", std::process::id());
        rt.block_on(
            client
                .create_database()
                .database_input(DatabaseInput::builder().name(&database).build().unwrap())
                .send(),
        )
        .unwrap();
        Self {
            endpoint,
            rt,
            client,
            database,
        }
    }

    fn table_input(name: &str, columns: &[(&str, &str)]) -> TableInput {
        let mut descriptor = StorageDescriptor::builder();
        for (column, ty) in columns {
            descriptor = descriptor.columns(Column::builder().name(*column).r#type(*ty).build().unwrap());
        }
        TableInput::builder()
            .name(name)
            .storage_descriptor(descriptor.build())
            .build()
            .unwrap()
    }

    fn create_table(&self, name: &str, columns: &[(&str, &str)]) {
        self.rt
            .block_on(
                self.client
                    .create_table()
                    .database_name(&self.database)
                    .table_input(Self::table_input(name, columns))
                    .send(),
            )
            .unwrap();
    }

    fn update_table(&self, name: &str, columns: &[(&str, &str)]) {
        self.rt
            .block_on(
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(Self::table_input(name, columns))
                    .send(),
            )
            .unwrap();
    }

    fn config(&self, table: &str, source: &str, extra: &str) -> String {
        format!(
            r#"name = "orders"
{source}
[format]
type = "parquet"
[format.glue]
database = "{database}"
table = "{table}"
endpoint = "{endpoint}"
region = "us-east-1"
{extra}
[destination]
type = "local"
path = "archive"
prefix = "orders/"
[checkpoint]
path = "state"
"#,
            database = self.database,
            endpoint = self.endpoint,
        )
    }
}

/// The user columns (not `_spillway_`) of a dumped Parquet file.
fn user_columns(file: &Value) -> Vec<(String, String)> {
    file["schema"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !name.starts_with("_spillway_"))
        .map(|(name, ty)| (name.clone(), ty.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn the_archive_follows_the_glue_table_and_a_changed_table_reaches_the_next_buffer() {
    let glue = Glue::new("follows");
    glue.create_table(
        "orders",
        &[
            ("id", "bigint"),
            ("item", "varchar(40)"),
            ("price", "decimal(10,2)"),
            ("tags", "array<string>"),
            ("buyer", "struct<id:int,country:string>"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let source = "[source]\ntype = \"stdin\"";
    let config = write_config(dir.path(), &glue.config("orders", source, "refresh_seconds = 1"));
    let mut child = spillway()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("SPILLWAY_TEST_INTERVAL_MS", "300")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = LogWatch::new(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    // `colour` is no column yet; `price` "abc" cannot be a decimal.
    for id in 0..3 {
        writeln!(
            stdin,
            r#"{{"id":{id},"item":"pen","price":"1.5","tags":["a"],"buyer":{{"id":7,"country":"NZ"}},"colour":"red"}}"#
        )
        .unwrap();
    }
    writeln!(stdin, r#"{{"id":3,"item":"ink","price":"abc"}}"#).unwrap();
    stdin.flush().unwrap();
    assert!(
        watch.wait_for("\"reason\":\"interval\"", Duration::from_secs(30)),
        "{:#?}",
        watch.seen
    );
    // The table gains a column; the next buffer is written under it.
    glue.update_table(
        "orders",
        &[
            ("id", "bigint"),
            ("item", "varchar(40)"),
            ("price", "decimal(10,2)"),
            ("tags", "array<string>"),
            ("buyer", "struct<id:int,country:string>"),
            ("colour", "string"),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    for id in 10..12 {
        writeln!(stdin, r#"{{"id":{id},"item":"cap","price":2,"colour":"blue"}}"#).unwrap();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let seen = watch.finish();
    assert!(status.success(), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("the glue table changed")),
        "the change is logged: {seen:#?}"
    );

    let files = read_parquet(&dir.path().join("archive"));
    assert_eq!(files.len(), 2, "one file per buffer");
    let first = &files[0];
    let second = &files[1];
    let before = [
        ("id", "int64"),
        ("item", "string"),
        ("price", "decimal128(10, 2)"),
        ("tags", "list<element: string>"),
        ("buyer", "struct<id: int32, country: string>"),
    ];
    let want = |columns: &[(&str, &str)]| -> Vec<(String, String)> {
        columns
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    };
    assert_eq!(user_columns(first), want(&before));
    let mut after = before.to_vec();
    after.push(("colour", "string"));
    assert_eq!(user_columns(second), want(&after));
    let rows = |file: &Value| file["rows"].as_array().unwrap().clone();
    let first_rows = rows(first);
    assert_eq!(
        first_rows.len(),
        3,
        "the record whose price is not a decimal is refused"
    );
    assert_eq!(first_rows[0]["price"], "1.50");
    assert_eq!(first_rows[0]["buyer"], serde_json::json!({"id": 7, "country": "NZ"}));
    let second_rows = rows(second);
    assert_eq!(
        second_rows.iter().map(|r| r["colour"].clone()).collect::<Vec<_>>(),
        ["blue", "blue"]
    );
    assert_eq!(
        second_rows[0]["_original"],
        r#"{"id":10,"item":"cap","price":2,"colour":"blue"}"#
    );
    let errors = lines_under(
        &objects(&dir.path().join("archive")),
        "errors/format-conversion-failed/",
    );
    assert_eq!(errors.len(), 1);
    let error: Value = serde_json::from_slice(&errors[0]).unwrap();
    assert_eq!(error["errorCode"], "Parquet.TypeMismatch", "{error}");

    // `spillway schema` shows the table as it is now.
    let output = spillway()
        .args(["schema", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["origin"], "glue");
    assert_eq!(shown["table"], format!("{}.orders", glue.database));
    let names: Vec<&str> = shown["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "item", "price", "tags", "buyer", "colour"]);
    assert_eq!(shown["columns"][4]["type"], "struct");
}

/// Runs a file-source pipeline to its end; gives its exit code and the
/// last line of its standard error.
fn run_once(dir: &Path, config: &str) -> (Option<i32>, String, usize) {
    std::fs::write(dir.join("orders.ndjson"), "{\"id\":1}\n").unwrap();
    let output = run(dir, &write_config(dir, config));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    let written = objects(&dir.join("archive")).len();
    (output.status.code(), last, written)
}

#[test]
fn an_unreachable_glue_a_missing_table_or_a_type_spillway_cannot_write_stops_run_in_one_line() {
    let glue = Glue::new("refused");
    glue.create_table("blobs", &[("id", "bigint"), ("payload", "binary")]);
    let source = "[source]\ntype = \"file\"\npath = \"orders.ndjson\"";

    let dir = tempfile::tempdir().unwrap();
    let missing = glue.config("nothing_here", source, "");
    let (code, last, written) = run_once(dir.path(), &missing);
    assert_eq!(code, Some(1), "{last}");
    assert!(
        last.starts_with(&format!(
            "error: glue table {}.nothing_here not found (EntityNotFoundException",
            glue.database
        )),
        "{last}"
    );
    assert_eq!(written, 0, "nothing is written");

    let dir = tempfile::tempdir().unwrap();
    let (code, last, written) = run_once(dir.path(), &glue.config("blobs", source, ""));
    assert_eq!(code, Some(1), "{last}");
    assert!(
        last.starts_with(&format!(
            "error: glue table {}.blobs: column \"payload\": type \"binary\" cannot be written (unknown type \"binary\"): allowed: string, varchar(n)",
            glue.database
        )),
        "{last}"
    );
    assert_eq!(written, 0, "nothing is written");

    // A closed port: the SDK's retries, then one line.
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = glue
        .config("blobs", source, "")
        .replace(&glue.endpoint, &format!("http://127.0.0.1:{port}"));
    let (code, last, written) = run_once(dir.path(), &unreachable);
    assert_eq!(code, Some(1), "{last}");
    assert!(
        last.starts_with(&format!(
            "error: cannot read glue table {}.blobs: cannot reach glue:",
            glue.database
        )),
        "{last}"
    );
    assert_eq!(written, 0, "nothing is written");
}
