//! The options of the S3 destination.

use std::time::Duration;

/// The smallest part S3 accepts (except for the last part of an upload).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Default [`S3Options::multipart_threshold`]: 16 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Default [`S3Options::part_size`]: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default [`S3Options::attempt_timeout`]: 5 minutes.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Server-side encryption of written objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: keys managed by S3 (`AES256`).
    S3,
    /// SSE-KMS (`aws:kms`), with the given key, or the account's default
    /// `aws/s3` key when `key_id` is `None`.
    Kms { key_id: Option<String> },
}

/// Where and how the S3 destination writes.
///
/// Validating values is the caller's job (the configuration layer): the
/// store uses them as given.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The bucket name.
    pub bucket: String,
    /// The region; `None` takes it from the standard chain (`AWS_REGION`,
    /// profile, instance metadata).
    pub region: Option<String>,
    /// An endpoint URL replacing AWS's, for S3-compatible stores and tests.
    pub endpoint: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual hosts
    /// (`bucket.endpoint/key`): most S3-compatible stores need it.
    pub force_path_style: bool,
    /// Send and check checksums only where an operation requires them, for
    /// S3-compatible stores that refuse the SDK's default CRC32 checksums.
    pub checksum_when_required: bool,
    /// Server-side encryption; `None` leaves the bucket's default.
    pub server_side_encryption: Option<Sse>,
    /// The storage class (`STANDARD_IA`, `GLACIER_IR`...); `None` leaves
    /// the bucket's default. The start-up probe is written with it too.
    pub storage_class: Option<String>,
    /// Tags of every object, sent URL-encoded as `x-amz-tagging`.
    pub tags: Vec<(String, String)>,
    /// Payloads of at least this many bytes go as multipart uploads. Must
    /// be at least [`MIN_PART_SIZE`]; S3's PutObject takes at most 5 GiB.
    pub multipart_threshold: usize,
    /// The size of each multipart part but the last. Must be at least
    /// [`MIN_PART_SIZE`]; it grows if a payload would need more than 10,000
    /// parts.
    pub part_size: usize,
    /// The longest one attempt of one request may take, so that a hung
    /// connection becomes a transient error instead of a stuck put. Used by
    /// [`S3Store::new`](super::S3Store::new) only.
    pub attempt_timeout: Duration,
}

impl S3Options {
    /// Options for `bucket`, everything else at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            checksum_when_required: false,
            server_side_encryption: None,
            storage_class: None,
            tags: Vec::new(),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

/// `k1=v1&k2=v2`, each name and value percent-encoded, as `x-amz-tagging`
/// wants them; `None` without tags.
pub(super) fn encode_tags(tags: &[(String, String)]) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    Some(pairs.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_url_encoded() {
        let tags = vec![
            ("team".to_owned(), "data eng".to_owned()),
            ("a&b".to_owned(), "c=d/é".to_owned()),
        ];
        assert_eq!(
            encode_tags(&tags).as_deref(),
            Some("team=data%20eng&a%26b=c%3Dd%2F%C3%A9")
        );
        assert_eq!(encode_tags(&[]), None);
    }
}
