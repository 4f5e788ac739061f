//! The S3 store against moto's S3 server (started by `scripts/test.sh`,
//! which exports `SPILLWAY_TEST_MOTO`), and against a scripted HTTP
//! responder for the error responses moto cannot produce (503 SlowDown,
//! AccessDenied, failures in the middle of a multipart upload).

use std::error::Error as _;
use std::io;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use spillway_destinations::conformance::{self, Headers, ReadBack};
use spillway_destinations::s3::{Sse, MIN_PART_SIZE};
use spillway_destinations::{Error, ObjectKey, ObjectStore, PutOptions, PutOutcome, S3Options, S3Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Against moto
// ---------------------------------------------------------------------------

/// moto's endpoint. Missing means the tests were not started by the
/// project's script: fail, never skip silently.
fn moto() -> String {
    std::env::var("SPILLWAY_TEST_MOTO").unwrap_or_else(|_| {
        panic!(
            "SPILLWAY_TEST_MOTO is not set: run the tests with scripts/test.sh, \
             which starts moto (or `source scripts/peers.sh && peers_start` first)"
        )
    })
}

/// A client of our own, to create buckets and read back what the store wrote.
fn moto_client() -> Client {
    Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto())
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .build(),
    )
}

/// A new, empty bucket for one test.
async fn new_bucket() -> String {
    let name = format!(
        "spillway-test-{}",
        Alphanumeric.sample_string(&mut rand::rng(), 12).to_lowercase()
    );
    moto_client()
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create the test bucket in moto");
    name
}

fn moto_options(bucket: &str) -> S3Options {
    S3Options {
        region: Some("us-east-1".into()),
        endpoint: Some(moto()),
        force_path_style: true,
        ..S3Options::new(bucket)
    }
}

/// A store built the production way: the standard chain plus overrides.
async fn moto_store(options: S3Options) -> S3Store {
    S3Store::new(options).await.expect("build the S3 store")
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

fn random_bytes(len: usize) -> Bytes {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    Bytes::from(buf)
}

async fn read_back(bucket: &str, key: &ObjectKey) -> (aws_sdk_s3::operation::get_object::GetObjectOutput, Bytes) {
    let mut object = moto_client()
        .get_object()
        .bucket(bucket)
        .key(key.as_str())
        .send()
        .await
        .expect("get the object back");
    let body = std::mem::replace(&mut object.body, ByteStream::from_static(b""));
    let bytes = body.collect().await.unwrap().into_bytes();
    (object, bytes)
}

async fn open_uploads(bucket: &str) -> usize {
    moto_client()
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

const JSONL_GZIP: PutOptions = PutOptions {
    content_type: Some("application/x-ndjson"),
    content_encoding: Some("gzip"),
};

#[tokio::test]
async fn a_small_put_reads_back_with_its_settings() {
    let bucket = new_bucket().await;
    let store = moto_store(S3Options {
        storage_class: Some("STANDARD_IA".into()),
        server_side_encryption: Some(Sse::S3),
        tags: vec![
            ("team".into(), "data eng".into()),
            // Characters S3 allows in tags that need encoding in a header.
            ("dept/unit:x".into(), "a=b+c@d".into()),
        ],
        ..moto_options(&bucket)
    })
    .await;
    let k = key("events/2026/11/22/00/clicks-shard-1-0.jsonl.gz");
    let payload = Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n");
    let outcome = store.put(&k, payload.clone(), &JSONL_GZIP).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);

    let (object, body) = read_back(&bucket, &k).await;
    assert_eq!(body, payload);
    assert_eq!(object.content_type(), Some("application/x-ndjson"));
    assert_eq!(object.content_encoding(), Some("gzip"));
    assert_eq!(object.storage_class(), Some(&StorageClass::StandardIa));
    assert_eq!(object.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert!(
        !object.e_tag().unwrap().contains('-'),
        "a single PutObject, not multipart"
    );

    let tagging = moto_client()
        .get_object_tagging()
        .bucket(&bucket)
        .key(k.as_str())
        .send()
        .await
        .unwrap();
    let mut tags: Vec<_> = tagging
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("dept/unit:x".to_owned(), "a=b+c@d".to_owned()),
            ("team".to_owned(), "data eng".to_owned())
        ]
    );
}

