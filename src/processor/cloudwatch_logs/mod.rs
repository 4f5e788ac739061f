//! `cloudwatch_logs`: a CloudWatch Logs subscription payload (gzip'd, as
//! the service sends it, or already gunzipped) becomes one record per log
//! event's `message`; a `CONTROL_MESSAGE` (the service's check that the
//! destination is reachable) is dropped. A payload that is not one goes to
//! the error output under `decompression-failed`, as Firehose's CloudWatch
//! Logs decompression does, and processing goes on.

use bytes::Bytes;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::config::Ready;
use super::decompression::{failed, gunzip};
use super::{per_record, Input, Outcome, Output, ProcessError, Processor, MAX_SPLIT};

/// `[[processors]] type = "cloudwatch_logs"`: no keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsSettings {}

impl CloudWatchLogsSettings {
    pub fn check(self) -> Ready<CloudWatchLogs> {
        Ready::new("cloudwatch_logs", CloudWatchLogs)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CloudWatchLogs;

/// The parts of a subscription payload spillway reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    message_type: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    message: String,
}

/// What becomes of one payload.
pub fn extract(data: &[u8]) -> Outcome {
    const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
    let plain;
    let text = if data.starts_with(GZIP_MAGIC) {
        match gunzip(data) {
            Ok(bytes) => {
                plain = bytes;
                &plain[..]
            }
            Err(failure) => return Outcome::Failed(failure),
        }
    } else {
        data
    };
    // serde_json stops at 128 levels of nesting: hostile input is safe.
    let payload: Payload = match serde_json::from_slice(text) {
        Ok(payload) => payload,
        Err(err) => {
            return Outcome::Failed(failed(
                "CloudWatchLogs.InvalidPayload",
                format!("the record is not a CloudWatch Logs subscription payload: {err}"),
            ))
        }
    };
    match payload.message_type.as_str() {
        "CONTROL_MESSAGE" => Outcome::Dropped,
        "DATA_MESSAGE" if payload.log_events.len() > MAX_SPLIT => Outcome::Failed(failed(
            "CloudWatchLogs.InvalidPayload",
            format!("the payload has more than {MAX_SPLIT} log events"),
        )),
        "DATA_MESSAGE" if payload.log_events.is_empty() => Outcome::Dropped,
        "DATA_MESSAGE" => Outcome::Ok(
            payload
                .log_events
                .into_iter()
                .map(|event| Output::data(Bytes::from(event.message)))
                .collect(),
        ),
        other => Outcome::Failed(failed(
            "CloudWatchLogs.InvalidPayload",
            format!("messageType {other:?} is neither DATA_MESSAGE nor CONTROL_MESSAGE"),
        )),
    }
}

#[async_trait::async_trait]
impl Processor for CloudWatchLogs {
    fn describe(&self) -> String {
        "cloudwatch_logs".into()
    }

    async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        Ok(per_record(inputs, extract).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spillway_transforms::ErrorOutputType;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    const DATA: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/f","logStream":"s","subscriptionFilters":["all"],"logEvents":[{"id":"1","timestamp":1,"message":"first line"},{"id":"2","timestamp":2,"message":"{\"json\":true}"}]}"#;

    #[test]
    fn one_record_per_log_event_gzipped_or_not() {
        let expected = Outcome::Ok(vec![Output::data("first line"), Output::data("{\"json\":true}")]);
        assert_eq!(extract(&gzip(DATA.as_bytes())), expected);
        assert_eq!(extract(DATA.as_bytes()), expected);
    }

    #[test]
    fn control_messages_are_dropped_and_other_payloads_fail() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert_eq!(extract(&gzip(control.as_bytes())), Outcome::Dropped);
        for bad in [&b"{\"id\":1}"[..], b"plain text", &gzip(b"[1,2]"), &[0x1f, 0x8b, 0, 1]] {
            let Outcome::Failed(failure) = extract(bad) else {
                panic!("{bad:?} did not fail")
            };
            assert_eq!(failure.output, ErrorOutputType::DecompressionFailed);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_give_an_outcome(data in prop::collection::vec(any::<u8>(), 0..500), zipped in any::<bool>()) {
            let data = if zipped { gzip(&data) } else { data };
            let _ = extract(&data);
        }

        #[test]
        fn every_message_comes_out_once_in_order(messages in prop::collection::vec(any::<String>(), 1..20)) {
            let events: Vec<serde_json::Value> = messages.iter().enumerate()
                .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": i, "message": m}))
                .collect();
            let payload = serde_json::json!({"messageType": "DATA_MESSAGE", "logEvents": events});
            let outcome = extract(&gzip(&serde_json::to_vec(&payload).unwrap()));
            let expected: Vec<Output> = messages.iter().map(|m| Output::data(Bytes::from(m.clone()))).collect();
            prop_assert_eq!(outcome, Outcome::Ok(expected));
        }
    }
}
