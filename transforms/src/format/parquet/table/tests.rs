//! The table schema: how it grows, what batches under it write, and how it
//! reads back.

use bytes::Bytes;
use chrono::TimeZone;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::format::parquet::Schema;
use crate::record::{Offset, Position, SequenceNumber, SourceId};

fn records(lines: &[&str]) -> Vec<Record> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| Record {
            data: Bytes::from(line.to_string()),
            position: Position {
                source: SourceId::new("shardId-000000000001"),
                offset: Offset::new(SequenceNumber::parse(&(i + 1).to_string()).unwrap(), 0),
            },
            partition_key: None,
            arrival: chrono::Utc.timestamp_millis_opt(1_793_491_200_123).unwrap(),
        })
        .collect()
}

fn columns(text: &str) -> Vec<Column> {
    match ColumnType::parse(text).unwrap() {
        ColumnType::Struct(columns) => columns,
        other => panic!("{other}"),
    }
}

fn spelled(columns: &[Column]) -> String {
    ColumnType::Struct(columns.to_vec()).to_string()
}

/// The user columns of a file, as `struct<...>` (the reserved ones left
/// out).
fn file_columns(body: &[u8]) -> String {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(body.to_vec())).unwrap();
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !n.starts_with("_spillway_"))
        .collect();
    names.join(",")
}

fn rules() -> KeyRules {
    KeyRules::default()
}

#[test]
fn a_table_grows_by_new_columns_at_the_end_and_keeps_its_types_and_order() {
    let table = columns("struct<id:int64,v:int64,user:struct<name:string>,tags:list<struct<k:string>>>");
    // Another order, another type for v, a new key, a new field in a struct
    // and in a list of structs, a key spelled in another case.
    let inferred = columns(
        "struct<w:boolean,V:string,user:struct<age:int64,name:int64>,id:int64,tags:list<struct<n:double,k:string>>>",
    );
    assert_eq!(
        spelled(&grow(&table, &inferred, &rules())),
        "struct<id:int64,v:int64,user:struct<name:string,age:int64>,tags:list<struct<k:string,n:double>>,w:boolean>"
    );
    // A shape that differs (a scalar where the table has a struct) is not
    // a growth: the table's type stands.
    let flat = columns("struct<user:string,tags:string>");
    assert_eq!(grow(&table, &flat, &rules()), table);
    // Case-sensitive keys: `V` is another column.
    let sensitive = KeyRules {
        case_insensitive: false,
        ..KeyRules::default()
    };
    assert_eq!(
        spelled(&grow(
            &columns("struct<v:int64>"),
            &columns("struct<V:string>"),
            &sensitive
        )),
        "struct<v:int64,V:string>"
    );
}

