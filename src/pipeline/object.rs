//! From a flushed batch to objects: encode, compress, name.
//!
//! A data batch becomes one data object, plus one error object if the
//! format refused some records; an error batch becomes one error object.
//! Object names are deterministic from the first record:
//! `<stream>-<source id>-<sequence number>-<subsequence number><extensions>`,
//! so writing the same records again yields the same key.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use spillway_destinations::key::sanitize_segment;
use spillway_destinations::{Compression, KeyContext, KeyTemplate, ObjectKey, PutOptions};
use spillway_transforms::format::parquet::{ParquetFormat, Schema, TableEncoded, TableSchema};
use spillway_transforms::{error_record, Encoded, ErrorOutputType, Format, Record, Rejection};

use super::payload::RecordsPayload;
use crate::buffer::Filling;
use crate::checkpoint::{Claims, Ticket};
use crate::config::ObjectDestination;
use crate::processor::PartitionKeys;

/// Where the versions of a table schema are written, below the
/// destination's root.
pub(super) const TABLE_SCHEMAS: &str = "_spillway/schemas/";

/// How objects are named and encoded.
#[derive(Clone, Debug)]
pub(super) struct ObjectPlanner {
    stream: String,
    format: Format,
    compression: Compression,
    prefix: KeyTemplate,
    error_prefix: KeyTemplate,
    /// The partition keys of the data this planner writes (dynamic
    /// partitioning), rendered into the data prefix.
    partition: Option<Arc<PartitionKeys>>,
}

/// An object's bytes: whole, or encoded while they are sent.
#[derive(Debug)]
pub(super) enum Body {
    Whole(Bytes),
    Streamed(Arc<RecordsPayload>),
}

