//! The Firehose Lambda contract, shared by the `lambda` and `command`
//! processors, so that a function written for Firehose runs behind either
//! without a line changed.
//!
//! The event, `{invocationId, deliveryStreamArn, sourceKinesisStreamArn,
//! region, records: [{recordId, approximateArrivalTimestamp, data,
//! kinesisRecordMetadata}]}`, is built here; the response, `{records:
//! [{recordId, result, data, metadata: {partitionKeys}}]}`, is checked
//! here as Firehose checks it: every record sent answered exactly once,
//! `data` in base64, a known `result`, at most 6 MB. A response that breaks
//! any of these fails its whole batch (which is then retried, see
//! [`runner`]); a record answered `ProcessingFailed` fails alone.
//!
//! Batches hold at most `buffer_size_mb` of record data and 6 MB of event
//! (Lambda's synchronous payload limit, for requests and responses alike).

pub mod codes;
pub mod config;
pub mod runner;

pub use config::Batching;
pub use runner::{Backoff, CallError, Invoke, Runner};

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Input;

/// Lambda's limit on a synchronous request's payload, and on its response's.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// What every event of a processor says about where its records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// `arn:aws:firehose:<region>:<account>:deliverystream/<name>`.
    pub delivery_stream_arn: String,
    /// The Kinesis stream's ARN when the source is Kinesis: then each record
    /// carries `kinesisRecordMetadata`, as in Firehose.
    pub source_stream_arn: Option<String>,
    pub region: String,
}

impl Context {
    /// The context of delivery stream `name`. spillway has no AWS account of
    /// its own: the ARN's account is `000000000000`.
    pub fn new(name: &str, region: &str, source_stream_arn: Option<String>) -> Self {
        Self {
            delivery_stream_arn: format!("arn:aws:firehose:{region}:000000000000:deliverystream/{name}"),
            source_stream_arn,
            region: region.to_owned(),
        }
    }
}

/// The ARN of a Kinesis source's stream, for `sourceKinesisStreamArn`;
/// `None` for other sources. A stream given by name gets the source's
/// region (else `region`, else `AWS_REGION`, else `us-east-1`) and the
/// account `000000000000`.
pub fn source_stream_arn(source: &crate::source::SourceConfig, region: Option<&str>) -> Option<String> {
    use crate::source::kinesis::api::StreamRef;
    let crate::source::SourceConfig::Kinesis(kinesis) = source else {
        return None;
    };
    match &kinesis.stream {
        StreamRef::Arn(arn) => Some(arn.clone()),
        StreamRef::Name(name) => Some(format!(
            "arn:aws:kinesis:{}:000000000000:stream/{name}",
            default_region(kinesis.region.as_deref().or(region))
        )),
    }
}

/// `region`, else `AWS_REGION`, else `us-east-1`: for what goes into the
/// event only (a `command` needs no AWS region to run).
pub fn default_region(region: Option<&str>) -> String {
    region
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// How much goes into one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Record data per call (`buffer_size_mb`), before base64; a record
    /// larger than this still goes, alone.
    pub batch_data_bytes: usize,
    /// The event's size, and the response's.
    pub payload_bytes: usize,
}

