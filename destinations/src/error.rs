//! Destination errors, named by meaning, each saying whether a retry helps.

use crate::key::ObjectKey;

/// An error from a destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object exists already (create-only writes).
    #[error("object {key} already exists")]
    AlreadyExists { key: ObjectKey },
    /// The destination refuses us: credentials, permissions. Retrying does
    /// not help until someone changes something.
    #[error("permission denied writing {location}: {source}")]
    PermissionDenied {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The destination does not exist or is not usable as configured.
    #[error("destination {location} is not usable: {reason}")]
    Misconfigured { location: String, reason: String },
    /// The payload is refused as too large; retrying the same payload fails
    /// the same way.
    #[error("object {key} refused as too large: {reason}")]
    TooLarge { key: ObjectKey, reason: String },
    /// A failure that may pass: a full disk, a throttle, a timeout, a broken
    /// connection, a 5xx.
    #[error("transient failure at {location}: {source}")]
    Transient {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }
}
