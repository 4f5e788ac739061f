//! The S3 destination: objects in an S3 bucket (or an S3-compatible store).
//!
//! Every write is create-only and atomic, as [`ObjectStore`] requires:
//! - a payload below [`S3Options::multipart_threshold`] is one PutObject
//!   with `If-None-Match: *`;
//! - a larger one is a multipart upload (`multipart.rs`) completed with
//!   `If-None-Match: *`; S3 shows the object only once it is complete, and
//!   an upload that fails for any reason is aborted, never left behind.
//!
//! A 412 Precondition Failed means the key exists (an earlier attempt wrote
//! it): that is [`PutOutcome::AlreadyExisted`], and the object is left as
//! it is. A 409 ConditionalRequestConflict (a concurrent write of the same
//! key was in flight) is transient: S3 says to retry, and the retry then
//! finds the object (412) or creates it.
//!
//! Errors are mapped to [`Error`] in one place (`error.rs`). The store never
//! retries on its own beyond the SDK's standard retries: the caller does,
//! with [`crate::retry::RetryPolicy`].
//!
//! Permissions needed: `s3:PutObject` (and `s3:PutObjectTagging` with
//! tags), `s3:AbortMultipartUpload`, `s3:GetObject` and `s3:ListBucket`
//! (without it S3 answers 403, not 404, for a missing key, so `exists`
//! fails). The start-up check starts and aborts a multipart upload under
//! `.spillway-probe/`: no object is written there.

mod config;
mod error;
mod multipart;
mod options;

pub use self::config::S3Settings;
pub use self::options::{
    S3Options, Sse, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, MIN_PART_SIZE,
};

use std::fmt;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use rand::distr::{Alphanumeric, SampleString};

use self::error::{classify, to_error, Class, Target};
use self::multipart::MultipartUpload;
use self::options::encode_tags;
use crate::error::Error;
use crate::key::ObjectKey;
use crate::store::{encoding_failed, ObjectStore, Payload, PutOptions, PutOutcome};

/// Applies [`ObjectSettings`] to a PutObject or CreateMultipartUpload
/// request (two builder types with the same setters).
macro_rules! with_settings {
    ($request:expr, $settings:expr) => {{
        let s: ObjectSettings = $settings;
        $request
            .set_content_type(s.content_type)
            .set_content_encoding(s.content_encoding)
            .set_server_side_encryption(s.sse)
            .set_ssekms_key_id(s.kms_key_id)
            .set_storage_class(s.storage_class)
            .set_tagging(s.tagging)
    }};
}

/// The headers an object is written with, whichever way it is written.
struct ObjectSettings {
    content_type: Option<String>,
    content_encoding: Option<String>,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
    tagging: Option<String>,
}

/// Objects in an S3 bucket, written create-only.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    options: S3Options,
    /// `options.tags` encoded once for `x-amz-tagging`.
    tagging: Option<String>,
}

