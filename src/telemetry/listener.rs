//! The HTTP listener of `[telemetry] listen`: `/metrics` in the OpenMetrics
//! text format (Prometheus' own scrape format, which it asks for first),
//! `/health/live` (200 while the process serves) and `/health/ready` (200
//! when every pipeline is ready, 503 with the reasons otherwise; see
//! [`super::health`]).
//!
//! A scraper is a peer like any other: a connection that sends no request
//! is closed after [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are
//! served at once (the rest wait in the kernel's queue), so a slow or
//! hostile client cannot take memory or tasks from the pipeline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Registry;

/// How long a connection may take to send its request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.listen: {address} cannot be listened on: {source}")]
pub struct ListenError {
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A listener serving; it stops when dropped.
pub struct Listener {
    address: SocketAddr,
    stop: CancellationToken,
}

impl Listener {
    /// The address it listens on (the port chosen, if 0 was asked).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Listens on `address` and serves `registry` until the listener is
/// dropped. Fails at once if the address cannot be listened on (in use,
/// not this host's, a privileged port).
pub async fn serve(address: SocketAddr, registry: Arc<Registry>) -> Result<Listener, ListenError> {
    let listen_error = |source| ListenError { address, source };
    let listener = TcpListener::bind(address).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let stop = CancellationToken::new();
    tokio::spawn(accept_loop(listener, registry, stop.clone()));
    tracing::info!(address = %bound, "serving /metrics, /health/live and /health/ready");
    Ok(Listener { address: bound, stop })
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, a connection reset before it
                // was taken: the next one may do.
                Err(err) => {
                    tracing::debug!(error = %err, "telemetry listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&registry, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

fn respond(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".to_owned());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, registry.encode());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(OPENMETRICS),
            );
            response
        }
        "/health/live" => text(StatusCode::OK, "live\n".to_owned()),
        "/health/ready" => match registry.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", reasons.join("\n"))),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /health/live, /health/ready\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