#[tokio::test]
async fn kms_encryption_sends_its_key_id() {
    let bucket = new_bucket().await;
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/spillway-test";
    let store = moto_store(S3Options {
        server_side_encryption: Some(Sse::Kms {
            key_id: Some(key_id.into()),
        }),
        ..moto_options(&bucket)
    })
    .await;
    let k = key("kms/object");
    store
        .put(&k, Bytes::from_static(b"secret-ish"), &PutOptions::default())
        .await
        .unwrap();
    let (object, body) = read_back(&bucket, &k).await;
    assert_eq!(body, "secret-ish");
    assert_eq!(object.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(object.ssekms_key_id(), Some(key_id));
}

#[tokio::test]
async fn a_second_put_of_a_key_keeps_the_first_object() {
    let bucket = new_bucket().await;
    let store = moto_store(moto_options(&bucket)).await;
    let k = key("events/object.jsonl");
    let first = store
        .put(&k, Bytes::from_static(b"first\n"), &PutOptions::default())
        .await
        .unwrap();
    let second = store
        .put(&k, Bytes::from_static(b"second, longer\n"), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!((first, second), (PutOutcome::Created, PutOutcome::AlreadyExisted));
    assert_eq!(read_back(&bucket, &k).await.1, "first\n");
}

/// Reads objects back with the test's own client.
struct Bucket(String);

#[async_trait::async_trait]
impl ReadBack for Bucket {
    async fn read(&self, key: &ObjectKey) -> Option<Bytes> {
        self.get(key).await.map(|(_, bytes)| bytes)
    }

    async fn headers(&self, key: &ObjectKey) -> Option<Headers> {
        self.get(key).await.map(|(object, _)| Headers {
            content_type: object.content_type().map(str::to_owned),
            content_encoding: object.content_encoding().map(str::to_owned),
        })
    }
}

impl Bucket {
    async fn get(&self, key: &ObjectKey) -> Option<(aws_sdk_s3::operation::get_object::GetObjectOutput, Bytes)> {
        let sent = moto_client()
            .get_object()
            .bucket(&self.0)
            .key(key.as_str())
            .send()
            .await;
        match sent {
            Ok(mut object) => {
                let body = std::mem::replace(&mut object.body, ByteStream::from_static(b""));
                Some((object, body.collect().await.unwrap().into_bytes()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(err) => panic!("get {key} back: {err:?}"),
        }
    }
}

/// The conformance suite on a fresh bucket, with the options `options`
/// gives for it; afterwards no multipart upload is open.
async fn run_conformance(options: fn(&str) -> S3Options) {
    let bucket = new_bucket().await;
    let store = moto_store(options(&bucket)).await;
    let prefix = Alphanumeric.sample_string(&mut rand::rng(), 8);
    conformance::run_all(&store, &Bucket(bucket.clone()), &prefix).await;
    assert_eq!(open_uploads(&bucket).await, 0, "an upload was left open");
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    run_conformance(moto_options).await;
}

/// The same, with every payload from 5 MiB on sent as a multipart upload.
#[tokio::test]
async fn passes_the_conformance_suite_in_parts() {
    run_conformance(multipart_options).await;
}

fn multipart_options(bucket: &str) -> S3Options {
    S3Options {
        multipart_threshold: MIN_PART_SIZE,
        part_size: MIN_PART_SIZE,
        tags: vec![("stream".into(), "clicks".into())],
        ..moto_options(bucket)
    }
}

#[tokio::test]
async fn a_large_put_is_a_multipart_upload_that_reads_back_whole() {
    // Both checksum modes: CRC32 part checksums (the default), and none.
    for checksum_when_required in [false, true] {
        let bucket = new_bucket().await;
        let store = moto_store(S3Options {
            checksum_when_required,
            ..multipart_options(&bucket)
        })
        .await;
        let k = key("big/object.jsonl.gz");
        let payload = random_bytes(12 * MIB);
        let outcome = store.put(&k, payload.clone(), &JSONL_GZIP).await.unwrap();
        assert_eq!(outcome, PutOutcome::Created);

        let (object, body) = read_back(&bucket, &k).await;
        assert!(
            body == payload,
            "the object differs from the payload ({checksum_when_required})"
        );
        // A multipart ETag ends with the number of parts: 5 + 5 + 2 MiB.
        assert!(object.e_tag().unwrap().ends_with("-3\""), "{:?}", object.e_tag());
        assert_eq!(object.content_type(), Some("application/x-ndjson"));
        assert_eq!(object.content_encoding(), Some("gzip"));
        let tagging = moto_client()
            .get_object_tagging()
            .bucket(&bucket)
            .key(k.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(tagging.tag_set().len(), 1);
        assert_eq!(open_uploads(&bucket).await, 0);
    }
}

#[tokio::test]
async fn a_multipart_put_onto_an_existing_key_keeps_it_and_leaves_no_upload() {
    let bucket = new_bucket().await;
    let store = moto_store(multipart_options(&bucket)).await;
    let k = key("big/object");
    let original = Bytes::from_static(b"written by an earlier attempt");
    assert_eq!(
        store.put(&k, original.clone(), &PutOptions::default()).await.unwrap(),
        PutOutcome::Created
    );
    let outcome = store
        .put(&k, random_bytes(6 * MIB), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::AlreadyExisted);
    assert_eq!(read_back(&bucket, &k).await.1, original);
    assert_eq!(open_uploads(&bucket).await, 0, "the refused upload was not aborted");
}

#[tokio::test]
async fn exists_tells_present_from_absent() {
    let bucket = new_bucket().await;
    let store = moto_store(moto_options(&bucket)).await;
    let k = key("a/b/c.jsonl");
    assert!(!store.exists(&k).await.unwrap());
    store
        .put(&k, Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap();
    assert!(store.exists(&k).await.unwrap());
    assert!(!store.exists(&key("a/b/c.jsonl.gz")).await.unwrap());
}

#[tokio::test]
async fn check_passes_on_a_usable_bucket_and_leaves_nothing() {
    let bucket = new_bucket().await;
    let store = moto_store(S3Options {
        storage_class: Some("STANDARD_IA".into()),
        server_side_encryption: Some(Sse::S3),
        tags: vec![("team".into(), "data".into())],
        ..moto_options(&bucket)
    })
    .await;
    store.check().await.unwrap();
    let listed = moto_client().list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "{:?}", listed.contents());
    assert_eq!(store.describe(), format!("s3://{bucket} at {}", moto()));
}

#[tokio::test]
async fn check_reports_a_missing_bucket_as_misconfigured() {
    let store = moto_store(moto_options("spillway-test-no-such-bucket")).await;
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("NoSuchBucket"), "{text}");
    assert!(text.contains("s3://spillway-test-no-such-bucket"), "{text}");
}

#[tokio::test]
async fn check_reports_a_closed_port_as_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let store = moto_store(S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..moto_options("spillway-test-closed")
    })
    .await;
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, Error::Transient { .. }), "{err:?}");
    assert!(err.is_retryable());
}

// ---------------------------------------------------------------------------
// Against a scripted responder: error responses moto does not produce
// ---------------------------------------------------------------------------

const ACCESS_KEY: &str = "AKIDSPILLWAYMOCK";
const SECRET_KEY: &str = "secret-sentinel-never-printed";

/// A response of the scripted responder.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn xml(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/xml".into())],
        body: body.to_owned(),
    }
}

