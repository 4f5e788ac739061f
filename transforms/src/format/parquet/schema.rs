//! Column types and the schema file.
//!
//! A schema file is JSON: `{"columns": [{"name": "ts", "type": "timestamp(ms)"}, ...]}`.
//! Types are spelled as in Hive/Athena DDL:
//!
//! | type | Arrow / Parquet |
//! |---|---|
//! | `string` | Utf8 / BYTE_ARRAY (UTF8) |
//! | `boolean` | Boolean |
//! | `int32` (`int`; `tinyint`, `smallint`) | Int32 |
//! | `int64` (`bigint`) | Int64 |
//! | `float` | Float32 |
//! | `double` | Float64 |
//! | `decimal(p,s)` | Decimal128(p, s), 1 <= p <= 38, 0 <= s <= p |
//! | `date` | Date32 |
//! | `timestamp(s\|ms\|us\|ns)` (`timestamp` = `timestamp(ms)`) | Timestamp(unit, UTC) / INT64 TIMESTAMP, never INT96 |
//! | `list<T>` (`array<T>`) | List |
//! | `struct<a:T,b:U>` | Struct |
//! | `map<string,T>` | Map with string keys (JSON object keys are strings) |
//!
//! Every column is nullable: a missing key or a JSON `null` is a null.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};

use crate::strict::{MAX_DEPTH, MAX_TYPE_DEPTH};

/// Prefix of the columns spillway adds (source position, original bytes).
pub const RESERVED_PREFIX: &str = "_spillway_";

/// A column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Boolean,
    Int32,
    Int64,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Date,
    Timestamp(TimeUnit),
    List(Box<ColumnType>),
    Struct(Vec<Column>),
    /// Keys are always strings.
    Map(Box<ColumnType>),
}

/// A named column (or struct field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// The user's columns, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub columns: Vec<Column>,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp(unit) => write!(f, "timestamp({})", unit_name(*unit)),
            ColumnType::List(item) => write!(f, "list<{item}>"),
            ColumnType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, c) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{}", c.name, c.ty)?;
                }
                f.write_str(">")
            }
            ColumnType::Map(value) => write!(f, "map<string,{value}>"),
        }
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// What a schema file may say, for error messages.
pub const ALLOWED_TYPES: &str = "string, boolean, int32, int64, float, double, decimal(p,s), date, \
     timestamp(s|ms|us|ns), list<T>, struct<name:T,...>, map<string,T>";

impl ColumnType {
    /// Parses a Hive/Athena-style type name.
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let mut parser = TypeParser { text, pos: 0, depth: 0 };
        let ty = parser.parse_type()?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(format!(
                "unexpected {:?} at character {}",
                &text[parser.pos..],
                parser.pos + 1
            ));
        }
        Ok(ty)
    }

    /// The Arrow type this column is written as.
    pub fn arrow(&self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp(unit) => DataType::Timestamp(*unit, Some("UTC".into())),
            ColumnType::List(item) => DataType::List(Arc::new(Field::new("element", item.arrow(), true))),
            ColumnType::Struct(fields) => DataType::Struct(struct_fields(fields)),
            ColumnType::Map(value) => DataType::Map(map_entries_field(value), false),
        }
    }
}

pub(crate) fn struct_fields(columns: &[Column]) -> Fields {
    columns
        .iter()
        .map(|c| Field::new(&c.name, c.ty.arrow(), true))
        .collect()
}

pub(crate) fn map_entries_field(value: &ColumnType) -> Arc<Field> {
    Arc::new(Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", value.arrow(), true),
        ])),
        false,
    ))
}

struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
    /// How many `list`, `struct` and `map` enclose the type being parsed.
    depth: usize,
}