impl Body {
    /// The object's size, once it has been produced.
    pub fn len(&self) -> usize {
        match self {
            Body::Whole(bytes) => bytes.len(),
            Body::Streamed(payload) => payload.produced.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// One object, ready to be written, with the records it holds (kept so
/// that they can become error records if the object cannot be delivered,
/// while that can happen: [`PlannedObject::release_records`]).
#[derive(Debug)]
pub(super) struct PlannedObject {
    pub key: ObjectKey,
    pub body: Body,
    pub options: PutOptions,
    /// The records' claims on their sources' checkpoints (empty: written
    /// under an intent that has them already).
    pub claims: Claims,
    /// `data`, or the error output type.
    pub output: &'static str,
    /// Shared with a streamed payload: records are not copied to be kept.
    /// The batch's own list, not a slice copied from it (`Arc<[Record]>`
    /// held the list twice while it was made: issue #17).
    pub records: Arc<Vec<Record>>,
    /// How many records it holds (its `records`, until released).
    pub record_count: usize,
    /// Whether its records became error records here (refused by the
    /// format, or their delivery failed), so that they count in the run's
    /// error records once written. Those of an error batch were counted
    /// by the router.
    pub new_errors: bool,
}

impl PlannedObject {
    /// Lets go of the records the object was made of, once nothing can
    /// need them (`Delivery::keeps_records` decides). Held on, a Parquet
    /// batch's raw records stayed alive while it was put, beside the batch
    /// being encoded and the one filling: three buffers of them at once
    /// (issue #17).
    pub fn release_records(&mut self) {
        self.records = Arc::default();
    }
}

impl ObjectPlanner {
    pub fn new(stream: &str, format: &Format, destination: &ObjectDestination) -> Self {
        Self {
            stream: stream.to_owned(),
            format: format.clone(),
            compression: destination.compression,
            prefix: destination.prefix.clone(),
            error_prefix: destination.error_prefix.clone(),
            partition: None,
        }
    }

    /// This planner, for the data of one partition.
    pub fn for_partition(&self, keys: Arc<PartitionKeys>) -> Self {
        Self {
            partition: Some(keys),
            ..self.clone()
        }
    }

    /// Whether data objects are encoded whole before they are sent (Parquet)
    /// rather than while they are sent.
    pub fn encodes_whole(&self) -> bool {
        !self.format.is_streamable()
    }

    /// Encodes data records into their objects: one data object, plus an
    /// error object for the records the format refused. CPU-bound: run off
    /// the async runtime.
    pub fn data(&self, records: Vec<Record>, tickets: Vec<Ticket>) -> std::io::Result<Vec<PlannedObject>> {
        if self.format.is_streamable() {
            return Ok(vec![self.streamed(records, tickets)?]);
        }
        let encoded = self.format.encode(&records);
        self.split_refused(records, tickets, encoded)
    }

    /// The data object of a batch encoded as its buffer filled
    /// (`super::early`): `filled` holds its bytes, compressed, and its
    /// records only their places. CPU-bound (the codec's last jobs): run
    /// off the async runtime.
    pub fn filled(
        &self,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        filled: Box<dyn Filling>,
    ) -> std::io::Result<PlannedObject> {
        let (key, _) = self.key(&self.format, None, &records)?;
        let body = filled.finish()?;
        Ok(self.whole(&self.format, None, key, records, body, tickets))
    }

    /// [`Self::data`] under `schema` (a Glue table's columns) rather than
    /// the configured format's own. CPU-bound: run off the async runtime.
    pub fn data_under(
        &self,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        schema: &Schema,
    ) -> std::io::Result<Vec<PlannedObject>> {
        let Format::Parquet(parquet) = &self.format else {
            unreachable!("only Parquet takes a Glue table's columns")
        };
        let format = ParquetFormat {
            schema: Some(schema.clone()),
            ..(**parquet).clone()
        };
        let encoded = format.encode(&records);
        self.split_refused(records, tickets, encoded)
    }

    /// Whether data is encoded under a table schema that holds across
    /// batches (Parquet with an inferred schema; see `super::table`).
    pub fn keeps_table(&self) -> bool {
        matches!(&self.format, Format::Parquet(parquet) if parquet.schema.is_none())
    }

    /// [`Self::data`] under the table schema `table` (`None`: none yet),
    /// with the table's next version if this batch made one. CPU-bound:
    /// run off the async runtime.
    pub fn table_data(
        &self,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        table: Option<&TableSchema>,
    ) -> std::io::Result<(Vec<PlannedObject>, Option<TableSchema>)> {
        let Format::Parquet(parquet) = &self.format else {
            unreachable!("only an inferred Parquet schema keeps a table")
        };
        let TableEncoded { encoded, grown } = parquet.encode_table(&records, table);
        Ok((self.split_refused(records, tickets, encoded)?, grown))
    }

    /// The objects of an encoded batch: its data object, and an error
    /// object of the records the format refused.
    fn split_refused(
        &self,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        encoded: Encoded,
    ) -> std::io::Result<Vec<PlannedObject>> {
        if encoded.rejected.is_empty() {
            return Ok(vec![self.object(&self.format, None, records, encoded.body, tickets)?]);
        }
        // Split the refused records out of the batch, into an error object.
        let mut refused = vec![None; records.len()];
        let refused_count = encoded.rejected.len();
        for (index, rejection) in encoded.rejected {
            refused[index] = Some(rejection);
        }
        // Sized at once: grown by doubling, the kept list (most of the
        // batch) could hold up to twice its records' room until delivered.
        let kept_count = records.len() - refused_count;
        let (mut kept, mut kept_tickets) = (Vec::with_capacity(kept_count), Vec::with_capacity(kept_count));
        let (mut failed, mut failed_tickets) = (Vec::with_capacity(refused_count), Vec::with_capacity(refused_count));
        for ((record, ticket), rejection) in records.into_iter().zip(tickets).zip(refused) {
            match rejection {
                None => {
                    kept.push(record);
                    kept_tickets.push(ticket);
                }
                Some(rejection) => {
                    failed.push((record, rejection));
                    failed_tickets.push(ticket);
                }
            }
        }
        let mut objects = Vec::new();
        if !kept.is_empty() {
            objects.push(self.object(&self.format, None, kept, encoded.body, kept_tickets)?);
        }
        objects.push(self.failed(ErrorOutputType::FormatConversionFailed, failed, failed_tickets, 1)?);
        Ok(objects)
    }

    /// The schema object of a version of the table schema:
    /// `_spillway/schemas/<stream>/<version>.json`, beside the data rather
    /// than in it (readers skip names starting with `_`), uncompressed.
    pub fn table_schema_object(&self, table: &TableSchema) -> std::io::Result<PlannedObject> {
        let key = self.table_schema_key(table.version).map_err(std::io::Error::other)?;
        Ok(PlannedObject {
            key,
            body: Body::Whole(Bytes::from(table.to_json())),
            options: PutOptions {
                content_type: Some("application/json"),
                content_encoding: None,
            },
            claims: Claims::default(),
            output: "table-schema",
            records: Arc::new(Vec::new()),
            record_count: 0,
            new_errors: false,
        })
    }

    /// The key of the schema object of `version`.
    pub fn table_schema_key(&self, version: u64) -> Result<ObjectKey, spillway_destinations::key::InvalidKey> {
        ObjectKey::new(format!(
            "{TABLE_SCHEMAS}{}/{version}.json",
            sanitize_segment(&self.stream)
        ))
    }

    /// The error object of records that are error records already (an
    /// error batch from the router).
    pub fn errors(
        &self,
        output_type: ErrorOutputType,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> std::io::Result<PlannedObject> {
        let body = Format::JsonLines.encode(&records).body;
        self.object(&Format::JsonLines, Some(output_type), records, body, tickets)
    }

    /// The error object of records that failed for `rejection` (the same
    /// reason for all) after `attempts` attempts, written under the intent
    /// of the delivery that failed (it holds their tickets).
    pub fn all_failed(
        &self,
        records: &[Record],
        rejection: &Rejection,
        attempts: u32,
    ) -> std::io::Result<PlannedObject> {
        let failed = records
            .iter()
            .map(|record| (record.clone(), rejection.clone()))
            .collect();
        self.failed(rejection.output_type, failed, Vec::new(), attempts)
    }

    /// The error object of records that failed, each with its reason, with
    /// the tickets of a new intent (none: under an existing one).
    pub(super) fn failed(
        &self,
        output_type: ErrorOutputType,
        failed: Vec<(Record, Rejection)>,
        tickets: Vec<Ticket>,
        attempts: u32,
    ) -> std::io::Result<PlannedObject> {
        let now = Utc::now();
        let records = failed
            .into_iter()
            .map(|(record, rejection)| {
                let line = error_record::render(&record, &rejection, attempts, now);
                Record {
                    data: Bytes::from(line),
                    ..record
                }
            })
            .collect();
        let object = self.errors(output_type, records, tickets)?;
        Ok(PlannedObject {
            new_errors: true,
            ..object
        })
    }

    /// A data object encoded while it is sent.
    fn streamed(&self, records: Vec<Record>, tickets: Vec<Ticket>) -> std::io::Result<PlannedObject> {
        let (key, name) = self.key(&self.format, None, &records)?;
        let claims = claims_of(&records, tickets);
        let records = Arc::new(records);
        let payload = RecordsPayload {
            records: records.clone(),
            format: self.format.clone(),
            compression: self.compression,
            entry_name: name,
            produced: Default::default(),
            turn: Default::default(),
        };
        Ok(PlannedObject {
            key,
            body: Body::Streamed(Arc::new(payload)),
            options: self.options(&self.format),
            claims,
            output: "data",
            record_count: records.len(),
            records,
            new_errors: false,
        })
    }

    /// The key of an object holding `records`, and its name without the
    /// compression extension.
    fn key(
        &self,
        format: &Format,
        error_type: Option<ErrorOutputType>,
        records: &[Record],
    ) -> std::io::Result<(ObjectKey, String)> {
        let first = &records[0].position;
        let oldest = records.iter().map(|r| r.arrival).min().expect("an object has records");
        // A record's index among its input's outputs shows only when not 0,
        // so that names without processors stay as they were.
        let output = match first.offset.output {
            0 => String::new(),
            n => format!("-{n}"),
        };
        let name = format!(
            "{}-{}-{}-{}{output}{}",
            self.stream,
            sanitize_segment(first.source.as_str()),
            first.offset.sequence_number,
            first.offset.subsequence_number,
            format.extension(),
        );
        let template = match error_type {
            None => &self.prefix,
            Some(_) => &self.error_prefix,
        };
        let partition_keys = match (error_type, &self.partition) {
            (None, Some(keys)) => Some((&*keys.from_query, &*keys.from_lambda)),
            _ => None,
        };
        let prefix = template.render(&KeyContext {
            timestamp: oldest,
            error_output_type: error_type.map(ErrorOutputType::as_str),
            partition_keys,
        });
        let key =
            ObjectKey::new(format!("{prefix}{name}{}", self.compression.extension())).map_err(std::io::Error::other)?;
        Ok((key, name))
    }

    fn options(&self, format: &Format) -> PutOptions {
        PutOptions {
            content_type: Some(self.compression.content_type(format.content_type())),
            content_encoding: self.compression.content_encoding(),
        }
    }

    fn object(
        &self,
        format: &Format,
        error_type: Option<ErrorOutputType>,
        records: Vec<Record>,
        body: Vec<u8>,
        tickets: Vec<Ticket>,
    ) -> std::io::Result<PlannedObject> {
        let (key, name) = self.key(format, error_type, &records)?;
        let body = self.compression.compress_owned(body, &name)?;
        Ok(self.whole(format, error_type, key, records, body, tickets))
    }

    /// The object `key` of `records`, whose bytes (compressed) are `body`.
    fn whole(
        &self,
        format: &Format,
        error_type: Option<ErrorOutputType>,
        key: ObjectKey,
        records: Vec<Record>,
        body: Vec<u8>,
        tickets: Vec<Ticket>,
    ) -> PlannedObject {
        PlannedObject {
            key,
            body: Body::Whole(Bytes::from(body)),
            options: self.options(format),
            output: error_type.map_or("data", ErrorOutputType::as_str),
            claims: claims_of(&records, tickets),
            record_count: records.len(),
            records: Arc::new(records),
            new_errors: false,
        }
    }
}

/// The claims of `records`, whose tickets are `tickets` (none: the records
/// are under an intent already).
fn claims_of(records: &[Record], tickets: Vec<Ticket>) -> Claims {
    if tickets.is_empty() {
        return Claims::default();
    }
    debug_assert_eq!(records.len(), tickets.len());
    Claims::of(
        records
            .iter()
            .zip(tickets)
            .map(|(r, t)| (&r.position.source, &r.position.offset, t)),
    )
}
