//! The behaviour every [`ObjectStore`] must show, as checks each store's
//! tests run.
//!
//! The pipeline relies on these properties, whatever the store: create-only
//! puts make retries and restarts idempotent (a key written once is never
//! replaced, and a second write says [`PutOutcome::AlreadyExisted`]);
//! `put_stream` stores exactly what `put` would; `exists` settles the
//! intents of a run that stopped half-way, so it must say whether an
//! *object* is there; a payload that fails half-way leaves nothing behind;
//! `clean_up` never touches a written object. Each check panics with the
//! store's description, the check and the key.
//!
//! The pipeline reads back only its own table schema objects (`get`), so
//! each check also takes a [`ReadBack`]: how the test sees what was
//! stored, by its own means (files, the test's own S3 client). And a prefix, fresh for the
//! run, so that runs on a shared bucket do not meet.
//!
//! A new store runs [`run_all`] in its tests. Errors that only one backend
//! can produce (a read-only directory, a 503) are tested by that backend.
//!
//! Always compiled, not behind `cfg(test)`: the S3 suite in `tests/` is
//! another crate and cannot see test-only items, it needs no test-only
//! crate, and the binary's linker drops it.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Error;
use crate::key::{ObjectKey, MAX_KEY_BYTES};
use crate::store::{Chunks, ObjectStore, Payload, PutOptions, PutOutcome};

/// How a test reads back what a store wrote, by its own means.
#[async_trait]
pub trait ReadBack: Send + Sync {
    /// The bytes of the object `key`, or `None` if there is no object.
    async fn read(&self, key: &ObjectKey) -> Option<Bytes>;

    /// The headers the object `key` was stored with, or `None` where the
    /// store keeps none (a local directory).
    async fn headers(&self, _key: &ObjectKey) -> Option<Headers> {
        None
    }
}

/// The headers of a stored object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// A payload of the given chunks, sent one by one; a chunk may be an error,
/// which is how a payload fails half-way.
#[derive(Clone, Debug)]
pub struct Chunked {
    chunks: Vec<Result<Bytes, String>>,
}

impl Chunked {
    pub fn new<B: Into<Bytes>>(chunks: impl IntoIterator<Item = B>) -> Self {
        Self {
            chunks: chunks.into_iter().map(|chunk| Ok(chunk.into())).collect(),
        }
    }

    /// Fails with `message` after the chunks so far.
    pub fn then_fail(mut self, message: &str) -> Self {
        self.chunks.push(Err(message.to_owned()));
        self
    }

    /// The whole payload, as `put` would take it (the chunks before any failure).
    pub fn whole(&self) -> Bytes {
        let chunks = self.chunks.iter().map_while(|chunk| chunk.as_ref().ok());
        chunks.flat_map(|chunk| chunk.iter().copied()).collect()
    }
}

impl Payload for Chunked {
    fn open(&self) -> Chunks {
        let (sender, receiver) = tokio::sync::mpsc::channel(self.chunks.len().max(1));
        for chunk in &self.chunks {
            let chunk = chunk.clone().map_err(std::io::Error::other);
            sender.try_send(chunk).expect("the channel holds every chunk");
        }
        receiver
    }
}

/// Runs every check against `store`, under `prefix`.
pub async fn run_all(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    check_succeeds(store).await;
    create_only(store, read, prefix).await;
    put_stream_stores_what_put_stores(store, read, prefix).await;
    a_failed_payload_leaves_nothing(store, read, prefix).await;
    clean_up_leaves_objects_alone(store, read, prefix).await;
    headers_are_kept_or_ignored(store, read, prefix).await;
    an_empty_object_exists(store, read, prefix).await;
    keys_of_every_allowed_kind(store, read, prefix).await;
    a_prefix_is_not_an_object(store, read, prefix).await;
    concurrent_creates_make_one_object(store, read, prefix).await;
    get_gives_what_was_put(store, prefix).await;
}

/// `get` gives an object's bytes, and `None` where there is no object
/// (nothing, or a prefix of other objects).
pub async fn get_gives_what_was_put(store: &dyn ObjectStore, prefix: &str) {
    let k = key(prefix, "get/dir/object.json");
    let described = store.describe();
    let missing = store.get(&k).await;
    assert!(
        matches!(missing, Ok(None)),
        "{described}: get of a missing key: {missing:?}"
    );
    store.put(&k, Bytes::from_static(b"{\"v\":1}"), &opts()).await.unwrap();
    let found = store.get(&k).await.unwrap();
    assert_eq!(found.as_deref(), Some(&b"{\"v\":1}"[..]), "{described}: get after put");
    let dir = key(prefix, "get/dir");
    let prefix_only = store.get(&dir).await;
    assert!(
        matches!(prefix_only, Ok(None)),
        "{described}: get of a prefix: {prefix_only:?}"
    );
}

