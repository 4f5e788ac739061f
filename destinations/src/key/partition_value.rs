//! Partition key values made safe for a key segment.
//!
//! A value comes from a record (a jq query's result, a Lambda's answer): it
//! is hostile input. Whatever it holds, the segment it becomes must stay
//! inside the prefix (no `/`, no `.` or `..` segment, no `\`, no control
//! character), be bounded in length, stay readable (letters, digits and
//! most punctuation as they are, any other Unicode letter too), and stay
//! distinct: two different values never make one segment. Hence
//! percent-encoding (of `%` itself too), rather than replacing characters.

use md5::{Digest, Md5};

/// The longest segment a value makes before it is cut (bytes).
pub const MAX_VALUE_BYTES: usize = 200;
/// What a cut value keeps of its encoding before the `~` and its hash.
const KEPT_BYTES: usize = 180;

/// The key segment for `value`.
///
/// - kept as they are: ASCII letters and digits, `-_.~=+,@:`, and
///   non-ASCII characters that are not control characters;
/// - every other byte (`/`, `\`, `%`, space, control characters, ...) is
///   percent-encoded (`%2F`);
/// - a value made only of dots has them encoded (`%2E%2E`), and the empty
///   value is written `%` (which no other value makes);
/// - an encoding longer than [`MAX_VALUE_BYTES`] is cut and ends with `~`
///   and the MD5 of the whole value, so that it stays distinct.
pub fn sanitize_partition_value(value: &str) -> String {
    if value.is_empty() {
        return "%".to_owned();
    }
    let only_dots = value.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let keep = match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '~' | '=' | '+' | ',' | '@' | ':' => true,
            '.' => !only_dots,
            c => !c.is_ascii() && !c.is_control(),
        };
        if keep {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    if out.len() <= MAX_VALUE_BYTES {
        return out;
    }
    let mut cut = KEPT_BYTES;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    // Never cut inside a %XX escape.
    if let Some(percent) = out[..cut].rfind('%') {
        if percent + 3 > cut {
            cut = percent;
        }
    }
    let hash = Md5::digest(value.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", &out[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn readable_values_stay_as_they_are() {
        assert_eq!(sanitize_partition_value("acme-42"), "acme-42");
        assert_eq!(sanitize_partition_value("2026-11-22"), "2026-11-22");
        assert_eq!(sanitize_partition_value("café"), "café");
        assert_eq!(sanitize_partition_value("a.b"), "a.b");
    }

    #[test]
    fn hostile_values_are_encoded() {
        assert_eq!(sanitize_partition_value("../x"), "..%2Fx");
        assert_eq!(sanitize_partition_value(".."), "%2E%2E");
        assert_eq!(sanitize_partition_value("."), "%2E");
        assert_eq!(sanitize_partition_value("/"), "%2F");
        assert_eq!(sanitize_partition_value(""), "%");
        assert_eq!(sanitize_partition_value("a\nb\u{0}"), "a%0Ab%00");
        assert_eq!(sanitize_partition_value("50%"), "50%25");
        assert_eq!(sanitize_partition_value("a b\\c"), "a%20b%5Cc");
        let long = "x".repeat(10_000);
        let cut = sanitize_partition_value(&long);
        assert!(cut.len() <= MAX_VALUE_BYTES + 33, "{}", cut.len());
        assert!(cut.starts_with("xxxx"));
        assert_ne!(cut, sanitize_partition_value(&"x".repeat(10_001)));
    }

    fn is_safe(segment: &str) -> bool {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment.contains('/')
            && !segment.contains('\\')
            && !segment.chars().any(char::is_control)
            && segment.len() <= MAX_VALUE_BYTES + 33
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_value_makes_a_safe_segment(value in any::<String>()) {
            let segment = sanitize_partition_value(&value);
            prop_assert!(is_safe(&segment), "{value:?} made {segment:?}");
        }

        #[test]
        fn distinct_values_make_distinct_segments(a in "[./%a\\x00 é]{0,8}", b in "[./%a\\x00 é]{0,8}") {
            prop_assume!(a != b);
            prop_assert_ne!(sanitize_partition_value(&a), sanitize_partition_value(&b));
        }

        #[test]
        fn long_values_stay_bounded_and_distinct(a in ".{150,400}", b in ".{150,400}") {
            let (sa, sb) = (sanitize_partition_value(&a), sanitize_partition_value(&b));
            prop_assert!(is_safe(&sa) && is_safe(&sb));
            if a != b {
                prop_assert_ne!(sa, sb);
            }
        }
    }
}
