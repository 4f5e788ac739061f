//! `record_deaggregation`: one record holding many becomes many (Firehose's
//! RecordDeAggregation): `sub_record_type = "json"` for concatenated JSON
//! values (`{..}{..}`, with or without whitespace between), `"delimited"`
//! for records separated by `delimiter`. A record that does not split
//! cleanly goes to `processing-failed`; at most [`MAX_SPLIT`] records come
//! of one.

use bytes::Bytes;
use serde::Deserialize;
use spillway_settings::Problems;
use tokio_util::sync::CancellationToken;

use super::config::Ready;
use super::{per_record, Failure, Input, Outcome, Output, ProcessError, Processor, MAX_SPLIT};

/// `[[processors]] type = "record_deaggregation"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDeaggregationSettings {
    /// `json` (concatenated JSON values) or `delimited`.
    pub sub_record_type: String,
    /// With `delimited`: what separates records (1 to 50 bytes), e.g. "\n".
    #[serde(default)]
    pub delimiter: Option<String>,
}

/// How records are split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Split {
    Json,
    Delimited(Vec<u8>),
}

impl RecordDeaggregationSettings {
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<Ready<RecordDeaggregation>> {
        let split = match (self.sub_record_type.as_str(), self.delimiter) {
            ("json", None) => Split::Json,
            ("json", Some(_)) => {
                problems.add(
                    &format!("{key}.delimiter"),
                    "only allowed with sub_record_type = \"delimited\"",
                );
                return None;
            }
            ("delimited", Some(delimiter)) if (1..=50).contains(&delimiter.len()) => {
                Split::Delimited(delimiter.into_bytes())
            }
            ("delimited", Some(delimiter)) => {
                problems.add(
                    &format!("{key}.delimiter"),
                    format!("{delimiter:?} is not allowed: 1 to 50 bytes"),
                );
                return None;
            }
            ("delimited", None) => {
                problems.add(
                    &format!("{key}.delimiter"),
                    "is required with sub_record_type = \"delimited\"",
                );
                return None;
            }
            (other, _) => {
                problems.add(
                    &format!("{key}.sub_record_type"),
                    format!("{other:?} is not allowed: expected one of json, delimited"),
                );
                return None;
            }
        };
        Some(Ready::new("record_deaggregation", RecordDeaggregation { split }))
    }
}

#[derive(Clone, Debug)]
pub struct RecordDeaggregation {
    split: Split,
}

const CODE: &str = "Deaggregation.Failed";

/// The records `data` holds.
pub fn split(how: &Split, data: &[u8]) -> Outcome {
    let parts: Result<Vec<&[u8]>, String> = match how {
        Split::Json => split_json(data),
        Split::Delimited(delimiter) => Ok(split_delimited(data, delimiter)),
    };
    match parts {
        Err(why) => Outcome::Failed(Failure::processing(CODE, why)),
        Ok(parts) if parts.len() > MAX_SPLIT => Outcome::Failed(Failure::processing(
            CODE,
            format!("the record holds more than {MAX_SPLIT} records"),
        )),
        Ok(parts) if parts.is_empty() => Outcome::Dropped,
        Ok(parts) => Outcome::Ok(
            parts
                .into_iter()
                .map(|p| Output::data(Bytes::copy_from_slice(p)))
                .collect(),
        ),
    }
}

/// Concatenated JSON values, each as written (serde_json stops at 128
/// levels of nesting, so hostile input is safe).
fn split_json(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut parts = Vec::new();
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(value) = values.next() {
        if let Err(err) = value {
            return Err(format!("the record is not concatenated JSON: {err}"));
        }
        let end = values.byte_offset();
        let part = data[start..end].trim_ascii();
        parts.push(part);
        if parts.len() > MAX_SPLIT {
            break;
        }
        start = end;
    }
    Ok(parts)
}

/// Records separated by `delimiter`; empty ones (a trailing delimiter)
/// are not records.
fn split_delimited<'a>(data: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = memchr::memmem::find(rest, delimiter) {
        if at > 0 {
            parts.push(&rest[..at]);
        }
        rest = &rest[at + delimiter.len()..];
        if parts.len() > MAX_SPLIT {
            return parts;
        }
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

#[async_trait::async_trait]
impl Processor for RecordDeaggregation {
    fn describe(&self) -> String {
        match &self.split {
            Split::Json => "record_deaggregation (json)".into(),
            Split::Delimited(d) => format!("record_deaggregation (delimited by {:?})", String::from_utf8_lossy(d)),
        }
    }

    async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        let how = self.split.clone();
        Ok(per_record(inputs, move |data| split(&how, data)).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(outcome: Outcome) -> Vec<String> {
        match outcome {
            Outcome::Ok(outputs) => outputs
                .iter()
                .map(|o| String::from_utf8(o.data.to_vec()).unwrap())
                .collect(),
            Outcome::Dropped => vec![],
            Outcome::Failed(f) => vec![format!("failed: {}", f.code)],
        }
    }

    #[test]
    fn concatenated_json_splits_into_its_values() {
        assert_eq!(
            parts(split(&Split::Json, br#"{"a":1}{"b":[2]} {"c":"}{"}"#)),
            [r#"{"a":1}"#, r#"{"b":[2]}"#, r#"{"c":"}{"}"#]
        );
        assert_eq!(
            parts(split(&Split::Json, b"{\"a\":1}\n{\"b\":2}\n")),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            parts(split(&Split::Json, br#"{"a":1}{"b""#)),
            ["failed: Deaggregation.Failed"]
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            parts(split(&Split::Json, deep.as_bytes())),
            ["failed: Deaggregation.Failed"]
        );
        assert!(parts(split(&Split::Json, b"  ")).is_empty());
    }

    #[test]
    fn delimited_records_split_on_the_delimiter() {
        let how = Split::Delimited(b"||".to_vec());
        assert_eq!(parts(split(&how, b"a||b||||c||")), ["a", "b", "c"]);
        assert_eq!(parts(split(&how, b"abc")), ["abc"]);
    }

    proptest! {
        #[test]
        fn delimited_pieces_join_back_to_the_record(pieces in prop::collection::vec("[a-z|]{1,6}", 1..30)) {
            let how = Split::Delimited(b"\n".to_vec());
            let data = pieces.join("\n");
            prop_assert_eq!(parts(split(&how, data.as_bytes())).join("\n"), pieces.join("\n"));
        }

        #[test]
        fn json_values_come_out_as_they_went_in(values in prop::collection::vec(any::<i64>(), 1..30)) {
            let objects: Vec<String> = values.iter().map(|v| format!("{{\"v\":{v}}}")).collect();
            prop_assert_eq!(parts(split(&Split::Json, objects.concat().as_bytes())), objects);
        }

        #[test]
        fn any_bytes_give_an_outcome(data in prop::collection::vec(any::<u8>(), 0..500)) {
            let _ = split(&Split::Json, &data);
            let _ = split(&Split::Delimited(b",".to_vec()), &data);
        }
    }
}
