//! The one place where S3 SDK errors become our [`Error`].
//!
//! Every S3 call of the backend goes through [`classify`] and
//! [`to_error`], so the retry decision (transient or permanent) is made
//! here and nowhere else. Error text carries the operation, the HTTP status
//! and S3's error code and message, never a request or a credential, and
//! passes through [`crate::redact::text_for_logs`]: the SDK's own text
//! names the endpoint, user information and query included.

use std::fmt;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::Error;
use crate::key::ObjectKey;

/// What an S3 failure means to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// 412 PreconditionFailed: an `If-None-Match: *` write found the key
    /// taken, so an earlier attempt (or writer) created the object.
    AlreadyExists,
    /// 404 without a more specific code: on HeadObject, the object is
    /// absent.
    NotFound,
    /// May pass: throttling, 5xx, timeouts, broken connections, a
    /// conflicting concurrent write.
    Transient,
    /// Credentials or permissions.
    PermissionDenied,
    /// The bucket is missing or the options do not fit it (region, storage
    /// class, encryption...).
    Misconfigured,
    /// The payload is larger than S3 accepts.
    TooLarge,
}

/// Classifies an SDK error from any S3 operation.
pub(crate) fn classify<E>(err: &SdkError<E>) -> Class
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        // Nothing was sent: the request could not be built from our input.
        SdkError::ConstructionFailure(_) => Class::Misconfigured,
        SdkError::TimeoutError(_) => Class::Transient,
        // Connection refused or reset, DNS, TLS, and also failures to
        // resolve credentials (they surface as dispatch failures too): all
        // may pass. The start-up check reports them in one line.
        SdkError::DispatchFailure(failure) if failure.is_user() => Class::Misconfigured,
        // No credentials, or an endpoint the SDK cannot use: the same
        // request fails the same way every time.
        SdkError::DispatchFailure(_) if permanent_dispatch_cause(err).is_some() => Class::Misconfigured,
        SdkError::DispatchFailure(_) => Class::Transient,
        // A response we could not parse (a truncated body, a proxy's HTML
        // page): only its status says anything.
        SdkError::ResponseError(ctx) => match ctx.raw().status().as_u16() {
            status @ (403 | 404) => classify_response(status, None),
            _ => Class::Transient,
        },
        SdkError::ServiceError(ctx) => classify_response(ctx.raw().status().as_u16(), err.code()),
        _ => Class::Transient,
    }
}

/// Why a request that was never sent cannot be sent at all: credentials
/// that cannot be found, or an endpoint the SDK refuses.
fn permanent_dispatch_cause<E>(err: &SdkError<E>) -> Option<String>
where
    E: std::error::Error + 'static,
{
    let SdkError::DispatchFailure(failure) = err else {
        return None;
    };
    let connector = failure.as_connector_error()?;
    if let Some(problem) = crate::aws_credentials::find_in_chain(connector) {
        return Some(problem.to_string());
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(connector);
    while let Some(current) = cause {
        if let Some(endpoint) = current.downcast_ref::<aws_smithy_http::endpoint::ResolveEndpointError>() {
            return Some(format!("the endpoint cannot be used: {endpoint}"));
        }
        cause = current.source();
    }
    None
}

/// Classifies an S3 error response by its status and error code.
pub(crate) fn classify_response(status: u16, code: Option<&str>) -> Class {
    // The code is more specific than the status, so it is looked at first.
    match code.unwrap_or_default() {
        "PreconditionFailed" => return Class::AlreadyExists,
        // A concurrent conditional write on the same key was in progress.
        // S3 says to retry: the retry finds the object (412) if the other
        // write won, or creates it if that write failed. Reporting
        // "already existed" here could lose data.
        "ConditionalRequestConflict"
        | "OperationAborted"
        // The multipart upload disappeared (a lifecycle rule, a concurrent
        // abort): a new put starts a new upload.
        | "NoSuchUpload"
        | "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestTimeout"
        | "RequestTimeTooSkewed"
        | "InternalError"
        | "ServiceUnavailable"
        // Temporary credentials are refreshed by the SDK's provider.
        | "ExpiredToken"
        | "TokenRefreshRequired" => return Class::Transient,
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AllAccessDisabled"
        | "AccountProblem" | "InvalidSecurity" | "InvalidToken" => {
            return Class::PermissionDenied
        }
        "NoSuchBucket" | "InvalidBucketName" | "PermanentRedirect" | "AuthorizationHeaderMalformed"
        | "InvalidStorageClass" | "InvalidEncryptionAlgorithmError" | "EntityTooSmall" => {
            return Class::Misconfigured
        }
        "EntityTooLarge" | "MaxMessageLengthExceeded" => return Class::TooLarge,
        code if code.contains("Throttl") => return Class::Transient,
        _ => {}
    }
    match status {
        412 => Class::AlreadyExists,
        408 | 429 | 500..=599 => Class::Transient,
        401 | 403 => Class::PermissionDenied,
        404 => Class::NotFound,
        413 => Class::TooLarge,
        // Any other refusal (4xx, or a redirect to another region) repeats
        // itself on retry: stop and report it, rather than retry forever.
        _ => Class::Misconfigured,
    }
}

/// What an S3 call was about, for error text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub bucket: &'a str,
    pub key: Option<&'a ObjectKey>,
}

