//! An object store in memory, for tests.
//!
//! The pipeline's tests need a destination that is fast, that a test can
//! look into (which keys were written, with which bytes and headers, which
//! operations were called), and that fails on demand with any [`Error`]
//! kind: the error paths a real store produces only by accident. It keeps
//! the create-only contract of [`ObjectStore`] exactly, and runs the same
//! conformance suite as the real stores ([`crate::conformance`]), so what a
//! test shows against it holds against them.
//!
//! Clones share their objects: a test keeps one handle and gives another
//! to the code under test. Nothing is ever written anywhere else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::conformance::{Headers, ReadBack};
use crate::error::Error;
use crate::key::ObjectKey;
use crate::store::{ObjectStore, PutOptions, PutOutcome};

/// Objects in a map, written create-only; clones share the map.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<ObjectKey, StoredObject>,
    /// Failures to give, per operation, before that operation works again.
    faults: HashMap<Operation, VecDeque<Failure>>,
    calls: Vec<Call>,
}

/// An object as the memory store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Bytes,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// An operation of [`ObjectStore`], as failures are injected into and
/// calls are recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `put`, and `put_stream` once its payload is produced.
    Put,
    Exists,
    Get,
    CleanUp,
    Check,
}

/// One call the store received, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub operation: Operation,
    /// The object's key (`None` for [`Operation::Check`]).
    pub key: Option<ObjectKey>,
}

/// The kind of [`Error`] an injected failure returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// [`Error::Transient`]: retryable.
    Transient,
    /// [`Error::PermissionDenied`]: permanent.
    PermissionDenied,
    /// [`Error::Misconfigured`]: permanent.
    Misconfigured,
    /// [`Error::TooLarge`]: permanent; for puts only.
    TooLarge,
}

impl Failure {
    fn to_error(self, key: Option<&ObjectKey>) -> Error {
        let location = key.map_or_else(|| "memory".to_owned(), ObjectKey::to_string);
        let source = Box::new(io::Error::other("failure injected by the memory store"));
        match self {
            Failure::Transient => Error::Transient { location, source },
            Failure::PermissionDenied => Error::PermissionDenied { location, source },
            Failure::Misconfigured => Error::Misconfigured {
                location,
                reason: source.to_string(),
            },
            Failure::TooLarge => Error::TooLarge {
                key: key.expect("TooLarge is injected into puts only").clone(),
                reason: source.to_string(),
            },
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the store from the others.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the next `times` calls of `operation` fail with `failure`
    /// (after the failures already queued for it), each before it has any
    /// effect. Then the operation works again.
    ///
    /// # Panics
    /// If `failure` is [`Failure::TooLarge`] and `operation` is not a put.
    pub fn fail_next(&self, operation: Operation, times: usize, failure: Failure) {
        assert!(
            failure != Failure::TooLarge || operation == Operation::Put,
            "TooLarge is a put's failure, not {operation:?}'s"
        );
        let mut state = self.state();
        let queue = state.faults.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(failure, times));
    }

    /// The keys of the objects held, in order.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.state().objects.keys().cloned().collect()
    }

    /// The bytes of the object `key`, if there is one.
    pub fn get(&self, key: &ObjectKey) -> Option<Bytes> {
        self.state().objects.get(key).map(|object| object.bytes.clone())
    }

    /// The object `key` with its headers, if there is one.
    pub fn object(&self, key: &ObjectKey) -> Option<StoredObject> {
        self.state().objects.get(key).cloned()
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.state().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state().objects.is_empty()
    }