impl TypeParser<'_> {
    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.text[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn word(&mut self) -> &str {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.pos += len;
        &self.text[start..start + len]
    }

    /// A field name in `struct<...>`: anything up to `:`, may be backquoted.
    fn field_name(&mut self) -> Result<String, String> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        if let Some(quoted) = rest.strip_prefix('`') {
            let end = quoted.find('`').ok_or("unclosed ` in a field name")?;
            self.pos += end + 2;
            return Ok(quoted[..end].to_owned());
        }
        let end = rest
            .find(':')
            .ok_or_else(|| format!("expected name:type at {rest:?}"))?;
        let name = rest[..end].trim();
        if name.is_empty() || name.contains([',', '<', '>']) {
            return Err(format!("expected a field name at {rest:?}"));
        }
        self.pos += end;
        Ok(name.to_owned())
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {c:?} at character {} of {:?}",
                self.pos + 1,
                self.text
            ))
        }
    }

    fn peek(&mut self, c: char) -> bool {
        self.skip_ws();
        self.text[self.pos..].starts_with(c)
    }

    fn number(&mut self) -> Result<u32, String> {
        let word = self.word().to_owned();
        word.parse().map_err(|_| format!("expected a number, found {word:?}"))
    }

    /// Enters a `list`, `struct` or `map`: refused past
    /// [`MAX_TYPE_DEPTH`], since records filling a deeper column would be
    /// refused anyway (and the parser recurses once per level).
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_TYPE_DEPTH {
            return Err(format!(
                "list, struct and map types are nested more than {MAX_TYPE_DEPTH} deep: at most \
                 {MAX_TYPE_DEPTH} levels are allowed (a record may nest {MAX_DEPTH} deep, itself included)"
            ));
        }
        Ok(())
    }

    fn parse_type(&mut self) -> Result<ColumnType, String> {
        let name = self.word().to_ascii_lowercase();
        let nested = matches!(name.as_str(), "list" | "array" | "map" | "struct");
        if nested {
            self.enter()?;
        }
        let ty = self.parse_named(&name);
        if nested {
            self.depth -= 1;
        }
        ty
    }

    fn parse_named(&mut self, name: &str) -> Result<ColumnType, String> {
        Ok(match name {
            "string" | "varchar" | "char" => {
                if self.peek('(') {
                    self.expect('(')?;
                    self.number()?;
                    self.expect(')')?;
                }
                ColumnType::String
            }
            "boolean" | "bool" => ColumnType::Boolean,
            // Hive's narrower integers are written as int32, which readers
            // (Athena, Spark) read into a tinyint or smallint column.
            "int32" | "int" | "integer" | "tinyint" | "smallint" => ColumnType::Int32,
            "int64" | "bigint" | "long" => ColumnType::Int64,
            "float" | "float32" | "real" => ColumnType::Float,
            "double" | "float64" => ColumnType::Double,
            "date" => ColumnType::Date,
            "decimal" => {
                self.expect('(')?;
                let precision = self.number()?;
                let scale = if self.peek(',') {
                    self.expect(',')?;
                    self.number()?
                } else {
                    0
                };
                self.expect(')')?;
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(format!(
                        "decimal({precision},{scale}) is out of range: precision 1 to 38, scale 0 to precision"
                    ));
                }
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            }
            "timestamp" => {
                if !self.peek('(') {
                    return Ok(ColumnType::Timestamp(TimeUnit::Millisecond));
                }
                self.expect('(')?;
                let unit = match self.word() {
                    "s" => TimeUnit::Second,
                    "ms" => TimeUnit::Millisecond,
                    "us" => TimeUnit::Microsecond,
                    "ns" => TimeUnit::Nanosecond,
                    other => {
                        return Err(format!(
                            "timestamp unit {other:?} is not allowed: expected s, ms, us or ns"
                        ))
                    }
                };
                self.expect(')')?;
                ColumnType::Timestamp(unit)
            }
            "list" | "array" => {
                self.expect('<')?;
                let item = self.parse_type()?;
                self.expect('>')?;
                ColumnType::List(Box::new(item))
            }
            "map" => {
                self.expect('<')?;
                let key = self.parse_type()?;
                if key != ColumnType::String {
                    return Err(format!(
                        "map keys must be string (JSON object keys are strings), not {key}"
                    ));
                }
                self.expect(',')?;
                let value = self.parse_type()?;
                self.expect('>')?;
                ColumnType::Map(Box::new(value))
            }
            "struct" => {
                self.expect('<')?;
                let mut fields: Vec<Column> = Vec::new();
                loop {
                    let name = self.field_name()?;
                    self.expect(':')?;
                    let ty = self.parse_type()?;
                    if fields.iter().any(|f| f.name.eq_ignore_ascii_case(&name)) {
                        return Err(format!("struct field {name:?} appears twice"));
                    }
                    fields.push(Column { name, ty });
                    if self.peek(',') {
                        self.expect(',')?;
                        continue;
                    }
                    self.expect('>')?;
                    break;
                }
                ColumnType::Struct(fields)
            }
            "" => {
                return Err(format!(
                    "expected a type at character {} of {:?}",
                    self.pos + 1,
                    self.text
                ))
            }
            other => return Err(format!("unknown type {other:?}")),
        })
    }
}

/// A problem with a schema file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    columns: Vec<SchemaFileColumn>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFileColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

