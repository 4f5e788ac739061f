//! The destination abstraction: a create-only object store.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Error;
use crate::key::ObjectKey;

/// How to store an object.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    pub content_type: Option<&'static str>,
    pub content_encoding: Option<&'static str>,
}

/// What a successful put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written by this call.
    Created,
    /// An object with this key existed already: an earlier attempt wrote it.
    /// Keys are deterministic, so it counts as delivered.
    AlreadyExisted,
}

/// The chunks of a payload made piece by piece, in order.
pub type Chunks = tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>;

/// A payload produced piece by piece (an object encoded while it is sent),
/// so that a large object is never whole in memory.
pub trait Payload: Send + Sync + Debug {
    /// Starts producing the payload from its beginning. A put that is tried
    /// again opens it again.
    fn open(&self) -> Chunks;
}

/// Collects a payload's chunks into one buffer.
pub async fn collect(mut chunks: Chunks, key: &ObjectKey) -> Result<Bytes, Error> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = chunks.recv().await {
        body.extend_from_slice(&chunk.map_err(|err| encoding_failed(key, err))?);
    }
    Ok(body.freeze())
}

/// A payload that could not be produced. Encoding records in memory fails
/// only when something passing goes wrong (memory), so it is transient.
pub fn encoding_failed(key: &ObjectKey, err: std::io::Error) -> Error {
    Error::Transient {
        location: key.to_string(),
        source: Box::new(err),
    }
}

/// A place objects are written to, once each.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Creates the object `key` holding `payload`.
    ///
    /// Either the whole payload becomes visible under `key`, or nothing
    /// does: no reader ever observes a partial object. Never overwrites: if
    /// `key` exists, returns [`PutOutcome::AlreadyExisted`] and leaves it as
    /// it is.
    async fn put(&self, key: &ObjectKey, payload: Bytes, options: &PutOptions) -> Result<PutOutcome, Error>;

    /// Creates the object `key` from a payload produced while it is sent,
    /// with the same guarantees as [`ObjectStore::put`]. The default
    /// collects the payload and puts it whole; stores that can send it in
    /// pieces (S3 multipart uploads) override it.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        payload: &dyn Payload,
        options: &PutOptions,
    ) -> Result<PutOutcome, Error> {
        let body = collect(payload.open(), key).await?;
        self.put(key, body, options).await
    }

    /// Cleans up what a writer of `key` killed half-way may have left behind
    /// (an S3 multipart upload that was never completed nor aborted).
    /// Called at start for each object that was pending when the last run
    /// stopped. The default has nothing to clean.
    async fn clean_up(&self, _key: &ObjectKey) -> Result<(), Error> {
        Ok(())
    }

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error>;

    /// The bytes of the object `key`, or `None` if there is no object
    /// there. The pipeline reads back only small objects it wrote itself
    /// (the table schema versions, at start), never data.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, Error>;

    /// Checks at start-up that objects can be written, so that permanent
    /// problems are reported in one line before any record is read.
    async fn check(&self) -> Result<(), Error>;

    /// A description for logs: where objects go, never a secret.
    fn describe(&self) -> String;

    /// Whether a put writes on this machine (a directory) rather than
    /// sending requests to a service. A local put of a streamed object
    /// goes as fast as it is encoded: it waits on no round trip. The
    /// default is a service.
    fn is_local(&self) -> bool {
        false
    }
}
