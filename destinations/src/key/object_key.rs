//! A key that is safe as a relative path on every destination.

use std::fmt;

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The top-level directory where the local store stages its temporary
/// files: reserved, so that no object is ever written or read there.
pub const STAGING_DIR: &str = ".spillway-tmp";

/// An object key: a relative, `/`-separated path with no empty, `.` or
/// `..` segment, no leading `/`, no control character, at most 1,024
/// bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

/// Why a string is not a usable object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        let reason = if key.is_empty() {
            Some("empty")
        } else if key.len() > MAX_KEY_BYTES {
            Some("longer than 1024 bytes")
        } else if key.starts_with('/') {
            Some("starts with '/'")
        } else if key.ends_with('/') {
            Some("ends with '/'")
        } else if key.chars().any(char::is_control) {
            Some("contains a control character")
        } else if key.contains('\\') {
            Some("contains '\\'")
        } else if key.split('/').any(|s| s == "." || s == "..") {
            Some("contains a '.' or '..' segment")
        } else if key.contains("//") {
            // A local store reads `a//b` as `a/b`, where S3 keeps two keys:
            // two keys must never name one file.
            Some("contains an empty segment ('//')")
        } else if key.split('/').next() == Some(STAGING_DIR) {
            Some("starts with '.spillway-tmp/', which is reserved for temporary files")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidKey { key, reason }),
            None => Ok(Self(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment: the object's name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Makes a value from a record (a partition key, a field value, a shard id)
/// safe as one segment of a key: `/`, `\` and control characters become
/// `_`, and a segment that would be empty, `.` or `..` is prefixed with `_`.
pub fn sanitize_segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_keys() {
        for bad in ["", "/abs", "a/../b", "..", "a/./b", "a\nb", "a\u{7f}b", "a\\b", "dir/"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ObjectKey::new("x".repeat(1025)).is_err());
        assert!(ObjectKey::new(".spillway-tmp/x").is_err());
        assert!(ObjectKey::new("a/.spillway-tmp/x").is_ok());
        let key = ObjectKey::new("events/2026/11/22/a..b.jsonl.gz").unwrap();
        assert_eq!(key.file_name(), "a..b.jsonl.gz");
    }

    #[test]
    fn sanitised_segments_are_always_valid_keys() {
        for value in ["..", ".", "", "a/b", "/etc/passwd", "../../x", "tab\there", "ok-value"] {
            let segment = sanitize_segment(value);
            assert!(!segment.contains('/'));
            let key = ObjectKey::new(format!("p/{segment}/o")).unwrap();
            assert!(key.as_str().split('/').all(|s| s != ".." && s != "."));
        }
        assert_eq!(sanitize_segment("../../x"), ".._.._x");
        assert_eq!(sanitize_segment("ok-value"), "ok-value");
    }

    #[test]
    fn keys_that_one_file_system_path_could_name_twice_are_refused() {
        let err = ObjectKey::new("events//a.jsonl").unwrap_err();
        assert_eq!(err.reason, "contains an empty segment ('//')");
        assert!(ObjectKey::new("events/a.jsonl").is_ok());
    }
}
