//! Delivery to a record endpoint: a Firehose-style HTTP endpoint, backed
//! up to objects. Each request goes through the steps every delivery
//! shares ([`super::delivery`]): its intent, the lease check (with
//! coordination: no request for records of a shard whose lease is lost),
//! its attempts, its checkpoint, and error records in the backup for what
//! the endpoint did not take.
//!
//! A data batch is sent as requests of at most 10,000 records. Each request
//! has an intent in the checkpoint like an object (keyed
//! `http-endpoint/<request id>`, or by its backup object with
//! `backup_mode = "all"`), is retried with backoff from 1 s, doubling, 15 %
//! jitter, capped at 120 s, for as long as the retry duration allows, then
//! its records go to the backup as `http-endpoint-failed` error records. A
//! 413 is not retried. With `backup_mode = "all"` every record is also
//! written to the backup as data.
//!
//! Delivery to an endpoint is at least once: a run killed after the
//! endpoint took a request but before its checkpoint was saved sends it
//! again. The request id is derived from the stream, the first record's
//! position and the record count, so the repeat carries the same id and a
//! receiver can drop it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use spillway_destinations::http::{request_id, HttpError, HttpRequest, MAX_RECORDS_PER_REQUEST};
use spillway_destinations::retry::RetryPolicy;
use spillway_destinations::{HttpEndpoint, ObjectKey};
use spillway_transforms::{ErrorOutputType, Record, Rejection};

use super::delivery::{blocking, Delivery, FlushInfo};
use super::RunError;
use crate::checkpoint::{Claims, Ticket};
use crate::config::{BackupMode, HttpDestination};
use crate::telemetry::events::{RequestDelivered, RequestGaveUp, RequestRetrying};

pub(super) struct EndpointDelivery {
    endpoint: HttpEndpoint,
    stream: String,
    retry: RetryPolicy,
    backup_mode: BackupMode,
}

impl EndpointDelivery {
    pub fn new(
        stream: &str,
        config: &HttpDestination,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Self, RunError> {
        Ok(Self {
            endpoint: HttpEndpoint::new(config.endpoint.clone()).map_err(RunError::DestinationCheck)?,
            stream: stream.to_owned(),
            retry: http_retry(config.retry_duration).stopped_by(stop),
            backup_mode: config.backup_mode,
        })
    }

    pub fn describe(&self) -> String {
        self.endpoint.describe()
    }

    /// Delivers one data batch, request by request.
    pub async fn deliver(
        &self,
        backup: &Delivery,
        mut records: Vec<Record>,
        mut tickets: Vec<Ticket>,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        while !records.is_empty() {
            let rest_records = records.split_off(records.len().min(MAX_RECORDS_PER_REQUEST));
            let rest_tickets = tickets.split_off(records.len());
            self.deliver_request(backup, records, tickets, info).await?;
            (records, tickets) = (rest_records, rest_tickets);
        }
        Ok(())
    }

    async fn deliver_request(
        &self,
        backup: &Delivery,
        records: Vec<Record>,
        tickets: Vec<Ticket>,
        info: FlushInfo,
    ) -> Result<(), RunError> {
        let first = &records[0].position;
        // A processor's output index only when not 0, so that ids without
        // processors stay as they were.
        let output = match first.offset.output {
            0 => String::new(),
            n => format!("/{n}"),
        };
        let id = request_id(&format!(
            "{}/{}/{}/{}{output}/{}",
            self.stream,
            first.source,
            first.offset.sequence_number,
            first.offset.subsequence_number,
            records.len()
        ));
        // With backup_mode = "all" the intent is the backup object, written
        // after the endpoint took the request (or gave up): at restart, a
        // backup object that exists means the request was done with.
        let backup_object = match self.backup_mode {
            BackupMode::All => {
                // The backup object encodes a copy of its own (the records'
                // bytes are shared, not copied); its tickets are the
                // intent's, below.
                let planner = backup.planner.clone();
                let records = records.clone();
                let mut objects = blocking(move || planner.data(records, Vec::new())).await?;
                debug_assert_eq!(objects.len(), 1, "json_lines and raw refuse no record");
                objects.pop()
            }
            BackupMode::FailedOnly => None,
        };
        let intent_key = match &backup_object {
            Some(object) => object.key.clone(),
            None => ObjectKey::new(format!("http-endpoint/{id}")).expect("a request id makes a valid key"),
        };
        let claims = Claims::of(
            records
                .iter()
                .zip(tickets)
                .map(|(r, t)| (&r.position.source, &r.position.offset, t)),
        );
        let Some(intent) = backup.begin_held(&intent_key, claims).await? else {
            return Ok(());
        };

        let encoding = self.endpoint.options().content_encoding;
        let (request, records) = {
            let id = id.clone();
            let now = chrono::Utc::now().timestamp_millis();
            blocking(move || {
                let request = HttpRequest::new(id, now, records.iter().map(|r| &r.data[..]), encoding)?;
                Ok((request, records))
            })
            .await?
        };
        let attempts = AtomicU32::new(1);
        let operation = backup.telemetry.operation();
        let sent = self
            .retry
            .run(
                || self.endpoint.send(&request),
                HttpError::is_retryable,
                |err, attempt, delay| {
                    attempts.store(attempt + 1, Ordering::Relaxed);
                    backup.telemetry.emit(RequestRetrying {
                        operation: &operation,
                        request_id: &id,
                        attempt,
                        delay,
                        error: err,
                    });
                },
            )
            .await;
        drop(operation);
        let attempts = attempts.load(Ordering::Relaxed);
        match sent {
            Ok(()) => backup.telemetry.emit(RequestDelivered {
                reason: info.reason,
                request_id: &id,
                records: records.len(),
                request_bytes: request.body().len(),
                attempts,
                // With "all", the backup object counts them.
                counts_records: self.backup_mode == BackupMode::FailedOnly,
            }),
            Err(err) if self.retry.is_stopped() => {
                return Err(RunError::Stopped {
                    what: format!("http request {id}"),
                    error: err.to_string(),
                })
            }
            Err(err) => {
                backup.telemetry.emit(RequestGaveUp {
                    request_id: &id,
                    records: records.len(),
                    attempts,
                    error: &err,
                });
                let rejection = Rejection {
                    output_type: ErrorOutputType::HttpEndpointFailed,
                    code: err.error_code(),
                    message: err.to_string(),
                };
                let planner = backup.planner.clone();
                let failed = blocking(move || planner.all_failed(&records, &rejection, attempts)).await?;
                let outcome = backup.put_error_object(&failed).await?;
                backup.log_flushed(&failed, outcome, info);
            }
        }
        if let Some(object) = backup_object {
            let outcome = backup.put_error_object(&object).await?;
            backup.log_flushed(&object, outcome, info);
        }
        backup.complete(intent).await
    }
}

/// Firehose's HTTP retry schedule: from 1 s, doubling, 15 % jitter, at most
/// 120 s between attempts, for `retry_duration` in all.
fn http_retry(retry_duration: Duration) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(120),
        jitter: 0.15,
        give_up_after: Some(retry_duration),
        stop: None,
    }
}
