//! From a flushed batch to objects: encode, compress, name.
//!
//! A data batch becomes one data object, plus one error object if the
//! format refused some records; an error batch becomes one error object.
//! Object names are deterministic from the first record:
//! `<stream>-<source id>-<sequence number>-<subsequence number><extensions>`,
//! so writing the same records again yields the same key.

use bytes::Bytes;
use chrono::Utc;
use spillway_destinations::key::sanitize_segment;
use spillway_destinations::{Compression, KeyContext, KeyTemplate, ObjectKey, PutOptions};
use spillway_transforms::{error_record, ErrorOutputType, Format, Record};

use crate::buffer::{BufferKey, Buffered};
use crate::checkpoint::Ticket;
use crate::config::Config;

/// How objects are named and encoded.
#[derive(Clone, Debug)]
pub(super) struct ObjectPlanner {
    stream: String,
    format: Format,
    compression: Compression,
    prefix: KeyTemplate,
    error_prefix: KeyTemplate,
}

/// One object, ready to be written.
#[derive(Debug)]
pub(super) struct PlannedObject {
    pub key: ObjectKey,
    pub body: Bytes,
    pub options: PutOptions,
    pub tickets: Vec<Ticket>,
    /// `data`, or the error output type.
    pub output: &'static str,
    pub records: usize,
}

impl ObjectPlanner {
    pub fn new(config: &Config) -> Self {
        Self {
            stream: config.name.clone(),
            format: config.format.clone(),
            compression: config.destination.compression,
            prefix: config.destination.prefix.clone(),
            error_prefix: config.destination.error_prefix.clone(),
        }
    }

    /// Encodes a batch into its objects. CPU-bound: run off the async
    /// runtime.
    pub fn plan(&self, key: &BufferKey, items: Vec<Buffered>) -> std::io::Result<Vec<PlannedObject>> {
        let (records, tickets): (Vec<Record>, Vec<Ticket>) = items.into_iter().map(|b| (b.record, b.ticket)).unzip();
        match key {
            BufferKey::Error(output_type) => Ok(vec![self.error_object(*output_type, records, tickets)?]),
            BufferKey::Data => {
                let encoded = self.format.encode(&records);
                if encoded.rejected.is_empty() {
                    return Ok(vec![self.object(
                        &self.format,
                        None,
                        &records,
                        encoded.body,
                        tickets,
                    )?]);
                }
                // Split the refused records out of the batch, into an error object.
                let mut refused = vec![None; records.len()];
                for (index, rejection) in encoded.rejected {
                    refused[index] = Some(rejection);
                }
                let (mut kept, mut kept_tickets) = (Vec::new(), Vec::new());
                let (mut failed, mut failed_tickets) = (Vec::new(), Vec::new());
                let now = Utc::now();
                for ((record, ticket), rejection) in records.into_iter().zip(tickets).zip(refused) {
                    match rejection {
                        None => {
                            kept.push(record);
                            kept_tickets.push(ticket);
                        }
                        Some(rejection) => {
                            let line = error_record::render(&record, &rejection, now);
                            failed.push(Record {
                                data: Bytes::from(line),
                                ..record
                            });
                            failed_tickets.push(ticket);
                        }
                    }
                }
                let mut objects = Vec::new();
                if !kept.is_empty() {
                    objects.push(self.object(&self.format, None, &kept, encoded.body, kept_tickets)?);
                }
                objects.push(self.error_object(ErrorOutputType::FormatConversionFailed, failed, failed_tickets)?);
                Ok(objects)
            }
        }
    }

    fn error_object(
        &self,
        output_type: ErrorOutputType,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
    ) -> std::io::Result<PlannedObject> {
        let body = Format::JsonLines.encode(&records).body;
        self.object(&Format::JsonLines, Some(output_type), &records, body, tickets)
    }

    fn object(
        &self,
        format: &Format,
        error_type: Option<ErrorOutputType>,
        records: &[Record],
        body: Vec<u8>,
        tickets: Vec<Ticket>,
    ) -> std::io::Result<PlannedObject> {
        let first = &records[0].position;
        let oldest = records.iter().map(|r| r.arrival).min().expect("an object has records");
        let name = format!(
            "{}-{}-{}-{}{}",
            self.stream,
            sanitize_segment(first.source.as_str()),
            first.offset.sequence_number,
            first.offset.subsequence_number,
            format.extension(),
        );
        let (template, output) = match error_type {
            None => (&self.prefix, "data"),
            Some(t) => (&self.error_prefix, t.as_str()),
        };
        let prefix = template.render(&KeyContext {
            timestamp: oldest,
            error_output_type: error_type.map(ErrorOutputType::as_str),
        });
        let key =
            ObjectKey::new(format!("{prefix}{name}{}", self.compression.extension())).map_err(std::io::Error::other)?;
        let body = self.compression.compress(&body, &name)?;
        Ok(PlannedObject {
            key,
            body: Bytes::from(body),
            options: PutOptions {
                content_type: Some(self.compression.content_type(format.content_type())),
                content_encoding: self.compression.content_encoding(),
            },
            tickets,
            output,
            records: records.len(),
        })
    }
}
