//! `[destination]` with `type = "kinesis"`: its keys, and how they become a
//! [`KinesisDestination`].

use std::time::Duration;

use serde::Deserialize;
use spillway_destinations::endpoint::{self, EndpointUse};
use spillway_settings::{Problems, Table};

use crate::source::kinesis::api::StreamRef;

/// Retry duration limits in seconds (as the HTTP destination's).
const RETRY_SECONDS_RANGE: (i64, i64) = (0, 7_200);
const DEFAULT_RETRY_SECONDS: i64 = 300;
/// A shard takes 1,000 records a second; a stream has at most thousands
/// of shards.
const RATE_RANGE: (i64, i64) = (1, 10_000_000);

/// `[destination]` with `type = "kinesis"`: records are put into a Kinesis
/// data stream with PutRecords, backed up to `[destination.backup]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisDestinationSettings {
    /// The target stream: its name, or its ARN
    /// (`arn:aws:kinesis:<region>:<account>:stream/<name>`).
    pub stream: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// Endpoint URL, for Kinesis-compatible services and tests.
    pub endpoint: Option<String>,
    /// `original` (default: the record's own partition key; records that
    /// have none, from a file or stdin, use their line number), `random`,
    /// or a jq expression on the record (`.user.id`): its first value, a
    /// string as is, a number or boolean as JSON; a record it gives no
    /// such value for goes to the backup (`Kinesis.PartitionKeyFailed`).
    pub partition_key: Option<String>,
    /// At most this many records a second (all calls together). Default:
    /// no limit but the stream's own (throttled calls are backed off).
    pub max_records_per_second: Option<i64>,
    /// How long a record that keeps failing is retried, in seconds: 0 to
    /// 7,200, default 300; then it goes to the backup as
    /// `delivery-failed`.
    pub retry_duration_seconds: Option<i64>,
    /// Where records go that the stream does not take, and the error
    /// output: a `local` or `s3` destination.
    pub backup: Option<Table>,
}

/// Where a record's partition key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionKey {
    Original,
    Random,
    Query(KeyQuery),
}

/// `partition_key = "<jq>"`: a compiled program (run in the jq workers,
/// so that a record that crashes or stalls it fails alone) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyQuery {
    pub program: crate::processor::jq::first::FirstValue,
}

/// Why a record has no partition key: a code and a message for its error
/// record.
pub type KeyFailure = (&'static str, String);

impl KeyQuery {
    /// The key of each record, or why it has none; in order.
    pub async fn keys_of(&self, records: Vec<bytes::Bytes>) -> Vec<Result<String, KeyFailure>> {
        let text = self.program.text();
        let failed = |message: String| ("Kinesis.PartitionKeyFailed", message);
        self.program
            .of(records)
            .await
            .into_iter()
            .map(|first| match first {
                Ok(Some(serde_json::Value::String(key))) => Ok(key),
                Ok(Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)))) => Ok(value.to_string()),
                Ok(Some(other)) => Err(failed(format!(
                    "partition_key {text:?} gave {}, not a string, number or boolean",
                    match other {
                        serde_json::Value::Array(_) => "an array",
                        serde_json::Value::Object(_) => "an object",
                        _ => "null",
                    }
                ))),
                Ok(None) => Err(failed(format!("partition_key {text:?} gave no value"))),
                Err(err) => Err(failed(format!("partition_key {}: {}", err.code, err.message))),
            })
            .collect()
    }
}

/// A validated `kinesis` destination, backed up to `B`.
#[derive(Clone, Debug)]
pub struct KinesisDestination<B> {
    pub stream: StreamRef,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub partition_key: PartitionKey,
    pub max_records_per_second: Option<u32>,
    pub retry_duration: Duration,
    pub backup: B,
}

impl KinesisDestinationSettings {
    /// The destination these settings describe (at `key`); `backup` checks
    /// the backup's table.
    pub fn check<B>(
        self,
        key: &str,
        problems: &mut Problems,
        backup: impl FnOnce(Table, &mut Problems) -> Option<B>,
    ) -> Option<KinesisDestination<B>> {
        let stream = check_stream(key, self.stream, problems);
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::Kinesis)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let partition_key = match self.partition_key.as_deref().unwrap_or("original") {
            "original" => Some(PartitionKey::Original),
            "random" => Some(PartitionKey::Random),
            text => match crate::processor::jq::first::FirstValue::compile(text) {
                Ok(program) => Some(PartitionKey::Query(KeyQuery { program })),
                Err(err) => {
                    problems.add(
                        &format!("{key}.partition_key"),
                        format!("{text:?} is not allowed: expected original, random or a jq expression such as .user.id ({err})"),
                    );
                    None
                }
            },
        };
        let rate = match self.max_records_per_second {
            None => Some(None),
            Some(rate) => problems
                .in_range(&format!("{key}.max_records_per_second"), rate, RATE_RANGE)
                .map(|r| Some(r as u32)),
        };
        let retry = problems.in_range(
            &format!("{key}.retry_duration_seconds"),
            self.retry_duration_seconds.unwrap_or(DEFAULT_RETRY_SECONDS),
            RETRY_SECONDS_RANGE,
        );
        let backup = match self.backup {
            None => {
                problems.add(
                    &format!("{key}.backup"),
                    format!("is required with {key}.type = \"kinesis\": a local or s3 destination for the records the stream does not take"),
                );
                None
            }
            Some(table) => backup(table, problems),
        };
        Some(KinesisDestination {
            stream: stream?,
            region: self.region.filter(|r| !r.is_empty()),
            endpoint,
            partition_key: partition_key?,
            max_records_per_second: rate?,
            retry_duration: Duration::from_secs(retry? as u64),
            backup: backup?,
        })
    }
}

