//! `raw`: the records' bytes as they are, optionally delimited.

use std::io::Write;

use serde::Deserialize;

use super::{Encoded, Format};
use crate::record::Record;

/// `[format]` with `type = "raw"`: the record bytes as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormatSettings {
    /// Bytes written after each record, for example `"\n"`. Default: none.
    pub delimiter: Option<String>,
}

impl RawFormatSettings {
    pub fn check(self) -> Format {
        Format::Raw {
            delimiter: self.delimiter.map(String::into_bytes).filter(|d| !d.is_empty()),
        }
    }
}

pub(super) fn encode(records: &[Record], delimiter: Option<&[u8]>) -> Encoded {
    let size: usize = records
        .iter()
        .map(|r| r.data.len() + delimiter.map_or(0, <[u8]>::len))
        .sum();
    let mut body = Vec::with_capacity(size);
    write(records, delimiter, &mut body).expect("writing to memory does not fail");
    Encoded {
        body,
        records: records.len(),
        rejected: Vec::new(),
    }
}

pub(super) fn write(records: &[Record], delimiter: Option<&[u8]>, out: &mut dyn Write) -> std::io::Result<()> {
    let delimiter = delimiter.unwrap_or_default();
    for record in records {
        out.write_all(&record.data)?;
        out.write_all(delimiter)?;
    }
    Ok(())
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
