//! spillway: a self-hosted, Firehose-style delivery pipeline and archiver.
//!
//! The data flow, one module each: [`source`] (records with their
//! positions) → [`processor`]s (when configured) → [`pipeline`]'s router (checkpoint admission, record checks)
//! → [`buffer`] (size and age limits) → the writer (format, compression,
//! object key, create-only put) → [`checkpoint`] (advanced only after
//! delivery). [`config`] turns a TOML file into the typed configuration all
//! of this runs on; [`telemetry`] logs, counts and serves metrics and
//! health; [`limits`] is the memory budget over every pipeline. [`originals`] reads an archived Parquet file back into its
//! records. [`catalog`] reads the Glue table a Parquet pipeline may take
//! its columns from; [`schema`] shows the table schema a pipeline writes,
//! and the Athena DDL of a table over its archive.

pub mod buffer;
pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod coordination;
pub mod limits;
pub mod originals;
pub mod pipeline;
pub mod processor;
pub mod replay;
pub mod schema;
pub mod source;
pub mod telemetry;

pub use pipeline::{run, RunError, RunOptions, RunSummary};