fn s3_error(status: u16, code: &str, message: &str) -> Reply {
    xml(
        status,
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><AWSAccessKeyId>{ACCESS_KEY}</AWSAccessKeyId>\
             <RequestId>R1</RequestId><HostId>H1</HostId></Error>"
        ),
    )
}

/// No answer at all: the request hangs until the client gives up.
fn hang() -> Reply {
    empty(0)
}

fn empty(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: String::new(),
    }
}

type Route = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 answering each request with
/// `route(method, target)`, and recording `"METHOD target"` of each.
struct Responder {
    endpoint: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Responder {
    async fn start(route: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Route = Arc::new(route);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (route, log) = (route.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, route, log).await;
                });
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// A store whose client talks to this responder, with the SDK's own
    /// retries off so each test sees one attempt per call.
    fn store(&self, options: S3Options) -> S3Store {
        let client = Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .force_path_style(true)
                .retry_config(RetryConfig::disabled())
                .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "mock"))
                .build(),
        );
        S3Store::with_client(client, options)
    }
}

/// Serves one connection: requests one after the other (keep-alive).
async fn serve(stream: tokio::net::TcpStream, route: Route, log: Arc<Mutex<Vec<String>>>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let (mut length, mut expect_continue) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "expect" => expect_continue = value.trim().eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if expect_continue {
            write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        log.lock().unwrap().push(format!("{method} {target}"));
        let reply = route(&method, &target);
        if reply.status == 0 {
            std::future::pending::<()>().await;
        }
        let mut head = format!(
            "HTTP/1.1 {} Scripted\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            write.write_all(reply.body.as_bytes()).await?;
        }
    }
}

