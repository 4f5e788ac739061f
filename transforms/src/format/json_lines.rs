//! `json_lines`: one record per line.

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
    for record in records {
        out.write_all(&record.data)?;
        if record.data.last() != Some(&b'\n') {
            out.write_all(b"\n")?;
        }
    }
    Ok(())
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
}
