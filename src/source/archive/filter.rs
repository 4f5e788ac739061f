//! `filter = '<jq>'`: a jq predicate on each archived record, so a replay
//! sends only what it names (`select(.type == "order")` without the
//! `select`). The program is the `jq` processor's ([`Program`]: the same
//! limits on hostile records, the same withheld filters).
//!
//! A record is read again when the program's first value is neither
//! `false` nor `null`; a record the program cannot judge (not JSON, a
//! runtime error) is not dropped silently: it goes to the error output as
//! `processing-failed`, with the program's error code.

use bytes::Bytes;
use spillway_transforms::{ErrorOutputType, Rejection};

use crate::processor::jq::first::FirstValue;

/// A compiled predicate and its text (for logs and equality). Its
/// program runs in the jq workers: a record that crashes or stalls it is
/// refused alone (`Jq.Crashed`, `Jq.TimedOut`), the replay goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFilter {
    program: FirstValue,
}

impl RecordFilter {
    /// Compiles `text`; the error says what is wrong, in one line.
    pub fn compile(text: &str) -> Result<Self, String> {
        Ok(Self {
            program: FirstValue::compile(text)?,
        })
    }

    /// Whether each record is read again; a record the program cannot
    /// judge is refused with why. In order.
    pub async fn keeps(&self, records: Vec<Bytes>) -> Vec<Result<bool, Rejection>> {
        self.program
            .of(records)
            .await
            .into_iter()
            .map(|first| match first {
                Ok(value) => {
                    Ok(value.is_some_and(|v| !matches!(v, serde_json::Value::Null | serde_json::Value::Bool(false))))
                }
                Err(err) => Err(Rejection {
                    output_type: ErrorOutputType::ProcessingFailed,
                    code: err.code,
                    message: format!("source.filter: {}", err.message),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn keeps(filter: &RecordFilter, record: &'static [u8]) -> Result<bool, Rejection> {
        filter.keeps(vec![Bytes::from_static(record)]).await.remove(0)
    }

    #[tokio::test]
    async fn the_first_value_decides_and_what_cannot_be_judged_is_refused() {
        let filter = RecordFilter::compile(".kind == \"order\" and .n > 2").unwrap();
        assert_eq!(keeps(&filter, br#"{"kind":"order","n":3}"#).await, Ok(true));
        assert_eq!(keeps(&filter, br#"{"kind":"order","n":1}"#).await, Ok(false));
        assert_eq!(keeps(&filter, br#"{"kind":"click"}"#).await, Ok(false));
        let refused = keeps(&filter, b"not json").await.unwrap_err();
        assert_eq!(
            (refused.output_type, refused.code),
            (ErrorOutputType::ProcessingFailed, "Jq.InvalidJson")
        );
        let nothing = RecordFilter::compile("empty").unwrap();
        assert_eq!(keeps(&nothing, b"{}").await, Ok(false));
        let null = RecordFilter::compile(".missing").unwrap();
        assert_eq!(keeps(&null, b"{}").await, Ok(false));
        let failing = RecordFilter::compile(".a + 1").unwrap();
        assert_eq!(
            keeps(&failing, br#"{"a":"x"}"#).await.unwrap_err().code,
            "Jq.ExecutionFailed"
        );
        assert!(RecordFilter::compile(".a ==")
            .unwrap_err()
            .starts_with("does not parse"));
    }
}
