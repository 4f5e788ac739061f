//! A Glue table's columns (Hive types) as spillway's schema.
//!
//! Glue keeps each column's type as Hive DDL text (`bigint`,
//! `array<struct<id:string>>`), which the schema file's type parser reads
//! too: every Hive type spillway can write maps to the type a schema file
//! would give it (`tinyint` and `smallint` are written as int32,
//! `varchar(n)` and `char(n)` as strings). What it cannot write (`binary`,
//! `uniontype`, `interval`, a map with keys other than strings) is refused
//! in one line naming the column, its type and what is allowed.

use spillway_transforms::format::parquet::{Column, ColumnType, Schema, RESERVED_PREFIX};

/// The Hive types spillway writes, for error messages.
pub const GLUE_TYPES: &str = "string, varchar(n), char(n), boolean, tinyint, smallint, int, bigint, float, \
     double, decimal(p,s), date, timestamp, array<T>, map<string,T>, struct<name:T,...>";

/// A table whose columns spillway cannot write as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GlueColumnsError(pub String);

/// The schema of a table's columns, `(name, type)` as Glue gives them.
pub fn schema_of<'a>(
    columns: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Schema, GlueColumnsError> {
    let mut schema: Vec<Column> = Vec::new();
    for (name, hive_type) in columns {
        if name.is_empty() {
            return Err(GlueColumnsError("a column has an empty name".into()));
        }
        if name.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
            return Err(GlueColumnsError(format!(
                "column {name:?}: names starting with {RESERVED_PREFIX} are reserved for spillway's own columns"
            )));
        }
        if schema.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            return Err(GlueColumnsError(format!(
                "column {name:?} appears twice (names are compared ignoring case)"
            )));
        }
        let Some(hive_type) = hive_type else {
            return Err(GlueColumnsError(format!("column {name:?} has no type")));
        };
        let ty = ColumnType::parse(hive_type).map_err(|err| {
            GlueColumnsError(format!(
                "column {name:?}: type {hive_type:?} cannot be written ({err}): allowed: {GLUE_TYPES}"
            ))
        })?;
        schema.push(Column {
            name: name.to_owned(),
            ty,
        });
    }
    if schema.is_empty() {
        return Err(GlueColumnsError(
            "the table has no columns (StorageDescriptor.Columns is empty)".into(),
        ));
    }
    Ok(Schema { columns: schema })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hive_type_maps_to_a_schema_type() {
        let columns = [
            ("s", "string"),
            ("v", "varchar(20)"),
            ("c", "char(3)"),
            ("b", "boolean"),
            ("t", "tinyint"),
            ("sm", "smallint"),
            ("i", "int"),
            ("bi", "bigint"),
            ("f", "float"),
            ("d", "double"),
            ("m", "decimal(10,2)"),
            ("dt", "date"),
            ("ts", "timestamp"),
            ("a", "array<struct<id:string,n:int>>"),
            ("mp", "map<string,bigint>"),
            ("st", "struct<user:struct<id:bigint>,tags:array<string>>"),
        ];
        let schema = schema_of(columns.iter().map(|(n, t)| (*n, Some(*t)))).unwrap();
        let types: Vec<String> = schema.columns.iter().map(|c| c.ty.to_string()).collect();
        assert_eq!(
            types,
            [
                "string",
                "string",
                "string",
                "boolean",
                "int32",
                "int32",
                "int32",
                "int64",
                "float",
                "double",
                "decimal(10,2)",
                "date",
                "timestamp(ms)",
                "list<struct<id:string,n:int32>>",
                "map<string,int64>",
                "struct<user:struct<id:int64>,tags:list<string>>",
            ]
        );
    }

    #[test]
    fn a_type_spillway_cannot_write_names_the_column_the_type_and_what_is_allowed() {
        let err = schema_of([("id", Some("string")), ("payload", Some("binary"))]).unwrap_err();
        assert_eq!(
            err.0,
            format!("column \"payload\": type \"binary\" cannot be written (unknown type \"binary\"): allowed: {GLUE_TYPES}")
        );
        let err = schema_of([("m", Some("map<int,string>"))]).unwrap_err();
        assert!(
            err.0
                .starts_with("column \"m\": type \"map<int,string>\" cannot be written (map keys must be string"),
            "{err}"
        );
        let err = schema_of([("u", Some("uniontype<int,string>"))]).unwrap_err();
        assert!(err.0.contains("unknown type \"uniontype\""), "{err}");
        assert!(schema_of([]).unwrap_err().0.contains("no columns"));
        assert!(schema_of([("_spillway_data", Some("string"))])
            .unwrap_err()
            .0
            .contains("reserved"));
        assert!(schema_of([("A", Some("int")), ("a", Some("int"))])
            .unwrap_err()
            .0
            .contains("twice"));
    }
}
