//! Records in plain JSON, read into jaq's values without jaq's reader
//! (issue #18, speed).
//!
//! jaq's reader (`jaq_json::read`) takes more than JSON (comments, `NaN`,
//! byte strings, keys of any type), copies every string into a fresh
//! buffer and grows every object's map from empty: once programs were
//! walked directly (`super::direct`), reading was the largest part of a jq
//! worker's time. Here a record of strict JSON is read in one pass: a
//! string without escapes becomes a slice of the record itself (no copy),
//! and objects start with room for a few keys.
//!
//! The same values: strings keep their bytes as they are (jaq's reader
//! does not check UTF-8 either), escapes decode as jaq decodes them,
//! integers and other numbers become the `Num` jaq makes of the same text,
//! a repeated key keeps its first place and its last value. Whatever is
//! not plainly JSON (a control character in a string, a lone surrogate,
//! `01`, a comment, trailing text...) is left to jaq's reader, which then
//! reads it or says why not: this reader never refuses a record. A
//! property test compares both readers on JSON and on near-JSON.

use bytes::Bytes;
use jaq_json::{Map, Num, Val};
use spillway_transforms::escape::find_escape;

/// `data` as jaq's reader reads it, if it is one JSON value (with
/// whitespace around it); `None` when it is anything else.
pub fn strict(data: &Bytes) -> Option<Val> {
    let mut reader = Reader { data, at: 0 };
    reader.whitespace();
    let value = reader.value()?;
    reader.whitespace();
    (reader.at == data.len()).then_some(value)
}

struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn word(&mut self, word: &[u8], value: Val) -> Option<Val> {
        self.data[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// The value at `at` (recursion: the caller checked the depth).
    fn value(&mut self) -> Option<Val> {
        match self.peek()? {
            b'n' => self.word(b"null", Val::Null),
            b't' => self.word(b"true", Val::Bool(true)),
            b'f' => self.word(b"false", Val::Bool(false)),
            b'"' => self.string().map(Val::utf8_str),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => {
                self.at += 1;
                self.whitespace();
                let mut items = Vec::new();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(Val::Arr(items.into()));
                }
                loop {
                    items.push(self.value()?);
                    self.whitespace();
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            self.whitespace();
                        }
                        b']' => {
                            self.at += 1;
                            return Some(Val::Arr(items.into()));
                        }
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.at += 1;
                self.whitespace();
                let mut map = Map::with_capacity_and_hasher(8, Default::default());
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(Val::obj(map));
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = Val::utf8_str(self.string()?);
                    self.whitespace();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.at += 1;
                    self.whitespace();
                    let value = self.value()?;
                    map.insert(key, value);
                    self.whitespace();
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            self.whitespace();
                        }
                        b'}' => {
                            self.at += 1;
                            return Some(Val::obj(map));
                        }
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    /// The string at `at` (its opening quote): the record's own bytes
    /// when it has no escape.
    fn string(&mut self) -> Option<Bytes> {
        let start = self.at + 1;
        let plain = find_escape(self.data.get(start..)?)?;
        match self.data[start + plain] {
            b'"' => {
                self.at = start + plain + 1;
                Some(self.data.slice(start..start + plain))
            }
            b'\\' => {
                let mut text = self.data[start..start + plain].to_vec();
                self.at = start + plain;
                self.escaped(&mut text)?;
                Some(text.into())
            }
            // A control character: jaq's reader refuses it.
            _ => None,
        }
    }

    /// The rest of a string from the escape at `at`, decoded into `text`.
    fn escaped(&mut self, text: &mut Vec<u8>) -> Option<()> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    // The character and the escape's length.
                    let (decoded, width) = match self.data.get(self.at + 1)? {
                        b'"' => ('"', 2),
                        b'\\' => ('\\', 2),
                        b'/' => ('/', 2),
                        b'b' => ('\u{8}', 2),
                        b'f' => ('\u{c}', 2),
                        b'n' => ('\n', 2),
                        b'r' => ('\r', 2),
                        b't' => ('\t', 2),
                        b'u' => match self.hex(self.at + 2)? {
                            // A pair, `\uD83D\uDE00`; anything else
                            // (a lone half) is jaq's reader's to judge.
                            high @ 0xD800..=0xDBFF => {
                                if self.data.get(self.at + 6..self.at + 8)? != b"\\u" {
                                    return None;
                                }
                                let low = self.hex(self.at + 8)?;
                                if !(0xDC00..=0xDFFF).contains(&low) {
                                    return None;
                                }
                                (char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?, 12)
                            }
                            other => (char::from_u32(other)?, 6),
                        },
                        _ => return None,
                    };
                    self.at += width;
                    text.extend_from_slice(decoded.encode_utf8(&mut [0; 4]).as_bytes());
                }
                _ => {
                    let rest = &self.data[self.at..];
                    let plain = find_escape(rest)?;
                    if rest[plain] < 0x20 {
                        return None;
                    }
                    text.extend_from_slice(&rest[..plain]);
                    self.at += plain;
                }
            }
        }
    }

    /// Four hexadecimal digits at `at`.
    fn hex(&self, at: usize) -> Option<u32> {
        let digits = self.data.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0u32, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
    }

    /// A number as JSON writes it: an integer as jaq's reader makes one,
    /// any other its text, as jaq keeps it.
    fn number(&mut self) -> Option<Val> {
        let start = self.at;
        let data = &self.data[..];
        let digits = |at: usize| data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut at = start + usize::from(data[start] == b'-');
        match digits(at) {
            0 => return None,
            // No leading zeros.
            n if n > 1 && data[at] == b'0' => return None,
            n => at += n,
        }
        let mut integer = true;
        if data.get(at) == Some(&b'.') {
            integer = false;
            match digits(at + 1) {
                0 => return None,
                n => at += 1 + n,
            }
        }
        if matches!(data.get(at), Some(b'e' | b'E')) {
            integer = false;
            at += 1;
            if matches!(data.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            match digits(at) {
                0 => return None,
                n => at += n,
            }
        }
        let text = std::str::from_utf8(&data[start..at]).ok()?;
        self.at = at;
        Some(Val::Num(match integer {
            true => Num::from_str_radix(text, 10)?,
            false => Num::Dec(text.to_owned().into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What jaq's reader makes of `data`, shown in full (variants too:
    /// an integer is not a decimal, a text string not a byte string).
    fn jaq(data: &[u8]) -> Option<String> {
        jaq_json::read::parse_single(data).ok().map(|v| format!("{v:?}"))
    }

    /// JSON values as serde_json writes them, and a few shapes it does not
    /// write: escapes of every kind, surrogate pairs, big and decimal numbers.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            // Escapes as other writers write them.
            prop::collection::vec(
                prop_oneof![
                    "[a-z ]{0,5}",
                    Just("\\n".to_owned()),
                    Just("\\/".to_owned()),
                    Just("\\\"".to_owned()),
                    Just("\\\\".to_owned()),
                    Just("\\b\\f\\r\\t".to_owned()),
                    Just("\\u00e9".to_owned()),
                    Just("\\u00E9".to_owned()),
                    Just("\\ud83d\\ude00".to_owned()),
                    Just("\\u0000".to_owned()),
                    Just("é".to_owned()),
                ],
                0..6
            )
            .prop_map(|parts| format!("\"{}\"", parts.concat())),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            let space = prop_oneof![Just(""), Just(" "), Just("\n\t\r ")];
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), space.clone())
                    .prop_map(|(items, s)| format!("[{s}{}{s}]", items.join(&format!("{s},{s}")))),
                (prop::collection::vec(("[ab\"]{0,2}", inner), 0..5), space).prop_map(|(fields, s)| {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{}{s}:{s}{v}", serde_json::to_string(k).unwrap()))
                        .collect();
                    format!("{{{s}{}{s}}}", fields.join(","))
                }),
            ]
        })
    }

    /// Bytes that are JSON but for one change, or jaq's own extensions.
    fn near_json() -> impl Strategy<Value = Vec<u8>> {
        let edit = prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            Just(b"\\ud800".to_vec()),
            Just(b"\\udc00".to_vec()),
            Just(b"\\ud83d\\u0041".to_vec()),
            Just(b"\\uZZZZ".to_vec()),
            Just(b"\\x41".to_vec()),
            Just(b"01".to_vec()),
            Just(b"1.".to_vec()),
            Just(b"-".to_vec()),
            Just(b"+1".to_vec()),
            Just(b"NaN".to_vec()),
            Just(b"# c\n".to_vec()),
            Just(b"\xff\xfe".to_vec()),
            Just(b"\x01".to_vec()),
            Just(b",".to_vec()),
            Just(b"}".to_vec()),
            Just(b"".to_vec()),
        ];
        (json(), any::<prop::sample::Index>(), edit, any::<bool>()).prop_map(|(text, at, edit, replace)| {
            let mut bytes = text.into_bytes();
            let at = at.index(bytes.len() + 1);
            let end = if replace && at < bytes.len() { at + 1 } else { at };
            bytes.splice(at..end, edit);
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// JSON is read here, to the very values jaq's reader makes.
        #[test]
        fn json_is_read_as_jaq_reads_it(text in json()) {
            let data = Bytes::from(text.clone().into_bytes());
            let ours = strict(&data).map(|v| format!("{v:?}"));
            prop_assert!(ours.is_some(), "not read: {}", text);
            prop_assert_eq!(ours, jaq(text.as_bytes()), "{}", text);
        }

        /// Near-JSON is read to jaq's values, or left to jaq's reader:
        /// never read as something jaq reads differently or refuses.
        #[test]
        fn what_is_read_here_jaq_reads_the_same(bytes in near_json()) {
            if let Some(ours) = strict(&Bytes::from(bytes.clone())) {
                prop_assert_eq!(Some(format!("{ours:?}")), jaq(&bytes), "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn plain_strings_are_slices_of_the_record() {
        let data = Bytes::from_static(br#"{"brand":"ACME","n":1}"#);
        let Some(Val::Obj(map)) = strict(&data) else {
            panic!("not read")
        };
        let Some(Val::TStr(brand)) = map.values().next() else {
            panic!("no brand")
        };
        assert_eq!(&brand[..], b"ACME");
        let inside = data.as_ptr_range();
        assert!(inside.contains(&brand.as_ptr()), "the string was copied");
    }
}
