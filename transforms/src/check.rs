//! The checks every record passes before it is buffered.
//!
//! A record that fails is not dropped: it becomes a [`Rejection`], which the
//! pipeline writes to the error output as a Firehose-style error record.

use crate::error_record::ErrorOutputType;
pub use crate::error_record::Rejection;
use crate::record::Record;
use crate::strict::{certainly_strict, nests_deeper_than, parse_strict, too_deep, MAX_DEPTH};

/// The largest record accepted: Kinesis' limit of 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1_000 * 1024;

/// What the configured output format needs of each record.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// Records must be UTF-8 JSON texts (json_lines, parquet).
    pub expect_json: bool,
    /// Parse each JSON record here. Off when the format's encoder parses
    /// every record anyway and refuses a malformed one with the same code
    /// and message (Parquet): one parse less per record.
    pub parse_json: bool,
    pub max_record_bytes: usize,
}

impl Check {
    pub fn new(expect_json: bool) -> Self {
        Self {
            expect_json,
            parse_json: expect_json,
            max_record_bytes: MAX_RECORD_BYTES,
        }
    }

    /// Accepts the record or says why not.
    pub fn check(&self, record: &Record) -> Result<(), Rejection> {
        let data = &record.data[..];
        if data.len() > self.max_record_bytes {
            return Err(Rejection {
                output_type: ErrorOutputType::InvalidRecord,
                code: "Record.TooLarge",
                message: format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    data.len(),
                    self.max_record_bytes
                ),
            });
        }
        if data.is_empty() || (self.expect_json && data.iter().all(u8::is_ascii_whitespace)) {
            return Err(Rejection {
                output_type: ErrorOutputType::InvalidRecord,
                code: "Record.Empty",
                message: "record is empty".to_owned(),
            });
        }
        if !self.expect_json || !self.parse_json {
            return Ok(());
        }
        let text = simdutf8::compat::from_utf8(data).map_err(|err| not_utf8(&err))?;
        // Most records: certainly accepted in one quick pass. The others
        // are decided below, as if that pass had not been.
        if certainly_strict(text) {
            return Ok(());
        }
        // Before the parser, which recurses once per level.
        if nests_deeper_than(data, MAX_DEPTH) {
            return Err(too_deep());
        }
        if let Err(err) = parse_strict(text) {
            return Err(malformed_json(&err));
        }
        Ok(())
    }
}

/// The rejection of a record that is not UTF-8 (where JSON is expected).
pub fn not_utf8(err: &simdutf8::compat::Utf8Error) -> Rejection {
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: "Record.InvalidUtf8",
        message: format!("record is not valid UTF-8: {err}"),
    }
}

