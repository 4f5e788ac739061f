//! `json_lines`: one record per line.
//!
//! A JSON text may hold line breaks between its tokens (a pretty-printed
//! record from a producer, a Lambda or a CloudWatch Logs message): written
//! as they are, one record would be several lines, none of them JSON, and
//! a reader of the object (Athena, a replay) would take it for several
//! broken records. JSON allows no raw line break inside a string, so in a
//! record that passed the JSON check every `\n` and `\r` is whitespace
//! between tokens: each becomes a space, which keeps the record's meaning
//! and length and makes it one line.

use std::io::Write;

use serde::Deserialize;

use super::Encoded;
use crate::record::Record;

/// `[format]` with `type = "json_lines"` (the default): one record per
/// line, a newline added where a record lacks one; records must be valid
/// JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLinesSettings {
    /// Each line holds the record and its position (shard, sequence and
    /// subsequence number, partition key, arrival time), so that the
    /// archive replays exactly: `{"shardId", "sequenceNumber",
    /// "subSequenceNumber", "partitionKey", "arrivalTimestamp", "data"}`,
    /// the record as its JSON text under `data`, or as base64 under
    /// `dataBase64` when it is not JSON (any record is then accepted).
    /// Default false: the record alone.
    #[serde(default)]
    pub envelope: bool,
}

impl JsonLinesSettings {
    pub fn check(self) -> super::Format {
        if self.envelope {
            super::Format::JsonLinesEnvelope
        } else {
            super::Format::JsonLines
        }
    }
}

pub(super) fn encode(records: &[Record]) -> Encoded {
    let size: usize = records.iter().map(|r| r.data.len() + 1).sum();
    let mut body = Vec::with_capacity(size);
    write(records, &mut body).expect("writing to memory does not fail");
    Encoded {
        body,
        records: records.len(),
        rejected: Vec::new(),
    }
}

/// Envelope lines (see [`super::envelope`]).
pub(super) fn encode_envelopes(records: &[Record]) -> Encoded {
    let size: usize = records.iter().map(|r| r.data.len() + 160).sum();
    let mut body = Vec::with_capacity(size);
    write_envelopes(records, &mut body).expect("writing to memory does not fail");
    Encoded {
        body,
        records: records.len(),
        rejected: Vec::new(),
    }
}

pub(super) fn write_envelopes(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    for record in records {
        super::envelope::write_line(record, out)?;
    }
    Ok(())
}

pub(super) fn write(records: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    let mut one_line = Vec::new();
    for record in records {
        let data = &record.data[..];
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        out.write_all(as_one_line(body, &mut one_line))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `json` (a JSON text) as one line: itself when it holds no line break,
/// else with each `\n` and `\r` (whitespace between tokens, since JSON
/// allows none inside a string) made a space in `scratch`.
pub fn as_one_line<'a>(json: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        return json;
    }
    scratch.clear();
    scratch.extend(json.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    scratch
}

#[cfg(test)]
mod tests {
    use crate::format::Format;
    use crate::record::tests_support::record;

    #[test]
    fn adds_a_newline_only_where_missing() {
        let encoded = Format::JsonLines.encode(&[record(b"{\"a\":1}"), record(b"{\"b\":2}\n")]);
        assert_eq!(encoded.body, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(encoded.records, 2);
    }

    #[test]
    fn a_pretty_printed_record_is_one_line() {
        let encoded = Format::JsonLines.encode(&[record(b"{\r\n  \"a\": [\n    1\n  ]\n}\n"), record(b"2")]);
        assert_eq!(encoded.body, b"{    \"a\": [     1   ] }\n2\n");
    }

    /// `value` written with line breaks (`\n` or `\r\n`) and indentation
    /// between every token.
    fn pretty(value: &crate::test_json::Value, crlf: bool, out: &mut String) {
        use crate::test_json::Value;
        let brk = if crlf { "\r\n  " } else { "\n  " };
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(brk);
                    pretty(item, crlf, out);
                }
                out.push_str(brk);
                out.push(']');
            }
            Value::Object(entries) => {
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(brk);
                    out.push_str(&format!("\"{key}\"{brk}:{brk}"));
                    pretty(item, crlf, out);
                }
                out.push_str(brk);
                out.push('}');
            }
            scalar => scalar.write(out),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Records pretty-printed, with line breaks between their tokens:
        /// the object has exactly one line per record, and each line is the
        /// record's JSON, the same value.
        #[test]
        fn every_json_record_is_exactly_one_line_with_its_value(
            values in proptest::collection::vec(crate::test_json::value(), 1..6),
            crlf in proptest::bool::ANY,
        ) {
            let texts: Vec<String> = values
                .iter()
                .map(|v| {
                    let mut text = String::new();
                    pretty(v, crlf, &mut text);
                    text
                })
                .collect();
            let records: Vec<_> = texts
                .iter()
                .map(|t| crate::record::Record {
                    data: bytes::Bytes::from(t.clone()),
                    ..record(b"")
                })
                .collect();
            let body = Format::JsonLines.encode(&records).body;
            let lines: Vec<&[u8]> = body.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
            proptest::prop_assert_eq!(lines.len(), records.len());
            for (line, text) in lines.iter().zip(&texts) {
                proptest::prop_assert_eq!(line.len(), text.len());
                let written: Result<serde_json::Value, _> = serde_json::from_slice(line);
                let original: Result<serde_json::Value, _> = serde_json::from_str(text);
                match (written, original) {
                    (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                    (a, b) => proptest::prop_assert_eq!(a.is_ok(), b.is_ok()),
                }
            }
        }
    }
}
