//! The HTTP endpoint destination: Firehose's HTTP endpoint delivery
//! request and response specification (protocol version 1.0), so that
//! receivers built for Firehose accept spillway's requests unchanged.
//!
//! One request carries up to [`MAX_RECORDS_PER_REQUEST`] records:
//! - `POST <url>` with `Content-Type: application/json` and the body
//!   `{"requestId": ..., "timestamp": <ms>, "records": [{"data": <base64>}]}`
//!   (`request.rs`), gzipped with `Content-Encoding: gzip` when configured;
//! - headers `X-Amz-Firehose-Protocol-Version: 1.0`,
//!   `X-Amz-Firehose-Request-Id` (the same on every attempt of a request),
//!   `X-Amz-Firehose-Source-Arn`, `X-Amz-Firehose-Access-Key` (when one is
//!   configured; never logged), `X-Amz-Firehose-Common-Attributes` (when
//!   attributes are configured).
//!
//! Only a 200 whose JSON body echoes the `requestId` is success
//! (`response.rs`). A 413 is permanent; every other failure is worth a
//! retry (`error.rs`). This module sends one attempt: the caller retries,
//! for as long as its retry duration allows, then backs the records up.
//!
//! TLS is rustls with the system's root certificates (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured); redirects are never followed.

mod config;
mod error;
mod request;
mod response;

pub use self::config::{BackupMode, HttpDestination, HttpSettings};
pub use self::error::{HttpError, HttpErrorKind};
pub use self::request::{request_id, HttpRequest};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// At most this many records go in one request, as Firehose.
pub const MAX_RECORDS_PER_REQUEST: usize = 10_000;

/// The largest response body read: a Firehose response is a small JSON
/// object, and Firehose's specification keeps it under 1 MiB. A receiver
/// answering more (or without end) fails the attempt, instead of being
/// read into memory until the request times out.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Firehose gives an endpoint 3 minutes to answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `Content-Encoding` of request bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentEncoding {
    #[default]
    None,
    Gzip,
}

/// Where and how requests are sent. Values are validated by the caller.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// `http://` or `https://` URL, sent as configured.
    pub url: String,
    /// Sent as `X-Amz-Firehose-Access-Key`.
    pub access_key: Option<Secret>,
    pub content_encoding: ContentEncoding,
    /// Sent as `X-Amz-Firehose-Common-Attributes`.
    pub common_attributes: BTreeMap<String, String>,
    /// Sent as `X-Amz-Firehose-Source-Arn`.
    pub source_arn: String,
    /// The longest an attempt may take, connection included.
    pub request_timeout: Duration,
}

/// An HTTP endpoint that takes Firehose-style requests.
#[derive(Clone)]
pub struct HttpEndpoint {
    client: reqwest::Client,
    options: HttpOptions,
    /// `common_attributes` as the header wants them, encoded once.
    common_attributes: Option<String>,
}

impl fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint").field("url", &self.describe()).finish()
    }
}

impl HttpEndpoint {
    pub fn new(options: HttpOptions) -> Result<Self, crate::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("spillway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| crate::Error::Misconfigured {
                location: crate::redact::url_for_logs(&options.url),
                reason: format!("cannot build an HTTP client: {err}"),
            })?;
        let common_attributes = (!options.common_attributes.is_empty())
            .then(|| serde_json::json!({ "commonAttributes": options.common_attributes }).to_string());
        Ok(Self {
            client,
            options,
            common_attributes,
        })
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Sends one attempt of `request`: `Ok` only for a 200 that echoes its
    /// request id.
    pub async fn send(&self, request: &HttpRequest) -> Result<(), HttpError> {
        let mut builder = self
            .client
            .post(&self.options.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request.request_id())
            .header("X-Amz-Firehose-Source-Arn", &self.options.source_arn)
            .body(request.body().clone());
        if let Some(key) = &self.options.access_key {
            let mut value = reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| {
                HttpError::new(
                    HttpErrorKind::Misconfigured,
                    "the access key is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            builder = builder.header("X-Amz-Firehose-Access-Key", value);
        }
        if let Some(attributes) = &self.common_attributes {
            builder = builder.header("X-Amz-Firehose-Common-Attributes", attributes);
        }
        if let Some(encoding) = request.content_encoding() {
            builder = builder.header("Content-Encoding", encoding);
        }
        let mut response = builder.send().await.map_err(HttpError::from_reqwest)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HttpError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::new(
                    HttpErrorKind::InvalidResponse,
                    format!("the endpoint answered {status} with a body over {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        response::check(status, &body, request.request_id())
    }

    /// The URL for logs, without user info or query (which may hold
    /// secrets).
    pub fn describe(&self) -> String {
        crate::redact::url_for_logs(&self.options.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_logs_lose_credentials_and_queries() {
        let endpoint = HttpEndpoint::new(HttpOptions {
            url: "https://user:pw@example.com:8443/path?token=abc".into(),
            access_key: Some(Secret::new("hunter2")),
            content_encoding: ContentEncoding::None,
            common_attributes: BTreeMap::new(),
            source_arn: "arn".into(),
            request_timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(endpoint.describe(), "https://example.com:8443/path");
        let debug = format!("{endpoint:?}");
        assert!(
            !debug.contains("pw") && !debug.contains("token") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(<redacted>)");
    }
}