impl Limits {
    pub fn new(batch_data_bytes: usize) -> Self {
        Self {
            batch_data_bytes,
            payload_bytes: PAYLOAD_LIMIT,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventHeader<'a> {
    invocation_id: &'a str,
    delivery_stream_arn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_kinesis_stream_arn: Option<&'a str>,
    region: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord<'a> {
    record_id: &'a str,
    approximate_arrival_timestamp: i64,
    data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kinesis_record_metadata: Option<KinesisRecordMetadata<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KinesisRecordMetadata<'a> {
    shard_id: &'a str,
    partition_key: &'a str,
    approximate_arrival_timestamp: i64,
    sequence_number: &'a str,
    subsequence_number: u64,
}

/// The id of the `index`th input of a `process` call: unique within every
/// batch made from that call.
pub fn record_id(index: usize) -> String {
    index.to_string()
}

/// Each input's entry in `records`, as JSON: encoded once, whatever batch
/// it lands in and however often that batch is retried.
pub fn encode_records(context: &Context, inputs: &[Input<'_>]) -> Vec<Vec<u8>> {
    let kinesis = context.source_stream_arn.is_some();
    inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let origin = input.origin;
            let arrival = origin.arrival.timestamp_millis();
            let sequence_number = origin.position.offset.sequence_number.as_str();
            let entry = EventRecord {
                record_id: &record_id(index),
                approximate_arrival_timestamp: arrival,
                data: base64::engine::general_purpose::STANDARD.encode(input.data),
                kinesis_record_metadata: kinesis.then(|| KinesisRecordMetadata {
                    shard_id: origin.position.source.as_str(),
                    partition_key: origin.partition_key.as_deref().unwrap_or_default(),
                    approximate_arrival_timestamp: arrival,
                    sequence_number,
                    subsequence_number: origin.position.offset.subsequence_number,
                }),
            };
            serde_json::to_vec(&entry).expect("an event record serialises")
        })
        .collect()
}

/// One call's event: the header, then `entries` as `records`.
pub fn event(context: &Context, invocation_id: &str, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut event = header(context, invocation_id);
    event.extend_from_slice(b",\"records\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            event.push(b',');
        }
        event.extend_from_slice(entry);
    }
    event.extend_from_slice(b"]}");
    event
}

/// The header of an event, without its closing brace.
fn header(context: &Context, invocation_id: &str) -> Vec<u8> {
    let mut header = serde_json::to_vec(&EventHeader {
        invocation_id,
        delivery_stream_arn: &context.delivery_stream_arn,
        source_kinesis_stream_arn: context.source_stream_arn.as_deref(),
        region: &context.region,
    })
    .expect("an event header serialises");
    header.pop();
    header
}

/// A fresh invocation id, shaped as Firehose's (a UUID).
pub fn invocation_id() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// How the inputs of one call go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// These inputs, in one event.
    Batch(Range<usize>),
    /// This input's entry alone makes an event over the payload limit.
    TooLarge(usize),
}

/// Cuts `entries` (with the sizes of their records' data) into batches, in
/// order, each within `limits`.
pub fn plan(context: &Context, entries: &[Vec<u8>], data_sizes: &[usize], limits: Limits) -> Vec<Planned> {
    // The longest header: invocation ids are all the same length.
    let overhead = header(context, &invocation_id()).len() + b",\"records\":[]}".len();
    let mut planned = Vec::new();
    let mut start = 0;
    let (mut data, mut payload) = (0usize, overhead);
    for (i, entry) in entries.iter().enumerate() {
        if overhead + entry.len() > limits.payload_bytes {
            if start < i {
                planned.push(Planned::Batch(start..i));
            }
            planned.push(Planned::TooLarge(i));
            (start, data, payload) = (i + 1, 0, overhead);
            continue;
        }
        let separator = usize::from(start < i);
        let fits = data + data_sizes[i] <= limits.batch_data_bytes
            && payload + separator + entry.len() <= limits.payload_bytes;
        if start < i && !fits {
            planned.push(Planned::Batch(start..i));
            (start, data, payload) = (i, 0, overhead);
        }
        data += data_sizes[i];
        payload += usize::from(start < i) + entry.len();
    }
    if start < entries.len() {
        planned.push(Planned::Batch(start..entries.len()));
    }
    planned
}

/// What the function made of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok {
        data: Bytes,
        /// `metadata.partitionKeys`, if the function gave any.
        partition_keys: Option<BTreeMap<String, String>>,
    },
    Dropped,
    ProcessingFailed,
}

/// Why a response fails its batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
}

