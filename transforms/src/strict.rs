//! What spillway accepts as a JSON record, the same on every path: the
//! router's check for `json_lines`, Parquet inference and conversion, and
//! the single pass.
//!
//! Two rules, both about input a hostile or careless producer can send:
//! - **Nesting.** A record nested deeper than [`MAX_DEPTH`] is refused
//!   (`Record.TooDeep`) before any parser or recursive walk sees it. Deep
//!   records would otherwise overflow the stack (serde-style skipping
//!   recurses once per level, without a limit), and in an inferred Parquet
//!   schema they make files that readers refuse: pyarrow stops at a Parquet
//!   schema 100 levels deep (a JSON array takes two levels, so 50 nested
//!   arrays), arrow-rs (and so `spillway originals`) at about 61 levels of
//!   nesting in the file's Arrow schema. [`MAX_DEPTH`] leaves both a wide
//!   margin. The check is an iterative scan of the bytes, so it holds
//!   however deep the record goes.
//! - **Values.** A number beyond a double's range (`1e400`) or a string
//!   (or key) with a lone surrogate escape (`"\ud800"`) makes a record
//!   malformed (`Record.MalformedJson`): readers disagree on them (an
//!   infinity, an error, a replacement character) and Parquet cannot hold
//!   them. Parsers skip unused values without those checks, so every
//!   skipped value goes through [`StrictAny`] instead of serde's
//!   `IgnoredAny`.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

mod accept;
pub use accept::certainly_strict;

use crate::error_record::{ErrorOutputType, Rejection};

/// The deepest nesting of arrays and objects a JSON record may have; the
/// record itself counts one (`{"a":1}` is 1 deep, `{"a":[1]}` 2).
pub const MAX_DEPTH: usize = 32;

/// The deepest a column type of a schema file may nest (`list`, `struct`
/// and `map` each count one): a record filling it is [`MAX_DEPTH`] deep.
pub const MAX_TYPE_DEPTH: usize = MAX_DEPTH - 1;