/// The rejection of a record that is not one JSON text. sonic-rs (a SIMD
/// parser, used for every JSON record) follows its message with a
/// rendering of the record: only the first line is kept, the record itself
/// is in the error record's `rawData`.
pub fn malformed_json(err: &sonic_rs::Error) -> Rejection {
    let text = err.to_string();
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: "Record.MalformedJson",
        message: format!("record is not valid JSON: {}", text.lines().next().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Offset, Position, SequenceNumber, SourceId};
    use bytes::Bytes;

    fn record(data: &'static [u8]) -> Record {
        Record {
            data: Bytes::from_static(data),
            position: Position {
                source: SourceId::new("s"),
                offset: Offset::new(SequenceNumber::from_u64(0), 0),
            },
            partition_key: None,
            arrival: chrono::Utc::now(),
        }
    }

    #[test]
    fn json_checks_name_the_problem() {
        let check = Check::new(true);
        assert!(check.check(&record(br#"{"a":1}"#)).is_ok());
        assert_eq!(check.check(&record(b"")).unwrap_err().code, "Record.Empty");
        assert_eq!(check.check(&record(b"  ")).unwrap_err().code, "Record.Empty");
        assert_eq!(
            check.check(&record(b"{\"a\":\xff}")).unwrap_err().code,
            "Record.InvalidUtf8"
        );
        let malformed = check.check(&record(br#"{"a":"#)).unwrap_err();
        assert_eq!(malformed.code, "Record.MalformedJson");
        assert!(
            malformed.message.starts_with("record is not valid JSON: ") && malformed.message.contains("column 5"),
            "{}",
            malformed.message
        );
        assert!(!malformed.message.contains('\n'), "{:?}", malformed.message);
        assert_eq!(malformed.output_type, ErrorOutputType::FormatConversionFailed);
        assert_eq!(check.check(&record(b"{} {}")).unwrap_err().code, "Record.MalformedJson");
    }

    /// json_lines' rule is Parquet's (see `strict.rs`): 100,000 deep
    /// overflowed the stack here; `1e400` and lone surrogates were data.
    #[test]
    fn deep_records_and_values_readers_disagree_on_are_refused() {
        let check = Check::new(true);
        let data = |text: String| Record {
            data: Bytes::from(text),
            ..record(b"")
        };
        for depth in [crate::strict::MAX_DEPTH + 1, 100_000] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                let deep = format!("{{\"a\":{}1{}}}", open.repeat(depth - 1), close.repeat(depth - 1));
                let rejection = check.check(&data(deep)).unwrap_err();
                assert_eq!(rejection.code, "Record.TooDeep", "{depth} deep");
                assert_eq!(rejection.output_type, ErrorOutputType::FormatConversionFailed);
            }
        }
        let limit = crate::strict::MAX_DEPTH;
        assert!(check
            .check(&data(format!("{}{}", "[".repeat(limit), "]".repeat(limit))))
            .is_ok());
        // Short, in between, and past the document parser's range (see
        // `strict::DOCUMENT_PARSE_BYTES`): the same rule and message.
        let padding = |bytes: usize| format!(r#""pad":"{}","#, "p".repeat(bytes));
        for pad in [None, Some(100), Some(70_000)] {
            let pad = pad.map(padding).unwrap_or_default();
            for (bad, says) in [
                (format!(r#"{{{pad}"a":1e400}}"#), "must be finite"),
                (format!(r#"{{{pad}"a":[-1e400]}}"#), "must be finite"),
                (format!(r#"{{{pad}"a":"\ud800"}}"#), "surrogate"),
                (format!(r#"{{{pad}"\udc00":1}}"#), "surrogate"),
            ] {
                let rejection = check.check(&data(bad.clone())).unwrap_err();
                assert_eq!(rejection.code, "Record.MalformedJson", "{bad:.80}");
                assert!(
                    rejection.message.to_lowercase().contains(says),
                    "{bad:.80}: {}",
                    rejection.message
                );
            }
            assert!(check
                .check(&data(format!(r#"{{{pad}"a":"\ud83d\ude00","b":1e-400}}"#)))
                .is_ok());
        }
    }

    #[test]
    fn without_parsing_json_records_need_only_be_non_blank_and_small() {
        let check = Check {
            parse_json: false,
            ..Check::new(true)
        };
        assert!(check.check(&record(br#"{"a":"#)).is_ok());
        assert!(check.check(&record(b"{\"a\":\xff}")).is_ok());
        assert_eq!(check.check(&record(b" \n")).unwrap_err().code, "Record.Empty");
    }

    #[test]
    fn raw_records_need_only_be_non_empty_and_small() {
        let check = Check::new(false);
        assert!(check.check(&record(b"\xff\xfe not json")).is_ok());
        assert_eq!(check.check(&record(b"")).unwrap_err().code, "Record.Empty");
        let big = Record {
            data: Bytes::from(vec![b'x'; MAX_RECORD_BYTES + 1]),
            ..record(b"")
        };
        let rejection = check.check(&big).unwrap_err();
        assert_eq!(rejection.code, "Record.TooLarge");
        assert_eq!(rejection.output_type, ErrorOutputType::InvalidRecord);
        let at_limit = Record {
            data: Bytes::from(vec![b'x'; MAX_RECORD_BYTES]),
            ..record(b"")
        };
        assert!(check.check(&at_limit).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// A JSON record passes if and only if it is at most
        /// `MAX_DEPTH` deep and serde_json (a parser independent of
        /// sonic-rs, with the same rules on numbers and surrogates) reads
        /// it; a deeper one is `Record.TooDeep`, whatever else is wrong.
        #[test]
        fn json_records_pass_by_depth_and_by_serde_json(value in crate::test_json::record_value()) {
            let text = value.text();
            let verdict = Check::new(true).check(&Record { data: Bytes::from(text.clone()), ..record(b"") });
            let deep = value.depth() > crate::strict::MAX_DEPTH;
            let valid = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            match verdict {
                Ok(()) => proptest::prop_assert!(!deep && valid, "{}", text),
                Err(rejection) if deep => proptest::prop_assert_eq!(rejection.code, "Record.TooDeep"),
                Err(rejection) => {
                    proptest::prop_assert!(!valid, "{}: {:?}", text, rejection);
                    proptest::prop_assert_eq!(rejection.code, "Record.MalformedJson");
                }
            }
        }

        /// Broken records never panic the check.
        #[test]
        fn any_record_is_checked_without_a_panic(bytes in crate::test_json::record_bytes()) {
            let _ = Check::new(true).check(&Record { data: Bytes::from(bytes), ..record(b"") });
        }
    }
}
