//! A quick test that a record passes the strict rule, before the parser.
//!
//! The router checks every `json_lines` record: UTF-8, then the depth scan
//! ([`super::nests_deeper_than`]), then sonic-rs's document parser
//! ([`super::parse_strict`]), which builds a document it throws away, after
//! copying the record into a padded buffer. That was 0.22 to 0.24 CPU
//! seconds per 200 MB on every input, the largest cost beside the codec in
//! a zstd run (issue #17, docs/benchmarks.md), and no crate measured
//! validates faster.
//!
//! [`certainly_strict`] walks the text once, without allocating, keeping
//! the open arrays and objects as bits of one word, and says `true` only
//! when the text is certainly one JSON text the strict rule accepts, no
//! deeper than [`MAX_DEPTH`]. Where it is not sure it says `false` and the
//! full check decides as before, with its own code and message:
//! - a `\u` escape of a surrogate (`\ud800` to `\udfff`): a pair is
//!   fine, a lone one is refused, and pairing is the parser's business;
//! - a number that might lie beyond a double's range: more than 200
//!   digits before the point with an exponent, more than 300 without, or
//!   an exponent of more than two digits (`1e308` goes to the parser, `1e99`
//!   does not);
//! - anything malformed, too deep, or a byte it does not expect (a byte
//!   order mark, a raw control character in a string).
//!
//! So it can make a check faster but never change its outcome: what it
//! accepts the parser accepts (a property test holds it to that on
//! generated and broken records), and everything else meets the parser.
//! Strings are skipped with the escape scan Parquet's flat path and its
//! canonical JSON use ([`crate::escape::find_escape`]).

use super::MAX_DEPTH;
use crate::escape::find_escape;