/// `check` passes on a usable store.
pub async fn check_succeeds(store: &dyn ObjectStore) {
    if let Err(err) = store.check().await {
        panic!("{}: check failed on a usable store: {err}", store.describe());
    }
}

/// A second put of a key, whole or streamed, keeps the first object.
pub async fn create_only(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let k = key(prefix, "create-only/object.jsonl");
    let ctx = Context::new(store, "create_only", &k);
    ctx.assert_exists(false).await;
    ctx.assert_outcome(
        store.put(&k, Bytes::from_static(b"first\n"), &opts()).await,
        PutOutcome::Created,
    );
    ctx.assert_exists(true).await;
    ctx.assert_read(read, Some(b"first\n")).await;
    let second = store.put(&k, Bytes::from_static(b"second, longer\n"), &opts()).await;
    ctx.assert_outcome(second, PutOutcome::AlreadyExisted);
    let third = store
        .put_stream(&k, &Chunked::new([&b"thi"[..], b"rd\n"]), &opts())
        .await;
    ctx.assert_outcome(third, PutOutcome::AlreadyExisted);
    ctx.assert_read(read, Some(b"first\n")).await;
}

/// `put_stream` stores exactly the bytes `put` stores, whatever the chunks.
pub async fn put_stream_stores_what_put_stores(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let every_byte: Vec<u8> = (0..=255).collect();
    // Past S3's smallest part: a store set to upload in parts does so.
    let large: Vec<u8> = (0..6 * 1024 * 1024 + 3).map(|i: u32| (i % 251) as u8).collect();
    let payloads = [
        ("no-chunk", Chunked::new(Vec::<Bytes>::new())),
        ("one-empty-chunk", Chunked::new([Bytes::new()])),
        ("one-chunk", Chunked::new([&b"{\"a\":1}\n"[..]])),
        (
            "several-chunks",
            Chunked::new([&b"ab"[..], b"", b"c", &every_byte, b"", b"\n"].map(Bytes::copy_from_slice)),
        ),
        (
            "large",
            Chunked::new(large.chunks(1024 * 1024 - 7).map(Bytes::copy_from_slice)),
        ),
    ];
    for (name, payload) in payloads {
        let whole = key(prefix, &format!("put-stream/{name}/put"));
        let streamed = key(prefix, &format!("put-stream/{name}/streamed"));
        let ctx = Context::new(store, "put_stream_stores_what_put_stores", &streamed);
        let expected = payload.whole();
        let outcome = store.put(&whole, expected.clone(), &opts()).await;
        Context::new(store, "put_stream_stores_what_put_stores", &whole).assert_outcome(outcome, PutOutcome::Created);
        ctx.assert_outcome(
            store.put_stream(&streamed, &payload, &opts()).await,
            PutOutcome::Created,
        );
        ctx.assert_exists(true).await;
        ctx.assert_read(read, Some(&expected)).await;
        assert_eq!(
            read.read(&whole).await,
            Some(expected),
            "{}: put of {whole}",
            store.describe()
        );
    }
}

/// A payload that fails half-way is a retryable error, leaves no object,
/// and does not stand in the way of the retry; also when it fails past
/// S3's smallest part (a store set to upload in parts has started one).
pub async fn a_failed_payload_leaves_nothing(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let large = Bytes::from(vec![b'x'; 6 * 1024 * 1024]);
    let failing = [
        ("small", Chunked::new([&b"half of "[..], b"an object"])),
        ("large", Chunked::new([large.clone(), large])),
    ];
    for (name, payload) in failing {
        let k = key(prefix, &format!("failed-payload/{name}.jsonl"));
        let ctx = Context::new(store, "a_failed_payload_leaves_nothing", &k);
        match store
            .put_stream(&k, &payload.then_fail("the encoder ran out of memory"), &opts())
            .await
        {
            Err(err) if err.is_retryable() => {}
            other => ctx.fail(format!("a failing payload gave {other:?}, not a retryable error")),
        }
        ctx.assert_exists(false).await;
        ctx.assert_read(read, None).await;
        ctx.assert_ok(store.clean_up(&k).await);
        let retry = Chunked::new([&b"whole "[..], b"object"]);
        ctx.assert_outcome(store.put_stream(&k, &retry, &opts()).await, PutOutcome::Created);
        ctx.assert_read(read, Some(b"whole object")).await;
    }
}

