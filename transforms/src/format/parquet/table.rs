//! The table schema of an inferred-schema pipeline: one schema for every
//! file of a prefix, so that readers (pyarrow datasets, DuckDB, Athena,
//! Spark) read the prefix as one table.
//!
//! Inferring each buffer's schema on its own makes files that disagree: a
//! key holding integers in one buffer and strings in the next makes an
//! `int64` column in one file and a `string` column in the other, which no
//! reader merges. So the first buffer's inferred schema becomes version 1
//! of the table, and from then on the table only grows ([`grow`]):
//! - a column keeps its name, its type and its place, forever;
//! - a key the table lacks becomes a new (nullable) column, appended; a
//!   struct grows the same way, field by field, and a list of structs too;
//! - a value whose type differs from its column's is converted to it by the
//!   rules of a schema file (a number into a `string` column becomes its
//!   text), or refused as with a schema file (`Parquet.TypeMismatch`,
//!   `Parquet.NestingMismatch`).
//!
//! So each version holds every column of the one before, with the same
//! types, in the same order, and every file is written under the latest
//! version. Keeping versions durable (the checkpoint, the schema objects)
//! is the pipeline's business; this module only grows and encodes.

use serde::{Deserialize, Serialize};

use super::convert::KeyRules;
use super::infer::MAX_COLUMNS;
use super::schema::{Column, ColumnType};
use super::{cores, finish, split, Encoded, ParquetFormat, Record, Speculation, Written};

/// One version of a pipeline's table schema: its user columns (the
/// reserved `_spillway_` columns follow them in every file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TableFile", into = "TableFile")]
pub struct TableSchema {
    /// 1 for the first buffer's schema, then one more for each growth.
    pub version: u64,
    pub columns: Vec<Column>,
}

/// A batch encoded under a table schema.
#[derive(Debug)]
pub struct TableEncoded {
    pub encoded: Encoded,
    /// The table's next version, when this batch made one (the first
    /// version, or a growth): it must be made durable before the file is
    /// delivered.
    pub grown: Option<TableSchema>,
}

impl ParquetFormat {
    /// Encodes a batch of an inferred-schema pipeline under its table
    /// schema `table` (`None`: the batch is the first, and its inferred
    /// schema becomes version 1), growing the table with what the batch
    /// brings.
    ///
    /// The batch is converted under the table while its own schema is
    /// inferred, in one parse; if it brings a column the table lacks, it is
    /// converted again under the grown table.
    pub fn encode_table(&self, records: &[Record], table: Option<&TableSchema>) -> TableEncoded {
        debug_assert!(self.schema.is_none(), "a table schema is for inferred schemas");
        let parts = split(records, cores());
        let Some(table) = table else {
            let (encoded, columns) = self.encode_inferred(records, &parts);
            // A batch of `{}` only has no column to start a table with.
            let grown = (!columns.is_empty()).then_some(TableSchema { version: 1, columns });
            return TableEncoded { encoded, grown };
        };
        let inferred = match self.write(&parts, &table.columns, Speculation::Table) {
            Ok(Written::Encoded(encoded)) => return TableEncoded { encoded, grown: None },
            Ok(Written::Changed(inferred)) => inferred,
            Err(err) => {
                // A bug, not the records' fault: the batch is encoded
                // again the usual way.
                debug_assert!(false, "the single pass failed: {err}");
                self.infer(&parts)
            }
        };
        let columns = grow(&table.columns, &inferred, &self.key_rules);
        let encoded = finish(self.write(&parts, &columns, Speculation::None), records.len());
        let grown = (columns != table.columns).then(|| TableSchema {
            version: table.version + 1,
            columns,
        });
        TableEncoded { encoded, grown }
    }
}

/// The table `table` grown by what a batch inferred (`inferred`): the
/// table's columns as they are, then the inferred columns it lacks, in the
/// batch's order; structs (and lists of structs) grow the same way, field
/// by field. A type that differs from the table's is not a growth: the
/// table's type stands. Names match by the key rules (ignoring case by
/// default), as keys match columns.
///
/// The table holds at most [`MAX_COLUMNS`] columns, counting the fields of
/// structs at every level: a new column (with its fields) that would pass
/// it is not added, and its values stay in the records' `_spillway_data`.
pub(super) fn grow(table: &[Column], inferred: &[Column], rules: &KeyRules) -> Vec<Column> {
    let mut room = MAX_COLUMNS.saturating_sub(count_columns(table));
    grow_within(table, inferred, rules, &mut room)
}

fn grow_within(table: &[Column], inferred: &[Column], rules: &KeyRules, room: &mut usize) -> Vec<Column> {
    let mut grown = table.to_vec();
    for column in inferred {
        let key = rules.normalize(&column.name);
        match grown.iter_mut().find(|c| rules.normalize(&c.name) == key) {
            Some(existing) => existing.ty = grow_type(&existing.ty, &column.ty, rules, room),
            None => {
                let cost = count_columns(std::slice::from_ref(column));
                if cost <= *room {
                    *room -= cost;
                    grown.push(column.clone());
                }
            }
        }
    }
    grown
}

