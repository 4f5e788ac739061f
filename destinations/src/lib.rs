//! Where archived objects go.
//!
//! A destination deals in object keys and bytes only: it never sees records
//! or Kinesis. The pieces, in the order an object meets them:
//! [`compression`] (whole-object codecs), [`key`] (prefix templates and safe
//! object keys), [`store`] (the create-only [`ObjectStore`] trait and its
//! typed errors), one module per backend ([`local`], [`s3`], and [`memory`]
//! for tests), and [`retry`] (backoff for errors that a retry can help).
//! [`conformance`] is the behaviour every store's tests check. [`redact`]
//! keeps secrets out of every line spillway prints; [`endpoint`] checks
//! configured URLs.

pub mod aws_credentials;
pub mod compression;
pub mod conformance;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod key;
pub mod local;
pub mod memory;
pub mod objects;
pub mod redact;
pub mod retry;
pub mod s3;
pub mod store;

pub use compression::Compression;
pub use error::Error;
pub use http::{HttpEndpoint, HttpOptions};
pub use key::{KeyContext, KeyTemplate, ObjectKey, TemplateError, TimeSpan};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Options, S3Store};
pub use store::{Chunks, ObjectStore, Payload, PutOptions, PutOutcome};
