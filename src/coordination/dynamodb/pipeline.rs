//! The pipeline's own item in the lease table, beside its shards' leases:
//! what every instance of the pipeline must agree on and no shard owns.
//! Today that is `started_at`, when the pipeline first started, from which
//! `start_position = "latest"` reads every shard without a checkpoint
//! (`docs/leases.md`, step 4). Without coordination it is kept in the
//! checkpoint file; with it, a shard taken over by another instance, or a
//! child shard found later, must start from the same time, or records
//! between two instances' start times would be skipped.
//!
//! The first instance to ask writes its own time, create-only; every other
//! (and every later run) reads that one. The item is never changed after.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use super::{is_condition_failed, s, LeaseTable, NAMESPACE, SHARD};
use crate::coordination::LeaseError;

/// The pipeline item's sort key: `#` is not allowed in a shard id, so no
/// shard's lease can have it.
const PIPELINE_ITEM: &str = "#pipeline";
const STARTED_AT: &str = "started_at";

/// Whether `item` is the pipeline's item rather than a shard's lease.
pub(super) fn is_pipeline_item(item: &HashMap<String, AttributeValue>) -> bool {
    item.get(SHARD).and_then(|v| v.as_s().ok()).map(String::as_str) == Some(PIPELINE_ITEM)
}

impl LeaseTable {
    /// When the pipeline first started: the time the table holds, or, if
    /// none yet, `now`, written create-only so that of instances starting
    /// together exactly one time is kept and every one returns it. Kept to
    /// the millisecond (Kinesis arrival times are milliseconds), so that
    /// the one that wrote it returns what the others read.
    ///
    /// Not fenced by any lease: it belongs to the pipeline, and once
    /// written it never changes.
    pub async fn started_at(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, LeaseError> {
        let mine = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let put = self
            .client
            .put_item()
            .table_name(&self.options.table)
            .item(NAMESPACE, s(&self.options.namespace))
            .item(SHARD, s(PIPELINE_ITEM))
            .item(STARTED_AT, s(&mine))
            .condition_expression("attribute_not_exists(#shard)")
            .expression_attribute_names("#shard", SHARD)
            .send()
            .await;
        match put {
            Ok(_) => return self.parse_started_at(&mine),
            // Another instance wrote it first (or this one did, in an
            // attempt whose answer was lost): read what is there.
            Err(err) if is_condition_failed(&err) => {}
            Err(err) => return Err(self.classify(&err, PIPELINE_ITEM)),
        }
        let found = self
            .client
            .get_item()
            .table_name(&self.options.table)
            .consistent_read(true)
            .key(NAMESPACE, s(&self.options.namespace))
            .key(SHARD, s(PIPELINE_ITEM))
            .send()
            .await
            .map_err(|err| self.classify(&err, PIPELINE_ITEM))?;
        let text = found
            .item()
            .and_then(|item| item.get(STARTED_AT))
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| self.corrupt_pipeline_item("no started_at"))?;
        self.parse_started_at(text)
    }

    fn parse_started_at(&self, text: &str) -> Result<DateTime<Utc>, LeaseError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| self.corrupt_pipeline_item(&format!("started_at {text:?} is not an RFC 3339 time: {err}")))
    }

    fn corrupt_pipeline_item(&self, detail: &str) -> LeaseError {
        LeaseError::Corrupt {
            table: self.options.table.clone(),
            shard: PIPELINE_ITEM.to_owned(),
            detail: detail.to_owned(),
        }
    }
}