impl Target<'_> {
    fn location(&self) -> String {
        match self.key {
            Some(key) => format!("s3://{}/{key}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }
}

/// Converts an SDK error from `operation` on `target` into our [`Error`].
///
/// [`Class::AlreadyExists`] and [`Class::NotFound`] are normally handled by
/// the caller (they are outcomes, not failures); here they become the
/// nearest error.
pub(crate) fn to_error<E>(operation: &'static str, target: Target<'_>, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let class = classify(&err);
    let failure = S3Failure::new(operation, &err);
    let location = target.location();
    match class {
        Class::Transient => Error::Transient {
            location,
            source: Box::new(failure),
        },
        Class::PermissionDenied => Error::PermissionDenied {
            location,
            source: Box::new(failure),
        },
        Class::AlreadyExists => match target.key {
            Some(key) => Error::AlreadyExists { key: key.clone() },
            None => Error::Misconfigured {
                location,
                reason: failure.to_string(),
            },
        },
        Class::NotFound => Error::Misconfigured {
            location,
            reason: format!("{failure} (does the bucket exist?)"),
        },
        Class::Misconfigured => Error::Misconfigured {
            location,
            reason: failure.to_string(),
        },
        Class::TooLarge => match target.key {
            Some(key) => Error::TooLarge {
                key: key.clone(),
                reason: failure.to_string(),
            },
            None => Error::Misconfigured {
                location,
                reason: failure.to_string(),
            },
        },
    }
}

/// The source of our errors: what S3 (or the connection) said, without
/// the request, its headers or the raw response.
#[derive(Debug)]
pub(crate) struct S3Failure {
    operation: &'static str,
    detail: String,
}

impl S3Failure {
    fn new<E>(operation: &'static str, err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let detail = match err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                match (err.code(), err.message()) {
                    (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                    (Some(code), None) => format!("HTTP {status} {code}"),
                    _ => format!("HTTP {status}"),
                }
            }
            SdkError::ResponseError(ctx) => format!(
                "HTTP {}, unreadable response: {}",
                ctx.raw().status().as_u16(),
                DisplayErrorContext(err)
            ),
            _ => match permanent_dispatch_cause(err) {
                // One line, not the provider chain's thousand characters.
                Some(cause) => cause,
                // The chain of causes: "dispatch failure: io error: ...
                // Connection refused". Neither requests nor credentials are
                // part of it, but the endpoint may be.
                None => DisplayErrorContext(err).to_string(),
            },
        };
        let detail = crate::redact::text_for_logs(&detail).into_owned();
        Self { operation, detail }
    }
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.detail)
    }
}

impl std::error::Error for S3Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_before_statuses() {
        let cases = [
            (503, Some("SlowDown"), Class::Transient),
            (429, None, Class::Transient),
            (500, Some("InternalError"), Class::Transient),
            (502, None, Class::Transient),
            (400, Some("RequestTimeout"), Class::Transient),
            (409, Some("ConditionalRequestConflict"), Class::Transient),
            (404, Some("NoSuchUpload"), Class::Transient),
            (412, Some("PreconditionFailed"), Class::AlreadyExists),
            (412, None, Class::AlreadyExists),
            (403, Some("AccessDenied"), Class::PermissionDenied),
            (403, Some("InvalidAccessKeyId"), Class::PermissionDenied),
            (403, Some("SignatureDoesNotMatch"), Class::PermissionDenied),
            (403, None, Class::PermissionDenied),
            (404, Some("NoSuchBucket"), Class::Misconfigured),
            (301, Some("PermanentRedirect"), Class::Misconfigured),
            (404, Some("NotFound"), Class::NotFound),
            (404, None, Class::NotFound),
            (400, Some("EntityTooLarge"), Class::TooLarge),
            (400, Some("InvalidArgument"), Class::Misconfigured),
            (400, Some("KMS.ThrottlingException"), Class::Transient),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify_response(status, code), want, "{status} {code:?}");
        }
    }
}
