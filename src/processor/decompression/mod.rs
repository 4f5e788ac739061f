//! `decompression`: gunzips each record (Firehose's Decompression
//! processor). A record that is not gzip, or that would inflate past
//! [`MAX_DECOMPRESSED`] (a decompression bomb), goes to the error output
//! under `decompression-failed`, as Firehose does, and processing goes on.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use spillway_transforms::ErrorOutputType;
use tokio_util::sync::CancellationToken;

use super::config::Ready;
use super::{per_record, Failure, Input, Outcome, Output, ProcessError, Processor};

/// The most bytes one record may inflate to.
pub const MAX_DECOMPRESSED: usize = 32 * 1024 * 1024;

/// `[[processors]] type = "decompression"`: no keys (gzip, as Firehose).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecompressionSettings {}

impl DecompressionSettings {
    pub fn check(self) -> Ready<Decompression> {
        Ready::new("decompression", Decompression)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Decompression;

/// A `decompression-failed` failure.
pub fn failed(code: &str, message: impl Into<String>) -> Failure {
    Failure {
        output: ErrorOutputType::DecompressionFailed,
        ..Failure::processing(code, message)
    }
}

/// Gunzips `data` (every member), at most [`MAX_DECOMPRESSED`] bytes.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let mut reader = MultiGzDecoder::new(data).take(MAX_DECOMPRESSED as u64 + 1);
    if let Err(err) = reader.read_to_end(&mut out) {
        return Err(failed(
            "Decompression.InvalidGzip",
            format!("the record is not gzip: {err}"),
        ));
    }
    if out.len() > MAX_DECOMPRESSED {
        return Err(failed(
            "Decompression.TooLarge",
            format!("the record inflates past {MAX_DECOMPRESSED} bytes"),
        ));
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Processor for Decompression {
    fn describe(&self) -> String {
        "decompression (gzip)".into()
    }

    async fn process(&self, inputs: &[Input<'_>], _: &CancellationToken) -> Result<Vec<Outcome>, ProcessError> {
        Ok(per_record(inputs, |data| match gunzip(data) {
            Ok(plain) => Outcome::Ok(vec![Output::data(Bytes::from(plain))]),
            Err(failure) => Outcome::Failed(failure),
        })
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_round_trips_and_other_bytes_fail_in_their_own_output() {
        assert_eq!(gunzip(&gzip(b"hello")).unwrap(), b"hello");
        let mut two = gzip(b"a");
        two.extend(gzip(b"b"));
        assert_eq!(gunzip(&two).unwrap(), b"ab", "every member");
        let failure = gunzip(b"plain").unwrap_err();
        assert_eq!(failure.output, ErrorOutputType::DecompressionFailed);
        assert_eq!(failure.code, "Decompression.InvalidGzip");
    }

    #[test]
    fn a_bomb_is_refused_not_inflated() {
        let bomb = gzip(&vec![0u8; MAX_DECOMPRESSED + 1]);
        assert!(bomb.len() < 1_000_000, "a small record");
        assert_eq!(gunzip(&bomb).unwrap_err().code, "Decompression.TooLarge");
    }

    proptest! {
        #[test]
        fn any_bytes_decompress_or_fail_without_panicking(data in prop::collection::vec(any::<u8>(), 0..2000), cut in any::<prop::sample::Index>()) {
            let _ = gunzip(&data);
            let whole = gzip(&data);
            prop_assert_eq!(gunzip(&whole).unwrap(), data);
            // A gzip cut short fails.
            let at = cut.index(whole.len());
            let _ = gunzip(&whole[..at]);
        }
    }
}
