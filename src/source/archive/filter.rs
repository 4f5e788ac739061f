//! `filter = '<jq>'`: a jq predicate on each archived record, so a replay
//! sends only what it names (`select(.type == "order")` without the
//! `select`). The program is the `jq` processor's ([`Program`]: the same
//! limits on hostile records, the same withheld filters).
//!
//! A record is read again when the program's first value is neither
//! `false` nor `null`; a record the program cannot judge (not JSON, a
//! runtime error) is not dropped silently: it goes to the error output as
//! `processing-failed`, with the program's error code.

use std::sync::Arc;

use spillway_transforms::{ErrorOutputType, Rejection};

use crate::processor::jq::Program;

/// A compiled predicate and its text (for logs and equality).
#[derive(Clone)]
pub struct RecordFilter {
    text: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for RecordFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecordFilter").field(&self.text).finish()
    }
}

impl RecordFilter {
    /// Compiles `text`; the error says what is wrong, in one line.
    pub fn compile(text: &str) -> Result<Self, String> {
        Ok(Self {
            text: text.to_owned(),
            program: Arc::new(Program::compile(text)?),
        })
    }

    /// Whether the record `data` is read again; a record the program
    /// cannot judge is refused with why.
    pub fn keeps(&self, data: &[u8]) -> Result<bool, Rejection> {
        let refuse = |err: crate::processor::jq::RunError| Rejection {
            output_type: ErrorOutputType::ProcessingFailed,
            code: err.code,
            message: format!("source.filter: {}", err.message),
        };
        let value = Program::parse(data).map_err(refuse)?;
        let values = self.program.run(value).map_err(refuse)?;
        Ok(values
            .first()
            .is_some_and(|v| !matches!(v, jaq_json::Val::Null | jaq_json::Val::Bool(false))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_decides_and_what_cannot_be_judged_is_refused() {
        let filter = RecordFilter::compile(".kind == \"order\" and .n > 2").unwrap();
        assert_eq!(filter.keeps(br#"{"kind":"order","n":3}"#), Ok(true));
        assert_eq!(filter.keeps(br#"{"kind":"order","n":1}"#), Ok(false));
        assert_eq!(filter.keeps(br#"{"kind":"click"}"#), Ok(false));
        let refused = filter.keeps(b"not json").unwrap_err();
        assert_eq!(
            (refused.output_type, refused.code),
            (ErrorOutputType::ProcessingFailed, "Jq.InvalidJson")
        );
        let nothing = RecordFilter::compile("empty").unwrap();
        assert_eq!(nothing.keeps(b"{}"), Ok(false));
        let null = RecordFilter::compile(".missing").unwrap();
        assert_eq!(null.keeps(b"{}"), Ok(false));
        let failing = RecordFilter::compile(".a + 1").unwrap();
        assert_eq!(failing.keeps(br#"{"a":"x"}"#).unwrap_err().code, "Jq.ExecutionFailed");
        assert!(RecordFilter::compile(".a ==")
            .unwrap_err()
            .starts_with("does not parse"));
    }
}
