//! `raw`: the records' bytes as they are, optionally delimited.

use super::Encoded;
use crate::record::Record;

pub(super) fn encode(records: &[Record], delimiter: Option<&[u8]>) -> Encoded {
    let delimiter = delimiter.unwrap_or_default();
    let size: usize = records.iter().map(|r| r.data.len() + delimiter.len()).sum();
    let mut body = Vec::with_capacity(size);
    for record in records {
        body.extend_from_slice(&record.data);
        body.extend_from_slice(delimiter);
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
    fn concatenates_with_the_delimiter() {
        let records = [record(b"a"), record(b"\x00b")];
        let plain = Format::Raw { delimiter: None }.encode(&records);
        assert_eq!(plain.body, b"a\x00b");
        let delimited = Format::Raw {
            delimiter: Some(b"\r\n".to_vec()),
        }
        .encode(&records);
        assert_eq!(delimited.body, b"a\r\n\x00b\r\n");
    }
}
