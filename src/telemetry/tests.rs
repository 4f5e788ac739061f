//! Each event counts what it should, read back from the exposition a
//! scraper sees.

use std::path::PathBuf;
use std::time::Duration;

use spillway_destinations::http::{HttpError, HttpErrorKind};
use spillway_destinations::ObjectKey;

use super::events::*;
use super::{RunSummary, Telemetry};
use crate::buffer::FlushReason;
use crate::source::kinesis::api::KinesisError;

/// The value of the series `series` (name and labels as exposed), 0 when
/// it is not there.
fn value(telemetry: &Telemetry, series: &str) -> f64 {
    let text = telemetry.registry().encode();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap_or_else(|_| panic!("{series}: {v:?}")))
}

fn telemetry() -> Telemetry {
    Telemetry::standalone("s")
}

fn key() -> ObjectKey {
    ObjectKey::new("events/a.json.gz".to_owned()).unwrap()
}

fn transient() -> spillway_destinations::Error {
    spillway_destinations::Error::Transient {
        location: "archive".to_owned(),
        source: "disk full".into(),
    }
}

#[test]
fn started_makes_the_pipeline_ready() {
    let t = telemetry();
    assert!(t.registry().readiness().is_err());
    t.emit(Started {
        source: "file",
        destination: "local",
        checkpoint: "state",
        buffer_bytes: 1,
        buffer_seconds: 1.0,
    });
    assert_eq!(t.registry().readiness(), Ok(()));
}

