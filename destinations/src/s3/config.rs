//! `[destination]` with `type = "s3"`: the store's own keys, and how they
//! become [`S3Options`]. (The keys every object destination takes, such as
//! `prefix`, are in [`crate::objects`].)

use serde::Deserialize;
use spillway_settings::Problems;

use super::{S3Options, Sse};
use crate::endpoint::{self, EndpointUse};

/// `[destination]` (or `[destination.backup]`) with `type = "s3"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: Option<String>,
    /// The region; default: the standard chain.
    pub region: Option<String>,
    /// An endpoint URL, for S3-compatible stores (MinIO, Ceph, moto).
    pub endpoint: Option<String>,
    /// Path-style URLs, which most S3-compatible stores need. Default
    /// false.
    pub force_path_style: Option<bool>,
    /// `when_supported` (default: the SDK's checksums) or `when_required`
    /// (only where an operation needs one, for stores that refuse the
    /// others).
    pub checksum: Option<String>,
    /// Server-side encryption, `AES256` (SSE-S3) or `aws:kms`.
    pub server_side_encryption: Option<String>,
    /// With `aws:kms`: the KMS key id or ARN; default: the account's
    /// `aws/s3` key.
    pub kms_key_id: Option<String>,
    /// The storage class, e.g. `STANDARD_IA`; default: the bucket's.
    pub storage_class: Option<String>,
    /// Tags of every object, a table of strings.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    /// Objects of at least this many MiB are sent as multipart uploads: 5
    /// to 5,120. Default 16.
    pub multipart_threshold_mb: Option<i64>,
}

impl S3Settings {
    /// The store's options, with every problem (at `key`: `destination` or
    /// `destination.backup`) added to `problems`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<S3Options> {
        let Some(bucket) = self.bucket else {
            problems.add(
                &format!("{key}.bucket"),
                format!("is required with {key}.type = \"s3\""),
            );
            return None;
        };
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            problems.add(
                &format!("{key}.bucket"),
                format!("{bucket:?} is not a bucket name: 3 to 63 characters of a-z 0-9 . -"),
            );
        }
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(Err(problem)) = endpoint.as_deref().map(|e| endpoint::check(e, EndpointUse::S3)) {
            problems.add(&format!("{key}.endpoint"), problem);
        }
        let checksum_when_required = problems.one_of(
            &format!("{key}.checksum"),
            self.checksum.as_deref().unwrap_or("when_supported"),
            &["when_supported", "when_required"],
            |c| match c {
                "when_supported" => Some(false),
                "when_required" => Some(true),
                _ => None,
            },
        );
        let sse = check_sse(key, self.server_side_encryption.as_deref(), self.kms_key_id, problems);
        let threshold_mb = problems.in_range(
            &format!("{key}.multipart_threshold_mb"),
            self.multipart_threshold_mb.unwrap_or(16),
            (5, 5120),
        );
        let mut options = S3Options::new(bucket);
        options.region = self.region.filter(|r| !r.is_empty());
        options.endpoint = endpoint;
        options.force_path_style = self.force_path_style.unwrap_or(false);
        options.checksum_when_required = checksum_when_required?;
        options.server_side_encryption = sse?;
        options.storage_class = self.storage_class;
        options.tags = self.tags.unwrap_or_default().into_iter().collect();
        options.multipart_threshold = threshold_mb? as usize * 1024 * 1024;
        Some(options)
    }
}

/// `Some(None)`: the bucket's default encryption.
fn check_sse(key: &str, sse: Option<&str>, kms_key: Option<String>, problems: &mut Problems) -> Option<Option<Sse>> {
    match (sse, kms_key) {
        (None, None) => Some(None),
        (Some("AES256"), None) => Some(Some(Sse::S3)),
        (Some("aws:kms"), key_id) => Some(Some(Sse::Kms { key_id })),
        (Some("AES256") | None, Some(_)) => {
            problems.add(
                &format!("{key}.kms_key_id"),
                "only allowed with server_side_encryption = \"aws:kms\"",
            );
            None
        }
        (Some(other), _) => problems.one_of(
            &format!("{key}.server_side_encryption"),
            other,
            &["AES256", "aws:kms"],
            |_| None,
        ),
    }
}
