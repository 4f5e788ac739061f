//! An HTTP/1.1 proxy on loopback that forwards to a real peer and answers
//! some requests itself, with errors the peer cannot be made to produce
//! (throttling, expired iterators, 5xx).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A canned answer, or a delay before the request is forwarded.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// When set, the request is forwarded after this delay instead of
    /// being answered with the canned answer.
    pub forward_after: Option<std::time::Duration>,
}

impl Fault {
    /// Forwards the request after `delay`.
    pub fn delay(delay: std::time::Duration) -> Self {
        Fault {
            status: 0,
            content_type: "",
            body: String::new(),
            forward_after: Some(delay),
        }
    }
}

/// Decides, per request (its `X-Amz-Target`, or its method, path and query,
/// and how many requests with the same target came before), whether to
/// answer with a fault.
pub type Rule = Arc<dyn Fn(&str, usize) -> Option<Fault> + Send + Sync>;

/// Like [`Rule`], with the request's body too.
pub type BodyRule = Arc<dyn Fn(&str, usize, &[u8]) -> Option<Fault> + Send + Sync>;

/// Rewrites the body of a forwarded answer, per target (a response the peer
/// would never send, such as a record whose sequence number is not one).
pub type Rewrite = Arc<dyn Fn(&str, Bytes) -> Bytes + Send + Sync>;

/// Rewrites a request before it is forwarded, and then its answer, per
/// target and count (a PutRecords that forwards some entries and answers
/// the others as failed, as a throttled shard does). `None`: forwarded as
/// it is.
pub type Exchange =
    Arc<dyn Fn(&str, usize, &[u8]) -> Option<(Bytes, Box<dyn FnOnce(Bytes) -> Bytes + Send>)> + Send + Sync>;

pub struct FaultProxy {
    pub url: String,
    pub faults_sent: Arc<AtomicUsize>,
    _runtime: std::thread::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on its own thread.
    pub fn start(upstream: &str, rule: Rule) -> Self {
        Self::start_with(
            upstream,
            Arc::new(move |target: &str, nth, _: &[u8]| rule(target, nth)),
            None,
        )
    }

    /// Starts a proxy to moto's DynamoDB that answers every DynamoDB call
    /// with 503 ServiceUnavailable while `down` is set.
    pub fn dynamodb_down_while(upstream: &str, down: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self::start(
            upstream,
            Arc::new(move |target: &str, _| {
                (down.load(std::sync::atomic::Ordering::SeqCst) && target.starts_with("DynamoDB_")).then(|| Fault {
                    status: 503,
                    content_type: "application/x-amz-json-1.0",
                    body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"down"}"#.into(),
                    forward_after: None,
                })
            }),
        )
    }

    /// Starts a proxy whose rule sees each request's body, and which may
    /// rewrite the answers it forwards.
    pub fn start_with(upstream: &str, rule: BodyRule, rewrite: Option<Rewrite>) -> Self {
        Self::start_full(upstream, rule, rewrite, None)
    }

    /// Starts a proxy that rewrites requests and their answers.
    pub fn start_exchange(upstream: &str, exchange: Exchange) -> Self {
        Self::start_full(upstream, Arc::new(|_: &str, _, _: &[u8]| None), None, Some(exchange))
    }

    fn start_full(upstream: &str, rule: BodyRule, rewrite: Option<Rewrite>, exchange: Option<Exchange>) -> Self {
        let upstream = upstream.trim_end_matches('/').to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let faults_sent = Arc::new(AtomicUsize::new(0));
        let sent = faults_sent.clone();
        let runtime = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
                let counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Default::default();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (client, upstream, rule, rewrite, exchange, counts, sent) = (
                        client.clone(),
                        upstream.clone(),
                        rule.clone(),
                        rewrite.clone(),
                        exchange.clone(),
                        counts.clone(),
                        sent.clone(),
                    );
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                            let (client, upstream, rule, rewrite, exchange, counts, sent) = (
                                client.clone(),
                                upstream.clone(),
                                rule.clone(),
                                rewrite.clone(),
                                exchange.clone(),
                                counts.clone(),
                                sent.clone(),
                            );
                            async move {
                                let target = request
                                    .headers()
                                    .get("x-amz-target")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| {
                                        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                                        format!("{} {path}", request.method())
                                    });
                                let nth = {
                                    let mut counts = counts.lock().unwrap();
                                    let n = counts.entry(target.clone()).or_insert(0);
                                    *n += 1;
                                    *n
                                };
                                let (mut parts, body) = request.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                let fault = rule(&target, nth, &body);
                                if let Some(delay) = fault.as_ref().and_then(|f| f.forward_after) {
                                    tokio::time::sleep(delay).await;
                                } else if let Some(fault) = fault {
                                    sent.fetch_add(1, Ordering::SeqCst);
                                    let response = Response::builder()
                                        .status(StatusCode::from_u16(fault.status).unwrap())
                                        .header("content-type", fault.content_type)
                                        .body(Full::new(Bytes::from(fault.body)))
                                        .unwrap();
                                    return Ok::<_, Infallible>(response);
                                }
                                let mut answer_rewrite = None;
                                let mut body = body;
                                if let Some((new_body, rewrite)) =
                                    exchange.as_ref().and_then(|e| e(&target, nth, &body))
                                {
                                    sent.fetch_add(1, Ordering::SeqCst);
                                    body = new_body;
                                    parts.headers.remove("content-length");
                                    answer_rewrite = Some(rewrite);
                                }
                                let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
                                parts.uri = format!("{upstream}{path}").parse().unwrap();
                                let forwarded = Request::from_parts(parts, Full::new(body));
                                let response = match client.request(forwarded).await {
                                    Ok(response) => {
                                        let (mut parts, body) = response.into_parts();
                                        let mut body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                        if let Some(rewrite) = &rewrite {
                                            body = rewrite(&target, body);
                                            parts.headers.remove("content-length");
                                            parts.headers.remove("x-amz-crc32");
                                        }
                                        if let Some(rewrite) = answer_rewrite {
                                            body = rewrite(body);
                                            parts.headers.remove("content-length");
                                            parts.headers.remove("x-amz-crc32");
                                        }
                                        Response::from_parts(parts, Full::new(body))
                                    }
                                    Err(err) => Response::builder()
                                        .status(502)
                                        .body(Full::new(Bytes::from(format!("proxy: {err}"))))
                                        .unwrap(),
                                };
                                Ok(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            url: format!("http://{address}"),
            faults_sent,
            _runtime: runtime,
        }
    }
}

/// A Kinesis error answer, as the service sends it.
pub fn kinesis_error(status: u16, code: &str) -> Fault {
    Fault {
        status,
        content_type: "application/x-amz-json-1.1",
        body: format!(r#"{{"__type":"{code}","message":"injected by the test proxy"}}"#),
        forward_after: None,
    }
}

/// An S3 error answer (XML), as the service sends it.
pub fn s3_error(status: u16, code: &str) -> Fault {
    Fault {
        status,
        content_type: "application/xml",
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>injected by the test proxy</Message><RequestId>test</RequestId></Error>"
        ),
        forward_after: None,
    }
}
