//! End-to-end: `spillway schema`, the table schema as JSON and as Athena
//! DDL, parsed back structurally (columns and their types, partition
//! columns, location, projection properties).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::*;

fn schema(dir: &Path, config: &str, args: &[&str]) -> Output {
    let config = write_config(dir, config);
    spillway()
        .args(["schema", "--config"])
        .arg(&config)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn s3_config(schema_file: &str, prefix: &str) -> String {
    format!(
        r#"name = "click-stream"
[source]
type = "stdin"
[format]
type = "parquet"
schema = "{schema_file}"
[destination]
type = "s3"
bucket = "archive-bucket"
prefix = "{prefix}"
"#
    )
}

/// A `CREATE EXTERNAL TABLE` statement, read back.
#[derive(Debug, Default)]
struct Table {
    name: String,
    columns: Vec<(String, String)>,
    partitions: Vec<(String, String)>,
    serde: String,
    location: String,
    properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Quoted(String),
    Str(String),
    Word(String),
    Sym(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '`' {
            let end = i + 1 + chars[i + 1..].iter().position(|&d| d == '`').expect("closed `");
            out.push(Token::Quoted(chars[i + 1..end].iter().collect()));
            i = end + 1;
        } else if c == '\'' {
            let mut value = String::new();
            i += 1;
            while chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            out.push(Token::Str(value));
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Sym(c));
            i += 1;
        }
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Token {
        self.at += 1;
        self.tokens[self.at - 1].clone()
    }
    fn word(&mut self, want: &str) {
        assert_eq!(self.next(), Token::Word(want.into()), "at token {}", self.at);
    }
    fn sym(&mut self, want: char) {
        assert_eq!(self.next(), Token::Sym(want), "at token {}", self.at);
    }
    fn string(&mut self) -> String {
        match self.next() {
            Token::Str(s) => s,
            other => panic!("expected a string, found {other:?}"),
        }
    }
    fn name(&mut self) -> String {
        match self.next() {
            Token::Quoted(s) | Token::Word(s) => s,
            other => panic!("expected a name, found {other:?}"),
        }
    }
    /// A Hive type, rebuilt in a canonical spelling.
    fn hive_type(&mut self) -> String {
        let Token::Word(name) = self.next() else {
            panic!("expected a type at token {}", self.at)
        };
        match name.as_str() {
            "array" => {
                self.sym('<');
                let item = self.hive_type();
                self.sym('>');
                format!("array<{item}>")
            }
            "map" => {
                self.sym('<');
                let key = self.hive_type();
                self.sym(',');
                let value = self.hive_type();
                self.sym('>');
                format!("map<{key},{value}>")
            }
            "struct" => {
                self.sym('<');
                let mut fields = Vec::new();
                loop {
                    let field = self.name();
                    self.sym(':');
                    fields.push(format!("{field}:{}", self.hive_type()));
                    match self.next() {
                        Token::Sym(',') => continue,
                        Token::Sym('>') => break,
                        other => panic!("in a struct: {other:?}"),
                    }
                }
                format!("struct<{}>", fields.join(","))
            }
            "decimal" => {
                self.sym('(');
                let p = self.name();
                self.sym(',');
                let s = self.name();
                self.sym(')');
                format!("decimal({p},{s})")
            }
            scalar => scalar.to_owned(),
        }
    }
    fn columns(&mut self) -> Vec<(String, String)> {
        self.sym('(');
        let mut columns = Vec::new();
        loop {
            let Token::Quoted(name) = self.next() else {
                panic!("column names are quoted with backticks, at token {}", self.at)
            };
            columns.push((name, self.hive_type()));
            match self.next() {
                Token::Sym(',') => continue,
                Token::Sym(')') => break,
                other => panic!("in a column list: {other:?}"),
            }
        }
        columns
    }
}

fn parse_ddl(text: &str) -> Table {
    let mut p = Parser {
        tokens: tokens(text),
        at: 0,
    };
    let mut table = Table::default();
    for word in ["CREATE", "EXTERNAL", "TABLE", "IF", "NOT", "EXISTS"] {
        p.word(word);
    }
    let Token::Quoted(name) = p.next() else {
        panic!("a quoted table name")
    };
    table.name = name;
    table.columns = p.columns();
    loop {
        match p.next() {
            Token::Word(w) if w == "PARTITIONED" => {
                p.word("BY");
                table.partitions = p.columns();
            }
            Token::Word(w) if w == "ROW" => {
                p.word("FORMAT");
                p.word("SERDE");
                table.serde = p.string();
            }
            Token::Word(w) if w == "STORED" => {
                p.word("AS");
                p.word("INPUTFORMAT");
                assert!(p.string().ends_with("MapredParquetInputFormat"));
                p.word("OUTPUTFORMAT");
                assert!(p.string().ends_with("MapredParquetOutputFormat"));
            }
            Token::Word(w) if w == "LOCATION" => table.location = p.string(),
            Token::Word(w) if w == "TBLPROPERTIES" => {
                p.sym('(');
                loop {
                    let key = p.string();
                    p.sym('=');
                    table.properties.insert(key, p.string());
                    match p.next() {
                        Token::Sym(',') => continue,
                        Token::Sym(')') => break,
                        other => panic!("in TBLPROPERTIES: {other:?}"),
                    }
                }
            }
            Token::Sym(';') => break,
            other => panic!("unexpected {other:?} at token {}", p.at),
        }
    }
    assert_eq!(p.at, p.tokens.len(), "nothing after ';'");
    table
}

const RESERVED: [(&str, &str); 8] = [
    ("_spillway_source", "string"),
    ("_spillway_sequence_number", "string"),
    ("_spillway_subsequence_number", "bigint"),
    ("_spillway_output_index", "bigint"),
    ("_spillway_partition_key", "string"),
    ("_spillway_arrival", "timestamp"),
    ("_spillway_data", "string"),
    ("_spillway_nulls", "string"),
];

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

fn ddl(dir: &Path, config: &str, args: &[&str]) -> (Table, Output) {
    let mut all = vec!["--ddl", "athena"];
    all.extend_from_slice(args);
    let output = schema(dir, config, &all);
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    (parse_ddl(&text), output)
}

#[test]
fn a_flat_schema_with_the_default_prefix_is_one_table_partitioned_by_datehour() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flat.json"),
        r#"{"columns":[{"name":"event_id","type":"string"},{"name":"n","type":"int"},
            {"name":"big","type":"bigint"},{"name":"ok","type":"boolean"},{"name":"f","type":"float"},
            {"name":"d","type":"double"},{"name":"amount","type":"decimal(10,2)"},{"name":"day","type":"date"},
            {"name":"ts","type":"timestamp(us)"}]}"#,
    )
    .unwrap();
    let (table, output) = ddl(
        dir.path(),
        &s3_config("flat.json", "events/"),
        &["--since", "2026-11-01"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(table.name, "click_stream");
    let mut want = pairs(&[
        ("event_id", "string"),
        ("n", "int"),
        ("big", "bigint"),
        ("ok", "boolean"),
        ("f", "float"),
        ("d", "double"),
        ("amount", "decimal(10,2)"),
        ("day", "date"),
        ("ts", "timestamp"),
    ]);
    want.extend(pairs(&RESERVED));
    assert_eq!(table.columns, want);
    // Every record's bytes stored: no null members to keep.
    let config =
        s3_config("flat.json", "events/").replace("schema = ", "elide_rebuildable_original = false\nschema = ");
    let (every, output) = ddl(dir.path(), &config, &["--since", "2026-11-01"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(every.columns[..want.len() - 1], want[..want.len() - 1]);
    assert_eq!(every.columns.len(), want.len() - 1, "no _spillway_nulls");
    assert_eq!(table.partitions, pairs(&[("datehour", "string")]));
    assert_eq!(
        table.serde,
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(table.location, "s3://archive-bucket/events/");
    let want: BTreeMap<String, String> = [
        ("projection.enabled", "true"),
        ("projection.datehour.type", "date"),
        ("projection.datehour.format", "yyyy/MM/dd/HH"),
        ("projection.datehour.range", "2026/11/01/00,NOW"),
        ("projection.datehour.interval", "1"),
        ("projection.datehour.interval.unit", "HOURS"),
        ("storage.location.template", "s3://archive-bucket/events/${datehour}/"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(table.properties, want);

    // The same schema as JSON.
    let output = schema(dir.path(), &s3_config("flat.json", "events/"), &[]);
    assert!(output.status.success());
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["origin"], "schema_file");
    assert_eq!(
        shown["columns"][6],
        serde_json::json!({"name": "amount", "type": "decimal(10,2)"})
    );
}

#[test]
fn nested_columns_are_structs_arrays_and_maps_and_hive_style_segments_are_partition_columns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nested.json"),
        r#"{"columns":[{"name":"user","type":"struct<id:bigint,geo:struct<country:string,lat:double>>"},
            {"name":"tags","type":"list<string>"},
            {"name":"items","type":"array<struct<sku:string,qty:int>>"},
            {"name":"attrs","type":"map<string,list<int>>"}]}"#,
    )
    .unwrap();
    let prefix = "logs/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/source=web/";
    let config = s3_config("nested.json", prefix).replace("schema = ", "keep_original = false\nschema = ");
    let (table, output) = ddl(dir.path(), &config, &["--since", "2026-03-04", "--table", "web_logs"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(table.name, "web_logs");
    let mut want = pairs(&[
        ("user", "struct<id:bigint,geo:struct<country:string,lat:double>>"),
        ("tags", "array<string>"),
        ("items", "array<struct<sku:string,qty:int>>"),
        ("attrs", "map<string,array<int>>"),
    ]);
    want.extend(pairs(&RESERVED[..6]));
    assert_eq!(table.columns, want, "no _spillway_data without keep_original");
    assert_eq!(
        table.partitions,
        pairs(&[("year", "string"), ("month", "string"), ("day", "string")])
    );
    assert_eq!(table.location, "s3://archive-bucket/logs/");
    for (key, value) in [
        ("projection.enabled", "true"),
        ("projection.year.type", "date"),
        ("projection.year.format", "yyyy"),
        ("projection.year.range", "2026,NOW"),
        ("projection.year.interval.unit", "YEARS"),
        ("projection.month.type", "integer"),
        ("projection.month.range", "1,12"),
        ("projection.month.digits", "2"),
        ("projection.day.type", "integer"),
        ("projection.day.range", "1,31"),
        ("projection.day.digits", "2"),
        (
            "storage.location.template",
            "s3://archive-bucket/logs/year=${year}/month=${month}/day=${day}/source=web/",
        ),
    ] {
        assert_eq!(table.properties.get(key).map(String::as_str), Some(value), "{key}");
    }
}

#[test]
fn an_inferred_schema_is_read_from_the_checkpoint_and_none_yet_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"name = "clicks"
[source]
type = "file"
path = "events.ndjson"
[format]
type = "parquet"
[destination]
type = "local"
path = "archive"
prefix = "events/"
[checkpoint]
path = "state"
"#;
    let output = schema(dir.path(), config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: no table schema yet: the schema is inferred"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    std::fs::write(
        dir.path().join("events.ndjson"),
        "{\"id\":1,\"user\":{\"name\":\"a\"},\"tags\":[\"x\"]}\n{\"id\":2,\"Bad Name\":true}\n",
    )
    .unwrap();
    let run = run(dir.path(), &write_config(dir.path(), config));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let output = schema(dir.path(), config, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"origin": "inferred", "version": 1, "columns": [
            {"name": "id", "type": "int64"},
            // Right after `id`, the key before it where it was first seen.
            {"name": "Bad Name", "type": "boolean"},
            {"name": "user", "type": "struct", "fields": [{"name": "name", "type": "string"}]},
            {"name": "tags", "type": "list", "item": {"type": "string"}},
        ]})
    );

    // The DDL of a local archive: the path as location, and the name
    // Athena cannot take reported (exit 1, the DDL printed all the same).
    let (table, output) = ddl(dir.path(), config, &["--since", "2026-11-01"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("column \"Bad Name\": Athena takes names of letters, digits and underscores only"),
        "{stderr}"
    );
    assert!(table.location.ends_with('/'), "{}", table.location);
    assert_eq!(Path::new(&table.location), dir.path().join("archive/events"));
    assert_eq!(table.columns[2], ("user".to_owned(), "struct<name:string>".to_owned()));
    assert_eq!(table.partitions, pairs(&[("datehour", "string")]));
}

#[test]
fn a_prefix_that_cannot_be_projected_leaves_the_table_unpartitioned_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flat.json"),
        r#"{"columns":[{"name":"id","type":"string"}]}"#,
    )
    .unwrap();
    let prefix = "raw/!{firehose:random-string}/!{timestamp:yyyy}/";
    let (table, output) = ddl(dir.path(), &s3_config("flat.json", prefix), &[]);
    assert!(output.status.success(), "a note is no failure");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(": note: the prefix has !{firehose:random-string} in a directory"),
        "{stderr}"
    );
    assert_eq!(table.location, "s3://archive-bucket/raw/");
    assert!(table.partitions.is_empty());
    assert!(table.properties.is_empty(), "{:?}", table.properties);
}
