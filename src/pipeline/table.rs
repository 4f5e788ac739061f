//! The table schema of a pipeline that writes Parquet with an inferred
//! schema: one schema for the whole prefix, across buffers and restarts
//! (the growth rules are in `spillway_transforms::format::parquet::table`).
//!
//! Each batch is encoded under the version in force. A batch that makes a
//! new version (the first batch, or one with a key the table lacks) makes
//! it durable before anything is written under it, in this order:
//! 1. the checkpoint saves it: from then on no run can make that version
//!    number with other columns, as every run starts from the checkpoint's
//!    version;
//! 2. its schema object, `_spillway/schemas/<name>/<version>.json`, is put
//!    (create-only: one left by a run stopped after step 1 has the same
//!    columns, as it came from the same checkpoint, so "exists" is fine);
//! 3. the batch's objects are delivered as any other (intent, put,
//!    checkpoint).
//!
//! A run stopped anywhere in between reads the batch again and writes it
//! under the saved version, or a later one: a version without files is
//! harmless, every later version holding it whole. The schema object of
//! the version in force is put once per run, before its first object, so
//! a run stopped between steps 1 and 2 leaves none missing.
//!
//! A run whose checkpoint has no version (a lost checkpoint, or a second
//! instance with a checkpoint of its own) starts from the newest schema
//! object under the destination ([`resume_published`]), so the table
//! continues rather than starting afresh with other columns.
//!
//! Not handled: two instances growing the table at the same time. Each
//! grows from the version it has, and create-only puts keep the first
//! schema object of a version number: the other instance's files of that
//! version may hold columns the object does not list.

use std::sync::Arc;

use spillway_destinations::ObjectStore;
use spillway_transforms::format::parquet::{count_columns, TableSchema, MAX_COLUMNS};
use spillway_transforms::Record;

use super::delivery::{blocking, Delivery};
use super::object::{ObjectPlanner, PlannedObject};
use super::RunError;
use crate::checkpoint::{Checkpointer, Ticket};

/// At start, with no version in the checkpoint: puts the newest schema
/// object under the destination in force, and saves it in the
/// checkpoint. Versions are probed from 1 up (they are numbered without
/// gaps); none found leaves the checkpoint as it is, and the first buffer
/// makes version 1.
pub(super) async fn resume_published(
    planner: &ObjectPlanner,
    store: &dyn ObjectStore,
    checkpoints: &Checkpointer,
) -> Result<(), RunError> {
    if checkpoints.table_schema().is_some() {
        return Ok(());
    }
    let mut newest: Option<TableSchema> = None;
    for version in 1.. {
        let key = planner
            .table_schema_key(version)
            .map_err(|err| RunError::Encode(std::io::Error::other(err)))?;
        let Some(bytes) = store.get(&key).await.map_err(RunError::DestinationCheck)? else {
            break;
        };
        let table = std::str::from_utf8(&bytes)
            .map_err(|err| err.to_string())
            .and_then(|text| TableSchema::from_json(text).map_err(|err| err.to_string()))
            .and_then(|table| match table.version == version {
                true => Ok(table),
                false => Err(format!("it says version {}", table.version)),
            })
            .map_err(|reason| RunError::TableSchemaObject {
                key: key.to_string(),
                reason,
            })?;
        newest = Some(table);
    }
    let Some(table) = newest else {
        return Ok(());
    };
    tracing::info!(
        version = table.version,
        columns = table.columns.len(),
        "the checkpoint has no table schema: continuing the newest one published under the destination"
    );
    checkpoints.set_table_schema(table);
    checkpoints.save().await?;
    Ok(())
}

impl Delivery {
    /// Encodes a data batch under the table schema (see the module docs),
    /// making a new version durable first; gives the objects to deliver.
    pub async fn plan_in_table(
        &self,
        planner: Arc<ObjectPlanner>,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<PlannedObject>, RunError> {
        // Batches are planned one at a time (their puts may overlap): each
        // is encoded under the version the one before it left, so versions
        // grow one by one and none is lost to a race.
        let mut published = self.published_table_schema.lock().await;
        let table = self.checkpoints.table_schema();
        let (objects, grown) = blocking(move || planner.table_data(records, tickets, table.as_ref())).await?;
        if let Some(grown) = grown {
            tracing::info!(
                version = grown.version,
                columns = grown.columns.len(),
                "the table schema has a new version"
            );
            self.checkpoints.set_table_schema(grown);
            self.save().await?;
        }
        self.publish_table_schema(&mut published).await?;
        Ok(objects)
    }

    /// Puts the schema object of the version in force, once per run.
    async fn publish_table_schema(&self, published: &mut Option<u64>) -> Result<(), RunError> {
        let Some(table) = self.checkpoints.table_schema() else {
            return Ok(());
        };
        if *published == Some(table.version) {
            return Ok(());
        }
        let version = table.version;
        let columns = count_columns(&table.columns);
        if columns >= MAX_COLUMNS {
            tracing::warn!(
                version,
                columns,
                "the table schema has reached its limit of {MAX_COLUMNS} columns: keys it lacks are not made \
                 columns (each such record keeps its bytes in _spillway_data, so nothing is lost); \
                 records whose keys are ids belong in a map column of a schema file"
            );
        }
        let planner = self.planner.clone();
        let object = blocking(move || planner.table_schema_object(&table)).await?;
        // Retried until written, as error objects are: data must not be
        // written under a version that has no schema object.
        self.put_error_object(&object).await?;
        *published = Some(version);
        Ok(())
    }
}