fn grow_type(table: &ColumnType, inferred: &ColumnType, rules: &KeyRules, room: &mut usize) -> ColumnType {
    match (table, inferred) {
        (ColumnType::Struct(fields), ColumnType::Struct(more)) => {
            ColumnType::Struct(grow_within(fields, more, rules, room))
        }
        (ColumnType::List(item), ColumnType::List(other)) => {
            ColumnType::List(Box::new(grow_type(item, other, rules, room)))
        }
        _ => table.clone(),
    }
}

/// How many columns `columns` are, counting the fields of structs (in
/// lists and maps too) at every level.
pub fn count_columns(columns: &[Column]) -> usize {
    fn of_type(ty: &ColumnType) -> usize {
        match ty {
            ColumnType::Struct(fields) => count_columns(fields),
            ColumnType::List(item) | ColumnType::Map(item) => of_type(item),
            _ => 0,
        }
    }
    columns.iter().map(|column| 1 + of_type(&column.ty)).sum()
}

/// A table schema that cannot be read back (from a checkpoint or a schema
/// object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a table schema: {0}")]
pub struct TableSchemaError(String);

impl TableSchema {
    /// The JSON text of a schema object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a table schema serializes")
    }

    pub fn from_json(text: &str) -> Result<TableSchema, TableSchemaError> {
        serde_json::from_str(text).map_err(|err| TableSchemaError(err.to_string()))
    }
}

/// How a table schema is written: JSON with nested types spelled as
/// structure, not as `struct<...>` text, so that any field name (a key of
/// the records, whatever its characters) reads back as it was.
/// `{"version": 2, "columns": [{"name": "v", "type": "int64"},
/// {"name": "user", "type": "struct", "fields": [...]},
/// {"name": "tags", "type": "list", "item": {"type": "string"}}]}`.
#[derive(Serialize, Deserialize)]
struct TableFile {
    version: u64,
    columns: Vec<FileColumn>,
}

#[derive(Serialize, Deserialize)]
struct FileColumn {
    name: String,
    #[serde(flatten)]
    ty: FileType,
}

#[derive(Serialize, Deserialize)]
struct FileType {
    /// A scalar type as a schema file spells it, or `list`, `struct`,
    /// `map`.
    #[serde(rename = "type")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item: Option<Box<FileType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<FileColumn>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Box<FileType>>,
}

impl From<TableSchema> for TableFile {
    fn from(table: TableSchema) -> Self {
        TableFile {
            version: table.version,
            columns: table.columns.iter().map(file_column).collect(),
        }
    }
}

fn file_column(column: &Column) -> FileColumn {
    FileColumn {
        name: column.name.clone(),
        ty: file_type(&column.ty),
    }
}

fn file_type(ty: &ColumnType) -> FileType {
    let mut file = FileType {
        name: String::new(),
        item: None,
        fields: None,
        value: None,
    };
    match ty {
        ColumnType::List(item) => {
            file.name = "list".to_owned();
            file.item = Some(Box::new(file_type(item)));
        }
        ColumnType::Struct(fields) => {
            file.name = "struct".to_owned();
            file.fields = Some(fields.iter().map(file_column).collect());
        }
        ColumnType::Map(value) => {
            file.name = "map".to_owned();
            file.value = Some(Box::new(file_type(value)));
        }
        scalar => file.name = scalar.to_string(),
    }
    file
}

impl TryFrom<TableFile> for TableSchema {
    type Error = TableSchemaError;

    fn try_from(file: TableFile) -> Result<Self, Self::Error> {
        Ok(TableSchema {
            version: file.version,
            columns: file.columns.into_iter().map(column_of).collect::<Result<_, _>>()?,
        })
    }
}

fn column_of(file: FileColumn) -> Result<Column, TableSchemaError> {
    if file.name.is_empty() {
        return Err(TableSchemaError("a column has an empty name".to_owned()));
    }
    let ty = type_of(file.ty).map_err(|err| TableSchemaError(format!("column {:?}: {}", file.name, err.0)))?;
    Ok(Column { name: file.name, ty })
}

fn type_of(file: FileType) -> Result<ColumnType, TableSchemaError> {
    let missing = |part: &str| TableSchemaError(format!("type {:?} without its {part:?}", file.name));
    match file.name.as_str() {
        "list" => Ok(ColumnType::List(Box::new(type_of(
            *file.item.ok_or_else(|| missing("item"))?,
        )?))),
        "map" => Ok(ColumnType::Map(Box::new(type_of(
            *file.value.ok_or_else(|| missing("value"))?,
        )?))),
        "struct" => {
            let fields = file.fields.ok_or_else(|| missing("fields"))?;
            Ok(ColumnType::Struct(
                fields.into_iter().map(column_of).collect::<Result<_, _>>()?,
            ))
        }
        scalar => match ColumnType::parse(scalar) {
            Ok(ty @ (ColumnType::List(_) | ColumnType::Struct(_) | ColumnType::Map(_))) => Err(TableSchemaError(
                format!("type {ty}: nested types are spelled as structure"),
            )),
            Ok(ty) => Ok(ty),
            Err(err) => Err(TableSchemaError(format!("type {scalar:?}: {err}"))),
        },
    }
}

#[cfg(test)]
mod tests;
