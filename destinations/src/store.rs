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

    /// Cleans up what a writer of `key` killed half-way may have left behind
    /// (an S3 multipart upload that was never completed nor aborted).
    /// Called at start for each object that was pending when the last run
    /// stopped. The default has nothing to clean.
    async fn clean_up(&self, _key: &ObjectKey) -> Result<(), Error> {
        Ok(())
    }

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error>;

    /// Checks at start-up that objects can be written, so that permanent
    /// problems are reported in one line before any record is read.
    async fn check(&self) -> Result<(), Error>;

    /// A description for logs: where objects go, never a secret.
    fn describe(&self) -> String;
}