#[test]
fn records_received_count_incoming_records_and_bytes() {
    let t = telemetry();
    t.emit(RecordsReceived { records: 3, bytes: 30 });
    t.emit(RecordsReceived { records: 2, bytes: 5 });
    assert_eq!(value(&t, r#"spillway_incoming_records_total{stream="s"}"#), 5.0);
    assert_eq!(value(&t, r#"spillway_incoming_bytes_total{stream="s"}"#), 35.0);
    assert_eq!(t.stats().summary(FlushReason::EndOfInput).records_read, 5);
}

#[test]
fn records_skipped_are_counted() {
    let t = telemetry();
    t.emit(RecordsSkipped { records: 4 });
    assert_eq!(value(&t, r#"spillway_records_skipped_total{stream="s"}"#), 4.0);
    assert_eq!(t.stats().summary(FlushReason::EndOfInput).records_skipped, 4);
}

#[test]
fn error_records_are_counted_by_output_type() {
    let t = telemetry();
    t.emit(ErrorRecordsMade {
        output_type: "invalid-record",
        records: 2,
    });
    t.emit(ErrorRecordsMade {
        output_type: "processing-failed",
        records: 1,
    });
    assert_eq!(
        value(
            &t,
            r#"spillway_error_records_total{stream="s",output_type="invalid-record"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_error_records_total{stream="s",output_type="processing-failed"}"#
        ),
        1.0
    );
    assert_eq!(t.stats().summary(FlushReason::EndOfInput).error_records, 3);
}

#[test]
fn buffers_observed_set_buffered_bytes_and_freshness() {
    let t = telemetry();
    let a_minute_ago = chrono::Utc::now() - chrono::Duration::seconds(60);
    t.emit(BuffersObserved {
        buffered_bytes: 1234,
        oldest_arrival: Some(a_minute_ago),
    });
    assert_eq!(value(&t, r#"spillway_buffered_bytes{stream="s"}"#), 1234.0);
    let freshness = value(&t, r#"spillway_data_freshness_seconds{stream="s"}"#);
    assert!((60.0..70.0).contains(&freshness), "{freshness}");
    t.emit(BuffersObserved {
        buffered_bytes: 0,
        oldest_arrival: None,
    });
    assert_eq!(value(&t, r#"spillway_buffered_bytes{stream="s"}"#), 0.0);
    assert_eq!(value(&t, r#"spillway_data_freshness_seconds{stream="s"}"#), 0.0);
}

#[test]
fn a_batch_taken_counts_a_flush_and_is_fresh_until_done() {
    let t = telemetry();
    let ten_seconds_ago = chrono::Utc::now() - chrono::Duration::seconds(10);
    t.emit(BatchTaken {
        reason: FlushReason::Interval,
        oldest_arrival: Some(ten_seconds_ago),
    });
    assert_eq!(
        value(&t, r#"spillway_flushes_total{stream="s",reason="interval"}"#),
        1.0
    );
    assert!(value(&t, r#"spillway_data_freshness_seconds{stream="s"}"#) >= 10.0);
    t.emit(BatchDone {
        oldest_arrival: Some(ten_seconds_ago),
    });
    assert_eq!(value(&t, r#"spillway_data_freshness_seconds{stream="s"}"#), 0.0);
}

#[test]
fn an_object_delivered_counts_records_bytes_objects_and_a_success() {
    let t = telemetry();
    let key = key();
    let object = |output, records, new_errors| ObjectDelivered {
        reason: FlushReason::Size,
        destination: "local",
        output,
        key: &key,
        records,
        buffer_bytes: 100,
        object_bytes: 40,
        already_existed: false,
        new_errors,
    };
    t.emit(object("data", 3, false));
    t.emit(object("delivery-failed", 2, true));
    let series = |name: &str, output: &str| {
        value(
            &t,
            &format!(r#"spillway_{name}{{stream="s",destination="local",output="{output}"}}"#),
        )
    };
    assert_eq!(series("delivery_records_total", "data"), 3.0);
    assert_eq!(series("delivery_bytes_total", "data"), 40.0);
    assert_eq!(series("delivery_objects_total", "data"), 1.0);
    assert_eq!(series("delivery_records_total", "delivery-failed"), 2.0);
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_attempts_total{stream="s",destination="local",result="success"}"#
        ),
        2.0
    );
    // Records that became error records as their object was made count
    // as error records then.
    assert_eq!(
        value(
            &t,
            r#"spillway_error_records_total{stream="s",output_type="delivery-failed"}"#
        ),
        2.0
    );
    let summary = t.stats().summary(FlushReason::EndOfInput);
    assert_eq!(
        (
            summary.records_delivered,
            summary.objects_written,
            summary.error_records
        ),
        (3, 2, 2)
    );
}

#[test]
fn a_request_delivered_counts_records_bytes_and_a_success() {
    let t = telemetry();
    let request = |counts_records| RequestDelivered {
        reason: FlushReason::Size,
        request_id: "r",
        records: 5,
        request_bytes: 70,
        attempts: 1,
        counts_records,
    };
    t.emit(request(true));
    t.emit(request(false));
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_records_total{stream="s",destination="http",output="data"}"#
        ),
        10.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_bytes_total{stream="s",destination="http",output="data"}"#
        ),
        140.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_attempts_total{stream="s",destination="http",result="success"}"#
        ),
        2.0
    );
    // With backup_mode = "all" the backup object counts the records.
    assert_eq!(t.stats().summary(FlushReason::EndOfInput).records_delivered, 5);
}

#[test]
fn a_put_retried_counts_a_failure_and_a_retry_and_may_make_the_pipeline_unready() {
    let t = Telemetry::new(
        std::sync::Arc::new(super::Registry::new()),
        "s",
        Duration::from_millis(10),
    );
    t.emit(Started {
        source: "file",
        destination: "local",
        checkpoint: "state",
        buffer_bytes: 1,
        buffer_seconds: 1.0,
    });
    let operation = t.operation();
    let key = key();
    let error = transient();
    t.emit(PutRetrying {
        operation: &operation,
        destination: "s3",
        key: &key,
        attempt: 1,
        delay: Duration::from_millis(1),
        error: &error,
    });
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_attempts_total{stream="s",destination="s3",result="failure"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_retries_total{stream="s",operation="put",kind="transient"}"#
        ),
        1.0
    );
    std::thread::sleep(Duration::from_millis(20));
    assert!(t.registry().readiness().is_err(), "failing past the budget");
    drop(operation);
    assert_eq!(t.registry().readiness(), Ok(()));
}

#[test]
fn a_put_given_up_counts_a_failure_and_a_delivery_given_up() {
    let t = telemetry();
    let key = key();
    let error = transient();
    t.emit(PutGaveUp {
        destination: "s3",
        key: &key,
        records: 3,
        attempts: 4,
        error: &error,
    });
    assert_eq!(
        value(&t, r#"spillway_deliveries_given_up_total{stream="s",destination="s3"}"#),
        1.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_attempts_total{stream="s",destination="s3",result="failure"}"#
        ),
        1.0
    );
}

#[test]
fn http_requests_retried_and_given_up_are_counted_by_error_code() {
    let t = telemetry();
    let operation = t.operation();
    let error = HttpError {
        kind: HttpErrorKind::Status(503),
        message: "503 Service Unavailable".to_owned(),
    };
    t.emit(RequestRetrying {
        operation: &operation,
        request_id: "r",
        attempt: 1,
        delay: Duration::from_secs(1),
        error: &error,
    });
    t.emit(RequestGaveUp {
        request_id: "r",
        records: 2,
        attempts: 2,
        error: &error,
    });
    assert_eq!(
        value(
            &t,
            r#"spillway_retries_total{stream="s",operation="http_request",kind="HttpEndpoint.DestinationException"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_delivery_attempts_total{stream="s",destination="http",result="failure"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &t,
            r#"spillway_deliveries_given_up_total{stream="s",destination="http"}"#
        ),
        1.0
    );
}

#[test]
fn checkpoint_saves_retried_are_counted() {
    let t = telemetry();
    let operation = t.operation();
    let error = crate::checkpoint::StoreError::Corrupt {
        path: PathBuf::from("state/s.checkpoint.json"),
        reason: "test".to_owned(),
    };
    t.emit(CheckpointSaveRetrying {
        operation: &operation,
        attempt: 1,
        delay: Duration::from_millis(1),
        error: &error,
    });
    assert_eq!(
        value(
            &t,
            r#"spillway_retries_total{stream="s",operation="checkpoint_save",kind="io"}"#
        ),
        1.0
    );
}

#[test]
fn throttled_get_records_are_counted_apart_from_other_kinesis_retries() {
    let t = telemetry();
    let operation = t.operation();
    let throttled = KinesisError::Throttled("slow down".to_owned());
    let transient = KinesisError::Transient("503".to_owned());
    for (call, error) in [
        (KinesisCall::GetRecords, &throttled),
        (KinesisCall::GetShardIterator, &throttled),
        (KinesisCall::GetRecords, &transient),
    ] {
        t.emit(KinesisCallRetrying {
            operation: &operation,
            shard: "shardId-0",
            call,
            attempt: 1,
            delay: Duration::from_millis(1),
            error,
        });
    }
    assert_eq!(value(&t, r#"spillway_throttled_get_records_total{stream="s"}"#), 1.0);
    let retries = |operation: &str, kind: &str| {
        value(
            &t,
            &format!(r#"spillway_retries_total{{stream="s",operation="{operation}",kind="{kind}"}}"#),
        )
    };
    assert_eq!(retries("get_records", "throttled"), 1.0);
    assert_eq!(retries("get_shard_iterator", "throttled"), 1.0);
    assert_eq!(retries("get_records", "transient"), 1.0);
}

#[test]
fn shard_lag_is_a_gauge_per_shard_until_the_shard_closes() {
    let t = telemetry();
    let series = r#"spillway_kinesis_millis_behind_latest{stream="s",shard="shardId-0"}"#;
    t.emit(ShardRead {
        shard: "shardId-0",
        millis_behind: Some(5000),
    });
    assert_eq!(value(&t, series), 5000.0);
    t.emit(ShardRead {
        shard: "shardId-0",
        millis_behind: Some(0),
    });
    assert_eq!(value(&t, series), 0.0);
    t.emit(ShardRead {
        shard: "shardId-0",
        millis_behind: Some(7),
    });
    t.emit(ShardClosed {
        shard: "shardId-0",
        children: vec![],
    });
    assert!(!t.registry().encode().contains(series), "a closed shard has no lag");
}

#[test]
fn log_only_events_change_no_metric() {
    let t = telemetry();
    let before = t.registry().encode();
    t.emit(BufferLag {
        oldest_unflushed_age_ms: 10,
        buffered_bytes: 10,
    });
    t.emit(ShardLag {
        shard: "shardId-0",
        millis_behind: Some(1),
    });
    assert_eq!(t.registry().encode(), before);
}

#[test]
fn a_finished_run_has_nothing_undelivered() {
    let t = telemetry();
    t.emit(BuffersObserved {
        buffered_bytes: 1,
        oldest_arrival: Some(chrono::Utc::now() - chrono::Duration::seconds(5)),
    });
    let summary: RunSummary = t.stats().summary(FlushReason::EndOfInput);
    t.emit(RunFinished { summary: &summary });
    assert_eq!(value(&t, r#"spillway_data_freshness_seconds{stream="s"}"#), 0.0);
}