/// A name, or an ARN.
fn check_stream(key: &str, stream: Option<String>, problems: &mut Problems) -> Option<StreamRef> {
    let Some(stream) = stream else {
        problems.add(
            &format!("{key}.stream"),
            format!("is required with {key}.type = \"kinesis\""),
        );
        return None;
    };
    if stream.starts_with("arn:") {
        let parts: Vec<&str> = stream.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[2] == "kinesis"
            && parts[5].strip_prefix("stream/").is_some_and(|n| !n.is_empty());
        if !ok {
            problems.add(
                &format!("{key}.stream"),
                format!("{stream:?} is not a stream ARN: expected arn:aws:kinesis:<region>:<account>:stream/<name>"),
            );
        }
        return Some(StreamRef::Arn(stream));
    }
    if !spillway_settings::is_resource_name(&stream, 128) {
        problems.add(
            &format!("{key}.stream"),
            format!("{stream:?} is not a stream name or ARN: 1 to 128 characters of A-Z a-z 0-9 _ . -, or arn:aws:kinesis:..."),
        );
    }
    Some(StreamRef::Name(stream))
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, DestinationConfig};

    const BASE: &str = "[source]\ntype = \"stdin\"\n[checkpoint]\npath = \"c\"\n[destination]\ntype = \"kinesis\"\n";

    fn problems(destination: &str) -> Vec<String> {
        let text = format!("{BASE}{destination}");
        parse(&text, "t", &|_| None)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn each_bad_key_is_one_line_naming_it_and_what_is_allowed() {
        let found = problems(
            "partition_key = \"hash(\"\nmax_records_per_second = 0\nretry_duration_seconds = 9000\nstream = \"a b\"\n",
        );
        assert_eq!(found.len(), 5, "{found:?}");
        assert_eq!(found[0], "destination.stream: \"a b\" is not a stream name or ARN: 1 to 128 characters of A-Z a-z 0-9 _ . -, or arn:aws:kinesis:...");
        assert!(
            found[1].starts_with("destination.partition_key: \"hash(\" is not allowed: expected original, random or a jq expression such as .user.id (does not parse"),
            "{found:?}"
        );
        assert_eq!(
            found[2..],
            [
                "destination.max_records_per_second: 0 is out of range: allowed 1 to 10000000",
                "destination.retry_duration_seconds: 9000 is out of range: allowed 0 to 7200",
                "destination.backup: is required with destination.type = \"kinesis\": a local or s3 destination for the records the stream does not take",
            ]
        );
        assert_eq!(
            problems("stream = \"s\"\npath = \"x\"\n[destination.backup]\ntype = \"local\"\npath = \"b\"\n"),
            ["destination.path: only allowed with destination.type = \"local\" (with kinesis they belong in [destination.backup]), not \"kinesis\""]
        );
    }

    #[test]
    fn a_minimal_destination_takes_the_defaults() {
        let text = format!("{BASE}stream = \"arn:aws:kinesis:eu-west-1:1:stream/out\"\n[destination.backup]\ntype = \"local\"\npath = \"b\"\n");
        match parse(&text, "t", &|_| None).unwrap().destination {
            DestinationConfig::Kinesis(kinesis) => {
                assert_eq!(kinesis.partition_key, super::PartitionKey::Original);
                assert_eq!(kinesis.retry_duration.as_secs(), 300);
                assert_eq!(kinesis.max_records_per_second, None);
                assert_eq!(kinesis.stream.to_string(), "arn:aws:kinesis:eu-west-1:1:stream/out");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_jq_partition_key_takes_the_first_scalar_and_names_what_it_cannot_use() {
        let text = format!(
            "{BASE}stream = \"s\"\npartition_key = '.user.id'\n[destination.backup]\ntype = \"local\"\npath = \"b\"\n"
        );
        let DestinationConfig::Kinesis(kinesis) = parse(&text, "t", &|_| None).unwrap().destination else {
            panic!("not kinesis")
        };
        let super::PartitionKey::Query(query) = kinesis.partition_key else {
            panic!("{:?}", kinesis.partition_key)
        };
        let key_of = |data: &'static [u8]| {
            let query = query.clone();
            async move { query.keys_of(vec![bytes::Bytes::from_static(data)]).await.remove(0) }
        };
        assert_eq!(key_of(br#"{"user":{"id":"u-1"}}"#).await, Ok("u-1".to_owned()));
        assert_eq!(key_of(br#"{"user":{"id":42}}"#).await, Ok("42".to_owned()));
        assert_eq!(key_of(br#"{"user":{"id":true}}"#).await, Ok("true".to_owned()));
        for (data, why) in [
            (&br#"{"user":{}}"#[..], "gave null"),
            (br#"{"user":{"id":[1]}}"#, "gave an array"),
            (b"not json", "Jq.InvalidJson"),
            (br#"{"user":7}"#, "Jq.ExecutionFailed"),
        ] {
            let (code, message) = key_of(data).await.unwrap_err();
            assert_eq!(code, "Kinesis.PartitionKeyFailed");
            assert!(message.contains(why), "{message}");
        }
    }
}
