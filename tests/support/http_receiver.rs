//! A Firehose HTTP endpoint receiver for tests: it checks every header and
//! body rule of Firehose's HTTP endpoint delivery specification on every
//! request, records what it received, and answers as its script says
//! (success, a status, a slow answer, a dropped connection).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the request id echoed: success.
    Ok,
    /// This status, with a Firehose-style error body.
    Status(u16),
    /// 200 echoing another request id (an invalid response).
    WrongRequestId,
    /// Waits this long, then succeeds (too late if the client timed out).
    Slow(Duration),
    /// Drops the connection without answering.
    Reset,
    /// 200, then a body that never ends.
    Endless,
}

/// A response body of spaces without end.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(&SPACES)))))
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What the receiver expects of every request.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub path: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    pub common_attributes: BTreeMap<String, String>,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub request_id: String,
    pub records: Vec<Vec<u8>>,
    pub answer: Answer,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    /// The answer once the script is used up.
    then: Option<Answer>,
    received: Vec<Received>,
    violations: Vec<String>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on loopback answering `script` in order, then
    /// `then` for every later request.
    pub fn start(expect: Expect, script: &[Answer], then: Answer) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}{}", listener.local_addr().unwrap(), expect.path);
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            then: Some(then),
            ..State::default()
        }));
        let shared = state.clone();
        let expect = Arc::new(expect);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (state, expect) = (shared.clone(), expect.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                            let (state, expect) = (state.clone(), expect.clone());
                            async move { handle(request, &state, &expect).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            url,
            state,
            _thread: thread,
        }
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Every broken rule seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// The records of the requests answered with success in time, in
    /// order (a slow answer comes after the client gave up).
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        self.received()
            .into_iter()
            .filter(|r| r.answer == Answer::Ok)
            .flat_map(|r| r.records)
            .collect()
    }
}

async fn handle(
    request: Request<Incoming>,
    state: &Mutex<State>,
    expect: &Expect,
) -> Result<Response<AnyBody>, std::io::Error> {
    let mut violations = Vec::new();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not ascii>").to_owned())
    };
    if request.method() != hyper::Method::POST {
        violations.push(format!("method {}", request.method()));
    }
    if request.uri().path() != expect.path {
        violations.push(format!("path {}", request.uri().path()));
    }
    if header("content-type").as_deref() != Some("application/json") {
        violations.push(format!("content-type {:?}", header("content-type")));
    }
    if header("x-amz-firehose-protocol-version").as_deref() != Some("1.0") {
        violations.push("no X-Amz-Firehose-Protocol-Version: 1.0".into());
    }
    if !header("x-amz-firehose-source-arn").is_some_and(|arn| arn.starts_with("arn:")) {
        violations.push(format!("source arn {:?}", header("x-amz-firehose-source-arn")));
    }
    if header("x-amz-firehose-access-key") != expect.access_key {
        violations.push("wrong or missing X-Amz-Firehose-Access-Key".into());
    }
    let attributes = header("x-amz-firehose-common-attributes");
    if expect.common_attributes.is_empty() {
        if attributes.is_some() {
            violations.push("unexpected common attributes".into());
        }
    } else {
        let expected = serde_json::json!({ "commonAttributes": expect.common_attributes });
        let found: Option<serde_json::Value> = attributes.as_deref().and_then(|a| serde_json::from_str(a).ok());
        if found.as_ref() != Some(&expected) {
            violations.push(format!("common attributes {attributes:?}"));
        }
    }
    let gzip = header("content-encoding").as_deref() == Some("gzip");
    if gzip != expect.gzip {
        violations.push(format!("content-encoding {:?}", header("content-encoding")));
    }
    let header_id = header("x-amz-firehose-request-id").unwrap_or_default();
    let raw = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        out
    } else {
        raw.to_vec()
    };
    let mut records = Vec::new();
    let mut body_id = String::new();
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) => {
            body_id = json["requestId"].as_str().unwrap_or_default().to_owned();
            let now = chrono::Utc::now().timestamp_millis();
            if json["timestamp"].as_i64().is_none_or(|t| (now - t).abs() >= 600_000) {
                violations.push(format!("timestamp {}", json["timestamp"]));
            }
            let list = json["records"].as_array().cloned().unwrap_or_default();
            if list.is_empty() || list.len() > 10_000 {
                violations.push(format!("{} records in one request", list.len()));
            }
            for record in list {
                match record["data"]
                    .as_str()
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                {
                    Some(data) => records.push(data),
                    None => violations.push(format!("record {record} has no base64 data")),
                }
            }
        }
        Err(err) => violations.push(format!("body is not JSON: {err}")),
    }
    if body_id.is_empty() || body_id != header_id {
        violations.push(format!(
            "request id {header_id:?} in the header, {body_id:?} in the body"
        ));
    }

    let answer = {
        let mut state = state.lock().unwrap();
        let answer = state.script.pop_front().or(state.then).unwrap_or(Answer::Ok);
        state.violations.extend(violations);
        state.received.push(Received {
            request_id: body_id.clone(),
            records,
            answer,
        });
        answer
    };
    let respond = |status: u16, id: &str| {
        let body = serde_json::json!({
            "requestId": id,
            "timestamp": chrono::Utc::now().timestamp_millis(),
            "errorMessage": if status == 200 { serde_json::Value::Null } else { "refused by the test receiver".into() },
        });
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(
                Full::new(Bytes::from(body.to_string()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap())
    };
    match answer {
        Answer::Ok => respond(200, &body_id),
        Answer::Status(status) => respond(status, &body_id),
        Answer::WrongRequestId => respond(200, "not-this-request"),
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            respond(200, &body_id)
        }
        Answer::Reset => Err(std::io::Error::other("connection dropped by the test receiver")),
        Answer::Endless => Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Endless.boxed())
            .unwrap()),
    }
}
