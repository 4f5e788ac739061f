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
//! Not handled: two instances writing one prefix with separate
//! checkpoints. Each starts from its own checkpoint, and create-only puts
//! keep the first schema object of a version number; nothing reads a
//! version another instance made.

use std::sync::Arc;

use spillway_transforms::Record;

use super::delivery::{blocking, Delivery};
use super::object::{ObjectPlanner, PlannedObject};
use super::RunError;
use crate::checkpoint::Ticket;

impl Delivery {
    /// Encodes a data batch under the table schema (see the module docs),
    /// making a new version durable first; gives the objects to deliver.
    pub async fn plan_in_table(
        &self,
        planner: Arc<ObjectPlanner>,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<PlannedObject>, RunError> {
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
        self.publish_table_schema().await?;
        Ok(objects)
    }

    /// Puts the schema object of the version in force, once per run.
    async fn publish_table_schema(&self) -> Result<(), RunError> {
        let Some(table) = self.checkpoints.table_schema() else {
            return Ok(());
        };
        let mut published = self.published_table_schema.lock().await;
        if *published == Some(table.version) {
            return Ok(());
        }
        let version = table.version;
        let planner = self.planner.clone();
        let object = blocking(move || planner.table_schema_object(&table)).await?;
        // Retried until written, as error objects are: data must not be
        // written under a version that has no schema object.
        self.put_error_object(&object).await?;
        *published = Some(version);
        Ok(())
    }
}
