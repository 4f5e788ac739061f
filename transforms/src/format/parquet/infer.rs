//! Inferring a schema from the records of one buffer.
//!
//! Merge rules, value by value:
//! - a key seen in some records only is a nullable column (every column is);
//! - `null` takes the type of the other values; a column that is only ever
//!   `null` is a string column;
//! - integers and floats merge to double;
//! - booleans, numbers and strings that disagree merge to string (every
//!   scalar converts to its JSON text);
//! - objects merge field by field (union of keys, in order of first sight);
//!   arrays merge their elements' types;
//! - an object, an array and a scalar cannot merge: the shape seen first in
//!   the buffer wins, and a record whose value has another shape goes to the
//!   error output (a string column still takes an object or array as its
//!   JSON text, as with a given schema);
//! - Parquet cannot store a struct without fields: an object that is always
//!   empty (`{}`) is a string column holding `{}`; an array that is always
//!   empty is a `list<string>`;
//! - integers beyond int64 make the column a double.
//!
//! Keys are matched with the same rules as conversion (case, dots); a
//! column takes the spelling of its first key. Top-level keys starting with
//! `_spillway_` are not inferred: those names are reserved (the values are
//! still in `_spillway_data`).

use std::collections::HashMap;

use super::convert::KeyRules;
use super::json::Json;
use super::schema::{Column, ColumnType, RESERVED_PREFIX};

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Null,
    Bool,
    Int,
    Float,
    Str,
    List(Box<Shape>),
    Struct(Fields),
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Fields {
    columns: Vec<(String, Shape)>,
    by_key: HashMap<String, usize>,
}

impl Fields {
    fn merge_object(&mut self, entries: &[(std::borrow::Cow<str>, Json)], rules: &KeyRules, top: bool) {
        for (key, value) in entries {
            if top && key.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
                continue;
            }
            let normalized = rules.normalize(key);
            let name = if rules.dots_to_underscores {
                key.replace('.', "_")
            } else {
                key.to_string()
            };
            let index = match self.by_key.get(normalized.as_ref()) {
                Some(&index) => index,
                None => {
                    self.columns.push((name, Shape::Null));
                    self.by_key.insert(normalized.into_owned(), self.columns.len() - 1);
                    self.columns.len() - 1
                }
            };
            merge_value(&mut self.columns[index].1, value, rules);
        }
    }
}

fn shape_of_scalar(value: &Json) -> Shape {
    match value {
        Json::Null => Shape::Null,
        Json::Bool(_) => Shape::Bool,
        Json::Int(_) => Shape::Int,
        Json::UInt(_) | Json::Float(_) => Shape::Float,
        Json::Str(_) => Shape::Str,
        Json::Array(_) | Json::Object(_) => unreachable!("not a scalar"),
    }
}

fn merge_value(shape: &mut Shape, value: &Json, rules: &KeyRules) {
    match (&mut *shape, value) {
        (_, Json::Null) => {}
        (Shape::Null, Json::Array(items)) => {
            let mut item = Shape::Null;
            for v in items {
                merge_value(&mut item, v, rules);
            }
            *shape = Shape::List(Box::new(item));
        }
        (Shape::Null, Json::Object(entries)) => {
            let mut fields = Fields::default();
            fields.merge_object(entries, rules, false);
            *shape = Shape::Struct(fields);
        }
        (Shape::List(item), Json::Array(items)) => {
            for v in items {
                merge_value(item, v, rules);
            }
        }
        (Shape::Struct(fields), Json::Object(entries)) => fields.merge_object(entries, rules, false),
        // Nested against anything else: the first shape wins.
        (Shape::List(_) | Shape::Struct(_) | Shape::Str, _) | (_, Json::Array(_) | Json::Object(_)) => {}
        (Shape::Null, scalar) => *shape = shape_of_scalar(scalar),
        (current, scalar) => {
            let merged = match (current.clone(), shape_of_scalar(scalar)) {
                (a, b) if a == b => a,
                (Shape::Int, Shape::Float) | (Shape::Float, Shape::Int) => Shape::Float,
                _ => Shape::Str,
            };
            *shape = merged;
        }
    }
}

fn to_type(shape: &Shape) -> ColumnType {
    match shape {
        Shape::Null | Shape::Str => ColumnType::String,
        Shape::Bool => ColumnType::Boolean,
        Shape::Int => ColumnType::Int64,
        Shape::Float => ColumnType::Double,
        Shape::List(item) => ColumnType::List(Box::new(to_type(item))),
        Shape::Struct(fields) if fields.columns.is_empty() => ColumnType::String,
        Shape::Struct(fields) => ColumnType::Struct(to_columns(fields)),
    }
}

fn to_columns(fields: &Fields) -> Vec<Column> {
    fields
        .columns
        .iter()
        .map(|(name, shape)| Column {
            name: name.clone(),
            ty: to_type(shape),
        })
        .collect()
}

/// Accumulates the schema of a buffer's records.
#[derive(Debug, Default)]
pub struct Inference {
    top: Fields,
}

impl Inference {
    /// Merges one record (a JSON object; other records are skipped here and
    /// refused at conversion).
    pub fn add(&mut self, record: &Json, rules: &KeyRules) {
        if let Json::Object(entries) = record {
            self.top.merge_object(entries, rules, true);
        }
    }

    pub fn columns(&self) -> Vec<Column> {
        to_columns(&self.top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(lines: &[&str]) -> String {
        let rules = KeyRules {
            case_insensitive: true,
            dots_to_underscores: false,
        };
        let mut inference = Inference::default();
        for line in lines {
            inference.add(&Json::parse(line.as_bytes()).unwrap(), &rules);
        }
        ColumnType::Struct(inference.columns()).to_string()
    }

    #[test]
    fn merges_compatible_records() {
        assert_eq!(
            infer(&[
                r#"{"a":1,"b":null,"c":[],"d":{},"e":{"x":1}}"#,
                r#"{"a":2.5,"f":true,"E":{"y":[1,2.5]},"_spillway_x":1}"#,
                r#"{"a":3,"f":"yes","c":[{"k":"v"}]}"#,
            ]),
            "struct<a:double,b:string,c:list<struct<k:string>>,d:string,e:struct<x:int64,y:list<double>>,f:string>"
        );
    }

    #[test]
    fn the_first_nested_shape_wins() {
        assert_eq!(infer(&[r#"{"a":{"x":1}}"#, r#"{"a":"s"}"#]), "struct<a:struct<x:int64>>");
        assert_eq!(infer(&[r#"{"a":"s"}"#, r#"{"a":{"x":1}}"#]), "struct<a:string>");
        assert_eq!(infer(&[r#"{"a":[1]}"#, r#"{"a":{"x":1}}"#]), "struct<a:list<int64>>");
        assert_eq!(infer(&[r#"{"a":[]}"#]), "struct<a:list<string>>");
        assert_eq!(infer(&[r#"{"a":18446744073709551615}"#]), "struct<a:double>");
    }
}