/// The whole text of an error: its message, its sources, and its Debug.
fn full_text(err: &Error) -> String {
    let mut text = format!("{err} | {err:?}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(" | {cause}"));
        source = cause.source();
    }
    text
}

async fn put_small(store: &S3Store) -> Result<PutOutcome, Error> {
    store
        .put(&key("k/object"), Bytes::from_static(b"payload"), &PutOptions::default())
        .await
}

/// A canned reply, the error it must become, whether that is retryable,
/// and a word the error text must contain.
type Case = (Reply, fn(&Error) -> bool, bool, &'static str);

#[tokio::test]
async fn put_errors_are_mapped_by_meaning() {
    let cases: Vec<Case> = vec![
        (
            s3_error(503, "SlowDown", "Please reduce your request rate."),
            |e| matches!(e, Error::Transient { .. }),
            true,
            "SlowDown",
        ),
        (empty(429), |e| matches!(e, Error::Transient { .. }), true, "429"),
        (
            s3_error(500, "InternalError", "We encountered an internal error."),
            |e| matches!(e, Error::Transient { .. }),
            true,
            "InternalError",
        ),
        (
            s3_error(409, "ConditionalRequestConflict", "A conflicting operation occurred."),
            |e| matches!(e, Error::Transient { .. }),
            true,
            "ConditionalRequestConflict",
        ),
        (
            s3_error(403, "AccessDenied", "Access Denied"),
            |e| matches!(e, Error::PermissionDenied { .. }),
            false,
            "AccessDenied",
        ),
        (
            s3_error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist.",
            ),
            |e| matches!(e, Error::PermissionDenied { .. }),
            false,
            "InvalidAccessKeyId",
        ),
        (
            s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match.",
            ),
            |e| matches!(e, Error::PermissionDenied { .. }),
            false,
            "SignatureDoesNotMatch",
        ),
        (
            s3_error(404, "NoSuchBucket", "The specified bucket does not exist"),
            |e| matches!(e, Error::Misconfigured { .. }),
            false,
            "NoSuchBucket",
        ),
        (
            s3_error(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            ),
            |e| matches!(e, Error::TooLarge { .. }),
            false,
            "EntityTooLarge",
        ),
    ];
    for (reply, is_expected, retryable, needle) in cases {
        let reply = Arc::new(reply);
        let canned = reply.clone();
        let responder = Responder::start(move |_, _| Reply {
            status: canned.status,
            headers: canned.headers.clone(),
            body: canned.body.clone(),
        })
        .await;
        let err = put_small(&responder.store(S3Options::new("bucket"))).await.unwrap_err();
        let text = full_text(&err);
        assert!(is_expected(&err), "{needle}: {text}");
        assert_eq!(err.is_retryable(), retryable, "{needle}: {text}");
        assert!(text.contains(needle), "{text}");
        assert!(text.contains("k/object"), "names the object: {text}");
        assert!(!text.contains(SECRET_KEY), "the secret leaked: {text}");
        assert!(!text.contains(ACCESS_KEY), "the access key id leaked: {text}");
        assert_eq!(responder.seen().len(), 1, "one attempt, no loop");
    }
}

