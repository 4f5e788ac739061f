//! `json_lines`: one record per line.

use super::Encoded;
use crate::record::Record;

pub(super) fn encode(records: &[Record]) -> Encoded {
    let size: usize = records.iter().map(|r| r.data.len() + 1).sum();
    let mut body = Vec::with_capacity(size);
    for record in records {
        body.extend_from_slice(&record.data);
        if record.data.last() != Some(&b'\n') {
            body.push(b'\n');
        }
    }
    Encoded {
        body,
        records: records.len(),
        rejected: Vec::new(),
    }
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