/// `clean_up` with nothing pending is fine, and leaves an object as it is.
pub async fn clean_up_leaves_objects_alone(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let k = key(prefix, "clean-up/object.jsonl");
    let ctx = Context::new(store, "clean_up_leaves_objects_alone", &k);
    ctx.assert_ok(store.clean_up(&k).await);
    ctx.assert_outcome(
        store.put(&k, Bytes::from_static(b"kept"), &opts()).await,
        PutOutcome::Created,
    );
    ctx.assert_ok(store.clean_up(&k).await);
    ctx.assert_exists(true).await;
    ctx.assert_read(read, Some(b"kept")).await;
}

/// Content type and encoding are accepted; a store that keeps headers
/// keeps exactly those given, and none when none is given.
pub async fn headers_are_kept_or_ignored(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let given = PutOptions {
        content_type: Some("application/x-ndjson"),
        content_encoding: Some("gzip"),
    };
    let cases = [
        ("headers/put", &given, false),
        ("headers/streamed", &given, true),
        ("headers/none", &PutOptions::default(), false),
    ];
    for (name, options, streamed) in cases {
        let k = key(prefix, name);
        let ctx = Context::new(store, "headers_are_kept_or_ignored", &k);
        let outcome = if streamed {
            store.put_stream(&k, &Chunked::new([&b"x"[..]]), options).await
        } else {
            store.put(&k, Bytes::from_static(b"x"), options).await
        };
        ctx.assert_outcome(outcome, PutOutcome::Created);
        ctx.assert_read(read, Some(b"x")).await;
        if let Some(headers) = read.headers(&k).await {
            let expected = Headers {
                content_type: options.content_type.map(str::to_owned),
                content_encoding: options.content_encoding.map(str::to_owned),
            };
            // S3 gives every object a content type; only a given one is checked.
            let content_type = options.content_type.and(headers.content_type);
            let stored = Headers {
                content_type,
                ..headers
            };
            assert_eq!(stored, expected, "{}: headers of {k}", store.describe());
        }
    }
}

/// An empty object is an object: it exists and reads back empty.
pub async fn an_empty_object_exists(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let k = key(prefix, "empty/object.jsonl");
    let ctx = Context::new(store, "an_empty_object_exists", &k);
    ctx.assert_outcome(store.put(&k, Bytes::new(), &opts()).await, PutOutcome::Created);
    ctx.assert_exists(true).await;
    ctx.assert_read(read, Some(b"")).await;
    ctx.assert_outcome(
        store.put(&k, Bytes::from_static(b"not empty"), &opts()).await,
        PutOutcome::AlreadyExisted,
    );
    ctx.assert_read(read, Some(b"")).await;
}

/// Every kind of character an [`ObjectKey`] allows, and the longest key.
pub async fn keys_of_every_allowed_kind(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let mut names: Vec<String> = [
        "plain-name_1.jsonl.gz",
        "spaces and  double spaces",
        "punctuation !$&'()*+,;=@~",
        "query?and#fragment%20percent",
        "colon:bracket[]{}<>|^`\"",
        "unicode/é/日本語/🚀",
        ".hidden/..dots../a..b",
        "nested/.spillway-tmp/not-reserved-below-the-top",
        "UPPER/lower/MiXeD",
    ]
    .map(str::to_owned)
    .into();
    // The longest key: segments of 200 bytes, as a file system takes them.
    let room = MAX_KEY_BYTES - prefix.len() - "/keys/".len();
    let mut longest = String::new();
    while longest.len() < room {
        if !longest.is_empty() {
            longest.push('/');
        }
        let left = room - longest.len();
        // Never leave room for a '/' alone: a key cannot end with one.
        let segment = if left > 200 && left - 200 == 1 {
            199
        } else {
            left.min(200)
        };
        longest.push_str(&"k".repeat(segment));
    }
    names.push(longest);
    for name in names {
        let k = key(prefix, &format!("keys/{name}"));
        let ctx = Context::new(store, "keys_of_every_allowed_kind", &k);
        ctx.assert_exists(false).await;
        ctx.assert_outcome(
            store.put(&k, Bytes::from(name.clone()), &opts()).await,
            PutOutcome::Created,
        );
        ctx.assert_exists(true).await;
        ctx.assert_read(read, Some(name.as_bytes())).await;
    }
}