impl Violation {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
struct Response {
    records: Vec<ResponseRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseRecord {
    record_id: String,
    result: String,
    data: Option<String>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    partition_keys: Option<BTreeMap<String, serde_json::Value>>,
}

/// The answers to the batch `batch` (indexes of the call's inputs), in
/// its order, or why the response breaks the contract.
pub fn parse_response(body: &[u8], batch: Range<usize>, limits: Limits) -> Result<Vec<Answer>, Violation> {
    if body.len() > limits.payload_bytes {
        return Err(Violation::new(
            codes::RESPONSE_TOO_LARGE,
            format!(
                "the response is {} bytes, over the {} byte limit",
                body.len(),
                limits.payload_bytes
            ),
        ));
    }
    let response: Response = serde_json::from_slice(body).map_err(|err| {
        Violation::new(
            codes::JSON_PROCESSING,
            format!("the response is not {{\"records\": [...]}} as the contract has it: {err}"),
        )
    })?;
    let mut answers: Vec<Option<Answer>> = vec![None; batch.len()];
    let mut unknown = HashSet::new();
    for record in response.records {
        let slot = record
            .record_id
            .parse::<usize>()
            .ok()
            .filter(|index| batch.contains(index) && record_id(*index) == record.record_id)
            .map(|index| index - batch.start);
        let Some(slot) = slot else {
            unknown.insert(record.record_id);
            continue;
        };
        if answers[slot].is_some() {
            return Err(Violation::new(
                codes::DUPLICATED_RECORD_ID,
                format!("recordId {:?} is answered more than once", record.record_id),
            ));
        }
        answers[slot] = Some(answer(record)?);
    }
    if let Some(missing) = answers.iter().position(Option::is_none) {
        let unanswered = answers.iter().filter(|a| a.is_none()).count();
        let mut message = format!(
            "{unanswered} record(s) sent are not answered, the first recordId {:?}",
            record_id(batch.start + missing)
        );
        if !unknown.is_empty() {
            message.push_str(&format!("; {} answer(s) have a recordId never sent", unknown.len()));
        }
        return Err(Violation::new(codes::MISSING_RECORD_ID, message));
    }
    if !unknown.is_empty() {
        // Every record answered once, plus answers to records never sent.
        return Err(Violation::new(
            codes::MISSING_RECORD_ID,
            format!("{} answer(s) have a recordId never sent", unknown.len()),
        ));
    }
    Ok(answers.into_iter().map(|a| a.expect("every slot checked")).collect())
}

fn answer(record: ResponseRecord) -> Result<Answer, Violation> {
    let id = &record.record_id;
    match record.result.as_str() {
        "Ok" => {}
        "Dropped" => return Ok(Answer::Dropped),
        "ProcessingFailed" => return Ok(Answer::ProcessingFailed),
        other => {
            return Err(Violation::new(
                codes::JSON_PROCESSING,
                format!("recordId {id:?}: result {other:?} is not Ok, Dropped or ProcessingFailed"),
            ))
        }
    }
    let Some(data) = record.data else {
        return Err(Violation::new(
            codes::JSON_PROCESSING,
            format!("recordId {id:?}: result Ok without data"),
        ));
    };
    let data = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|err| {
            Violation::new(
                codes::JSON_PROCESSING,
                format!("recordId {id:?}: data is not base64: {err}"),
            )
        })?;
    let partition_keys = match record.metadata.and_then(|m| m.partition_keys) {
        None => None,
        Some(keys) => Some(
            keys.into_iter()
                .map(|(name, value)| scalar(&value).map(|value| (name, value)))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| {
                    Violation::new(
                        codes::JSON_PROCESSING,
                        format!("recordId {id:?}: a metadata.partitionKeys value is not a string, number or boolean"),
                    )
                })?,
        ),
    };
    Ok(Answer::Ok {
        data: Bytes::from(data),
        partition_keys,
    })
}

/// A partition key's value as text: strings as they are, numbers and
/// booleans as JSON writes them (a Python handler's `int` keys work, as in
/// Firehose).
fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
