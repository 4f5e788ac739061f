//! Why an attempt failed, and whether another attempt may succeed.

use std::fmt;

/// The kind of failure, with the error code Firehose uses for it in its
/// error output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The endpoint answered with a status other than 200.
    Status(u16),
    /// A 200 whose body is not a response for this request.
    InvalidResponse,
    /// No answer in time.
    Timeout,
    /// No connection, or it broke.
    Connection,
    /// The request cannot be sent as configured.
    Misconfigured,
}

/// One failed attempt.
#[derive(Debug)]
pub struct HttpError {
    pub kind: HttpErrorKind,
    /// What happened, with a truncated response body where there was one.
    /// Never holds a header value.
    pub message: String,
}

impl HttpError {
    pub(super) fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(super) fn from_reqwest(err: reqwest::Error) -> Self {
        // reqwest's messages name the URL; strip the query, which may hold
        // a token.
        let err = err.without_url();
        let kind = if err.is_timeout() {
            HttpErrorKind::Timeout
        } else if err.is_builder() {
            HttpErrorKind::Misconfigured
        } else {
            HttpErrorKind::Connection
        };
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        // A cause may name the URL again (a proxy's, a redirect's).
        let message = crate::redact::text_for_logs(&message).into_owned();
        Self { kind, message }
    }

    /// Whether the same request may succeed later. Only a 413 (the body is
    /// too large: it will stay too large) and a misconfiguration are not.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind, HttpErrorKind::Status(413) | HttpErrorKind::Misconfigured)
    }

    /// The `errorCode` of the records' error output, after Firehose's.
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            HttpErrorKind::Status(413) => "HttpEndpoint.PayloadTooLarge",
            HttpErrorKind::Status(_) => "HttpEndpoint.DestinationException",
            HttpErrorKind::InvalidResponse => "HttpEndpoint.InvalidResponseFromDestination",
            HttpErrorKind::Timeout => "HttpEndpoint.RequestTimeout",
            HttpErrorKind::Connection => "HttpEndpoint.ConnectionFailed",
            HttpErrorKind::Misconfigured => "HttpEndpoint.InvalidConfiguration",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}