/// Whether `text` is certainly one JSON text that the strict rule accepts
/// ([`super::parse_strict`]) and nests at most [`MAX_DEPTH`] deep. `false`
/// means "not certain": the caller checks as it would without this.
pub fn certainly_strict(text: &str) -> bool {
    let bytes = text.as_bytes();
    // One bit per open array (0) or object (1), the innermost lowest.
    const _: () = assert!(MAX_DEPTH < u64::BITS as usize);
    let mut open: u64 = 0;
    let mut depth = 0usize;
    let mut at = whitespace(bytes, 0);
    'value: loop {
        // A value starts at `at`.
        match bytes.get(at) {
            Some(&bracket @ (b'{' | b'[')) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
                let object = bracket == b'{';
                open = (open << 1) | u64::from(object);
                at = whitespace(bytes, at + 1);
                // Its first value (after a member's name), unless it is
                // empty: then it is closed below, as after a last value.
                if bytes.get(at) != Some(&closing(object)) {
                    if object {
                        let Some(next) = member_name(bytes, at) else {
                            return false;
                        };
                        at = next;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => match string(bytes, at + 1) {
                Some(next) => at = next,
                None => return false,
            },
            Some(b't') if bytes[at..].starts_with(b"true") => at += 4,
            Some(b'f') if bytes[at..].starts_with(b"false") => at += 5,
            Some(b'n') if bytes[at..].starts_with(b"null") => at += 4,
            Some(b'-' | b'0'..=b'9') => match number(bytes, at) {
                Some(next) => at = next,
                None => return false,
            },
            _ => return false,
        }
        // A value ended before `at` (or an empty array or object opened):
        // what follows.
        loop {
            at = whitespace(bytes, at);
            if depth == 0 {
                return at == bytes.len();
            }
            let in_object = open & 1 == 1;
            match bytes.get(at) {
                Some(b',') => {
                    at = whitespace(bytes, at + 1);
                    if in_object {
                        let Some(next) = member_name(bytes, at) else {
                            return false;
                        };
                        at = next;
                    }
                    continue 'value;
                }
                Some(&byte) if byte == closing(in_object) => {}
                _ => return false,
            }
            at += 1;
            depth -= 1;
            open >>= 1;
        }
    }
}

/// The byte that closes an object or an array.
#[inline(always)]
fn closing(object: bool) -> u8 {
    if object {
        b'}'
    } else {
        b']'
    }
}

/// Past JSON's whitespace from `at`.
#[inline(always)]
fn whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A member's name and its colon, from `at`: where its value starts.
#[inline(always)]
fn member_name(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let at = whitespace(bytes, string(bytes, at + 1)?);
    (bytes.get(at) == Some(&b':')).then(|| whitespace(bytes, at + 1))
}

/// A string's body from `at` (after its opening quote): the index after
/// its closing quote, or `None` if it is malformed or holds a surrogate
/// escape. Bytes from 0x80 are UTF-8, checked by the caller.
#[inline(always)]
fn string(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        // The next quote, backslash or control byte; none: unterminated.
        at += find_escape(bytes.get(at..)?)?;
        match bytes[at] {
            b'"' => return Some(at + 1),
            b'\\' => match *bytes.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                b'u' => {
                    let hex = bytes.get(at + 2..at + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    // D800 to DFFF: paired or lone, the parser decides.
                    if hex[0] | 0x20 == b'd' && matches!(hex[1] | 0x20, b'8'..=b'9' | b'a'..=b'f') {
                        return None;
                    }
                    at += 6;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// Past ASCII digits from `at`.
#[inline(always)]
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// A number by JSON's grammar from `at`, certainly within a double's range:
/// the index after it.
#[inline(always)]
fn number(bytes: &[u8], mut at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    let start = at;
    match *bytes.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at = digits(bytes, at + 1),
        _ => return None,
    }
    // Below 10^300 without an exponent; with one of at most two digits,
    // below 10^(200 + 99).
    let whole_digits = at - start;
    if whole_digits > 300 {
        return None;
    }
    if bytes.get(at) == Some(&b'.') {
        let end = digits(bytes, at + 1);
        if end == at + 1 {
            return None;
        }
        at = end;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let end = digits(bytes, at);
        if end == at || end - at > 2 || whole_digits > 200 {
            return None;
        }
        at = end;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::strict::{nests_deeper_than, parse_strict};
    use crate::test_json;

    /// What the full check says of a UTF-8 text: accepted or not.
    fn full_check(text: &str) -> bool {
        !nests_deeper_than(text.as_bytes(), MAX_DEPTH) && parse_strict(text).is_ok()
    }

    #[test]
    fn plain_records_are_certain() {
        for text in [
            r#"{"a":1}"#,
            r#" { "a" : [ 1 , -2.5e-3 , 0 , -0 , 1E+2 , 18446744073709551616 ] , "b" : { } , "c" : [ ] } "#,
            "{\n\t\"a\":\r\n\"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u0000\"\n}",
            r#"{"k":"é😀 and a long string past a word of eight bytes, \"quoted\"","n":null,"t":true,"f":false}"#,
            r#"[[[[1]]]]"#,
            "1",
            "\"x\"",
            "null",
            r#"{"a":1e99,"b":1e-99,"c":0.000000000000000000000000001}"#,
        ] {
            assert!(certainly_strict(text), "{text}");
            assert!(full_check(text), "{text}");
        }
        let limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(certainly_strict(&limit));
    }

    /// Each of these is refused by the full check, or left to it.
    #[test]
    fn what_is_not_certain_goes_to_the_parser() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let many_digits = format!("[{}]", "9".repeat(301));
        for text in [
            "",
            " ",
            "{",
            "{}}",
            "{} {}",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"x\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            r#"{"a":"unterminated}"#,
            "\u{feff}{}",
            deep.as_str(),
            // Left to the parser: it refuses some of them, accepts others.
            r#"{"a":1e400}"#,
            r#"{"a":1e308}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"\uDC00":1}"#,
            many_digits.as_str(),
        ] {
            assert!(!certainly_strict(text), "{text:?}");
        }
    }

    /// Bytes a JSON text is made of, to break texts with.
    fn json_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => proptest::sample::select(b"{}[]:,\"\\ \t\r\n0123456789-+.eEtrufalsn/bu".to_vec()),
            1 => any::<u8>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// What it is certain of, the full check accepts: generated
        /// records (deep ones, numbers out of range, lone surrogates
        /// among them), some broken by an edit, and texts edited further,
        /// byte by byte.
        #[test]
        fn what_it_is_certain_of_the_full_check_accepts(
            record in test_json::record_bytes(),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..3, json_byte()), 0..4),
        ) {
            let mut bytes = record;
            for round in 0..=edits.len() {
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    if certainly_strict(text) {
                        prop_assert!(full_check(text), "certain, but refused: {}", text);
                    }
                }
                let Some(&(at, how, byte)) = edits.get(round) else { break };
                let at = at.index(bytes.len() + 1);
                match how {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.push(byte),
                }
            }
        }

        /// And it is certain of the records it should be: any generated
        /// record the full check accepts, with no surrogate escape and no
        /// number it leaves to the parser, and the same record pretty
        /// printed.
        #[test]
        fn accepted_records_without_surrogates_or_huge_numbers_are_certain(
            value in test_json::record_value(),
        ) {
            let text = value.text();
            let left_to_parser = text.contains("\\ud") || text.contains("\\uD") || has_wide_number(&value);
            if full_check(&text) && !left_to_parser {
                prop_assert!(certainly_strict(&text), "{}", text);
                let spaced = text.replace(',', " ,\n\t").replace(':', "\r\n: ");
                if let Ok(reparsed) = sonic_rs::from_str::<sonic_rs::Value>(&spaced) {
                    // Only where the spacing fell between tokens (not in
                    // a string): the same document.
                    if reparsed == sonic_rs::from_str::<sonic_rs::Value>(&text).unwrap() {
                        prop_assert!(certainly_strict(&spaced), "{}", spaced);
                    }
                }
            }
        }
    }

    /// Whether a number in `value` has an exponent of three digits or more
    /// digits before the point than [`number`] takes as certain.
    fn has_wide_number(value: &test_json::Value) -> bool {
        use test_json::Value;
        match value {
            Value::Number(text) => {
                let (mantissa, exponent) = match text.find(['e', 'E']) {
                    Some(e) => (&text[..e], Some(text[e + 1..].trim_start_matches(['+', '-']))),
                    None => (text.as_str(), None),
                };
                let whole = mantissa
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .len();
                match exponent {
                    Some(exponent) => exponent.len() > 2 || whole > 200,
                    None => whole > 300,
                }
            }
            Value::Array(items) => items.iter().any(has_wide_number),
            Value::Object(entries) => entries.iter().any(|(_, v)| has_wide_number(v)),
            _ => false,
        }
    }
}
