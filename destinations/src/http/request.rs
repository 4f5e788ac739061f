//! The request body: `{"requestId", "timestamp", "records": [{"data"}]}`,
//! built once per request and sent unchanged on every attempt.

use std::io::Write;

use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};

use super::ContentEncoding;

/// One request, ready to send as many times as it takes.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    request_id: String,
    body: Bytes,
    gzip: bool,
    records: usize,
}

impl HttpRequest {
    /// Builds the body for `records` (their bytes, in order), stamped with
    /// `timestamp_ms`.
    pub fn new<'a>(
        request_id: String,
        timestamp_ms: i64,
        records: impl ExactSizeIterator<Item = &'a [u8]>,
        encoding: ContentEncoding,
    ) -> std::io::Result<Self> {
        let count = records.len();
        let engine = base64::engine::general_purpose::STANDARD;
        let mut json = Vec::new();
        write!(
            json,
            "{{\"requestId\":\"{request_id}\",\"timestamp\":{timestamp_ms},\"records\":["
        )?;
        for (index, data) in records.enumerate() {
            if index > 0 {
                json.push(b',');
            }
            json.extend_from_slice(b"{\"data\":\"");
            let start = json.len();
            let encoded = base64::encoded_len(data.len(), true).expect("a record's base64 fits in memory");
            json.resize(start + encoded, 0);
            engine
                .encode_slice(data, &mut json[start..])
                .expect("the buffer has the encoded length");
            json.extend_from_slice(b"\"}");
        }
        json.extend_from_slice(b"]}");
        let (body, gzip) = match encoding {
            ContentEncoding::None => (json, false),
            ContentEncoding::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&json)?;
                (encoder.finish()?, true)
            }
        };
        Ok(Self {
            request_id,
            body: Bytes::from(body),
            gzip,
            records: count,
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub(super) fn content_encoding(&self) -> Option<&'static str> {
        self.gzip.then_some("gzip")
    }
}

/// A request id in GUID form, derived from what identifies a request (for
/// example the delivery stream, the first record's position and the record
/// count): a UUID version 3 (MD5, name-based). A request re-formed from the
/// same records after a restart carries the same id, so a receiver that
/// deduplicates by request id sees it once.
pub fn request_id(identity: &str) -> String {
    let mut digest: [u8; 16] = Md5::digest(identity.as_bytes()).into();
    digest[6] = (digest[6] & 0x0f) | 0x30;
    digest[8] = (digest[8] & 0x3f) | 0x80;
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_holds_every_record_in_base64() {
        let records: Vec<&[u8]> = vec![b"{\"a\":1}", b"\x00\xff"];
        let request =
            HttpRequest::new("id-1".into(), 1700000000000, records.into_iter(), ContentEncoding::None).unwrap();
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"requestId": "id-1", "timestamp": 1700000000000i64,
                               "records": [{"data": "eyJhIjoxfQ=="}, {"data": "AP8="}]})
        );
        assert_eq!(request.records(), 2);
    }

    #[test]
    fn request_ids_are_stable_uuids() {
        let id = request_id("stream/shard-1/42/0/10");
        assert_eq!(id, request_id("stream/shard-1/42/0/10"));
        assert_ne!(id, request_id("stream/shard-1/43/0/10"));
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "3", "version 3: {id}");
    }
}