    /// Every call received so far, failed ones included, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Records a call, then gives the failure queued for it, if any.
    fn enter(&self, operation: Operation, key: Option<&ObjectKey>) -> Result<MutexGuard<'_, State>, Error> {
        let mut state = self.state();
        state.calls.push(Call {
            operation,
            key: key.cloned(),
        });
        match state.faults.get_mut(&operation).and_then(VecDeque::pop_front) {
            Some(failure) => Err(failure.to_error(key)),
            None => Ok(state),
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &ObjectKey, payload: Bytes, options: &PutOptions) -> Result<PutOutcome, Error> {
        let mut state = self.enter(Operation::Put, Some(key))?;
        if state.objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExisted);
        }
        let object = StoredObject {
            bytes: payload,
            content_type: options.content_type.map(str::to_owned),
            content_encoding: options.content_encoding.map(str::to_owned),
        };
        state.objects.insert(key.clone(), object);
        Ok(PutOutcome::Created)
    }

    async fn clean_up(&self, key: &ObjectKey) -> Result<(), Error> {
        self.enter(Operation::CleanUp, Some(key)).map(drop)
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, Error> {
        Ok(self.enter(Operation::Exists, Some(key))?.objects.contains_key(key))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, Error> {
        Ok(self
            .enter(Operation::Get, Some(key))?
            .objects
            .get(key)
            .map(|object| object.bytes.clone()))
    }

    async fn check(&self) -> Result<(), Error> {
        self.enter(Operation::Check, None).map(drop)
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

/// The suite reads what the store holds, without going through the store's
/// operations (so without recording calls or meeting injected failures).
#[async_trait]
impl ReadBack for MemoryStore {
    async fn read(&self, key: &ObjectKey) -> Option<Bytes> {
        self.get(key)
    }

    async fn headers(&self, key: &ObjectKey) -> Option<Headers> {
        self.object(key).map(|object| Headers {
            content_type: object.content_type,
            content_encoding: object.content_encoding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let store = MemoryStore::new();
        conformance::run_all(&store, &store, "conformance").await;
    }

    #[tokio::test]
    async fn injected_failures_have_their_kind_and_then_stop() {
        let store = MemoryStore::new();
        let k = key("a/b.jsonl");
        store.fail_next(Operation::Put, 2, Failure::Transient);
        store.fail_next(Operation::Put, 1, Failure::TooLarge);
        let body = Bytes::from_static(b"x");
        let options = PutOptions::default();
        for _ in 0..2 {
            let err = store.put(&k, body.clone(), &options).await.unwrap_err();
            assert!(matches!(err, Error::Transient { .. }) && err.is_retryable(), "{err:?}");
            assert!(store.is_empty(), "a failed put stored something");
        }
        let err = store.put(&k, body.clone(), &options).await.unwrap_err();
        assert!(matches!(&err, Error::TooLarge { key, .. } if key == &k) && !err.is_retryable());
        assert_eq!(
            store.put(&k, body.clone(), &options).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(store.get(&k), Some(body));

        for (operation, failure) in [
            (Operation::Exists, Failure::PermissionDenied),
            (Operation::CleanUp, Failure::Misconfigured),
            (Operation::Check, Failure::Transient),
        ] {
            store.fail_next(operation, 1, failure);
        }
        let err = store.exists(&k).await.unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }) && !err.is_retryable());
        let err = store.clean_up(&k).await.unwrap_err();
        assert!(matches!(err, Error::Misconfigured { .. }) && !err.is_retryable());
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, Error::Transient { .. }) && err.is_retryable());
        assert!(store.exists(&k).await.unwrap());
        store.clean_up(&k).await.unwrap();
        store.check().await.unwrap();
    }

    #[tokio::test]
    async fn a_streamed_put_fails_after_its_payload_and_leaves_nothing() {
        let store = MemoryStore::new();
        let k = key("streamed");
        store.fail_next(Operation::Put, 1, Failure::PermissionDenied);
        let payload = conformance::Chunked::new([&b"ab"[..], b"cd"]);
        let err = store
            .put_stream(&k, &payload, &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert!(store.is_empty());
        let outcome = store.put_stream(&k, &payload, &PutOptions::default()).await.unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(store.get(&k).unwrap(), "abcd");
    }

    #[tokio::test]
    async fn clones_share_objects_and_calls_are_recorded_in_order() {
        let store = MemoryStore::new();
        let handle = store.clone();
        let k = key("k");
        store.check().await.unwrap();
        store.clean_up(&k).await.unwrap();
        assert!(!store.exists(&k).await.unwrap());
        let options = PutOptions {
            content_type: Some("application/x-ndjson"),
            content_encoding: Some("gzip"),
        };
        store.put(&k, Bytes::from_static(b"1"), &options).await.unwrap();
        assert_eq!(handle.keys(), std::slice::from_ref(&k));
        assert_eq!(
            handle.object(&k),
            Some(StoredObject {
                bytes: Bytes::from_static(b"1"),
                content_type: Some("application/x-ndjson".into()),
                content_encoding: Some("gzip".into()),
            })
        );
        let calls: Vec<_> = handle.calls().into_iter().map(|c| (c.operation, c.key)).collect();
        assert_eq!(
            calls,
            [
                (Operation::Check, None),
                (Operation::CleanUp, Some(k.clone())),
                (Operation::Exists, Some(k.clone())),
                (Operation::Put, Some(k.clone())),
            ]
        );
        assert_eq!(store.describe(), "memory");
    }

    #[test]
    #[should_panic(expected = "TooLarge is a put's failure")]
    fn too_large_is_refused_for_other_operations() {
        MemoryStore::new().fail_next(Operation::Exists, 1, Failure::TooLarge);
    }
}