#[tokio::test]
async fn a_precondition_failure_means_already_existed() {
    let responder = Responder::start(|_, _| {
        s3_error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    })
    .await;
    let outcome = put_small(&responder.store(S3Options::new("bucket"))).await.unwrap();
    assert_eq!(outcome, PutOutcome::AlreadyExisted);
    assert!(responder.seen()[0].starts_with("PUT /bucket/k/object"));
}

#[tokio::test]
async fn head_errors_are_mapped_by_status() {
    for (status, expect) in [(404, Some(false)), (200, Some(true)), (403, None), (503, None)] {
        let responder = Responder::start(move |_, _| empty(status)).await;
        let store = responder.store(S3Options::new("bucket"));
        let got = store.exists(&key("k/object")).await;
        match (expect, got) {
            (Some(want), Ok(have)) => assert_eq!(want, have, "{status}"),
            (None, Err(err)) if status == 403 => {
                assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}")
            }
            (None, Err(err)) => assert!(err.is_retryable(), "{status}: {err:?}"),
            (_, other) => panic!("HEAD {status}: {other:?}"),
        }
    }
}

/// A multipart exchange in which `fail` decides the reply to one step
/// (`"create"`, `"part"`, `"complete"`), the rest succeeding.
async fn multipart_responder(fail: &'static str, failure: fn() -> Reply) -> Responder {
    Responder::start(move |method, target| {
        let step = match method {
            "POST" if target.contains("uploads") => "create",
            "PUT" if target.contains("uploadId=") => "part",
            "POST" if target.contains("uploadId=") => "complete",
            "DELETE" if target.contains("uploadId=") => "abort",
            _ => "other",
        };
        if step == fail {
            return failure();
        }
        match step {
            "create" => xml(
                200,
                "<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k/object</Key>\
                 <UploadId>upload-1</UploadId></InitiateMultipartUploadResult>",
            ),
            "part" => Reply {
                status: 200,
                headers: vec![("etag", "\"part-etag\"".into())],
                body: String::new(),
            },
            "complete" => xml(
                200,
                "<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k/object</Key>\
                 <ETag>\"whole-2\"</ETag></CompleteMultipartUploadResult>",
            ),
            "abort" => empty(204),
            _ => empty(500),
        }
    })
    .await
}

fn tiny_multipart() -> S3Options {
    // The responder does not enforce S3's 5 MiB minimum part size.
    S3Options {
        multipart_threshold: 8,
        part_size: 5,
        ..S3Options::new("bucket")
    }
}

async fn put_multipart(responder: &Responder) -> Result<PutOutcome, Error> {
    responder
        .store(tiny_multipart())
        .put(
            &key("k/object"),
            Bytes::from_static(b"0123456789ab"),
            &PutOptions::default(),
        )
        .await
}

fn aborted(seen: &[String]) -> bool {
    seen.iter()
        .any(|r| r.starts_with("DELETE /bucket/k/object") && r.contains("uploadId=upload-1"))
}

#[tokio::test]
async fn a_multipart_upload_completes_with_all_its_parts() {
    let responder = multipart_responder("none", || empty(500)).await;
    assert_eq!(put_multipart(&responder).await.unwrap(), PutOutcome::Created);
    let seen = responder.seen();
    let parts = seen.iter().filter(|r| r.starts_with("PUT ")).count();
    assert_eq!(parts, 3, "12 bytes in parts of 5: {seen:?}");
    assert!(!aborted(&seen), "{seen:?}");
}

#[tokio::test]
async fn a_failed_part_aborts_the_upload() {
    let responder = multipart_responder("part", || s3_error(503, "SlowDown", "Please reduce your request rate.")).await;
    let err = put_multipart(&responder).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let seen = responder.seen();
    assert!(aborted(&seen), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|r| r.starts_with("PUT ")).count(),
        1,
        "stops at the first failure"
    );
}