#[test]
fn every_version_holds_the_one_before_as_its_first_columns() {
    let format = ParquetFormat::default();
    let batches: [&[&str]; 5] = [
        &[r#"{"id":1,"v":5,"user":{"name":"a"}}"#],
        &[r#"{"id":2,"v":"s2","w":true}"#, r#"{"id":3,"v":6}"#],
        &[r#"{"id":4,"user":{"name":"b","age":3}}"#],
        &[r#"{"id":5,"v":7}"#],
        &[r#"{"x":[1,2],"id":6}"#],
    ];
    let mut table: Option<TableSchema> = None;
    let mut versions = Vec::new();
    for batch in batches {
        let encoded = format.encode_table(&records(batch), table.as_ref());
        if let Some(grown) = encoded.grown {
            if let Some(before) = &table {
                assert_eq!(grown.version, before.version + 1);
                assert_eq!(&grown.columns[..before.columns.len()].len(), &before.columns.len());
                for (old, new) in before.columns.iter().zip(&grown.columns) {
                    assert_eq!(old.name, new.name);
                    if !matches!(old.ty, ColumnType::Struct(_)) {
                        assert_eq!(old.ty, new.ty, "{} keeps its type", old.name);
                    }
                }
            }
            table = Some(grown);
        }
        let table = table.as_ref().unwrap();
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            file_columns(&encoded.encoded.body),
            names.join(","),
            "the file has the table's columns"
        );
        versions.push(spelled(&table.columns));
    }
    assert_eq!(
        versions,
        [
            "struct<id:int64,v:int64,user:struct<name:string>>",
            "struct<id:int64,v:int64,user:struct<name:string>,w:boolean>",
            "struct<id:int64,v:int64,user:struct<name:string,age:int64>,w:boolean>",
            "struct<id:int64,v:int64,user:struct<name:string,age:int64>,w:boolean>",
            "struct<id:int64,v:int64,user:struct<name:string,age:int64>,w:boolean,x:list<int64>>",
        ]
    );
    assert_eq!(table.unwrap().version, 4);
}

#[test]
fn a_value_that_disagrees_with_its_column_is_converted_or_refused_as_under_a_schema_file() {
    let format = ParquetFormat::default();
    let table = TableSchema {
        version: 3,
        columns: columns("struct<n:int64,s:string>"),
    };
    // `n` holds a string that is no integer, then an object; `s` numbers
    // and a boolean, which become their text.
    let batch = records(&[
        r#"{"n":1,"s":"a"}"#,
        r#"{"n":"s2249","s":"b"}"#,
        r#"{"n":2,"s":17}"#,
        r#"{"n":{"o":1},"s":true}"#,
        r#"{"n":"3","s":2.5}"#,
    ]);
    let encoded = format.encode_table(&batch, Some(&table));
    assert_eq!(encoded.grown, None, "no new column: the table stands");
    let refused: Vec<(usize, &str)> = encoded.encoded.rejected.iter().map(|(i, r)| (*i, r.code)).collect();
    assert_eq!(refused, [(1, "Parquet.TypeMismatch"), (3, "Parquet.NestingMismatch")]);
    assert_eq!(encoded.encoded.records, 3);
    // Exactly what a schema file with the table's columns writes.
    let given = ParquetFormat {
        schema: Some(Schema {
            columns: table.columns.clone(),
        }),
        ..ParquetFormat::default()
    };
    let under_schema = given.encode(&batch);
    assert_eq!(
        encoded.encoded.body, under_schema.body,
        "same file as under a schema file"
    );
    let mut texts = Vec::new();
    crate::format::parquet::read_archive(Bytes::from(encoded.encoded.body), |r| {
        texts.push(String::from_utf8(r.data.to_vec()).unwrap())
    })
    .unwrap();
    assert_eq!(
        texts,
        [r#"{"n":1,"s":"a"}"#, r#"{"n":2,"s":17}"#, r#"{"n":"3","s":2.5}"#]
    );
}

#[test]
fn a_first_batch_without_columns_starts_no_table() {
    let format = ParquetFormat {
        metadata_columns: false,
        keep_original: false,
        ..ParquetFormat::default()
    };
    let encoded = format.encode_table(&records(&["{}", "{}"]), None);
    assert_eq!(encoded.grown, None);
    assert_eq!(encoded.encoded.rejected.len(), 2);
}

#[test]
fn a_table_schema_reads_back_whatever_its_names() {
    let table = TableSchema {
        version: 7,
        columns: vec![
            Column {
                name: "a:b,<c>`".to_owned(),
                ty: ColumnType::Struct(vec![Column {
                    name: "x:`y`>".to_owned(),
                    ty: ColumnType::List(Box::new(ColumnType::Struct(vec![Column {
                        name: " ".to_owned(),
                        ty: ColumnType::Double,
                    }]))),
                }]),
            },
            Column {
                name: "m".to_owned(),
                ty: ColumnType::Map(Box::new(ColumnType::Timestamp(arrow_schema::TimeUnit::Microsecond))),
            },
            Column {
                name: "d".to_owned(),
                ty: ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            },
        ],
    };
    let text = table.to_json();
    assert_eq!(TableSchema::from_json(&text).unwrap(), table);
    assert!(text.contains(r#""type": "struct""#), "{text}");

    for bad in [
        r#"{"version":1,"columns":[{"name":"a","type":"list"}]}"#,
        r#"{"version":1,"columns":[{"name":"a","type":"struct<b:string>"}]}"#,
        r#"{"version":1,"columns":[{"name":"","type":"string"}]}"#,
        r#"{"version":1,"columns":[{"name":"a","type":"strng"}]}"#,
        r#"{"columns":[]}"#,
    ] {
        assert!(TableSchema::from_json(bad).is_err(), "{bad}");
    }
}

/// The table stops growing at `MAX_COLUMNS` (fields of structs counted): a
/// new column that does not fit whole is left out, one that fits is added.
#[test]
fn the_table_grows_to_max_columns_and_no_further() {
    let table: Vec<Column> = (0..MAX_COLUMNS - 2)
        .map(|i| Column {
            name: format!("c{i}"),
            ty: ColumnType::Int64,
        })
        .collect();
    let inferred = vec![
        Column {
            name: "nested".into(),
            ty: ColumnType::Struct(vec![
                Column {
                    name: "x".into(),
                    ty: ColumnType::Int64,
                },
                Column {
                    name: "y".into(),
                    ty: ColumnType::Int64,
                },
            ]),
        },
        Column {
            name: "one".into(),
            ty: ColumnType::String,
        },
        Column {
            name: "two".into(),
            ty: ColumnType::String,
        },
        Column {
            name: "three".into(),
            ty: ColumnType::String,
        },
    ];
    let grown = grow(&table, &inferred, &rules());
    assert_eq!(count_columns(&grown), MAX_COLUMNS);
    let added: Vec<&str> = grown[table.len()..].iter().map(|c| c.name.as_str()).collect();
    assert_eq!(added, ["one", "two"]);
    assert_eq!(grow(&grown, &inferred, &rules()), grown, "full: nothing more");
}
