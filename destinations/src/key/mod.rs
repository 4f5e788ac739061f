//! Object keys: the prefix template, and keys that are safe as paths.

mod object_key;
mod partition_value;
mod parts;
mod template;
mod timestamp;

#[cfg(test)]
mod properties;

pub use object_key::{sanitize_segment, InvalidKey, ObjectKey, MAX_KEY_BYTES, STAGING_DIR};
pub use partition_value::{sanitize_partition_value, MAX_VALUE_BYTES};
pub use parts::{PrefixPart, TimeField};
pub use template::{KeyContext, KeyTemplate, TemplateError, TemplateKind, TimeSpan};
