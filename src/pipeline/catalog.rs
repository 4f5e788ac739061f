//! Data batches of a pipeline whose columns come from a Glue table
//! (`[format.glue]`): each batch is encoded under the table as the
//! catalog has it when the batch is taken (`crate::catalog::glue`), so a
//! changed table applies from one object to the next, never within one.

use std::sync::Arc;

use spillway_transforms::Record;

use super::delivery::{blocking, Delivery};
use super::object::{ObjectPlanner, PlannedObject};
use super::RunError;
use crate::catalog::glue::GlueCatalog;
use crate::checkpoint::Ticket;

impl Delivery {
    /// Encodes a data batch under the Glue table's columns; gives the
    /// objects to deliver.
    pub async fn plan_in_catalog(
        &self,
        catalog: &GlueCatalog,
        planner: Arc<ObjectPlanner>,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<PlannedObject>, RunError> {
        let table = catalog.schema().await;
        blocking(move || planner.data_under(records, tickets, &table.schema)).await
    }
}
