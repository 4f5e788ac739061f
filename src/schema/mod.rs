//! `spillway schema`: the table schema a pipeline writes its Parquet
//! files under, as JSON, or as the DDL of a table that reads its archive
//! ([`athena`]).
//!
//! The schema is the one in force for the next file: the schema file's,
//! the Glue table's (read now), or, with an inferred schema, the latest
//! version in the checkpoint (read without its lock, so beside a running
//! pipeline too). An inferred-schema pipeline that has written nothing
//! has none yet, and says so.

pub mod athena;
pub mod partitions;

use std::path::PathBuf;

use spillway_transforms::format::parquet::{Column, TableSchema};
use spillway_transforms::Format;

use crate::catalog::glue::{self, GlueError};
use crate::checkpoint::store::{read_state, StoreError};
use crate::config::Config;

/// Where the schema in force comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    SchemaFile,
    Glue { table: String, version: Option<String> },
    Inferred { version: u64 },
}

/// The schema in force: its user columns, and where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub origin: Origin,
    pub columns: Vec<Column>,
}

/// Why there is no schema to show.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("format.type is {0:?}: only parquet writes under a table schema")]
    NotParquet(&'static str),
    #[error(
        "no table schema yet: the schema is inferred, and the first buffer written decides it \
         (none is in the checkpoint {0})"
    )]
    NoneYet(PathBuf),
    #[error(transparent)]
    Glue(#[from] GlueError),
    #[error(transparent)]
    Checkpoint(#[from] StoreError),
}

/// The schema the pipeline of `config` writes its next file under.
pub async fn current(config: &Config) -> Result<Current, SchemaError> {
    let parquet = match &config.format {
        Format::Parquet(parquet) => parquet,
        Format::JsonLines | Format::JsonLinesEnvelope => return Err(SchemaError::NotParquet("json_lines")),
        Format::Raw { .. } => return Err(SchemaError::NotParquet("raw")),
    };
    if let Some(schema) = &parquet.schema {
        return Ok(Current {
            origin: Origin::SchemaFile,
            columns: schema.columns.clone(),
        });
    }
    if let Some(config) = &config.glue {
        let table = glue::read_once(config).await?;
        return Ok(Current {
            origin: Origin::Glue {
                table: glue::describe(config),
                version: table.version_id,
            },
            columns: table.schema.columns,
        });
    }
    let state = read_state(&config.checkpoint.dir, &config.name)?;
    match state.and_then(|s| s.table_schema) {
        Some(table) => Ok(Current {
            origin: Origin::Inferred { version: table.version },
            columns: table.columns,
        }),
        None => Err(SchemaError::NoneYet(
            config.checkpoint.dir.join(format!("{}.checkpoint.json", config.name)),
        )),
    }
}

/// The schema as one JSON object: `origin` (`schema_file`, `glue` with
/// `table` and `version`, or `inferred` with `version`) and `columns`,
/// spelled as the schema objects under `_spillway/schemas/` spell them
/// (nested types as structure, so that any field name reads back).
pub fn to_json(current: &Current) -> serde_json::Value {
    let table = TableSchema {
        version: 0,
        columns: current.columns.clone(),
    };
    let mut value = serde_json::to_value(&table).expect("a table schema serializes");
    let columns = value["columns"].take();
    let mut out = serde_json::Map::new();
    match &current.origin {
        Origin::SchemaFile => {
            out.insert("origin".into(), "schema_file".into());
        }
        Origin::Glue { table, version } => {
            out.insert("origin".into(), "glue".into());
            out.insert("table".into(), table.clone().into());
            out.insert("version".into(), version.clone().into());
        }
        Origin::Inferred { version } => {
            out.insert("origin".into(), "inferred".into());
            out.insert("version".into(), (*version).into());
        }
    }
    out.insert("columns".into(), columns);
    serde_json::Value::Object(out)
}