impl Schema {
    /// Parses the text of a schema file. Errors name the column and what is
    /// allowed.
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let file: SchemaFile = serde_json::from_str(text).map_err(|err| {
            SchemaError(format!(
                "not a schema file ({err}): expected {{\"columns\": [{{\"name\": \"...\", \"type\": \"...\"}}, ...]}}"
            ))
        })?;
        if file.columns.is_empty() {
            return Err(SchemaError("\"columns\" is empty: name at least one column".to_owned()));
        }
        let mut columns: Vec<Column> = Vec::with_capacity(file.columns.len());
        for column in file.columns {
            let name = column.name;
            if name.is_empty() {
                return Err(SchemaError("a column has an empty name".to_owned()));
            }
            if name.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
                return Err(SchemaError(format!(
                    "column {name:?}: names starting with {RESERVED_PREFIX} are reserved for spillway's own columns"
                )));
            }
            if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                return Err(SchemaError(format!(
                    "column {name:?} appears twice (names are compared ignoring case)"
                )));
            }
            let ty = ColumnType::parse(&column.ty).map_err(|err| {
                SchemaError(format!(
                    "column {name:?}: type {:?}: {err}; allowed: {ALLOWED_TYPES}",
                    column.ty
                ))
            })?;
            columns.push(Column { name, ty });
        }
        Ok(Schema { columns })
    }

    /// Reads and parses a schema file.
    pub fn load(path: &std::path::Path) -> Result<Schema, SchemaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| SchemaError(format!("cannot read schema file {}: {err}", path.display())))?;
        Schema::parse(&text).map_err(|err| SchemaError(format!("schema file {}: {}", path.display(), err.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_spelling() {
        let cases = [
            ("string", ColumnType::String),
            ("BIGINT", ColumnType::Int64),
            ("int", ColumnType::Int32),
            ("SMALLINT", ColumnType::Int32),
            ("tinyint", ColumnType::Int32),
            (
                "decimal(10,2)",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            ("timestamp", ColumnType::Timestamp(TimeUnit::Millisecond)),
            ("timestamp(us)", ColumnType::Timestamp(TimeUnit::Microsecond)),
            ("array<string>", ColumnType::List(Box::new(ColumnType::String))),
            ("map<string, double>", ColumnType::Map(Box::new(ColumnType::Double))),
        ];
        for (text, want) in cases {
            assert_eq!(ColumnType::parse(text).unwrap(), want, "{text}");
        }
        let nested = ColumnType::parse("struct<id:string, tags:list<struct<k:string,v:int64>>>").unwrap();
        assert_eq!(
            nested.to_string(),
            "struct<id:string,tags:list<struct<k:string,v:int64>>>"
        );
    }

    #[test]
    fn bad_types_say_what_is_wrong() {
        assert_eq!(ColumnType::parse("integerr").unwrap_err(), "unknown type \"integerr\"");
        assert!(ColumnType::parse("decimal(40,2)")
            .unwrap_err()
            .contains("precision 1 to 38"));
        assert!(ColumnType::parse("map<int,string>")
            .unwrap_err()
            .contains("map keys must be string"));
        assert!(ColumnType::parse("timestamp(h)")
            .unwrap_err()
            .contains("expected s, ms, us or ns"));
        assert!(ColumnType::parse("list<string").unwrap_err().contains("expected '>'"));
    }

    #[test]
    fn types_nest_no_deeper_than_records_may() {
        let nested = |depth: usize| format!("{}int64{}", "list<struct<a:".repeat(depth / 2), ">>".repeat(depth / 2));
        assert!(ColumnType::parse(&nested(30)).is_ok());
        let mixed = format!("map<string,{}>", nested(30));
        assert!(ColumnType::parse(&mixed).is_ok(), "31 levels");
        let err = ColumnType::parse(&format!("list<{mixed}>")).unwrap_err();
        assert!(err.contains("nested more than 31 deep"), "{err}");
        // Refused as it is read, before it could exhaust the stack.
        assert!(ColumnType::parse(&"list<".repeat(1_000_000)).is_err());
    }

    #[test]
    fn schema_files_name_the_bad_column() {
        let err = Schema::parse(r#"{"columns":[{"name":"a","type":"string"},{"name":"price","type":"money"}]}"#)
            .unwrap_err()
            .0;
        assert!(
            err.starts_with("column \"price\": type \"money\": unknown type"),
            "{err}"
        );
        assert!(err.contains("allowed: string, boolean"), "{err}");
        let err = Schema::parse(r#"{"columns":[{"name":"_spillway_data","type":"string"}]}"#)
            .unwrap_err()
            .0;
        assert!(err.contains("reserved"), "{err}");
        let err = Schema::parse(r#"{"columns":[{"name":"A","type":"string"},{"name":"a","type":"int"}]}"#)
            .unwrap_err()
            .0;
        assert!(err.contains("appears twice"), "{err}");
    }
}