#[tokio::test]
async fn a_failed_completion_aborts_the_upload() {
    let failures: [(fn() -> Reply, bool); 4] = [
        (|| s3_error(409, "ConditionalRequestConflict", "conflict"), true),
        (|| s3_error(403, "AccessDenied", "Access Denied"), false),
        (|| s3_error(500, "InternalError", "internal error"), true),
        // S3 may report a failed completion inside a 200 response.
        (
            || {
                xml(
                    200,
                    "<Error><Code>InternalError</Code><Message>failed</Message></Error>",
                )
            },
            true,
        ),
    ];
    for (failure, retryable) in failures {
        let responder = multipart_responder("complete", failure).await;
        let err = put_multipart(&responder).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{err:?}");
        assert!(aborted(&responder.seen()), "{:?}", responder.seen());
    }
}

#[tokio::test]
async fn a_precondition_failure_at_completion_aborts_and_counts_as_existing() {
    let responder = multipart_responder("complete", || s3_error(412, "PreconditionFailed", "pre-conditions")).await;
    assert_eq!(put_multipart(&responder).await.unwrap(), PutOutcome::AlreadyExisted);
    assert!(aborted(&responder.seen()), "{:?}", responder.seen());
}

#[tokio::test]
async fn a_cancelled_upload_is_aborted_in_the_background() {
    let responder = multipart_responder("complete", hang).await;
    let put = put_multipart(&responder);
    let cancelled = tokio::time::timeout(std::time::Duration::from_millis(500), put).await;
    assert!(cancelled.is_err(), "the completion should hang: {cancelled:?}");
    for _ in 0..100 {
        if aborted(&responder.seen()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no abort after the put was dropped: {:?}", responder.seen());
}

#[tokio::test]
async fn a_refused_upload_start_is_reported() {
    let responder = multipart_responder("create", || s3_error(403, "AccessDenied", "Access Denied")).await;
    let err = put_multipart(&responder).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert_eq!(responder.seen().len(), 1, "{:?}", responder.seen());
}

/// ListMultipartUploads naming one open upload of `k/object`, and
/// AbortMultipartUpload answered with `abort`.
async fn open_upload_responder(abort: fn() -> Reply) -> Responder {
    Responder::start(move |method, target| match method {
        "GET" if target.contains("uploads") => xml(
            200,
            "<ListMultipartUploadsResult><Bucket>bucket</Bucket><Upload><Key>k/object</Key>\
             <UploadId>upload-1</UploadId></Upload></ListMultipartUploadsResult>",
        ),
        "DELETE" if target.contains("uploadId=upload-1") => abort(),
        _ => empty(500),
    })
    .await
}

#[tokio::test]
async fn clean_up_aborts_an_open_upload_of_its_key() {
    let responder = open_upload_responder(|| empty(204)).await;
    let store = responder.store(S3Options::new("bucket"));
    store.clean_up(&key("k/object")).await.unwrap();
    assert!(aborted(&responder.seen()), "{:?}", responder.seen());
    // Another key's upload, even one that starts with this key, is left.
    let responder = open_upload_responder(|| empty(204)).await;
    let store = responder.store(S3Options::new("bucket"));
    store.clean_up(&key("k/obj")).await.unwrap();
    assert!(!aborted(&responder.seen()), "{:?}", responder.seen());
}

/// An upload aborted between the listing and the abort (the writer's own
/// background abort of a failed put, a lifecycle rule) is gone, as
/// clean-up wants: not an error that would stop the start.
#[tokio::test]
async fn clean_up_of_an_upload_aborted_meanwhile_succeeds() {
    let responder =
        open_upload_responder(|| s3_error(404, "NoSuchUpload", "The specified upload does not exist.")).await;
    let store = responder.store(S3Options::new("bucket"));
    store.clean_up(&key("k/object")).await.unwrap();
    assert!(aborted(&responder.seen()), "{:?}", responder.seen());
    // Other failures of the abort are still reported.
    let responder = open_upload_responder(|| s3_error(403, "AccessDenied", "Access Denied")).await;
    let store = responder.store(S3Options::new("bucket"));
    let err = store.clean_up(&key("k/object")).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
}