impl S3Store {
    /// Builds a client from the standard AWS configuration chain
    /// (environment, profile, instance or container credentials), with the
    /// region, endpoint, path style and checksum mode of `options`.
    ///
    /// Fails with [`Error::Misconfigured`] if no region can be found.
    /// Nothing is sent: [`ObjectStore::check`] tests the bucket.
    pub async fn new(options: S3Options) -> Result<Self, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(Error::Misconfigured {
                location: format!("s3://{}", options.bucket),
                reason: "no AWS region: set the destination's region or AWS_REGION".into(),
            });
        }
        // Keep the chain's timeouts (its connect timeout) and add ours.
        let timeouts = shared
            .timeout_config()
            .map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder)
            .operation_attempt_timeout(options.attempt_timeout)
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.force_path_style)
            .timeout_config(timeouts);
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        if options.checksum_when_required {
            config = config
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(Self::with_client(Client::from_conf(config.build()), options))
    }

    /// Uses an existing client (for tests, or a client configured by
    /// other means). The client's own region, endpoint, path style,
    /// checksum and timeout settings apply; those of `options` are ignored.
    pub fn with_client(client: Client, options: S3Options) -> Self {
        let tagging = encode_tags(&options.tags);
        Self {
            client,
            options,
            tagging,
        }
    }

    /// The client, for readers of the same bucket (the archive source),
    /// configured as the store's.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket objects go to.
    pub fn bucket(&self) -> &str {
        &self.options.bucket
    }

    fn target<'a>(&'a self, key: &'a ObjectKey) -> Target<'a> {
        Target {
            bucket: &self.options.bucket,
            key: Some(key),
        }
    }

    /// The settings every written object carries.
    fn settings(&self, options: &PutOptions) -> ObjectSettings {
        let (sse, kms_key_id) = match &self.options.server_side_encryption {
            None => (None, None),
            Some(Sse::S3) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        };
        ObjectSettings {
            content_type: options.content_type.map(str::to_owned),
            content_encoding: options.content_encoding.map(str::to_owned),
            sse,
            kms_key_id,
            storage_class: self.options.storage_class.as_deref().map(StorageClass::from),
            tagging: self.tagging.clone(),
        }
    }

    /// One PutObject, create-only.
    async fn put_single(&self, key: &ObjectKey, payload: Bytes, settings: ObjectSettings) -> Result<PutOutcome, Error> {
        let request = self.client.put_object();
        let sent = with_settings!(request, settings)
            .bucket(&self.options.bucket)
            .key(key.as_str())
            .if_none_match("*")
            .body(ByteStream::from(payload))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(PutOutcome::Created),
            Err(err) if classify(&err) == Class::AlreadyExists => Ok(PutOutcome::AlreadyExisted),
            Err(err) => Err(to_error("PutObject", self.target(key), err)),
        }
    }

    /// A multipart upload, create-only; aborted on any failure.
    async fn put_multipart(
        &self,
        key: &ObjectKey,
        payload: Bytes,
        settings: ObjectSettings,
    ) -> Result<PutOutcome, Error> {
        let request = self.client.create_multipart_upload();
        let create = with_settings!(request, settings)
            .bucket(&self.options.bucket)
            .key(key.as_str());
        // CRC32 part checksums, unless the store wants checksums only where
        // required: S3 then needs each part's checksum at completion.
        let crc32 = !self.options.checksum_when_required;
        let mut upload = MultipartUpload::start(create, self.client.clone(), &self.options.bucket, key, crc32).await?;
        // Today's payload is in memory; a streaming body would feed its
        // chunks here the same way.
        for part in multipart::split(&payload, self.options.part_size) {
            upload.upload_part(part).await?;
        }
        upload.complete().await
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    /// Creates `key`: PutObject below the multipart threshold, a multipart
    /// upload at or above it; both create-only, so an existing object is
    /// never replaced and a partial one never visible.
    async fn put(&self, key: &ObjectKey, payload: Bytes, options: &PutOptions) -> Result<PutOutcome, Error> {
        let settings = self.settings(options);
        // An empty payload has no part to upload: always a PutObject.
        if payload.len() >= self.options.multipart_threshold.max(1) {
            self.put_multipart(key, payload, settings).await
        } else {
            self.put_single(key, payload, settings).await
        }
    }

    /// Sends the payload as it is produced: below the multipart threshold
    /// it is collected and sent with PutObject; once it reaches the
    /// threshold a multipart upload starts and each part is sent as soon as
    /// it is full, so memory holds about one part, whatever the object's
    /// size.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        payload: &dyn Payload,
        options: &PutOptions,
    ) -> Result<PutOutcome, Error> {
        let settings = self.settings(options);
        let threshold = self.options.multipart_threshold.max(1);
        let part_size = self.options.part_size.max(MIN_PART_SIZE);
        let mut chunks = payload.open();
        let mut pending = BytesMut::new();
        let mut upload: Option<MultipartUpload> = None;
        let mut settings = Some(settings);
        while let Some(chunk) = chunks.recv().await {
            pending.extend_from_slice(&chunk.map_err(|err| encoding_failed(key, err))?);
            if upload.is_none() && pending.len() >= threshold {
                let request = self.client.create_multipart_upload();
                let create = with_settings!(request, settings.take().expect("settings are used once"))
                    .bucket(&self.options.bucket)
                    .key(key.as_str());
                let crc32 = !self.options.checksum_when_required;
                upload =
                    Some(MultipartUpload::start(create, self.client.clone(), &self.options.bucket, key, crc32).await?);
            }
            if let Some(upload) = upload.as_mut() {
                while pending.len() >= part_size {
                    upload.upload_part(pending.split_to(part_size).freeze()).await?;
                }
            }
        }
        match upload {
            None => {
                self.put_single(key, pending.freeze(), settings.take().expect("settings are used once"))
                    .await
            }
            Some(mut upload) => {
                if !pending.is_empty() {
                    upload.upload_part(pending.freeze()).await?;
                }
                upload.complete().await
            }
        }
    }

    /// Aborts the multipart uploads of exactly `key` that are still open: a
    /// run killed during an upload leaves one (needs
    /// `s3:ListBucketMultipartUploads`).
    async fn clean_up(&self, key: &ObjectKey) -> Result<(), Error> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.options.bucket)
            .prefix(key.as_str())
            .send()
            .await
            .map_err(|err| to_error("ListMultipartUploads", self.target(key), err))?;
        for upload in listed.uploads() {
            let (Some(found), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if found != key.as_str() {
                continue;
            }
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.options.bucket)
                .key(found)
                .upload_id(upload_id)
                .send()
                .await;
            match aborted {
                Ok(_) => {
                    tracing::info!(key = %key, upload_id, "aborted a multipart upload left open by an earlier run")
                }
                // Aborted since it was listed (a failed put's own abort, a
                // lifecycle rule): gone, which is what clean-up is for.
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_upload()) => {}
                Err(err) => return Err(to_error("AbortMultipartUpload", self.target(key), err)),
            }
        }
        Ok(())
    }

    /// HeadObject: a 404 is `false`. A 404 cannot tell a missing object from
    /// a missing bucket (HEAD responses have no body); [`Self::check`] tests
    /// the bucket at start.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error> {
        let sent = self
            .client
            .head_object()
            .bucket(&self.options.bucket)
            .key(key.as_str())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err) if classify(&err) == Class::NotFound => Ok(false),
            Err(err) => Err(to_error("HeadObject", self.target(key), err)),
        }
    }

    /// Starts a multipart upload under `.spillway-probe/` with the same
    /// settings as real objects (encryption, storage class, tags), then
    /// aborts it, so a missing bucket, a refused credential or a bad KMS
    /// key is reported in one line at start. No object is ever created:
    /// nothing is left behind, not even an old version in a versioned
    /// bucket, and no DeleteObject permission is needed.
    async fn check(&self) -> Result<(), Error> {
        let name = Alphanumeric.sample_string(&mut rand::rng(), 16).to_lowercase();
        // Problems are the bucket's, whatever the probe's key.
        let bucket = Target {
            bucket: &self.options.bucket,
            key: None,
        };
        let key = ObjectKey::new(format!(".spillway-probe/{name}")).expect("the probe key is a valid key");
        let settings = self.settings(&PutOptions {
            content_type: Some("text/plain"),
            content_encoding: None,
        });
        let request = self.client.create_multipart_upload();
        let created = with_settings!(request, settings)
            .bucket(&self.options.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|err| to_error("CreateMultipartUpload", bucket, err))?;
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.options.bucket)
            .key(key.as_str())
            .set_upload_id(created.upload_id)
            .send()
            .await;
        if let Err(err) = aborted {
            // Not a reason to refuse to start: the upload holds no data.
            let err = to_error("AbortMultipartUpload", bucket, err);
            tracing::warn!("could not abort the start-up probe's multipart upload: {err}");
        }
        Ok(())
    }

    /// `s3://bucket`, plus the endpoint when one is set (without any user
    /// information it might carry).
    fn describe(&self) -> String {
        match &self.options.endpoint {
            Some(endpoint) => format!(
                "s3://{} at {}",
                self.options.bucket,
                crate::redact::url_for_logs(endpoint)
            ),
            None => format!("s3://{}", self.options.bucket),
        }
    }
}

impl fmt::Debug for S3Store {
    /// The description only: the client's configuration holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.describe())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hide_user_information() {
        let options = S3Options {
            endpoint: Some("http://key:secret@host:9000".into()),
            ..S3Options::new("archive")
        };
        let client = Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let store = S3Store::with_client(client, options);
        assert_eq!(store.describe(), "s3://archive at http://host:9000");
        assert!(!format!("{store:?}").contains("secret"));
        assert_eq!(
            S3Store::with_client(store.client.clone(), S3Options::new("b")).describe(),
            "s3://b"
        );
    }
}
