//! A jq program's first value on each record, run where the `jq`
//! processor runs its programs: in the jq workers ([`super::worker`]).
//!
//! The archive source's `filter` and the Kinesis destination's
//! `partition_key` each need one value of an operator's program on a
//! hostile record. Run in the pipeline's own process, a record that sends
//! the program into endless recursion aborts the whole replay (and every
//! restart on the same record); one that loops stalls it. In the workers
//! the record fails alone (`Jq.Crashed`, `Jq.TimedOut`), as it does for
//! the `jq` processor.

use std::sync::Arc;

use bytes::Bytes;

use super::wire::Reply;
use super::{JqChain, Program, RunError, Step, StepKind};

/// A compiled program whose first value is wanted, and its text.
#[derive(Clone)]
pub struct FirstValue {
    text: String,
    chain: Arc<JqChain>,
}

impl std::fmt::Debug for FirstValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FirstValue").field(&self.text).finish()
    }
}

impl PartialEq for FirstValue {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for FirstValue {}

impl FirstValue {
    /// Compiles `text`; the error says what is wrong with it, in one line.
    pub fn compile(text: &str) -> Result<Self, String> {
        Program::compile(text)?;
        // Only the first value is wanted: the program stops there (a
        // predicate that could go on making values costs nothing more and
        // is not failed for making too many). The newline ends a comment
        // the text may end with.
        let first = format!("limit(1; ({text}\n))");
        let program = Program::compile(&first)?;
        let step = Step {
            kind: StepKind::Filter,
            query: first.as_str().into(),
            program: Arc::new(program),
        };
        Ok(Self {
            text: text.to_owned(),
            chain: Arc::new(JqChain::new(vec![step], format!("jq {text:?}"))),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Each record's first value, as JSON (`None`: the program made no
    /// value), or why the program failed on it; in order.
    pub async fn of(&self, records: Vec<Bytes>) -> Vec<Result<Option<serde_json::Value>, RunError>> {
        self.chain
            .replies(records)
            .await
            .into_iter()
            .map(|reply| match reply {
                Reply::Outputs(outputs) => match outputs.into_iter().next() {
                    None => Ok(None),
                    Some((json, _)) => serde_json::from_slice(&json).map(Some).map_err(|err| RunError {
                        code: "Jq.ExecutionFailed",
                        message: format!("the program's value cannot be read back: {err}"),
                    }),
                },
                Reply::Failed { code, message } => Err(RunError {
                    code: static_code(&code),
                    message,
                }),
            })
            .collect()
    }
}

/// The workers' error codes, as the `&'static str` error records carry.
fn static_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "Jq.InvalidJson",
        "Jq.ExecutionFailed",
        "Jq.TooManyOutputs",
        "Jq.OutputTooDeep",
        "Jq.TimedOut",
        "Jq.Crashed",
        "Jq.WorkerFailed",
    ];
    CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("Jq.WorkerFailed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_value_of_each_record_or_why_not() {
        let first = FirstValue::compile(".a[] # the a's").unwrap();
        let records = ["{\"a\":[1,2]}", "{\"a\":[]}", "not json", "{\"a\":3}"]
            .map(|r| Bytes::from(r.to_owned()))
            .to_vec();
        let values = first.of(records).await;
        assert_eq!(values[0], Ok(Some(serde_json::json!(1))));
        assert_eq!(values[1], Ok(None));
        assert_eq!(values[2].as_ref().unwrap_err().code, "Jq.InvalidJson");
        assert_eq!(values[3].as_ref().unwrap_err().code, "Jq.ExecutionFailed");
    }

    #[tokio::test]
    async fn definitions_and_endless_values_are_allowed() {
        let first = FirstValue::compile("def twice: . * 2; .n | twice, repeat(.)").unwrap();
        let values = first.of(vec![Bytes::from_static(b"{\"n\":4}")]).await;
        assert_eq!(values, vec![Ok(Some(serde_json::json!(8)))]);
    }

    #[test]
    fn a_program_that_does_not_parse_is_named_as_written() {
        let err = FirstValue::compile(".a ==").unwrap_err();
        assert!(err.starts_with("does not parse"), "{err}");
        assert!(FirstValue::compile(".a) | (.b").is_err());
    }
}
