//! Multipart uploads that never leave anything behind.
//!
//! An upload is started, fed parts one at a time and completed with
//! `If-None-Match: *`, so the object appears whole at completion or not at
//! all, and never replaces an existing one. On any failure the upload is
//! aborted before the error is returned; an upload dropped half-way (its
//! future cancelled) is aborted in the background.
//!
//! Parts are fed as [`Bytes`], so a streaming body can replace today's
//! in-memory payload without changing this module: it only has to produce
//! chunks of at least 5 MiB (all but the last).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::error::{classify, to_error, Class, Target};
use crate::error::Error;
use crate::key::ObjectKey;
use crate::store::PutOutcome;

/// S3 accepts at most this many parts in one upload.
pub(crate) const MAX_PARTS: usize = 10_000;

/// An open multipart upload.
#[derive(Debug)]
pub(crate) struct MultipartUpload {
    client: Client,
    bucket: String,
    key: ObjectKey,
    upload_id: String,
    /// Whether parts carry CRC32 checksums, chosen when the upload was
    /// created: S3 then requires each part's checksum at completion.
    crc32: bool,
    parts: Vec<CompletedPart>,
    /// Set once the upload is completed or aborted, so `Drop` leaves it.
    closed: bool,
}

impl MultipartUpload {
    /// Starts an upload with `create`, a CreateMultipartUpload request
    /// already carrying the bucket, key and object settings. `crc32` says
    /// whether parts carry CRC32 checksums (then `create` asks for it).
    pub(crate) async fn start(
        create: CreateMultipartUploadFluentBuilder,
        client: Client,
        bucket: &str,
        key: &ObjectKey,
        crc32: bool,
    ) -> Result<Self, Error> {
        let target = Target { bucket, key: Some(key) };
        let created = create
            .set_checksum_algorithm(crc32.then_some(ChecksumAlgorithm::Crc32))
            .send()
            .await
            .map_err(|err| to_error("CreateMultipartUpload", target, err))?;
        let Some(upload_id) = created.upload_id else {
            return Err(Error::Transient {
                location: format!("s3://{bucket}/{key}"),
                source: "CreateMultipartUpload returned no upload id".into(),
            });
        };
        tracing::info!(key = %key, upload_id = %upload_id, "multipart upload started");
        Ok(Self {
            client,
            bucket: bucket.to_owned(),
            key: key.clone(),
            upload_id,
            crc32,
            parts: Vec::new(),
            closed: false,
        })
    }

    fn target(&self) -> Target<'_> {
        Target {
            bucket: &self.bucket,
            key: Some(&self.key),
        }
    }

    /// Uploads the next part. On failure the upload is aborted.
    pub(crate) async fn upload_part(&mut self, chunk: Bytes) -> Result<(), Error> {
        let number = i32::try_from(self.parts.len() + 1).expect("at most 10,000 parts");
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.key.as_str())
            .upload_id(&self.upload_id)
            .part_number(number)
            .set_checksum_algorithm(self.crc32.then_some(ChecksumAlgorithm::Crc32))
            // `Bytes` is reference-counted: no copy of the payload.
            .body(ByteStream::from(chunk))
            .send()
            .await;
        match sent {
            Ok(output) => {
                self.parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(output.e_tag)
                        .set_checksum_crc32(output.checksum_crc32)
                        .build(),
                );
                Ok(())
            }
            Err(err) => {
                let err = to_error("UploadPart", self.target(), err);
                self.abort().await;
                Err(err)
            }
        }
    }

    /// Completes the upload, create-only. A 412 means the key was taken
    /// meanwhile (by an earlier attempt): the upload is aborted and the
    /// object left as it is. On any failure the upload is aborted.
    pub(crate) async fn complete(mut self) -> Result<PutOutcome, Error> {
        let parts = std::mem::take(&mut self.parts);
        let sent = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key.as_str())
            .upload_id(&self.upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        match sent {
            Ok(_) => {
                self.closed = true;
                Ok(PutOutcome::Created)
            }
            Err(err) if classify(&err) == Class::AlreadyExists => {
                // The parts are still stored (and billed) after a 412.
                self.abort().await;
                Ok(PutOutcome::AlreadyExisted)
            }
            Err(err) => {
                let err = to_error("CompleteMultipartUpload", self.target(), err);
                self.abort().await;
                Err(err)
            }
        }
    }

    /// Aborts the upload, deleting its parts. A failure to abort is logged,
    /// not returned: the caller reports the error that made it abort. The
    /// SDK's own retries cover a passing failure; a bucket lifecycle rule
    /// (AbortIncompleteMultipartUpload) is the backstop for the rest.
    pub(crate) async fn abort(&mut self) {
        self.closed = true;
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key.as_str())
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(err) = aborted {
            if err.code() == Some("NoSuchUpload") {
                // Already gone: completed by an earlier attempt of the same
                // request, or aborted before. Nothing is left behind.
                tracing::debug!(upload_id = %self.upload_id, "multipart upload already gone");
                return;
            }
            let err = to_error("AbortMultipartUpload", self.target(), err);
            tracing::warn!(upload_id = %self.upload_id, "could not abort a multipart upload: {err}");
        }
    }
}

impl Drop for MultipartUpload {
    /// An upload whose future was dropped mid-way (a cancelled put) is
    /// aborted in the background, if a runtime is still there to run it.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(upload_id = %self.upload_id, key = %self.key, "multipart upload left open: no runtime to abort it");
            return;
        };
        let mut upload = MultipartUpload {
            client: self.client.clone(),
            bucket: std::mem::take(&mut self.bucket),
            key: self.key.clone(),
            upload_id: std::mem::take(&mut self.upload_id),
            crc32: self.crc32,
            parts: Vec::new(),
            closed: true,
        };
        runtime.spawn(async move { upload.abort().await });
    }
}

/// Splits `payload` into parts of `part_size` bytes (the last may be
/// shorter), growing the part size if needed to stay within S3's 10,000
/// parts. Each part shares the payload's memory.
pub(crate) fn split(payload: &Bytes, part_size: usize) -> impl Iterator<Item = Bytes> + '_ {
    let part_size = part_size.max(payload.len().div_ceil(MAX_PARTS)).max(1);
    (0..payload.len())
        .step_by(part_size)
        .map(move |start| payload.slice(start..payload.len().min(start + part_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_payload_without_copying() {
        let payload = Bytes::from(vec![7u8; 12]);
        let parts: Vec<_> = split(&payload, 5).collect();
        assert_eq!(parts.iter().map(Bytes::len).collect::<Vec<_>>(), [5, 5, 2]);
        assert_eq!(parts[1].as_ptr(), payload[5..].as_ptr());
        let many = Bytes::from(vec![0u8; MAX_PARTS * 3 + 1]);
        assert!(split(&many, 1).count() <= MAX_PARTS);
        assert_eq!(split(&many, 1).map(|p| p.len()).sum::<usize>(), many.len());
        assert_eq!(split(&Bytes::new(), 5).count(), 0);
    }
}