/// A key that is a prefix of other keys (a "directory"), or that continues
/// an object's key, names no object: `exists` is false, and a put either
/// creates it or fails for good. It never says the object existed, which
/// would count records as delivered that are nowhere.
pub async fn a_prefix_is_not_an_object(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let object = key(prefix, "prefix/dir/object");
    let ctx = Context::new(store, "a_prefix_is_not_an_object", &object);
    ctx.assert_outcome(
        store.put(&object, Bytes::from_static(b"o"), &opts()).await,
        PutOutcome::Created,
    );
    for other in [key(prefix, "prefix/dir"), key(prefix, "prefix/dir/object/below")] {
        let ctx = Context::new(store, "a_prefix_is_not_an_object", &other);
        ctx.assert_exists(false).await;
        match store.put(&other, Bytes::from_static(b"p"), &opts()).await {
            Ok(PutOutcome::Created) => ctx.assert_read(read, Some(b"p")).await,
            Err(err) if !err.is_retryable() => ctx.assert_exists(false).await,
            other => ctx.fail(format!("put gave {other:?}, not Created or a permanent error")),
        }
    }
    ctx.assert_read(read, Some(b"o")).await;
}

/// Puts of one key at the same time make one object, whole: one put
/// creates it, the others find it or fail with a retryable error.
pub async fn concurrent_creates_make_one_object(store: &dyn ObjectStore, read: &dyn ReadBack, prefix: &str) {
    let k = key(prefix, "concurrent/object.jsonl");
    let ctx = Context::new(store, "concurrent_creates_make_one_object", &k);
    let payload = |i: u8| Bytes::from(vec![b'0' + i; 1000 + usize::from(i)]);
    let options = PutOptions::default();
    let put = |i| store.put(&k, payload(i), &options);
    let (a, b, c, d) = tokio::join!(put(0), put(1), put(2), put(3));
    let mut created = Vec::new();
    for (i, outcome) in [a, b, c, d].into_iter().enumerate() {
        match outcome {
            Ok(PutOutcome::Created) => created.push(i as u8),
            Ok(PutOutcome::AlreadyExisted) => {}
            Err(err) if err.is_retryable() => {}
            Err(err) => ctx.fail(format!("a concurrent put failed for good: {err}")),
        }
    }
    match created[..] {
        [winner] => ctx.assert_read(read, Some(&payload(winner))).await,
        _ => ctx.fail(format!("puts {created:?} each said they created the object")),
    }
}

/// The check, store and key a failure is reported with.
struct Context<'a> {
    store: &'a dyn ObjectStore,
    check: &'static str,
    key: &'a ObjectKey,
}

impl<'a> Context<'a> {
    fn new(store: &'a dyn ObjectStore, check: &'static str, key: &'a ObjectKey) -> Self {
        Self { store, check, key }
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{}: {}: {}: {what}", self.store.describe(), self.check, self.key)
    }

    fn assert_ok<T: Debug>(&self, result: Result<T, Error>) -> T {
        result.unwrap_or_else(|err| self.fail(format!("failed: {err}")))
    }

    fn assert_outcome(&self, result: Result<PutOutcome, Error>, expected: PutOutcome) {
        let outcome = self.assert_ok(result);
        if outcome != expected {
            self.fail(format!("put gave {outcome:?}, expected {expected:?}"));
        }
    }

    async fn assert_exists(&self, expected: bool) {
        let found = self.assert_ok(self.store.exists(self.key).await);
        if found != expected {
            self.fail(format!("exists gave {found}, expected {expected}"));
        }
    }

    async fn assert_read(&self, read: &dyn ReadBack, expected: Option<&[u8]>) {
        let found = read.read(self.key).await;
        if found.as_deref() != expected {
            let show = |b: Option<&[u8]>| {
                b.map(|b| format!("{} bytes {:?}", b.len(), Bytes::copy_from_slice(&b[..b.len().min(64)])))
            };
            self.fail(format!(
                "read back {:?}, expected {:?}",
                show(found.as_deref()),
                show(expected)
            ));
        }
    }
}

fn key(prefix: &str, name: &str) -> ObjectKey {
    ObjectKey::new(format!("{prefix}/{name}")).unwrap_or_else(|err| panic!("conformance key: {err}"))
}

fn opts() -> PutOptions {
    PutOptions::default()
}