/// Whether `bytes` nest arrays and objects deeper than `max`, counting
/// brackets outside strings. Exact for valid JSON; for malformed JSON an
/// upper bound of what a parser would walk before it stops.
pub fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    // Most records have few brackets: if they are not more than `max` in
    // all, strings included, they cannot nest deeper (one vectorised pass,
    // which stops at the first bracket past `max`).
    if memchr::memchr2_iter(b'[', b'{', bytes).nth(max).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => {
                // Jump over the string, past its escapes, to after its
                // closing quote; an unterminated one ends the record.
                at += 1;
                loop {
                    let Some(rest) = bytes.get(at..) else { return false };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => return false,
                        Some(found) if rest[found] == b'\\' => at += found + 2,
                        Some(found) => {
                            at += found + 1;
                            break;
                        }
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// The rejection of a record nested deeper than [`MAX_DEPTH`].
pub fn too_deep() -> Rejection {
    Rejection {
        output_type: ErrorOutputType::FormatConversionFailed,
        code: "Record.TooDeep",
        message: format!("record nests arrays and objects more than {MAX_DEPTH} levels deep"),
    }
}

/// The texts [`parse_strict`] gives sonic-rs's document parser; others
/// are visited through [`StrictAny`]. On records of the benchmark's inputs
/// (about 460 bytes to 5.7 KB) the document parser is 1.45 to 1.6 times
/// faster than the visit, where the router's check (`json_lines`) spent
/// about a seventh of the pipeline's CPU (issue #17). Below about 60
/// bytes the visit is faster (34 against 87 ns for `{}`: the document's
/// allocation), and the document takes 10 to 17 times its text while it
/// is built, so a record of 1,000 KiB would hold 17 MB: past 64 KiB the
/// visit, which allocates nothing, is used.
pub const DOCUMENT_PARSE_BYTES: std::ops::RangeInclusive<usize> = 64..=64 * 1024;

/// Whether `text` is one JSON text by the rule on values above, as
/// [`StrictAny`] decides it, by the faster of two parsers for its length
/// ([`DOCUMENT_PARSE_BYTES`]). The document parser refuses the same texts
/// (a property test below holds the two to it), but its errors say less
/// (`Invalid unicode code point` at the string, where the visit names the
/// lone surrogate at the escape): a text it refuses is visited again for
/// the message, so that it is the one Parquet's conversion gives. Nesting
/// is not checked here: [`nests_deeper_than`] comes first.
pub fn parse_strict(text: &str) -> Result<(), sonic_rs::Error> {
    if DOCUMENT_PARSE_BYTES.contains(&text.len()) && sonic_rs::from_str::<sonic_rs::Value>(text).is_ok() {
        return Ok(());
    }
    sonic_rs::from_str::<StrictAny>(text).map(drop)
}

/// Any JSON value, skipped with every check a value that is used gets: a
/// number must be a finite double, a string or key valid Unicode (no lone
/// surrogate). Recurses once per level: callers check the depth first
/// ([`nests_deeper_than`]).
pub struct StrictAny;

impl<'de> Deserialize<'de> for StrictAny {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictAny;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_none<E>(self) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_bool<E>(self, _: bool) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_i64<E>(self, _: i64) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_u64<E>(self, _: u64) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    // sonic-rs refuses a number beyond a double's range before this.
    fn visit_f64<E>(self, _: f64) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_str<E>(self, _: &str) -> Result<StrictAny, E> {
        Ok(StrictAny)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictAny, A::Error> {
        while seq.next_element::<StrictAny>()?.is_some() {}
        Ok(StrictAny)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictAny, A::Error> {
        while map.next_entry::<StrictAny, StrictAny>()?.is_some() {}
        Ok(StrictAny)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_json;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{}1{}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!nests_deeper_than(b"{\"a\":1}", 1));
        assert!(nests_deeper_than(b"{\"a\":[1]}", 1));
        assert!(!nests_deeper_than(b"{\"a\":[1]}", 2));
        // Wide is not deep.
        let wide = format!("[{}]", vec!["{}"; 100].join(","));
        assert!(!nests_deeper_than(wide.as_bytes(), 2));
        assert!(nests_deeper_than(wide.as_bytes(), 1));
        // Brackets in strings and keys, escaped quotes included, do not count.
        let strings = r#"{"[[[[":"{{{\"[[[[","\\":"]]]]"}"#;
        assert!(!nests_deeper_than(strings.as_bytes(), 1), "{strings}");
        for depth in [1, 31, 32, 33, 100_000] {
            let arrays = nested("[", "]", depth);
            assert_eq!(nests_deeper_than(arrays.as_bytes(), 32), depth > 32, "{depth}");
            let objects = nested("{\"k\":", "}", depth);
            assert_eq!(nests_deeper_than(objects.as_bytes(), 32), depth > 32, "{depth}");
        }
        // Malformed input: unterminated strings and escapes, unbalanced brackets.
        for text in [&b"\"\\"[..], b"\"", b"]]]]{", b"[\"\\\"", b"{\"\\"] {
            assert!(!nests_deeper_than(text, 1), "{:?}", String::from_utf8_lossy(text));
        }
        assert!(nests_deeper_than(b"]]][[[", 2));
    }

    #[test]
    fn strict_values_refuse_what_parsers_disagree_on() {
        let strict = |text: &str| sonic_rs::from_str::<StrictAny>(text).is_ok();
        assert!(strict(
            r#"{"a":[1,-2,1.5e300,18446744073709551616,"x\u00e9\ud83d\ude00",null,true,{}]}"#
        ));
        assert!(strict("1e-400"), "underflow is zero, not out of range");
        for bad in [
            r#"{"a":1e400}"#,
            r#"[-1e400]"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"\ud800":1}"#,
            r#"{"a":1} 2"#,
        ] {
            assert!(!strict(bad), "{bad}");
            // What serde's IgnoredAny lets through (but the trailing value).
            assert_eq!(
                sonic_rs::from_str::<serde::de::IgnoredAny>(bad).is_ok(),
                !bad.ends_with(" 2"),
                "{bad}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The scan finds the depth of any JSON text, strings full of
        /// brackets and escaped quotes included.
        #[test]
        fn the_depth_scan_is_exact_on_json(value in test_json::record_value()) {
            let text = value.text();
            let depth = value.depth();
            for max in [depth.saturating_sub(1), depth, MAX_DEPTH] {
                prop_assert_eq!(nests_deeper_than(text.as_bytes(), max), depth > max, "max {}: {}", max, text);
            }
        }

        /// The document parser accepts exactly what [`StrictAny`]
        /// accepts, and so [`parse_strict`] decides, with the same
        /// message, as the visit does: generated records, some broken by
        /// an edit, with numbers beyond a double's range and lone
        /// surrogates among their values.
        #[test]
        fn the_fast_parse_decides_as_strict_any_does(record in test_json::record_bytes()) {
            let Ok(text) = std::str::from_utf8(&record) else { return Ok(()) };
            let reference = sonic_rs::from_str::<StrictAny>(text).map(drop).map_err(|e| e.to_string());
            prop_assert_eq!(
                sonic_rs::from_str::<sonic_rs::Value>(text).is_ok(),
                reference.is_ok(),
                "{}",
                text
            );
            prop_assert_eq!(parse_strict(text).map_err(|e| e.to_string()), reference, "{}", text);
        }

        /// Any bytes, bracket-heavy ones and broken records, are scanned
        /// without a panic.
        #[test]
        fn the_depth_scan_takes_any_bytes(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), proptest::sample::select(b"[]{}\"\\".to_vec())],
                0..300,
            ),
            record in test_json::record_bytes(),
            max in 0usize..4,
        ) {
            nests_deeper_than(&bytes, max);
            nests_deeper_than(&record, max);
        }
    }
}
